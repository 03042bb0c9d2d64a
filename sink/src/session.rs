//! One worker connection: the sink side of the connector sink protocol.
//!
//! A connection starts unattached and must open with HELLO (version
//! `v0.0.1`, the configured cookie, a worker name usable as a file name,
//! and no other live connection for that name). HELLO attaches it to the
//! worker's files after recovery from the txnlog ([`crate::recovery`]).
//! From then on it handles NOTIFY, stream-1 data, the stream-0 2PC
//! messages (LIST_UNCOMMITTED, PHASE1, PHASE2, WORKERS_LEFT) and EOS.
//!
//! A misbehaving peer (garbage bytes, a refused HELLO, an unexpected
//! frame) costs only its own connection: an ERROR frame when there is
//! something to say, a WARN log line, close. What makes the whole sink
//! stop is a cluster breaking an invariant the sink exists to check (a
//! duplicate, a commit of an aborted transaction...): FATAL/CRITICAL and
//! exit 66; or a file the sink cannot write: FATAL and exit 2.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use connector::codec::encode_to_bytes;
use connector::twopc::WhereEntry;
use connector::{ConnectorCodec, Frame, Message, TwoPc, CONTROL_STREAM, DATA_STREAM, SINK_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::{info, warn};
use verify::txnlog::Record;

use crate::events::HoldPoint;
use crate::logging::{critical, fatal};
use crate::recovery::{self, Pending};
use crate::rules::{match_content, Action, Rule};
use crate::server::{Claim, PorMode, Shared, EXIT_ENVIRONMENT, EXIT_VIOLATION};
use crate::store::{self, StoreError, WorkerFiles};

/// Credits granted in OK; workers ignore them and rely on TCP backpressure.
const INITIAL_CREDITS: u32 = 500;
/// Read at least this much per `read` call.
const READ_CHUNK: usize = 256 * 1024;

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// The peer closed, or the socket failed.
    PeerGone,
    /// The sink closes this connection (refusal, garbage, abort rule).
    Close,
    /// The sink must exit with this code; the reason is already logged.
    Halt(u8),
    /// Another session halted the sink.
    Halted,
}

type Step<T = ()> = Result<T, End>;

/// Logs a file error as FATAL and stops the sink with exit 2.
fn env_fatal(e: StoreError) -> End {
    if let StoreError::Txnlog(_) = e {
        critical(format_args!("txnlog unreadable: {e}"));
        return End::Halt(EXIT_VIOLATION);
    }
    fatal(&e);
    End::Halt(EXIT_ENVIRONMENT)
}

/// Runs `f` (file syncs, truncation, recovery) where blocking is allowed.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The reply to a 2PC message and whether to close afterwards.
struct Out {
    reply: Option<Frame>,
    close: bool,
}

impl Out {
    fn none() -> Out {
        Out {
            reply: None,
            close: false,
        }
    }
    fn reply(frame: Frame) -> Out {
        Out {
            reply: Some(frame),
            close: false,
        }
    }
}

/// The 2PC state of a connection attached to a worker.
struct Attached {
    name: String,
    /// Declared before `claim`: the files are closed before the name is
    /// released, so a successor connection never shares them.
    files: WorkerFiles,
    _claim: Claim,
    /// Transactions voted on and not yet decided.
    txns: Vec<Pending>,
    last_committed: u64,
    /// `false` once something (a gap, a recovered force-abort) has decided
    /// that the next vote is abort.
    commit_next: bool,
    /// Why `commit_next` is false.
    force_reason: String,
    /// Whether `next-txn-force-abort` was recorded since the last vote.
    force_abort_written: bool,
    /// Whether a gap was seen since the last vote: explains a PHASE1 range
    /// that ends past what the sink holds.
    gap_in_txn: bool,
    content_rules: Vec<Rule>,
    /// Action of stream-content rules that fired since the last vote.
    content_action: Option<(Action, usize)>,
    /// This connection appended or cut output (`--por original`: from then
    /// on its offset is the one the table holds for the worker).
    touched: bool,
}

/// Serves one accepted connection until it ends.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let conn = shared.next_conn_id();
    info!("connection #{conn} from {peer}");
    let mut s = Session {
        shared,
        conn,
        peer,
        stream,
        buf: BytesMut::with_capacity(2 * READ_CHUNK),
        codec: ConnectorCodec::default(),
        worker: None,
    };
    let end = s.run().await;
    s.finish(end).await;
}

struct Session {
    shared: Arc<Shared>,
    conn: u64,
    peer: SocketAddr,
    stream: TcpStream,
    buf: BytesMut,
    codec: ConnectorCodec,
    worker: Option<Attached>,
}

impl Session {
    fn who(&self) -> String {
        match &self.worker {
            Some(w) => format!(
                "connection #{} ({}, worker {})",
                self.conn, self.peer, w.name
            ),
            None => format!("connection #{} ({})", self.conn, self.peer),
        }
    }

    async fn run(&mut self) -> End {
        loop {
            loop {
                if self.shared.halted() {
                    return End::Halted;
                }
                let frame = match self.codec.decode_frame(&mut self.buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        warn!("{}: unreadable input ({e}); closing it", self.who());
                        return End::Close;
                    }
                };
                if let Err(end) = self.handle(frame).await {
                    return end;
                }
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return End::PeerGone,
                Ok(0) => {
                    warn!(
                        "{}: peer closed in the middle of a frame ({} byte(s) buffered)",
                        self.who(),
                        self.buf.len()
                    );
                    return End::PeerGone;
                }
                Ok(_) => {}
                Err(e) => {
                    info!("{}: read failed: {e}", self.who());
                    return End::PeerGone;
                }
            }
        }
    }

    async fn finish(mut self, end: End) {
        match end {
            End::Halt(code) => {
                self.shared.halt(code);
                return;
            }
            End::Halted => return,
            End::PeerGone | End::Close => {}
        }
        let who = self.who();
        if let Some(mut w) = self.worker.take() {
            let closed = blocking(|| {
                w.files.record(Record::ConnectionClosed)?;
                w.files.sync_output()
            });
            if let Err(e) = closed {
                let _ = env_fatal(e);
                self.shared.halt(EXIT_ENVIRONMENT);
                return;
            }
            if w.touched {
                self.shared.remember_por(&w.name, w.files.offset());
            }
            // Closes the files, then releases the worker name: before the
            // peer sees the close, so its immediate reconnect is accepted.
            drop(w);
        }
        let _ = self.stream.shutdown().await;
        info!("{who}: closed");
    }

    async fn send(&mut self, frame: &Frame) -> Step {
        let bytes = encode_to_bytes(frame).map_err(|e| {
            warn!("{}: cannot encode a reply: {e}", self.who());
            End::Close
        })?;
        match self.stream.write_all(&bytes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                info!("{}: write failed: {e}", self.who());
                Err(End::PeerGone)
            }
        }
    }

    /// Sends an ERROR frame with `reason` and ends the connection.
    async fn refuse(&mut self, reason: String) -> Step {
        warn!("{}: refused: {reason}", self.who());
        self.send(&Frame::Error { message: reason }).await?;
        Err(End::Close)
    }

    async fn handle(&mut self, frame: Frame) -> Step {
        if self.worker.is_none() {
            return self.hello(frame).await;
        }
        match frame {
            Frame::Message(m) if m.stream_id == DATA_STREAM => self.data(m),
            Frame::Message(m) if m.stream_id == CONTROL_STREAM => self.control(m.payload).await,
            Frame::Message(m) => {
                self.refuse(format!("Unsupported stream id {}", m.stream_id))
                    .await
            }
            Frame::Notify { stream_id, .. } if stream_id != DATA_STREAM => {
                self.refuse(format!("Unsupported stream id {stream_id}"))
                    .await
            }
            Frame::Notify { .. } => {
                let por = self.por();
                self.send(&Frame::NotifyAck {
                    success: true,
                    stream_id: DATA_STREAM,
                    point_of_ref: por,
                })
                .await
            }
            Frame::Eos { stream_id } if stream_id != DATA_STREAM => {
                self.refuse(format!("Unsupported stream id {stream_id}"))
                    .await
            }
            Frame::Eos { stream_id } => {
                let por = self.por();
                info!("{}: end of stream {stream_id} at {por}", self.who());
                self.send(&Frame::Ack {
                    credits: 1,
                    acks: vec![(stream_id, por)],
                })
                .await
            }
            Frame::Error { message } => {
                warn!(
                    "{}: the worker reported a failure: {message:?}; closing",
                    self.who()
                );
                Err(End::Close)
            }
            Frame::Hello { .. } => {
                self.refuse("HELLO on an established connection".into())
                    .await
            }
            other => {
                let what = other.name();
                self.refuse(format!("unexpected {what} frame from a worker"))
                    .await
            }
        }
    }

    /// The point of reference of a NOTIFY_ACK or EOS ACK (see `--por`).
    fn por(&mut self) -> u64 {
        let shared = self.shared.clone();
        let w = self.attached();
        match shared.config.por {
            PorMode::Offset => w.files.offset(),
            PorMode::Original => {
                let por = if w.touched {
                    w.files.offset()
                } else {
                    shared.remembered_por(&w.name).unwrap_or(0)
                };
                shared.remember_por(&w.name, por);
                por
            }
        }
    }

    fn attached(&mut self) -> &mut Attached {
        self.worker.as_mut().expect("called only once attached")
    }

    async fn hello(&mut self, frame: Frame) -> Step {
        let Frame::Hello {
            version,
            cookie,
            program_name,
            instance_name,
        } = frame
        else {
            let what = frame.name();
            return self.refuse(format!("expected HELLO, got {what}")).await;
        };
        if version != SINK_VERSION {
            return self
                .refuse(format!(
                    "Unknown protocol version: {version:?}, wanted {SINK_VERSION:?}"
                ))
                .await;
        }
        if cookie != self.shared.config.cookie {
            return self.refuse(format!("Bad cookie: {cookie:?}")).await;
        }
        if let Err(e) = store::check_worker_name(&instance_name) {
            return self.refuse(format!("Bad worker name: {e}")).await;
        }
        let claim = match self.shared.claim(&instance_name, self.conn) {
            Ok(c) => c,
            Err(holder) => {
                return self
                    .refuse(format!(
                        "Hello message from worker {instance_name}: already active \
                         (connection #{holder} still open; retry later)"
                    ))
                    .await;
            }
        };
        let shared = Arc::clone(&self.shared);
        let attached = blocking(|| attach(&shared, instance_name, claim))?;
        info!(
            "{}: HELLO from program {program_name:?}; last committed offset {}, output at {}, pending {:?}{}",
            format_args!("connection #{} ({}, worker {})", self.conn, self.peer, attached.name),
            attached.last_committed,
            attached.files.offset(),
            attached.txns.iter().map(|p| (&p.txn_id, p.vote)).collect::<Vec<_>>(),
            if attached.commit_next { "" } else { "; next vote forced to abort" },
        );
        shared.events().send(&format!(
            "recovery conn={} worker={} pending={}",
            self.conn,
            attached.name,
            attached.txns.len()
        ));
        self.worker = Some(attached);
        self.send(&Frame::Ok {
            initial_credits: INITIAL_CREDITS,
        })
        .await
    }

    fn data(&mut self, m: Message) -> Step {
        let who = self.who();
        let w = self.attached();
        if !w.content_rules.is_empty() {
            if let Some(rule) = match_content(&w.content_rules, &m.payload) {
                if w.content_action.is_none() {
                    info!(
                        "{who}: stream-content rule at line {} matches message {}; it acts at the next vote",
                        rule.line, m.message_id
                    );
                }
                let a = w
                    .content_action
                    .map_or(rule.action, |(a, _)| a.merge(rule.action));
                w.content_action = Some((a, rule.line));
            }
        }
        let offset = w.files.offset();
        if m.message_id == offset {
            w.touched = true;
            return w.files.append(&m.payload).map_err(env_fatal);
        }
        if m.message_id > offset {
            let reason = format!(
                "MISSING DATA: output offset {offset} < message_id {} worker {}",
                m.message_id, w.name
            );
            w.commit_next = false;
            w.gap_in_txn = true;
            if !w.force_abort_written {
                w.force_abort_written = true;
                info!("{who}: {reason}; the next vote will be abort");
                w.force_reason = reason.clone();
                blocking(|| w.files.record(Record::NextTxnForceAbort { reason }))
                    .map_err(env_fatal)?;
            }
            return Ok(());
        }
        let same = blocking(|| {
            w.files
                .read_back(m.message_id, m.payload.len())
                .map(|old| old == m.payload)
                .unwrap_or(false)
        });
        fatal(format_args!(
            "duplicate data: output offset {offset} > message_id {} ({} bytes, {} the bytes already there) worker {}",
            m.message_id,
            m.payload.len(),
            if same { "equal to" } else { "different from" },
            w.name
        ));
        blocking(|| w.files.sync_output()).map_err(env_fatal)?;
        Err(End::Halt(EXIT_VIOLATION))
    }

    async fn control(&mut self, payload: Bytes) -> Step {
        let msg = match TwoPc::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("{}: unreadable 2PC message ({e}); closing it", self.who());
                return Err(End::Close);
            }
        };
        let who = self.who();
        let conn = self.conn;
        let shared = Arc::clone(&self.shared);
        let events = shared.events();
        let name = self.attached().name.clone();
        // The phase-1 event to report once the vote is recorded.
        let mut voted: Option<String> = None;
        if let TwoPc::Phase2 { txn_id, commit } = &msg {
            if events.enabled() {
                let line = format!("phase2 conn={conn} worker={name} txn={txn_id} commit={commit}");
                events.at(HoldPoint::Phase2, &name, line).await;
            }
        }
        let w = self.attached();
        let out = match msg {
            TwoPc::ListUncommitted { rtag } => blocking(|| w.list_uncommitted(rtag))?,
            TwoPc::Phase1 { txn_id, where_list } => {
                let id = txn_id.clone();
                let out = blocking(|| w.phase1(&who, &shared, txn_id, where_list))?;
                if out.reply.is_some() && events.enabled() {
                    let vote = w
                        .txns
                        .iter()
                        .find(|p| p.txn_id == id)
                        .is_some_and(|p| p.vote);
                    voted = Some(format!(
                        "conn={conn} worker={name} txn={id} vote={}",
                        if vote { "commit" } else { "abort" }
                    ));
                }
                out
            }
            TwoPc::Phase2 { txn_id, commit } => blocking(|| w.phase2(&who, txn_id, commit))?,
            TwoPc::WorkersLeft { rtag: _, workers } => {
                blocking(|| w.workers_left(&who, &shared, workers))?
            }
            other @ (TwoPc::ReplyUncommitted { .. } | TwoPc::Reply { .. }) => {
                let what = other.name();
                return self
                    .refuse(format!("unexpected 2PC {what} from a worker"))
                    .await;
            }
        };
        if let Some(v) = &voted {
            // Recorded (1-ok or 1-rollback), not yet answered: an armed
            // hold keeps the worker from hearing the vote until the
            // supervisor has struck (see `crate::events`).
            events
                .at(HoldPoint::Phase1, &name, format!("phase1 {v}"))
                .await;
        }
        if let Some(reply) = out.reply {
            self.send(&reply).await?;
            if let Some(v) = &voted {
                events.send(&format!("vote-sent {v}"));
            }
        }
        if out.close {
            return Err(End::Close);
        }
        Ok(())
    }
}

/// Opens the worker's files, replays its txnlog and cuts the output back
/// to what the txnlog vouches for.
fn attach(shared: &Shared, name: String, claim: Claim) -> Step<Attached> {
    let prefix = &shared.config.prefix;
    let opened = shared
        .with_files_locked(|| WorkerFiles::open(prefix, &name))
        .map_err(env_fatal)?;
    let mut files = opened.files;
    if opened.torn_bytes > 0 {
        warn!(
            "worker {name}: cut a torn last txnlog line ({} bytes) from {}",
            opened.torn_bytes,
            files.txnlog_path().display()
        );
    }
    let rec = recovery::analyze(&opened.entries).map_err(|e| {
        critical(format_args!(
            "{}: {e} (worker {name})",
            files.txnlog_path().display()
        ));
        End::Halt(EXIT_VIOLATION)
    })?;
    let len = files.len_on_disk().map_err(env_fatal)?;
    if len < rec.truncate_to {
        critical(format_args!(
            "{} is {len} bytes but its txnlog vouches for {} (worker {name})",
            files.data_path().display(),
            rec.truncate_to
        ));
        return Err(End::Halt(EXIT_VIOLATION));
    }
    if len > rec.truncate_to {
        info!(
            "worker {name}: cutting {} uncommitted byte(s): {} from {len} to {}",
            len - rec.truncate_to,
            files.data_path().display(),
            rec.truncate_to
        );
    }
    files.truncate(rec.truncate_to).map_err(env_fatal)?;
    let content_rules = shared.config.rules.content_rules(&name);
    Ok(Attached {
        files,
        _claim: claim,
        txns: rec.pending,
        last_committed: rec.last_committed,
        commit_next: !rec.force_abort,
        force_reason: if rec.force_abort {
            "the txnlog ends with next-txn-force-abort".into()
        } else {
            String::new()
        },
        force_abort_written: rec.force_abort,
        gap_in_txn: false,
        content_rules,
        content_action: None,
        touched: false,
        name,
    })
}

impl Attached {
    fn record(&mut self, r: Record) -> Step {
        self.files.record(r).map_err(env_fatal)
    }

    fn list_uncommitted(&mut self, rtag: u64) -> Step<Out> {
        let txn_ids: Vec<String> = self.txns.iter().map(|p| p.txn_id.clone()).collect();
        self.record(Record::ListUncommitted {
            txn_ids: txn_ids.clone(),
        })?;
        Frame::two_pc(&TwoPc::ReplyUncommitted { rtag, txn_ids })
            .map(Out::reply)
            .map_err(|e| {
                warn!("worker {}: cannot encode REPLY_UNCOMMITTED: {e}", self.name);
                End::Close
            })
    }

    fn phase1(
        &mut self,
        who: &str,
        shared: &Shared,
        txn_id: String,
        where_list: Vec<WhereEntry>,
    ) -> Step<Out> {
        let count = shared.count_phase1();
        let offset = self.files.offset();
        let mut vote = self.commit_next;
        let mut why: Vec<String> = Vec::new();
        if !self.commit_next {
            why.push(self.force_reason.clone());
        }
        let on_disk = self.files.len_on_disk().map_err(env_fatal)?;
        if on_disk != offset {
            vote = false;
            why.push(format!("output offset {offset} != file size {on_disk}"));
        }
        if where_list.len() != 1 {
            vote = false;
            why.push(format!(
                "where_list has {} ranges, expected 1",
                where_list.len()
            ));
        }
        for &(stream_id, start, end) in &where_list {
            if stream_id != DATA_STREAM {
                vote = false;
                why.push(format!("invalid stream_id {stream_id}"));
            }
            if start != self.last_committed {
                vote = false;
                why.push(format!(
                    "start_por {start} != last committed offset {}",
                    self.last_committed
                ));
            }
            if start > end {
                vote = false;
                why.push(format!("start_por {start} > end_por {end}"));
            }
            if end > offset {
                vote = false;
                let m = format!(
                    "phase 1 {txn_id}: end_por {end} is past the output offset {offset} (start_por {start}) worker {}",
                    self.name
                );
                if offset == start || self.gap_in_txn {
                    // The sink restarted and cut an uncommitted tail, or it
                    // refused data after a gap: the cluster cannot commit
                    // this range, and this abort vote tells it so.
                    why.push(m);
                } else {
                    critical(&m);
                    self.record(Record::NextTxnForceAbort { reason: m })?;
                    return Err(End::Halt(EXIT_VIOLATION));
                }
            }
        }
        let mut action = Action {
            vote: true,
            close_before: false,
            close_after: false,
        };
        if let Some((a, lines)) = shared.config.rules.at_phase1(&self.name, &txn_id, count) {
            action = action.merge(a);
            info!("{who}: abort rule(s) at line(s) {lines:?} fire for {txn_id} (phase 1 #{count}): {a:?}");
        }
        if let Some((a, line)) = self.content_action.take() {
            action = action.merge(a);
            info!("{who}: stream-content rule at line {line} applies to {txn_id}: {a:?}");
        }
        if !action.vote {
            vote = false;
            why.push("abort rule".into());
        }
        self.files.sync_output().map_err(env_fatal)?;
        self.txns.retain(|p| p.txn_id != txn_id);
        self.txns.push(Pending {
            txn_id: txn_id.clone(),
            vote,
            where_list: where_list.clone(),
        });
        self.record(if vote {
            Record::Phase1Ok {
                txn_id: txn_id.clone(),
                where_list: where_list.clone(),
            }
        } else {
            Record::Phase1Rollback {
                txn_id: txn_id.clone(),
                where_list: where_list.clone(),
            }
        })?;
        if vote {
            info!("{who}: phase 1 {txn_id} {where_list:?}: vote commit");
        } else {
            info!(
                "{who}: phase 1 {txn_id} {where_list:?}: vote abort ({})",
                why.join("; ")
            );
        }
        if action.close_before {
            info!("{who}: abort rule: closing before the vote reply");
            self.record(Record::Close {
                when: "before reply".into(),
            })?;
            return Ok(Out {
                reply: None,
                close: true,
            });
        }
        self.commit_next = true;
        self.force_reason.clear();
        self.force_abort_written = false;
        self.gap_in_txn = false;
        if action.close_after {
            info!("{who}: abort rule: closing after the vote reply");
            self.record(Record::Close {
                when: "after reply".into(),
            })?;
        }
        let reply = Frame::two_pc(&TwoPc::Reply {
            txn_id,
            commit: vote,
        })
        .map_err(|e| {
            warn!("{who}: cannot encode the vote: {e}");
            End::Close
        })?;
        Ok(Out {
            reply: Some(reply),
            close: action.close_after,
        })
    }

    fn phase2(&mut self, who: &str, txn_id: String, commit: bool) -> Step<Out> {
        let Some(pos) = self.txns.iter().position(|p| p.txn_id == txn_id) else {
            info!("{who}: phase 2 for unknown transaction {txn_id} (commit {commit})");
            self.record(Record::Phase2Error {
                reason: format!(
                    "unknown txn_id, commit {}",
                    if commit { "True" } else { "False" }
                ),
                txn_id,
            })?;
            return Ok(Out::none());
        };
        let p = self.txns.remove(pos);
        let offset = self.files.offset();
        if commit {
            if !p.vote {
                fatal(format_args!(
                    "2PC protocol: phase 1 vote on {txn_id} was rollback but phase 2 says commit (worker {})",
                    self.name
                ));
                return Err(End::Halt(EXIT_VIOLATION));
            }
            let Some(end) = p.end_por() else {
                critical(format_args!(
                    "phase 2 commit of {txn_id} with where_list {:?}",
                    p.where_list
                ));
                return Err(End::Halt(EXIT_VIOLATION));
            };
            if end < self.last_committed {
                fatal(format_args!(
                    "2PC: commit of {txn_id} at {end} is behind the last committed offset {} (worker {})",
                    self.last_committed, self.name
                ));
                return Err(End::Halt(EXIT_VIOLATION));
            }
            if end != offset {
                critical(format_args!(
                    "2PC: phase 2 commit of {txn_id} at {end} != output offset {offset} (worker {})",
                    self.name
                ));
                return Err(End::Halt(EXIT_VIOLATION));
            }
            self.last_committed = end;
            self.record(Record::Phase2Ok {
                txn_id: txn_id.clone(),
                offset: end,
            })?;
            info!("{who}: phase 2 {txn_id}: committed up to {end}");
        } else {
            // Everything past the last commit is uncommitted; for any
            // transaction that could have been voted commit this is its
            // start_por. The record goes first: a crash between the two
            // steps then recovers to the same cut, whereas a cut file
            // under a still-pending 1-ok would look like lost data.
            let to = self.last_committed;
            self.record(Record::Phase2Rollback {
                txn_id: txn_id.clone(),
                offset: to,
            })?;
            if offset != to {
                self.files.truncate(to).map_err(env_fatal)?;
            }
            self.touched = true;
            info!("{who}: phase 2 {txn_id}: aborted, output cut from {offset} back to {to}");
        }
        Ok(Out::none())
    }

    fn workers_left(&mut self, who: &str, shared: &Shared, workers: Vec<String>) -> Step<Out> {
        for w in &workers {
            if let Err(e) = store::check_worker_name(w) {
                warn!("{who}: WORKERS_LEFT names an unusable worker ({e}); ignored");
                continue;
            }
            if shared.is_live(w) {
                warn!("{who}: worker {w} left but still has a live connection; its files are renamed anyway and it keeps writing to them");
            }
            let ts = store::unix_ts();
            match shared.with_files_locked(|| store::retire(&shared.config.prefix, w, &ts)) {
                Ok(Some(r)) => info!(
                    "{who}: worker {w} left: files renamed to {:?} / {:?}",
                    r.data, r.txnlog
                ),
                Ok(None) => info!("{who}: worker {w} left: no files to rename"),
                Err(e) => return Err(env_fatal(e)),
            }
            shared.forget_por(w);
        }
        self.record(Record::WorkersLeft { workers })?;
        Ok(Out::none())
    }
}
