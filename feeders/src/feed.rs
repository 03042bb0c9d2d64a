//! The at-least-once line-file feeder: one file, one stream, connector
//! protocol v3, resumable from whatever the worker says it has processed.
//!
//! # Session
//!
//! Connect (retrying every second forever), HELLO, wait for OK (credits),
//! NOTIFY with the last acknowledged point of reference (`u64::MAX` when
//! none), wait for NOTIFY_ACK:
//!
//! - success: resume AT its point of reference, inclusive (`u64::MAX` =
//!   start of file); the worker drops any message id it has already seen;
//! - rejection: re-NOTIFY on the next ACK, or after [`NOTIFY_RETRY`].
//!
//! Then one MESSAGE per line (message id = byte offset of the line start,
//! key = the file name), one credit each, as fast as credits and the rate
//! limit allow, and EOS at the end of the file. ACK adds credits and
//! updates the acknowledged point of reference; an ACK lower than the
//! previous one rewinds. RESTART, ERROR, a closed or broken connection or
//! garbage from the worker close the session and start a new one
//! (following RESTART's new address if it has one).
//!
//! The feeder is done, and [`run`] returns, once an ACK (or NOTIFY_ACK)
//! reports the start offset of the file's last line (or beyond). An empty
//! file is done as soon as its EOS is sent after a successful NOTIFY_ACK.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use connector::{ConnectorCodec, Frame, POR_NONE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout};

use crate::encode::{put_message, MESSAGE_OVERHEAD};
use crate::lines::{LineFile, LinesError};
use crate::log::{py_bytes, Logger};
use crate::rate::TokenBucket;
use crate::status::{snapshot, FeedStatus, StatusError, StatusWriter};

/// How long a rejected NOTIFY waits for an ACK before it is retried anyway.
pub const NOTIFY_RETRY: Duration = Duration::from_secs(1);
/// Pause between failed connection attempts.
pub const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// How long a feeder whose write failed keeps reading what the worker sent
/// before the break (a RESTART with a new address, say).
const SALVAGE_WINDOW: Duration = Duration::from_millis(200);

/// Pause before reconnecting after a connection ends (RESTART, close).
pub const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Limit on one connection attempt (loopback refuses at once; this is for
/// remote targets that drop SYNs).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a finished feeder keeps trying to flush its last frames.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// Encoded bytes queued before the feeder stops encoding and writes.
const HIGH_WATER: usize = 256 * 1024;

/// What to feed, where, and how.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The line file.
    pub file: PathBuf,
    /// The file name as given on the command line: stream name, MESSAGE
    /// key, and (hashed) stream id.
    pub name: Vec<u8>,
    /// The worker's source address, `host:port`.
    pub target: String,
    /// Payload bytes per second; 0 = unthrottled.
    pub rate: u64,
    /// HELLO cookie.
    pub cookie: String,
    /// HELLO program name.
    pub program_name: String,
    /// HELLO instance name.
    pub instance_name: String,
    /// Where to keep the JSON status, if anywhere.
    pub status_file: Option<PathBuf>,
    /// Largest frame (after the length prefix) the feeder may send.
    pub max_frame_len: usize,
    /// How the rate varies over time (docs/feeders.md, "Workload shapes").
    pub workload: crate::workload::Workload,
    /// The instant the shape counts from, as Unix milliseconds (the run's
    /// start, so a restarted feeder keeps the run's phase); `None`: now.
    pub workload_epoch: Option<u64>,
}

impl FeedConfig {
    /// A configuration with the original feeder's defaults for the HELLO
    /// fields and no rate limit, status file or custom frame limit.
    pub fn new(file: PathBuf, target: String) -> FeedConfig {
        FeedConfig {
            name: file.as_os_str().as_encoded_bytes().to_vec(),
            file,
            target,
            rate: 0,
            cookie: connector::DEFAULT_COOKIE.to_owned(),
            program_name: DEFAULT_PROGRAM_NAME.to_owned(),
            instance_name: DEFAULT_INSTANCE_NAME.to_owned(),
            status_file: None,
            max_frame_len: connector::DEFAULT_MAX_FRAME_LEN,
            workload: crate::workload::Workload::Constant,
            workload_epoch: None,
        }
    }

    /// The rate limiter for this configuration (`None`: unthrottled).
    pub fn bucket(&self, now: Instant) -> Option<TokenBucket> {
        crate::workload::bucket(
            self.rate,
            self.workload,
            self.workload_epoch,
            &self.name,
            now,
        )
    }
}

/// The original feeder's HELLO program name.
pub const DEFAULT_PROGRAM_NAME: &str = "celsius at least once";
/// The original feeder's HELLO instance name.
pub const DEFAULT_INSTANCE_NAME: &str = "instance";

/// Why the feeder stopped without finishing (every other trouble is
/// retried). All of these are usage or environment errors (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The input file cannot be read, or has a line too long for a frame.
    #[error(transparent)]
    Lines(#[from] LinesError),
    /// The status file cannot be written at start-up.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The configuration cannot be put on the wire.
    #[error("{0}")]
    Config(String),
    /// A frame could not be encoded (a HELLO field too long, say).
    #[error("cannot encode {frame}: {source}")]
    Encode {
        /// Which frame.
        frame: &'static str,
        /// Cause.
        #[source]
        source: connector::EncodeError,
    },
}

/// What a finished feed did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSummary {
    /// The final status (with `done` set).
    pub status: FeedStatus,
}

/// Runs a feeder to completion on a single-threaded tokio runtime.
pub fn run_blocking(cfg: FeedConfig, log: Logger) -> Result<FeedSummary, FeedError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FeedError::Config(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(run(cfg, log))
}

/// Feeds `cfg.file` until every line is acknowledged.
pub async fn run(cfg: FeedConfig, log: Logger) -> Result<FeedSummary, FeedError> {
    let mut f = Feeder::new(cfg, log)?;
    f.log.info(format_args!(
        "version {} cookie {} program_name {} instance_name {} target {} rate {} file {} \
         stream_id {} last_line_offset {}",
        connector::SOURCE_VERSION,
        f.cfg.cookie,
        f.cfg.program_name,
        f.cfg.instance_name,
        f.target,
        if f.cfg.rate == 0 {
            "unthrottled".to_owned()
        } else {
            format!("{} B/s", f.cfg.rate)
        },
        f.cfg.file.display(),
        f.st.stream_id,
        f.last_line
            .map_or_else(|| "none (empty file)".to_owned(), |o| o.to_string()),
    ));
    f.status.update(true, || snapshot(&f.st))?;
    loop {
        let stream = f.connect().await;
        match f.session(stream).await? {
            SessionEnd::Done => return Ok(f.finish()),
            // Everything was acknowledged before the connection ended
            // (say the worker closed right after the final ACK): there is
            // nothing left to reconnect for.
            SessionEnd::Reconnect(_) if f.done => return Ok(f.finish()),
            SessionEnd::Reconnect(delay) => {
                f.log.info(format_args!(
                    "reconnecting to {} in {:.1} s",
                    f.target,
                    delay.as_secs_f64()
                ));
                sleep(delay).await;
            }
        }
    }
}

/// How a session ended.
enum SessionEnd {
    /// Everything is acknowledged.
    Done,
    /// Start a new session after this pause.
    Reconnect(Duration),
}

/// Where a session is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// HELLO sent, waiting for OK.
    AwaitOk,
    /// NOTIFY sent, waiting for NOTIFY_ACK.
    AwaitNotifyAck,
    /// NOTIFY rejected; retry on the next ACK or at `retry_at`.
    Rejected,
    /// The stream is ours: send.
    Open,
}

/// Per-connection state; everything here starts over on reconnect.
struct Session {
    phase: Phase,
    credits: u64,
    eos_sent: bool,
    retry_at: Option<Instant>,
    rate_wake: Option<Instant>,
    flush_deadline: Option<Instant>,
    wbuf: BytesMut,
}

/// One feeder process's state across connections.
struct Feeder {
    cfg: FeedConfig,
    log: Logger,
    lines: LineFile,
    name: Bytes,
    name_repr: String,
    target: String,
    last_line: Option<u64>,
    bucket: Option<TokenBucket>,
    codec: ConnectorCodec,
    /// The reported state; `acked`, `sent` etc. live here only.
    st: FeedStatus,
    status: StatusWriter,
    status_failing: bool,
    /// Every line is acknowledged; flush and stop.
    done: bool,
}

impl Feeder {
    fn new(cfg: FeedConfig, log: Logger) -> Result<Feeder, FeedError> {
        if cfg.name.len() > usize::from(u16::MAX) {
            return Err(FeedError::Config(format!(
                "the file name is {} bytes; a stream name/key holds at most 65535",
                cfg.name.len()
            )));
        }
        let overhead = MESSAGE_OVERHEAD + cfg.name.len();
        if cfg.max_frame_len <= overhead || cfg.max_frame_len > u32::MAX as usize {
            return Err(FeedError::Config(format!(
                "frame limit {} leaves no room for a line (a MESSAGE needs {overhead} bytes besides it)",
                cfg.max_frame_len
            )));
        }
        let lines = LineFile::open(&cfg.file, cfg.max_frame_len - overhead)?;
        let last_line = lines.last_line_offset()?;
        let name = Bytes::from(cfg.name.clone());
        let stream_id = connector::stream_id_for(&name);
        let st = FeedStatus {
            file: String::from_utf8_lossy(&name).into_owned(),
            stream_id,
            connected: false,
            is_open: false,
            acked: None,
            sent: 0,
            sent_bytes: 0,
            last_line_offset: last_line.unwrap_or(0),
            done: false,
            notify_rejections: 0,
            restarts: 0,
            updated_unix: 0.0,
        };
        Ok(Feeder {
            name_repr: py_bytes(&name),
            name,
            target: cfg.target.clone(),
            last_line,
            bucket: cfg.bucket(Instant::now()),
            codec: ConnectorCodec::new(cfg.max_frame_len),
            status: StatusWriter::new(cfg.status_file.clone()),
            status_failing: false,
            lines,
            st,
            cfg,
            log,
            done: false,
        })
    }

    /// `Stream(id=..., name=b'...', point_of_ref=..., is_open=...)`, as the
    /// original printed its stream records.
    fn stream_repr(&self, por: u64, is_open: bool) -> String {
        crate::status::stream_repr(self.st.stream_id, &self.name_repr, por, is_open)
    }

    /// Records a state change in the status file; `force` for changes the
    /// supervisor should see at once. Failures are logged, not fatal.
    fn save_status(&mut self, force: bool) {
        match self.status.update(force, || snapshot(&self.st)) {
            Ok(()) => self.status_failing = false,
            Err(e) => self.status_failed(e),
        }
    }

    fn flush_status(&mut self) {
        match self.status.flush_due(|| snapshot(&self.st)) {
            Ok(()) => self.status_failing = false,
            Err(e) => self.status_failed(e),
        }
    }

    fn status_failed(&mut self, e: StatusError) {
        if !self.status_failing {
            self.log
                .warn(format_args!("cannot write the status file: {e}"));
        }
        self.status_failing = true;
    }

    /// Connects to the current target, retrying every [`CONNECT_RETRY`].
    async fn connect(&mut self) -> TcpStream {
        loop {
            let err = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.target)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.log.info(format_args!("connected to {}", self.target));
                    return s;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            };
            self.log.warn(format_args!(
                "Failed to connect to {}: {err}; retrying in {} s",
                self.target,
                CONNECT_RETRY.as_secs()
            ));
            sleep(CONNECT_RETRY).await;
            self.flush_status();
        }
    }

    /// Appends a control frame to the write buffer.
    fn put(&self, wbuf: &mut BytesMut, frame: &Frame) -> Result<(), FeedError> {
        self.codec
            .encode_frame(frame, wbuf)
            .map_err(|source| FeedError::Encode {
                frame: frame.name(),
                source,
            })
    }

    /// One connection, from HELLO until it ends.
    async fn session(&mut self, mut stream: TcpStream) -> Result<SessionEnd, FeedError> {
        let (mut rd, mut wr) = stream.split();
        let mut s = Session {
            phase: Phase::AwaitOk,
            credits: 0,
            eos_sent: false,
            retry_at: None,
            rate_wake: None,
            flush_deadline: None,
            wbuf: BytesMut::with_capacity(2 * HIGH_WATER),
        };
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        self.put(
            &mut s.wbuf,
            &Frame::Hello {
                version: connector::SOURCE_VERSION.to_owned(),
                cookie: self.cfg.cookie.clone(),
                program_name: self.cfg.program_name.clone(),
                instance_name: self.cfg.instance_name.clone(),
            },
        )?;
        self.st.connected = true;
        self.st.is_open = false;
        self.save_status(true);
        loop {
            if self.done {
                if s.phase == Phase::Open && !s.eos_sent {
                    self.put_eos(&mut s)?;
                }
                if s.wbuf.is_empty() {
                    let _ = wr.shutdown().await;
                    return Ok(SessionEnd::Done);
                }
                let deadline = *s
                    .flush_deadline
                    .get_or_insert_with(|| Instant::now() + FINAL_FLUSH);
                if Instant::now() >= deadline {
                    self.log.warn(format_args!(
                        "giving up flushing {} byte(s) to a finished stream",
                        s.wbuf.len()
                    ));
                    return Ok(SessionEnd::Done);
                }
            } else if s.phase == Phase::Open && !s.eos_sent {
                self.fill(&mut s)?;
                self.save_status(self.done);
                if self.done {
                    continue;
                }
            }
            let wake = [
                s.retry_at,
                s.rate_wake,
                s.flush_deadline,
                self.status.due_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) => return Ok(self.closed("connection closed by the worker", RECONNECT_DELAY)),
                    Err(e) => return Ok(self.closed(&format!("read error: {e}"), RECONNECT_DELAY)),
                    Ok(_) => loop {
                        match self.codec.decode_frame(&mut rbuf) {
                            Ok(Some(frame)) => {
                                if let Some(end) = self.on_frame(frame, &mut s)? {
                                    return Ok(end);
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                return Ok(self.closed(
                                    &format!("garbage from the worker: {e}"),
                                    RECONNECT_DELAY,
                                ))
                            }
                        }
                    },
                },
                r = wr.write(&s.wbuf), if !s.wbuf.is_empty() => match r {
                    Ok(0) => return Ok(self.closed("the worker stopped reading", RECONNECT_DELAY)),
                    Ok(n) => s.wbuf.advance(n),
                    Err(e) => {
                        // The worker may have said RESTART (with a new
                        // address) just before closing: honour it.
                        if let Some(end) = self.salvage(&mut rd, &mut rbuf, &mut s).await? {
                            return Ok(end);
                        }
                        return Ok(self.closed(&format!("write error: {e}"), RECONNECT_DELAY));
                    }
                },
                () = sleep_until(wake.unwrap_or(far).into()) => {
                    if s.phase == Phase::Rejected && s.retry_at.is_some_and(|t| t <= Instant::now()) {
                        self.send_notify(&mut s, "timer")?;
                    }
                    self.flush_status();
                }
            }
        }
    }

    /// After a write error, reads for a short while what the worker sent
    /// before the connection broke and handles those frames; returns how
    /// the session ends if one of them ends it (RESTART, ERROR).
    async fn salvage(
        &mut self,
        rd: &mut tokio::net::tcp::ReadHalf<'_>,
        rbuf: &mut BytesMut,
        s: &mut Session,
    ) -> Result<Option<SessionEnd>, FeedError> {
        let deadline = Instant::now() + SALVAGE_WINDOW;
        loop {
            while let Ok(Some(frame)) = self.codec.decode_frame(rbuf) {
                if let Some(end) = self.on_frame(frame, s)? {
                    return Ok(Some(end));
                }
            }
            match timeout(
                deadline.saturating_duration_since(Instant::now()),
                rd.read_buf(rbuf),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ok(None),
            }
        }
    }

    /// Encodes lines into the write buffer while credits, the rate limit
    /// and the buffer's high-water mark allow; EOS after the last line.
    fn fill(&mut self, s: &mut Session) -> Result<(), FeedError> {
        s.rate_wake = None;
        if let Some(b) = &mut self.bucket {
            b.refill(Instant::now());
        }
        let sid = self.st.stream_id;
        let mut sent = 0u64;
        while s.wbuf.len() < HIGH_WATER && s.credits > 0 {
            if let Some(b) = &self.bucket {
                if !b.may_send() {
                    s.rate_wake = Some(b.ready_at());
                    break;
                }
            }
            match self.lines.next_line()? {
                Some((offset, line)) => {
                    put_message(&mut s.wbuf, sid, offset, &self.name, line);
                    s.credits -= 1;
                    sent += 1;
                    self.st.sent_bytes += line.len() as u64;
                    if let Some(b) = &mut self.bucket {
                        b.consume(line.len());
                    }
                }
                None => {
                    self.st.sent += sent;
                    sent = 0;
                    self.put_eos(s)?;
                    if self.last_line.is_none() {
                        self.log
                            .info(format_args!("the file is empty: nothing to wait for"));
                        self.done = true;
                    }
                    break;
                }
            }
        }
        self.st.sent += sent;
        Ok(())
    }

    fn put_eos(&mut self, s: &mut Session) -> Result<(), FeedError> {
        let sid = self.st.stream_id;
        self.put(&mut s.wbuf, &Frame::Eos { stream_id: sid })?;
        s.eos_sent = true;
        self.log.info(format_args!(
            "Sending End of Stream EosMessage(stream_id={sid}) after {} message(s)",
            self.st.sent
        ));
        Ok(())
    }

    fn send_notify(&mut self, s: &mut Session, why: &str) -> Result<(), FeedError> {
        let por = self.st.acked.unwrap_or(POR_NONE);
        let frame = Frame::Notify {
            stream_id: self.st.stream_id,
            stream_name: self.name.clone(),
            point_of_ref: por,
        };
        self.put(&mut s.wbuf, &frame)?;
        if s.phase == Phase::Rejected {
            self.log.info(format_args!(
                "_retry_notify for b'{}' id {} ({why})",
                self.name_repr, self.st.stream_id
            ));
        }
        self.log.info(format_args!(
            "sending NOTIFY: Notify(stream_id={}, stream_name=b'{}', point_of_ref={por}) to {}",
            self.st.stream_id, self.name_repr, self.target
        ));
        s.phase = Phase::AwaitNotifyAck;
        s.retry_at = None;
        Ok(())
    }

    /// Reacts to one frame from the worker; `Some` ends the session.
    fn on_frame(&mut self, frame: Frame, s: &mut Session) -> Result<Option<SessionEnd>, FeedError> {
        match frame {
            Frame::Ok { initial_credits } => {
                s.credits += u64::from(initial_credits);
                if s.phase != Phase::AwaitOk {
                    self.log.warn(format_args!(
                        "unexpected OK({initial_credits}) after the handshake; credits added"
                    ));
                    return Ok(None);
                }
                self.log.info(format_args!(
                    "handshake with {} done: OK, {initial_credits} credits",
                    self.target
                ));
                self.send_notify(s, "handshake")?;
            }
            Frame::Error { message } => {
                self.log
                    .error(format_args!("the worker sent ERROR: {message}"));
                return Ok(Some(self.closed("ERROR from the worker", CONNECT_RETRY)));
            }
            Frame::NotifyAck {
                success,
                stream_id,
                point_of_ref,
            } => {
                if stream_id != self.st.stream_id {
                    self.log.warn(format_args!(
                        "ignoring NOTIFY_ACK for stream {stream_id}, which is not ours ({})",
                        self.st.stream_id
                    ));
                    return Ok(None);
                }
                self.on_notify_ack(success, point_of_ref, s)?;
            }
            Frame::Ack { credits, acks } => {
                s.credits += u64::from(credits);
                for (sid, por) in acks {
                    if sid == self.st.stream_id {
                        self.on_ack(por, s)?;
                    }
                }
                if s.phase == Phase::Rejected {
                    self.send_notify(s, "ACK")?;
                }
                self.save_status(self.done);
            }
            Frame::Restart { address } => {
                self.log.warn(format_args!(
                    "Received RESTART message. Closing streams and reinitiating handshake."
                ));
                self.st.restarts += 1;
                if let Some(a) = address.filter(|a| !a.is_empty()) {
                    self.log.info(format_args!(
                        "Updating target address from {} to {a}",
                        self.target
                    ));
                    self.target = a;
                }
                return Ok(Some(self.closed("RESTART", RECONNECT_DELAY)));
            }
            other @ (Frame::Hello { .. }
            | Frame::Notify { .. }
            | Frame::Message(_)
            | Frame::Eos { .. }) => {
                return Ok(Some(self.closed(
                    &format!(
                        "the worker sent {}, which only a connector sends",
                        other.name()
                    ),
                    RECONNECT_DELAY,
                )));
            }
        }
        Ok(None)
    }

    fn on_notify_ack(&mut self, success: bool, por: u64, s: &mut Session) -> Result<(), FeedError> {
        self.log.info(format_args!(
            "NOTIFYack NotifyAck(notify_success={}, stream_id={}, point_of_ref={por})",
            if success { "True" } else { "False" },
            self.st.stream_id
        ));
        if s.phase != Phase::AwaitNotifyAck {
            self.log.warn(format_args!(
                "NOTIFY_ACK while not waiting for one (phase {:?}); applying it",
                s.phase
            ));
        }
        self.log.info(format_args!(
            "MultiSourceConnector added {}",
            self.stream_repr(por, success)
        ));
        if !success {
            s.phase = Phase::Rejected;
            s.retry_at = Some(Instant::now() + NOTIFY_RETRY);
            self.st.notify_rejections += 1;
            self.st.is_open = false;
            self.log.warn(format_args!(
                "Stream b'{}' id {} added to _retry_notify (rejection #{})",
                self.name_repr, self.st.stream_id, self.st.notify_rejections
            ));
            self.save_status(true);
            return Ok(());
        }
        s.phase = Phase::Open;
        s.eos_sent = false;
        s.retry_at = None;
        self.st.is_open = true;
        self.st.acked = (por != POR_NONE).then_some(por);
        self.seek(por)?;
        self.log.info(format_args!(
            "MultiSourceConnector stream_opened {}; sending from offset {}",
            self.stream_repr(por, true),
            self.lines.position()
        ));
        self.check_done();
        self.save_status(true);
        Ok(())
    }

    /// Positions the reader at `por` (inclusive), `u64::MAX` meaning the
    /// start; warns about positions that cannot be right.
    fn seek(&mut self, por: u64) -> Result<(), FeedError> {
        let pos = if por == POR_NONE { 0 } else { por };
        if pos > self.lines.size() {
            self.log.warn(format_args!(
                "point of reference {pos} is past the end of the file ({} bytes); nothing left to send",
                self.lines.size()
            ));
        } else if !self.lines.is_line_start(pos)? {
            self.log.warn(format_args!(
                "point of reference {pos} is not the start of a line; resending from there anyway"
            ));
        }
        self.lines.seek(pos)?;
        Ok(())
    }

    fn on_ack(&mut self, por: u64, s: &mut Session) -> Result<(), FeedError> {
        self.log.info(format_args!(
            "MultiSourceConnector acked {}",
            self.stream_repr(por, self.st.is_open)
        ));
        let new = (por != POR_NONE).then_some(por);
        let prev = self.st.acked;
        // `None` (nothing processed) is older than any offset.
        if prev.is_some() && new < prev {
            self.log.warn(format_args!(
                "got an ack for older point of reference for stream b'{}' id {}: {por} < {}; \
                 rewinding",
                self.name_repr,
                self.st.stream_id,
                prev.unwrap_or(POR_NONE)
            ));
            if s.phase == Phase::Open {
                self.seek(por)?;
                s.eos_sent = false;
            }
        }
        self.st.acked = new;
        self.check_done();
        Ok(())
    }

    fn check_done(&mut self) {
        if self.done {
            return;
        }
        if let (Some(a), Some(last)) = (self.st.acked, self.last_line) {
            if a >= last {
                self.log.info(format_args!(
                    "the last line (offset {last}) is acknowledged (point_of_ref={a})"
                ));
                self.done = true;
            }
        }
    }

    /// Ends the session: logs, and marks the stream closed.
    fn closed(&mut self, reason: &str, delay: Duration) -> SessionEnd {
        self.log.error(format_args!(
            "handle_close: connection to {}: {reason}",
            self.target
        ));
        if self.st.is_open {
            self.log.info(format_args!(
                "MultiSourceConnector closed {}",
                self.stream_repr(self.st.acked.unwrap_or(POR_NONE), false)
            ));
        }
        self.st.connected = false;
        self.st.is_open = false;
        self.save_status(true);
        SessionEnd::Reconnect(delay)
    }

    /// Logs the end, writes the final status.
    fn finish(mut self) -> FeedSummary {
        if self.st.is_open {
            self.log.info(format_args!(
                "MultiSourceConnector closed {}",
                self.stream_repr(self.st.acked.unwrap_or(POR_NONE), false)
            ));
        }
        self.st.connected = false;
        self.st.is_open = false;
        self.st.done = true;
        self.save_status(true);
        self.log.info(format_args!(
            "Reached the end of all files. Shutting down. Sent {} message(s).",
            self.st.sent
        ));
        FeedSummary {
            status: snapshot(&self.st),
        }
    }
}
