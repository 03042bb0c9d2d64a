//! `crasher sink` as a real process, driven over real sockets by a minimal
//! worker client that plays Wallaroo's side of the connector sink protocol.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connector::{Frame, TwoPc};
use procs::{wait_until, Proc};
use verify::txnlog::{self, Record};

use client::Worker;

/// A minimal worker: the client half of the connector sink protocol.
mod client {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use connector::codec::encode_to_bytes;
    use connector::{Frame, Message, TwoPc, DEFAULT_COOKIE, SINK_VERSION};

    /// One connection to the sink.
    pub struct Worker {
        stream: TcpStream,
        rtag: u64,
    }

    /// The HELLO a worker named `name` sends.
    pub fn hello(name: &str) -> Frame {
        hello_with(SINK_VERSION, DEFAULT_COOKIE, name)
    }

    /// A HELLO with any version and cookie.
    pub fn hello_with(version: &str, cookie: &str, name: &str) -> Frame {
        Frame::Hello {
            version: version.into(),
            cookie: cookie.into(),
            program_name: "Passthrough".into(),
            instance_name: name.into(),
        }
    }

    impl Worker {
        /// Opens a TCP connection (no handshake).
        pub fn connect(addr: SocketAddr) -> Worker {
            let stream = TcpStream::connect(addr).expect("connect to the sink");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.set_nodelay(true).unwrap();
            Worker { stream, rtag: 0 }
        }

        /// Wallaroo's connect sequence: HELLO, NOTIFY(1) and
        /// LIST_UNCOMMITTED back to back, then OK, NOTIFY_ACK and
        /// REPLY_UNCOMMITTED; returns the pending transactions.
        pub fn start(addr: SocketAddr, name: &str) -> (Worker, Vec<String>) {
            Worker::try_start(addr, name).unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        /// [`Worker::start`], retried (as Wallaroo does) while the sink
        /// refuses the name because the previous connection is still open.
        pub fn start_retrying(addr: SocketAddr, name: &str) -> (Worker, Vec<String>) {
            let mut got = None;
            let ok = procs::wait_until(super::deadline(), || {
                got = Worker::try_start(addr, name).ok();
                got.is_some()
            });
            assert!(ok, "{name} was refused until the deadline");
            got.unwrap()
        }

        /// [`Worker::start`], or the text of the sink's refusal.
        pub fn try_start(addr: SocketAddr, name: &str) -> Result<(Worker, Vec<String>), String> {
            let mut w = Worker::connect(addr);
            w.rtag += 1;
            let mut bytes = Vec::new();
            for f in [
                hello(name),
                Frame::Notify {
                    stream_id: 1,
                    stream_name: b"sink-stream".to_vec().into(),
                    point_of_ref: 0,
                },
                Frame::two_pc(&TwoPc::ListUncommitted { rtag: w.rtag }).unwrap(),
            ] {
                bytes.extend_from_slice(&encode_to_bytes(&f).unwrap());
            }
            // A refused HELLO closes the connection: the write may fail,
            // and the refusal is still there to read.
            let _ = w.stream.write_all(&bytes);
            match w.recv() {
                Some(Frame::Ok { .. }) => {}
                Some(Frame::Error { message }) => return Err(message),
                None => return Err("closed without a word".into()),
                other => panic!("expected OK, got {other:?}"),
            }
            match w.recv() {
                Some(Frame::NotifyAck {
                    success: true,
                    stream_id: 1,
                    ..
                }) => {}
                other => panic!("expected NOTIFY_ACK, got {other:?}"),
            }
            match w.recv_2pc() {
                Some(TwoPc::ReplyUncommitted { rtag, txn_ids }) => {
                    assert_eq!(rtag, w.rtag);
                    Ok((w, txn_ids))
                }
                other => panic!("expected REPLY_UNCOMMITTED, got {other:?}"),
            }
        }

        /// Sends raw bytes.
        pub fn send_raw(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).expect("send to the sink");
        }

        /// Sends one frame.
        pub fn send(&mut self, f: &Frame) {
            self.send_raw(&encode_to_bytes(f).unwrap());
        }

        /// Sends one 2PC message on stream 0.
        pub fn send_2pc(&mut self, m: &TwoPc) {
            self.send(&Frame::two_pc(m).unwrap());
        }

        /// Sends `bytes` as stream-1 data at `offset`.
        pub fn data(&mut self, offset: u64, bytes: &[u8]) {
            self.send(&Frame::Message(Message {
                stream_id: 1,
                message_id: offset,
                event_time: 0,
                key: None,
                payload: bytes.to_vec().into(),
            }));
        }

        /// PHASE1 over `[start, end)`; the vote, or `None` if the sink
        /// closed the connection instead of answering.
        pub fn phase1(&mut self, txn: &str, start: u64, end: u64) -> Option<bool> {
            self.send_2pc(&TwoPc::Phase1 {
                txn_id: txn.into(),
                where_list: vec![(1, start, end)],
            });
            match self.recv_2pc() {
                Some(TwoPc::Reply { txn_id, commit }) => {
                    assert_eq!(txn_id, txn);
                    Some(commit)
                }
                None => None,
                other => panic!("expected REPLY, got {other:?}"),
            }
        }

        /// PHASE2 (no reply).
        pub fn phase2(&mut self, txn: &str, commit: bool) {
            self.send_2pc(&TwoPc::Phase2 {
                txn_id: txn.into(),
                commit,
            });
        }

        /// The next frame, or `None` once the sink has closed the connection.
        pub fn recv(&mut self) -> Option<Frame> {
            let mut len = [0u8; 4];
            if let Err(e) = self.stream.read_exact(&mut len) {
                return closed(e);
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if let Err(e) = self.stream.read_exact(&mut body) {
                return closed(e);
            }
            Some(Frame::decode_body(body.into()).expect("the sink sent a valid frame"))
        }

        /// The next frame as a 2PC message.
        pub fn recv_2pc(&mut self) -> Option<TwoPc> {
            match self.recv()? {
                Frame::Message(m) if m.stream_id == 0 => Some(TwoPc::decode(m.payload).unwrap()),
                other => panic!("expected a stream-0 MESSAGE, got {other:?}"),
            }
        }

        /// Expects an ERROR frame (returning its text), then the close.
        pub fn expect_refusal(&mut self) -> String {
            let text = match self.recv() {
                Some(Frame::Error { message }) => message,
                other => panic!("expected ERROR, got {other:?}"),
            };
            self.expect_closed();
            text
        }

        /// Expects the sink to close the connection.
        pub fn expect_closed(&mut self) {
            if let Some(f) = self.recv() {
                panic!("expected the connection to be closed, got {f:?}");
            }
        }
    }

    fn closed<T>(e: std::io::Error) -> Option<T> {
        match e.kind() {
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted => None,
            _ => panic!("reading from the sink: {e}"),
        }
    }
}

fn crasher() -> &'static str {
    env!("CARGO_BIN_EXE_crasher")
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// A sink's working directory; each [`Env::start`] runs one sink process.
struct Env {
    dir: tempfile::TempDir,
    starts: usize,
}

struct Sink {
    proc: Proc,
    addr: SocketAddr,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            starts: 0,
        }
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("out").join("output")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sink.log")
    }

    fn start(&mut self, extra: &[&str]) -> Sink {
        self.starts += 1;
        let ready = self.dir.path().join(format!("ready.{}", self.starts));
        let mut cmd = Command::new(crasher());
        cmd.arg("sink")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--output")
            .arg(self.prefix())
            .arg("--log")
            .arg(self.log_path())
            .arg("--ready-file")
            .arg(&ready)
            .args(extra);
        let proc = Proc::spawn("sink", cmd, &self.dir.path().join("sink.stderr")).unwrap();
        self.wait_ready(proc, &ready)
    }

    fn wait_ready(&self, mut proc: Proc, ready: &Path) -> Sink {
        let ok = wait_until(deadline(), || ready.exists() || !proc.is_running());
        assert!(ok && ready.exists(), "sink not ready: {}", self.log());
        let addr = std::fs::read_to_string(ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Sink { proc, addr }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("sink.stderr")).unwrap_or_default();
        format!("{log}{err}")
    }

    fn data(&self, worker: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("out").join(format!("output.{worker}"))).unwrap()
    }

    fn records(&self, worker: &str) -> Vec<Record> {
        let p = self
            .dir
            .path()
            .join("out")
            .join(format!("output.{worker}.txnlog"));
        txnlog::read(&p)
            .unwrap()
            .into_iter()
            .map(|e| e.record)
            .collect()
    }

    /// Waits until the txnlog of `worker` has `n` records.
    fn wait_records(&self, worker: &str, n: usize) -> Vec<Record> {
        let mut got = Vec::new();
        let ok = wait_until(deadline(), || {
            got = self.records(worker);
            got.len() >= n
        });
        assert!(
            ok,
            "txnlog of {worker} has {} records, wanted {n}: {got:?}\n{}",
            got.len(),
            self.log()
        );
        got
    }

    fn assert_no_alarm(&self) {
        let log = self.log();
        for line in log.lines() {
            assert!(
                !["ERROR", "FATAL", "CRIT"].iter().any(|w| line.contains(w)),
                "alarm word in the sink log: {line}\n{log}"
            );
        }
    }
}

fn txn(worker: &str, c: u32) -> String {
    format!("Passthrough-w-{worker}-id-42:c_id={c}")
}

fn p1ok(txn: &str, start: u64, end: u64) -> Record {
    Record::Phase1Ok {
        txn_id: txn.into(),
        where_list: vec![(1, start, end)],
    }
}

fn p1no(txn: &str, start: u64, end: u64) -> Record {
    Record::Phase1Rollback {
        txn_id: txn.into(),
        where_list: vec![(1, start, end)],
    }
}

fn p2ok(txn: &str, offset: u64) -> Record {
    Record::Phase2Ok {
        txn_id: txn.into(),
        offset,
    }
}

fn p2no(txn: &str, offset: u64) -> Record {
    Record::Phase2Rollback {
        txn_id: txn.into(),
        offset,
    }
}

fn listed(txns: &[&str]) -> Record {
    Record::ListUncommitted {
        txn_ids: txns.iter().map(|t| t.to_string()).collect(),
    }
}

/// Sends `bytes` at `start` and commits it in one round.
fn commit_round(w: &mut Worker, txn: &str, start: u64, bytes: &[u8]) -> u64 {
    w.data(start, bytes);
    let end = start + bytes.len() as u64;
    assert_eq!(w.phase1(txn, start, end), Some(true), "vote on {txn}");
    w.phase2(txn, true);
    end
}

#[test]
fn a_commit_round_writes_the_output_and_the_txnlog_exactly() {
    let mut env = Env::new();
    let sink = env.start(&[]);
    let (mut w, pending) = Worker::start(sink.addr, "initializer");
    assert!(pending.is_empty());
    let t1 = txn("initializer", 1);
    w.data(0, b"A0000000 line one\n");
    w.data(18, b"A0000022 line two\n");
    assert_eq!(w.phase1(&t1, 0, 36), Some(true));
    w.phase2(&t1, true);
    w.send(&Frame::Eos { stream_id: 1 });
    assert_eq!(
        w.recv(),
        Some(Frame::Ack {
            credits: 1,
            acks: vec![(1, 36)]
        })
    );
    drop(w);
    let recs = env.wait_records("initializer", 4);
    assert_eq!(
        recs,
        vec![
            listed(&[]),
            p1ok(&t1, 0, 36),
            p2ok(&t1, 36),
            Record::ConnectionClosed
        ]
    );
    assert_eq!(
        env.data("initializer"),
        b"A0000000 line one\nA0000022 line two\n"
    );
    // A NOTIFY for another stream is refused; the sink stays up.
    let (mut w, _) = Worker::start_retrying(sink.addr, "initializer");
    w.send(&Frame::Notify {
        stream_id: 2,
        stream_name: b"x".to_vec().into(),
        point_of_ref: 0,
    });
    assert_eq!(w.expect_refusal(), "Unsupported stream id 2");
    let log = env.log();
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    env.assert_no_alarm();
    drop(sink);
}

#[test]
fn a_sink_killed_between_the_phases_reports_the_pending_txn_and_commits_it() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let (t1, t2) = (txn("worker1", 1), txn("worker1", 2));
    commit_round(&mut w, &t1, 0, b"0123456789");
    w.data(10, b"abcdefghij");
    assert_eq!(w.phase1(&t2, 10, 20), Some(true));
    sink.proc.kill().unwrap();
    w.expect_closed();
    let sink = env.start(&[]);
    let (mut w, pending) = Worker::start(sink.addr, "worker1");
    assert_eq!(pending, vec![t2.clone()]);
    // The pre-committed bytes were kept: Wallaroo may still commit them.
    assert_eq!(env.data("worker1"), b"0123456789abcdefghij");
    w.phase2(&t2, true);
    commit_round(&mut w, &txn("worker1", 3), 20, b"KLMNO");
    drop(w);
    let recs = env.wait_records("worker1", 9);
    let t3 = txn("worker1", 3);
    assert_eq!(
        recs,
        vec![
            listed(&[]),
            p1ok(&t1, 0, 10),
            p2ok(&t1, 10),
            p1ok(&t2, 10, 20),
            listed(&[&t2]),
            p2ok(&t2, 20),
            p1ok(&t3, 20, 25),
            p2ok(&t3, 25),
            Record::ConnectionClosed,
        ]
    );
    assert_eq!(env.data("worker1"), b"0123456789abcdefghijKLMNO");
    env.assert_no_alarm();
}

#[test]
fn a_sink_killed_after_phase1_truncates_on_a_phase2_abort_after_restart() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let (t1, t2) = (txn("worker1", 1), txn("worker1", 2));
    commit_round(&mut w, &t1, 0, b"0123456789");
    w.data(10, b"abcdefghij");
    assert_eq!(w.phase1(&t2, 10, 20), Some(true));
    sink.proc.kill().unwrap();
    let sink = env.start(&[]);
    let (mut w, pending) = Worker::start(sink.addr, "worker1");
    assert_eq!(pending, vec![t2.clone()]);
    w.phase2(&t2, false);
    // Wallaroo resends from its last commit.
    commit_round(&mut w, &txn("worker1", 3), 10, b"ABCDE");
    drop(w);
    let recs = env.wait_records("worker1", 9);
    assert_eq!(recs[5], p2no(&t2, 10), "{recs:?}");
    assert_eq!(recs[7], p2ok(&txn("worker1", 3), 15), "{recs:?}");
    assert_eq!(env.data("worker1"), b"0123456789ABCDE");
    env.assert_no_alarm();
}

#[test]
fn uncommitted_bytes_on_disk_are_cut_back_to_the_last_commit_on_reconnect() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let end = commit_round(&mut w, &txn("worker1", 1), 0, b"committed\n");
    // More than the sink's write buffer, so it reaches the file.
    let chunk = vec![b'x'; 64 * 1024];
    for i in 0..32u64 {
        w.data(end + i * chunk.len() as u64, &chunk);
    }
    let on_disk = |env: &Env| env.data("worker1").len() as u64;
    assert!(
        wait_until(deadline(), || on_disk(&env) > end + (512 << 10)),
        "{}",
        env.log()
    );
    sink.proc.kill().unwrap();
    assert!(on_disk(&env) > end);
    let sink = env.start(&[]);
    let (mut w, pending) = Worker::start(sink.addr, "worker1");
    assert!(pending.is_empty());
    assert_eq!(env.data("worker1"), b"committed\n");
    commit_round(&mut w, &txn("worker1", 2), end, b"more\n");
    drop(w);
    env.wait_records("worker1", 7);
    assert_eq!(env.data("worker1"), b"committed\nmore\n");
    assert!(env.log().contains("cutting"), "{}", env.log());
    env.assert_no_alarm();
}

/// One row of the aloc_sink CI table: a `txnid-regex` rule on `:c_id=3$`.
fn abort_rule_case(vote: bool, close_before: bool, close_after: bool, expect_commit: bool) {
    let mut env = Env::new();
    let rules = env.dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nkind = \"txnid-regex\"\npattern = \":c_id=3$\"\nvote = {vote}\n\
             close_before = {close_before}\nclose_after = {close_after}\n"
        ),
    )
    .unwrap();
    let sink = env.start(&["--abort-rules", rules.to_str().unwrap()]);
    let name = "initializer";
    let (mut w, _) = Worker::start(sink.addr, name);
    let mut end = commit_round(&mut w, &txn(name, 1), 0, b"first\n");
    let t3 = txn(name, 3);
    w.data(end, b"second\n");
    let reply = w.phase1(&t3, end, end + 7);
    assert_eq!(reply.is_none(), close_before, "reply {reply:?}");
    // Like Wallaroo: a lost reply aborts the checkpoint.
    let decision = reply.unwrap_or(false);
    if close_before || close_after {
        w.expect_closed();
        let (w2, pending) = Worker::start(sink.addr, name);
        assert_eq!(pending, vec![t3.clone()]);
        w = w2;
    }
    w.phase2(&t3, decision);
    assert_eq!(decision, expect_commit);
    if decision {
        end += 7;
    }
    let end2 = commit_round(&mut w, &txn(name, 4), end, b"third\n");
    drop(w);
    let recs = env.wait_records(name, if close_before || close_after { 11 } else { 8 });
    let p2 = recs
        .iter()
        .find(|r| matches!(r, Record::Phase2Ok { txn_id, .. } | Record::Phase2Rollback { txn_id, .. } if *txn_id == t3))
        .unwrap_or_else(|| panic!("no phase 2 for {t3}: {recs:?}"));
    if expect_commit {
        assert_eq!(*p2, p2ok(&t3, 13));
        assert!(recs.contains(&p1ok(&t3, 6, 13)));
        assert_eq!(env.data(name), b"first\nsecond\nthird\n");
    } else {
        assert_eq!(*p2, p2no(&t3, 6));
        assert_eq!(env.data(name), b"first\nthird\n");
    }
    assert!(recs.contains(&p2ok(&txn(name, 4), end2)), "{recs:?}");
    let when = if close_before {
        Some("before reply")
    } else if close_after {
        Some("after reply")
    } else {
        None
    };
    if let Some(when) = when {
        assert!(
            recs.contains(&Record::Close { when: when.into() }),
            "{recs:?}"
        );
    }
    env.assert_no_alarm();
}

#[test]
fn abort_rule_vote_false_aborts() {
    abort_rule_case(false, false, false, false);
}

#[test]
fn abort_rule_vote_false_close_before_aborts() {
    abort_rule_case(false, true, false, false);
}

#[test]
fn abort_rule_vote_false_close_after_aborts() {
    abort_rule_case(false, false, true, false);
}

#[test]
fn abort_rule_vote_true_commits() {
    abort_rule_case(true, false, false, true);
}

#[test]
fn abort_rule_vote_true_close_before_aborts_because_the_reply_is_lost() {
    abort_rule_case(true, true, false, false);
}

#[test]
fn abort_rule_vote_true_close_after_commits() {
    abort_rule_case(true, false, true, true);
}

#[test]
fn local_txn_and_stream_content_rules_force_their_vote_to_abort() {
    let mut env = Env::new();
    let rules = env.dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nkind = \"local-txn\"\nn = 2\n\n[[rule]]\nkind = \"stream-content\"\npattern = \"poison\"\nworker = \"worker1\"\n",
    )
    .unwrap();
    let sink = env.start(&["--abort-rules", rules.to_str().unwrap()]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let end = commit_round(&mut w, &txn("worker1", 1), 0, b"one\n");
    // The 2nd PHASE1 of this sink process.
    w.data(end, b"two\n");
    assert_eq!(w.phase1(&txn("worker1", 2), end, end + 4), Some(false));
    w.phase2(&txn("worker1", 2), false);
    // A payload matching the stream-content rule dooms the next vote only.
    w.data(end, b"a poisoned line\n");
    assert_eq!(w.phase1(&txn("worker1", 3), end, end + 16), Some(false));
    w.phase2(&txn("worker1", 3), false);
    let end = commit_round(&mut w, &txn("worker1", 4), end, b"clean\n");
    assert_eq!(env.data("worker1").len() as u64, end);
    // The stream-content rule names worker1 only.
    let (mut w2, _) = Worker::start(sink.addr, "worker2");
    commit_round(&mut w2, &txn("worker2", 1), 0, b"poison for someone else\n");
    env.assert_no_alarm();
}

#[test]
fn a_gap_forces_the_next_vote_to_abort_and_is_recorded_once() {
    let mut env = Env::new();
    let sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let t1 = txn("worker1", 1);
    let end = commit_round(&mut w, &t1, 0, b"0123456789");
    w.data(end, b"ab");
    w.data(end + 5, b"lost one"); // bytes end+2..end+5 never arrived
    w.data(end + 13, b"and more");
    let t2 = txn("worker1", 2);
    assert_eq!(w.phase1(&t2, end, end + 21), Some(false));
    w.phase2(&t2, false);
    let t3 = txn("worker1", 3);
    commit_round(&mut w, &t3, end, b"resent");
    drop(w);
    let recs = env.wait_records("worker1", 9);
    let forced: Vec<_> = recs
        .iter()
        .filter(|r| matches!(r, Record::NextTxnForceAbort { .. }))
        .collect();
    assert_eq!(forced.len(), 1, "{recs:?}");
    assert_eq!(
        recs[..8].to_vec(),
        vec![
            listed(&[]),
            p1ok(&t1, 0, 10),
            p2ok(&t1, 10),
            Record::NextTxnForceAbort {
                reason: "MISSING DATA: output offset 12 < message_id 15 worker worker1".into()
            },
            p1no(&t2, 10, 31),
            p2no(&t2, 10),
            p1ok(&t3, 10, 16),
            p2ok(&t3, 16),
        ]
    );
    assert_eq!(env.data("worker1"), b"0123456789resent");
    env.assert_no_alarm();
}

#[test]
fn duplicate_data_stops_the_sink_with_exit_66_and_a_fatal_line() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    commit_round(&mut w, &txn("worker1", 1), 0, b"0123456789");
    w.data(5, b"56789");
    let status = sink.proc.wait_deadline(deadline()).expect("the sink exits");
    assert_eq!(status.code(), Some(66), "{}", env.log());
    let log = env.log();
    let fatal = log
        .lines()
        .find(|l| l.contains("FATAL duplicate data"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        fatal.contains("message_id 5") && fatal.contains("equal to the bytes already there"),
        "{fatal}"
    );
    assert_eq!(env.data("worker1"), b"0123456789");
}

#[test]
fn a_second_live_connection_for_a_worker_is_refused_without_alarm() {
    let mut env = Env::new();
    let sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let mut other = Worker::connect(sink.addr);
    other.send(&client::hello("worker1"));
    let text = other.expect_refusal();
    assert!(text.contains("worker1: already active"), "{text}");
    // The first connection is untouched.
    commit_round(&mut w, &txn("worker1", 1), 0, b"still mine\n");
    drop(w);
    // Once it is gone the name is free again (Wallaroo retries every second).
    let (mut w, _) = Worker::start_retrying(sink.addr, "worker1");
    commit_round(&mut w, &txn("worker1", 2), 11, b"again\n");
    let log = env.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("already active")),
        "{log}"
    );
    env.assert_no_alarm();
}

#[test]
fn garbage_costs_only_its_connection_and_nothing_committed() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let end = commit_round(&mut w, &txn("worker1", 1), 0, b"committed bytes\n");
    // Before any HELLO: an HTTP request.
    let mut g = Worker::connect(sink.addr);
    g.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    g.expect_closed();
    // After a HELLO: an unknown frame tag, then a frame with a bad 2PC tag.
    let (mut g2, _) = Worker::start(sink.addr, "worker2");
    g2.send_raw(&[0, 0, 0, 3, 99, 1, 2]);
    g2.expect_closed();
    let (mut g3, _) = Worker::start(sink.addr, "worker2");
    g3.send(&Frame::Message(connector::Message {
        stream_id: 0,
        message_id: 0,
        event_time: 0,
        key: None,
        payload: vec![250, 0].into(),
    }));
    g3.expect_closed();
    // The sink still serves, and worker1's commit is intact.
    let end = commit_round(&mut w, &txn("worker1", 2), end, b"and more\n");
    drop(w);
    env.wait_records("worker1", 6);
    assert_eq!(env.data("worker1"), b"committed bytes\nand more\n");
    assert_eq!(env.data("worker1").len() as u64, end);
    assert!(sink.proc.is_running());
    let log = env.log();
    assert!(log.contains("unreadable input"), "{log}");
    env.assert_no_alarm();
}

#[test]
fn bad_version_cookie_or_name_is_refused_and_the_sink_stays_up() {
    let mut env = Env::new();
    let mut sink = env.start(&["--cookie", "sesame"]);
    let cases = [
        (
            client::hello_with("0.0.1", "sesame", "w"),
            "Unknown protocol version: \"0.0.1\"",
        ),
        (
            client::hello_with("v0.0.1", "FATAL-CRITICAL-ERROR", "w"),
            "Bad cookie",
        ),
        (
            client::hello_with("v0.0.1", "sesame", "../etc"),
            "Bad worker name",
        ),
        (
            client::hello_with("v0.0.1", "sesame", ".."),
            "Bad worker name",
        ),
        (
            client::hello_with("v0.0.1", "sesame", ""),
            "Bad worker name",
        ),
    ];
    for (hello, want) in cases {
        let mut c = Worker::connect(sink.addr);
        c.send(&hello);
        let text = c.expect_refusal();
        assert!(
            text.starts_with(want),
            "{text:?} should start with {want:?}"
        );
    }
    // A data frame before HELLO is refused too.
    let mut c = Worker::connect(sink.addr);
    c.data(0, b"x");
    assert!(c.expect_refusal().starts_with("expected HELLO"));
    assert!(sink.proc.is_running());
    let mut c = Worker::connect(sink.addr);
    c.send(&client::hello_with("v0.0.1", "sesame", "w"));
    assert!(matches!(c.recv(), Some(Frame::Ok { .. })));
    assert!(!env.prefix().with_file_name("output..").exists());
    env.assert_no_alarm();
}

#[test]
fn workers_left_renames_both_files_of_the_departed_worker() {
    let mut env = Env::new();
    let sink = env.start(&[]);
    let (mut w2, _) = Worker::start(sink.addr, "worker2");
    commit_round(&mut w2, &txn("worker2", 1), 0, b"w2 data\n");
    drop(w2);
    env.wait_records("worker2", 4);
    let (mut w1, _) = Worker::start(sink.addr, "initializer");
    w1.send_2pc(&TwoPc::WorkersLeft {
        rtag: 7,
        workers: vec!["worker2".into()],
    });
    let recs = env.wait_records("initializer", 2);
    assert_eq!(
        recs[1],
        Record::WorkersLeft {
            workers: vec!["worker2".into()]
        }
    );
    let out = env.dir.path().join("out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("output.worker2"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let ts = names[0].strip_prefix("output.worker2.").unwrap();
    let (secs, frac) = ts.split_once('.').unwrap_or_else(|| panic!("{ts}"));
    assert!(
        secs.parse::<u64>().is_ok() && frac.len() == 6 && frac.parse::<u32>().is_ok(),
        "{ts}"
    );
    assert_eq!(names[1], format!("output.worker2.{ts}.txnlog"));
    assert_eq!(std::fs::read(out.join(&names[0])).unwrap(), b"w2 data\n");
    let moved = txnlog::read(&out.join(&names[1])).unwrap();
    assert!(moved
        .iter()
        .any(|e| e.record == p2ok(&txn("worker2", 1), 8)));
    // A worker of that name joining later starts from nothing.
    let (mut w2, pending) = Worker::start_retrying(sink.addr, "worker2");
    assert!(pending.is_empty());
    commit_round(&mut w2, &txn("worker2", 1), 0, b"new life\n");
    env.assert_no_alarm();
}

/// A sink whose output directory is a 128 KiB tmpfs, in a mount namespace
/// of its own (so nothing leaks if the test dies).
#[test]
fn a_full_disk_stops_the_sink_with_a_clear_message_and_exit_2() {
    let mut env = Env::new();
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let ready = env.dir.path().join("ready.full");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=128k tmpfs \"$1\" || exit 97; shift; exec \"$@\"")
        .arg("sh")
        .arg(&out)
        .arg(crasher())
        .args(["sink", "--listen", "127.0.0.1:0", "--output"])
        .arg(env.prefix())
        .arg("--log")
        .arg(env.log_path())
        .arg("--ready-file")
        .arg(&ready);
    let mut proc = match Proc::spawn("sink", cmd, &env.dir.path().join("sink.stderr")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "skipped: cannot run unshare ({e}); see store::tests for the ENOSPC unit test"
            );
            return;
        }
    };
    wait_until(deadline(), || ready.exists() || !proc.is_running());
    if !ready.exists() {
        eprintln!(
            "skipped: no private tmpfs here ({:?}): {}",
            proc.try_wait(),
            env.log()
        );
        return;
    }
    env.starts += 1;
    let mut sink = env.wait_ready(proc, &ready);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let chunk = vec![b'z'; 32 * 1024];
    for i in 0..8u64 {
        w.data(i * chunk.len() as u64, &chunk);
    }
    // The vote needs the bytes on disk: it cannot be given.
    assert_eq!(
        w.phase1(&txn("worker1", 1), 0, 8 * chunk.len() as u64),
        None
    );
    let status = sink.proc.wait_deadline(deadline()).expect("the sink exits");
    assert_eq!(status.code(), Some(2), "{}", env.log());
    let log = env.log();
    let line = log
        .lines()
        .find(|l| l.contains("FATAL cannot write"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("output.worker1: No space left on device"),
        "{line}"
    );
}

#[test]
fn malformed_abort_rules_are_refused_with_file_line_and_field() {
    let env = Env::new();
    let rules = env.dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nkind = \"local-txn\"\nn = -1\n").unwrap();
    let out = Command::new(crasher())
        .args(["sink", "--listen", "127.0.0.1:0", "--output"])
        .arg(env.prefix())
        .arg("--abort-rules")
        .arg(&rules)
        .arg("--log")
        .arg(env.log_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3: field n: must be 1 or more",
            rules.display()
        )),
        "{err}"
    );
}

/// Waits for the sink to exit 66 and returns the line carrying `word`.
fn violation_line(env: &Env, sink: &mut Sink, word: &str) -> String {
    let status = sink.proc.wait_deadline(deadline()).expect("the sink exits");
    assert_eq!(status.code(), Some(66), "{}", env.log());
    let log = env.log();
    let line = log.lines().find(|l| l.contains(word));
    line.unwrap_or_else(|| panic!("no {word:?} line in\n{log}"))
        .to_owned()
}

#[test]
fn a_commit_of_a_transaction_voted_abort_stops_the_sink() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    w.data(3, b"after a gap");
    let t1 = txn("worker1", 1);
    assert_eq!(w.phase1(&t1, 0, 14), Some(false));
    w.phase2(&t1, true);
    let line = violation_line(&env, &mut sink, "FATAL");
    assert!(
        line.contains("FATAL 2PC protocol: phase 1 vote on"),
        "{line}"
    );
}

#[test]
fn a_phase1_range_the_sink_never_received_stops_the_sink() {
    let mut env = Env::new();
    let mut sink = env.start(&[]);
    let (mut w, _) = Worker::start(sink.addr, "worker1");
    let end = commit_round(&mut w, &txn("worker1", 1), 0, b"0123456789");
    w.data(end, b"abcde");
    assert_eq!(w.phase1(&txn("worker1", 2), end, end + 20), None);
    let line = violation_line(&env, &mut sink, "CRITICAL");
    assert!(
        line.contains("end_por 30 is past the output offset 15"),
        "{line}"
    );
    let recs = env.records("worker1");
    assert!(
        matches!(recs.last(), Some(Record::NextTxnForceAbort { .. })),
        "{recs:?}"
    );
}

#[test]
fn an_inconsistent_txnlog_stops_the_sink_at_the_workers_hello() {
    let mut env = Env::new();
    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let lines: String = [p1ok("a", 0, 0), p1ok("b", 0, 0)]
        .into_iter()
        .map(|r| {
            format!(
                "{}\n",
                txnlog::Entry {
                    time: 1.0,
                    record: r
                }
                .to_line()
            )
        })
        .collect();
    std::fs::write(out.join("output.worker1.txnlog"), lines).unwrap();
    let mut sink = env.start(&[]);
    let mut c = Worker::connect(sink.addr);
    c.send(&client::hello("worker1"));
    c.expect_closed();
    let line = violation_line(&env, &mut sink, "CRITICAL");
    assert!(
        line.contains("more than one transaction is waiting for phase 2"),
        "{line}"
    );
}

/// NOTIFY, and the point of reference of its NOTIFY_ACK.
fn notify_por(w: &mut Worker) -> u64 {
    w.send(&Frame::Notify {
        stream_id: 1,
        stream_name: b"sink-stream".to_vec().into(),
        point_of_ref: 0,
    });
    match w.recv() {
        Some(Frame::NotifyAck {
            success: true,
            point_of_ref,
            ..
        }) => point_of_ref,
        other => panic!("expected NOTIFY_ACK, got {other:?}"),
    }
}

/// `--por offset` answers what the sink holds; `--por original` answers as
/// aloc_sink: the last offset this process saw for the worker (stale after
/// a recovery cut), 0 after a sink restart.
#[test]
fn notify_ack_por_follows_the_por_mode() {
    for (mode, expect) in [("offset", [15, 10, 10]), ("original", [15, 15, 0])] {
        let mut env = Env::new();
        let mut sink = env.start(&["--por", mode]);
        let (mut w, _) = Worker::start(sink.addr, "worker1");
        let end = commit_round(&mut w, &txn("worker1", 1), 0, b"committed\n");
        w.data(end, b"tail\n");
        let mut seen = vec![notify_por(&mut w)];
        drop(w);
        env.wait_records("worker1", 4);
        // The reconnection's recovery cuts the uncommitted tail.
        let (mut w, _) = Worker::start_retrying(sink.addr, "worker1");
        seen.push(notify_por(&mut w));
        drop(w);
        sink.proc.kill().unwrap();
        let sink = env.start(&["--por", mode]);
        let (mut w, _) = Worker::start(sink.addr, "worker1");
        seen.push(notify_por(&mut w));
        assert_eq!(seen, expect, "--por {mode}\n{}", env.log());
        env.assert_no_alarm();
    }
}
