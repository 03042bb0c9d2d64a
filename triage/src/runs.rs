//! The list of past runs (`crasher runs`): one row per run directory, from
//! its `run.json` (or, for a run without one, from its `run.log`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::pid_alive;
use crate::error::TriageError;
use crate::record::{self, RunRecord};
use crate::text::relative;
use crate::time::{format_utc, now};
use crate::timeline::parse_run_log;

/// One past run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Run id (the directory name when the record has none).
    pub id: String,
    /// The run directory.
    pub dir: PathBuf,
    /// Start, unix seconds.
    pub start: Option<f64>,
    /// Command-line words.
    pub args: Vec<String>,
    /// `holds`, `violation`, `unknown`, `running`, `abandoned` (its
    /// supervisor is gone but the record never got a verdict), `no run.json`
    /// or `bad run.json`.
    pub verdict: String,
    /// Exit code, when decided.
    pub exit_code: Option<u8>,
    /// Seconds it lasted (so far, for a running one).
    pub duration: Option<f64>,
}

fn row_of(dir: &Path) -> Option<RunRow> {
    let id = dir.file_name()?.to_string_lossy().into_owned();
    let rec_path = dir.join(record::FILE);
    // Anything named run.json (a directory, a dangling symlink...) makes
    // this a run, reported as a bad record rather than left out.
    if rec_path.symlink_metadata().is_ok() {
        return Some(match RunRecord::read(&rec_path) {
            Ok(r) => {
                let mut verdict = r.verdict.clone();
                let mut duration = r.duration();
                if r.end.is_none() && verdict == record::RUNNING {
                    if r.pid.is_some_and(pid_alive) {
                        duration = Some(now() - r.start);
                    } else {
                        verdict = "abandoned".into();
                    }
                }
                RunRow {
                    id: if r.run_id.is_empty() {
                        id
                    } else {
                        r.run_id.clone()
                    },
                    dir: dir.to_owned(),
                    start: Some(r.start),
                    args: r.args,
                    verdict,
                    exit_code: r.exit_code,
                    duration,
                }
            }
            Err(_) => RunRow {
                id,
                dir: dir.to_owned(),
                start: None,
                args: Vec::new(),
                verdict: "bad run.json".into(),
                exit_code: None,
                duration: None,
            },
        });
    }
    let Ok(log) = std::fs::read(dir.join("run.log")) else {
        // A run driven by the low-level commands keeps only state.json.
        return dir.join("state.json").is_file().then(|| RunRow {
            start: start_of_id(&id),
            id,
            dir: dir.to_owned(),
            args: vec!["(low-level commands)".into()],
            verdict: "manual".into(),
            exit_code: None,
            duration: None,
        });
    };
    let (_, start, end, _) = parse_run_log(&String::from_utf8_lossy(&log));
    Some(RunRow {
        id,
        dir: dir.to_owned(),
        start,
        args: Vec::new(),
        verdict: "no run.json".into(),
        exit_code: None,
        duration: start.zip(end).map(|(s, e)| e - s),
    })
}

/// The UTC start a run id (`YYYYMMDD-HHMMSS-xxxx`) carries, unix seconds.
fn start_of_id(id: &str) -> Option<f64> {
    let digits = |r: std::ops::Range<usize>| id.get(r)?.parse::<u32>().ok();
    if id.as_bytes().get(8) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, sec) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let t = crate::time::unix_of_civil(
        i64::from(y),
        i64::from(mo),
        i64::from(d),
        i64::from(h),
        i64::from(mi),
        i64::from(sec),
    )?;
    Some(t as f64)
}

/// Every run under `runs` (directories with a `run.json` or a `run.log`),
/// oldest first.
pub fn list(runs: &Path) -> Result<Vec<RunRow>, TriageError> {
    let entries = std::fs::read_dir(runs).map_err(|source| TriageError::Io {
        path: runs.to_owned(),
        source,
    })?;
    let mut rows: Vec<RunRow> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| row_of(&e.path()))
        .collect();
    rows.sort_by(|a, b| {
        a.start
            .unwrap_or(f64::MAX)
            .total_cmp(&b.start.unwrap_or(f64::MAX))
            .then(a.id.cmp(&b.id))
    });
    Ok(rows)
}

/// The runs as a table.
pub fn render(rows: &[RunRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<22} {:<19} {:<12} {:>10}  ARGS",
        "ID", "START (UTC)", "VERDICT", "DURATION"
    );
    for r in rows {
        let start = r
            .start
            .map_or("-".to_owned(), |s| format_utc(s)[..19].to_owned());
        let verdict = match r.exit_code {
            Some(c) => format!("{} ({c})", r.verdict),
            None => r.verdict.clone(),
        };
        let duration = r.duration.map_or("-".to_owned(), |d| {
            relative(d).trim_start_matches('+').to_owned()
        });
        let _ = writeln!(
            o,
            "{:<22} {:<19} {:<12} {:>10}  {}",
            r.id,
            start,
            verdict,
            duration,
            r.args.join(" ")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_run_is_listed_with_the_start_its_id_carries() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("20261123-105328-4515");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("state.json"), "{}").unwrap();
        // Neither a record, a log nor a state: not a run.
        std::fs::create_dir(t.path().join("inputs")).unwrap();
        let rows = list(t.path()).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].verdict, "manual");
        assert_eq!(
            &format_utc(rows[0].start.unwrap())[..19],
            "2026-11-23 10:53:28"
        );
        assert!(render(&rows).contains("(low-level commands)"));
    }

    #[test]
    fn ids_that_are_not_timestamps_have_no_start() {
        assert_eq!(start_of_id("inputs"), None);
        assert_eq!(start_of_id("20261399-105328-4515"), None);
        assert_eq!(start_of_id("2026112-3105328"), None);
    }
}
