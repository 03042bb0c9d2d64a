//! The owner: every worker owns some keys. It receives their lines from
//! every ingress (itself included), appends them to its sink stream at
//! consecutive offsets, and at each checkpoint aligns the barriers (lines a
//! source sends after its barrier wait until every source's barrier is
//! in), then runs phase 1 with the sink and reports the vote. It sends
//! PHASE2 commit only when the coordinator says the decision is durable.
//!
//! On a reset (any rollback) it makes its sink stream equal to its last
//! committed checkpoint: a pending transaction is committed iff it is the
//! coordinator's last committed one, uncommitted bytes are cut (a PHASE2
//! abort, or the sink's own recovery cut on reconnection), and a NOTIFY
//! round trip proves the sink processed it.
//!
//! Its output offset comes from its own durable record
//! ([`crate::durable::SinkState`], written before every PHASE1), settled by
//! the coordinator's `last_txn`, and from the sink's LIST_UNCOMMITTED
//! answer (which pending transaction to decide), never from the sink's
//! NOTIFY_ACK point of reference: Wallaroo ignored it, and the original
//! sink answers it from a per-process table (0 after its restart). The
//! point of reference is only compared with the own offset, and a
//! difference logged.
//!
//! It never resolves a pending transaction on its own: only a reset (whose
//! `last_txn` is authoritative) or a decide does, so a decision still in
//! flight from the coordinator can never be contradicted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use connector::{Frame, TwoPc, DATA_STREAM};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::bugs::{Bug, Bugs, LineAction};
use crate::data::Item;
use crate::durable::SinkState;
use crate::sinkconn::{self, Connected, SinkConfig, SinkMsg, SinkWriter};

/// What the worker tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerCmd {
    /// Roll back to the last committed checkpoint and get ready for `gen`.
    Reset {
        /// Generation.
        gen: u64,
        /// Last committed transaction of this worker.
        last_txn: Option<String>,
    },
    /// Checkpoint `c`: align the barriers of `sources` and vote on `txn`.
    Checkpoint {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
        /// Transaction id.
        txn: String,
        /// Ingresses whose barrier to wait for.
        sources: Vec<String>,
        /// Whether this worker is an owner in `c` (a joiner is not).
        participate: bool,
    },
    /// The commit of `c` is durable: PHASE2 commit.
    Decide {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
    },
    /// Shrunk away: tell the sink (WORKERS_LEFT), then report `Left`.
    Leave,
    /// Injected bug `commit-when-cut-off`: commit every line sent to the
    /// sink but not committed, alone, without the coordinator.
    CommitAlone {
        /// Generation.
        gen: u64,
    },
}

/// What the owner tells its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerEvent {
    /// Reset for `gen` done.
    Ready {
        /// Generation.
        gen: u64,
    },
    /// The sink's vote on checkpoint `c`.
    Vote {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
        /// Commit?
        commit: bool,
    },
    /// PHASE2 of `c` processed by the sink.
    Done {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
    },
    /// The sink is gone: the cluster must roll back.
    Fault {
        /// Generation.
        gen: u64,
        /// Why.
        why: String,
    },
    /// WORKERS_LEFT delivered (or the sink was unreachable): exit.
    Left,
}

/// Largest stream-1 message sent to the sink.
const CHUNK: usize = 1024 * 1024;
/// Input items handled before the owner flushes to the sink.
const DRAIN: usize = 256;
/// Pause between sink connection attempts. Short: after a SIGKILL the sink
/// refuses this worker's HELLO until it has closed the dead connection,
/// and the restarted worker should get in as soon as it has.
const SINK_RETRY: Duration = Duration::from_millis(10);

enum Sink {
    Down,
    Connecting,
    Up { conn: u64, w: SinkWriter },
}

enum Txn {
    None,
    /// PHASE1 sent; `voted` once the sink replied.
    Voting {
        c: u64,
        txn: String,
        end: u64,
    },
    /// PHASE2 commit sent; waiting for the LIST_UNCOMMITTED reply proving it.
    Probing {
        c: u64,
        rtag: u64,
    },
}

/// Volatile state of the `lose-on-sink-reconnect` bug: bytes of lines to
/// skip after the reset that the sink loss caused.
struct Skip {
    /// Bytes still to skip (those in flight at the disconnect).
    bytes: u64,
    /// The generation of the first reset after the loss: the skip applies
    /// in it only; any later reset discards it.
    gen: Option<u64>,
}

#[derive(Default)]
struct Align {
    /// The checkpoint command, if it came: (c, txn, sources).
    cmd: Option<(u64, String, HashSet<Arc<str>>)>,
    /// The checkpoint the barriers seen so far belong to.
    barrier_c: Option<u64>,
    /// Sources whose barrier is in.
    arrived: HashSet<Arc<str>>,
    /// Items from arrived sources, in arrival order.
    held: Vec<(Arc<str>, Item)>,
}

struct Owner {
    cfg: SinkConfig,
    bugs: Bugs,
    events: mpsc::UnboundedSender<OwnerEvent>,
    sink_tx: mpsc::UnboundedSender<SinkMsg>,
    conn_tx: mpsc::UnboundedSender<Connected>,
    gen: u64,
    last_txn: Option<String>,
    sink: Sink,
    conn_seq: u64,
    committed: u64,
    sent: u64,
    out: BytesMut,
    txn: Txn,
    /// This worker's vote of the current checkpoint (survives a sink loss,
    /// so a Decide can still update `last_txn`).
    voted: Option<(u64, String)>,
    align: Align,
    /// Pending transactions the sink listed at (re)connection.
    sink_pending: Vec<String>,
    /// A sink loss happened since the last reset: wait for the next reset
    /// before resolving anything.
    need_reset: bool,
    /// Ready to report for this generation once the sink is resolved.
    want_ready: Option<u64>,
    /// A NOTIFY is out; its NOTIFY_ACK completes a resync.
    resyncing: bool,
    leaving: bool,
    faulted: Option<u64>,
    rtag: u64,
    lines: u64,
    /// This worker's durable record of its sink output.
    rec: SinkState,
    /// `lose-on-sink-reconnect` only.
    skip: Option<Skip>,
}

/// Runs the owner of worker `cfg.name` until its command channel closes.
/// `rec` is its durable record of its sink output, as loaded at start.
pub async fn run(
    cfg: SinkConfig,
    rec: SinkState,
    bugs: Bugs,
    mut cmds: mpsc::UnboundedReceiver<OwnerCmd>,
    mut input: mpsc::Receiver<(Arc<str>, Item)>,
    events: mpsc::UnboundedSender<OwnerEvent>,
) {
    let (sink_tx, mut sink_rx) = mpsc::unbounded_channel();
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let mut o = Owner {
        cfg,
        bugs,
        events,
        sink_tx,
        conn_tx,
        gen: 0,
        last_txn: None,
        sink: Sink::Down,
        conn_seq: 0,
        committed: rec.committed,
        sent: rec.committed,
        out: BytesMut::with_capacity(CHUNK),
        txn: Txn::None,
        voted: None,
        align: Align::default(),
        sink_pending: Vec::new(),
        need_reset: false,
        want_ready: None,
        resyncing: false,
        leaving: false,
        faulted: None,
        rtag: 0,
        lines: 0,
        rec,
        skip: None,
    };
    o.start_connecting();
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                Some(cmd) => o.on_cmd(cmd).await,
                None => return,
            },
            m = sink_rx.recv() => {
                if let Some(m) = m {
                    o.on_sink(m).await;
                }
            }
            c = conn_rx.recv() => {
                if let Some(c) = c {
                    o.on_connected(c).await;
                }
            }
            item = input.recv() => {
                let Some(item) = item else { return };
                o.feed(item).await;
                for _ in 0..DRAIN {
                    match input.try_recv() {
                        Ok(item) => o.feed(item).await,
                        Err(_) => break,
                    }
                }
                o.flush().await;
            }
        }
    }
}

impl Owner {
    fn emit(&self, ev: OwnerEvent) {
        let _ = self.events.send(ev);
    }

    /// Writes the durable record; false (logged) if it cannot.
    fn persist(&self) -> bool {
        match self.rec.save(&self.cfg.dir) {
            Ok(()) => true,
            Err(e) => {
                warn!("cannot record my sink output: {e}");
                false
            }
        }
    }

    fn start_connecting(&mut self) {
        if !matches!(self.sink, Sink::Down) {
            return;
        }
        self.sink = Sink::Connecting;
        let cfg = self.cfg.clone();
        let tx = self.conn_tx.clone();
        let hint = self.committed;
        tokio::spawn(async move {
            let mut attempts = 0u64;
            loop {
                match sinkconn::connect(&cfg, hint).await {
                    Ok(c) => {
                        let _ = tx.send(c);
                        return;
                    }
                    Err(e) => {
                        attempts += 1;
                        if attempts == 1 || attempts % 500 == 0 {
                            info!(
                                "sink {} not available ({e}); retrying every {} ms",
                                cfg.addr,
                                SINK_RETRY.as_millis()
                            );
                        }
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(SINK_RETRY).await;
                    }
                }
            }
        });
    }

    async fn on_connected(&mut self, c: Connected) {
        self.conn_seq += 1;
        let conn = self.conn_seq;
        tokio::spawn(sinkconn::pump(conn, c.reader, self.sink_tx.clone()));
        info!(
            "sink connected: my committed output offset {}, the sink's point of reference {}, pending {:?}",
            self.committed, c.offset, c.pending
        );
        self.sink = Sink::Up { conn, w: c.writer };
        if self.bugs.is(Bug::TrustSinkPor) {
            info!("injected bug: resuming from the sink's point of reference");
            self.committed = c.offset;
        }
        // The sink's recovery cut its output to its last commit, or to a
        // pending transaction's end, which the reset decides (a commit moves
        // `committed` there, an abort cuts it back).
        self.sent = self.committed;
        self.sink_pending = c.pending;
        self.txn = Txn::None;
        self.resyncing = false;
        self.maybe_resync().await;
    }

    fn sink_lost(&mut self, why: &str) {
        if matches!(self.sink, Sink::Up { .. }) {
            warn!("sink connection lost: {why}");
        }
        self.sink = Sink::Down;
        self.txn = Txn::None;
        self.resyncing = false;
        self.need_reset = true;
        if self.bugs.is(Bug::LoseOnSinkReconnect) && self.sent > self.committed && !self.leaving {
            self.skip = Some(Skip {
                bytes: self.sent - self.committed,
                gen: None,
            });
        }
        self.out.clear();
        if self.faulted != Some(self.gen) {
            self.faulted = Some(self.gen);
            self.emit(OwnerEvent::Fault {
                gen: self.gen,
                why: format!("sink lost: {why}"),
            });
        }
        // A leaver waits for the sink to come back and delivers its
        // WORKERS_LEFT then: leaving without it would leave its files in
        // place while its record says it left.
        self.start_connecting();
    }

    async fn send(&mut self, f: &Frame) -> bool {
        let Sink::Up { w, .. } = &mut self.sink else {
            return false;
        };
        match w.send(f).await {
            Ok(()) => true,
            Err(e) => {
                self.sink_lost(&e);
                false
            }
        }
    }

    async fn two_pc(&mut self, m: &TwoPc) -> bool {
        match Frame::two_pc(m) {
            Ok(f) => self.send(&f).await,
            Err(e) => {
                warn!("cannot encode {}: {e}", m.name());
                false
            }
        }
    }

    /// Resolves the sink to the last committed checkpoint if a reset asked
    /// for it and the sink is up; ends with a NOTIFY whose ack completes it.
    async fn maybe_resync(&mut self) {
        // A leaver's output is all committed (it is told to leave after its
        // last PHASE2 was proven): a sink loss needs no reset to resolve it.
        if (self.need_reset && !self.leaving)
            || self.resyncing
            || !matches!(self.sink, Sink::Up { .. })
        {
            return;
        }
        if self.want_ready.is_none() && !self.leaving {
            return;
        }
        // My committed output offset: my record, settled by `last_txn`.
        // Settling needs no rewrite of the file: transaction ids never
        // repeat (the epoch grows at every coordinator start, checkpoints
        // within it), so a vote on disk that was aborted can never match a
        // later `last_txn`, and one that was committed stays committed
        // until the next PHASE1 rewrites the record.
        if self.bugs.is(Bug::CommitPendingAfterRestart) && self.bugs.restarted() {
            let mine = self.rec.voting.as_ref().map(|(t, _)| t.clone());
            if let Some(t) = mine.filter(|t| self.sink_pending.contains(t)) {
                if self.last_txn.as_deref() != Some(t.as_str()) {
                    info!(
                        "injected bug: presuming my pending {t} committed (last committed {:?})",
                        self.last_txn
                    );
                    self.last_txn = Some(t);
                }
            }
        }
        let resolved = self.rec.resolve(self.last_txn.as_deref());
        let mut truncate = self.sent > self.committed;
        match std::mem::replace(&mut self.txn, Txn::None) {
            Txn::Voting { txn, end, .. } => {
                let commit = self.last_txn.as_deref() == Some(txn.as_str());
                info!(
                    "resolving my pending {txn}: {}",
                    if commit { "commit" } else { "abort" }
                );
                if !self
                    .two_pc(&TwoPc::Phase2 {
                        txn_id: txn,
                        commit,
                    })
                    .await
                {
                    return;
                }
                if commit {
                    self.committed = end;
                }
                // An abort truncates to the last commit by itself.
                truncate = false;
            }
            Txn::Probing { .. } | Txn::None => {}
        }
        for t in std::mem::take(&mut self.sink_pending) {
            let commit = self.last_txn.as_deref() == Some(t.as_str());
            info!(
                "resolving pending {t}: {}",
                if commit { "commit" } else { "abort" }
            );
            if !self.two_pc(&TwoPc::Phase2 { txn_id: t, commit }).await {
                return;
            }
            truncate = false;
        }
        if !self.bugs.is(Bug::TrustSinkPor) {
            if self.committed != resolved {
                debug!(
                    "committed output offset {} in memory, {resolved} by my record: using the record",
                    self.committed
                );
            }
            // Once the PHASE2s and the cut below are processed, the sink
            // holds exactly the committed output.
            self.committed = resolved;
        }
        if truncate {
            // Uncommitted, unvoted output: an empty transaction aborted at
            // once makes the sink cut back to its last commit.
            let txn_id = format!("Passthrough-w-{}-rollback-{}", self.cfg.name, self.gen);
            debug!(
                "cutting uncommitted output {}..{} with {txn_id}",
                self.committed, self.sent
            );
            let p1 = TwoPc::Phase1 {
                txn_id: txn_id.clone(),
                where_list: vec![(DATA_STREAM, self.committed, self.committed)],
            };
            if !self.two_pc(&p1).await {
                return;
            }
            if !self
                .two_pc(&TwoPc::Phase2 {
                    txn_id,
                    commit: false,
                })
                .await
            {
                return;
            }
        }
        if self.leaving {
            self.rtag += 1;
            let m = TwoPc::WorkersLeft {
                rtag: self.rtag,
                workers: vec![self.cfg.name.clone()],
            };
            if !self.two_pc(&m).await {
                return;
            }
        }
        let Sink::Up { w, .. } = &mut self.sink else {
            return;
        };
        if let Err(e) = w.notify(self.committed).await {
            self.sink_lost(&e);
            return;
        }
        info!(
            "resolving the sink for generation {:#x}: NOTIFY sent at my committed offset {}",
            self.gen, self.committed
        );
        self.resyncing = true;
    }

    async fn on_cmd(&mut self, cmd: OwnerCmd) {
        match cmd {
            OwnerCmd::Reset { gen, last_txn } => {
                // At INFO (one line per rollback): a start-up in a lab once
                // waited forever for this owner's `sink resolved`, and
                // these lines say which step it stopped at next time.
                info!(
                    "reset to generation {gen:#x}; last committed {last_txn:?}; sink {}, resyncing {}, need_reset {}",
                    match self.sink {
                        Sink::Up { conn, .. } => format!("up (connection {conn})"),
                        Sink::Connecting => "connecting".to_owned(),
                        Sink::Down => "down".to_owned(),
                    },
                    self.resyncing,
                    self.need_reset
                );
                if let Some(skip) = &mut self.skip {
                    match skip.gen {
                        None => skip.gen = Some(gen),
                        Some(_) => {
                            debug!("injected bug: a later rollback rebuilds the cursor");
                            self.skip = None;
                        }
                    }
                }
                self.gen = gen;
                self.last_txn = last_txn;
                self.need_reset = false;
                self.want_ready = Some(gen);
                self.voted = None;
                self.align = Align::default();
                self.out.clear();
                self.lines = 0;
                self.bugs.reset();
                match self.sink {
                    Sink::Up { .. } => self.maybe_resync().await,
                    Sink::Down => self.start_connecting(),
                    Sink::Connecting => {}
                }
            }
            OwnerCmd::Checkpoint {
                gen,
                c,
                txn,
                sources,
                participate,
            } => {
                if gen != self.gen || !participate {
                    return;
                }
                let sources = sources.iter().map(|s| Arc::from(s.as_str())).collect();
                self.align.cmd = Some((c, txn, sources));
                self.try_complete().await;
                self.replay_held().await;
            }
            OwnerCmd::CommitAlone { gen } => {
                let idle = matches!(self.txn, Txn::None | Txn::Probing { .. });
                if gen != self.gen
                    || !idle
                    || self.need_reset
                    || self.resyncing
                    || self.sent <= self.committed
                    || !matches!(self.sink, Sink::Up { .. })
                {
                    return;
                }
                let txn_id = format!(
                    "Passthrough-w-{}-alone-{}-{}",
                    self.cfg.name, self.gen, self.committed
                );
                warn!(
                    "injected bug commit-when-cut-off: committing [{}, {}) alone as {txn_id}",
                    self.committed, self.sent
                );
                let p1 = TwoPc::Phase1 {
                    txn_id: txn_id.clone(),
                    where_list: vec![(DATA_STREAM, self.committed, self.sent)],
                };
                if self.two_pc(&p1).await
                    && self
                        .two_pc(&TwoPc::Phase2 {
                            txn_id,
                            commit: true,
                        })
                        .await
                {
                    self.committed = self.sent;
                }
            }
            OwnerCmd::Decide { gen, c } => {
                if gen != self.gen {
                    return;
                }
                let Some((vc, txn)) = self.voted.clone() else {
                    return;
                };
                if vc != c {
                    return;
                }
                self.last_txn = Some(txn.clone());
                if let Txn::Voting { c: tc, end, .. } = self.txn {
                    if tc == c {
                        if !self
                            .two_pc(&TwoPc::Phase2 {
                                txn_id: txn,
                                commit: true,
                            })
                            .await
                        {
                            return;
                        }
                        self.committed = end;
                        // The loss, if any, is committed now.
                        self.skip = None;
                        self.rtag += 1;
                        self.txn = Txn::Probing { c, rtag: self.rtag };
                        let probe = TwoPc::ListUncommitted { rtag: self.rtag };
                        if !self.two_pc(&probe).await {
                            return;
                        }
                        self.flush().await;
                    }
                }
            }
            OwnerCmd::Leave => {
                self.leaving = true;
                self.want_ready = None;
                self.rec.leaving = true;
                self.persist();
                match self.sink {
                    Sink::Up { .. } => self.maybe_resync().await,
                    Sink::Down => self.start_connecting(),
                    Sink::Connecting => {}
                }
            }
        }
    }

    async fn on_sink(&mut self, m: SinkMsg) {
        let current = matches!(self.sink, Sink::Up { conn, .. } if conn == m.conn);
        if !current {
            return;
        }
        let Some(frame) = m.frame else {
            self.sink_lost("the sink closed the connection");
            return;
        };
        match frame {
            Frame::Message(msg) if msg.stream_id == connector::CONTROL_STREAM => {
                match TwoPc::decode(msg.payload) {
                    Ok(TwoPc::Reply { txn_id, commit }) => {
                        if let Txn::Voting { c, txn, .. } = &self.txn {
                            if *txn == txn_id {
                                debug!("checkpoint {c}: the sink votes {commit}");
                                self.emit(OwnerEvent::Vote {
                                    gen: self.gen,
                                    c: *c,
                                    commit,
                                });
                            }
                        }
                    }
                    Ok(TwoPc::ReplyUncommitted { rtag, .. }) => {
                        if let Txn::Probing { c, rtag: want } = self.txn {
                            if rtag == want {
                                self.txn = Txn::None;
                                debug!("checkpoint {c}: committed at offset {}", self.committed);
                                self.emit(OwnerEvent::Done { gen: self.gen, c });
                                self.flush().await;
                            }
                        }
                    }
                    Ok(other) => debug!("sink sent {}", other.name()),
                    Err(e) => {
                        warn!("the sink sent a bad 2PC message ({e}); reconnecting");
                        self.sink_lost("bad 2PC message");
                    }
                }
            }
            Frame::NotifyAck {
                success: true,
                point_of_ref,
                ..
            } if self.resyncing => {
                self.resyncing = false;
                if self.bugs.is(Bug::TrustSinkPor) {
                    self.committed = point_of_ref;
                    self.sent = point_of_ref;
                } else {
                    self.sent = self.committed;
                }
                if point_of_ref != self.committed {
                    // A cross-check only: the original sink answers from a
                    // per-process table (0 after its restart).
                    warn!(
                        "the sink's point of reference {point_of_ref} differs from my committed output offset {}; resuming from mine",
                        self.committed
                    );
                }
                if self.leaving {
                    info!("the sink knows I left");
                    self.rec = SinkState::default();
                    self.persist();
                    self.emit(OwnerEvent::Left);
                    return;
                }
                if let Some(gen) = self.want_ready.take() {
                    info!(
                        "sink resolved for generation {gen}: committed offset {}",
                        self.committed
                    );
                    self.emit(OwnerEvent::Ready { gen });
                }
            }
            Frame::NotifyAck {
                success,
                point_of_ref,
                ..
            } => info!(
                "NOTIFY_ACK (success {success}, point of reference {point_of_ref}) while not resolving: ignored"
            ),
            Frame::Error { message } => {
                warn!("the sink says: {message}");
                self.sink_lost("the sink sent ERROR");
            }
            other => debug!("sink sent {}", other.name()),
        }
    }

    /// Handles one input item and whatever it releases.
    async fn feed(&mut self, (src, item): (Arc<str>, Item)) {
        if item.gen() != self.gen {
            return;
        }
        if self.align.arrived.contains(&src) {
            self.align.held.push((src, item));
            return;
        }
        match item {
            Item::Batch { lines, .. } => self.accept(lines),
            Item::Barrier { c, .. } => {
                if self.align.barrier_c.is_some_and(|b| b != c) {
                    warn!("barrier {c} from {src} while aligning another checkpoint");
                }
                self.align.barrier_c = Some(c);
                self.align.arrived.insert(src);
                if self.try_complete().await {
                    self.replay_held().await;
                }
            }
        }
    }

    async fn replay_held(&mut self) {
        while self.align.arrived.is_empty() && !self.align.held.is_empty() {
            let held = std::mem::take(&mut self.align.held);
            let mut it = held.into_iter();
            for (src, item) in it.by_ref() {
                if self.align.arrived.contains(&src) {
                    self.align.held.push((src, item));
                    continue;
                }
                match item {
                    Item::Batch { lines, .. } => self.accept(lines),
                    Item::Barrier { c, .. } => {
                        self.align.barrier_c = Some(c);
                        self.align.arrived.insert(src);
                        if self.try_complete().await {
                            // Completed again: what is left is replayed next round.
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self, lines: Bytes) {
        let skipping = self
            .skip
            .as_ref()
            .is_some_and(|s| s.gen == Some(self.gen) && s.bytes > 0);
        if !self.bugs.any() || (self.bugs.is(Bug::LoseOnSinkReconnect) && !skipping) {
            self.out.extend_from_slice(&lines);
            return;
        }
        let mut rest = &lines[..];
        while !rest.is_empty() {
            let end = memchr_newline(rest).map_or(rest.len(), |i| i + 1);
            let (line, tail) = rest.split_at(end);
            rest = tail;
            self.lines += 1;
            if skipping {
                if let Some(s) = &mut self.skip {
                    if s.bytes > 0 {
                        s.bytes = s.bytes.saturating_sub(line.len() as u64);
                        if s.bytes == 0 {
                            info!(
                                "injected bug: skipped the lines in flight at the sink disconnect"
                            );
                        }
                        continue;
                    }
                }
            }
            match self.bugs.on_line(self.lines) {
                LineAction::Keep => self.out.extend_from_slice(line),
                LineAction::Drop => info!("injected bug: dropping a line"),
                LineAction::Twice => {
                    info!("injected bug: writing a line twice");
                    self.out.extend_from_slice(line);
                    self.out.extend_from_slice(line);
                }
            }
        }
    }

    /// If every source's barrier for the commanded checkpoint is in: flush,
    /// PHASE1, and open the sources again. Returns whether it completed.
    async fn try_complete(&mut self) -> bool {
        let Some((c, _, sources)) = &self.align.cmd else {
            return false;
        };
        if self.align.barrier_c != Some(*c)
            || !sources.iter().all(|s| self.align.arrived.contains(s))
        {
            return false;
        }
        let Some((c, txn, _)) = self.align.cmd.take() else {
            return false;
        };
        self.align.barrier_c = None;
        self.align.arrived.clear();
        if !matches!(self.sink, Sink::Up { .. }) || self.need_reset || self.resyncing {
            // The sink is gone; a rollback is on its way.
            return true;
        }
        self.flush().await;
        if !matches!(self.txn, Txn::None) {
            warn!("checkpoint {c}: the previous one is still open; not voting");
            return true;
        }
        if self.bugs.stalled() {
            debug!("checkpoint {c}: injected stall, not voting");
            return true;
        }
        // The vote is recorded before it can exist at the sink: whatever
        // the sink lists as pending later, the record can settle it.
        self.rec = SinkState {
            committed: self.committed,
            voting: Some((txn.clone(), self.sent)),
            leaving: false,
        };
        if !self.persist() {
            warn!("checkpoint {c}: not voting");
            return true;
        }
        let p1 = TwoPc::Phase1 {
            txn_id: txn.clone(),
            where_list: vec![(DATA_STREAM, self.committed, self.sent)],
        };
        debug!(
            "checkpoint {c}: PHASE1 {txn} [{}, {})",
            self.committed, self.sent
        );
        if self.two_pc(&p1).await {
            self.voted = Some((c, txn.clone()));
            self.txn = Txn::Voting {
                c,
                txn,
                end: self.sent,
            };
        }
        true
    }

    /// Sends buffered output to the sink when the protocol allows it.
    async fn flush(&mut self) {
        if self.out.is_empty()
            || self.resyncing
            || self.need_reset
            || matches!(self.txn, Txn::Voting { .. })
        {
            return;
        }
        while !self.out.is_empty() {
            let n = self.out.len().min(CHUNK);
            let chunk = self.out.split_to(n).freeze();
            let Sink::Up { w, .. } = &mut self.sink else {
                self.out.clear();
                return;
            };
            if let Err(e) = w.data(self.sent, chunk).await {
                self.sink_lost(&e);
                return;
            }
            self.sent += n as u64;
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == b'\n')
}
