//! Property test of the sink's session state machine under random
//! sequences of *valid* frames (issue 12, "Fuzzing, for real").
//!
//! Three simulated workers drive a live in-process sink with HELLO, NOTIFY
//! (any point of reference), data at consistent and inconsistent offsets
//! (gaps, overlaps, rewinds), PHASE1 with valid and invalid where-lists,
//! PHASE2 commit/abort for known and unknown transactions,
//! LIST_UNCOMMITTED, WORKERS_LEFT, EOS, frames the sink refuses,
//! disconnects (with or without the sink seeing the close first) and sink
//! restarts over the same directory.
//!
//! A model written from docs/sink.md predicts every answer: each reply
//! frame exactly (NOTIFY_ACK's offset, each vote, each REPLY_UNCOMMITTED),
//! each refusal (ERROR, then close), and each halt (exit 66: a duplicate,
//! a PHASE1 range past data the sink never received, a commit the sink
//! cannot honour, a txnlog its own recovery rejects). After a halt the
//! sink is restarted over the same directory and the sequence goes on. At
//! the end of each case the sink is restarted, every worker reconnects and
//! lists its uncommitted transactions, a fresh worker must still be
//! served, and the committed output is read back with the `verify` crate's
//! readers: per worker file pair, the `2-ok` records are exactly the
//! commits the model made, in order, and the committed bytes are exactly
//! those of the committed transactions.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use connector::twopc::WhereEntry;
use connector::{ConnectorCodec, Frame, Message, TwoPc, DEFAULT_COOKIE, SINK_VERSION};
use proptest::prelude::*;
use sink::server::EXIT_VIOLATION;
use verify::committed::{CommittedStream, MissingFilePolicy};
use verify::txnlog::Record;

/// The simulated workers.
const WORKERS: [&str; 3] = ["w0", "w1", "w2"];
/// How long an answer, a close or a halt may take (a loaded CI machine).
const PATIENCE: Duration = Duration::from_secs(10);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- actions

/// Where a data message claims to be, relative to the sink's output offset.
#[derive(Debug, Clone)]
enum At {
    Exact,
    /// `offset + k`: bytes are missing (the next vote must be abort).
    Gap(u64),
    /// `offset - k` (clamped to 0): a duplicate or an overlap (exit 66).
    Rewind(u64),
}

/// A PHASE1 where-list, built from the worker's last committed offset `lc`
/// and the sink's output offset at the time it is sent.
#[derive(Debug, Clone)]
enum Where {
    /// `[(1, lc, offset)]`: what a correct worker sends.
    Whole,
    /// `[(1, lc, max(lc, offset - k))]`: less than what was sent.
    Short(u64),
    /// `[(1, lc + d, offset)]`, `d != 0` (clamped at 0).
    Start(i64),
    /// `[(1, lc, offset + k)]`: claims bytes the sink does not hold.
    PastEnd(u64),
    /// `[(n, lc, offset)]`, a stream that is not 1.
    Stream(u64),
    Empty,
    /// Two ranges covering `lc..offset`.
    Split,
    /// Anything.
    Raw(Vec<WhereEntry>),
}

#[derive(Debug, Clone, Copy)]
enum Txn {
    Fresh,
    /// The id of this worker's last PHASE1 again.
    Again,
}

/// Which transaction a PHASE2 names.
#[derive(Debug, Clone, Copy)]
enum Target {
    LastVoted,
    /// The n-th (mod len) transaction the sink holds for this worker.
    Pending(usize),
    /// The n-th (mod len) id this worker ever used (maybe decided).
    Old(usize),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Decide {
    /// Commit if the sink voted commit: what a correct worker does.
    AsVoted,
    Flip,
    Commit,
    Abort,
}

#[derive(Debug, Clone, Copy)]
enum Left {
    Worker(usize),
    /// A valid name that never connected.
    Ghost,
    /// A name that is not a safe file name (ignored).
    Bad,
}

/// Frames the sink answers with ERROR then close (or just close).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Notify(u64),
    Message(u64),
    Eos(u64),
    HelloAgain,
    /// The worker sends ERROR: the sink closes.
    WorkerError,
    /// OK, ACK, NOTIFY_ACK or RESTART from a worker.
    Unexpected(u8),
    /// REPLY (true) or REPLY_UNCOMMITTED (false) from a worker.
    TwoPcReply(bool),
}

/// A first frame the sink refuses (the sink serves on).
#[derive(Debug, Clone, Copy)]
enum BadHello {
    Version,
    Cookie,
    Name(usize),
    NotHello,
}

const BAD_NAMES: [&str; 6] = ["", ".", "..", "a/b", "w0.txnlog", "nul\0"];

#[derive(Debug, Clone)]
enum Action {
    /// Connect and HELLO; if already connected, HELLO on a second connection.
    Hello(usize),
    Notify(usize, u64),
    Data(usize, At, Vec<u8>),
    /// PHASE1, then maybe at once the PHASE2 (as a worker's checkpoint does).
    Phase1(usize, Txn, Where, Option<Decide>),
    Phase2(usize, Target, Decide),
    List(usize, u64),
    WorkersLeft(usize, Vec<Left>),
    Eos(usize),
    /// Graceful (half-close, wait for the sink's close) or abrupt.
    Disconnect(usize, bool),
    Refused(usize, Refusal),
    BadHello(BadHello),
    /// The sink process dies (its runtime is dropped) and starts again.
    Restart,
}

fn arb_where() -> impl Strategy<Value = Where> {
    prop_oneof![
        10 => Just(Where::Whole),
        2 => (1u64..12).prop_map(Where::Short),
        1 => prop_oneof![-8i64..0, 1i64..8].prop_map(Where::Start),
        1 => (1u64..12).prop_map(Where::PastEnd),
        1 => prop_oneof![Just(0u64), Just(2), Just(u64::MAX)].prop_map(Where::Stream),
        1 => Just(Where::Empty),
        1 => Just(Where::Split),
        1 => prop::collection::vec((0u64..3, 0u64..64, 0u64..64), 0..3).prop_map(Where::Raw),
    ]
}

fn arb_decide() -> impl Strategy<Value = Decide> {
    prop_oneof![
        8 => Just(Decide::AsVoted),
        1 => Just(Decide::Flip),
        1 => Just(Decide::Commit),
        1 => Just(Decide::Abort),
    ]
}

fn arb_refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        prop_oneof![Just(0u64), Just(2), Just(u64::MAX)].prop_map(Refusal::Notify),
        prop_oneof![Just(2u64), Just(3), Just(u64::MAX)].prop_map(Refusal::Message),
        prop_oneof![Just(0u64), Just(2)].prop_map(Refusal::Eos),
        Just(Refusal::HelloAgain),
        Just(Refusal::WorkerError),
        (0u8..4).prop_map(Refusal::Unexpected),
        any::<bool>().prop_map(Refusal::TwoPcReply),
    ]
}

fn arb_bad_hello() -> impl Strategy<Value = BadHello> {
    prop_oneof![
        Just(BadHello::Version),
        Just(BadHello::Cookie),
        (0..BAD_NAMES.len() + 1).prop_map(BadHello::Name),
        Just(BadHello::NotHello),
    ]
}

fn arb_action() -> impl Strategy<Value = Action> {
    let w = || 0..WORKERS.len();
    // Payloads without '\n': each file's committed bytes are then one
    // "line" for the verify reader, so they can be compared file by file.
    let payload = prop::collection::vec(
        any::<u8>().prop_map(|b| if b == b'\n' { b'.' } else { b }),
        0..12,
    );
    let at = prop_oneof![
        14 => Just(At::Exact),
        1 => (1u64..20).prop_map(At::Gap),
        1 => (1u64..20).prop_map(At::Rewind),
    ];
    let txn = prop_oneof![6 => Just(Txn::Fresh), 1 => Just(Txn::Again)];
    let then = prop_oneof![3 => Just(None), 7 => arb_decide().prop_map(Some)];
    let target = prop_oneof![
        4 => Just(Target::LastVoted),
        2 => any::<usize>().prop_map(Target::Pending),
        1 => any::<usize>().prop_map(Target::Old),
        1 => Just(Target::Unknown),
    ];
    let por = prop_oneof![Just(u64::MAX), Just(0u64), 0u64..100, any::<u64>()];
    let left = prop_oneof![
        4 => w().prop_map(Left::Worker),
        1 => Just(Left::Ghost),
        1 => Just(Left::Bad),
    ];
    prop_oneof![
        3 => w().prop_map(Action::Hello),
        1 => (w(), por).prop_map(|(i, p)| Action::Notify(i, p)),
        14 => (w(), at, payload).prop_map(|(i, a, p)| Action::Data(i, a, p)),
        8 => (w(), txn, arb_where(), then).prop_map(|(i, t, wl, d)| Action::Phase1(i, t, wl, d)),
        3 => (w(), target, arb_decide()).prop_map(|(i, t, d)| Action::Phase2(i, t, d)),
        2 => (w(), any::<u64>()).prop_map(|(i, r)| Action::List(i, r)),
        1 => (w(), prop::collection::vec(left, 0..3)).prop_map(|(i, l)| Action::WorkersLeft(i, l)),
        1 => w().prop_map(Action::Eos),
        3 => (w(), any::<bool>()).prop_map(|(i, g)| Action::Disconnect(i, g)),
        1 => (w(), arb_refusal()).prop_map(|(i, r)| Action::Refused(i, r)),
        1 => arb_bad_hello().prop_map(Action::BadHello),
        1 => Just(Action::Restart),
    ]
}

// ------------------------------------------------------------ the wire side

/// A worker's connection, read with a deadline.
struct Conn {
    s: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn, String> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(PATIENCE))
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        Ok(Conn {
            s,
            buf: BytesMut::new(),
        })
    }

    /// Sends `frame`. A failed write is not an error here: the sink may
    /// have closed, which the next read reports.
    fn send(&mut self, frame: &Frame) {
        let bytes = connector::codec::encode_to_bytes(frame).expect("encodable");
        let _ = self.s.write_all(&bytes);
    }

    /// The next frame, or `None` when the sink closed (EOF or reset).
    fn recv(&mut self) -> Result<Option<Frame>, String> {
        let codec = ConnectorCodec::default();
        loop {
            match codec.decode_frame(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(format!("the sink sent an undecodable frame: {e}")),
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("the sink closed in the middle of a frame".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no answer and no close within {PATIENCE:?}"))
                }
                Err(_) => return Ok(None),
            }
        }
    }

    fn expect(&mut self, want: &Frame) -> Result<(), String> {
        match self.recv()? {
            Some(got) if &got == want => Ok(()),
            got => Err(format!("expected {want:?}, got {got:?}")),
        }
    }

    fn expect_close(&mut self) -> Result<(), String> {
        match self.recv()? {
            None => Ok(()),
            Some(f) => Err(format!("expected the sink to close, got {f:?}")),
        }
    }

    /// ERROR containing `text`, then the close.
    fn expect_refusal(&mut self, text: &str) -> Result<(), String> {
        match self.recv()? {
            Some(Frame::Error { message }) if message.contains(text) => self.expect_close(),
            got => Err(format!("expected ERROR {text:?} and a close, got {got:?}")),
        }
    }
}

fn hello_frame(version: &str, cookie: &str, name: &str) -> Frame {
    Frame::Hello {
        version: version.into(),
        cookie: cookie.into(),
        program_name: "Passthrough".into(),
        instance_name: name.into(),
    }
}

fn notify(por: u64) -> Frame {
    Frame::Notify {
        stream_id: 1,
        stream_name: Bytes::from_static(b"output"),
        point_of_ref: por,
    }
}

fn notify_ack(offset: u64) -> Frame {
    Frame::NotifyAck {
        success: true,
        stream_id: 1,
        point_of_ref: offset,
    }
}

fn two_pc(m: TwoPc) -> Frame {
    Frame::two_pc(&m).expect("encodable")
}

fn message(stream_id: u64, message_id: u64, payload: Vec<u8>) -> Frame {
    Frame::Message(Message {
        stream_id,
        message_id,
        event_time: 0,
        key: None,
        payload: payload.into(),
    })
}

/// A sink served in this process over `prefix`.
struct Sink {
    addr: SocketAddr,
    shared: Arc<sink::server::Shared>,
    code: tokio::task::JoinHandle<u8>,
    rt: tokio::runtime::Runtime,
}

impl Sink {
    fn start(prefix: &Path) -> Sink {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config = sink::server::Config {
            prefix: prefix.to_owned(),
            cookie: DEFAULT_COOKIE.into(),
            rules: sink::rules::Rules::none(),
            por: sink::server::PorMode::default(),
        };
        let server = rt
            .block_on(sink::server::Server::bind(
                "127.0.0.1:0".parse().unwrap(),
                config,
            ))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shared = server.shared().clone();
        let code = rt.spawn(server.run());
        Sink {
            addr,
            shared,
            code,
            rt,
        }
    }

    /// The exit code, once the server stopped.
    fn exit_code(&mut self) -> Result<u8, String> {
        let code = &mut self.code;
        match self
            .rt
            .block_on(async { tokio::time::timeout(PATIENCE, code).await })
        {
            Ok(Ok(code)) => Ok(code),
            Ok(Err(e)) => Err(format!("the server task failed: {e}")),
            Err(_) => Err(format!("the sink did not halt within {PATIENCE:?}")),
        }
    }

    /// Like SIGKILL: every task is dropped where it waits.
    fn kill(self) {
        self.rt.shutdown_timeout(PATIENCE);
    }
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
struct Pending {
    id: String,
    vote: bool,
    wl: Vec<WhereEntry>,
}

/// One pair of files of a worker (`PREFIX.W`, `PREFIX.W.txnlog`): a new
/// pair is created at the first HELLO after WORKERS_LEFT renamed the last.
#[derive(Debug, Default)]
struct Gen {
    worker: usize,
    /// The output as the sink holds it (file and write buffer).
    data: Vec<u8>,
    /// Last committed offset.
    lc: u64,
    /// Voted on, not decided, in txnlog order.
    pending: Vec<Pending>,
    /// The next vote is forced to abort (`next-txn-force-abort` recorded).
    forced: bool,
    /// The `2-ok` records.
    commits: Vec<(String, u64)>,
    /// The bytes of the committed transactions, in order.
    committed: Vec<u8>,
    /// Renamed away by WORKERS_LEFT.
    retired: bool,
}

impl Gen {
    fn offset(&self) -> u64 {
        self.data.len() as u64
    }

    /// HELLO's recovery: the cut, or why the sink must halt (CRITICAL).
    fn recovery(&self) -> Result<u64, &'static str> {
        if self.pending.len() > 1 {
            return Err("more than one transaction pending at recovery");
        }
        let cut = match self.pending.first() {
            // Never below the last commit (docs/sink.md, Recovery, step 4).
            Some(p) if p.vote => end_por(&p.wl)
                .ok_or("pending 1-ok with a bad where-list")?
                .max(self.lc),
            _ => self.lc,
        };
        if self.offset() < cut {
            return Err("the output is shorter than the pending 1-ok vouches for");
        }
        Ok(cut)
    }
}

fn end_por(wl: &[WhereEntry]) -> Option<u64> {
    match wl {
        [(1, _, end)] => Some(*end),
        _ => None,
    }
}

/// A worker's live connection and its session-only state.
struct Session {
    gen: usize,
    /// A gap was seen since the last vote.
    gap: bool,
    conn: Conn,
    /// Frames without an answer were sent since the last answer.
    unsynced: bool,
}

#[derive(Default)]
struct Worker {
    /// The pair named `PREFIX.W` now.
    files: Option<usize>,
    session: Option<Session>,
    next_txn: u64,
    last_voted: Option<String>,
    used: Vec<String>,
}

/// What a case went through (printed with `SESSION_PROPS_STATS=1`).
#[derive(Debug, Default)]
struct Stats {
    commits: u32,
    aborts: u32,
    halts: u32,
    restarts: u32,
    refusals: u32,
    recovered_pending: u32,
    gaps: u32,
    retired: u32,
    skipped: u32,
}

struct Case {
    dir: tempfile::TempDir,
    sink: Option<Sink>,
    gens: Vec<Gen>,
    workers: Vec<Worker>,
    trace: Vec<String>,
    stats: Stats,
}

type Outcome = Result<(), String>;

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start(&dir.path().join("output"));
        Case {
            dir,
            sink: Some(sink),
            gens: Vec::new(),
            workers: (0..WORKERS.len()).map(|_| Worker::default()).collect(),
            trace: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("output")
    }

    fn sink(&self) -> &Sink {
        self.sink.as_ref().expect("a sink runs")
    }

    fn note(&mut self, s: impl Into<String>) {
        self.trace.push(format!("    {}", s.into()));
    }

    fn session(&mut self, i: usize) -> &mut Session {
        self.workers[i].session.as_mut().expect("connected")
    }

    fn gen_of(&mut self, i: usize) -> &mut Gen {
        let g = self.workers[i].session.as_ref().expect("connected").gen;
        &mut self.gens[g]
    }

    /// Makes sure the sink processed every frame sent on `i`'s connection:
    /// a NOTIFY, whose NOTIFY_ACK must carry the modelled offset.
    fn sync(&mut self, i: usize) -> Outcome {
        let Some(s) = self.workers[i].session.as_ref() else {
            return Ok(());
        };
        if !s.unsynced {
            return Ok(());
        }
        let offset = self.gens[s.gen].offset();
        let s = self.session(i);
        s.conn.send(&notify(u64::MAX));
        s.conn
            .expect(&notify_ack(offset))
            .map_err(|e| format!("{} (sync): {e}", WORKERS[i]))?;
        s.unsynced = false;
        Ok(())
    }

    fn sync_all(&mut self) -> Outcome {
        (0..WORKERS.len()).try_for_each(|i| self.sync(i))
    }

    /// Kills the sink and starts it again over the same directory.
    fn restart(&mut self) {
        if let Some(s) = self.sink.take() {
            s.kill();
        }
        for w in &mut self.workers {
            w.session = None;
        }
        self.sink = Some(Sink::start(&self.prefix()));
        self.stats.restarts += 1;
    }

    /// The model says the last frame on `conn` halts the sink with 66.
    fn halts(&mut self, mut conn: Conn, why: &str) -> Outcome {
        conn.expect_close()
            .map_err(|e| format!("the sink should halt ({why}): {e}"))?;
        let sink = self.sink.as_mut().expect("a sink runs");
        let code = sink
            .exit_code()
            .map_err(|e| format!("the sink should halt ({why}): {e}"))?;
        if code != EXIT_VIOLATION {
            return Err(format!(
                "halted with {code}, expected {EXIT_VIOLATION} ({why})"
            ));
        }
        self.note(format!("sink halted with 66 ({why}); restarted"));
        self.stats.halts += 1;
        self.restart();
        Ok(())
    }

    /// Whether HELLO of worker `i` would halt the sink.
    fn poisoned(&self, i: usize) -> bool {
        self.workers[i]
            .files
            .is_some_and(|g| self.gens[g].recovery().is_err())
    }

    /// Connects `i` if needed; `false` when HELLO would halt the sink (the
    /// action is then skipped; an explicit HELLO still tries).
    fn ensure(&mut self, i: usize) -> Result<bool, String> {
        if self.workers[i].session.is_some() {
            return Ok(true);
        }
        if self.poisoned(i) {
            self.note("skipped: HELLO would halt the sink");
            self.stats.skipped += 1;
            return Ok(false);
        }
        self.note("implicit HELLO");
        self.hello(i)?;
        Ok(self.workers[i].session.is_some())
    }

    fn hello(&mut self, i: usize) -> Outcome {
        let name = WORKERS[i];
        let mut conn = Conn::open(self.sink().addr)?;
        conn.send(&hello_frame(SINK_VERSION, DEFAULT_COOKIE, name));
        if self.workers[i].session.is_some() {
            self.stats.refusals += 1;
            return conn
                .expect_refusal(&format!("Hello message from worker {name}: already active"));
        }
        let g = match self.workers[i].files {
            Some(g) => g,
            None => {
                self.gens.push(Gen {
                    worker: i,
                    ..Gen::default()
                });
                self.workers[i].files = Some(self.gens.len() - 1);
                self.gens.len() - 1
            }
        };
        let cut = match self.gens[g].recovery() {
            Ok(cut) => cut,
            Err(why) => return self.halts(conn, why),
        };
        let gen = &mut self.gens[g];
        gen.data.truncate(cut as usize);
        if !gen.pending.is_empty() {
            self.stats.recovered_pending += 1;
        }
        conn.expect(&Frame::Ok {
            initial_credits: 500,
        })
        .map_err(|e| format!("HELLO {name}: {e}"))?;
        self.workers[i].session = Some(Session {
            gen: g,
            gap: false,
            conn,
            unsynced: false,
        });
        Ok(())
    }

    fn step(&mut self, a: &Action) -> Outcome {
        self.trace.push(format!("{a:?}"));
        if let Some(i) = match a {
            Action::Hello(i)
            | Action::Notify(i, _)
            | Action::Data(i, ..)
            | Action::Phase1(i, ..)
            | Action::Phase2(i, ..)
            | Action::List(i, _)
            | Action::WorkersLeft(i, _)
            | Action::Eos(i)
            | Action::Disconnect(i, _)
            | Action::Refused(i, _) => Some(*i),
            Action::BadHello(_) | Action::Restart => None,
        } {
            for j in (0..WORKERS.len()).filter(|&j| j != i) {
                self.sync(j)?;
            }
        } else {
            self.sync_all()?;
        }
        match a {
            Action::Hello(i) => self.hello(*i),
            Action::Notify(i, por) => {
                if !self.ensure(*i)? {
                    return Ok(());
                }
                let offset = self.gen_of(*i).offset();
                let s = self.session(*i);
                s.conn.send(&notify(*por));
                s.conn.expect(&notify_ack(offset))?;
                s.unsynced = false;
                Ok(())
            }
            Action::Data(i, at, payload) => self.data(*i, at, payload),
            Action::Phase1(i, txn, wl, then) => self.phase1(*i, *txn, wl, *then),
            Action::Phase2(i, target, decide) => {
                if !self.ensure(*i)? {
                    return Ok(());
                }
                let id = self.target(*i, *target);
                self.phase2(*i, id, *decide)
            }
            Action::List(i, rtag) => {
                if !self.ensure(*i)? {
                    return Ok(());
                }
                let ids: Vec<String> = self
                    .gen_of(*i)
                    .pending
                    .iter()
                    .map(|p| p.id.clone())
                    .collect();
                let s = self.session(*i);
                s.conn.send(&two_pc(TwoPc::ListUncommitted { rtag: *rtag }));
                s.conn.expect(&two_pc(TwoPc::ReplyUncommitted {
                    rtag: *rtag,
                    txn_ids: ids,
                }))?;
                s.unsynced = false;
                Ok(())
            }
            Action::WorkersLeft(i, left) => self.workers_left(*i, left),
            Action::Eos(i) => {
                if !self.ensure(*i)? {
                    return Ok(());
                }
                let offset = self.gen_of(*i).offset();
                let s = self.session(*i);
                s.conn.send(&Frame::Eos { stream_id: 1 });
                s.conn.expect(&Frame::Ack {
                    credits: 1,
                    acks: vec![(1, offset)],
                })?;
                s.unsynced = false;
                Ok(())
            }
            Action::Disconnect(i, graceful) => self.disconnect(*i, *graceful),
            Action::Refused(i, r) => self.refused(*i, *r),
            Action::BadHello(b) => self.bad_hello(*b),
            Action::Restart => {
                self.restart();
                Ok(())
            }
        }
    }

    fn data(&mut self, i: usize, at: &At, payload: &[u8]) -> Outcome {
        if !self.ensure(i)? {
            return Ok(());
        }
        let offset = self.gen_of(i).offset();
        let id = match at {
            At::Exact => offset,
            At::Gap(k) => offset + k,
            At::Rewind(k) => offset.saturating_sub(*k),
        };
        self.session(i).conn.send(&message(1, id, payload.to_vec()));
        self.session(i).unsynced = true;
        if id < offset {
            let s = self.workers[i].session.take().expect("connected");
            return self.halts(s.conn, "duplicate data");
        }
        if id > offset {
            self.note("gap: the next vote is abort");
            self.gen_of(i).forced = true;
            self.session(i).gap = true;
            self.stats.gaps += 1;
        } else {
            self.gen_of(i).data.extend_from_slice(payload);
        }
        Ok(())
    }

    fn phase1(&mut self, i: usize, txn: Txn, wl: &Where, then: Option<Decide>) -> Outcome {
        if !self.ensure(i)? {
            return Ok(());
        }
        let w = &mut self.workers[i];
        let id = match (txn, &w.last_voted) {
            (Txn::Again, Some(last)) => last.clone(),
            _ => {
                w.next_txn += 1;
                format!("{}:c_id={}", WORKERS[i], w.next_txn)
            }
        };
        w.last_voted = Some(id.clone());
        w.used.push(id.clone());
        let gap = self.session(i).gap;
        let gen = self.gen_of(i);
        let (lc, offset) = (gen.lc, gen.offset());
        let where_list: Vec<WhereEntry> = match wl {
            Where::Whole => vec![(1, lc, offset)],
            Where::Short(k) => vec![(1, lc, offset.saturating_sub(*k).max(lc))],
            Where::Start(d) => {
                let start = lc.checked_add_signed(*d).unwrap_or(lc + d.unsigned_abs());
                vec![(1, start, offset)]
            }
            Where::PastEnd(k) => vec![(1, lc, offset + k)],
            Where::Stream(n) => vec![(*n, lc, offset)],
            Where::Empty => vec![],
            Where::Split => {
                let mid = lc + (offset - lc) / 2;
                vec![(1, lc, mid), (1, mid, offset)]
            }
            Where::Raw(v) => v.clone(),
        };
        // docs/sink.md, PHASE1: the vote starts as commit and becomes abort...
        let mut vote = !gen.forced;
        let mut critical = false;
        if where_list.len() != 1 {
            vote = false;
        }
        for &(stream, start, end) in &where_list {
            if stream != 1 || start != lc || start > end {
                vote = false;
            }
            if end > offset {
                vote = false;
                if !(offset == start || gap) {
                    critical = true;
                    break;
                }
            }
        }
        self.note(format!("PHASE1 {id} {where_list:?}"));
        self.session(i).conn.send(&two_pc(TwoPc::Phase1 {
            txn_id: id.clone(),
            where_list: where_list.clone(),
        }));
        if critical {
            // next-txn-force-abort is recorded before the exit.
            self.gen_of(i).forced = true;
            let s = self.workers[i].session.take().expect("connected");
            return self.halts(s.conn, "PHASE1 range past data never received");
        }
        let gen = self.gen_of(i);
        gen.pending.retain(|p| p.id != id);
        gen.pending.push(Pending {
            id: id.clone(),
            vote,
            wl: where_list,
        });
        gen.forced = false;
        let s = self.session(i);
        s.gap = false;
        s.conn.expect(&two_pc(TwoPc::Reply {
            txn_id: id.clone(),
            commit: vote,
        }))?;
        s.unsynced = false;
        match then {
            Some(d) => self.phase2(i, id, d),
            None => Ok(()),
        }
    }

    fn target(&mut self, i: usize, t: Target) -> String {
        let gen = self.gen_of(i);
        let pending = gen.pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        let w = &self.workers[i];
        match t {
            Target::LastVoted => w.last_voted.clone(),
            Target::Pending(n) if !pending.is_empty() => Some(pending[n % pending.len()].clone()),
            Target::Old(n) if !w.used.is_empty() => Some(w.used[n % w.used.len()].clone()),
            _ => None,
        }
        .unwrap_or_else(|| format!("{}:unknown", WORKERS[i]))
    }

    fn phase2(&mut self, i: usize, id: String, decide: Decide) -> Outcome {
        let gen = self.gen_of(i);
        let pos = gen.pending.iter().position(|p| p.id == id);
        let vote = pos.map(|p| gen.pending[p].vote);
        let commit = match decide {
            Decide::AsVoted => vote.unwrap_or(true),
            Decide::Flip => !vote.unwrap_or(true),
            Decide::Commit => true,
            Decide::Abort => false,
        };
        self.note(format!("PHASE2 {id} commit={commit} (vote {vote:?})"));
        self.session(i).conn.send(&two_pc(TwoPc::Phase2 {
            txn_id: id.clone(),
            commit,
        }));
        self.session(i).unsynced = true;
        let Some(pos) = pos else {
            return Ok(()); // 2-error: an unknown transaction
        };
        let gen = self.gen_of(i);
        let p = gen.pending[pos].clone();
        if commit {
            // docs/sink.md, PHASE2: each of these is FATAL/CRITICAL, exit 66;
            // the transaction stays pending in the txnlog.
            let why = if !p.vote {
                Some("commit of a transaction voted abort")
            } else {
                match end_por(&p.wl) {
                    None => Some("commit with a bad where-list"),
                    Some(end) if end < gen.lc => Some("commit behind the last commit"),
                    Some(end) if end != gen.offset() => Some("commit end != output offset"),
                    Some(_) => None,
                }
            };
            if let Some(why) = why {
                let s = self.workers[i].session.take().expect("connected");
                return self.halts(s.conn, why);
            }
            let end = end_por(&p.wl).expect("checked");
            gen.pending.remove(pos);
            let bytes = gen.data[gen.lc as usize..end as usize].to_vec();
            gen.committed.extend_from_slice(&bytes);
            gen.commits.push((id, end));
            gen.lc = end;
            self.stats.commits += 1;
        } else {
            gen.pending.remove(pos);
            let lc = gen.lc as usize;
            gen.data.truncate(lc);
            self.stats.aborts += 1;
        }
        Ok(())
    }

    fn workers_left(&mut self, i: usize, left: &[Left]) -> Outcome {
        if !self.ensure(i)? {
            return Ok(());
        }
        let mut names = Vec::new();
        for (n, l) in left.iter().enumerate() {
            match *l {
                Left::Worker(j) => {
                    names.push(WORKERS[j].to_owned());
                    if let Some(g) = self.workers[j].files.take() {
                        self.gens[g].retired = true;
                        self.stats.retired += 1;
                    }
                }
                Left::Ghost => names.push("ghost".into()),
                Left::Bad => names.push(BAD_NAMES[n % BAD_NAMES.len()].into()),
            }
        }
        let s = self.session(i);
        s.conn.send(&two_pc(TwoPc::WorkersLeft {
            rtag: 7,
            workers: names,
        }));
        s.unsynced = true;
        Ok(())
    }

    fn disconnect(&mut self, i: usize, graceful: bool) -> Outcome {
        self.sync(i)?;
        let Some(mut s) = self.workers[i].session.take() else {
            return Ok(());
        };
        if graceful {
            // The sink releases the name before the peer sees the close.
            let _ = s.conn.s.shutdown(Shutdown::Write);
            s.conn.expect_close()
        } else {
            drop(s);
            let deadline = Instant::now() + PATIENCE;
            while self.sink().shared.is_live(WORKERS[i]) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} still live {PATIENCE:?} after its close",
                        WORKERS[i]
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }

    fn refused(&mut self, i: usize, r: Refusal) -> Outcome {
        if !self.ensure(i)? {
            return Ok(());
        }
        let unsupported = |n: u64| format!("Unsupported stream id {n}");
        let (frame, text) = match r {
            Refusal::Notify(n) => (
                Frame::Notify {
                    stream_id: n,
                    stream_name: Bytes::from_static(b"x"),
                    point_of_ref: 0,
                },
                Some(unsupported(n)),
            ),
            Refusal::Message(n) => (message(n, 0, b"x".to_vec()), Some(unsupported(n))),
            Refusal::Eos(n) => (Frame::Eos { stream_id: n }, Some(unsupported(n))),
            Refusal::HelloAgain => (
                hello_frame(SINK_VERSION, DEFAULT_COOKIE, WORKERS[i]),
                Some("HELLO on an established connection".into()),
            ),
            Refusal::WorkerError => (
                Frame::Error {
                    message: "worker failure".into(),
                },
                None,
            ),
            Refusal::Unexpected(k) => {
                let f = match k {
                    0 => Frame::Ok { initial_credits: 1 },
                    1 => Frame::Ack {
                        credits: 1,
                        acks: vec![(1, 0)],
                    },
                    2 => notify_ack(0),
                    _ => Frame::Restart { address: None },
                };
                let text = format!("unexpected {} frame from a worker", f.name());
                (f, Some(text))
            }
            Refusal::TwoPcReply(vote) => {
                let m = if vote {
                    TwoPc::Reply {
                        txn_id: "t".into(),
                        commit: true,
                    }
                } else {
                    TwoPc::ReplyUncommitted {
                        rtag: 1,
                        txn_ids: vec![],
                    }
                };
                let text = format!("unexpected 2PC {} from a worker", m.name());
                (two_pc(m), Some(text))
            }
        };
        let mut s = self.workers[i].session.take().expect("connected");
        s.conn.send(&frame);
        self.stats.refusals += 1;
        match text {
            Some(t) => s.conn.expect_refusal(&t),
            None => s.conn.expect_close(),
        }
    }

    fn bad_hello(&mut self, b: BadHello) -> Outcome {
        let mut conn = Conn::open(self.sink().addr)?;
        let long = "x".repeat(sink::store::MAX_WORKER_NAME + 1);
        let (frame, text) = match b {
            BadHello::Version => (
                hello_frame("0.0.1", DEFAULT_COOKIE, "b"),
                "Unknown protocol version",
            ),
            BadHello::Cookie => (hello_frame(SINK_VERSION, "nope", "b"), "Bad cookie"),
            BadHello::Name(n) => (
                hello_frame(
                    SINK_VERSION,
                    DEFAULT_COOKIE,
                    BAD_NAMES.get(n).copied().unwrap_or(&long),
                ),
                "Bad worker name",
            ),
            BadHello::NotHello => (notify(0), "expected HELLO, got NOTIFY"),
        };
        conn.send(&frame);
        self.stats.refusals += 1;
        conn.expect_refusal(text)
    }

    /// End of a case: every worker reconnects to a restarted sink and lists
    /// its uncommitted transactions, and a fresh worker is still served.
    fn finish(&mut self) -> Outcome {
        self.trace
            .push("(end: restart, every worker lists its uncommitted)".into());
        self.sync_all()?;
        self.restart();
        for i in 0..WORKERS.len() {
            self.step(&Action::Hello(i))?;
            self.step(&Action::List(i, 99))?;
        }
        self.sync_all()?;
        let mut probe = Conn::open(self.sink().addr)?;
        probe.send(&hello_frame(SINK_VERSION, DEFAULT_COOKIE, "probe"));
        probe.expect(&Frame::Ok {
            initial_credits: 500,
        })?;
        probe.send(&notify(u64::MAX));
        probe.expect(&notify_ack(0))?;
        if self.sink().shared.halted() {
            return Err("the sink is halted".into());
        }
        Ok(())
    }

    /// The files hold exactly the modelled commits and committed bytes.
    fn check_files(&self) -> Outcome {
        let dir = self.dir.path();
        for (i, name) in WORKERS.iter().enumerate() {
            // This worker's pairs: the renamed ones by rename time, then
            // the current one.
            let mut retired: Vec<((u64, u64), PathBuf)> = Vec::new();
            let mut current = None;
            for e in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
                let path = e.map_err(|e| e.to_string())?.path();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                if file == format!("output.{name}.txnlog") {
                    current = Some(path);
                    continue;
                }
                let Some(mid) = file
                    .strip_prefix(&format!("output.{name}."))
                    .and_then(|m| m.strip_suffix(".txnlog"))
                else {
                    continue;
                };
                let ts = mid
                    .split_once('.')
                    .and_then(|(s, us)| Some((s.parse().ok()?, us.parse().ok()?)))
                    .ok_or_else(|| format!("unexpected file {file}"))?;
                retired.push((ts, path));
            }
            retired.sort();
            let mut paths: Vec<PathBuf> = retired.into_iter().map(|(_, p)| p).collect();
            paths.extend(current);
            let gens: Vec<&Gen> = self.gens.iter().filter(|g| g.worker == i).collect();
            let want_current = self.workers[i].files.is_some();
            if paths.len() != gens.len()
                || gens.iter().filter(|g| !g.retired).count() != usize::from(want_current)
            {
                return Err(format!(
                    "{name}: {} txnlog(s) {paths:?}, the model has {} file pair(s)",
                    paths.len(),
                    gens.len()
                ));
            }
            for (gen, txnlog) in gens.iter().zip(&paths) {
                let entries = verify::txnlog::read(txnlog).map_err(|e| e.to_string())?;
                let commits: Vec<(String, u64)> = entries
                    .into_iter()
                    .filter_map(|e| match e.record {
                        Record::Phase2Ok { txn_id, offset } => Some((txn_id, offset)),
                        _ => None,
                    })
                    .collect();
                if commits != gen.commits {
                    return Err(format!(
                        "{}: 2-ok records {commits:?}, the sink answered commit for {:?}",
                        txnlog.display(),
                        gen.commits
                    ));
                }
                let data_path = txnlog.with_extension("");
                let data = std::fs::read(&data_path).map_err(|e| e.to_string())?;
                if data.get(..gen.committed.len()) != Some(&gen.committed[..]) {
                    return Err(format!(
                        "{}: committed bytes {:?}, expected {:?}",
                        data_path.display(),
                        &data[..gen.committed.len().min(data.len())],
                        gen.committed
                    ));
                }
            }
        }
        // The whole directory as `crasher verify` reads it: each pair's
        // committed bytes (one partial line, as payloads have no '\n').
        let mut stream = CommittedStream::new(dir, MissingFilePolicy::Report);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let missing = stream
            .advance(true, &mut |l| got.push(l.to_vec()))
            .map_err(|e| e.to_string())?
            .cloned();
        if let Some(m) = missing {
            return Err(format!(
                "the verify reader finds committed data missing: {m}"
            ));
        }
        stream.flush_partial_lines(&mut |l| got.push(l.to_vec()));
        let mut want: Vec<Vec<u8>> = self
            .gens
            .iter()
            .filter(|g| !g.committed.is_empty())
            .map(|g| g.committed.clone())
            .collect();
        got.sort();
        want.sort();
        if got != want {
            return Err(format!(
                "the verify reader's committed output {got:?} != the committed transactions' {want:?}"
            ));
        }
        Ok(())
    }
}

fn run(actions: &[Action]) -> Result<Stats, String> {
    let mut case = Case::new();
    let outcome = actions
        .iter()
        .try_for_each(|a| case.step(a))
        .and_then(|()| case.finish())
        .and_then(|()| {
            if let Some(s) = case.sink.take() {
                s.kill();
            }
            case.check_files()
        });
    match outcome {
        Ok(()) => Ok(std::mem::take(&mut case.stats)),
        Err(e) => Err(format!("{e}\ntrace:\n{}", case.trace.join("\n"))),
    }
}

/// The case the property first failed on (recovery cut a stale pending
/// 1-ok's range below the last commit, destroying committed bytes).
#[test]
fn a_stale_pending_1ok_does_not_cut_committed_bytes_at_reconnect() {
    let run = run(&[
        Action::Phase1(0, Txn::Fresh, Where::Whole, None),
        Action::Data(0, At::Exact, vec![0]),
        Action::Phase1(0, Txn::Fresh, Where::Whole, Some(Decide::AsVoted)),
        Action::Disconnect(0, true),
        Action::Hello(0),
        Action::Notify(0, 0),
    ]);
    assert!(run.is_ok(), "{}", run.unwrap_err());
}

proptest! {
    #![proptest_config(config(128))]

    /// Random sequences of valid (and some refused) frames from three
    /// workers against a live sink: every answer, refusal and halt is the
    /// documented one, the sink keeps serving, and the files hold exactly
    /// the committed transactions' bytes.
    #[test]
    fn valid_frame_sequences_get_the_documented_answers_and_commit_exactly(
        actions in prop::collection::vec(arb_action(), 1..48)
    ) {
        let t0 = Instant::now();
        match run(&actions) {
            Ok(stats) => {
                if std::env::var_os("SESSION_PROPS_STATS").is_some() {
                    eprintln!("{} actions in {:?}: {stats:?}", actions.len(), t0.elapsed());
                }
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
