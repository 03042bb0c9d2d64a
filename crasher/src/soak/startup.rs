//! Start-up in ordered stages (sink, workers, feeders), with a process that
//! dies at start-up reported at once.

use std::sync::Arc;
use std::time::Duration;

use crate::run::cluster;
use crate::run::cluster::Start;

use super::harness::{Harness, Outcome};
use super::loops;
use super::spec::SoakSpec;
use super::timings::secs;

/// Starts sink, initializer, workers and feeders in stages and waits for
/// readiness.
pub async fn start_up(h: &Arc<Harness>, spec: &SoakSpec) -> Result<(), Outcome> {
    tokio::select! {
        r = start_up_stages(h, spec) => r,
        o = death_at_start_up(h) => Err(o),
    }
}

/// Resolves when a process of the run exits during start-up (nothing
/// crasher started should exit then): an environment error with the
/// process's own last log lines, at once rather than after a readiness
/// timeout.
pub(super) async fn death_at_start_up(h: &Harness) -> Outcome {
    use tokio::signal::unix::{signal, SignalKind};
    let mut chld = signal(SignalKind::child()).ok();
    loop {
        match chld.as_mut() {
            Some(c) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), c.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        let deaths = h.cluster(|c| c.reap(|_| false)).await;
        let failed = deaths
            .into_iter()
            .find(|d| !(d.success && d.who.starts_with("feeder.")));
        if let Some(d) = failed {
            let log = h.run_dir().log_of(&d.who);
            return Outcome::Environment(format!(
                "{} exited during start-up ({}); last lines of {}:\n{}",
                d.who,
                d.status,
                log.display(),
                loops::tail_lines(&log, 10)
            ));
        }
    }
}

pub(super) async fn start_up_stages(h: &Arc<Harness>, spec: &SoakSpec) -> Result<(), Outcome> {
    let env = |e: cluster::ClusterError| Outcome::Environment(e.to_string());
    let t = &h.timings;
    // Stage: sink, before any worker (the original's GH #3123).
    let sink_addr = h
        .cluster(|c| c.start_sink().map(|()| c.sink_addr()))
        .await
        .map_err(env)?;
    wait_accepting(&sink_addr, Duration::from_secs(10))
        .await
        .map_err(|e| Outcome::Unknown(format!("the sink never listened on {sink_addr}: {e}")))?;
    // Stage: initializer.
    let init = h
        .cluster(|c| {
            c.start_worker(0, Start::Initial)
                .map(|()| c.readiness_addr(0))
        })
        .await
        .map_err(env)?;
    wait_accepting(&init.to_string(), secs(t.startup_ready))
        .await
        .map_err(|e| Outcome::Unknown(format!("the initializer never listened on {init}: {e}")))?;
    // Stage: the other workers, together.
    for i in 1..spec.workers {
        h.cluster(move |c| c.start_worker(i, Start::Initial))
            .await
            .map_err(env)?;
    }
    // Stage: readiness.
    let ready = loops::poll_all_ready(h, secs(t.startup_ready)).await;
    match ready {
        Ok(msg) if msg.matches(',').count() + 1 == spec.workers => {
            h.out.line(&format!("Cluster {msg}"))
        }
        Ok(msg) => {
            return Err(Outcome::Unknown(format!(
                "cluster ready with the wrong members: {msg}"
            )))
        }
        Err(e) => {
            return Err(Outcome::Unknown(format!(
                "the cluster did not become ready within {}s: {e}",
                t.startup_ready
            )))
        }
    }
    // Stage: feeders.
    let keys: Vec<String> = h.settings().inputs.keys().cloned().collect();
    for k in keys {
        h.cluster(move |c| c.start_feeder(&k)).await.map_err(env)?;
    }
    Ok(())
}

pub(super) async fn wait_accepting(addr: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
