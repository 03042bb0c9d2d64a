//! The feeder's machine-readable status file.
//!
//! `crasher feed --status-file PATH` keeps PATH holding one JSON object,
//! rewritten atomically (temp file + rename, so a reader never sees a torn
//! file) on every state change and at most about ten times a second
//! otherwise. The supervisor reads it with [`FeedStatus::read`] for the
//! ack-progress check and to tell a finished feeder from a crashed one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;

/// Why a status file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file (or its temp file) could not be read, written or renamed.
    #[error("status file {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file does not hold a status object.
    #[error("status file {path}: not a feeder status: {source}")]
    Parse {
        /// The path read.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A snapshot of one feeder (see docs/feeders.md for each field's meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// The input file name, as given on the command line (lossy UTF-8).
    pub file: String,
    /// The stream id (`connector::stream_id_for(file name)`).
    pub stream_id: u64,
    /// Whether a connection to a worker is up (handshake may be in progress).
    pub connected: bool,
    /// Whether the worker granted the stream (successful NOTIFY_ACK) on the
    /// current connection.
    pub is_open: bool,
    /// The last point of reference the worker reported as durably processed
    /// (from ACK or a successful NOTIFY_ACK); `null` while none.
    pub acked: Option<u64>,
    /// MESSAGE frames this process has queued for sending, resends included.
    pub sent: u64,
    /// Payload bytes of those frames: the rate this feeder offered (the
    /// run record's `offered` series). Absent in older status files.
    #[serde(default)]
    pub sent_bytes: u64,
    /// Start offset of the file's last line: the feeder is done once
    /// `acked >= last_line_offset`. 0 for an empty file.
    pub last_line_offset: u64,
    /// The whole file is acknowledged; the process exits 0 right after.
    pub done: bool,
    /// NOTIFY_ACKs with success = false received so far.
    pub notify_rejections: u64,
    /// RESTART frames received so far.
    pub restarts: u64,
    /// When this snapshot was written, seconds since the Unix epoch.
    pub updated_unix: f64,
}

impl FeedStatus {
    /// Reads and parses a status file.
    pub fn read(path: &Path) -> Result<FeedStatus, StatusError> {
        let text = fs::read(path).map_err(|source| StatusError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| StatusError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the status to `path` atomically: a temp file in the same
    /// folder, then a rename over `path`.
    pub fn write_atomic(&self, path: &Path) -> Result<(), StatusError> {
        let mut text = serde_json::to_vec(self).map_err(|source| StatusError::Parse {
            path: path.to_owned(),
            source,
        })?;
        text.push(b'\n');
        write_atomic(path, &text).map_err(|source| StatusError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Seconds since the Unix epoch, for [`FeedStatus::updated_unix`].
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// `st` stamped now: what [`StatusWriter::update`] writes.
pub fn snapshot(st: &FeedStatus) -> FeedStatus {
    FeedStatus {
        updated_unix: unix_now(),
        ..st.clone()
    }
}

/// `Stream(id=..., name=b'...', point_of_ref=..., is_open=...)`, as the
/// original printed its stream records (`name_repr`: the name as a Python
/// bytes literal's inside).
pub fn stream_repr(stream_id: u64, name_repr: &str, por: u64, is_open: bool) -> String {
    format!(
        "Stream(id={stream_id}, name=b'{name_repr}', point_of_ref={por}, is_open={})",
        if is_open { "True" } else { "False" }
    )
}

/// Where a restarted feeder resumes: the `acked` offset of its own status
/// file, if the file is this feeder's (same stream id).
pub fn resume_offset(status_file: &Path, stream_id: u64, log: &crate::log::Logger) -> Option<u64> {
    let st = FeedStatus::read(status_file).ok()?;
    if st.stream_id != stream_id {
        log.warn(format_args!(
            "status file {} belongs to stream id {}, not {stream_id}: starting from the beginning",
            status_file.display(),
            st.stream_id
        ));
        return None;
    }
    st.acked
}

/// Writes a status file no more often than every [`StatusWriter::MIN_GAP`]
/// unless forced, remembering whether a newer state is still unwritten.
#[derive(Debug)]
pub struct StatusWriter {
    path: Option<PathBuf>,
    last: Option<Instant>,
    dirty: bool,
}

impl StatusWriter {
    /// Minimum time between two unforced writes.
    pub const MIN_GAP: Duration = Duration::from_millis(100);

    /// A writer of `path` (`None`: no status file, every call a no-op).
    pub fn new(path: Option<PathBuf>) -> StatusWriter {
        StatusWriter {
            path,
            last: None,
            dirty: false,
        }
    }

    /// Notes that the state changed; written now if `force` or if the last
    /// write is old enough, else later by [`StatusWriter::flush_due`].
    pub fn update(
        &mut self,
        force: bool,
        snapshot: impl FnOnce() -> FeedStatus,
    ) -> Result<(), StatusError> {
        if self.path.is_none() {
            return Ok(());
        }
        self.dirty = true;
        let due = match self.last {
            None => true,
            Some(t) => t.elapsed() >= Self::MIN_GAP,
        };
        if force || due {
            self.write(snapshot())?;
        }
        Ok(())
    }

    /// When an unwritten change must be written, if there is one.
    pub fn due_at(&self) -> Option<Instant> {
        if !self.dirty || self.path.is_none() {
            return None;
        }
        Some(self.last.map_or_else(Instant::now, |t| t + Self::MIN_GAP))
    }

    /// Writes the pending change if its time has come.
    pub fn flush_due(&mut self, snapshot: impl FnOnce() -> FeedStatus) -> Result<(), StatusError> {
        if self.due_at().is_some_and(|t| t <= Instant::now()) {
            self.write(snapshot())?;
        }
        Ok(())
    }

    fn write(&mut self, status: FeedStatus) -> Result<(), StatusError> {
        self.last = Some(Instant::now());
        self.dirty = false;
        match &self.path {
            Some(p) => status.write_atomic(p),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FeedStatus {
        FeedStatus {
            file: "/tmp/input-file.A.txt".into(),
            stream_id: 2_783_779_322_737_126_512,
            connected: true,
            is_open: true,
            acked: None,
            sent: 7,
            sent_bytes: 0,
            last_line_offset: 12_368_928,
            done: false,
            notify_rejections: 1,
            restarts: 2,
            updated_unix: 1.5,
        }
    }

    #[test]
    fn round_trips_through_an_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        let s = sample();
        s.write_atomic(&p).unwrap();
        assert_eq!(FeedStatus::read(&p).unwrap(), s);
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"acked\":null"), "{text}");
        assert!(text.contains("\"stream_id\":2783779322737126512"), "{text}");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        fs::write(&p, "{\"file\": 3}").unwrap();
        let e = FeedStatus::read(&p).unwrap_err();
        assert!(matches!(e, StatusError::Parse { .. }));
        assert!(e.to_string().contains("status.json"));
        assert!(matches!(
            FeedStatus::read(&dir.path().join("missing")),
            Err(StatusError::Io { .. })
        ));
    }

    #[test]
    fn unforced_updates_are_throttled_but_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        let mut w = StatusWriter::new(Some(p.clone()));
        let mut s = sample();
        w.update(false, || s.clone()).unwrap();
        assert_eq!(FeedStatus::read(&p).unwrap().sent, 7);
        s.sent = 8;
        w.update(false, || s.clone()).unwrap();
        // Too soon: not written yet, but due later.
        assert_eq!(FeedStatus::read(&p).unwrap().sent, 7);
        let due = w.due_at().unwrap();
        assert!(due > Instant::now());
        std::thread::sleep(due - Instant::now());
        w.flush_due(|| s.clone()).unwrap();
        assert_eq!(FeedStatus::read(&p).unwrap().sent, 8);
        assert!(w.due_at().is_none());
        // Forced updates are written at once.
        s.sent = 9;
        w.update(true, || s.clone()).unwrap();
        assert_eq!(FeedStatus::read(&p).unwrap().sent, 9);
    }
}
