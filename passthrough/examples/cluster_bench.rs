//! End-to-end benchmark of the passthrough cluster: committed throughput
//! and recovery time after SIGKILL of a worker, with the whole output
//! verified at the end (a fast but wrong run fails).
//!
//! ```text
//! cargo build --release -p crasher -p passthrough
//! cargo run --release -p passthrough --example cluster_bench -- [OPTIONS]
//! ```
//!
//! It starts a real `crasher sink`, N `passthrough` worker processes (ports
//! from port 0 and ready files, as the tests do; binaries found beside this
//! one) and one unthrottled `crasher feed` per key (input files from
//! `crasher create-input-files`), all sending to the initializer as the
//! built-in soak profile does (or spread over the workers with `--spread`).
//!
//! 1. **Throughput**: committed lines per second at the sink over a
//!    fault-free window after a warm-up, between two checkpoint
//!    completions, from the sink's txnlogs (`2-ok` times and offsets; the
//!    committed lines are counted in the data files).
//! 2. **Recovery**, `--kills` times: SIGKILL a non-initializer worker,
//!    restart it at once, and time, from the kill and from the restart,
//!    (a) every worker reporting `processing_messages: true` with N members
//!    through the external cluster-status query (polled every ~2 ms), and
//!    (b) committed output growing again: the first `2-ok` after that
//!    which moves some worker's committed offset.
//! 3. **Check**: waits for every feeder to be done and runs
//!    `crasher verify KEY INPUT --complete` on every key; exit 1 if any
//!    key's committed output is not exactly its input.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use common::Cluster;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Committed throughput and SIGKILL recovery of a passthrough cluster")]
struct Opts {
    /// Workers (the initializer included).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Keys: one input file and one unthrottled feeder each.
    #[arg(long, default_value = "A,B,C,D,E,F,G,H,I,J")]
    keys: String,
    /// Lines per input file (about 49.5 bytes each).
    #[arg(long, default_value_t = 12_000_000)]
    lines_per_key: u64,
    /// Workers' `--checkpoint-interval`.
    #[arg(long, default_value = "1s")]
    checkpoint_interval: String,
    /// Seconds after the feeders start before the throughput window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds of the fault-free throughput window.
    #[arg(long, default_value_t = 5.0)]
    measure: f64,
    /// SIGKILL + restart rounds.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Seconds of normal processing between recovery rounds (plus a random
    /// part of one checkpoint interval, so kills land anywhere in the
    /// checkpoint cycle).
    #[arg(long, default_value_t = 0.5)]
    settle: f64,
    /// Feeder of key i sends to worker i mod N (default: all to the
    /// initializer, as the soak profile does).
    #[arg(long)]
    spread: bool,
    /// Keep the run's files (inputs, sink output, logs) and print where.
    #[arg(long)]
    keep: bool,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32, tck: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: f64 = f.get(11)?.parse().ok()?;
    let s: f64 = f.get(12)?.parse().ok()?;
    Some((u + s) / tck)
}

/// CPU seconds per role (worker name, `sink`, `feeders`).
fn cpu_by_role(c: &Cluster, tck: f64) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (n, w) in &c.workers {
        m.insert(n.clone(), cpu_secs(w.proc.pid(), tck).unwrap_or(0.0));
    }
    if let Some(s) = &c.sink {
        m.insert("sink".into(), cpu_secs(s.pid(), tck).unwrap_or(0.0));
    }
    let feeders: f64 = c
        .feeders
        .values()
        .map(|f| cpu_secs(f.pid(), tck).unwrap_or(0.0))
        .sum();
    m.insert("feeders (all)".into(), feeders);
    m
}

/// One `2-ok` record.
#[derive(Debug, Clone)]
struct Commit {
    time: f64,
    worker: String,
    checkpoint: Option<(u64, u64)>,
    offset: u64,
}

/// `(epoch, checkpoint)` of `Passthrough-w-<worker>-id-<epoch>:c_id=<c>`.
fn parse_txn(txn: &str) -> Option<(u64, u64)> {
    let (head, c) = txn.rsplit_once(":c_id=")?;
    let (_, e) = head.rsplit_once("-id-")?;
    Some((e.parse().ok()?, c.parse().ok()?))
}

/// Every `2-ok` of every worker's txnlog, in time order.
fn commits(sink_dir: &Path, workers: &[String]) -> Vec<Commit> {
    let mut v = Vec::new();
    for w in workers {
        let path = sink_dir.join(format!("output.{w}.txnlog"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let Ok(serde_json::Value::Array(a)) = serde_json::from_str(line) else {
                continue;
            };
            if a.get(1).and_then(|t| t.as_str()) != Some("2-ok") {
                continue;
            }
            let (Some(time), Some(txn), Some(offset)) = (
                a.first().and_then(|t| t.as_f64()),
                a.get(2).and_then(|t| t.as_str()),
                a.get(3).and_then(|t| t.as_u64()),
            ) else {
                continue;
            };
            v.push(Commit {
                time,
                worker: w.clone(),
                checkpoint: parse_txn(txn),
                offset,
            });
        }
    }
    v.sort_by(|a, b| a.time.total_cmp(&b.time));
    v
}

/// Newlines in `path` before each of `offsets` (sorted ascending).
fn lines_before(path: &Path, offsets: &[u64]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let Ok(mut f) = std::fs::File::open(path) else {
        return out;
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut lines) = (0u64, 0u64);
    let mut it = offsets.iter().copied().peekable();
    while let Some(&next) = it.peek() {
        if next <= pos {
            out.insert(next, lines);
            it.next();
            continue;
        }
        let want = ((next - pos) as usize).min(buf.len());
        let n = match f.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        pos += n as u64;
    }
    out
}

/// Committed lines of the whole cluster at each checkpoint completion
/// (the time of its last `2-ok`): `(time, lines)`.
fn committed_curve(sink_dir: &Path, commits: &[Commit]) -> Vec<(f64, u64)> {
    let mut by_worker: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for c in commits {
        by_worker.entry(&c.worker).or_default().push(c.offset);
    }
    let mut lines: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for (w, offs) in &mut by_worker {
        offs.sort_unstable();
        offs.dedup();
        lines.insert(w, lines_before(&sink_dir.join(format!("output.{w}")), offs));
    }
    let mut done: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    for c in commits {
        if let Some(k) = c.checkpoint {
            let t = done.entry(k).or_insert(c.time);
            *t = t.max(c.time);
        }
    }
    let mut ends: Vec<f64> = done.into_values().collect();
    ends.sort_by(f64::total_cmp);
    ends.iter()
        .map(|&t| {
            let mut at: BTreeMap<&str, u64> = BTreeMap::new();
            for c in commits.iter().take_while(|c| c.time <= t) {
                at.insert(&c.worker, c.offset);
            }
            let total = at
                .iter()
                .map(|(w, off)| lines[w].get(off).copied().unwrap_or(0))
                .sum();
            (t, total)
        })
        .collect()
}

/// One recovery round.
#[derive(Debug)]
struct Round {
    victim: String,
    kill: f64,
    restart: f64,
    processing: f64,
    committing: Option<f64>,
}

fn all_processing(c: &mut Cluster, n: usize) -> bool {
    let names = c.names();
    names.iter().all(|w| {
        c.ready(w)
            && c.status(w)
                .is_some_and(|s| s.processing_messages && s.worker_count == n as u64)
    })
}

/// SIGKILLs `victim`, restarts it, and waits until every worker processes
/// and some committed offset grows again.
fn recover(c: &mut Cluster, victim: &str, n: usize) -> Result<Round, String> {
    let kill = now();
    c.kill(victim);
    let restart = now();
    c.relaunch_worker(victim);
    let deadline = Instant::now() + Duration::from_secs(60);
    let processing = loop {
        if all_processing(c, n) {
            break now();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{victim}: the cluster did not process again within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let sink = c.path("sink");
    let names = c.names();
    let before: BTreeMap<String, u64> = {
        let mut m = BTreeMap::new();
        for x in commits(&sink, &names)
            .into_iter()
            .filter(|x| x.time <= processing)
        {
            m.insert(x.worker.clone(), x.offset);
        }
        m
    };
    let grown =
        |x: &Commit| x.time > processing && before.get(&x.worker).map_or(true, |b| x.offset > *b);
    let mut committing = None;
    while Instant::now() < deadline {
        if let Some(x) = commits(&sink, &names).iter().find(|x| grown(x)) {
            committing = Some(x.time);
            break;
        }
        if c.keys.iter().all(|k| c.done(*k)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Round {
        victim: victim.into(),
        kill,
        restart,
        processing,
        committing,
    })
}

/// Sum of the feeders' acked positions (progress).
fn acked_sum(c: &Cluster) -> u64 {
    c.keys.iter().filter_map(|k| c.acked(*k)).sum()
}

fn ms(s: f64) -> String {
    format!("{:.0}", s * 1000.0)
}

/// `min / median / max` in ms.
fn spread(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(f64::total_cmp);
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!("{} / {} / {}", ms(v[0]), ms(med), ms(v[v.len() - 1]))
}

fn main() -> ExitCode {
    let o = Opts::parse();
    if o.workers < 2 && o.kills > 0 {
        eprintln!(
            "cluster_bench: --kills needs at least 2 workers (the initializer is not killed)"
        );
        return ExitCode::from(2);
    }
    if o.lines_per_key < 2 {
        eprintln!("cluster_bench: --lines-per-key must be at least 2");
        return ExitCode::from(2);
    }
    let interval = match passthrough::cli::parse_interval(&o.checkpoint_interval) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => {
            eprintln!("cluster_bench: --checkpoint-interval {e}");
            return ExitCode::from(2);
        }
    };
    let tck = clk_tck();
    println!(
        "machine: {} x {} | load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        loadavg()
    );
    let t = Instant::now();
    let mut c = Cluster::new(&o.keys, 16 * (o.lines_per_key - 1));
    c.interval = o.checkpoint_interval.clone();
    c.log_filter = "info".into();
    let input_bytes: u64 = c
        .keys
        .iter()
        .map(|k| std::fs::metadata(c.input(*k)).map_or(0, |m| m.len()))
        .sum();
    let input_lines = o.lines_per_key * c.keys.len() as u64;
    println!(
        "input: {} keys x {} lines = {} lines, {:.1} MB (made in {:.1} s) in {}",
        c.keys.len(),
        o.lines_per_key,
        input_lines,
        input_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        c.root.display()
    );
    let t = Instant::now();
    c.start(o.workers);
    println!(
        "cluster: sink + {} workers processing after {:.2} s; checkpoint interval {}; feeders to {}",
        o.workers,
        t.elapsed().as_secs_f64(),
        o.checkpoint_interval,
        if o.spread {
            "key i -> worker i mod N"
        } else {
            "the initializer"
        }
    );

    let feed_start = now();
    let names = c.names();
    for (i, k) in c.keys.clone().into_iter().enumerate() {
        if o.spread {
            let target = c.workers[&names[i % names.len()]].addrs.source.clone();
            c.feed_to(k, 0, &target);
        } else {
            c.feed(k, 0);
        }
    }
    let all_done = |c: &Cluster| c.keys.iter().all(|k| c.done(*k));
    let wait_secs = |c: &Cluster, secs: f64| {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end && !all_done(c) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_secs(&c, o.warmup);
    let cpu0 = cpu_by_role(&c, tck);
    let win_start = now();
    wait_secs(&c, o.measure);
    let win_end = now();
    let cpu1 = cpu_by_role(&c, tck);
    let load_mid = loadavg();

    let mut rounds = Vec::new();
    let mut failures = Vec::new();
    for i in 0..o.kills {
        if all_done(&c) {
            failures.push(format!(
                "the feeders finished after {} of {} recovery rounds: use more --lines-per-key",
                rounds.len(),
                o.kills
            ));
            break;
        }
        let victim = format!("worker{}", 1 + i % (o.workers - 1));
        match recover(&mut c, &victim, o.workers) {
            Ok(r) => rounds.push(r),
            Err(e) => {
                failures.push(e);
                break;
            }
        }
        wait_secs(&c, o.settle + rand::random::<f64>() * interval);
    }
    // The rest of the input; a cluster whose acks stop moving for a
    // minute has failed.
    let t = Instant::now();
    let mut last = (acked_sum(&c), Instant::now());
    while !all_done(&c) && last.1.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        let a = acked_sum(&c);
        if a != last.0 {
            last = (a, Instant::now());
        }
    }
    let left = t.elapsed().as_secs_f64();

    let sink = c.path("sink");
    let all = commits(&sink, &c.names());
    let curve = committed_curve(&sink, &all);
    let first_kill = rounds.first().map_or(f64::INFINITY, |r| r.kill);
    let in_window: Vec<&(f64, u64)> = curve
        .iter()
        .filter(|(t, _)| *t >= win_start && *t <= win_end.min(first_kill))
        .collect();
    println!();
    println!("== throughput (committed at the sink, no faults) ==");
    match (in_window.first(), in_window.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => {
            let rate = (b.1 - a.1) as f64 / (b.0 - a.0);
            println!(
                "{:.0} lines/s ({:.1} MB/s): {} lines committed in {:.2} s between checkpoint completions {:.2} s and {:.2} s after the feeders started ({} checkpoints)",
                rate,
                rate * input_bytes as f64 / input_lines as f64 / 1e6,
                b.1 - a.1,
                b.0 - a.0,
                a.0 - feed_start,
                b.0 - feed_start,
                in_window.len() - 1
            );
        }
        _ => {
            println!("not enough checkpoints in the window: the feeders finished too soon or nothing committed");
            failures.push("no throughput figure".into());
        }
    }
    if let Some(last) = curve.last() {
        println!(
            "whole run: {} lines committed in {:.2} s from the feeders' start (start-up, {} recoveries and the tail included): {:.0} lines/s",
            last.1,
            last.0 - feed_start,
            rounds.len(),
            last.1 as f64 / (last.0 - feed_start)
        );
    }
    let window = win_end - win_start;
    let cpu: Vec<String> = cpu1
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {:.0}%",
                100.0 * (v - cpu0.get(k).copied().unwrap_or(0.0)) / window
            )
        })
        .collect();
    println!(
        "CPU in the window (% of one core): {} | load average after it: {load_mid}",
        cpu.join(", ")
    );

    println!();
    println!("== recovery (SIGKILL of a worker, restarted at once) ==");
    println!("round | victim  | kill->processing | restart->processing | kill->committing | restart->committing (ms)");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{:>5} | {:<7} | {:>16} | {:>19} | {:>16} | {:>19}",
            i + 1,
            r.victim,
            ms(r.processing - r.kill),
            ms(r.processing - r.restart),
            r.committing.map_or("-".into(), |t| ms(t - r.kill)),
            r.committing.map_or("-".into(), |t| ms(t - r.restart)),
        );
    }
    let col = |f: &dyn Fn(&Round) -> Option<f64>| spread(rounds.iter().filter_map(f).collect());
    println!(
        "min / median / max (ms): kill->processing {} | restart->processing {} | kill->committing {} | restart->committing {}",
        col(&|r| Some(r.processing - r.kill)),
        col(&|r| Some(r.processing - r.restart)),
        col(&|r| r.committing.map(|t| t - r.kill)),
        col(&|r| r.committing.map(|t| t - r.restart)),
    );
    if rounds.iter().any(|r| r.committing.is_none()) {
        failures.push("a recovery round saw no commit afterwards".into());
    }

    println!();
    println!("== check ==");
    if !all_done(&c) {
        failures.push("the feeders' acks stopped moving for 60 s before they were done".into());
    } else {
        println!("feeders done {left:.1} s after the last recovery round");
        let t = Instant::now();
        let bad = c.failing_keys();
        println!(
            "crasher verify --complete: {} of {} keys exact ({:.1} s); load average at the end: {}",
            c.keys.len() - bad.len(),
            c.keys.len(),
            t.elapsed().as_secs_f64(),
            loadavg()
        );
        for (k, text) in bad {
            failures.push(format!("key {k}: {}", text.trim()));
        }
    }
    c.keep = o.keep;
    if failures.is_empty() {
        println!("OK");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        c.keep = true;
        ExitCode::from(1)
    }
}
