//! The `crasher` command: parse, set up tracing, hand over to the library.

fn main() -> std::process::ExitCode {
    crasher::main_impl()
}
