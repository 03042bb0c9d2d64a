//! The sink's log: one line per event, `TIMESTAMP LEVEL message`.
//!
//! The harness's sanity loop treats any line containing `ERROR`, `FATAL`
//! or `CRIT` as a failed run, so those words appear only on violation
//! lines, which are ERROR-level events written by [`fatal`] and
//! [`critical`] as `TIMESTAMP FATAL ...` / `TIMESTAMP CRITICAL ...` (no
//! level label). In every other line those words are rewritten
//! (`ERROR` → `Error`, ...), so text a peer controls (a cookie, a frame
//! name in a decode error) can never fake a violation.

use std::fmt::{self, Display};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Logs a violation that makes the sink exit: `FATAL <msg>`.
pub fn fatal(msg: impl Display) {
    tracing::error!("FATAL {msg}");
}

/// Logs a broken invariant that makes the sink exit: `CRITICAL <msg>`.
pub fn critical(msg: impl Display) {
    tracing::error!("CRITICAL {msg}");
}

/// Rewrites the words the sanity loop greps for, for non-violation lines.
pub fn defang(text: &str) -> String {
    text.replace("ERROR", "Error")
        .replace("FATAL", "Fatal")
        .replace("CRIT", "Crit")
}

/// `2024-05-01T12:34:56.123456Z` for the current time.
pub fn utc_now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// The line format described in the module doc.
struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut text = String::new();
        ctx.format_fields(Writer::new(&mut text), event)?;
        let level = *event.metadata().level();
        if level == Level::ERROR {
            writeln!(writer, "{} {text}", utc_now())
        } else {
            writeln!(
                writer,
                "{} {:<5} {}",
                utc_now(),
                level.as_str(),
                defang(&text)
            )
        }
    }
}

/// Builds the sink's subscriber, writing to `log` (appending) or stderr.
///
/// Verbosity comes from `CRASHER_LOG` (an `EnvFilter`), default `info`.
/// Each event is one `write` of a whole line, unbuffered, so every line is
/// on disk (in the page cache) before the process can exit.
pub fn dispatch(log: Option<&Path>) -> std::io::Result<Dispatch> {
    let filter = EnvFilter::try_from_env("CRASHER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(LineFormat);
    Ok(match log {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Dispatch::new(builder.with_writer(Mutex::new(file)).finish())
        }
        None => Dispatch::new(builder.with_writer(std::io::stderr).finish()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defang_removes_every_alarm_word() {
        let s = defang("peer sent ERROR frame, cookie FATAL-CRITICAL");
        assert!(
            !s.contains("ERROR") && !s.contains("FATAL") && !s.contains("CRIT"),
            "{s}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let t = utc_now();
        assert_eq!(t.len(), "2024-05-01T12:34:56.123456Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn violation_lines_carry_the_word_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sink.log");
        let d = dispatch(Some(&path)).unwrap();
        tracing::dispatcher::with_default(&d, || {
            tracing::warn!("bad cookie \"FATAL\" from a stray client");
            tracing::info!("listening on 127.0.0.1:1");
            fatal("duplicate data: offset 10 > message_id 0");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains(" WARN  bad cookie \"Fatal\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(" INFO  listening on 127.0.0.1:1"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("Z FATAL duplicate data: offset 10"),
            "{}",
            lines[2]
        );
    }
}
