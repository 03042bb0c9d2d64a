//! Every way crasher can be stopped leaves nothing running and keeps the
//! evidence (issue 12, items 5 and 6): SIGHUP and SIGQUIT tear down like
//! SIGTERM; a SIGKILLed supervisor's children die with it
//! (`PR_SET_PDEATHSIG`) and its run record still has every event (the
//! append-only `run.events`); `crasher stop` stops a run and keeps its files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Soak {
    child: Child,
    out: PathBuf,
    _t: tempfile::TempDir,
}

impl Drop for Soak {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Soak {
    /// `crasher ARGS` on one small key, `--on-failure kill`.
    fn start(args: &[&str]) -> Soak {
        Soak::start_with(args, &[], true)
    }

    /// `crasher ARGS` on one small key with `env` set; `kill`: with
    /// `--on-failure kill` (else the default, pause).
    fn start_with(args: &[&str], env: &[(&str, &str)], kill: bool) -> Soak {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("soak.out");
        let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
        for v in [
            "CRASHER_ENV",
            "CRASHER_RUN_DIR",
            "CRASHER_KEYS",
            "CRASHER_TIMINGS",
        ] {
            c.env_remove(v);
        }
        c.env("CRASHER_LOG", "warn")
            .envs(env.iter().copied())
            .args(args)
            .args(["--keys", "A", "--input-bytes", "400000", "--rate", "20000"]);
        if kill {
            c.args(["--on-failure", "kill"]);
        }
        let child = c
            .arg("--runs")
            .arg(t.path())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Soak { child, out, _t: t }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_for(&mut self, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let text = self.stdout();
            if what(&text) {
                return text;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "ended:\n{text}");
            assert!(Instant::now() < deadline, "not seen in:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn run_id(&self) -> String {
        let text = self.stdout();
        text.lines()
            .find_map(|l| l.strip_prefix("Run ")?.split_whitespace().next())
            .unwrap()
            .to_owned()
    }

    fn run_dir(&self) -> PathBuf {
        let text = self.stdout();
        let line = text.lines().find(|l| l.starts_with("Run ")).unwrap();
        PathBuf::from(line.split(" in ").nth(1).unwrap())
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "did not exit:\n{}",
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn none_left(id: &str) -> bool {
    procs::wait_until(Instant::now() + Duration::from_secs(5), || {
        procs::processes_of_run(id).is_empty()
    })
}

fn kill_leftovers(id: &str) {
    for pid in procs::processes_of_run(id) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

fn signal_tears_down(sig: i32) {
    let mut s = Soak::start(&["2", "--duration", "60s"]);
    s.wait_for(|t| t.contains("Done, yay"));
    let id = s.run_id();
    assert!(!procs::processes_of_run(&id).is_empty());
    // kill(1), since nix's Signal has no real-time signals.
    let sent = Command::new("kill")
        .args([format!("-{sig}"), s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let code = s.wait_exit();
    let ok = none_left(&id);
    kill_leftovers(&id);
    assert!(ok, "processes of run {id} survived signal {sig}");
    assert_eq!(code, Some(3), "{}", s.stdout());
    assert!(s.stdout().contains("Interrupted"), "{}", s.stdout());
    let record = std::fs::read_to_string(s.run_dir().join("run.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(
        record["verdict"], "unknown",
        "run.json after signal {sig}: {record}"
    );
}

#[test]
fn sighup_tears_down_like_sigterm() {
    signal_tears_down(libc::SIGHUP);
}

#[test]
fn sigquit_tears_down_like_sigterm() {
    signal_tears_down(libc::SIGQUIT);
}

#[test]
fn sigusr1_tears_down_like_sigterm() {
    signal_tears_down(libc::SIGUSR1);
}

#[test]
fn a_real_time_signal_tears_down_like_sigterm() {
    signal_tears_down(libc::SIGRTMIN() + 3);
}

fn count(text: &str, glyph: &str) -> usize {
    text.split_once("Done, yay ... waiting")
        .map_or(0, |(_, glyphs)| glyphs.matches(glyph).count())
}

#[test]
fn a_sigkilled_supervisor_takes_its_children_and_keeps_every_event() {
    let mut s = Soak::start(&[
        "2",
        "crash1",
        "--duration",
        "60s",
        "--timing",
        "crash_worker_start=0.2,crash_worker_before=0.3,crash_worker_down=0.3",
    ]);
    s.wait_for(|t| count(t, "r1") >= 2);
    let id = s.run_id();
    kill(Pid::from_raw(s.child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = s.child.wait();
    let ok = none_left(&id);
    kill_leftovers(&id);

    let printed = s.stdout();
    let crashes = count(&printed, "c1");
    let rec = triage::record::RunRecord::read(&s.run_dir().join("run.json")).unwrap();
    let recorded = rec.events.iter().filter(|e| e.kind == "crash").count();
    // At most the event being written at the kill can be missing.
    assert!(
        recorded + 1 >= crashes && recorded >= 2,
        "{recorded} crash events recorded, {crashes} printed:\n{printed}"
    );
    // Triage builds its fault timeline from every one of those events.
    let o = Command::new(env!("CARGO_BIN_EXE_crasher"))
        .arg("triage")
        .arg(s.run_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    let n: usize = report
        .split_once("harness timeline: run.json, ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(n, rec.events.len(), "{report}");
    // With every crash on record, the feeders' RESTARTs and the cluster's
    // rollbacks after each crash are expected echoes, not evidence (with
    // only the events of the last 10 s snapshot they used to be evidence).
    assert!(
        !report.contains("failure evidence:"),
        "expected echoes of recorded faults counted as evidence:\n{report}"
    );
    assert_eq!(o.status.code(), Some(0), "{report}");
    assert!(
        ok,
        "processes of run {id} survived the supervisor's SIGKILL"
    );
}

#[test]
fn stop_stops_every_process_and_keeps_the_evidence() {
    let mut s = Soak::start(&["2", "--duration", "60s"]);
    s.wait_for(|t| t.contains("Done, yay"));
    let id = s.run_id();
    let dir = s.run_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_crasher"))
        .arg("stop")
        .arg("--run-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let code = s.wait_exit();
    let ok = none_left(&id);
    kill_leftovers(&id);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(ok, "processes of run {id} survived crasher stop");
    assert_eq!(code, Some(3));
    for kept in [
        "run.log",
        "run.json",
        "logs/sink.log",
        "logs/initializer.log",
    ] {
        assert!(Path::new(&dir).join(kept).is_file(), "{kept} not kept");
    }
    let rec = triage::record::RunRecord::read(&dir.join("run.json")).unwrap();
    assert_ne!(rec.verdict, "running");
}

/// A panic of crasher itself (here a task made to panic by the test hook
/// `CRASHER_TEST_PANIC_AFTER`): its hook kills every process of the run,
/// the run ends with an unknown verdict that names the panic (not a
/// "died by itself" violation of the system under test), and nothing of
/// the run is left.
#[test]
fn a_panic_of_crasher_leaves_nothing_and_concludes_nothing() {
    // The default failure mode: had the run seen a violation, it would
    // pause the world and wait for a person, and this test would hang.
    let mut s = Soak::start_with(
        &["2", "crash1", "--duration", "60s"],
        &[("CRASHER_TEST_PANIC_AFTER", "2")],
        false,
    );
    let code = s.wait_exit();
    let text = s.stdout();
    let id = s.run_id();
    let ok = none_left(&id);
    kill_leftovers(&id);
    assert!(ok, "processes of run {id} survived the panic");
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("crasher itself panicked"), "{text}");
    assert!(!text.contains("VIOLATION"), "{text}");
    let record = std::fs::read_to_string(s.run_dir().join("run.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["verdict"], "unknown", "{record}");
}
