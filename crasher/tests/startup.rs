//! Start-up failures are reported at once, as environment errors (exit 2)
//! with the process's own words, not after a readiness timeout.

mod common;

use common::crasher;
use std::time::{Duration, Instant};

#[test]
fn an_unknown_bug_switch_is_refused_before_anything_starts() {
    let t = tempfile::tempdir().unwrap();
    let out = crasher()
        .args(["2", "--inject", "bogus", "--runs"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bogus") && err.contains("duplicate-on-replay"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(t.path()).unwrap().next().is_none(),
        "nothing may be created"
    );
}

#[test]
fn a_worker_that_exits_at_start_up_is_reported_at_once() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../env/passthrough.toml"
    ))
    .unwrap();
    // The worker: a shell that says why and exits 3.
    let profile = base.replacen(
        "program = \"{crasher}\"",
        "program = \"/bin/sh\"\nsearch_paths = []",
        1,
    );
    let profile = profile.replacen(
        "args = [\"passthrough\",",
        "args = [\"-c\", \"echo cannot open my state >&2; exit 3\", \"passthrough\",",
        1,
    );
    let p = t.path().join("broken.toml");
    std::fs::write(&p, profile).unwrap();
    let started = Instant::now();
    let out = crasher()
        .args(["2", "--keys", "A", "--input-bytes", "10000", "--env"])
        .arg(&p)
        .arg("--runs")
        .arg(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stdout.contains("initializer exited during start-up (exit 3)")
            && stdout.contains("cannot open my state"),
        "{stdout}"
    );
}

#[test]
fn a_profile_template_error_is_refused_before_the_run_directory_exists() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../env/passthrough.toml"
    ))
    .unwrap();
    let profile = base.replacen("\"{external}\"", "\"{externl}\"", 1);
    let line = profile
        .lines()
        .position(|l| l.contains("{externl}"))
        .unwrap()
        + 1;
    let p = t.path().join("typo.toml");
    std::fs::write(&p, profile).unwrap();
    let runs = t.path().join("runs");
    let out = crasher()
        .args(["2", "--keys", "A", "--input-bytes", "10000", "--env"])
        .arg(&p)
        .arg("--runs")
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.toml")
            && err.contains("worker.args")
            && err.contains(&format!("line {line}: unknown placeholder {{externl}}")),
        "{err}"
    );
    assert!(!runs.exists(), "no run directory may be created");
}

#[test]
fn crash_primary_on_a_profile_that_cannot_tell_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let out = crasher()
        .args(["3", "crash-primary", "--keys", "A", "--runs"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot tell which node is the primary"),
        "{err}"
    );
    assert!(std::fs::read_dir(t.path()).unwrap().next().is_none());
}
