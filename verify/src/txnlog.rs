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

    /// Parses one line; `Err` carries the reason (the caller adds file and line).
    pub fn parse(line: &str) -> Result<Entry, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON array: {e}"))?;
        let a = v.as_array().ok_or("not a JSON array")?;
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
            field(i)?
                .as_array()
                .and_then(|xs| xs.iter().map(|x| x.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| format!("{tag}: element {i} is not a list of strings"))
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
    let text = fs::read_to_string(path).map_err(|source| TxnlogError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_all(&text, path)
}

/// Parses the text of a txnlog (see [`read`]).
pub fn parse_all(text: &str, path: &Path) -> Result<Vec<Entry>, TxnlogError> {
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        match Entry::parse(line) {
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
}
