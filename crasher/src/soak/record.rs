//! The soak's side of the run record (`run.json`, see `triage::record`):
//! written when the run starts, every few seconds while it goes on (CPU
//! and memory of every process, committed bytes per key, the timeline), at
//! a violation (so a paused run's record already says so), and at the end
//! with the verdict and exit code.
//!
//! Best effort: a record that cannot be written never stops a run.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use triage::record::{CheckResult, Event, RunRecord};
use triage::sampler::Sampler;

use super::harness::{Harness, OnFailure, Outcome};
use super::sanity::SanityState;
use crate::exit;

/// Seconds between samples.
const SAMPLE_EVERY: f64 = 2.0;
/// The record is rewritten every this many samples.
const WRITE_EVERY: u32 = 5;

/// The run record being kept.
pub struct Recorder {
    path: std::path::PathBuf,
    inner: Mutex<Inner>,
    /// Space kept back so the final record can be written on a full disk.
    reserve: Mutex<Option<super::diskfull::Reserve>>,
}

struct Inner {
    rec: RunRecord,
    progress: Option<SanityState>,
    /// Per key: the feeder process's last `sent_bytes`, and the bytes of
    /// the feeder processes before it (a restarted feeder counts from 0).
    offered: std::collections::BTreeMap<String, (u64, u64)>,
    /// Set once the final record is written: nothing overwrites it after.
    done: bool,
}

/// The recorder of the soak running in this process, for [`finish`].
static CURRENT: Mutex<Option<Arc<Recorder>>> = Mutex::new(None);

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Recorder {
    /// Starts the record of the run `h` and writes it (verdict `running`).
    pub fn start(h: &Harness) -> Arc<Recorder> {
        let (path, rec) = {
            let run = h.run_dir();
            let rec = RunRecord {
                run_id: run.id().to_owned(),
                run_dir: Some(run.root().to_owned()),
                profile: h.profile().origin.clone(),
                seed: h.seed,
                args: std::env::args().skip(1).collect(),
                pid: Some(std::process::id()),
                start: now_unix() - h.out.elapsed(),
                ..RunRecord::default()
            };
            (run.root().join(triage::record::FILE), rec)
        };
        let reserve = path.parent().and_then(super::diskfull::Reserve::take);
        let r = Arc::new(Recorder {
            reserve: Mutex::new(reserve),
            path,
            inner: Mutex::new(Inner {
                rec,
                progress: None,
                offered: std::collections::BTreeMap::new(),
                done: false,
            }),
        });
        r.write(h);
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records each key's committed bytes from the sanity loop's state.
    pub fn watch(&self, progress: SanityState) {
        self.lock().progress = Some(progress);
    }

    /// Takes one sample of every process and of every key's progress.
    /// `procs`: the run's processes (role, name, pid) now.
    fn sample(&self, h: &Harness, mut procs: Vec<(String, String, u32)>, sampler: &mut Sampler) {
        procs.push(("supervisor".into(), "supervisor".into(), std::process::id()));
        // What each feeder has sent so far (its status file), for the
        // offered rate next to the committed one.
        let status_files: Vec<(String, std::path::PathBuf)> = h
            .settings()
            .inputs
            .keys()
            .map(|k| (k.clone(), h.run_dir().feeder_status(k)))
            .collect();
        let sent: Vec<(String, u64)> = status_files
            .into_iter()
            .filter_map(|(k, path)| {
                let st = feeders::status::FeedStatus::read(&path).ok()?;
                Some((k, st.sent_bytes))
            })
            .collect();
        let samples = sampler.sample(&procs);
        let t = h.out.elapsed();
        let mut g = self.lock();
        g.rec.push_samples(t, &samples);
        let keys: Vec<(String, u64)> = match &g.progress {
            Some(p) => p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.verified))
                .collect(),
            None => Vec::new(),
        };
        for (k, v) in keys {
            g.rec.push_progress(t, &k, v);
        }
        for (k, now) in sent {
            let (last, before) = g.offered.entry(k.clone()).or_default();
            if now < *last {
                // A new feeder process: its count started over.
                *before += *last;
            }
            *last = now;
            let total = *before + now;
            g.rec.push_offered(t, &k, total);
        }
    }

    /// Brings the timeline, fault counts and checks up to date and writes.
    fn write(&self, h: &Harness) {
        let events: Vec<Event> = h
            .out
            .events()
            .into_iter()
            // Sanity rounds (`,`) are a heartbeat, not an event.
            .filter(|e| !(e.kind == "glyph" && e.text == ","))
            .map(|e| Event {
                t: e.t,
                kind: e.kind,
                text: e.text,
            })
            .collect();
        let c = &h.counters;
        let faults = [
            ("sink_crashes", &c.sink_crashes),
            ("worker_crashes", &c.worker_crashes),
            ("feeder_crashes", &c.feeder_crashes),
            ("joins", &c.joins),
            ("shrinks", &c.shrinks),
            ("pauses", &c.pauses),
        ];
        let outcome = h.outcome().map(|o| o.0);
        let mut g = self.lock();
        if g.done {
            return;
        }
        g.rec.faults = faults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.load(Ordering::Relaxed)))
            .collect();
        g.rec.checks = checks(&events, outcome.as_ref());
        g.rec.schedule = Some(h.schedule.mode().to_string());
        g.rec.coverage = h
            .schedule
            .coverage()
            .into_iter()
            .map(|(k, c)| {
                let c = triage::record::FaultCoverage {
                    fired: c.fired,
                    observed: c.observed,
                    overlapped: c.overlapped,
                    recovery_s: c.recovery_s,
                };
                (k, c)
            })
            .collect();
        g.rec.decisions = h.schedule.decisions();
        g.rec.events = events;
        if let Some(Outcome::Violation { diagnosis, .. }) = &outcome {
            // Known before the end: a paused run waits for a person.
            g.rec.verdict = "violation".into();
            g.rec.exit_code = Some(exit::VIOLATION);
            g.rec.reason = Some(diagnosis.clone());
            g.rec.paused = h.on_failure == OnFailure::Pause;
        }
        let _ = g.rec.write_atomic(&self.path);
    }

    /// The final record: verdict, exit code, end time.
    fn conclude(&self, h: &Harness, code: u8) {
        // Give the reserved space back first: on a full disk it is what
        // lets the final record replace the `running` one.
        let reserve = self
            .reserve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = reserve {
            r.release();
        }
        self.write(h);
        let mut g = self.lock();
        if g.done {
            return;
        }
        let outcome = h.outcome().map(|o| o.0);
        g.rec.verdict = match code {
            exit::HOLDS => "holds",
            exit::VIOLATION => "violation",
            exit::USAGE => "environment error",
            _ => "unknown",
        }
        .into();
        g.rec.exit_code = Some(code);
        g.rec.reason = match outcome {
            Some(Outcome::Violation { diagnosis, .. }) => Some(diagnosis),
            Some(Outcome::Unknown(w) | Outcome::Environment(w) | Outcome::Success(w)) => Some(w),
            Some(Outcome::Interrupted) => Some("interrupted".into()),
            Some(Outcome::DurationReached) | None => {
                // The verdict line the end of the run printed.
                g.rec
                    .events
                    .iter()
                    .rev()
                    .find(|e| {
                        e.text.starts_with("Verdict unknown")
                            || e.text.starts_with("VIOLATION")
                            || e.text.starts_with("Duration reached")
                    })
                    .map(|e| e.text.clone())
            }
        };
        if code == exit::VIOLATION && !g.rec.checks.iter().any(|c| c.status == "failed") {
            let reason = g.rec.reason.clone().unwrap_or_default();
            g.rec.checks.push(CheckResult {
                name: "sanity".into(),
                status: "failed".into(),
                detail: reason,
            });
        }
        g.rec.end = Some(now_unix());
        g.done = true;
        if g.rec.write_atomic(&self.path).is_err() {
            // No room for a second copy (a full disk that the reserve did
            // not cover): overwrite in place, which first frees the old
            // record's space, rather than leave the verdict at `running`.
            let _ = std::fs::write(&self.path, g.rec.to_json());
        }
    }
}

/// Check results from the `RUN:` / `NO RUN:` lines and the outcome.
fn checks(events: &[Event], outcome: Option<&Outcome>) -> Vec<CheckResult> {
    let mut on: BTreeMap<String, bool> = BTreeMap::new();
    for e in events {
        let (enabled, rest) = if let Some(r) = e.text.strip_prefix("NO RUN: ") {
            (false, r)
        } else if let Some(r) = e.text.strip_prefix("RUN: ") {
            (true, r)
        } else {
            continue;
        };
        on.insert("process-death".into(), true);
        let mut words = rest.split_whitespace();
        let names: Vec<&str> = match words.next().unwrap_or("") {
            "run_sanity_loop" => vec!["sanity"],
            "run_ack_progress_loop" => vec!["ack-progress"],
            "run_registry_progress_loop" => vec!["registry-progress"],
            "run_crash_sink_loop" => vec!["crash-sink"],
            "run_crash_worker_loop" => vec!["crash-loop"],
            "run_grow_shrink_loop" => match words.next() {
                Some("grow") => vec!["grow"],
                Some("shrink") => vec!["shrink"],
                _ => vec!["grow", "shrink"],
            },
            custom if custom.starts_with("run_custom") => vec![custom],
            _ => vec![],
        };
        for n in names {
            on.insert(n.to_owned(), enabled);
        }
    }
    let failed = match outcome {
        Some(Outcome::Violation { check, diagnosis }) => Some((check.as_str(), diagnosis.as_str())),
        _ => None,
    };
    if let Some((check, _)) = failed {
        on.entry(check.to_owned()).or_insert(true);
    }
    on.into_iter()
        .map(|(name, enabled)| {
            let (status, detail) = match failed {
                Some((c, d)) if c == name => ("failed", d.to_owned()),
                _ if enabled => ("passed", String::new()),
                _ => ("off", String::new()),
            };
            CheckResult {
                name,
                status: status.into(),
                detail,
            }
        })
        .collect()
}

/// Samples every 2 s and rewrites the record every 10 s, until the final
/// record is written; at a violation it writes at once.
pub async fn sample_loop(rec: Arc<Recorder>, h: Arc<Harness>) {
    let mut sampler = Sampler::new();
    let mut n = 0u32;
    let mut told_violation = false;
    loop {
        if rec.lock().done {
            return;
        }
        let procs: Vec<(String, String, u32)> = h
            .cluster(|c| {
                c.processes()
                    .into_iter()
                    .map(|(role, name, pid)| (role.to_owned(), name, pid))
                    .collect()
            })
            .await;
        tokio::task::block_in_place(|| rec.sample(&h, procs, &mut sampler));
        n += 1;
        let violation =
            !told_violation && matches!(h.outcome(), Some((Outcome::Violation { .. }, _)));
        if violation || n % WRITE_EVERY == 0 {
            told_violation |= violation;
            tokio::task::block_in_place(|| rec.write(&h));
            super::memory::give_back();
        }
        tokio::time::sleep(Duration::from_secs_f64(SAMPLE_EVERY)).await;
    }
}

/// Writes the final record of the soak running in this process.
pub fn finish(h: &Harness, code: u8) {
    let rec = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(r) = rec {
        tokio::task::block_in_place(|| r.conclude(h, code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(text: &str) -> Event {
        Event {
            t: 0.0,
            kind: "message".into(),
            text: text.into(),
        }
    }

    #[test]
    fn checks_come_from_the_run_lines_and_the_outcome() {
        let events = [
            ev("RUN: run_crash_worker_loop 1"),
            ev("RUN: run_grow_shrink_loop grow"),
            ev("NO RUN: run_ack_progress_loop"),
            ev("RUN: run_sanity_loop"),
            ev("RUN: run_clean_old_gzip_files"),
        ];
        let v = Outcome::Violation {
            check: "sanity".into(),
            diagnosis: "SANITY2: key A".into(),
        };
        let c = checks(&events, Some(&v));
        let got: Vec<(&str, &str)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ack-progress", "off"),
                ("crash-loop", "passed"),
                ("grow", "passed"),
                ("process-death", "passed"),
                ("sanity", "failed"),
            ]
        );
        assert_eq!(c[4].detail, "SANITY2: key A");
        assert!(checks(&[], None).is_empty());
    }
}
