//! `crasher nats-feed` and `crasher nats-sink`.
//!
//! Exit codes: `nats-feed` exits 0 once every line is acknowledged; both
//! exit 2 for usage or environment errors (bad server list, unreadable
//! input, unwritable output, status or txnlog file). Cluster faults never
//! end them: they retry until the cluster answers. `nats-sink` runs until
//! killed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use feeders::log::Logger;

use crate::conn::{self, block_on_quiet};
use crate::feed::{self, FeedConfig};
use crate::sink::{self, SinkConfig};

use verdict::USAGE;

/// Arguments of `crasher nats-feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// The line file to publish. Its name, as given, names the stream in
    /// the status file and logs; its hash prefixes every message id.
    pub file: PathBuf,
    /// Client URLs of the cluster's nodes, comma-separated (give them all:
    /// the client moves to another node when one fails).
    #[arg(long = "server", value_name = "URL[,URL...]")]
    pub servers: String,
    /// JetStream stream (created if missing).
    #[arg(long, default_value = "LINES")]
    pub stream: String,
    /// Subject to publish to, e.g. `lines.A` (one per key).
    #[arg(long)]
    pub subject: String,
    /// Subjects of the stream if this process creates it.
    #[arg(long, default_value = "lines.>")]
    pub stream_subjects: String,
    /// Replicas of the stream if this process creates it (at most 5).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Duplicate window of the stream if this process creates it, in
    /// seconds: resends within it are stored once.
    #[arg(long, default_value_t = 120)]
    pub duplicate_window: u64,
    /// Seconds to wait for a PubAck before resending.
    #[arg(long, default_value_t = 2.0)]
    pub ack_timeout: f64,
    /// Payload bytes per second; 0 = unthrottled.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    pub rate: u64,
    /// Keep a JSON status here (the format of `crasher feed`); a restarted
    /// feeder resumes from its `acked` offset.
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// How the rate varies over time.
    #[command(flatten)]
    pub workload: feeders::cli::WorkloadArgs,
}

/// Arguments of `crasher nats-sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Client URLs of the cluster's nodes, comma-separated.
    #[arg(long = "server", value_name = "URL[,URL...]")]
    pub servers: String,
    /// JetStream stream to read (created if missing).
    #[arg(long, default_value = "LINES")]
    pub stream: String,
    /// Subjects of the stream if this process creates it.
    #[arg(long, default_value = "lines.>")]
    pub stream_subjects: String,
    /// Durable consumer name.
    #[arg(long, default_value = "checker")]
    pub durable: String,
    /// Output prefix: data goes to `PREFIX.nats`, commits to `PREFIX.nats.txnlog`.
    #[arg(long, value_name = "PREFIX")]
    pub output: PathBuf,
    /// Also listen here (accepting and closing connections), for a
    /// supervisor that waits for its sink to listen; port 0 picks one.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Write the listener's bound address here once listening (atomically).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Replicas of the stream if this process creates it (at most 5).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Duplicate window of the stream if this process creates it, in seconds.
    #[arg(long, default_value_t = 120)]
    pub duplicate_window: u64,
    /// Most messages per batch (one fsync'd commit each).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
}

fn usage(tool: &str, e: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("crasher {tool}: error: {e}");
    Ok(ExitCode::from(USAGE))
}

/// Runs `crasher nats-feed`.
pub fn run_feed(args: FeedArgs) -> anyhow::Result<ExitCode> {
    let servers = match conn::parse_servers(&args.servers) {
        Ok(s) => s,
        Err(e) => return usage("nats-feed", e),
    };
    let ack_timeout = match Duration::try_from_secs_f64(args.ack_timeout) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return usage(
                "nats-feed",
                "--ack-timeout must be a positive number of seconds",
            )
        }
    };
    let cfg = FeedConfig {
        file: args.file,
        servers,
        stream: args.stream,
        subject: args.subject,
        stream_subjects: args.stream_subjects,
        rate: args.rate,
        status_file: args.status_file,
        replicas: args.replicas,
        duplicate_window: Duration::from_secs(args.duplicate_window),
        ack_timeout,
        workload: args.workload.workload,
        workload_epoch: args.workload.workload_epoch,
    };
    if let Err(e) = args.workload.check(cfg.rate) {
        return usage("nats-feed", e);
    }
    let log = Logger::stderr("nats-feed");
    match block_on_quiet(feed::run(cfg, log.clone())) {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) | Err(e) => {
            log.error(format_args!("fatal: {e}"));
            Ok(ExitCode::from(USAGE))
        }
    }
}

/// Runs `crasher nats-sink`.
pub fn run_sink(args: SinkArgs) -> anyhow::Result<ExitCode> {
    let servers = match conn::parse_servers(&args.servers) {
        Ok(s) => s,
        Err(e) => return usage("nats-sink", e),
    };
    let cfg = SinkConfig {
        servers,
        stream: args.stream,
        stream_subjects: args.stream_subjects,
        durable: args.durable,
        output: args.output,
        listen: args.listen,
        ready_file: args.ready_file,
        replicas: args.replicas,
        duplicate_window: Duration::from_secs(args.duplicate_window),
        batch: args.batch,
    };
    let log = Logger::stderr("nats-sink");
    match block_on_quiet(sink::run(cfg, log.clone())) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) | Err(e) => {
            log.error(format_args!("fatal: {e}"));
            Ok(ExitCode::from(USAGE))
        }
    }
}
