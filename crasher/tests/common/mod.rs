//! Helpers the end-to-end tests of the `crasher` binary share.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `crasher` binary under test, with the settings that could leak in
/// from the environment cleared and its own log at `warn`.
pub fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    c.env_remove("CRASHER_ENV")
        .env_remove("CRASHER_ON_FAILURE")
        .env_remove("CRASHER_NETWORK")
        .env("CRASHER_LOG", "warn");
    c
}

/// The run id a soak prints first (`Run ID in DIR`).
pub fn run_id(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        l.strip_prefix("Run ")?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    })
}

/// Runs a soak with exactly `args` plus `--runs RUNS --on-failure kill`,
/// checks that no process of it survived, and returns its output, stdout
/// and run id.
pub fn soak(runs: &Path, args: &[&str]) -> (Output, String, String) {
    let out = crasher()
        .args(args)
        .arg("--runs")
        .arg(runs)
        .args(["--on-failure", "kill"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = run_id(&stdout).unwrap_or_else(|| {
        panic!(
            "no run id in:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let left = procs::processes_of_run(&id);
    assert!(left.is_empty(), "processes of run {id} survived: {left:?}");
    (out, stdout, id)
}

/// The glyphs of the faults and checks a soak printed (`c1`, `rS`, `p0`,
/// `Join worker4.`…), one per event, read from `run.events` in the run
/// directory its first line names (`Run ID in DIR`). Searching stdout for
/// `c1` would also match a temporary path or a run id.
pub fn fault_glyphs(stdout: &str) -> Vec<String> {
    let Some(dir) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_once(" in ").map(|(_, d)| d))
    else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(Path::new(dir).join("run.events")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] != "message")
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a soak printed the glyph `g` (see [`fault_glyphs`]).
pub fn saw(glyphs: &[String], g: &str) -> bool {
    glyphs.iter().any(|x| x == g)
}
