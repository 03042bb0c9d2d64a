//! Huge `--input-bytes` (issue 12, item 7): refused up front when it cannot
//! fit, and an interrupt during generation leaves no partial file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    for v in [
        "CRASHER_ENV",
        "CRASHER_RUN_DIR",
        "CRASHER_KEYS",
        "CRASHER_SEED",
    ] {
        c.env_remove(v);
    }
    c.env("CRASHER_LOG", "warn");
    c
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn inputs_that_cannot_fit_are_refused_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let o = crasher()
        .args([
            "1",
            "--keys",
            "A",
            "--input-bytes",
            "99999999999999",
            "--runs",
        ])
        .arg(t.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not enough free space"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let inputs = files(&t.path().join("inputs"));
    assert!(inputs.is_empty(), "{inputs:?}");
}

#[test]
fn an_interrupt_while_generating_inputs_removes_the_partial_file() {
    let t = tempfile::tempdir().unwrap();
    let mut child = crasher()
        .args(["1", "--keys", "A", "--input-bytes", "100000000", "--runs"])
        .arg(t.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let inputs = t.path().join("inputs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let growing = || {
        files(&inputs).iter().any(|p| {
            p.to_string_lossy().ends_with(".tmp") && p.metadata().is_ok_and(|m| m.len() > 0)
        })
    };
    while !growing() {
        assert!(
            Instant::now() < deadline,
            "no temporary input file appeared"
        );
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let left = files(&inputs);
    assert!(left.is_empty(), "left behind: {left:?}");
}
