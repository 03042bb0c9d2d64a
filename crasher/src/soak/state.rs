//! The run's state on disk (`state.json`): which processes belong to it,
//! with pid and start time, and how the run was set up. Rewritten
//! atomically on every start, exit and membership change, so commands run
//! from another shell (`crasher status`, `crasher reset`) see the run as it
//! is.

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
}

impl ProcRecord {
    /// Whether this exact process (same pid, same start time) is alive.
    pub fn alive(&self) -> bool {
        self.start_time.is_some() && procs::start_time(self.pid) == self.start_time
    }

    /// `running`, `stopped` (SIGSTOP), or `dead`.
    pub fn state(&self) -> &'static str {
        if !self.alive() {
            return "dead";
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        match stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next())
        {
            Some('T' | 't') => "stopped",
            Some('Z' | 'X') | None => "dead",
            _ => "running",
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
}

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
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        drop(f);
        std::fs::rename(tmp, p)
    }
}

/// A record for a process crasher just started.
pub fn record(role: &str, pid: u32, starts: u32, ports: BTreeMap<String, u16>) -> ProcRecord {
    ProcRecord {
        role: role.to_owned(),
        pid,
        start_time: procs::start_time(pid),
        starts,
        ports,
    }
}
