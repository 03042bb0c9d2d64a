//! Two-phase-commit control messages between a worker and the sink.
//!
//! They travel as the payload of a stream-0 MESSAGE: a `u8` tag and a body,
//! with no length prefix of their own.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, FrameError};
use crate::wire::{put_short_bytes, Reader};

/// Tag of LIST_UNCOMMITTED.
pub const TAG_LIST_UNCOMMITTED: u8 = 201;
/// Tag of REPLY_UNCOMMITTED.
pub const TAG_REPLY_UNCOMMITTED: u8 = 202;
/// Tag of PHASE1.
pub const TAG_PHASE1: u8 = 203;
/// Tag of the phase-1 vote (REPLY).
pub const TAG_REPLY: u8 = 204;
/// Tag of PHASE2.
pub const TAG_PHASE2: u8 = 205;
/// Tag of WORKERS_LEFT.
pub const TAG_WORKERS_LEFT: u8 = 206;

/// One `(stream_id, start_por, end_por)` range a transaction covers.
pub type WhereEntry = (u64, u64, u64);

/// A 2PC control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwoPc {
    /// Worker asks which transactions the sink holds in phase 1.
    ListUncommitted {
        /// Request tag, echoed in the reply.
        rtag: u64,
    },
    /// Sink answers LIST_UNCOMMITTED.
    ReplyUncommitted {
        /// The request's tag.
        rtag: u64,
        /// Transactions voted on but not decided.
        txn_ids: Vec<String>,
    },
    /// Worker asks the sink to vote on a transaction.
    Phase1 {
        /// Transaction id, e.g. `Passthrough-w-worker1-id-7:c_id=5`.
        txn_id: String,
        /// Byte ranges the transaction covers.
        where_list: Vec<WhereEntry>,
    },
    /// Sink's vote.
    Reply {
        /// Transaction id.
        txn_id: String,
        /// `true` = commit, `false` = abort.
        commit: bool,
    },
    /// Worker's decision; no reply.
    Phase2 {
        /// Transaction id.
        txn_id: String,
        /// `true` = commit, `false` = abort.
        commit: bool,
    },
    /// Worker tells the sink these workers left the cluster.
    WorkersLeft {
        /// Request tag.
        rtag: u64,
        /// Names of the departed workers.
        workers: Vec<String>,
    },
}

impl TwoPc {
    /// Name of the message kind, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            TwoPc::ListUncommitted { .. } => "LIST_UNCOMMITTED",
            TwoPc::ReplyUncommitted { .. } => "REPLY_UNCOMMITTED",
            TwoPc::Phase1 { .. } => "PHASE1",
            TwoPc::Reply { .. } => "REPLY",
            TwoPc::Phase2 { .. } => "PHASE2",
            TwoPc::WorkersLeft { .. } => "WORKERS_LEFT",
        }
    }

    /// Writes tag and body to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        fn put_count(dst: &mut BytesMut, field: &'static str, n: usize) -> Result<(), EncodeError> {
            let n32 = u32::try_from(n).map_err(|_| EncodeError::FieldTooLong { field, len: n })?;
            dst.put_u32(n32);
            Ok(())
        }
        match self {
            TwoPc::ListUncommitted { rtag } => {
                dst.put_u8(TAG_LIST_UNCOMMITTED);
                dst.put_u64(*rtag);
            }
            TwoPc::ReplyUncommitted { rtag, txn_ids } => {
                dst.put_u8(TAG_REPLY_UNCOMMITTED);
                dst.put_u64(*rtag);
                put_count(dst, "txn_ids", txn_ids.len())?;
                for t in txn_ids {
                    put_short_bytes(dst, "txn_id", t.as_bytes())?;
                }
            }
            TwoPc::Phase1 { txn_id, where_list } => {
                dst.put_u8(TAG_PHASE1);
                put_short_bytes(dst, "txn_id", txn_id.as_bytes())?;
                put_count(dst, "where_list", where_list.len())?;
                for (s, a, b) in where_list {
                    dst.put_u64(*s);
                    dst.put_u64(*a);
                    dst.put_u64(*b);
                }
            }
            TwoPc::Reply { txn_id, commit } | TwoPc::Phase2 { txn_id, commit } => {
                dst.put_u8(if matches!(self, TwoPc::Reply { .. }) {
                    TAG_REPLY
                } else {
                    TAG_PHASE2
                });
                put_short_bytes(dst, "txn_id", txn_id.as_bytes())?;
                dst.put_u8(u8::from(*commit));
            }
            TwoPc::WorkersLeft { rtag, workers } => {
                dst.put_u8(TAG_WORKERS_LEFT);
                dst.put_u64(*rtag);
                put_count(dst, "workers", workers.len())?;
                for w in workers {
                    put_short_bytes(dst, "worker_name", w.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Parses a stream-0 MESSAGE payload.
    pub fn decode(payload: Bytes) -> Result<TwoPc, FrameError> {
        let Some(&tag) = payload.first() else {
            return Err(FrameError::Truncated {
                frame: "2PC",
                field: "tag",
            });
        };
        let name = match tag {
            TAG_LIST_UNCOMMITTED => "LIST_UNCOMMITTED",
            TAG_REPLY_UNCOMMITTED => "REPLY_UNCOMMITTED",
            TAG_PHASE1 => "PHASE1",
            TAG_REPLY => "REPLY",
            TAG_PHASE2 => "PHASE2",
            TAG_WORKERS_LEFT => "WORKERS_LEFT",
            other => {
                return Err(FrameError::UnknownTag {
                    what: "2PC",
                    tag: u16::from(other),
                })
            }
        };
        let mut r = Reader::new(payload.slice(1..), name);
        let msg = match tag {
            TAG_LIST_UNCOMMITTED => TwoPc::ListUncommitted {
                rtag: r.u64("rtag")?,
            },
            TAG_REPLY_UNCOMMITTED => {
                let rtag = r.u64("rtag")?;
                let n = r.count("txn_ids", 2)?;
                let mut txn_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    txn_ids.push(r.short_string("txn_id")?);
                }
                TwoPc::ReplyUncommitted { rtag, txn_ids }
            }
            TAG_PHASE1 => {
                let txn_id = r.short_string("txn_id")?;
                let n = r.count("where_list", 24)?;
                let mut where_list = Vec::with_capacity(n);
                for _ in 0..n {
                    where_list.push((r.u64("stream_id")?, r.u64("start_por")?, r.u64("end_por")?));
                }
                TwoPc::Phase1 { txn_id, where_list }
            }
            TAG_REPLY => TwoPc::Reply {
                txn_id: r.short_string("txn_id")?,
                commit: r.bool("commit")?,
            },
            TAG_PHASE2 => TwoPc::Phase2 {
                txn_id: r.short_string("txn_id")?,
                commit: r.bool("commit")?,
            },
            _ => {
                let rtag = r.u64("rtag")?;
                let n = r.count("workers", 2)?;
                let mut workers = Vec::with_capacity(n);
                for _ in 0..n {
                    workers.push(r.short_string("worker_name")?);
                }
                TwoPc::WorkersLeft { rtag, workers }
            }
        };
        r.finish()?;
        Ok(msg)
    }
}
