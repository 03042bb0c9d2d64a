//! `--disk lossy`: every worker's `{state}` directory is a lossyfs mount,
//! one `crasher lossyfs` process per node, mounted before the node first
//! starts and unmounted when the run ends (see docs/disk.md).
//!
//! Also the file surgery of the `corrupt` and `truncate` faults, and the
//! profile's data-file globs that choose the files they hit.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use nix::sys::signal::Signal;
use procs::{Proc, RUN_ID_VAR};

use super::hosts::{shell_quote, Remote};

/// How worker state directories are stored.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DiskMode {
    /// A plain directory of the run directory (a SIGKILL loses nothing).
    #[default]
    Plain,
    /// A lossyfs mount: `power-loss` drops what was not fsynced.
    Lossy,
}

/// One node's mount.
#[derive(Debug)]
struct Mounted {
    proc: Proc,
    mountpoint: PathBuf,
    /// `--hosts`: the host it is mounted on, and crasher's path there;
    /// `proc` is then the local `ssh` client of its session.
    remote: Option<(Arc<Remote>, PathBuf)>,
}

/// The lossyfs mounts of a run. Dropping it unmounts them all.
#[derive(Debug)]
pub struct Disks {
    root: PathBuf,
    crasher: PathBuf,
    run_id: String,
    eager_names: bool,
    mounts: BTreeMap<String, Mounted>,
}

/// A disk that could not be mounted or acted on.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Starting lossyfs failed.
    #[error(transparent)]
    Proc(#[from] procs::ProcError),
    /// It did not mount in time.
    #[error("lossyfs for {name} did not mount on {mountpoint} within 10 s (log: {log})")]
    NotMounted {
        /// Node.
        name: String,
        /// Where.
        mountpoint: PathBuf,
        /// Its log.
        log: PathBuf,
    },
    /// The loss command failed.
    #[error("power loss of {name} failed: {message}")]
    Lose {
        /// Node.
        name: String,
        /// What failed.
        message: String,
    },
    /// File system.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Disks {
    /// Mounts will keep their work directories in `root`
    /// (`RUN/disks/<node>/`) and run `crasher` (this binary).
    /// With `eager_names`, names are durable at once (`--eager-names`).
    pub fn new(root: &Path, crasher: &Path, run_id: &str, eager_names: bool) -> Disks {
        Disks {
            root: root.to_owned(),
            crasher: crasher.to_owned(),
            run_id: run_id.to_owned(),
            eager_names,
            mounts: BTreeMap::new(),
        }
    }

    /// Mounts a lossyfs on `mountpoint` for node `name` unless one runs;
    /// returns once it is in /proc/mounts and answers on its socket.
    pub fn ensure(&mut self, name: &str, mountpoint: &Path) -> Result<(), DiskError> {
        if let Some(m) = self.mounts.get_mut(name) {
            if m.proc.is_running() && lossyfs::is_mounted(&m.mountpoint) {
                return Ok(());
            }
        }
        std::fs::create_dir_all(mountpoint)?;
        let mountpoint = std::fs::canonicalize(mountpoint)?;
        let work = self.root.join(name);
        std::fs::create_dir_all(&work)?;
        let log = work.with_extension("log");
        let mut cmd = Command::new(&self.crasher);
        cmd.arg("lossyfs")
            .arg(&mountpoint)
            .arg("--dir")
            .arg(&work)
            .env(RUN_ID_VAR, &self.run_id);
        if self.eager_names {
            cmd.arg("--eager-names");
        }
        let mut proc = Proc::spawn(&format!("lossyfs.{name}"), cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = procs::wait_until(deadline, || {
            lossyfs::is_mounted(&mountpoint) && work.join("control.sock").exists()
        });
        if !ready || !proc.is_running() {
            let _ = proc.terminate(Duration::from_secs(2));
            lossyfs::unmount(&mountpoint);
            return Err(DiskError::NotMounted {
                name: name.to_owned(),
                mountpoint,
                log,
            });
        }
        self.mounts.insert(
            name.to_owned(),
            Mounted {
                proc,
                mountpoint,
                remote: None,
            },
        );
        Ok(())
    }

    /// `--hosts`: mounts a lossyfs for node `name` on its host `r`, on
    /// `WORKDIR/RUN_ID/state/NAME` there (work directory
    /// `WORKDIR/RUN_ID/disks/NAME`), unless one runs. It runs under the
    /// remote wrapper as process `lossyfs.NAME` (so it dies with its
    /// session; its log comes back to `RUN/disks/NAME.log`), with the
    /// host's crasher (`crasher` there, else this binary's path). Returns
    /// once it is mounted there and answers on its socket, as the host's
    /// control shell sees it.
    pub fn ensure_remote(&mut self, name: &str, r: &Arc<Remote>) -> Result<(), DiskError> {
        if let Some(m) = self.mounts.get_mut(name) {
            if m.proc.is_running() {
                return Ok(());
            }
            let _ = m.proc.kill();
        }
        let mountpoint = r.dir.join("state").join(name);
        let work = r.dir.join("disks").join(name);
        let crasher = r
            .spec
            .crasher
            .clone()
            .unwrap_or_else(|| self.crasher.clone());
        let (mq, wq) = (
            shell_quote(&mountpoint.display().to_string()),
            shell_quote(&work.display().to_string()),
        );
        let not_mounted = |message: String| DiskError::Lose {
            name: name.to_owned(),
            message,
        };
        r.run_control(&format!("mkdir -p {mq} {wq}"), Duration::from_secs(10))
            .map_err(not_mounted)?;
        let mut args = vec![
            "lossyfs".to_owned(),
            mountpoint.display().to_string(),
            "--dir".into(),
            work.display().to_string(),
        ];
        if self.eager_names {
            args.push("--eager-names".into());
        }
        let pname = format!("lossyfs.{name}");
        let mut cmd = r.ssh();
        cmd.arg(r.wrapped(&pname, &self.run_id, &crasher, &args))
            .env(RUN_ID_VAR, &self.run_id);
        std::fs::create_dir_all(&self.root)?;
        let log = self.root.join(format!("{name}.log"));
        let mut proc = Proc::spawn_with_open_stdin(&pname, cmd, &log)?;
        // Polled on the host: the mount is in its /proc/mounts and the
        // control socket is there (10 s at most).
        let ready = r.run_control(
            &format!(
                "i=0; until awk -v m={mq} '$2==m && $3==\"fuse.lossyfs\" {{f=1}} END {{exit !f}}' /proc/mounts \
                 && [ -S {wq}/control.sock ]; do [ $i -ge 200 ] && exit 1; sleep 0.05; i=$((i+1)); done"
            ),
            Duration::from_secs(20),
        );
        if ready.is_err() || !proc.is_running() {
            let _ = r.signal(&pname, Signal::SIGKILL);
            let _ = proc.kill();
            let _ = r.run_control(&unmount_script(&mountpoint), Duration::from_secs(10));
            return Err(DiskError::NotMounted {
                name: name.to_owned(),
                mountpoint,
                log,
            });
        }
        self.mounts.insert(
            name.to_owned(),
            Mounted {
                proc,
                mountpoint,
                remote: Some((r.clone(), crasher)),
            },
        );
        Ok(())
    }

    /// Drops node `name`'s un-synced writes (its processes must be dead):
    /// on a host, `crasher lossyfs --lose` run there through its control
    /// shell.
    pub fn lose(&self, name: &str) -> Result<String, DiskError> {
        let m = self.mounts.get(name).ok_or_else(|| DiskError::Lose {
            name: name.to_owned(),
            message: "no lossyfs is mounted for it".into(),
        })?;
        let lost = match &m.remote {
            Some((r, crasher)) => r.run_control(
                &format!(
                    "{} lossyfs --lose {} 1>&2",
                    shell_quote(&crasher.display().to_string()),
                    shell_quote(&m.mountpoint.display().to_string())
                ),
                Duration::from_secs(30),
            ),
            None => lossyfs::lose(&m.mountpoint).map_err(|e| format!("{e:#}")),
        };
        lost.map_err(|message| DiskError::Lose {
            name: name.to_owned(),
            message,
        })
    }

    /// The pids of the lossyfs processes.
    pub fn pids(&self) -> Vec<u32> {
        self.mounts.values().map(|m| m.proc.pid()).collect()
    }

    /// Unmounts everything: SIGTERM (lossyfs unmounts itself), then
    /// `fusermount3 -u` or a lazy unmount for whatever is left.
    pub fn unmount_all(&mut self) {
        for (name, mut m) in std::mem::take(&mut self.mounts) {
            match &m.remote {
                // SIGTERM there (lossyfs unmounts itself), up to 3 s for
                // its session to end, then the session closed (the wrapper
                // SIGKILLs it) and an unmount there for whatever is left.
                Some((r, _)) => {
                    let pname = format!("lossyfs.{name}");
                    if m.proc.is_running() {
                        let _ = r.signal(&pname, Signal::SIGCONT);
                        let _ = r.signal(&pname, Signal::SIGTERM);
                        let _ = m
                            .proc
                            .wait_deadline(Instant::now() + Duration::from_secs(3));
                    }
                    let _ = m.proc.kill();
                    if let Err(e) =
                        r.run_control(&unmount_script(&m.mountpoint), Duration::from_secs(10))
                    {
                        eprintln!(
                            "crasher: cannot unmount {} there: {e}",
                            m.mountpoint.display()
                        );
                    }
                }
                None => {
                    let _ = m.proc.terminate(Duration::from_secs(3));
                    lossyfs::unmount(&m.mountpoint);
                }
            }
        }
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

/// A shell script that unmounts `mountpoint` if it is mounted:
/// `fusermount3 -u`, then a lazy `umount -l` (as [`lossyfs::unmount`]
/// does here), polling up to 5 s for a mount whose lossyfs is still
/// unmounting itself.
pub fn unmount_script(mountpoint: &Path) -> String {
    let m = shell_quote(&mountpoint.display().to_string());
    format!(
        "mounted() {{ awk -v m={m} '$2==m {{f=1}} END {{exit !f}}' /proc/mounts; }}; \
         mounted || exit 0; fusermount3 -u -q {m} 2>/dev/null; mounted && umount -l {m}; \
         i=0; while mounted; do [ $i -ge 100 ] && exit 1; sleep 0.05; i=$((i+1)); done"
    )
}

/// Turns a glob (`*` any run of characters but `/`, `**/` any folders,
/// `?` one character) into an anchored regex.
pub fn glob_regex(glob: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let mut rest = glob;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("**/") {
            re.push_str("(?:.*/)?");
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix("**") {
            re.push_str(".*");
            rest = r;
            continue;
        }
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        rest = &rest[c.len_utf8()..];
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("bad glob {glob:?}: {e}"))
}

/// The non-empty regular files under `dir` whose path relative to it
/// matches one of `globs`, sorted.
pub fn data_files(dir: &Path, globs: &[regex::Regex]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && md.len() > 0 {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy();
                if globs.iter().any(|g| g.is_match(&rel)) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// `--hosts`: the non-empty regular files under `dir` on host `r` whose
/// path relative to it matches one of `globs`, with their lengths, sorted
/// (GNU `find` there, through the control shell). A missing `dir` has none.
pub fn remote_data_files(
    r: &Remote,
    dir: &Path,
    globs: &[regex::Regex],
) -> Result<Vec<(String, u64)>, String> {
    let d = shell_quote(&dir.display().to_string());
    let listed = r.run_control(
        &format!("cd {d} 2>/dev/null || exit 0; find . -type f -size +0c -printf '%s %P\\n' >&2"),
        Duration::from_secs(10),
    )?;
    let mut out: Vec<(String, u64)> = listed
        .lines()
        .filter_map(|l| {
            let (len, rel) = l.split_once(' ')?;
            Some((rel.to_owned(), len.parse().ok()?))
        })
        .filter(|(rel, _)| globs.iter().any(|g| g.is_match(rel)))
        .collect();
    out.sort();
    Ok(out)
}

/// `--hosts`: [`flip_bit`] of `path` on host `r` (`od`, then `dd
/// conv=notrunc,fsync` there, through the control shell).
pub fn remote_flip_bit(r: &Remote, path: &Path, offset: u64, bit: u8) -> Result<(u8, u8), String> {
    let f = shell_quote(&path.display().to_string());
    let bit = bit & 7;
    let answer = r.run_control(
        &format!(
            "o=$(od -An -tu1 -j {offset} -N1 {f} | tr -d ' ') && [ -n \"$o\" ] || exit 1; \
             n=$(( o ^ {mask} )); printf \"\\$(printf '%03o' \"$n\")\" \
             | dd of={f} bs=1 seek={offset} count=1 conv=notrunc,fsync 2>/dev/null || exit 1; \
             echo \"$o $n\" >&2",
            mask = 1u8 << bit
        ),
        Duration::from_secs(10),
    )?;
    let mut v = answer.split_whitespace().map(|x| x.parse::<u8>());
    match (v.next(), v.next()) {
        (Some(Ok(old)), Some(Ok(new))) => Ok((old, new)),
        _ => Err(format!("unexpected answer {answer:?}")),
    }
}

/// `--hosts`: [`truncate_to`] of `path` on host `r` (`dd conv=fsync`
/// there, through the control shell).
pub fn remote_truncate_to(r: &Remote, path: &Path, len: u64) -> Result<(), String> {
    let f = shell_quote(&path.display().to_string());
    r.run_control(
        &format!("dd if=/dev/null of={f} bs=1 seek={len} conv=fsync 2>/dev/null"),
        Duration::from_secs(10),
    )
    .map(|_| ())
}

/// Flips bit `bit` (0-7) of byte `offset` of `path`, durably (fsync).
pub fn flip_bit(path: &Path, offset: u64, bit: u8) -> io::Result<(u8, u8)> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    let new = b[0] ^ (1 << (bit & 7));
    f.write_all_at(&[new], offset)?;
    f.sync_all()?;
    Ok((b[0], new))
}

/// Cuts `path` to `len` bytes, durably (fsync).
pub fn truncate_to(path: &Path, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let g = glob_regex("*.json").unwrap();
        assert!(g.is_match("coordinator.json") && !g.is_match("a/b.json"));
        let g = glob_regex("**/*.blk").unwrap();
        assert!(g.is_match("x.blk") && g.is_match("jetstream/s/msgs/1.blk"));
        assert!(!g.is_match("x.idx"));
        assert!(glob_regex("a?c").unwrap().is_match("abc"));
        assert!(
            glob_regex("a.c").unwrap().is_match("a.c")
                && !glob_regex("a.c").unwrap().is_match("abc")
        );
    }

    #[test]
    fn surgery_flips_and_truncates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, [0u8, 0, 0]).unwrap();
        assert_eq!(flip_bit(&p, 1, 3).unwrap(), (0, 8));
        assert_eq!(std::fs::read(&p).unwrap(), vec![0, 8, 0]);
        truncate_to(&p, 1).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), vec![0]);
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/g.json"), "x").unwrap();
        std::fs::write(d.path().join("empty.json"), "").unwrap();
        let files = data_files(d.path(), &[glob_regex("**/*.json").unwrap()]);
        assert_eq!(files, vec![d.path().join("sub/g.json")]);
    }
}
