//! Wire codecs for everything crasher's processes say to each other.
//!
//! # Layout
//!
//! - [`frame`]: connector protocol v3 frames (HELLO … EOS_MESSAGE), the
//!   protocol feeders speak to workers and workers speak to the sink.
//! - [`twopc`]: the two-phase-commit control messages (tags 201–206) that
//!   ride inside stream-0 MESSAGE frames on the worker → sink connection.
//! - [`codec`]: an incremental, allocation-bounded decoder and an encoder,
//!   usable directly on byte buffers or as a `tokio_util` codec.
//! - [`external`]: the external query API (cluster status, shrink) that the
//!   supervisor uses to poll readiness and drive shrinks.
//! - [`stream_id`]: how a feeder names its stream.
//!
//! Everything is big-endian; `short_bytes` is a `u16` length then bytes.
//! Decoding never panics on any input and never allocates more than the
//! configured maximum frame length.

pub mod codec;
pub mod error;
pub mod external;
pub mod frame;
pub mod stream_id;
pub mod twopc;
mod wire;

pub use codec::{ConnectorCodec, DEFAULT_MAX_FRAME_LEN};
pub use error::{EncodeError, FrameError};
pub use frame::{Frame, Message};
pub use stream_id::stream_id_for;
pub use twopc::TwoPc;

/// The protocol version a feeder announces in HELLO to a worker's source.
pub const SOURCE_VERSION: &str = "0.0.1";
/// The protocol version a worker announces in HELLO to the sink (note the `v`).
pub const SINK_VERSION: &str = "v0.0.1";
/// The cookie both ends use unless told otherwise.
pub const DEFAULT_COOKIE: &str = "Dragons-Love-Tacos";
/// The stream a sink connection carries application data on.
pub const DATA_STREAM: u64 = 1;
/// The stream a sink connection carries 2PC control messages on.
pub const CONTROL_STREAM: u64 = 0;
/// `point_of_ref` meaning "nothing processed yet: start at the beginning".
pub const POR_NONE: u64 = u64::MAX;
