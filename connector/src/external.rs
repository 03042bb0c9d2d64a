//! The external query API: cluster status and shrink requests.
//!
//! A message is `u32` big-endian length (= 2 + payload length), `u16`
//! message id, then the payload. Status and shrink payloads are JSON.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::split_frame;
use crate::error::{EncodeError, FrameError};

/// Id of a shrink request (JSON [`ShrinkRequest`]).
pub const ID_SHRINK_REQUEST: u16 = 4;
/// Id of a shrink response (JSON [`ShrinkResponse`]).
pub const ID_SHRINK_RESPONSE: u16 = 5;
/// Id of a shrink error (UTF-8 text).
pub const ID_SHRINK_ERROR: u16 = 6;
/// Id of a cluster-status query (empty payload).
pub const ID_CLUSTER_STATUS_QUERY: u16 = 9;
/// Id of a cluster-status answer (JSON [`ClusterStatus`]).
pub const ID_CLUSTER_STATUS: u16 = 10;
/// Id of "cluster not yet initialised" (empty payload).
pub const ID_NOT_INITIALIZED: u16 = 11;

/// Largest external message accepted: these are small JSON documents.
pub const MAX_EXTERNAL_LEN: usize = 1024 * 1024;

/// What a worker says about the cluster it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Number of members.
    pub worker_count: u64,
    /// Member names, initializer first.
    pub worker_names: Vec<String>,
    /// False while the worker recovers or the cluster is stopped.
    pub processing_messages: bool,
    /// Which member owns each routing key (a single ASCII letter or digit)
    /// under the worker's current routing. An extension of the reference
    /// cluster: Wallaroo and other systems omit it, and it is omitted from
    /// the JSON when absent, so the message stays what they send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_owners: Option<BTreeMap<String, String>>,
}

/// A request to remove workers from the cluster (or, with `query`, to ask
/// which could be removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShrinkRequest {
    /// Only ask which workers are eligible; remove nothing.
    pub query: bool,
    /// Workers to remove, by name.
    pub node_names: Vec<String>,
    /// Or: how many to remove, the cluster's choice (used when no names).
    pub node_count: u64,
}

/// Answer to a shrink request: the eligible (query) or removed workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShrinkResponse {
    /// Worker names.
    pub node_names: Vec<String>,
    /// Their number.
    pub node_count: u64,
}

/// A message of the external API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalMsg {
    /// "What is the state of the cluster?"
    ClusterStatusQuery,
    /// The answer of an initialised worker.
    ClusterStatus(ClusterStatus),
    /// The answer of a worker that has not joined a cluster yet.
    NotInitialized,
    /// Shrink (or shrink query).
    Shrink(ShrinkRequest),
    /// Shrink accepted / eligibility answer.
    ShrinkResponse(ShrinkResponse),
    /// Shrink refused, with the reason.
    ShrinkError(String),
}

impl ExternalMsg {
    /// Writes the message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (id, payload): (u16, Vec<u8>) = match self {
            ExternalMsg::ClusterStatusQuery => (ID_CLUSTER_STATUS_QUERY, Vec::new()),
            ExternalMsg::ClusterStatus(s) => (ID_CLUSTER_STATUS, to_json(s)),
            ExternalMsg::NotInitialized => (ID_NOT_INITIALIZED, Vec::new()),
            ExternalMsg::Shrink(s) => (ID_SHRINK_REQUEST, to_json(s)),
            ExternalMsg::ShrinkResponse(s) => (ID_SHRINK_RESPONSE, to_json(s)),
            ExternalMsg::ShrinkError(e) => (ID_SHRINK_ERROR, e.as_bytes().to_vec()),
        };
        let len = payload.len() + 2;
        if len > MAX_EXTERNAL_LEN {
            return Err(EncodeError::TooLarge {
                len,
                max: MAX_EXTERNAL_LEN,
            });
        }
        dst.put_u32(len as u32);
        dst.put_u16(id);
        dst.put_slice(&payload);
        Ok(())
    }

    /// Parses id and payload (everything after the length prefix).
    pub fn decode_body(body: Bytes) -> Result<ExternalMsg, FrameError> {
        if body.len() < 2 {
            return Err(FrameError::Truncated {
                frame: "external",
                field: "msg_id",
            });
        }
        let id = u16::from_be_bytes([body[0], body[1]]);
        let payload = body.slice(2..);
        let empty = |m: ExternalMsg| {
            if payload.is_empty() {
                Ok(m)
            } else {
                Err(FrameError::TrailingBytes {
                    frame: "external",
                    extra: payload.len(),
                })
            }
        };
        match id {
            ID_CLUSTER_STATUS_QUERY => empty(ExternalMsg::ClusterStatusQuery),
            ID_NOT_INITIALIZED => empty(ExternalMsg::NotInitialized),
            ID_CLUSTER_STATUS => Ok(ExternalMsg::ClusterStatus(from_json(id, &payload)?)),
            ID_SHRINK_REQUEST => Ok(ExternalMsg::Shrink(from_json(id, &payload)?)),
            ID_SHRINK_RESPONSE => Ok(ExternalMsg::ShrinkResponse(from_json(id, &payload)?)),
            ID_SHRINK_ERROR => Ok(ExternalMsg::ShrinkError(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            tag => Err(FrameError::UnknownTag {
                what: "external",
                tag,
            }),
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(id: u16, p: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(p).map_err(|source| FrameError::BadJson { id, source })
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// `tokio_util` codec for the external API.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExternalCodec;

impl Decoder for ExternalCodec {
    type Item = ExternalMsg;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ExternalMsg>, FrameError> {
        match split_frame(src, MAX_EXTERNAL_LEN)? {
            Some(body) => ExternalMsg::decode_body(body).map(Some),
            None => Ok(None),
        }
    }
}

impl Encoder<ExternalMsg> for ExternalCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: ExternalMsg, dst: &mut BytesMut) -> Result<(), EncodeError> {
        item.encode(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_query_is_six_bytes() {
        let mut b = BytesMut::new();
        ExternalMsg::ClusterStatusQuery.encode(&mut b).unwrap();
        assert_eq!(&b[..], &[0, 0, 0, 2, 0, 9]);
    }

    #[test]
    fn status_round_trips_and_garbage_is_typed() {
        let msg = ExternalMsg::ClusterStatus(ClusterStatus {
            worker_count: 2,
            worker_names: vec!["initializer".into(), "worker1".into()],
            processing_messages: true,
            key_owners: Some(BTreeMap::from([("A".into(), "worker1".into())])),
        });
        let mut b = BytesMut::new();
        msg.encode(&mut b).unwrap();
        assert_eq!(ExternalCodec.decode(&mut b).unwrap(), Some(msg));
        let mut bad = BytesMut::from(&[0u8, 0, 0, 4, 0, 10, b'{', b'x'][..]);
        assert!(matches!(
            ExternalCodec.decode(&mut bad),
            Err(FrameError::BadJson { id: 10, .. })
        ));
        // Wallaroo's reply has no key_owners; it decodes as None and
        // encodes back without the field.
        let wallaroo =
            br#"{"worker_count":1,"worker_names":["initializer"],"processing_messages":false}"#;
        let mut b = BytesMut::new();
        b.put_u32(wallaroo.len() as u32 + 2);
        b.put_u16(ID_CLUSTER_STATUS);
        b.put_slice(wallaroo);
        let Some(ExternalMsg::ClusterStatus(s)) = ExternalCodec.decode(&mut b).unwrap() else {
            panic!("not a status")
        };
        assert_eq!(s.key_owners, None);
        assert_eq!(to_json(&s), wallaroo.to_vec());
        let mut huge = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            ExternalCodec.decode(&mut huge),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
