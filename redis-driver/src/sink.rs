//! `crasher redis-sink`: reads every key's stream through a consumer group
//! and commits it to files the verifier already understands.
//!
//! - **Streams.** Every stream whose name starts with `--stream-prefix`
//!   (`lines:`) is found with `SCAN ... TYPE stream` (again every second),
//!   and read through the consumer group `--group` (created at id 0 if
//!   missing, `MKSTREAM`), always as the same consumer (`--consumer`).
//!   One consumer per group reads each stream in entry order, so each
//!   key's lines stay in order.
//! - **Commit, then XACK.** Each batch's lines are appended to
//!   `PREFIX.redis` and fsync'd; then one `2-ok` record (the 2PC sink's
//!   txnlog format, [`verify::txnlog`]) with the file's new end is appended
//!   to `PREFIX.redis.txnlog` and fsync'd; only then are the batch's entries
//!   acknowledged (`XACK`). The record's transaction id names, per stream
//!   of the batch, the input offset of its last line
//!   (`redis-sink:GROUP:offsets=lines:A=1234,lines:B=88`).
//! - **No line twice when it can tell.** Every entry carries its line's
//!   input offset; an entry at or below the last committed offset of its
//!   stream (a feeder's resend after a lost reply, a redelivery after a
//!   lost XACK or a failover) is acknowledged and skipped, never written.
//! - **Restart.** The txnlog is the truth: a torn last record is cut off,
//!   the output truncated to the last committed offset, and the per-stream
//!   offsets rebuilt. The entries delivered but not acknowledged when the
//!   sink died are still in the group's pending list: after every
//!   (re)connection they are read first (`XREADGROUP ... 0`, this
//!   consumer's own pending entries, which a fixed consumer name makes
//!   unnecessary to `XAUTOCLAIM`), then new ones (`>`).
//! - **Failover.** Any error drops the connection; the primary is found
//!   again through the Sentinels, the groups are created if the new primary
//!   lacks them (at id 0: everything is delivered again and skipped by
//!   offset), and the pending entries are read again.
//! - **Gaps are written.** An entry whose offset is not the next line of
//!   its key (entries lost at a failover) is written all the same: the
//!   sink cannot repair a loss, and the verifier must see it.
//! - `--listen` binds a TCP port that accepts and closes connections, for a
//!   supervisor that waits for its sink to listen before starting anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feeders::log::Logger;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use redis::Value;
use verify::sinkfiles::SinkFiles;

use crate::conn::{self, Backoff};
use crate::error::DriverError;
use crate::feed::{LINE_FIELD, OFFSET_FIELD};

/// How long an `XREADGROUP` blocks waiting for new entries.
const BLOCK: Duration = Duration::from_millis(500);
/// How often the stream list is scanned again.
const RESCAN: Duration = Duration::from_secs(1);
/// How often progress is logged at most.
const PROGRESS_GAP: Duration = Duration::from_secs(2);
/// How often each consumer looks for entries to claim (`XAUTOCLAIM`).
const CLAIM_EVERY: Duration = Duration::from_secs(5);
/// Most `XAUTOCLAIM` pages per stream per look.
const CLAIM_PAGES: usize = 8;

/// What `crasher redis-sink` is asked to do.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Every Sentinel's `HOST:PORT`.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    pub master: String,
    /// Streams read: every one whose name starts with this.
    pub stream_prefix: String,
    /// Consumer group.
    pub group: String,
    /// Consumer name inside the group.
    pub consumer: String,
    /// Output prefix: data in `PREFIX.redis`, txnlog in `PREFIX.redis.txnlog`.
    pub output: PathBuf,
    /// Optional liveness listener address.
    pub listen: Option<String>,
    /// Write the listener's bound address here (atomically).
    pub ready_file: Option<PathBuf>,
    /// Most entries per stream per read (one commit per read).
    pub batch: usize,
    /// How long a command may go unanswered (beyond XREADGROUP's block)
    /// before the connection is dropped.
    pub response_timeout: Duration,
    /// Consumers in the group, each on its own connection (`--consumers`):
    /// 1 reads each stream in order; more share the entries (work-queue
    /// order).
    pub consumers: usize,
    /// An entry pending this long with another consumer of the group (one
    /// that died, or no longer exists) is claimed (`XAUTOCLAIM`).
    pub claim_idle: Duration,
}

impl SinkConfig {
    /// The name of consumer `i` of [`SinkConfig::consumers`]: `--consumer`
    /// itself when there is one, `NAME-i` when there are several (fixed
    /// names, so a restarted sink reads its own pending entries again).
    pub fn consumer_name(&self, i: usize) -> String {
        if self.consumers <= 1 {
            self.consumer.clone()
        } else {
            format!("{}-{i}", self.consumer)
        }
    }
}

/// The data file of output prefix `prefix`.
pub fn data_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".redis");
    PathBuf::from(s)
}

/// The txnlog of output prefix `prefix`.
pub fn txnlog_path(prefix: &Path) -> PathBuf {
    let mut s = data_path(prefix).into_os_string();
    s.push(".txnlog");
    PathBuf::from(s)
}

/// The transaction id recorded for a batch whose last line per stream is
/// at the given input offsets.
pub fn txn_id(group: &str, offsets: &BTreeMap<String, u64>) -> String {
    let pairs: Vec<String> = offsets.iter().map(|(s, o)| format!("{s}={o}")).collect();
    format!("redis-sink:{group}:offsets={}", pairs.join(","))
}

/// The per-stream offsets a transaction id records, if it is one of ours.
pub fn offsets_of_txn_id(id: &str) -> Option<BTreeMap<String, u64>> {
    let (_, list) = id.rsplit_once(":offsets=")?;
    let mut m = BTreeMap::new();
    for pair in list.split(',').filter(|p| !p.is_empty()) {
        let (s, o) = pair.rsplit_once('=')?;
        m.insert(s.to_owned(), o.parse().ok()?);
    }
    Some(m)
}

/// Whether a stream name can be recorded in a transaction id.
pub fn usable_stream_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([',', '=', '\n', '"', '\\'])
}

/// What the sink has committed, as its txnlog says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// End of the committed output (the data file's length after recovery).
    pub offset: u64,
    /// Input offset of the last committed line, per stream.
    pub last: BTreeMap<String, u64>,
    /// Commits recorded so far.
    pub commits: u64,
}

/// The sink's two files, opened and recovered ([`SinkFiles`]), and what
/// its transaction ids record.
#[derive(Debug)]
pub struct Output {
    files: SinkFiles,
    group: String,
    /// What is committed now.
    pub committed: Committed,
}

impl Output {
    /// Opens (creating if needed) and recovers the files of `prefix`
    /// ([`SinkFiles::open`]) and rebuilds the per-stream offsets from the
    /// committed transaction ids.
    pub fn open(prefix: &Path, group: &str, log: &Logger) -> Result<Output, DriverError> {
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let (files, repairs) = SinkFiles::open(&data_path(prefix), &txnlog_path(prefix), |id| {
            for (s, o) in offsets_of_txn_id(id).unwrap_or_default() {
                let l = last.entry(s).or_insert(o);
                *l = (*l).max(o);
            }
        })?;
        if let Some(n) = repairs.torn_note(&files) {
            log.warn(format_args!("{n}"));
        }
        if let Some(n) = repairs.tail_note(&files) {
            log.info(format_args!("{n}"));
        }
        let committed = Committed {
            offset: files.end,
            last,
            commits: files.commits,
        };
        log.info(format_args!(
            "output {} recovered: {} committed bytes, {} commit(s), last offsets {:?}",
            files.data_path().display(),
            committed.offset,
            committed.commits,
            committed.last
        ));
        Ok(Output {
            files,
            group: group.to_owned(),
            committed,
        })
    }

    /// Appends `bytes` (lines whose last input offsets per stream are
    /// `offsets`), syncs, and records the commit in the txnlog, synced.
    pub fn commit(
        &mut self,
        bytes: &[u8],
        offsets: &BTreeMap<String, u64>,
    ) -> Result<(), DriverError> {
        self.committed.offset = self.files.commit(bytes, txn_id(&self.group, offsets))?;
        for (s, o) in offsets {
            self.committed.last.insert(s.clone(), *o);
        }
        self.committed.commits = self.files.commits;
        Ok(())
    }

    /// The data file's current end (for tests).
    pub fn data_len(&mut self) -> Result<u64, DriverError> {
        Ok(self.files.data_len()?)
    }
}

/// One entry as the sink sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The entry id.
    pub id: String,
    /// Its input offset (`None`: the entry has no readable offset field).
    pub offset: Option<u64>,
    /// The line (`None`: the entry has no line field).
    pub line: Option<Vec<u8>>,
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Reads the offset and line fields of an entry.
pub fn line_of(e: &StreamId) -> Line {
    let offset = e
        .map
        .get(OFFSET_FIELD)
        .and_then(bytes_of)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok());
    Line {
        id: e.id.clone(),
        offset,
        line: e.map.get(LINE_FIELD).and_then(bytes_of),
    }
}

/// What one batch adds: bytes to write, per-stream last offsets, and the
/// ids to acknowledge after the commit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Lines to append.
    pub bytes: Vec<u8>,
    /// Input offset of the last written line, per stream.
    pub offsets: BTreeMap<String, u64>,
    /// Entry ids to acknowledge, per stream.
    pub ack: BTreeMap<String, Vec<String>>,
    /// Entries skipped as already committed.
    pub skipped: u64,
    /// Entries without a line field.
    pub malformed: u64,
}

impl Batch {
    /// Adds `stream`'s entries in order. With `dedup` (one consumer, so
    /// each stream is read in order), a line at or below the last committed
    /// (or already batched) offset of its stream is skipped, and the last
    /// offset is recorded; without it (several consumers share a stream,
    /// offsets arrive in any order) every line is written and no offset is
    /// recorded.
    pub fn add(&mut self, stream: &str, entries: &[Line], committed: &Committed, dedup: bool) {
        for e in entries {
            self.ack
                .entry(stream.to_owned())
                .or_default()
                .push(e.id.clone());
            let Some(line) = &e.line else {
                self.malformed += 1;
                continue;
            };
            let last = self
                .offsets
                .get(stream)
                .or_else(|| committed.last.get(stream))
                .filter(|_| dedup);
            if let (Some(o), Some(last)) = (e.offset, last) {
                if o <= *last {
                    self.skipped += 1;
                    continue;
                }
            }
            self.bytes.extend_from_slice(line);
            if let (true, Some(o)) = (dedup, e.offset) {
                self.offsets.insert(stream.to_owned(), o);
            }
        }
    }
}

/// Binds the liveness listener, reports its address, and serves it in the
/// background (each connection is accepted and closed).
async fn listen(addr: &str, ready_file: Option<&Path>, log: &Logger) -> Result<(), DriverError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DriverError::Listen {
            addr: addr.to_owned(),
            source,
        })?;
    let bound = l.local_addr().map_err(|source| DriverError::Listen {
        addr: addr.to_owned(),
        source,
    })?;
    log.info(format_args!("listening on {bound}"));
    if let Some(p) = ready_file {
        feeders::atomic::write_atomic(p, bound.to_string().as_bytes())
            .map_err(DriverError::io(p))?;
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

/// Per-stream reading state on the current connection.
#[derive(Debug, Clone, Default)]
struct StreamState {
    /// Where the pending list is read from next; `None` once it is drained.
    pending_from: Option<String>,
}

/// Why serving on one connection ended.
enum Stop {
    /// The server failed: reconnect.
    Redis(String),
    /// A local failure: end the sink.
    Fatal(DriverError),
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Stop {
        Stop::Redis(e.to_string())
    }
}

impl From<DriverError> for Stop {
    fn from(e: DriverError) -> Stop {
        Stop::Fatal(e)
    }
}

/// One consumer of the group: its own connection and reading state; the
/// output is shared by every consumer of the process.
struct Sink {
    cfg: SinkConfig,
    log: Logger,
    out: Arc<Mutex<Output>>,
    /// This consumer's name in the group.
    consumer: String,
    /// Whether lines are deduplicated by offset (one consumer only).
    dedup: bool,
    last_claim: Instant,
    streams: BTreeMap<String, StreamState>,
    skipped: u64,
    malformed: u64,
    last_progress: Instant,
}

impl Sink {
    /// Finds the streams (new ones get their group) and makes sure every
    /// known stream has the group on this server.
    async fn scan(&mut self, con: &mut MultiplexedConnection, all: bool) -> Result<(), Stop> {
        let mut cursor = 0u64;
        let mut found = Vec::new();
        loop {
            let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.cfg.stream_prefix))
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream")
                .query_async(con)
                .await?;
            found.extend(names);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        for name in found {
            if !self.streams.contains_key(&name) {
                if !usable_stream_name(&name) {
                    continue;
                }
                self.log.info(format_args!("reading stream {name}"));
                self.streams.insert(
                    name.clone(),
                    StreamState {
                        pending_from: Some("0".into()),
                    },
                );
                self.create_group(con, &name).await?;
            }
        }
        if all {
            let names: Vec<String> = self.streams.keys().cloned().collect();
            for name in names {
                self.create_group(con, &name).await?;
                if let Some(s) = self.streams.get_mut(&name) {
                    s.pending_from = Some("0".into());
                }
            }
        }
        Ok(())
    }

    async fn create_group(&self, con: &mut MultiplexedConnection, name: &str) -> Result<(), Stop> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(name)
            .arg(&self.cfg.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(con)
            .await;
        match r {
            Ok(()) => {
                self.log.info(format_args!(
                    "created consumer group {} on {name} at id 0",
                    self.cfg.group
                ));
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// One read (pending entries first, else new ones), committed and
    /// acknowledged.
    async fn step(&mut self, con: &mut MultiplexedConnection) -> Result<(), Stop> {
        let pending: Vec<(String, String)> = self
            .streams
            .iter()
            .filter_map(|(n, s)| s.pending_from.clone().map(|p| (n.clone(), p)))
            .collect();
        let batch = self.cfg.batch.max(1);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(batch);
        let names: Vec<String>;
        let ids: Vec<String>;
        if pending.is_empty() {
            if self.streams.is_empty() {
                tokio::time::sleep(BLOCK).await;
                return Ok(());
            }
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
            names = self.streams.keys().cloned().collect();
            ids = vec![">".to_owned(); names.len()];
        } else {
            names = pending.iter().map(|(n, _)| n.clone()).collect();
            ids = pending.iter().map(|(_, p)| p.clone()).collect();
        }
        cmd.arg("STREAMS").arg(&names).arg(&ids);
        let reply: Option<StreamReadReply> = cmd.query_async(con).await?;
        let reply = reply.unwrap_or_default();
        let mut read: Vec<(String, Vec<Line>)> = Vec::new();
        for key in &reply.keys {
            let lines: Vec<Line> = key.ids.iter().map(line_of).collect();
            if let Some(s) = self.streams.get_mut(&key.key) {
                if s.pending_from.is_some() {
                    s.pending_from = match lines.last() {
                        Some(l) if lines.len() >= batch => Some(l.id.clone()),
                        _ => None,
                    };
                }
            }
            read.push((key.key.clone(), lines));
        }
        // A pending read that named a stream without returning it: drained.
        for (n, _) in &pending {
            if !reply.keys.iter().any(|k| &k.key == n) {
                if let Some(s) = self.streams.get_mut(n) {
                    s.pending_from = None;
                }
            }
        }
        self.commit_and_ack(con, &read).await
    }

    /// Commits what was read (durably), then acknowledges it.
    async fn commit_and_ack(
        &mut self,
        con: &mut MultiplexedConnection,
        read: &[(String, Vec<Line>)],
    ) -> Result<(), Stop> {
        let mut b = Batch::default();
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            for (stream, lines) in read {
                b.add(stream, lines, &out.committed, self.dedup);
            }
            if !b.bytes.is_empty() {
                out.commit(&b.bytes, &b.offsets)?;
            }
        }
        self.skipped += b.skipped;
        if b.malformed > 0 {
            self.malformed += b.malformed;
            self.log.warn(format_args!(
                "{}: {} entr(ies) without a `{LINE_FIELD}` field acknowledged and ignored",
                self.consumer, b.malformed
            ));
        }
        for (stream, ids) in &b.ack {
            let _: i64 = redis::cmd("XACK")
                .arg(stream)
                .arg(&self.cfg.group)
                .arg(ids)
                .query_async(con)
                .await?;
        }
        if self.last_progress.elapsed() >= PROGRESS_GAP {
            self.last_progress = Instant::now();
            let committed = self
                .out
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .committed
                .clone();
            self.log.info(format_args!(
                "{}: committed {} bytes ({} commit(s); last offsets {:?}; {} entr(ies) skipped as already committed)",
                self.consumer, committed.offset, committed.commits, committed.last, self.skipped
            ));
        }
        Ok(())
    }

    /// Claims the entries another consumer of the group left pending for
    /// longer than `claim_idle` (a consumer that died with them, or one a
    /// sink with more consumers used to run), and commits them like a read.
    async fn claim(&mut self, con: &mut MultiplexedConnection) -> Result<(), Stop> {
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            let mut start = "0-0".to_owned();
            for _ in 0..CLAIM_PAGES {
                let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&name)
                    .arg(&self.cfg.group)
                    .arg(&self.consumer)
                    .arg(self.cfg.claim_idle.as_millis() as u64)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(self.cfg.batch.max(1))
                    .query_async(con)
                    .await?;
                if !reply.claimed.is_empty() {
                    self.log.info(format_args!(
                        "{}: claimed {} entr(ies) of {name} left pending by another consumer",
                        self.consumer,
                        reply.claimed.len()
                    ));
                    let lines: Vec<Line> = reply.claimed.iter().map(line_of).collect();
                    self.commit_and_ack(con, &[(name.clone(), lines)]).await?;
                }
                if reply.next_stream_id == "0-0" {
                    break;
                }
                start = reply.next_stream_id;
            }
        }
        Ok(())
    }

    /// Serves one connection after another, until a local failure.
    async fn serve(&mut self) -> DriverError {
        let mut backoff = Backoff::new();
        loop {
            let mut primary = conn::connect_primary(
                &self.cfg.sentinels,
                &self.cfg.master,
                self.cfg.response_timeout + BLOCK,
                &self.log,
            )
            .await;
            let served: Result<(), Stop> = async {
                self.scan(&mut primary.con, true).await?;
                let mut last_scan = Instant::now();
                loop {
                    if last_scan.elapsed() >= RESCAN {
                        self.scan(&mut primary.con, false).await?;
                        last_scan = Instant::now();
                    }
                    if self.last_claim.elapsed() >= CLAIM_EVERY {
                        self.last_claim = Instant::now();
                        self.claim(&mut primary.con).await?;
                    }
                    self.step(&mut primary.con).await?;
                    backoff.reset();
                }
            }
            .await;
            match served {
                Ok(()) => {}
                Err(Stop::Fatal(e)) => return e,
                Err(Stop::Redis(e)) => {
                    backoff
                        .fail(
                            &self.log,
                            format_args!("{}: reading from {}: {e}", self.consumer, primary.addr),
                        )
                        .await
                }
            }
        }
    }
}

/// Runs the sink until killed: `consumers` consumers of the group, each
/// on its own connection, committing to one output. Returns only on a
/// local failure (files, listener); every cluster fault is waited out.
pub async fn run(cfg: SinkConfig, log: Logger) -> Result<(), DriverError> {
    if let Some(addr) = &cfg.listen {
        listen(addr, cfg.ready_file.as_deref(), &log).await?;
    }
    let out = Arc::new(Mutex::new(Output::open(&cfg.output, &cfg.group, &log)?));
    let n = cfg.consumers.max(1);
    if n > 1 {
        log.info(format_args!(
            "{n} consumers share the group {}: lines are written in the order they are read, with no deduplication by offset",
            cfg.group
        ));
    }
    // The consumers' futures hold log arguments across awaits (not Send):
    // they run as local tasks of this (current-thread) runtime.
    let local = tokio::task::LocalSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut sink = Sink {
            consumer: cfg.consumer_name(i),
            dedup: n == 1,
            cfg: cfg.clone(),
            log: log.clone(),
            out: out.clone(),
            last_claim: Instant::now(),
            streams: BTreeMap::new(),
            skipped: 0,
            malformed: 0,
            last_progress: Instant::now(),
        };
        tasks.spawn_local_on(async move { sink.serve().await }, &local);
    }
    match local.run_until(tasks.join_next()).await {
        Some(Ok(e)) => Err(e),
        Some(Err(e)) => Err(DriverError::Task(e.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs::OpenOptions;
    use std::io::Write;
    use verify::txnlog::{self, Record};

    fn quiet() -> Logger {
        Logger::stderr("test")
    }

    fn offsets(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(s, o)| (s.to_string(), *o)).collect()
    }

    fn line(id: &str, offset: Option<u64>, text: Option<&str>) -> Line {
        Line {
            id: id.into(),
            offset,
            line: text.map(|t| t.as_bytes().to_vec()),
        }
    }

    #[test]
    fn paths_and_txn_ids() {
        let p = Path::new("/x/sink/output");
        assert_eq!(data_path(p), Path::new("/x/sink/output.redis"));
        assert_eq!(txnlog_path(p), Path::new("/x/sink/output.redis.txnlog"));
        let o = offsets(&[("lines:A", 12), ("lines:B", 0)]);
        let id = txn_id("checker", &o);
        assert_eq!(id, "redis-sink:checker:offsets=lines:A=12,lines:B=0");
        assert_eq!(offsets_of_txn_id(&id), Some(o));
        assert_eq!(offsets_of_txn_id("Passthrough-w-worker1-id-1:c_id=5"), None);
        assert_eq!(offsets_of_txn_id("redis-sink:g:offsets=lines:A=x"), None);
        assert!(usable_stream_name("lines:A"));
        assert!(!usable_stream_name("lines:A,B") && !usable_stream_name("a=b"));
    }

    #[test]
    fn entries_are_read_from_their_fields() {
        let mut map = HashMap::new();
        map.insert("o".to_owned(), Value::BulkString(b"42".to_vec()));
        map.insert("l".to_owned(), Value::BulkString(b"A0000042 x\n".to_vec()));
        let e = StreamId {
            id: "1-0".into(),
            map,
        };
        assert_eq!(line_of(&e), line("1-0", Some(42), Some("A0000042 x\n")));
        let e = StreamId {
            id: "2-0".into(),
            map: HashMap::new(),
        };
        assert_eq!(line_of(&e), line("2-0", None, None));
    }

    #[test]
    fn lines_at_or_below_the_committed_offset_are_skipped_but_acknowledged() {
        let committed = Committed {
            offset: 100,
            last: offsets(&[("lines:A", 20)]),
            commits: 1,
        };
        let mut b = Batch::default();
        b.add(
            "lines:A",
            &[
                line("1-0", Some(10), Some("A10\n")),
                line("2-0", Some(20), Some("A20\n")),
                line("3-0", Some(30), Some("A30\n")),
                // A resend of 30 inside the same batch.
                line("4-0", Some(30), Some("A30\n")),
                // A gap: written all the same, the verifier judges it.
                line("5-0", Some(50), Some("A50\n")),
                line("6-0", None, None),
                // No offset: written, not used for skipping.
                line("7-0", None, Some("A??\n")),
            ],
            &committed,
            true,
        );
        b.add(
            "lines:B",
            &[line("1-0", Some(0), Some("B0\n"))],
            &committed,
            true,
        );
        assert_eq!(b.bytes, b"A30\nA50\nA??\nB0\n");
        assert_eq!(b.offsets, offsets(&[("lines:A", 50), ("lines:B", 0)]));
        assert_eq!(b.skipped, 3);
        assert_eq!(b.malformed, 1);
        assert_eq!(b.ack["lines:A"].len(), 7);
        assert_eq!(b.ack["lines:B"], ["1-0"]);
    }

    /// Several consumers share a stream, so offsets come in any order: a
    /// line below the committed offset is new, not a resend. Every line is
    /// written, and no offset is recorded (a restart with one consumer must
    /// not skip lines by it).
    #[test]
    fn without_dedup_every_line_is_written_and_no_offset_recorded() {
        let committed = Committed {
            offset: 100,
            last: offsets(&[("lines:A", 20)]),
            commits: 1,
        };
        let mut b = Batch::default();
        b.add(
            "lines:A",
            &[
                line("9-0", Some(30), Some("A30\n")),
                line("3-0", Some(10), Some("A10\n")),
                line("4-0", Some(10), Some("A10\n")),
                line("5-0", None, None),
            ],
            &committed,
            false,
        );
        assert_eq!(b.bytes, b"A30\nA10\nA10\n");
        assert!(b.offsets.is_empty());
        assert_eq!((b.skipped, b.malformed), (0, 1));
        assert_eq!(b.ack["lines:A"], ["9-0", "3-0", "4-0", "5-0"]);
    }

    #[test]
    fn consumers_are_named_by_index_only_when_there_are_several() {
        let mut cfg = SinkConfig {
            sentinels: vec![],
            master: "m".into(),
            stream_prefix: "lines:".into(),
            group: "g".into(),
            consumer: "sink".into(),
            output: PathBuf::from("o"),
            listen: None,
            ready_file: None,
            batch: 1,
            response_timeout: Duration::from_secs(1),
            consumers: 1,
            claim_idle: Duration::from_secs(10),
        };
        assert_eq!(cfg.consumer_name(0), "sink");
        cfg.consumers = 3;
        assert_eq!(
            (0..3).map(|i| cfg.consumer_name(i)).collect::<Vec<_>>(),
            ["sink-0", "sink-1", "sink-2"]
        );
    }

    #[test]
    fn commits_are_recovered_and_the_uncommitted_tail_cut() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        assert_eq!(out.committed, Committed::default());
        out.commit(b"A0000000 x\n", &offsets(&[("lines:A", 0)]))
            .unwrap();
        out.commit(
            b"A0000011 y\nB0000000 z\n",
            &offsets(&[("lines:A", 11), ("lines:B", 0)]),
        )
        .unwrap();
        drop(out);
        let mut f = OpenOptions::new()
            .append(true)
            .open(data_path(&prefix))
            .unwrap();
        f.write_all(b"A0000022 uncommitted\n").unwrap();
        let mut t = OpenOptions::new()
            .append(true)
            .open(txnlog_path(&prefix))
            .unwrap();
        t.write_all(b"[1.0,\"2-ok\",\"redis-sink:c").unwrap();
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        assert_eq!(
            out.committed,
            Committed {
                offset: 33,
                last: offsets(&[("lines:A", 11), ("lines:B", 0)]),
                commits: 2
            }
        );
        assert_eq!(out.data_len().unwrap(), 33);
        out.commit(b"B0000011 w\n", &offsets(&[("lines:B", 11)]))
            .unwrap();
        let entries = txnlog::read(&txnlog_path(&prefix)).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[2].record,
            Record::Phase2Ok {
                txn_id: "redis-sink:checker:offsets=lines:B=11".into(),
                offset: 44
            }
        );
        drop(out);
        let out = Output::open(&prefix, "checker", &quiet()).unwrap();
        assert_eq!(
            out.committed.last,
            offsets(&[("lines:A", 11), ("lines:B", 11)])
        );
    }

    #[test]
    fn committed_bytes_missing_from_the_data_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let mut out = Output::open(&prefix, "checker", &quiet()).unwrap();
        out.commit(b"A0000000 x\n", &offsets(&[("lines:A", 0)]))
            .unwrap();
        drop(out);
        std::fs::write(data_path(&prefix), b"A00").unwrap();
        let e = Output::open(&prefix, "checker", &quiet()).unwrap_err();
        assert!(
            matches!(
                e,
                DriverError::SinkFiles(verify::sinkfiles::SinkFilesError::CommittedMissing { .. })
            ),
            "{e}"
        );
    }
}
