//! End-to-end soaks of the reference cluster through the `crasher` binary.
//!
//! Each test runs a real soak (sink, passthrough workers, feeders) in a
//! temporary runs folder with small inputs and short loop timings, then
//! checks the exit code, the transcript, and that no process carrying the
//! run's `CRASHER_RUN_ID` survives.

mod common;

use common::{crasher, run_id, saw};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// Timings that make faults frequent enough for a short test.
const FAST: &str =
    "crash_sink_gap_min=2,crash_sink_gap_max=4,crash_worker_start=1,crash_sink_start=1,\
ack_progress_period=20,registry_progress_period=5,grow_start=1";

fn soak(runs: &Path, args: &[&str]) -> (Output, String) {
    let mut all = args.to_vec();
    all.extend(["--keys", "A,B,C", "--timing", FAST]);
    soak_as_given(runs, &all)
}

/// Runs a soak with exactly `args` (plus `--runs` and `--on-failure kill`).
fn soak_as_given(runs: &Path, args: &[&str]) -> (Output, String) {
    let (out, stdout, _) = common::soak(runs, args);
    (out, stdout)
}

/// Runs a soak that must hold (exit 0) and returns its stdout and the
/// glyphs of its events ([`common::fault_glyphs`]).
fn holds(args: &[&str]) -> (String, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout) = soak(t.path(), args);
    assert_eq!(
        code(&out),
        0,
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let glyphs = common::fault_glyphs(&stdout);
    (stdout, glyphs)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn crash_worker_and_crash_sink_reach_eof_success() {
    // Slow enough that both faults fire and are observed before EOF (a
    // requested fault never observed makes the verdict unknown).
    let (stdout, g) = holds(&[
        "2",
        "crash0",
        "crash-sink",
        "--input-bytes",
        "100000",
        "--rate",
        "25000",
        "--duration",
        "120s",
    ]);
    assert!(
        stdout.contains("SANITY LOOP SUCCESS: EOF found!"),
        "{stdout}"
    );
    assert!(saw(&g, "c0") && saw(&g, "cS"), "{stdout}");
}

#[test]
fn four_workers_crash1_grow_holds_for_a_while() {
    let (stdout, g) = holds(&[
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
    assert!(saw(&g, "c1") && saw(&g, "r1"), "{stdout}");
    assert!(stdout.contains("Join worker4."), "{stdout}");
}

/// Shrinks go through the initializer: crashing it must not turn a shrink
/// into a false violation.
#[test]
fn grow_and_shrink_with_initializer_crashes_holds() {
    let (stdout, g) = holds(&[
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
    assert!(saw(&g, "c0") && saw(&g, "r0"), "{stdout}");
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

/// Issue 19's reference bug: lines in flight at a sink disconnect are
/// skipped when the sink comes back, if the worker stays up until its next
/// commit. With `crash-sink` alone nothing hides it.
#[test]
fn injected_lose_on_sink_reconnect_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout) = soak_as_given(
        t.path(),
        &[
            "2",
            "crash-sink",
            "--keys",
            "A,B",
            "--input-bytes",
            "400000",
            "--inject",
            "lose-on-sink-reconnect",
            "--duration",
            "60s",
        ],
    );
    assert_eq!(code(&out), 1, "not caught:\n{stdout}");
    assert!(
        stdout.contains("VIOLATION (sanity)") && stdout.contains("missing"),
        "wrong check:\n{stdout}"
    );
}

fn por_original_profile() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../env/passthrough-por-original.toml")
        .display()
        .to_string()
}

/// A sink answering NOTIFY as the original (0 after its restart) catches
/// a worker that resumes from the sink's point of reference: it resends
/// from 0 and the sink stops on the duplicate.
#[test]
fn original_por_sink_catches_a_worker_trusting_the_por() {
    let t = tempfile::tempdir().unwrap();
    let profile = por_original_profile();
    let (out, stdout) = soak_as_given(
        t.path(),
        &[
            "2",
            "crash-sink",
            "--env",
            &profile,
            "--keys",
            "A,B",
            "--input-bytes",
            "400000",
            "--inject",
            "trust-sink-por",
            "--duration",
            "60s",
        ],
    );
    assert_eq!(code(&out), 1, "not caught:\n{stdout}");
    // The sanity loop sees the sink's FATAL line, or the monitor its exit
    // 66 first (with the same line among the last of its log).
    assert!(
        (stdout.contains("VIOLATION (sanity)") || stdout.contains("VIOLATION (process-death)"))
            && stdout.contains("FATAL duplicate data"),
        "wrong check:\n{stdout}"
    );
}

/// The reference cluster holds against that sink: it resumes from its own
/// record after sink and worker crashes.
#[test]
fn original_por_sink_holds_with_worker_and_sink_crashes() {
    let profile = por_original_profile();
    let (stdout, g) = holds(&[
        "2",
        "crash1",
        "crash-sink",
        "--env",
        &profile,
        "--input-bytes",
        "1000000",
        "--rate",
        "100000",
        "--duration",
        "30s",
    ]);
    assert!(saw(&g, "cS") && saw(&g, "c1"), "{stdout}");
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
        "liveness: ack-progress",
    );
}

/// A key that stops committing while crasher leaves the cluster alone is a
/// liveness violation of its own (not "no violation" at the end of a timed
/// run): the restarted worker stalls, the schedule holds the next fault
/// back until the crash is observed, and 8 s of quiet time pass.
#[test]
fn a_key_that_stops_committing_is_a_commit_progress_violation() {
    injected(
        "stall-after-restart",
        &["2", "crash1", "--timing", "commit_stall=8"],
        "liveness: commit-progress",
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

/// A feeder that cannot run (here: its status file's directory does not
/// exist, the mistake that first hit feeders placed on a host) fails at
/// each start. The run says it cannot judge the cluster (exit 3, naming
/// the feeder and its last log lines) instead of reporting the missing
/// acks as the cluster's liveness violation.
#[test]
fn a_feeder_that_cannot_run_makes_the_verdict_unknown() {
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = std::fs::read_to_string(root.join("env/passthrough.toml"))
        .unwrap()
        .replace(
            "\"--status-file\", \"{status}\"",
            "\"--status-file\", \"{status}.missing/status\"",
        );
    assert!(profile.contains(".missing/status"));
    let env = t.path().join("broken-feeder.toml");
    std::fs::write(&env, profile).unwrap();
    let started = Instant::now();
    let (out, stdout) = soak_as_given(
        t.path(),
        &[
            "2",
            "--env",
            env.to_str().unwrap(),
            "--keys",
            "A",
            "--duration",
            "120s",
            "--timing",
            "ack_progress_period=60",
        ],
    );
    assert_eq!(code(&out), 3, "{stdout}");
    assert!(
        stdout.contains("Verdict unknown: feeder.A failed 10 times in a row"),
        "{stdout}"
    );
    assert!(stdout.contains("status file"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(60), "{stdout}");
}
