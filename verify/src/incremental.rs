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
//!
//! In the work-queue modes ([`crate::workqueue`]) each call also judges which
//! uncommitted lines are missing at the time of the call: those with a later
//! input line committed more than the grace before
//! ([`IncrementalVerifier::with_missing_grace`]).

use std::path::PathBuf;

use crate::check::{unix_now, Checkers, KeyStatus, Mode};
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

    /// Changes the mode for the lines read from now on (see
    /// [`crate::check::KeyChecker::set_mode`] for switching to and from the
    /// work-queue modes).
    pub fn set_mode(&mut self, mode: Mode) {
        self.checkers.set_mode(mode);
    }

    /// Work-queue modes: an uncommitted input line is missing once a later
    /// line of its key was committed more than `seconds` before a call
    /// (default [`crate::workqueue::DEFAULT_MISSING_GRACE`]).
    pub fn with_missing_grace(mut self, seconds: f64) -> IncrementalVerifier {
        self.checkers.set_missing_grace(seconds);
        self
    }

    /// Reads what was committed since the last call and returns where every
    /// key stands: committed bytes and lines, and its first violation if any
    /// (the same diagnosis as the full check; once found it stays).
    pub fn check(&mut self) -> Result<Vec<KeyStatus>, VerifyError> {
        self.check_at(unix_now())
    }

    /// [`IncrementalVerifier::check`], judging missing lines (work-queue
    /// modes) at `now`, in Unix seconds like the txnlog's commit times.
    pub fn check_at(&mut self, now: f64) -> Result<Vec<KeyStatus>, VerifyError> {
        self.checkers.advance(&mut self.stream, false, now)?;
        Ok(self.checkers.statuses())
    }

    /// Requires the whole input of `key` from now on (its feeder is done):
    /// every uncommitted line is then missing. Returns the key's status, or
    /// `None` for a key not checked.
    pub fn require_complete(&mut self, key: u8) -> Result<Option<KeyStatus>, VerifyError> {
        self.checkers.require_complete(key)
    }

    /// Heap bytes held by the work-queue checks of all keys: one bit per
    /// input line, the high marks and a 64 KiB read window per key (0 in
    /// the ordered modes).
    pub fn work_queue_heap_bytes(&self) -> usize {
        self.checkers.work_queue_heap_bytes()
    }

    /// Where every key stood after the last call, without reading anything.
    pub fn statuses(&self) -> Vec<KeyStatus> {
        self.checkers.statuses()
    }
}
