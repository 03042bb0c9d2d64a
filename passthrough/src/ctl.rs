//! The control protocol between the coordinator (in the initializer) and
//! every worker, including the initializer's own worker in-process. On TCP
//! each message is a `u32` big-endian length then JSON; control traffic is
//! a few messages per checkpoint, so readability beats compactness.
//!
//! Every message that belongs to a recovery generation carries `gen`; a
//! receiver drops messages of any other generation, which is how stale
//! traffic from before a rollback is kept out.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Where a worker's data listener is, and which process is behind it (an
/// id unique per process start: a link to an earlier process at the same
/// address is stale and must be reconnected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Data listener.
    pub addr: String,
    /// Process instance id.
    pub instance: u64,
}

/// Worker name → its data listener.
pub type Peers = BTreeMap<String, Peer>;

/// An id for this process start (pid and start time).
pub fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (u64::from(std::process::id()) << 40) ^ nanos
}

/// A worker → coordinator message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToCoord {
    /// First message on a connection: who I am and where I listen.
    Hello {
        /// Worker name.
        name: String,
        /// Started with `--join`.
        join: bool,
        /// Bound data listener.
        data: String,
        /// Bound source listener.
        source: String,
        /// This process's instance id.
        instance: u64,
    },
    /// Reset for `gen` done: sink resolved, data links to every peer up.
    Ready {
        /// Generation.
        gen: u64,
    },
    /// The ingress's last accepted message id per stream at barrier `c`.
    Report {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
        /// `(stream_id, last accepted message_id)`.
        positions: Vec<(u64, u64)>,
    },
    /// The sink's phase-1 vote on this worker's output of checkpoint `c`.
    Vote {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
        /// Commit?
        commit: bool,
    },
    /// Phase 2 of `c` reached the sink (proved by a LIST_UNCOMMITTED round trip).
    Done {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
    },
    /// Something broke (sink lost, data link lost): roll back.
    Fault {
        /// Generation.
        gen: u64,
        /// What.
        why: String,
    },
    /// A feeder connection asks for a stream (NOTIFY).
    Grant {
        /// Generation.
        gen: u64,
        /// Request id (echoed).
        req: u64,
        /// Stream.
        stream: u64,
        /// Feeder connection id on this worker.
        conn: u64,
    },
    /// A feeder connection that owned `stream` closed.
    Release {
        /// Generation.
        gen: u64,
        /// Stream.
        stream: u64,
        /// Connection.
        conn: u64,
        /// Last accepted message id.
        last_seen: Option<u64>,
    },
}

/// A coordinator → worker message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Accepted into the cluster (as a member or a joiner).
    Welcome {
        /// Members in routing order.
        members: Vec<String>,
        /// The initializer's source address (where feeders go on a shrink).
        source: String,
    },
    /// Refused, with the reason; the worker retries later.
    Refused {
        /// Why.
        reason: String,
    },
    /// Drop everything uncommitted and get ready for generation `gen`.
    Reset {
        /// Generation.
        gen: u64,
        /// Members in routing order.
        members: Vec<String>,
        /// Data listeners.
        peers: Peers,
        /// This worker's last committed transaction id: a pending sink
        /// transaction is committed iff it is this one.
        last_txn: Option<String>,
    },
    /// Every member is ready: accept feeders.
    Resume {
        /// Generation.
        gen: u64,
    },
    /// Start checkpoint `c`: emit a barrier to every owner of `members`,
    /// then route with `next`.
    Checkpoint {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
        /// Transaction id prefix: `Passthrough-w-<worker>-id-<epoch>`.
        epoch: u64,
        /// Members of this checkpoint (ingresses and owners).
        members: Vec<String>,
        /// Members after it (routing after the barrier).
        next: Vec<String>,
        /// Data listeners of everybody in `members` and `next`.
        peers: Peers,
    },
    /// The commit decision of `c` is durable: send PHASE2 commit.
    Decide {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
    },
    /// Committed positions: ACK feeders.
    Acks {
        /// Generation.
        gen: u64,
        /// `(stream_id, committed message_id)`.
        positions: Vec<(u64, u64)>,
    },
    /// Answer to [`ToCoord::Grant`].
    Granted {
        /// Generation.
        gen: u64,
        /// Request id.
        req: u64,
        /// Granted?
        ok: bool,
        /// Committed position to resume from (NOTIFY_ACK point_of_ref).
        por: u64,
        /// Last accepted message id to dedup from.
        last_seen: Option<u64>,
    },
    /// Membership view (for the external API).
    View {
        /// Members in routing order.
        members: Vec<String>,
    },
    /// You were shrunk away: send feeders to `source` and exit.
    Leave {
        /// The initializer's source address.
        source: String,
    },
}

/// Transaction id of checkpoint `c` of `epoch` for `worker`, Wallaroo's
/// `<App>-w-<worker>-id-<sink id>:c_id=<checkpoint>` shape.
pub fn txn_id(worker: &str, epoch: u64, c: u64) -> String {
    format!("Passthrough-w-{worker}-id-{epoch}:c_id={c}")
}

/// Largest control message.
const MAX_JSON: usize = 64 * 1024 * 1024;

/// A malformed control message.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Transport.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Bad length.
    #[error("control message length {0} out of range")]
    Length(usize),
    /// Bad JSON.
    #[error("bad control message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Length-prefixed JSON codec: decodes `In`, encodes `Out`.
#[derive(Debug)]
pub struct JsonCodec<In, Out>(PhantomData<fn(Out) -> In>);

impl<In, Out> Default for JsonCodec<In, Out> {
    fn default() -> Self {
        JsonCodec(PhantomData)
    }
}

impl<In: DeserializeOwned, Out> Decoder for JsonCodec<In, Out> {
    type Item = In;
    type Error = CtlError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CtlError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len == 0 || len > MAX_JSON {
            return Err(CtlError::Length(len));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(len);
        Ok(Some(serde_json::from_slice(&body)?))
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonCodec<In, Out> {
    type Error = CtlError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CtlError> {
        let json = serde_json::to_vec(&item)?;
        if json.len() > MAX_JSON {
            return Err(CtlError::Length(json.len()));
        }
        dst.put_u32(json.len() as u32);
        dst.put_slice(&json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let mut enc = JsonCodec::<ToWorker, ToCoord>::default();
        let mut buf = BytesMut::new();
        let m = ToCoord::Report {
            gen: 3,
            c: 9,
            positions: vec![(u64::MAX, 7)],
        };
        enc.encode(m.clone(), &mut buf).unwrap();
        let mut dec = JsonCodec::<ToCoord, ToWorker>::default();
        let half = buf.split_to(5);
        let mut partial = half.clone();
        assert!(dec.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        assert_eq!(dec.decode(&mut partial).unwrap(), Some(m));
        let mut bad = BytesMut::from(&b"\x00\x00\x00\x03abc"[..]);
        assert!(dec.decode(&mut bad).is_err());
        let mut huge = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert!(dec.decode(&mut huge).is_err());
    }

    #[test]
    fn txn_ids_look_like_wallaroo() {
        assert_eq!(
            txn_id("worker1", 2, 14),
            "Passthrough-w-worker1-id-2:c_id=14"
        );
    }
}
