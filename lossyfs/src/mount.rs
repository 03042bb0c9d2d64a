//! Mounting, unmounting and finding lossyfs mounts.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};

use crate::fs::LossyFs;
use crate::state::{LossReport, State, Stats};

/// The file-system type lossyfs mounts show in `/proc/mounts`.
pub const FSTYPE: &str = "fuse.lossyfs";

/// The folders of a lossyfs work directory.
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// The work directory `root` (made absolute).
    pub fn new(root: &Path) -> io::Result<WorkDir> {
        std::fs::create_dir_all(root)?;
        Ok(WorkDir {
            root: std::fs::canonicalize(root)?,
        })
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The live tree: what the mount shows.
    pub fn backing(&self) -> PathBuf {
        self.root.join("backing")
    }

    /// The durable image's file copies.
    pub fn durable(&self) -> PathBuf {
        self.root.join("durable")
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
}

/// A mounted lossyfs, served by a thread of this process. Dropping it
/// unmounts it (lazily if it is busy).
pub struct Lossy {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    work: WorkDir,
}

impl std::fmt::Debug for Lossy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lossy")
            .field("mountpoint", &self.mountpoint)
            .field("work", &self.work.root)
            .finish()
    }
}

/// A mount failure, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// No /dev/fuse.
    #[error("/dev/fuse is missing: this machine cannot mount FUSE file systems")]
    NoFuse,
    /// The work directory could not be prepared.
    #[error("work directory {path}: {source}")]
    Work {
        /// The folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The mount itself failed.
    #[error("cannot mount lossyfs on {path} (is fusermount3 installed? Debian: fuse3): {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The mount did not show up in /proc/mounts in time.
    #[error("lossyfs on {0} did not appear in /proc/mounts within 10 s")]
    NotMounted(PathBuf),
}

impl Lossy {
    /// Mounts a lossyfs on `mountpoint` (created if missing) over the work
    /// directory `work` (its `backing/` is the live tree; whatever is
    /// already there counts as durable). Returns once the mount is in
    /// /proc/mounts.
    pub fn mount(work: &Path, mountpoint: &Path) -> Result<Lossy, MountError> {
        Lossy::mount_with(work, mountpoint, false)
    }

    /// [`Lossy::mount`], with `eager_names`: every name change is durable
    /// at once (only file data waits for a sync), as in LazyFS.
    pub fn mount_with(
        work: &Path,
        mountpoint: &Path,
        eager_names: bool,
    ) -> Result<Lossy, MountError> {
        if !Path::new("/dev/fuse").exists() {
            return Err(MountError::NoFuse);
        }
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| MountError::Work { path, source }
        };
        let work = WorkDir::new(work).map_err(werr(work))?;
        std::fs::create_dir_all(mountpoint).map_err(werr(mountpoint))?;
        let mountpoint = std::fs::canonicalize(mountpoint).map_err(werr(mountpoint))?;
        let mut state = State::new(&work.backing(), &work.durable()).map_err(werr(work.root()))?;
        state.eager_names = eager_names;
        let state = Arc::new(Mutex::new(state));
        let options = [
            MountOption::FSName(format!("lossyfs:{}", work.root().display())),
            MountOption::Subtype("lossyfs".into()),
            MountOption::AutoUnmount,
            MountOption::AllowOther,
            MountOption::RW,
            MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount2(LossyFs::new(state.clone()), &mountpoint, &options)
            .map_err(|source| MountError::Mount {
                path: mountpoint.clone(),
                source,
            })?;
        let lossy = Lossy {
            state,
            session: Some(session),
            mountpoint,
            work,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(&lossy.mountpoint) {
            if Instant::now() > deadline {
                return Err(MountError::NotMounted(lossy.mountpoint.clone()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(lossy)
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Its work directory.
    pub fn work(&self) -> &WorkDir {
        &self.work
    }

    /// Loses everything not synced. Processes using the mount should be
    /// dead: their open files are closed under them.
    pub fn lose(&self) -> io::Result<LossReport> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).lose()
    }

    /// Durability counters so far.
    pub fn stats(&self) -> Stats {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clone()
    }

    /// The shared state (for the control socket).
    pub(crate) fn state(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        drop(self.session.take());
        unmount(&self.mountpoint);
    }
}

/// Decodes the octal escapes (`\040`) of a /proc/mounts field.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(n) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lossyfs mounts in /proc/mounts: (mount point, work directory).
pub fn lossy_mounts() -> Vec<(PathBuf, PathBuf)> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() < 3 || f[2] != FSTYPE {
                return None;
            }
            let work = unescape(f[0]).strip_prefix("lossyfs:")?.to_owned();
            Some((PathBuf::from(unescape(f[1])), PathBuf::from(work)))
        })
        .collect()
}

/// Whether anything is mounted on `path`.
pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines().any(|l| {
        l.split(' ')
            .nth(1)
            .is_some_and(|m| Path::new(&unescape(m)) == path)
    })
}

/// Unmounts `path` if it is mounted: `fusermount3 -u`, then a lazy
/// unmount (`umount2(MNT_DETACH)`) if it is still there. Best effort.
pub fn unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-q")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // fusermount3 -u is synchronous: still there means busy.
    if is_mounted(path) {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn octal_escapes_decode() {
        assert_eq!(super::unescape(r"/a\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert_eq!(super::unescape(r"/end\"), r"/end\");
    }
}
