//! The low-level commands, driven like a shell script would: each step is
//! one run of the `crasher` binary against a temporary runs folder, and
//! the processes they start outlive each command.
//!
//! A [`Runs`] guard resets every run of its folder and SIGKILLs whatever
//! still carries one of their run ids when it is dropped, so a failing test
//! never leaves detached processes behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A temporary runs folder; dropping it tears down every run in it.
struct Runs {
    dir: tempfile::TempDir,
}

impl Runs {
    fn new() -> Runs {
        Runs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
        for var in [
            "CRASHER_ENV",
            "CRASHER_KEYS",
            "CRASHER_INPUT_BYTES",
            "CRASHER_RATE",
            "CRASHER_SEED",
            "CRASHER_INJECT",
            "CRASHER_RUN_DIR",
            "CRASHER_WORKER_PROGRAM",
        ] {
            c.env_remove(var);
        }
        c.env("CRASHER_RUNS", self.path())
            .env("CRASHER_LOG", "warn")
            .args(args);
        c
    }

    /// Runs `crasher ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `crasher ARGS`, which must exit `code`; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "crasher {}: stdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `crasher ARGS`, which must exit `code` with `needle` on stderr.
    fn expect_err(&self, code: i32, args: &[&str], needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "crasher {}: {err}",
            args.join(" ")
        );
        assert!(
            err.contains(needle),
            "crasher {}: expected {needle:?} on stderr, got {err:?}",
            args.join(" ")
        );
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.expect(0, &["status", "--json"])).unwrap()
    }

    fn current(&self) -> PathBuf {
        self.path().join("current").canonicalize().unwrap()
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.path()) else {
            return;
        };
        for e in dirs.flatten() {
            let dir = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "inputs" || name == "current" || !dir.is_dir() {
                continue;
            }
            if dir.join("state.json").is_file() {
                let _ = self
                    .cmd(&["reset", "--run-dir", &dir.display().to_string()])
                    .output();
            }
            for pid in procs::processes_of_run(&name) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

fn process<'a>(st: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
}

fn key<'a>(st: &'a serde_json::Value, k: &str) -> &'a serde_json::Value {
    st["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == k)
        .unwrap()
}

/// Polls `crasher status --json` until `cond` holds or `secs` pass.
fn wait_status(runs: &Runs, secs: u64, cond: impl Fn(&serde_json::Value) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond(&runs.status()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_script_drives_a_run_step_by_step() {
    let runs = Runs::new();
    let out = runs.expect(
        0,
        &[
            "start-sink",
            "--keys",
            "A,B",
            "--input-bytes",
            "30000",
            "--rate",
            "20000",
        ],
    );
    assert!(out.starts_with("Run "), "{out}");
    let dir = runs.current();
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    runs.expect(0, &["start-initializer", "-n", "2"]);
    runs.expect(0, &["start-worker", "1"]);
    let out = runs.expect(0, &["poll-all-ready", "-w", "20", "-v"]);
    for want in [
        "Worker initializer: port = ",
        "Worker worker1: port = ",
        "Success",
    ] {
        assert!(out.contains(want), "{out}");
    }

    // The feeder's input is written when it starts, and only its key's.
    runs.expect(0, &["start-feeder", "A"]);
    let inputs = runs.path().join("inputs/bytes30000-seed0");
    let input_a = inputs.join("input-file.A.txt");
    assert!(input_a.is_file());
    assert!(!inputs.join("input-file.B.txt").exists());

    // Crash worker 1: its log is rotated and compressed; a second crash
    // finds nothing to kill.
    runs.expect(0, &["crash-worker", "1"]);
    let rotated = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("worker1.") && n.ends_with(".gz")
        });
    assert!(rotated, "no rotated worker1 log");
    runs.expect_err(
        1,
        &["crash-worker", "1"],
        "Error: worker worker1 is not running",
    );
    runs.expect(0, &["start-worker", "1"]);
    let out = runs.expect(0, &["poll-ready", "-w", "20", "1"]);
    assert_eq!(out, "", "poll-ready is silent on success without -v");

    let st = runs.status();
    assert_eq!(st["run_id"], id.as_str());
    assert_eq!(st["kind"], "manual");
    // The documented schema (docs/commands.md, "Machine-readable output"):
    // field names are stable, so scripts can rely on them.
    assert_eq!(
        field_names(&st),
        [
            "cluster",
            "coverage",
            "keys",
            "kind",
            "members",
            "network",
            "processes",
            "profile",
            "run_dir",
            "run_id",
            "schedule",
            "verification"
        ],
        "{st:#}"
    );
    assert_eq!(
        field_names(process(&st, "worker1").unwrap()),
        ["host", "name", "pid", "ports", "restarts", "role", "state"]
    );
    assert_eq!(
        field_names(key(&st, "A")),
        [
            "acked",
            "committed",
            "done",
            "done_pct",
            "input_bytes",
            "key",
            "owner"
        ]
    );
    for name in ["sink", "initializer", "worker1", "feeder.A"] {
        assert!(process(&st, name).is_some(), "{name} missing: {st:#}");
    }
    for name in ["sink", "initializer", "worker1"] {
        assert_eq!(process(&st, name).unwrap()["state"], "running", "{st:#}");
    }
    assert_eq!(process(&st, "worker1").unwrap()["restarts"], 1);
    assert_eq!(process(&st, "initializer").unwrap()["restarts"], 0);
    // 'A' mod 2 members: worker1 owns A.
    assert!(
        wait_status(&runs, 20, |st| key(st, "A")["owner"] == "worker1"),
        "{:#}",
        runs.status()
    );

    // Grow, then shrink back: 'A' mod 3 members moves A to worker2 and back.
    runs.expect(0, &["join-worker", "2"]);
    runs.expect(0, &["poll-ready", "-w", "20", "2"]);
    assert!(
        wait_status(&runs, 20, |st| key(st, "A")["owner"] == "worker2"),
        "{:#}",
        runs.status()
    );
    runs.expect(0, &["shrink-worker", "2"]);
    let st = runs.status();
    assert_eq!(st["members"], serde_json::json!([0, 1]), "{st:#}");
    assert!(process(&st, "worker2").is_none(), "{st:#}");
    runs.expect(0, &["poll-all-ready", "-w", "20"]);

    runs.expect(0, &["crash-sink"]);
    runs.expect_err(1, &["crash-sink"], "Error: sink is not running");
    runs.expect(0, &["start-sink"]);

    assert!(
        wait_status(&runs, 90, |st| key(st, "A")["done"] == true),
        "key A never completed: {:#}",
        runs.status()
    );
    let out = runs.expect(
        0,
        &[
            "verify",
            "A",
            &input_a.display().to_string(),
            "--sink-dir",
            &dir.join("sink").display().to_string(),
            "--complete",
        ],
    );
    assert!(out.starts_with("OK: key A"), "{out}");
    assert_eq!(runs.status()["verification"]["holds"], true);

    assert!(!procs::processes_of_run(&id).is_empty());
    runs.expect(0, &["reset"]);
    assert_eq!(procs::processes_of_run(&id), Vec::<u32>::new());
    assert!(input_a.is_file(), "reset keeps input files");
    assert!(!dir.join("state.json").exists());
    runs.expect_err(2, &["crash-worker", "1"], "no run in");
}

#[test]
fn errors_say_what_is_wrong() {
    let runs = Runs::new();
    // No run yet.
    for args in [
        &["crash-worker", "1"][..],
        &["poll-all-ready"],
        &["start-feeder", "A"],
        &["crash-sink"],
        &["poll-ready", "0"],
        &["status"],
    ] {
        runs.expect_err(2, args, "no run in");
    }
    runs.expect(0, &["start-sink", "--keys", "A", "--input-bytes", "1000"]);
    let id = runs
        .current()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    runs.expect_err(1, &["start-sink"], "Error: sink is already running");
    runs.expect_err(
        2,
        &["start-sink", "--keys", "B"],
        "exists with other settings: --keys B (run: A)",
    );
    // Settings that match the run's pass; the sink is running, though.
    runs.expect_err(1, &["start-sink", "--keys", "A"], "already running");
    runs.expect_err(2, &["poll-all-ready"], "has no workers");
    runs.expect(0, &["start-initializer"]);
    runs.expect(0, &["poll-ready", "-w", "20", "0"]);
    runs.expect_err(
        2,
        &["poll-ready", "3"],
        &format!("Error: unknown worker 3: run {id} has no worker3 (its workers: initializer)"),
    );
    runs.expect_err(
        1,
        &["crash-worker", "1"],
        "Error: worker worker1 is not running",
    );
    runs.expect_err(2, &["crash-worker", "12"], "Error: bad worker number: 12");
    runs.expect_err(2, &["start-worker", "0"], "start-initializer");
    runs.expect_err(
        2,
        &["shrink-worker", "0"],
        "Error: cannot shrink the initializer worker",
    );
    runs.expect_err(
        1,
        &["shrink-worker", "1"],
        "Error: worker worker1 is not running",
    );
    runs.expect_err(2, &["start-feeder", "Z"], "\"Z\" is not a key of run");
    runs.expect_err(1, &["crash-feeder", "A"], "Error: feeder.A is not running");
    // A crashed initializer is not ready by the deadline: exit 1, `Failed`.
    runs.expect(0, &["crash-worker", "0"]);
    let out = runs.expect(1, &["poll-ready", "-w", "0.5", "0"]);
    assert!(
        out.ends_with("(its process is not running)\nFailed\n"),
        "{out}"
    );
    let out = runs.expect(1, &["poll-all-ready", "-w", "0.5"]);
    assert!(out.starts_with("Failed for worker initializer"), "{out}");
}

#[test]
fn a_soak_run_is_not_driven_by_the_low_level_commands() {
    let runs = Runs::new();
    // A finished soak's run: its state has no `manual` part and nothing runs.
    let soak = runs.path().join("soak-1");
    std::fs::create_dir_all(&soak).unwrap();
    let state = serde_json::json!({
        "run_id": "soak-1", "run_dir": soak, "profile": "builtin:passthrough",
        "port_base": 10000, "worker_count": 1, "rate": 0, "inject": null,
        "inputs": {}, "members": [], "sink": "127.0.0.1:10100",
        "processes": {"supervisor": {"role": "supervisor", "pid": 999_999_999u32, "start_time": 1, "starts": 1}}
    });
    std::fs::write(soak.join("state.json"), state.to_string()).unwrap();
    std::os::unix::fs::symlink(&soak, runs.path().join("current")).unwrap();
    let soak_dir = soak.display().to_string();
    runs.expect_err(
        2,
        &["crash-sink", "--run-dir", &soak_dir],
        "was started by a soak",
    );
    runs.expect_err(
        2,
        &["start-sink", "--run-dir", &soak_dir],
        "was started by a soak",
    );
    // Without a selection, start-sink leaves it alone and starts a new run.
    let out = runs.expect(0, &["start-sink", "--keys", "A", "--input-bytes", "1000"]);
    assert!(out.starts_with("Run "), "{out}");
    assert_ne!(runs.current(), soak.canonicalize().unwrap());
    assert!(soak.join("state.json").is_file());
}

/// The field names of a JSON object, sorted.
fn field_names(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}
