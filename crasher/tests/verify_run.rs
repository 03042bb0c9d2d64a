//! `crasher verify --run RUN_DIR` (issue 18): every key of a finished run
//! checked in one pass over the sink's files, with the same verdicts and
//! exit codes as the per-key command.

mod common;

use std::path::PathBuf;

use common::{crasher, soak};

fn run_dir(stdout: &str) -> PathBuf {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_once(" in ").map(|(_, d)| d))
        .map(PathBuf::from)
        .unwrap()
}

#[test]
fn a_whole_run_is_verified_in_one_call_like_each_key_alone() {
    let runs = tempfile::tempdir().unwrap();
    let (out, stdout, _) = soak(
        runs.path(),
        &[
            "2",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "30000",
            "--rate",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let dir = run_dir(&stdout);

    let o = crasher()
        .args(["verify", "--complete", "--run"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for k in ["A", "B", "C"] {
        assert!(text.contains(&format!("OK: key {k}: ")), "{text}");
    }
    assert!(text.contains("all 3 keys hold (exactly-once)"), "{text}");

    // The same numbers as three per-key calls.
    let o = crasher()
        .args(["verify", "--complete", "--json", "--run"])
        .arg(&dir)
        .output()
        .unwrap();
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all["holds"], true);
    let keys = all["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        let key = k["key"].as_str().unwrap();
        let one = crasher()
            .args([
                "verify",
                key,
                k["input"].as_str().unwrap(),
                "--complete",
                "--json",
                "--sink-dir",
            ])
            .arg(dir.join("sink"))
            .output()
            .unwrap();
        let one: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
        assert_eq!(one["committed_bytes"], k["committed_bytes"], "key {key}");
        assert_eq!(one["holds"], k["holds"], "key {key}");
    }

    // One corrupted committed byte: that key violates, exit 1.
    let data = std::fs::read_dir(dir.join("sink"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".txnlog"))
        .find(|p| std::fs::metadata(p).unwrap().len() > 1000)
        .unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[500] = if bytes[500] == b'0' { b'1' } else { b'0' };
    std::fs::write(&data, bytes).unwrap();
    let o = crasher()
        .args(["verify", "--run"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("VIOLATION: ") && text.contains("1 of 3 keys violate"),
        "{text}"
    );

    // Not a run directory: exit 2 naming it.
    let o = crasher()
        .args(["verify", "--run"])
        .arg(runs.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
}
