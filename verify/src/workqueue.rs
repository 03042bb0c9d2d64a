//! Work-queue verification: every input line of a key must appear in the
//! key's committed output exactly once ([`Mode::WorkQueue`]) or at least once
//! ([`Mode::WorkQueueAtLeastOnce`]), in any order, and nothing that is not
//! an input line may appear.
//!
//! **No copy of the input in memory.** Every input line embeds its offset
//! ([`crate::input::parse_line_offset`]), so a committed line names the
//! input line it claims to be; that line is located in O(1)
//! ([`crate::input::line_start_of_offset`]) and its bytes read back from the
//! input file to confirm it. The state per key is a bitmap with one bit per
//! input line (seen or not), a few counters, the first few examples of each
//! kind of problem, and a short list of "high marks" (below). For the
//! default input (250,001 lines per key) the bitmap is 31 KB per key; in
//! general it is one bit per line, about 2.6 MB per GB of input (lines are
//! 49–50 bytes). A 64 KiB read window per key makes in-order output cheap
//! (it moves forward when a line follows the previous one within 4 KiB);
//! other lines cost one `pread` of the line each.
//!
//! **Missing lines.** Order is not promised, so a line that is not committed
//! yet may still come. A line of a key is *missing at time `now`* when it is
//! not committed and some line that comes **later** in the key's input was
//! committed (the time of its `2-ok` record) more than `grace` seconds
//! before `now`. With in-order output there are never holes, so nothing is
//! ever missing early. The high marks record, per commit second, the
//! highest input line committed; once a mark is older than the grace, every
//! uncommitted line below it is missing. The marks are kept for `grace`
//! seconds only (at most one per second, and never more than
//! [`MAX_MARKS`]), so the list is bounded too. Commit times are rounded up
//! to the next whole second, so a line is reported missing at most a second
//! later than the grace says.
//!
//! With completeness required (the final check, `--complete`), every input
//! line not committed is missing, whatever the time.
//!
//! A line that turns up after it was reported missing (by an earlier
//! check of an [`IncrementalVerifier`](crate::incremental::IncrementalVerifier))
//! is counted as *late*; the violation stays.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::{show, Class, Mode, Violation};
use crate::committed::{LineOrigin, MissingData};
use crate::error::VerifyError;
use crate::input::{file_len, line_count, line_start_of_offset, parse_line_offset};

/// Default grace, in seconds, before an uncommitted line with later lines
/// committed is reported missing.
pub const DEFAULT_MISSING_GRACE: f64 = 60.0;

/// Examples kept of each kind of problem.
pub const EXAMPLES: usize = 5;

/// Most high marks kept per key: beyond it the two oldest are merged (which
/// can only report a line missing later, never earlier).
pub const MAX_MARKS: usize = 1024;

/// Input bytes kept in memory per key for in-order reads.
const WINDOW: usize = 64 * 1024;

/// A line this close after the previous one read, outside the window,
/// refills the window (in-order access); farther ones are read alone.
const NEAR: u64 = 4096;

/// Longest line read back for a diagnosis.
const MAX_LINE: usize = 4096;

/// An input line named in a diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineNote {
    /// 1-based input line number.
    pub input_line: u64,
    /// Byte position of the line in the input file.
    pub input_byte: u64,
    /// The line, without its newline.
    pub text: String,
    /// The data file where this copy was committed (duplicates and late
    /// lines; `None` for a line never committed).
    pub sink_file: Option<PathBuf>,
    /// Byte offset of this copy in `sink_file`.
    pub sink_offset: Option<u64>,
}

impl fmt::Display for LineNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input line {} (input byte {})",
            self.input_line, self.input_byte
        )?;
        if let (Some(file), Some(at)) = (&self.sink_file, self.sink_offset) {
            write!(f, " at {} byte {at}", file.display())?;
        }
        write!(f, ": {}", self.text)
    }
}

/// A committed line that is not a line of the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraneous {
    /// `corrupt` (not an input line) or `extra` (claims an offset past the
    /// end of the input).
    pub class: Class,
    /// The data file it was committed in.
    pub sink_file: Option<PathBuf>,
    /// Its byte offset in `sink_file`.
    pub sink_offset: Option<u64>,
    /// Its byte offset in the key's committed output.
    pub output_offset: u64,
    /// The line, without its newline (lossy UTF-8).
    pub text: String,
    /// Why it is not an input line.
    pub why: String,
}

impl fmt::Display for Extraneous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.sink_file, self.sink_offset) {
            (Some(file), Some(at)) => write!(f, "{} byte {at}", file.display())?,
            _ => write!(f, "<unknown sink file>")?,
        }
        write!(
            f,
            " (output byte {}): {}: {}: {}",
            self.output_offset, self.class, self.why, self.text
        )
    }
}

/// How many of something were found, and the first few.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found<T> {
    /// How many.
    pub count: u64,
    /// The first [`EXAMPLES`].
    pub first: Vec<T>,
}

impl<T> Default for Found<T> {
    fn default() -> Self {
        Found {
            count: 0,
            first: Vec::new(),
        }
    }
}

impl<T> Found<T> {
    fn add(&mut self, note: impl FnOnce() -> T) {
        self.count += 1;
        if self.first.len() < EXAMPLES {
            self.first.push(note());
        }
    }
}

/// Where a key stands in a work-queue mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkQueueStatus {
    /// Lines of the input file.
    pub input_lines: u64,
    /// Distinct input lines committed.
    pub distinct_lines: u64,
    /// Input lines not committed while a later line of the input is: not
    /// (yet) missing, but waited for.
    pub holes: u64,
    /// Input lines reported missing (see the module documentation).
    pub missing: u64,
    /// The grace in seconds.
    pub missing_grace: f64,
}

/// What a work-queue violation found, for the diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkQueueReport {
    /// The mode checked.
    pub mode: Mode,
    /// Lines of the input file.
    pub input_lines: u64,
    /// Distinct input lines committed.
    pub distinct_lines: u64,
    /// Committed copies of lines already committed (a violation only in
    /// [`Mode::WorkQueue`]).
    pub duplicates: Found<LineNote>,
    /// Input lines missing.
    pub missing: Found<LineNote>,
    /// Whether `missing` counts every uncommitted line (completeness
    /// required) rather than those missing for longer than the grace.
    pub missing_final: bool,
    /// The grace in seconds.
    pub missing_grace: f64,
    /// Lines committed only after an earlier check reported them missing.
    pub late: Found<LineNote>,
    /// Committed lines that are not lines of the input.
    pub extraneous: Found<Extraneous>,
    /// Committed bytes gone from a data file.
    pub missing_data: Option<MissingData>,
}

impl WorkQueueReport {
    /// The mode's promise, in words.
    fn promise(&self) -> &'static str {
        match self.mode {
            Mode::WorkQueueAtLeastOnce => "every input line at least once, in any order",
            _ => "every input line exactly once, in any order",
        }
    }

    /// A one-line summary of the counts.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.duplicates.count > 0 {
            let allowed = if self.mode == Mode::WorkQueueAtLeastOnce {
                " (allowed)"
            } else {
                ""
            };
            parts.push(format!("{} duplicate(s){allowed}", self.duplicates.count));
        }
        if self.missing.count > 0 {
            parts.push(format!("{} missing", self.missing.count));
        }
        if self.late.count > 0 {
            parts.push(format!("{} late", self.late.count));
        }
        if self.extraneous.count > 0 {
            parts.push(format!("{} extraneous", self.extraneous.count));
        }
        if self.missing_data.is_some() {
            parts.push("committed bytes missing from a data file".into());
        }
        format!(
            "{}: {} of {} input lines committed; {}",
            self.mode.as_str(),
            self.distinct_lines,
            self.input_lines,
            parts.join(", ")
        )
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, found: &Found<T>) -> fmt::Result {
    for x in &found.first {
        write!(f, "\n    {x}")?;
    }
    if found.count > found.first.len() as u64 {
        write!(
            f,
            "\n    ... and {} more",
            found.count - found.first.len() as u64
        )?;
    }
    Ok(())
}

impl fmt::Display for WorkQueueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  ({}: {}; {} of {} input lines committed)",
            self.mode.as_str(),
            self.promise(),
            self.distinct_lines,
            self.input_lines
        )?;
        if let Some(m) = &self.missing_data {
            write!(f, "\n  missing data: {m}")?;
        }
        if self.extraneous.count > 0 {
            write!(
                f,
                "\n  extraneous: {} committed line(s) that are not lines of the input:",
                self.extraneous.count
            )?;
            list(f, &self.extraneous)?;
        }
        if self.duplicates.count > 0 {
            let what = if self.mode == Mode::WorkQueueAtLeastOnce {
                "counted, allowed in this mode"
            } else {
                "each a violation"
            };
            write!(
                f,
                "\n  duplicate: {} committed copies of input lines already committed ({what}):",
                self.duplicates.count
            )?;
            list(f, &self.duplicates)?;
        }
        if self.missing.count > 0 {
            if self.missing_final {
                write!(
                    f,
                    "\n  missing: {} input line(s) never committed (the whole input is required):",
                    self.missing.count
                )?;
            } else {
                write!(
                    f,
                    "\n  missing: {} input line(s) not committed although a later input line was committed more than {}s before:",
                    self.missing.count, self.missing_grace
                )?;
            }
            list(f, &self.missing)?;
        }
        if self.late.count > 0 {
            write!(
                f,
                "\n  late: {} input line(s) committed only after being reported missing:",
                self.late.count
            )?;
            list(f, &self.late)?;
        }
        Ok(())
    }
}

/// An input file read by line offset, without holding it in memory.
#[derive(Debug)]
struct InputLines {
    path: PathBuf,
    file: File,
    len: u64,
    /// Source bytes the file was made from: the offset of its last line.
    source_bytes: u64,
    /// Lines in the file.
    lines: u64,
    window: Vec<u8>,
    /// Input offset of `window[0]`.
    win_start: u64,
    /// End of the last line compared.
    last_end: u64,
    scratch: Vec<u8>,
}

impl InputLines {
    fn open(path: &Path, key: u8) -> Result<InputLines, VerifyError> {
        let err = |source| VerifyError::Input {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(err(io::Error::other("not a regular file")));
        }
        let len = meta.len();
        let bad = |reason: String| VerifyError::InputFormat {
            path: path.to_owned(),
            reason,
        };
        // The last line is the key and the final offset: `A17204400\n`.
        let tail_len = len.min(32) as usize;
        let mut tail = vec![0u8; tail_len];
        file.read_exact_at(&mut tail, len - tail_len as u64)
            .map_err(err)?;
        let Some(body) = tail.strip_suffix(b"\n") else {
            return Err(bad(
                "it does not end with a newline (work-queue modes need a whole input file as create-input-files writes it)".into(),
            ));
        };
        let last = match memchr::memrchr(b'\n', body) {
            Some(nl) => &body[nl + 1..],
            None if len as usize == tail_len => body,
            None => {
                return Err(bad(format!(
                "its last line is longer than {tail_len} bytes, so it is not the final offset line"
            )))
            }
        };
        let source_bytes = match parse_line_offset(last) {
            Some((k, off)) if k == key && !last.contains(&b' ') => off,
            _ => {
                return Err(bad(format!(
                    "its last line {:?} is not key {}'s final offset line (the key and the octal offset, as create-input-files writes)",
                    show(last),
                    char::from(key)
                )))
            }
        };
        if file_len(source_bytes) != len {
            return Err(bad(format!(
                "its last line says {source_bytes} source bytes, which make a {}-byte file, but it is {len} bytes long",
                file_len(source_bytes)
            )));
        }
        Ok(InputLines {
            path: path.to_owned(),
            file,
            len,
            source_bytes,
            lines: line_count(source_bytes),
            window: Vec::new(),
            win_start: 0,
            last_end: 0,
            scratch: Vec::new(),
        })
    }

    fn err(&self, source: io::Error) -> VerifyError {
        VerifyError::Input {
            path: self.path.clone(),
            source,
        }
    }

    /// The 0-based index of the line whose offset field is `offset`, if
    /// the input has such a line.
    fn index_of(&self, offset: u64) -> Option<u64> {
        if offset == self.source_bytes {
            Some(self.lines - 1)
        } else if offset % 16 == 0 && offset < self.source_bytes {
            Some(offset / 16)
        } else {
            None
        }
    }

    /// The offset field of the line at `index`.
    fn offset_of(&self, index: u64) -> u64 {
        if index + 1 == self.lines {
            self.source_bytes
        } else {
            index * 16
        }
    }

    /// Reads `[pos, pos + buf.len())`, short only at the end of the file.
    fn pread(&self, pos: u64, buf: &mut [u8]) -> Result<usize, VerifyError> {
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], pos + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(got)
    }

    /// Whether the input holds exactly `bytes` at `pos`.
    fn holds_at(&mut self, pos: u64, bytes: &[u8]) -> Result<bool, VerifyError> {
        let end = pos.saturating_add(bytes.len() as u64);
        if end > self.len {
            return Ok(false);
        }
        let last_end = std::mem::replace(&mut self.last_end, end);
        let win_end = self.win_start + self.window.len() as u64;
        if pos >= self.win_start && end <= win_end {
            let from = (pos - self.win_start) as usize;
            return Ok(&self.window[from..from + bytes.len()] == bytes);
        }
        let in_order = pos >= last_end && pos - last_end <= NEAR;
        if (self.window.is_empty() || in_order) && bytes.len() <= WINDOW {
            // In-order reading: move the window forward.
            let want = (WINDOW as u64).min(self.len - pos) as usize;
            let mut window = std::mem::take(&mut self.window);
            window.resize(want, 0);
            let got = self.pread(pos, &mut window)?;
            window.truncate(got);
            self.window = window;
            self.win_start = pos;
            return Ok(self.window.get(..bytes.len()) == Some(bytes));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(bytes.len(), 0);
        let got = self.pread(pos, &mut scratch)?;
        let same = &scratch[..got] == bytes;
        self.scratch = scratch;
        Ok(same)
    }

    /// The input line starting at `pos`, without its newline (at most
    /// [`MAX_LINE`] bytes).
    fn line_at(&self, pos: u64) -> Result<String, VerifyError> {
        let mut buf = vec![0u8; MAX_LINE.min(self.len.saturating_sub(pos) as usize)];
        let got = self.pread(pos, &mut buf)?;
        buf.truncate(got);
        if let Some(nl) = memchr::memchr(b'\n', &buf) {
            buf.truncate(nl);
        }
        Ok(show(&buf))
    }

    /// A note naming the line at `index`.
    fn note(&self, index: u64, origin: Option<&LineOrigin<'_>>) -> Result<LineNote, VerifyError> {
        let input_byte = line_start_of_offset(self.offset_of(index));
        Ok(LineNote {
            input_line: index + 1,
            input_byte,
            text: self.line_at(input_byte)?,
            sink_file: origin.map(|o| o.data_file.to_owned()),
            sink_offset: origin.map(|o| o.offset),
        })
    }
}

/// The first problem found: what the violation is classed as.
#[derive(Debug, Clone, PartialEq)]
struct First {
    class: Class,
    output_offset: u64,
    input_line: u64,
    expected: Option<String>,
    found: Option<String>,
}

/// One key's work-queue check.
#[derive(Debug)]
pub(crate) struct WorkQueueKey {
    key: u8,
    mode: Mode,
    input: InputLines,
    /// One bit per input line: committed at least once.
    seen: Vec<u64>,
    distinct_lines: u64,
    distinct_bytes: u64,
    /// Lines `[0, contiguous)` are all committed.
    contiguous: u64,
    /// One past the highest input line committed.
    high: u64,
    /// High marks younger than the grace: `(commit second, high)`, both
    /// strictly increasing.
    marks: VecDeque<(f64, u64)>,
    /// Every uncommitted line below this is missing.
    settled: u64,
    /// `settled` as of the end of the last check: lines below it that were
    /// not committed then were reported missing.
    reported: u64,
    /// Marks before this time are settled (now - grace).
    cutoff: f64,
    grace: f64,
    complete: bool,
    committed_bytes: u64,
    committed_lines: u64,
    duplicates: Found<LineNote>,
    extraneous: Found<Extraneous>,
    late: Found<LineNote>,
    /// Missing lines as of the last check.
    missing: Found<LineNote>,
    missing_data: Option<MissingData>,
    first: Option<First>,
}

impl WorkQueueKey {
    /// Opens the input file of `key` and reads its last line to learn how
    /// many lines it has.
    pub(crate) fn new(key: u8, input: &Path, mode: Mode) -> Result<WorkQueueKey, VerifyError> {
        let input = InputLines::open(input, key)?;
        let words = input.lines.div_ceil(64) as usize;
        Ok(WorkQueueKey {
            key,
            mode,
            input,
            seen: vec![0; words],
            distinct_lines: 0,
            distinct_bytes: 0,
            contiguous: 0,
            high: 0,
            marks: VecDeque::new(),
            settled: 0,
            reported: 0,
            cutoff: f64::NEG_INFINITY,
            grace: DEFAULT_MISSING_GRACE,
            complete: false,
            committed_bytes: 0,
            committed_lines: 0,
            duplicates: Found::default(),
            extraneous: Found::default(),
            late: Found::default(),
            missing: Found::default(),
            missing_data: None,
            first: None,
        })
    }

    /// Marks input lines `[0, lines)` (`bytes` bytes) committed once: the exact prefix already
    /// verified before the mode was switched to a work-queue mode.
    pub(crate) fn seed_prefix(&mut self, bytes: u64, lines: u64) {
        for i in 0..lines.min(self.input.lines) {
            self.set(i);
        }
        self.distinct_lines = lines.min(self.input.lines);
        self.distinct_bytes = bytes;
        self.committed_bytes = bytes;
        self.committed_lines = lines;
        self.high = self.distinct_lines;
        self.contiguous = 0;
        self.advance_contiguous();
    }

    pub(crate) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    pub(crate) fn set_grace(&mut self, grace: f64) {
        self.grace = grace;
    }

    fn is_set(&self, i: u64) -> bool {
        self.seen[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u64) {
        self.seen[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Starts a check at `now` (Unix seconds): marks older than the grace
    /// settle as they come.
    pub(crate) fn begin(&mut self, now: f64) {
        self.cutoff = now - self.grace;
    }

    fn problem(&mut self, first: impl FnOnce() -> First) {
        if self.first.is_none() {
            self.first = Some(first());
        }
    }

    /// Takes the next committed line of this key.
    pub(crate) fn feed(
        &mut self,
        line: &[u8],
        origin: Option<&LineOrigin<'_>>,
    ) -> Result<(), VerifyError> {
        let output_offset = self.committed_bytes;
        self.committed_bytes += line.len() as u64;
        let whole = line.ends_with(b"\n");
        if whole {
            self.committed_lines += 1;
        }
        let claimed = parse_line_offset(line).filter(|&(k, _)| k == self.key);
        let index = claimed.and_then(|(_, off)| self.input.index_of(off));
        let at = index.map(|i| line_start_of_offset(self.input.offset_of(i)));
        let real = match at {
            // A torn last line (only handed over by the final check) passes
            // if it is the start of its input line: it is not counted.
            Some(at) if !whole => {
                if self.input.holds_at(at, line)? {
                    return Ok(());
                }
                false
            }
            Some(at) => self.input.holds_at(at, line)?,
            None => false,
        };
        let Some(i) = index.filter(|_| real) else {
            let (class, why) = match claimed {
                Some((_, off)) if off > self.input.source_bytes => (
                    Class::Extra,
                    format!(
                        "claims offset {off:07o}, past the end of the input ({:07o})",
                        self.input.source_bytes
                    ),
                ),
                Some((_, off)) => (
                    Class::Corrupt,
                    if index.is_none() {
                        format!("claims offset {off:07o}, which no input line has")
                    } else if !whole {
                        "a partial line that is not the start of its input line".into()
                    } else {
                        format!(
                            "claims offset {off:07o} (input line {}) but its bytes differ",
                            index.map_or(0, |i| i + 1)
                        )
                    },
                ),
                None => (Class::Corrupt, "not a line of the input".into()),
            };
            let text = show(line);
            self.extraneous.add(|| Extraneous {
                class,
                sink_file: origin.map(|o| o.data_file.to_owned()),
                sink_offset: origin.map(|o| o.offset),
                output_offset,
                text: text.clone(),
                why,
            });
            self.problem(|| First {
                class,
                output_offset,
                input_line: index.map_or(0, |i| i + 1),
                expected: None,
                found: Some(text),
            });
            return Ok(());
        };
        if self.is_set(i) {
            let note = if self.duplicates.first.len() < EXAMPLES {
                Some(self.input.note(i, origin)?)
            } else {
                None
            };
            self.duplicates.count += 1;
            self.duplicates.first.extend(note);
            if self.mode == Mode::WorkQueue {
                let found = show(line);
                self.problem(|| First {
                    class: Class::Duplicate,
                    output_offset,
                    input_line: i + 1,
                    expected: None,
                    found: Some(found),
                });
            }
            return Ok(());
        }
        self.set(i);
        self.distinct_lines += 1;
        self.distinct_bytes += line.len() as u64;
        if i < self.reported {
            // Reported missing by an earlier check; here at last.
            let note = if self.late.first.len() < EXAMPLES {
                Some(self.input.note(i, origin)?)
            } else {
                None
            };
            self.late.count += 1;
            self.late.first.extend(note);
        }
        if i == self.contiguous {
            self.advance_contiguous();
        }
        self.high = self.high.max(i + 1);
        let time = origin.map_or(f64::INFINITY, |o| o.time);
        self.add_mark(time.ceil(), i + 1);
        Ok(())
    }

    fn advance_contiguous(&mut self) {
        let n = self.input.lines;
        let mut c = self.contiguous;
        while c < n {
            let w = self.seen[(c / 64) as usize];
            if c % 64 == 0 && w == u64::MAX {
                c += 64;
            } else if w & (1 << (c % 64)) != 0 {
                c += 1;
            } else {
                break;
            }
        }
        self.contiguous = c.min(n);
    }

    /// Records that input lines below `h` have a later line committed at
    /// (rounded-up) time `t`.
    fn add_mark(&mut self, t: f64, h: u64) {
        if h <= self.settled || t.is_nan() {
            return;
        }
        if t < self.cutoff {
            self.settled = h;
            while self.marks.front().is_some_and(|&(_, mh)| mh <= h) {
                self.marks.pop_front();
            }
            return;
        }
        if !t.is_finite() {
            // No commit time: never ages (so never makes a line missing).
            return;
        }
        // Marks are sorted by time with strictly increasing highs; a mark
        // no earlier with a high no lower makes this one useless.
        let i = self.marks.partition_point(|&(mt, _)| mt <= t);
        if i > 0 && self.marks[i - 1].1 >= h {
            return;
        }
        let at = if i > 0 && self.marks[i - 1].0 == t {
            self.marks[i - 1].1 = h;
            i - 1
        } else {
            self.marks.insert(i, (t, h));
            i
        };
        // Later marks with a high no higher are now useless.
        let mut end = at + 1;
        while end < self.marks.len() && self.marks[end].1 <= h {
            end += 1;
        }
        self.marks.drain(at + 1..end);
        if self.marks.len() > MAX_MARKS {
            // Merge the two oldest into the later one: conservative.
            self.marks.pop_front();
        }
    }

    /// Ends a check: settles the marks older than the grace and finds the
    /// missing lines.
    pub(crate) fn end(&mut self) -> Result<(), VerifyError> {
        while let Some(&(t, h)) = self.marks.front() {
            if t >= self.cutoff {
                break;
            }
            self.settled = self.settled.max(h);
            self.marks.pop_front();
        }
        self.reported = self.reported.max(self.settled);
        let upto = if self.complete {
            self.input.lines
        } else {
            self.settled
        };
        self.find_missing(upto)
    }

    /// Counts the uncommitted lines below `upto` and notes the first few.
    fn find_missing(&mut self, upto: u64) -> Result<(), VerifyError> {
        let mut found = Found::default();
        if upto > self.contiguous {
            let from = self.contiguous;
            let mut seen_below = 0u64;
            let (w0, w1) = ((from / 64) as usize, upto.div_ceil(64) as usize);
            for (wi, &w) in self.seen[w0..w1].iter().enumerate() {
                let base = (w0 + wi) as u64 * 64;
                let mut bits = w;
                if base < from {
                    bits &= u64::MAX << (from - base);
                }
                if base + 64 > upto {
                    bits &= u64::MAX >> (base + 64 - upto);
                }
                seen_below += u64::from(bits.count_ones());
            }
            found.count = upto - from - seen_below;
            let mut i = from;
            while found.first.len() < EXAMPLES && i < upto {
                if !self.is_set(i) {
                    found.first.push(self.input.note(i, None)?);
                }
                i += 1;
            }
        }
        if found.count > 0 && self.first.is_none() {
            let first = &found.first[0];
            let class = if self.complete && first.input_line > self.high {
                Class::Incomplete
            } else {
                Class::Missing
            };
            self.first = Some(First {
                class,
                output_offset: self.committed_bytes,
                input_line: first.input_line,
                expected: Some(first.text.clone()),
                found: None,
            });
        }
        self.missing = found;
        Ok(())
    }

    /// Requires the whole input from now on; finds every missing line.
    pub(crate) fn require_complete(&mut self) -> Result<(), VerifyError> {
        self.complete = true;
        self.find_missing(self.input.lines)
    }

    /// Records committed bytes lost from the sink.
    pub(crate) fn data_missing(&mut self, m: &MissingData) {
        if self.missing_data.is_none() {
            self.missing_data = Some(m.clone());
        }
        let output_offset = self.committed_bytes;
        self.problem(|| First {
            class: Class::Missing,
            output_offset,
            input_line: 0,
            expected: None,
            found: None,
        });
    }

    /// `(path, len)` of the input file.
    pub(crate) fn input(&self) -> (&Path, u64) {
        (&self.input.path, self.input.len)
    }

    /// Committed bytes and lines, distinct bytes, duplicates.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.committed_bytes,
            self.committed_lines,
            self.distinct_bytes,
            self.duplicates.count,
        )
    }

    /// Where the key stands.
    pub(crate) fn status(&self) -> WorkQueueStatus {
        WorkQueueStatus {
            input_lines: self.input.lines,
            distinct_lines: self.distinct_lines,
            holes: self.high - self.distinct_lines,
            missing: self.missing.count,
            missing_grace: self.grace,
        }
    }

    /// The violation, if any: classed by the first problem found, with
    /// everything found so far.
    pub(crate) fn violation(&self) -> Option<Violation> {
        let first = self.first.as_ref()?;
        let report = WorkQueueReport {
            mode: self.mode,
            input_lines: self.input.lines,
            distinct_lines: self.distinct_lines,
            duplicates: self.duplicates.clone(),
            missing: self.missing.clone(),
            missing_final: self.complete,
            missing_grace: self.grace,
            late: self.late.clone(),
            extraneous: self.extraneous.clone(),
            missing_data: self.missing_data.clone(),
        };
        Some(Violation {
            key: self.key,
            class: first.class,
            output_offset: first.output_offset,
            input_line: first.input_line,
            expected: first.expected.clone(),
            found: first.found.clone(),
            detail: report.summary(),
            missing_data: self.missing_data.clone(),
            work_queue: Some(report),
        })
    }

    /// Bytes of heap this key's check holds (bitmap, marks, window).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.seen.len() * 8
            + self.marks.capacity() * 16
            + self.input.window.capacity()
            + self.input.scratch.capacity()
    }
}
