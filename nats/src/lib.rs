//! NATS JetStream as a system under test.
//!
//! crasher's own cluster speaks the connector protocol; a real messaging
//! system is driven through its client library instead. This crate is the
//! driver for NATS JetStream (see docs/drivers.md):
//!
//! - [`feed`]: `crasher nats-feed`, publishes one line file to one subject,
//!   each line with a `Nats-Msg-Id` derived from its byte offset, one
//!   publish in flight at a time, retried until its PubAck arrives; keeps
//!   the same status file as `crasher feed`.
//! - [`sink`]: `crasher nats-sink`, a durable pull consumer over the whole
//!   stream that appends payloads to `PREFIX.nats` and commits them in
//!   `PREFIX.nats.txnlog` (the 2PC sink's format), so `crasher verify` and
//!   the soak's sanity loop check it unchanged.
//! - [`conn`]: server lists, connection options, the stream's settings.
//! - [`error`]: why a tool stopped.
//! - [`cli`]: the two subcommands' arguments.

pub mod cli;
pub mod conn;
pub mod error;
pub mod feed;
pub mod sink;

pub use error::NatsError;
