//! Faults fired by log lines: a profile's `[[trigger]]` sections
//! (docs/faults.md, *Log-event triggers*).
//!
//! Each trigger follows its role's logs as they are written: every log
//! is kept open and read from where the last read stopped (no re-read),
//! every [`POLL`]; a log moved aside (a crashed worker's log is rotated
//! and gzipped) is read to its end through the open descriptor, then its
//! successor at the same path is followed from its start. A matching line
//! fires the action at once, in a task of its own (the tail keeps
//! reading): it takes a ticket with [`Schedule::force`](super::schedule::Schedule::force)
//! (a trigger is never held back: its timing is the point), claims the
//! target, and applies the one copy of the fault action (`faults.rs`,
//! `loops::crash_and_restart`, `netfaults::net_fault_once`,
//! `diskfaults::power_loss_once`). The delay from the line to the signal is
//! printed and recorded: from the moment the line was read, and from the
//! line's own timestamp when it starts with one (RFC 3339, as tracing
//! logs do).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use regex::Regex;
use tokio::time::{sleep, Instant};

use super::harness::{Harness, Outcome};
use super::loops::{crash_and_restart, current_primary};
use super::schedule::Fault;
use super::spec::{worker_index, worker_name, MAX_WORKERS};
use super::timings::secs;
use super::{diskfaults, faults, netfaults};
use crate::run::profile::{Trigger, TriggerAction, TriggerRole, TriggerTarget};

/// How often each followed log is read.
pub const POLL: Duration = Duration::from_millis(5);
/// A line longer than this is cut (the rest is not matched).
const MAX_LINE: usize = 64 * 1024;

/// One log followed as it is written.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pos: u64,
    partial: Vec<u8>,
}

impl Tail {
    /// Follows `path`; a file already there is followed from its end
    /// (`from_end`) or its start.
    pub fn new(path: PathBuf, from_end: bool) -> Tail {
        let mut t = Tail {
            path,
            file: None,
            ino: 0,
            pos: 0,
            partial: Vec::new(),
        };
        t.open(from_end);
        t
    }

    fn open(&mut self, from_end: bool) {
        let Ok(mut f) = File::open(&self.path) else {
            self.file = None;
            return;
        };
        let Ok(m) = f.metadata() else { return };
        self.ino = m.ino();
        self.pos = if from_end {
            f.seek(SeekFrom::End(0)).unwrap_or(0)
        } else {
            0
        };
        self.partial.clear();
        self.file = Some(f);
    }

    fn drain(&mut self, out: &mut Vec<String>) {
        let Some(f) = self.file.as_mut() else { return };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pos += n as u64;
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            out.push(String::from_utf8_lossy(&self.partial).into_owned());
                            self.partial.clear();
                        } else if self.partial.len() < MAX_LINE {
                            self.partial.push(b);
                        }
                    }
                }
            }
        }
    }

    /// The complete lines written since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.drain(&mut out);
        match std::fs::metadata(&self.path) {
            Ok(m) if self.file.is_none() || m.ino() != self.ino => {
                // A new file at the path (rotation, or a first start):
                // the old one was read to its end above.
                self.open(false);
                self.drain(&mut out);
            }
            Ok(m) if m.len() < self.pos => {
                // Cut in place: start over.
                if let Some(f) = self.file.as_mut() {
                    let _ = f.seek(SeekFrom::Start(0));
                }
                self.pos = 0;
                self.partial.clear();
                self.drain(&mut out);
            }
            _ => {}
        }
        out
    }
}

/// Seconds from the RFC 3339 timestamp a line starts with to `at`.
fn line_age(line: &str, at: SystemTime) -> Option<Duration> {
    let stamp = line.split_whitespace().next()?;
    let t = humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(stamp))
        .ok()?;
    at.duration_since(t).ok()
}

/// Follows trigger number `n` (from 1) of the profile until the run ends.
pub async fn run(h: Arc<Harness>, n: usize, t: Trigger) {
    let (Ok(re), Ok(target)) = (Regex::new(&t.regex), t.target()) else {
        return; // checked when the profile was loaded
    };
    let kind = format!("trigger{n}");
    let rng = Arc::new(std::sync::Mutex::new(h.rng(&kind)));
    let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
    let run = h.run_dir().clone();
    match t.role {
        TriggerRole::Sink => {
            tails.insert("sink".into(), Tail::new(run.sink_log(), true));
        }
        TriggerRole::Worker => {
            for i in 0..MAX_WORKERS {
                let name = worker_name(i);
                tails.insert(name.clone(), Tail::new(run.worker_log(&name), true));
            }
        }
    }
    let mut last: Option<Instant> = None;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if h.finished() {
            return;
        }
        for (who, tail) in tails.iter_mut() {
            for line in tail.poll() {
                if !re.is_match(&line) {
                    continue;
                }
                let seen = (Instant::now(), SystemTime::now());
                if t.once && last.is_some() {
                    continue;
                }
                if last.is_some_and(|l| seen.0.duration_since(l) < secs(t.cooldown)) {
                    continue;
                }
                last = Some(seen.0);
                let strike = Strike {
                    kind: kind.clone(),
                    n,
                    who: who.clone(),
                    line,
                    seen,
                };
                tokio::spawn(fire(
                    Arc::clone(&h),
                    t.clone(),
                    target,
                    strike,
                    Arc::clone(&rng),
                ));
            }
        }
    }
}

struct Strike {
    kind: String,
    n: usize,
    who: String,
    line: String,
    seen: (Instant, SystemTime),
}

impl Strike {
    fn delays(&self, sent: Instant) -> String {
        let read = sent.duration_since(self.seen.0);
        let wall = self.seen.1 + read;
        match line_age(&self.line, wall) {
            Some(age) => format!(
                "{:.1} ms after the line was read, {:.1} ms after its timestamp",
                read.as_secs_f64() * 1e3,
                age.as_secs_f64() * 1e3
            ),
            None => format!("{:.1} ms after the line was read", read.as_secs_f64() * 1e3),
        }
    }
}

async fn fire(
    h: Arc<Harness>,
    t: Trigger,
    target: TriggerTarget,
    s: Strike,
    rng: Arc<std::sync::Mutex<rand_chacha::ChaCha8Rng>>,
) {
    let members: Vec<usize> = h.members().await;
    let pick = |v: Vec<usize>| -> Option<usize> {
        if v.is_empty() {
            return None;
        }
        let mut r = rng.lock().unwrap_or_else(|e| e.into_inner());
        Some(v[r.gen_range(0..v.len())])
    };
    let own = worker_index(&s.who);
    let index = match target {
        TriggerTarget::Sink => None,
        TriggerTarget::Itself => own,
        TriggerTarget::Random => pick(members.clone()),
        TriggerTarget::Other => pick(
            members
                .iter()
                .copied()
                .filter(|&i| Some(i) != own)
                .collect(),
        ),
        TriggerTarget::Primary => current_primary(&h).await,
        TriggerTarget::Worker(i) => members.contains(&i).then_some(i),
    };
    let who = match (target, index) {
        (TriggerTarget::Sink, _) => "sink".to_owned(),
        (_, Some(i)) => worker_name(i),
        (_, None) => {
            h.out.line(&format!(
                "Trigger {}: {} log matched, but no {} to act on: skipped",
                s.n, s.who, t.target
            ));
            return;
        }
    };
    let Some(claim) = h.claim(&who).await else {
        h.out.glyph(":t");
        return;
    };
    // Disk faults act one at a time (the loops' own claim).
    let disk_claim = if t.action == TriggerAction::PowerLoss {
        match h.claim(diskfaults::DISK).await {
            Some(c) => Some(c),
            None => {
                h.out.glyph(":t");
                return;
            }
        }
    } else {
        None
    };
    // With --hosts a cut is made by the hosts' rules, which cannot isolate
    // one worker from another on the same host: such a firing is skipped.
    if let (TriggerAction::Isolate, Some(i)) = (t.action, index) {
        let (cut, _) = netfaults::isolate(i, &members);
        if let Err(why) = netfaults::can_make(&h, &cut).await {
            h.out.line(&format!(
                "Trigger {}: {} log matched, but {who} cannot be isolated: {why}; skipped",
                s.n, s.who
            ));
            return;
        }
    }
    let ticket = h.schedule.force(&s.kind);
    let verb = t.action.word();
    // Recorded as the plain fault it is, so `crasher replay` fires it at
    // its recorded time; `on_event` says which line it answered.
    let fault_kind = match (t.action, index) {
        (TriggerAction::Crash, None) => "crash-sink",
        (TriggerAction::Crash, Some(_)) => "crash-worker",
        (TriggerAction::Pause, _) => "pause",
        (TriggerAction::PowerLoss, _) => "power-loss",
        (TriggerAction::Isolate, _) => "trigger-isolate",
    };
    let fault = Fault::new(fault_kind, who.clone()).on_event(format!("{} log: {}", s.who, s.line));
    let fault = match t.action {
        TriggerAction::Pause | TriggerAction::Isolate => fault.hold(secs(t.down)),
        _ => fault.down(secs(t.down)),
    };
    h.schedule
        .decide(&s.kind, format!("{verb} {who} down={:.3}", t.down), fault);
    h.out.event("trigger", &format!("T{}", s.n));
    let report = |sent: Instant| {
        h.out.line(&format!(
            "Trigger {}: {verb} of {who} sent {} ({} log: {})",
            s.n,
            s.delays(sent),
            s.who,
            s.line.chars().take(160).collect::<String>()
        ));
    };
    let down = secs(t.down);
    match (t.action, index) {
        (TriggerAction::Crash, Some(i)) => {
            let _ = crash_and_restart(&h, i, down, ticket, claim, || report(Instant::now())).await;
        }
        (TriggerAction::Crash, None) => {
            let crashed = faults::crash_sink(&h).await;
            report(Instant::now());
            if let Err(e) = crashed {
                drop(claim);
                return h.violation(&s.kind, format!("sink was not running when crashed: {e}"));
            }
            sleep(down).await;
            if h.finished() {
                return;
            }
            if let Err(e) = faults::restart_sink(&h).await {
                return h.finish(Outcome::Environment(e.to_string()));
            }
            drop(claim);
            ticket.end();
        }
        (TriggerAction::Pause, Some(i)) => {
            faults::pause_worker(&h, i).await;
            report(Instant::now());
            sleep(down).await;
            faults::resume_worker(&h, i).await;
            drop(claim);
            ticket.end();
        }
        (TriggerAction::Isolate, Some(i)) => {
            let (cut, glyph) = netfaults::isolate(i, &members);
            let _ = netfaults::net_fault_once(&h, "isolate", &cut, &glyph, down, ticket, || {
                report(Instant::now())
            })
            .await;
            drop(claim);
        }
        (TriggerAction::PowerLoss, Some(i)) => {
            let _ = diskfaults::power_loss_once(&h, &[i], false, &s.kind, down, ticket, || {
                report(Instant::now())
            })
            .await;
            drop(claim);
            drop(disk_claim);
        }
        (TriggerAction::Pause | TriggerAction::Isolate | TriggerAction::PowerLoss, None) => {
            drop(claim);
            ticket.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_tail_reads_only_new_lines_and_follows_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.log");
        let mut f = File::create(&p).unwrap();
        writeln!(f, "old line").unwrap();
        let mut t = Tail::new(p.clone(), true);
        assert!(t.poll().is_empty());
        write!(f, "new ").unwrap();
        assert!(t.poll().is_empty(), "a partial line waits");
        writeln!(f, "line").unwrap();
        assert_eq!(t.poll(), vec!["new line"]);
        // Rotation: the last lines of the old file, then the new one from its start.
        writeln!(f, "last of old").unwrap();
        std::fs::rename(&p, d.path().join("w.log.1")).unwrap();
        let mut g = File::create(&p).unwrap();
        writeln!(g, "first of new").unwrap();
        assert_eq!(t.poll(), vec!["last of old", "first of new"]);
        writeln!(g, "second").unwrap();
        assert_eq!(t.poll(), vec!["second"]);
        // A log that appears later is read from its start.
        let q = d.path().join("late.log");
        let mut t2 = Tail::new(q.clone(), true);
        assert!(t2.poll().is_empty());
        std::fs::write(&q, "hello\n").unwrap();
        assert_eq!(t2.poll(), vec!["hello"]);
    }

    #[test]
    fn a_line_age_comes_from_its_rfc3339_stamp() {
        let line = "2026-12-03T12:01:47.130855Z  INFO passthrough: elected";
        let t = humantime::parse_rfc3339("2026-12-03T12:01:47.140855Z").unwrap();
        let age = line_age(line, t).unwrap();
        assert!((age.as_secs_f64() - 0.010).abs() < 1e-6, "{age:?}");
        assert_eq!(line_age("[12] no stamp", t), None);
    }
}
