//! Commands that act on an existing run from any shell: `crasher status`,
//! `crasher stop` and `crasher reset`. They find the run through its `state.json`
//! (default: `crasher-runs/current`) and identify its processes by pid,
//! start time and `CRASHER_RUN_ID`, never by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::exit;
use crate::run::state::RunState;

/// Which run a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct RunSel {
    /// The run directory (default: RUNS/current).
    #[arg(long, env = "CRASHER_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// The run with this id (RUNS/ID).
    #[arg(long, value_name = "ID", conflicts_with = "run_dir")]
    pub run: Option<String>,
    /// Where runs live.
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
}

/// The selected run has no `state.json`: never started, or reset.
#[derive(Debug, thiserror::Error)]
#[error("no run in {}: {} does not exist (never started, or reset); start one with `crasher start-sink` or a soak, or choose another with --runs, --run or --run-dir", dir.display(), dir.join(crate::run::state::FILE).display())]
pub struct NoRun {
    /// The directory looked in.
    pub dir: PathBuf,
}

impl RunSel {
    /// The selected run directory: `--run-dir`, `RUNS/ID`, or `RUNS/current`.
    pub fn dir(&self) -> PathBuf {
        match (&self.run_dir, &self.run) {
            (Some(d), _) => d.clone(),
            (None, Some(id)) => self.runs.join(id),
            (None, None) => self.runs.join("current"),
        }
    }

    /// Whether the selected run has a state file.
    pub fn exists(&self) -> bool {
        self.dir().join(crate::run::state::FILE).is_file()
    }

    /// Reads the selected run's state; a missing one is [`NoRun`].
    pub fn load(&self) -> anyhow::Result<RunState> {
        if !self.exists() {
            return Err(NoRun { dir: self.dir() }.into());
        }
        RunState::read(&self.dir())
    }
}

/// Arguments of `crasher status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `crasher reset`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResetArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
}

/// Arguments of `crasher stop`.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Which run.
    #[command(flatten)]
    pub run: RunSel,
}

/// `crasher stop`: stop every process of the run (its supervisor first,
/// which tears down and writes the run's final record) and keep all its
/// evidence: logs, sink output, worker state, run.json.
pub fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let st = args.run.load()?;
    let killed = stop_run(&st);
    let left = procs::processes_of_run(&st.run_id);
    println!(
        "Stopped {killed} process(es) of run {}; its logs, sink output and state are kept in {}",
        st.run_id,
        st.run_dir.display()
    );
    if !left.is_empty() {
        eprintln!(
            "crasher: {} process(es) of run {} are still alive: {left:?}",
            left.len(),
            st.run_id
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    Ok(ExitCode::from(exit::HOLDS))
}

/// `crasher status`: the run at a glance.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let st = args.run.load()?;
    let feeders: Vec<(String, Option<feeders::status::FeedStatus>)> = st
        .inputs
        .keys()
        .map(|k| {
            let p = st.run_dir.join(format!("logs/feeder.{k}.status"));
            (k.clone(), feeders::status::FeedStatus::read(&p).ok())
        })
        .collect();
    // A manual run creates a key's input only when its feeder first starts.
    let verdict = verify::check::check_keys(
        &st.run_dir.join("sink"),
        st.inputs
            .iter()
            .filter(|(_, p)| p.is_file())
            .map(|(k, p)| (k.as_bytes()[0], p.clone())),
        false,
    );
    let (cluster, owners) = if st.network.is_some() {
        // A lab run's workers are reachable only from inside its network.
        (
            "in the run's lab network, not reachable from here".to_owned(),
            None,
        )
    } else {
        cluster_view(&st)
    };
    let owner = |k: &str| owners.as_ref().and_then(|o| o.get(k)).cloned();
    // Fault coverage as of the run record's last write (every ~10 s).
    let record = triage::record::RunRecord::read(&st.run_dir.join(triage::record::FILE)).ok();
    let (schedule, coverage) = record.map(|r| (r.schedule, r.coverage)).unwrap_or_default();
    if args.json {
        let procs: Vec<serde_json::Value> = st
            .processes
            .iter()
            .map(|(name, r)| {
                serde_json::json!({"name": name, "role": r.role, "pid": r.pid, "state": r.state(),
                    "restarts": r.starts.saturating_sub(1), "ports": r.ports,
                    "host": r.host.as_deref().unwrap_or("local")})
            })
            .collect();
        let keys: Vec<serde_json::Value> = feeders
            .iter()
            .map(|(k, f)| {
                let committed = verdict.as_ref().ok().and_then(|v| {
                    v.iter()
                        .find(|s| s.key == k.as_bytes()[0])
                        .map(|s| (s.committed_bytes, s.input_bytes))
                });
                let pct = committed
                    .filter(|c| c.1 > 0)
                    .map(|c| 100.0 * c.0 as f64 / c.1 as f64);
                serde_json::json!({"key": k, "owner": owner(k),
                    "acked": f.as_ref().and_then(|f| f.acked),
                    "done": f.as_ref().is_some_and(|f| f.done),
                    "committed": committed.map(|c| c.0), "input_bytes": committed.map(|c| c.1),
                    "done_pct": pct})
            })
            .collect();
        let verification = match &verdict {
            Ok(v) => match v.iter().find_map(|s| s.violation.as_ref()) {
                Some(viol) => serde_json::json!({"holds": false, "violation": viol.to_string()}),
                None => serde_json::json!({"holds": true}),
            },
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        let out = serde_json::json!({"run_id": st.run_id, "run_dir": st.run_dir, "profile": st.profile,
            "kind": if st.manual.is_some() { "manual" } else { "soak" },
            "members": st.members, "cluster": cluster, "processes": procs, "keys": keys,
            "verification": verification, "schedule": schedule, "coverage": coverage,
            "network": st.network.as_deref().unwrap_or("loopback")});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::from(exit::HOLDS));
    }
    println!(
        "Run {} ({}), profile {}",
        st.run_id,
        st.run_dir.display(),
        st.profile
    );
    println!(
        "\n{:<12} {:<10} {:>8} {:<8} {:>8} {:<10} PORTS",
        "PROCESS", "ROLE", "PID", "STATE", "RESTARTS", "HOST"
    );
    for (name, r) in &st.processes {
        let ports: Vec<String> = r.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<12} {:<10} {:>8} {:<8} {:>8} {:<10} {}",
            name,
            r.role,
            r.pid,
            r.state(),
            r.starts.saturating_sub(1),
            r.host.as_deref().unwrap_or("local"),
            ports.join(" ")
        );
    }
    println!("\nCluster: {cluster}");
    if let Some(net) = &st.network {
        // The processes live in the run's own PID namespace: their pids
        // above are the lab's, not this shell's (docs/network.md).
        println!("Network: {net} (pids are inside the lab's PID namespace)");
    }
    if !coverage.is_empty() {
        println!(
            "\nFaults ({} schedule):",
            schedule.as_deref().unwrap_or("?")
        );
        for (kind, c) in &coverage {
            println!("  {kind:<14} {}", c.describe());
        }
    }
    println!(
        "\n{:<4} {:<12} {:>12} {:>12} {:>12} {:>7}  FEEDER",
        "KEY", "OWNER", "COMMITTED", "ACKED", "INPUT", "DONE%"
    );
    for (k, f) in &feeders {
        let s = verdict
            .as_ref()
            .ok()
            .and_then(|v| v.iter().find(|s| s.key == k.as_bytes()[0]));
        let (committed, input, pct) = match s {
            Some(s) if s.input_bytes > 0 => (
                s.committed_bytes.to_string(),
                s.input_bytes.to_string(),
                format!(
                    "{:.1}%",
                    100.0 * s.committed_bytes as f64 / s.input_bytes as f64
                ),
            ),
            Some(s) => (s.committed_bytes.to_string(), "0".into(), "-".into()),
            // No input file yet (a manual run writes it when its feeder starts).
            None => ("-".into(), "-".into(), "-".into()),
        };
        let acked = f
            .as_ref()
            .and_then(|f| f.acked)
            .map_or("-".to_owned(), |a| a.to_string());
        let done = if f.as_ref().is_some_and(|f| f.done) {
            "done"
        } else {
            ""
        };
        let own = owner(k).unwrap_or_else(|| "-".into());
        println!("{k:<4} {own:<12} {committed:>12} {acked:>12} {input:>12} {pct:>7}  {done}");
    }
    match &verdict {
        Ok(v) => match v.iter().find_map(|s| s.violation.as_ref()) {
            Some(viol) => println!("\nVerification: VIOLATION\n{viol}"),
            None => println!(
                "\nVerification: holds (committed output of every key is a prefix of its input)"
            ),
        },
        Err(e) => println!("\nVerification: cannot run: {e}"),
    }
    Ok(ExitCode::from(exit::HOLDS))
}

/// What the initializer says, as one line, and which member owns which
/// key (only if the system reports it: the reference cluster does).
fn cluster_view(st: &RunState) -> (String, Option<BTreeMap<String, String>>) {
    let Some(init) = st
        .processes
        .get("initializer")
        .and_then(|r| r.ports.get("external"))
    else {
        return ("no initializer".into(), None);
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *init));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (format!("cannot query: {e}"), None),
    };
    match rt.block_on(crate::run::query::cluster_status(
        addr,
        Duration::from_secs(1),
    )) {
        Ok(crate::run::query::Status::Cluster(s)) => (
            format!(
                "initializer says {} workers {:?}, processing_messages={}",
                s.worker_count, s.worker_names, s.processing_messages
            ),
            s.key_owners,
        ),
        Ok(crate::run::query::Status::NotInitialized) => {
            ("initializer says: not yet initialized".into(), None)
        }
        Err(e) => (format!("initializer does not answer ({e})"), None),
    }
}

/// `crasher reset`: stop every process of the run and remove its state and
/// output (input files are kept).
pub fn reset(args: ResetArgs) -> anyhow::Result<ExitCode> {
    let st = args.run.load()?;
    let _lock = crate::run::state::lock(&st.run_dir)
        .with_context(|| format!("cannot lock {}", st.run_dir.display()))?;
    println!(
        "WARNING: all state and output of run {} in {} is deleted",
        st.run_id,
        st.run_dir.display()
    );
    let killed = stop_run(&st);
    for sub in ["sink", "logs", "state"] {
        let p = st.run_dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        }
        std::fs::create_dir_all(&p)?;
    }
    for f in [
        "paused.json",
        "state.json",
        crate::run::state::PROFILE_FILE,
        "run.log",
        triage::record::FILE,
        triage::record::EVENTS_FILE,
        crate::soak::diskfull::RESERVE_FILE,
    ] {
        let _ = std::fs::remove_file(st.run_dir.join(f));
    }
    println!("Stopped {killed} process(es); removed sink output, logs and worker state.");
    Ok(ExitCode::from(exit::HOLDS))
}

/// Stops the run's supervisor (which tears its children down) and then
/// SIGKILLs whatever of the run is left. Returns how many distinct
/// processes it signalled.
pub fn stop_run(st: &RunState) -> usize {
    let mut signalled = std::collections::BTreeSet::new();
    if let Some(sup) = st
        .processes
        .get("supervisor")
        .filter(|r| r.alive() && r.pid != std::process::id())
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(sup.pid as i32), Signal::SIGCONT);
        let _ = nix::sys::signal::kill(Pid::from_raw(sup.pid as i32), Signal::SIGTERM);
        signalled.insert(sup.pid);
        procs::wait_until(Instant::now() + Duration::from_secs(5), || !sup.alive());
    }
    for (name, r) in &st.processes {
        if name != "supervisor" && r.alive() && procs::belongs_to_run(r.pid, &st.run_id) {
            let _ = killpg(Pid::from_raw(r.pid as i32), Signal::SIGCONT);
            let _ = killpg(Pid::from_raw(r.pid as i32), Signal::SIGKILL);
            signalled.insert(r.pid);
        }
    }
    for pid in procs::processes_of_run(&st.run_id) {
        if pid != std::process::id() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            signalled.insert(pid);
        }
    }
    procs::wait_until(Instant::now() + Duration::from_secs(5), || {
        procs::processes_of_run(&st.run_id).is_empty()
    });
    signalled.len()
}

/// `crasher verify --run RUN_DIR`: every key of a run, checked in one pass
/// over its sink's files, against `--mode` or the run profile's
/// `verify_mode`.
pub fn verify_run(args: verify::cli::VerifyArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.run.clone() else {
        return verify::cli::run_verify(args);
    };
    if !dir.join(crate::run::state::FILE).is_file() {
        eprintln!("crasher verify: {}", NoRun { dir });
        return Ok(ExitCode::from(exit::USAGE));
    }
    let st = RunState::read(&dir)?;
    let mode = match args.mode {
        Some(m) => m,
        None => match crate::run::profile::Profile::load(
            st.profile.strip_prefix("builtin:").unwrap_or(&st.profile),
        ) {
            Ok(p) => p.verify_mode.check_mode(),
            Err(e) => {
                eprintln!(
                    "crasher verify: the run's profile {} cannot be read ({e}); give --mode",
                    st.profile
                );
                return Ok(ExitCode::from(exit::USAGE));
            }
        },
    };
    let inputs: Vec<(u8, PathBuf)> = st
        .inputs
        .iter()
        .filter_map(|(k, p)| Some((*k.as_bytes().first()?, p.clone())))
        .collect();
    let opts = verify::check::CheckOptions {
        complete: args.complete,
        mode,
        missing_grace: args.missing_grace,
        now: None,
    };
    verify::cli::verify_keys(
        &format!("run {}", st.run_id),
        &dir.join("sink"),
        inputs,
        &opts,
        args.json,
    )
}
