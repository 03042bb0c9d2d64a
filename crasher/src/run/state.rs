//! The run's state on disk (`state.json`): which processes belong to it,
//! with pid and start time, and how the run was set up. Rewritten
//! atomically on every start, exit and membership change, so commands run
//! from another shell (`crasher status`, `crasher reset`) see the run as it
//! is. A run driven by the low-level commands (`crasher start-sink` ...)
//! has no supervisor: each command updates the file, and [`ManualSetup`]
//! records what they need to rebuild the run's profile, ports and inputs.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the state in the run directory.
pub const FILE: &str = "state.json";

/// One process of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// `supervisor`, `sink`, `worker` or `feeder`.
    pub role: String,
    /// Process id (also its process-group id).
    pub pid: u32,
    /// Start time in clock ticks since boot: with the pid, its identity.
    pub start_time: Option<u64>,
    /// How many times it was started.
    pub starts: u32,
    /// Its ports by role.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// `--hosts`: the host it runs on (its `pid` is then the local `ssh`
    /// client's); absent for a process on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl ProcRecord {
    /// Whether this exact process (same pid, same start time) is alive.
    pub fn alive(&self) -> bool {
        self.start_time.is_some() && procs::start_time(self.pid) == self.start_time
    }

    /// Whether this exact process is alive, not a zombie, and carries
    /// `CRASHER_RUN_ID=run_id`: safe to signal as a process of that run.
    pub fn of_run(&self, run_id: &str) -> bool {
        self.alive() && self.state() != "dead" && procs::belongs_to_run(self.pid, run_id)
    }

    /// `running`, `stopped` (SIGSTOP), or `dead`.
    pub fn state(&self) -> &'static str {
        if !self.alive() {
            return "dead";
        }
        match procs::stat::stat(self.pid) {
            Some(s) if s.stopped() => "stopped",
            Some(s) if !s.dead() => "running",
            _ => "dead",
        }
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// The run id (`CRASHER_RUN_ID` of its processes).
    pub run_id: String,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Profile origin (file or `builtin:NAME`).
    pub profile: String,
    /// First port of the run's block.
    pub port_base: u16,
    /// Workers at start.
    pub worker_count: usize,
    /// Feeder rate.
    pub rate: u64,
    /// Bug switch, if any.
    pub inject: Option<String>,
    /// Input file per key.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Current members by index.
    pub members: Vec<usize>,
    /// Sink address.
    pub sink: String,
    /// Processes by name (`supervisor`, `sink`, `initializer`, `workerN`, `feeder.K`).
    pub processes: BTreeMap<String, ProcRecord>,
    /// Set for a run driven by the low-level commands (absent for a soak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualSetup>,
    /// A `--network lab` run's network: what is cut now (`healed`,
    /// `initializer<->worker2, worker1->lab`, ...); absent on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// How a run driven by the low-level commands was set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualSetup {
    /// Ports in the recorded block (`port_base` is its first).
    pub port_len: u16,
    /// Source bytes per key of the input files.
    pub input_bytes: u64,
    /// Seed of the input data.
    pub seed: u64,
    /// Folder of the input files (created there when missing).
    pub input_dir: PathBuf,
}

/// The profile a run was started with, copied into its run directory so
/// later commands use exactly it.
pub const PROFILE_FILE: &str = "profile.toml";

impl RunState {
    /// Reads the state of the run in `run_dir`.
    pub fn read(run_dir: &Path) -> anyhow::Result<RunState> {
        let p = run_dir.join(FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e} (is this a crasher run directory?)",
                p.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    }

    /// Writes it atomically (temp file + rename).
    pub fn write(&self) -> io::Result<()> {
        let p = self.run_dir.join(FILE);
        let tmp = self.run_dir.join(format!(".{FILE}.tmp"));
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)
            })
            .and_then(|()| std::fs::rename(&tmp, p));
        if result.is_err() {
            // On a full disk, no half-written temporary is left behind.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Takes the run's exclusive lock (`RUN_DIR/.lock`), waiting for it: held
/// by each command that changes the run (`crasher start-*`, `crash-*`,
/// `reset` ...) from reading `state.json` to writing it back, so commands
/// from separate shells never lose each other's updates.
pub fn lock(run_dir: &Path) -> io::Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run_dir.join(".lock"))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
}

/// A record for a process crasher just started.
pub fn record(role: &str, pid: u32, starts: u32, ports: BTreeMap<String, u16>) -> ProcRecord {
    ProcRecord {
        role: role.to_owned(),
        pid,
        start_time: procs::start_time(pid),
        starts,
        ports,
        host: None,
    }
}
