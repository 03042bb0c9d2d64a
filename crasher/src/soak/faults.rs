//! One copy of each fault action: crash and restart a worker, the sink or a
//! feeder, pause and resume a worker, join and shrink a worker.
//!
//! Each action prints its glyph, records its timeline event, counts itself
//! and does the housekeeping that goes with it (a crashed worker's log is
//! rotated and gzipped) exactly the same way, whoever calls it: the soak's
//! fault loops, the custom scenarios and the recipes. Callers hold the
//! target's claim (see [`Harness::claim`]) and a schedule ticket; the
//! actions reach the cluster through its owner (`run::owner`).

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
pub async fn crash_worker(h: &Harness, i: usize, glyph: &str) -> Result<(), ClusterError> {
    h.out.event("crash", glyph);
    kill_worker(h, i).await?;
    h.counters.worker_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// SIGKILLs worker `i` with no glyph of its own (a fault that prints its
/// own, like a power loss), then rotates and gzips its log.
pub async fn kill_worker(h: &Harness, i: usize) -> Result<(), ClusterError> {
    let aside = h
        .cluster(move |c| {
            c.crash_worker(i)?;
            Ok::<_, ClusterError>(c.rotate_worker_log(i))
        })
        .await?;
    if let Some(aside) = aside {
        tokio::task::spawn_blocking(move || cluster::gzip_file(&aside));
    }
    Ok(())
}

/// Starts crashed worker `i` again from its resilience directory.
pub async fn restart_worker(h: &Harness, i: usize, glyph: &str) -> Result<(), ClusterError> {
    start_again(h, i).await?;
    h.out.event("restart", glyph);
    Ok(())
}

/// Starts crashed worker `i` again, with no glyph of its own.
pub async fn start_again(h: &Harness, i: usize) -> Result<(), ClusterError> {
    h.cluster(move |c| c.start_worker(i, Start::Restart)).await
}

/// SIGKILLs the sink (`cS`). Fails if it was not running.
pub async fn crash_sink(h: &Harness) -> Result<(), ClusterError> {
    h.out.event("crash", "cS");
    h.cluster(|c| c.crash_sink()).await?;
    h.counters.sink_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Starts the sink again (`rS`).
pub async fn restart_sink(h: &Harness) -> Result<(), ClusterError> {
    h.out.event("restart", "rS");
    h.cluster(|c| c.start_sink()).await
}

/// SIGKILLs the feeder of key `k` (`cfK`). Fails if it was not running.
pub async fn crash_feeder(h: &Harness, k: &str) -> Result<(), ClusterError> {
    h.out.event("crash", &format!("cf{k}"));
    let key = k.to_owned();
    h.cluster(move |c| c.crash_feeder(&key)).await?;
    h.counters.feeder_crashes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reaps the crashed feeder of `k` and starts it again (`rfK`).
pub async fn restart_feeder(h: &Harness, k: &str) -> Result<(), ClusterError> {
    let who = format!("feeder.{k}");
    let key = k.to_owned();
    h.cluster(move |c| {
        let _ = c.reap(|w| w != who);
        c.start_feeder(&key)
    })
    .await?;
    h.out.event("restart", &format!("rf{k}"));
    Ok(())
}

/// SIGSTOPs worker `i` (`pN`).
pub async fn pause_worker(h: &Harness, i: usize) {
    h.out.event("pause", &format!("p{i}"));
    h.cluster(move |c| c.signal_worker(i, Signal::SIGSTOP))
        .await;
    h.counters.pauses.fetch_add(1, Ordering::Relaxed);
}

/// SIGCONTs worker `i` (`uN`).
pub async fn resume_worker(h: &Harness, i: usize) {
    h.cluster(move |c| c.signal_worker(i, Signal::SIGCONT))
        .await;
    h.out.event("resume", &format!("u{i}"));
}

/// Starts worker `i` as a joiner (`Join workerN.`, or `Join workerN again`).
pub async fn join_worker(h: &Harness, i: usize, again: bool) -> Result<(), ClusterError> {
    let name = worker_name(i);
    h.out.event(
        "join",
        &format!("Join {name}{}", if again { " again" } else { "." }),
    );
    h.cluster(move |c| c.start_worker(i, Start::Join)).await?;
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
    let init = h.cluster(|c| c.external_addr(0)).await;
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
            let running = h.cluster(move |c| c.worker_running(i)).await;
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
    // Terminated on the owner's thread (up to 2 s of grace), not on one
    // of the runtime's.
    h.cluster(move |c| {
        if let Some(m) = c.take_worker(i) {
            m.terminate(Duration::from_secs(2));
        }
    })
    .await;
    h.counters.shrinks.fetch_add(1, Ordering::Relaxed);
    await_live(h, own, budget, |d| async move {
        query::poll_ready(init, d).await.map(|_| ())
    })
    .await
}
