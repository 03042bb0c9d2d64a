//! Workload shapes (issue 18): `--workload` shapes each feeder's rate over
//! time, the run record keeps what the feeders offered next to what was
//! committed, and the HTML report shows both rates.

mod common;

use std::path::PathBuf;

use common::{crasher, soak};

/// Offered bytes of one run, per key, from its run.json.
fn offered(stdout: &str) -> (PathBuf, serde_json::Value) {
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_once(" in ").map(|(_, d)| d))
        .unwrap();
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(dir).join("run.json")).unwrap(),
    )
    .unwrap();
    (PathBuf::from(dir), rec)
}

fn last_bytes(series: &serde_json::Value) -> f64 {
    series.as_array().unwrap().last().unwrap()["bytes"]
        .as_f64()
        .unwrap()
}

/// The same run, constant and in bursts (on 1 s of every 3): the bursts
/// offer about a third as much, and the report draws the offered rate.
#[test]
fn bursts_offer_a_third_of_a_constant_rate_and_the_report_shows_it() {
    let mut totals = Vec::new();
    for shape in ["constant", "bursts:1/2"] {
        let runs = tempfile::tempdir().unwrap();
        let (out, stdout, _) = soak(
            runs.path(),
            &[
                "2",
                "--keys",
                "A,B",
                "--input-bytes",
                "4000000",
                "--rate",
                "40000",
                "--duration",
                "9s",
                "--workload",
                shape,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{shape}: {stdout}");
        let (dir, rec) = offered(&stdout);
        let a = last_bytes(&rec["offered"]["A"]);
        let b = last_bytes(&rec["offered"]["B"]);
        assert!(
            a > 0.0 && b > 0.0,
            "{shape}: no offered bytes: {}",
            rec["offered"]
        );
        totals.push(a + b);
        let report = crasher()
            .args(["report", dir.to_str().unwrap(), "-o"])
            .arg(runs.path().join("report.html"))
            .output()
            .unwrap();
        assert_eq!(report.status.code(), Some(0));
        let html = std::fs::read_to_string(runs.path().join("report.html")).unwrap();
        assert!(
            html.contains("offered bytes/s") && html.contains("committed bytes/s"),
            "{shape}: the report lacks the offered or committed rate"
        );
    }
    let ratio = totals[1] / totals[0];
    // One third in the long run; a 9 s run holds three periods, and the
    // feeders start on their own schedule within the first one.
    assert!(
        (0.2..=0.55).contains(&ratio),
        "bursts:1/2 offered {ratio:.2} of constant ({totals:?})"
    );
}

#[test]
fn a_workload_that_cannot_apply_is_a_usage_error_before_anything_starts() {
    for (args, needle) in [
        (&["--workload", "sine:3"][..], "shapes: constant"),
        (
            &["--workload", "Z=ramp:10"][..],
            "key \"Z\" is not one of --keys",
        ),
        (&["--workload", "ramp:10", "--rate", "0"][..], "--rate is 0"),
        (
            &["--workload", "ramp:10", "--env", "tcp"][..],
            "no {workload} placeholder",
        ),
    ] {
        let runs = tempfile::tempdir().unwrap();
        let out = crasher()
            .args(["2", "--keys", "A", "--input-bytes", "10000", "--runs"])
            .arg(runs.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            std::fs::read_dir(runs.path()).unwrap().next().is_none(),
            "{args:?}: something was created"
        );
    }
}
