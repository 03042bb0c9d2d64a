//! The soak: `crasher NUM [options...]`.
//!
//! Starts a sink, a cluster and one feeder per key in ordered stages, runs
//! the fault and check loops side by side, and stops at the first outcome:
//! every key committed and acked (exit 0), the duration reached (exit 0), a
//! violation (the world is paused, or torn down with `--on-failure kill`;
//! exit 1), an environment error (exit 2), or nothing concluded (exit 3).

pub mod cluster;
pub mod disk;
pub mod diskfaults;
pub mod diskfull;
pub mod faults;
pub mod glyphs;
pub mod harness;
pub mod liveness;
pub mod loops;
pub mod netfaults;
pub mod network;
pub mod ports;
pub mod profile;
pub mod query;
pub mod record;
pub mod rundir;
pub mod sanity;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod timings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::exit;
use cluster::{Cluster, Settings, Start};
use glyphs::Glyphs;
use harness::{Harness, OnFailure, Outcome};
use ports::PortBlock;
use profile::{Mode, Profile};
use rundir::RunDir;
use schedule::{Schedule, ScheduleConfig, ScheduleMode};
use spec::SoakSpec;
use timings::{secs, Timings};

/// Options of a soak, besides the positional words.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// NUM (workers at start, 1-10) then options: crash-sink, crashN,
    /// crashN.slow, crash-source, pause, grow, shrink, grow-and-shrink,
    /// no-ack-progress, no-registry-progress, no-sanity,
    /// no-clean-old-gzip-files, run_customX.
    #[arg(value_name = "NUM [OPTION]...")]
    pub words: Vec<String>,
    /// Environment profile: a TOML file, a name in env/, or a built-in
    /// (passthrough, tcp).
    #[arg(
        long = "env",
        env = "CRASHER_ENV",
        default_value = "passthrough",
        value_name = "PROFILE"
    )]
    pub profile: String,
    /// Routing keys, one input file and feeder each.
    #[arg(
        long,
        env = "CRASHER_KEYS",
        default_value = "A,B,C,D,E,F,G,H,I,J",
        value_delimiter = ','
    )]
    pub keys: Vec<String>,
    /// Source bytes per key (the input file is about 3.1 times larger).
    #[arg(long, env = "CRASHER_INPUT_BYTES", default_value_t = 4_000_000)]
    pub input_bytes: u64,
    /// Feeder rate in bytes per second, per feeder (0 = unthrottled).
    #[arg(long, env = "CRASHER_RATE", default_value_t = 66_000)]
    pub rate: u64,
    /// Stop after this long with a verdict (e.g. 30s, 10m, 2h); default: run
    /// until every key is done or a check fails.
    #[arg(long, env = "CRASHER_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seed of every random choice (fault schedule and input data).
    #[arg(long, env = "CRASHER_SEED")]
    pub seed: Option<u64>,
    /// At a violation: pause every process (for a debugger) or kill them all.
    #[arg(long, env = "CRASHER_ON_FAILURE", value_enum, default_value = "pause")]
    pub on_failure: OnFailure,
    /// This run's directory (default: RUNS/<run-id>).
    #[arg(long, env = "CRASHER_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Clear a --run-dir that holds an earlier run before using it
    /// (default: refuse it; a directory that is not a run's is never cleared).
    #[arg(long)]
    pub force: bool,
    /// Where runs and cached input files live.
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
    /// Bug to switch on in the reference workers (passthrough --inject).
    #[arg(long, env = "CRASHER_INJECT")]
    pub inject: Option<String>,
    /// Worker state directories: plain, or lossy (a lossyfs mount per node,
    /// needed by power-loss and power-loss-all; see docs/disk.md).
    /// Default: the profile's [disk] mode.
    #[arg(long, env = "CRASHER_DISK", value_enum)]
    pub disk: Option<disk::DiskMode>,
    /// Network: loopback (default; or the profile's [network] mode) or
    /// lab (every worker in a network namespace of its own on a private
    /// bridge; needed by partition, isolate, one-way, bridge, flaky; see
    /// docs/network.md).
    #[arg(long, env = "CRASHER_NETWORK", value_enum, value_name = "MODE")]
    pub network: Option<network::NetworkMode>,
    /// Override a loop timing: NAME=SECONDS (repeatable, or comma-separated).
    #[arg(long = "timing", env = "CRASHER_TIMINGS", value_name = "NAME=SECONDS")]
    pub timings: Vec<String>,
    /// When faults fire: `isolated` waits until the previous fault's effect
    /// was observed (new commits on every fed key) before the next one;
    /// `overlapping` runs every fault loop on its own timer (the original);
    /// `mixed` isolates all but a share of faults (--overlap-share).
    #[arg(long, env = "CRASHER_SCHEDULE", value_enum, default_value = "isolated")]
    pub schedule: ScheduleMode,
    /// `--schedule mixed`: the share of faults that may overlap (0 to 1).
    #[arg(long, env = "CRASHER_OVERLAP_SHARE", default_value_t = 0.25, value_parser = parse_share)]
    pub overlap_share: f64,
    /// The verdict is unknown (exit 3) unless each requested fault kind was
    /// observed at least this many times (0: only report coverage).
    #[arg(long, env = "CRASHER_MIN_OBSERVED", default_value_t = 1)]
    pub min_observed: u64,
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a share between 0 and 1"))
}

/// Parses `250ms`, `30s`, `5m`, `2h` or a bare number of seconds (the
/// one duration syntax of every crasher option: [`procs::parse_duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    procs::parse_duration(s)
}

/// Runs a soak to its verdict.
pub fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let spec = match SoakSpec::parse(&args.words) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crasher: {e}");
            eprintln!("usage: crasher NUM [OPTION]...   (see `crasher --help`)");
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    if let Err(e) = spec.check_possible() {
        eprintln!("crasher: {e}");
        return Ok(ExitCode::from(exit::USAGE));
    }
    let profile = Profile::load(&args.profile)?;
    if let Some(bug) = &args.inject {
        let builtin_worker = profile.worker.program == "{crasher}"
            && profile.worker.args.first().map(String::as_str) == Some("passthrough");
        if builtin_worker {
            use clap::ValueEnum;
            if passthrough::bugs::Bug::from_str(bug, false).is_err() {
                let known: Vec<String> = passthrough::bugs::Bug::value_variants()
                    .iter()
                    .filter_map(|b| b.to_possible_value().map(|v| v.get_name().to_owned()))
                    .collect();
                eprintln!(
                    "crasher: --inject {bug:?}: the reference cluster has no such bug switch; known: {}",
                    known.join(", ")
                );
                return Ok(ExitCode::from(exit::USAGE));
            }
        }
    }
    if (spec.grow || spec.shrink || !spec.customs.is_empty()) && !profile.capabilities.grow {
        eprintln!(
            "crasher: profile {} cannot grow or shrink its cluster (capabilities.grow = false)",
            profile.origin
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    if spec.disk.needs_lossy() && disk_mode(&args, &profile) != disk::DiskMode::Lossy {
        eprintln!(
            "crasher: power-loss and power-loss-all need lossy disks: add --disk lossy \
             (or [disk] mode = \"lossy\" in the profile)"
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    let net_words: Vec<&str> = spec.net.iter().map(|f| f.word()).collect();
    if let Some(code) = network::enter(args.network.unwrap_or(profile.network.mode), &net_words) {
        return Ok(code);
    }
    let mut timings = Timings::default();
    timings.apply(&args.timings).map_err(anyhow::Error::msg)?;
    for k in &args.keys {
        if k.len() != 1 || !k.as_bytes()[0].is_ascii_alphanumeric() {
            anyhow::bail!("--keys: {k:?} is not a single letter or digit");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = match rt.block_on(soak(args, spec, profile, timings)) {
        Err(e)
            if matches!(
                e.downcast_ref::<verify::input::InputError>(),
                Some(verify::input::InputError::Interrupted { .. })
            ) =>
        {
            eprintln!("crasher: {e:#}");
            ExitCode::from(exit::UNKNOWN)
        }
        r => r?,
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(code)
}

fn loop_names(spec: &SoakSpec, mode: Mode) -> Vec<String> {
    let mut v = Vec::new();
    if spec.crash_sink {
        v.push("RUN: run_crash_sink_loop".to_owned());
    }
    for c in &spec.crash_workers {
        v.push(format!(
            "RUN: run_crash_worker_loop {}{}",
            c.index,
            if c.slow { " slow" } else { "" }
        ));
    }
    if spec.crash_source {
        v.push("RUN: run_crash_source_loop".to_owned());
    }
    if spec.pause {
        v.push("RUN: run_pause_loop".to_owned());
    }
    if spec.grow || spec.shrink {
        let arg = match (spec.grow, spec.shrink) {
            (true, true) => "grow-and-shrink",
            (true, false) => "grow",
            _ => "shrink",
        };
        v.push(format!("RUN: run_grow_shrink_loop {arg}"));
    }
    for c in &spec.customs {
        v.push(format!("RUN: {c}"));
    }
    for (on, name) in [
        (spec.disk.power_loss, "power-loss"),
        (spec.disk.power_loss_all, "power-loss-all"),
        (spec.disk.corrupt, "corrupt"),
        (spec.disk.truncate, "truncate"),
    ] {
        if on {
            v.push(format!("RUN: disk fault loop {name}"));
        }
    }
    let checks = [
        (
            spec.no_ack_progress || mode == Mode::Tcp,
            "run_ack_progress_loop",
        ),
        (
            spec.no_registry_progress || mode == Mode::Tcp,
            "run_registry_progress_loop",
        ),
        (spec.no_sanity, "run_sanity_loop"),
        (spec.no_clean_old_gzip_files, "run_clean_old_gzip_files"),
    ];
    for (off, name) in checks {
        v.push(format!("{}RUN: {name}", if off { "NO " } else { "" }));
    }
    v
}

/// The disk mode of a run: `--disk`, else the profile's.
pub fn disk_mode(args: &SoakArgs, profile: &Profile) -> disk::DiskMode {
    args.disk.unwrap_or(profile.disk.mode)
}

/// A harness ready to start a cluster: run directory, output, inputs,
/// ports and the process table, shared by the soak and the recipes.
pub struct Prepared {
    /// The shared state of the run.
    pub h: Arc<Harness>,
    /// Input file per key.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Ctrl-C / SIGTERM counter.
    pub interrupts: tokio::sync::watch::Receiver<u32>,
}

/// Sets up a run: run directory, transcript, input files (created when
/// missing), a port block and the (empty) process table.
pub async fn prepare(
    args: &SoakArgs,
    spec: &SoakSpec,
    profile: Profile,
    timings: Timings,
) -> anyhow::Result<Prepared> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_id = rundir::new_run_id();
    let run = RunDir::claim(&args.runs, args.run_dir.as_deref(), &run_id, args.force)?;
    let out = Glyphs::new(&run.run_log(), false)?;
    out.line(&format!("Run {run_id} in {}", run.root().display()));
    out.line(&format!(
        "Seed: {seed} (replay the fault schedule with --seed {seed}); profile: {} ({})",
        profile.name, profile.origin
    ));

    // Stage: input files.
    let tcp = profile.mode == Mode::Tcp;
    let input_dir = input_dir(&args.runs, args.input_bytes, seed_for_inputs(args), tcp);
    let inputs = ensure_inputs(&input_dir, args, tcp).await?;

    let ports = PortBlock::allocate(profile.ports.block)?;
    let settings = Settings {
        inputs: inputs.clone(),
        rate: args.rate,
        worker_count: spec.workers,
        inject: args.inject.clone(),
    };
    let lossy = disk_mode(args, &profile) == disk::DiskMode::Lossy;
    let lab_mode = args.network.unwrap_or(profile.network.mode) == network::NetworkMode::Lab;
    let observable = !spec.no_sanity && profile.mode == Mode::Connector;
    let mut cluster = Cluster::new(profile, run.clone(), ports, settings)?;
    let schedule = Schedule::new(
        ScheduleConfig {
            mode: args.schedule,
            overlap_share: args.overlap_share,
            observe_timeout: secs(timings.observe_timeout),
            observable,
            quiet_window: secs(timings.quiet_window),
        },
        harness::loop_rng(seed, "schedule"),
    );
    out.line(&format!(
        "Schedule: {}{}",
        args.schedule,
        match args.schedule {
            ScheduleMode::Mixed => format!(
                " ({:.0}% of faults may overlap)",
                args.overlap_share * 100.0
            ),
            _ => String::new(),
        }
    ));
    if lossy {
        if !std::path::Path::new("/dev/fuse").exists() {
            anyhow::bail!(
                "--disk lossy: /dev/fuse is missing: this machine cannot mount FUSE file systems"
            );
        }
        cluster.use_lossy_disks();
        out.line("Disk: lossy (each worker's state directory is a lossyfs mount)");
    }
    if lab_mode {
        anyhow::ensure!(
            network::is_inner(),
            "--network lab is for soaks (`crasher NUM ... --network lab`) only"
        );
        let lab = netlab::Lab::create(&[(procs::RUN_ID_VAR, &run_id)])
            .context("cannot build the lab network")?;
        out.line(&format!(
            "Network: lab (bridge {} at {}, worker N at {})",
            netlab::BRIDGE,
            netlab::LAB_ADDR,
            "198.18.0.(10+N)"
        ));
        cluster.set_lab(lab);
    }
    let h = Arc::new(Harness::new(
        cluster,
        out,
        timings,
        seed,
        args.on_failure,
        schedule,
    ));
    install_panic_hook();
    let interrupts = watch_interrupts();
    Ok(Prepared {
        h,
        inputs,
        interrupts,
    })
}

async fn soak(
    args: SoakArgs,
    spec: SoakSpec,
    profile: Profile,
    timings: Timings,
) -> anyhow::Result<ExitCode> {
    let mode = profile.mode;
    let Prepared {
        h,
        inputs,
        mut interrupts,
    } = prepare(&args, &spec, profile, timings).await?;
    let rec = record::Recorder::start(&h);
    tokio::spawn(record::sample_loop(rec.clone(), h.clone()));

    let start = Instant::now();
    let startup = tokio::select! {
        r = start_up(&h, &spec) => r,
        _ = interrupted(&mut interrupts) => Err(Outcome::Interrupted),
    };
    if let Err(outcome) = startup {
        h.finish(outcome);
        return Ok(conclude(&h, &args, &spec, &inputs, start, &mut interrupts).await);
    }
    for l in loop_names(&spec, mode) {
        h.out.line(&l);
    }
    if mode == Mode::Tcp {
        h.out.line(&format!(
            "TCP mode: no data verification, ack progress or registry progress (no 2PC); \
             checked: process deaths, sink log errors, and bytes reaching the receiver{}",
            if args.duration.is_none() {
                " (nothing can complete in TCP mode: give --duration, or stop with Ctrl-C)"
            } else {
                ""
            }
        ));
    }
    h.out.line(&format!("Start time: {}", unix_ms()));
    h.out.line("Done, yay ... waiting");

    let mut tasks = JoinSet::new();
    tasks.spawn(loops::monitor(h.clone()));
    let keys: Vec<String> = inputs.keys().cloned().collect();
    if spec.crash_sink {
        tasks.spawn(loops::crash_sink(h.clone()));
    }
    for c in &spec.crash_workers {
        tasks.spawn(loops::crash_worker(h.clone(), c.index, c.slow));
    }
    if spec.crash_source {
        tasks.spawn(loops::crash_source(h.clone(), keys.clone()));
    }
    if spec.pause {
        tasks.spawn(loops::pause_members(h.clone()));
    }
    if spec.grow || spec.shrink {
        tasks.spawn(loops::grow_shrink(h.clone(), spec.grow, spec.shrink));
    }
    if !spec.net.is_empty() {
        tasks.spawn(netfaults::run(h.clone(), spec.net.clone()));
    }
    for c in &spec.customs {
        tasks.spawn(crate::recipe::soak_custom(h.clone(), c.clone()));
    }
    if spec.disk.power_loss {
        tasks.spawn(diskfaults::power_loss(h.clone(), false));
    }
    if spec.disk.power_loss_all {
        tasks.spawn(diskfaults::power_loss(h.clone(), true));
    }
    if spec.disk.corrupt {
        tasks.spawn(diskfaults::surgery(h.clone(), diskfaults::Surgery::Corrupt));
    }
    if spec.disk.truncate {
        tasks.spawn(diskfaults::surgery(
            h.clone(),
            diskfaults::Surgery::Truncate,
        ));
    }
    if !spec.no_ack_progress && mode == Mode::Connector {
        tasks.spawn(loops::ack_progress(h.clone(), keys.clone()));
    }
    if !spec.no_registry_progress && mode == Mode::Connector {
        tasks.spawn(loops::registry_progress(h.clone(), keys.clone()));
    }
    if !spec.no_clean_old_gzip_files {
        tasks.spawn(loops::clean_old_gzip_files(h.clone()));
    }
    if !spec.no_sanity {
        let s = sanity::Sanity::new(&h, &inputs, mode)?;
        rec.watch(s.progress());
        tasks.spawn(s.run(h.clone()));
    }

    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    if let Some(d) = args.duration {
        let quiet = secs(h.timings.final_quiet).min(d / 6);
        h.schedule
            .stop_faults_at(std::time::Instant::now() + d - quiet);
    }
    tokio::select! {
        _ = wait_outcome(&h) => {}
        _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
            h.finish(Outcome::DurationReached);
        }
        _ = interrupted(&mut interrupts) => h.finish(Outcome::Interrupted),
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    netfaults::heal_all(&h);
    Ok(conclude(&h, &args, &spec, &inputs, start, &mut interrupts).await)
}

fn seed_for_inputs(args: &SoakArgs) -> u64 {
    // Input data is part of the run's reproducible state, but regenerating
    // 124 MB per run is wasteful: inputs use the seed only when one is given.
    args.seed.unwrap_or(0)
}

async fn ensure_inputs(
    dir: &std::path::Path,
    args: &SoakArgs,
    tcp: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let keys: Vec<u8> = args.keys.iter().map(|k| k.as_bytes()[0]).collect();
    let (dir, bytes, seed) = (dir.to_owned(), args.input_bytes, seed_for_inputs(args));
    // Generating big inputs takes a while and comes before the run's own
    // signal handling: a Ctrl-C, SIGTERM, SIGHUP or SIGQUIT meanwhile
    // stops it and removes the partial file.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let cancel = cancel.clone();
        let handlers = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ]
        .map(signal);
        tokio::spawn(async move {
            let mut streams: Vec<_> = handlers.into_iter().flatten().collect();
            let any = futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv())));
            any.await;
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let result = tokio::task::spawn_blocking(move || {
        ensure_input_files_cancellable(&dir, &keys, bytes, seed, tcp, &cancel)
    })
    .await;
    watcher.abort();
    result?
}

/// The folder input files of this size and seed are cached in, under `runs`.
pub fn input_dir(runs: &std::path::Path, input_bytes: u64, seed: u64, tcp: bool) -> PathBuf {
    runs.join("inputs").join(format!(
        "bytes{input_bytes}-seed{seed}{}",
        if tcp { "-tcp" } else { "" }
    ))
}

/// The input file of each key in `dir`, writing the missing ones (each
/// complete or absent: written to a temporary name, then renamed).
pub fn ensure_input_files(
    dir: &std::path::Path,
    keys: &[u8],
    input_bytes: u64,
    seed: u64,
    tcp: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let never = std::sync::atomic::AtomicBool::new(false);
    ensure_input_files_cancellable(dir, keys, input_bytes, seed, tcp, &never)
}

/// Inputs this big get a progress bar (on a terminal) and a line saying so.
const BIG_INPUTS: u64 = 256 * 1024 * 1024;

/// [`ensure_input_files`] that checks free space first, shows progress for
/// big inputs, and stops (removing the partial file) once `cancel` is set.
pub fn ensure_input_files_cancellable(
    dir: &std::path::Path,
    keys: &[u8],
    input_bytes: u64,
    seed: u64,
    tcp: bool,
    cancel: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for &k in keys {
        let p = dir.join(verify::input::input_file_name(k));
        if !p.is_file() {
            missing.push(k);
        }
        out.insert((k as char).to_string(), p);
    }
    if !missing.is_empty() {
        let spec = verify::input::InputSpec {
            keys: missing,
            source_bytes: input_bytes,
            seed,
            tcp,
        };
        let total = verify::input::spec_file_len(&spec).saturating_mul(spec.keys.len() as u64);
        let bar = (total >= BIG_INPUTS).then(|| {
            eprintln!(
                "crasher: writing {} input file(s), {total} bytes in all, in {}",
                spec.keys.len(),
                dir.display()
            );
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "input files [{bar:40}] {bytes}/{total_bytes} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let mut progress = |n: u64| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        };
        let written =
            verify::input::write_input_files_cancellable(dir, &spec, &mut progress, cancel);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        written.with_context(|| format!("cannot create input files in {}", dir.display()))?;
    }
    Ok(out)
}

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
async fn death_at_start_up(h: &Harness) -> Outcome {
    use tokio::signal::unix::{signal, SignalKind};
    let mut chld = signal(SignalKind::child()).ok();
    loop {
        match chld.as_mut() {
            Some(c) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), c.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        let deaths = h.cluster().reap(|_| false);
        let failed = deaths
            .into_iter()
            .find(|d| !(d.success && d.who.starts_with("feeder.")));
        if let Some(d) = failed {
            let log = h.cluster().run_dir().log_of(&d.who);
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

async fn start_up_stages(h: &Arc<Harness>, spec: &SoakSpec) -> Result<(), Outcome> {
    let env = |e: cluster::ClusterError| Outcome::Environment(e.to_string());
    let t = &h.timings;
    // Stage: sink, before any worker (the original's GH #3123).
    h.cluster().start_sink().map_err(env)?;
    let sink_addr = h.cluster().sink_addr();
    wait_accepting(&sink_addr, Duration::from_secs(10))
        .await
        .map_err(|e| Outcome::Unknown(format!("the sink never listened on {sink_addr}: {e}")))?;
    // Stage: initializer.
    h.cluster().start_worker(0, Start::Initial).map_err(env)?;
    let init = h.cluster().external_addr(0);
    wait_accepting(&init.to_string(), secs(t.startup_ready))
        .await
        .map_err(|e| Outcome::Unknown(format!("the initializer never listened on {init}: {e}")))?;
    // Stage: the other workers, together.
    for i in 1..spec.workers {
        h.cluster().start_worker(i, Start::Initial).map_err(env)?;
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
    let keys: Vec<String> = h.cluster().settings().inputs.keys().cloned().collect();
    for k in keys {
        h.cluster().start_feeder(&k).map_err(env)?;
    }
    Ok(())
}

async fn wait_accepting(addr: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn wait_outcome(h: &Harness) {
    loop {
        let notified = h.done.notified();
        if h.finished() {
            return;
        }
        notified.await;
    }
}

/// Counts SIGINT, SIGTERM, SIGHUP (a closed terminal or SSH session) and
/// SIGQUIT (Ctrl-\\), every catchable signal that would otherwise end
/// crasher and orphan the run's processes: the first asks for a graceful
/// teardown (seen through the returned receiver); a second kills every
/// process of the run at once and exits.
fn watch_interrupts() -> tokio::sync::watch::Receiver<u32> {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    // Installed before returning, so no signal slips in before the task runs.
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = handlers else {
            return;
        };
        let mut n = 0u32;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
                _ = quit.recv() => {}
            }
            n += 1;
            let _ = tx.send(n);
            if n >= 2 {
                cluster::kill_all_registered();
                eprintln!("crasher: second interrupt: killed every process of the run");
                std::process::exit(i32::from(exit::UNKNOWN));
            }
        }
    });
    rx
}

/// Resolves once Ctrl-C or SIGTERM has been received.
pub async fn interrupted(rx: &mut tokio::sync::watch::Receiver<u32>) {
    if rx.wait_for(|n| *n >= 1).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cluster::kill_all_registered();
        prev(info);
    }));
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Why the run's verdict cannot be "holds" for lack of fault coverage: a
/// requested fault kind observed fewer than `min` times (fired fewer
/// than `min` times where nothing can be observed).
fn unobserved(h: &Harness, spec: &SoakSpec, min: u64) -> Option<String> {
    if min == 0 {
        return None;
    }
    let cov = h.schedule.coverage();
    let observable = h.schedule.observable();
    let short: Vec<String> = spec
        .fault_kinds()
        .into_iter()
        .filter_map(|kind| {
            let c = cov.get(&kind).cloned().unwrap_or_default();
            let seen = if observable { c.observed } else { c.fired };
            (seen < min).then(|| {
                if observable {
                    format!("{kind} (fired {}, observed {})", c.fired, c.observed)
                } else {
                    format!("{kind} (fired {})", c.fired)
                }
            })
        })
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "requested faults were not {} at least {min} time(s): {} (see --min-observed)",
            if observable { "observed" } else { "fired" },
            short.join(", ")
        )
    })
}

async fn conclude(
    h: &Arc<Harness>,
    args: &SoakArgs,
    spec: &SoakSpec,
    inputs: &BTreeMap<String, PathBuf>,
    start: Instant,
    interrupts: &mut tokio::sync::watch::Receiver<u32>,
) -> ExitCode {
    let (outcome, decided) = h
        .outcome()
        .unwrap_or((Outcome::Interrupted, Instant::now()));
    let print_duration = || {
        h.out.line(&format!("End time: {}", unix_ms()));
        h.out
            .line(&format!("Duration: {}", start.elapsed().as_millis()));
    };
    let code = match &outcome {
        Outcome::Violation { check, diagnosis } => {
            h.out
                .line_as("violation", &format!("VIOLATION ({check}): {diagnosis}"));
            if h.on_failure == OnFailure::Pause {
                let stopped_ms = sanity::wait_all_stopped(decided);
                h.out.line_as("pause", "Pause the world!");
                print_duration();
                let manifest = sanity::write_manifest(h, args, check, diagnosis, stopped_ms);
                match manifest {
                    Ok(p) => h.out.line(&format!(
                        "Every process of the run is stopped (SIGSTOP, {stopped_ms:.1} ms after detection). Manifest: {}\n\
                         Attach a debugger now (pids in the manifest). Ctrl-C or SIGTERM here kills them all and exits 1.",
                        p.display()
                    )),
                    Err(e) => h.out.line(&format!("cannot write the pause manifest: {e}")),
                }
                interrupted(interrupts).await;
            } else {
                print_duration();
            }
            exit::VIOLATION
        }
        Outcome::Success(msg) => {
            h.out.line(msg);
            print_duration();
            h.out.line(&h.schedule.summary_line());
            match unobserved(h, spec, args.min_observed) {
                Some(why) => {
                    h.out.line(&format!("Verdict unknown: {why}"));
                    exit::UNKNOWN
                }
                None => exit::HOLDS,
            }
        }
        Outcome::DurationReached => {
            let summary = sanity::final_summary(h, inputs).await;
            let mode = h.cluster().profile().mode;
            let tcp = (mode == Mode::Tcp).then(|| sanity::tcp_receipt(h));
            match &tcp {
                Some(t) => h.out.line(&t.text),
                None => h.out.line(&summary.text),
            }
            print_duration();
            h.out.line(&h.schedule.summary_line());
            let never = unobserved(h, spec, args.min_observed);
            if let Some(v) = summary.violation {
                h.out
                    .line_as("violation", &format!("VIOLATION (sanity): {v}"));
                exit::VIOLATION
            } else if let Some(why) = never {
                h.out.line(&format!("Verdict unknown: {why}"));
                exit::UNKNOWN
            } else if let Some(t) = &tcp {
                if let Some(why) = &t.unknown {
                    h.out.line(&format!("Verdict unknown: {why}"));
                    exit::UNKNOWN
                } else {
                    h.out.line(
                        "Duration reached with no violation (TCP mode: no process died by \
                         itself and the receiver kept receiving; no data was verified).",
                    );
                    exit::HOLDS
                }
            } else if summary.verified_bytes == 0 && !spec.no_sanity {
                h.out
                    .line("Verdict unknown: nothing was committed, so nothing was verified");
                exit::UNKNOWN
            } else {
                h.out.line("Duration reached with no violation.");
                exit::HOLDS
            }
        }
        Outcome::Unknown(why) => {
            h.out.line(&format!("Verdict unknown: {why}"));
            print_duration();
            exit::UNKNOWN
        }
        Outcome::Environment(why) => {
            h.out.line(&format!("Environment error: {why}"));
            print_duration();
            exit::USAGE
        }
        Outcome::Interrupted => {
            h.out.line("Interrupted: tearing down (verdict unknown).");
            exit::UNKNOWN
        }
    };
    record::finish(h, code);
    tokio::task::block_in_place(|| h.cluster().teardown(Duration::from_secs(2)));
    ExitCode::from(code)
}
