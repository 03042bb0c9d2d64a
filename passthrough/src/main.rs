//! `passthrough`: one worker of the reference cluster.

fn main() -> std::process::ExitCode {
    passthrough::main_impl()
}
