//! The run a low-level command acts on: its state read from (and written
//! back to) `state.json`, its profile, its recorded port block, and the
//! starting and crashing of its detached processes.
//!
//! A command that changes the run holds the run's lock from reading the
//! state to writing it, and re-claims the run's port block for its
//! duration (no process holds it between commands: see
//! [`crate::run::ports`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Fail, NewRunArgs};
use crate::ops::RunSel;
use crate::run::cluster::{Cluster, Launch, Settings};
use crate::run::ports::{port_is_free, PortBlock};
use crate::run::profile::{Mode, Profile};
use crate::run::rundir::{self, RunDir};
use crate::run::state::{self, ManualSetup, ProcRecord, RunState};

/// How long a started process gets to listen on its port (or fail).
const START_WAIT: Duration = Duration::from_secs(10);
/// How long a SIGKILLed process gets to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

const DEFAULT_KEYS: &str = "A,B,C,D,E,F,G,H,I,J";
const DEFAULT_INPUT_BYTES: u64 = 4_000_000;
const DEFAULT_RATE: u64 = 66_000;

/// A run as a command sees it.
pub struct Run {
    /// Its state; [`Run::save`] writes it back.
    pub st: RunState,
    /// Its profile.
    pub profile: Profile,
    _lock: Option<Flock<File>>,
    _claim: Option<PortBlock>,
}

impl Run {
    /// Any run (a soak's too), read-only: for queries.
    pub fn view(sel: &RunSel) -> Result<Run, Fail> {
        let st = sel.load()?;
        let profile = load_profile(&st)?;
        Ok(Run {
            st,
            profile,
            _lock: None,
            _claim: None,
        })
    }

    /// The run, locked, to change it: it must be a manual run.
    pub fn open(sel: &RunSel) -> Result<Run, Fail> {
        if !sel.exists() {
            return Err(crate::ops::NoRun { dir: sel.dir() }.into());
        }
        let lock = state::lock(&sel.dir())?;
        let st = RunState::read(&sel.dir())?;
        let Some(setup) = st.manual.clone() else {
            return Err(Fail::Env(soak_run_message(&st)));
        };
        let profile = load_profile(&st)?;
        let claim = PortBlock::reclaim(st.port_base, setup.port_len)?;
        Ok(Run {
            st,
            profile,
            _lock: Some(lock),
            _claim: Some(claim),
        })
    }

    /// The selected manual run, or a new one when there is none (never
    /// started, reset, or the finished soak that `current` points at).
    /// Says whether it created it.
    pub fn open_or_create(sel: &RunSel, new: &NewRunArgs) -> Result<(Run, bool), Fail> {
        std::fs::create_dir_all(&sel.runs)
            .map_err(|e| format!("cannot create {}: {e}", sel.runs.display()))?;
        let _creating = state::lock(&sel.runs)?;
        if sel.exists() {
            let st = RunState::read(&sel.dir())?;
            if st.manual.is_some() {
                let run = Run::open(sel)?;
                run.check_settings(new)?;
                return Ok((run, false));
            }
            let explicit = sel.run_dir.is_some() || sel.run.is_some();
            if explicit || live_processes(&st) {
                return Err(Fail::Env(soak_run_message(&st)));
            }
        }
        Run::create(sel, new).map(|r| (r, true))
    }

    fn create(sel: &RunSel, new: &NewRunArgs) -> Result<Run, Fail> {
        let spec = new.profile.as_deref().unwrap_or("passthrough");
        let (profile, text) = Profile::load_with_text(spec)?;
        let keys: Vec<String> = match &new.keys {
            Some(k) => k.clone(),
            None => DEFAULT_KEYS.split(',').map(str::to_owned).collect(),
        };
        let key_bytes: Vec<u8> = keys.iter().flat_map(|k| k.bytes()).collect();
        if keys.iter().any(|k| k.len() != 1) {
            return Err(Fail::Env(format!(
                "Error: --keys {}: each key is a single letter or digit",
                keys.join(",")
            )));
        }
        verify::input::validate_keys(&key_bytes).map_err(|e| format!("--keys: {e}"))?;
        let id = sel.run.clone().unwrap_or_else(rundir::new_run_id);
        let dir = RunDir::create(&sel.runs, sel.run_dir.as_deref(), &id)
            .map_err(|e| format!("cannot create the run directory: {e}"))?;
        std::fs::write(dir.root().join(state::PROFILE_FILE), text)?;
        let ports = PortBlock::allocate(profile.ports.block)?;
        let (input_bytes, seed) = (
            new.input_bytes.unwrap_or(DEFAULT_INPUT_BYTES),
            new.seed.unwrap_or(0),
        );
        let runs = sel.runs.canonicalize()?;
        let input_dir = crate::soak::input_dir(&runs, input_bytes, seed, profile.mode == Mode::Tcp);
        let inputs = key_bytes
            .iter()
            .map(|&k| {
                let p = input_dir.join(verify::input::input_file_name(k));
                ((k as char).to_string(), p)
            })
            .collect();
        let mut st = RunState {
            network: None,
            run_id: id.clone(),
            run_dir: dir.root().to_owned(),
            profile: profile.origin.clone(),
            port_base: ports.base(),
            worker_count: 1,
            rate: new.rate.unwrap_or(DEFAULT_RATE),
            inject: new.inject.clone(),
            inputs,
            members: Vec::new(),
            sink: String::new(),
            processes: BTreeMap::new(),
            manual: Some(ManualSetup {
                port_len: ports.len(),
                input_bytes,
                seed,
                input_dir,
            }),
        };
        let lock = state::lock(dir.root())?;
        let mut run = Run {
            st: st.clone(),
            profile,
            _lock: Some(lock),
            _claim: Some(ports),
        };
        st.sink = run.cluster()?.sink_addr();
        run.st = st;
        run.save()?;
        println!("Run {id} in {}", dir.root().display());
        Ok(run)
    }

    /// Fails if a new-run option was given that the run was not created with.
    fn check_settings(&self, new: &NewRunArgs) -> Result<(), Fail> {
        let st = &self.st;
        let setup = self.setup();
        let mut differ = Vec::new();
        if let Some(spec) = &new.profile {
            if Profile::load(spec)?.origin != st.profile {
                differ.push(format!("--env {spec} (run: {})", st.profile));
            }
        }
        if let Some(keys) = &new.keys {
            let run_keys: Vec<&String> = st.inputs.keys().collect();
            let mut given: Vec<&String> = keys.iter().collect();
            given.sort();
            if given != run_keys {
                differ.push(format!(
                    "--keys {} (run: {})",
                    keys.join(","),
                    st.inputs.keys().cloned().collect::<Vec<_>>().join(",")
                ));
            }
        }
        let nums = [
            ("--input-bytes", new.input_bytes, setup.input_bytes),
            ("--seed", new.seed, setup.seed),
            ("--rate", new.rate, st.rate),
        ];
        for (opt, given, run) in nums {
            if given.is_some_and(|g| g != run) {
                differ.push(format!("{opt} {} (run: {run})", given.unwrap_or(0)));
            }
        }
        if new.inject.is_some() && new.inject != st.inject {
            differ.push(format!(
                "--inject {} (run: {})",
                new.inject.as_deref().unwrap_or(""),
                st.inject.as_deref().unwrap_or("none")
            ));
        }
        if differ.is_empty() {
            return Ok(());
        }
        Err(Fail::Env(format!(
            "Error: run {} exists with other settings: {}; these options only set up a new run (`crasher reset` first)",
            st.run_id,
            differ.join(", ")
        )))
    }

    /// The manual run's setup.
    ///
    /// # Panics
    /// On a soak's run, which only [`Run::view`] returns: a programming error.
    pub fn setup(&self) -> &ManualSetup {
        self.st
            .manual
            .as_ref()
            .expect("a run opened to change it is a manual run")
    }

    /// A process table over the run's profile, ports and settings, to
    /// compute addresses and command lines (it starts nothing by itself).
    pub fn cluster(&self) -> Result<Cluster, Fail> {
        let st = &self.st;
        let ports = PortBlock::recorded(st.port_base, self.profile.ports.block);
        let run = RunDir::open(&st.run_dir, &st.run_id);
        let settings = Settings {
            inputs: st.inputs.clone(),
            rate: st.rate,
            worker_count: st.worker_count,
            inject: st.inject.clone(),
            workloads: BTreeMap::new(),
            epoch_ms: 0,
        };
        Ok(Cluster::new(self.profile.clone(), run, ports, settings)?)
    }

    /// Writes the state back.
    pub fn save(&self) -> Result<(), Fail> {
        self.st
            .write()
            .map_err(|e| format!("cannot write {}: {e}", self.st.run_dir.display()))?;
        Ok(())
    }

    /// The record of `name` if that process is running now (same pid and
    /// start time, not a zombie, carrying the run's id).
    pub fn running(&self, name: &str) -> Option<&ProcRecord> {
        self.st
            .processes
            .get(name)
            .filter(|r| r.of_run(&self.st.run_id))
    }

    /// Starts `l` detached, records it (role, pid, start time, `ports`,
    /// starts), and waits until it accepts on `wait_port` or exits (an
    /// error naming its status and last log lines).
    pub fn start(
        &mut self,
        l: &Launch,
        role: &str,
        ports: BTreeMap<String, u16>,
        wait_port: Option<u16>,
    ) -> Result<u32, Fail> {
        let name = l.name.clone();
        if let Some(r) = self.running(&name) {
            return Err(Fail::State(format!(
                "Error: {name} is already running (pid {})",
                r.pid
            )));
        }
        for (what, &port) in &ports {
            if !port_is_free(port) {
                return Err(Fail::Env(format!(
                    "Error: cannot start {name}: its {what} port {port} is in use by another process \
                     (this run's port block {}..{} is not held between commands; see docs/commands.md)",
                    self.st.port_base,
                    self.st.port_base + self.profile.ports.block - 1
                )));
            }
        }
        let pid = self.cluster()?.spawn_detached(l)?;
        let starts = self.st.processes.get(&name).map_or(0, |r| r.starts) + 1;
        self.st
            .processes
            .insert(name.clone(), state::record(role, pid, starts, ports));
        self.save()?;
        let addr = wait_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let mut exited = None;
        let listening = procs::wait_until(Instant::now() + START_WAIT, || {
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => {}
                Ok(st) => {
                    exited = Some(st);
                    return true;
                }
            }
            addr.map_or(true, |a| {
                TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
            })
        });
        if let Some(st) = exited {
            let how = match st {
                WaitStatus::Exited(_, code) => format!("exit {code}"),
                WaitStatus::Signaled(_, sig, _) => format!("signal {sig}"),
                other => format!("{other:?}"),
            };
            return Err(Fail::Env(format!(
                "Error: {name} exited right after it started ({how}); last lines of {}:\n{}",
                l.log.display(),
                crate::soak::loops::tail_lines(&l.log, 10)
            )));
        }
        if !listening {
            eprintln!(
                "warning: {name} (pid {pid}) is running but did not accept on port {} within {}s",
                wait_port.unwrap_or(0),
                START_WAIT.as_secs()
            );
        }
        Ok(pid)
    }

    /// SIGKILLs `name` after checking it is this run's process (pid, start
    /// time, `CRASHER_RUN_ID`) and waits until it is gone. Not running:
    /// `Fail::State(not_running)`.
    pub fn crash(&self, name: &str, not_running: String) -> Result<(), Fail> {
        let r = self.running(name).ok_or(Fail::State(not_running))?.clone();
        let pgid = Pid::from_raw(r.pid as i32);
        let _ = killpg(pgid, Signal::SIGCONT);
        killpg(pgid, Signal::SIGKILL).map_err(|e| format!("cannot kill {name}: {e}"))?;
        let id = &self.st.run_id;
        if !procs::wait_until(Instant::now() + KILL_WAIT, || !r.of_run(id)) {
            return Err(Fail::Env(format!(
                "Error: {name} (pid {}) still runs {}s after SIGKILL",
                r.pid,
                KILL_WAIT.as_secs()
            )));
        }
        Ok(())
    }
}

/// The profile the run was started with: its copy in the run directory,
/// else (a soak's run) the recorded origin.
fn load_profile(st: &RunState) -> Result<Profile, Fail> {
    let copy = st.run_dir.join(state::PROFILE_FILE);
    if copy.is_file() {
        let text = std::fs::read_to_string(&copy)
            .map_err(|e| format!("cannot read {}: {e}", copy.display()))?;
        return Ok(Profile::parse(&text, &st.profile)?);
    }
    let spec = st.profile.strip_prefix("builtin:").unwrap_or(&st.profile);
    Ok(Profile::load(spec)?)
}

/// Whether any recorded process of the run still runs.
fn live_processes(st: &RunState) -> bool {
    st.processes.values().any(|r| r.of_run(&st.run_id))
}

fn soak_run_message(st: &RunState) -> String {
    let sup = st.processes.get("supervisor").filter(|r| r.alive());
    match sup {
        Some(s) => format!(
            "Error: run {} is driven by a soak (supervisor pid {}); stop it first (Ctrl-C), or act on another run with --runs",
            st.run_id, s.pid
        ),
        None => format!(
            "Error: run {} in {} was started by a soak; start, crash and shrink commands only drive runs they created: `crasher reset` it first, or use another --runs folder",
            st.run_id,
            st.run_dir.display()
        ),
    }
}
