//! `crasher feed`, `crasher blast`, `crasher receive`.
//!
//! Exit codes: 0 when the file is delivered (feed: every line acknowledged;
//! blast: every record written); 2 for usage or environment errors (missing
//! file, a line too long for a frame, an unwritable log or status file).
//! `receive` runs until killed.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::blast::{self, BlastConfig};
use crate::feed::{self, FeedConfig, DEFAULT_INSTANCE_NAME, DEFAULT_PROGRAM_NAME};
use crate::log::Logger;
use crate::receive::{ReceiveConfig, Receiver};

/// Checks that `s` can ever be connected to: `HOST:PORT` (or
/// `[IPv6]:PORT`) with a non-empty host without spaces and a port from 1
/// to 65535. A name that does not resolve *yet* is accepted (the feeder
/// retries); one that can never parse is a usage error at once.
pub fn parse_target(s: &str) -> Result<String, String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let bad = |why: &str| Err(format!("{s:?} is not HOST:PORT ({why})"));
    let Some((host, port)) = s.rsplit_once(':') else {
        return bad("no port");
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return bad("the port must be a number from 1 to 65535"),
    }
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
        return bad("bad host");
    }
    Ok(s.to_owned())
}

/// Arguments of `crasher feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// The line file to feed. Its name, exactly as given, is the stream
    /// name and MESSAGE key, and its SHA-256 prefix the stream id.
    pub file: PathBuf,
    /// The worker's connector source address.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_target)]
    pub target: String,
    /// Payload bytes per second; 0 = unthrottled.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    pub rate: u64,
    /// HELLO cookie.
    #[arg(long, default_value = connector::DEFAULT_COOKIE)]
    pub cookie: String,
    /// HELLO program name.
    #[arg(long, default_value = DEFAULT_PROGRAM_NAME)]
    pub program_name: String,
    /// HELLO instance name.
    #[arg(long, default_value = DEFAULT_INSTANCE_NAME)]
    pub instance_name: String,
    /// Keep a JSON status here (rewritten atomically).
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// Append log lines here instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// How the rate varies over time.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// `--workload SHAPE [--workload-epoch UNIX_MS]`, shared by every feeder.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadArgs {
    /// Rate shape over time, scaling --rate: constant, bursts:ON/OFF
    /// (seconds at full rate / silent), ramp:PERIOD (0 to 2x and back),
    /// jitter:F (a random factor in [1-F, 1+F] each second). Needs --rate.
    #[arg(long, value_name = "SHAPE", default_value = "constant")]
    pub workload: crate::workload::Workload,
    /// When the shape's time starts, as Unix milliseconds (a soak passes
    /// its start, so a restarted feeder keeps the run's phase); default now.
    #[arg(long, value_name = "UNIX_MS")]
    pub workload_epoch: Option<u64>,
}

impl WorkloadArgs {
    /// Refuses a shape without a rate to shape.
    pub fn check(&self, rate: u64) -> anyhow::Result<()> {
        if rate == 0 && self.workload != crate::workload::Workload::Constant {
            anyhow::bail!(
                "--workload {} shapes --rate, but the rate is 0 (unthrottled): give --rate",
                self.workload
            );
        }
        Ok(())
    }
}

/// Arguments of `crasher blast`.
#[derive(Debug, clap::Args)]
pub struct BlastArgs {
    /// Where to send.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_target)]
    pub target: String,
    /// The file of fixed-size records (the input file's TCP form).
    #[arg(long)]
    pub file: PathBuf,
    /// Bytes per record.
    #[arg(long, default_value_t = 53)]
    pub msg_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 6)]
    pub batch_size: usize,
    /// Milliseconds between batches; 0 = back to back.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
    /// Additional cap in bytes per second; 0 = none.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    pub rate: u64,
    /// Log progress every this many records; 0 = never.
    #[arg(long, default_value_t = 1_000_000)]
    pub report_interval: u64,
}

/// Arguments of `crasher receive`.
#[derive(Debug, clap::Args)]
pub struct ReceiveArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// File every received byte is appended to.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Write the bound address here once listening (atomically).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// Runs `crasher feed`.
pub fn run_feed(args: FeedArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = args.workload.check(args.rate) {
        eprintln!("crasher feed: {e}");
        return Ok(ExitCode::from(2));
    }
    let log = Logger::open("feed", args.log.as_deref())
        .with_context(|| format!("cannot open log file {}", display_opt(&args.log)))?;
    let cfg = FeedConfig {
        name: args.file.as_os_str().as_bytes().to_vec(),
        file: args.file,
        target: args.target,
        rate: args.rate,
        cookie: args.cookie,
        program_name: args.program_name,
        instance_name: args.instance_name,
        status_file: args.status_file,
        max_frame_len: connector::DEFAULT_MAX_FRAME_LEN,
        workload: args.workload.workload,
        workload_epoch: args.workload.workload_epoch,
    };
    match feed::run_blocking(cfg, log.clone()) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            log.error(format_args!("fatal: {e}"));
            Err(e.into())
        }
    }
}

/// Runs `crasher blast`.
pub fn run_blast(args: BlastArgs) -> anyhow::Result<ExitCode> {
    let cfg = BlastConfig {
        target: args.target,
        file: args.file,
        msg_size: args.msg_size,
        batch_size: args.batch_size,
        interval: Duration::from_millis(args.interval_ms),
        rate: args.rate,
        report_interval: args.report_interval,
    };
    blast::run(&cfg, &Logger::stderr("blast"))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `crasher receive`.
pub fn run_receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let cfg = ReceiveConfig {
        listen: args.listen,
        output: args.output,
        ready_file: args.ready_file,
    };
    Receiver::bind(&cfg, Logger::stderr("receive"))?.serve()
}

fn display_opt(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_that_can_never_connect_are_refused() {
        for ok in [
            "127.0.0.1:7100",
            "[::1]:7100",
            "localhost:1",
            "worker-3.example:65535",
        ] {
            assert_eq!(parse_target(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "nonsense",
            "127.0.0.1",
            ":7100",
            "host:0",
            "host:99999",
            "a b:1",
            "h:p",
            "::1:x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
