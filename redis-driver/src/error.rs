//! Why a Redis tool stopped.

use std::io;
use std::path::PathBuf;

/// A failure that ends `redis-feed` or `redis-sink` (exit 2). Everything the
/// cluster does wrong (timeouts, no primary, READONLY replicas, lost
/// connections, failovers) is retried instead, never returned.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A consumer task of the sink panicked or was cancelled.
    #[error("a consumer task ended abnormally: {0}")]
    Task(String),
    /// An address list (`--sentinels`) cannot be parsed.
    #[error("bad address {addr:?}: {reason}")]
    Addr {
        /// The offending entry.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name given on the command line cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The input file cannot be fed.
    #[error(transparent)]
    Lines(#[from] feeders::lines::LinesError),
    /// The status file cannot be written.
    #[error(transparent)]
    Status(#[from] feeders::status::StatusError),
    /// The sink's data file or txnlog is unusable (recovery or commit).
    #[error(transparent)]
    SinkFiles(#[from] verify::sinkfiles::SinkFilesError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address asked for.
        addr: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}

impl DriverError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> DriverError {
        let path = path.into();
        move |source| DriverError::Io { path, source }
    }
}
