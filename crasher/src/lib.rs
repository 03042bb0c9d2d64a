//! crasher: a chaos-testing harness for streaming clusters.
//!
//! The binary is thin; [`main_impl`] parses the command line, sets up
//! tracing and dispatches to the crate that owns each subcommand.
//!
//! Exit codes, shared by every subcommand (see [`exit`]): 0 the property
//! holds, 1 a violation was found, 2 usage or environment error, 3 verdict
//! unknown.

pub mod cli;
pub mod exit;
pub mod hostsbench;
pub mod labhosts;
pub mod manual;
pub mod ops;
pub mod recipe;
pub mod replay;
pub mod run;
pub mod soak;

use std::process::ExitCode;

use clap::Parser;

/// Entry point of the `crasher` binary.
pub fn main_impl() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::HOLDS
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A worker (`crasher passthrough`) sets up its own logging, the way the
    // `passthrough` binary does.
    if !matches!(cli.command, Some(cli::Command::Passthrough(_))) {
        init_tracing();
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crasher: error: {}", error_chain(&e));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// An error and its causes, `: `-separated like `{:#}`, leaving out a
/// cause whose text the message before it already says (many errors print
/// their OS error and also return it as their source, which `{:#}` would
/// print twice: `... (os error 21): Is a directory (os error 21)`).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CRASHER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
