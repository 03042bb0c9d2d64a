//! `crasher triage`, `crasher runs` and `crasher report`.
//!
//! Exit codes: 0 no failure evidence (or done), 1 failure evidence found,
//! 2 unusable input, 3 unknown (no logs, or damaged logs and no evidence).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::triage;
use crate::record::{self, RunRecord};
use crate::{report, runs, text};

/// The run directory used when none is given.
pub const DEFAULT_RUN: &str = "crasher-runs/current";

/// `crasher triage [RUN_DIR] [--json]`.
#[derive(Debug, Clone, clap::Args)]
pub struct TriageArgs {
    /// A run directory, a folder of `.log`/`.gz` files, or one log file.
    #[arg(default_value = DEFAULT_RUN, value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Print the triage as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `crasher runs [--runs DIR] [--json]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunsArgs {
    /// Where runs live.
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
    /// Print the runs as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `crasher report [RUN_DIR] [-o FILE]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The run directory (it must hold a `run.json`).
    #[arg(default_value = DEFAULT_RUN, value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Where to write the HTML file (default: RUN_DIR/report.html).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Runs `crasher triage`.
pub fn run_triage(a: TriageArgs) -> anyhow::Result<ExitCode> {
    match triage(&a.run_dir) {
        Ok(t) => {
            if a.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&t)?));
            } else {
                print(&text::render(&t));
            }
            Ok(ExitCode::from(t.exit_code))
        }
        Err(e) => {
            eprintln!("crasher triage: {e}");
            Ok(ExitCode::from(verdict::USAGE))
        }
    }
}

/// Runs `crasher runs`.
pub fn run_runs(a: RunsArgs) -> anyhow::Result<ExitCode> {
    match runs::list(&a.runs) {
        Ok(rows) => {
            if a.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
            } else if rows.is_empty() {
                print(&format!("no runs in {}\n", a.runs.display()));
            } else {
                print(&runs::render(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("crasher runs: {e}");
            Ok(ExitCode::from(verdict::USAGE))
        }
    }
}

/// Runs `crasher report`.
pub fn run_report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let rec_path = a.run_dir.join(record::FILE);
    let rec = match RunRecord::read(&rec_path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "crasher report: {e}\n(the report needs the run record; `crasher triage {}` works without it)",
                a.run_dir.display()
            );
            return Ok(ExitCode::from(verdict::USAGE));
        }
    };
    let t = match triage(&a.run_dir) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("crasher report: no log triage in the report: {e}");
            None
        }
    };
    let html = report::render(&rec, t.as_ref());
    let out = a.output.unwrap_or_else(|| a.run_dir.join("report.html"));
    if let Err(e) = std::fs::write(&out, html) {
        eprintln!("crasher report: cannot write {}: {e}", out.display());
        return Ok(ExitCode::from(verdict::USAGE));
    }
    print(&format!("{}\n", out.display()));
    Ok(ExitCode::SUCCESS)
}
