//! The loops of a soak, each a task: crash the sink, workers or feeders,
//! pause processes, grow and shrink, and check progress and sanity.
//!
//! Glyphs and messages are the original's (see docs/architecture.md). Every
//! random choice comes from the loop's own seeded source.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::{sleep, Instant};

use super::cluster::{self, ClusterError, Start};
use super::harness::{Harness, Outcome};
use super::profile::ReadinessKind;
use super::query;
use super::spec::{worker_index, worker_name};
use super::timings::secs;

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> Duration {
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
    let (addr, kind) = {
        let c = h.cluster();
        (c.external_addr(i), c.profile().readiness.kind)
    };
    query::poll_worker(kind, addr, deadline).await
}

/// Polls every member until it processes messages; the budget is shared.
pub async fn poll_all_ready(h: &Harness, budget: Duration) -> Result<String, String> {
    let deadline = Instant::now() + budget;
    if h.cluster().profile().readiness.kind == ReadinessKind::Healthz {
        let members: Vec<usize> = h.cluster().members().iter().copied().collect();
        let mut names = Vec::new();
        for i in members {
            poll_one(h, i, deadline)
                .await
                .map_err(|e| format!("worker {}: {e}", worker_name(i)))?;
            names.push(worker_name(i));
        }
        return Ok(format!("ready: {}", names.join(",")));
    }
    let init = h.cluster().external_addr(0);
    let status = query::poll_ready(init, deadline)
        .await
        .map_err(|e| format!("initializer query of worker names failed: {e}"))?;
    let mut names = Vec::new();
    for name in &status.worker_names {
        let i = worker_index(name).ok_or_else(|| format!("unknown worker name {name:?}"))?;
        let addr = h.cluster().external_addr(i);
        query::poll_ready(addr, deadline)
            .await
            .map_err(|e| format!("worker {name}: {e}"))?;
        names.push(name.clone());
    }
    Ok(format!("ready: {}", names.join(",")))
}

/// Watches for processes that exit: restarts feeders (as the original's
/// `while [ 1 ]` did), and reports a worker or sink that died by itself.
pub async fn monitor(h: Arc<Harness>) {
    loop {
        sleep(Duration::from_millis(50)).await;
        if h.finished() {
            return;
        }
        let deaths = h.cluster().reap(|who| h.is_claimed(who));
        for d in deaths {
            if d.who.starts_with("feeder.") {
                continue;
            }
            let log = if d.who == "sink" {
                h.cluster().run_dir().sink_log()
            } else {
                h.cluster().run_dir().worker_log(&d.who)
            };
            let tail = tail_lines(&log, 5);
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
        let idle: Vec<String> = h
            .cluster()
            .idle_feeders()
            .into_iter()
            .filter(|k| !h.is_claimed(&format!("feeder.{k}")))
            .collect();
        for k in idle {
            sleep(Duration::from_millis(100)).await;
            if let Err(e) = h.cluster().start_feeder(&k) {
                return env_error(&h, e);
            }
        }
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
        if h.gate_open() {
            let claim = h.claim("sink");
            h.out.event("crash", "cS");
            if let Err(e) = h.cluster().crash_sink() {
                drop(claim);
                h.out.line(&format!("Crash of sink failed: {e}"));
                return h.violation(
                    "crash-sink",
                    format!("sink was not running when crashed: {e}"),
                );
            }
            h.counters.sink_crashes.fetch_add(1, Ordering::Relaxed);
            sleep(uniform(&mut rng, 0.0, t.crash_sink_down)).await;
            h.out.event("restart", "rS");
            if let Err(e) = h.cluster().start_sink() {
                return env_error(&h, e);
            }
            drop(claim);
        } else {
            h.out.glyph(":s");
        }
        sleep(uniform(
            &mut rng,
            t.crash_sink_gap_min,
            t.crash_sink_gap_max,
        ))
        .await;
    }
}

/// `crashN` / `crashN.slow`: SIGKILL worker N, restart it, check it recovers.
pub async fn crash_worker(h: Arc<Harness>, index: usize, slow: bool) {
    let t = h.timings.clone();
    let name = worker_name(index);
    let flag = index.to_string();
    let mut rng = h.rng(&format!("crash-worker-{index}"));
    sleep(secs(t.crash_worker_start)).await;
    let mut counter = 0u64;
    loop {
        if h.finished() {
            return;
        }
        counter += 1;
        if h.gate_open() {
            if slow {
                if (counter as f64) < t.crash_worker_slow_iterations {
                    sleep(Duration::from_secs(1) + uniform(&mut rng, 0.0, 0.2)).await;
                    continue;
                }
                counter = 0;
            }
            sleep(uniform(&mut rng, 0.0, t.crash_worker_before)).await;
            if h.finished() {
                return;
            }
            let member = h.cluster().members().contains(&index);
            let claim = if member { h.claim(&name) } else { None };
            let Some(claim) = claim else {
                h.out.glyph(&format!(":c{index}"));
                sleep(Duration::from_secs(1)).await;
                continue;
            };
            h.out.event("crash", &format!("c{index}"));
            let crashed = h.cluster().crash_worker(index);
            if let Err(e) = crashed {
                h.out.line(&format!("Crash of {index} failed: {e}"));
                let log = h.cluster().run_dir().worker_log(&name);
                return h.violation(
                    "crash-loop",
                    format!(
                        "Crash of {index} failed: {e}; last log lines:\n{}",
                        tail_lines(&log, 5)
                    ),
                );
            }
            h.counters.worker_crashes.fetch_add(1, Ordering::Relaxed);
            if let Some(aside) = h.cluster().rotate_worker_log(index) {
                tokio::task::spawn_blocking(move || cluster::gzip_file(&aside));
            }
            sleep(uniform(&mut rng, 0.0, t.crash_worker_down)).await;
            if h.finished() {
                return;
            }
            if let Err(e) = h.cluster().start_worker(index, Start::Restart) {
                return env_error(&h, e);
            }
            h.out.event("restart", &format!("r{index}"));
            drop(claim);
            sleep(secs(t.crash_worker_after)).await;
        } else {
            h.out.glyph(&format!(":c{index}"));
            sleep(Duration::from_secs(1)).await;
        }
        if !h.cluster().members().contains(&index) {
            continue;
        }
        let addr = h.cluster().external_addr(index);
        if let Err(reason) =
            query::poll_ready(addr, Instant::now() + secs(t.crash_worker_ready)).await
        {
            if h.finished() {
                return;
            }
            h.out
                .line(&format!("CRASH LOOP A: {index}: reason {reason}"));
            h.set_gate(&flag, false);
            match poll_all_ready(&h, secs(t.crash_worker_all_ready)).await {
                Ok(msg) => {
                    h.set_gate(&flag, true);
                    h.out.line(&format!("CRASH LOOP {index}: resume: {msg}"));
                }
                Err(reason) => {
                    h.out.line(&format!(
                        "CRASH LOOP B: {index}: pause the world: reason {reason}"
                    ));
                    return h.violation(
                        "crash-loop",
                        format!(
                            "{name} did not recover within {}s after a restart: {reason}",
                            t.crash_worker_ready + t.crash_worker_all_ready
                        ),
                    );
                }
            }
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
        let live: Vec<String> = {
            let c = h.cluster();
            keys.iter()
                .filter(|k| !c.done_feeders().contains(*k))
                .cloned()
                .collect()
        };
        if live.is_empty() {
            return;
        }
        if h.gate_open() {
            let k = live[rng.gen_range(0..live.len())].clone();
            if let Some(claim) = h.claim(&format!("feeder.{k}")) {
                h.out.event("crash", &format!("cf{k}"));
                if h.cluster().crash_feeder(&k).is_ok() {
                    h.counters.feeder_crashes.fetch_add(1, Ordering::Relaxed);
                    sleep(uniform(&mut rng, 0.0, t.crash_source_down)).await;
                    let _ = h.cluster().reap(|w| w != format!("feeder.{k}"));
                    if let Err(e) = h.cluster().start_feeder(&k) {
                        return env_error(&h, e);
                    }
                    h.out.event("restart", &format!("rf{k}"));
                }
                drop(claim);
            }
        } else {
            h.out.glyph(":f");
        }
        sleep(uniform(
            &mut rng,
            t.crash_source_gap_min,
            t.crash_source_gap_max,
        ))
        .await;
    }
}

/// `pause`: SIGSTOP a random worker for a while, then SIGCONT it.
pub async fn pause(h: Arc<Harness>) {
    let t = h.timings.clone();
    let mut rng = h.rng("pause");
    sleep(secs(t.crash_worker_start)).await;
    loop {
        sleep(uniform(&mut rng, t.pause_gap_min, t.pause_gap_max)).await;
        if h.finished() {
            return;
        }
        let members: Vec<usize> = h.cluster().members().iter().copied().collect();
        if members.is_empty() || !h.gate_open() {
            continue;
        }
        let i = members[rng.gen_range(0..members.len())];
        let Some(claim) = h.claim(&worker_name(i)) else {
            continue;
        };
        h.out.event("pause", &format!("p{i}"));
        h.cluster().signal_worker(i, Signal::SIGSTOP);
        h.counters.pauses.fetch_add(1, Ordering::Relaxed);
        sleep(uniform(&mut rng, t.pause_min, t.pause_max)).await;
        if h.finished() {
            return;
        }
        h.cluster().signal_worker(i, Signal::SIGCONT);
        h.out.event("resume", &format!("u{i}"));
        drop(claim);
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
        if grow && rng.gen_range(0..10) < 5 {
            let next = {
                let c = h.cluster();
                (1..super::spec::MAX_WORKERS).find(|i| !c.members().contains(i))
            };
            if let Some(i) = next {
                let name = worker_name(i);
                if let Some(claim) = h.claim(&name) {
                    h.out.event("join", &format!("Join {name}."));
                    if let Err(e) = h.cluster().start_worker(i, Start::Join) {
                        return env_error(&h, e);
                    }
                    h.counters.joins.fetch_add(1, Ordering::Relaxed);
                    drop(claim);
                    let addr = h.cluster().external_addr(i);
                    if let Err(out) =
                        query::poll_ready(addr, Instant::now() + secs(t.grow_ready)).await
                    {
                        h.out
                            .line(&format!("GROW LOOP join {name}: pause the world: {out}"));
                        return h.violation(
                            "grow",
                            format!("{name} did not become ready after joining: {out}"),
                        );
                    }
                }
            }
        }
        if shrink && rng.gen_range(0..10) < 5 {
            let members: Vec<usize> = h
                .cluster()
                .members()
                .iter()
                .copied()
                .filter(|&i| i != 0)
                .collect();
            for i in members {
                if rng.gen_range(0..10) >= 5 {
                    continue;
                }
                let name = worker_name(i);
                let Some(claim) = h.claim(&name) else {
                    continue;
                };
                // The shrink request goes to the initializer: not while a
                // crash loop has it down (try again next round), and it
                // stays up until the shrink is done.
                let Some(init_claim) = h.claim(&worker_name(0)) else {
                    break;
                };
                h.out.event("shrink", &format!("Shrink {name}"));
                match shrink_worker(&h, i).await {
                    Ok(()) => h.counters.shrinks.fetch_add(1, Ordering::Relaxed),
                    Err(out) => {
                        h.out
                            .line(&format!("GROW LOOP shrink {name}: pause the world: {out}"));
                        return h.violation("shrink", format!("shrinking {name} failed: {out}"));
                    }
                };
                drop(init_claim);
                drop(claim);
                break;
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Shrinks worker `i` through the initializer and waits for it to leave.
/// The caller holds the worker's claim.
pub async fn shrink_worker(h: &Harness, i: usize) -> Result<(), String> {
    let name = worker_name(i);
    let init = h.cluster().external_addr(0);
    let limit = secs(h.timings.grow_ready);
    // A just-restarted initializer is recovering: ask it once it is ready.
    query::poll_ready(init, Instant::now() + limit)
        .await
        .map_err(|e| format!("the initializer is not ready: {e}"))?;
    query::shrink_and_wait(init, &name, limit, || h.cluster().worker_running(i)).await?;
    h.cluster().forget_worker(i);
    query::poll_ready(init, Instant::now() + limit)
        .await
        .map(|_| ())
}

/// Ack progress: every feeder not done must see a new ack in each window.
pub async fn ack_progress(h: Arc<Harness>, keys: Vec<String>) {
    let t = h.timings.clone();
    sleep(secs(t.ack_progress_start)).await;
    let mut last: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for k in &keys {
        last.insert(k.clone(), acked(&h, k));
    }
    loop {
        sleep(secs(t.ack_progress_period)).await;
        if h.finished() {
            return;
        }
        for k in &keys {
            let done = h.cluster().done_feeders().contains(k);
            let now = acked(&h, k);
            if !done && now == last[k] {
                let log = h.cluster().run_dir().feeder_log(k);
                let msg = format!(
                    "run_ack_progress_loop: successful ack not seen in {}",
                    log.display()
                );
                h.out.line(&msg);
                return h.violation(
                    "ack-progress",
                    format!(
                        "{msg} (no new ack for key {k} in {}s; acked offset stays {:?})",
                        t.ack_progress_period, now
                    ),
                );
            }
            last.insert(k.clone(), now);
        }
        h.out.glyph("{AP}");
    }
}

fn acked(h: &Harness, key: &str) -> Option<u64> {
    let path = h.cluster().run_dir().feeder_status(key);
    feeders::status::FeedStatus::read(&path)
        .ok()
        .and_then(|s| s.acked)
}

/// Registry progress: a feeder whose last 20 NOTIFY answers were all
/// rejections cannot get its stream: a stream-registry bug.
pub async fn registry_progress(h: Arc<Harness>, keys: Vec<String>) {
    const WINDOW: usize = 20;
    let t = h.timings.clone();
    sleep(secs(t.registry_progress_start)).await;
    loop {
        if h.finished() {
            return;
        }
        for k in &keys {
            let log = h.cluster().run_dir().feeder_log(k);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let added: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("MultiSourceConnector added Stream"))
                .collect();
            let recent = &added[added.len().saturating_sub(WINDOW)..];
            if recent.len() == WINDOW && !recent.iter().any(|l| l.contains("is_open=True")) {
                let msg = format!(
                    "run_registry_progress_loop: \"MultiSourceConnector added Stream.*is_open=True\" not seen in {}",
                    log.display()
                );
                h.out.line(&msg);
                return h.violation(
                    "registry-progress",
                    format!("{msg}: the last {WINDOW} NOTIFYs of key {k} were all rejected"),
                );
            }
        }
        h.out.glyph("{RP}");
        sleep(secs(t.registry_progress_period)).await;
    }
}

/// Keeps the 5 newest rotated logs per worker.
pub async fn clean_old_gzip_files(h: Arc<Harness>) {
    let logs = h.cluster().run_dir().logs_dir();
    loop {
        sleep(secs(h.timings.clean_gz_period)).await;
        if h.finished() {
            return;
        }
        let l = logs.clone();
        let _ = tokio::task::spawn_blocking(move || cluster::clean_old_gz(&l, 5)).await;
    }
}
