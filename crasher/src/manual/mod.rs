//! The low-level commands: drive a run step by step from a shell script,
//! the way the original `start-worker.sh`, `crash-worker.sh`,
//! `poll-ready.sh` ... were used.
//!
//! `crasher start-sink`, `start-initializer [-n N]`, `start-worker [-j] N`,
//! `join-worker N`, `shrink-worker N`, `crash-worker N` (0 = initializer),
//! `poll-ready [-w SECS] N`, `poll-all-ready [-w SECS] [-v]`, `crash-sink`,
//! `start-feeder KEY`, `crash-feeder KEY`. Each is one short process: the
//! run's state lives in its `state.json` ([`run::Run`]), the processes it
//! starts are detached (they outlive the command, own process group,
//! output in their logs in the run directory, `CRASHER_RUN_ID` set) and are
//! identified later by pid, start time and run id, never by name.
//!
//! Exit codes: 0 done; 1 the process or cluster is not in the state the
//! command needs (crash of a process that is not running, start of one that
//! is, not ready by the deadline, shrink refused); 2 usage or environment
//! error (no run, unknown worker or key, bad number, ports taken, a
//! process that exits right at start). See docs/commands.md.

mod commands;
pub mod run;

use std::process::ExitCode;

use crate::exit;
use crate::ops::RunSel;

pub use commands::*;

/// Why a command did not do its job, and so its exit code.
#[derive(Debug)]
pub enum Fail {
    /// The process or cluster is not in the state the command needs (exit 1).
    State(String),
    /// Usage or environment error (exit 2).
    Env(String),
}

impl Fail {
    fn code(&self) -> u8 {
        match self {
            Fail::State(_) => exit::VIOLATION,
            Fail::Env(_) => exit::USAGE,
        }
    }
}

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail::Env(format!("Error: {e}"))
    }
}

/// Runs a command body: prints a failure's message on stderr and turns it
/// into its exit code.
fn finish(r: Result<u8, Fail>) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(match r {
        Ok(code) => code,
        Err(f) => {
            let (Fail::State(m) | Fail::Env(m)) = &f;
            eprintln!("{m}");
            f.code()
        }
    }))
}

/// Options that set up a new run. They apply when `start-sink` or
/// `start-initializer` creates the run; on an existing run each one given
/// must match what the run was created with.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NewRunArgs {
    /// Environment profile of a new run: a TOML file, a name in env/, or a
    /// built-in [default: passthrough].
    #[arg(long = "env", env = "CRASHER_ENV", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Routing keys of a new run [default: A,B,C,D,E,F,G,H,I,J].
    #[arg(long, env = "CRASHER_KEYS", value_delimiter = ',')]
    pub keys: Option<Vec<String>>,
    /// Source bytes per key of a new run's input files [default: 4000000].
    #[arg(long, env = "CRASHER_INPUT_BYTES")]
    pub input_bytes: Option<u64>,
    /// Feeder rate of a new run, bytes per second (0 = unthrottled) [default: 66000].
    #[arg(long, env = "CRASHER_RATE")]
    pub rate: Option<u64>,
    /// Seed of a new run's input data [default: 0].
    #[arg(long, env = "CRASHER_SEED")]
    pub seed: Option<u64>,
    /// Bug to switch on in a new run's reference workers (passthrough --inject).
    #[arg(long, env = "CRASHER_INJECT")]
    pub inject: Option<String>,
}

/// Arguments of `crasher start-sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartSinkArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Settings of a new run.
    #[command(flatten)]
    pub new: NewRunArgs,
}

/// Arguments of `crasher start-initializer`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartInitializerArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Settings of a new run.
    #[command(flatten)]
    pub new: NewRunArgs,
    /// Workers the cluster forms with, initializer included (default: the
    /// run's last value, 1 for a new run).
    #[arg(short = 'n', long = "workers", value_name = "N")]
    pub workers: Option<usize>,
}

/// Arguments of `crasher start-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartWorkerArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Join the running cluster (grow) instead of starting as a member.
    #[arg(short = 'j', long)]
    pub join: bool,
    /// Worker number, 1 to 9.
    #[arg(value_name = "N")]
    pub worker: usize,
}

/// Arguments of a command on one worker (`join-worker`, `crash-worker`).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Worker number (0 = initializer).
    #[arg(value_name = "N")]
    pub worker: usize,
}

/// Arguments of `crasher shrink-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShrinkArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Seconds to wait for the initializer's answer, and again for the
    /// worker to exit.
    #[arg(
        short = 'w',
        long = "wait",
        value_name = "SECS",
        default_value_t = 30.0
    )]
    pub wait: f64,
    /// Worker number, 1 to 9.
    #[arg(value_name = "N")]
    pub worker: usize,
}

/// Arguments of `crasher poll-ready`.
#[derive(Debug, Clone, clap::Args)]
pub struct PollReadyArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Give up after this many seconds.
    #[arg(
        short = 'w',
        long = "wait",
        value_name = "SECS",
        default_value_t = 15.0
    )]
    pub wait: f64,
    /// Print the port and `Success`.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Worker number (0 = initializer).
    #[arg(value_name = "N")]
    pub worker: usize,
}

/// Arguments of `crasher poll-all-ready`.
#[derive(Debug, Clone, clap::Args)]
pub struct PollAllReadyArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Give up after this many seconds in all (one budget for every worker).
    #[arg(
        short = 'w',
        long = "wait",
        value_name = "SECS",
        default_value_t = 15.0
    )]
    pub wait: f64,
    /// Print each worker and its port, and `Success`.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// Arguments of `crasher start-feeder` and `crasher crash-feeder`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// The routing key (one of the run's keys).
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// Arguments of a command on the run only (`crash-sink`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
}
