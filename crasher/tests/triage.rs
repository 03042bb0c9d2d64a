//! `crasher triage`, `crasher runs` and `crasher report`, through the
//! binary, on crafted run directories; the report is also loaded in
//! headless Chromium (when `/usr/bin/chromium` is installed) to check that
//! it renders with every section.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use triage::record::{CheckResult, Event, ProcSample, RunRecord};

const CHROMIUM: &str = "/usr/bin/chromium";
/// 2023-11-14 22:13:20 UTC.
const T0: f64 = 1_700_000_000.0;

fn crasher(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crasher"))
        .args(args)
        .env_remove("CRASHER_RUNS")
        .output()
        .expect("run crasher")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ev(t: f64, kind: &str, text: &str) -> Event {
    Event {
        t,
        kind: kind.into(),
        text: text.into(),
    }
}

/// A finished run with a violation, two keys' progress, CPU and memory
/// samples and a sink log with the duplicate that caused it.
fn violation_run(dir: &Path, id: &str) -> RunRecord {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut r = RunRecord {
        run_id: id.into(),
        profile: "builtin:passthrough".into(),
        seed: 99,
        args: vec!["3".into(), "crash1".into(), "pause".into()],
        pid: Some(1),
        start: T0,
        end: Some(T0 + 60.0),
        verdict: "violation".into(),
        exit_code: Some(1),
        reason: Some("SANITY2: key B: duplicate at output byte 4096 (input line 91)".into()),
        checks: vec![
            CheckResult {
                name: "crash-loop".into(),
                status: "passed".into(),
                detail: String::new(),
            },
            CheckResult {
                name: "sanity".into(),
                status: "failed".into(),
                detail: "SANITY2: key B: duplicate at output byte 4096 (input line 91)\n  expected: B0000091 <x>\n  found: B0000090 <y>".into(),
            },
        ],
        events: vec![
            ev(0.0, "message", "Run x"),
            ev(5.0, "crash", "c1"),
            ev(7.0, "restart", "r1"),
            ev(20.0, "pause", "p2"),
            ev(24.0, "resume", "u2"),
            ev(30.0, "join", "Join worker3."),
            ev(40.0, "crash", "cS"),
            ev(41.0, "restart", "rS"),
            ev(45.0, "shrink", "Shrink worker3"),
            ev(58.0, "violation", "VIOLATION (sanity): SANITY2: key B: duplicate at output byte 4096 (input line 91)"),
        ],
        ..RunRecord::default()
    };
    r.faults.insert("worker_crashes".into(), 1);
    for i in 0..30u32 {
        let t = f64::from(i) * 2.0;
        for (k, rate) in [("A", 1000.0), ("B", 700.0)] {
            r.push_progress(t, k, (t * rate) as u64);
        }
        let samples: Vec<ProcSample> = ["sink", "initializer", "worker1", "worker2"]
            .iter()
            .enumerate()
            .map(|(j, n)| ProcSample {
                role: if *n == "sink" { "sink" } else { "worker" }.into(),
                name: (*n).into(),
                pid: 100 + j as u32,
                cpu_percent: 10.0 + j as f32 * 5.0 + (i % 3) as f32,
                memory_bytes: (20 + j as u64 + u64::from(i)) << 20,
            })
            .collect();
        r.push_samples(t, &samples);
    }
    r.write_atomic(&dir.join("run.json")).unwrap();
    std::fs::write(
        dir.join("logs/sink.log"),
        "2023-11-14T22:13:21.000000Z INFO  listening on 127.0.0.1:7000\n\
         2023-11-14T22:14:17.500000Z FATAL duplicate data: output offset 4200 > message_id 4096 worker worker2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("run.log"),
        "Run x\n,c1,r1p2u2Join worker3.cSrSShrink worker3,\n",
    )
    .unwrap();
    r
}

#[test]
fn triage_exit_codes_table_and_json() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("r1");
    violation_run(&run, "r1");
    let run_s = run.to_str().unwrap();
    let o = crasher(&["triage", run_s]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let out = stdout(&o);
    assert!(
        out.contains("FATAL duplicate data: output offset <n> > message_id <n> worker worker<n>"),
        "{out}"
    );
    assert!(out.contains("e.g. logs/sink.log:2:"), "{out}");
    assert!(
        out.contains("after Shrink worker3 at +45.0s, 12.5s before"),
        "{out}"
    );
    assert!(out.contains("Verdict: failure evidence"), "{out}");

    let o = crasher(&["triage", run_s, "--json"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verdict"], "evidence");
    assert_eq!(j["run"]["run_id"], "r1");
    let kinds: Vec<&str> = j["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["violation", "duplicate-data"]);

    // Nothing to read: unknown, never clean.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(empty.join("logs")).unwrap();
    let o = crasher(&["triage", empty.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    assert!(stdout(&o).contains("unknown: no logs"), "{}", explain(&o));
    // Unusable input.
    let o = crasher(&["triage", t.path().join("nope").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope"),
        "{}",
        explain(&o)
    );
}

#[test]
fn runs_lists_every_run_with_its_verdict() {
    let t = tempfile::tempdir().unwrap();
    let runs = t.path();
    violation_run(&runs.join("20231114-221320-aaaa"), "20231114-221320-aaaa");
    let holds = RunRecord {
        run_id: "20231114-230000-bbbb".into(),
        args: vec![
            "2".into(),
            "crash0".into(),
            "--duration".into(),
            "10m".into(),
        ],
        start: T0 + 2800.0,
        end: Some(T0 + 3400.0),
        verdict: "holds".into(),
        exit_code: Some(0),
        ..RunRecord::default()
    };
    std::fs::create_dir_all(runs.join("b")).unwrap();
    holds.write_atomic(&runs.join("b/run.json")).unwrap();
    // Still "running", but its supervisor is long gone.
    let gone = RunRecord {
        run_id: "20231115-000000-cccc".into(),
        start: T0 + 7000.0,
        pid: Some(u32::MAX - 7),
        events: vec![ev(30.0, "crash", "c1")],
        ..RunRecord::default()
    };
    std::fs::create_dir_all(runs.join("c")).unwrap();
    gone.write_atomic(&runs.join("c/run.json")).unwrap();
    // A run from before run records.
    std::fs::create_dir_all(runs.join("old")).unwrap();
    std::fs::write(
        runs.join("old/run.log"),
        "Start time: 1699990000000\n,,c1r1,\nEnd time: 1699990042000\n",
    )
    .unwrap();
    // Not runs.
    std::fs::create_dir_all(runs.join("inputs/bytes100-seed0")).unwrap();
    std::os::unix::fs::symlink(runs.join("b"), runs.join("current")).unwrap();

    let o = crasher(&["runs", "--runs", runs.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].starts_with("old ")
            && lines[1].contains("no run.json")
            && lines[1].contains("42.0s"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("20231114-221320-aaaa") && lines[2].contains("violation (1)"),
        "{out}"
    );
    assert!(
        lines[2].contains("2023-11-14 22:13:20")
            && lines[2].contains("1m00s")
            && lines[2].contains("3 crash1 pause"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("20231114-230000-bbbb")
            && lines[3].contains("holds (0)")
            && lines[3].contains("10m00s"),
        "{out}"
    );
    assert!(
        lines[4].starts_with("20231115-000000-cccc") && lines[4].contains("abandoned"),
        "{out}"
    );

    let o = crasher(&["runs", "--runs", runs.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 4);
    // The documented schema (docs/commands.md, "Machine-readable output").
    for row in j.as_array().unwrap() {
        let mut names: Vec<&String> = row.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "args",
                "dir",
                "duration",
                "exit_code",
                "id",
                "start",
                "verdict"
            ],
            "{row}"
        );
    }
    let o = crasher(&["runs", "--runs", runs.join("missing").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
}

fn write_report(dir: &Path) -> PathBuf {
    let out = dir.join("out/report.html");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = crasher(&[
        "report",
        dir.join("run").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(stdout(&o).trim(), out.to_str().unwrap());
    out
}

#[test]
fn report_is_one_self_contained_file() {
    let t = tempfile::tempdir().unwrap();
    violation_run(&t.path().join("run"), "r-report");
    let html = std::fs::read_to_string(write_report(t.path())).unwrap();
    for id in [
        "verdict",
        "facts",
        "violation",
        "checks",
        "timeline",
        "progress",
        "throughput",
        "resources",
        "signatures",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    // Nothing is fetched: no script, no link, no image or font source, no URL
    // but the SVG namespace name.
    for bad in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(html.contains("SANITY2: key B: duplicate at output byte 4096"));
    assert!(
        html.contains("found: B0000090 &lt;y&gt;"),
        "diagnosis escaped"
    );
    assert!(
        html.contains("FATAL duplicate data"),
        "triage in the report"
    );
    // Default output: RUN_DIR/report.html.
    let o = crasher(&["report", t.path().join("run").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(t.path().join("run/report.html").is_file());
    // No run record: unusable.
    let o = crasher(&["report", t.path().join("out").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("run.json"),
        "{}",
        explain(&o)
    );
}

#[test]
fn report_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        println!("skipped: {CHROMIUM} is not installed (.ci/install-deps installs it)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    violation_run(&t.path().join("run"), "r-chromium");
    let report = write_report(t.path());
    let log = t.path().join("chromium.log");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!(
        "--user-data-dir={}",
        t.path().join("profile").display()
    ))
    .arg("--dump-dom")
    .arg(format!("file://{}", report.display()));
    let mut p = procs::Proc::spawn("chromium", cmd, &log).expect("start chromium");
    let status = p.wait_deadline(Instant::now() + Duration::from_secs(90));
    let dom = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(status, Ok(s) if s.success()), "{status:?}\n{dom}");
    // The DOM as Chromium parsed it: every section, and the charts' shapes.
    for id in [
        "verdict",
        "timeline",
        "timeline-chart",
        "progress",
        "progress-chart",
        "throughput-chart",
        "cpu-chart",
        "rss-chart",
        "violation",
        "signatures",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "no #{id} in the rendered DOM:\n{dom}"
        );
    }
    assert!(dom.contains("Verdict: violation (exit 1)"), "{dom}");
    // Two keys + one throughput line + four processes twice.
    assert_eq!(dom.matches("<polyline").count(), 2 + 1 + 4 * 2, "{dom}");
    // Crashes, restarts, the join and the shrink on the timeline.
    assert_eq!(dom.matches("class=\"fault ").count(), 6, "{dom}");
    assert_eq!(dom.matches("class=\"pause\"").count(), 1, "{dom}");
    assert!(dom.contains("class=\"violation\""), "{dom}");
}
