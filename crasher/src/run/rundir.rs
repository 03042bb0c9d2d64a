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
//!
//! A soak *claims* its run directory ([`RunDir::claim`]): it takes an
//! exclusive `flock` on `run.lock` (with its pid in it) for the run's whole
//! lifetime, so a second soak on the same `--run-dir` is refused naming the
//! holder, and it refuses a directory that already holds a run (its sink
//! output, state and feeder status would be mixed into the new run's
//! verdict) unless `--force` clears it first.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

/// Paths of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    id: String,
    /// The run's lock, for a run directory this process claimed: released
    /// when the last clone is dropped (or the process dies).
    lock: Option<Arc<Flock<fs::File>>>,
}

/// The lock file of a claimed run directory: an exclusive `flock` held by
/// the supervisor for the run's lifetime, its pid as the file's text.
pub const LOCK_FILE: &str = "run.lock";

/// Files and folders that mark a directory as a crasher run directory
/// (what `--force` may clear).
const RUN_MARKERS: &[&str] = &[
    "run.log",
    "run.json",
    "run.events",
    "state.json",
    "paused.json",
    "sink",
    "logs",
    "state",
];

/// Entries that never count as an earlier run's content.
const IGNORED: &[&str] = &[LOCK_FILE, ".lock"];

/// Why a run directory cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another process holds the directory's lock.
    #[error(
        "run directory {} is in use by crasher pid {holder} (it holds {}); \
         wait for that run to end or stop it with `crasher stop --run-dir {}`, \
         or choose another --run-dir",
        dir.display(), dir.join(LOCK_FILE).display(), dir.display()
    )]
    InUse {
        /// The run directory.
        dir: PathBuf,
        /// The holder's pid as its lock file says (`unknown` if unreadable).
        holder: String,
    },
    /// The directory holds an earlier run.
    #[error(
        "run directory {} already holds a run ({found}): reusing it would mix that run's \
         sink output, state and feeder status into this run's verdict. Give --force to \
         clear it first, clear it with `crasher reset --run-dir {}`, or choose a new --run-dir",
        dir.display(), dir.display()
    )]
    HoldsRun {
        /// The run directory.
        dir: PathBuf,
        /// Some of what is in it.
        found: String,
    },
    /// `--force` was given for a directory that is not a run directory.
    #[error(
        "run directory {} is not empty and does not look like a crasher run directory \
         ({found}): refusing to clear it, even with --force; choose another --run-dir",
        dir.display()
    )]
    NotARunDir {
        /// The directory.
        dir: PathBuf,
        /// Some of what is in it.
        found: String,
    },
    /// A file-system operation failed.
    #[error("run directory {}: cannot {what}: {err}", dir.display())]
    Io {
        /// The run directory.
        dir: PathBuf,
        /// What was being done.
        what: String,
        /// The OS error (not a `source`: it is printed once, here).
        err: io::Error,
    },
}

/// A fresh run id: UTC time plus random bits, sortable and unique.
pub fn new_run_id() -> String {
    run_id_at(SystemTime::now(), rand::random::<u16>())
}

/// `YYYYMMDD-HHMMSS-xxxx` for `t` (UTC) and `tag`.
fn run_id_at(t: SystemTime, tag: u16) -> String {
    // `2026-12-02T20:59:57Z` → `20261202-205957`.
    let stamp: String = humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    format!("{stamp}-{tag:04x}")
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
            lock: None,
        })
    }

    /// Claims the run directory of a new soak: `explicit` if given, else
    /// `<runs>/<id>`. Takes the directory's lock (held as long as this
    /// `RunDir` or a clone lives), refuses a directory that already holds a
    /// run unless `force` (which clears it, if it looks like a run
    /// directory), then creates it as [`RunDir::create`] does.
    pub fn claim(
        runs: &Path,
        explicit: Option<&Path>,
        id: &str,
        force: bool,
    ) -> Result<RunDir, ClaimError> {
        let root = match explicit {
            Some(p) => p.to_owned(),
            None => runs.join(id),
        };
        let io_err = |what: &str| {
            let dir = root.clone();
            let what = what.to_owned();
            move |err| ClaimError::Io { dir, what, err }
        };
        fs::create_dir_all(&root).map_err(io_err("create it"))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(root.join(LOCK_FILE))
            .map_err(io_err(&format!("open {LOCK_FILE}")))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "unknown".to_owned(),
                    t => t.to_owned(),
                };
                return Err(ClaimError::InUse { dir: root, holder });
            }
            Err((_, e)) => return Err(io_err(&format!("lock {LOCK_FILE}"))(e.into())),
        };
        let found = earlier_run(&root).map_err(io_err("list it"))?;
        if !found.is_empty() {
            let shown = found.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
            if !force {
                return Err(ClaimError::HoldsRun {
                    dir: root,
                    found: shown,
                });
            }
            if !found.iter().any(|f| RUN_MARKERS.contains(&f.as_str())) {
                return Err(ClaimError::NotARunDir {
                    dir: root,
                    found: shown,
                });
            }
            clear(&root).map_err(io_err("clear it (--force)"))?;
        }
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| write!(*lock, "{}", std::process::id()))
            .map_err(io_err(&format!("write {LOCK_FILE}")))?;
        let mut dir = RunDir::create(runs, Some(&root), id).map_err(io_err("set it up"))?;
        dir.lock = Some(Arc::new(lock));
        Ok(dir)
    }

    /// The existing run directory `root` of run `id` (a later command of a
    /// run started by another process).
    pub fn open(root: &Path, id: &str) -> RunDir {
        RunDir {
            root: root.to_owned(),
            id: id.to_owned(),
            lock: None,
        }
    }

    /// Whether this process holds the run directory's lock.
    pub fn is_claimed(&self) -> bool {
        self.lock.is_some()
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

    /// The current log of process `who` (`sink`, a worker name, `feeder.K`).
    pub fn log_of(&self, who: &str) -> PathBuf {
        self.root.join(format!("logs/{who}.log"))
    }

    /// The sink's log.
    pub fn sink_log(&self) -> PathBuf {
        self.log_of("sink")
    }

    /// A worker's current log.
    pub fn worker_log(&self, name: &str) -> PathBuf {
        self.log_of(name)
    }

    /// A worker's resilience directory.
    pub fn worker_state(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    /// A feeder's log.
    pub fn feeder_log(&self, key: &str) -> PathBuf {
        self.log_of(&format!("feeder.{key}"))
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

/// What in `root` belongs to an earlier run: every entry but the lock
/// files and empty `sink`, `logs` and `state` folders, sorted.
fn earlier_run(root: &Path) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    for e in fs::read_dir(root)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        let empty_dir = e.file_type()?.is_dir()
            && ["sink", "logs", "state"].contains(&name.as_str())
            && fs::read_dir(e.path())?.next().is_none();
        if !empty_dir {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

/// Removes everything in `root` but its lock files.
fn clear(root: &Path) -> io::Result<()> {
    for e in fs::read_dir(root)? {
        let e = e?;
        if IGNORED.contains(&e.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_carry_the_utc_time() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_763_881_262);
        assert_eq!(run_id_at(t, 0xab), "20251123-070102-00ab");
        assert_eq!(run_id_at(UNIX_EPOCH, 0), "19700101-000000-0000");
    }

    #[test]
    fn current_points_at_the_newest_run() {
        let t = tempfile::tempdir().unwrap();
        let a = RunDir::create(t.path(), None, "a").unwrap();
        assert!(a.sink_dir().is_dir());
        let b = RunDir::create(t.path(), None, "b").unwrap();
        assert_eq!(fs::read_link(t.path().join("current")).unwrap(), b.root());
    }

    #[test]
    fn a_run_directory_that_holds_a_run_is_refused_unless_forced() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        let a = RunDir::claim(t.path(), Some(&d), "a", false).unwrap();
        fs::write(a.run_log(), "old").unwrap();
        fs::write(a.sink_prefix().with_extension("0"), "old output").unwrap();
        drop(a);
        let e = RunDir::claim(t.path(), Some(&d), "b", false).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ClaimError::HoldsRun { .. }), "{msg}");
        assert!(
            msg.contains(&d.display().to_string()) && msg.contains("--force"),
            "{msg}"
        );
        assert!(msg.contains("crasher reset"), "{msg}");
        let b = RunDir::claim(t.path(), Some(&d), "b", true).unwrap();
        assert!(!b.run_log().exists());
        assert_eq!(fs::read_dir(b.sink_dir()).unwrap().count(), 0);
    }

    #[test]
    fn force_never_clears_a_directory_that_is_not_a_run() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("thesis.tex"), "precious").unwrap();
        let e = RunDir::claim(t.path(), Some(t.path()), "a", true).unwrap_err();
        assert!(matches!(e, ClaimError::NotARunDir { .. }), "{e}");
        assert!(t.path().join("thesis.tex").exists());
    }

    #[test]
    fn a_claimed_run_directory_is_locked_for_its_lifetime() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        let a = RunDir::claim(t.path(), Some(&d), "a", false).unwrap();
        let e = RunDir::claim(t.path(), Some(&d), "b", true).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(a);
        RunDir::claim(t.path(), Some(&d), "b", false).unwrap();
    }

    #[test]
    fn a_run_directory_under_a_regular_file_is_named() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), "").unwrap();
        let d = t.path().join("f/run");
        let msg = RunDir::claim(t.path(), Some(&d), "a", false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&d.display().to_string()), "{msg}");
        assert!(!msg.contains("os error 20): "), "{msg}");
    }
}
