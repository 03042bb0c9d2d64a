//! The supervisor's main line: prepare the run (profile, ports, run
//! directory, schedule), start the cluster, spawn the fault and check
//! loops, wait for the first outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use crate::exit;
use crate::run::cluster::{Cluster, Settings};
use crate::run::ports::PortBlock;
use crate::run::profile::{Mode, Profile, TriggerAction, VerifyMode};
use crate::run::rundir::RunDir;
use crate::run::{disk, network, rundir};

use super::args::SoakArgs;
use super::glyphs::Glyphs;
use super::harness::{Harness, Outcome};
use super::inputs::{ensure_inputs, input_dir, seed_for_inputs};
use super::schedule::{Schedule, ScheduleConfig, ScheduleMode};
use super::signals::{install_panic_hook, interrupted, watch_interrupts};
use super::spec::SoakSpec;
use super::startup::start_up;
use super::timings::{secs, Timings};
use super::verdict::{conclude, unix_ms};
use super::{diskfaults, harness, loops, netfaults, record, sanity, targeted};

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
    if spec.workers < profile.capabilities.min_workers {
        eprintln!(
            "crasher: profile {} needs at least {} workers (capabilities.min_workers), not {}",
            profile.origin, profile.capabilities.min_workers, spec.workers
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    if (spec.crash_primary || spec.pause_primary)
        && profile.primary.kind == crate::run::profile::PrimaryKind::None
    {
        eprintln!(
            "crasher: crash-primary/pause-primary: profile {} cannot tell which node is the primary \
             (give it a [primary] kind, e.g. \"redis-role\"; docs/drivers.md)",
            profile.origin
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    let needs = |a| profile.triggers.iter().any(|t| t.action == a);
    if needs(TriggerAction::PowerLoss) && disk_mode(&args, &profile) != disk::DiskMode::Lossy {
        eprintln!(
            "crasher: profile {}: a [[trigger]] with action = \"power-loss\" needs lossy disks: \
             add --disk lossy (or [disk] mode = \"lossy\")",
            profile.origin
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    if needs(TriggerAction::Isolate)
        && args.network.unwrap_or(profile.network.mode) != network::NetworkMode::Lab
        && args.hosts.is_none()
    {
        eprintln!(
            "crasher: profile {}: a [[trigger]] with action = \"isolate\" needs --network lab \
             or --hosts",
            profile.origin
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    let our_sink = profile.sink.program == "{crasher}"
        && profile.sink.args.first().map(String::as_str) == Some("sink");
    if !spec.targeted.is_empty() && !our_sink {
        let words: Vec<&str> = spec.targeted.iter().map(|t| t.word()).collect();
        eprintln!(
            "crasher: {}: these faults strike at the phase events of crasher's own 2PC sink, \
             and profile {} runs another sink (its [sink] is not `{{crasher}} sink ...`; docs/faults.md)",
            words.join(", "),
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
    let script = match &args.replay_schedule {
        Some(path) => match super::scripted::load(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("crasher: --replay-schedule: {e:#}");
                return Ok(ExitCode::from(exit::USAGE));
            }
        },
        None => None,
    };
    let net_words: Vec<&str> = spec.net.iter().map(|f| f.word()).collect();
    if let Some(file) = &args.hosts {
        let cfg = match crate::run::hosts::HostsConfig::load(file) {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("crasher: --hosts: {e}");
                return Ok(ExitCode::from(exit::USAGE));
            }
        };
        if let Some(why) = placed_off_control(&cfg, &spec, &profile) {
            eprintln!("crasher: --hosts {}: {why}", file.display());
            return Ok(ExitCode::from(exit::USAGE));
        }
        let lab = args.network.unwrap_or(profile.network.mode) == network::NetworkMode::Lab;
        if lab {
            eprintln!(
                "crasher: --hosts runs workers on other machines: it does not combine with \
                 --network lab (each host has its address already: network faults work \
                 without it; docs/hosts.md)"
            );
            return Ok(ExitCode::from(exit::USAGE));
        }
    }
    // With --hosts the network faults are rules on the hosts: no lab.
    let lab_words: &[&str] = if args.hosts.is_some() {
        &[]
    } else {
        &net_words
    };
    if let Some(code) = network::enter(args.network.unwrap_or(profile.network.mode), lab_words) {
        return Ok(code);
    }
    let mut timings = Timings::default();
    timings.apply(&args.timings).map_err(anyhow::Error::msg)?;
    for k in &args.keys {
        if k.len() != 1 || !k.as_bytes()[0].is_ascii_alphanumeric() {
            anyhow::bail!("--keys: {k:?} is not a single letter or digit");
        }
    }
    super::args::workloads(&args, &profile)?;
    super::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = match rt.block_on(soak(args, spec, profile, timings, script)) {
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

pub(super) fn loop_names(spec: &SoakSpec, mode: Mode) -> Vec<String> {
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
    if spec.crash_primary {
        v.push("RUN: run_crash_primary_loop".to_owned());
    }
    if spec.pause_primary {
        v.push("RUN: run_pause_primary_loop".to_owned());
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
    for t in &spec.targeted {
        v.push(format!("RUN: targeted fault loop {}", t.word()));
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
    /// The sink's phase events, when a targeted fault word is in use.
    pub sink_events: Option<Arc<targeted::SinkEvents>>,
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
        workloads: super::args::workloads(args, &profile)?,
        epoch_ms: u64::try_from(unix_ms()).unwrap_or(u64::MAX),
    };
    let lossy = disk_mode(args, &profile) == disk::DiskMode::Lossy;
    let lab_mode = args.network.unwrap_or(profile.network.mode) == network::NetworkMode::Lab;
    let observable = !spec.no_sanity && profile.mode == Mode::Connector;
    // Network cuts on the hosts: the fault words, or a trigger that isolates.
    let cuts = cuts_network(spec, &profile);
    let mut cluster = Cluster::new(profile, run.clone(), ports, settings)?;
    if let Some(file) = &args.hosts {
        let cfg = crate::run::hosts::HostsConfig::load(file)?;
        let hosts =
            crate::run::hosts::Hosts::connect(&cfg, run.root(), &run_id).context("--hosts")?;
        if cuts {
            hosts.check_nft().context("--hosts")?;
        }
        let name = |i: Option<usize>| i.map_or("here", |i| cfg.hosts[i].name.as_str());
        out.line(&format!(
            "Hosts: {} (workers placed {}; sink on {}, feeders on {}; control machine at {})",
            cfg.hosts
                .iter()
                .map(|h| format!("{} {}", h.name, h.address))
                .collect::<Vec<_>>()
                .join(", "),
            cfg.placement
                .iter()
                .map(|&i| cfg.hosts[i].name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            name(cfg.sink),
            name(cfg.feeders),
            cfg.control
        ));
        cluster.set_hosts(hosts);
    }
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
    if let Some(line) = verify_mode_line(&cluster.profile().verify_mode, &timings) {
        out.line(&line);
    }
    if lossy {
        if args.hosts.is_none() && !std::path::Path::new("/dev/fuse").exists() {
            anyhow::bail!(
                "--disk lossy: /dev/fuse is missing: this machine cannot mount FUSE file systems"
            );
        }
        cluster.use_lossy_disks();
        out.line(if args.hosts.is_some() {
            "Disk: lossy (each worker's state directory is a lossyfs mount on its host)"
        } else {
            "Disk: lossy (each worker's state directory is a lossyfs mount)"
        });
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
    let sink_events = if spec.targeted.is_empty() {
        None
    } else {
        let path = run.root().join(targeted::SOCKET);
        let ev = targeted::SinkEvents::bind(&path)?;
        cluster.set_sink_events(path);
        Some(ev)
    };
    let h = Arc::new(Harness::new(
        cluster,
        out,
        timings,
        seed,
        args.on_failure,
        schedule,
    )?);
    install_panic_hook();
    let interrupts = watch_interrupts();
    Ok(Prepared {
        h,
        inputs,
        interrupts,
        sink_events,
    })
}

/// The line saying which guarantee the sanity loop checks, unless it is
/// the default (an exact prefix).
fn verify_mode_line(mode: &VerifyMode, timings: &Timings) -> Option<String> {
    let m = mode.check_mode();
    let what = match mode {
        VerifyMode::ExactlyOnce => return None,
        VerifyMode::AtLeastOnce => "an exact prefix once repeats of verified lines are skipped",
        VerifyMode::WorkQueue => "every input line exactly once, in any order",
        VerifyMode::WorkQueueAtLeastOnce => "every input line at least once, in any order",
    };
    let grace = if m.is_work_queue() {
        format!(
            "; a line is missing once a later line of its key has been committed for more than \
             {}s (work_queue_missing_grace)",
            timings.work_queue_missing_grace
        )
    } else {
        String::new()
    };
    Some(format!("Verify mode: {} ({what}{grace})", m.as_str()))
}

pub(super) async fn soak(
    args: SoakArgs,
    spec: SoakSpec,
    profile: Profile,
    timings: Timings,
    script: Option<Vec<super::schedule::Decision>>,
) -> anyhow::Result<ExitCode> {
    let mode = profile.mode;
    let Prepared {
        h,
        inputs,
        mut interrupts,
        sink_events,
    } = prepare(&args, &spec, profile, timings).await?;
    if let Some(ev) = &sink_events {
        tokio::spawn(Arc::clone(ev).receive(h.clone()));
    }
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
    match script {
        // `crasher replay` / `crasher shrink`: the recorded faults, at
        // their recorded times, instead of the random fault loops.
        Some(script) => {
            tasks.spawn(super::scripted::execute(
                h.clone(),
                script,
                sink_events.clone(),
            ));
        }
        None => {
            if spec.crash_sink {
                tasks.spawn(loops::crash_sink(h.clone()));
            }
            for c in &spec.crash_workers {
                tasks.spawn(loops::crash_worker(h.clone(), c.index, c.slow));
            }
            if spec.crash_source {
                tasks.spawn(loops::crash_source(h.clone(), keys.clone()));
            }
            if spec.crash_primary {
                tasks.spawn(loops::crash_primary(h.clone()));
            }
            if spec.pause_primary {
                tasks.spawn(loops::pause_primary(h.clone()));
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
            // Log-event triggers and targeted words run live only: a
            // replay fires what they did at its recorded time.
            let triggers = h.profile().triggers.clone();
            for (n, t) in triggers.into_iter().enumerate() {
                tasks.spawn(super::triggers::run(h.clone(), n + 1, t));
            }
            if let Some(ev) = &sink_events {
                for &word in &spec.targeted {
                    tasks.spawn(targeted::run(h.clone(), word, Arc::clone(ev)));
                }
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
        }
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
    // A hook for the tests of the panic path (no orphan, an unknown
    // verdict): `CRASHER_TEST_PANIC_AFTER=SECONDS` makes a task of the run
    // panic that long after the loops started.
    if let Some(after) = std::env::var("CRASHER_TEST_PANIC_AFTER")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
    {
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(after)).await;
            panic!("CRASHER_TEST_PANIC_AFTER={after}: a panic on purpose");
        });
    }
    let mut progress = None;
    if !spec.no_sanity {
        let s = sanity::Sanity::new(&h, &inputs, mode)?;
        rec.watch(s.progress());
        progress = Some(s.progress());
        tasks.spawn(s.run(h.clone()));
    }
    h.out.start_live();
    if h.out.is_live() {
        tasks.spawn(super::status_line::run(h.clone(), progress, args.duration));
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
    netfaults::heal_all(&h).await;
    Ok(conclude(&h, &args, &spec, &inputs, start, &mut interrupts).await)
}

pub(super) async fn wait_outcome(h: &Harness) {
    loop {
        let notified = h.done.notified();
        if h.finished() {
            return;
        }
        notified.await;
    }
}

/// Why the hosts file's placement of the sink or the feeders on a host
/// cannot serve this run (`None`: it can, or they stay here). Network
/// faults cut hosts from the control machine, where the sink and feeders
/// are assumed to be; the targeted words talk to the sink through a local
/// event socket.
fn placed_off_control(
    cfg: &crate::run::hosts::HostsConfig,
    spec: &super::spec::SoakSpec,
    profile: &crate::run::profile::Profile,
) -> Option<String> {
    if cfg.sink.is_none() && cfg.feeders.is_none() {
        return None;
    }
    if cuts_network(spec, profile) {
        return Some(
            "network faults (and isolate triggers) with the sink or the feeders on a host are \
             not supported: their rules assume both on the control machine (docs/hosts.md)"
                .into(),
        );
    }
    if cfg.sink.is_some() && !spec.targeted.is_empty() {
        return Some(
            "the targeted fault words talk to the sink on this machine: keep the sink here \
             (no `sink =` in the hosts file)"
                .into(),
        );
    }
    None
}

/// Whether the run cuts network links: a network fault word, or a log
/// trigger that isolates a node.
fn cuts_network(spec: &super::spec::SoakSpec, profile: &crate::run::profile::Profile) -> bool {
    !spec.net.is_empty()
        || profile
            .triggers
            .iter()
            .any(|t| t.action == crate::run::profile::TriggerAction::Isolate)
}
