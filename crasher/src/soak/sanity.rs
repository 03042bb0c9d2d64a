//! The sanity loop (continuous verification while the run goes on), the
//! end-of-run summary, the pause manifest, and the custom scenarios.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::time::sleep;

use super::harness::{Harness, Outcome};
use super::liveness::QuietClock;
use super::timings::secs;
use crate::run::profile::Mode;

/// Per-key verification progress, shared with the summary.
#[derive(Debug, Clone, Default)]
pub struct KeyProgress {
    /// Bytes of committed output verified as a prefix of the input.
    pub verified: u64,
    /// Size of the key's input file.
    pub input_len: u64,
    /// Work-queue modes: input lines not committed while a later line is
    /// (waited for, not yet missing).
    pub holes: Option<u64>,
}

/// Shared view of the latest verification round.
pub type SanityState = Arc<Mutex<BTreeMap<String, KeyProgress>>>;

/// The sanity loop's own state.
pub struct Sanity {
    verifier: Option<verify::incremental::IncrementalVerifier>,
    sink_log: PathBuf,
    sink_log_offset: u64,
    bad_words: Regex,
    state: SanityState,
    mode: Mode,
    /// Whether the profile's verify mode is a work-queue mode.
    work_queue: bool,
}

impl Sanity {
    /// Prepares verification of every key against its input file.
    pub fn new(
        h: &Harness,
        inputs: &BTreeMap<String, PathBuf>,
        mode: Mode,
    ) -> anyhow::Result<Sanity> {
        let (sink_dir, sink_log, verify_mode) = (
            h.run_dir().sink_dir(),
            h.run_dir().sink_log(),
            h.profile().verify_mode,
        );
        let mut progress = BTreeMap::new();
        for (k, p) in inputs {
            let input_len = std::fs::metadata(p)?.len();
            progress.insert(
                k.clone(),
                KeyProgress {
                    verified: 0,
                    input_len,
                    holes: None,
                },
            );
        }
        let verifier = match mode {
            Mode::Connector => Some(
                verify::incremental::IncrementalVerifier::new(
                    sink_dir,
                    inputs.iter().map(|(k, p)| (k.as_bytes()[0], p.clone())),
                )?
                .with_mode(verify_mode.check_mode())
                .with_missing_grace(h.timings.work_queue_missing_grace),
            ),
            Mode::Tcp => None,
        };
        Ok(Sanity {
            verifier,
            sink_log,
            sink_log_offset: 0,
            bad_words: Regex::new("ERROR|FATAL|CRIT").expect("static regex"),
            state: Arc::new(Mutex::new(progress)),
            mode,
            work_queue: verify_mode.check_mode().is_work_queue(),
        })
    }

    /// The per-key progress this loop updates, for the run record.
    pub fn progress(&self) -> SanityState {
        self.state.clone()
    }

    /// New lines of the sink log that contain ERROR, FATAL or CRIT.
    fn scan_sink_log(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.sink_log) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.sink_log_offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        // Only whole lines; a partial last line is read next round.
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.sink_log_offset += end as u64;
        String::from_utf8_lossy(&buf[..end])
            .lines()
            .filter(|l| self.bad_words.is_match(l))
            .map(str::to_owned)
            .collect()
    }

    /// One round: the sink log, then every key. Returns a violation text.
    fn round(&mut self) -> Result<Option<String>, String> {
        let bad = self.scan_sink_log();
        if !bad.is_empty() {
            return Ok(Some(format!(
                "SANITY: the sink log has {} error line(s):\n{}",
                bad.len(),
                bad.join("\n")
            )));
        }
        let Some(v) = self.verifier.as_mut() else {
            return Ok(None);
        };
        let statuses = v.check().map_err(|e| e.to_string())?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for s in &statuses {
            if let Some(p) = state.get_mut(&(s.key as char).to_string()) {
                p.verified = s.verified_bytes;
                p.holes = s.work_queue.as_ref().map(|w| w.holes);
            }
            if let Some(d) = &s.violation {
                return Ok(Some(format!("SANITY2: {d}")));
            }
        }
        Ok(None)
    }

    /// Work-queue modes: the whole input of `key` is required from now on;
    /// the diagnosis naming every line not committed, if any.
    fn missing_lines(&mut self, key: &str) -> Option<String> {
        if !self.work_queue {
            return None;
        }
        let v = self.verifier.as_mut()?;
        match v.require_complete(key.as_bytes()[0]) {
            Ok(Some(s)) => s.violation.map(|v| v.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("(the missing lines could not be listed: {e})")),
        }
    }

    /// Whether every key is fully committed.
    fn complete(&self) -> bool {
        self.mode == Mode::Connector
            && self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .all(|p| p.verified == p.input_len)
    }

    /// The loop: a `,` per round; a violation stops the world; success when
    /// every key's input is committed and every feeder saw its last ack.
    /// A feeder that saw its last line acked while the key's committed
    /// output stays short of the input is a loss: data was acked and never
    /// committed (checked after a grace period for the last commit to land).
    pub async fn run(mut self, h: Arc<Harness>) {
        let period = secs(h.timings.sanity_period);
        // A work queue may hold a line back (a consumer that crashed with it
        // pending) for up to its own grace before it is missing.
        let grace = if self.work_queue {
            secs(
                h.timings
                    .acked_commit_grace
                    .max(h.timings.work_queue_missing_grace),
            )
        } else {
            secs(h.timings.acked_commit_grace)
        };
        // Quiet time since each key's feeder saw its last ack.
        let mut done_since: BTreeMap<String, QuietClock> = BTreeMap::new();
        let mut stall = CommitStall::new(&h);
        loop {
            sleep(period).await;
            if h.finished() {
                return;
            }
            h.out.glyph(",");
            let r = tokio::task::block_in_place(|| self.round());
            match r {
                Ok(Some(v)) => {
                    h.out.line(&v);
                    return h.violation("sanity", v);
                }
                Ok(None) => {}
                Err(e) => {
                    return h.finish(Outcome::Environment(format!("verification failed: {e}")))
                }
            }
            let root = h.run_dir().root().to_owned();
            if let Some(why) = disk_nearly_full(&root) {
                return h.finish(Outcome::Environment(why));
            }
            // One snapshot of this round's figures for every check below.
            let progress = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if self.mode == Mode::Connector {
                let figures: BTreeMap<String, (u64, bool)> = progress
                    .iter()
                    .map(|(k, p)| (k.clone(), (p.verified, p.verified < p.input_len)))
                    .collect();
                h.schedule.progress(&figures);
                if let Some(v) = stall.check(&h, &progress) {
                    h.out.line(&v);
                    return h.liveness_violation("commit-progress", v);
                }
            }
            let done = h.done_feeders().await;
            for k in &done {
                let clock = done_since
                    .entry(k.clone())
                    .or_insert_with(|| QuietClock::start(&h));
                let quiet = clock.tick(&h);
                let short = progress.get(k).filter(|p| p.verified < p.input_len);
                if let (Some(p), Mode::Connector) = (short, self.mode) {
                    if quiet >= grace {
                        let mut v = format!(
                            "SANITY3: key {k}: the feeder saw its last line acked, but only {} of {} bytes are committed after {:.0}s of quiet time: acked data was lost",
                            p.verified,
                            p.input_len,
                            quiet.as_secs_f64()
                        );
                        if let Some(lines) = tokio::task::block_in_place(|| self.missing_lines(k)) {
                            v.push('\n');
                            v.push_str(&lines);
                        }
                        h.out.line(&v);
                        return h.violation("sanity", v);
                    }
                }
            }
            let all_acked = h.settings().inputs.keys().all(|k| done.contains(k));
            if all_acked && self.complete() {
                return h.finish(Outcome::Success("SANITY LOOP SUCCESS: EOF found!".into()));
            }
        }
    }
}

/// The commit-progress check: a key still being fed on which nothing new is
/// committed over `commit_stall` seconds of quiet time (no fault of
/// crasher's in progress, see [`QuietClock`]) means the cluster is not
/// live. Without it a system that stops working after a fault (a store lost
/// at a power cut, a key stuck on a worker that never recovered) would end
/// a timed run "with no violation".
struct CommitStall {
    limit: Duration,
    /// Per key: the last committed figure and quiet time since it changed.
    keys: BTreeMap<String, (u64, QuietClock)>,
}

impl CommitStall {
    fn new(h: &Harness) -> CommitStall {
        CommitStall {
            limit: secs(h.timings.commit_stall),
            keys: BTreeMap::new(),
        }
    }

    /// One round's figures; the violation text once a key reaches the limit.
    fn check(&mut self, h: &Harness, progress: &BTreeMap<String, KeyProgress>) -> Option<String> {
        if self.limit.is_zero() {
            return None;
        }
        for (k, p) in progress {
            let (last, clock) = self
                .keys
                .entry(k.clone())
                .or_insert_with(|| (p.verified, QuietClock::start(h)));
            if p.verified >= p.input_len || p.verified != *last {
                *last = p.verified;
                clock.reset(h);
                continue;
            }
            let quiet = clock.tick(h);
            if quiet >= self.limit {
                return Some(format!(
                    "COMMIT STALL: key {k}: nothing new committed in {:.0}s of quiet time (no fault of crasher's in progress; commit_stall={:.0}); {} of {} bytes committed",
                    quiet.as_secs_f64(),
                    self.limit.as_secs_f64(),
                    p.verified,
                    p.input_len
                ));
            }
        }
        None
    }
}

/// Stops the run before a full disk turns into false violations.
fn disk_nearly_full(path: &Path) -> Option<String> {
    const MIN_FREE: u64 = 64 * 1024 * 1024;
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    (free < MIN_FREE).then(|| {
        format!(
            "the disk holding {} has only {} MiB free: stopping before a full disk causes false violations",
            path.display(),
            free / (1024 * 1024)
        )
    })
}

/// What the end of a timed run says.
pub struct Summary {
    /// Human text, one line per key.
    pub text: String,
    /// Total verified bytes.
    pub verified_bytes: u64,
    /// A violation found by the final round.
    pub violation: Option<String>,
}

/// A last full verification round and its per-key figures.
pub async fn final_summary(h: &Arc<Harness>, inputs: &BTreeMap<String, PathBuf>) -> Summary {
    let stale = fresh_mirrors(h).await;
    let mode = h.profile().mode;
    let mut s = match Sanity::new(h, inputs, mode) {
        Ok(s) => s,
        Err(e) => {
            return Summary {
                text: format!("final verification could not start: {e}"),
                verified_bytes: 0,
                violation: None,
            }
        }
    };
    let violation = match tokio::task::block_in_place(|| s.round()) {
        Ok(v) => v,
        Err(e) => Some(format!("final verification failed: {e}")),
    };
    let state = s.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut text = String::from("Verified so far:");
    let mut total = 0;
    for (k, p) in &state {
        total += p.verified;
        let pct = if p.input_len == 0 {
            100.0
        } else {
            100.0 * p.verified as f64 / p.input_len as f64
        };
        text.push_str(&format!(
            "\n  key {k}: {} of {} bytes ({pct:.1}%)",
            p.verified, p.input_len
        ));
        if let Some(n) = p.holes.filter(|&n| n > 0) {
            text.push_str(&format!(
                "; {n} line(s) before the last committed one not committed (yet)"
            ));
        }
    }
    if let Some(why) = stale {
        text.push_str(&format!("\n  ({why})"));
    }
    Summary {
        text,
        verified_bytes: total,
        violation,
    }
}

/// With the sink or the feeders on a host (`--hosts`): waits, 5 s at
/// most, until each mirror has applied a round that began after this call,
/// so the final check reads what the host holds now. `Some(why)` if one
/// did not (the check then reads an older copy: fewer bytes verified,
/// never a false violation, see `run::mirror`).
async fn fresh_mirrors(h: &Harness) -> Option<String> {
    let mirrors = h.cluster(|c| c.mirror_progress()).await;
    if mirrors.is_empty() {
        return None;
    }
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        mirrors
            .iter()
            .find(|(_, p)| !p.wait_fresh(deadline))
            .map(|(which, _)| {
                format!(
                    "the mirror of the {which} files was not fresh within 5 s: the final check \
                     read an older copy"
                )
            })
    })
    .await
    .unwrap_or_else(|e| Some(format!("waiting for the mirrors failed: {e}")))
}

/// What the receiver got in a TCP mode run, where nothing is verified.
pub struct TcpReceipt {
    /// Human text for the end of the run.
    pub text: String,
    /// Why the verdict is unknown, if it is (else the run holds).
    pub unknown: Option<String>,
}

/// TCP mode's end-of-run figures: bytes at the receiver, how long ago the
/// last of them arrived, and how many blasters finished their file. The
/// run holds when the receiver got data and, unless every blaster is done,
/// was still getting it within `tcp_receive_stall` of the end.
pub async fn tcp_receipt(h: &Harness) -> TcpReceipt {
    let finished = h.done_feeders().await;
    let keys = h.settings().inputs.len();
    let done = h
        .settings()
        .inputs
        .keys()
        .filter(|k| finished.contains(*k))
        .count();
    let output = h.run_dir().sink_prefix();
    let meta = std::fs::metadata(&output).ok();
    let received = meta.as_ref().map_or(0, |m| m.len());
    let idle = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    let stall = h.timings.tcp_receive_stall;
    let text = format!(
        "TCP mode: no data verification (plain TCP source and sink, no commits to check).\n  \
         the receiver got {received} bytes ({}){}; blasters done with their file: {done} of {keys}",
        output.display(),
        if received > 0 {
            format!(", the last {:.1}s before the end", idle.as_secs_f64())
        } else {
            String::new()
        }
    );
    let unknown = tcp_unknown(received, idle.as_secs_f64(), done == keys, stall);
    TcpReceipt { text, unknown }
}

/// Why a timed TCP mode run has no verdict, if it has none: the receiver
/// got no bytes, or none for more than `stall` seconds (`idle`) while some
/// blaster was still sending.
pub fn tcp_unknown(received: u64, idle: f64, all_done: bool, stall: f64) -> Option<String> {
    if received == 0 {
        Some("TCP mode: the receiver got no bytes".to_owned())
    } else if !all_done && idle > stall {
        Some(format!(
            "TCP mode: the receiver got nothing in the last {idle:.0}s while blasters were still \
             sending (tcp_receive_stall={stall})"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_unknown;

    #[test]
    fn a_tcp_run_holds_only_when_the_receiver_kept_receiving() {
        assert_eq!(tcp_unknown(1000, 1.0, false, 30.0), None);
        // Every blaster done: a quiet receiver is expected.
        assert_eq!(tcp_unknown(1000, 300.0, true, 30.0), None);
        let none = tcp_unknown(0, 0.0, true, 30.0).unwrap();
        assert!(none.contains("got no bytes"), "{none}");
        let stalled = tcp_unknown(1000, 45.0, false, 30.0).unwrap();
        assert!(stalled.contains("nothing in the last 45s"), "{stalled}");
    }
}
