//! The 2PC sink: the harness's receiving end of a cluster.
//!
//! Workers connect over TCP and speak the connector sink protocol (HELLO,
//! NOTIFY, stream-1 data, stream-0 two-phase commit). The sink appends each
//! worker's data to `PREFIX.<worker>`, records every 2PC decision in
//! `PREFIX.<worker>.txnlog`, and refuses, loudly, anything that would hide a
//! cluster's mistake (a duplicate, a commit of an aborted transaction).
//! See `docs/sink.md` for the protocol, the state machine and recovery.
//!
//! # Layout
//!
//! - [`server`]: the accept loop and state shared by connections.
//! - [`session`]: one connection's protocol state machine.
//! - [`store`]: a worker's output and txnlog files; renames on departure.
//! - [`recovery`]: what a txnlog says the files must be (pure).
//! - [`events`]: phase events for the supervisor (`--events`), holds.
//! - [`rules`]: abort rules, the sink-side fault injector.
//! - [`logging`]: the log line format (alarm words only on violations).
//! - [`cli`]: `crasher sink`.

pub mod cli;
pub mod events;
pub mod logging;
pub mod recovery;
pub mod rules;
pub mod server;
pub mod session;
pub mod store;

pub use server::{Config, Server, EXIT_ENVIRONMENT, EXIT_VIOLATION};
