//! Triage of a run: read every log of a run directory (or a folder of
//! logs) in parallel, group the failure evidence into signatures, rank
//! them, and put each next to the harness event that preceded it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::error::TriageError;
use crate::record::{self, RunRecord};
use crate::scan::{self, Example, FileScan, Kind, Needles, Occurrences};
use crate::signature::normalise;
use crate::timeline::{self, FaultWindows, HarnessEvent, Source, Timeline};

/// The verdict of a triage, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Logs were read and hold no failure evidence (exit 0).
    Clean,
    /// Failure evidence was found (exit 1).
    Evidence,
    /// Nothing, or not everything, could be read (exit 3).
    Unknown,
}

impl Verdict {
    /// The process exit code: 0 clean, 1 evidence, 3 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => 0,
            Verdict::Evidence => 1,
            Verdict::Unknown => 3,
        }
    }
}

/// What the run itself recorded, from `run.json` or `run.log`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    /// Run id.
    pub run_id: Option<String>,
    /// Profile.
    pub profile: Option<String>,
    /// Seed.
    pub seed: Option<u64>,
    /// Command-line words.
    pub args: Vec<String>,
    /// The run's own verdict (`running`, `holds`, `violation`...).
    pub verdict: Option<String>,
    /// The run's exit code.
    pub exit_code: Option<u8>,
    /// Why (diagnosis of the violation, or reason of an unknown verdict).
    pub reason: Option<String>,
    /// Start, unix seconds.
    pub start: Option<f64>,
    /// End, unix seconds.
    pub end: Option<f64>,
}

/// One file read.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file, relative to the triaged directory.
    pub file: String,
    /// The process that wrote it.
    pub process: String,
    /// Whether it is gzipped.
    pub gzipped: bool,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes of log read (decompressed).
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Why it could not be read to its end.
    pub damaged: Option<String>,
}

/// The harness event closest before a signature's first occurrence.
#[derive(Debug, Clone, Serialize)]
pub struct Nearest {
    /// Its kind.
    pub kind: String,
    /// Its glyph or message.
    pub text: String,
    /// The process it was about.
    pub subject: Option<String>,
    /// When, unix seconds (exact or estimated), if known.
    pub at: Option<f64>,
    /// Whether `at` is an estimate.
    pub approx: bool,
    /// When only an upper bound is known.
    pub not_after: Option<f64>,
    /// Seconds from it to the first occurrence (a lower bound when only
    /// `not_after` is known).
    pub before_by: Option<f64>,
}

/// One row of the triage table.
#[derive(Debug, Clone, Serialize)]
pub struct Signature {
    /// 1-based rank.
    pub rank: usize,
    /// Kind of evidence.
    pub kind: Kind,
    /// The normalised line.
    pub signature: String,
    /// Lines with this signature.
    pub count: u64,
    /// Earliest occurrence, unix seconds.
    pub first: Option<f64>,
    /// Latest occurrence, unix seconds.
    pub last: Option<f64>,
    /// Processes it was seen in.
    pub processes: Vec<String>,
    /// The earliest example.
    pub example: Example,
    /// The harness event before it.
    pub after: Option<Nearest>,
    /// Whether this is an ERROR seen only within seconds of faults the
    /// harness injected (a dropped connection to a crashed worker): the
    /// expected echo of a fault, listed but not counted as evidence.
    pub expected: bool,
}

/// The whole triage of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Triage {
    /// What was triaged.
    pub path: PathBuf,
    /// Verdict of the triage.
    pub verdict: Verdict,
    /// Its exit code.
    pub exit_code: u8,
    /// One-line summary of the verdict.
    pub summary: String,
    /// The run, as it recorded itself.
    pub run: RunInfo,
    /// Where the harness timeline came from.
    pub timeline_source: Source,
    /// Events in the timeline.
    pub timeline_events: usize,
    /// The signatures, ranked: evidence before expected echoes of faults,
    /// then most severe kind first, then most frequent, then earliest.
    pub signatures: Vec<Signature>,
    /// Every file read.
    pub files: Vec<FileReport>,
    /// Remarks (unreadable run.json, an abandoned run...).
    pub notes: Vec<String>,
    /// Decompressed bytes read in all.
    pub bytes: u64,
    /// Seconds spent reading.
    pub elapsed: f64,
}

/// The logs to read in `dir`: `logs/*.log`, `logs/*.gz` and the `*.log`
/// and `*.gz` directly in it, except `run.log`; `.status` files, hidden
/// files and half-written `.gz.tmp` files are left out. A symlink is
/// listed even when it points nowhere or loops, so it is reported as
/// damaged instead of skipped silently.
fn list_logs(dir: &Path) -> Result<Vec<PathBuf>, TriageError> {
    let mut out = Vec::new();
    for d in [dir.join("logs"), dir.to_owned()] {
        if !d.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|source| TriageError::Io {
            path: d.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.')
                || (d == dir && name == "run.log")
                || !(p.is_file() || p.is_symlink())
            {
                continue;
            }
            if name.ends_with(".log") || name.ends_with(".gz") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Reads `files` on every core, biggest first.
pub fn scan_all(dir: &Path, files: &[PathBuf], windows: &FaultWindows) -> Vec<FileScan> {
    let needles = Needles::default();
    let mut order: Vec<(u64, &PathBuf)> = files
        .iter()
        .map(|p| (std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), p))
        .collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.0));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(files.len()));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len())
        .max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, p)) = order.get(i) else {
                    break;
                };
                let r = scan::scan_file(p, &relative(dir, p), &needles, windows);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
    v.sort_by(|a, b| a.display.cmp(&b.display));
    v
}

/// Failure evidence in a message of the harness (a `run.log` line or a
/// `run.json` event): a process that died by itself, or a violation.
/// Returns the kind, signature and the process concerned.
pub fn harness_evidence(text: &str) -> Option<(Kind, String, String)> {
    if let Some(rest) = text.strip_prefix("Crash of ") {
        let (who, why) = rest.split_once(" failed: ")?;
        let who = match who {
            "0" => "initializer".to_owned(),
            w if w.bytes().all(|c| c.is_ascii_digit()) => format!("worker{w}"),
            w => w.to_owned(),
        };
        if let Some(at) = why.find("died by itself (") {
            let status = why[at + "died by itself (".len()..]
                .strip_suffix(')')
                .unwrap_or(&why[at..]);
            if status == "exit 0" {
                return None;
            }
            return Some((Kind::Exit, format!("died by itself: {status}"), who));
        }
        return Some((
            Kind::Exit,
            "found dead when the harness came to crash it".to_owned(),
            who,
        ));
    }
    if let Some(rest) = text.strip_prefix("VIOLATION (") {
        let (check, diag) = rest.split_once("): ")?;
        let first = diag.lines().next().unwrap_or("");
        return Some((
            Kind::Violation,
            format!("violation ({check}): {}", normalise(first)),
            "crasher".to_owned(),
        ));
    }
    None
}

struct Group {
    occ: Occurrences,
    processes: BTreeSet<String>,
}

fn add(groups: &mut HashMap<String, Group>, sig: String, occ: &Occurrences, process: &str) {
    match groups.get_mut(&sig) {
        Some(g) => {
            g.occ.merge(occ);
            g.processes.insert(process.to_owned());
        }
        None => {
            groups.insert(
                sig,
                Group {
                    occ: occ.clone(),
                    processes: BTreeSet::from([process.to_owned()]),
                },
            );
        }
    }
}

/// Evidence from the harness's own transcript: `run.log` lines, timed by
/// the matching `run.json` events when there are any.
fn harness_groups(
    groups: &mut HashMap<String, Group>,
    run_log: Option<&str>,
    rec: Option<&RunRecord>,
) {
    let mut timed: HashMap<&str, Vec<f64>> = HashMap::new();
    if let Some(r) = rec {
        for e in r.events.iter().rev() {
            timed
                .entry(e.text.lines().next().unwrap_or(""))
                .or_default()
                .push(r.start + e.t);
        }
    }
    let mut push = |text: &str, file: &str, line: u64, time: Option<f64>| {
        let Some((kind, sig, who)) = harness_evidence(text) else {
            return;
        };
        let first_line = text.lines().next().unwrap_or("");
        let occ = Occurrences {
            kind,
            count: 1,
            after_fault: 0,
            first: time,
            last: time,
            example: Example {
                file: file.to_owned(),
                line,
                text: first_line.chars().take(400).collect(),
                time,
            },
        };
        add(groups, sig, &occ, &who);
    };
    match (run_log, rec) {
        (Some(log), _) => {
            for (i, line) in log.lines().enumerate() {
                if harness_evidence(line).is_some() {
                    let time = timed.get_mut(line).and_then(Vec::pop);
                    push(line, "run.log", i as u64 + 1, time);
                }
            }
        }
        (None, Some(r)) => {
            for (i, e) in r.events.iter().enumerate() {
                push(&e.text, record::FILE, i as u64 + 1, Some(r.start + e.t));
            }
        }
        (None, None) => {}
    }
    // A record that says "violation" is evidence even without its transcript.
    if let Some(r) = rec.filter(|r| r.verdict == "violation") {
        if !groups.values().any(|g| g.occ.kind == Kind::Violation) {
            let failed = r.checks.iter().find(|c| c.status == "failed");
            let check = failed.map_or("unknown check", |c| c.name.as_str());
            let why = r
                .reason
                .clone()
                .or_else(|| failed.map(|c| c.detail.clone()))
                .unwrap_or_default();
            let text = format!("VIOLATION ({check}): {why}");
            if let Some((kind, sig, who)) = harness_evidence(&text) {
                let occ = Occurrences {
                    kind,
                    count: 1,
                    after_fault: 0,
                    first: r.end,
                    last: r.end,
                    example: Example {
                        file: record::FILE.to_owned(),
                        line: 0,
                        text: text.lines().next().unwrap_or("").to_owned(),
                        time: r.end,
                    },
                };
                add(groups, sig, &occ, &who);
            }
        }
    }
}

fn nearest(tl: &Timeline, t: Option<f64>) -> Option<Nearest> {
    let t = t?;
    let e: &HarnessEvent = tl.fault_before(t)?;
    Some(Nearest {
        kind: e.kind.clone(),
        text: e.text.clone(),
        subject: timeline::subject(&e.kind, &e.text),
        at: e.at,
        approx: e.approx,
        not_after: e.not_after,
        before_by: e.at.or(e.not_after).map(|a| t - a),
    })
}

/// Triage of a run directory, a folder of logs, or one log file.
pub fn triage(path: &Path) -> Result<Triage, TriageError> {
    let began = Instant::now();
    let meta = std::fs::metadata(path).map_err(|source| TriageError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (dir, files) = if meta.is_dir() {
        (path.to_owned(), list_logs(path)?)
    } else if meta.is_file() {
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        (dir, vec![path.to_owned()])
    } else {
        return Err(TriageError::NotARun {
            path: path.to_owned(),
            why: "neither a directory nor a file".into(),
        });
    };
    let mut notes = Vec::new();
    let is_dir = meta.is_dir();
    let rec = if is_dir && dir.join(record::FILE).is_file() {
        match RunRecord::read(&dir.join(record::FILE)) {
            Ok(r) => Some(r),
            Err(e) => {
                notes.push(format!("the run record cannot be used: {e}"));
                None
            }
        }
    } else {
        None
    };
    let run_log_path = dir.join("run.log");
    let run_log = if is_dir && run_log_path.is_file() {
        match std::fs::read(&run_log_path) {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                notes.push(format!("{}: {e}", run_log_path.display()));
                None
            }
        }
    } else {
        None
    };

    let mut rotations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in &files {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(t) = name.as_deref().and_then(scan::rotation_time) {
            rotations
                .entry(scan::process_name(name.as_deref().unwrap_or("")))
                .or_default()
                .push(t);
        }
    }
    let tl = match (&rec, &run_log) {
        (Some(r), _) if !r.events.is_empty() || run_log.is_none() => Timeline::from_record(r),
        (_, Some(text)) => Timeline::from_run_log(text, &rotations),
        _ => Timeline::none(),
    };
    let scans = scan_all(&dir, &files, &tl.fault_windows());

    let mut run = RunInfo::default();
    if let Some(r) = &rec {
        run = RunInfo {
            run_id: Some(r.run_id.clone()).filter(|s| !s.is_empty()),
            profile: Some(r.profile.clone()).filter(|s| !s.is_empty()),
            seed: Some(r.seed),
            args: r.args.clone(),
            verdict: Some(r.verdict.clone()),
            exit_code: r.exit_code,
            reason: r.reason.clone(),
            start: Some(r.start),
            end: r.end,
        };
        if r.verdict == record::RUNNING && r.pid.is_some_and(|p| !pid_alive(p)) {
            notes.push("run.json still says `running` but its supervisor is gone: the run was killed or crashed".into());
        }
    } else if let Some(text) = &run_log {
        let (_, start, end, facts) = timeline::parse_run_log(text);
        run.run_id = facts.run_id;
        run.seed = facts.seed;
        run.profile = facts.profile;
        run.start = start;
        run.end = end;
    }

    let mut groups: HashMap<String, Group> = HashMap::new();
    for s in &scans {
        for (sig, occ) in &s.signatures {
            add(&mut groups, sig.clone(), occ, &s.process);
        }
    }
    harness_groups(&mut groups, run_log.as_deref(), rec.as_ref());

    let mut signatures: Vec<Signature> = groups
        .into_iter()
        .map(|(sig, g)| Signature {
            rank: 0,
            kind: g.occ.kind,
            signature: sig,
            count: g.occ.count,
            first: g.occ.first,
            last: g.occ.last,
            processes: g.processes.into_iter().collect(),
            after: nearest(&tl, g.occ.first.or(g.occ.example.time)),
            expected: g.occ.kind == Kind::Error && g.occ.after_fault == g.occ.count,
            example: g.occ.example,
        })
        .collect();
    signatures.sort_by(|a, b| {
        a.expected
            .cmp(&b.expected)
            .then(a.kind.cmp(&b.kind))
            .then(b.count.cmp(&a.count))
            .then(
                a.first
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.first.unwrap_or(f64::MAX)),
            )
            .then(a.signature.cmp(&b.signature))
    });
    for (i, s) in signatures.iter_mut().enumerate() {
        s.rank = i + 1;
    }

    let files: Vec<FileReport> = scans
        .iter()
        .map(|s| FileReport {
            file: s.display.clone(),
            process: s.process.clone(),
            gzipped: s.gzipped,
            size: s.size,
            bytes: s.bytes,
            lines: s.lines,
            damaged: s.damaged.clone(),
        })
        .collect();
    let damaged = files.iter().filter(|f| f.damaged.is_some()).count();
    let lines: u64 = files.iter().map(|f| f.lines).sum::<u64>()
        + run_log.as_ref().map_or(0, |t| t.lines().count() as u64);
    let evidence: Vec<&Signature> = signatures.iter().filter(|s| !s.expected).collect();
    let expected = signatures.len() - evidence.len();
    let (verdict, mut summary) = if !evidence.is_empty() {
        let n: u64 = evidence.iter().map(|s| s.count).sum();
        (
            Verdict::Evidence,
            format!(
                "failure evidence: {} signature(s) in {n} line(s){}",
                evidence.len(),
                if damaged > 0 {
                    format!("; {damaged} damaged file(s) could be read only in part")
                } else {
                    String::new()
                }
            ),
        )
    } else if files.is_empty() && run_log.is_none() && rec.is_none() {
        (
            Verdict::Unknown,
            format!("unknown: no logs in {}", path.display()),
        )
    } else if lines == 0 {
        (
            Verdict::Unknown,
            "unknown: the logs are empty, so there is nothing to judge".to_owned(),
        )
    } else if damaged > 0 {
        (
            Verdict::Unknown,
            format!("unknown: no failure evidence in what could be read, but {damaged} damaged file(s) could be read only in part"),
        )
    } else {
        (
            Verdict::Clean,
            format!(
                "no failure evidence in {} file(s), {lines} line(s)",
                files.len() + usize::from(run_log.is_some())
            ),
        )
    };
    if expected > 0 {
        summary.push_str(&format!(
            "; {expected} error signature(s) seen only right after injected faults are not counted"
        ));
    }
    Ok(Triage {
        path: path.to_owned(),
        verdict,
        exit_code: verdict.exit_code(),
        summary,
        run,
        timeline_source: tl.source,
        timeline_events: tl.events.len(),
        signatures,
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        notes,
        elapsed: began.elapsed().as_secs_f64(),
    })
}

/// Whether a process with this pid exists (Linux `/proc`).
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_messages_that_are_evidence() {
        let (k, sig, who) =
            harness_evidence("Crash of worker2 failed: it died by itself (signal 6 (SIGABRT))")
                .unwrap();
        assert_eq!(
            (k, sig.as_str(), who.as_str()),
            (Kind::Exit, "died by itself: signal 6 (SIGABRT)", "worker2")
        );
        let (_, _, who) =
            harness_evidence("Crash of 0 failed: Error: worker initializer is not running")
                .unwrap();
        assert_eq!(who, "initializer");
        assert!(harness_evidence("Crash of sink failed: it died by itself (exit 0)").is_none());
        let (k, sig, _) =
            harness_evidence("VIOLATION (sanity): SANITY2: key A: offset 12 differs").unwrap();
        assert_eq!(k, Kind::Violation);
        assert_eq!(
            sig,
            "violation (sanity): SANITY<n>: key A: offset <n> differs"
        );
        assert!(harness_evidence("Cluster ready: initializer").is_none());
    }
}
