//! The run directory: every file of one run lives under it.
//!
//! ```text
//! <runs>/<run-id>/
//!   run.log                 crasher's own glyph stream and messages
//!   paused.json             written when the world is paused
//!   state.json              the run's processes and settings (state.rs)
//!   profile.toml, .lock     a low-level-command run's profile copy and lock
//!   sink/output.<worker>    sink output and .txnlog per worker
//!   logs/sink.log           the sink's log
//!   logs/<worker>.log       a worker's current log; <worker>.<epoch>.gz rotated
//!   logs/feeder.<K>.log     a feeder's log; feeder.<K>.status its status file
//!   state/<worker>/         a worker's resilience directory
//! ```
//! `<runs>/current` is a symlink to the newest run, so low-level commands
//! run from another shell find it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Paths of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    id: String,
}

/// A fresh run id: UTC time plus random bits, sortable and unique.
pub fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(d as i64);
    format!(
        "{y:04}{m:02}{day:02}-{:02}{:02}{:02}-{:04x}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        rand::random::<u16>()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl RunDir {
    /// Creates the run directory: `explicit` if given, else `<runs>/<id>`,
    /// and points `<runs>/current` at it.
    pub fn create(runs: &Path, explicit: Option<&Path>, id: &str) -> io::Result<RunDir> {
        let root = match explicit {
            Some(p) => p.to_owned(),
            None => runs.join(id),
        };
        for sub in ["sink", "logs", "state"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let root = root.canonicalize()?;
        fs::create_dir_all(runs)?;
        let current = runs.join("current");
        let tmp = runs.join(format!(".current.{id}"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&root, &tmp)?;
        fs::rename(&tmp, &current)?;
        Ok(RunDir {
            root,
            id: id.to_owned(),
        })
    }

    /// The existing run directory `root` of run `id` (a later command of a
    /// run started by another process).
    pub fn open(root: &Path, id: &str) -> RunDir {
        RunDir {
            root: root.to_owned(),
            id: id.to_owned(),
        }
    }

    /// Moves a worker's log aside as `NAME.<epoch-ms>.log` (one timestamp,
    /// so no rename race) and returns the new path, for compression; `None`
    /// if there was no log.
    pub fn rotate_worker_log(&self, name: &str) -> Option<PathBuf> {
        let log = self.worker_log(name);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let aside = self.logs_dir().join(format!("{name}.{ms}.log"));
        fs::rename(&log, &aside).ok().map(|()| aside)
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the sink writes output and txnlogs.
    pub fn sink_dir(&self) -> PathBuf {
        self.root.join("sink")
    }

    /// The sink's output prefix (`sink/output`).
    pub fn sink_prefix(&self) -> PathBuf {
        self.sink_dir().join("output")
    }

    /// The sink's log.
    pub fn sink_log(&self) -> PathBuf {
        self.root.join("logs/sink.log")
    }

    /// A worker's current log.
    pub fn worker_log(&self, name: &str) -> PathBuf {
        self.root.join(format!("logs/{name}.log"))
    }

    /// A worker's resilience directory.
    pub fn worker_state(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    /// A feeder's log.
    pub fn feeder_log(&self, key: &str) -> PathBuf {
        self.root.join(format!("logs/feeder.{key}.log"))
    }

    /// A feeder's machine-readable status file.
    pub fn feeder_status(&self, key: &str) -> PathBuf {
        self.root.join(format!("logs/feeder.{key}.status"))
    }

    /// The logs folder.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// crasher's own transcript.
    pub fn run_log(&self) -> PathBuf {
        self.root.join("run.log")
    }

    /// The pause manifest.
    pub fn pause_manifest(&self) -> PathBuf {
        self.root.join("paused.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn current_points_at_the_newest_run() {
        let t = tempfile::tempdir().unwrap();
        let a = RunDir::create(t.path(), None, "a").unwrap();
        assert!(a.sink_dir().is_dir());
        let b = RunDir::create(t.path(), None, "b").unwrap();
        assert_eq!(fs::read_link(t.path().join("current")).unwrap(), b.root());
    }
}
