//! A one-way mirror of a flat directory over one byte stream: [`serve`]
//! watches a directory on the machine where the files are written (a host
//! of `--hosts`) and writes frames to a stream (the stdout of `crasher
//! mirror-dir DIR`, carried by SSH); [`apply`] reads that stream on the
//! control machine and keeps a copy of the directory up to date, for the
//! verifier (sink output) and the supervisor (feeder status files).
//!
//! # What is mirrored
//!
//! Regular files directly in the directory; subdirectories, symlinks and
//! names starting with `.` are ignored. Every `poll` the server does one
//! *round*: for each file it remembers what it sent (device, inode,
//! length, mtime, and the last [`TAIL_KEEP`] bytes sent) and sends:
//!
//! - same inode, grown: the new tail (`W` at the old length);
//! - same inode, shrunk: a truncate to the new length (`T`; the sink rolls
//!   back uncommitted output this way);
//! - same inode, same length, other mtime: a whole replacement (`R`);
//! - a new file or a new inode (a file replaced by a rename): `R`;
//! - a file gone: a delete (`D`).
//!
//! Before sending `W` or `T` the server re-reads the [`WINDOW`] bytes that
//! end where the old and the new content must still agree (at the shorter
//! of the two lengths) and compares them with what it sent; if they differ
//! (the file was cut back and rewritten with other bytes within one poll)
//! or were not kept (a file cut back by more than about `TAIL_KEEP`), it
//! sends `R` instead. A rewrite that changes bytes earlier than that
//! window but leaves the window byte-identical is not seen (the sink only
//! ever rewrites from its last commit onwards). A file is read up to the
//! length it had when the round looked at it; what it gains meanwhile goes
//! in the next round.
//!
//! A replacement larger than [`CHUNK`] is sent in parts (`P`) written to
//! the pending copy and a commit (`C`) that renames it into place, so
//! neither side holds more than `CHUNK` bytes of a file at once and the
//! replacement is still atomic for a reader of the mirror.
//!
//! # Ordering rule
//!
//! A file whose name ends in `.txnlog` is a *log*, every other file is
//! *data*. A log records commits of bytes written to its data file
//! *before* the commit; a data file only shrinks by rolling back bytes no
//! log has committed. In each round the server therefore
//!
//! 1. lists the directory and *reads* every log's changes (into memory),
//! 2. lists the directory again and reads and *sends* every data file's
//!    changes (and the deletes of data files),
//! 3. then *sends* the logs' changes, and ends the round with `E`.
//!
//! (Deletes of logs are sent first: a missing log claims nothing.) Every
//! byte a log read in step 1 commits was in its data file before step 1,
//! so step 2 reads it, and the applier applies frames in order: a reader
//! of the mirror never sees a log that claims more bytes than the mirrored
//! data file holds. The second listing catches a data file created after
//! the first listing whose log was already read.
//!
//! # Wire format
//!
//! Each frame is one header line, words separated by single spaces and
//! ending in `\n` (ASCII but for the name, which is UTF-8), then, for `W`,
//! `R` and `P`, exactly `len` raw bytes:
//!
//! ```text
//! W <len> <offset> <name>\n<len bytes>   write at offset (extends the file)
//! R <len> <name>\n<len bytes>            replace the whole file, atomically
//! T <len> <name>\n                       truncate (or extend) to len
//! D <name>\n                             delete
//! P <len> <offset> <name>\n<len bytes>   write at offset into the pending
//!                                        replacement of name (offset 0
//!                                        starts it afresh)
//! C <name>\n                             commit the pending replacement:
//!                                        rename it over name
//! M <n> <old><new>\n                     rename old to new (<n>: the
//!                                        length in bytes of old)
//! E <round>\n                            end of round <round> (1, 2, ...)
//! ```
//!
//! `R` and a `P`...`C` sequence write `.NAME.mirror-tmp` in the
//! destination, then rename it over `NAME`, so a reader never sees a
//! half-replaced file.
//!
//! `<name>` is the rest of the line: a single path component, not empty,
//! not `.` or `..`, not starting with `.`, without `/`, NUL or newline,
//! at most 240 bytes (room for the applier's temporary name). Both sides
//! check it ([`validate_name`]): the server skips such a file (warning
//! once), the applier rejects a bad name or a malformed header with a
//! [`MirrorError`] naming the frame, and never writes outside its
//! destination directory. Round numbers must increase.
//!
//! # Renames and inodes
//!
//! A file that appears under a new name with the device and inode of a
//! file sent under a name that is gone (the sink renames a departed
//! worker's files) is sent as a rename (`M`, in its kind's place in the
//! round) and then compared as usual, so the mirror renames its copy. The
//! sink's mirror is applied with [`apply_keeping_inodes`]: a replacement
//! of an existing file is written into it, so the copy keeps its inode
//! too. The verifier follows a sink's files by their inodes and open
//! handles; a copy replaced by a rename would leave it reading the old
//! inode (a false "committed bytes missing" after a sink restart, seen in
//! the first lab run with the sink on a host).
//!
//! If the watched directory disappears, the server sends the deletes of
//! its files and goes on watching for it to come back.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes re-read and compared before a `W` or `T` (see the module doc).
pub const WINDOW: usize = 4096;
/// The last bytes sent of each file the server keeps to compare against.
pub const TAIL_KEEP: usize = 1 << 20;
/// The largest payload of one frame the server sends.
pub const CHUNK: usize = 4 << 20;
/// The longest header line the applier accepts.
const MAX_HEADER: u64 = 512;
/// The longest file name (bytes) either side accepts.
const MAX_NAME: usize = 240;

/// Whether `name` may be mirrored: one path component, not empty, not
/// starting with `.`, without `/`, NUL or newline, at most 240 bytes.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty name")
    } else if name.len() > MAX_NAME {
        Err("name longer than 240 bytes")
    } else if name.starts_with('.') {
        Err("name starts with '.' (also rejects . and ..)")
    } else if name.contains('/') {
        Err("name contains '/'")
    } else if name.contains('\0') {
        Err("name contains NUL")
    } else if name.contains('\n') || name.contains('\r') {
        Err("name contains a line break")
    } else {
        Ok(())
    }
}

/// Whether `name` is a log (applied after the data files of its round).
pub fn is_log(name: &str) -> bool {
    name.ends_with(".txnlog")
}

// ---------------------------------------------------------------- server

/// What the server last sent of one file.
struct Sent {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    /// The last bytes sent, ending at `len`.
    tail: Vec<u8>,
}

impl Sent {
    fn keep(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL_KEEP {
            let cut = self.tail.len() - TAIL_KEEP;
            self.tail.drain(..cut);
        }
    }
}

/// The server's memory across rounds.
#[derive(Default)]
struct Server {
    sent: BTreeMap<String, Sent>,
    warned: HashSet<String>,
}

/// Watches the flat directory `root` (created if absent) and writes a
/// frame stream to `out` (module doc), one round every `poll`, flushing
/// `out` at each round's end. Returns Ok once `stop` is set, or the error
/// of a write to `out` (a broken pipe: the reader went away) or of
/// creating or listing `root`.
pub fn serve(
    root: &Path,
    mut out: impl Write,
    poll: Duration,
    stop: &AtomicBool,
) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let mut server = Server::default();
    let mut round: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        server.round(root, &mut out)?;
        writeln!(out, "E {round}")?;
        out.flush()?;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

impl Server {
    /// The mirrorable regular files of `root` whose kind (log or data) is `logs`.
    fn list(&mut self, root: &Path, logs: bool) -> io::Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        let entries = match fs::read_dir(root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            other => other?,
        };
        for entry in entries {
            let entry = entry?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_file() {
                continue;
            }
            let raw = entry.file_name();
            let Some(name) = raw.to_str() else {
                self.warn_once(&raw.to_string_lossy(), "not UTF-8");
                continue;
            };
            if name.starts_with('.') || is_log(name) != logs {
                continue;
            }
            if let Err(why) = validate_name(name) {
                self.warn_once(name, why);
                continue;
            }
            names.insert(name.to_owned());
        }
        Ok(names)
    }

    fn warn_once(&mut self, name: &str, why: &str) {
        if self.warned.insert(name.to_owned()) {
            tracing::warn!("mirror: not mirroring {name:?}: {why}");
        }
    }

    /// One round without its end marker (module doc: ordering rule).
    fn round(&mut self, root: &Path, out: &mut impl Write) -> io::Result<()> {
        // 1. Logs: deletes go out now, renames and changes are read now,
        //    sent last.
        let logs = self.list(root, true)?;
        let mut log_frames = Vec::new();
        self.send_renames(root, &logs, true, &mut log_frames)?;
        self.send_gone(&logs, true, out)?;
        for name in &logs {
            self.sync_file(root, name, &mut log_frames)?;
        }
        // 2. Data files, listed again, read and sent.
        let data = self.list(root, false)?;
        self.send_renames(root, &data, false, out)?;
        for name in &data {
            self.sync_file(root, name, out)?;
        }
        self.send_gone(&data, false, out)?;
        // 3. The logs' changes.
        out.write_all(&log_frames)
    }

    /// Sends `M` for each file of `present` (logs or data) that is a file
    /// already sent under another name that is gone now (same device and
    /// inode: the sink renamed a departed worker's files), and moves what
    /// was sent to the new name, so the mirror renames its copy (keeping
    /// its inode, by which the verifier follows a file) instead of
    /// deleting one and creating another.
    fn send_renames(
        &mut self,
        root: &Path,
        present: &BTreeSet<String>,
        logs: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        for name in present {
            if self.sent.contains_key(name) {
                continue;
            }
            let Ok(meta) = fs::metadata(root.join(name)) else {
                continue;
            };
            // The old name is gone, or names another file now (a listing
            // taken during a rename may show both names).
            let moved_away = |old: &str| {
                fs::metadata(root.join(old))
                    .map_or(true, |m| (m.dev(), m.ino()) != (meta.dev(), meta.ino()))
            };
            let old = self
                .sent
                .iter()
                .find(|(n, s)| {
                    is_log(n) == logs && (s.dev, s.ino) == (meta.dev(), meta.ino()) && moved_away(n)
                })
                .map(|(n, _)| n.clone());
            if let Some(old) = old {
                let s = self.sent.remove(&old).expect("found above");
                self.sent.insert(name.clone(), s);
                writeln!(out, "M {} {old}{name}", old.len())?;
            }
        }
        Ok(())
    }

    fn send_gone(
        &mut self,
        present: &BTreeSet<String>,
        logs: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let gone: Vec<String> = self
            .sent
            .keys()
            .filter(|n| is_log(n) == logs && !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.sent.remove(&name);
            writeln!(out, "D {name}")?;
        }
        Ok(())
    }

    /// Writes the frames that bring the mirror of `name` up to date to
    /// `out`. A file that cannot be read is skipped (warned once), one
    /// that vanished is deleted; only an error writing `out` is returned.
    fn sync_file(&mut self, root: &Path, name: &str, out: &mut impl Write) -> io::Result<()> {
        let path = root.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Gone since the listing: renamed (the sink renames a
                // departed worker's files) or deleted. The next round
                // tells which (`send_renames`, then `send_gone`); a delete
                // sent now would lose the rename, and the mirror would
                // hold the renamed file as a new one (a new inode, which
                // the verifier follows as another file).
                return Ok(());
            }
            Err(e) => {
                self.warn_once(name, &e.to_string());
                return Ok(());
            }
        };
        let meta = match file.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(()),
            Err(e) => {
                self.warn_once(name, &e.to_string());
                return Ok(());
            }
        };
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let mtime = (meta.mtime(), meta.mtime_nsec());
        let plan = match self.sent.get(name) {
            Some(s) if s.dev == dev && s.ino == ino => {
                if len == s.len {
                    if mtime == s.mtime {
                        return Ok(());
                    }
                    Plan::Replace
                } else if window_agrees(&file, s, len.min(s.len)) {
                    if len > s.len {
                        Plan::Append(s.len)
                    } else {
                        Plan::Truncate
                    }
                } else {
                    Plan::Replace
                }
            }
            _ => Plan::Replace,
        };
        match plan {
            Plan::Truncate => {
                writeln!(out, "T {len} {name}")?;
                let s = self.sent.get_mut(name).expect("planned from an entry");
                let cut = (s.len - len) as usize;
                if cut <= s.tail.len() {
                    s.tail.truncate(s.tail.len() - cut);
                } else {
                    s.tail.clear();
                }
                s.len = len;
                s.mtime = mtime;
            }
            Plan::Append(from) => {
                let s = self.sent.get_mut(name).expect("planned from an entry");
                s.mtime = mtime;
                send_range(&file, name, from, len, false, s, out)?;
            }
            Plan::Replace => {
                let mut s = Sent {
                    dev,
                    ino,
                    len: 0,
                    mtime,
                    tail: Vec::new(),
                };
                let result = send_range(&file, name, 0, len, true, &mut s, out);
                self.sent.insert(name.to_owned(), s);
                result?;
            }
        }
        Ok(())
    }
}

enum Plan {
    Append(u64),
    Truncate,
    Replace,
}

/// Whether the source's bytes just before `upto` still equal the bytes
/// sent there (false if they were not kept or cannot be read).
fn window_agrees(file: &File, s: &Sent, upto: u64) -> bool {
    let w = (WINDOW as u64).min(upto);
    if w == 0 {
        return true;
    }
    let kept_from = s.len - s.tail.len() as u64;
    if upto - w < kept_from {
        return false;
    }
    let mut now = vec![0u8; w as usize];
    if file.read_exact_at(&mut now, upto - w).is_err() {
        return false;
    }
    let at = (upto - w - kept_from) as usize;
    s.tail[at..at + w as usize] == now[..]
}

/// Sends the bytes `from..to` of `file` (as far as they can be read) in
/// frames of at most [`CHUNK`] bytes and records them in `s`: as `W`
/// frames, or if `replace` as one `R`, or, beyond `CHUNK` bytes, as `P`
/// parts and a `C` (the module doc).
fn send_range(
    file: &File,
    name: &str,
    from: u64,
    to: u64,
    replace: bool,
    s: &mut Sent,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut buf = Vec::new();
    if replace && to <= CHUNK as u64 {
        buf.resize(to as usize, 0);
        let got = read_at_most(file, &mut buf, 0);
        writeln!(out, "R {got} {name}")?;
        out.write_all(&buf[..got])?;
        s.keep(&buf[..got]);
        s.len = got as u64;
        return Ok(());
    }
    if replace {
        // Starts (empties) the pending replacement even if nothing can be read.
        writeln!(out, "P 0 0 {name}")?;
    }
    let mut at = from;
    while at < to {
        let want = ((to - at) as usize).min(CHUNK);
        buf.resize(want, 0);
        let got = read_at_most(file, &mut buf, at);
        if got == 0 {
            break;
        }
        let kind = if replace { 'P' } else { 'W' };
        writeln!(out, "{kind} {got} {at} {name}")?;
        out.write_all(&buf[..got])?;
        s.keep(&buf[..got]);
        at += got as u64;
        s.len = at;
        if got < want {
            break;
        }
    }
    if replace {
        writeln!(out, "C {name}")?;
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes at `offset`; fewer at end of file or on
/// an error (the file shrank meanwhile: the next round sees it).
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

// --------------------------------------------------------------- applier

/// Why applying a mirror stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A frame is malformed: its header, its name, or its payload is short.
    #[error("mirror frame {frame} (`{header}`): {problem}")]
    Frame {
        /// The frame's number in the stream, from 1.
        frame: u64,
        /// Its header line (lossy, at most 80 characters).
        header: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Applying a well-formed frame to the destination failed.
    #[error("mirror frame {frame} (`{header}`): cannot {what} {}: {source}", path.display())]
    Apply {
        /// The frame's number in the stream, from 1.
        frame: u64,
        /// Its header line (lossy, at most 80 characters).
        header: String,
        /// What was being done: `create`, `write`, `truncate`, `rename`, `remove`.
        what: &'static str,
        /// The file in the destination.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The destination directory cannot be created.
    #[error("mirror: cannot create {}: {source}", path.display())]
    Dest {
        /// The destination directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Reading the stream failed.
    #[error("mirror: reading the stream after frame {frame}: {source}")]
    Read {
        /// The number of frames read before.
        frame: u64,
        /// The error.
        source: io::Error,
    },
}

/// The applier's progress, shared (in an [`Arc`]) with whoever waits for
/// the mirror to be fresh; all methods are plain blocking calls usable
/// from any thread.
#[derive(Debug, Default)]
pub struct MirrorProgress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Round markers applied so far.
    markers: u64,
    /// The last round number applied.
    round: Option<u64>,
    /// Set when the stream ended: `Ok` at end of stream, or the error text.
    ended: Option<Result<(), String>>,
}

impl MirrorProgress {
    /// A new progress, shareable.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_round(&self, round: u64) {
        let mut s = self.lock();
        s.markers += 1;
        s.round = Some(round);
        self.changed.notify_all();
    }

    fn publish_end(&self, end: Result<(), String>) {
        let mut s = self.lock();
        s.ended.get_or_insert(end);
        self.changed.notify_all();
    }

    /// The number of the last round fully applied, if any.
    pub fn last_round(&self) -> Option<u64> {
        self.lock().round
    }

    /// Whether the stream has ended: `Some(Ok)` at its end, `Some(Err)`
    /// with the error's text if applying it failed, `None` while it runs.
    pub fn ended(&self) -> Option<Result<(), String>> {
        self.lock().ended.clone()
    }

    /// Waits until a round that started after this call has been fully
    /// applied: true then, false at `deadline` or if the stream ended.
    ///
    /// That takes two round markers applied after the call: the first may
    /// end a round whose reads were done before the call, so it proves
    /// nothing; the server starts the next round only after writing that
    /// first marker, which was after the call as long as the stream
    /// between them does not hold back whole rounds (a pipe or SSH
    /// carrying the stream as fast as it is written, the normal case);
    /// its marker, the second, therefore ends a round that read every file
    /// after the call. A backlog in transit makes the answer older by that
    /// backlog.
    pub fn wait_fresh(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        let target = s.markers + 2;
        loop {
            if s.markers >= target {
                return true;
            }
            if s.ended.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Applies a frame stream to a destination directory.
pub struct Applier {
    dest: PathBuf,
    frame: u64,
    last_round: Option<u64>,
    /// Replacements begun (`P`) and not yet committed (`C`).
    pending: BTreeSet<String>,
    /// Replace existing files in place (see [`apply_keeping_inodes`]).
    keep_inodes: bool,
    /// With `keep_inodes`: the end of what each pending replacement wrote.
    pending_end: BTreeMap<String, u64>,
}

/// Like [`apply`], but a replacement (`R`, `P`...`C`) of a file that
/// exists is written into that file and its length then set, so the file
/// keeps its inode. For a sink's output: the verifier follows a data file
/// and its txnlog by their open handles and inodes, and would go on
/// reading a replaced file's old inode. A replacement there rewrites a
/// committed prefix with the same bytes (a sink never changes committed
/// output), so a reader sees no committed byte change.
pub fn apply_keeping_inodes(
    input: impl Read,
    dest: &Path,
    progress: &MirrorProgress,
) -> Result<(), MirrorError> {
    apply_as(input, dest, progress, true)
}

/// Reads frames from `input` until its end and applies them to `dest`
/// (created if absent), publishing each round to `progress`, and there
/// also the end of the stream (its error's text if it failed).
pub fn apply(input: impl Read, dest: &Path, progress: &MirrorProgress) -> Result<(), MirrorError> {
    apply_as(input, dest, progress, false)
}

/// [`apply`] (`keep_inodes` false) or [`apply_keeping_inodes`].
fn apply_as(
    input: impl Read,
    dest: &Path,
    progress: &MirrorProgress,
    keep_inodes: bool,
) -> Result<(), MirrorError> {
    let result = Applier::new(dest).and_then(|mut a| {
        a.keep_inodes = keep_inodes;
        a.run(input, progress)
    });
    progress.publish_end(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    result
}

/// A parsed header.
enum Frame {
    Write { len: u64, offset: u64, name: String },
    Replace { len: u64, name: String },
    Truncate { len: u64, name: String },
    Delete { name: String },
    Part { len: u64, offset: u64, name: String },
    Commit { name: String },
    Move { old: String, new: String },
    End { round: u64 },
}

impl Applier {
    /// An applier writing into `dest`, created if absent.
    pub fn new(dest: &Path) -> Result<Self, MirrorError> {
        fs::create_dir_all(dest).map_err(|source| MirrorError::Dest {
            path: dest.to_owned(),
            source,
        })?;
        Ok(Self {
            dest: dest.to_owned(),
            frame: 0,
            last_round: None,
            pending: BTreeSet::new(),
            keep_inodes: false,
            pending_end: BTreeMap::new(),
        })
    }

    /// Applies every frame of `input` until its end; then removes the
    /// pending copy of a replacement the stream did not finish.
    pub fn run(&mut self, input: impl Read, progress: &MirrorProgress) -> Result<(), MirrorError> {
        let result = self.run_frames(input, progress);
        for name in std::mem::take(&mut self.pending) {
            let _ = fs::remove_file(self.dest.join(format!(".{name}.mirror-tmp")));
        }
        result
    }

    fn run_frames(
        &mut self,
        input: impl Read,
        progress: &MirrorProgress,
    ) -> Result<(), MirrorError> {
        let mut input = BufReader::with_capacity(256 << 10, input);
        let mut line = Vec::new();
        loop {
            line.clear();
            (&mut input)
                .take(MAX_HEADER + 1)
                .read_until(b'\n', &mut line)
                .map_err(|source| MirrorError::Read {
                    frame: self.frame,
                    source,
                })?;
            if line.is_empty() {
                return Ok(());
            }
            self.frame += 1;
            let header = shown(&line);
            let bad = |problem: String| MirrorError::Frame {
                frame: self.frame,
                header: header.clone(),
                problem,
            };
            if line.last() != Some(&b'\n') {
                return Err(bad(if line.len() as u64 > MAX_HEADER {
                    format!("header longer than {MAX_HEADER} bytes")
                } else {
                    "the stream ends inside the header".into()
                }));
            }
            line.pop();
            let text = std::str::from_utf8(&line).map_err(|_| bad("header is not UTF-8".into()))?;
            let frame = parse(text).map_err(bad)?;
            self.apply_frame(frame, &header, &mut input, progress)?;
        }
    }

    fn apply_frame(
        &mut self,
        frame: Frame,
        header: &str,
        input: &mut impl Read,
        progress: &MirrorProgress,
    ) -> Result<(), MirrorError> {
        let n = self.frame;
        let fail = |what: &'static str, path: &Path| {
            let header = header.to_owned();
            let path = path.to_owned();
            move |source| MirrorError::Apply {
                frame: n,
                header,
                what,
                path,
                source,
            }
        };
        match frame {
            Frame::Write { len, offset, name } => {
                let path = self.dest.join(&name);
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(fail("create", &path))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(fail("write", &path))?;
                self.copy_payload(input, len, &mut f, header, &path)?;
            }
            Frame::Replace { len, name } if self.keep_inodes && self.dest.join(&name).exists() => {
                let path = self.dest.join(&name);
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(fail("open", &path))?;
                self.copy_payload(input, len, &mut f, header, &path)?;
                f.set_len(len).map_err(fail("truncate", &path))?;
            }
            Frame::Part { len, offset, name } if self.keep_inodes => {
                let path = self.dest.join(&name);
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(fail("create", &path))?;
                let end = self.pending_end.entry(name).or_default();
                *end = if offset == 0 {
                    len
                } else {
                    (*end).max(offset + len)
                };
                f.seek(SeekFrom::Start(offset))
                    .map_err(fail("write", &path))?;
                self.copy_payload(input, len, &mut f, header, &path)?;
            }
            Frame::Commit { name } if self.keep_inodes => {
                let path = self.dest.join(&name);
                let end = self.pending_end.remove(&name).unwrap_or(0);
                let f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(fail("create", &path))?;
                f.set_len(end).map_err(fail("truncate", &path))?;
            }
            Frame::Move { old, new } => {
                let (from, to) = (self.dest.join(&old), self.dest.join(&new));
                fs::rename(&from, &to).map_err(fail("rename", &from))?;
            }
            Frame::Replace { len, name } => {
                let path = self.dest.join(&name);
                let tmp = self.dest.join(format!(".{name}.mirror-tmp"));
                let mut f = File::create(&tmp).map_err(fail("create", &tmp))?;
                if let Err(e) = self.copy_payload(input, len, &mut f, header, &tmp) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                drop(f);
                fs::rename(&tmp, &path).map_err(fail("rename", &tmp))?;
            }
            Frame::Part { len, offset, name } => {
                let tmp = self.dest.join(format!(".{name}.mirror-tmp"));
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(offset == 0)
                    .write(true)
                    .open(&tmp)
                    .map_err(fail("create", &tmp))?;
                self.pending.insert(name);
                f.seek(SeekFrom::Start(offset))
                    .map_err(fail("write", &tmp))?;
                self.copy_payload(input, len, &mut f, header, &tmp)?;
            }
            Frame::Commit { name } => {
                self.pending.remove(&name);
                let tmp = self.dest.join(format!(".{name}.mirror-tmp"));
                fs::rename(&tmp, self.dest.join(&name)).map_err(fail("rename", &tmp))?;
            }
            Frame::Truncate { len, name } => {
                let path = self.dest.join(&name);
                let f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(fail("create", &path))?;
                f.set_len(len).map_err(fail("truncate", &path))?;
            }
            Frame::Delete { name } => {
                let path = self.dest.join(&name);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(fail("remove", &path)(e));
                    }
                    _ => {}
                }
            }
            Frame::End { round } => {
                if self.last_round.is_some_and(|last| round <= last) {
                    return Err(MirrorError::Frame {
                        frame: n,
                        header: header.to_owned(),
                        problem: format!(
                            "round {round} after round {}",
                            self.last_round.unwrap_or(0)
                        ),
                    });
                }
                self.last_round = Some(round);
                progress.publish_round(round);
            }
        }
        Ok(())
    }

    /// Copies exactly `len` bytes of payload from `input` to `to`.
    fn copy_payload(
        &self,
        input: &mut impl Read,
        len: u64,
        to: &mut File,
        header: &str,
        path: &Path,
    ) -> Result<(), MirrorError> {
        let mut buf = vec![0u8; (len as usize).min(64 << 10)];
        let mut left = len;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let got = match input.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(MirrorError::Frame {
                        frame: self.frame,
                        header: header.to_owned(),
                        problem: format!(
                            "the stream ends after {} of its {len} payload bytes",
                            len - left
                        ),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(MirrorError::Read {
                        frame: self.frame,
                        source,
                    })
                }
            };
            to.write_all(&buf[..got])
                .map_err(|source| MirrorError::Apply {
                    frame: self.frame,
                    header: header.to_owned(),
                    what: "write",
                    path: path.to_owned(),
                    source,
                })?;
            left -= got as u64;
        }
        Ok(())
    }
}

/// A header line as shown in an error: lossy, without its newline, at most 80 characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\n');
    let mut s: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        s.push('…');
    }
    s.escape_debug().to_string()
}

fn number(word: Option<&str>, what: &str) -> Result<u64, String> {
    let word = word.ok_or_else(|| format!("no {what}"))?;
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{word}` is not a number"));
    }
    word.parse()
        .map_err(|_| format!("{what} `{word}` is too large"))
}

fn name(word: Option<&str>) -> Result<String, String> {
    let word = word.ok_or("no name")?;
    validate_name(word).map_err(|why| format!("bad name `{}`: {why}", word.escape_debug()))?;
    Ok(word.to_owned())
}

/// `<len> <offset> <name>` (of `W` and `P`).
fn len_offset_name(rest: &str) -> Result<(u64, u64, String), String> {
    let mut w = rest.splitn(3, ' ');
    let len = number(w.next(), "length")?;
    let offset = number(w.next(), "offset")?;
    offset.checked_add(len).ok_or("offset + length overflows")?;
    Ok((len, offset, name(w.next())?))
}

/// `<len> <name>` (of `R` and `T`).
fn len_name(rest: &str) -> Result<(u64, String), String> {
    let mut w = rest.splitn(2, ' ');
    let len = number(w.next(), "length")?;
    Ok((len, name(w.next())?))
}

/// Parses a header line without its newline.
fn parse(text: &str) -> Result<Frame, String> {
    let (kind, rest) = text
        .split_once(' ')
        .ok_or("no space after the frame kind")?;
    let frame = match kind {
        "W" => {
            let (len, offset, name) = len_offset_name(rest)?;
            Frame::Write { len, offset, name }
        }
        "R" => {
            let (len, name) = len_name(rest)?;
            Frame::Replace { len, name }
        }
        "T" => {
            let (len, name) = len_name(rest)?;
            Frame::Truncate { len, name }
        }
        "D" => Frame::Delete {
            name: name(Some(rest))?,
        },
        "P" => {
            let (len, offset, name) = len_offset_name(rest)?;
            Frame::Part { len, offset, name }
        }
        "C" => Frame::Commit {
            name: name(Some(rest))?,
        },
        "M" => {
            let (n, both) = rest.split_once(' ').ok_or("no names")?;
            let n = usize::try_from(number(Some(n), "length")?).map_err(|_| "length too large")?;
            if !both.is_char_boundary(n.min(both.len())) || n >= both.len() {
                return Err(format!(
                    "old name length {n} does not fit `{}`",
                    both.escape_debug()
                ));
            }
            let (old, new) = both.split_at(n);
            Frame::Move {
                old: name(Some(old))?,
                new: name(Some(new))?,
            }
        }
        "E" => Frame::End {
            round: number(Some(rest), "round")?,
        },
        other => return Err(format!("unknown frame kind `{}`", other.escape_debug())),
    };
    Ok(frame)
}

// ------------------------------------------------------------------- CLI

/// `crasher mirror-dir DIR`: stream DIR's changes to stdout until stdin
/// ends or stdout breaks (used over SSH by a run with `--hosts`).
#[derive(Debug, clap::Args)]
pub struct MirrorDirArgs {
    /// The directory to mirror (created if absent).
    pub dir: PathBuf,
    /// Milliseconds between two rounds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub poll_ms: u64,
    /// Do not stop when stdin ends: under crasher's remote wrapper
    /// (`--hosts`) stdin is `/dev/null`, and the wrapper kills the mirror
    /// when its ssh session ends.
    #[arg(long)]
    pub ignore_stdin: bool,
}

/// Runs `crasher mirror-dir`: 0 when stdin ends or stdout breaks, 2 (an
/// error) if DIR cannot be created or read.
pub fn run_cli(args: MirrorDirArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let stop = Arc::new(AtomicBool::new(false));
    if !args.ignore_stdin {
        let watcher = Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            watcher.store(true, Ordering::SeqCst);
        });
    }
    let out = io::BufWriter::with_capacity(256 << 10, io::stdout().lock());
    match serve(&args.dir, out, Duration::from_millis(args.poll_ms), &stop) {
        Ok(()) => Ok(std::process::ExitCode::from(crate::exit::HOLDS)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            Ok(std::process::ExitCode::from(crate::exit::HOLDS))
        }
        Err(e) => Err(e).with_context(|| format!("mirror-dir {}", args.dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One server round into a buffer.
    fn round(server: &mut Server, src: &Path, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        server.round(src, &mut out).unwrap();
        writeln!(out, "E {n}").unwrap();
        out
    }

    fn same_dirs(src: &Path, dst: &Path) {
        let list = |d: &Path| -> BTreeMap<String, Vec<u8>> {
            fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| {
                    (
                        e.file_name().into_string().unwrap(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(list(src), list(dst));
    }

    /// The inode of `path`.
    fn ino(path: &Path) -> u64 {
        fs::metadata(path).unwrap().ino()
    }

    /// The sink renames a departed worker's files: the mirror renames its
    /// copies (one `M` each, the log's after the data's), keeping their
    /// inodes, and then follows them under the new names.
    #[test]
    fn a_renamed_file_is_renamed_in_the_mirror_and_keeps_its_inode() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (s, d) = (src.path(), dst.path());
        let mut server = Server::default();
        let mut applier = Applier::new(d).unwrap();
        let progress = MirrorProgress::new();
        fs::write(s.join("output.w2"), b"abc").unwrap();
        fs::write(s.join("output.w2.txnlog"), b"3\n").unwrap();
        applier
            .run(&round(&mut server, s, 1)[..], &progress)
            .unwrap();
        let before = (ino(&d.join("output.w2")), ino(&d.join("output.w2.txnlog")));
        fs::rename(s.join("output.w2"), s.join("output.w2.17")).unwrap();
        fs::rename(s.join("output.w2.txnlog"), s.join("output.w2.17.txnlog")).unwrap();
        let frames = round(&mut server, s, 2);
        assert_eq!(
            String::from_utf8_lossy(&frames),
            "M 9 output.w2output.w2.17\nM 16 output.w2.txnlogoutput.w2.17.txnlog\nE 2\n"
        );
        applier.run(&frames[..], &progress).unwrap();
        same_dirs(s, d);
        let after = (
            ino(&d.join("output.w2.17")),
            ino(&d.join("output.w2.17.txnlog")),
        );
        assert_eq!(before, after);
        OpenOptions::new()
            .append(true)
            .open(s.join("output.w2.17"))
            .unwrap()
            .write_all(b"d")
            .unwrap();
        let frames = round(&mut server, s, 3);
        assert_eq!(frames, b"W 1 3 output.w2.17\ndE 3\n".to_vec());
    }

    /// A file renamed between the round's listing and its read is not
    /// deleted in the copy: the next round sends the rename.
    #[test]
    fn a_file_renamed_after_the_listing_is_renamed_next_round_not_deleted() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        let mut server = Server::default();
        fs::write(s.join("out.txnlog"), b"3\n").unwrap();
        let _ = round(&mut server, s, 1);
        // The listing saw `out.txnlog`; it was renamed before the read.
        fs::rename(s.join("out.txnlog"), s.join("out.9.txnlog")).unwrap();
        let mut frames = Vec::new();
        server.sync_file(s, "out.txnlog", &mut frames).unwrap();
        assert!(frames.is_empty(), "{}", String::from_utf8_lossy(&frames));
        assert_eq!(
            String::from_utf8_lossy(&round(&mut server, s, 2)),
            "M 10 out.txnlogout.9.txnlog\nE 2\n"
        );
    }

    /// Keeping inodes (the sink's mirror), a replacement is written into
    /// the existing copy; without, it is renamed over it.
    #[test]
    fn a_replacement_keeps_the_copys_inode_only_when_asked() {
        for keep in [false, true] {
            let dst = tempfile::tempdir().unwrap();
            let d = dst.path();
            let progress = MirrorProgress::new();
            let stream = b"R 6 out\nabcdefE 1\nR 4 out\nabXYE 2\n";
            let mut applier = Applier::new(d).unwrap();
            applier.keep_inodes = keep;
            applier.run(&stream[..18], &progress).unwrap();
            let first = ino(&d.join("out"));
            applier.run(&stream[18..], &progress).unwrap();
            assert_eq!(fs::read(d.join("out")).unwrap(), b"abXY");
            assert_eq!(ino(&d.join("out")) == first, keep, "keep_inodes = {keep}");
        }
        // A large replacement (parts, then a commit) in place.
        let dst = tempfile::tempdir().unwrap();
        let d = dst.path();
        fs::write(d.join("big"), b"0123456789").unwrap();
        let first = ino(&d.join("big"));
        let mut applier = Applier::new(d).unwrap();
        applier.keep_inodes = true;
        let stream = b"P 0 0 big\nP 3 0 big\nabcP 2 3 big\ndeC big\nE 1\n";
        applier.run(&stream[..], &MirrorProgress::new()).unwrap();
        assert_eq!(fs::read(d.join("big")).unwrap(), b"abcde");
        assert_eq!(ino(&d.join("big")), first);
    }

    #[test]
    fn a_bad_rename_frame_is_an_error_naming_it() {
        let dst = tempfile::tempdir().unwrap();
        for bad in [&b"M 9 ab\n"[..], b"M x ab\n", b"M 1 a../x\n", b"M 2 ab\n"] {
            let mut applier = Applier::new(dst.path()).unwrap();
            let e = applier
                .run(bad, &MirrorProgress::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains("mirror frame 1"), "{e}");
        }
    }

    #[test]
    fn rounds_mirror_growth_truncate_rewrite_rename_delete_and_new_files() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (s, d) = (src.path(), dst.path());
        let mut server = Server::default();
        let mut applier = Applier::new(d).unwrap();
        let progress = MirrorProgress::new();
        let mut n = 0;
        let mut step = |server: &mut Server| {
            n += 1;
            let bytes = round(server, s, n);
            applier.run(&bytes[..], &progress).unwrap();
            same_dirs(s, d);
            bytes
        };
        fs::write(s.join("data"), b"hello").unwrap();
        fs::write(s.join("data.txnlog"), b"5\n").unwrap();
        fs::create_dir(s.join("sub")).unwrap();
        fs::write(s.join(".hidden"), b"x").unwrap();
        let first = step(&mut server);
        // Data before the log, then the marker.
        let text = String::from_utf8_lossy(&first);
        let (data, log) = (
            text.find("R 5 data\n").unwrap(),
            text.find("R 2 data.txnlog\n").unwrap(),
        );
        assert!(data < log && text.ends_with("E 1\n"), "{text}");
        assert!(!d.join(".hidden").exists() && !d.join("sub").exists());
        // Nothing changed: only the marker.
        assert_eq!(step(&mut server), b"E 2\n");
        // Growth: the tail only.
        OpenOptions::new()
            .append(true)
            .open(s.join("data"))
            .unwrap()
            .write_all(b" world")
            .unwrap();
        assert_eq!(step(&mut server), b"W 6 5 data\n worldE 3\n".to_vec());
        // Truncate.
        File::options()
            .write(true)
            .open(s.join("data"))
            .unwrap()
            .set_len(7)
            .unwrap();
        assert_eq!(step(&mut server), b"T 7 data\nE 4\n".to_vec());
        // In-place rewrite, same length: a replacement (mtime differs;
        // set it explicitly, coarse clocks may not tick between writes).
        fs::write(s.join("data"), b"HELLO w").unwrap();
        let f = File::options().write(true).open(s.join("data")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(7))
            .unwrap();
        drop(f);
        assert_eq!(step(&mut server), b"R 7 data\nHELLO wE 5\n".to_vec());
        // Replacement by rename (a feeder's status file), and a new file.
        fs::write(s.join("status"), b"one").unwrap();
        step(&mut server);
        fs::write(s.join("status.tmp-x"), b"two!").unwrap();
        fs::rename(s.join("status.tmp-x"), s.join("status")).unwrap();
        fs::write(s.join("later"), b"late").unwrap();
        step(&mut server);
        // Delete.
        fs::remove_file(s.join("later")).unwrap();
        assert_eq!(step(&mut server), b"D later\nE 8\n".to_vec());
        assert_eq!(progress.last_round(), Some(8));
    }

    #[test]
    fn a_cut_back_and_rewritten_tail_within_one_round_is_replaced() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (s, d) = (src.path(), dst.path());
        let mut server = Server::default();
        let mut applier = Applier::new(d).unwrap();
        let progress = MirrorProgress::new();
        fs::write(s.join("out"), b"committed|uncommitted").unwrap();
        applier
            .run(&round(&mut server, s, 1)[..], &progress)
            .unwrap();
        // Rolled back to 10 and rewritten longer than before.
        fs::write(s.join("out"), b"committed|NEW BYTES, LONGER THAN BEFORE").unwrap();
        let bytes = round(&mut server, s, 2);
        assert!(
            bytes.starts_with(b"R "),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        applier.run(&bytes[..], &progress).unwrap();
        same_dirs(s, d);
        // Rolled back and rewritten shorter than before.
        fs::write(s.join("out"), b"committed|other").unwrap();
        applier
            .run(&round(&mut server, s, 3)[..], &progress)
            .unwrap();
        same_dirs(s, d);
        // Rolled back only: a truncate.
        fs::write(s.join("out"), b"committed|other and more").unwrap();
        applier
            .run(&round(&mut server, s, 4)[..], &progress)
            .unwrap();
        File::options()
            .write(true)
            .open(s.join("out"))
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(round(&mut server, s, 5), b"T 10 out\nE 5\n".to_vec());
    }

    #[test]
    fn a_large_file_goes_in_chunks() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..CHUNK * 2 + 123).map(|i| (i % 251) as u8).collect();
        fs::write(src.path().join("big"), &big).unwrap();
        let mut server = Server::default();
        let bytes = round(&mut server, src.path(), 1);
        let progress = MirrorProgress::new();
        apply(&bytes[..], dst.path(), &progress).unwrap();
        assert_eq!(fs::read(dst.path().join("big")).unwrap(), big);
        // In parts to the pending copy, then one rename: never a W.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("P 0 0 big\n"));
        for header in [
            format!("P {CHUNK} 0 big\n"),
            format!("P {CHUNK} {CHUNK} big\n"),
            format!("P 123 {} big\n", 2 * CHUNK),
        ] {
            assert!(text.contains(&header), "no {header}");
        }
        assert!(text.ends_with("C big\nE 1\n") && !text.contains("W "));
        assert_eq!(progress.ended(), Some(Ok(())));
    }

    #[test]
    fn malformed_frames_are_errors_naming_the_frame_and_write_nothing_outside() {
        let cases: &[(&[u8], &str)] = &[
            (b"E 1\nX 1 f\n", "frame 2 (`X 1 f`): unknown frame kind"),
            (
                b"W 3 0 ../x\nabc",
                "frame 1 (`W 3 0 ../x`): bad name `../x`",
            ),
            (b"W 3 0 a/b\nabc", "frame 1 (`W 3 0 a/b`): bad name `a/b`"),
            (b"R 1 ..\nx", "bad name `..`"),
            (b"D .\n", "bad name `.`"),
            (b"D \n", "empty name"),
            (b"R 2 a\0b\nxx", "contains NUL"),
            (
                b"R 10 f\nabc",
                "frame 1 (`R 10 f`): the stream ends after 3 of its 10 payload bytes",
            ),
            (
                b"W 10 0 f\nabc",
                "the stream ends after 3 of its 10 payload bytes",
            ),
            (b"W x 0 f\n", "length `x` is not a number"),
            (b"W 3 f\nabc", "offset `f` is not a number"),
            (b"W 1 18446744073709551615 f\nx", "overflows"),
            (b"T -1 f\n", "length `-1` is not a number"),
            (b"E 2\nE 2\n", "frame 2 (`E 2`): round 2 after round 2"),
            (b"E", "frame 1 (`E`): the stream ends inside the header"),
            (b"Enope\n", "no space after the frame kind"),
            (b"C f\n", "frame 1 (`C f`): cannot rename"),
            (b"P 2 0 ../f\nab", "bad name `../f`"),
            (
                b"P 5 0 g\nab",
                "the stream ends after 2 of its 5 payload bytes",
            ),
        ];
        for (input, want) in cases {
            let parent = tempfile::tempdir().unwrap();
            let dest = parent.path().join("dest");
            let progress = MirrorProgress::new();
            let err = apply(*input, &dest, &progress).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(progress.ended(), Some(Err(err)));
            let outside: Vec<_> = fs::read_dir(parent.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(outside, vec![std::ffi::OsString::from("dest")]);
            let inside = fs::read_dir(&dest).unwrap().filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                (n != "f").then_some(n)
            });
            assert_eq!(inside.count(), 0, "{:?}", String::from_utf8_lossy(input));
        }
        let long = format!("D {}\n", "n".repeat(600));
        let err = apply(
            long.as_bytes(),
            &tempfile::tempdir().unwrap().path().join("d"),
            &MirrorProgress::default(),
        );
        assert!(err.unwrap_err().to_string().contains("header longer than"));
    }

    #[test]
    fn wait_fresh_needs_two_rounds_after_the_call_and_fails_on_end_or_deadline() {
        let progress = MirrorProgress::new();
        progress.publish_round(1);
        assert!(!progress.wait_fresh(Instant::now() + Duration::from_millis(20)));
        let p = Arc::clone(&progress);
        let waiter =
            std::thread::spawn(move || p.wait_fresh(Instant::now() + Duration::from_secs(30)));
        // Publish rounds until the waiter has returned: it must not have
        // returned before two rounds were published after it started.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut published = 1;
        while !waiter.is_finished() && Instant::now() < deadline {
            published += 1;
            progress.publish_round(published);
            let l = progress.lock();
            drop(
                progress
                    .changed
                    .wait_timeout(l, Duration::from_millis(50))
                    .unwrap(),
            );
        }
        assert!(waiter.join().unwrap());
        assert!(published >= 3, "returned after {published} rounds");
        progress.publish_end(Ok(()));
        assert!(!progress.wait_fresh(Instant::now() + Duration::from_secs(30)));
    }

    #[test]
    fn a_directory_that_disappears_is_mirrored_empty_until_it_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        fs::create_dir(&s).unwrap();
        fs::write(s.join("a"), b"1").unwrap();
        fs::write(s.join("a.txnlog"), b"1\n").unwrap();
        let mut server = Server::default();
        round(&mut server, &s, 1);
        fs::remove_dir_all(&s).unwrap();
        assert_eq!(
            round(&mut server, &s, 2),
            b"D a.txnlog\nD a\nE 2\n".to_vec()
        );
        fs::create_dir(&s).unwrap();
        fs::write(s.join("a"), b"2").unwrap();
        assert_eq!(round(&mut server, &s, 3), b"R 1 a\n2E 3\n".to_vec());
    }

    #[test]
    fn an_unfinished_replacement_leaves_no_pending_copy() {
        let dst = tempfile::tempdir().unwrap();
        fs::write(dst.path().join("f"), b"old").unwrap();
        apply(
            &b"P 3 0 f\nnewE 1\n"[..],
            dst.path(),
            &MirrorProgress::default(),
        )
        .unwrap();
        let names: Vec<_> = fs::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        assert_eq!(fs::read(dst.path().join("f")).unwrap(), b"old");
    }

    #[test]
    fn names_are_validated() {
        for ok in ["output.w1", "output.w1.txnlog", "a b", "feeder-1.status"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "a/b",
            "/",
            "a\nb",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(is_log("output.w1.txnlog") && !is_log("output.w1"));
    }
}
