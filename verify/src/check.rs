//! The 1-to-1 passthrough property and the diagnosis of its violations.
//!
//! A key's committed output (its lines of the committed sink output, in
//! commit order; see [`crate::committed`]) must be a byte-exact prefix of the
//! key's input file, or with `complete` the whole of it. This is what
//! `1-to-1-passthrough-verify.sh` checked with `cmp`.
//!
//! On the first difference the found line is located in the input in O(1)
//! through the offset it embeds ([`parse_line_offset`]) and the violation is
//! classed:
//!
//! | class | meaning |
//! |---|---|
//! | `missing` | the found line comes later in the input than the expected one: lines were skipped (also: committed bytes absent from the sink's data file) |
//! | `reordered` | as `missing`, but the expected line does appear later in the output |
//! | `duplicate` | the found line comes earlier in the input: it already appeared |
//! | `corrupt` | the found bytes are not a line of the input |
//! | `extra` | the output goes on past the end of the input |
//! | `incomplete` | (`complete` only) a clean prefix, shorter than the input |
//!
//! [`Mode::AtLeastOnce`] relaxes the property for systems that only promise
//! at-least-once delivery: an exact repeat of a line that was already
//! verified (an earlier input line, byte for byte) is counted in
//! [`KeyStatus::duplicates`] and skipped; loss, reordering and corruption
//! are still violations.
//!
//! [`Mode::WorkQueue`] and [`Mode::WorkQueueAtLeastOnce`] drop the order:
//! every input line must be committed exactly (or at least) once, in any
//! order, and nothing else may be; see [`crate::workqueue`].

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::committed::{CommittedStream, LineOrigin, MissingData, MissingFilePolicy};
use crate::error::VerifyError;
use crate::input::{line_number_of_offset, line_start_of_offset, parse_line_offset, valid_key};
use crate::workqueue::{WorkQueueKey, WorkQueueReport, WorkQueueStatus, DEFAULT_MISSING_GRACE};

/// The kind of a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Input lines were skipped, or committed bytes are gone.
    Missing,
    /// A line that already appeared appears again.
    Duplicate,
    /// A later line came before an earlier one that follows it.
    Reordered,
    /// Bytes that are not a line of the input.
    Corrupt,
    /// Output past the end of the input.
    Extra,
    /// A clean prefix, but not the whole input (only when completeness is required).
    Incomplete,
}

impl Class {
    /// The class's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Missing => "missing",
            Class::Duplicate => "duplicate",
            Class::Reordered => "reordered",
            Class::Corrupt => "corrupt",
            Class::Extra => "extra",
            Class::Incomplete => "incomplete",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guarantee a key's committed output is checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The output is an exact prefix of the input: a duplicate is a violation.
    #[default]
    ExactlyOnce,
    /// Repeats of already-verified lines are counted and skipped; loss,
    /// reordering and corruption are still violations.
    AtLeastOnce,
    /// Every input line exactly once, in any order; nothing else.
    WorkQueue,
    /// Every input line at least once, in any order (repeats counted);
    /// nothing else.
    WorkQueueAtLeastOnce,
}

impl Mode {
    /// The mode's name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ExactlyOnce => "exactly-once",
            Mode::AtLeastOnce => "at-least-once",
            Mode::WorkQueue => "work-queue",
            Mode::WorkQueueAtLeastOnce => "work-queue-at-least-once",
        }
    }

    /// Whether order is dropped ([`crate::workqueue`]).
    pub fn is_work_queue(self) -> bool {
        matches!(self, Mode::WorkQueue | Mode::WorkQueueAtLeastOnce)
    }
}

/// The first place where a key's committed output departs from its input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Routing key.
    #[serde(serialize_with = "ser_key")]
    pub key: u8,
    /// Kind.
    pub class: Class,
    /// Offset in the key's committed output of the first byte that differs
    /// (its length for `incomplete`). In the work-queue modes: where the
    /// first offending line starts (the output's length for `missing`).
    pub output_offset: u64,
    /// 1-based number of the input line expected there. In the work-queue
    /// modes: the input line concerned (0 when the line names none).
    pub input_line: u64,
    /// The input line expected there, without its newline (`None` past the
    /// end of the input).
    pub expected: Option<String>,
    /// The output line found there, without its newline (`None` at the end
    /// of the output).
    pub found: Option<String>,
    /// What the found line is, in words.
    pub detail: String,
    /// The committed bytes that are gone from the sink's data file, when
    /// that is the violation.
    pub missing_data: Option<MissingData>,
    /// Everything a work-queue check found (work-queue modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_queue: Option<WorkQueueReport>,
}

fn ser_key<S: serde::Serializer>(key: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&char::from(*key).to_string())
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = char::from(self.key);
        if let Some(r) = &self.work_queue {
            write!(f, "key {key}: {}", self.class)?;
            if self.input_line > 0 {
                write!(f, " (input line {})", self.input_line)?;
            }
            return write!(f, "\n{r}");
        }
        if let Some(m) = &self.missing_data {
            write!(f, "key {key}: {}: {m}", self.class)?;
            return Ok(());
        }
        writeln!(
            f,
            "key {key}: {} at output byte {} (input line {})",
            self.class, self.output_offset, self.input_line
        )?;
        writeln!(
            f,
            "  expected: {}",
            self.expected.as_deref().unwrap_or("<end of input>")
        )?;
        writeln!(
            f,
            "  found:    {}",
            self.found.as_deref().unwrap_or("<end of output>")
        )?;
        write!(f, "  {}", self.detail)
    }
}

/// Where a key stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyStatus {
    /// Routing key.
    #[serde(serialize_with = "ser_key")]
    pub key: u8,
    /// Input file.
    pub input: PathBuf,
    /// Size of the input file.
    pub input_bytes: u64,
    /// Bytes of committed output for this key.
    pub committed_bytes: u64,
    /// Complete lines of committed output for this key.
    pub committed_lines: u64,
    /// Committed bytes verified as the input's prefix: `committed_bytes`
    /// less skipped duplicates and anything after a violation.
    pub verified_bytes: u64,
    /// Repeated lines skipped ([`Mode::AtLeastOnce`] only; always 0 in
    /// [`Mode::ExactlyOnce`], where a repeat is a violation). In the
    /// work-queue modes: committed copies of lines already committed.
    pub duplicates: u64,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// Line counts of a work-queue check (work-queue modes only; there
    /// `verified_bytes` is the size of the distinct input lines committed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_queue: Option<WorkQueueStatus>,
}

impl KeyStatus {
    /// Whether the property holds.
    pub fn holds(&self) -> bool {
        self.violation.is_none()
    }
}

/// Input bytes kept in memory around the comparison point.
const WINDOW: usize = 1 << 20;

/// Longest line read back for a diagnosis.
const MAX_LINE: usize = 4096;

/// Sequential reader of an input file with random access for diagnoses.
#[derive(Debug)]
struct Input {
    path: PathBuf,
    file: File,
    len: u64,
    buf: Vec<u8>,
    /// Input offset of `buf[0]`.
    buf_start: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
}

impl Input {
    fn open(path: &Path) -> Result<Input, VerifyError> {
        let err = |source| VerifyError::Input {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(err(io::Error::other("not a regular file")));
        }
        Ok(Input {
            path: path.to_owned(),
            file,
            len: meta.len(),
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
        })
    }

    fn err(&self, source: io::Error) -> VerifyError {
        VerifyError::Input {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads up to `want` bytes at `pos` (short only at end of file).
    fn read_at(&self, pos: u64, want: usize) -> Result<Vec<u8>, VerifyError> {
        let want = want.min(self.len.saturating_sub(pos) as usize);
        let mut out = vec![0u8; want];
        let mut got = 0;
        while got < want {
            let n = self
                .file
                .read_at(&mut out[got..], pos + got as u64)
                .map_err(|e| self.err(e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        out.truncate(got);
        Ok(out)
    }

    /// The input bytes `[pos, pos + n)` (fewer at end of file), from the
    /// sequential window.
    fn slice(&mut self, pos: u64, n: usize) -> Result<&[u8], VerifyError> {
        let end = (pos + n as u64).min(self.len);
        let buf_end = self.buf_start + self.buf_len as u64;
        if pos < self.buf_start || end > buf_end {
            self.refill(pos, n)?;
        }
        // Clamped: a read can come up short if the file shrank meanwhile.
        let from = ((pos - self.buf_start) as usize).min(self.buf_len);
        let to = ((end - self.buf_start) as usize).clamp(from, self.buf_len);
        Ok(&self.buf[from..to])
    }

    /// Reads the window starting at `pos`, at least `n` bytes (or to the
    /// end of the file), reusing the buffer.
    fn refill(&mut self, pos: u64, n: usize) -> Result<(), VerifyError> {
        let want = WINDOW.max(n).min(self.len.saturating_sub(pos) as usize);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut got = 0;
        while got < want {
            match self
                .file
                .read_at(&mut self.buf[got..want], pos + got as u64)
            {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) => return Err(self.err(e)),
            }
        }
        self.buf_start = pos;
        self.buf_len = got;
        Ok(())
    }

    /// The input line starting at `pos`, with its newline if it has one.
    fn line_at(&self, pos: u64) -> Result<Vec<u8>, VerifyError> {
        let mut bytes = self.read_at(pos, MAX_LINE)?;
        if let Some(nl) = memchr::memchr(b'\n', &bytes) {
            bytes.truncate(nl + 1);
        }
        Ok(bytes)
    }
}

/// Display form of a line: without its newline, lossy UTF-8.
pub(crate) fn show(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Compares one key's committed output, fed line by line, with its input.
#[derive(Debug)]
pub struct KeyChecker {
    key: u8,
    input: Input,
    /// Output bytes verified to equal the input.
    pos: u64,
    /// Complete lines among them.
    lines: u64,
    committed_bytes: u64,
    committed_lines: u64,
    violation: Option<Violation>,
    /// For a `missing` violation: the expected line, to notice it later.
    awaited: Option<Vec<u8>>,
    mode: Mode,
    duplicates: u64,
    /// The work-queue check, once the mode is a work-queue mode (it then
    /// takes every line).
    wq: Option<Box<WorkQueueKey>>,
    /// Grace of the work-queue check, in seconds.
    grace: f64,
}

impl KeyChecker {
    /// Opens the input file of `key`.
    pub fn new(key: u8, input: &Path) -> Result<KeyChecker, VerifyError> {
        Ok(KeyChecker {
            key,
            input: Input::open(input)?,
            pos: 0,
            lines: 0,
            committed_bytes: 0,
            committed_lines: 0,
            violation: None,
            awaited: None,
            mode: Mode::ExactlyOnce,
            duplicates: 0,
            wq: None,
            grace: DEFAULT_MISSING_GRACE,
        })
    }

    /// Checks against `mode` from now on. Lines already verified as an exact
    /// prefix count as committed once when a work-queue mode starts; once a
    /// key is checked in a work-queue mode it stays in one (switching back to
    /// an ordered mode only changes the work-queue mode's name).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        if let Some(wq) = &mut self.wq {
            if mode.is_work_queue() {
                wq.set_mode(mode);
            }
        }
    }

    /// Seconds an input line may stay uncommitted after a later line was
    /// committed before the work-queue modes report it missing.
    pub fn set_missing_grace(&mut self, seconds: f64) {
        self.grace = seconds;
        if let Some(wq) = &mut self.wq {
            wq.set_grace(seconds);
        }
    }

    /// The work-queue check, started (the input's last line read) on first
    /// use in a work-queue mode.
    fn work_queue(&mut self) -> Result<Option<&mut WorkQueueKey>, VerifyError> {
        if self.wq.is_none() && self.mode.is_work_queue() {
            let mut wq = WorkQueueKey::new(self.key, &self.input.path, self.mode)?;
            wq.set_grace(self.grace);
            if self.violation.is_none() && self.lines > 0 {
                wq.seed_prefix(self.pos, self.lines);
            }
            self.wq = Some(Box::new(wq));
        }
        Ok(self.wq.as_deref_mut())
    }

    /// Starts a check at `now` (Unix seconds): work-queue modes only.
    fn begin(&mut self, now: f64) -> Result<(), VerifyError> {
        if let Some(wq) = self.work_queue()? {
            wq.begin(now);
        }
        Ok(())
    }

    /// Ends a check: work-queue modes find the lines missing by now.
    fn end(&mut self) -> Result<(), VerifyError> {
        if let Some(wq) = self.work_queue()? {
            wq.end()?;
        }
        Ok(())
    }

    /// The routing key.
    pub fn key(&self) -> u8 {
        self.key
    }

    /// Takes the next committed output line of this key (with its newline,
    /// unless the output ends inside it).
    pub fn feed(&mut self, line: &[u8]) -> Result<(), VerifyError> {
        self.feed_from(line, None)
    }

    /// [`KeyChecker::feed`], with where the line was read (the work-queue
    /// modes name the sink file and use the commit time).
    pub fn feed_from(
        &mut self,
        line: &[u8],
        origin: Option<&LineOrigin<'_>>,
    ) -> Result<(), VerifyError> {
        if let Some(wq) = self.work_queue()? {
            return wq.feed(line, origin);
        }
        self.committed_bytes += line.len() as u64;
        if line.ends_with(b"\n") {
            self.committed_lines += 1;
        }
        if self.violation.is_some() {
            if self.awaited.as_deref() == Some(line) {
                self.awaited = None;
                if let Some(v) = &mut self.violation {
                    v.class = Class::Reordered;
                    v.detail = format!(
                        "{}; the expected line appears later in the output",
                        v.detail
                    );
                }
            }
            return Ok(());
        }
        let pos = self.pos;
        let have = self.input.slice(pos, line.len())?;
        if have == line {
            self.pos += line.len() as u64;
            self.lines += u64::from(line.ends_with(b"\n"));
            return Ok(());
        }
        let diff = have
            .iter()
            .zip(line)
            .position(|(a, b)| a != b)
            .unwrap_or(have.len());
        if self.mode == Mode::AtLeastOnce && self.is_repeat(line)? {
            self.duplicates += 1;
            return Ok(());
        }
        self.violation = Some(self.diagnose(line, diff)?);
        Ok(())
    }

    /// Whether `line` is, byte for byte, an input line of this key that
    /// was already verified (it starts before the current position).
    fn is_repeat(&self, line: &[u8]) -> Result<bool, VerifyError> {
        let Some((key, offset)) = parse_line_offset(line) else {
            return Ok(false);
        };
        let at = line_start_of_offset(offset);
        if key != self.key || at >= self.pos {
            return Ok(false);
        }
        Ok(self.input.read_at(at, line.len())? == line)
    }

    /// Records committed bytes lost from the sink, unless a violation was
    /// already found.
    pub fn data_missing(&mut self, m: &MissingData) {
        if let Some(wq) = &mut self.wq {
            wq.data_missing(m);
            return;
        }
        if self.violation.is_none() {
            self.violation = Some(Violation {
                key: self.key,
                class: Class::Missing,
                output_offset: self.committed_bytes,
                input_line: self.lines + 1,
                expected: None,
                found: None,
                detail: m.to_string(),
                missing_data: Some(m.clone()),
                work_queue: None,
            });
        }
    }

    /// Requires the whole input: a clean but short output is `incomplete`.
    pub fn require_complete(&mut self) -> Result<(), VerifyError> {
        if let Some(wq) = self.work_queue()? {
            return wq.require_complete();
        }
        if self.violation.is_none() && self.pos < self.input.len {
            let expected = self.input.line_at(self.pos)?;
            self.violation = Some(Violation {
                key: self.key,
                class: Class::Incomplete,
                output_offset: self.committed_bytes,
                input_line: self.lines + 1,
                expected: Some(show(&expected)),
                found: None,
                detail: format!(
                    "the output ends after {} of {} input bytes",
                    self.pos, self.input.len
                ),
                missing_data: None,
                work_queue: None,
            });
        }
        Ok(())
    }

    /// Heap bytes held by the work-queue check of this key (its bitmap,
    /// marks and read window; 0 in the ordered modes).
    pub fn work_queue_heap_bytes(&self) -> usize {
        self.wq.as_ref().map_or(0, |wq| wq.heap_bytes())
    }

    /// Where the key stands.
    pub fn status(&self) -> KeyStatus {
        if let Some(wq) = &self.wq {
            let (path, input_bytes) = wq.input();
            let (committed_bytes, committed_lines, verified_bytes, duplicates) = wq.counts();
            return KeyStatus {
                key: self.key,
                input: path.to_owned(),
                input_bytes,
                committed_bytes,
                committed_lines,
                verified_bytes,
                duplicates,
                violation: wq.violation(),
                work_queue: Some(wq.status()),
            };
        }
        KeyStatus {
            key: self.key,
            input: self.input.path.clone(),
            input_bytes: self.input.len,
            committed_bytes: self.committed_bytes,
            committed_lines: self.committed_lines,
            verified_bytes: self.pos,
            duplicates: self.duplicates,
            violation: self.violation.clone(),
            work_queue: None,
        }
    }

    /// Classes the difference found `diff` bytes into `line`.
    fn diagnose(&mut self, line: &[u8], diff: usize) -> Result<Violation, VerifyError> {
        // Where the line starts in the key's output (it was counted already).
        let output_offset = self.committed_bytes - line.len() as u64 + diff as u64;
        let input_line = self.lines + 1;
        let mut v = Violation {
            key: self.key,
            class: Class::Corrupt,
            output_offset,
            input_line,
            expected: None,
            found: Some(show(line)),
            detail: String::new(),
            missing_data: None,
            work_queue: None,
        };
        if self.pos + diff as u64 >= self.input.len {
            v.class = Class::Extra;
            v.detail = format!(
                "the output goes on past the end of the input ({} bytes)",
                self.input.len
            );
            return Ok(v);
        }
        let expected = self.input.line_at(self.pos)?;
        v.expected = Some(show(&expected));
        let Some((_, want)) = parse_line_offset(&expected) else {
            v.detail =
                "the expected input line carries no offset: cannot class the difference".into();
            return Ok(v);
        };
        let found = match parse_line_offset(line) {
            Some((k, off)) if k == self.key => off,
            _ => {
                v.detail = "the found line is not a line of the input".into();
                return Ok(v);
            }
        };
        let at = line_start_of_offset(found);
        if at >= self.input.len || self.input.read_at(at, line.len())? != line {
            v.detail = format!(
                "the found line is not a line of the input (it claims offset {found:o}, input line {})",
                line_number_of_offset(found)
            );
            return Ok(v);
        }
        let found_line = line_number_of_offset(found);
        if found > want {
            v.class = Class::Missing;
            v.detail = format!(
                "the found line is input line {found_line}: {} input line(s) skipped",
                found_line - line_number_of_offset(want)
            );
            self.awaited = Some(expected);
        } else if found < want {
            v.class = Class::Duplicate;
            v.detail = format!(
                "the found line is input line {found_line}, which already appeared at output byte {at}"
            );
        } else {
            v.detail = "the found line carries the expected offset but different bytes".into();
        }
        Ok(v)
    }
}

/// Routes committed lines to the checkers of their keys.
#[derive(Debug)]
pub(crate) struct Checkers {
    pub(crate) checkers: Vec<KeyChecker>,
    route: [u8; 256],
}

/// Marks a byte that is no checked key (keys are ASCII, so at most 62 checkers).
const NO_KEY: u8 = u8::MAX;

impl Checkers {
    /// One checker per `(key, input)`.
    pub(crate) fn new(
        inputs: impl IntoIterator<Item = (u8, PathBuf)>,
    ) -> Result<Checkers, VerifyError> {
        let mut checkers: Vec<KeyChecker> = Vec::new();
        let mut route = [NO_KEY; 256];
        for (key, path) in inputs {
            if !valid_key(key) {
                return Err(VerifyError::BadKey(char::from(key)));
            }
            if route[usize::from(key)] != NO_KEY {
                return Err(VerifyError::DuplicateKey(char::from(key)));
            }
            route[usize::from(key)] = checkers.len() as u8;
            checkers.push(KeyChecker::new(key, &path)?);
        }
        Ok(Checkers { checkers, route })
    }

    /// Reads what was committed since last time into the checkers; `now`
    /// (Unix seconds) is the time the work-queue modes judge missing lines
    /// at.
    pub(crate) fn advance(
        &mut self,
        stream: &mut CommittedStream,
        final_read: bool,
        now: f64,
    ) -> Result<(), VerifyError> {
        for c in &mut self.checkers {
            c.begin(now)?;
        }
        let mut failure = None;
        let Checkers { checkers, route } = self;
        let mut on_line = |line: &[u8], origin: &LineOrigin<'_>| {
            let i = route[usize::from(line[0])];
            if i != NO_KEY && failure.is_none() {
                if let Err(e) = checkers[usize::from(i)].feed_from(line, Some(origin)) {
                    failure = Some(e);
                }
            }
        };
        let missing = stream
            .advance_with_origin(final_read, &mut on_line)?
            .cloned();
        if final_read {
            stream.flush_partial_lines_with_origin(&mut on_line);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(m) = missing {
            for c in checkers.iter_mut() {
                c.data_missing(&m);
            }
        }
        for c in checkers.iter_mut() {
            c.end()?;
        }
        Ok(())
    }

    /// Sets every checker's mode.
    pub(crate) fn set_mode(&mut self, mode: Mode) {
        for c in &mut self.checkers {
            c.set_mode(mode);
        }
    }

    /// Sets every checker's grace for missing lines (work-queue modes).
    pub(crate) fn set_missing_grace(&mut self, seconds: f64) {
        for c in &mut self.checkers {
            c.set_missing_grace(seconds);
        }
    }

    /// Requires the whole input of `key` from now on; its status after.
    pub(crate) fn require_complete(&mut self, key: u8) -> Result<Option<KeyStatus>, VerifyError> {
        let Some(c) = self.checkers.iter_mut().find(|c| c.key == key) else {
            return Ok(None);
        };
        c.require_complete()?;
        Ok(Some(c.status()))
    }

    /// Heap bytes held by the work-queue checks.
    pub(crate) fn work_queue_heap_bytes(&self) -> usize {
        self.checkers
            .iter()
            .map(KeyChecker::work_queue_heap_bytes)
            .sum()
    }

    pub(crate) fn statuses(&self) -> Vec<KeyStatus> {
        self.checkers.iter().map(KeyChecker::status).collect()
    }
}

/// Checks several keys at once against the sink directory in one pass over
/// the committed output. With `complete`, each key's output must be its
/// whole input.
pub fn check_keys(
    sink_dir: &Path,
    inputs: impl IntoIterator<Item = (u8, PathBuf)>,
    complete: bool,
) -> Result<Vec<KeyStatus>, VerifyError> {
    check_keys_with_mode(sink_dir, inputs, complete, Mode::ExactlyOnce)
}

/// [`check_keys`] against the guarantee `mode` (work-queue modes with the
/// default grace, judged at the current time).
pub fn check_keys_with_mode(
    sink_dir: &Path,
    inputs: impl IntoIterator<Item = (u8, PathBuf)>,
    complete: bool,
    mode: Mode,
) -> Result<Vec<KeyStatus>, VerifyError> {
    let opts = CheckOptions {
        complete,
        mode,
        ..CheckOptions::default()
    };
    check_keys_with(sink_dir, inputs, &opts)
}

/// How a point-in-time check is made.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Require the whole input.
    pub complete: bool,
    /// The guarantee checked.
    pub mode: Mode,
    /// Work-queue modes: seconds a line may stay uncommitted after a later
    /// line was committed before it is missing.
    pub missing_grace: f64,
    /// Work-queue modes: the time (Unix seconds) missing lines are judged
    /// at; `None` for the current time.
    pub now: Option<f64>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            complete: false,
            mode: Mode::ExactlyOnce,
            missing_grace: DEFAULT_MISSING_GRACE,
            now: None,
        }
    }
}

/// The current time in Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// [`check_keys`] with every option.
pub fn check_keys_with(
    sink_dir: &Path,
    inputs: impl IntoIterator<Item = (u8, PathBuf)>,
    opts: &CheckOptions,
) -> Result<Vec<KeyStatus>, VerifyError> {
    let mut checkers = Checkers::new(inputs)?;
    checkers.set_mode(opts.mode);
    checkers.set_missing_grace(opts.missing_grace);
    let mut stream = CommittedStream::new(sink_dir, MissingFilePolicy::Report);
    checkers.advance(&mut stream, true, opts.now.unwrap_or_else(unix_now))?;
    if opts.complete {
        for c in &mut checkers.checkers {
            c.require_complete()?;
        }
    }
    Ok(checkers.statuses())
}

/// Checks one key (see [`check_keys`]).
pub fn check_key(
    sink_dir: &Path,
    key: u8,
    input: &Path,
    complete: bool,
) -> Result<KeyStatus, VerifyError> {
    let mut v = check_keys(sink_dir, [(key, input.to_owned())], complete)?;
    Ok(v.remove(0))
}
