//! What survives a SIGKILL, in `--resilience-dir`.
//!
//! - `coordinator.json` (initializer only): membership, the last committed
//!   checkpoint, the committed message id of every stream, and the workers
//!   that checkpoint shrank away until they prove its phase 2. Rewritten
//!   (temp file, fsync, rename, fsync of the folder) *before* any PHASE2
//!   commit of a checkpoint is sent: it is the commit decision.
//! - `worker.json` (every worker): its name and how many times it started,
//!   so a restart knows it is one (only the bug switches and the log use
//!   it). Written like `coordinator.json`: replaced without fsync, a power
//!   loss after a later folder fsync left the name durable and the file
//!   empty, and the worker could not start (found with `--disk lossy`).
//! - `sink.json` (every worker): this worker's own view of its sink output
//!   (the offset of its last transaction known committed, and the phase 1
//!   it sent last, whose outcome the coordinator's `last_txn` decides).
//!   After a sink reconnect or a restart the worker resumes from it, never
//!   from the sink's NOTIFY_ACK point of reference. Written like
//!   `coordinator.json`, before every PHASE1: a power loss must not take it
//!   back behind a vote the sink holds (the resumed offset would then be
//!   older than the sink's, a duplicate).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// A durable-state failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// Read or write failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Unparsable content.
    #[error("{path}: not valid state: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DurableError + '_ {
    move |source| DurableError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The sibling temp file `path` is written to before the rename.
fn temp_path(path: &Path) -> (PathBuf, &Path) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir.join(format!(".{name}.tmp")), dir)
}

static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

/// The `skip-fsync` bug switch: from now on [`write_atomic`] neither
/// fsyncs the file nor its folder (process-wide).
pub fn set_skip_fsync(on: bool) {
    SKIP_FSYNC.store(on, Ordering::Relaxed);
}

/// Writes `bytes` to `path` so that after a crash it holds either the old
/// or the new content: temp file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let (tmp, dir) = temp_path(path);
    let skip = SKIP_FSYNC.load(Ordering::Relaxed);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        if skip {
            Ok(())
        } else {
            f.sync_all()
        }
    });
    if let Err(e) = written {
        // A full disk must not leave a half-written temporary behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if skip {
        return std::fs::rename(&tmp, path).map_err(io(path));
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Writes `bytes` to `path` so that a reader, or a process started after
/// this one is SIGKILLed, sees either the old or the new content: temp
/// file, rename. Without fsync: a machine crash may lose it.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let (tmp, _) = temp_path(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, DurableError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| DurableError::Parse {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The coordinator's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordState {
    /// Bumped at every coordinator start; part of every transaction id, so
    /// ids never repeat across restarts.
    pub epoch: u64,
    /// `(epoch, checkpoint)` of the last committed checkpoint.
    pub last: Option<(u64, u64)>,
    /// Members in routing order (initializer first).
    pub members: Vec<String>,
    /// Whether the initial `--worker-count` members have all arrived.
    pub formed: bool,
    /// Committed message id per stream (the ACK / NOTIFY_ACK position).
    pub committed: BTreeMap<u64, u64>,
    /// Workers the last committed checkpoint removed that have not yet
    /// proven its PHASE2 reached the sink: their output of it is still a
    /// pending transaction, so the cluster waits for them like members.
    #[serde(default)]
    pub departing: BTreeSet<String>,
}

impl CoordState {
    /// The file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("coordinator.json")
    }

    /// Loads the state, or a fresh one if there is none.
    pub fn load(dir: &Path) -> Result<CoordState, DurableError> {
        Ok(load(&CoordState::path(dir))?.unwrap_or_default())
    }

    /// Writes it durably.
    pub fn save(&self, dir: &Path) -> Result<(), DurableError> {
        let json = serde_json::to_vec(self).map_err(|source| DurableError::Parse {
            path: CoordState::path(dir),
            source,
        })?;
        write_atomic(&CoordState::path(dir), &json)
    }

    /// This worker's last committed transaction id.
    pub fn last_txn(&self, worker: &str) -> Option<String> {
        self.last.map(|(e, c)| crate::ctl::txn_id(worker, e, c))
    }
}

/// A worker's own durable record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    /// Name it ran under.
    pub name: String,
    /// Starts so far, this one included.
    pub incarnation: u64,
}

impl WorkerState {
    /// Loads the record in `dir`, counts this start, and saves it.
    pub fn start(dir: &Path, name: &str) -> Result<WorkerState, DurableError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("worker.json");
        let mut st: WorkerState = load(&path)?.unwrap_or_default();
        st.name = name.to_owned();
        st.incarnation += 1;
        let json = serde_json::to_vec(&st).map_err(|source| DurableError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)?;
        Ok(st)
    }
}

/// A worker's own record of its sink output (`sink.json`).
///
/// The sink's committed offset for this worker is `committed`, unless the
/// coordinator's last committed transaction of this worker is `voting`'s,
/// in which case it is `voting`'s end ([`SinkState::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// End offset of the last transaction known committed (0: none).
    pub committed: u64,
    /// The last PHASE1 sent whose outcome was not known when it was
    /// written: its transaction id and end offset.
    #[serde(default)]
    pub voting: Option<(String, u64)>,
    /// WORKERS_LEFT was sent and its arrival not yet confirmed.
    #[serde(default)]
    pub leaving: bool,
}

impl SinkState {
    /// The file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("sink.json")
    }

    /// Loads the record in `dir`, or an empty one if there is none.
    pub fn load(dir: &Path) -> Result<SinkState, DurableError> {
        Ok(load(&SinkState::path(dir))?.unwrap_or_default())
    }

    /// Replaces the record in `dir` durably (see the module doc).
    pub fn save(&self, dir: &Path) -> Result<(), DurableError> {
        let path = SinkState::path(dir);
        let json = serde_json::to_vec(self).map_err(|source| DurableError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)
    }

    /// Settles the pending vote with the coordinator's last committed
    /// transaction of this worker: committed iff it is `voting`'s. Returns
    /// the committed output offset.
    pub fn resolve(&mut self, last_txn: Option<&str>) -> u64 {
        if let Some((txn, end)) = self.voting.take() {
            if last_txn == Some(txn.as_str()) {
                self.committed = end;
            }
        }
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_state_survives_and_garbage_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(CoordState::load(d.path()).unwrap(), CoordState::default());
        let mut s = CoordState {
            epoch: 3,
            last: Some((3, 17)),
            members: vec!["initializer".into(), "worker1".into()],
            formed: true,
            committed: BTreeMap::new(),
            departing: BTreeSet::from(["worker2".to_string()]),
        };
        s.committed.insert(u64::MAX - 1, 12_368_928);
        s.save(d.path()).unwrap();
        assert_eq!(CoordState::load(d.path()).unwrap(), s);
        assert_eq!(
            s.last_txn("worker1").as_deref(),
            Some("Passthrough-w-worker1-id-3:c_id=17")
        );
        // A state written before `departing` existed still loads.
        std::fs::write(
            CoordState::path(d.path()),
            br#"{"epoch":1,"last":null,"members":["initializer"],"formed":true,"committed":{}}"#,
        )
        .unwrap();
        assert!(CoordState::load(d.path()).unwrap().departing.is_empty());
        std::fs::write(CoordState::path(d.path()), b"{nope").unwrap();
        let e = CoordState::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("coordinator.json"), "{e}");
    }

    #[test]
    fn sink_state_resolves_by_the_last_committed_transaction() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(SinkState::load(d.path()).unwrap(), SinkState::default());
        let s = SinkState {
            committed: 100,
            voting: Some(("T:c_id=2".into(), 250)),
            leaving: false,
        };
        s.save(d.path()).unwrap();
        assert_eq!(SinkState::load(d.path()).unwrap(), s);
        let mut aborted = s.clone();
        assert_eq!(aborted.resolve(Some("T:c_id=1")), 100);
        assert_eq!(aborted.voting, None);
        let mut none = s.clone();
        assert_eq!(none.resolve(None), 100);
        let mut committed = s.clone();
        assert_eq!(committed.resolve(Some("T:c_id=2")), 250);
        // Settled once: a later reset changes nothing.
        assert_eq!(committed.resolve(Some("T:c_id=9")), 250);
        std::fs::write(SinkState::path(d.path()), b"[").unwrap();
        let e = SinkState::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("sink.json"), "{e}");
    }

    #[test]
    fn incarnations_count() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(WorkerState::start(d.path(), "w").unwrap().incarnation, 1);
        assert_eq!(WorkerState::start(d.path(), "w").unwrap().incarnation, 2);
    }
}
