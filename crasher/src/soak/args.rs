//! The soak's options (besides the positional fault words) and their parsers.

use std::path::PathBuf;
use std::time::Duration;

use crate::run::{disk, network};

use super::harness::OnFailure;
use super::schedule::ScheduleMode;

/// Options of a soak, besides the positional words.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// NUM (workers at start, 1-10) then options: crash-sink, crashN,
    /// crashN.slow, crash-source, pause, grow, shrink, grow-and-shrink,
    /// no-ack-progress, no-registry-progress, no-sanity,
    /// no-clean-old-gzip-files, run_customX.
    #[arg(value_name = "NUM [OPTION]...")]
    pub words: Vec<String>,
    /// Environment profile: a TOML file, a name in env/, or a built-in
    /// (passthrough, tcp).
    #[arg(
        long = "env",
        env = "CRASHER_ENV",
        default_value = "passthrough",
        value_name = "PROFILE"
    )]
    pub profile: String,
    /// Routing keys, one input file and feeder each.
    #[arg(
        long,
        env = "CRASHER_KEYS",
        default_value = "A,B,C,D,E,F,G,H,I,J",
        value_delimiter = ','
    )]
    pub keys: Vec<String>,
    /// Source bytes per key (the input file is about 3.1 times larger).
    #[arg(long, env = "CRASHER_INPUT_BYTES", default_value_t = 4_000_000)]
    pub input_bytes: u64,
    /// Feeder rate in bytes per second, per feeder (0 = unthrottled).
    #[arg(long, env = "CRASHER_RATE", default_value_t = 66_000)]
    pub rate: u64,
    /// How each feeder's rate varies over time: SHAPE for every key, or
    /// KEY=SHAPE (repeatable). Shapes: constant, bursts:ON/OFF, ramp:PERIOD,
    /// jitter:F (docs/feeders.md, "Workload shapes").
    #[arg(long = "workload", value_name = "[KEY=]SHAPE")]
    pub workload: Vec<String>,
    /// Stop after this long with a verdict (e.g. 30s, 10m, 2h); default: run
    /// until every key is done or a check fails.
    #[arg(long, env = "CRASHER_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seed of every random choice (fault schedule and input data).
    #[arg(long, env = "CRASHER_SEED")]
    pub seed: Option<u64>,
    /// At a violation: pause every process (for a debugger) or kill them all.
    #[arg(long, env = "CRASHER_ON_FAILURE", value_enum, default_value = "pause")]
    pub on_failure: OnFailure,
    /// This run's directory (default: RUNS/<run-id>).
    #[arg(long, env = "CRASHER_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Clear a --run-dir that holds an earlier run before using it
    /// (default: refuse it; a directory that is not a run's is never cleared).
    #[arg(long)]
    pub force: bool,
    /// Where runs and cached input files live.
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
    /// Bug to switch on in the reference workers (passthrough --inject).
    #[arg(long, env = "CRASHER_INJECT")]
    pub inject: Option<String>,
    /// Worker state directories: plain, or lossy (a lossyfs mount per node,
    /// needed by power-loss and power-loss-all; see docs/disk.md).
    /// Default: the profile's [disk] mode.
    #[arg(long, env = "CRASHER_DISK", value_enum)]
    pub disk: Option<disk::DiskMode>,
    /// Network: loopback (default; or the profile's [network] mode) or
    /// lab (every worker in a network namespace of its own on a private
    /// bridge; needed by partition, isolate, one-way, bridge, flaky; see
    /// docs/network.md).
    #[arg(long, env = "CRASHER_NETWORK", value_enum, value_name = "MODE")]
    pub network: Option<network::NetworkMode>,
    /// Run the workers on other machines over SSH: a TOML hosts file (one
    /// `[[host]]` per machine: destination, port, user, identity, workdir;
    /// workers placed round-robin, sink and feeders stay here; see
    /// docs/hosts.md).
    #[arg(long, env = "CRASHER_HOSTS", value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Override a loop timing: NAME=SECONDS (repeatable, or comma-separated).
    #[arg(long = "timing", env = "CRASHER_TIMINGS", value_name = "NAME=SECONDS")]
    pub timings: Vec<String>,
    /// When faults fire: `isolated` waits until the previous fault's effect
    /// was observed (new commits on every fed key) before the next one;
    /// `overlapping` runs every fault loop on its own timer (the original);
    /// `mixed` isolates all but a share of faults (--overlap-share).
    #[arg(long, env = "CRASHER_SCHEDULE", value_enum, default_value = "isolated")]
    pub schedule: ScheduleMode,
    /// `--schedule mixed`: the share of faults that may overlap (0 to 1).
    #[arg(long, env = "CRASHER_OVERLAP_SHARE", default_value_t = 0.25, value_parser = parse_share)]
    pub overlap_share: f64,
    /// The verdict is unknown (exit 3) unless each requested fault kind was
    /// observed at least this many times (0: only report coverage).
    #[arg(long, env = "CRASHER_MIN_OBSERVED", default_value_t = 1)]
    pub min_observed: u64,
    /// Replay a recorded fault schedule instead of the random fault loops:
    /// a JSON array of run.json `decisions`, or a recipe file with a
    /// `[replay]` table (what `crasher replay` and `crasher shrink` pass).
    #[arg(long, value_name = "FILE", hide = true)]
    pub replay_schedule: Option<std::path::PathBuf>,
}

/// The rate shape of each key from `--workload` (SHAPE for every key, or
/// KEY=SHAPE), checked against the keys, the rate and the profile: a shape
/// needs a rate to shape and a feeder whose arguments take `{workload}`.
pub(super) fn workloads(
    args: &SoakArgs,
    profile: &crate::run::profile::Profile,
) -> anyhow::Result<std::collections::BTreeMap<String, feeders::workload::Workload>> {
    use feeders::workload::Workload;
    let mut map = std::collections::BTreeMap::new();
    for item in &args.workload {
        let (keys, shape) = match item.split_once('=') {
            Some((k, s)) => {
                if !args.keys.iter().any(|x| x == k) {
                    anyhow::bail!(
                        "--workload {item:?}: key {k:?} is not one of --keys {}",
                        args.keys.join(",")
                    );
                }
                (vec![k.to_owned()], s)
            }
            None => (args.keys.clone(), item.as_str()),
        };
        let shape: Workload = shape.parse()?;
        for k in keys {
            map.insert(k, shape);
        }
    }
    if map.values().any(|w| *w != Workload::Constant) {
        if args.rate == 0 {
            anyhow::bail!(
                "--workload shapes each feeder's --rate, but --rate is 0 (unthrottled): give a rate"
            );
        }
        if !profile.feeder.args.iter().any(|a| a.contains("{workload}")) {
            anyhow::bail!(
                "--workload: profile {}'s feeder arguments have no {{workload}} placeholder, \
                 so its feeders cannot be shaped",
                profile.origin
            );
        }
    }
    Ok(map)
}

pub(super) fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a share between 0 and 1"))
}

/// Parses `250ms`, `30s`, `5m`, `2h` or a bare number of seconds (the
/// one duration syntax of every crasher option: [`procs::parse_duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    procs::parse_duration(s)
}
