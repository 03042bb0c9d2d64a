//! Why a NATS tool stopped.

use std::io;
use std::path::PathBuf;

/// A failure that ends `nats-feed` or `nats-sink` (exit 2). Everything the
/// cluster does wrong (timeouts, no leader, lost connections) is retried
/// instead, never returned.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The `--server` list cannot be parsed.
    #[error("bad server URL {url:?}: {reason}")]
    Server {
        /// The offending entry.
        url: String,
        /// The parser's message.
        reason: String,
    },
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
    /// The NATS client refused its settings (not a cluster fault).
    #[error("NATS client: {0}")]
    Client(String),
}

impl NatsError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> NatsError {
        let path = path.into();
        move |source| NatsError::Io { path, source }
    }
}
