//! The TCP mode sink: the owner of a worker's keys when there is no 2PC.
//!
//! It speaks the owner's interface to the worker ([`OwnerCmd`] in,
//! [`OwnerEvent`] out) so the coordinator's checkpoints, rollbacks and
//! shrinks go on as in connector mode, but answers them at once: ready
//! after a reset, a commit vote for every checkpoint, phase 2 done after
//! every decision. The records it owns (batches of framed records from the
//! [`source`](super::source)s, barriers ignored) go to a writer task that
//! keeps one plain TCP connection to the receiver and writes them in
//! arrival order.
//!
//! When the receiver is gone the writer reconnects with backoff (50 ms
//! doubling to 1 s) and resends, in full, the bytes whose write failed;
//! meanwhile its queue fills and the owner stops taking records, so the
//! cluster is held back by flow control rather than losing records. The
//! owner keeps answering the coordinator all the while. Bytes the kernel
//! accepted just before the receiver died are lost: plain TCP has no acks.

use std::sync::Arc;
use std::time::Duration;

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::data::Item;
use crate::owner::{OwnerCmd, OwnerEvent};

/// Batches queued for the writer before the owner waits.
const QUEUE: usize = 64;
/// Largest single write (batches are coalesced up to this).
const COALESCE: usize = 1024 * 1024;
/// First reconnection delay.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Limit on one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a worker that was shrunk away tries to deliver what it holds.
const LEAVE_FLUSH: Duration = Duration::from_secs(2);

/// Runs the TCP sink of worker `name`, writing to the receiver at `addr`,
/// until the worker's command channel closes or it leaves the cluster.
pub async fn run(
    name: String,
    addr: String,
    mut cmds: mpsc::UnboundedReceiver<OwnerCmd>,
    mut input: mpsc::Receiver<(Arc<str>, Item)>,
    events: mpsc::UnboundedSender<OwnerEvent>,
) {
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let (done_tx, done) = oneshot::channel();
    // A detached thread: it must not hold up the process's exit.
    if let Err(e) = std::thread::Builder::new()
        .name("tcp-sink".into())
        .spawn(move || write_loop(name, addr, rx, done_tx))
    {
        warn!("tcp sink: cannot start the writer thread: {e}");
        return;
    }
    let emit = |ev| {
        let _ = events.send(ev);
    };
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(OwnerCmd::Reset { gen, .. }) => emit(OwnerEvent::Ready { gen }),
                Some(OwnerCmd::Checkpoint { gen, c, participate, .. }) => {
                    if participate {
                        emit(OwnerEvent::Vote { gen, c, commit: true });
                    }
                }
                Some(OwnerCmd::Decide { gen, c }) => emit(OwnerEvent::Done { gen, c }),
                Some(OwnerCmd::Leave) => break,
                // TCP mode has no 2PC: nothing to commit alone.
                Some(OwnerCmd::CommitAlone { .. }) => {}
            },
            // Take a record batch only when the writer has room for it, so
            // a missing receiver holds the input back without blocking the
            // commands above.
            next = async { (tx.reserve().await, input.recv().await) } => match next {
                (Ok(permit), Some((_, Item::Batch { lines, .. }))) => permit.send(lines),
                (Ok(_), Some((_, Item::Barrier { .. }))) => {}
                (_, None) | (Err(_), _) => return,
            },
        }
    }
    // Shrunk away: routing switched away from this worker at the barrier,
    // so what is queued is all there is. Deliver it if the receiver lets us.
    let deadline = Instant::now() + LEAVE_FLUSH;
    while let Ok((_, item)) = input.try_recv() {
        if let Item::Batch { lines, .. } = item {
            if tokio::time::timeout_at(deadline, tx.send(lines))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    drop(tx);
    if tokio::time::timeout_at(deadline, done).await.is_err() {
        warn!("tcp sink: leaving with output not yet delivered to the receiver");
    }
    emit(OwnerEvent::Left);
}

/// Writes every batch from `rx` to the receiver at `addr`, reconnecting as
/// needed, on its own thread (plain blocking I/O keeps the check for a
/// receiver that went away exact); returns when `rx` is closed and
/// everything was written, then signals `done`.
fn write_loop(
    name: String,
    addr: String,
    mut rx: mpsc::Receiver<Bytes>,
    done: oneshot::Sender<()>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = BytesMut::with_capacity(COALESCE);
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u64;
    let mut written = 0u64;
    loop {
        if buf.is_empty() {
            match rx.blocking_recv() {
                Some(b) => buf.extend_from_slice(&b),
                None => {
                    info!("tcp sink: {written} bytes written in all; done");
                    let _ = done.send(());
                    return;
                }
            }
            while buf.len() < COALESCE {
                match rx.try_recv() {
                    Ok(b) => buf.extend_from_slice(&b),
                    Err(_) => break,
                }
            }
        }
        if conn.as_ref().is_some_and(peer_gone) {
            warn!("tcp sink: the receiver at {addr} closed the connection; reconnecting");
            conn = None;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match connect(&addr) {
                Ok(s) => {
                    info!("tcp sink: {name} connected to the receiver at {addr}");
                    failures = 0;
                    backoff = BACKOFF_MIN;
                    conn.insert(s)
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 60 == 0 {
                        info!(
                            "tcp sink: receiver {addr} not available ({e}); retrying with \
                             backoff up to {} ms",
                            BACKOFF_MAX.as_millis()
                        );
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        match c.write_all(&buf) {
            Ok(()) => {
                written += buf.len() as u64;
                buf.clear();
            }
            Err(e) => {
                warn!(
                    "tcp sink: write to the receiver at {addr} failed: {e}; reconnecting and \
                     resending {} bytes",
                    buf.len()
                );
                conn = None;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Connects to `addr` (any of its addresses), each attempt bounded.
fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether the receiver has closed or reset the connection. It never sends
/// anything, so a readable end means it is gone.
fn peer_gone(c: &TcpStream) -> bool {
    if c.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let gone = match c.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    gone || c.set_nonblocking(false).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn answers_the_coordinator_and_writes_batches_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run("w".into(), addr, cmd_rx, in_rx, ev_tx));
        cmd_tx
            .send(OwnerCmd::Reset {
                gen: 7,
                last_txn: None,
            })
            .unwrap();
        assert_eq!(ev_rx.recv().await, Some(OwnerEvent::Ready { gen: 7 }));
        let src: Arc<str> = Arc::from("initializer");
        for (i, chunk) in [&b"one|"[..], b"two|", b"three"].into_iter().enumerate() {
            in_tx
                .send((
                    src.clone(),
                    Item::Batch {
                        gen: 7,
                        lines: Bytes::from_static(chunk),
                    },
                ))
                .await
                .unwrap();
            if i == 0 {
                in_tx
                    .send((src.clone(), Item::Barrier { gen: 7, c: 1 }))
                    .await
                    .unwrap();
            }
        }
        cmd_tx
            .send(OwnerCmd::Checkpoint {
                gen: 7,
                c: 1,
                txn: "t".into(),
                sources: vec![],
                participate: true,
            })
            .unwrap();
        assert_eq!(
            ev_rx.recv().await,
            Some(OwnerEvent::Vote {
                gen: 7,
                c: 1,
                commit: true
            })
        );
        cmd_tx.send(OwnerCmd::Decide { gen: 7, c: 1 }).unwrap();
        assert_eq!(ev_rx.recv().await, Some(OwnerEvent::Done { gen: 7, c: 1 }));
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = vec![0u8; 13];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one|two|three");
        cmd_tx.send(OwnerCmd::Leave).unwrap();
        assert_eq!(ev_rx.recv().await, Some(OwnerEvent::Left));
        task.await.unwrap();
    }

    #[test]
    fn reconnects_when_the_receiver_comes_back() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (done_tx, mut done) = oneshot::channel();
        let writer =
            std::thread::spawn(move || write_loop("w".into(), addr.to_string(), rx, done_tx));
        tx.blocking_send(Bytes::from_static(b"first")).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"first");
        // The receiver dies; a new one comes up on the same port.
        drop(s);
        drop(l);
        let l = std::net::TcpListener::bind(addr).unwrap();
        tx.blocking_send(Bytes::from_static(b"second")).unwrap();
        let (mut s, _) = l.accept().unwrap();
        drop(tx);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"second");
        writer.join().unwrap();
        assert!(done.try_recv().is_ok());
    }
}
