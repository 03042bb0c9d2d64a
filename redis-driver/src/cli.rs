//! `crasher redis-feed` and `crasher redis-sink`.
//!
//! Exit codes: `redis-feed` exits 0 once every line is acknowledged; both
//! exit 2 for usage or environment errors (bad address list, unreadable
//! input, unwritable output, status or txnlog file). Cluster faults never
//! end them: they retry until a primary answers. `redis-sink` runs until
//! killed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use feeders::log::Logger;
use verdict::USAGE;

use crate::conn::{self, block_on};
use crate::feed::{self, FeedConfig};
use crate::sink::{self, SinkConfig};

/// Arguments of `crasher redis-feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// The line file to append. Its name, as given, names the stream in
    /// the status file and logs.
    pub file: PathBuf,
    /// `HOST:PORT` of every Sentinel, comma-separated; the primary is the
    /// one most of them name.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub sentinels: String,
    /// The name the Sentinels monitor the primary under.
    #[arg(long, default_value = "crasher")]
    pub master: String,
    /// The Redis stream to append to, e.g. `lines:A` (one per key).
    #[arg(long)]
    pub stream: String,
    /// Count a line only once `WAIT N` says N replicas have it (fewer
    /// within --wait-timeout: the line is sent again).
    #[arg(long, value_name = "N")]
    pub wait: Option<u32>,
    /// WAIT's timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub wait_timeout: u64,
    /// Seconds a command may go unanswered before the connection is
    /// dropped and the primary looked up again.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Payload bytes per second; 0 = unthrottled.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    pub rate: u64,
    /// Keep a JSON status here (the format of `crasher feed`); a restarted
    /// feeder resumes after its `acked` offset.
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// How the rate varies over time.
    #[command(flatten)]
    pub workload: feeders::cli::WorkloadArgs,
}

/// Arguments of `crasher redis-sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// `HOST:PORT` of every Sentinel, comma-separated.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub sentinels: String,
    /// The name the Sentinels monitor the primary under.
    #[arg(long, default_value = "crasher")]
    pub master: String,
    /// Read every stream whose name starts with this.
    #[arg(long, default_value = "lines:")]
    pub stream_prefix: String,
    /// Consumer group (created at id 0 where missing).
    #[arg(long, default_value = "checker")]
    pub group: String,
    /// Consumer name in the group (keep it across restarts: its pending
    /// entries are read again by name).
    #[arg(long, default_value = "sink")]
    pub consumer: String,
    /// Output prefix: data goes to `PREFIX.redis`, commits to `PREFIX.redis.txnlog`.
    #[arg(long, value_name = "PREFIX")]
    pub output: PathBuf,
    /// Also listen here (accepting and closing connections), for a
    /// supervisor that waits for its sink to listen; port 0 picks one.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Write the listener's bound address here once listening (atomically).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Most entries per stream per read (one fsync'd commit per read).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Seconds a command may go unanswered before the connection is
    /// dropped and the primary looked up again.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Consumers in the group, each on its own connection. 1 (the
    /// default) reads each stream in order and skips resent lines by
    /// offset; more share every stream's entries (work-queue order, no
    /// deduplication: verify with `work-queue-at-least-once`). With more
    /// than one, consumer i is named `CONSUMER-i`.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Seconds an entry may stay pending with another consumer before it
    /// is claimed (XAUTOCLAIM): a consumer that died with entries, or one
    /// of an earlier sink with more consumers.
    #[arg(long, default_value_t = 10.0)]
    pub claim_idle: f64,
}

fn usage(tool: &str, e: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("crasher {tool}: error: {e}");
    Ok(ExitCode::from(USAGE))
}

fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{flag} must be a positive number of seconds")),
    }
}

/// Runs `crasher redis-feed`.
pub fn run_feed(args: FeedArgs) -> anyhow::Result<ExitCode> {
    let sentinels = match conn::parse_addrs(&args.sentinels) {
        Ok(s) => s,
        Err(e) => return usage("redis-feed", e),
    };
    let response_timeout = match seconds("--timeout", args.timeout) {
        Ok(d) => d,
        Err(e) => return usage("redis-feed", e),
    };
    if args.stream.is_empty() {
        return usage("redis-feed", "--stream must not be empty");
    }
    if args.wait == Some(0) {
        return usage("redis-feed", "--wait 0 waits for nothing: leave it out");
    }
    let wait_timeout = Duration::from_millis(args.wait_timeout);
    if args.wait.is_some() && wait_timeout >= response_timeout {
        return usage(
            "redis-feed",
            "--wait-timeout must be shorter than --timeout (WAIT would be cut off)",
        );
    }
    if let Err(e) = args.workload.check(args.rate) {
        return usage("redis-feed", e);
    }
    let cfg = FeedConfig {
        file: args.file,
        sentinels,
        master: args.master,
        stream: args.stream,
        wait: args.wait,
        wait_timeout,
        response_timeout,
        rate: args.rate,
        status_file: args.status_file,
        workload: args.workload.workload,
        workload_epoch: args.workload.workload_epoch,
    };
    let log = Logger::stderr("redis-feed");
    match block_on(feed::run(cfg, log.clone())) {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) | Err(e) => {
            log.error(format_args!("fatal: {e}"));
            Ok(ExitCode::from(USAGE))
        }
    }
}

/// Runs `crasher redis-sink`.
pub fn run_sink(args: SinkArgs) -> anyhow::Result<ExitCode> {
    let sentinels = match conn::parse_addrs(&args.sentinels) {
        Ok(s) => s,
        Err(e) => return usage("redis-sink", e),
    };
    let response_timeout = match seconds("--timeout", args.timeout) {
        Ok(d) => d,
        Err(e) => return usage("redis-sink", e),
    };
    if args.batch == 0 {
        return usage("redis-sink", "--batch must be at least 1");
    }
    if !(1..=64).contains(&args.consumers) {
        return usage("redis-sink", "--consumers must be from 1 to 64");
    }
    let claim_idle = match seconds("--claim-idle", args.claim_idle) {
        Ok(d) => d,
        Err(e) => return usage("redis-sink", e),
    };
    let cfg = SinkConfig {
        sentinels,
        master: args.master,
        stream_prefix: args.stream_prefix,
        group: args.group,
        consumer: args.consumer,
        output: args.output,
        listen: args.listen,
        ready_file: args.ready_file,
        batch: args.batch,
        response_timeout,
        consumers: args.consumers,
        claim_idle,
    };
    let log = Logger::stderr("redis-sink");
    match block_on(sink::run(cfg, log.clone())) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) | Err(e) => {
            log.error(format_args!("fatal: {e}"));
            Ok(ExitCode::from(USAGE))
        }
    }
}
