//! Plain, greppable log lines for the feeders.
//!
//! The soak's progress checks (and old runbooks) grep the feeder's log for
//! fixed substrings such as `MultiSourceConnector acked Stream(...)`, so the
//! feeders write their own lines instead of going through `tracing`: the
//! text is a contract, and `crasher feed --log FILE` must be able to send it
//! to a file even though the binary's tracing subscriber writes to stderr.
//!
//! Each line is `YYYY-MM-DD HH:MM:SS,mmm LEVEL    [tool] message` (UTC), the
//! shape of the original Python feeder's `asctime levelname [file:line]`,
//! and is written with one `write` call so concurrent writers never
//! interleave within a line.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Severity of a log line; printed padded to 8 columns like Python's logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something unusual the feeder recovers from (rewind, rejection, reconnect).
    Warning,
    /// A failure: a dropped connection, a fatal input error.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// Where log lines go: a file opened for append, or stderr. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Logger {
    tool: &'static str,
    file: Option<Arc<File>>,
}

impl Logger {
    /// Logs to stderr, tagging lines with `tool` (`feed`, `blast`, `receive`).
    pub fn stderr(tool: &'static str) -> Logger {
        Logger { tool, file: None }
    }

    /// Logs to `path` (created if missing, appended to), or to stderr when
    /// `path` is `None`.
    pub fn open(tool: &'static str, path: Option<&Path>) -> io::Result<Logger> {
        let file = match path {
            Some(p) => Some(Arc::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        Ok(Logger { tool, file })
    }

    /// Writes one line. Logging failures are ignored: losing a log line must
    /// never stop a feeder.
    pub fn log(&self, level: Level, msg: fmt::Arguments<'_>) {
        let line = format!(
            "{} {:<8} [{}] {}\n",
            timestamp(SystemTime::now()),
            level.as_str(),
            self.tool,
            msg
        );
        let _ = match &self.file {
            Some(f) => (&**f).write_all(line.as_bytes()),
            None => io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    /// Logs at [`Level::Info`].
    pub fn info(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Info, msg);
    }

    /// Logs at [`Level::Warning`].
    pub fn warn(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Warning, msg);
    }

    /// Logs at [`Level::Error`].
    pub fn error(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Error, msg);
    }
}

/// Formats `t` as `YYYY-MM-DD HH:MM:SS,mmm` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    // `2026-11-23T07:01:02.123Z` → `2026-11-23 07:01:02,123`.
    humantime::format_rfc3339_millis(t)
        .to_string()
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
        .replacen('.', ",", 1)
}

/// Renders bytes as the inside of Python's `b'...'` literal: printable ASCII
/// as is; `\\`, `\'`, `\t`, `\n`, `\r` escaped; every other byte as
/// `\xNN`. The log lines say `name=b'<this>'` as the original feeder printed
/// them (Python would switch to double quotes for a name containing `'`; we
/// always use single quotes and escape it).
pub fn py_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00,000");
        // 2019-10-10 15:55:33.406 UTC, the original's example line.
        let t = UNIX_EPOCH + Duration::from_millis(1_570_722_933_406);
        assert_eq!(timestamp(t), "2019-10-10 15:55:33,406");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(t), "2000-02-29 00:00:00,000");
    }

    #[test]
    fn bytes_render_like_python_repr() {
        assert_eq!(py_bytes(b"/tmp/input-file.A.txt"), "/tmp/input-file.A.txt");
        assert_eq!(py_bytes(b"a'b\\c\n\x01\xff"), "a\\'b\\\\c\\n\\x01\\xff");
    }

    #[test]
    fn lines_go_to_the_file_with_level_and_tool() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let l = Logger::open("feed", Some(&p)).unwrap();
        l.info(format_args!("hello {}", 1));
        l.warn(format_args!("careful"));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(" INFO     [feed] hello 1"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(" WARNING  [feed] careful"),
            "{}",
            lines[1]
        );
    }
}
