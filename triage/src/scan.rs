//! Reading one log, plain or gzipped, and finding its failure evidence.
//!
//! Built for speed on hundreds of megabytes: the file is decompressed into
//! 1 MiB chunks of whole lines; each alarm word is searched for over the
//! whole chunk with `memchr::memmem` (SIMD), never line by line; only the
//! few lines that contain one are split out, timed and normalised. A read
//! error (a truncated or corrupt `.gz`) ends the file but keeps everything
//! decoded before it, and is reported with the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use memchr::memmem::Finder;
use serde::Serialize;

use crate::signature::normalise;
use crate::time::line_time;
use crate::timeline::FaultWindows;

/// Decompressed bytes handled at a time.
const CHUNK: usize = 1 << 20;
/// Bytes a chunk that ends inside a line shares with the next chunk: one
/// less than the longest alarm word, so a word split by the boundary is
/// whole in the next chunk and a word wholly in the overlap is not counted
/// twice.
const OVERLAP: usize = 15;
/// Linux's errno for "too many levels of symbolic links".
const ELOOP: i32 = 40;
/// Longest example line kept, in bytes.
const EXAMPLE_LEN: usize = 400;
/// How many lines back an untimed line looks for a timestamp.
const LOOK_BACK: usize = 64;

/// The words that make a line failure evidence, most specific first.
pub const NEEDLES: [&str; 6] = [
    "panicked",
    "MISSING DATA",
    "duplicate data",
    "FATAL",
    "CRIT",
    "ERROR",
];

/// What kind of evidence a signature is, in order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The harness's own verdict: a check failed.
    Violation,
    /// The sink saw a gap: committed output is missing data.
    MissingData,
    /// The sink saw data written twice.
    DuplicateData,
    /// A Rust panic.
    Panic,
    /// A process exited by itself (non-zero status or a signal).
    Exit,
    /// A FATAL or CRIT(ICAL) line.
    Fatal,
    /// An ERROR line.
    Error,
}

impl Kind {
    /// Short name for the table.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Violation => "violation",
            Kind::MissingData => "missing",
            Kind::DuplicateData => "duplicate",
            Kind::Panic => "panic",
            Kind::Exit => "exit",
            Kind::Fatal => "fatal",
            Kind::Error => "error",
        }
    }
}

/// Where a signature was seen once: the example line.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The file, as shown to the user.
    pub file: String,
    /// 1-based line number in the (decompressed) file.
    pub line: u64,
    /// The line as written (cut at 400 bytes).
    pub text: String,
    /// Its time, unix seconds, if known.
    pub time: Option<f64>,
}

/// One signature's occurrences within one file.
#[derive(Debug, Clone)]
pub struct Occurrences {
    /// The kind of evidence.
    pub kind: Kind,
    /// How many lines.
    pub count: u64,
    /// How many of them fall in a fault window (see
    /// [`crate::timeline::FaultWindows`]).
    pub after_fault: u64,
    /// Earliest time seen.
    pub first: Option<f64>,
    /// Latest time seen.
    pub last: Option<f64>,
    /// The first occurrence.
    pub example: Example,
}

impl Occurrences {
    /// Adds another file's (or line's) occurrences of the same signature.
    pub fn merge(&mut self, other: &Occurrences) {
        self.count += other.count;
        self.after_fault += other.after_fault;
        self.first = min_opt(self.first, other.first);
        self.last = max_opt(self.last, other.last);
        let earlier = match (other.example.time, self.example.time) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        };
        if earlier {
            self.example = other.example.clone();
        }
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// The result of reading one log.
#[derive(Debug, Clone)]
pub struct FileScan {
    /// The file.
    pub path: PathBuf,
    /// The file as shown to the user (relative to the run directory).
    pub display: String,
    /// The process that wrote it (from the file name).
    pub process: String,
    /// Whether it is gzipped.
    pub gzipped: bool,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes of log read (after decompression).
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Why the file could not be read to its end, if it could not.
    pub damaged: Option<String>,
    /// Evidence by signature.
    pub signatures: HashMap<String, Occurrences>,
}

/// The process that wrote a log, from its file name: `worker1.log`,
/// `worker1.1700000000000.gz` and `app.log.1.gz` give `worker1` and `app`.
pub fn process_name(file_name: &str) -> String {
    let mut s = file_name;
    loop {
        let before = s.len();
        for ext in [".gz", ".log"] {
            if let Some(x) = s.strip_suffix(ext) {
                s = x;
            }
        }
        if let Some((head, tail)) = s.rsplit_once('.') {
            if !head.is_empty() && !tail.is_empty() && tail.bytes().all(|c| c.is_ascii_digit()) {
                s = head;
            }
        }
        if s.len() == before {
            break;
        }
    }
    if s.is_empty() {
        file_name.to_owned()
    } else {
        s.to_owned()
    }
}

/// The rotation time (unix seconds) in a rotated log's name
/// (`worker1.1700000000000.gz`: milliseconds), if it has one.
pub fn rotation_time(file_name: &str) -> Option<f64> {
    let stem = file_name.strip_suffix(".gz")?;
    let stem = stem.strip_suffix(".log").unwrap_or(stem);
    let (_, ms) = stem.rsplit_once('.')?;
    let ms: u64 = ms.parse().ok()?;
    // Milliseconds since 2001 and before 2286.
    (ms > 978_307_200_000 && ms < 9_999_999_999_999).then(|| ms as f64 / 1000.0)
}

/// The searchers for [`NEEDLES`], built once and shared by every thread.
pub struct Needles {
    finders: Vec<Finder<'static>>,
}

impl Default for Needles {
    fn default() -> Self {
        Needles {
            finders: NEEDLES.iter().map(|n| Finder::new(n.as_bytes())).collect(),
        }
    }
}

/// A panic whose message is on the line after it, not yet read.
struct PendingPanic {
    head: String,
    line: u64,
    time: Option<f64>,
    text: String,
}

struct Scanner<'a> {
    needles: &'a Needles,
    windows: &'a FaultWindows,
    out: FileScan,
    /// Time of the latest timestamped line before the current chunk.
    carried_time: Option<f64>,
    pending: Option<PendingPanic>,
    starts: Vec<usize>,
    /// Bytes at the start of the current chunk already searched with the
    /// previous chunk (the tail of a line longer than a chunk, kept so an
    /// alarm word split by the chunk boundary is still found once).
    skip: usize,
    /// The line number last recorded, so a line longer than a chunk whose
    /// pieces each hold an alarm word counts once.
    last_recorded: u64,
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn cut(text: &[u8], max: usize) -> String {
    let t = &text[..text.len().min(max)];
    String::from_utf8_lossy(t).into_owned()
}

/// Kind and signature of a line that contains an alarm word, or `None`
/// if it is not evidence after all.
fn classify(line: &str) -> Option<(Kind, String)> {
    if let Some(at) = line.find("panicked") {
        let rest = line[at + "panicked".len()..].trim_start();
        let rest = rest.strip_prefix("at ").unwrap_or(rest);
        return Some((Kind::Panic, format!("panic at {}", normalise(rest))));
    }
    let kind = if line.contains("MISSING DATA") {
        Kind::MissingData
    } else if line.contains("duplicate data") {
        Kind::DuplicateData
    } else if line.contains("FATAL") || line.contains("CRIT") {
        Kind::Fatal
    } else if line.contains("ERROR") {
        Kind::Error
    } else {
        return None;
    };
    Some((kind, normalise(line)))
}

impl Scanner<'_> {
    fn record(&mut self, kind: Kind, sig: String, line: u64, time: Option<f64>, text: String) {
        if line == self.last_recorded {
            return;
        }
        self.last_recorded = line;
        let display = &self.out.display;
        let in_window = u64::from(time.is_some_and(|t| self.windows.contains(t)));
        self.out
            .signatures
            .entry(sig)
            .and_modify(|o| {
                o.count += 1;
                o.after_fault += in_window;
                o.first = min_opt(o.first, time);
                o.last = max_opt(o.last, time);
            })
            .or_insert_with(|| Occurrences {
                kind,
                count: 1,
                after_fault: in_window,
                first: time,
                last: time,
                example: Example {
                    file: display.clone(),
                    line,
                    text,
                    time,
                },
            });
    }

    /// The time of the line at `start` or of the closest timestamped line
    /// before it.
    fn time_at(&self, chunk: &[u8], start: usize) -> Option<f64> {
        let mut line_start = start;
        for _ in 0..=LOOK_BACK {
            if let Some(t) = line_time(&chunk[line_start..]) {
                return Some(t);
            }
            if line_start == 0 {
                break;
            }
            line_start = memchr::memrchr(b'\n', &chunk[..line_start - 1]).map_or(0, |i| i + 1);
        }
        self.carried_time
    }

    fn finish_pending(&mut self, message: &[u8]) {
        if let Some(p) = self.pending.take() {
            let msg = String::from_utf8_lossy(trim_cr(message));
            let sig = format!("{}: {}", p.head, normalise(&msg));
            let text = format!("{} {}", p.text, cut(message, EXAMPLE_LEN));
            self.record(Kind::Panic, sig.trim_end().to_owned(), p.line, p.time, text);
        }
    }

    /// Handles a chunk of whole lines (the last one may lack its newline
    /// at the end of the file, or when `mid_line`: a line longer than a
    /// chunk goes on in the next one, which starts with this chunk's last
    /// [`OVERLAP`] bytes).
    fn chunk(&mut self, chunk: &[u8], mid_line: bool) {
        if self.pending.is_some() {
            let end = memchr::memchr(b'\n', chunk).unwrap_or(chunk.len());
            self.finish_pending(&chunk[..end]);
        }
        self.starts.clear();
        for f in &self.needles.finders {
            let mut from = 0;
            let len = f.needle().len();
            while let Some(i) = f.find(&chunk[from..]) {
                let at = from + i;
                if at + len <= self.skip {
                    // Wholly in the overlap: found with the previous chunk.
                    from = at + 1;
                    continue;
                }
                let start = memchr::memrchr(b'\n', &chunk[..at]).map_or(0, |j| j + 1);
                self.starts.push(start);
                from = memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |j| at + j + 1);
                if from >= chunk.len() {
                    break;
                }
            }
        }
        self.starts.sort_unstable();
        self.starts.dedup();
        let base = self.out.lines;
        let mut counted_to = 0;
        let mut line_no = base;
        let starts = std::mem::take(&mut self.starts);
        for &start in &starts {
            line_no += memchr::memchr_iter(b'\n', &chunk[counted_to..start]).count() as u64;
            counted_to = start;
            let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |j| start + j);
            let raw = trim_cr(&chunk[start..end]);
            let line = String::from_utf8_lossy(raw);
            let Some((kind, sig)) = classify(&line) else {
                continue;
            };
            let time = self.time_at(chunk, start);
            let text = cut(raw, EXAMPLE_LEN);
            if kind == Kind::Panic && line.trim_end().ends_with(':') {
                // Rust >= 1.73: `panicked at src/x.rs:1:2:` then the message.
                self.pending = Some(PendingPanic {
                    head: sig.trim_end_matches(':').to_owned(),
                    line: line_no + 1,
                    time,
                    text,
                });
                if end + 1 < chunk.len() {
                    let next_end = memchr::memchr(b'\n', &chunk[end + 1..])
                        .map_or(chunk.len(), |j| end + 1 + j);
                    self.finish_pending(&chunk[end + 1..next_end]);
                }
                continue;
            }
            self.record(kind, sig, line_no + 1, time, text);
        }
        self.starts = starts;
        let newlines = memchr::memchr_iter(b'\n', chunk).count() as u64;
        let unterminated =
            u64::from(!mid_line && !chunk.is_empty() && chunk[chunk.len() - 1] != b'\n');
        self.out.lines += newlines + unterminated;
        self.out.bytes += (chunk.len() - self.skip.min(chunk.len())) as u64;
        // Remember the newest time for untimed lines of the next chunk.
        if !chunk.is_empty() {
            let last = chunk.len() - 1;
            let body_end = if chunk[last] == b'\n' {
                last
            } else {
                chunk.len()
            };
            let start = memchr::memrchr(b'\n', &chunk[..body_end]).map_or(0, |i| i + 1);
            if let Some(t) = self.time_at(chunk, start) {
                self.carried_time = Some(t);
            }
        }
    }
}

/// Fills `buf` from `r` until it is full or the stream ends; returns the
/// bytes read and the error that ended the stream early, if any.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

fn describe(e: &io::Error, gz: bool) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof if gz => "truncated gzip (the stream ends early)".to_owned(),
        _ if gz => format!("corrupt gzip: {e}"),
        _ => format!("read error: {e}"),
    }
}

/// Reads one log to its end (or to the first read error) and collects its
/// failure evidence. `display` is how the file is named in the output;
/// occurrences inside `windows` are counted apart.
pub fn scan_file(
    path: &Path,
    display: &str,
    needles: &Needles,
    windows: &FaultWindows,
) -> FileScan {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let gzipped = file_name.ends_with(".gz");
    let mut s = Scanner {
        needles,
        windows,
        out: FileScan {
            path: path.to_owned(),
            display: display.to_owned(),
            process: process_name(&file_name),
            gzipped,
            size: 0,
            bytes: 0,
            lines: 0,
            damaged: None,
            signatures: HashMap::new(),
        },
        carried_time: None,
        pending: None,
        starts: Vec::new(),
        skip: 0,
        last_recorded: 0,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let why = match std::fs::read_link(path) {
                Ok(target) if e.raw_os_error() == Some(ELOOP) => {
                    format!("a symlink loop (-> {})", target.display())
                }
                Ok(target) if e.kind() == io::ErrorKind::NotFound => {
                    format!("a symlink that points nowhere (-> {})", target.display())
                }
                _ => format!("cannot open: {e}"),
            };
            s.out.damaged = Some(why);
            return s.out;
        }
    };
    s.out.size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            256 * 1024,
            file,
        )))
    } else {
        Box::new(file)
    };
    let mut buf = vec![0u8; CHUNK];
    let mut held = 0;
    loop {
        let (n, err) = fill(&mut reader, &mut buf[held..]);
        let filled = held + n;
        let at_end = err.is_some() || filled < buf.len();
        let newline = memchr::memrchr(b'\n', &buf[..filled]);
        let mid_line = !at_end && newline.is_none();
        let upto = match newline {
            _ if at_end => filled,
            // Whole lines only.
            Some(i) => i + 1,
            // A line longer than the buffer: handled in pieces that
            // overlap by OVERLAP bytes.
            None => filled,
        };
        s.chunk(&buf[..upto], mid_line);
        let keep_from = if mid_line { upto - OVERLAP } else { upto };
        buf.copy_within(keep_from..filled, 0);
        held = filled - keep_from;
        s.skip = if mid_line { OVERLAP } else { 0 };
        if let Some(e) = err {
            if gzipped
                && filled == 0
                && s.out.bytes == 0
                && e.kind() == io::ErrorKind::UnexpectedEof
            {
                s.out.damaged = Some("empty or truncated gzip: no data could be read".to_owned());
            } else {
                s.out.damaged = Some(describe(&e, gzipped));
            }
            break;
        }
        if at_end {
            break;
        }
    }
    if s.pending.is_some() {
        s.finish_pending(b"");
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn alarm_words_in_lines_longer_than_a_chunk_are_found_on_their_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("w.log");
        // The word straddles the first chunk boundary; a second long line
        // holds one after a 2 MB prefix and another alarm word later.
        let mut text = Vec::new();
        text.extend(std::iter::repeat(b'x').take(CHUNK - 2));
        text.extend(b"FATAL boom");
        text.extend(std::iter::repeat(b'y').take(3_000_000));
        text.extend(b"\nshort line\n");
        text.extend(std::iter::repeat(b'z').take(2_000_000));
        text.extend(b" ERROR later ");
        text.extend(std::iter::repeat(b'z').take(CHUNK));
        text.extend(b" ERROR again on the same line\nlast");
        std::fs::write(&p, &text).unwrap();
        let s = scan_file(&p, "w.log", &Needles::default(), &FaultWindows::default());
        assert_eq!(s.damaged, None);
        assert_eq!(s.lines, 4);
        assert_eq!(s.bytes, text.len() as u64);
        let lines: BTreeMap<u64, Kind> = s
            .signatures
            .values()
            .map(|o| (o.example.line, o.kind))
            .collect();
        assert_eq!(
            lines,
            BTreeMap::from([(1, Kind::Fatal), (3, Kind::Error)]),
            "{:?}",
            s.signatures
                .keys()
                .map(|k| &k[..k.len().min(40)])
                .collect::<Vec<_>>()
        );
        let total: u64 = s.signatures.values().map(|o| o.count).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn dangling_and_looping_symlinks_are_damaged_not_skipped() {
        let t = tempfile::tempdir().unwrap();
        let logs = t.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("sink.log"), "ERROR real\n").unwrap();
        std::os::unix::fs::symlink("nowhere.log", logs.join("worker1.log")).unwrap();
        std::os::unix::fs::symlink("worker2.log", logs.join("worker2.log")).unwrap();
        let tr = crate::analysis::triage(t.path()).unwrap();
        let damaged: BTreeMap<&str, &str> = tr
            .files
            .iter()
            .filter_map(|f| Some((f.file.as_str(), f.damaged.as_deref()?)))
            .collect();
        assert!(
            damaged["logs/worker1.log"].contains("points nowhere"),
            "{damaged:?}"
        );
        assert!(damaged["logs/worker2.log"].contains("loop"), "{damaged:?}");
        assert!(!damaged.contains_key("logs/sink.log"));
        let text = crate::text::render(&tr);
        assert!(text.contains("DAMAGED logs/worker1.log"), "{text}");
    }

    #[test]
    fn process_names_come_from_file_names() {
        assert_eq!(process_name("worker1.1700000000000.gz"), "worker1");
        assert_eq!(process_name("worker1.log"), "worker1");
        assert_eq!(process_name("feeder.A.log"), "feeder.A");
        assert_eq!(process_name("app.log.1.gz"), "app");
        assert_eq!(process_name("sink.log"), "sink");
        assert_eq!(process_name(".log"), ".log");
    }

    #[test]
    fn rotation_times_come_from_rotated_names() {
        assert_eq!(
            rotation_time("worker1.1700000000123.gz"),
            Some(1_700_000_000.123)
        );
        assert_eq!(rotation_time("worker1.log"), None);
        assert_eq!(rotation_time("app.log.1.gz"), None);
    }

    #[test]
    fn lines_split_across_chunks_are_seen_once() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("w.log");
        let mut text = String::new();
        let filler = "2026-01-01T00:00:00Z INFO nothing to see here at all\n";
        while text.len() < CHUNK - 10 {
            text.push_str(filler);
        }
        for i in 0..3 {
            text.push_str(&format!("2026-01-01T00:00:0{i}Z ERROR broken pipe {i}\n"));
        }
        text.push_str("thread 'main' panicked at src/a.rs:1:2:\nboom 7\n");
        std::fs::write(&p, &text).unwrap();
        let s = scan_file(&p, "w.log", &Needles::default(), &FaultWindows::default());
        assert_eq!(s.damaged, None);
        assert_eq!(s.lines as usize, text.lines().count());
        assert_eq!(s.signatures["ERROR broken pipe <n>"].count, 3);
        let panic = &s.signatures["panic at src/a.rs:1:2: boom <n>"];
        assert_eq!(panic.count, 1);
        assert_eq!(panic.example.line as usize, text.lines().count() - 1);
        // The panic line has no timestamp: it takes the previous line's.
        assert_eq!(panic.first, line_time(b"2026-01-01T00:00:02Z"));
    }
}
