//! The two files of a sink that commits to the verifier's format: a data
//! file and its txnlog of `2-ok` records. Opened with recovery, appended
//! with a durable commit. Shared by the drivers' sinks (`nats-sink`,
//! `redis-sink`), which differ only in what their transaction ids record.
//!
//! - **Recovery.** A torn last txnlog record (the sink was killed while
//!   writing it) is cut off; the data file is truncated to the last
//!   committed offset; committed bytes missing from the data file are an
//!   error ([`SinkFilesError::CommittedMissing`]).
//! - **Commit.** The bytes are appended to the data file and synced; then
//!   one `2-ok` record with the new end is appended to the txnlog and
//!   synced. Only then is the commit done.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::txnlog::{self, Entry, Record, TxnlogError};

/// Why the sink's files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SinkFilesError {
    /// A file cannot be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The txnlog is unusable.
    #[error(transparent)]
    Txnlog(#[from] TxnlogError),
    /// The committed output is shorter than its txnlog says: data the
    /// txnlog calls committed is gone.
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
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SinkFilesError + '_ {
    move |source| SinkFilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What opening the files repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repairs {
    /// Bytes of a torn last txnlog record that were cut off.
    pub torn_record: u64,
    /// Bytes of uncommitted data cut off the data file's end.
    pub uncommitted_tail: u64,
}

impl Repairs {
    /// What to log about a torn record dropped (a warning), if any.
    pub fn torn_note(&self, files: &SinkFiles) -> Option<String> {
        (self.torn_record > 0).then(|| {
            format!(
                "{}: dropping a torn last record ({} bytes) written when the sink was killed",
                files.txnlog_path.display(),
                self.torn_record
            )
        })
    }

    /// What to log about an uncommitted tail cut off, if any.
    pub fn tail_note(&self, files: &SinkFiles) -> Option<String> {
        (self.uncommitted_tail > 0).then(|| {
            format!(
                "{}: truncating the uncommitted tail ({} bytes after offset {})",
                files.data_path.display(),
                self.uncommitted_tail,
                files.end
            )
        })
    }
}

/// A sink's data file and txnlog, recovered and open for commits.
#[derive(Debug)]
pub struct SinkFiles {
    data: File,
    txnlog: File,
    data_path: PathBuf,
    txnlog_path: PathBuf,
    /// End of the committed output.
    pub end: u64,
    /// Commits recorded so far.
    pub commits: u64,
}

impl SinkFiles {
    /// Opens (creating if needed) and recovers `data_path` and
    /// `txnlog_path`; `each_commit` sees every committed transaction id in
    /// order, so the caller can rebuild what its ids record.
    pub fn open(
        data_path: &Path,
        txnlog_path: &Path,
        mut each_commit: impl FnMut(&str),
    ) -> Result<(SinkFiles, Repairs), SinkFilesError> {
        let mut repairs = Repairs::default();
        let fresh = !txnlog_path.exists();
        let mut txnlog = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(txnlog_path)
            .map_err(io_at(txnlog_path))?;
        let mut text = String::new();
        txnlog
            .read_to_string(&mut text)
            .map_err(io_at(txnlog_path))?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            repairs.torn_record = (text.len() - complete) as u64;
            txnlog
                .set_len(complete as u64)
                .and_then(|()| txnlog.sync_all())
                .map_err(io_at(txnlog_path))?;
            text.truncate(complete);
        }
        let (mut end, mut commits) = (0, 0);
        for e in txnlog::parse_all(&text, txnlog_path)? {
            if let Record::Phase2Ok { txn_id, offset } = e.record {
                end = offset;
                commits += 1;
                each_commit(&txn_id);
            }
        }
        let data = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(data_path)
            .map_err(io_at(data_path))?;
        let len = data.metadata().map_err(io_at(data_path))?.len();
        if len < end {
            return Err(SinkFilesError::CommittedMissing {
                path: data_path.to_owned(),
                len,
                txnlog: txnlog_path.to_owned(),
                committed: end,
            });
        }
        if len > end {
            repairs.uncommitted_tail = len - end;
            data.set_len(end)
                .and_then(|()| data.sync_all())
                .map_err(io_at(data_path))?;
        }
        if fresh {
            if let Some(dir) = txnlog_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_at(dir))?;
            }
        }
        let files = SinkFiles {
            data,
            txnlog,
            data_path: data_path.to_owned(),
            txnlog_path: txnlog_path.to_owned(),
            end,
            commits,
        };
        Ok((files, repairs))
    }

    /// Appends `bytes`, syncs, and records the commit as `txn_id` in the
    /// txnlog, synced; the new end.
    pub fn commit(&mut self, bytes: &[u8], txn_id: String) -> Result<u64, SinkFilesError> {
        self.data
            .write_all(bytes)
            .and_then(|()| self.data.sync_data())
            .map_err(io_at(&self.data_path))?;
        let end = self.end + bytes.len() as u64;
        let mut line = Entry::now(Record::Phase2Ok {
            txn_id,
            offset: end,
        })
        .to_line();
        line.push('\n');
        self.txnlog
            .write_all(line.as_bytes())
            .and_then(|()| self.txnlog.sync_data())
            .map_err(io_at(&self.txnlog_path))?;
        self.end = end;
        self.commits += 1;
        Ok(end)
    }

    /// The data file's current end (for tests).
    pub fn data_len(&mut self) -> Result<u64, SinkFilesError> {
        self.data
            .seek(SeekFrom::End(0))
            .map_err(io_at(&self.data_path))
    }

    /// The data file's path.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The txnlog's path.
    pub fn txnlog_path(&self) -> &Path {
        &self.txnlog_path
    }
}
