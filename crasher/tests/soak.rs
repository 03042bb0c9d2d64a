//! End-to-end soaks of the reference cluster through the `crasher` binary.
//!
//! Each test runs a real soak (sink, passthrough workers, feeders) in a
//! temporary runs folder with small inputs and short loop timings, then
//! checks the exit code, the transcript, and that no process carrying the
//! run's `CRASHER_RUN_ID` survives.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    c.env_remove("CRASHER_ENV").env("CRASHER_LOG", "warn");
    c
}

/// Timings that make faults frequent enough for a short test.
const FAST: &str =
    "crash_sink_gap_min=2,crash_sink_gap_max=4,crash_worker_start=1,crash_sink_start=1,\
ack_progress_period=20,registry_progress_period=5,grow_start=1";

fn run_id(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        l.strip_prefix("Run ")?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    })
}

fn soak(runs: &Path, args: &[&str]) -> (Output, String) {
    let out = crasher()
        .args(args)
        .arg("--runs")
        .arg(runs)
        .args(["--on-failure", "kill", "--keys", "A,B,C", "--timing", FAST])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = run_id(&stdout).unwrap_or_else(|| {
        panic!(
            "no run id in:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let left = procs::processes_of_run(&id);
    assert!(left.is_empty(), "processes of run {id} survived: {left:?}");
    (out, stdout)
}

/// Runs a soak that must hold (exit 0) and returns its stdout.
fn holds(args: &[&str]) -> String {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout) = soak(t.path(), args);
    assert_eq!(
        code(&out),
        0,
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn crash_worker_and_crash_sink_reach_eof_success() {
    let stdout = holds(&[
        "2",
        "crash0",
        "crash-sink",
        "--input-bytes",
        "200000",
        "--rate",
        "0",
        "--duration",
        "120s",
    ]);
    assert!(
        stdout.contains("SANITY LOOP SUCCESS: EOF found!"),
        "{stdout}"
    );
}

#[test]
fn four_workers_crash1_grow_holds_for_a_while() {
    let stdout = holds(&[
        "4",
        "crash1",
        "grow",
        "--input-bytes",
        "2000000",
        "--rate",
        "200000",
        "--duration",
        "30s",
    ]);
    assert!(stdout.contains("c1") && stdout.contains("r1"), "{stdout}");
    assert!(stdout.contains("Join worker4."), "{stdout}");
}

/// Shrinks go through the initializer: crashing it must not turn a shrink
/// into a false violation.
#[test]
fn grow_and_shrink_with_initializer_crashes_holds() {
    let stdout = holds(&[
        "3",
        "grow-and-shrink",
        "crash0",
        "--input-bytes",
        "4000000",
        "--rate",
        "100000",
        "--duration",
        "30s",
    ]);
    assert!(stdout.contains("c0") && stdout.contains("r0"), "{stdout}");
    assert!(stdout.contains("Shrink worker"), "{stdout}");
}

fn injected(bug: &str, words: &[&str], expect_check: &str) {
    let t = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = words.to_vec();
    args.extend([
        "--input-bytes",
        "4000000",
        "--rate",
        "100000",
        "--duration",
        "90s",
        "--inject",
        bug,
    ]);
    let (out, stdout) = soak(t.path(), &args);
    assert_eq!(code(&out), 1, "bug {bug} was not caught:\n{stdout}");
    assert!(
        stdout.contains(&format!("VIOLATION ({expect_check})")),
        "bug {bug}: wrong check:\n{stdout}"
    );
}

#[test]
fn injected_drop_after_recovery_is_caught() {
    injected("drop-after-recovery", &["2", "crash1"], "sanity");
}

#[test]
fn injected_duplicate_on_replay_is_caught() {
    injected("duplicate-on-replay", &["2", "crash1"], "sanity");
}

#[test]
fn injected_die_randomly_is_caught() {
    injected("die-randomly", &["2"], "process-death");
}

#[test]
fn injected_reorder_on_migrate_is_caught() {
    injected("reorder-on-migrate", &["2", "grow"], "sanity");
}

#[test]
fn injected_lose_on_shrink_is_caught() {
    injected("lose-on-shrink", &["3", "shrink"], "sanity");
}

#[test]
fn injected_ack_before_commit_is_caught() {
    injected("ack-before-commit", &["2", "crash1"], "sanity");
}

#[test]
fn injected_stall_after_restart_is_caught() {
    injected(
        "stall-after-restart",
        &[
            "2",
            "crash1.slow",
            "--timing",
            "crash_worker_slow_iterations=2",
        ],
        "ack-progress",
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["0"],
        &["2", "crashX"],
        &["2", "--env", "/nonexistent.toml"],
    ] {
        let out = crasher().args(args).output().unwrap();
        assert_eq!(
            code(&out),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn wait_for(path: &Path, what: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what:?} not seen in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt_leaves_nothing(sig: nix::sys::signal::Signal) {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("out");
    let child = crasher()
        .args([
            "2",
            "crash1",
            "--keys",
            "A",
            "--input-bytes",
            "400000",
            "--on-failure",
            "kill",
            "--runs",
        ])
        .arg(t.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let text = wait_for(&log, "Done, yay", Duration::from_secs(60));
    let id = run_id(&text).unwrap();
    assert!(!procs::processes_of_run(&id).is_empty());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard.0.id() as i32), sig).unwrap();
    let status = guard.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !procs::processes_of_run(&id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        procs::processes_of_run(&id).is_empty(),
        "processes of run {id} survived {sig}"
    );
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    interrupt_leaves_nothing(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_leaves_no_process_behind() {
    interrupt_leaves_nothing(nix::sys::signal::Signal::SIGTERM);
}
