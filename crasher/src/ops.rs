//! Commands that act on an existing run from any shell: `crasher status`
//! and `crasher reset`. They find the run through its `state.json`
//! (default: `crasher-runs/current`) and identify its processes by pid,
//! start time and `CRASHER_RUN_ID`, never by name.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::exit;
use crate::soak::state::RunState;

/// Which run a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct RunSel {
    /// The run directory (default: RUNS/current).
    #[arg(long, env = "CRASHER_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Where runs live.
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
}

impl RunSel {
    fn dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(|| self.runs.join("current"))
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

/// `crasher status`: the run at a glance.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = args.run.dir();
    let st = RunState::read(&dir)?;
    let feeders: Vec<(String, Option<feeders::status::FeedStatus>)> = st
        .inputs
        .keys()
        .map(|k| {
            let p = st.run_dir.join(format!("logs/feeder.{k}.status"));
            (k.clone(), feeders::status::FeedStatus::read(&p).ok())
        })
        .collect();
    let verdict = verify::check::check_keys(
        &st.run_dir.join("sink"),
        st.inputs.iter().map(|(k, p)| (k.as_bytes()[0], p.clone())),
        false,
    );
    let cluster = cluster_view(&st);
    if args.json {
        let procs: Vec<serde_json::Value> = st
            .processes
            .iter()
            .map(|(name, r)| {
                serde_json::json!({"name": name, "role": r.role, "pid": r.pid, "state": r.state(),
                    "restarts": r.starts.saturating_sub(1), "ports": r.ports})
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
                serde_json::json!({"key": k, "acked": f.as_ref().and_then(|f| f.acked),
                    "done": f.as_ref().is_some_and(|f| f.done),
                    "committed": committed.map(|c| c.0), "input_bytes": committed.map(|c| c.1)})
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
            "members": st.members, "cluster": cluster, "processes": procs, "keys": keys,
            "verification": verification});
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
        "\n{:<12} {:<10} {:>8} {:<8} {:>8}  PORTS",
        "PROCESS", "ROLE", "PID", "STATE", "RESTARTS"
    );
    for (name, r) in &st.processes {
        let ports: Vec<String> = r.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<12} {:<10} {:>8} {:<8} {:>8}  {}",
            name,
            r.role,
            r.pid,
            r.state(),
            r.starts.saturating_sub(1),
            ports.join(" ")
        );
    }
    println!("\nCluster: {cluster}");
    println!(
        "\n{:<4} {:>12} {:>12} {:>12} {:>7}  FEEDER",
        "KEY", "COMMITTED", "ACKED", "INPUT", "DONE%"
    );
    for (k, f) in &feeders {
        let s = verdict
            .as_ref()
            .ok()
            .and_then(|v| v.iter().find(|s| s.key == k.as_bytes()[0]));
        let (committed, input) = s.map_or((0, 0), |s| (s.committed_bytes, s.input_bytes));
        let pct = if input == 0 {
            0.0
        } else {
            100.0 * committed as f64 / input as f64
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
        println!("{k:<4} {committed:>12} {acked:>12} {input:>12} {pct:>6.1}%  {done}");
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

fn cluster_view(st: &RunState) -> String {
    let Some(init) = st
        .processes
        .get("initializer")
        .and_then(|r| r.ports.get("external"))
    else {
        return "no initializer".into();
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *init));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return format!("cannot query: {e}"),
    };
    match rt.block_on(crate::soak::query::cluster_status(
        addr,
        Duration::from_secs(1),
    )) {
        Ok(crate::soak::query::Status::Cluster(s)) => format!(
            "initializer says {} workers {:?}, processing_messages={}",
            s.worker_count, s.worker_names, s.processing_messages
        ),
        Ok(crate::soak::query::Status::NotInitialized) => {
            "initializer says: not yet initialized".into()
        }
        Err(e) => format!("initializer does not answer ({e})"),
    }
}

/// `crasher reset`: stop every process of the run and remove its state and
/// output (input files are kept).
pub fn reset(args: ResetArgs) -> anyhow::Result<ExitCode> {
    let dir = args.run.dir();
    let st = RunState::read(&dir)?;
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
    for f in ["paused.json", "state.json"] {
        let _ = std::fs::remove_file(st.run_dir.join(f));
    }
    println!("Stopped {killed} process(es); removed sink output, logs and worker state.");
    Ok(ExitCode::from(exit::HOLDS))
}

/// Stops the run's supervisor (which tears its children down) and then
/// SIGKILLs whatever of the run is left. Returns how many processes it signalled.
pub fn stop_run(st: &RunState) -> usize {
    let mut n = 0;
    if let Some(sup) = st
        .processes
        .get("supervisor")
        .filter(|r| r.alive() && r.pid != std::process::id())
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(sup.pid as i32), Signal::SIGCONT);
        let _ = nix::sys::signal::kill(Pid::from_raw(sup.pid as i32), Signal::SIGTERM);
        n += 1;
        procs::wait_until(Instant::now() + Duration::from_secs(5), || !sup.alive());
    }
    for (name, r) in &st.processes {
        if name != "supervisor" && r.alive() && procs::belongs_to_run(r.pid, &st.run_id) {
            let _ = killpg(Pid::from_raw(r.pid as i32), Signal::SIGCONT);
            let _ = killpg(Pid::from_raw(r.pid as i32), Signal::SIGKILL);
            n += 1;
        }
    }
    for pid in procs::processes_of_run(&st.run_id) {
        if pid != std::process::id() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            n += 1;
        }
    }
    procs::wait_until(Instant::now() + Duration::from_secs(5), || {
        procs::processes_of_run(&st.run_id).is_empty()
    });
    n
}
