//! Every recipe runs one iteration on the reference cluster; a malformed
//! recipe is refused with file, line and field; status and reset work on a
//! run from another "shell".

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    c.env("CRASHER_LOG", "warn");
    c
}

fn recipe(runs: &Path, name: &str) -> Output {
    crasher()
        .args([
            "recipe",
            name,
            "--iterations",
            "1",
            "--keys",
            "A,B",
            "--input-bytes",
            "200000",
            "--rate",
            "50000",
        ])
        .arg("--runs")
        .arg(runs)
        .output()
        .unwrap()
}

fn check(name: &str) {
    let t = tempfile::tempdir().unwrap();
    let out = recipe(t.path(), name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("OK: 1 iterations of {name}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("[verified "),
        "{name} never verified:\n{stdout}"
    );
}

#[test]
fn run_without_errors() {
    check("run-without-errors");
}

#[test]
fn crash_sink() {
    check("crash-sink");
}

#[test]
fn crash_worker() {
    check("crash-worker");
}

#[test]
fn crash_initializer() {
    check("crash-initializer");
}

#[test]
fn crash_source() {
    check("crash-source");
}

#[test]
fn custom1() {
    check("custom1");
}

#[test]
fn custom2() {
    check("custom2");
}

#[test]
fn custom4() {
    check("custom4");
}

#[test]
fn custom5() {
    check("custom5");
}

#[test]
fn crashsink_crash0_overlap() {
    check("crashsink-crash0-overlap");
}

#[test]
fn custom3006() {
    check("custom3006");
}

#[test]
fn list_names_every_recipe() {
    let out = crasher().args(["recipe", "--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for n in [
        "crash-sink",
        "crash-worker",
        "crash-initializer",
        "crash-source",
        "custom3006",
    ] {
        assert!(text.contains(n), "{text}");
    }
}

#[test]
fn a_malformed_recipe_names_file_line_and_field() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("bad.toml");
    std::fs::write(&p, "description = \"x\"\nworkers = 2\nsteps = [\n  { do = \"crash\", tagret = \"sink\" },\n]\n").unwrap();
    let out = crasher().arg("recipe").arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("tagret"),
        "{err}"
    );
}

/// Kills the spawned soak if the test fails before it exits.
struct SoakGuard(std::process::Child);

impl Drop for SoakGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_and_reset_act_on_a_running_soak() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("out");
    let mut soak = SoakGuard(
        crasher()
            .args([
                "2",
                "--keys",
                "A",
                "--input-bytes",
                "4000000",
                "--rate",
                "20000",
                "--on-failure",
                "kill",
                "--runs",
            ])
            .arg(t.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Done, yay")
    {
        assert!(Instant::now() < deadline, "soak did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = crasher()
        .args(["status", "--json", "--runs"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let names: Vec<&str> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in ["supervisor", "sink", "initializer", "worker1", "feeder.A"] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert!(
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running"),
        "{v}"
    );
    let run_id = v["run_id"].as_str().unwrap().to_owned();
    let reset = crasher()
        .args(["reset", "--runs"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(
        reset.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let status = soak.0.wait().unwrap();
    assert!(
        status.code().is_some(),
        "the supervisor should exit, not be killed: {status:?}"
    );
    assert!(procs::processes_of_run(&run_id).is_empty());
    assert!(!t.path().join("current/state.json").exists());
}
