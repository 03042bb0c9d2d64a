//! `crasher replay` and `crasher shrink` end to end: a clean run replays
//! cleanly, an old record is refused with a clear message, a run of an
//! injected bug replays to the same violation class, and its shrunk
//! schedule (≤ 3 faults) runs as a recipe and still shows the class.

mod common;

use std::path::Path;

use common::{crasher, soak};

fn record(runs: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(runs.join(id).join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = crasher().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No process of any run under `runs` survived.
fn nothing_left(runs: &Path) {
    for e in walk(runs) {
        if e.file_name().is_some_and(|n| n == "run.json") {
            let rec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&e).unwrap()).unwrap();
            let id = rec["run_id"].as_str().unwrap();
            let left = procs::processes_of_run(id);
            assert!(left.is_empty(), "processes of run {id} survived: {left:?}");
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

/// A run that found nothing replays cleanly: its faults fire again (same
/// decisions, recorded anew), the replay holds and says `same class: yes`.
/// The same record without its structured faults is refused as older than
/// replayable schedules (exit 2), not a panic.
#[test]
fn a_clean_run_replays_cleanly_and_an_old_record_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let runs = t.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let (out, stdout, id) = soak(
        &runs,
        &[
            "2", "crash1", "crash-sink", "--keys", "A", "--input-bytes", "100000", "--rate",
            "50000", "--seed", "11", "--timing",
            "crash_worker_start=0.5,crash_sink_start=0.5,crash_sink_gap_min=1,crash_sink_gap_max=2,\
             crash_worker_before=1,crash_worker_down=0.5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rec = record(&runs, &id);
    let decisions = rec["decisions"].as_array().unwrap().clone();
    assert!(decisions.len() >= 2, "too few faults to replay: {stdout}");
    for d in &decisions {
        assert!(d["fault"]["kind"].is_string(), "no structured fault: {d}");
    }
    let (code, out, err) = run(&["replay", &id, "--runs", runs_s]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("same class: yes"), "{out}");
    // The replayed run recorded the same decisions, in order.
    let line = out.lines().find(|l| l.starts_with("try 1/1")).unwrap();
    let dir = line
        .split(" in ")
        .nth(1)
        .unwrap()
        .split(": same")
        .next()
        .unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(dir).join("run.json")).unwrap())
            .unwrap();
    let whats = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|d| d["what"].as_str().unwrap().to_owned())
            .collect()
    };
    // The same decisions in order; the replayed run may end (every key
    // committed) before its last faults are due: replay keeps decisions,
    // not timing.
    let (was, now) = (
        whats(&decisions),
        whats(again["decisions"].as_array().unwrap()),
    );
    assert!(now.len() >= 2, "too few faults replayed:\n{out}");
    assert_eq!(now[..], was[..now.len()], "the replay decided otherwise");
    nothing_left(&runs);

    // An old record: the same run without `fault`.
    let old = t.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut rec = rec;
    for d in rec["decisions"].as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("fault");
    }
    std::fs::write(old.join("run.json"), rec.to_string()).unwrap();
    let (code, out, err) = run(&["replay", old.to_str().unwrap(), "--runs", runs_s]);
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("predates replayable schedules"), "{err}");
}

/// The arguments of a failing run of an injected bug: many pauses (which
/// do not trigger it), then one crash of worker 1 (which does: the bug acks
/// feeders before the commit, so a crash loses the acked lines).
fn failing_run(runs: &Path) -> (String, usize) {
    let (out, stdout, id) = soak(
        runs,
        &[
            "2",
            "crash1.slow",
            "pause",
            "--keys",
            "A",
            "--input-bytes",
            "200000",
            "--rate",
            "60000",
            "--duration",
            "40s",
            "--inject",
            "ack-before-commit",
            "--seed",
            "5",
            "--timing",
            "crash_worker_start=1,crash_worker_slow_iterations=3,crash_worker_before=0.2,\
             pause_gap_min=0.2,pause_gap_max=0.4,pause_min=0.2,pause_max=0.4",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the bug was not caught:\n{stdout}"
    );
    assert!(stdout.contains("VIOLATION (sanity)"), "{stdout}");
    let n = record(runs, &id)["decisions"].as_array().unwrap().len();
    (id, n)
}

/// A failing run replays to the same class; shrinking it ends with at
/// most 3 faults, and the recipe it writes shows the class again.
#[test]
fn a_failing_run_replays_and_shrinks_to_a_recipe_that_reproduces() {
    let t = tempfile::tempdir().unwrap();
    let runs = t.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let (id, faults) = failing_run(&runs);
    assert!(faults >= 3, "too few faults to shrink: {faults}");

    let (code, out, err) = run(&["replay", &id, "--runs", runs_s, "--times", "2"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("same class: yes"), "{out}");

    let (code, out, err) = run(&[
        "shrink", &id, "--runs", runs_s, "--tries", "1", "--budget", "150s",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let dir = runs.join(
        std::fs::read_dir(&runs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("shrink-"))
            .unwrap(),
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let after: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("- faults: "))
        .and_then(|l| l.split(" -> ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fault count in the report:\n{report}"));
    assert!(after <= 3, "shrunk to {after} faults:\n{report}\n{err}");
    assert!(after < faults, "nothing shrunk:\n{report}");
    assert!(report.contains("final reproduction rate"), "{report}");

    // The recipe runs and shows the class again.
    let recipe = dir.join("minimal.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(
        text.contains("[replay]") && text.contains("class = \"sanity\""),
        "{text}"
    );
    let (code, out, err) = run(&["recipe", recipe.to_str().unwrap(), "--runs", runs_s]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("same class: yes"), "{out}");
    nothing_left(&runs);
}
