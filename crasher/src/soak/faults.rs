//! One copy of each fault action: crash and restart a worker, the sink or a
//! feeder, pause and resume a worker, join and shrink a worker.
//!
//! Each action prints its glyph, records its timeline event, counts itself
//! and does the housekeeping that goes with it (a crashed worker's log is
//! rotated and gzipped) exactly the same way, whoever calls it: the soak's
//! fault loops, the custom scenarios and the recipes. Callers hold the
//! target's claim (see [`Harness::claim`]) and a schedule ticket; the
//! actions never hold the cluster's lock across an `.await` or past their
//! own statement.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::harness::Harness;
use super::liveness::{await_live, NotLive};
use super::schedule::FaultId;
use super::spec::worker_name;
use super::timings::secs;
use crate::run::cluster::{self, ClusterError, Start};
use crate::run::query;

/// SIGKILLs worker `i` (glyph `glyph`, e.g. `c1`), then moves its log aside
/// and gzips it in the background. Fails if the worker was not running.
pub fn crash_worker(h: &Harness, i: usize, glyph: &str) -> Result<(), ClusterError> {
    h.out.event("crash", glyph);
    kill_worker(h, i)?;
    h.counters.worker_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// SIGKILLs worker `i` with no glyph of its own (a fault that prints its
/// own, like a power loss), then rotates and gzips its log.
pub fn kill_worker(h: &Harness, i: usize) -> Result<(), ClusterError> {
    h.cluster().crash_worker(i)?;
    let aside = h.cluster().rotate_worker_log(i);
    if let Some(aside) = aside {
        tokio::task::spawn_blocking(move || cluster::gzip_file(&aside));
    }
    Ok(())
}

/// Starts crashed worker `i` again from its resilience directory.
pub fn restart_worker(h: &Harness, i: usize, glyph: &str) -> Result<(), ClusterError> {
    start_again(h, i)?;
    h.out.event("restart", glyph);
    Ok(())
}

/// Starts crashed worker `i` again, with no glyph of its own.
pub fn start_again(h: &Harness, i: usize) -> Result<(), ClusterError> {
    h.cluster().start_worker(i, Start::Restart)
}

/// SIGKILLs the sink (`cS`). Fails if it was not running.
pub fn crash_sink(h: &Harness) -> Result<(), ClusterError> {
    h.out.event("crash", "cS");
    h.cluster().crash_sink()?;
    h.counters.sink_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Starts the sink again (`rS`).
pub fn restart_sink(h: &Harness) -> Result<(), ClusterError> {
    h.out.event("restart", "rS");
    h.cluster().start_sink()
}

/// SIGKILLs the feeder of key `k` (`cfK`). Fails if it was not running.
pub fn crash_feeder(h: &Harness, k: &str) -> Result<(), ClusterError> {
    h.out.event("crash", &format!("cf{k}"));
    h.cluster().crash_feeder(k)?;
    h.counters.feeder_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reaps the crashed feeder of `k` and starts it again (`rfK`).
pub fn restart_feeder(h: &Harness, k: &str) -> Result<(), ClusterError> {
    let who = format!("feeder.{k}");
    let _ = h.cluster().reap(|w| w != who);
    h.cluster().start_feeder(k)?;
    h.out.event("restart", &format!("rf{k}"));
    Ok(())
}

/// SIGSTOPs worker `i` (`pN`).
pub fn pause_worker(h: &Harness, i: usize) {
    h.out.event("pause", &format!("p{i}"));
    h.cluster().signal_worker(i, Signal::SIGSTOP);
    h.counters.pauses.fetch_add(1, Ordering::Relaxed);
}

/// SIGCONTs worker `i` (`uN`).
pub fn resume_worker(h: &Harness, i: usize) {
    h.cluster().signal_worker(i, Signal::SIGCONT);
    h.out.event("resume", &format!("u{i}"));
}

/// Starts worker `i` as a joiner (`Join workerN.`, or `Join workerN again`).
pub fn join_worker(h: &Harness, i: usize, again: bool) -> Result<(), ClusterError> {
    let name = worker_name(i);
    h.out.event(
        "join",
        &format!("Join {name}{}", if again { " again" } else { "." }),
    );
    h.cluster().start_worker(i, Start::Join)?;
    h.counters.joins.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Shrinks worker `i` away through the initializer (`Shrink workerN`) and
/// waits, on the quiet clock, for the initializer to be ready, the worker
/// to leave, and the cluster to be ready again. The caller holds the
/// worker's and the initializer's claims; `own` is the shrink's ticket.
pub async fn shrink_worker(h: &Harness, i: usize, own: Option<FaultId>) -> Result<(), NotLive> {
    let name = worker_name(i);
    h.out.event("shrink", &format!("Shrink {name}"));
    let init = h.cluster().external_addr(0);
    let budget = secs(h.timings.grow_ready);
    // A just-restarted initializer is recovering: ask it once it is ready.
    await_live(h, own, budget, |d| async move {
        query::poll_ready(init, d)
            .await
            .map(|_| ())
            .map_err(|e| format!("the initializer is not ready: {e}"))
    })
    .await?;
    // One request: the initializer answers once the membership change is
    // checkpointed, and a second request would find the worker gone.
    let limit = crate::soak::liveness::cap(budget);
    let epoch = h.schedule.epoch();
    let started = Instant::now();
    match query::shrink(init, vec![name.clone()], false, limit).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(NotLive::Refused(format!("the initializer refused: {e}"))),
        Err(e) => {
            let waited = started.elapsed().as_secs_f64();
            let last = format!("shrink request: {e}");
            return Err(
                if h.schedule.epoch() != epoch || h.schedule.disturbed(own) {
                    NotLive::Unjudgeable {
                        last,
                        quiet: 0.0,
                        waited,
                    }
                } else {
                    NotLive::Stalled {
                        last,
                        quiet: waited,
                        waited,
                    }
                },
            );
        }
    }
    await_live(h, own, budget, |d| async move {
        loop {
            let running = h.cluster().worker_running(i);
            if !running {
                return Ok(());
            }
            if Instant::now() >= d {
                return Err(format!(
                    "{} still running after the shrink request",
                    worker_name(i)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let gone = h.cluster().take_worker(i);
    if let Some(m) = gone {
        // Reaped off the runtime's threads: up to 2 s of grace.
        let _ = tokio::task::spawn_blocking(move || m.terminate(Duration::from_secs(2))).await;
    }
    h.counters.shrinks.fetch_add(1, Ordering::Relaxed);
    await_live(h, own, budget, |d| async move {
        query::poll_ready(init, d).await.map(|_| ())
    })
    .await
}
