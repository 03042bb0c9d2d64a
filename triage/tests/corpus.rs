//! Triage of crafted run directories: panics that differ only in numbers
//! group into one signature, repeated errors are counted, a truncated and
//! a corrupt `.gz` are reported with what could be read, the nearest
//! harness event is found, and runs with nothing to read are "unknown".

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use triage::analysis::{Signature, Triage};
use triage::record::{CheckResult, Event, RunRecord};
use triage::scan::Kind;
use triage::{triage, Verdict};

/// 2023-11-14 22:13:20 UTC.
const T0: f64 = 1_700_000_000.0;

fn ts(secs: f64) -> String {
    let t = triage::time::format_utc(T0 + secs);
    format!("{}T{}Z", &t[..10], &t[11..])
}

fn gz(text: &str) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn info_lines(from: f64, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}  INFO passthrough::owner: committed checkpoint {}\n",
                ts(from + i as f64 * 0.01),
                i
            )
        })
        .collect()
}

fn sig<'a>(t: &'a Triage, prefix: &str) -> &'a Signature {
    t.signatures
        .iter()
        .find(|s| s.signature.starts_with(prefix))
        .unwrap_or_else(|| {
            let all: Vec<&str> = t.signatures.iter().map(|s| s.signature.as_str()).collect();
            panic!("no signature starting with {prefix:?} in {all:#?}")
        })
}

/// A crashed run: two workers panic at the same place with other numbers,
/// the sink finds duplicates, a feeder keeps failing to connect, one
/// rotated log is truncated and one is garbage.
fn crashed_run(dir: &Path) {
    let mut w1 = info_lines(11.0, 200);
    w1.push_str(&format!(
        "{} ERROR passthrough::owner: sink connection failed: Connection refused (os error 111)\n",
        ts(14.0)
    ));
    w1.push_str("thread 'tokio-runtime-worker' panicked at passthrough/src/owner.rs:212:9:\n");
    w1.push_str("offset 1200 beyond end 1100 of stream 0x7f3a2c001234\n");
    w1.push_str("note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
    write(dir, "logs/worker1.1700000015000.gz", &gz(&w1));

    let mut w2 = info_lines(20.0, 50);
    w2.push_str("thread 'main' panicked at passthrough/src/owner.rs:212:9:\n");
    w2.push_str("offset 77 beyond end 12 of stream 0x55d0c0ffee00\n");
    write(dir, "logs/worker2.1700000025000.gz", &gz(&w2));
    // The same worker's current log, plain.
    write(dir, "logs/worker2.log", info_lines(26.0, 30).as_bytes());

    let mut sink = info_lines(5.0, 100);
    for (i, (off, id)) in [(120, 100), (9, 7), (5000, 4990)].iter().enumerate() {
        sink.push_str(&format!(
            "{} FATAL duplicate data: output offset {off} > message_id {id} (10 bytes, equal to the bytes already there) worker worker{}\n",
            ts(30.0 + i as f64),
            i + 1
        ));
    }
    sink.push_str(&format!(
        "{} FATAL MISSING DATA: output offset 12 < message_id 15 worker worker1\n",
        ts(33.0)
    ));
    write(dir, "logs/sink.log", sink.as_bytes());

    let mut feeder = String::new();
    for i in 0..5 {
        feeder.push_str(&format!(
            "2023-11-14 22:13:{:02},{:03} ERROR connect to 127.0.0.1:{} failed: attempt {i}\n",
            41 + i,
            100 * i,
            7103 + i
        ));
        feeder.push_str("2023-11-14 22:13:41,000 INFO retrying\n");
    }
    write(dir, "logs/feeder.A.log", feeder.as_bytes());
    // Status files are not logs, whatever they say.
    write(
        dir,
        "logs/feeder.A.status",
        b"ERROR this is not a log line\n",
    );

    // Truncated: the first half of a gzip stream holding four ERROR lines
    // early and filler after them.
    let mut init = String::new();
    for i in 0..4 {
        init.push_str(&format!(
            "{} ERROR recovery: log segment {i} unreadable\n",
            ts(50.0 + f64::from(i))
        ));
    }
    init.push_str(&info_lines(55.0, 4000));
    let full = gz(&init);
    write(
        dir,
        "logs/initializer.1700000060000.gz",
        &full[..full.len() / 2],
    );

    // Corrupt: a gzip header followed by garbage.
    let mut bad = gz("2023-11-14T22:14:00Z ERROR never seen\n")[..10].to_vec();
    bad.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    write(dir, "logs/worker3.1700000070000.gz", &bad);

    let run_log = "Run 20231114-221320-abcd in /runs/x\n\
Seed: 7 (replay the fault schedule with --seed 7); profile: passthrough (builtin:passthrough)\n\
Start time: 1700000000000\n\
Done, yay ... waiting\n\
,,c1,r1,,c2,r2,,\n\
Crash of worker3 failed: it died by itself (signal 6 (SIGABRT))\n\
VIOLATION (process-death): worker3 died by itself: signal 6 (SIGABRT); last log lines of x:\n\
boom\n\
End time: 1700000080000\n";
    write(dir, "run.log", run_log.as_bytes());
    let ev = |t: f64, kind: &str, text: &str| Event {
        t,
        kind: kind.into(),
        text: text.into(),
    };
    let rec = RunRecord {
        run_id: "20231114-221320-abcd".into(),
        profile: "builtin:passthrough".into(),
        seed: 7,
        args: vec!["3".into(), "crash1".into(), "crash2".into()],
        start: T0,
        end: Some(T0 + 80.0),
        verdict: "violation".into(),
        exit_code: Some(1),
        reason: Some("worker3 died by itself: signal 6 (SIGABRT)".into()),
        checks: vec![CheckResult {
            name: "process-death".into(),
            status: "failed".into(),
            detail: "worker3 died by itself".into(),
        }],
        events: vec![
            ev(12.0, "crash", "c1"),
            ev(15.5, "restart", "r1"),
            ev(19.0, "crash", "c2"),
            ev(24.0, "restart", "r2"),
            ev(70.0, "message", "Crash of worker3 failed: it died by itself (signal 6 (SIGABRT))"),
            ev(70.1, "violation", "VIOLATION (process-death): worker3 died by itself: signal 6 (SIGABRT); last log lines of x:\nboom"),
        ],
        ..RunRecord::default()
    };
    rec.write_atomic(&dir.join("run.json")).unwrap();
}

#[test]
fn a_crashed_run_gives_ranked_grouped_signatures() {
    let t = tempfile::tempdir().unwrap();
    crashed_run(t.path());
    let r = triage(t.path()).unwrap();
    assert_eq!(r.verdict, Verdict::Evidence);
    assert_eq!(r.exit_code, 1);

    // Two panics, different numbers and threads, one signature.
    let panic = sig(&r, "panic at passthrough/src/owner.rs:212:9");
    assert_eq!(
        panic.signature,
        "panic at passthrough/src/owner.rs:212:9: offset <n> beyond end <n> of stream <addr>"
    );
    assert_eq!(panic.kind, Kind::Panic);
    assert_eq!(panic.count, 2);
    assert_eq!(panic.processes, ["worker1", "worker2"]);
    assert_eq!(panic.example.file, "logs/worker1.1700000015000.gz");
    assert_eq!(panic.example.line, 202);
    // Untimed panic lines take the time of the line before them.
    assert_eq!(panic.first, Some(T0 + 14.0));
    // The panic at +14 s came 2 s after worker1's crash at +12 s.
    let after = panic.after.as_ref().unwrap();
    assert_eq!((after.kind.as_str(), after.text.as_str()), ("crash", "c1"));
    assert!((after.before_by.unwrap() - 2.0).abs() < 1e-6);

    let dup = sig(&r, "FATAL duplicate data");
    assert_eq!(dup.count, 3);
    assert_eq!(dup.kind, Kind::DuplicateData);
    assert_eq!(dup.first, Some(T0 + 30.0));
    assert_eq!(dup.last, Some(T0 + 32.0));
    assert_eq!(dup.processes, ["sink"]);
    assert_eq!(dup.after.as_ref().unwrap().text, "r2");
    assert_eq!(sig(&r, "FATAL MISSING DATA").count, 1);

    let feeder = sig(&r, "ERROR connect to");
    assert_eq!(
        feeder.signature,
        "ERROR connect to <n>.<n>:<n> failed: attempt <n>"
    );
    assert_eq!(feeder.count, 5);
    assert_eq!(feeder.processes, ["feeder.A"]);
    // Between worker2's crash (+19 s) and a few seconds after its restart
    // (+24 s): the expected echo of the fault, not evidence.
    assert!(feeder.expected);
    assert!(sig(&r, "ERROR passthrough::owner: sink connection failed").expected);
    assert!(!panic.expected && !dup.expected);
    assert!(r
        .signatures
        .iter()
        .all(|s| !s.signature.contains("not a log line")));

    // The truncated file was read up to the cut: its four errors count.
    let trunc = sig(&r, "ERROR recovery: log segment");
    assert_eq!(trunc.count, 4);
    assert_eq!(trunc.processes, ["initializer"]);
    assert!(!trunc.expected, "long after the last fault");
    let damaged: Vec<(&str, &str)> = r
        .files
        .iter()
        .filter_map(|f| Some((f.file.as_str(), f.damaged.as_deref()?)))
        .collect();
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    assert_eq!(damaged[0].0, "logs/initializer.1700000060000.gz");
    assert!(damaged[0].1.contains("truncated"), "{damaged:?}");
    let init = r
        .files
        .iter()
        .find(|f| f.file.starts_with("logs/initializer"))
        .unwrap();
    assert!(init.lines > 4 && init.lines < 4004, "{}", init.lines);
    assert_eq!(damaged[1].0, "logs/worker3.1700000070000.gz");
    assert!(damaged[1].1.contains("corrupt"), "{damaged:?}");

    // The harness's own evidence: the death and the violation.
    let exit = sig(&r, "died by itself: signal 6 (SIGABRT)");
    assert_eq!(exit.processes, ["worker3"]);
    assert_eq!(exit.first, Some(T0 + 70.0));
    assert_eq!(exit.example.file, "run.log");
    assert_eq!(exit.example.line, 6);
    let v = sig(&r, "violation (process-death)");
    assert_eq!(
        r.signatures[0].signature, v.signature,
        "violations rank first"
    );

    // Ranked by kind, then count.
    let kinds: Vec<(bool, Kind)> = r.signatures.iter().map(|s| (s.expected, s.kind)).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted);
    assert_eq!(r.files.len(), 7, "{:?}", r.files);

    let text = triage::text::render(&r);
    assert!(
        text.contains("DAMAGED logs/worker3.1700000070000.gz"),
        "{text}"
    );
    assert!(
        text.contains(
            "e.g. logs/worker1.1700000015000.gz:202: thread 'tokio-runtime-worker' panicked"
        ),
        "{text}"
    );
    assert!(
        text.contains("after crash c1 (worker1) at +12.0s, 2.0s before"),
        "{text}"
    );
    assert!(text.contains("(expected, not counted)"), "{text}");
    assert!(text.contains("failure evidence: 6 signature(s)"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["signatures"][0]["kind"], "violation");
}

#[test]
fn without_run_json_the_glyphs_and_rotated_names_place_events() {
    let t = tempfile::tempdir().unwrap();
    crashed_run(t.path());
    std::fs::remove_file(t.path().join("run.json")).unwrap();
    let r = triage(t.path()).unwrap();
    assert_eq!(r.exit_code, 1);
    assert_eq!(r.run.seed, Some(7));
    // worker1's only rotated log is named for +15 s: its crash is the
    // latest fault known before the sink's duplicates at +30 s.
    let dup = sig(&r, "FATAL duplicate data");
    let after = dup.after.as_ref().unwrap();
    assert_eq!(after.text, "c2");
    assert!(after.approx);
    assert_eq!(after.at, Some(T0 + 25.0));
    // Glyph times are not exact enough to excuse anything.
    assert!(r.signatures.iter().all(|s| !s.expected));
}

#[test]
fn errors_right_after_injected_faults_alone_are_not_evidence() {
    let t = tempfile::tempdir().unwrap();
    let mut feeder = info_lines(0.0, 20);
    feeder.push_str(&format!(
        "{} ERROR    [feed] handle_close: connection to 127.0.0.1:7103: RESTART\n",
        ts(10.2)
    ));
    feeder.push_str(&format!(
        "{} ERROR    [feed] handle_close: connection to 127.0.0.1:7113: RESTART\n",
        ts(31.0)
    ));
    write(t.path(), "logs/feeder.A.log", feeder.as_bytes());
    let ev = |t: f64, kind: &str, text: &str| Event {
        t,
        kind: kind.into(),
        text: text.into(),
    };
    let mut rec = RunRecord {
        start: T0,
        end: Some(T0 + 60.0),
        verdict: "holds".into(),
        events: vec![
            ev(10.0, "crash", "c1"),
            ev(11.0, "restart", "r1"),
            ev(30.0, "crash", "c0"),
            ev(30.5, "restart", "r0"),
        ],
        ..RunRecord::default()
    };
    rec.write_atomic(&t.path().join("run.json")).unwrap();
    let r = triage(t.path()).unwrap();
    assert_eq!(
        (r.verdict, r.exit_code),
        (Verdict::Clean, 0),
        "{}",
        r.summary
    );
    assert_eq!(r.signatures.len(), 1);
    assert!(r.signatures[0].expected);
    assert_eq!(r.signatures[0].count, 2);
    // The same line far from any fault is evidence.
    rec.events.truncate(2);
    rec.write_atomic(&t.path().join("run.json")).unwrap();
    let r = triage(t.path()).unwrap();
    assert_eq!(r.exit_code, 1, "{}", r.summary);
    assert!(!r.signatures[0].expected);
}

#[test]
fn a_clean_run_is_clean_and_a_damaged_clean_run_is_unknown() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "logs/sink.log", info_lines(0.0, 100).as_bytes());
    write(
        t.path(),
        "logs/worker1.1700000015000.gz",
        &gz(&info_lines(0.0, 100)),
    );
    let r = triage(t.path()).unwrap();
    assert_eq!(
        (r.verdict, r.exit_code),
        (Verdict::Clean, 0),
        "{}",
        r.summary
    );
    assert!(r.signatures.is_empty());
    assert_eq!(r.files.iter().map(|f| f.lines).sum::<u64>(), 200);

    let full = gz(&info_lines(0.0, 3000));
    write(
        t.path(),
        "logs/worker2.1700000016000.gz",
        &full[..full.len() - 40],
    );
    let r = triage(t.path()).unwrap();
    assert_eq!(
        (r.verdict, r.exit_code),
        (Verdict::Unknown, 3),
        "{}",
        r.summary
    );
    assert!(r.summary.contains("damaged"), "{}", r.summary);
}

#[test]
fn no_logs_is_unknown_never_clean() {
    let t = tempfile::tempdir().unwrap();
    let r = triage(t.path()).unwrap();
    assert_eq!((r.verdict, r.exit_code), (Verdict::Unknown, 3));
    assert!(r.summary.contains("no logs"), "{}", r.summary);
    std::fs::create_dir(t.path().join("logs")).unwrap();
    write(t.path(), "logs/sink.log", b"");
    let r = triage(t.path()).unwrap();
    assert_eq!(r.exit_code, 3, "{}", r.summary);
    // A path that does not exist is unusable input.
    assert!(triage(&t.path().join("nope")).is_err());
}

#[test]
fn a_plain_folder_of_gz_files_and_a_single_file_work() {
    let t = tempfile::tempdir().unwrap();
    for (i, n) in [3u32, 8, 13].iter().enumerate() {
        let mut s = info_lines(0.0, 10);
        s.push_str(&format!(
            "{} CRITICAL queue {n} overflowed by {} items\n",
            ts(1.0 + i as f64),
            n * 10
        ));
        write(t.path(), &format!("app.log.{i}.gz"), &gz(&s));
    }
    let r = triage(t.path()).unwrap();
    assert_eq!(r.exit_code, 1);
    assert_eq!(r.signatures.len(), 1);
    assert_eq!(
        r.signatures[0].signature,
        "CRITICAL queue <n> overflowed by <n> items"
    );
    assert_eq!(r.signatures[0].count, 3);
    assert_eq!(r.signatures[0].processes, ["app"]);
    assert_eq!(r.signatures[0].kind, Kind::Fatal);

    let one = triage(&t.path().join("app.log.1.gz")).unwrap();
    assert_eq!(one.signatures[0].count, 1);
    assert_eq!(one.files.len(), 1);
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let t = tempfile::tempdir().unwrap();
    let mut both = gz(&format!("{} ERROR first member 1\n", ts(1.0)));
    both.extend(gz(&format!("{} ERROR first member 2\n", ts(2.0))));
    write(t.path(), "w.gz", &both);
    let r = triage(t.path()).unwrap();
    assert_eq!(r.signatures[0].count, 2);
    assert_eq!(r.files[0].damaged, None);
}
