//! Bounds-checked big-endian readers and writers shared by every codec.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, FrameError};

/// A cursor over one frame body that turns every short read into
/// [`FrameError::Truncated`] naming the frame and field.
pub(crate) struct Reader {
    buf: Bytes,
    frame: &'static str,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, frame: &'static str) -> Self {
        Reader { buf, frame }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated {
                frame: self.frame,
                field,
            });
        }
        Ok(self.buf.split_to(n))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(FrameError::BadBool {
                frame: self.frame,
                field,
                value,
            }),
        }
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, FrameError> {
        Ok(self.u64(field)? as i64)
    }

    pub(crate) fn short_bytes(&mut self, field: &'static str) -> Result<Bytes, FrameError> {
        let n = self.u16(field)? as usize;
        self.take(n, field)
    }

    pub(crate) fn short_string(&mut self, field: &'static str) -> Result<String, FrameError> {
        let b = self.short_bytes(field)?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::NotUtf8 {
            frame: self.frame,
            field,
        })
    }

    /// Reads a `u32` count of items that each take at least `min_item` bytes,
    /// rejecting counts the remaining body cannot hold before anything is
    /// allocated for them.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_item: usize,
    ) -> Result<usize, FrameError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(FrameError::Truncated {
                frame: self.frame,
                field,
            });
        }
        Ok(n)
    }

    /// The rest of the body, which becomes empty.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the whole body was consumed.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes {
                frame: self.frame,
                extra: self.buf.len(),
            })
        }
    }
}

pub(crate) fn put_short_bytes(
    dst: &mut BytesMut,
    field: &'static str,
    b: &[u8],
) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: b.len(),
    })?;
    dst.put_u16(len);
    dst.put_slice(b);
    Ok(())
}
