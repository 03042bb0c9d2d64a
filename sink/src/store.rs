//! One worker's files: its output (`PREFIX.<worker>`) and its txnlog
//! (`PREFIX.<worker>.txnlog`).
//!
//! Output bytes go through a large buffer and reach the disk at each
//! phase-1 vote ([`WorkerFiles::sync_output`]); every txnlog record is
//! written with a single `write` and fsync'd before the call returns. Any
//! failure is a [`StoreError`] naming the operation and the file, so a
//! full disk reads `cannot write PATH: No space left on device`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use verify::txnlog::{self, Entry, Record, TxnlogError};

/// Size of the output write buffer: large enough that 4 KiB messages cost
/// one `write` syscall per 256 of them.
const OUT_BUFFER: usize = 1 << 20;

/// The longest worker name accepted, so `PREFIX.<worker>.<ts>.txnlog`
/// stays a legal file name.
pub const MAX_WORKER_NAME: usize = 128;

/// Why a file operation of the sink failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done: `open`, `read`, `write`, `fsync`, `truncate`, `rename`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause (ENOSPC reads "No space left on device").
        #[source]
        source: io::Error,
    },
    /// The txnlog has a malformed line that is not a torn last line.
    #[error(transparent)]
    Txnlog(#[from] TxnlogError),
}

fn memchr_last_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Why a worker name cannot name files.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    #[error("empty worker name")]
    Empty,
    /// `.` or `..`.
    #[error("worker name {0:?} is a directory reference")]
    Dots(String),
    /// Contains `/` or NUL.
    #[error("worker name {0:?} contains '/' or NUL")]
    BadChar(String),
    /// Would collide with another worker's txnlog.
    #[error("worker name {0:?} ends with .txnlog")]
    TxnlogSuffix(String),
    /// Too long for a file name.
    #[error("worker name is {0} bytes, more than {MAX_WORKER_NAME}")]
    TooLong(usize),
}

/// Checks that `name` is safe as one file-name component after `PREFIX.`.
pub fn check_worker_name(name: &str) -> Result<(), NameError> {
    match name {
        "" => Err(NameError::Empty),
        "." | ".." => Err(NameError::Dots(name.to_owned())),
        _ if name.contains(['/', '\0']) => Err(NameError::BadChar(name.to_owned())),
        _ if name.ends_with(".txnlog") => Err(NameError::TxnlogSuffix(name.to_owned())),
        _ if name.len() > MAX_WORKER_NAME => Err(NameError::TooLong(name.len())),
        _ => Ok(()),
    }
}

/// `PREFIX.<suffix>`.
pub fn prefixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Path of a worker's output file.
pub fn data_path(prefix: &Path, worker: &str) -> PathBuf {
    prefixed(prefix, worker)
}

/// Path of a worker's txnlog.
pub fn txnlog_path(prefix: &Path, worker: &str) -> PathBuf {
    prefixed(prefix, &format!("{worker}.txnlog"))
}

/// A worker's open output file and txnlog.
#[derive(Debug)]
pub struct WorkerFiles {
    data_path: PathBuf,
    txnlog_path: PathBuf,
    out: BufWriter<File>,
    /// Logical end of the output, counting bytes still in the buffer.
    offset: u64,
    txnlog: File,
}

/// What [`WorkerFiles::open`] found.
#[derive(Debug)]
pub struct Opened {
    /// The open files; the output is positioned at its end.
    pub files: WorkerFiles,
    /// Every complete txnlog record.
    pub entries: Vec<Entry>,
    /// Bytes of a torn last txnlog line that were cut off (0 if none).
    pub torn_bytes: u64,
}

impl WorkerFiles {
    /// Opens (creating if needed) both files of `worker` and reads the txnlog.
    ///
    /// A last txnlog line without its newline was being written when a
    /// previous sink died; it was never complete, so it is cut off here
    /// (otherwise the next record would be glued to it).
    pub fn open(prefix: &Path, worker: &str) -> Result<Opened, StoreError> {
        let data_path = data_path(prefix, worker);
        let txnlog_path = txnlog_path(prefix, worker);
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(io_err("open", &data_path))?;
        let mut tl = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&txnlog_path)
            .map_err(io_err("open", &txnlog_path))?;
        // Bytes, not a String: a torn last line may end inside a UTF-8
        // character, and it is cut off below like any torn line.
        let mut text = Vec::new();
        tl.read_to_end(&mut text)
            .map_err(io_err("read", &txnlog_path))?;
        let mut torn_bytes = 0;
        if !text.is_empty() && !text.ends_with(b"\n") {
            let keep = memchr_last_newline(&text).map_or(0, |i| i + 1);
            torn_bytes = (text.len() - keep) as u64;
            tl.set_len(keep as u64)
                .map_err(io_err("truncate", &txnlog_path))?;
            tl.sync_data().map_err(io_err("fsync", &txnlog_path))?;
            text.truncate(keep);
        }
        let entries = txnlog::parse_all_bytes(&text, &txnlog_path)?;
        let offset = out
            .seek(SeekFrom::End(0))
            .map_err(io_err("read", &data_path))?;
        Ok(Opened {
            files: WorkerFiles {
                data_path,
                txnlog_path,
                out: BufWriter::with_capacity(OUT_BUFFER, out),
                offset,
                txnlog: tl,
            },
            entries,
            torn_bytes,
        })
    }

    /// Path of the output file.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Path of the txnlog.
    pub fn txnlog_path(&self) -> &Path {
        &self.txnlog_path
    }

    /// Logical end of the output (including buffered bytes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends bytes at the end of the output (buffered).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(io_err("write", &self.data_path))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes out the buffer and fsyncs the output.
    pub fn sync_output(&mut self) -> Result<(), StoreError> {
        self.out.flush().map_err(io_err("write", &self.data_path))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(io_err("fsync", &self.data_path))
    }

    /// Size of the output file on disk after writing out the buffer: the
    /// independent check of [`WorkerFiles::offset`] done before every vote.
    pub fn len_on_disk(&mut self) -> Result<u64, StoreError> {
        self.out.flush().map_err(io_err("write", &self.data_path))?;
        self.out
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .map_err(io_err("read", &self.data_path))
    }

    /// Reads back `len` bytes of the output at `at` (diagnostics only).
    pub fn read_back(&mut self, at: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        use std::os::unix::fs::FileExt;
        self.out.flush().map_err(io_err("write", &self.data_path))?;
        let mut v = vec![0; len];
        self.out
            .get_ref()
            .read_exact_at(&mut v, at)
            .map_err(io_err("read", &self.data_path))?;
        Ok(v)
    }

    /// Cuts the output at `to`, positions writes there and fsyncs.
    ///
    /// Never extends the file: the caller checks `to <= len_on_disk()`.
    pub fn truncate(&mut self, to: u64) -> Result<(), StoreError> {
        self.out.flush().map_err(io_err("write", &self.data_path))?;
        let f = self.out.get_mut();
        f.set_len(to).map_err(io_err("truncate", &self.data_path))?;
        f.seek(SeekFrom::Start(to))
            .map_err(io_err("truncate", &self.data_path))?;
        f.sync_data().map_err(io_err("fsync", &self.data_path))?;
        self.offset = to;
        Ok(())
    }

    /// Appends one record to the txnlog and fsyncs it.
    pub fn record(&mut self, record: Record) -> Result<(), StoreError> {
        let mut line = Entry::now(record).to_line();
        line.push('\n');
        self.txnlog
            .write_all(line.as_bytes())
            .map_err(io_err("write", &self.txnlog_path))?;
        self.txnlog
            .sync_data()
            .map_err(io_err("fsync", &self.txnlog_path))
    }
}

/// Where a departed worker's files went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// New name of the output file, if there was one.
    pub data: Option<PathBuf>,
    /// New name of the txnlog, if there was one.
    pub txnlog: Option<PathBuf>,
}

/// Renames a departed worker's files to `PREFIX.<worker>.<ts>` and
/// `PREFIX.<worker>.<ts>.txnlog`.
///
/// Readers find output by listing `*.txnlog` and stripping the suffix, so
/// at no instant may a txnlog name exist without its output beside it, nor
/// may one txnlog be visible under two names (its commits would count
/// twice). Hence: (1) hard-link the output to its new name (fails rather
/// than overwrite), (2) rename the txnlog (atomic: it is visible under
/// exactly one name at every instant, and its output exists under both),
/// (3) remove the old output name, (4) fsync the directory. A crash after
/// (1) or (2) leaves only an extra output file without a txnlog, which
/// readers ignore and which the next HELLO of that name cuts back to what
/// its (then empty) txnlog commits: nothing.
///
/// `Ok(None)` when neither file exists (every surviving worker reports the
/// same departure, so all but the first find nothing to do).
pub fn retire(prefix: &Path, worker: &str, ts: &str) -> Result<Option<Retired>, StoreError> {
    let data = data_path(prefix, worker);
    let tl = txnlog_path(prefix, worker);
    let new_data = prefixed(prefix, &format!("{worker}.{ts}"));
    let new_tl = prefixed(prefix, &format!("{worker}.{ts}.txnlog"));
    let mut retired = Retired {
        data: None,
        txnlog: None,
    };
    match fs::hard_link(&data, &new_data) {
        Ok(()) => retired.data = Some(new_data),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("rename", &data)(e)),
    }
    if tl.exists() {
        if new_tl.exists() {
            return Err(io_err("rename", &tl)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", new_tl.display()),
            )));
        }
        fs::rename(&tl, &new_tl).map_err(io_err("rename", &tl))?;
        retired.txnlog = Some(new_tl);
    }
    if retired.data.is_some() {
        fs::remove_file(&data).map_err(io_err("rename", &data))?;
    }
    if retired.data.is_none() && retired.txnlog.is_none() {
        return Ok(None);
    }
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))?;
    Ok(Some(retired))
}

/// The Unix time with a fraction (`1574884453.123456`), as used in
/// retired file names.
pub fn unix_ts() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_must_be_one_safe_component() {
        assert!(check_worker_name("initializer").is_ok());
        assert!(check_worker_name("worker-1.a").is_ok());
        for bad in ["", ".", "..", "a/b", "/x", "a\0", "w.txnlog"] {
            assert!(check_worker_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_worker_name(&"x".repeat(MAX_WORKER_NAME + 1)),
            Err(NameError::TooLong(MAX_WORKER_NAME + 1))
        );
    }

    #[test]
    fn append_truncate_and_records_reach_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let mut o = WorkerFiles::open(&prefix, "w1").unwrap();
        assert!(o.entries.is_empty());
        o.files.append(b"hello ").unwrap();
        o.files.append(b"world").unwrap();
        assert_eq!(o.files.offset(), 11);
        o.files.sync_output().unwrap();
        assert_eq!(
            fs::read(dir.path().join("output.w1")).unwrap(),
            b"hello world"
        );
        o.files.truncate(5).unwrap();
        o.files.append(b"!").unwrap();
        assert_eq!(o.files.len_on_disk().unwrap(), 6);
        o.files.record(Record::ConnectionClosed).unwrap();
        drop(o);
        assert_eq!(fs::read(dir.path().join("output.w1")).unwrap(), b"hello!");
        let again = WorkerFiles::open(&prefix, "w1").unwrap();
        assert_eq!(again.entries.len(), 1);
        assert_eq!(again.files.offset(), 6);
    }

    #[test]
    fn a_torn_last_txnlog_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let good = Entry::now(Record::ConnectionClosed).to_line();
        fs::write(txnlog_path(&prefix, "w"), format!("{good}\n[1.5, \"2-o")).unwrap();
        let mut o = WorkerFiles::open(&prefix, "w").unwrap();
        assert_eq!((o.entries.len(), o.torn_bytes), (1, 10));
        o.files.record(Record::ConnectionClosed).unwrap();
        drop(o);
        let o = WorkerFiles::open(&prefix, "w").unwrap();
        assert_eq!((o.entries.len(), o.torn_bytes), (2, 0));
    }

    #[test]
    fn a_torn_last_line_ending_inside_a_utf8_character_is_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let good = Entry::now(Record::ConnectionClosed).to_line();
        let mut bytes = format!("{good}\n[1.5, \"2-error\", \"x\", \"caf").into_bytes();
        bytes.push(0xC3); // the first byte of 'é', the second never written
        fs::write(txnlog_path(&prefix, "w"), &bytes).unwrap();
        let o = WorkerFiles::open(&prefix, "w").unwrap();
        assert_eq!(o.entries.len(), 1);
        assert_eq!(o.torn_bytes as usize, bytes.len() - good.len() - 1);
        // `crasher verify` reads the same file the same way.
        assert_eq!(
            verify::txnlog::read(&txnlog_path(&prefix, "w"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_middle_line_that_is_not_utf8_is_malformed_not_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        let good = Entry::now(Record::ConnectionClosed).to_line();
        let mut bytes = good.clone().into_bytes();
        bytes.extend(b"\n[1.5, \"close\", \"\xff\"]\n");
        bytes.extend(good.as_bytes());
        bytes.push(b'\n');
        fs::write(txnlog_path(&prefix, "w"), &bytes).unwrap();
        let Err(e) = WorkerFiles::open(&prefix, "w") else {
            panic!("opened");
        };
        assert!(matches!(e, StoreError::Txnlog(_)), "{e}");
        assert!(e.to_string().contains(":2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn retire_moves_both_files_and_a_second_retire_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        fs::write(data_path(&prefix, "w2"), b"data").unwrap();
        fs::write(txnlog_path(&prefix, "w2"), b"").unwrap();
        let r = retire(&prefix, "w2", "17.5").unwrap().unwrap();
        assert_eq!(r.data.unwrap(), dir.path().join("output.w2.17.5"));
        assert_eq!(r.txnlog.unwrap(), dir.path().join("output.w2.17.5.txnlog"));
        assert!(!data_path(&prefix, "w2").exists());
        assert!(!txnlog_path(&prefix, "w2").exists());
        assert_eq!(
            fs::read(dir.path().join("output.w2.17.5")).unwrap(),
            b"data"
        );
        assert_eq!(retire(&prefix, "w2", "18.0").unwrap(), None);
    }

    /// `/dev/full` fails every write with ENOSPC: the error must say so and
    /// name the file.
    #[test]
    fn a_full_disk_is_reported_with_the_file_name() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("output");
        std::os::unix::fs::symlink("/dev/full", data_path(&prefix, "w")).unwrap();
        let mut o = WorkerFiles::open(&prefix, "w").unwrap();
        o.files.append(b"some bytes").unwrap();
        let err = o.files.sync_output().unwrap_err().to_string();
        assert!(err.starts_with("cannot write "), "{err}");
        assert!(err.contains("output.w: No space left on device"), "{err}");
    }
}
