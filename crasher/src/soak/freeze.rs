//! Pause-the-world, in one place: at a violation (with `--on-failure
//! pause`, the default) every process of the run is stopped with SIGSTOP
//! the moment the violation is decided, then crasher waits until each is
//! seen stopped, writes the manifest (`paused.json`: who, where, why, how
//! to resume or kill) and tells the person at the terminal what to do.
//!
//! The stop goes through the process-group registry
//! ([`crate::run::cluster::signal_registered`]), not through the cluster:
//! the code that found the violation may be in the middle of a cluster
//! operation, and no lock is needed to stop the world.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::args::SoakArgs;
use super::harness::Harness;

/// Stops every registered process group of the run (synchronous, lock-free).
pub fn stop_the_world() {
    crate::run::cluster::signal_registered(Signal::SIGSTOP);
}

/// After [`stop_the_world`]: waits until every process is seen stopped,
/// writes the manifest and prints how to go on. Returns nothing; the
/// caller then waits for the person's Ctrl-C or SIGTERM.
pub async fn report(h: &Harness, args: &SoakArgs, check: &str, diagnosis: &str, decided: Instant) {
    let stopped_ms = tokio::task::block_in_place(|| wait_all_stopped(decided));
    h.out.line_as("pause", "Pause the world!");
    match write_manifest(h, args, check, diagnosis, stopped_ms).await {
        Ok(p) => h.out.line(&format!(
            "Every process of the run is stopped (SIGSTOP, {stopped_ms:.1} ms after detection). Manifest: {}\n\
             Attach a debugger now (pids in the manifest). Ctrl-C or SIGTERM here kills them all and exits 1.",
            p.display()
        )),
        Err(e) => h.out.line(&format!("cannot write the pause manifest: {e}")),
    }
}

/// Waits (briefly) until every process of the run is in the stopped state
/// and returns the milliseconds from detection to the last one stopping.
pub fn wait_all_stopped(decided: Instant) -> f64 {
    let pids: Vec<i32> = crate::run::cluster::registered();
    procs::wait_until(Instant::now() + Duration::from_secs(2), || {
        pids.iter()
            .all(|&pid| procs::stat::stat(pid as u32).map_or(true, |s| s.stopped() || s.dead()))
    });
    decided.elapsed().as_secs_f64() * 1000.0
}

/// Writes `paused.json`: who is stopped, where, why, and how to go on.
pub async fn write_manifest(
    h: &Harness,
    args: &SoakArgs,
    check: &str,
    diagnosis: &str,
    stopped_ms: f64,
) -> std::io::Result<PathBuf> {
    let (processes, pgids, sink) = h
        .cluster(|c| {
            let processes: Vec<serde_json::Value> = c
                .processes()
                .into_iter()
                .map(|(role, name, pid)| {
                    let ports = super::spec::worker_index(&name).map(|i| c.worker_ports(i));
                    serde_json::json!({"role": role, "name": name, "pid": pid, "pgid": pid, "ports": ports})
                })
                .collect();
            let pgids: Vec<String> = c.processes().iter().map(|p| format!("-{}", p.2)).collect();
            (processes, pgids, c.sink_addr())
        })
        .await;
    let run = h.run_dir();
    let manifest = serde_json::json!({
        "run_id": run.id(),
        "run_dir": run.root(),
        "seed": h.seed,
        "args": args.words,
        "profile": h.profile().origin,
        "check": check,
        "diagnosis": diagnosis,
        "stopped_ms_after_detection": stopped_ms,
        "last_glyphs": h.out.tail(),
        "sink": sink,
        "processes": processes,
        "resume": format!("kill -CONT -- {}", pgids.join(" ")),
        "kill": format!("kill -KILL -- {}", pgids.join(" ")),
        "crasher_pid": std::process::id(),
    });
    let path = run.pause_manifest();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    Ok(path)
}
