//! Errors of the triage library: input that cannot be used at all. A
//! damaged log is not an error but a finding ([`crate::scan::FileScan`]).

use std::io;
use std::path::PathBuf;

/// Why a run directory, record or log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `run.json` is not a run record.
    #[error("{}: line {line}, column {column}: not a run record: {message}", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// Line of the first problem (1-based).
        line: usize,
        /// Column of the first problem (1-based).
        column: usize,
        /// What serde said.
        message: String,
    },
    /// The path given is neither a run directory nor a folder of logs.
    #[error("{}: {why}", path.display())]
    NotARun {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}
