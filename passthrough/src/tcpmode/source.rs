//! The TCP mode source: length-framed records from plain TCP connections
//! (`crasher blast`), routed by key to their owners.
//!
//! A record is a `u32` big-endian length, then that many payload bytes;
//! its key is the payload's first byte. Records are routed whole (length
//! included), so the owner writes them to the receiver framed as they came.
//! Each read chunk is routed under one read lock of the routing gate, like
//! the connector ingress does. While the gate is inactive (forming,
//! recovering) nothing more is read; a worker that is shrunk away closes
//! its source connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ctl::ToCoord;
use crate::data::Item;
use crate::route::{owner_index, Router};

/// Largest record payload accepted; a larger length means the sender is
/// not speaking this framing, and the connection is closed.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
/// How long an inactive source waits for an activation before it looks at
/// the gate again (activations also wake it at once).
const RECHECK: Duration = Duration::from_secs(1);

/// What one source connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records routed to an owner.
    pub records: u64,
    /// Their bytes, length headers included.
    pub bytes: u64,
    /// Records lost because the data link to their owner was gone.
    pub lost: u64,
}

/// Accepts senders on `listener` forever; records go through `router`, and
/// a lost data link is reported to the coordinator on `uplink`.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    uplink: mpsc::UnboundedSender<ToCoord>,
) {
    loop {
        let (stream, peer) = crate::accept(&listener, "tcp source").await;
        let router = router.clone();
        let uplink = uplink.clone();
        tokio::spawn(async move {
            info!("tcp source: connection from {peer}");
            let mut counts = Counts::default();
            let end = connection(&router, &uplink, stream, &mut counts).await;
            let what = format!(
                "{} record(s), {} bytes routed, {} lost",
                counts.records, counts.bytes, counts.lost
            );
            match end {
                Ok(()) => info!("tcp source: {peer} closed after {what}"),
                Err(e) => warn!("tcp source: closing {peer} after {what}: {e}"),
            }
        });
    }
}

/// Reads and routes one connection until it ends; `Err` says why it was
/// closed from this side (or failed).
async fn connection(
    router: &Router,
    uplink: &mpsc::UnboundedSender<ToCoord>,
    mut stream: TcpStream,
    counts: &mut Counts,
) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut batches: Vec<BytesMut> = Vec::new();
    loop {
        if complete_records(&buf)? > 0 {
            route(router, uplink, &mut buf, &mut batches, counts).await?;
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => return Ok(()),
            Ok(0) => {
                return Err(format!(
                    "the sender closed in the middle of a record ({} bytes left over)",
                    buf.len()
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The number of complete records at the start of `buf`, or why the
/// framing is broken.
pub fn complete_records(buf: &[u8]) -> Result<usize, String> {
    let mut n = 0;
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len == 0 || len > MAX_RECORD {
            return Err(format!(
                "record length {len} is out of range 1..={MAX_RECORD}: not length-framed records"
            ));
        }
        if buf.len() - at < 4 + len {
            break;
        }
        at += 4 + len;
        n += 1;
    }
    Ok(n)
}

/// Routes every complete record in `buf` to its owner, waiting while the
/// gate is inactive. Fails when this worker has left the routing.
async fn route(
    router: &Router,
    uplink: &mpsc::UnboundedSender<ToCoord>,
    buf: &mut BytesMut,
    batches: &mut Vec<BytesMut>,
    counts: &mut Counts,
) -> Result<(), String> {
    loop {
        let activated = router.activated.notified();
        tokio::pin!(activated);
        activated.as_mut().enable();
        {
            let gate = router.gate.read().await;
            if gate.draining {
                return Err("this worker left the cluster".into());
            }
            let n = gate.members.len();
            if gate.active && n > 0 && gate.outs.len() == n {
                batches.resize_with(n, BytesMut::new);
                split(buf, batches, n, counts);
                let gen = gate.gen;
                for (i, b) in batches.iter_mut().enumerate() {
                    if b.is_empty() {
                        continue;
                    }
                    let records = complete_records(b).unwrap_or(0) as u64;
                    let lines = b.split().freeze();
                    if gate.outs[i].send(Item::Batch { gen, lines }).await.is_err() {
                        counts.lost += records;
                        let why = format!("data link to {} is gone", gate.members[i]);
                        debug!("tcp source: {why}; {records} record(s) lost");
                        let _ = uplink.send(ToCoord::Fault { gen, why });
                    }
                }
                return Ok(());
            }
        }
        let _ = tokio::time::timeout(RECHECK, activated).await;
    }
}

/// Moves every complete record from `buf` into the batch of its key's
/// owner among `n` members. The framing was checked by [`complete_records`].
fn split(buf: &mut BytesMut, batches: &mut [BytesMut], n: usize, counts: &mut Counts) {
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len == 0 || buf.len() < 4 + len {
            return;
        }
        let key = buf[4];
        if let Some(owner) = owner_index(key, n) {
            batches[owner].extend_from_slice(&buf[..4 + len]);
            counts.records += 1;
            counts.bytes += 4 + len as u64;
        }
        buf.advance(4 + len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn framing_is_checked_and_partial_records_wait() {
        let mut b = record(b"A0000000 x\n");
        b.extend(record(b"B1"));
        assert_eq!(complete_records(&b), Ok(2));
        b.extend_from_slice(&[0, 0, 0, 9, b'C']);
        assert_eq!(complete_records(&b), Ok(2));
        assert!(complete_records(&[0, 0, 0, 0]).is_err());
        assert!(complete_records(&[0xff, 0, 0, 0]).is_err());
        assert_eq!(complete_records(&[0, 0]), Ok(0));
    }

    #[test]
    fn records_go_whole_to_the_owner_of_their_first_payload_byte() {
        let a = record(b"A line\n");
        let b = record(b"B line\n");
        let mut buf = BytesMut::new();
        for r in [&a, &b, &a] {
            buf.extend_from_slice(r);
        }
        buf.extend_from_slice(&[0, 0, 0, 7, b'A']);
        let mut batches = vec![BytesMut::new(), BytesMut::new()];
        let mut counts = Counts::default();
        split(&mut buf, &mut batches, 2, &mut counts);
        // 'A' is 65: owner 1 of 2; 'B' is 66: owner 0.
        assert_eq!(&batches[1][..], [a.clone(), a.clone()].concat());
        assert_eq!(&batches[0][..], &b[..]);
        assert_eq!(&buf[..], &[0, 0, 0, 7, b'A']);
        assert_eq!(counts.records, 3);
        assert_eq!(counts.bytes, 3 * a.len() as u64);
    }
}
