//! Child processes the harness can always account for.
//!
//! Every [`Proc`] runs in its own process group (so signals reach its whole
//! tree and a terminal's Ctrl-C does not), has stdin from `/dev/null`,
//! writes stdout and stderr to a log file (so there is no pipe to drain and
//! no way to block on a full one), is reaped by [`Proc::wait`] or
//! [`Proc::try_wait`], and is SIGKILLed and reaped when dropped — unless
//! it is explicitly handed off with [`Proc::detach`], the one way to start
//! a process that outlives the harness (the low-level `crasher start-*`
//! commands).
//!
//! [`wait_until`] is the one way to wait for readiness: poll a concrete
//! condition under a deadline, never sleep a fixed time and hope.
//!
//! ## When the harness itself is SIGKILLed
//!
//! Nothing can catch SIGKILL, so no drop runs. [`Proc::spawn`] therefore
//! asks Linux to SIGKILL the child when its parent dies
//! (`PR_SET_PDEATHSIG`). Linux delivers that signal when the *thread* that
//! forked the child exits, not the process: a child forked from a tokio
//! `spawn_blocking` thread (which exits after 10 s idle) would be killed
//! for no reason. So every such child is forked by one long-lived spawner
//! thread that lives as long as the process. What remains after a SIGKILL
//! of the harness: the grandchildren a child started itself in other
//! process groups or with their own parent-death setting (the signal
//! reaches the direct child only; children of crasher's own programs are
//! in the child's group but are not signalled), processes started with
//! [`Proc::spawn_detachable`] (the low-level commands' detached processes,
//! by design), and the run's files. A child whose parent died between
//! `fork` and the `prctl` call notices (its parent pid changed) and does not
//! start.

pub mod stat;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The environment variable carrying the id of the run a process belongs to.
pub const RUN_ID_VAR: &str = "CRASHER_RUN_ID";

/// Why a process could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}: {source}")]
    Log {
        /// Log path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `spawn` failed (missing binary, permissions...).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The process did not exit in time.
    #[error("{0} did not exit within the deadline")]
    Timeout(String),
    /// A signal could not be delivered.
    #[error("cannot signal {name}: {source}")]
    Signal {
        /// Process name.
        name: String,
        /// Cause.
        #[source]
        source: nix::Error,
    },
}

/// A running (or exited but not yet forgotten) child process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
    detached: bool,
}

impl Proc {
    /// Starts `cmd` in a new process group, appending its output to `log`.
    ///
    /// `name` is how the harness refers to it in messages (`worker1`, `sink`).
    ///
    /// The child is SIGKILLed by Linux if this process dies without
    /// stopping it (even by SIGKILL): see the crate doc. A process that must
    /// outlive this one is started with [`Proc::spawn_detachable`].
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Result<Proc, ProcError> {
        Proc::spawn_with(name, cmd, log, true, false, false)
    }

    /// Like [`Proc::spawn`], but the child's stdin is a pipe whose write end
    /// this `Proc` holds, unwritten, until it is dropped: the child reads
    /// end-of-file exactly when this `Proc` or this whole process is gone.
    /// `ssh` forwards that end-of-file to the remote side, whose wrapper
    /// kills the remote process group on it (`--hosts`).
    pub fn spawn_with_open_stdin(name: &str, cmd: Command, log: &Path) -> Result<Proc, ProcError> {
        Proc::spawn_with(name, cmd, log, true, true, false)
    }

    /// Like [`Proc::spawn_with_open_stdin`], but the child's stdout is a
    /// pipe handed to the caller (its stderr still goes to `log`): for a
    /// child whose output is data, not a log (a remote directory's mirror,
    /// `--hosts`). The caller must drain it.
    pub fn spawn_reading_stdout(
        name: &str,
        cmd: Command,
        log: &Path,
    ) -> Result<(Proc, std::process::ChildStdout), ProcError> {
        let mut p = Proc::spawn_with(name, cmd, log, true, true, true)?;
        let out = p.child.stdout.take().ok_or_else(|| ProcError::Spawn {
            program: name.to_owned(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        Ok((p, out))
    }

    /// Like [`Proc::spawn`], but the child does not die with this process:
    /// for processes that are handed off with [`Proc::detach`].
    pub fn spawn_detachable(name: &str, cmd: Command, log: &Path) -> Result<Proc, ProcError> {
        Proc::spawn_with(name, cmd, log, false, false, false)
    }

    fn spawn_with(
        name: &str,
        mut cmd: Command,
        log: &Path,
        die_with_parent: bool,
        open_stdin: bool,
        piped_stdout: bool,
    ) -> Result<Proc, ProcError> {
        let out = open_log(log)?;
        let err = out.try_clone().map_err(|source| ProcError::Log {
            path: log.to_owned(),
            source,
        })?;
        cmd.process_group(0)
            .stdin(if open_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if piped_stdout {
                Stdio::piped()
            } else {
                Stdio::from(out)
            })
            .stderr(Stdio::from(err));
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = if die_with_parent {
            set_parent_death_signal(&mut cmd);
            spawn_on_spawner(cmd)
        } else {
            cmd.spawn()
        }
        .map_err(|source| ProcError::Spawn { program, source })?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            status: None,
            detached: false,
        })
    }

    /// The harness's name for this process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid, which is also its process-group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends `signal` to the whole process group. Signalling a group that
    /// has already exited is not an error.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcError> {
        if self.status.is_some() {
            return Ok(());
        }
        match killpg(Pid::from_raw(self.pid() as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(source) => Err(ProcError::Signal {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Reaps the process if it has exited; never blocks.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running (reaping it if not).
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits for exit, polling until `deadline`.
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<ExitStatus, ProcError> {
        let mut status = None;
        wait_until(deadline, || {
            status = self.try_wait().ok().flatten();
            status.is_some()
        });
        status.ok_or_else(|| ProcError::Timeout(self.name.clone()))
    }

    /// SIGKILLs the group and reaps the process; returns its exit status.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let s = self.child.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// SIGTERMs the group, waits up to `grace`, then SIGKILLs.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if self.status.is_none() {
            let _ = self.signal(Signal::SIGCONT);
            let _ = self.signal(Signal::SIGTERM);
            if let Ok(s) = self.wait_deadline(Instant::now() + grace) {
                return Ok(s);
            }
        }
        self.kill()
    }
}

impl Proc {
    /// Hands the process off: it keeps running after this `Proc` (and the
    /// harness process) is gone, and is neither killed nor waited for here.
    /// Returns its pid (also its process-group id).
    ///
    /// The process stays in its own process group with stdin from
    /// `/dev/null` and output in its log, so it has nothing tying it to
    /// the caller's terminal. When the caller exits it is re-parented to
    /// the nearest subreaper (or init), which reaps it when it dies. Until
    /// then a detached process that dies is a zombie of the caller, so
    /// callers that detach should be short-lived commands. Whoever stops
    /// it later must identify it by pid *and* start time ([`start_time`]),
    /// since the pid may be reused.
    pub fn detach(mut self) -> u32 {
        self.detached = true;
        self.pid()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.kill();
        }
    }
}

/// Makes the child of `cmd` receive SIGKILL when its parent thread dies,
/// and refuse to start if the parent is already gone.
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it calls prctl(2) and
    // getppid(2) through nix (plain system calls, no allocation, no locks)
    // and builds an io::Error from a raw errno, which allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            if nix::unistd::getppid() != parent {
                // The parent died before the prctl: do not start an orphan.
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// The long-lived thread that forks every child started with
/// `PR_SET_PDEATHSIG` (the signal follows the forking thread's death).
static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnJob>>> = OnceLock::new();

fn spawn_on_spawner(mut cmd: Command) -> io::Result<Child> {
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("procs-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(tx) = spawner else {
        return Err(io::Error::other("cannot start the process-spawner thread"));
    };
    let (reply, result) = mpsc::channel();
    if let Err(mpsc::SendError((c, _))) = tx.send((cmd, reply)) {
        cmd = c;
        return Err(io::Error::other(format!(
            "the process-spawner thread is gone; cannot start {:?}",
            cmd.get_program()
        )));
    }
    result
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the process-spawner thread is gone")))
}

/// Renders an exit status the way a person reads it: `exit 0`, `signal 9 (SIGKILL)`.
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({s})"),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        format!("{status}")
    }
}

fn open_log(path: &Path) -> Result<File, ProcError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ProcError::Log {
            path: path.to_owned(),
            source,
        })
}

/// Parses `250ms`, `30s`, `1.5s`, `5m`, `2h` or a bare number of seconds:
/// the one duration syntax of crasher's options and of the reference
/// cluster's.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 250ms, 30s, 5m or 2h"))?;
    let mult = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(n * mult).map_err(|e| format!("{s:?}: {e}"))
}

/// Polls `cond` every few milliseconds until it holds or `deadline` passes.
/// Returns whether it held.
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    let mut step = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// Looks for `binary` beside the running executable (or one folder up, which
/// is where cargo puts binaries relative to test executables in `deps/`).
pub fn sibling_binary(binary: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.to_path_buf(), dir.parent()?.to_path_buf()]
        .into_iter()
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it identifies a process even after the
/// pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    stat::stat(pid).map(|s| s.starttime)
}

/// Whether process `pid` runs with `RUN_ID_VAR=run_id` in its environment.
pub fn belongs_to_run(pid: u32, run_id: &str) -> bool {
    let needle = format!("{RUN_ID_VAR}={run_id}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
        .unwrap_or(false)
}

/// Every live (non-zombie) process whose environment carries
/// `RUN_ID_VAR=run_id`.
pub fn processes_of_run(run_id: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| belongs_to_run(pid, run_id) && !is_zombie(pid))
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    stat::stat(pid).map_or(true, |s| s.state == 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_process_group_is_killed_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", pidfile.display()));
        let p = Proc::spawn("sh", cmd, &dir.path().join("log")).unwrap();
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
        }));
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let pid = p.pid() as i32;
        drop(p);
        // The child is reaped: its pid no longer exists as a zombie of ours.
        assert!(nix::sys::wait::waitpid(Pid::from_raw(pid), None).is_err());
        // The grandchild got the group's SIGKILL; once init reaps it, it is gone.
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            nix::sys::signal::kill(Pid::from_raw(grandchild), None).is_err()
                || stat::stat(grandchild as u32).is_some_and(|s| s.state == 'Z')
        }));
    }

    #[test]
    fn output_goes_to_the_log_and_status_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo out; echo err >&2; exit 3");
        let mut p = Proc::spawn("sh", cmd, &log).unwrap();
        let st = p
            .wait_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(describe_status(st), "exit 3");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out") && text.contains("err"));
    }

    #[test]
    fn a_child_is_found_by_its_run_id_and_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30").env(RUN_ID_VAR, "test-run-xyz");
        let mut p = Proc::spawn("sleep", cmd, &dir.path().join("log")).unwrap();
        assert!(start_time(p.pid()).is_some());
        // Until the child has exec'd, /proc shows the parent's environment.
        assert!(wait_until(Instant::now() + Duration::from_secs(5), || {
            belongs_to_run(p.pid(), "test-run-xyz")
        }));
        assert!(!belongs_to_run(p.pid(), "test-run-xy"));
        assert_eq!(processes_of_run("test-run-xyz"), vec![p.pid()]);
        p.kill().unwrap();
        assert!(processes_of_run("test-run-xyz").is_empty());
    }

    #[test]
    fn a_detached_process_outlives_its_proc() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let p = Proc::spawn("sleep", cmd, &dir.path().join("log")).unwrap();
        let started = start_time(p.pid());
        let pid = p.detach();
        // Still running, same process, in its own process group.
        assert_eq!(start_time(pid), started);
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap(),
            Pid::from_raw(pid as i32)
        );
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        // It is still our child here (the test did not exit), so reap it.
        let st = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None).unwrap();
        assert!(matches!(
            st,
            nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _)
        ));
    }

    #[test]
    fn a_child_outlives_the_short_lived_thread_that_started_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut p = std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            Proc::spawn("sleep", cmd, &log).unwrap()
        })
        .join()
        .unwrap();
        // PR_SET_PDEATHSIG follows the forking thread: had this thread
        // forked it, the child would be SIGKILLed now.
        assert!(!wait_until(
            Instant::now() + Duration::from_millis(300),
            || !p.is_running()
        ));
        p.kill().unwrap();
    }

    #[test]
    fn a_detachable_child_is_not_tied_to_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = Proc::spawn_detachable("sleep", cmd, &dir.path().join("log")).unwrap();
        assert!(p.is_running());
        p.kill().unwrap();
    }

    #[test]
    fn kill_reports_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = Proc::spawn("sleep", cmd, &dir.path().join("log")).unwrap();
        assert!(p.is_running());
        let st = p.kill().unwrap();
        assert_eq!(describe_status(st), "signal 9 (SIGKILL)");
        assert!(!p.is_running());
    }
}
