//! `crasher nats-sink`: reads the whole stream through a durable pull
//! consumer and commits it to files the verifier already understands.
//!
//! - Each batch's payloads are appended to `PREFIX.nats` and fsync'd; then
//!   one `2-ok` record (the 2PC sink's txnlog format, [`verify::txnlog`])
//!   with the file's new end is appended to `PREFIX.nats.txnlog` and
//!   fsync'd; only then is the batch acknowledged (AckAll on its last
//!   message). A key has one subject and JetStream keeps per-subject order,
//!   so each key's lines stay in order in the output.
//! - The txnlog record's transaction id names the stream sequence of the
//!   batch's last message (`nats-sink:DURABLE:nats-seq=N`).
//! - **Restart.** The txnlog is the truth: a torn last record is cut off,
//!   the output is truncated to the last committed offset, and the consumer
//!   is re-created to deliver from the sequence after the last committed
//!   one. (Resuming from the consumer's own ack floor is not enough: the
//!   messages delivered but unacknowledged when the sink died are only
//!   redelivered after the ack wait, *after* newer ones, which would
//!   reorder the output.) Messages at or below the last committed sequence
//!   that still arrive (an ack lost on its way) are skipped, so the sink
//!   never writes a line twice.
//! - **Gaps.** The stream's sequences are consecutive (nothing deletes
//!   messages), so a message whose sequence is not the next one means
//!   deliveries were lost in transit (a connection dropped mid-batch); the
//!   consumer is re-created from the next expected sequence. If the first
//!   message after that still skips ahead, the stream itself lacks those
//!   sequences: the sink writes on and leaves the verdict to the verifier.
//! - `--listen` binds a TCP port that accepts and closes connections, for a
//!   supervisor that waits for its sink to listen before starting anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream::Stream};
use async_nats::ServerAddr;
use futures::StreamExt;
use verify::sinkfiles::SinkFiles;

use crate::conn::{self, Backoff};
use crate::error::NatsError;
use feeders::log::Logger;

/// How long a pull request waits for messages before it ends a batch.
const BATCH_EXPIRES: Duration = Duration::from_millis(500);
/// How long beyond that a silent server is waited for.
const BATCH_GRACE: Duration = Duration::from_secs(3);
/// Unacknowledged messages are redelivered after this long.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Consecutive failed pull requests after which the consumer is re-created.
const RECREATE_AFTER: u64 = 5;
/// How often progress is logged at most.
const PROGRESS_GAP: Duration = Duration::from_secs(2);

/// What `crasher nats-sink` is asked to do.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Every node's client URL.
    pub servers: Vec<ServerAddr>,
    /// JetStream stream name.
    pub stream: String,
    /// Subjects of the stream when the sink has to create it.
    pub stream_subjects: String,
    /// Durable consumer name.
    pub durable: String,
    /// Output prefix: data in `PREFIX.nats`, txnlog in `PREFIX.nats.txnlog`.
    pub output: PathBuf,
    /// Optional liveness listener address.
    pub listen: Option<String>,
    /// Write the listener's bound address here (atomically).
    pub ready_file: Option<PathBuf>,
    /// Replicas of the stream when the sink creates it.
    pub replicas: usize,
    /// Duplicate window of the stream when the sink creates it.
    pub duplicate_window: Duration,
    /// Most messages per batch (one commit each).
    pub batch: usize,
}

/// The data file of output prefix `prefix`.
pub fn data_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".nats");
    PathBuf::from(s)
}

/// The txnlog of output prefix `prefix`.
pub fn txnlog_path(prefix: &Path) -> PathBuf {
    let mut s = data_path(prefix).into_os_string();
    s.push(".txnlog");
    PathBuf::from(s)
}

/// The transaction id recorded for a batch ending at stream sequence `seq`.
pub fn txn_id(durable: &str, seq: u64) -> String {
    format!("nats-sink:{durable}:nats-seq={seq}")
}

/// The stream sequence a transaction id records, if it is one of ours.
pub fn seq_of_txn_id(id: &str) -> Option<u64> {
    id.rsplit_once("nats-seq=")?.1.parse().ok()
}

/// What the sink has committed, as its txnlog says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// End of the committed output (the data file's length after recovery).
    pub offset: u64,
    /// Stream sequence of the last committed message (0: none yet).
    pub last_seq: u64,
    /// Commits recorded so far.
    pub commits: u64,
}

/// The sink's two files, opened and recovered
/// ([`verify::sinkfiles::SinkFiles`]), and the stream sequence its
/// transaction ids record.
#[derive(Debug)]
pub struct Output {
    files: SinkFiles,
    durable: String,
    /// What is committed now.
    pub committed: Committed,
}

impl Output {
    /// Opens (creating if needed) and recovers the files of `prefix`
    /// ([`SinkFiles::open`]) and finds the last committed stream sequence.
    pub fn open(prefix: &Path, durable: &str, log: &Logger) -> Result<Output, NatsError> {
        let mut last_seq = 0;
        let (files, repairs) = SinkFiles::open(&data_path(prefix), &txnlog_path(prefix), |id| {
            last_seq = seq_of_txn_id(id).unwrap_or(last_seq);
        })?;
        if let Some(n) = repairs.torn_note(&files) {
            log.warn(format_args!("{n}"));
        }
        if let Some(n) = repairs.tail_note(&files) {
            log.info(format_args!("{n}"));
        }
        let committed = Committed {
            offset: files.end,
            last_seq,
            commits: files.commits,
        };
        log.info(format_args!(
            "output {} recovered: {} committed bytes, {} commit(s), last stream sequence {}",
            files.data_path().display(),
            committed.offset,
            committed.commits,
            committed.last_seq
        ));
        Ok(Output {
            files,
            durable: durable.to_owned(),
            committed,
        })
    }

    /// Appends `bytes` (the payloads of messages up to stream sequence
    /// `last_seq`), syncs, and records the commit in the txnlog, synced.
    pub fn commit(&mut self, bytes: &[u8], last_seq: u64) -> Result<(), NatsError> {
        self.committed.offset = self.files.commit(bytes, txn_id(&self.durable, last_seq))?;
        self.committed.last_seq = last_seq;
        self.committed.commits = self.files.commits;
        Ok(())
    }

    /// The data file's current end (for tests).
    pub fn data_len(&mut self) -> Result<u64, NatsError> {
        Ok(self.files.data_len()?)
    }
}

/// Deletes the durable consumer (if any) and creates it anew, delivering
/// from `from_seq` (the whole stream when 1). Retries until it works.
async fn fresh_consumer(
    stream: &Stream,
    durable: &str,
    from_seq: u64,
    batch: usize,
    log: &Logger,
) -> PullConsumer {
    let mut backoff = Backoff::new();
    loop {
        // Failing to delete a consumer that does not exist is expected; a
        // real failure shows up as the creation failing.
        let _ = stream.delete_consumer(durable).await;
        let config = pull::Config {
            durable_name: Some(durable.to_owned()),
            deliver_policy: if from_seq <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: from_seq,
                }
            },
            ack_policy: AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: (batch as i64).saturating_mul(10),
            ..Default::default()
        };
        match stream.create_consumer(config).await {
            Ok(c) => {
                log.info(format_args!(
                    "consumer {durable} delivers from stream sequence {from_seq}"
                ));
                return c;
            }
            Err(e) => {
                backoff
                    .fail(log, format_args!("creating consumer {durable}: {e}"))
                    .await
            }
        }
    }
}

/// Binds the liveness listener, reports its address, and serves it in the
/// background (each connection is accepted and closed).
async fn listen(addr: &str, ready_file: Option<&Path>, log: &Logger) -> Result<(), NatsError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NatsError::Listen {
            addr: addr.to_owned(),
            source,
        })?;
    let bound = l.local_addr().map_err(|source| NatsError::Listen {
        addr: addr.to_owned(),
        source,
    })?;
    log.info(format_args!("listening on {bound}"));
    if let Some(p) = ready_file {
        feeders::atomic::write_atomic(p, bound.to_string().as_bytes()).map_err(NatsError::io(p))?;
    }
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        }
    });
    Ok(())
}

/// Runs the sink until killed. Returns only on a local failure (files,
/// listener, settings); every cluster fault is waited out.
pub async fn run(cfg: SinkConfig, log: Logger) -> Result<(), NatsError> {
    if let Some(addr) = &cfg.listen {
        listen(addr, cfg.ready_file.as_deref(), &log).await?;
    }
    let mut out = Output::open(&cfg.output, &cfg.durable, &log)?;
    let client = conn::connect(cfg.servers.clone(), "crasher-nats-sink", &log).await?;
    let js = jetstream::new(client);
    let stream = conn::ensure_stream(
        &js,
        conn::stream_config(
            &cfg.stream,
            &cfg.stream_subjects,
            cfg.replicas,
            cfg.duplicate_window,
        ),
        &log,
    )
    .await;
    let batch = cfg.batch.max(1);
    let mut consumer = fresh_consumer(
        &stream,
        &cfg.durable,
        out.committed.last_seq + 1,
        batch,
        &log,
    )
    .await;
    let mut backoff = Backoff::new();
    // The next sequence at which a gap made us re-create the consumer.
    let mut gap_retried_at: Option<u64> = None;
    let mut skipped = 0u64;
    let mut last_progress = Instant::now();
    let mut buf = Vec::new();
    loop {
        let asked = Instant::now();
        let pulled = tokio::time::timeout(
            BATCH_EXPIRES + BATCH_GRACE,
            consumer
                .batch()
                .max_messages(batch)
                .expires(BATCH_EXPIRES)
                .messages(),
        )
        .await;
        let mut messages = match pulled {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                pull_failed(&mut backoff, &mut consumer, &stream, &cfg, &out, &log, &e).await;
                continue;
            }
            Err(_) => {
                let e = "no answer to the pull request";
                pull_failed(&mut backoff, &mut consumer, &stream, &cfg, &out, &log, &e).await;
                continue;
            }
        };
        buf.clear();
        let mut seq = out.committed.last_seq;
        let mut to_ack = None;
        let mut recreate = false;
        // Why the batch ended early, if it did.
        let mut failure: Option<String> = None;
        loop {
            let next = tokio::time::timeout(BATCH_EXPIRES + BATCH_GRACE, messages.next()).await;
            let msg = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    failure = Some(format!("pull batch ended: {e}"));
                    break;
                }
                // A pull that ends empty long before it expires is a
                // refusal in disguise: treated as a failure, so never a spin.
                Ok(None) if to_ack.is_none() && asked.elapsed() < BATCH_EXPIRES / 2 => {
                    failure = Some("pull batch ended at once with no message".into());
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    failure = Some("pull batch: no answer".into());
                    break;
                }
            };
            let got = match msg.info() {
                Ok(i) => i.stream_sequence,
                Err(e) => {
                    log.warn(format_args!(
                        "a message without JetStream metadata ({e}); re-creating the consumer"
                    ));
                    recreate = true;
                    break;
                }
            };
            if got <= seq {
                // Redelivered: committed already (its ack was lost).
                skipped += 1;
                to_ack = Some(msg);
                continue;
            }
            // (Sequences start at 1, so the first message is checked too.)
            if got != seq + 1 {
                if gap_retried_at != Some(seq + 1) {
                    log.warn(format_args!(
                        "delivery skipped from stream sequence {} to {got}; re-creating the consumer from {}",
                        seq + 1,
                        seq + 1
                    ));
                    recreate = true;
                    break;
                }
                log.warn(format_args!(
                    "the stream has no messages {}..{got} even when read again; writing on",
                    seq + 1
                ));
            }
            gap_retried_at = None;
            buf.extend_from_slice(&msg.payload);
            seq = got;
            to_ack = Some(msg);
        }
        if seq > out.committed.last_seq {
            out.commit(&buf, seq)?;
        }
        match to_ack {
            Some(m) => {
                if let Err(e) = m.ack().await {
                    log.warn(format_args!("ack up to stream sequence {seq} failed: {e}"));
                }
                backoff.reset();
            }
            // Nothing delivered and an error (no responders while the
            // consumer has no leader...): wait before asking again.
            None => {
                if let Some(e) = failure {
                    if !recreate {
                        pull_failed(&mut backoff, &mut consumer, &stream, &cfg, &out, &log, &e)
                            .await;
                    }
                }
            }
        }
        if recreate {
            gap_retried_at = Some(out.committed.last_seq + 1);
            consumer = fresh_consumer(
                &stream,
                &cfg.durable,
                out.committed.last_seq + 1,
                batch,
                &log,
            )
            .await;
        }
        if last_progress.elapsed() >= PROGRESS_GAP {
            last_progress = Instant::now();
            log.info(format_args!(
                "committed {} bytes up to stream sequence {} ({} commit(s); {} redelivered message(s) skipped)",
                out.committed.offset, out.committed.last_seq, out.committed.commits, skipped
            ));
        }
    }
}

/// A pull request failed: back off, and after several failures in a row
/// re-create the consumer (it may have been lost with its leader).
async fn pull_failed(
    backoff: &mut Backoff,
    consumer: &mut PullConsumer,
    stream: &Stream,
    cfg: &SinkConfig,
    out: &Output,
    log: &Logger,
    e: &dyn std::fmt::Display,
) {
    backoff.fail(log, format_args!("pull request: {e}")).await;
    if backoff.failures() % RECREATE_AFTER == 0 {
        *consumer = fresh_consumer(
            stream,
            &cfg.durable,
            out.committed.last_seq + 1,
            cfg.batch.max(1),
            log,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use verify::txnlog::{self, Record};

    fn quiet() -> Logger {
        Logger::stderr("test")
    }

    #[test]
    fn paths_and_txn_ids() {
        let p = Path::new("/x/sink/output");
        assert_eq!(data_path(p), Path::new("/x/sink/output.nats"));
        assert_eq!(txnlog_path(p), Path::new("/x/sink/output.nats.txnlog"));
        assert_eq!(txn_id("checker", 42), "nats-sink:checker:nats-seq=42");
        assert_eq!(seq_of_txn_id(&txn_id("c", 7)), Some(7));
        assert_eq!(seq_of_txn_id("Passthrough-w-worker1-id-1:c_id=5"), None);
    }

    #[test]
    fn commits_are_recovered_and_the_uncommitted_tail_cut() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        assert_eq!(out.committed, Committed::default());
        out.commit(b"A0000000 x\n", 3).unwrap();
        out.commit(b"A0000020 y\nB0000000 z\n", 9).unwrap();
        drop(out);
        // An uncommitted tail and a torn txnlog record, as after a SIGKILL.
        let mut f = OpenOptions::new()
            .append(true)
            .open(data_path(&prefix))
            .unwrap();
        f.write_all(b"A0000040 uncommitted\n").unwrap();
        let mut t = OpenOptions::new()
            .append(true)
            .open(txnlog_path(&prefix))
            .unwrap();
        t.write_all(b"[1.0,\"2-ok\",\"nats-sink:c").unwrap();
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        assert_eq!(
            out.committed,
            Committed {
                offset: 33,
                last_seq: 9,
                commits: 2
            }
        );
        assert_eq!(out.data_len().unwrap(), 33);
        // Appending after recovery leaves a txnlog the verifier reads.
        out.commit(b"B0000020 w\n", 10).unwrap();
        let entries = txnlog::read(&txnlog_path(&prefix)).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[2].record,
            Record::Phase2Ok {
                txn_id: "nats-sink:checker:nats-seq=10".into(),
                offset: 44
            }
        );
        assert_eq!(
            std::fs::read(data_path(&prefix)).unwrap(),
            b"A0000000 x\nA0000020 y\nB0000000 z\nB0000020 w\n"
        );
    }

    #[test]
    fn committed_bytes_missing_from_the_data_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        out.commit(b"A0000000 x\n", 1).unwrap();
        drop(out);
        std::fs::write(data_path(&prefix), b"A00").unwrap();
        let e = Output::open(&prefix, "checker", &quiet()).unwrap_err();
        assert!(
            matches!(
                e,
                NatsError::SinkFiles(verify::sinkfiles::SinkFilesError::CommittedMissing { .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("output.nats"), "{e}");
    }
}
