//! Redis Streams with Sentinel failover as a system under test.
//!
//! Like the NATS driver, this crate drives a real system through its
//! client library (the `redis` crate) instead of the connector protocol
//! (see docs/drivers.md, "Redis"):
//!
//! - [`feed`]: `crasher redis-feed`, appends one line file to one stream
//!   (`lines:K`), one `XADD` in flight (optionally followed by `WAIT`),
//!   resending after any failure to the primary the Sentinels name; keeps
//!   the same status file as `crasher feed`.
//! - [`sink`]: `crasher redis-sink`, reads every `lines:*` stream through
//!   one consumer group, appends the lines to `PREFIX.redis`, commits them
//!   in `PREFIX.redis.txnlog` (the 2PC sink's format), and only then
//!   `XACK`s them.
//! - [`conn`]: Sentinel resolution, connections with timeouts, back-off.
//! - [`error`]: why a tool stopped.
//! - [`cli`]: the two subcommands' arguments.

pub mod cli;
pub mod conn;
pub mod error;
pub mod feed;
pub mod sink;

pub use error::DriverError;
