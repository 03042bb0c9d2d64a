//! The loops of a soak, each a task: crash the sink, workers or feeders,
//! pause processes, grow and shrink, and check progress and sanity.
//!
//! Glyphs and messages are the original's (see docs/architecture.md). Every
//! random choice comes from the loop's own seeded source.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::{sleep, Instant};

use super::faults;
use super::harness::{Harness, Outcome};
use super::liveness::{await_live, NotLive, QuietClock};
use super::schedule::Fault;
use super::spec::{worker_index, worker_name};
use super::timings::secs;
use crate::run::cluster::{self, ClusterError};
use crate::run::profile::ReadinessKind;
use crate::run::query;

/// A random time in U[lo, hi) seconds (`lo` when the range is empty): every
/// fault loop's gaps and down-times.
pub fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> Duration {
    if hi <= lo {
        return secs(lo);
    }
    secs(rng.gen_range(lo..hi))
}

fn env_error(h: &Harness, e: ClusterError) {
    h.finish(Outcome::Environment(e.to_string()));
}

/// Polls worker `i` until it is ready, by the profile's readiness kind.
pub async fn poll_one(h: &Harness, i: usize, deadline: Instant) -> Result<(), String> {
    let addr = h.cluster(move |c| c.readiness_addr(i)).await;
    let kind = h.profile().readiness.kind;
    query::poll_worker(kind, addr, deadline).await
}

/// Polls every member until it processes messages; the budget is shared.
pub async fn poll_all_ready(h: &Harness, budget: Duration) -> Result<String, String> {
    all_ready_by(h, Instant::now() + budget).await
}

/// Polls every member until it processes messages or `deadline` passes.
pub async fn all_ready_by(h: &Harness, deadline: Instant) -> Result<String, String> {
    let kind = h.profile().readiness.kind;
    if kind != ReadinessKind::External {
        let members = h.members().await;
        let mut names = Vec::new();
        for i in members {
            poll_one(h, i, deadline)
                .await
                .map_err(|e| format!("worker {}: {e}", worker_name(i)))?;
            names.push(worker_name(i));
        }
        return Ok(format!("ready: {}", names.join(",")));
    }
    let init = h.cluster(|c| c.external_addr(0)).await;
    let status = query::poll_ready(init, deadline)
        .await
        .map_err(|e| format!("initializer query of worker names failed: {e}"))?;
    let mut names = Vec::new();
    for name in &status.worker_names {
        let i = worker_index(name).ok_or_else(|| format!("unknown worker name {name:?}"))?;
        let addr = h.cluster(move |c| c.external_addr(i)).await;
        query::poll_ready(addr, deadline)
            .await
            .map_err(|e| format!("worker {name}: {e}"))?;
        names.push(name.clone());
    }
    Ok(format!("ready: {}", names.join(",")))
}

/// Watches for processes that exit: restarts feeders (as the original's
/// `while [ 1 ]` did), and reports a worker or sink that died by itself.
/// Exits are seen through SIGCHLD (with a slow fallback tick), not by
/// polling.
pub async fn monitor(h: Arc<Harness>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut chld = signal(SignalKind::child()).ok();
    let mut feeder_fails = FeederFails::default();
    loop {
        match chld.as_mut() {
            Some(c) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.recv()).await;
            }
            None => sleep(Duration::from_millis(50)).await,
        }
        if h.finished() {
            return;
        }
        let (deaths, mirror) = h
            .cluster(|c| (c.reap_unclaimed(), c.mirror_failure()))
            .await;
        if let Some(e) = mirror {
            h.finish(Outcome::Environment(e));
            return;
        }
        for d in deaths {
            if d.who.starts_with("feeder.") {
                if let Some(why) = feeder_fails.note(&d) {
                    let log = h.run_dir().log_of(&d.who);
                    h.out.line(&format!("{}: {why}", d.who));
                    h.finish(Outcome::Unknown(format!(
                        "{} {why}: it cannot run, so the run cannot judge the cluster \
                         (no acks would be a false alarm); last log lines of {}:\n{}",
                        d.who,
                        log.display(),
                        tail_lines(&log, 5)
                    )));
                    return;
                }
                continue;
            }
            let log = h.run_dir().log_of(&d.who);
            let tail = tail_lines(&log, 5);
            if d.who == "sink" && d.status == "exit 66" {
                // The sink stopped on one of its own invariant checks
                // (duplicate data, a commit of an aborted transaction...):
                // a finding about the data, reported as the sanity check
                // would report the same lines.
                let alarms: Vec<String> = tail_lines(&log, 50)
                    .lines()
                    .filter(|l| l.contains("FATAL") || l.contains("CRIT"))
                    .map(str::to_owned)
                    .collect();
                if !alarms.is_empty() {
                    let v = format!(
                        "SANITY: the sink stopped on an invariant violation (exit 66):\n{}",
                        alarms.join("\n")
                    );
                    h.out.line(&v);
                    h.violation("sanity", v);
                    return;
                }
            }
            h.out.line(&format!(
                "Crash of {} failed: it died by itself ({})",
                d.who, d.status
            ));
            h.violation(
                "process-death",
                format!(
                    "{} died by itself: {}; last log lines of {}:\n{}",
                    d.who,
                    d.status,
                    log.display(),
                    tail
                ),
            );
            return;
        }
        // Feeders that stopped unfinished and that no loop is acting on
        // are started again, in the same command as the check.
        let started = h
            .cluster(|c| {
                let idle: Vec<String> = c
                    .idle_feeders()
                    .into_iter()
                    .filter(|k| !c.is_claimed(&format!("feeder.{k}")))
                    .collect();
                idle.iter().try_for_each(|k| c.start_feeder(k))
            })
            .await;
        if let Err(e) = started {
            return env_error(&h, e);
        }
    }
}

/// A feeder that fails within [`FEEDER_FAST_FAIL`] of each start this
/// many times in a row cannot run at all (a missing file, a bad argument,
/// a program it needs): crasher's built-in feeders retry their target
/// forever, so their quick exits are not the cluster's doing.
pub const FEEDER_FAILS_IN_A_ROW: u32 = 10;

/// See [`FEEDER_FAILS_IN_A_ROW`].
pub const FEEDER_FAST_FAIL: Duration = Duration::from_secs(2);

/// Counts each feeder's failures in a row that came within
/// [`FEEDER_FAST_FAIL`] of its start; a longer run or a success resets it.
#[derive(Debug, Default)]
pub struct FeederFails(BTreeMap<String, u32>);

impl FeederFails {
    /// Notes a feeder's death (one no loop caused); `Some(why)` once it
    /// failed fast [`FEEDER_FAILS_IN_A_ROW`] times in a row.
    pub fn note(&mut self, d: &cluster::Death) -> Option<String> {
        let n = self.0.entry(d.who.clone()).or_default();
        if d.success || d.ran_for >= FEEDER_FAST_FAIL {
            *n = 0;
            return None;
        }
        *n += 1;
        (*n >= FEEDER_FAILS_IN_A_ROW).then(|| {
            format!(
                "failed {n} times in a row within {}s of its start (last: {})",
                FEEDER_FAST_FAIL.as_secs(),
                d.status
            )
        })
    }
}

/// The last `n` lines of a file, for diagnoses.
pub fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `crash-sink`: SIGKILL the sink, restart it after a short down-time.
pub async fn crash_sink(h: Arc<Harness>) {
    let t = h.timings.clone();
    let mut rng = h.rng("crash-sink");
    sleep(secs(t.crash_sink_start)).await;
    loop {
        if h.finished() {
            return;
        }
        let ticket = h.schedule.acquire("crash-sink", || h.out.glyph(":s")).await;
        if h.finished() {
            return;
        }
        match h.claim("sink").await {
            None => ticket.cancel(),
            Some(claim) => {
                let down = uniform(&mut rng, 0.0, t.crash_sink_down);
                h.schedule.decide(
                    "crash-sink",
                    format!("crash sink down={:.3}", down.as_secs_f64()),
                    Fault::new("crash-sink", "sink").down(down),
                );
                if !sink_crash(&h, down, ticket, claim).await {
                    return;
                }
            }
        }
        sleep(uniform(
            &mut rng,
            t.crash_sink_gap_min,
            t.crash_sink_gap_max,
        ))
        .await;
    }
}

/// One sink crash for a loop that holds its `ticket` and `claim`: SIGKILL,
/// restart `down` later. False when the loop must stop (the run ended, or
/// the crash or restart failed: reported).
pub async fn sink_crash(
    h: &Harness,
    down: Duration,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
) -> bool {
    if let Err(e) = faults::crash_sink(h).await {
        drop(claim);
        h.out.line(&format!("Crash of sink failed: {e}"));
        h.violation(
            "crash-sink",
            format!("sink was not running when crashed: {e}"),
        );
        return false;
    }
    sleep(down).await;
    if h.finished() {
        return false;
    }
    if let Err(e) = faults::restart_sink(h).await {
        env_error(h, e);
        return false;
    }
    drop(claim);
    ticket.end();
    true
}

/// `crashN` / `crashN.slow`: SIGKILL worker N, restart it, check it recovers.
pub async fn crash_worker(h: Arc<Harness>, index: usize, slow: bool) {
    let t = h.timings.clone();
    let name = worker_name(index);
    let source = format!("crash{index}");
    let mut rng = h.rng(&format!("crash-worker-{index}"));
    sleep(secs(t.crash_worker_start)).await;
    loop {
        if h.finished() {
            return;
        }
        if slow {
            // About one crash every two minutes: the original's counter of
            // ~1 s iterations.
            for _ in 0..(t.crash_worker_slow_iterations as u64) {
                sleep(Duration::from_secs(1) + uniform(&mut rng, 0.0, 0.2)).await;
                if h.finished() {
                    return;
                }
            }
        }
        sleep(uniform(&mut rng, 0.0, t.crash_worker_before)).await;
        let ticket = h
            .schedule
            .acquire(&source, || h.out.glyph(&format!(":c{index}")))
            .await;
        if h.finished() {
            return;
        }
        let member = h.is_member(index).await;
        let claim = if member { h.claim(&name).await } else { None };
        let Some(claim) = claim else {
            ticket.cancel();
            h.out.glyph(&format!(":c{index}"));
            sleep(Duration::from_secs(1)).await;
            continue;
        };
        let down = uniform(&mut rng, 0.0, t.crash_worker_down);
        h.schedule.decide(
            &source,
            format!("crash {name} down={:.3}", down.as_secs_f64()),
            Fault::new("crash-worker", name.clone()).down(down),
        );
        if !crash_and_restart(&h, index, down, ticket, claim, || ()).await {
            return;
        }
    }
}

/// One crash of worker `index` for a crash loop that holds its `ticket`
/// and `claim`: SIGKILL, `down` later restart, then wait for its recovery
/// (it stays claimed until then, so no other loop pauses or shrinks it
/// meanwhile). False when the loop must stop: the run ended, or a crash or
/// restart failed (reported). `killed` runs right after the SIGKILL
/// (a targeted fault releases the sink's hold there).
pub async fn crash_and_restart(
    h: &Harness,
    index: usize,
    down: Duration,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
    killed: impl FnOnce(),
) -> bool {
    let crashed = faults::crash_worker(h, index, &format!("c{index}")).await;
    killed();
    if let Err(e) = crashed {
        h.out.line(&format!("Crash of {index} failed: {e}"));
        let log = h.run_dir().worker_log(&worker_name(index));
        h.violation(
            "crash-loop",
            format!(
                "Crash of {index} failed: {e}; last log lines:\n{}",
                tail_lines(&log, 5)
            ),
        );
        return false;
    }
    sleep(down).await;
    if h.finished() {
        return false;
    }
    if let Err(e) = faults::restart_worker(h, index, &format!("r{index}")).await {
        env_error(h, e);
        return false;
    }
    ticket.end();
    sleep(secs(h.timings.crash_worker_after)).await;
    let recovered = await_recovery(h, index).await;
    drop(claim);
    recovered
}

/// Which member is the primary now, by the profile's `[primary]` query
/// (`None` while no node says so, as during a failover, or if the profile
/// cannot tell). Redis: of the nodes that say `role:master`, the one with
/// the most replicas connected: an old primary restarted after a failover
/// says `master` for a few seconds, with no replica, until the Sentinels
/// turn it into a replica, and crashing it again would miss the real one.
pub(super) async fn current_primary(h: &Harness) -> Option<usize> {
    use crate::run::profile::PrimaryKind;
    let kind: PrimaryKind = h.profile().primary.kind;
    let nodes: Vec<(usize, std::net::SocketAddr)> = h
        .cluster(|c| {
            c.members()
                .iter()
                .map(|&i| (i, c.readiness_addr(i)))
                .collect()
        })
        .await;
    match kind {
        PrimaryKind::None => None,
        PrimaryKind::RedisRole => {
            let mut best: Option<(u32, usize)> = None;
            for (i, addr) in nodes {
                if let Ok((role, replicas)) = query::redis_role(addr, Duration::from_secs(1)).await
                {
                    if role == "master" && best.map_or(true, |(r, _)| replicas > r) {
                        best = Some((replicas, i));
                    }
                }
            }
            best.map(|(_, i)| i)
        }
    }
}

/// Finds the primary now and claims it (`None`: no primary right now, or
/// it is busy).
pub async fn claim_primary(h: &Harness) -> Option<(usize, super::harness::Claim<'_>)> {
    let index = current_primary(h).await?;
    h.claim(&worker_name(index)).await.map(|c| (index, c))
}

/// `crash-primary`: like a crash loop, but each time it crashes whichever
/// member is the primary now, so a failover's new primary is the next
/// target (a fixed `crashN` hits a replica after the first failover).
pub async fn crash_primary(h: Arc<Harness>) {
    let t = h.timings.clone();
    let source = "crash-primary";
    let mut rng = h.rng("crash-primary");
    sleep(secs(t.crash_worker_start)).await;
    loop {
        if h.finished() {
            return;
        }
        sleep(uniform(&mut rng, 0.0, t.crash_worker_before)).await;
        let ticket = h.schedule.acquire(source, || h.out.glyph(":cP")).await;
        if h.finished() {
            return;
        }
        let Some((index, claim)) = claim_primary(&h).await else {
            // No primary right now (a failover in progress), or it is
            // busy: try again.
            ticket.cancel();
            h.out.glyph(":cP");
            sleep(Duration::from_secs(1)).await;
            continue;
        };
        let name = worker_name(index);
        let down = uniform(&mut rng, 0.0, t.crash_worker_down);
        h.schedule.decide(
            source,
            format!("crash primary {name} down={:.3}", down.as_secs_f64()),
            Fault::new("crash-primary", "primary").down(down),
        );
        if !crash_and_restart(&h, index, down, ticket, claim, || ()).await {
            return;
        }
    }
}

/// After a restart: worker `index` ready within `crash_worker_ready` of
/// quiet time; if not, the stabilize gate closes (no fault fires) and the
/// whole cluster gets `crash_worker_all_ready` more. Returns false if the
/// run ended.
async fn await_recovery(h: &Harness, index: usize) -> bool {
    let t = &h.timings;
    let name = worker_name(index);
    let first = await_live(h, None, secs(t.crash_worker_ready), |d| async move {
        poll_one(h, index, d).await
    })
    .await;
    let reason = match first {
        Ok(()) => return true,
        Err(NotLive::Finished) => return false,
        Err(e) => e.describe(secs(t.crash_worker_ready)),
    };
    h.out
        .line(&format!("CRASH LOOP A: {index}: reason {reason}"));
    let flag = format!("crash{index}");
    h.schedule.hold(&flag);
    let budget = secs(t.crash_worker_all_ready);
    let all = await_live(h, None, budget, |d| all_ready_by(h, d)).await;
    h.schedule.release(&flag);
    match all {
        Ok(msg) => {
            h.out.line(&format!("CRASH LOOP {index}: resume: {msg}"));
            true
        }
        Err(e) => {
            h.out.line(&format!(
                "CRASH LOOP B: {index}: pause the world: reason {}",
                e.describe(budget)
            ));
            e.conclude(
                h,
                "restart",
                &format!("{name} did not recover after a restart"),
                budget,
            );
            false
        }
    }
}

/// `crash-source`: SIGKILL a random feeder, restart it after a short down-time.
pub async fn crash_source(h: Arc<Harness>, keys: Vec<String>) {
    let t = h.timings.clone();
    let mut rng = h.rng("crash-source");
    sleep(secs(t.crash_source_start)).await;
    loop {
        if h.finished() {
            return;
        }
        let ticket = h
            .schedule
            .acquire("crash-source", || h.out.glyph(":f"))
            .await;
        let done = h.done_feeders().await;
        let live: Vec<String> = keys
            .iter()
            .filter(|k| !done.contains(*k))
            .cloned()
            .collect();
        if live.is_empty() || h.finished() {
            ticket.cancel();
            return;
        }
        let k = live[rng.gen_range(0..live.len())].clone();
        match h.claim(&format!("feeder.{k}")).await {
            None => ticket.cancel(),
            Some(claim) => {
                let down = uniform(&mut rng, 0.0, t.crash_source_down);
                h.schedule.decide(
                    "crash-source",
                    format!("crash feeder.{k} down={:.3}", down.as_secs_f64()),
                    Fault::new("crash-feeder", format!("feeder.{k}")).down(down),
                );
                if !feeder_crash(&h, &k, down, ticket, claim).await {
                    return;
                }
            }
        }
        sleep(uniform(
            &mut rng,
            t.crash_source_gap_min,
            t.crash_source_gap_max,
        ))
        .await;
    }
}

/// One feeder crash for a loop that holds its `ticket` and `claim`:
/// SIGKILL the feeder of `k`, restart it `down` later. False when the loop
/// must stop (a restart failed: reported).
pub async fn feeder_crash(
    h: &Harness,
    k: &str,
    down: Duration,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
) -> bool {
    if faults::crash_feeder(h, k).await.is_ok() {
        sleep(down).await;
        if let Err(e) = faults::restart_feeder(h, k).await {
            env_error(h, e);
            return false;
        }
        ticket.end();
    } else {
        // It finished its file meanwhile: nothing was crashed.
        ticket.cancel();
    }
    drop(claim);
    true
}

/// One pause for a loop that holds its `ticket` and `claim`: SIGSTOP
/// worker `i`, SIGCONT it `stopped` later. False if the run ended.
pub async fn pause_for(
    h: &Harness,
    i: usize,
    stopped: Duration,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
) -> bool {
    faults::pause_worker(h, i).await;
    sleep(stopped).await;
    if h.finished() {
        return false;
    }
    faults::resume_worker(h, i).await;
    drop(claim);
    ticket.end();
    true
}

/// `pause`: SIGSTOP a random worker for a while, then SIGCONT it.
pub async fn pause_members(h: Arc<Harness>) {
    let t = h.timings.clone();
    let mut rng = h.rng("pause");
    sleep(secs(t.crash_worker_start)).await;
    loop {
        sleep(uniform(&mut rng, t.pause_gap_min, t.pause_gap_max)).await;
        if h.finished() {
            return;
        }
        // A member no other loop holds (a crashed one stays claimed while
        // it recovers); if every member is busy, try again in a second
        // rather than a whole gap later.
        let (ticket, i, claim) = loop {
            let ticket = h.schedule.acquire("pause", || h.out.glyph(":p")).await;
            if h.finished() {
                ticket.cancel();
                return;
            }
            match h
                .claim_any_member(rng.gen(), secs(t.member_claim_wait))
                .await
            {
                Some((i, claim)) => break (ticket, i, claim),
                None => {
                    ticket.cancel();
                    h.out.glyph(":p");
                    sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let stopped = uniform(&mut rng, t.pause_min, t.pause_max);
        h.schedule.decide(
            "pause",
            format!("pause {} for={:.3}", worker_name(i), stopped.as_secs_f64()),
            Fault::new("pause", worker_name(i)).hold(stopped),
        );
        if !pause_for(&h, i, stopped, ticket, claim).await {
            return;
        }
    }
}

/// `pause-primary`: like `pause`, but each time it stops whichever member
/// is the primary now (the profile's `[primary]` query), so a long enough
/// pause (past the Sentinels' down-after time) makes the cluster fail over
/// while the old primary is frozen, not dead.
pub async fn pause_primary(h: Arc<Harness>) {
    let t = h.timings.clone();
    let source = "pause-primary";
    let mut rng = h.rng(source);
    sleep(secs(t.crash_worker_start)).await;
    loop {
        sleep(uniform(&mut rng, t.pause_gap_min, t.pause_gap_max)).await;
        if h.finished() {
            return;
        }
        let ticket = h.schedule.acquire(source, || h.out.glyph(":pP")).await;
        if h.finished() {
            return;
        }
        let Some((index, claim)) = claim_primary(&h).await else {
            ticket.cancel();
            h.out.glyph(":pP");
            continue;
        };
        let stopped = uniform(&mut rng, t.pause_min, t.pause_max);
        h.schedule.decide(
            source,
            format!(
                "pause primary {} for={:.3}",
                worker_name(index),
                stopped.as_secs_f64()
            ),
            Fault::new("pause-primary", "primary").hold(stopped),
        );
        if !pause_for(&h, index, stopped, ticket, claim).await {
            return;
        }
    }
}

/// `grow` / `shrink` / `grow-and-shrink`: join and remove workers at random.
pub async fn grow_shrink(h: Arc<Harness>, grow: bool, shrink: bool) {
    let t = h.timings.clone();
    let mut rng = h.rng("grow-shrink");
    h.out
        .line(&format!("DBG: do_grow = {grow}, do_shrink = {shrink}"));
    sleep(secs(t.grow_start)).await;
    loop {
        if h.finished() {
            return;
        }
        if grow && rng.gen_range(0..10) < 5 && !join_one(&h).await {
            return;
        }
        if shrink && rng.gen_range(0..10) < 5 && !shrink_one(&h, &mut rng).await {
            return;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Joins the lowest worker index that is not a member; the joiner stays
/// claimed until it is ready. Returns false if the run ended.
async fn join_one(h: &Harness) -> bool {
    let ticket = h.schedule.acquire("join", || h.out.glyph(":g")).await;
    let members = h.members().await;
    let next = (1..super::spec::MAX_WORKERS).find(|i| !members.contains(i));
    let claim = match next {
        Some(i) => h.claim(&worker_name(i)).await.map(|c| (i, c)),
        None => None,
    };
    let Some((i, claim)) = claim.filter(|_| !h.finished()) else {
        ticket.cancel();
        return !h.finished();
    };
    let name = worker_name(i);
    h.schedule.decide(
        "grow-shrink",
        format!("join {name}"),
        Fault::new("join", &name),
    );
    join_index(h, i, ticket, claim).await
}

/// One join of worker `i` for a loop that holds its `ticket` and `claim`:
/// start it joining, then wait until it is ready. False if the run ended.
pub async fn join_index(
    h: &Harness,
    i: usize,
    ticket: super::schedule::Ticket,
    claim: super::harness::Claim<'_>,
) -> bool {
    let name = worker_name(i);
    if let Err(e) = faults::join_worker(h, i, false).await {
        env_error(h, e);
        return false;
    }
    ticket.end();
    let addr = h.cluster(move |c| c.external_addr(i)).await;
    let budget = secs(h.timings.grow_ready);
    let ready = await_live(h, None, budget, |d| async move {
        query::poll_ready(addr, d).await.map(|_| ())
    })
    .await;
    drop(claim);
    match ready {
        Ok(()) => true,
        Err(e) => {
            h.out.line(&format!(
                "GROW LOOP join {name}: pause the world: {}",
                e.describe(budget)
            ));
            e.conclude(
                h,
                "join",
                &format!("{name} did not become ready after joining"),
                budget,
            );
            false
        }
    }
}

/// Shrinks away one random member other than the initializer (about half
/// the time there is one). Returns false if the run ended.
async fn shrink_one(h: &Harness, rng: &mut ChaCha8Rng) -> bool {
    let members = h.members().await;
    let Some(i) = members
        .into_iter()
        .filter(|&i| i != 0)
        .find(|_| rng.gen_range(0..10) < 5)
    else {
        return true;
    };
    let ticket = h.schedule.acquire("shrink", || h.out.glyph(":h")).await;
    let name = worker_name(i);
    // The request goes to the initializer: both stay claimed until the
    // shrink is done (not while a crash loop has it down).
    let claims = match h.claim(&name).await {
        Some(a) => h.claim(&worker_name(0)).await.map(|b| (a, b)),
        None => None,
    };
    let still_member = h.is_member(i).await;
    let Some(claims) = claims.filter(|_| still_member && !h.finished()) else {
        ticket.cancel();
        return !h.finished();
    };
    h.schedule.decide(
        "grow-shrink",
        format!("shrink {name}"),
        Fault::new("shrink", &name),
    );
    shrink_index(h, i, ticket, claims).await
}

/// One shrink of worker `i` for a loop that holds its `ticket` and the
/// claims of `i` and of the initializer. False if the run ended.
pub async fn shrink_index<T>(
    h: &Harness,
    i: usize,
    ticket: super::schedule::Ticket,
    claims: T,
) -> bool {
    let name = worker_name(i);
    let r = faults::shrink_worker(h, i, Some(ticket.id())).await;
    drop(claims);
    ticket.end();
    match r {
        Ok(()) => true,
        Err(e) => {
            let budget = secs(h.timings.grow_ready);
            h.out.line(&format!(
                "GROW LOOP shrink {name}: pause the world: {}",
                e.describe(budget)
            ));
            e.conclude(h, "shrink", &format!("shrinking {name} failed"), budget);
            false
        }
    }
}

/// Ack progress: every feeder not done must see a new ack within
/// `ack_progress_period` seconds of quiet time (time in which no fault of
/// crasher's was in progress): a stall while crasher keeps the cluster
/// down is not the cluster's fault.
pub async fn ack_progress(h: Arc<Harness>, keys: Vec<String>) {
    let t = h.timings.clone();
    sleep(secs(t.ack_progress_start)).await;
    let period = secs(t.ack_progress_period);
    let mut last: BTreeMap<String, (Option<u64>, QuietClock)> = BTreeMap::new();
    for k in &keys {
        last.insert(k.clone(), (acked(&h, k), QuietClock::start(&h)));
    }
    let mut glyph_at = Instant::now();
    loop {
        sleep(Duration::from_secs(1)).await;
        if h.finished() {
            return;
        }
        for k in &keys {
            let done = h.done_feeders().await.contains(k);
            let now = acked(&h, k);
            let Some((prev, clock)) = last.get_mut(k) else {
                continue;
            };
            if done || now != *prev {
                *prev = now;
                clock.reset(&h);
                continue;
            }
            let quiet = clock.tick(&h);
            if quiet >= period {
                let log = h.run_dir().feeder_log(k);
                let msg = format!(
                    "run_ack_progress_loop: successful ack not seen in {}",
                    log.display()
                );
                h.out.line(&msg);
                return h.liveness_violation(
                    "ack-progress",
                    format!(
                        "{msg} (no new ack for key {k} in {:.0}s of quiet time; acked offset stays {:?})",
                        quiet.as_secs_f64(),
                        now
                    ),
                );
            }
        }
        if glyph_at.elapsed() >= period {
            glyph_at = Instant::now();
            h.out.glyph("{AP}");
        }
    }
}

fn acked(h: &Harness, key: &str) -> Option<u64> {
    let path = h.run_dir().feeder_status(key);
    feeders::status::FeedStatus::read(&path)
        .ok()
        .and_then(|s| s.acked)
}

/// The last NOTIFY answers of one feeder, read from its log incrementally.
#[derive(Debug, Default)]
struct NotifyWindow {
    offset: u64,
    /// Whether each recent `added Stream` line said `is_open=True`.
    recent: std::collections::VecDeque<bool>,
}

impl NotifyWindow {
    const SIZE: usize = 20;

    /// Reads the log's new whole lines.
    fn advance(&mut self, log: &Path) {
        let Ok(mut f) = std::fs::File::open(log) else {
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Rotated or truncated: start over.
            self.offset = 0;
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += end as u64;
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            if line.contains("MultiSourceConnector added Stream") {
                self.recent.push_back(line.contains("is_open=True"));
                if self.recent.len() > Self::SIZE {
                    self.recent.pop_front();
                }
            }
        }
    }

    fn all_rejected(&self) -> bool {
        self.recent.len() == Self::SIZE && !self.recent.iter().any(|&open| open)
    }
}

/// Registry progress: a feeder whose last 20 NOTIFY answers were all
/// rejections cannot get its stream: a stream-registry bug. Logs are read
/// incrementally, off the runtime's threads.
pub async fn registry_progress(h: Arc<Harness>, keys: Vec<String>) {
    let t = h.timings.clone();
    sleep(secs(t.registry_progress_start)).await;
    let mut windows: BTreeMap<String, NotifyWindow> = BTreeMap::new();
    loop {
        if h.finished() {
            return;
        }
        for k in &keys {
            let log = h.run_dir().feeder_log(k);
            let mut w = windows.remove(k).unwrap_or_default();
            let (w, l) = tokio::task::spawn_blocking(move || {
                w.advance(&log);
                (w, log)
            })
            .await
            .unwrap_or_default();
            let rejected = w.all_rejected();
            windows.insert(k.clone(), w);
            if rejected {
                let msg = format!(
                    "run_registry_progress_loop: \"MultiSourceConnector added Stream.*is_open=True\" not seen in {}",
                    l.display()
                );
                h.out.line(&msg);
                return h.violation(
                    "registry-progress",
                    format!(
                        "{msg}: the last {} NOTIFYs of key {k} were all rejected",
                        NotifyWindow::SIZE
                    ),
                );
            }
        }
        h.out.glyph("{RP}");
        sleep(secs(t.registry_progress_period)).await;
    }
}

/// Keeps the 5 newest rotated logs per worker.
pub async fn clean_old_gzip_files(h: Arc<Harness>) {
    let logs = h.run_dir().logs_dir();
    loop {
        sleep(secs(h.timings.clean_gz_period)).await;
        if h.finished() {
            return;
        }
        let l = logs.clone();
        let _ = tokio::task::spawn_blocking(move || cluster::clean_old_gz(&l, 5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(success: bool, ran_ms: u64) -> cluster::Death {
        cluster::Death {
            who: "feeder.A".into(),
            status: if success { "exit 0" } else { "exit 2" }.into(),
            success,
            ran_for: Duration::from_millis(ran_ms),
        }
    }

    #[test]
    fn only_fast_failures_in_a_row_say_a_feeder_cannot_run() {
        let mut f = FeederFails::default();
        for _ in 1..FEEDER_FAILS_IN_A_ROW {
            assert_eq!(f.note(&death(false, 10)), None);
        }
        // A start that ran longer resets the count; so does a success.
        assert_eq!(f.note(&death(false, 5_000)), None);
        for _ in 1..FEEDER_FAILS_IN_A_ROW {
            assert_eq!(f.note(&death(false, 10)), None);
        }
        assert_eq!(f.note(&death(true, 10)), None);
        for _ in 1..FEEDER_FAILS_IN_A_ROW {
            assert_eq!(f.note(&death(false, 10)), None);
        }
        let why = f.note(&death(false, 10)).expect("the tenth fast failure");
        assert!(
            why.contains("10 times in a row") && why.contains("exit 2"),
            "{why}"
        );
    }
}
