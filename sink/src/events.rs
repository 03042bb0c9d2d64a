//! Phase events for the supervisor (`--events PATH`): best effort, never
//! in the way of a commit.
//!
//! The sink sends one text datagram per protocol event to the Unix
//! datagram socket at `PATH` (the supervisor's, in the run directory):
//!
//! ```text
//! recovery conn=3 worker=worker1 pending=1
//! phase1 conn=3 worker=worker1 txn=T vote=commit
//! vote-sent conn=3 worker=worker1 txn=T
//! phase2 conn=3 worker=worker1 txn=T commit=true
//! ```
//!
//! A send never blocks: the socket is non-blocking, and a datagram the
//! supervisor's queue has no room for, or that nobody receives (the
//! supervisor is gone), is dropped. That is all an unarmed sink does.
//!
//! For an exact strike the supervisor *arms* the sink: it sends
//! `arm ID EVENT [WORKER]` to the sink's own socket, `PATH.sink` (bound
//! at start). The next matching `phase1` or `phase2` event is reported
//! with `hold=ID` and the connection waits there — after the sink has
//! recorded the vote (`1-ok`) or before it records the phase 2 — until the
//! supervisor sends `release ID` (it has applied the fault), or at most
//! [`HOLD_TIMEOUT`]: a dead or slow supervisor delays one transaction by
//! that much, never wedges the sink. Only the armed connection waits; no
//! other connection and no unarmed event ever does.

use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::sync::watch;
use tracing::{info, warn};

/// The longest an armed event holds its connection.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(3);

/// The events a hold can be armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPoint {
    /// After the vote on a PHASE1 is recorded, before the reply is sent.
    Phase1,
    /// When a PHASE2 arrives, before it is recorded.
    Phase2,
}

impl HoldPoint {
    fn parse(s: &str) -> Option<HoldPoint> {
        match s {
            "phase1" => Some(HoldPoint::Phase1),
            "phase2" => Some(HoldPoint::Phase2),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Arm {
    id: u64,
    point: HoldPoint,
    worker: Option<String>,
}

/// The sink's event channel; a no-op without `--events`.
#[derive(Debug)]
pub struct Events {
    out: Option<(StdDatagram, PathBuf)>,
    armed: Mutex<Option<Arm>>,
    released: watch::Sender<u64>,
}

impl Events {
    /// No events.
    pub fn none() -> Events {
        Events {
            out: None,
            armed: Mutex::new(None),
            released: watch::channel(0).0,
        }
    }

    /// Events sent to the socket at `to`. Fails only if no local socket
    /// can be made at all.
    pub fn to(to: &Path) -> std::io::Result<Events> {
        let sock = StdDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Events {
            out: Some((sock, to.to_owned())),
            armed: Mutex::new(None),
            released: watch::channel(0).0,
        })
    }

    /// Whether events are sent at all.
    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    /// Sends one event line; dropped if it cannot go at once.
    pub fn send(&self, line: &str) {
        if let Some((sock, to)) = &self.out {
            let _ = sock.send_to(line.as_bytes(), to);
        }
    }

    /// Reports `line` at hold point `point` of `worker`; if the sink is
    /// armed for it, waits (bounded) until the supervisor releases it.
    pub async fn at(&self, point: HoldPoint, worker: &str, line: String) {
        if self.out.is_none() {
            return;
        }
        let take = {
            let mut a = self.armed.lock().unwrap_or_else(|e| e.into_inner());
            let hit = a.as_ref().is_some_and(|a| {
                a.point == point && a.worker.as_deref().map_or(true, |w| w == worker)
            });
            if hit {
                a.take()
            } else {
                None
            }
        };
        let Some(arm) = take else {
            return self.send(&line);
        };
        let mut rx = self.released.subscribe();
        self.send(&format!("{line} hold={}", arm.id));
        let released = tokio::time::timeout(HOLD_TIMEOUT, rx.wait_for(|r| *r >= arm.id)).await;
        if released.is_err() {
            warn!(
                "events: hold {} ({line}) not released within {:?}; going on",
                arm.id, HOLD_TIMEOUT
            );
        }
    }

    /// Handles one command from the supervisor.
    fn command(&self, text: &str) {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["arm", id, point, rest @ ..] => {
                let (Ok(id), Some(point)) = (id.parse::<u64>(), HoldPoint::parse(point)) else {
                    warn!("events: unreadable command {text:?}");
                    return;
                };
                let worker = rest.first().map(|w| (*w).to_owned());
                info!(
                    "events: armed hold {id} at {point:?} of {}",
                    worker.as_deref().unwrap_or("any worker")
                );
                *self.armed.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arm { id, point, worker });
            }
            ["disarm"] => {
                *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            ["release", id] => match id.parse::<u64>() {
                Ok(id) => {
                    self.released.send_if_modified(|r| {
                        let newer = id > *r;
                        if newer {
                            *r = id;
                        }
                        newer
                    });
                }
                Err(_) => warn!("events: unreadable command {text:?}"),
            },
            _ => warn!("events: unreadable command {text:?}"),
        }
    }
}

/// The sink's own socket path for events sent to `to`.
pub fn command_path(to: &Path) -> PathBuf {
    let mut p = to.as_os_str().to_owned();
    p.push(".sink");
    PathBuf::from(p)
}

/// Receives the supervisor's commands on [`command_path`] until the sink
/// stops. A socket that cannot be bound leaves events unarmed (logged).
pub async fn serve_commands(events: Arc<Events>) {
    let Some((_, to)) = &events.out else {
        return;
    };
    let path = command_path(to);
    let _ = std::fs::remove_file(&path);
    let sock = match UnixDatagram::bind(&path) {
        Ok(s) => s,
        Err(e) => {
            warn!("events: cannot bind {}: {e}; holds are off", path.display());
            return;
        }
    };
    events.send(&format!("hello pid={}", std::process::id()));
    let mut buf = vec![0u8; 512];
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) => events.command(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => {
                warn!("events: receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unarmed_events_never_wait_and_armed_ones_wait_for_release() {
        let dir = tempfile::tempdir().unwrap();
        let sup_path = dir.path().join("ev.sock");
        let sup = StdDatagram::bind(&sup_path).unwrap();
        sup.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ev = Arc::new(Events::to(&sup_path).unwrap());
        // Unarmed: returns at once.
        ev.at(HoldPoint::Phase1, "w1", "phase1 worker=w1".into())
            .await;
        let mut buf = [0u8; 256];
        let n = sup.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"phase1 worker=w1");
        // Armed for another worker: no hold.
        ev.command("arm 1 phase1 w2");
        ev.at(HoldPoint::Phase1, "w1", "phase1 worker=w1".into())
            .await;
        let n = sup.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"phase1 worker=w1");
        // Armed for w1: holds until released.
        ev.command("arm 2 phase1 w1");
        let e2 = Arc::clone(&ev);
        let held = tokio::spawn(async move {
            let t = std::time::Instant::now();
            e2.at(HoldPoint::Phase1, "w1", "phase1 worker=w1".into())
                .await;
            t.elapsed()
        });
        let n = tokio::task::spawn_blocking(move || {
            let n = sup.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .unwrap();
        assert_eq!(n, "phase1 worker=w1 hold=2");
        assert!(!held.is_finished());
        ev.command("release 2");
        let waited = held.await.unwrap();
        assert!(waited < HOLD_TIMEOUT, "{waited:?}");
    }

    #[tokio::test]
    async fn a_hold_nobody_releases_ends_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // Nobody listens at this path: sends fail silently.
        let ev = Events::to(&dir.path().join("gone.sock")).unwrap();
        ev.command("arm 7 phase2");
        let t = std::time::Instant::now();
        ev.at(HoldPoint::Phase2, "w1", "phase2".into()).await;
        let waited = t.elapsed();
        assert!(
            waited >= HOLD_TIMEOUT && waited < HOLD_TIMEOUT * 2,
            "{waited:?}"
        );
    }
}
