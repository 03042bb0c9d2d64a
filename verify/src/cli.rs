//! `crasher create-input-files`, `crasher delete-input-files`, `crasher verify`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::check::{check_keys_with, CheckOptions, KeyStatus, Mode};
use crate::input::{
    delete_input_files, spec_file_len, validate_keys, write_input_files_with_progress, InputSpec,
    DEFAULT_KEYS, DEFAULT_SOURCE_BYTES,
};
use crate::workqueue::DEFAULT_MISSING_GRACE;

use verdict::{HOLDS, USAGE, VIOLATION};

/// Parses a routing key: one ASCII letter or digit.
fn parse_key(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [k] if k.is_ascii_alphanumeric() => Ok(*k),
        _ => Err(format!("bad key {s:?}: a key is one ASCII letter or digit")),
    }
}

/// Arguments of `crasher create-input-files`.
#[derive(Debug, clap::Args)]
pub struct CreateInputFilesArgs {
    /// Routing keys, one file each.
    #[arg(long, value_delimiter = ',', value_parser = parse_key, default_value = "A,B,C,D,E,F,G,H,I,J")]
    pub keys: Vec<u8>,
    /// Directory to write `input-file.K.txt` into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Random source bytes per key (16 per line).
    #[arg(long, default_value_t = DEFAULT_SOURCE_BYTES)]
    pub source_bytes: u64,
    /// Seed of the random source.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the TCP-mode variant: full rows only, each line prefixed with
    /// its length as a 4-byte big-endian integer.
    #[arg(long)]
    pub tcp: bool,
}

/// Arguments of `crasher delete-input-files`.
#[derive(Debug, clap::Args)]
pub struct DeleteInputFilesArgs {
    /// Directory holding the input files.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Only these keys' files (default: every `input-file.*.txt`).
    #[arg(long, value_delimiter = ',', value_parser = parse_key)]
    pub keys: Option<Vec<u8>>,
}

/// Arguments of `crasher verify`: one key (`KEY INPUT --sink-dir DIR`), or
/// every key of a run in one pass (`--run RUN_DIR`).
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Routing key: the first byte of the key's lines.
    #[arg(value_parser = parse_key, required_unless_present = "run")]
    pub key: Option<u8>,
    /// The key's input file.
    #[arg(required_unless_present = "run")]
    pub input: Option<PathBuf>,
    /// The sink's output directory (`output.W` and `output.W.txnlog` files).
    #[arg(long, required_unless_present = "run")]
    pub sink_dir: Option<PathBuf>,
    /// Check every key of this run directory in one pass over its sink's
    /// files (its `state.json` names the keys and input files; the mode
    /// defaults to its profile's `verify_mode`).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["key", "input", "sink_dir"])]
    pub run: Option<PathBuf>,
    /// Require the whole input, not just a prefix.
    #[arg(long)]
    pub complete: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The guarantee checked: `exactly-once`, the output is an exact prefix
    /// of the input; `at-least-once` counts and skips exact repeats of
    /// already-verified lines instead of calling them a violation (loss,
    /// reordering and corruption still are); `work-queue`, every input
    /// line exactly once in any order, nothing else; and
    /// `work-queue-at-least-once`, every input line at least once in any
    /// order (repeats counted), nothing else.
    /// [default: exactly-once; with --run, the run profile's verify_mode]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Work-queue modes, without --complete: an uncommitted input line is
    /// missing once a later input line of the key was committed (its
    /// `2-ok` time) more than this many seconds before now.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MISSING_GRACE, value_parser = parse_grace)]
    pub missing_grace: f64,
}

/// Parses a grace: a number of seconds, 0 or more.
fn parse_grace(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a number of seconds (0 or more)"))
}

/// Runs `crasher create-input-files`.
pub fn run_create(args: CreateInputFilesArgs) -> anyhow::Result<ExitCode> {
    let keys = if args.keys.is_empty() {
        DEFAULT_KEYS.to_vec()
    } else {
        args.keys
    };
    validate_keys(&keys)?;
    let spec = InputSpec {
        keys,
        source_bytes: args.source_bytes,
        seed: args.seed,
        tcp: args.tcp,
    };
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let total = spec_file_len(&spec).saturating_mul(spec.keys.len() as u64);
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("input files");
        bar
    });
    let mut progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    };
    write_input_files_with_progress(&args.dir, &spec, &mut progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(ExitCode::from(HOLDS))
}

/// Runs `crasher delete-input-files`.
pub fn run_delete(args: DeleteInputFilesArgs) -> anyhow::Result<ExitCode> {
    delete_input_files(&args.dir, args.keys.as_deref())
        .with_context(|| format!("cannot delete input files in {}", args.dir.display()))?;
    Ok(ExitCode::from(HOLDS))
}

/// The one-line verdict for a key that holds.
fn ok_line(s: &KeyStatus, mode: Mode, complete: bool) -> String {
    let name = s
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.input.display().to_string());
    if let Some(wq) = &s.work_queue {
        let mut line = format!(
            "OK: key {}: {} committed bytes ({} lines) are lines of {name}, in any order ({}): {} of its {} lines committed",
            char::from(s.key),
            s.committed_bytes,
            s.committed_lines,
            mode.as_str(),
            wq.distinct_lines,
            wq.input_lines,
        );
        if complete {
            line.push_str(" (the whole input)");
        }
        if s.duplicates == 0 {
            line.push_str(", none twice");
        } else {
            line.push_str(&format!(", {} repeated line(s) counted", s.duplicates));
        }
        if wq.holes > 0 {
            line.push_str(&format!(
                "; {} line(s) before the last one committed are not committed yet, none for longer than the {}s grace",
                wq.holes, wq.missing_grace
            ));
        }
        return line;
    }
    if complete {
        return format!(
            "{} (the whole input)",
            ok_line(s, mode, false).replace("are a prefix of", "equal")
        );
    }
    let mut line = format!(
        "OK: key {}: {} committed bytes ({} lines) are a prefix of {}",
        char::from(s.key),
        s.committed_bytes,
        s.committed_lines,
        name
    );
    if s.duplicates > 0 {
        line.push_str(&format!(
            " once {} repeated line(s) are skipped ({} bytes verified; at-least-once)",
            s.duplicates, s.verified_bytes
        ));
    }
    line
}

/// Runs `crasher verify KEY INPUT --sink-dir DIR` (a `--run` is resolved
/// by the caller, which knows the run directory's layout, and checked with
/// [`verify_keys`]).
pub fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (Some(key), Some(input), Some(sink_dir)) = (args.key, &args.input, &args.sink_dir) else {
        eprintln!("crasher verify: give KEY INPUT --sink-dir DIR, or --run RUN_DIR");
        return Ok(ExitCode::from(USAGE));
    };
    let mode = args.mode.unwrap_or(Mode::ExactlyOnce);
    let opts = CheckOptions {
        complete: args.complete,
        mode,
        missing_grace: args.missing_grace,
        now: None,
    };
    let checked = check_keys_with(sink_dir, [(key, input.clone())], &opts);
    let status = match checked.map(|mut v| v.remove(0)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crasher verify: error: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    if args.json {
        println!("{}", key_json(&status, mode, args.complete)?);
    } else if let Some(v) = &status.violation {
        println!("VIOLATION: {v}");
    } else {
        println!("{}", ok_line(&status, mode, args.complete));
    }
    Ok(ExitCode::from(if status.holds() {
        HOLDS
    } else {
        VIOLATION
    }))
}

/// One key's result as the JSON object `crasher verify --json` prints.
fn key_json(status: &KeyStatus, mode: Mode, complete: bool) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(status)?;
    v["holds"] = status.holds().into();
    v["complete_required"] = complete.into();
    v["mode"] = mode.as_str().into();
    Ok(v)
}

/// Checks every key of `inputs` in one pass over `sink_dir` and prints a
/// line per key and a summary (or, with `json`, one object: `run`, `mode`,
/// `complete_required`, `holds`, and `keys`, each as `crasher verify
/// --json` prints a key). Exit 0 if every key holds, 1 if one does not, 2
/// if the files cannot be read. `label` names the run in the output.
pub fn verify_keys(
    label: &str,
    sink_dir: &std::path::Path,
    inputs: Vec<(u8, PathBuf)>,
    opts: &CheckOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let statuses = match check_keys_with(sink_dir, inputs, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crasher verify: error: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let holds = statuses.iter().all(KeyStatus::holds);
    if json {
        let keys = statuses
            .iter()
            .map(|s| key_json(s, opts.mode, opts.complete))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let v = serde_json::json!({
            "run": label,
            "mode": opts.mode.as_str(),
            "complete_required": opts.complete,
            "holds": holds,
            "keys": keys,
        });
        println!("{v}");
    } else {
        for s in &statuses {
            match &s.violation {
                Some(v) => println!("VIOLATION: {v}"),
                None => println!("{}", ok_line(s, opts.mode, opts.complete)),
            }
        }
        let bad = statuses.iter().filter(|s| !s.holds()).count();
        if bad == 0 {
            println!(
                "{label}: all {} keys hold ({})",
                statuses.len(),
                opts.mode.as_str()
            );
        } else {
            println!(
                "{label}: {bad} of {} keys violate {}",
                statuses.len(),
                opts.mode.as_str()
            );
        }
    }
    Ok(ExitCode::from(if holds { HOLDS } else { VIOLATION }))
}
