//! Why a verdict could not be reached: unusable input, as opposed to a
//! violation (exit 2, not 1).

use std::io;
use std::path::PathBuf;

use crate::txnlog::TxnlogError;

/// Why committed output could not be read (not a violation: the verdict
/// cannot be reached).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The sink directory is missing or unreadable.
    #[error("cannot read sink directory {path}: {source}")]
    SinkDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A txnlog is unreadable or has a malformed line.
    #[error(transparent)]
    Txnlog(#[from] TxnlogError),
    /// A data file could not be read.
    #[error("cannot read data file {path}: {source}")]
    Data {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An input file is missing or unreadable.
    #[error("cannot read input file {path}: {source}")]
    Input {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An input file that is not as `create-input-files` writes it, where
    /// that matters (the work-queue modes read its last line).
    #[error("input file {path}: {reason}")]
    InputFormat {
        /// File.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The same key was given twice.
    #[error("key {0:?} given twice")]
    DuplicateKey(char),
    /// A key that input files never use.
    #[error("bad key {0:?}: keys are single ASCII letters or digits")]
    BadKey(char),
}
