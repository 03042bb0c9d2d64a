//! The run record survives a write and a read unchanged, tolerates fields
//! it does not know and ones that are missing, and names the place of bad
//! JSON.

use triage::record::{CheckResult, Event, ProcSample, RunRecord};
use triage::TriageError;

fn full_record() -> RunRecord {
    let mut r = RunRecord {
        run_id: "20260101-000000-beef".into(),
        run_dir: Some("/tmp/runs/x".into()),
        profile: "builtin:passthrough".into(),
        seed: 12_345_678_901,
        args: vec![
            "4".into(),
            "crash1".into(),
            "grow".into(),
            "--duration".into(),
            "10m".into(),
        ],
        pid: Some(4242),
        start: 1_767_225_600.25,
        end: Some(1_767_226_200.5),
        verdict: "violation".into(),
        reason: Some("SANITY2: key B: byte 1200 differs".into()),
        exit_code: Some(1),
        paused: true,
        checks: vec![
            CheckResult {
                name: "sanity".into(),
                status: "failed".into(),
                detail: "SANITY2: key B: byte 1200 differs".into(),
            },
            CheckResult {
                name: "ack-progress".into(),
                status: "passed".into(),
                detail: String::new(),
            },
        ],
        events: vec![
            Event {
                t: 1.5,
                kind: "crash".into(),
                text: "c1".into(),
            },
            Event {
                t: 2.25,
                kind: "join".into(),
                text: "Join worker4.".into(),
            },
        ],
        ..RunRecord::default()
    };
    r.faults.insert("worker_crashes".into(), 3);
    for t in 0..5 {
        let t = f64::from(t) * 2.0;
        r.push_samples(
            t,
            &[ProcSample {
                role: "worker".into(),
                name: "worker1".into(),
                pid: 100,
                cpu_percent: 12.5,
                memory_bytes: 1 << 24,
            }],
        );
        r.push_progress(t, "A", (t * 1000.0) as u64);
        r.push_progress(t, "B", 7);
    }
    r
}

#[test]
fn a_record_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("run.json");
    let r = full_record();
    r.write_atomic(&p).unwrap();
    let back = RunRecord::read(&p).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.processes["worker1"].points.len(), 5);
    assert_eq!(back.keys["A"].len(), 5);
    // Flat progress keeps its first point and a moving end.
    assert_eq!(back.keys["B"].len(), 2);
    assert_eq!(back.keys["B"][1].t, 8.0);
    // Rewriting replaces the file whole; no temporary file is left behind.
    let mut r2 = back.clone();
    r2.verdict = "holds".into();
    r2.write_atomic(&p).unwrap();
    assert_eq!(RunRecord::read(&p).unwrap().verdict, "holds");
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["run.json"]);
    assert!((r.duration().unwrap() - 600.25).abs() < 1e-9);
}

#[test]
fn missing_and_unknown_fields_are_tolerated() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("run.json");
    std::fs::write(&p, r#"{"run_id":"x","start":5.0,"from_the_future":[1,2]}"#).unwrap();
    let r = RunRecord::read(&p).unwrap();
    assert_eq!(r.run_id, "x");
    assert_eq!(r.verdict, "running");
    assert!(r.events.is_empty());
}

#[test]
fn bad_json_is_named_with_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("run.json");
    std::fs::write(
        &p,
        "{\n  \"run_id\": \"x\",\n  \"seed\": \"not a number\"\n}",
    )
    .unwrap();
    match RunRecord::read(&p) {
        Err(e @ TriageError::BadRecord { line: 3, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("run.json: line 3"), "{msg}");
        }
        other => panic!("expected a bad record at line 3, got {other:?}"),
    }
    assert!(matches!(
        RunRecord::read(&t.path().join("missing.json")),
        Err(TriageError::Io { .. })
    ));
}
