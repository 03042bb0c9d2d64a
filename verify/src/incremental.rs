//! The verifier of the continuous sanity loop: called about once a second
//! during a soak, it reads only what was committed since its last call.
//!
//! - It keeps its place in every txnlog (only complete lines are consumed,
//!   so a record the sink is still writing is read next time) and in every
//!   data file (only newly committed bytes are read; an uncommitted tail that
//!   the sink later truncates is never seen).
//! - It keeps each input file open and its position in it, so each new line
//!   is compared once.
//! - New txnlogs (a new worker) are picked up when they appear.
//! - **Renames.** Files are identified by device and inode, not by name.
//!   When a worker leaves, the sink renames `output.W.txnlog` to
//!   `output.W.<ts>.txnlog`; that file is recognised as the one already
//!   followed and continues from where it was (no double count). Its data
//!   file is kept open, so its rename does not matter either; if the txnlog
//!   is seen renamed before the data file was ever opened, opening it is
//!   retried once on the next call.
//!
//! The cost of a call is the number of new bytes plus one directory listing.
//! After the same committed data, its verdicts equal those of the full check
//! ([`crate::check::check_keys`]), with one documented difference: commits are
//! merged in commit-time order within each call, so a `2-ok` record that
//! reaches the disk after a later-stamped record of another worker was
//! already applied is applied after it. That only matters when a key moves
//! between those two workers within that instant.

use std::path::PathBuf;

use crate::check::{Checkers, KeyStatus, Mode};
use crate::committed::{CommittedStream, MissingFilePolicy};
use crate::error::VerifyError;

/// Follows a sink directory and checks each key's committed output against
/// its input as it grows.
#[derive(Debug)]
pub struct IncrementalVerifier {
    stream: CommittedStream,
    checkers: Checkers,
}

impl IncrementalVerifier {
    /// Follows `sink_dir`, checking each key against its input file. The
    /// input files are opened now and kept open.
    pub fn new(
        sink_dir: impl Into<PathBuf>,
        inputs: impl IntoIterator<Item = (u8, PathBuf)>,
    ) -> Result<IncrementalVerifier, VerifyError> {
        Ok(IncrementalVerifier {
            stream: CommittedStream::new(sink_dir, MissingFilePolicy::RetryOnce),
            checkers: Checkers::new(inputs)?,
        })
    }

    /// Checks against `mode` (the default is [`Mode::ExactlyOnce`]); set it
    /// before the first [`IncrementalVerifier::check`].
    pub fn with_mode(mut self, mode: Mode) -> IncrementalVerifier {
        self.checkers.set_mode(mode);
        self
    }

    /// Changes the mode for the lines read from now on.
    pub fn set_mode(&mut self, mode: Mode) {
        self.checkers.set_mode(mode);
    }

    /// Reads what was committed since the last call and returns where every
    /// key stands: committed bytes and lines, and its first violation if any
    /// (the same diagnosis as the full check; once found it stays).
    pub fn check(&mut self) -> Result<Vec<KeyStatus>, VerifyError> {
        self.checkers.advance(&mut self.stream, false)?;
        Ok(self.checkers.statuses())
    }

    /// Where every key stood after the last call, without reading anything.
    pub fn statuses(&self) -> Vec<KeyStatus> {
        self.checkers.statuses()
    }
}
