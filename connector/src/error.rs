//! Typed errors for malformed input and unencodable values.

use std::io;

/// Why a byte sequence is not a valid frame (or 2PC / external message).
///
/// Every malformed input maps to one of these; the decoder never panics.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Configured maximum.
        max: u64,
    },
    /// A frame whose length prefix is zero has no tag.
    #[error("empty frame (length 0, no tag)")]
    Empty,
    /// The tag byte names no known frame.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which kind of message: "frame", "2PC" or "external".
        what: &'static str,
        /// The tag seen.
        tag: u16,
    },
    /// The body ended before a field was complete.
    #[error("{frame}: truncated in field {field}")]
    Truncated {
        /// Frame name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// Bytes remain after the last field of a fixed-layout body.
    #[error("{frame}: {extra} unexpected trailing byte(s)")]
    TrailingBytes {
        /// Frame name.
        frame: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A boolean field held something other than 0 or 1.
    #[error("{frame}: field {field} must be 0 or 1, got {value}")]
    BadBool {
        /// Frame name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
        /// The byte seen.
        value: u8,
    },
    /// A text field is not UTF-8.
    #[error("{frame}: field {field} is not valid UTF-8")]
    NotUtf8 {
        /// Frame name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A JSON payload of the external API does not parse.
    #[error("external message {id}: bad JSON payload: {source}")]
    BadJson {
        /// Message id.
        id: u16,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} byte(s) buffered)")]
    UnexpectedEof {
        /// Bytes buffered when the peer closed.
        buffered: usize,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Why a value cannot be put on the wire.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A `short_bytes` field is longer than 65535 bytes.
    #[error("field {field} is {len} bytes, more than a short_bytes can hold (65535)")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The encoded frame would exceed the configured maximum.
    #[error("encoded frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
