//! Committed sink output, rebuilt from the txnlogs the way
//! `concat-sink-output.py` did, and read incrementally.
//!
//! - Every `*.txnlog` in the sink directory is read, including the renamed
//!   files of workers that left (`output.worker2.1700000000.123.txnlog`).
//!   Its data file is the txnlog path without `.txnlog`.
//! - Each `2-ok` record with an offset above 0 is a commit: the data file's
//!   bytes `[previous commit's end, end)` are now final.
//! - Commits of all files are applied in commit-time order: time, then txnlog
//!   file name, then record order.
//! - Only those byte ranges are read, so bytes past the last commit
//!   (an uncommitted or rolled-back tail) are never seen.
//! - Each data file's committed bytes are split into lines on their own (a
//!   worker commits whole lines), and each complete line is handed over as
//!   soon as the commit that completes it is applied.
//!
//! [`CommittedStream`] keeps its position in every file, so calling
//! [`CommittedStream::advance`] again reads only what was appended since.
//! Files are identified by device and inode: when the sink renames a
//! departed worker's files, the renamed txnlog is recognised as the file
//! already being followed and is not counted twice.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::VerifyError;
use crate::txnlog::{Entry, Format, Record, TxnlogError};

/// One `2-ok` record: output up to `end` of a data file is committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Commit {
    /// Record time (element 0).
    pub time: f64,
    /// File name of the txnlog when the record was read (tie-breaker).
    pub txnlog_name: String,
    /// 1-based line of the record in its txnlog (tie-breaker).
    pub line: usize,
    /// Transaction id.
    pub txn_id: String,
    /// Committed end offset of the data file.
    pub end: u64,
    /// Index of the followed file.
    file: usize,
}

/// Committed bytes that the data file no longer holds: data loss.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissingData {
    /// Data file.
    pub data_file: PathBuf,
    /// Its length (0 when absent).
    pub file_len: u64,
    /// Start of the committed range being read.
    pub committed_start: u64,
    /// End of the committed range, from the `2-ok` record.
    pub committed_end: u64,
    /// Transaction of that commit.
    pub txn_id: String,
    /// Time of that commit.
    pub time: f64,
}

impl std::fmt::Display for MissingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "committed bytes missing: {} is {} bytes long but txn {} (time {:.6}) committed bytes {}..{}",
            self.data_file.display(),
            self.file_len,
            self.txn_id,
            self.time,
            self.committed_start,
            self.committed_end
        )
    }
}

/// Where a committed line was read: the data file, the line's byte offset in
/// it, and the time of the commit that completed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineOrigin<'a> {
    /// The data file (its path when the line was read).
    pub data_file: &'a Path,
    /// Byte offset of the line's first byte in the data file.
    pub offset: u64,
    /// Time (element 0) of the `2-ok` record that committed the line's end.
    pub time: f64,
}

/// What to do when a data file with committed bytes cannot be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingFilePolicy {
    /// Report it as [`MissingData`] at once (point-in-time check).
    Report,
    /// Wait one more call before reporting, in case the sink is between
    /// renaming a departed worker's txnlog and its data file.
    RetryOnce,
}

/// A txnlog being followed, with its data file.
#[derive(Debug)]
struct Followed {
    /// Current txnlog path.
    path: PathBuf,
    /// Current txnlog file name.
    name: String,
    /// Open txnlog.
    log: File,
    /// Bytes of the txnlog consumed (complete lines only).
    log_offset: u64,
    /// Lines consumed.
    log_lines: usize,
    /// The txnlog's format, decided by its first complete line.
    format: Option<Format>,
    /// Open data file, once needed.
    data: Option<File>,
    /// End of the last commit applied.
    last_end: u64,
    /// A committed partial line waiting for its end.
    pending: Vec<u8>,
    /// Data file offset of `pending`'s first byte.
    pending_start: u64,
    /// Time of the last commit applied.
    last_time: f64,
    /// Calls in which the data file was looked for and not found.
    data_missing: u32,
}

impl Followed {
    fn data_path(&self) -> PathBuf {
        self.path.with_extension("")
    }
}

/// Why a file that should be a regular file cannot be read as one.
fn not_regular(meta: &fs::Metadata) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    io::Error::other(format!("{what}, not a regular file"))
}

/// Opens a file for reading without blocking (a FIFO would block `open`
/// until a writer appears) and insists that it is a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok(f)
}

/// Listings tried before accepting that a listed txnlog vanished.
const SCAN_TRIES: usize = 5;

/// Bytes read per `read_at`.
const READ_CHUNK: usize = 1 << 20;

/// The committed output of a sink directory, read as it grows.
#[derive(Debug)]
pub struct CommittedStream {
    dir: PathBuf,
    policy: MissingFilePolicy,
    files: Vec<Followed>,
    by_id: HashMap<(u64, u64), usize>,
    /// Commits read but not applied yet, in application order.
    queue: Vec<Commit>,
    /// Set once committed bytes were found missing; nothing is applied after.
    missing: Option<MissingData>,
    buf: Vec<u8>,
    log_buf: Vec<u8>,
}

impl CommittedStream {
    /// Follows the sink directory `dir` (nothing is read until [`advance`]).
    ///
    /// [`advance`]: CommittedStream::advance
    pub fn new(dir: impl Into<PathBuf>, policy: MissingFilePolicy) -> Self {
        CommittedStream {
            dir: dir.into(),
            policy,
            files: Vec::new(),
            by_id: HashMap::new(),
            queue: Vec::new(),
            missing: None,
            buf: Vec::new(),
            log_buf: Vec::new(),
        }
    }

    /// The sink directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Committed bytes found missing, if any (sticky).
    pub fn missing(&self) -> Option<&MissingData> {
        self.missing.as_ref()
    }

    /// Reads what was committed since the last call and hands every
    /// completed committed line (with its `\n`) to `on_line`, in commit
    /// order. Returns the data loss found, if any; once data is missing,
    /// nothing more is applied.
    ///
    /// With `final_read`, a txnlog's last line without a newline is used
    /// when it parses (as [`crate::txnlog::read`] does); otherwise it is left
    /// for a later call, when the sink will have finished writing it.
    pub fn advance(
        &mut self,
        final_read: bool,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<&MissingData>, VerifyError> {
        self.advance_with_origin(final_read, &mut |line, _| on_line(line))
    }

    /// [`CommittedStream::advance`], also telling for each line where it was
    /// read ([`LineOrigin`]).
    pub fn advance_with_origin(
        &mut self,
        final_read: bool,
        on_line: &mut dyn FnMut(&[u8], &LineOrigin<'_>),
    ) -> Result<Option<&MissingData>, VerifyError> {
        if self.missing.is_some() {
            return Ok(self.missing.as_ref());
        }
        self.scan_dir()?;
        let mut new = Vec::new();
        for i in 0..self.files.len() {
            self.read_log(i, final_read, &mut new)?;
        }
        if !new.is_empty() {
            self.queue.append(&mut new);
            self.queue.sort_by(|a, b| {
                a.time
                    .total_cmp(&b.time)
                    .then_with(|| a.txnlog_name.cmp(&b.txnlog_name))
                    .then_with(|| a.line.cmp(&b.line))
            });
        }
        let mut applied = 0;
        while applied < self.queue.len() {
            let c = self.queue[applied].clone();
            match self.apply(&c, on_line)? {
                Applied::Done => applied += 1,
                Applied::Wait => break,
                Applied::Missing(m) => {
                    self.missing = Some(m);
                    applied += 1;
                    break;
                }
            }
        }
        self.queue.drain(..applied);
        Ok(self.missing.as_ref())
    }

    /// Hands over the partial lines still waiting for their end, for a
    /// point-in-time check where no more data will come: a committed stream
    /// that ends inside a line.
    pub fn flush_partial_lines(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        self.flush_partial_lines_with_origin(&mut |line, _| on_line(line));
    }

    /// [`CommittedStream::flush_partial_lines`] with each line's
    /// [`LineOrigin`] (the time is that of the file's last commit).
    pub fn flush_partial_lines_with_origin(
        &mut self,
        on_line: &mut dyn FnMut(&[u8], &LineOrigin<'_>),
    ) {
        for f in &mut self.files {
            if !f.pending.is_empty() {
                let data_file = f.data_path();
                let origin = LineOrigin {
                    data_file: &data_file,
                    offset: f.pending_start,
                    time: f.last_time,
                };
                on_line(&f.pending, &origin);
                f.pending.clear();
            }
        }
    }

    /// Finds txnlogs, new and renamed.
    ///
    /// A file renamed between the listing and its opening (the sink renames
    /// a departed worker's files) would be missed under both names, so the
    /// listing is repeated until every listed file could be looked at.
    fn scan_dir(&mut self) -> Result<(), VerifyError> {
        for _ in 0..SCAN_TRIES {
            if self.scan_once()? {
                break;
            }
        }
        Ok(())
    }

    /// One listing; `false` when a listed txnlog vanished meanwhile.
    fn scan_once(&mut self) -> Result<bool, VerifyError> {
        let mut stable = true;
        let dir_err = |source| VerifyError::SinkDir {
            path: self.dir.clone(),
            source,
        };
        let mut found: Vec<(OsString, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            if Path::new(&name).extension().is_some_and(|e| e == "txnlog") {
                found.push((name, entry.path()));
            }
        }
        found.sort();
        for (name, path) in found {
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    stable = false;
                    continue;
                }
                Err(source) => return Err(TxnlogError::Io { path, source }.into()),
            };
            if !meta.is_file() {
                // A directory, FIFO or device is not a txnlog anyone can
                // read: say so (exit 2) instead of verifying without it.
                return Err(TxnlogError::Io {
                    path,
                    source: not_regular(&meta),
                }
                .into());
            }
            let name = name.to_string_lossy().into_owned();
            if let Some(&i) = self.by_id.get(&(meta.dev(), meta.ino())) {
                let f = &mut self.files[i];
                if meta.len() >= f.log_offset {
                    if f.path != path {
                        f.path = path;
                        f.name = name;
                    }
                    continue;
                }
                // Shorter than what was read: not the file we followed (its
                // inode was reused). Follow it as a new file.
            }
            let log = match open_regular(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    stable = false;
                    continue;
                }
                Err(source) => return Err(TxnlogError::Io { path, source }.into()),
            };
            // The identity of the file actually opened.
            let meta = log.metadata().map_err(|source| TxnlogError::Io {
                path: path.clone(),
                source,
            })?;
            self.by_id
                .insert((meta.dev(), meta.ino()), self.files.len());
            self.files.push(Followed {
                path,
                name,
                log,
                log_offset: 0,
                log_lines: 0,
                format: None,
                data: None,
                last_end: 0,
                pending: Vec::new(),
                pending_start: 0,
                last_time: 0.0,
                data_missing: 0,
            });
        }
        Ok(stable)
    }

    /// Opens the data file of file `i`; `None` when it does not exist. A
    /// failed open is retried once after a fresh listing, in case the files
    /// were just renamed.
    fn open_data(&mut self, i: usize) -> Result<Option<File>, VerifyError> {
        for attempt in 0..2 {
            let path = self.files[i].data_path();
            match open_regular(&path) {
                Ok(d) => return Ok(Some(d)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if attempt == 0 {
                        self.scan_dir()?;
                    }
                }
                Err(source) => return Err(VerifyError::Data { path, source }),
            }
        }
        Ok(None)
    }

    /// Reads the complete txnlog lines appended to file `i`.
    fn read_log(
        &mut self,
        i: usize,
        final_read: bool,
        out: &mut Vec<Commit>,
    ) -> Result<(), VerifyError> {
        let f = &mut self.files[i];
        let buf = &mut self.log_buf;
        buf.clear();
        let io_err = |path: &Path, source| TxnlogError::Io {
            path: path.to_owned(),
            source,
        };
        let mut at = f.log_offset;
        loop {
            let len = buf.len();
            buf.resize(len + 64 * 1024, 0);
            let n = f
                .log
                .read_at(&mut buf[len..], at)
                .map_err(|e| io_err(&f.path, e))?;
            buf.truncate(len + n);
            if n == 0 {
                break;
            }
            at += n as u64;
        }
        let mut consumed = 0usize;
        while consumed < buf.len() {
            let rest = &buf[consumed..];
            let (line, next, complete) = match memchr::memchr(b'\n', rest) {
                Some(nl) => (&rest[..nl], consumed + nl + 1, true),
                None => (rest, buf.len(), false),
            };
            let lineno = f.log_lines + 1;
            let parsed = std::str::from_utf8(line)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|l| {
                    let format = f.format.unwrap_or_else(|| Format::detect(l));
                    if complete {
                        f.format = Some(format);
                    }
                    Entry::parse_as(l, format)
                });
            let entry = match parsed {
                Ok(e) => e,
                Err(_) if !complete => break,
                Err(reason) => {
                    return Err(TxnlogError::Malformed {
                        path: f.path.clone(),
                        line: lineno,
                        reason,
                    }
                    .into())
                }
            };
            if !complete && !final_read {
                break;
            }
            f.log_lines = lineno;
            consumed = next;
            if let Record::Phase2Ok { txn_id, offset } = entry.record {
                if offset > 0 {
                    out.push(Commit {
                        time: entry.time,
                        txnlog_name: f.name.clone(),
                        line: lineno,
                        txn_id,
                        end: offset,
                        file: i,
                    });
                }
            }
        }
        f.log_offset += consumed as u64;
        Ok(())
    }

    /// Applies one commit: reads its byte range and splits it into lines.
    fn apply(
        &mut self,
        c: &Commit,
        on_line: &mut dyn FnMut(&[u8], &LineOrigin<'_>),
    ) -> Result<Applied, VerifyError> {
        let f = &mut self.files[c.file];
        if c.end <= f.last_end {
            // As concat-sink-output.py: a commit that goes backwards moves the
            // start of the next range back, so its bytes are read again.
            f.last_end = c.end;
            return Ok(Applied::Done);
        }
        if f.data.is_none() {
            match self.open_data(c.file)? {
                Some(d) => self.files[c.file].data = Some(d),
                None => {
                    let f = &mut self.files[c.file];
                    f.data_missing += 1;
                    if self.policy == MissingFilePolicy::RetryOnce && f.data_missing < 2 {
                        return Ok(Applied::Wait);
                    }
                    return Ok(Applied::Missing(MissingData {
                        data_file: f.data_path(),
                        file_len: 0,
                        committed_start: f.last_end,
                        committed_end: c.end,
                        txn_id: c.txn_id.clone(),
                        time: c.time,
                    }));
                }
            }
        }
        let f = &mut self.files[c.file];
        let path = f.data_path();
        let data = f.data.as_ref().expect("opened above");
        let data_err = |source| VerifyError::Data {
            path: path.clone(),
            source,
        };
        let file_len = data.metadata().map_err(data_err)?.len();
        let end = c.end.min(file_len);
        let start = f.last_end;
        let mut at = start;
        while at < end {
            let want = ((end - at) as usize).min(READ_CHUNK);
            if self.buf.len() < want {
                self.buf.resize(READ_CHUNK, 0);
            }
            let n = data.read_at(&mut self.buf[..want], at).map_err(data_err)?;
            if n == 0 {
                break;
            }
            let chunk = Chunk {
                bytes: &self.buf[..n],
                offset: at,
                data_file: &path,
                time: c.time,
            };
            split_lines(&mut f.pending, &mut f.pending_start, &chunk, on_line);
            at += n as u64;
        }
        f.last_end = at;
        f.last_time = c.time;
        if at < c.end {
            return Ok(Applied::Missing(MissingData {
                data_file: path,
                file_len,
                committed_start: start,
                committed_end: c.end,
                txn_id: c.txn_id.clone(),
                time: c.time,
            }));
        }
        Ok(Applied::Done)
    }
}

/// Outcome of applying one commit.
enum Applied {
    Done,
    Wait,
    Missing(MissingData),
}

/// Committed bytes just read from a data file.
struct Chunk<'a> {
    bytes: &'a [u8],
    /// Data file offset of `bytes[0]`.
    offset: u64,
    data_file: &'a Path,
    /// Time of the commit being applied.
    time: f64,
}

/// Splits `chunk` into lines, completing `pending` (which starts at data
/// file offset `pending_start`) first, and keeps the unfinished tail in
/// `pending`.
fn split_lines(
    pending: &mut Vec<u8>,
    pending_start: &mut u64,
    chunk: &Chunk<'_>,
    on_line: &mut dyn FnMut(&[u8], &LineOrigin<'_>),
) {
    let bytes = chunk.bytes;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        if pending.is_empty() {
            let origin = LineOrigin {
                data_file: chunk.data_file,
                offset: chunk.offset + start as u64,
                time: chunk.time,
            };
            on_line(&bytes[start..=nl], &origin);
        } else {
            pending.extend_from_slice(&bytes[start..=nl]);
            let origin = LineOrigin {
                data_file: chunk.data_file,
                offset: *pending_start,
                time: chunk.time,
            };
            on_line(pending, &origin);
            pending.clear();
        }
        start = nl + 1;
    }
    if start < bytes.len() {
        if pending.is_empty() {
            *pending_start = chunk.offset + start as u64;
        }
        pending.extend_from_slice(&bytes[start..]);
    }
}

/// The committed output of a sink directory, filtered to the lines starting
/// with `key` (all lines when `None`), with any data loss found on the way.
pub fn committed_output(
    dir: &Path,
    key: Option<u8>,
) -> Result<(Vec<u8>, Option<MissingData>), VerifyError> {
    let mut out = Vec::new();
    let mut keep = |line: &[u8]| {
        if key.is_none() || line.first() == key.as_ref() {
            out.extend_from_slice(line);
        }
    };
    let mut stream = CommittedStream::new(dir, MissingFilePolicy::Report);
    let missing = stream.advance(true, &mut keep)?.cloned();
    stream.flush_partial_lines(&mut keep);
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txnlog::Entry;
    use std::io::Write;

    fn ok(time: f64, txn: &str, end: u64) -> String {
        Entry {
            time,
            record: Record::Phase2Ok {
                txn_id: txn.into(),
                offset: end,
            },
        }
        .to_line()
            + "\n"
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn commits_are_merged_in_time_order_and_tails_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        append(&p.join("output.w1"), b"A1\nB1\nA3\nUNCOMMITTED\n");
        append(&p.join("output.w1.txnlog"), ok(1.0, "t1", 6).as_bytes());
        append(&p.join("output.w1.txnlog"), ok(3.0, "t3", 9).as_bytes());
        append(&p.join("output.w2"), b"A2\n");
        append(&p.join("output.w2.txnlog"), ok(2.0, "t2", 3).as_bytes());
        let (all, missing) = committed_output(p, None).unwrap();
        assert_eq!(all, b"A1\nB1\nA2\nA3\n");
        assert!(missing.is_none());
        let (a, _) = committed_output(p, Some(b'A')).unwrap();
        assert_eq!(a, b"A1\nA2\nA3\n");
    }

    /// A sink directory where one worker's txnlog is the original's
    /// (Python literals) and another's crasher's (JSON): both are merged,
    /// also when followed incrementally.
    #[test]
    fn python_and_json_txnlogs_are_read_side_by_side() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        append(&p.join("output.w1"), b"A1\nB1\nA3\nUNCOMMITTED\n");
        append(
            &p.join("output.w1.txnlog"),
            b"[1.0, 'list-uncommitted', []]\n[1.0, '1-ok', 't1', [(1, 0, 6)]]\n[1.0, '2-ok', 't1', 6]\n",
        );
        append(&p.join("output.w2"), b"A2\n");
        append(&p.join("output.w2.txnlog"), ok(2.0, "t2", 3).as_bytes());
        let mut s = CommittedStream::new(p, MissingFilePolicy::RetryOnce);
        let mut seen: Vec<u8> = Vec::new();
        s.advance(false, &mut |l| seen.extend_from_slice(l))
            .unwrap();
        assert_eq!(seen, b"A1\nB1\nA2\n");
        // A torn Python record waits for its newline.
        append(&p.join("output.w1.txnlog"), b"[3.0, '2-ok', 't3'");
        s.advance(false, &mut |l| seen.extend_from_slice(l))
            .unwrap();
        assert_eq!(seen, b"A1\nB1\nA2\n");
        append(
            &p.join("output.w1.txnlog"),
            b", 9]\n[3.5, 'connection-closed', True]\n",
        );
        s.advance(false, &mut |l| seen.extend_from_slice(l))
            .unwrap();
        assert_eq!(seen, b"A1\nB1\nA2\nA3\n");
        let (a, missing) = committed_output(p, Some(b'A')).unwrap();
        assert_eq!(a, b"A1\nA2\nA3\n");
        assert!(missing.is_none());
    }

    #[test]
    fn each_line_is_handed_over_with_its_file_offset_and_commit_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        append(&p.join("output.w1"), b"A1\nB22\nA333\nA4");
        append(&p.join("output.w1.txnlog"), ok(1.0, "t1", 5).as_bytes());
        append(&p.join("output.w2"), b"A5\n");
        append(&p.join("output.w2.txnlog"), ok(1.5, "t1", 3).as_bytes());
        let mut s = CommittedStream::new(p, MissingFilePolicy::RetryOnce);
        let mut seen: Vec<(Vec<u8>, PathBuf, u64, f64)> = Vec::new();
        let mut take = |l: &[u8], o: &LineOrigin<'_>| {
            seen.push((l.to_vec(), o.data_file.to_owned(), o.offset, o.time))
        };
        s.advance_with_origin(false, &mut take).unwrap();
        // The line completed by a later commit keeps its start and takes
        // that commit's time; a committed partial line is flushed last.
        append(&p.join("output.w1.txnlog"), ok(2.0, "t2", 15).as_bytes());
        s.advance_with_origin(false, &mut take).unwrap();
        s.flush_partial_lines_with_origin(&mut take);
        let w1 = p.join("output.w1");
        let w2 = p.join("output.w2");
        assert_eq!(
            seen,
            vec![
                (b"A1\n".to_vec(), w1.clone(), 0, 1.0),
                (b"A5\n".to_vec(), w2, 0, 1.5),
                (b"B22\n".to_vec(), w1.clone(), 3, 2.0),
                (b"A333\n".to_vec(), w1.clone(), 7, 2.0),
                (b"A4".to_vec(), w1, 12, 2.0),
            ]
        );
    }

    #[test]
    fn a_short_data_file_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        append(&p.join("output.w1"), b"A1\nA2");
        append(&p.join("output.w1.txnlog"), ok(1.0, "t1", 9).as_bytes());
        let (_, missing) = committed_output(p, None).unwrap();
        let m = missing.unwrap();
        assert_eq!((m.file_len, m.committed_start, m.committed_end), (5, 0, 9));
        assert!(m.to_string().contains("output.w1 is 5 bytes long"), "{m}");
    }

    #[test]
    fn advancing_reads_only_new_commits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let mut s = CommittedStream::new(p, MissingFilePolicy::RetryOnce);
        let mut seen: Vec<Vec<u8>> = Vec::new();
        s.advance(false, &mut |l| seen.push(l.to_vec())).unwrap();
        assert!(seen.is_empty());
        append(&p.join("output.w1"), b"A1\nA2\nA3\n");
        append(&p.join("output.w1.txnlog"), ok(1.0, "t1", 3).as_bytes());
        // A torn record is not consumed until its newline arrives.
        append(&p.join("output.w1.txnlog"), b"[2.0,\"2-ok\",\"t2\",9");
        s.advance(false, &mut |l| seen.push(l.to_vec())).unwrap();
        assert_eq!(seen, vec![b"A1\n".to_vec()]);
        append(&p.join("output.w1.txnlog"), b"]\n");
        s.advance(false, &mut |l| seen.push(l.to_vec())).unwrap();
        assert_eq!(seen.len(), 3);
        fs::rename(p.join("output.w1"), p.join("output.w1.17.5")).unwrap();
        fs::rename(p.join("output.w1.txnlog"), p.join("output.w1.17.5.txnlog")).unwrap();
        s.advance(false, &mut |l| seen.push(l.to_vec())).unwrap();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_txnlog_seen_renamed_before_its_data_file_is_waited_for_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        append(&p.join("output.w2"), b"A1\n");
        append(&p.join("output.w2.txnlog"), ok(1.0, "t1", 3).as_bytes());
        fs::rename(p.join("output.w2.txnlog"), p.join("output.w2.9.txnlog")).unwrap();
        let mut s = CommittedStream::new(p, MissingFilePolicy::RetryOnce);
        let mut seen = 0;
        assert!(s.advance(false, &mut |_| seen += 1).unwrap().is_none());
        assert_eq!(seen, 0);
        fs::rename(p.join("output.w2"), p.join("output.w2.9")).unwrap();
        assert!(s.advance(false, &mut |_| seen += 1).unwrap().is_none());
        assert_eq!(seen, 1);
        // Never renamed: reported the second time.
        append(&p.join("output.w3.txnlog"), ok(2.0, "t1", 3).as_bytes());
        assert!(s.advance(false, &mut |_| seen += 1).unwrap().is_none());
        let m = s.advance(false, &mut |_| seen += 1).unwrap().unwrap();
        assert_eq!(m.data_file, p.join("output.w3"));
    }
}
