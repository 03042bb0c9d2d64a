//! Feeders: the harness's sending end of a cluster, and the plain-TCP sink.
//!
//! # Layout
//!
//! - [`feed`]: `crasher feed`, the connector protocol v3 at-least-once
//!   line-file feeder (one file, one stream, resumable).
//! - [`lines`]: the seekable, chunked line reader it feeds from.
//! - [`encode`]: MESSAGE frames encoded without per-line allocation.
//! - [`rate`]: the token bucket behind `--rate`.
//! - [`workload`]: rate shapes over time (`--workload`).
//! - [`status`]: the feeder's JSON status file, which the supervisor reads.
//! - [`log`]: the greppable log lines the progress checks rely on.
//! - [`blast`] and [`receive`]: TCP mode source and sink (`crasher blast`,
//!   `crasher receive`).
//! - [`atomic`]: replacing small files atomically.
//! - [`backoff`]: retry delays for the client-library drivers (NATS, Redis).
//! - [`cli`]: the three subcommands' arguments.
//!
//! Behaviour, log lines and status fields are documented in docs/feeders.md.

pub mod atomic;
pub mod backoff;
pub mod blast;
pub mod cli;
pub mod encode;
pub mod feed;
pub mod lines;
pub mod log;
pub mod rate;
pub mod receive;
pub mod status;
pub mod workload;
