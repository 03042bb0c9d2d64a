//! The command line of one worker, in the spirit of Wallaroo's
//! (`--in`, `--out`, `--control`, `--data`, `--my-control`, `--my-data`,
//! `--external`, `--cluster-initializer`, `--worker-count`, `--join`), and
//! the parsing of its less obvious values.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::bugs::Bug;

/// Command line of one worker.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "passthrough",
    about = "One worker of crasher's reference streaming cluster (effectively-once passthrough)",
    after_help = "Every listener accepts port 0; bound addresses are logged \
                  (`listening on ...`) and written to --ready-file."
)]
pub struct Args {
    /// Source listener for feeders (connector protocol v3, or with
    /// `--source tcp` length-framed records): HOST:PORT, or Wallaroo's
    /// NAME@HOST:PORT:COOKIE:MAX_CREDITS:REFILL_CREDITS.
    #[arg(long = "in", value_name = "ADDR", value_parser = parse_source)]
    pub source: SourceSpec,
    /// The sink: the 2PC sink, or with `--sink tcp` a plain TCP receiver.
    #[arg(long, value_name = "HOST:PORT")]
    pub out: String,
    /// What `--in` speaks: connector protocol v3, or plain TCP (a 4-byte
    /// big-endian length then the record; TCP mode, see docs/passthrough.md).
    #[arg(
        long = "source",
        value_enum,
        value_name = "KIND",
        default_value = "connector"
    )]
    pub source_kind: SourceKind,
    /// What `--out` speaks: 2PC (connector sink protocol), or plain TCP
    /// (records written as they arrive, no transactions; TCP mode).
    #[arg(long = "sink", value_enum, value_name = "KIND", default_value = "2pc")]
    pub sink_kind: SinkKind,
    /// The initializer's control address (the initializer listens there;
    /// other workers connect to it).
    #[arg(long, value_name = "HOST:PORT")]
    pub control: Option<String>,
    /// The initializer's data listener (routed lines from other workers).
    #[arg(long, value_name = "HOST:PORT")]
    pub data: Option<String>,
    /// This worker's external query listener (cluster status, shrink).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub external: String,
    /// A non-initializer's control listener (bound and reported; the
    /// control traffic itself runs on the connection to the initializer).
    #[arg(long, value_name = "HOST:PORT")]
    pub my_control: Option<String>,
    /// A non-initializer's data listener (routed lines from other workers).
    #[arg(long, value_name = "HOST:PORT")]
    pub my_data: Option<String>,
    /// This worker is the initializer (it also coordinates checkpoints).
    #[arg(long)]
    pub cluster_initializer: bool,
    /// Workers the cluster is formed with (initializer only; a restarted
    /// initializer uses its durable membership instead).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub worker_count: u64,
    /// Worker name (default `initializer` for the initializer).
    #[arg(long)]
    pub name: Option<String>,
    /// Join a running cluster through the initializer's control address.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Durable state of this worker.
    #[arg(long, value_name = "DIR")]
    pub resilience_dir: PathBuf,
    /// Checkpoint interval, e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub checkpoint_interval: Duration,
    /// Cookie of the sink and (unless `--in` names one) of the sources.
    #[arg(long, default_value = connector::DEFAULT_COOKIE)]
    pub cookie: String,
    /// Switch a bug on (off by default).
    #[arg(long, value_enum, value_name = "BUG")]
    pub inject: Option<Bug>,
    /// Write the bound addresses here as JSON once listening (atomically).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// What the source listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// Connector protocol v3 (`crasher feed`): dedup, credits, acks of
    /// committed positions.
    Connector,
    /// Plain TCP (`crasher blast`): length-framed records, no acks.
    Tcp,
}

/// What the sink connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// Connector sink protocol with two-phase commit (`crasher sink`).
    #[value(name = "2pc")]
    TwoPc,
    /// Plain TCP (`crasher receive`): bytes as they arrive.
    Tcp,
}

impl Args {
    /// Whether this worker runs in TCP mode (`--source tcp --sink tcp`).
    pub fn tcp_mode(&self) -> bool {
        self.source_kind == SourceKind::Tcp
    }

    /// The worker name.
    pub fn worker_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| "initializer".into())
    }

    /// Checks the combinations clap cannot express; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.worker_name();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "--name {name:?}: use letters, digits, '-' and '_' only (it names the sink's files)"
            ));
        }
        match (self.source_kind, self.sink_kind) {
            (SourceKind::Connector, SinkKind::TwoPc) | (SourceKind::Tcp, SinkKind::Tcp) => {}
            (s, k) => {
                return Err(format!(
                    "--source {} with --sink {}: TCP mode is --source tcp and --sink tcp together \
                     (a TCP source has nothing to replay after a 2PC rollback, and a connector \
                     source needs 2PC commits to ack its feeders)",
                    kind_name(s),
                    kind_name(k)
                ))
            }
        }
        if let Some(bug) = self.inject {
            if self.tcp_mode() && bug != Bug::DieRandomly {
                return Err(format!(
                    "--inject {}: in TCP mode only die-randomly applies (the other bugs act on \
                     the connector source or the 2PC sink)",
                    kind_name(bug)
                ));
            }
        }
        if self.cluster_initializer {
            if self.control.is_none() {
                return Err(
                    "--cluster-initializer needs --control (the address to listen on)".into(),
                );
            }
            if self.join.is_some() {
                return Err("--join is for non-initializer workers".into());
            }
        } else {
            if self.name.is_none() {
                return Err("a non-initializer worker needs --name".into());
            }
            if name == "initializer" {
                return Err("--name initializer is reserved for --cluster-initializer".into());
            }
            if self.control.is_none() && self.join.is_none() {
                return Err("a non-initializer worker needs --control or --join".into());
            }
        }
        Ok(())
    }
}

/// The command-line spelling of a value.
fn kind_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_owned())
}

/// Where feeders connect and how they are credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Listen address.
    pub addr: String,
    /// Cookie from the Wallaroo form, if any (else `--cookie`).
    pub cookie: Option<String>,
    /// Credits granted at OK and refilled to.
    pub max_credits: u32,
    /// Refill once a feeder has at most this many credits left.
    pub refill_credits: u32,
}

/// Credits granted at OK unless `--in` says otherwise (Wallaroo's 500).
pub const DEFAULT_MAX_CREDITS: u32 = 500;
/// Refill threshold unless `--in` says otherwise (Wallaroo's 50).
pub const DEFAULT_REFILL_CREDITS: u32 = 50;

/// Parses `HOST:PORT` or `NAME@HOST:PORT:COOKIE:MAX_CREDITS:REFILL_CREDITS`
/// (the last three optional).
pub fn parse_source(s: &str) -> Result<SourceSpec, String> {
    let Some((_, rest)) = s.split_once('@') else {
        check_addr(s)?;
        return Ok(SourceSpec {
            addr: s.to_owned(),
            cookie: None,
            max_credits: DEFAULT_MAX_CREDITS,
            refill_credits: DEFAULT_REFILL_CREDITS,
        });
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() < 2 || parts.len() > 5 {
        return Err(format!(
            "{s:?}: expected NAME@HOST:PORT[:COOKIE[:MAX_CREDITS[:REFILL_CREDITS]]]"
        ));
    }
    let addr = format!("{}:{}", parts[0], parts[1]);
    check_addr(&addr)?;
    let num = |i: usize, what: &str, default: u32| -> Result<u32, String> {
        match parts.get(i) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{s:?}: {what} {v:?} is not a number")),
        }
    };
    let max_credits = num(3, "MAX_CREDITS", DEFAULT_MAX_CREDITS)?;
    let refill_credits = num(4, "REFILL_CREDITS", DEFAULT_REFILL_CREDITS)?;
    if max_credits == 0 || refill_credits >= max_credits {
        return Err(format!(
            "{s:?}: need 0 <= REFILL_CREDITS < MAX_CREDITS and MAX_CREDITS > 0"
        ));
    }
    Ok(SourceSpec {
        addr,
        cookie: parts.get(2).map(|c| (*c).to_owned()),
        max_credits,
        refill_credits,
    })
}

fn check_addr(s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

/// Parses an interval like `1s`, `250ms`, `1.5s` or a bare number of seconds.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = procs::parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "{s:?}: the checkpoint interval must be at least 10ms"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_forms() {
        let plain = parse_source("127.0.0.1:7100").unwrap();
        assert_eq!(plain.addr, "127.0.0.1:7100");
        assert_eq!(plain.max_credits, 500);
        let w = parse_source("InputBlobs@127.0.0.1:7110:Dragons-Love-Tacos:500:50").unwrap();
        assert_eq!(w.addr, "127.0.0.1:7110");
        assert_eq!(w.cookie.as_deref(), Some("Dragons-Love-Tacos"));
        assert_eq!((w.max_credits, w.refill_credits), (500, 50));
        let short = parse_source("InputBlobs@127.0.0.1:0").unwrap();
        assert_eq!((short.addr.as_str(), short.cookie), ("127.0.0.1:0", None));
        assert!(parse_source("x@127.0.0.1:7100:c:10:20").is_err());
        assert!(parse_source("127.0.0.1").is_err());
        assert!(parse_source("x@127.0.0.1:port").is_err());
    }

    #[test]
    fn tcp_mode_is_both_flags_together() {
        let base = [
            "passthrough",
            "--in",
            "127.0.0.1:0",
            "--out",
            "127.0.0.1:1",
            "--resilience-dir",
            "state",
            "--cluster-initializer",
            "--control",
            "127.0.0.1:0",
        ];
        let with = |extra: &[&str]| {
            let v: Vec<&str> = base.iter().chain(extra).copied().collect();
            Args::try_parse_from(v).unwrap()
        };
        let a = with(&[]);
        assert_eq!(
            (a.source_kind, a.sink_kind),
            (SourceKind::Connector, SinkKind::TwoPc)
        );
        assert!(a.validate().is_ok() && !a.tcp_mode());
        let t = with(&["--source", "tcp", "--sink", "tcp"]);
        assert!(t.validate().is_ok() && t.tcp_mode());
        let e = with(&["--source", "tcp"]).validate().unwrap_err();
        assert!(e.contains("--source tcp with --sink 2pc"), "{e}");
        let e = with(&["--sink", "tcp"]).validate().unwrap_err();
        assert!(e.contains("--source connector with --sink tcp"), "{e}");
        let e = with(&[
            "--source",
            "tcp",
            "--sink",
            "tcp",
            "--inject",
            "drop-after-recovery",
        ])
        .validate()
        .unwrap_err();
        assert!(e.contains("--inject drop-after-recovery"), "{e}");
        let die = with(&[
            "--source",
            "tcp",
            "--sink",
            "tcp",
            "--inject",
            "die-randomly",
        ]);
        assert!(die.validate().is_ok());
        assert!(Args::try_parse_from(base.iter().chain(&["--sink", "udp"])).is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("1ms").is_err());
    }
}
