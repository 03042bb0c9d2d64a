//! `crasher redis-feed`: appends one line file to one Redis stream, each
//! line acknowledged by the primary before the next is sent.
//!
//! - **One stream per key** (`lines:K`): a stream keeps the order of its
//!   entries, so one feeder writing one key's lines in order, one at a
//!   time, leaves that key in order in the stream.
//! - Every line is one entry `XADD lines:K * o <input offset> l <line>`.
//!   The offset lets the sink tell a resent line from a new one.
//! - **One XADD in flight.** A line counts as acknowledged when its XADD
//!   returned an entry id, and with `--wait N` only once `WAIT N TIMEOUT`
//!   then says at least N replicas have it (fewer: the line is resent).
//! - **No producer dedup.** Redis cannot recognise a resend: an XADD whose
//!   reply was lost (timeout, connection dropped, failover) may have been
//!   stored, and its resend stores the line again. A key's stream can
//!   therefore hold duplicates, and the profile's verify mode must be
//!   `at-least-once`.
//! - **Failover.** Any error drops the connection; the primary is found
//!   again through the Sentinels ([`crate::conn::connect_primary`]) and
//!   the same line is resent there, after an exponential back-off.
//! - **Restart.** A restarted feeder reads its status file's `acked`
//!   offset and goes on with the line after it.
//! - The status file and log lines are those of `crasher feed`
//!   ([`feeders::status::FeedStatus`], including `sent_bytes`).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use feeders::lines::LineFile;
use feeders::log::{py_bytes, Logger};
use feeders::status::{snapshot, stream_repr, unix_now, FeedStatus, StatusWriter};
use redis::aio::MultiplexedConnection;

use crate::conn::{self, Backoff};
use crate::error::DriverError;

/// Longest line accepted (Redis takes far more; a line this long is a bad
/// input file, not a workload).
pub const MAX_LINE: usize = 1024 * 1024;

/// Field of an entry holding the line's input offset.
pub const OFFSET_FIELD: &str = "o";
/// Field of an entry holding the line.
pub const LINE_FIELD: &str = "l";

const ACK_LOG_GAP: Duration = Duration::from_secs(1);

/// What `crasher redis-feed` is asked to do.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The line file; its name as given names the stream in the status
    /// file and logs.
    pub file: PathBuf,
    /// Every Sentinel's `HOST:PORT`.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    pub master: String,
    /// The Redis stream the lines go to (`lines:K`).
    pub stream: String,
    /// With `Some(n)`: a line counts only once `WAIT n` says n replicas have it.
    pub wait: Option<u32>,
    /// WAIT's own timeout.
    pub wait_timeout: Duration,
    /// How long a command may go unanswered before the connection is dropped.
    pub response_timeout: Duration,
    /// Payload bytes per second; 0 = unthrottled.
    pub rate: u64,
    /// Status file (same format as `crasher feed`).
    pub status_file: Option<PathBuf>,
    /// How the rate varies over time (`feeders::workload`).
    pub workload: feeders::workload::Workload,
    /// The shape's start, as Unix milliseconds (the run's start).
    pub workload_epoch: Option<u64>,
}

/// What a finished feed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedSummary {
    /// Lines acknowledged by this process.
    pub lines: u64,
    /// XADDs (or WAITs) that failed and were retried.
    pub retries: u64,
    /// Offset the process started from.
    pub resumed_from: u64,
}

pub use feeders::status::resume_offset;

/// Why a line must be sent again.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused or did not answer.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// `WAIT` saw fewer replicas than asked for.
    #[error("WAIT {want}: only {got} replica(s) acknowledged within the timeout")]
    Replicas {
        /// Asked for.
        want: u32,
        /// Acknowledged.
        got: i64,
    },
}

/// Appends one line (and with `wait`, waits for replicas); the entry id.
pub async fn send_line(
    con: &mut MultiplexedConnection,
    stream: &str,
    offset: u64,
    line: &[u8],
    wait: Option<(u32, Duration)>,
) -> Result<String, SendError> {
    let id: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(OFFSET_FIELD)
        .arg(offset)
        .arg(LINE_FIELD)
        .arg(line)
        .query_async(con)
        .await?;
    if let Some((want, timeout)) = wait {
        let got: i64 = redis::cmd("WAIT")
            .arg(want)
            .arg(timeout.as_millis() as u64)
            .query_async(con)
            .await?;
        if got < i64::from(want) {
            return Err(SendError::Replicas { want, got });
        }
    }
    Ok(id)
}

struct Feeder {
    cfg: FeedConfig,
    log: Logger,
    st: FeedStatus,
    name_repr: String,
    status: StatusWriter,
}

impl Feeder {
    fn repr(&self, por: u64) -> String {
        stream_repr(self.st.stream_id, &self.name_repr, por, self.st.is_open)
    }

    /// Rewrites the status file if `force` or if the last write is old
    /// enough ([`StatusWriter`]).
    fn save(&mut self, force: bool) -> Result<(), DriverError> {
        self.status.update(force, || snapshot(&self.st))?;
        Ok(())
    }
}

/// Feeds the whole file; returns once every line is acknowledged. Cluster
/// faults are retried forever; only local problems (unreadable input,
/// unwritable status file) end it early.
pub async fn run(cfg: FeedConfig, log: Logger) -> Result<FeedSummary, DriverError> {
    let name = cfg.file.as_os_str().as_bytes().to_vec();
    let stream_id = connector::stream_id_for(&name);
    let mut lines = LineFile::open(&cfg.file, MAX_LINE)?;
    let last_line = lines.last_line_offset()?;
    let resumed = cfg
        .status_file
        .as_deref()
        .and_then(|p| resume_offset(p, stream_id, &log));
    let mut f = Feeder {
        st: FeedStatus {
            file: String::from_utf8_lossy(&name).into_owned(),
            stream_id,
            connected: false,
            is_open: false,
            acked: resumed,
            sent: 0,
            sent_bytes: 0,
            last_line_offset: last_line.unwrap_or(0),
            done: false,
            notify_rejections: 0,
            restarts: 0,
            updated_unix: unix_now(),
        },
        name_repr: py_bytes(&name),
        status: StatusWriter::new(cfg.status_file.clone()),
        cfg,
        log,
    };
    // Resume with the line after the last acknowledged one.
    let start = match resumed {
        Some(acked) if acked < lines.size() && lines.is_line_start(acked)? => {
            lines.seek(acked)?;
            lines.next_line()?;
            lines.position()
        }
        Some(acked) => {
            f.log.warn(format_args!(
                "status file says offset {acked} was acknowledged, which is no line start of {}: starting from the beginning",
                f.name_repr
            ));
            0
        }
        None => 0,
    };
    let mut summary = FeedSummary {
        resumed_from: start,
        ..FeedSummary::default()
    };
    let finished = last_line.is_none() || resumed.is_some_and(|a| Some(a) == last_line);
    if finished {
        f.st.done = true;
        f.save(true)?;
        f.log
            .info(format_args!("{}: nothing (more) to feed", f.name_repr));
        return Ok(summary);
    }
    f.save(true)?;
    lines.seek(start)?;
    let wait = f.cfg.wait.map(|n| (n, f.cfg.wait_timeout));
    let mut primary = conn::connect_primary(
        &f.cfg.sentinels,
        &f.cfg.master,
        f.cfg.response_timeout,
        &f.log,
    )
    .await;
    f.st.connected = true;
    f.st.is_open = true;
    f.log.info(format_args!(
        "MultiSourceConnector stream_opened {}; sending from offset {start} to stream {} on {}",
        f.repr(start),
        f.cfg.stream,
        primary.addr
    ));
    f.save(true)?;

    let mut bucket = feeders::workload::bucket(
        f.cfg.rate,
        f.cfg.workload,
        f.cfg.workload_epoch,
        f.cfg.file.as_os_str().as_encoded_bytes(),
        Instant::now(),
    );
    let mut last_ack_log = Instant::now();
    let mut backoff = Backoff::new();
    while let Some((offset, line)) = lines.next_line()? {
        if let Some(b) = bucket.as_mut() {
            b.refill(Instant::now());
            while !b.may_send() {
                tokio::time::sleep_until(b.ready_at().into()).await;
                b.refill(Instant::now());
            }
            b.consume(line.len());
        }
        loop {
            f.st.sent += 1;
            f.st.sent_bytes += line.len() as u64;
            match send_line(&mut primary.con, &f.cfg.stream, offset, line, wait).await {
                Ok(_) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    summary.retries += 1;
                    f.st.connected = false;
                    f.save(false)?;
                    backoff
                        .fail(
                            &f.log,
                            format_args!(
                                "XADD of offset {offset} to {} on {}: {e}",
                                f.cfg.stream, primary.addr
                            ),
                        )
                        .await;
                    // Whatever failed, the primary may have changed.
                    primary = conn::connect_primary(
                        &f.cfg.sentinels,
                        &f.cfg.master,
                        f.cfg.response_timeout,
                        &f.log,
                    )
                    .await;
                    f.st.connected = true;
                }
            }
        }
        summary.lines += 1;
        f.st.acked = Some(offset);
        let last = Some(offset) == last_line;
        if last || last_ack_log.elapsed() >= ACK_LOG_GAP {
            f.log.info(format_args!(
                "MultiSourceConnector acked {}",
                f.repr(offset)
            ));
            last_ack_log = Instant::now();
        }
        if last {
            break;
        }
        f.save(false)?;
    }
    f.st.done = true;
    f.save(true)?;
    f.log.info(format_args!(
        "done: every line of b'{}' acknowledged ({} line(s) by this process from offset {}, {} retried send(s))",
        f.name_repr, summary.lines, summary.resumed_from, summary.retries
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_from_its_own_status_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("st");
        let log = Logger::stderr("test");
        assert_eq!(resume_offset(&p, 7, &log), None);
        let st = FeedStatus {
            file: "f".into(),
            stream_id: 7,
            connected: true,
            is_open: true,
            acked: Some(490),
            sent: 11,
            sent_bytes: 0,
            last_line_offset: 1000,
            done: false,
            notify_rejections: 0,
            restarts: 0,
            updated_unix: 1.0,
        };
        st.write_atomic(&p).unwrap();
        assert_eq!(resume_offset(&p, 7, &log), Some(490));
        assert_eq!(resume_offset(&p, 8, &log), None);
    }

    /// A feeder whose status file says its last line was acknowledged has
    /// nothing to send: it must finish without any Redis server (the
    /// Sentinel list points nowhere).
    #[test]
    fn a_finished_feed_ends_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("A.txt");
        std::fs::write(&input, b"A0000000 x\nA0000011 y\n").unwrap();
        let status = dir.path().join("st");
        let name = input.as_os_str().as_bytes();
        let mut st = FeedStatus {
            file: input.display().to_string(),
            stream_id: connector::stream_id_for(name),
            connected: true,
            is_open: true,
            acked: Some(11),
            sent: 2,
            sent_bytes: 22,
            last_line_offset: 11,
            done: false,
            notify_rejections: 0,
            restarts: 0,
            updated_unix: 1.0,
        };
        st.write_atomic(&status).unwrap();
        let cfg = FeedConfig {
            file: input,
            sentinels: vec!["127.0.0.1:1".into()],
            master: "m".into(),
            stream: "lines:A".into(),
            wait: None,
            wait_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            rate: 0,
            status_file: Some(status.clone()),
            workload: Default::default(),
            workload_epoch: None,
        };
        let s = conn::block_on(run(cfg, Logger::stderr("test")))
            .unwrap()
            .unwrap();
        assert_eq!(s.lines, 0);
        st = FeedStatus::read(&status).unwrap();
        assert!(st.done);
        assert_eq!(st.acked, Some(11));
    }
}
