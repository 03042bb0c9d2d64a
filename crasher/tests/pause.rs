//! The default failure mode, `--on-failure pause`, end to end: at a
//! violation every process of the run is stopped (SIGSTOP) and described in
//! `paused.json`; Ctrl-C then kills them all and exits 1.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{crasher, run_id};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills crasher and, whatever happened, every process of its run.
struct RunGuard {
    child: Child,
    run_id: Option<String>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(id) = &self.run_id {
            for pid in procs::processes_of_run(id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

fn wait_for_file(path: &Path, limit: Duration, log: &Path) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                if v.is_object() {
                    return t;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {limit:?}; output:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a soak with the default failure mode and waits for its pause:
/// checks `paused.json` names every process of the run and every one is
/// stopped, then Ctrl-C must exit 1 leaving nothing behind.
fn pauses_cleanly(args: &[&str], profile: Option<&Path>) {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("out");
    let mut cmd = crasher();
    cmd.args(args)
        .arg("--runs")
        .arg(t.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null());
    if let Some(p) = profile {
        cmd.arg("--env").arg(p);
    }
    let mut g = RunGuard {
        child: cmd.spawn().unwrap(),
        run_id: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(id) = run_id(&std::fs::read_to_string(&log).unwrap_or_default()) {
            break id;
        }
        assert!(Instant::now() < deadline, "no run id");
        std::thread::sleep(Duration::from_millis(20));
    };
    g.run_id = Some(id.clone());
    let manifest: PathBuf = t.path().join(&id).join("paused.json");
    let text = wait_for_file(&manifest, Duration::from_secs(90), &log);
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Every process of the run is in a process group the manifest names
    // (a wrapper's child shares its leader's group), and is stopped.
    let groups: Vec<u32> = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pgid"].as_u64().unwrap() as u32)
        .collect();
    let of_run = procs::processes_of_run(&id);
    assert!(!of_run.is_empty());
    for pid in &of_run {
        let Some(st) = procs::stat::stat(*pid) else {
            continue; // gone since it was listed
        };
        assert!(
            groups.contains(&st.pgrp),
            "pid {pid} (group {}) of the run is not in paused.json: {text}",
            st.pgrp
        );
        assert!(
            st.stopped() || st.dead(),
            "pid {pid} is in state {}, not stopped; manifest:\n{text}",
            st.state
        );
    }
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "crasher must wait for a person"
    );
    kill(Pid::from_raw(g.child.id() as i32), Signal::SIGINT).unwrap();
    let status = g.child.wait().unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("Pause the world!"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !procs::processes_of_run(&id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        procs::processes_of_run(&id).is_empty(),
        "processes of run {id} survived"
    );
}

#[test]
fn a_violation_pauses_the_world_and_ctrl_c_ends_it() {
    pauses_cleanly(
        &[
            "2",
            "crash1",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--inject",
            "duplicate-on-replay",
            "--timing",
            "crash_worker_start=1",
        ],
        None,
    );
}

/// The sink dies by itself (a wrapper kills it after 1.2 s) while the
/// crash-sink loop runs: whichever notices first, the world is paused
/// cleanly (this deadlocked when the crash-sink loop held the cluster's
/// lock while reporting).
#[test]
fn a_sink_that_dies_by_itself_under_crash_sink_pauses_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../env/passthrough.toml"
    ))
    .unwrap();
    let (head, rest) = base.split_once("[sink]").unwrap();
    let after = rest.split_once("[feeder]").unwrap().1;
    let profile = format!(
        "{head}[sink]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"exec timeout -s KILL 1.2 \\\"$0\\\" sink --listen {{sink}} --output {{sink_prefix}}\", \"{{crasher}}\"]\n\n[feeder]{after}"
    );
    let p = t.path().join("dying-sink.toml");
    std::fs::write(&p, profile).unwrap();
    pauses_cleanly(
        &[
            "2",
            "crash-sink",
            "--keys",
            "A",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--schedule",
            "overlapping",
            "--timing",
            "crash_sink_start=0.5,crash_sink_gap_min=1,crash_sink_gap_max=1.6,crash_sink_down=0.1",
        ],
        Some(&p),
    );
}
