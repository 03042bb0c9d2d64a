//! Bad input gets a clear exit 2 at once, never a hang, a silent skip or a
//! doubled message (issue 12, items 12, 13 and 14).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use verify::txnlog::{Entry, Record};

fn crasher(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    c.env("CRASHER_LOG", "warn").args(args);
    c
}

/// Runs `cmd`, killing it after `limit` (a hang is a failure, not a stuck test).
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn input(dir: &Path) -> std::path::PathBuf {
    let o = crasher(&[
        "create-input-files",
        "--keys",
        "A",
        "--source-bytes",
        "1000",
        "--dir",
    ])
    .arg(dir)
    .output()
    .unwrap();
    assert!(o.status.success());
    dir.join("input-file.A.txt")
}

fn verify(input: &Path, sink: &Path) -> Output {
    let mut c = crasher(&["verify", "A"]);
    c.arg(input).arg("--sink-dir").arg(sink);
    run_within(c, Duration::from_secs(10))
}

#[test]
fn verify_refuses_a_txnlog_that_is_a_directory_or_fifo() {
    let t = tempfile::tempdir().unwrap();
    let input = input(t.path());
    for kind in ["dir", "fifo"] {
        let sink = t.path().join(format!("sink-{kind}"));
        std::fs::create_dir(&sink).unwrap();
        let log = sink.join("output.w.txnlog");
        if kind == "dir" {
            std::fs::create_dir(&log).unwrap();
        } else {
            nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
        let o = verify(&input, &sink);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{kind}: {err}");
        assert!(err.contains("output.w.txnlog"), "{kind}: {err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains("OK"), "{kind}");
    }
}

#[test]
fn verify_refuses_a_data_file_that_is_a_fifo_without_hanging() {
    let t = tempfile::tempdir().unwrap();
    let input = input(t.path());
    let sink = t.path().join("sink");
    std::fs::create_dir(&sink).unwrap();
    let lines = [
        Entry::now(Record::Phase1Ok {
            txn_id: "t1".into(),
            where_list: vec![(1, 0, 10)],
        }),
        Entry::now(Record::Phase2Ok {
            txn_id: "t1".into(),
            offset: 10,
        }),
    ]
    .map(|e| e.to_line() + "\n")
    .concat();
    std::fs::write(sink.join("output.w.txnlog"), lines).unwrap();
    nix::unistd::mkfifo(
        &sink.join("output.w"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let o = verify(&input, &sink);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("output.w") && err.contains("FIFO"), "{err}");
}

#[test]
fn feed_to_an_address_that_can_never_parse_exits_2_at_once() {
    let t = tempfile::tempdir().unwrap();
    let input = input(t.path());
    let mut c = crasher(&["feed", "--target", "nonsense"]);
    c.arg(&input);
    let o = run_within(c, Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn an_os_error_is_printed_once() {
    let t = tempfile::tempdir().unwrap();
    let mut c = crasher(&["feed", "--target", "127.0.0.1:9"]);
    c.arg(t.path());
    let o = run_within(c, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("crasher: error:"), "{err}");
    assert_eq!(last.matches("os error 21").count(), 1, "{last}");
}

#[test]
fn runs_lists_a_run_whose_run_json_is_a_directory() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("20260101-000000-abcd/run.json")).unwrap();
    let o = crasher(&["runs", "--runs"]).arg(t.path()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("20260101-000000-abcd"), "{out}");
    assert!(out.contains("bad run.json"), "{out}");
}
