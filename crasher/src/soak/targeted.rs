//! Faults aimed at protocol events: `crash-at-prepare`, `pause-at-prepare`,
//! `crash-sink-at-prepare`, `crash-at-commit` (docs/faults.md).
//!
//! The sink (`crasher sink --events PATH`) reports its phase events as
//! datagrams to [`SinkEvents`]' socket in the run directory. A targeted
//! loop takes its ticket like any fault, claims its target, *arms* the sink
//! for the next event of that target, and waits for it: the sink then
//! holds that one connection at the event (after recording the vote, or
//! before recording a PHASE2) until the fault is applied and the loop
//! releases it, or for at most `sink::events::HOLD_TIMEOUT`. The strike
//! therefore lands exactly inside the window, however slow the supervisor
//! is, and the sink is never held by a dead supervisor for longer than that.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::net::UnixDatagram;
use tokio::sync::broadcast;
use tokio::time::{sleep, Instant};

use super::faults;
use super::harness::{Harness, Outcome};
use super::loops::{crash_and_restart, uniform};
use super::schedule::Fault;
use super::spec::{worker_name, Targeted};
use super::timings::secs;

/// How long a loop waits for the armed event before it gives up (and
/// tries again later): a few checkpoints of a healthy cluster.
const ARM_WAIT: Duration = Duration::from_secs(10);

/// The file name of the supervisor's event socket in the run directory.
pub const SOCKET: &str = "sink-events.sock";

/// One event reported by the sink.
#[derive(Debug, Clone)]
pub struct SinkEvent {
    /// When it arrived.
    pub at: Instant,
    /// The event line as the sink sent it.
    pub line: String,
}

impl SinkEvent {
    /// The event's kind (`phase1`, `vote-sent`, `phase2`, `recovery`, `hello`).
    pub fn kind(&self) -> &str {
        self.line.split_whitespace().next().unwrap_or("")
    }

    /// The value of `key=` in the line.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The supervisor's end of the sink's event channel.
pub struct SinkEvents {
    sock: UnixDatagram,
    sink_cmd: PathBuf,
    next_id: AtomicU64,
    tx: broadcast::Sender<SinkEvent>,
    counts: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl SinkEvents {
    /// Binds the event socket at `path` (in the run directory).
    pub fn bind(path: &Path) -> std::io::Result<Arc<SinkEvents>> {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind the sink event socket {}: {e}", path.display()),
            )
        })?;
        Ok(Arc::new(SinkEvents {
            sock,
            sink_cmd: sink::events::command_path(path),
            next_id: AtomicU64::new(1),
            tx: broadcast::channel(1024).0,
            counts: Mutex::new(Default::default()),
        }))
    }

    /// Receives events until the run ends; counts them per kind.
    pub async fn receive(self: Arc<Self>, h: Arc<Harness>) {
        let mut buf = vec![0u8; 1024];
        while !h.finished() {
            let got = tokio::time::timeout(Duration::from_secs(1), self.sock.recv(&mut buf)).await;
            let n = match got {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => {
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => continue,
            };
            let ev = SinkEvent {
                at: Instant::now(),
                line: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            *self
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(ev.kind().to_owned())
                .or_default() += 1;
            let _ = self.tx.send(ev);
        }
    }

    /// Events received so far, per kind.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn command(&self, text: &str) -> bool {
        self.sock
            .send_to(text.as_bytes(), &self.sink_cmd)
            .await
            .is_ok()
    }

    /// Arms the sink for the next `point` event (`phase1`, `phase2`) of
    /// `worker` (any worker if `None`) and waits for it, up to `wait`.
    /// The event returned is held at the sink until [`release`](Self::release).
    pub async fn strike_point(
        &self,
        point: &str,
        worker: Option<&str>,
        wait: Duration,
    ) -> Option<(u64, SinkEvent)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rx = self.tx.subscribe();
        let arm = format!(
            "arm {id} {point}{}",
            worker.map(|w| format!(" {w}")).unwrap_or_default()
        );
        let deadline = Instant::now() + wait;
        // The sink may be restarting: its command socket then comes back.
        while !self.command(&arm).await {
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(20)).await;
        }
        let want = id.to_string();
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(ev)) if ev.kind() == point && ev.field("hold") == Some(want.as_str()) => {
                    return Some((id, ev))
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                    // The arm may have been taken just now: never leave
                    // the sink holding it until its timeout.
                    self.command("disarm").await;
                    self.release(id).await;
                    return None;
                }
            }
        }
    }

    /// Lets the sink go on after hold `id`.
    pub async fn release(&self, id: u64) {
        self.command(&format!("release {id}")).await;
    }

    /// [`release`](Self::release) from a synchronous context (best effort).
    pub fn release_now(&self, id: u64) {
        let _ = self
            .sock
            .try_send_to(format!("release {id}").as_bytes(), &self.sink_cmd);
    }
}

/// The glyph of a targeted strike at `who` (`^P1`: at worker 1's prepare,
/// `^CS`: the sink at a commit...), printed before the fault's own glyphs.
fn strike_glyph(word: Targeted, index: Option<usize>) -> String {
    let at = match word {
        Targeted::CrashAtCommit => 'C',
        _ => 'P',
    };
    match index {
        Some(i) => format!("^{at}{i}"),
        None => format!("^{at}S"),
    }
}

/// The loop of one targeted fault word.
pub async fn run(h: Arc<Harness>, word: Targeted, ev: Arc<SinkEvents>) {
    let t = h.timings.clone();
    let kind = word.word();
    let mut rng = h.rng(kind);
    sleep(secs(t.crash_worker_start)).await;
    loop {
        if h.finished() {
            return;
        }
        sleep(uniform(&mut rng, 0.0, t.crash_worker_before)).await;
        let ticket = h.schedule.acquire(kind, || h.out.glyph(":^")).await;
        if h.finished() {
            return;
        }
        // The sink, or a member no other loop holds (see
        // `Harness::claim_any_member`).
        let picked = if word == Targeted::CrashSinkAtPrepare {
            h.claim("sink").await.map(|c| (None, c))
        } else {
            h.claim_any_member(rng.gen(), secs(t.member_claim_wait))
                .await
                .map(|(i, c)| (Some(i), c))
        };
        let Some((index, claim)) = picked else {
            ticket.cancel();
            h.out.glyph(":^");
            sleep(Duration::from_secs(1)).await;
            continue;
        };
        let who = index.map_or_else(|| "sink".to_owned(), worker_name);
        let (down, what) = match word {
            Targeted::PauseAtPrepare => {
                let d = uniform(&mut rng, t.pause_min, t.pause_max);
                (
                    d,
                    format!("pause {who} at phase1 for={:.3}", d.as_secs_f64()),
                )
            }
            Targeted::CrashSinkAtPrepare => {
                let d = uniform(&mut rng, 0.0, t.crash_sink_down);
                (
                    d,
                    format!("crash sink at phase1 down={:.3}", d.as_secs_f64()),
                )
            }
            Targeted::CrashAtPrepare | Targeted::CrashAtCommit => {
                let d = uniform(&mut rng, 0.0, t.crash_worker_down);
                let at = if word == Targeted::CrashAtCommit {
                    "phase2"
                } else {
                    "phase1"
                };
                (
                    d,
                    format!("crash {who} at {at} down={:.3}", d.as_secs_f64()),
                )
            }
        };
        match strike(&h, word, index, down, what, ticket, claim, &ev).await {
            Strike::Done => {}
            Strike::NoEvent => h.out.glyph(":^"),
            Strike::Stop => return,
        }
    }
}

/// What one strike came to.
pub enum Strike {
    /// The fault was applied (and, for a crash or pause, undone).
    Done,
    /// No such event came within the arm time (the cluster is
    /// recovering): the ticket was cancelled, nothing done.
    NoEvent,
    /// The run ended or must end (reported).
    Stop,
}

/// One strike of `word` at `index` (`None`: the sink): arms at the
/// target's next phase event, records the decision (`what`, the event as
/// `on_event`), applies the fault while the sink holds the event, undoes
/// it after `down`, and ends `ticket`. The one copy, for the loop and for
/// `crasher replay`.
#[allow(clippy::too_many_arguments)]
pub async fn strike(
    h: &Harness,
    word: Targeted,
    index: Option<usize>,
    down: Duration,
    what: String,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
    ev: &Arc<SinkEvents>,
) -> Strike {
    let kind = word.word();
    let who = index.map_or_else(|| "sink".to_owned(), worker_name);
    let point = if word == Targeted::CrashAtCommit {
        "phase2"
    } else {
        "phase1"
    };
    let worker = index.map(worker_name);
    let Some((id, event)) = ev.strike_point(point, worker.as_deref(), ARM_WAIT).await else {
        // No such event in time (the cluster is recovering): try later.
        drop(claim);
        ticket.cancel();
        return Strike::NoEvent;
    };
    if h.finished() {
        ev.release(id).await;
        return Strike::Stop;
    }
    let fault = Fault::new(kind, who.clone()).on_event(event.line.clone());
    let fault = if word == Targeted::PauseAtPrepare {
        fault.hold(down)
    } else {
        fault.down(down)
    };
    h.schedule.decide(kind, what, fault);
    h.out.event("strike", &strike_glyph(word, index));
    match (word, index) {
        (Targeted::PauseAtPrepare, Some(i)) => {
            faults::pause_worker(h, i).await;
            ev.release(id).await;
            sleep(down).await;
            faults::resume_worker(h, i).await;
            drop(claim);
            ticket.end();
        }
        (Targeted::CrashSinkAtPrepare, _) => {
            let crashed = faults::crash_sink(h).await;
            ev.release(id).await;
            if let Err(e) = crashed {
                drop(claim);
                h.out.line(&format!("Crash of sink failed: {e}"));
                h.violation(kind, format!("sink was not running when crashed: {e}"));
                return Strike::Stop;
            }
            sleep(down).await;
            if h.finished() {
                return Strike::Stop;
            }
            if let Err(e) = faults::restart_sink(h).await {
                h.finish(Outcome::Environment(e.to_string()));
                return Strike::Stop;
            }
            drop(claim);
            ticket.end();
        }
        (_, Some(i)) => {
            let evr = Arc::clone(ev);
            if !crash_and_restart(h, i, down, ticket, claim, move || evr.release_now(id)).await {
                return Strike::Stop;
            }
        }
        (_, None) => {
            ev.release(id).await;
            drop(claim);
            ticket.cancel();
        }
    }
    Strike::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_are_read_by_name() {
        let e = SinkEvent {
            at: Instant::now(),
            line: "phase1 conn=3 worker=worker1 txn=T-1:c_id=2 vote=commit hold=4".into(),
        };
        assert_eq!(e.kind(), "phase1");
        assert_eq!(e.field("worker"), Some("worker1"));
        assert_eq!(e.field("txn"), Some("T-1:c_id=2"));
        assert_eq!(e.field("hold"), Some("4"));
        assert_eq!(e.field("vote"), Some("commit"));
        assert_eq!(e.field("hol"), None);
        assert_eq!(strike_glyph(Targeted::CrashAtPrepare, Some(1)), "^P1");
        assert_eq!(strike_glyph(Targeted::CrashSinkAtPrepare, None), "^PS");
        assert_eq!(strike_glyph(Targeted::CrashAtCommit, Some(0)), "^C0");
    }
}
