//! The run record: `run.json` in a run directory.
//!
//! The soak writes it when the run starts (verdict `running`), rewrites it
//! every few seconds while the run goes on, and once more at the end, so
//! `crasher runs`, `crasher triage` and `crasher report` can tell what a
//! run was, what happened when, and how it ended, even after the run's
//! processes are long gone. The schema is documented in `docs/triage.md`;
//! [`RunRecord::read`] accepts files with fields missing (older or crashed
//! writers) and ignores fields it does not know.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TriageError;

/// File name of the record in a run directory.
pub const FILE: &str = "run.json";

/// File name of the run's event log in a run directory: one JSON event per
/// line, appended as each event happens, so a record whose writer was
/// killed between two rewrites of [`FILE`] still has every event.
pub const EVENTS_FILE: &str = "run.events";

/// Schema version written by this crate.
pub const SCHEMA: u32 = 1;

/// At most this many points are kept per series (one process's samples,
/// one key's progress): beyond it, every other point is dropped, so a long
/// run's record stays small while its whole span remains covered.
pub const MAX_POINTS: usize = 2048;

/// Verdict of a run that has not ended.
pub const RUNNING: &str = "running";

/// Coverage of one fault kind (see the soak's fault schedule).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultCoverage {
    /// How many fired.
    #[serde(default)]
    pub fired: u64,
    /// How many were followed by new commits on every fed key before the
    /// next fault.
    #[serde(default)]
    pub observed: u64,
    /// How many started while another fault was in progress or unobserved.
    #[serde(default)]
    pub overlapped: u64,
    /// Seconds from each observed fault's end to the commit that showed it.
    #[serde(default)]
    pub recovery_s: Vec<f64>,
}

impl FaultCoverage {
    /// `3 fired, 2 observed, 1 overlapped, recovery 0.4/0.9/2.0 s`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} fired, {} observed, {} overlapped",
            self.fired, self.observed, self.overlapped
        );
        if !self.recovery_s.is_empty() {
            let mut v = self.recovery_s.clone();
            v.sort_by(f64::total_cmp);
            s.push_str(&format!(
                ", recovery {:.1}/{:.1}/{:.1} s (min/median/max)",
                v[0],
                v[v.len() / 2],
                v[v.len() - 1]
            ));
        }
        s
    }
}

/// One decision of a fault loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Seconds since the start.
    #[serde(default)]
    pub t: f64,
    /// The loop (`crash1`, `crash-sink`, `grow-shrink`...).
    #[serde(default)]
    pub source: String,
    /// What it decided.
    #[serde(default)]
    pub what: String,
    /// The same decision in a form `crasher replay` can carry out again
    /// (absent in runs recorded before replayable schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// One recorded fault, replayable: what was done, to whom, with which
/// parameters. `Decision::t` is when it started (seconds since the run's
/// start), unless `on_event` names the event it was aimed at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The action: `crash-worker`, `crash-primary`, `crash-sink`,
    /// `crash-feeder`, `pause`, `join`, `shrink`, `power-loss`,
    /// `power-loss-all`, the network faults (`partition`, `isolate`,
    /// `one-way`, `bridge`, `flaky`); recorded but not replayable yet:
    /// `corrupt`, `truncate`.
    pub kind: String,
    /// Whom: `workerN`, `sink`, `feeder.K`, `primary` (whichever node is
    /// the primary when it fires), or the fault's glyph / worker list for
    /// network and disk faults.
    pub target: String,
    /// Seconds the target stays down before its restart (crashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_s: Option<f64>,
    /// Seconds the fault is held before it is undone (pause, network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_s: Option<f64>,
    /// The event this fault was aimed at (targeted faults, e.g. a protocol
    /// phase or a log line); `None` for faults fired at a time. Replay
    /// fires every fault at its recorded time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_event: Option<String>,
}

impl Fault {
    /// A fault of `kind` on `target`, with no parameters.
    pub fn new(kind: &str, target: impl Into<String>) -> Fault {
        Fault {
            kind: kind.to_owned(),
            target: target.into(),
            ..Fault::default()
        }
    }

    /// With a down time.
    pub fn down(mut self, d: std::time::Duration) -> Fault {
        self.down_s = Some(round_ms(d.as_secs_f64()));
        self
    }

    /// With a hold time.
    pub fn hold(mut self, d: std::time::Duration) -> Fault {
        self.hold_s = Some(round_ms(d.as_secs_f64()));
        self
    }

    /// Aimed at `event` (a targeted fault's sink event line, or a log
    /// trigger's line).
    pub fn on_event(mut self, event: impl Into<String>) -> Fault {
        self.on_event = Some(event.into());
        self
    }
}

/// Seconds rounded to the millisecond, as `what` prints them.
fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// Everything known about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Schema version ([`SCHEMA`]).
    #[serde(default)]
    pub schema: u32,
    /// The run id (the run directory's name by default).
    #[serde(default)]
    pub run_id: String,
    /// The run directory when the run was recorded.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Environment profile (its origin: a file or `builtin:NAME`).
    #[serde(default)]
    pub profile: String,
    /// The seed every random choice derived from.
    #[serde(default)]
    pub seed: u64,
    /// The command line's words and options, as given.
    #[serde(default)]
    pub args: Vec<String>,
    /// The supervisor's process id, to tell a live run from an abandoned one.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Start, in unix seconds; event times are relative to it.
    #[serde(default)]
    pub start: f64,
    /// End, in unix seconds; `None` while running (or if the supervisor died).
    #[serde(default)]
    pub end: Option<f64>,
    /// `running`, `holds`, `violation`, `unknown`, `environment error`.
    #[serde(default = "running")]
    pub verdict: String,
    /// Why: the violation's diagnosis or the reason of an unknown verdict.
    #[serde(default)]
    pub reason: Option<String>,
    /// The exit code, once decided (0 holds, 1 violation, 2 environment, 3 unknown).
    #[serde(default)]
    pub exit_code: Option<u8>,
    /// Whether the world was paused (SIGSTOP) at the violation.
    #[serde(default)]
    pub paused: bool,
    /// One result per check.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Faults injected, by kind (`sink_crashes`, `worker_crashes`...).
    #[serde(default)]
    pub faults: BTreeMap<String, u64>,
    /// The fault schedule (`isolated`, `overlapping`, `mixed`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Fault coverage per kind: fired, observed, overlapped, recovery times.
    #[serde(default)]
    pub coverage: BTreeMap<String, FaultCoverage>,
    /// The fault loops' decisions in order, to compare two runs of a seed.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// The harness's timeline.
    #[serde(default)]
    pub events: Vec<Event>,
    /// CPU and memory samples, by process name.
    #[serde(default)]
    pub processes: BTreeMap<String, ProcSeries>,
    /// Committed (verified) bytes over time, by routing key.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<KeyPoint>>,
    /// Bytes the feeders offered (sent, resends included) over time, by
    /// routing key: the load next to what was committed.
    #[serde(default)]
    pub offered: BTreeMap<String, Vec<KeyPoint>>,
}

fn running() -> String {
    RUNNING.to_owned()
}

impl Default for RunRecord {
    fn default() -> Self {
        RunRecord {
            schema: SCHEMA,
            run_id: String::new(),
            run_dir: None,
            profile: String::new(),
            seed: 0,
            args: Vec::new(),
            pid: None,
            start: 0.0,
            end: None,
            verdict: running(),
            reason: None,
            exit_code: None,
            paused: false,
            checks: Vec::new(),
            faults: BTreeMap::new(),
            schedule: None,
            coverage: BTreeMap::new(),
            decisions: Vec::new(),
            events: Vec::new(),
            processes: BTreeMap::new(),
            keys: BTreeMap::new(),
            offered: BTreeMap::new(),
        }
    }
}

/// The outcome of one check of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name (`sanity`, `ack-progress`, `process-death`...).
    pub name: String,
    /// `passed`, `failed` or `off`.
    pub status: String,
    /// What it saw, for a failed check.
    #[serde(default)]
    pub detail: String,
}

/// One thing that happened, like the supervisor's `glyphs::Event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the run started.
    pub t: f64,
    /// `crash`, `restart`, `join`, `shrink`, `pause`, `resume`, `violation`, `message`, `glyph`...
    pub kind: String,
    /// The glyph or message printed.
    pub text: String,
}

/// One process's samples over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSeries {
    /// `sink`, `worker`, `feeder` or `supervisor`.
    pub role: String,
    /// The samples, oldest first.
    pub points: Vec<ProcPoint>,
}

/// CPU and memory of one process at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcPoint {
    /// Seconds since the run started.
    pub t: f64,
    /// Process id at that time (changes at each restart).
    pub pid: u32,
    /// CPU use since the previous sample, in percent of one core.
    pub cpu: f32,
    /// Resident memory, bytes.
    pub rss: u64,
}

/// A key's committed bytes at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KeyPoint {
    /// Seconds since the run started.
    pub t: f64,
    /// Bytes of the key's output committed and verified so far.
    pub bytes: u64,
}

/// One process's CPU and memory, as measured by [`crate::sampler::Sampler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// Role (`sink`, `worker`, `feeder`...).
    pub role: String,
    /// Name (`sink`, `initializer`, `worker3`, `feeder.A`...).
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// CPU use since the previous sample of this pid, percent of one core.
    pub cpu_percent: f32,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
}

/// Drops every other point once a series is full, keeping the first and
/// the newest, so its length stays below [`MAX_POINTS`].
fn thin<T>(v: &mut Vec<T>) {
    if v.len() < MAX_POINTS {
        return;
    }
    let last = v.len() - 1;
    let mut i = 0;
    v.retain(|_| {
        let keep = i % 2 == 0 || i == last;
        i += 1;
        keep
    });
}

impl RunRecord {
    /// Appends samples taken `t` seconds after the start.
    pub fn push_samples(&mut self, t: f64, samples: &[ProcSample]) {
        for s in samples {
            let series = self.processes.entry(s.name.clone()).or_default();
            series.role.clone_from(&s.role);
            series.points.push(ProcPoint {
                t,
                pid: s.pid,
                cpu: s.cpu_percent,
                rss: s.memory_bytes,
            });
            thin(&mut series.points);
        }
    }

    /// Appends a key's committed bytes at `t` (skipped when unchanged since
    /// the previous point, except to mark the series' end).
    pub fn push_progress(&mut self, t: f64, key: &str, bytes: u64) {
        let v = self.keys.entry(key.to_owned()).or_default();
        let n = v.len();
        if n >= 2 && v[n - 1].bytes == bytes && v[n - 2].bytes == bytes {
            v[n - 1].t = t;
            return;
        }
        v.push(KeyPoint { t, bytes });
        thin(v);
    }

    /// Appends a key's offered (sent) bytes at `t`, thinned like
    /// [`push_progress`](Self::push_progress).
    pub fn push_offered(&mut self, t: f64, key: &str, bytes: u64) {
        let v = self.offered.entry(key.to_owned()).or_default();
        let n = v.len();
        if n >= 2 && v[n - 1].bytes == bytes && v[n - 2].bytes == bytes {
            v[n - 1].t = t;
            return;
        }
        v.push(KeyPoint { t, bytes });
        thin(v);
    }

    /// Seconds the run lasted (so far, if it has not ended).
    pub fn duration(&self) -> Option<f64> {
        let end = self
            .end
            .or_else(|| self.events.last().map(|e| self.start + e.t))?;
        Some((end - self.start).max(0.0))
    }

    /// The record as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Writes the record to `path` atomically: a temporary file in the
    /// same directory, then a rename, so a reader (or a later triage of a
    /// crashed run) never sees half a record. There is no fsync: the record
    /// must survive the writer's crash, not a power cut, and a soak should
    /// not stall on the disk every few seconds.
    pub fn write_atomic(&self, path: &Path) -> Result<(), TriageError> {
        let io = |source| TriageError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| FILE.to_owned());
        let tmp = dir
            .map(Path::to_owned)
            .unwrap_or_default()
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&self.to_json()));
        if let Err(e) = written {
            // A full disk must not leave a half-written temporary behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Reads a record, naming the file and the line and column of bad JSON.
    ///
    /// The event log beside it ([`EVENTS_FILE`]) is written as events
    /// happen, `run.json` only every few seconds: when the log holds more
    /// events (the supervisor was killed between two rewrites), its events
    /// replace the record's.
    pub fn read(path: &Path) -> Result<RunRecord, TriageError> {
        let text = std::fs::read(path).map_err(|source| TriageError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut rec: RunRecord =
            serde_json::from_slice(&text).map_err(|e| TriageError::BadRecord {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let log = path.with_file_name(EVENTS_FILE);
        if let Ok(events) = read_events(&log) {
            if events.len() > rec.events.len() {
                rec.events = events;
            }
        }
        Ok(rec)
    }
}

/// Reads an event log ([`EVENTS_FILE`]): one JSON event per line. A line
/// that is not a whole event (the torn last line of a killed writer, or
/// damage) is skipped; the others are kept in order.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TriageError> {
    let text = std::fs::read(path).map_err(|source| TriageError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Event>(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_log_fills_in_what_a_killed_writer_never_rewrote() {
        let t = tempfile::tempdir().unwrap();
        let rec = RunRecord {
            events: vec![Event {
                t: 0.1,
                kind: "message".into(),
                text: "Run x".into(),
            }],
            ..RunRecord::default()
        };
        rec.write_atomic(&t.path().join(FILE)).unwrap();
        std::fs::write(
            t.path().join(EVENTS_FILE),
            "{\"t\":0.1,\"kind\":\"message\",\"text\":\"Run x\"}\n\
             {\"t\":2.0,\"kind\":\"crash\",\"text\":\"cfA\"}\n\
             {\"t\":2.5,\"kind\":\"restart\",\"text\":\"rfA\"}\n\
             {\"t\":3.0,\"kind\":\"cra",
        )
        .unwrap();
        let got = RunRecord::read(&t.path().join(FILE)).unwrap();
        let kinds: Vec<&str> = got.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["message", "crash", "restart"]);
    }

    #[test]
    fn thinning_keeps_both_ends_and_bounds_the_length() {
        let mut r = RunRecord::default();
        for i in 0..10_000u32 {
            r.push_samples(
                f64::from(i),
                &[ProcSample {
                    role: "worker".into(),
                    name: "worker1".into(),
                    pid: 7,
                    cpu_percent: 1.0,
                    memory_bytes: 1,
                }],
            );
        }
        let p = &r.processes["worker1"].points;
        assert!(p.len() < MAX_POINTS, "{}", p.len());
        assert_eq!(p[0].t, 0.0);
        assert_eq!(p.last().unwrap().t, 9999.0);
    }

    #[test]
    fn flat_progress_is_stored_as_two_points() {
        let mut r = RunRecord::default();
        for t in 0..100 {
            r.push_progress(f64::from(t), "A", if t < 50 { t as u64 } else { 50 });
        }
        let v = &r.keys["A"];
        assert_eq!(v.len(), 52);
        assert_eq!(v.last().unwrap().t, 99.0);
        assert_eq!(v.last().unwrap().bytes, 50);
    }
}
