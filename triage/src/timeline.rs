//! The harness's timeline of a run: crashes, restarts, joins, shrinks and
//! pauses, with absolute times, so a failure can be put next to the fault
//! that preceded it.
//!
//! From `run.json` every event has its exact time. Without it, `run.log`
//! gives the events in order but its glyphs carry no time: the only clocks
//! are the `Start time:` and `End time:` lines and the rotation times in
//! the names of rotated worker logs (`worker1.<ms>.gz`, written just after
//! the crash that rotated it). Every other event is only known to lie
//! between the clocks around it, and is shown as `≤ time`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;

use crate::record::RunRecord;

/// Event kinds that are faults the harness caused (the `net-*` ones are
/// the network faults of a `--network lab` run, see docs/network.md).
pub const FAULT_KINDS: [&str; 15] = [
    "crash",
    "restart",
    "join",
    "shrink",
    "pause",
    "resume",
    "power-loss",
    "corrupt",
    "truncate",
    "net-partition",
    "net-isolate",
    "net-one-way",
    "net-bridge",
    "net-flaky",
    "net-heal",
];

/// Fault kinds that take a process down until its `restart` (disk faults
/// included: `PLn`, `PLA`, `Xn`, `Tn`; see docs/disk.md).
fn takes_down(kind: &str) -> bool {
    matches!(kind, "crash" | "power-loss" | "corrupt" | "truncate")
}

/// One event of the harness, placed in time as well as known.
#[derive(Debug, Clone, Serialize)]
pub struct HarnessEvent {
    /// `crash`, `restart`, `join`, `shrink`, `pause`, `resume`, `violation`, `message`.
    pub kind: String,
    /// The glyph or message.
    pub text: String,
    /// Unix seconds, when known.
    pub at: Option<f64>,
    /// Whether `at` is an estimate (from a rotated log's name).
    pub approx: bool,
    /// When `at` is unknown: the event happened no later than this.
    pub not_after: Option<f64>,
    /// Line in run.log, or index in run.json's events (1-based).
    pub line: u64,
}

/// Where the timeline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `run.json`: exact times.
    RunJson,
    /// `run.log`: order, and times only at a few clocks.
    RunLog,
    /// Neither.
    None,
}

/// The harness's events in order.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// Where it came from.
    pub source: Source,
    /// Run start, unix seconds.
    pub start: Option<f64>,
    /// Run end, unix seconds.
    pub end: Option<f64>,
    /// The events, oldest first.
    pub events: Vec<HarnessEvent>,
}

/// Seconds after a fault during which errors are taken as its expected
/// consequence (a peer's connection dropping, a feeder reconnecting).
pub const FAULT_WINDOW: f64 = 5.0;

/// The spans of time around injected faults: from a crash to a few seconds
/// after the restart (or after the crash, if there was none), from a pause
/// to a few seconds after the resume, and a few seconds after each join
/// and shrink. Built only from exact times (`run.json`).
#[derive(Debug, Clone, Default)]
pub struct FaultWindows(Vec<(f64, f64)>);

impl FaultWindows {
    /// Whether `t` falls in a window.
    pub fn contains(&self, t: f64) -> bool {
        let i = self.0.partition_point(|w| w.0 <= t);
        i > 0 && t <= self.0[i - 1].1
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `run.log` says besides its events.
#[derive(Debug, Clone, Default)]
pub struct RunLogFacts {
    /// From `Run <id> in <dir>`.
    pub run_id: Option<String>,
    /// From `Seed: N ...`.
    pub seed: Option<u64>,
    /// From `...; profile: NAME (origin)`.
    pub profile: Option<String>,
}

fn glyph_token() -> Regex {
    Regex::new(
        r"^(?:,|:s|:f|:c\d+|:PL|:X|:T|PL\d+|PLA|X\d+|T\d+|rA|\{AP\}|\{RP\}|cS|rS|cf[A-Za-z0-9]|rf[A-Za-z0-9]|c\d+|r\d+|s\d+|p\d+|u\d+|Join (?:initializer|worker\d+)(?: again|\.)|Shrink (?:initializer|worker\d+))",
    )
    .expect("static regex")
}

fn glyph_kind(tok: &str) -> &'static str {
    let b = tok.as_bytes();
    match b.first() {
        _ if tok.starts_with("Join") => "join",
        _ if tok.starts_with("Shrink") => "shrink",
        _ if tok.starts_with(':') => "glyph",
        _ if tok.starts_with("PL") => "power-loss",
        Some(b'X') => "corrupt",
        Some(b'T') => "truncate",
        Some(b'c') => "crash",
        Some(b'r' | b's') => "restart",
        Some(b'p') => "pause",
        Some(b'u') => "resume",
        _ => "glyph",
    }
}

/// The kind of a whole message line of `run.log`.
fn message_kind(line: &str) -> &'static str {
    if line.starts_with("VIOLATION (") {
        "violation"
    } else if line == "Pause the world!" {
        "pause"
    } else {
        "message"
    }
}

/// The worker, sink or feeder a glyph or message is about, if any.
pub fn subject(kind: &str, text: &str) -> Option<String> {
    let worker = |i: &str| {
        if i == "0" {
            "initializer".to_owned()
        } else {
            format!("worker{i}")
        }
    };
    if let Some(rest) = text
        .strip_prefix("Join ")
        .or_else(|| text.strip_prefix("Shrink "))
    {
        let name = rest.split([' ', '.']).next().unwrap_or(rest);
        return Some(name.to_owned());
    }
    if !FAULT_KINDS.contains(&kind) {
        return None;
    }
    if kind.starts_with("net-") {
        return Some("network".to_owned());
    }
    if text == "PLA" || text == "rA" {
        return Some("all workers".to_owned());
    }
    let body = text.strip_prefix("PL").unwrap_or(text.get(1..)?);
    if body == "S" {
        return Some("sink".to_owned());
    }
    if let Some(k) = body.strip_prefix('f') {
        return Some(format!("feeder.{k}"));
    }
    body.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| worker(body))
        .filter(|_| !body.is_empty())
}

/// Parses `run.log`: its events in order (clocks only at `Start time:` and
/// `End time:`) and the run's identity.
pub fn parse_run_log(text: &str) -> (Vec<HarnessEvent>, Option<f64>, Option<f64>, RunLogFacts) {
    let tok = glyph_token();
    let mut events = Vec::new();
    let (mut start, mut end) = (None, None);
    let mut facts = RunLogFacts::default();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let ms = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v / 1000.0)
        };
        if let Some(t) = ms("Start time: ") {
            start = Some(t);
            continue;
        }
        if let Some(t) = ms("End time: ") {
            end = Some(t);
            events.push(HarnessEvent {
                kind: "end".into(),
                text: line.to_owned(),
                at: Some(t),
                approx: false,
                not_after: None,
                line: n,
            });
            continue;
        }
        if let Some(rest) = line.strip_prefix("Run ") {
            if let Some((id, _)) = rest.split_once(" in ") {
                facts.run_id = Some(id.to_owned());
            }
        }
        if let Some(rest) = line.strip_prefix("Seed: ") {
            facts.seed = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            if let Some((_, p)) = rest.split_once("profile: ") {
                facts.profile = Some(p.trim().to_owned());
            }
        }
        // A glyph line is made of glyphs only; anything else is a message.
        let mut rest = line;
        let mut toks = Vec::new();
        while let Some(m) = tok.find(rest) {
            toks.push(m.as_str());
            rest = &rest[m.end()..];
        }
        if rest.is_empty() && !toks.is_empty() {
            for t in toks {
                let kind = glyph_kind(t);
                if kind != "glyph" {
                    events.push(HarnessEvent {
                        kind: kind.into(),
                        text: t.to_owned(),
                        at: None,
                        approx: false,
                        not_after: None,
                        line: n,
                    });
                }
            }
        } else if !line.trim().is_empty() {
            events.push(HarnessEvent {
                kind: message_kind(line).into(),
                text: line.to_owned(),
                at: None,
                approx: false,
                not_after: None,
                line: n,
            });
        }
    }
    (events, start, end, facts)
}

impl Timeline {
    /// An empty timeline.
    pub fn none() -> Timeline {
        Timeline {
            source: Source::None,
            start: None,
            end: None,
            events: Vec::new(),
        }
    }

    /// The exact timeline of a run record.
    pub fn from_record(rec: &RunRecord) -> Timeline {
        let events = rec
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| HarnessEvent {
                kind: e.kind.clone(),
                text: e.text.clone(),
                at: Some(rec.start + e.t),
                approx: false,
                not_after: None,
                line: i as u64 + 1,
            })
            .collect();
        Timeline {
            source: Source::RunJson,
            start: Some(rec.start),
            end: rec.end,
            events,
        }
    }

    /// The timeline of `run.log`, with `rotations` (process name → rotation
    /// times of its rotated logs) as extra clocks for worker crashes.
    pub fn from_run_log(text: &str, rotations: &BTreeMap<String, Vec<f64>>) -> Timeline {
        let (mut events, start, end, _) = parse_run_log(text);
        // The newest crashes of a worker match its remaining rotated logs.
        for (who, times) in rotations {
            let mut times = times.clone();
            times.sort_by(f64::total_cmp);
            let crashes: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.kind == "crash" && subject(&e.kind, &e.text).as_ref() == Some(who)
                })
                .map(|(i, _)| i)
                .collect();
            for (i, t) in crashes.iter().rev().zip(times.iter().rev()) {
                events[*i].at = Some(*t);
                events[*i].approx = true;
            }
        }
        // Events after `Start time:` happened after it.
        let mut next: Option<f64> = end;
        for e in events.iter_mut().rev() {
            match e.at {
                Some(t) => next = Some(t),
                None => e.not_after = next,
            }
        }
        Timeline {
            source: Source::RunLog,
            start,
            end,
            events,
        }
    }

    /// The fault windows of this timeline (none unless its times are exact).
    pub fn fault_windows(&self) -> FaultWindows {
        if self.source != Source::RunJson {
            return FaultWindows::default();
        }
        let mut open: BTreeMap<(String, bool), f64> = BTreeMap::new();
        let mut spans = Vec::new();
        for e in &self.events {
            let (Some(at), Some(who)) = (e.at, subject(&e.kind, &e.text)) else {
                continue;
            };
            match e.kind.as_str() {
                k if takes_down(k) => {
                    if let Some(t0) = open.insert((who, true), at) {
                        spans.push((t0, t0 + FAULT_WINDOW));
                    }
                }
                k if k == "pause" || (k.starts_with("net-") && k != "net-heal") => {
                    open.insert((who, false), at);
                }
                "restart" | "resume" | "net-heal" => {
                    let t0 = open.remove(&(who, e.kind == "restart")).unwrap_or(at);
                    spans.push((t0, at + FAULT_WINDOW));
                }
                _ => spans.push((at, at + FAULT_WINDOW)),
            }
        }
        let end = self.end.unwrap_or(f64::MAX);
        for t0 in open.into_values() {
            spans.push((t0, end.max(t0 + FAULT_WINDOW)));
        }
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        FaultWindows(merged)
    }

    /// The latest fault event known to have happened at or before `t`.
    pub fn fault_before(&self, t: f64) -> Option<&HarnessEvent> {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, e)| FAULT_KINDS.contains(&e.kind.as_str()))
            .filter_map(|(i, e)| {
                let known = e.at.or(e.not_after)?;
                (known <= t).then_some((known, i, e))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_faults_are_faults_of_the_network_lane() {
        assert_eq!(
            subject("net-partition", "{P:0,2|1}").as_deref(),
            Some("network")
        );
        assert_eq!(subject("net-heal", "{H}").as_deref(), Some("network"));
        let ev = |kind: &str, text: &str, at: f64| HarnessEvent {
            kind: kind.into(),
            text: text.into(),
            at: Some(at),
            approx: false,
            not_after: None,
            line: 1,
        };
        let t = Timeline {
            source: Source::RunJson,
            start: Some(0.0),
            end: Some(100.0),
            events: vec![
                ev("net-isolate", "{I:1}", 10.0),
                ev("net-heal", "{H}", 14.0),
            ],
        };
        let w = t.fault_windows();
        assert!(w.contains(12.0) && w.contains(18.5) && !w.contains(30.0));
        assert_eq!(t.fault_before(20.0).map(|e| e.text.as_str()), Some("{H}"));
    }

    const LOG: &str = "Run 20260101-000000-abcd in /tmp/x\n\
Seed: 42 (replay the fault schedule with --seed 42); profile: passthrough (builtin:passthrough)\n\
Cluster ready: initializer,worker1\n\
RUN: run_crash_worker_loop 1\n\
Start time: 1700000000000\n\
Done, yay ... waiting\n\
,c1,r1,,Join worker2.,Shrink worker2c1:c1p1u1\n\
Crash of worker1 failed: it died by itself (exit 101)\n\
VIOLATION (process-death): worker1 died by itself: exit 101; last log lines of x:\n\
boom\n\
End time: 1700000060000\n";

    #[test]
    fn run_log_glyphs_become_events_in_order() {
        let (events, start, end, facts) = parse_run_log(LOG);
        assert_eq!(start, Some(1_700_000_000.0));
        assert_eq!(end, Some(1_700_000_060.0));
        assert_eq!(facts.run_id.as_deref(), Some("20260101-000000-abcd"));
        assert_eq!(facts.seed, Some(42));
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e.kind != "message")
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "crash",
                "restart",
                "join",
                "shrink",
                "crash",
                "pause",
                "resume",
                "violation",
                "end"
            ]
        );
        assert_eq!(subject("join", "Join worker2."), Some("worker2".into()));
        assert_eq!(subject("crash", "c0"), Some("initializer".into()));
        assert_eq!(subject("crash", "cfA"), Some("feeder.A".into()));
        assert_eq!(subject("restart", "rS"), Some("sink".into()));
    }

    #[test]
    fn disk_fault_glyphs_are_faults() {
        let log = "Start time: 1700000000000\n,PL1:PL,r1PLA\n,rA,X0\nr0T2:X:T\nr2,\nEnd time: 1700000060000\n";
        let (events, ..) = parse_run_log(log);
        let got: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| FAULT_KINDS.contains(&e.kind.as_str()))
            .map(|e| (e.kind.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("power-loss", "PL1"),
                ("restart", "r1"),
                ("power-loss", "PLA"),
                ("restart", "rA"),
                ("corrupt", "X0"),
                ("restart", "r0"),
                ("truncate", "T2"),
                ("restart", "r2"),
            ]
        );
        assert_eq!(subject("power-loss", "PL1"), Some("worker1".into()));
        assert_eq!(subject("power-loss", "PLA"), Some("all workers".into()));
        assert_eq!(subject("restart", "rA"), Some("all workers".into()));
        assert_eq!(subject("corrupt", "X0"), Some("initializer".into()));
        assert_eq!(subject("truncate", "T2"), Some("worker2".into()));
    }

    #[test]
    fn rotated_logs_give_crashes_a_clock() {
        let mut rot = BTreeMap::new();
        rot.insert("worker1".to_owned(), vec![1_700_000_030.0]);
        let tl = Timeline::from_run_log(LOG, &rot);
        let crashes: Vec<&HarnessEvent> = tl.events.iter().filter(|e| e.kind == "crash").collect();
        assert_eq!(crashes[0].at, None);
        assert_eq!(crashes[0].not_after, Some(1_700_000_030.0));
        assert_eq!(crashes[1].at, Some(1_700_000_030.0));
        // Something at +40 s: the latest fault surely before it is the
        // second crash (pause and resume are only known to be before the end).
        assert_eq!(tl.fault_before(1_700_000_040.0).unwrap().text, "c1");
        assert_eq!(tl.fault_before(1_700_000_070.0).unwrap().text, "u1");
        assert!(tl.fault_before(1_699_999_999.0).is_none());
        // Glyph times are not exact: no windows.
        assert!(tl.fault_windows().is_empty());
    }

    #[test]
    fn fault_windows_span_crash_to_restart_and_a_little_after() {
        let ev = |t: f64, kind: &str, text: &str| crate::record::Event {
            t,
            kind: kind.into(),
            text: text.into(),
        };
        let rec = RunRecord {
            start: 100.0,
            end: Some(200.0),
            events: vec![
                ev(10.0, "crash", "c1"),
                ev(12.0, "restart", "r1"),
                ev(30.0, "pause", "p2"),
                ev(31.0, "resume", "u2"),
                ev(50.0, "join", "Join worker3."),
                ev(90.0, "crash", "cS"),
            ],
            ..RunRecord::default()
        };
        let w = Timeline::from_record(&rec).fault_windows();
        for (t, inside) in [
            (109.9, false),
            (110.0, true),
            (116.9, true),
            (117.1, false),
            (135.5, true),
            (136.5, false),
            (152.0, true),
            (156.0, false),
            (195.0, true),
        ] {
            assert_eq!(w.contains(t), inside, "{t}");
        }
    }
}
