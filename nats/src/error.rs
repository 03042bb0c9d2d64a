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
    /// The sink's own txnlog is unusable.
    #[error(transparent)]
    Txnlog(#[from] verify::txnlog::TxnlogError),
    /// The sink's committed output is shorter than its txnlog says: data
    /// already reported as committed is gone.
    #[error(
        "{path} is {len} bytes long but {txnlog} committed {committed} bytes: committed output is missing"
    )]
    CommittedMissing {
        /// Data file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The txnlog.
        txnlog: PathBuf,
        /// The last committed offset.
        committed: u64,
    },
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
