//! `crasher verify`, through the binary, on crafted sink directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use verify::fixture::FakeWorker;
use verify::input::{write_input_files, InputSpec};

/// A scratch directory removed on drop (the crasher package has no
/// tempfile dev-dependency).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "crasher-verify-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sink-out")).unwrap();
        Scratch(dir)
    }

    fn sink(&self) -> PathBuf {
        self.0.join("sink-out")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sink directory and the input files of keys A and B (200 rows each).
struct Case {
    dir: Scratch,
    a: Vec<Vec<u8>>,
    b: Vec<Vec<u8>>,
}

impl Case {
    fn new() -> Case {
        let dir = Scratch::new();
        let spec = InputSpec {
            keys: b"AB".to_vec(),
            source_bytes: 200 * 16,
            seed: 1,
            tcp: false,
        };
        write_input_files(&dir.0, &spec).unwrap();
        let lines = |k: char| -> Vec<Vec<u8>> {
            std::fs::read(dir.0.join(format!("input-file.{k}.txt")))
                .unwrap()
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect()
        };
        let (a, b) = (lines('A'), lines('B'));
        Case { dir, a, b }
    }

    fn worker(&self, name: &str) -> FakeWorker {
        FakeWorker::new(&self.dir.sink(), name).unwrap()
    }

    fn input(&self, key: char) -> PathBuf {
        self.dir.0.join(format!("input-file.{key}.txt"))
    }

    fn verify(&self, key: char, extra: &[&str]) -> (i32, String, String) {
        run(
            &[key.to_string().as_str()],
            &self.input(key),
            &self.dir.sink(),
            extra,
        )
    }
}

fn run(pre: &[&str], input: &Path, sink: &Path, extra: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_crasher"))
        .arg("verify")
        .args(pre)
        .arg(input)
        .arg("--sink-dir")
        .arg(sink)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cat(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}

#[test]
fn an_empty_sink_and_a_correct_prefix_hold() {
    let c = Case::new();
    let (code, out, err) = c.verify('A', &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        "OK: key A: 0 committed bytes (0 lines) are a prefix of input-file.A.txt"
    );
    let mut w1 = c.worker("worker1");
    let mut w2 = c.worker("worker2");
    for i in 0..30 {
        w1.write(&c.a[i]).unwrap();
        w2.write(&c.b[i]).unwrap();
    }
    w1.commit(1.0).unwrap();
    w2.commit(1.5).unwrap();
    // Key A moves to worker2; the departed worker1's files are renamed.
    w2.write(&cat(&c.a[30..40])).unwrap();
    w2.commit(2.0).unwrap();
    w1.depart("1700000000.5").unwrap();
    let (code, out, err) = c.verify('A', &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        "OK: key A: 1960 committed bytes (40 lines) are a prefix of input-file.A.txt"
    );
    let (code, out, _) = c.verify('B', &["--json"]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""holds":true"#), "{out}");
    assert!(out.contains(r#""committed_lines":30"#), "{out}");
}

#[test]
fn complete_requires_the_whole_input() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    w.write(&cat(&c.a[..150])).unwrap();
    w.commit(1.0).unwrap();
    let (code, out, _) = c.verify('A', &["--complete"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("VIOLATION: key A: incomplete at output byte 7350 (input line 151)"),
        "{out}"
    );
    w.write(&cat(&c.a[150..])).unwrap();
    w.commit(2.0).unwrap();
    let (code, out, _) = c.verify('A', &["--complete"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: key A:"), "{out}");
}

/// Commits `lines` for key A and returns exit code and stdout.
fn violation(c: &Case, lines: &[Vec<u8>], extra: &[&str]) -> (i32, String) {
    let mut w = c.worker("worker1");
    w.write(&cat(lines)).unwrap();
    w.commit(1.0).unwrap();
    let (code, out, err) = c.verify('A', extra);
    assert!(err.is_empty(), "{err}");
    (code, out)
}

#[test]
fn each_class_is_reported_with_exit_1() {
    let base = Case::new();
    let a = &base.a;
    let mut garbled = a[5].clone();
    garbled[30] = b'?';
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("missing", [&a[..5], &a[6..9]].concat()),
        (
            "reordered",
            [&a[..5], &a[6..7], &a[5..6], &a[7..9]].concat(),
        ),
        ("duplicate", [&a[..5], &a[2..3], &a[5..9]].concat()),
        ("corrupt", [&a[..5], &[garbled][..]].concat()),
        ("extra", [&a[..], &a[..1]].concat()),
    ];
    for (class, lines) in cases {
        let c = Case::new();
        let (code, out) = violation(&c, &lines, &[]);
        assert_eq!(code, 1, "{class}: {out}");
        let head = if class == "extra" {
            "VIOLATION: key A: extra at output byte 9809 (input line 202)".to_owned()
        } else {
            format!("VIOLATION: key A: {class} at output byte 2")
        };
        assert!(out.starts_with(&head), "{class}: {out}");
        assert!(out.contains("  expected: "), "{out}");
        assert!(out.contains("  found:    "), "{out}");
        if class != "extra" {
            assert!(out.contains("(input line 6)"), "{class}: {out}");
            let expected = String::from_utf8_lossy(&a[5][..48]).into_owned();
            assert!(out.contains(&format!("  expected: {expected}\n")), "{out}");
        }
        let c = Case::new();
        let (code, json) = violation(&c, &lines, &["--json"]);
        assert_eq!(code, 1);
        assert!(json.contains(&format!(r#""class":"{class}""#)), "{json}");
        assert!(json.contains(r#""holds":false"#), "{json}");
    }
}

#[test]
fn a_rolled_back_tail_is_not_committed_output() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    w.write(&cat(&c.a[..10])).unwrap();
    w.commit(1.0).unwrap();
    w.write(&cat(&c.a[..3])).unwrap();
    w.rollback(2.0, false).unwrap();
    let (code, out, _) = c.verify('A', &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("490 committed bytes (10 lines)"), "{out}");
}

#[test]
fn unusable_input_exits_2_with_a_clear_message() {
    let c = Case::new();
    let (code, _, err) = run(&["A"], &c.dir.0.join("nope.txt"), &c.dir.sink(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read input file") && err.contains("nope.txt"),
        "{err}"
    );
    let (code, _, err) = run(&["A"], &c.input('A'), &c.dir.0.join("no-sink"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read sink directory") && err.contains("no-sink"),
        "{err}"
    );
    let mut w = c.worker("worker1");
    w.write(&c.a[0]).unwrap();
    w.commit(1.0).unwrap();
    w.write_log_raw(b"[1.5, \"2-ok\", \"txn\", -3]\n").unwrap();
    w.commit(2.0).unwrap();
    let (code, _, err) = c.verify('A', &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("output.worker1.txnlog:3: 2-ok: element 3 is not a non-negative integer"),
        "{err}"
    );
    let (code, _, _) = run(&["AB"], &c.input('A'), &c.dir.sink(), &[]);
    assert_eq!(code, 2);
}

#[test]
fn a_torn_last_txnlog_line_is_tolerated() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    w.write(&cat(&c.a[..4])).unwrap();
    w.commit(1.0).unwrap();
    w.write_log_raw(b"[2.0, \"2-ok\", \"Passthrough-w-worker1-id-1:c_")
        .unwrap();
    let (code, out, err) = c.verify('A', &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(4 lines)"), "{out}");
}

#[test]
fn committed_bytes_missing_from_the_data_file_are_a_violation() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    w.write(&cat(&c.a[..4])).unwrap();
    w.commit(1.0).unwrap();
    std::fs::remove_file(w.data_path()).unwrap();
    let (code, out, _) = c.verify('A', &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("key A: missing: committed bytes missing:"),
        "{out}"
    );
    assert!(out.contains("output.worker1 is 0 bytes long"), "{out}");
}

/// The current time in Unix seconds (the sink's commit times).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn work_queue_modes_accept_any_order_and_count_repeats() {
    let c = Case::new();
    let mut w1 = c.worker("worker1");
    let mut w2 = c.worker("worker2");
    // Key A's whole input, backwards, over two workers, one line twice.
    let back: Vec<Vec<u8>> = c.a.iter().rev().cloned().collect();
    w1.write(&cat(&back[..100])).unwrap();
    w1.commit(1.0).unwrap();
    w2.write(&cat(&back[100..])).unwrap();
    w2.write(&c.a[7]).unwrap();
    w2.commit(2.0).unwrap();
    let (code, out, err) = c.verify('A', &["--mode", "work-queue-at-least-once", "--complete"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        "OK: key A: 9858 committed bytes (202 lines) are lines of input-file.A.txt, in any order \
         (work-queue-at-least-once): 201 of its 201 lines committed (the whole input), 1 repeated \
         line(s) counted"
    );
    let (code, out, _) = c.verify('A', &["--mode", "exactly-once"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, err) = c.verify('A', &["--mode", "work-queue", "--complete"]);
    assert_eq!(code, 1, "{out}{err}");
    let sink = c.dir.sink();
    let expected = format!(
        "VIOLATION: key A: duplicate (input line 8)\n  (work-queue: every input line exactly once, \
         in any order; 201 of 201 input lines committed)\n  duplicate: 1 committed copies of input \
         lines already committed (each a violation):\n    input line 8 (input byte 343) at {} \
         byte 4949: {}",
        sink.join("output.worker2").display(),
        String::from_utf8_lossy(&c.a[7][..48])
    );
    assert_eq!(out.trim(), expected);
    let (code, json, _) = c.verify('A', &["--mode", "work-queue", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["mode"], "work-queue");
    assert_eq!(v["violation"]["class"], "duplicate");
    assert_eq!(v["work_queue"]["distinct_lines"], 201);
    assert_eq!(
        v["violation"]["work_queue"]["duplicates"]["first"][0]["sink_offset"],
        4949
    );
}

#[test]
fn work_queue_missing_lines_wait_for_the_grace_then_are_named() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    // Lines 3 and 10 (1-based 4 and 11) are skipped; later lines are
    // committed just now.
    let lines: Vec<Vec<u8>> = (0..40)
        .filter(|&i| i != 3 && i != 10)
        .map(|i| c.a[i].clone())
        .collect();
    w.write(&cat(&lines)).unwrap();
    w.commit(unix_now()).unwrap();
    let (code, out, err) = c.verify('A', &["--mode", "work-queue"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim().ends_with(
            "38 of its 201 lines committed, none twice; 2 line(s) before the last one committed \
             are not committed yet, none for longer than the 60s grace"
        ),
        "{out}"
    );
    // A grace of 0: the commit is already more than 0 s old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, _) = c.verify('A', &["--mode", "work-queue", "--missing-grace", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("VIOLATION: key A: missing (input line 4)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "missing: 2 input line(s) not committed although a later input line was committed \
             more than 0s before:"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "    input line 11 (input byte 490): {}\n",
            String::from_utf8_lossy(&c.a[10][..48])
        )),
        "{out}"
    );
    // The final check names every line never committed.
    let (code, out, _) = c.verify('A', &["--mode", "work-queue", "--complete"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("missing: 163 input line(s) never committed (the whole input is required):"),
        "{out}"
    );
    assert!(out.contains("    ... and 158 more"), "{out}");
    let (code, _, err) = c.verify('A', &["--mode", "work-queue", "--missing-grace", "-1"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn work_queue_extraneous_lines_name_the_sink_file_and_byte() {
    let c = Case::new();
    let mut w = c.worker("worker1");
    let mut garbled = c.a[5].clone();
    garbled[30] = b'?';
    w.write(&cat(&[c.a[1].clone(), c.a[0].clone(), garbled]))
        .unwrap();
    w.commit(1.0).unwrap();
    let (code, out, _) = c.verify('A', &["--mode", "work-queue-at-least-once"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("VIOLATION: key A: corrupt (input line 6)\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "extraneous: 1 committed line(s) that are not lines of the input:\n    {} byte 98 \
             (output byte 98): corrupt: claims offset 0000120 (input line 6) but its bytes differ: ",
            c.dir.sink().join("output.worker1").display()
        )),
        "{out}"
    );
}
