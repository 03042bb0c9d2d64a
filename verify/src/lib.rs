//! What the harness checks a cluster against.
//!
//! - [`input`]: the input files, one per routing key, every line unique.
//! - [`txnlog`]: the sink's two-phase-commit log, written by `crasher sink`
//!   and read back here to find which bytes are committed.
//! - [`committed`]: the committed sink output, rebuilt from the txnlogs in
//!   commit order, read once or followed as it grows.
//! - [`check`]: each key's committed output must be a prefix of its input;
//!   the first difference is diagnosed and classed.
//! - [`incremental`]: the same check, reading only new bytes on each call,
//!   for the sanity loop of a soak.
//! - [`workqueue`]: the work-queue modes: every input line once (or at
//!   least once) in any order, with a bitmap of lines seen per key.
//! - [`error`]: why a verdict could not be reached.
//! - [`fixture`]: crafted sink directories for tests and benchmarks.
//! - [`cli`]: `crasher create-input-files`, `delete-input-files`, `verify`.

pub mod check;
pub mod cli;
pub mod committed;
pub mod error;
pub mod fixture;
pub mod incremental;
pub mod input;
pub mod sinkfiles;
pub mod txnlog;
pub mod workqueue;

pub use error::VerifyError;
