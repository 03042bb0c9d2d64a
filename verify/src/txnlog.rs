//! The sink's txnlog: one record per line, appended and fsync'd by the sink.
//!
//! Each line is a JSON array: element 0 the Unix time as a float, element 1
//! the tag, then the tag's fields (tuples as arrays). Booleans are written as
//! `1`/`0` so that every line is also a valid Python literal, which keeps the
//! original harness's tooling (`eval` per line) able to read our logs.
//!
//! ```text
//! [1574884453.123400, "1-ok", "Passthrough-w-worker1-id-1:c_id=5", [[1, 0, 4900]]]
//! [1574884453.130100, "2-ok", "Passthrough-w-worker1-id-1:c_id=5", 4900]
//! ```
//!
//! Readers also accept the original aloc_sink's txnlogs: one Python
//! literal list per line, as `"{}\n".format(list)` writes it (reference
//! §4.4): single-quoted strings, tuples, `True`/`False`/`None`, and
//! `workers-left` holding the `str()` of a list.
//!
//! ```text
//! [1574884453.1234, '1-ok', 'Passthrough-w-worker1-id-1:c_id=5', [(1, 0, 4900)]]
//! [1574884453.1301, 'workers-left', "['worker2']"]
//! [1574884453.1302, 'connection-closed', True]
//! ```
//!
//! The format is decided per file by its first line ([`Format::detect`]):
//! JSON if it parses as JSON, else Python; every line of the file is then
//! read in that format.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// One `(stream_id, start_offset, end_offset)` range of a transaction.
pub type Range3 = (u64, u64, u64);

/// What one txnlog line records.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `1-ok`: the sink voted commit on `txn_id` covering `where_list`.
    Phase1Ok {
        /// Transaction id.
        txn_id: String,
        /// Ranges covered.
        where_list: Vec<Range3>,
    },
    /// `1-rollback`: the sink voted abort.
    Phase1Rollback {
        /// Transaction id.
        txn_id: String,
        /// Ranges covered.
        where_list: Vec<Range3>,
    },
    /// `2-ok`: committed; output up to `offset` is final.
    Phase2Ok {
        /// Transaction id.
        txn_id: String,
        /// Committed end offset of the worker's output.
        offset: u64,
    },
    /// `2-rollback`: aborted; output truncated back to `offset`.
    Phase2Rollback {
        /// Transaction id.
        txn_id: String,
        /// Offset the output was truncated to.
        offset: u64,
    },
    /// `2-error`: a phase 2 for a transaction the sink does not know.
    Phase2Error {
        /// Transaction id.
        txn_id: String,
        /// Why.
        reason: String,
    },
    /// `list-uncommitted`: the answer given to LIST_UNCOMMITTED.
    ListUncommitted {
        /// Pending transactions reported.
        txn_ids: Vec<String>,
    },
    /// `next-txn-force-abort`: the next vote will be abort, and why.
    NextTxnForceAbort {
        /// Why.
        reason: String,
    },
    /// `workers-left`: these workers' files were renamed away.
    WorkersLeft {
        /// Departed workers.
        workers: Vec<String>,
    },
    /// `close`: an abort rule closed the connection (`before reply` / `after reply`).
    Close {
        /// When, relative to the vote reply.
        when: String,
    },
    /// `connection-closed`: the worker's connection ended.
    ConnectionClosed,
}

impl Record {
    /// The tag written in element 1.
    pub fn tag(&self) -> &'static str {
        match self {
            Record::Phase1Ok { .. } => "1-ok",
            Record::Phase1Rollback { .. } => "1-rollback",
            Record::Phase2Ok { .. } => "2-ok",
            Record::Phase2Rollback { .. } => "2-rollback",
            Record::Phase2Error { .. } => "2-error",
            Record::ListUncommitted { .. } => "list-uncommitted",
            Record::NextTxnForceAbort { .. } => "next-txn-force-abort",
            Record::WorkersLeft { .. } => "workers-left",
            Record::Close { .. } => "close",
            Record::ConnectionClosed => "connection-closed",
        }
    }
}

/// A record and the Unix time it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// What happened.
    pub record: Record,
}

/// A txnlog line that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum TxnlogError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// File (empty when parsing a lone line).
        path: PathBuf,
        /// 1-based line number (0 when parsing a lone line).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// How a txnlog file writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array per line (crasher's sink).
    Json,
    /// One Python literal list per line (the original aloc_sink).
    Python,
}

impl Format {
    /// The format of a file whose first line is `line`: JSON if it parses
    /// as JSON, else Python.
    pub fn detect(line: &str) -> Format {
        if serde_json::from_str::<Value>(line).is_ok() {
            Format::Json
        } else {
            Format::Python
        }
    }
}

impl Entry {
    /// Builds an entry stamped with the current time.
    pub fn now(record: Record) -> Entry {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Entry { time, record }
    }

    /// The line to append (without the trailing newline).
    pub fn to_line(&self) -> String {
        let ranges = |w: &[Range3]| {
            Value::from(
                w.iter()
                    .map(|&(s, a, b)| json!([s, a, b]))
                    .collect::<Vec<_>>(),
            )
        };
        let time = Value::from(self.time);
        let tag = self.record.tag();
        let v = match &self.record {
            Record::Phase1Ok { txn_id, where_list }
            | Record::Phase1Rollback { txn_id, where_list } => {
                json!([time, tag, txn_id, ranges(where_list)])
            }
            Record::Phase2Ok { txn_id, offset } | Record::Phase2Rollback { txn_id, offset } => {
                json!([time, tag, txn_id, offset])
            }
            Record::Phase2Error { txn_id, reason } => json!([time, tag, txn_id, reason]),
            Record::ListUncommitted { txn_ids } => json!([time, tag, txn_ids]),
            Record::NextTxnForceAbort { reason } => json!([time, tag, reason]),
            Record::WorkersLeft { workers } => json!([time, tag, workers]),
            Record::Close { when } => json!([time, tag, when]),
            Record::ConnectionClosed => json!([time, tag, 1]),
        };
        v.to_string()
    }

    /// Parses one JSON line; `Err` carries the reason (the caller adds
    /// file and line).
    pub fn parse(line: &str) -> Result<Entry, String> {
        Entry::parse_as(line, Format::Json)
    }

    /// Parses one line written in `format`.
    pub fn parse_as(line: &str, format: Format) -> Result<Entry, String> {
        let v: Value = match format {
            Format::Json => {
                serde_json::from_str(line).map_err(|e| format!("not a JSON array: {e}"))?
            }
            Format::Python => {
                pylit::parse(line).map_err(|e| format!("not a Python literal list: {e}"))?
            }
        };
        let a = v.as_array().ok_or(match format {
            Format::Json => "not a JSON array",
            Format::Python => "not a Python literal list",
        })?;
        let time = a
            .first()
            .and_then(Value::as_f64)
            .ok_or("element 0 (time) is not a number")?;
        let tag = a
            .get(1)
            .and_then(Value::as_str)
            .ok_or("element 1 (tag) is not a string")?;
        let field = |i: usize| {
            a.get(i)
                .ok_or_else(|| format!("{tag}: missing element {i}"))
        };
        let string = |i: usize| -> Result<String, String> {
            field(i)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{tag}: element {i} is not a string"))
        };
        let uint = |i: usize| -> Result<u64, String> {
            field(i)?
                .as_u64()
                .ok_or_else(|| format!("{tag}: element {i} is not a non-negative integer"))
        };
        let strings = |i: usize| -> Result<Vec<String>, String> {
            let bad = || format!("{tag}: element {i} is not a list of strings");
            let f = field(i)?;
            // The original writes `workers-left` as the str() of a list.
            let parsed;
            let list = match f.as_str() {
                Some(text) if format == Format::Python => {
                    parsed = pylit::parse(text).map_err(|_| bad())?;
                    &parsed
                }
                _ => f,
            };
            list.as_array()
                .and_then(|xs| xs.iter().map(|x| x.as_str().map(str::to_owned)).collect())
                .ok_or_else(bad)
        };
        let ranges = |i: usize| -> Result<Vec<Range3>, String> {
            let bad = || format!("{tag}: element {i} is not a list of [stream, start, end]");
            field(i)?
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|r| match r.as_array().map(Vec::as_slice) {
                    Some([s, x, y]) => match (s.as_u64(), x.as_u64(), y.as_u64()) {
                        (Some(s), Some(x), Some(y)) => Ok((s, x, y)),
                        _ => Err(bad()),
                    },
                    _ => Err(bad()),
                })
                .collect()
        };
        let record = match tag {
            "1-ok" => Record::Phase1Ok {
                txn_id: string(2)?,
                where_list: ranges(3)?,
            },
            "1-rollback" => Record::Phase1Rollback {
                txn_id: string(2)?,
                where_list: ranges(3)?,
            },
            "2-ok" => Record::Phase2Ok {
                txn_id: string(2)?,
                offset: uint(3)?,
            },
            "2-rollback" => Record::Phase2Rollback {
                txn_id: string(2)?,
                offset: uint(3)?,
            },
            "2-error" => Record::Phase2Error {
                txn_id: string(2)?,
                reason: string(3)?,
            },
            "list-uncommitted" => Record::ListUncommitted {
                txn_ids: strings(2)?,
            },
            "next-txn-force-abort" => Record::NextTxnForceAbort { reason: string(2)? },
            "workers-left" => Record::WorkersLeft {
                workers: strings(2)?,
            },
            "close" => Record::Close { when: string(2)? },
            "connection-closed" => Record::ConnectionClosed,
            other => return Err(format!("unknown tag {other:?}")),
        };
        Ok(Entry { time, record })
    }
}

/// Reads every record of a txnlog file.
///
/// A final line without its newline is a record the sink was writing when
/// it was killed; it was never fsync'd as complete, so it is ignored when it
/// does not parse. Any other malformed line is an error naming file and line.
pub fn read(path: &Path) -> Result<Vec<Entry>, TxnlogError> {
    let bytes = fs::read(path).map_err(|source| TxnlogError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_all_bytes(&bytes, path)
}

/// Parses the text of a txnlog (see [`read`]), in the format of its first
/// line ([`Format::detect`]).
pub fn parse_all(text: &str, path: &Path) -> Result<Vec<Entry>, TxnlogError> {
    parse_all_bytes(text.as_bytes(), path)
}

/// Parses the bytes of a txnlog (see [`read`]), in the format of its first
/// line ([`Format::detect`]). A torn last line may end inside a UTF-8
/// character; any other line that is not UTF-8 is malformed.
pub fn parse_all_bytes(bytes: &[u8], path: &Path) -> Result<Vec<Entry>, TxnlogError> {
    let complete = bytes.is_empty() || bytes.ends_with(b"\n");
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let lines: Vec<&[u8]> = if bytes.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').collect()
    };
    let format = lines
        .first()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map_or(Format::Json, Format::detect);
    let mut out = Vec::with_capacity(lines.len());
    for (i, raw) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| format!("not valid UTF-8 ({e})"))
            .and_then(|line| Entry::parse_as(line, format));
        match parsed {
            Ok(e) => out.push(e),
            Err(_) if last && !complete => break,
            Err(reason) => {
                return Err(TxnlogError::Malformed {
                    path: path.to_owned(),
                    line: i + 1,
                    reason,
                })
            }
        }
    }
    Ok(out)
}

/// A reader of Python literals (the subset `repr` of the original's
/// txnlog records produces), into JSON values: lists and tuples become
/// arrays, `True`/`False` booleans, `None` null.
mod pylit {
    use serde_json::{Number, Value};

    /// Deepest nesting accepted (a txnlog line is 3 deep).
    const MAX_DEPTH: usize = 32;

    /// Parses `text`: exactly one literal, surrounded by white space only.
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected {} at column {}", p.what(), p.i + 1));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        text: &'a str,
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn what(&self) -> String {
            match self.text[self.i..].chars().next() {
                Some(c) => format!("{c:?}"),
                None => "end of line".into(),
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > MAX_DEPTH {
                return Err("nested too deep".into());
            }
            self.ws();
            let Some(&c) = self.s.get(self.i) else {
                return Err("unexpected end of line".into());
            };
            match c {
                b'[' => self.seq(b']', depth),
                b'(' => self.seq(b')', depth),
                b'\'' | b'"' => self.string().map(Value::String),
                b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
                _ => {
                    for (word, v) in [
                        ("True", Value::Bool(true)),
                        ("False", Value::Bool(false)),
                        ("None", Value::Null),
                    ] {
                        if self.text[self.i..].starts_with(word) {
                            self.i += word.len();
                            return Ok(v);
                        }
                    }
                    Err(format!(
                        "unexpected {} at column {}",
                        self.what(),
                        self.i + 1
                    ))
                }
            }
        }

        /// A list or tuple; trailing commas allowed (`(1,)`).
        fn seq(&mut self, close: u8, depth: usize) -> Result<Value, String> {
            self.i += 1;
            let mut items = Vec::new();
            loop {
                self.ws();
                if self.s.get(self.i) == Some(&close) {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                items.push(self.value(depth + 1)?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(&c) if c == close => {}
                    _ => {
                        return Err(format!(
                            "expected ',' or {:?} at column {}, got {}",
                            close as char,
                            self.i + 1,
                            self.what()
                        ))
                    }
                }
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            while self.i < self.s.len()
                && matches!(
                    self.s[self.i],
                    b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'_'
                )
            {
                self.i += 1;
            }
            let raw = self.text[start..self.i].replace('_', "");
            let bad = || format!("bad number {raw:?} at column {}", start + 1);
            if raw.contains(['.', 'e', 'E']) {
                let f: f64 = raw.parse().map_err(|_| bad())?;
                Number::from_f64(f).map(Value::Number).ok_or_else(bad)
            } else if let Ok(u) = raw.trim_start_matches('+').parse::<u64>() {
                Ok(Value::from(u))
            } else {
                raw.parse::<i64>().map(Value::from).map_err(|_| bad())
            }
        }

        /// A quoted string, with Python's escapes.
        fn string(&mut self) -> Result<String, String> {
            let start = self.i;
            let quote = self.s[self.i];
            self.i += 1;
            let mut out = String::new();
            loop {
                let rest = &self.text[self.i..];
                let Some(c) = rest.chars().next() else {
                    return Err(format!("string at column {} not closed", start + 1));
                };
                self.i += c.len_utf8();
                if c as u32 == quote as u32 {
                    return Ok(out);
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let Some(e) = self.text[self.i..].chars().next() else {
                    return Err(format!("string at column {} not closed", start + 1));
                };
                self.i += e.len_utf8();
                match e {
                    '\n' => {}
                    '\\' | '\'' | '"' => out.push(e),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' => out.push(self.hex(2)?),
                    'u' => out.push(self.hex(4)?),
                    'U' => out.push(self.hex(8)?),
                    '0'..='7' => {
                        let mut n = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.s.get(self.i) {
                                Some(&d @ b'0'..=b'7') => {
                                    n = n * 8 + u32::from(d - b'0');
                                    self.i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                    }
                    // Python keeps an unknown escape as it is.
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
        }

        fn hex(&mut self, n: usize) -> Result<char, String> {
            let digits = self
                .text
                .get(self.i..self.i + n)
                .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("bad escape at column {}", self.i))?;
            self.i += n;
            u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad escape at column {}", self.i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_records() -> Vec<Record> {
        vec![
            Record::Phase1Ok {
                txn_id: "T:c_id=1".into(),
                where_list: vec![(1, 0, 4900)],
            },
            Record::Phase1Rollback {
                txn_id: "T:c_id=2".into(),
                where_list: vec![(1, 4900, 5000)],
            },
            Record::Phase2Ok {
                txn_id: "T:c_id=1".into(),
                offset: 4900,
            },
            Record::Phase2Rollback {
                txn_id: "T:c_id=2".into(),
                offset: 4900,
            },
            Record::Phase2Error {
                txn_id: "x".into(),
                reason: "unknown txn_id, commit 1".into(),
            },
            Record::ListUncommitted {
                txn_ids: vec!["a".into()],
            },
            Record::NextTxnForceAbort {
                reason: "MISSING DATA".into(),
            },
            Record::WorkersLeft {
                workers: vec!["worker2".into()],
            },
            Record::Close {
                when: "before reply".into(),
            },
            Record::ConnectionClosed,
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in all_records() {
            let e = Entry {
                time: 1574884453.25,
                record: r,
            };
            assert_eq!(Entry::parse(&e.to_line()).unwrap(), e);
        }
    }

    #[test]
    fn lines_look_like_the_originals() {
        let e = Entry {
            time: 1574884453.5,
            record: Record::Phase1Ok {
                txn_id: "P-w-worker1-id-1:c_id=5".into(),
                where_list: vec![(1, 0, 4900)],
            },
        };
        assert_eq!(
            e.to_line(),
            r#"[1574884453.5,"1-ok","P-w-worker1-id-1:c_id=5",[[1,0,4900]]]"#
        );
        let closed = Entry {
            time: 1.0,
            record: Record::ConnectionClosed,
        };
        assert_eq!(closed.to_line(), r#"[1.0,"connection-closed",1]"#);
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_named() {
        let good = Entry {
            time: 1.0,
            record: Record::ConnectionClosed,
        }
        .to_line();
        let p = Path::new("out.w.txnlog");
        let torn = format!("{good}\n[2.0, \"2-o");
        assert_eq!(parse_all(&torn, p).unwrap().len(), 1);
        let bad = format!("{good}\n[2.0, \"2-ok\", \"t\"]\n{good}\n");
        let err = parse_all(&bad, p).unwrap_err().to_string();
        assert!(
            err.starts_with("out.w.txnlog:2: 2-ok: missing element 3"),
            "{err}"
        );
    }

    /// Lines in the original aloc_sink's format, written from the
    /// reference's description of it (§4.4), not copied from its files.
    const ORIGINAL: &str = "\
[1574884453.1234, '1-ok', 'Passthrough-w-worker1-id-123:c_id=5', [(1, 0, 4900)]]
[1574884453.1301, '2-ok', 'Passthrough-w-worker1-id-123:c_id=5', 4900]
[1574884454.5, '1-rollback', 'Passthrough-w-worker1-id-123:c_id=6', [(1, 4900, 5000)]]
[1574884454.75, '2-rollback', 'Passthrough-w-worker1-id-123:c_id=6', 4900]
[1574884455.0, 'list-uncommitted', ['Passthrough-w-worker1-id-123:c_id=7']]
[1574884455.25, '2-error', 'x', 'unknown txn_id, commit True']
[1574884455.5, 'next-txn-force-abort', 'MISSING DATA: self._output_offset 10 tell 10 < msg.message_id 20 worker worker1']
[1574884456.0, 'workers-left', \"['worker2', 'worker3']\"]
[1574884456.25, 'close', 'before reply']
[1574884457.0, 'connection-closed', True]
";

    #[test]
    fn the_originals_python_lines_are_read() {
        let p = Path::new("output.worker1.txnlog");
        let entries = parse_all(ORIGINAL, p).unwrap();
        let records: Vec<Record> = entries.iter().map(|e| e.record.clone()).collect();
        let t = |c: u32| format!("Passthrough-w-worker1-id-123:c_id={c}");
        assert_eq!(
            records,
            vec![
                Record::Phase1Ok {
                    txn_id: t(5),
                    where_list: vec![(1, 0, 4900)],
                },
                Record::Phase2Ok {
                    txn_id: t(5),
                    offset: 4900,
                },
                Record::Phase1Rollback {
                    txn_id: t(6),
                    where_list: vec![(1, 4900, 5000)],
                },
                Record::Phase2Rollback {
                    txn_id: t(6),
                    offset: 4900,
                },
                Record::ListUncommitted {
                    txn_ids: vec![t(7)],
                },
                Record::Phase2Error {
                    txn_id: "x".into(),
                    reason: "unknown txn_id, commit True".into(),
                },
                Record::NextTxnForceAbort {
                    reason: "MISSING DATA: self._output_offset 10 tell 10 < msg.message_id 20 worker worker1".into(),
                },
                Record::WorkersLeft {
                    workers: vec!["worker2".into(), "worker3".into()],
                },
                Record::Close {
                    when: "before reply".into(),
                },
                Record::ConnectionClosed,
            ]
        );
        assert_eq!(entries[0].time, 1574884453.1234);
    }

    #[test]
    fn python_literals_cover_repr_quoting_and_escapes() {
        let v = pylit::parse(r#"[1, -2, 3.5, 'a"b', "it's", 'tab\there\\', (1,), (), [], None, False, '\x41\u00e9\101']"#)
            .unwrap();
        assert_eq!(
            v,
            json!([
                1,
                -2,
                3.5,
                "a\"b",
                "it's",
                "tab\there\\",
                [1],
                [],
                [],
                null,
                false,
                "A\u{e9}A"
            ])
        );
        for bad in [
            "[1, 2", "['open]", "[1 2]", "[nope]", "[1] [2]", "[1.2.3]", "['\\x4']",
        ] {
            assert!(pylit::parse(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(pylit::parse(&deep).is_err());
    }

    #[test]
    fn the_format_is_decided_per_file_by_its_first_line() {
        let p = Path::new("output.w.txnlog");
        let json_line = Entry {
            time: 1.0,
            record: Record::Phase2Ok {
                txn_id: "t".into(),
                offset: 5,
            },
        }
        .to_line();
        assert_eq!(Format::detect(&json_line), Format::Json);
        assert_eq!(Format::detect("[1.0, '2-ok', 't', 5]"), Format::Python);
        // A Python file with a bad second line: named, in Python terms.
        let bad = "[1.0, '2-ok', 't', 5]\n[2.0, '2-ok', 't']\n[3.0, 'close', 'x']\n";
        let err = parse_all(bad, p).unwrap_err().to_string();
        assert!(
            err.starts_with("output.w.txnlog:2: 2-ok: missing element 3"),
            "{err}"
        );
        let bad = "[1.0, '2-ok', 't', 5]\n[2.0, 'close' 'x']\n[3.0, 'close', 'x']\n";
        let err = parse_all(bad, p).unwrap_err().to_string();
        assert!(
            err.starts_with("output.w.txnlog:2: not a Python literal list"),
            "{err}"
        );
        // A JSON file does not turn Python half way.
        let mixed = format!("{json_line}\n[2.0, 'close', 'x']\n{json_line}\n");
        let err = parse_all(&mixed, p).unwrap_err().to_string();
        assert!(
            err.starts_with("output.w.txnlog:2: not a JSON array"),
            "{err}"
        );
        // A torn last line of a Python file is ignored, as in JSON.
        let torn = "[1.0, '2-ok', 't', 5]\n[2.0, '2-o";
        assert_eq!(parse_all(torn, p).unwrap().len(), 1);
    }
}
