//! The source side: a connector protocol v3 server for feeders.
//!
//! It checks the version (`0.0.1`) and cookie (ERROR and close on a
//! mismatch), grants credits at OK and refills them as they run low
//! (ACKs with an empty ack list, independent of commits), asks the
//! coordinator to grant each NOTIFYed stream (one owning connection per
//! stream in the whole cluster), drops every MESSAGE whose id is ≤ the
//! last one accepted for its stream, and routes each line to the owner of
//! its key (its first byte). Feeders are acked only with committed
//! positions, which the coordinator sends after each checkpoint.
//!
//! The hot path parses MESSAGE frames in place in the read buffer and
//! copies each line once, into the batch for its owner; one gate read lock
//! and one registry lock are taken per read chunk, not per line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use connector::{ConnectorCodec, Frame, POR_NONE, SOURCE_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::bugs::{Bug, Bugs};
use crate::cli::SourceSpec;
use crate::ctl::ToCoord;
use crate::data::Item;
use crate::route::{owner_index, Router};

/// Largest frame a feeder may send.
const MAX_FRAME: usize = connector::DEFAULT_MAX_FRAME_LEN;
/// Size of a MESSAGE body before the key: tag, stream, message id, event time, key length.
const MESSAGE_HEAD: usize = 1 + 8 + 8 + 8 + 2;

/// What another task asks a feeder connection to do.
#[derive(Debug)]
enum ConnCmd {
    /// Send this frame.
    Frame(Frame),
    /// Send RESTART (with an address to go to, or none) and close.
    Restart(Option<String>),
}

struct ConnHandle {
    tx: mpsc::UnboundedSender<ConnCmd>,
    /// A NOTIFY was refused: poke the feeder (empty ACK) when we resume.
    waiting: bool,
}

struct PendingGrant {
    conn: u64,
    stream: u64,
    notify_por: u64,
}

/// The source side of one worker.
pub struct Ingress {
    router: Arc<Router>,
    uplink: mpsc::UnboundedSender<ToCoord>,
    spec: SourceSpec,
    cookie: String,
    bugs: Bugs,
    conns: Mutex<HashMap<u64, ConnHandle>>,
    grants: Mutex<HashMap<u64, PendingGrant>>,
    next_conn: AtomicU64,
    next_req: AtomicU64,
    live: AtomicU64,
}

impl Ingress {
    /// The source side, routing through `router`, asking the coordinator
    /// via `uplink`.
    pub fn new(
        router: Arc<Router>,
        uplink: mpsc::UnboundedSender<ToCoord>,
        spec: SourceSpec,
        cookie: String,
        bugs: Bugs,
    ) -> Arc<Ingress> {
        Arc::new(Ingress {
            router,
            uplink,
            spec,
            cookie,
            bugs,
            conns: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            next_req: AtomicU64::new(1),
            live: AtomicU64::new(0),
        })
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, ConnHandle>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_to(&self, conn: u64, f: Frame) {
        if let Some(h) = self.conns().get(&conn) {
            let _ = h.tx.send(ConnCmd::Frame(f));
        }
    }

    /// Feeder connections whose tasks are still running.
    pub fn connections(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }

    /// RESTARTs every feeder (to `address`, or the same place) and closes
    /// its connection.
    pub fn kick_all(&self, address: Option<String>) {
        let conns: Vec<_> = self.conns().drain().collect();
        if !conns.is_empty() {
            info!(
                "sending RESTART{} to {} feeder connection(s)",
                address
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                conns.len()
            );
        }
        for (_, h) in conns {
            let _ = h.tx.send(ConnCmd::Restart(address.clone()));
        }
        self.grants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Pokes feeders whose NOTIFY was refused (we are processing again).
    pub fn poke(&self) {
        for h in self.conns().values_mut() {
            if std::mem::take(&mut h.waiting) {
                let _ = h.tx.send(ConnCmd::Frame(Frame::Ack {
                    credits: 0,
                    acks: vec![],
                }));
            }
        }
    }

    /// ACKs committed positions to the connections that own the streams.
    pub fn ack(&self, gen: u64, positions: &[(u64, u64)]) {
        let mut per_conn: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        {
            let st = self.router.streams();
            if st.gen != gen {
                return;
            }
            for (sid, por) in positions {
                if let Some(conn) = st.map.get(sid).and_then(|e| e.conn) {
                    per_conn.entry(conn).or_default().push((*sid, *por));
                }
            }
        }
        for (conn, acks) in per_conn {
            self.send_to(conn, Frame::Ack { credits: 0, acks });
        }
    }

    /// The coordinator's answer to a NOTIFY.
    pub fn granted(&self, gen: u64, req: u64, ok: bool, por: u64, last_seen: Option<u64>) {
        let Some(pg) = self
            .grants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req)
        else {
            return;
        };
        let alive = self.conns().contains_key(&pg.conn);
        if !ok {
            if let Some(h) = self.conns().get_mut(&pg.conn) {
                h.waiting = true;
                let _ = h.tx.send(ConnCmd::Frame(Frame::NotifyAck {
                    success: false,
                    stream_id: pg.stream,
                    point_of_ref: pg.notify_por,
                }));
            }
            return;
        }
        let mut reply_por = por;
        {
            let mut st = self.router.streams();
            if st.gen != gen || !alive {
                drop(st);
                // Nobody will use it: give it back.
                let _ = self.uplink.send(ToCoord::Release {
                    gen,
                    stream: pg.stream,
                    conn: pg.conn,
                    last_seen,
                });
                return;
            }
            let e = st.map.entry(pg.stream).or_default();
            e.conn = Some(pg.conn);
            e.last_seen = e.last_seen.max(last_seen);
            if self.bugs.is(Bug::AckBeforeCommit)
                && pg.notify_por != POR_NONE
                && (por == POR_NONE || pg.notify_por > por)
            {
                // The bug trusts the feeder's (early) acked position.
                reply_por = pg.notify_por;
                e.last_seen = e.last_seen.max(Some(pg.notify_por));
            }
        }
        info!(
            "stream {} granted to feeder connection {}; resume at {}",
            pg.stream,
            pg.conn,
            if reply_por == POR_NONE {
                "the beginning".to_string()
            } else {
                reply_por.to_string()
            }
        );
        self.send_to(
            pg.conn,
            Frame::NotifyAck {
                success: true,
                stream_id: pg.stream,
                point_of_ref: reply_por,
            },
        );
    }
}

/// Accepts feeders on `listener` forever.
pub async fn serve(listener: TcpListener, ingress: Arc<Ingress>) {
    loop {
        let (stream, peer) = crate::accept(&listener, "source").await;
        let ing = ingress.clone();
        ing.live.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = connection(ing.clone(), stream).await {
                info!("feeder {peer}: {e}");
            }
            ing.live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn connection(ing: Arc<Ingress>, stream: TcpStream) -> Result<(), String> {
    let (mut rd, mut wr) = stream.into_split();
    let codec = ConnectorCodec::new(MAX_FRAME);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let hello = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable HELLO: {e}")),
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before HELLO".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no HELLO within 30 s".to_string())??;
    let cookie = ing.spec.cookie.as_deref().unwrap_or(&ing.cookie).to_owned();
    let refusal = match &hello {
        Frame::Hello {
            version, cookie: c, ..
        } => {
            if version != SOURCE_VERSION {
                Some(format!(
                    "Unknown protocol version: {version:?}, wanted {SOURCE_VERSION:?}"
                ))
            } else if *c != cookie {
                Some(format!("Bad cookie: {c:?}"))
            } else {
                None
            }
        }
        other => Some(format!("expected HELLO, got {}", other.name())),
    };
    if let Some(message) = refusal {
        warn!("feeder refused: {message}");
        let mut out = BytesMut::new();
        let _ = codec.encode_frame(&Frame::Error { message }, &mut out);
        let _ = wr.write_all(&out).await;
        return Ok(());
    }
    let mut out = BytesMut::new();
    codec
        .encode_frame(
            &Frame::Ok {
                initial_credits: ing.spec.max_credits,
            },
            &mut out,
        )
        .map_err(|e| e.to_string())?;
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    let id = ing.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    ing.conns().insert(
        id,
        ConnHandle {
            tx: tx.clone(),
            waiting: false,
        },
    );
    debug!("feeder connection {id} open");
    let stop = Arc::new(Notify::new());
    let writer = tokio::spawn(write_loop(wr, rx, stop.clone()));
    let result = read_loop(&ing, id, &mut rd, buf, &tx, &stop).await;
    ing.conns().remove(&id);
    drop(tx);
    release(&ing, id);
    let _ = writer.await;
    // Discard what the feeder still sends until it closes (it does on
    // RESTART): closing a socket with unread bytes resets the connection,
    // and the reset destroys the RESTART still in flight to the feeder.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut scratch = vec![0u8; 64 * 1024];
        while matches!(rd.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
    debug!("feeder connection {id} closed");
    result
}

/// Gives the coordinator back the streams connection `id` owned.
fn release(ing: &Ingress, id: u64) {
    let mut released = Vec::new();
    let gen = {
        let mut st = ing.router.streams();
        for (sid, e) in st.map.iter_mut() {
            if e.conn == Some(id) {
                e.conn = None;
                released.push((*sid, e.last_seen));
            }
        }
        st.gen
    };
    for (stream, last_seen) in released {
        let _ = ing.uplink.send(ToCoord::Release {
            gen,
            stream,
            conn: id,
            last_seen,
        });
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<ConnCmd>,
    stop: Arc<Notify>,
) {
    let codec = ConnectorCodec::new(u32::MAX as usize);
    let mut buf = BytesMut::new();
    while let Some(cmd) = rx.recv().await {
        let mut restart = None;
        let push = |cmd: ConnCmd, buf: &mut BytesMut| match cmd {
            ConnCmd::Frame(f) => {
                let _ = codec.encode_frame(&f, buf);
                None
            }
            ConnCmd::Restart(a) => Some(a),
        };
        restart = restart.or(push(cmd, &mut buf));
        while restart.is_none() {
            match rx.try_recv() {
                Ok(more) => restart = push(more, &mut buf),
                Err(_) => break,
            }
        }
        if let Some(address) = restart.clone() {
            let _ = codec.encode_frame(&Frame::Restart { address }, &mut buf);
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        if restart.is_some() {
            let _ = wr.shutdown().await;
            break;
        }
    }
    stop.notify_one();
}

/// Per-connection scratch: one batch per owner.
struct Batches {
    by_owner: Vec<BytesMut>,
    /// Streams touched in this chunk (for the ack-before-commit bug).
    touched: Vec<(u64, u64)>,
}

async fn read_loop(
    ing: &Arc<Ingress>,
    id: u64,
    rd: &mut OwnedReadHalf,
    mut buf: BytesMut,
    tx: &mpsc::UnboundedSender<ConnCmd>,
    stop: &Notify,
) -> Result<(), String> {
    let mut used: u32 = 0;
    let mut batches = Batches {
        by_owner: Vec::new(),
        touched: Vec::new(),
    };
    let max = ing.spec.max_credits;
    let refill = ing.spec.refill_credits;
    loop {
        if !buf.is_empty() {
            let (msgs, ctl) = route_chunk(ing, id, &mut buf, &mut batches).await?;
            used = used.saturating_add(msgs);
            if max.saturating_sub(used) <= refill && used > 0 {
                let _ = tx.send(ConnCmd::Frame(Frame::Ack {
                    credits: used,
                    acks: vec![],
                }));
                used = 0;
            }
            for f in ctl {
                control(ing, id, f, tx).await?;
            }
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            },
            _ = stop.notified() => return Ok(()),
        }
    }
}

/// Handles a non-MESSAGE frame.
async fn control(
    ing: &Ingress,
    id: u64,
    f: Frame,
    tx: &mpsc::UnboundedSender<ConnCmd>,
) -> Result<(), String> {
    match f {
        Frame::Notify {
            stream_id,
            point_of_ref,
            ..
        } => {
            let (gen, accepting) = {
                let g = ing.router.gate.read().await;
                (g.gen, g.active && !g.draining)
            };
            if !accepting {
                if let Some(h) = ing.conns().get_mut(&id) {
                    h.waiting = true;
                }
                let _ = tx.send(ConnCmd::Frame(Frame::NotifyAck {
                    success: false,
                    stream_id,
                    point_of_ref,
                }));
                return Ok(());
            }
            let req = ing.next_req.fetch_add(1, Ordering::Relaxed);
            ing.grants.lock().unwrap_or_else(|e| e.into_inner()).insert(
                req,
                PendingGrant {
                    conn: id,
                    stream: stream_id,
                    notify_por: point_of_ref,
                },
            );
            let _ = ing.uplink.send(ToCoord::Grant {
                gen,
                req,
                stream: stream_id,
                conn: id,
            });
            Ok(())
        }
        Frame::Eos { stream_id } => {
            debug!("feeder connection {id}: end of stream {stream_id}");
            Ok(())
        }
        Frame::Hello { .. } => Err("HELLO on an established connection".into()),
        other => {
            debug!("feeder connection {id}: ignoring {}", other.name());
            Ok(())
        }
    }
}

/// Parses every complete frame in `buf`: MESSAGEs are deduped and routed
/// (under the gate), other frames returned. Returns the MESSAGE count.
async fn route_chunk(
    ing: &Ingress,
    id: u64,
    buf: &mut BytesMut,
    batches: &mut Batches,
) -> Result<(u32, Vec<Frame>), String> {
    let gate = ing.router.gate.read().await;
    let accepting = gate.active && !gate.draining;
    let n = gate.members.len();
    if batches.by_owner.len() != n {
        batches.by_owner.resize_with(n, BytesMut::new);
    }
    let mut msgs = 0u32;
    let mut ctl = Vec::new();
    let ack_early = ing.bugs.is(Bug::AckBeforeCommit);
    {
        let mut guard = ing.router.streams();
        let st = &mut *guard;
        let live = st.gen == gate.gen && accepting;
        loop {
            if buf.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len == 0 || len > MAX_FRAME {
                return Err(format!("bad frame length {len}; closing"));
            }
            if buf.len() < 4 + len {
                break;
            }
            let body = &buf[4..4 + len];
            if body[0] != connector::frame::TAG_MESSAGE {
                let frame = Frame::decode_body(Bytes::copy_from_slice(body))
                    .map_err(|e| format!("undecodable frame: {e}; closing"))?;
                ctl.push(frame);
                buf.advance(4 + len);
                continue;
            }
            if len < MESSAGE_HEAD {
                return Err(format!("MESSAGE of {len} bytes is truncated; closing"));
            }
            msgs += 1;
            let sid = u64::from_be_bytes(body[1..9].try_into().unwrap_or_default());
            let mid = u64::from_be_bytes(body[9..17].try_into().unwrap_or_default());
            let klen = u16::from_be_bytes([body[25], body[26]]) as usize;
            if MESSAGE_HEAD + klen > len {
                return Err(format!(
                    "MESSAGE key of {klen} bytes overruns the frame; closing"
                ));
            }
            let line = &body[MESSAGE_HEAD + klen..];
            if live {
                if let Some(e) = st.map.get_mut(&sid) {
                    if e.conn == Some(id) && !e.last_seen.is_some_and(|ls| mid <= ls) {
                        e.last_seen = Some(mid);
                        if ack_early {
                            batches.touched.push((sid, mid));
                        }
                        if let (Some(&key), Some(_)) = (line.first(), owner_index(0, n)) {
                            route_line(st, batches, key, line, n);
                        }
                    }
                }
            }
            buf.advance(4 + len);
        }
    }
    let gen = gate.gen;
    for (i, b) in batches.by_owner.iter_mut().enumerate() {
        if b.is_empty() {
            continue;
        }
        let lines = b.split().freeze();
        if gate.outs[i].send(Item::Batch { gen, lines }).await.is_err() {
            // Accepted lines are lost with the link: roll back, so the
            // feeders replay them.
            let why = format!("data link to {} is gone", gate.members[i]);
            debug!("feeder connection {id}: {why}");
            let _ = ing.uplink.send(ToCoord::Fault { gen, why });
        }
    }
    drop(gate);
    if ack_early && !batches.touched.is_empty() {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for (s, m) in batches.touched.drain(..) {
            last.insert(s, m);
        }
        ing.send_to(
            id,
            Frame::Ack {
                credits: 0,
                acks: last.into_iter().collect(),
            },
        );
    }
    Ok((msgs, ctl))
}

/// Appends one line to its owner's batch, through the migration bug hooks.
fn route_line(
    st: &mut crate::route::Streams,
    batches: &mut Batches,
    key: u8,
    line: &[u8],
    n: usize,
) {
    let Some(owner) = owner_index(key, n) else {
        return;
    };
    if !st.drop_next.is_empty() && st.drop_next.remove(&key) {
        info!(
            "injected bug lose-on-shrink: dropping a line of key {}",
            key as char
        );
        return;
    }
    if !st.swap_next.is_empty() {
        if let Some(held) = st.swap_next.get_mut(&key) {
            match held.take() {
                None => {
                    *held = Some(Bytes::copy_from_slice(line));
                    return;
                }
                Some(first) => {
                    info!(
                        "injected bug reorder-on-migrate: swapping two lines of key {}",
                        key as char
                    );
                    batches.by_owner[owner].extend_from_slice(line);
                    batches.by_owner[owner].extend_from_slice(&first);
                    st.swap_next.remove(&key);
                    return;
                }
            }
        }
    }
    batches.by_owner[owner].extend_from_slice(line);
}
