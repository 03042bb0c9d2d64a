//! The data protocol between workers: an ingress sends the lines it routed
//! to a key's owner, and the checkpoint barriers, on one TCP connection per
//! (ingress, owner) pair, so a barrier always follows the lines routed
//! before it.
//!
//! A frame is `u32` big-endian length (of what follows), `u8` kind, body:
//! kind 0 = HELLO (the sender's worker name), kind 1 = BATCH (`u64` gen,
//! then lines, each ending in `\n`, concatenated), kind 2 = BARRIER (`u64`
//! gen, `u64` checkpoint).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// What travels from an ingress to an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Lines of keys the receiver owns, in the order they were accepted.
    Batch {
        /// Generation the ingress was in.
        gen: u64,
        /// Concatenated lines.
        lines: Bytes,
    },
    /// Everything before this belongs to checkpoint `c` (or earlier).
    Barrier {
        /// Generation.
        gen: u64,
        /// Checkpoint.
        c: u64,
    },
}

impl Item {
    /// The generation the item belongs to.
    pub fn gen(&self) -> u64 {
        match self {
            Item::Batch { gen, .. } | Item::Barrier { gen, .. } => *gen,
        }
    }
}

/// One data-link frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFrame {
    /// First frame: the sending worker's name.
    Hello(String),
    /// Payload.
    Item(Item),
}

/// Largest data frame.
const MAX: usize = 64 * 1024 * 1024;

/// A malformed data frame.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Transport.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Garbage.
    #[error("bad data frame: {0}")]
    Bad(String),
}

/// Codec for [`DataFrame`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct DataCodec;

impl Decoder for DataCodec {
    type Item = DataFrame;
    type Error = DataError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<DataFrame>, DataError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len == 0 || len > MAX {
            return Err(DataError::Bad(format!("length {len}")));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut body = src.split_to(len).freeze();
        let kind = body.get_u8();
        let need = |n: usize, what: &str| {
            if body.len() < n {
                Err(DataError::Bad(format!("{what} frame of {len} bytes")))
            } else {
                Ok(())
            }
        };
        match kind {
            0 => String::from_utf8(body.to_vec())
                .map(|n| Some(DataFrame::Hello(n)))
                .map_err(|_| DataError::Bad("HELLO name is not UTF-8".into())),
            1 => {
                need(8, "BATCH")?;
                let gen = body.get_u64();
                Ok(Some(DataFrame::Item(Item::Batch { gen, lines: body })))
            }
            2 => {
                need(16, "BARRIER")?;
                let gen = body.get_u64();
                let c = body.get_u64();
                if !body.is_empty() {
                    return Err(DataError::Bad("BARRIER with trailing bytes".into()));
                }
                Ok(Some(DataFrame::Item(Item::Barrier { gen, c })))
            }
            k => Err(DataError::Bad(format!("kind {k}"))),
        }
    }
}

impl Encoder<DataFrame> for DataCodec {
    type Error = DataError;

    fn encode(&mut self, item: DataFrame, dst: &mut BytesMut) -> Result<(), DataError> {
        encode_into(&item, dst);
        Ok(())
    }
}

/// Appends the encoding of `f` to `dst`.
pub fn encode_into(f: &DataFrame, dst: &mut BytesMut) {
    match f {
        DataFrame::Hello(name) => {
            dst.put_u32(1 + name.len() as u32);
            dst.put_u8(0);
            dst.put_slice(name.as_bytes());
        }
        DataFrame::Item(Item::Batch { gen, lines }) => {
            dst.put_u32(9 + lines.len() as u32);
            dst.put_u8(1);
            dst.put_u64(*gen);
            dst.put_slice(lines);
        }
        DataFrame::Item(Item::Barrier { gen, c }) => {
            dst.put_u32(17);
            dst.put_u8(2);
            dst.put_u64(*gen);
            dst.put_u64(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![
            DataFrame::Hello("worker3".into()),
            DataFrame::Item(Item::Batch {
                gen: 7,
                lines: Bytes::from_static(b"A0000000 x\nB0000000 y\n"),
            }),
            DataFrame::Item(Item::Barrier { gen: 7, c: 12 }),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            encode_into(f, &mut buf);
        }
        let mut out = Vec::new();
        while let Some(f) = DataCodec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert_eq!(out, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"\x00\x00\x00\x00"[..],
            b"\x00\x00\x00\x02\x09x",
            b"\x00\x00\x00\x05\x02abcd",
            b"\x00\x00\x00\x13\x02aaaaaaaabbbbbbbbcc",
        ] {
            let mut b = BytesMut::from(bad);
            assert!(DataCodec.decode(&mut b).is_err(), "{bad:?}");
        }
    }
}
