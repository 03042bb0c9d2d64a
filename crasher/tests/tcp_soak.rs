//! A TCP mode soak end to end: `crasher 2 crash1 crash-sink --env tcp`
//! runs the built-in `tcp` profile (`crasher passthrough --source tcp
//! --sink tcp` workers, `crasher blast` feeders, `crasher receive` as the
//! sink) for a fixed duration, says that it verifies no data, holds when
//! the receiver kept receiving, and leaves no process of the run behind.

use std::process::Command;

/// Timings that make faults frequent enough for a short test.
const FAST: &str =
    "crash_sink_gap_min=2,crash_sink_gap_max=4,crash_worker_start=1,crash_sink_start=1";

#[test]
fn tcp_mode_soak_with_crash1_and_crash_sink_holds() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crasher"))
        .env_remove("CRASHER_ENV")
        .env("CRASHER_LOG", "warn")
        .args([
            "2",
            "crash1",
            "crash-sink",
            "--env",
            "tcp",
            "--duration",
            "15s",
        ])
        .args([
            "--on-failure",
            "kill",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "200000",
        ])
        .args(["--timing", FAST, "--runs"])
        .arg(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{stdout}\n{stderr}"))
        .to_owned();
    let left = procs::processes_of_run(&id);
    assert!(left.is_empty(), "processes of run {id} survived: {left:?}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    assert!(stdout.contains("profile: tcp (builtin:tcp)"), "{stdout}");
    assert!(stdout.contains("NO RUN: run_ack_progress_loop"), "{stdout}");
    assert!(
        stdout.contains("NO RUN: run_registry_progress_loop"),
        "{stdout}"
    );
    assert!(
        stdout.contains("TCP mode: no data verification"),
        "the run must say it verifies no data:\n{stdout}"
    );
    assert!(!stdout.contains("Verified so far"), "{stdout}");
    for glyph in ["c1", "r1", "cS", "rS"] {
        assert!(stdout.contains(glyph), "no {glyph}:\n{stdout}");
    }
    assert!(
        stdout.contains("Duration reached with no violation (TCP mode"),
        "{stdout}"
    );

    // The figure printed is the receiver's output file (which may still
    // have grown a little during the teardown), and it is not empty.
    let received: u64 = stdout
        .split_once("the receiver got ")
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no received-bytes figure in:\n{stdout}"));
    assert!(received > 0, "{stdout}");
    let output = t.path().join(&id).join("sink/output");
    assert!(std::fs::metadata(&output).unwrap().len() >= received);
    // The workers ran in TCP mode and their sinks reached the receiver.
    let log = std::fs::read_to_string(t.path().join(&id).join("logs/initializer.log")).unwrap();
    assert!(log.contains("TCP mode: plain TCP source"), "{log}");
    assert!(log.contains("connected to the receiver"), "{log}");
}
