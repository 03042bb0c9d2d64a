//! The command line: the soak (`crasher NUM [OPTION]...`) and one
//! subcommand per tool, each owned by its crate.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::exit;
use crate::soak::{self, SoakArgs};

const ABOUT: &str = "Chaos-testing harness for streaming clusters: does your cluster lose, \
duplicate or reorder data when its workers crash, restart, join, leave or stall?";

const LONG_HELP: &str = "\
Run a soak with `crasher NUM [OPTION]...`: start a sink, NUM workers and one
feeder per key, then crash, restart, grow and shrink while checking,
continuously, that each key's committed output is a byte-exact prefix of its
input. At the first violation every process is stopped (SIGSTOP) for a
debugger; --on-failure kill tears down instead.

Options (the original master-crasher.sh's words):
  crash-sink            crash and restart the sink every 10-25 s
  crashN, crashN.slow   crash and restart worker N (0 = initializer) every few
                        seconds, or about every 2 minutes with .slow
  crash-source          crash and restart feeders
  crash-primary         crash and restart whichever node is the primary now
                        (profiles with a [primary] query: redis-sentinel)
  pause                 SIGSTOP a random worker for 1-10 s, then SIGCONT
  pause-primary         SIGSTOP whichever node is the primary now for 1-10 s
                        (--timing pause_min/pause_max), then SIGCONT
  grow, shrink, grow-and-shrink
                        join and/or remove workers at random
  partition, isolate, one-way, bridge, flaky
                        network faults (need --network lab): split the
                        workers in a majority and a minority, cut one off
                        from everything, drop one direction between two,
                        two halves joined by one node, drop 30% of a
                        node's packets; each held 2-6 s, then healed
                        (docs/network.md). No delay fault is offered
                        (it would need the kernel's sch_netem)
  no-ack-progress, no-registry-progress, no-sanity, no-clean-old-gzip-files
                        switch a check off
  power-loss, power-loss-all
                        SIGKILL a random worker (or all) and drop its
                        un-synced writes (needs --disk lossy), restart
  corrupt, truncate     flip a bit in / cut short a data file of a random
                        worker while it is down, restart (docs/disk.md)
  crash-at-prepare, pause-at-prepare, crash-sink-at-prepare, crash-at-commit
                        faults aimed at the 2PC sink's phase events (its
                        own sink only): SIGKILL (or SIGSTOP) a random
                        member the moment the sink has voted on its
                        PHASE1, before it hears the vote; SIGKILL the sink
                        there; SIGKILL a member whose PHASE2 commit just
                        reached the sink (docs/faults.md)
  run_custom1 run_custom2 run_custom4 run_custom5 run_custom3006
  run_custom_crashsink_crash0_overlap
                        the original's one-off scenarios

Glyphs: `,` sanity round; cS/rS sink crash/restart; cN/rN worker N
crash/restart; :cN :s skipped (gate closed); cfK/rfK feeder K crash/restart;
pN/uN worker N paused/resumed (:p :pP skipped); {AP} ack progress; {RP} registry progress;
`Join workerN.` / `Shrink workerN`; PLn/PLA power loss of worker N/all
(restart rN/rA); XN/TN data file of worker N corrupted/truncated; :PL :X :T
skipped; network: {P:0,2|1} partition
(majority|minority), {I:N} isolate, {O:A>B} one-way, {B:A|N|B} bridge,
{F:N} flaky, {H} healed, :n skipped; targeted: ^PN/^PS strike at worker
N's / the sink's prepare, ^CN at worker N's commit (then its cN, pN or cS
glyphs), :^ skipped.

Exit codes: 0 holds, 1 violation found, 2 usage or environment error,
3 verdict unknown.

To run a recorded soak again with its recorded faults, or cut a failing
run's faults down to the few that matter: crasher replay RUN, crasher
shrink RUN (docs/replay.md).

To drive a run step by step from a shell instead, use the low-level
commands (start-sink, start-initializer -n N, start-worker [-j] N,
crash-worker N, poll-ready N, poll-all-ready, start-feeder KEY, status,
reset ...; see docs/commands.md).

Example:
  crasher 4 crash1 grow --duration 10m --on-failure kill
  crasher 2 crash0 crash-sink --input-bytes 200000 --rate 0";

/// The `crasher` command line.
#[derive(Debug, Parser)]
#[command(
    name = "crasher",
    version,
    about = ABOUT,
    long_about = None,
    after_long_help = LONG_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A tool instead of a soak.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The soak's words and options.
    #[command(flatten)]
    pub soak: SoakArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write one input file per routing key (`DIR/input-file.K.txt`).
    CreateInputFiles(verify::cli::CreateInputFilesArgs),
    /// Remove the input files written by create-input-files.
    DeleteInputFiles(verify::cli::DeleteInputFilesArgs),
    /// Check that a key's committed sink output is a byte-exact prefix of its input.
    Verify(verify::cli::VerifyArgs),
    /// Run the 2PC sink that workers commit their output to.
    Sink(sink::cli::SinkArgs),
    /// Feed one line file to a worker over connector protocol v3.
    Feed(feeders::cli::FeedArgs),
    /// Send fixed-size length-framed messages over plain TCP (TCP mode source).
    Blast(feeders::cli::BlastArgs),
    /// Append whatever arrives over plain TCP to a file (TCP mode sink).
    Receive(feeders::cli::ReceiveArgs),
    /// Publish one line file to a NATS JetStream subject, each line once (msg-id dedup).
    NatsFeed(nats::cli::FeedArgs),
    /// Commit a NATS JetStream stream to sink output files through a durable consumer.
    NatsSink(nats::cli::SinkArgs),
    /// Append one line file to a Redis stream (XADD, optionally WAIT), following Sentinel failover.
    RedisFeed(redis_driver::cli::FeedArgs),
    /// Commit every Redis `lines:*` stream to sink output files through a consumer group.
    RedisSink(redis_driver::cli::SinkArgs),
    /// Run one worker of the built-in reference cluster (what the
    /// `passthrough` profile starts; same options as the `passthrough` binary).
    Passthrough(passthrough::cli::Args),
    /// N lab hosts on this machine (network namespaces running sshd) and a
    /// command beside them with a hosts file for --hosts (docs/hosts.md).
    LabHosts(crate::labhosts::LabHostsArgs),
    /// Time a crash and pause-the-world on the hosts of a hosts file, over
    /// SSH, against the same on this machine (docs/hosts.md).
    HostsBench(crate::hostsbench::HostsBenchArgs),
    /// Run a recipe (a single scenario) in iterations; --list shows them.
    Recipe(crate::recipe::RecipeArgs),
    /// Run a recorded soak again: same arguments and seed, its recorded
    /// faults at their recorded times; says whether the same violation
    /// class reappeared.
    Replay(crate::replay::ReplayArgs),
    /// Shrink a failing run's fault schedule to a minimal one that still
    /// shows its violation class; writes a replay recipe and a report.
    Shrink(crate::replay::shrink::ShrinkArgs),
    /// Show a run at a glance: processes, cluster, per-key progress, verification.
    Status(crate::ops::StatusArgs),
    /// Stop every process of a run and delete its state and output (inputs are kept).
    Reset(crate::ops::ResetArgs),
    /// Stop every process of a run and keep all its evidence (logs, sink output, state).
    Stop(crate::ops::StopArgs),
    /// Start the run's sink (a new run if there is none) and wait until it listens.
    StartSink(crate::manual::StartSinkArgs),
    /// SIGKILL the run's sink.
    CrashSink(crate::manual::RunArgs),
    /// Start the initializer, worker 0 (a new run if there is none).
    StartInitializer(crate::manual::StartInitializerArgs),
    /// Start worker N as a cluster member, or joining the cluster with -j.
    StartWorker(crate::manual::StartWorkerArgs),
    /// Start worker N joining the running cluster (start-worker -j N).
    JoinWorker(crate::manual::WorkerArgs),
    /// Ask the initializer to remove worker N; wait until it exits.
    ShrinkWorker(crate::manual::ShrinkArgs),
    /// SIGKILL worker N (0 = initializer) and rotate its log.
    CrashWorker(crate::manual::WorkerArgs),
    /// Wait until worker N (0 = initializer) processes messages: exit 0, or 1 at the deadline.
    PollReady(crate::manual::PollReadyArgs),
    /// Wait until every member of the run processes messages (one shared deadline).
    PollAllReady(crate::manual::PollAllReadyArgs),
    /// Start the feeder of KEY (its input file is written if missing).
    StartFeeder(crate::manual::KeyArgs),
    /// SIGKILL the feeder of KEY.
    CrashFeeder(crate::manual::KeyArgs),
    /// Post-mortem of a run's logs (plain and .gz): failure signatures, ranked, next to the faults before them.
    Triage(triage::cli::TriageArgs),
    /// List past runs from their run.json: id, start, verdict, duration, arguments.
    Runs(triage::cli::RunsArgs),
    /// Write a self-contained HTML report of a run: verdict, fault timeline, progress, throughput.
    Report(triage::cli::ReportArgs),
    /// Mount a FUSE file system that loses every write not yet synced when
    /// told (`--lose MOUNTPOINT`), as a power cut would (docs/disk.md).
    Lossyfs(lossyfs::Args),
    /// Print a shell completion script: `crasher completions bash > /etc/bash_completion.d/crasher`.
    Completions(CompletionsArgs),
    /// Print crasher's man page (roff): `crasher man | man -l -`.
    Man,
    /// Stream a directory's changes to stdout until stdin ends (internal:
    /// what a run with --hosts starts on a host, crasher/src/run/mirror.rs).
    #[command(hide = true)]
    MirrorDir(crate::run::mirror::MirrorDirArgs),
}

/// `crasher completions SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "crasher", out);
}

/// Writes the man page (roff) to `out`: the text of `--help`, then a
/// section per subcommand with its synopsis and options.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("crasher {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            for line in about.to_string().lines() {
                writeln!(out, "{}", roff_text(line))?;
            }
        }
        let man = clap_mangen::Man::new(sub.clone().bin_name(name));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_options_section(&mut part)?;
        // The subcommand's own headings become subsections of its section.
        for line in String::from_utf8_lossy(&part).lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(out, ".SS {heading}")?,
                None => writeln!(out, "{line}")?,
            }
        }
    }
    Ok(())
}

/// One line of plain text made safe for roff: backslashes escaped, and a
/// line that starts like a request (`.` or `'`) protected.
fn roff_text(line: &str) -> String {
    let line = line.replace('\\', "\\e");
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line
    }
}

/// Runs the soak or the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None if cli.soak.words.is_empty() => {
            let _ = Cli::command().print_help();
            eprintln!("\ncrasher: give NUM (workers) for a soak, or a subcommand");
            Ok(ExitCode::from(exit::USAGE))
        }
        None => soak::run(cli.soak),
        Some(Command::CreateInputFiles(a)) => verify::cli::run_create(a),
        Some(Command::DeleteInputFiles(a)) => verify::cli::run_delete(a),
        Some(Command::Verify(a)) if a.run.is_some() => crate::ops::verify_run(a),
        Some(Command::Verify(a)) => verify::cli::run_verify(a),
        Some(Command::Sink(a)) => sink::cli::run(a),
        Some(Command::Feed(a)) => feeders::cli::run_feed(a),
        Some(Command::Blast(a)) => feeders::cli::run_blast(a),
        Some(Command::Receive(a)) => feeders::cli::run_receive(a),
        Some(Command::NatsFeed(a)) => nats::cli::run_feed(a),
        Some(Command::NatsSink(a)) => nats::cli::run_sink(a),
        Some(Command::RedisFeed(a)) => redis_driver::cli::run_feed(a),
        Some(Command::RedisSink(a)) => redis_driver::cli::run_sink(a),
        Some(Command::Passthrough(a)) => Ok(passthrough::main_with(a)),
        Some(Command::Recipe(a)) => crate::recipe::run(a),
        Some(Command::Replay(a)) => crate::replay::run_replay(a),
        Some(Command::Shrink(a)) => crate::replay::shrink::run_shrink(a),
        Some(Command::LabHosts(a)) => crate::labhosts::run(a),
        Some(Command::HostsBench(a)) => crate::hostsbench::run(a),
        Some(Command::Status(a)) => crate::ops::status(a),
        Some(Command::Reset(a)) => crate::ops::reset(a),
        Some(Command::Stop(a)) => crate::ops::stop(a),
        Some(Command::StartSink(a)) => crate::manual::start_sink(a),
        Some(Command::CrashSink(a)) => crate::manual::crash_sink(a),
        Some(Command::StartInitializer(a)) => crate::manual::start_initializer(a),
        Some(Command::StartWorker(a)) => crate::manual::start_worker(a),
        Some(Command::JoinWorker(a)) => crate::manual::join_worker(a),
        Some(Command::ShrinkWorker(a)) => crate::manual::shrink_worker(a),
        Some(Command::CrashWorker(a)) => crate::manual::crash_worker(a),
        Some(Command::PollReady(a)) => crate::manual::poll_ready(a),
        Some(Command::PollAllReady(a)) => crate::manual::poll_all_ready(a),
        Some(Command::StartFeeder(a)) => crate::manual::start_feeder(a),
        Some(Command::CrashFeeder(a)) => crate::manual::crash_feeder(a),
        Some(Command::Triage(a)) => triage::cli::run_triage(a),
        Some(Command::Runs(a)) => triage::cli::run_runs(a),
        Some(Command::Report(a)) => triage::cli::run_report(a),
        Some(Command::Lossyfs(a)) => lossyfs::run(a),
        Some(Command::MirrorDir(a)) => crate::run::mirror::run_cli(a),
        Some(Command::Completions(a)) => {
            write_completions(a.shell, &mut std::io::stdout().lock());
            Ok(ExitCode::from(exit::HOLDS))
        }
        Some(Command::Man) => {
            write_man(&mut std::io::stdout().lock())?;
            Ok(ExitCode::from(exit::HOLDS))
        }
    }
}
