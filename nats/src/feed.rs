//! `crasher nats-feed`: publishes one line file to one JetStream subject,
//! exactly once and in order as far as the publisher can make it.
//!
//! - Every line is one message whose `Nats-Msg-Id` is
//!   `<stream id, 16 hex digits>-<byte offset of the line>`, so a resend of
//!   a line is recognised by the stream's duplicate window and stored once.
//! - **One publish in flight.** A line is sent, its PubAck awaited, and only
//!   then the next line is sent. With several in flight, a failed publish
//!   (no leader yet: "no responders"; a timeout) can be followed by a later
//!   line that succeeds on the new leader; the resend of the failed line
//!   then lands *after* it, and the feeder itself would have reordered the
//!   key. One in flight costs throughput (one replicated round trip per
//!   line) but leaves the stream's order to the cluster alone.
//! - Failures (timeouts, no responders, lost connections) are retried with
//!   the same id after an exponential back-off (50 ms to 1 s; never a spin).
//! - **Restart.** The status file is the feeder's memory: a restarted feeder
//!   reads its `acked` offset and resends from that line (already stored,
//!   so the duplicate window absorbs it and anything else sent but not yet
//!   acknowledged when it died).
//! - Status file and log lines are those of `crasher feed`
//!   ([`feeders::status::FeedStatus`]; `MultiSourceConnector acked
//!   Stream(...)`), which the soak's progress checks read. `acked` is the
//!   start offset of the last line whose PubAck arrived; `done` is set once
//!   the last line is acknowledged, and the process exits 0.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::PublishMessage;
use async_nats::{connection::State, ServerAddr};
use bytes::Bytes;
use feeders::lines::LineFile;
use feeders::log::{py_bytes, Logger};
use feeders::status::{snapshot, stream_repr, unix_now, FeedStatus, StatusWriter};

use crate::conn::{self, Backoff};
use crate::error::NatsError;

/// Longest line accepted: NATS's default maximum payload (1 MiB) less room
/// for the headers.
pub const MAX_LINE: usize = 1024 * 1024 - 4096;

/// How often the status file is rewritten at most, and the acked log line
/// printed at most.
const ACK_LOG_GAP: Duration = Duration::from_secs(1);

/// What `crasher nats-feed` is asked to do.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The line file; its name as given is the stream name of the status
    /// file and logs, and its hash the id prefix.
    pub file: PathBuf,
    /// Every node's client URL.
    pub servers: Vec<ServerAddr>,
    /// JetStream stream name.
    pub stream: String,
    /// Subject the lines are published to (`lines.K`).
    pub subject: String,
    /// Subjects of the stream when the feeder has to create it.
    pub stream_subjects: String,
    /// Payload bytes per second; 0 = unthrottled.
    pub rate: u64,
    /// Status file (same format as `crasher feed`).
    pub status_file: Option<PathBuf>,
    /// Replicas of the stream when the feeder creates it.
    pub replicas: usize,
    /// Duplicate window of the stream when the feeder creates it.
    pub duplicate_window: Duration,
    /// How long to wait for a PubAck before resending.
    pub ack_timeout: Duration,
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
    /// Publishes that failed and were retried.
    pub retries: u64,
    /// PubAcks that said "duplicate" (a resend of a line already stored).
    pub duplicates: u64,
    /// Offset the process started from.
    pub resumed_from: u64,
}

/// The `Nats-Msg-Id` of the line at `offset` of the stream `stream_id`.
pub fn msg_id(stream_id: u64, offset: u64) -> String {
    format!("{stream_id:016x}-{offset}")
}

pub use feeders::status::resume_offset;

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
    fn save(&mut self, force: bool) -> Result<(), NatsError> {
        self.status.update(force, || snapshot(&self.st))?;
        Ok(())
    }
}

/// Feeds the whole file; returns once every line is acknowledged. Cluster
/// faults are retried forever; only local problems (unreadable input,
/// unwritable status file) end it early.
pub async fn run(cfg: FeedConfig, log: Logger) -> Result<FeedSummary, NatsError> {
    let name = cfg.file.as_os_str().as_bytes().to_vec();
    let stream_id = connector::stream_id_for(&name);
    let mut lines = LineFile::open(&cfg.file, MAX_LINE)?;
    let last_line = lines.last_line_offset()?;
    let resumed = cfg
        .status_file
        .as_deref()
        .and_then(|p| resume_offset(p, stream_id, &log));
    let start = resumed.unwrap_or(0).min(lines.size());
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
    let mut summary = FeedSummary {
        resumed_from: start,
        ..FeedSummary::default()
    };
    if last_line.is_none() {
        f.st.done = true;
        f.save(true)?;
        f.log
            .info(format_args!("{} is empty: nothing to feed", f.name_repr));
        return Ok(summary);
    }
    f.save(true)?;

    let client = conn::connect(f.cfg.servers.clone(), "crasher-nats-feed", &f.log).await?;
    let js = ContextBuilder::new()
        .timeout(f.cfg.ack_timeout)
        .build(client.clone());
    conn::ensure_stream(
        &js,
        conn::stream_config(
            &f.cfg.stream,
            &f.cfg.stream_subjects,
            f.cfg.replicas,
            f.cfg.duplicate_window,
        ),
        &f.log,
    )
    .await;
    f.st.connected = client.connection_state() == State::Connected;
    f.st.is_open = true;
    f.log.info(format_args!(
        "MultiSourceConnector stream_opened {}; sending from offset {start} to subject {}",
        f.repr(start),
        f.cfg.subject
    ));
    f.save(true)?;

    lines.seek(start)?;
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
        let payload = Bytes::copy_from_slice(line);
        if let Some(b) = bucket.as_mut() {
            b.refill(Instant::now());
            // A shaped rate's wait is a guess: ask again after it.
            while !b.may_send() {
                tokio::time::sleep_until(b.ready_at().into()).await;
                b.refill(Instant::now());
            }
            b.consume(payload.len());
        }
        let msg = PublishMessage::build()
            .payload(payload)
            .message_id(msg_id(stream_id, offset));
        loop {
            f.st.sent += 1;
            f.st.sent_bytes += line.len() as u64;
            let result = match js.send_publish(f.cfg.subject.clone(), msg.clone()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => {
                    summary.duplicates += u64::from(ack.duplicate);
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    summary.retries += 1;
                    f.st.connected = client.connection_state() == State::Connected;
                    f.save(false)?;
                    backoff
                        .fail(
                            &f.log,
                            format_args!("publish of offset {offset} to {}: {e}", f.cfg.subject),
                        )
                        .await;
                }
            }
        }
        summary.lines += 1;
        f.st.acked = Some(offset);
        f.st.connected = true;
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
        "done: every line of b'{}' acknowledged ({} line(s) by this process from offset {}, {} retried publish(es), {} duplicate PubAck(s))",
        f.name_repr, summary.lines, summary.resumed_from, summary.retries, summary.duplicates
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stream_hex_and_offset() {
        assert_eq!(msg_id(0x26a1_f88b_80d2_ec70, 0), "26a1f88b80d2ec70-0");
        assert_eq!(msg_id(1, 12_368_928), "0000000000000001-12368928");
    }

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
}
