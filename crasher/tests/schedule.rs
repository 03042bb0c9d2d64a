//! The fault schedule end to end: liveness checks that do not blame the
//! cluster for crasher's own faults, fault coverage in the verdict and the
//! run record, impossible faults refused, and replayable decisions.

mod common;

use common::{crasher, soak};
use std::path::Path;

fn record(runs: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(runs.join(id).join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The false alarm of the all-faults soak, made likely: members are paused
/// for 3–4 s every few seconds while joins wait with a 2 s readiness
/// budget. A join cannot complete while a member is stopped; counting only
/// time in which crasher left the cluster alone, no join is blamed.
#[test]
fn a_pause_during_a_join_is_not_a_false_alarm() {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout, id) = soak(
        t.path(),
        &[
            "3",
            "grow",
            "pause",
            "--schedule",
            "overlapping",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--duration",
            "40s",
            "--timing",
            "grow_start=1,grow_ready=2,crash_worker_start=1,pause_gap_min=1.5,pause_gap_max=2.5,\
             pause_min=3,pause_max=4,ack_progress_period=20",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = record(t.path(), &id);
    let cov = &rec["coverage"];
    assert!(cov["pause"]["fired"].as_u64().unwrap() >= 3, "{cov}");
    assert!(cov["join"]["fired"].as_u64().unwrap() >= 2, "{cov}");
    assert!(
        stdout.contains("Fault coverage (overlapping schedule)"),
        "{stdout}"
    );
}

/// A pause waits, holding its turn, for the one member a crash loop holds
/// while that member recovers (2 s after each restart here), instead of
/// giving up its turn: with one member, a crash loop that asks again at
/// once, and 1–2 s pause gaps, the old rule fired no pause in 20 s (`pause
/// 0 fired`, verdict unknown); the way a 30 s NATS soak in CI paused nothing.
#[test]
fn a_pause_waits_for_the_member_a_crash_loop_holds() {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout, id) = soak(
        t.path(),
        &[
            "1",
            "crash0",
            "pause",
            "--keys",
            "A",
            "--input-bytes",
            "2000000",
            "--rate",
            "50000",
            "--duration",
            "20s",
            "--timing",
            "crash_worker_start=1,crash_worker_before=0,crash_worker_down=0.3,\
             crash_worker_after=2,pause_gap_min=1,pause_gap_max=2,pause_min=0.5,pause_max=1",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cov = &record(t.path(), &id)["coverage"];
    assert!(cov["pause"]["fired"].as_u64().unwrap() >= 2, "{cov}");
    assert!(cov["crash0"]["fired"].as_u64().unwrap() >= 2, "{cov}");
}

/// A requested fault that never fired leaves the verdict unknown, on EOF
/// success as on the duration's end.
#[test]
fn a_fault_that_never_fired_makes_the_verdict_unknown() {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout, id) = soak(
        t.path(),
        &[
            "2",
            "crash1",
            "--keys",
            "A",
            "--input-bytes",
            "100000",
            "--rate",
            "0",
            "--timing",
            "crash_worker_start=600",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("SANITY LOOP SUCCESS"), "{stdout}");
    assert!(
        stdout.contains("Verdict unknown: requested faults were not observed")
            && stdout.contains("crash1 (fired 0, observed 0)"),
        "{stdout}"
    );
    assert_eq!(record(t.path(), &id)["exit_code"], 3);
}

/// Every fault word, not only the crash loops: a requested fault that
/// never fired makes an EOF success unknown (issue 12, item 4).
#[test]
fn any_fault_word_that_never_fired_makes_the_verdict_unknown() {
    let t = tempfile::tempdir().unwrap();
    let (out, stdout, id) = soak(
        t.path(),
        &[
            "2",
            "crash-sink",
            "crash-source",
            "grow-and-shrink",
            "pause",
            "--keys",
            "A",
            "--input-bytes",
            "100000",
            "--rate",
            "0",
            "--timing",
            "crash_sink_start=600,crash_source_start=600,grow_start=600",
            "--timing",
            "pause_gap_min=600,pause_gap_max=601",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("SANITY LOOP SUCCESS"), "{stdout}");
    assert!(
        stdout.contains("Verdict unknown: requested faults were not observed"),
        "{stdout}"
    );
    for fault in ["crash-sink", "crash-source", "pause"] {
        assert!(
            stdout.contains(&format!("{fault} (fired 0, observed 0)")),
            "{fault} not named as never fired:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("join (fired 0, observed 0)") || stdout.contains("grow (fired 0"),
        "grow-and-shrink not named as never fired:\n{stdout}"
    );
    assert_eq!(record(t.path(), &id)["exit_code"], 3);
}

/// Faults that can never fire are refused before anything starts.
#[test]
fn impossible_faults_are_usage_errors() {
    for args in [&["2", "crash5"][..], &["1", "shrink"]] {
        let out = crasher().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[1]), "{err}");
    }
}

/// Two runs with the same seed and arguments make the same decisions in
/// the same order, loop by loop (their timing may differ).
#[test]
fn the_same_seed_makes_the_same_decisions() {
    let decisions = |seed: &str| {
        let t = tempfile::tempdir().unwrap();
        let (_, stdout, id) = soak(
            t.path(),
            &[
                "2",
                "crash1",
                "crash-sink",
                "--keys",
                "A",
                "--input-bytes",
                "4000000",
                "--rate",
                "100000",
                "--duration",
                "20s",
                "--seed",
                seed,
                "--timing",
                "crash_worker_start=0.5,crash_sink_start=0.5,crash_sink_gap_min=1,\
                 crash_sink_gap_max=2,crash_worker_before=1,crash_worker_down=1",
            ],
        );
        let rec = record(t.path(), &id);
        let mut by_loop: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for d in rec["decisions"].as_array().unwrap() {
            by_loop
                .entry(d["source"].as_str().unwrap().to_owned())
                .or_default()
                .push(d["what"].as_str().unwrap().to_owned());
        }
        (by_loop, stdout)
    };
    let (a, out_a) = decisions("42");
    let (b, out_b) = decisions("42");
    for source in ["crash1", "crash-sink"] {
        let (x, y) = (&a[source], &b[source]);
        let n = x.len().min(y.len());
        assert!(n >= 2, "{source}: too few decisions:\n{out_a}\n{out_b}");
        assert_eq!(x[..n], y[..n], "{source} decided differently");
    }
    let (c, _) = decisions("43");
    assert_ne!(
        a["crash1"][0], c["crash1"][0],
        "another seed, other decisions"
    );
}
