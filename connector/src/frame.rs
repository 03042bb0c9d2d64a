//! Connector protocol v3 frames.
//!
//! A frame on the wire is `u32 length` (counting everything after it), a
//! `u8` tag, then the body. [`Frame::encode_body`] and [`Frame::decode_body`]
//! handle tag and body; [`crate::codec`] adds and strips the length prefix.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, FrameError};
use crate::twopc::TwoPc;
use crate::wire::{put_short_bytes, Reader};

/// Tag of HELLO.
pub const TAG_HELLO: u8 = 0;
/// Tag of OK.
pub const TAG_OK: u8 = 1;
/// Tag of ERROR.
pub const TAG_ERROR: u8 = 2;
/// Tag of NOTIFY.
pub const TAG_NOTIFY: u8 = 3;
/// Tag of NOTIFY_ACK.
pub const TAG_NOTIFY_ACK: u8 = 4;
/// Tag of MESSAGE.
pub const TAG_MESSAGE: u8 = 5;
/// Tag of ACK.
pub const TAG_ACK: u8 = 6;
/// Tag of RESTART.
pub const TAG_RESTART: u8 = 7;
/// Tag of EOS_MESSAGE.
pub const TAG_EOS: u8 = 8;

/// One MESSAGE: a unit of data on a stream.
///
/// On a feeder connection `message_id` is the byte offset of the line's
/// start in its file; on a sink connection it is the offset of the chunk in
/// the worker's output stream (stream 1), or 0 for 2PC control (stream 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The stream this message belongs to.
    pub stream_id: u64,
    /// Position of this message in its stream; strictly increasing per stream.
    pub message_id: u64,
    /// Event time; the harness always sends 0.
    pub event_time: i64,
    /// Optional key (an empty `short_bytes` on the wire means none).
    pub key: Option<Bytes>,
    /// The payload: the rest of the frame.
    pub payload: Bytes,
}

/// A connector protocol v3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a session: protocol version, shared cookie, and who is speaking.
    Hello {
        /// `0.0.1` from feeders, `v0.0.1` from workers to the sink.
        version: String,
        /// Shared secret; a mismatch is refused with ERROR.
        cookie: String,
        /// Application name.
        program_name: String,
        /// Instance name; on the sink side, the worker name.
        instance_name: String,
    },
    /// Accepts HELLO and grants credits.
    Ok {
        /// Credits: how many messages the peer may send before the next ACK.
        initial_credits: u32,
    },
    /// Refuses something; the connection is closed after it.
    Error {
        /// Human-readable reason.
        message: String,
    },
    /// Claims a stream and says where the sender believes it is.
    Notify {
        /// Stream id (see [`crate::stream_id_for`]).
        stream_id: u64,
        /// Stream name, e.g. the file name.
        stream_name: Bytes,
        /// Sender's last acknowledged position.
        point_of_ref: u64,
    },
    /// Answers NOTIFY: whether the stream is granted and where to resume.
    NotifyAck {
        /// Whether this connection now owns the stream.
        success: bool,
        /// Stream id.
        stream_id: u64,
        /// Last durably processed message id, or [`crate::POR_NONE`].
        point_of_ref: u64,
    },
    /// Data.
    Message(Message),
    /// Grants credits and acknowledges durable progress per stream.
    Ack {
        /// Credits granted.
        credits: u32,
        /// `(stream_id, point_of_ref)` pairs.
        acks: Vec<(u64, u64)>,
    },
    /// Tells the sender to reconnect (optionally elsewhere) and re-NOTIFY.
    Restart {
        /// `host:port` to reconnect to; `None` when the body is empty.
        address: Option<String>,
    },
    /// End of a stream.
    Eos {
        /// Stream id.
        stream_id: u64,
    },
}

impl Frame {
    /// Name of the frame kind, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "HELLO",
            Frame::Ok { .. } => "OK",
            Frame::Error { .. } => "ERROR",
            Frame::Notify { .. } => "NOTIFY",
            Frame::NotifyAck { .. } => "NOTIFY_ACK",
            Frame::Message(_) => "MESSAGE",
            Frame::Ack { .. } => "ACK",
            Frame::Restart { .. } => "RESTART",
            Frame::Eos { .. } => "EOS_MESSAGE",
        }
    }

    /// A stream-0 MESSAGE carrying a 2PC control message.
    pub fn two_pc(msg: &TwoPc) -> Result<Frame, EncodeError> {
        let mut payload = BytesMut::new();
        msg.encode(&mut payload)?;
        Ok(Frame::Message(Message {
            stream_id: crate::CONTROL_STREAM,
            message_id: 0,
            event_time: 0,
            key: None,
            payload: payload.freeze(),
        }))
    }

    /// Writes tag and body (no length prefix) to `dst`.
    pub fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Frame::Hello {
                version,
                cookie,
                program_name,
                instance_name,
            } => {
                dst.put_u8(TAG_HELLO);
                put_short_bytes(dst, "version", version.as_bytes())?;
                put_short_bytes(dst, "cookie", cookie.as_bytes())?;
                put_short_bytes(dst, "program_name", program_name.as_bytes())?;
                put_short_bytes(dst, "instance_name", instance_name.as_bytes())?;
            }
            Frame::Ok { initial_credits } => {
                dst.put_u8(TAG_OK);
                dst.put_u32(*initial_credits);
            }
            Frame::Error { message } => {
                dst.put_u8(TAG_ERROR);
                put_short_bytes(dst, "message", message.as_bytes())?;
            }
            Frame::Notify {
                stream_id,
                stream_name,
                point_of_ref,
            } => {
                dst.put_u8(TAG_NOTIFY);
                dst.put_u64(*stream_id);
                put_short_bytes(dst, "stream_name", stream_name)?;
                dst.put_u64(*point_of_ref);
            }
            Frame::NotifyAck {
                success,
                stream_id,
                point_of_ref,
            } => {
                dst.put_u8(TAG_NOTIFY_ACK);
                dst.put_u8(u8::from(*success));
                dst.put_u64(*stream_id);
                dst.put_u64(*point_of_ref);
            }
            Frame::Message(m) => {
                dst.put_u8(TAG_MESSAGE);
                dst.put_u64(m.stream_id);
                dst.put_u64(m.message_id);
                dst.put_i64(m.event_time);
                put_short_bytes(dst, "key", m.key.as_deref().unwrap_or(&[]))?;
                dst.put_slice(&m.payload);
            }
            Frame::Ack { credits, acks } => {
                dst.put_u8(TAG_ACK);
                dst.put_u32(*credits);
                let n = u32::try_from(acks.len()).map_err(|_| EncodeError::FieldTooLong {
                    field: "acks",
                    len: acks.len(),
                })?;
                dst.put_u32(n);
                for (sid, por) in acks {
                    dst.put_u64(*sid);
                    dst.put_u64(*por);
                }
            }
            Frame::Restart { address } => {
                dst.put_u8(TAG_RESTART);
                if let Some(a) = address {
                    let n = u32::try_from(a.len()).map_err(|_| EncodeError::FieldTooLong {
                        field: "address",
                        len: a.len(),
                    })?;
                    dst.put_u32(n);
                    dst.put_slice(a.as_bytes());
                }
            }
            Frame::Eos { stream_id } => {
                dst.put_u8(TAG_EOS);
                dst.put_u64(*stream_id);
            }
        }
        Ok(())
    }

    /// Parses tag and body (everything after the length prefix).
    pub fn decode_body(body: Bytes) -> Result<Frame, FrameError> {
        let Some(&tag) = body.first() else {
            return Err(FrameError::Empty);
        };
        let name = match tag {
            TAG_HELLO => "HELLO",
            TAG_OK => "OK",
            TAG_ERROR => "ERROR",
            TAG_NOTIFY => "NOTIFY",
            TAG_NOTIFY_ACK => "NOTIFY_ACK",
            TAG_MESSAGE => "MESSAGE",
            TAG_ACK => "ACK",
            TAG_RESTART => "RESTART",
            TAG_EOS => "EOS_MESSAGE",
            other => {
                return Err(FrameError::UnknownTag {
                    what: "frame",
                    tag: u16::from(other),
                })
            }
        };
        let mut r = Reader::new(body.slice(1..), name);
        let frame = match tag {
            TAG_HELLO => Frame::Hello {
                version: r.short_string("version")?,
                cookie: r.short_string("cookie")?,
                program_name: r.short_string("program_name")?,
                instance_name: r.short_string("instance_name")?,
            },
            TAG_OK => Frame::Ok {
                initial_credits: r.u32("initial_credits")?,
            },
            TAG_ERROR => Frame::Error {
                message: r.short_string("message")?,
            },
            TAG_NOTIFY => Frame::Notify {
                stream_id: r.u64("stream_id")?,
                stream_name: r.short_bytes("stream_name")?,
                point_of_ref: r.u64("point_of_ref")?,
            },
            TAG_NOTIFY_ACK => Frame::NotifyAck {
                success: r.bool("success")?,
                stream_id: r.u64("stream_id")?,
                point_of_ref: r.u64("point_of_ref")?,
            },
            TAG_MESSAGE => {
                let stream_id = r.u64("stream_id")?;
                let message_id = r.u64("message_id")?;
                let event_time = r.i64("event_time")?;
                let key = r.short_bytes("key")?;
                let payload = r.rest();
                Frame::Message(Message {
                    stream_id,
                    message_id,
                    event_time,
                    key: (!key.is_empty()).then_some(key),
                    payload,
                })
            }
            TAG_ACK => {
                let credits = r.u32("credits")?;
                let n = r.count("acks", 16)?;
                let mut acks = Vec::with_capacity(n);
                for _ in 0..n {
                    acks.push((r.u64("stream_id")?, r.u64("point_of_ref")?));
                }
                Frame::Ack { credits, acks }
            }
            TAG_RESTART => {
                if r.remaining() == 0 {
                    Frame::Restart { address: None }
                } else {
                    let n = r.count("address", 1)?;
                    let raw = r.rest();
                    if raw.len() != n {
                        return Err(FrameError::TrailingBytes {
                            frame: name,
                            extra: raw.len() - n,
                        });
                    }
                    let address =
                        String::from_utf8(raw.to_vec()).map_err(|_| FrameError::NotUtf8 {
                            frame: name,
                            field: "address",
                        })?;
                    Frame::Restart {
                        address: Some(address),
                    }
                }
            }
            _ => Frame::Eos {
                stream_id: r.u64("stream_id")?,
            },
        };
        r.finish()?;
        Ok(frame)
    }
}
