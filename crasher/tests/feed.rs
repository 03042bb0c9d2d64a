//! `crasher feed` as a real process against a minimal in-test worker that
//! plays Wallaroo's side of connector protocol v3 over real sockets.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connector::{stream_id_for, Frame, DEFAULT_COOKIE, POR_NONE, SOURCE_VERSION};
use feeders::status::FeedStatus;
use procs::{wait_until, Proc};

use worker::Conn;

/// The worker side of one feeder connection, scripted step by step.
mod worker {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use bytes::BytesMut;
    use connector::codec::encode_to_bytes;
    use connector::{ConnectorCodec, Frame, Message};

    /// How long any single expected event may take before the test fails.
    pub const PATIENCE: Duration = Duration::from_secs(10);

    /// An accepted feeder connection.
    pub struct Conn {
        stream: TcpStream,
        buf: BytesMut,
        codec: ConnectorCodec,
    }

    impl Conn {
        /// Accepts the next connection on `l`, failing after [`PATIENCE`].
        pub fn accept(l: &TcpListener) -> Conn {
            l.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + PATIENCE;
            let mut got = None;
            procs::wait_until(deadline, || match l.accept() {
                Ok((s, _)) => {
                    got = Some(s);
                    true
                }
                Err(_) => false,
            });
            let stream = got.expect("the feeder did not connect in time");
            stream.set_nonblocking(false).unwrap();
            Conn {
                stream,
                buf: BytesMut::new(),
                codec: ConnectorCodec::default(),
            }
        }

        /// The next frame, if one arrives within `wait`; `Err` when the
        /// feeder closed the connection.
        pub fn try_recv(&mut self, wait: Duration) -> Result<Option<Frame>, &'static str> {
            let deadline = Instant::now() + wait;
            loop {
                if let Some(f) = self.codec.decode_frame(&mut self.buf).expect("bad frame") {
                    return Ok(Some(f));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                self.stream
                    .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                    .unwrap();
                let mut chunk = [0u8; 64 * 1024];
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Err("closed"),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err("reset"),
                    Err(e) => panic!("read: {e}"),
                }
            }
        }

        /// The next frame; fails the test if none comes within [`PATIENCE`].
        pub fn recv(&mut self) -> Frame {
            self.try_recv(PATIENCE)
                .expect("the feeder closed the connection")
                .expect("no frame from the feeder in time")
        }

        /// The next frame, which must be a MESSAGE.
        pub fn recv_message(&mut self) -> Message {
            match self.recv() {
                Frame::Message(m) => m,
                other => panic!("expected MESSAGE, got {other:?}"),
            }
        }

        /// Whether the feeder closes the connection within [`PATIENCE`]
        /// (frames still arriving are discarded).
        pub fn closed_by_peer(&mut self) -> bool {
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if self.try_recv(Duration::from_millis(100)).is_err() {
                    return true;
                }
            }
            false
        }

        pub fn send(&mut self, f: &Frame) {
            self.stream
                .write_all(&encode_to_bytes(f).unwrap())
                .expect("send to the feeder");
        }

        pub fn send_raw(&mut self, b: &[u8]) {
            self.stream.write_all(b).expect("send to the feeder");
        }
    }
}

/// One line of the test input: where it starts and its bytes.
#[derive(Debug, Clone)]
struct Line {
    offset: u64,
    bytes: Vec<u8>,
}

/// Writes `n` lines shaped like the harness's input
/// (`A0000000 b8a4 f82d a061 8b10 d399 f00e f938 ceaf\n`, 49 bytes each);
/// without the final newline when `trailing_newline` is false.
fn write_lines(path: &Path, n: usize, trailing_newline: bool) -> Vec<Line> {
    let mut content = Vec::new();
    let mut lines = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        let mut words = String::new();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            words.push_str(&format!(" {:04x}", x & 0xffff));
        }
        let mut bytes = format!("A{:07o}{words}\n", i * 16).into_bytes();
        if i + 1 == n && !trailing_newline {
            bytes.pop();
        }
        lines.push(Line {
            offset: content.len() as u64,
            bytes: bytes.clone(),
        });
        content.extend_from_slice(&bytes);
    }
    std::fs::write(path, &content).unwrap();
    lines
}

/// A test's files and the feeder under test.
struct Setup {
    dir: tempfile::TempDir,
    input: PathBuf,
    lines: Vec<Line>,
    name: Vec<u8>,
    sid: u64,
}

impl Setup {
    fn new(n: usize) -> Setup {
        Setup::with(n, true)
    }

    fn with(n: usize, trailing_newline: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input-file.A.txt");
        let lines = write_lines(&input, n, trailing_newline);
        let name = input.as_os_str().as_encoded_bytes().to_vec();
        let sid = stream_id_for(&name);
        Setup {
            dir,
            input,
            lines,
            name,
            sid,
        }
    }

    fn status_path(&self) -> PathBuf {
        self.dir.path().join("feed.status.json")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("feed.log")
    }

    fn feed(&self, target: SocketAddr, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crasher"));
        cmd.arg("feed")
            .arg(&self.input)
            .arg("--target")
            .arg(target.to_string())
            .arg("--status-file")
            .arg(self.status_path())
            .arg("--log")
            .arg(self.log_path())
            .args(extra);
        Proc::spawn("feed", cmd, &self.dir.path().join("feed.out")).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn status(&self) -> FeedStatus {
        FeedStatus::read(&self.status_path()).unwrap()
    }

    fn last(&self) -> u64 {
        self.lines.last().unwrap().offset
    }

    /// `Stream(id=..., name=b'...', point_of_ref=POR, is_open=OPEN)`.
    fn stream(&self, por: u64, open: bool) -> String {
        format!(
            "Stream(id={}, name=b'{}', point_of_ref={por}, is_open={})",
            self.sid,
            self.input.display(),
            if open { "True" } else { "False" }
        )
    }

    /// Accepts a connection, checks HELLO, answers OK(credits), and
    /// returns the NOTIFY's point of reference after checking its stream.
    fn handshake(&self, l: &TcpListener, credits: u32) -> (Conn, u64) {
        let mut c = Conn::accept(l);
        match c.recv() {
            Frame::Hello {
                version,
                cookie,
                program_name,
                instance_name,
            } => {
                assert_eq!(version, SOURCE_VERSION);
                assert_eq!(cookie, DEFAULT_COOKIE);
                assert_eq!(program_name, "celsius at least once");
                assert_eq!(instance_name, "instance");
            }
            other => panic!("expected HELLO, got {other:?}"),
        }
        c.send(&Frame::Ok {
            initial_credits: credits,
        });
        let por = self.expect_notify(&mut c);
        (c, por)
    }

    fn expect_notify(&self, c: &mut Conn) -> u64 {
        match c.recv() {
            Frame::Notify {
                stream_id,
                stream_name,
                point_of_ref,
            } => {
                assert_eq!(stream_id, self.sid);
                assert_eq!(&stream_name[..], &self.name[..]);
                point_of_ref
            }
            other => panic!("expected NOTIFY, got {other:?}"),
        }
    }

    fn notify_ack(&self, c: &mut Conn, success: bool, por: u64) {
        c.send(&Frame::NotifyAck {
            success,
            stream_id: self.sid,
            point_of_ref: por,
        });
    }

    fn ack(&self, c: &mut Conn, credits: u32, por: u64) {
        c.send(&Frame::Ack {
            credits,
            acks: vec![(self.sid, por)],
        });
    }

    /// Receives lines `from..to` and checks each against the file.
    fn expect_lines(&self, c: &mut Conn, from: usize, to: usize) {
        for line in &self.lines[from..to] {
            let m = c.recv_message();
            assert_eq!(m.stream_id, self.sid);
            assert_eq!(m.message_id, line.offset, "message id = line offset");
            assert_eq!(m.event_time, 0);
            assert_eq!(m.key.as_deref(), Some(&self.name[..]), "key = file name");
            assert_eq!(&m.payload[..], &line.bytes[..], "payload = the line");
        }
    }

    fn expect_eos(&self, c: &mut Conn) {
        match c.recv() {
            Frame::Eos { stream_id } => assert_eq!(stream_id, self.sid),
            other => panic!("expected EOS, got {other:?}"),
        }
    }

    /// Acks the last line and checks the feeder exits 0.
    fn finish(&self, c: &mut Conn, p: &mut Proc) {
        self.ack(c, 0, self.last());
        let st = p
            .wait_deadline(Instant::now() + worker::PATIENCE)
            .expect("the feeder did not exit after the last ack");
        assert_eq!(st.code(), Some(0), "feed log:\n{}", self.log());
        let s = self.status();
        assert!(s.done && !s.connected && !s.is_open, "{s:?}");
        assert_eq!(s.acked, Some(self.last()));
        assert_eq!(s.last_line_offset, self.last());
    }
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[test]
fn delivers_the_whole_file_in_order_and_exits_after_the_last_ack() {
    let s = Setup::new(500);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, por) = s.handshake(&l, 1000);
    assert_eq!(por, POR_NONE, "a fresh feeder has nothing acked");
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 500);
    s.expect_eos(&mut c);

    // Acking the second-to-last line is not enough.
    let before_last = s.lines[498].offset;
    s.ack(&mut c, 0, before_last);
    assert!(wait_until(Instant::now() + worker::PATIENCE, || {
        FeedStatus::read(&s.status_path()).is_ok_and(|st| st.acked == Some(before_last))
    }));
    let st = s.status();
    assert!(st.connected && st.is_open && !st.done, "{st:?}");
    assert_eq!(st.sent, 500);
    assert_eq!(st.stream_id, s.sid);
    assert_eq!(st.file, s.input.display().to_string());
    assert!(p.is_running());

    s.finish(&mut c, &mut p);
    let st = s.status();
    assert_eq!((st.sent, st.notify_rejections, st.restarts), (500, 0, 0));

    let log = s.log();
    for want in [
        format!("MultiSourceConnector added {}", s.stream(POR_NONE, true)),
        format!("MultiSourceConnector acked {}", s.stream(before_last, true)),
        format!("MultiSourceConnector acked {}", s.stream(s.last(), true)),
        format!("MultiSourceConnector closed {}", s.stream(s.last(), false)),
    ] {
        assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
    }
    // No per-message logging.
    assert!(log.lines().count() < 30, "{log}");
}

#[test]
fn resumes_at_the_notify_ack_point_of_reference_inclusive() {
    // The last line has no newline: it is still a message.
    let s = Setup::with(100, false);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 1000);
    s.notify_ack(&mut c, true, s.lines[40].offset);
    s.expect_lines(&mut c, 40, 100);
    assert!(!s.lines[99].bytes.ends_with(b"\n"));
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
    assert_eq!(s.status().sent, 60);
    assert!(s.log().contains(&format!(
        "MultiSourceConnector added {}",
        s.stream(s.lines[40].offset, true)
    )));
}

#[test]
fn restart_with_a_new_address_moves_to_the_second_listener() {
    let s = Setup::new(200);
    let (la, addr_a) = listener();
    let (lb, addr_b) = listener();
    let mut p = s.feed(addr_a, &[]);
    let (mut a, _) = s.handshake(&la, 50);
    s.notify_ack(&mut a, true, POR_NONE);
    s.expect_lines(&mut a, 0, 50);
    let acked = s.lines[29].offset;
    s.ack(&mut a, 0, acked);
    a.send(&Frame::Restart {
        address: Some(addr_b.to_string()),
    });
    assert!(a.closed_by_peer(), "the feeder must close after RESTART");

    let (mut b, por) = s.handshake(&lb, 1000);
    assert_eq!(
        por, acked,
        "re-NOTIFY with the last acked point of reference"
    );
    s.notify_ack(&mut b, true, acked);
    s.expect_lines(&mut b, 29, 200);
    s.expect_eos(&mut b);
    s.finish(&mut b, &mut p);
    // It never went back to the first address.
    la.set_nonblocking(true).unwrap();
    assert!(la.accept().is_err());

    assert_eq!(s.status().restarts, 1);
    let log = s.log();
    for want in [
        "Received RESTART message. Closing streams and reinitiating handshake.".to_owned(),
        format!("Updating target address from {addr_a} to {addr_b}"),
        format!("MultiSourceConnector closed {}", s.stream(acked, false)),
    ] {
        assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
    }
}

#[test]
fn reconnects_after_a_dropped_connection_and_refused_connects() {
    let s = Setup::new(100);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 20);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 20);
    let acked = s.lines[9].offset;
    s.ack(&mut c, 0, acked);
    assert!(wait_until(Instant::now() + worker::PATIENCE, || {
        FeedStatus::read(&s.status_path()).is_ok_and(|st| st.acked == Some(acked))
    }));
    // The worker dies: connection and listener gone.
    drop(c);
    drop(l);
    assert!(
        wait_until(Instant::now() + worker::PATIENCE, || s
            .log()
            .contains(&format!("Failed to connect to {addr}"))),
        "{}",
        s.log()
    );
    assert!(!s.status().connected);
    // It comes back on the same port; the feeder's 1 s retry finds it.
    let l = TcpListener::bind(addr).unwrap();
    let (mut c, por) = s.handshake(&l, 1000);
    assert_eq!(por, acked);
    s.notify_ack(&mut c, true, acked);
    s.expect_lines(&mut c, 9, 100);
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
    let log = s.log();
    let want = format!("MultiSourceConnector closed {}", s.stream(acked, false));
    assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
}

#[test]
fn garbage_from_the_worker_closes_the_connection_and_the_feeder_reconnects() {
    let s = Setup::new(10);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let mut c = Conn::accept(&l);
    assert!(matches!(c.recv(), Frame::Hello { .. }));
    c.send_raw(&[0, 0, 0, 1, 0xff]); // a frame with an unknown tag
    assert!(c.closed_by_peer());
    let (mut c, por) = s.handshake(&l, 100);
    assert_eq!(por, POR_NONE);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 10);
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
    assert!(s.log().contains("garbage from the worker"), "{}", s.log());
}

#[test]
fn a_rejected_notify_is_retried_on_a_timer_and_on_ack() {
    let s = Setup::new(20);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 100);

    // Rejected, and no ACK comes: the feeder retries by itself after ~1 s.
    let t = Instant::now();
    s.notify_ack(&mut c, false, POR_NONE);
    assert_eq!(s.expect_notify(&mut c), POR_NONE);
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );

    // Rejected again; this time an ACK arrives and triggers the retry at once.
    s.notify_ack(&mut c, false, POR_NONE);
    let t = Instant::now();
    c.send(&Frame::Ack {
        credits: 0,
        acks: vec![],
    });
    s.expect_notify(&mut c);
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(s.status().notify_rejections, 2);

    // Nothing but NOTIFYs was sent so far: the next frames are the lines.
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 20);
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);

    let log = s.log();
    let rejected = format!("MultiSourceConnector added {}", s.stream(POR_NONE, false));
    assert_eq!(log.matches(&rejected).count(), 2, "{log}");
    let granted = format!("MultiSourceConnector added {}", s.stream(POR_NONE, true));
    assert_eq!(log.matches(&granted).count(), 1, "{log}");
    assert_eq!(s.status().notify_rejections, 2);
}

#[test]
fn never_more_unacked_messages_than_credits() {
    let s = Setup::new(100);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 10);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 10);
    assert!(
        c.try_recv(Duration::from_millis(300)).unwrap().is_none(),
        "sent beyond its credits"
    );
    s.ack(&mut c, 5, s.lines[9].offset);
    s.expect_lines(&mut c, 10, 15);
    assert!(
        c.try_recv(Duration::from_millis(300)).unwrap().is_none(),
        "sent beyond its credits"
    );
    s.ack(&mut c, 1000, s.lines[14].offset);
    s.expect_lines(&mut c, 15, 100);
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
}

#[test]
fn an_ack_older_than_the_previous_one_rewinds() {
    let s = Setup::new(60);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 50);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 50);
    s.ack(&mut c, 0, s.lines[49].offset);
    // Lower than before: resend from line 19, inclusive.
    s.ack(&mut c, 10, s.lines[19].offset);
    s.expect_lines(&mut c, 19, 29);
    s.ack(&mut c, 1000, s.lines[28].offset);
    s.expect_lines(&mut c, 29, 60);
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
    assert!(s.log().contains("got an ack for older point of reference"));
}

#[test]
fn the_rate_limit_holds_payload_bytes_per_second() {
    // 1100 lines of 49 bytes = 53,900 bytes at 100,000 B/s: at least 0.4 s
    // even allowing for the bucket's initial burst.
    let s = Setup::new(1100);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &["--rate", "100000"]);
    let (mut c, _) = s.handshake(&l, 100_000);
    let t = Instant::now();
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 1100);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(400), "took only {took:?}");
    s.expect_eos(&mut c);
    s.finish(&mut c, &mut p);
}

#[test]
fn an_ack_past_the_last_line_then_a_close_still_finishes_with_exit_0() {
    let s = Setup::new(30);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 100);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_lines(&mut c, 0, 30);
    s.expect_eos(&mut c);
    // Beyond the last line's start also counts; the worker hangs up at once.
    let past = s.last() + 7;
    s.ack(&mut c, 0, past);
    drop(c);
    drop(l);
    let st = p.wait_deadline(Instant::now() + worker::PATIENCE).unwrap();
    assert_eq!(st.code(), Some(0), "{}", s.log());
    let st = s.status();
    assert!(st.done);
    assert_eq!(st.acked, Some(past));
    let want = format!("MultiSourceConnector closed {}", s.stream(past, false));
    assert_eq!(s.log().matches(&want).count(), 1, "{}", s.log());
}

#[test]
fn an_empty_file_sends_eos_and_exits_0() {
    let s = Setup::new(0);
    let (l, addr) = listener();
    let mut p = s.feed(addr, &[]);
    let (mut c, _) = s.handshake(&l, 10);
    s.notify_ack(&mut c, true, POR_NONE);
    s.expect_eos(&mut c);
    let st = p.wait_deadline(Instant::now() + worker::PATIENCE).unwrap();
    assert_eq!(st.code(), Some(0), "{}", s.log());
    let st = s.status();
    assert!(st.done);
    assert_eq!((st.acked, st.sent, st.last_line_offset), (None, 0, 0));
}

#[test]
fn a_line_too_long_for_a_frame_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.txt");
    let mut content = b"short\n".to_vec();
    content.extend_from_slice(&vec![b'x'; 5 * 1024 * 1024]);
    content.push(b'\n');
    std::fs::write(&input, &content).unwrap();
    let (l, addr) = listener();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crasher"));
    cmd.arg("feed")
        .arg(&input)
        .arg("--target")
        .arg(addr.to_string());
    let out = dir.path().join("feed.out");
    let mut p = Proc::spawn("feed", cmd, &out).unwrap();
    let mut c = Conn::accept(&l);
    assert!(matches!(c.recv(), Frame::Hello { .. }));
    c.send(&Frame::Ok {
        initial_credits: 10,
    });
    let Frame::Notify { stream_id, .. } = c.recv() else {
        panic!("expected NOTIFY")
    };
    c.send(&Frame::NotifyAck {
        success: true,
        stream_id,
        point_of_ref: POR_NONE,
    });
    let st = p.wait_deadline(Instant::now() + worker::PATIENCE).unwrap();
    assert_eq!(st.code(), Some(2));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("long.txt") && text.contains("byte offset 6 is longer than"),
        "{text}"
    );
    assert!(c.closed_by_peer());
}

#[test]
fn a_missing_input_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crasher"));
    cmd.arg("feed")
        .arg(&missing)
        .arg("--target")
        .arg("127.0.0.1:1");
    let out = dir.path().join("feed.out");
    let mut p = Proc::spawn("feed", cmd, &out).unwrap();
    let st = p.wait_deadline(Instant::now() + worker::PATIENCE).unwrap();
    assert_eq!(st.code(), Some(2));
    assert!(std::fs::read_to_string(&out).unwrap().contains("nope.txt"));
}

/// The test input really has the harness's shape.
#[test]
fn helper_lines_match_the_harness_format() {
    let dir = tempfile::tempdir().unwrap();
    let lines = write_lines(&dir.path().join("f"), 3, true);
    assert_eq!(lines[1].offset, 49);
    assert_eq!(lines[0].bytes.len(), 49);
    assert!(lines[2].bytes.starts_with(b"A0000040 "));
}
