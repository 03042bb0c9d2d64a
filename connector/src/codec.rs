//! Length-prefixed framing: an incremental decoder and an encoder.
//!
//! [`ConnectorCodec`] works on a `BytesMut` directly or as a
//! `tokio_util::codec` Decoder/Encoder pair. A partial frame is "need more
//! bytes" (`Ok(None)`), never an error; the announced length is checked
//! against the maximum *before* any buffer space is reserved for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{EncodeError, FrameError};
use crate::frame::Frame;

/// Default maximum frame length (after the length prefix): 4 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Codec for connector protocol v3 frames with a bounded frame size.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorCodec {
    max_frame_len: usize,
}

impl Default for ConnectorCodec {
    fn default() -> Self {
        ConnectorCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl ConnectorCodec {
    /// A codec refusing frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        ConnectorCodec { max_frame_len }
    }

    /// The configured maximum frame length.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Takes one complete frame off the front of `src`, if there is one.
    pub fn decode_frame(&self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match split_frame(src, self.max_frame_len)? {
            Some(body) => Frame::decode_body(body).map(Some),
            None => Ok(None),
        }
    }

    /// Appends the length-prefixed encoding of `frame` to `dst`.
    pub fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        dst.put_u32(0);
        frame.encode_body(dst)?;
        let len = dst.len() - start - 4;
        if len > self.max_frame_len {
            dst.truncate(start);
            return Err(EncodeError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// Splits one length-prefixed body (without its prefix) off `src`, or
/// returns `None` when more bytes are needed. Shared by every framing that
/// uses a `u32` big-endian length prefix.
pub(crate) fn split_frame(src: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if src.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: max as u64,
        });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if src.len() < 4 + len {
        src.reserve(4 + len - src.len());
        return Ok(None);
    }
    src.advance(4);
    Ok(Some(src.split_to(len).freeze()))
}

/// Encodes one frame with its length prefix into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    ConnectorCodec::new(u32::MAX as usize).encode_frame(frame, &mut buf)?;
    Ok(buf.freeze())
}

impl Decoder for ConnectorCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_frame(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode_frame(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Frame> for ConnectorCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_frame(&item, dst)
    }
}

impl Encoder<&Frame> for ConnectorCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_frame(item, dst)
    }
}
