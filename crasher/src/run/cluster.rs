//! The process table of a run: sink, workers and feeders, started from the
//! profile's templates, crashed, restarted, paused and torn down.
//!
//! Every process gets `CRASHER_RUN_ID`, its own process group and a log in
//! the run directory. Their process-group ids are also kept in a global
//! registry so that a panic or a fatal signal in crasher can still kill
//! them all ([`kill_all_registered`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use procs::{describe_status, Proc, RUN_ID_VAR};

use super::hosts::{Hosts, Remote};
use super::ports::PortBlock;
use super::profile::{Profile, Vars};
use super::rundir::RunDir;
use crate::soak::spec::worker_name;

static REGISTRY: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Set when the world is stopped at a violation: a process started by a
/// task that had not yet seen the violation is stopped as it registers.
static WORLD_STOPPED: AtomicBool = AtomicBool::new(false);

fn register(pid: u32) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.insert(pid as i32);
    if WORLD_STOPPED.load(Ordering::SeqCst) {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGSTOP);
    }
}

fn unregister(pid: u32) {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(pid as i32));
}

/// The process-group ids of every process crasher started and has not
/// reaped yet.
pub fn registered() -> Vec<i32> {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect()
}

/// Sends `sig` to every registered process group. Pause-the-world uses it:
/// it needs no lock on the cluster, so a violation found by a task that is
/// in the middle of a cluster operation still stops the world at once.
pub fn signal_registered(sig: Signal) {
    if sig == Signal::SIGSTOP {
        WORLD_STOPPED.store(true, Ordering::SeqCst);
    }
    for pid in registered() {
        let _ = killpg(Pid::from_raw(pid), sig);
    }
    // `--hosts`: every remote process group, over each host's master
    // connection, all hosts at once.
    super::hosts::signal_every_host(sig);
}

/// SIGKILLs every process group crasher started and has not reaped: the
/// last resort of the panic hook and of a second Ctrl-C.
pub fn kill_all_registered() {
    for pid in registered() {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGCONT);
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A process of the run with its role.
#[derive(Debug)]
pub struct Member {
    proc: Proc,
    /// How many times it was (re)started.
    pub starts: u32,
    /// `--hosts`: the host it runs on; `proc` is then the local `ssh`
    /// client of its session.
    remote: Option<Arc<Remote>>,
    /// When this start of it was made.
    started: std::time::Instant,
}

/// How long a remote process's session may take to end after its process
/// group was killed.
const REMOTE_EXIT: Duration = Duration::from_secs(5);

impl Member {
    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; reaped.
    /// Blocks: call it off the async runtime's threads.
    pub fn terminate(mut self, grace: Duration) {
        if self.remote.is_some() && self.proc.is_running() {
            self.signal(Signal::SIGCONT);
            self.signal(Signal::SIGTERM);
            if self
                .proc
                .wait_deadline(std::time::Instant::now() + grace)
                .is_ok()
            {
                return;
            }
        }
        let _ = self.kill();
    }

    /// Sends `sig` to its process group (and, on a host, to the remote
    /// process group, over the master connection).
    pub fn signal(&self, sig: Signal) {
        let _ = self.proc.signal(sig);
        if let Some(r) = &self.remote {
            if let Err(e) = r.signal(self.proc.name(), sig) {
                if sig != Signal::SIGCONT {
                    eprintln!("crasher: {sig} to {}: {e}", self.proc.name());
                }
            }
        }
    }

    /// SIGKILLs it and reaps it. On a host, the remote process group is
    /// killed first and its session is waited for (the wrapper exits once
    /// the killed process is reaped there), so a restart never races the
    /// old process for its ports.
    pub fn kill(&mut self) -> io::Result<std::process::ExitStatus> {
        if let Some(r) = &self.remote {
            if self.proc.is_running() {
                let _ = r.signal(self.proc.name(), Signal::SIGKILL);
                let _ = self
                    .proc
                    .wait_deadline(std::time::Instant::now() + REMOTE_EXIT);
            }
        }
        self.proc.kill()
    }

    /// The host it runs on, if not this machine.
    pub fn host(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.spec.name.as_str())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        unregister(self.proc.pid());
    }
}

/// A process ready to be started: what [`Cluster`] runs for a role.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `sink`, the worker name, or `feeder.K`.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments, templates filled.
    pub args: Vec<String>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Launch {
    fn command(&self, run_id: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env(RUN_ID_VAR, run_id);
        cmd
    }
}

/// How a worker is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Part of the initial cluster.
    Initial,
    /// Restart after a crash: recovers from its resilience directory.
    Restart,
    /// Joins the running cluster.
    Join,
}

/// Something that died, seen by [`Cluster::reap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `sink`, a worker name, or `feeder.K`.
    pub who: String,
    /// `exit N` or `signal N (SIGX)`.
    pub status: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// How long this start of it ran (about: until it was reaped).
    pub ran_for: Duration,
}

/// A cluster-level failure to act.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A template could not be filled.
    #[error("profile {profile}: {message}")]
    Template {
        /// Profile origin.
        profile: String,
        /// What is wrong.
        message: String,
    },
    /// A program is missing.
    #[error("{role} program {program:?} not found: build it (`cargo build --release --workspace`) or set its path in the profile or CRASHER_WORKER_PROGRAM")]
    Missing {
        /// Role.
        role: &'static str,
        /// Program.
        program: String,
    },
    /// Starting a process failed.
    #[error(transparent)]
    Proc(#[from] procs::ProcError),
    /// Not running when asked to crash it.
    #[error("Error: worker {0} is not running")]
    NotRunning(String),
    /// File system.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Settings of the run that processes are started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Input file per key.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Feeder rate, bytes per second (0 = unthrottled).
    pub rate: u64,
    /// Initial number of workers.
    pub worker_count: usize,
    /// Bug switch for the reference workers.
    pub inject: Option<String>,
    /// Rate shape per key (`--workload`); a key not named is `constant`.
    pub workloads: BTreeMap<String, feeders::workload::Workload>,
    /// When the run started, Unix milliseconds: the shapes' time origin.
    pub epoch_ms: u64,
}

/// The processes of a run.
pub struct Cluster {
    profile: Profile,
    run: RunDir,
    ports: PortBlock,
    settings: Settings,
    crasher: PathBuf,
    sink: Option<Member>,
    workers: BTreeMap<usize, Member>,
    feeders: BTreeMap<String, Member>,
    /// `--hosts` with the sink or the feeders on a host: the mirrors of
    /// what they write there (`sink`, `feeders`), kept in the run
    /// directory for the verifier and the supervisor.
    mirrors: BTreeMap<&'static str, RemoteMirror>,
    /// Workers expected to be cluster members now.
    members: BTreeSet<usize>,
    /// Feeders that finished their file (exit 0).
    done_feeders: BTreeSet<String>,
    /// Keys whose input file was copied to the feeders' host.
    uploaded: BTreeSet<String>,
    /// Processes a loop is acting on now (crash, shrink, pause): no other
    /// loop acts on them, and their exit is not a death to report.
    claims: BTreeSet<String>,
    /// `--disk lossy`: the lossyfs mount of each node's state directory.
    disks: Option<super::disk::Disks>,
    /// The supervisor's socket for the sink's phase events (`--events`),
    /// when a targeted fault word is in use.
    sink_events: Option<PathBuf>,
    /// `--hosts`: the hosts workers run on, with their master connections;
    /// after the processes, so it is dropped (the connections closed) after
    /// them.
    hosts: Option<Hosts>,
    /// `--network lab`: the lab, whose nodes the workers run in. Last, so
    /// it is dropped (its holders killed) after every process.
    lab: Option<netlab::Lab>,
}

impl Cluster {
    /// A cluster with nothing started yet.
    pub fn new(
        profile: Profile,
        run: RunDir,
        ports: PortBlock,
        settings: Settings,
    ) -> io::Result<Cluster> {
        Ok(Cluster {
            profile,
            run,
            ports,
            settings,
            crasher: std::env::current_exe()?,
            sink: None,
            workers: BTreeMap::new(),
            feeders: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            members: BTreeSet::new(),
            done_feeders: BTreeSet::new(),
            uploaded: BTreeSet::new(),
            claims: BTreeSet::new(),
            disks: None,
            sink_events: None,
            hosts: None,
            lab: None,
        })
    }

    /// Claims `who` for a deliberate action; false if it is claimed already.
    pub fn claim(&mut self, who: &str) -> bool {
        self.claims.insert(who.to_owned())
    }

    /// Gives back a claim.
    pub fn release(&mut self, who: &str) {
        self.claims.remove(who);
    }

    /// Whether a loop is acting on `who` now.
    pub fn is_claimed(&self, who: &str) -> bool {
        self.claims.contains(who)
    }

    /// [`Cluster::reap`] of every process that no loop has claimed.
    pub fn reap_unclaimed(&mut self) -> Vec<Death> {
        let claims = std::mem::take(&mut self.claims);
        let deaths = self.reap(|who| claims.contains(who));
        self.claims = claims;
        deaths
    }

    /// Starts the sink (our own, `crasher sink`) with `--events PATH`.
    pub fn set_sink_events(&mut self, path: PathBuf) {
        self.sink_events = Some(path);
    }

    /// `--disk lossy`: from now on every worker's state directory is a
    /// lossyfs mount, made before the worker first starts.
    pub fn use_lossy_disks(&mut self) {
        self.disks = Some(super::disk::Disks::new(
            &self.run.root().join("disks"),
            &self.crasher,
            self.run.id(),
            self.profile.disk.names == super::profile::Names::Eager,
        ));
    }

    /// Whether state directories are lossyfs mounts.
    pub fn lossy_disks(&self) -> bool {
        self.disks.is_some()
    }

    /// Drops worker `i`'s un-synced writes (it must be down).
    pub fn lose_disk(&self, i: usize) -> Result<String, super::disk::DiskError> {
        match &self.disks {
            Some(d) => d.lose(&worker_name(i)),
            None => Err(super::disk::DiskError::Lose {
                name: worker_name(i),
                message: "the run has no lossy disks (--disk lossy)".into(),
            }),
        }
    }

    /// Runs the workers in `lab` (`--network lab`): each in a node of its
    /// own, reached at its node address; sink and feeders at the lab's.
    pub fn set_lab(&mut self, lab: netlab::Lab) {
        self.lab = Some(lab);
    }

    /// The lab, in a `--network lab` run.
    pub fn lab(&self) -> Option<&netlab::Lab> {
        self.lab.as_ref()
    }

    /// Puts `faults` in force in the lab, or on the hosts with `--hosts`
    /// (an empty set heals everything).
    pub fn apply_network(&mut self, faults: &netlab::Faults) -> Result<(), String> {
        let host_of = self.host_of_members();
        let applied = match (self.lab.as_mut(), self.hosts.as_mut(), host_of) {
            (Some(lab), _, _) => lab.apply(faults).map_err(|e| e.to_string()),
            (None, Some(h), Some(host_of)) => h.apply_network(faults, &host_of),
            _ => Err("no lab network in this run (--network lab)".into()),
        };
        self.save_state();
        applied
    }

    /// `--hosts`: each member's host index, by worker name.
    fn host_of_members(&self) -> Option<BTreeMap<String, usize>> {
        let h = self.hosts.as_ref()?;
        Some(
            self.members
                .iter()
                .map(|&i| (worker_name(i), h.index_of_worker(i)))
                .collect(),
        )
    }

    /// Whether `faults` can be put in force as they are: always in a lab;
    /// with `--hosts` only when the hosts' rules make exactly them (see
    /// [`super::hosts::host_faults`]); Err says why not.
    pub fn network_fits(&self, faults: &netlab::Faults) -> Result<(), String> {
        match self.host_of_members() {
            Some(host_of) => super::hosts::host_faults(faults, &host_of).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The network faults in force (lab or hosts), if the run can have any.
    pub fn network_faults(&self) -> Option<&netlab::Faults> {
        match (&self.lab, &self.hosts) {
            (Some(lab), _) => Some(lab.faults()),
            (None, Some(h)) => Some(h.faults()),
            _ => None,
        }
    }

    /// `--hosts`: from now on workers run on these hosts.
    pub fn set_hosts(&mut self, hosts: Hosts) {
        self.hosts = Some(hosts);
    }

    /// The address worker `i` listens on: its host's with `--hosts`, its
    /// node's in a lab, else loopback.
    pub fn worker_host(&self, i: usize) -> std::net::Ipv4Addr {
        if let Some(h) = &self.hosts {
            return h.of_worker(i).spec.address;
        }
        match &self.lab {
            Some(_) => netlab::node_addr(i as u8),
            None => std::net::Ipv4Addr::LOCALHOST,
        }
    }

    /// The address of the sink and feeders: the lab's, else loopback.
    pub fn lab_host(&self) -> std::net::Ipv4Addr {
        if let Some(h) = &self.hosts {
            return h.control();
        }
        match &self.lab {
            Some(_) => netlab::LAB_ADDR,
            None => std::net::Ipv4Addr::LOCALHOST,
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The run directory.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    /// The run settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn port(&self, worker: usize, offset: u16) -> u16 {
        self.ports
            .port(self.profile.ports.stride * worker as u16 + offset)
    }

    /// `HOST:PORT` of worker `i`'s role at `offset`.
    fn waddr(&self, i: usize, offset: u16) -> String {
        format!("{}:{}", self.worker_host(i), self.port(i, offset))
    }

    /// The sink's address.
    pub fn sink_addr(&self) -> String {
        format!(
            "{}:{}",
            self.sink_host(),
            self.ports.port(self.profile.ports.sink)
        )
    }

    /// The address worker `i`'s readiness is polled on: its `in` port for
    /// [`ReadinessKind::Redis`](crate::run::profile::ReadinessKind), else
    /// its external query port.
    pub fn readiness_addr(&self, i: usize) -> std::net::SocketAddr {
        if self.profile.readiness.kind.polls_in_port() {
            std::net::SocketAddr::from((
                self.worker_host(i),
                self.port(i, self.profile.ports.source),
            ))
        } else {
            self.external_addr(i)
        }
    }

    /// Worker `i`'s external query address.
    pub fn external_addr(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from((
            self.worker_host(i),
            self.port(i, self.profile.ports.external),
        ))
    }

    /// Ports of worker `i` by role, for the manifest and status.
    pub fn worker_ports(&self, i: usize) -> BTreeMap<&'static str, u16> {
        let p = &self.profile.ports;
        let mut m = BTreeMap::new();
        m.insert("in", self.port(i, p.source));
        m.insert("external", self.port(i, p.external));
        if i == 0 {
            m.insert("control", self.port(0, p.control));
            m.insert("data", self.port(0, p.data));
        } else {
            m.insert("my_control", self.port(i, p.my_control));
            m.insert("my_data", self.port(i, p.my_data));
        }
        m
    }

    fn base_vars(&self) -> Vars {
        let p = &self.profile.ports;
        let mut v = Vars::default();
        let sink_dir = self.sink_dir();
        v.set("crasher", self.crasher.display().to_string())
            .set("run_dir", self.run.root().display().to_string())
            .set("run_id", self.run.id())
            .set("sink", self.sink_addr())
            .set("sink_prefix", sink_dir.join("output").display().to_string())
            .set("sink_dir", sink_dir.display().to_string())
            .set("host", self.lab_host().to_string())
            .set("initializer_in", self.waddr(0, p.source))
            .set("initializer_control", self.waddr(0, p.control))
            .set("initializer_data", self.waddr(0, p.data))
            .set("initializer_external", self.waddr(0, p.external))
            .set("worker_count", self.settings.worker_count.to_string())
            .set("rate", self.settings.rate.to_string())
            .set(
                "checkpoint_interval",
                self.profile.worker.checkpoint_interval.clone(),
            )
            .set("inject", self.settings.inject.clone().unwrap_or_default())
            .set("workload_epoch", self.settings.epoch_ms.to_string())
            .set("routes", self.peer_list(p.control, "nats-route://"))
            .set("servers", self.peer_list(p.source, "nats://"))
            .set("addrs", self.peer_list(p.source, ""))
            .set("control_addrs", self.peer_list(p.control, ""));
        v
    }

    /// `scheme127.0.0.1:P,...` for role `offset` of every initial worker.
    fn peer_list(&self, offset: u16, scheme: &str) -> String {
        (0..self.settings.worker_count)
            .map(|i| format!("{scheme}{}", self.waddr(i, offset)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn fill(&self, vars: &Vars, t: &[String]) -> Result<Vec<String>, ClusterError> {
        vars.fill_all(t).map_err(|message| ClusterError::Template {
            profile: self.profile.origin.clone(),
            message,
        })
    }

    fn resolve(
        &self,
        role: &'static str,
        program: &str,
        search: &[String],
    ) -> Result<PathBuf, ClusterError> {
        if program == "{crasher}" {
            return Ok(self.crasher.clone());
        }
        let missing = || ClusterError::Missing {
            role,
            program: program.to_owned(),
        };
        if program.contains('/') {
            let p = PathBuf::from(program);
            return if p.is_file() { Ok(p) } else { Err(missing()) };
        }
        if let Some(p) = search
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
        {
            return Ok(p);
        }
        if let Some(p) = self
            .crasher
            .parent()
            .map(|d| d.join(program))
            .filter(|p| p.is_file())
        {
            return Ok(p);
        }
        if let Some(p) = procs::sibling_binary(program) {
            return Ok(p);
        }
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(program))
                    .find(|p| p.is_file())
            })
            .ok_or_else(missing)
    }

    fn spawn(&self, l: &Launch) -> Result<Member, ClusterError> {
        if let Some(r) = self.remote_of(&l.name) {
            // A worker on a host: an ssh session through the host's master
            // connection, running the remote wrapper (see `run::hosts`).
            let mut cmd = r.ssh();
            cmd.arg(r.wrapped(&l.name, self.run.id(), &l.program, &l.args))
                .env(RUN_ID_VAR, self.run.id());
            let proc = Proc::spawn_with_open_stdin(&l.name, cmd, &l.log)?;
            register(proc.pid());
            if WORLD_STOPPED.load(Ordering::SeqCst) {
                // Started by a task that had not yet seen the violation:
                // stopped on its host too.
                let _ = r.stop_when_started(&l.name);
            }
            return Ok(Member {
                proc,
                starts: 1,
                remote: Some(r.clone()),
                started: std::time::Instant::now(),
            });
        }
        let cmd = match self.lab.as_ref().filter(|lab| lab.node(&l.name).is_some()) {
            // A worker of a lab run: started inside its node's namespace.
            Some(lab) => {
                let mut c = lab
                    .command(&l.name, &l.program)
                    .map_err(|e| ClusterError::Io(io::Error::other(e.to_string())))?;
                c.args(&l.args).env(RUN_ID_VAR, self.run.id());
                c
            }
            None => l.command(self.run.id()),
        };
        let proc = Proc::spawn(&l.name, cmd, &l.log)?;
        register(proc.pid());
        Ok(Member {
            proc,
            starts: 1,
            remote: None,
            started: std::time::Instant::now(),
        })
    }

    /// Worker `i`'s data files (path relative to its state directory,
    /// length) matching `globs`, on its host with `--hosts`.
    pub fn data_files(
        &self,
        i: usize,
        globs: &[regex::Regex],
    ) -> Result<Vec<(String, u64)>, String> {
        let dir = self.worker_state(i);
        match self.remote_of(&worker_name(i)) {
            Some(r) => super::disk::remote_data_files(r, &dir, globs),
            None => Ok(super::disk::data_files(&dir, globs)
                .into_iter()
                .map(|f| {
                    let len = fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    let rel = f.strip_prefix(&dir).unwrap_or(&f).display().to_string();
                    (rel, len)
                })
                .collect()),
        }
    }

    /// Flips bit `bit` of byte `offset` of worker `i`'s data file `rel`,
    /// durably, on its host with `--hosts`: (old byte, new byte).
    pub fn flip_bit(&self, i: usize, rel: &str, offset: u64, bit: u8) -> Result<(u8, u8), String> {
        let path = self.worker_state(i).join(rel);
        match self.remote_of(&worker_name(i)) {
            Some(r) => super::disk::remote_flip_bit(r, &path, offset, bit),
            None => super::disk::flip_bit(&path, offset, bit).map_err(|e| e.to_string()),
        }
    }

    /// Cuts worker `i`'s data file `rel` to `len` bytes, durably, on its
    /// host with `--hosts`.
    pub fn truncate_file(&self, i: usize, rel: &str, len: u64) -> Result<(), String> {
        let path = self.worker_state(i).join(rel);
        match self.remote_of(&worker_name(i)) {
            Some(r) => super::disk::remote_truncate_to(r, &path, len),
            None => super::disk::truncate_to(&path, len).map_err(|e| e.to_string()),
        }
    }

    /// `--hosts`: the host process `name` runs on (a worker, the sink or a
    /// feeder, as the hosts file places them).
    fn remote_of(&self, name: &str) -> Option<&Arc<Remote>> {
        let h = self.hosts.as_ref()?;
        if name == "sink" {
            return h.of_sink();
        }
        if name.starts_with("feeder.") {
            return h.of_feeders();
        }
        crate::soak::spec::worker_index(name).map(|i| h.of_worker(i))
    }

    /// Where the sink writes its output: on its host when the hosts file
    /// places it there (mirrored back into [`RunDir::sink_dir`]), else the
    /// run directory's.
    fn sink_dir(&self) -> PathBuf {
        match self.remote_of("sink") {
            Some(r) => r.dir.join("sink"),
            None => self.run.sink_dir(),
        }
    }

    /// The address the sink listens on: its host's, or the control
    /// machine's (see [`Cluster::lab_host`]).
    fn sink_host(&self) -> std::net::Ipv4Addr {
        self.remote_of("sink")
            .map_or_else(|| self.lab_host(), |r| r.spec.address)
    }

    /// Starts the mirror `which` of `remote_dir` on host `r` into `local`,
    /// unless it runs: `crasher mirror-dir` there under the remote wrapper
    /// (so pause-the-world stops it and the end of its session kills it),
    /// its frames applied here by a thread (see [`super::mirror`]).
    fn ensure_mirror(
        &mut self,
        which: &'static str,
        r: &Arc<Remote>,
        remote_dir: PathBuf,
        local: PathBuf,
    ) -> Result<(), ClusterError> {
        if self
            .mirrors
            .get(which)
            .is_some_and(|m| m.progress.ended().is_none())
        {
            return Ok(());
        }
        let name = format!("mirror.{which}");
        let crasher = r
            .spec
            .crasher
            .clone()
            .unwrap_or_else(|| self.crasher.clone());
        let args = vec![
            "mirror-dir".to_owned(),
            remote_dir.display().to_string(),
            "--ignore-stdin".to_owned(),
        ];
        let mut cmd = r.ssh();
        cmd.arg(r.wrapped(&name, self.run.id(), &crasher, &args))
            .env(RUN_ID_VAR, self.run.id());
        let (proc, stdout) = Proc::spawn_reading_stdout(&name, cmd, &self.run.log_of(&name))?;
        register(proc.pid());
        let progress = super::mirror::MirrorProgress::new();
        let p = progress.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // Its end (or error) is in `p`, which the monitor checks.
                // The sink's files keep their inodes: the verifier follows
                // them by inode; a feeder's status file is replaced whole.
                let _ = if which == "sink" {
                    super::mirror::apply_keeping_inodes(stdout, &local, &p)
                } else {
                    super::mirror::apply(stdout, &local, &p)
                };
            })?;
        self.mirrors.insert(
            which,
            RemoteMirror {
                proc,
                progress,
                host: r.spec.name.clone(),
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// A mirror that stopped, said as an environment error: the supervisor
    /// would otherwise read output that no longer grows and blame the
    /// cluster for it.
    pub fn mirror_failure(&self) -> Option<String> {
        self.mirrors.iter().find_map(|(which, m)| {
            m.progress.ended().map(|end| {
                let why = match end {
                    Ok(()) => "its stream ended".to_owned(),
                    Err(e) => e,
                };
                let what = if *which == "sink" {
                    "the sink's output"
                } else {
                    "the feeders' status files"
                };
                format!(
                    "the mirror of {what} on host {} stopped ({why}); see {}",
                    m.host,
                    self.run.log_of(&format!("mirror.{which}")).display()
                )
            })
        })
    }

    /// The progress of each mirror, to wait for them to be fresh (off the
    /// owner's thread; see [`super::mirror::MirrorProgress::wait_fresh`]).
    pub fn mirror_progress(&self) -> Vec<(String, Arc<super::mirror::MirrorProgress>)> {
        self.mirrors
            .iter()
            .map(|(which, m)| (which.to_string(), m.progress.clone()))
            .collect()
    }

    /// `program` as process `name` runs it: crasher's own binary is at the
    /// host's `crasher` path when the hosts file gives one.
    fn on_host_of(&self, name: &str, program: PathBuf) -> PathBuf {
        match self
            .remote_of(name)
            .and_then(|r| r.spec.crasher.as_ref())
            .filter(|_| program == self.crasher)
        {
            Some(c) => c.clone(),
            None => program,
        }
    }

    /// Worker `i`'s state directory: on its host with `--hosts`, else in
    /// the run directory.
    fn worker_state(&self, i: usize) -> PathBuf {
        let name = worker_name(i);
        match self.remote_of(&name) {
            Some(r) => r.dir.join("state").join(&name),
            None => self.run.worker_state(&name),
        }
    }

    /// Starts `l` detached: the process outlives this `Cluster` and the
    /// crasher process that started it (see [`procs::Proc::detach`]), and
    /// is not in the process table, so neither [`Cluster::teardown`] nor
    /// [`kill_all_registered`] touches it. The low-level commands use this
    /// and record the returned pid, with its start time, in `state.json`.
    pub fn spawn_detached(&self, l: &Launch) -> Result<u32, ClusterError> {
        let proc = Proc::spawn_detachable(&l.name, l.command(self.run.id()), &l.log)?;
        Ok(proc.detach())
    }

    /// How the sink is started.
    pub fn sink_launch(&self) -> Result<Launch, ClusterError> {
        let program = self.resolve(
            "sink",
            &self.profile.sink.program,
            &self.profile.sink.search_paths,
        )?;
        let mut v = self.base_vars();
        v.set("host", self.sink_host().to_string());
        let mut args = self.fill(&v, &self.profile.sink.args.clone())?;
        let program = self.on_host_of("sink", program);
        if let Some(p) = &self.sink_events {
            args.push("--events".into());
            args.push(p.display().to_string());
        }
        Ok(Launch {
            name: "sink".into(),
            program,
            args,
            log: self.run.sink_log(),
        })
    }

    /// The sink's port.
    pub fn sink_port(&self) -> u16 {
        self.ports.port(self.profile.ports.sink)
    }

    /// Starts (or restarts) the sink (on its host, after the mirror of its
    /// output directory).
    pub fn start_sink(&mut self) -> Result<(), ClusterError> {
        if let Some(r) = self.remote_of("sink").cloned() {
            let local = self.run.sink_dir();
            self.ensure_mirror("sink", &r, r.dir.join("sink"), local)?;
        }
        let l = self.sink_launch()?;
        let starts = self.sink.as_ref().map_or(0, |m| m.starts);
        let mut m = self.spawn(&l)?;
        m.starts += starts;
        self.sink = Some(m);
        self.save_state();
        Ok(())
    }

    /// SIGKILLs the sink and reaps it.
    pub fn crash_sink(&mut self) -> Result<(), ClusterError> {
        kill_running(self.sink.as_mut(), "sink".into())
    }

    /// How worker `i` is started as `how` (creates its resilience directory).
    pub fn worker_launch(&self, i: usize, how: Start) -> Result<Launch, ClusterError> {
        let name = worker_name(i);
        let p = self.profile.ports.clone();
        let w = &self.profile.worker;
        let mut v = self.base_vars();
        v.set("name", name.clone())
            .set("index", i.to_string())
            .set("state", self.worker_state(i).display().to_string())
            .set("host", self.worker_host(i).to_string())
            .set("in", self.waddr(i, p.source))
            .set("external", self.waddr(i, p.external))
            .set("control", self.waddr(i, p.control))
            .set("data", self.waddr(i, p.data))
            .set("my_control", self.waddr(i, p.my_control))
            .set("my_data", self.waddr(i, p.my_data));
        if self.hosts.is_none() {
            fs::create_dir_all(self.run.worker_state(&name))?;
        }
        let mut templates = w.args.clone();
        templates.extend(if i == 0 {
            w.initializer_args.clone()
        } else {
            w.member_args.clone()
        });
        if how == Start::Join {
            templates.extend(w.join_args.clone());
        }
        if self.settings.inject.is_some() {
            templates.extend(w.inject_args.clone());
        }
        let args = self.fill(&v, &templates)?;
        let program = self.resolve("worker", &w.program, &w.search_paths)?;
        let program = self.on_host_of(&name, program);
        Ok(Launch {
            log: self.run.worker_log(&name),
            name,
            program,
            args,
        })
    }

    /// Starts worker `i` as `how`.
    pub fn start_worker(&mut self, i: usize, how: Start) -> Result<(), ClusterError> {
        let remote = self.remote_of(&worker_name(i)).cloned();
        if let Some(d) = self.disks.as_mut() {
            let name = worker_name(i);
            match &remote {
                Some(r) => d.ensure_remote(&name, r),
                None => d.ensure(&name, &self.run.worker_state(&name)),
            }
            .map_err(|e| ClusterError::Io(io::Error::other(e.to_string())))?;
            for pid in d.pids() {
                register(pid);
            }
        }
        let l = self.worker_launch(i, how)?;
        if let Some(lab) = self.lab.as_mut() {
            lab.add_node(&l.name, i as u8)
                .map_err(|e| ClusterError::Io(io::Error::other(e.to_string())))?;
        }
        let starts = self.workers.get(&i).map_or(0, |m| m.starts);
        let mut m = self.spawn(&l)?;
        m.starts += starts;
        self.workers.insert(i, m);
        self.members.insert(i);
        self.save_state();
        Ok(())
    }

    /// SIGKILLs worker `i`; fails if it is not running (it died by itself).
    pub fn crash_worker(&mut self, i: usize) -> Result<(), ClusterError> {
        kill_running(self.workers.get_mut(&i), worker_name(i))
    }

    /// Moves worker `i`'s log aside (see [`RunDir::rotate_worker_log`]).
    pub fn rotate_worker_log(&self, i: usize) -> Option<PathBuf> {
        self.run.rotate_worker_log(&worker_name(i))
    }

    /// Marks worker `i` as no longer a member (after a shrink) and hands
    /// its process over, to be terminated off the cluster's lock (see
    /// [`Member::terminate`]).
    pub fn take_worker(&mut self, i: usize) -> Option<Member> {
        self.members.remove(&i);
        let m = self.workers.remove(&i);
        self.save_state();
        m
    }

    /// Rewrites `state.json` from the process table (best effort: a failure
    /// to write it never stops the run).
    pub fn save_state(&self) {
        let mut processes = BTreeMap::new();
        let me = std::process::id();
        processes.insert(
            "supervisor".to_owned(),
            super::state::record("supervisor", me, 1, BTreeMap::new()),
        );
        if let Some(m) = &self.sink {
            let mut ports = BTreeMap::new();
            ports.insert("listen".to_owned(), self.sink_port());
            let mut r = super::state::record("sink", m.proc.pid(), m.starts, ports);
            r.host = m.host().map(str::to_owned);
            processes.insert("sink".to_owned(), r);
        }
        for (i, m) in &self.workers {
            let ports = self
                .worker_ports(*i)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let mut r = super::state::record("worker", m.proc.pid(), m.starts, ports);
            r.host = m.host().map(str::to_owned);
            processes.insert(worker_name(*i), r);
        }
        for (k, m) in &self.feeders {
            let mut r = super::state::record("feeder", m.proc.pid(), m.starts, BTreeMap::new());
            r.host = m.host().map(str::to_owned);
            processes.insert(format!("feeder.{k}"), r);
        }
        let st = super::state::RunState {
            run_id: self.run.id().to_owned(),
            run_dir: self.run.root().to_owned(),
            profile: self.profile.origin.clone(),
            port_base: self.ports.base(),
            worker_count: self.settings.worker_count,
            rate: self.settings.rate,
            inject: self.settings.inject.clone(),
            inputs: self.settings.inputs.clone(),
            members: self.members.iter().copied().collect(),
            sink: self.sink_addr(),
            processes,
            manual: None,
            network: self.network_faults().map(|f| {
                let kind = if self.lab.is_some() { "lab" } else { "hosts" };
                format!("{kind}: {}", f.describe())
            }),
        };
        let _ = st.write();
    }

    /// Current expected members.
    pub fn members(&self) -> &BTreeSet<usize> {
        &self.members
    }

    /// Whether worker `i` is running now.
    pub fn worker_running(&mut self, i: usize) -> bool {
        self.workers
            .get_mut(&i)
            .is_some_and(|m| m.proc.is_running())
    }

    /// How the feeder of `key` is started.
    pub fn feeder_launch(&self, key: &str) -> Result<Launch, ClusterError> {
        let name = format!("feeder.{key}");
        let mut input = self.settings.inputs.get(key).cloned().unwrap_or_default();
        let mut status = self.run.feeder_status(key);
        let mut log = self.run.feeder_log(key);
        let mut host = self.lab_host();
        if let Some(r) = self.remote_of(&name) {
            // On the feeders' host: the input copied there (see
            // `Cluster::start_feeder`), the status file mirrored back.
            input = remote_input(r, key);
            status = r.dir.join(FEEDER_STATUS_DIR).join(
                status
                    .file_name()
                    .unwrap_or_else(|| std::ffi::OsStr::new(key)),
            );
            log = r.dir.join("logs").join(format!("{name}.log"));
            host = r.spec.address;
        }
        let mut v = self.base_vars();
        let workload = self
            .settings
            .workloads
            .get(key)
            .copied()
            .unwrap_or_default();
        v.set("key", key.to_owned())
            .set("workload", workload.to_string())
            .set("host", host.to_string())
            .set("input", input.display().to_string())
            .set("status", status.display().to_string())
            .set("log", log.display().to_string());
        let args = self.fill(&v, &self.profile.feeder.args.clone())?;
        let program = self.resolve(
            "feeder",
            &self.profile.feeder.program,
            &self.profile.feeder.search_paths,
        )?;
        let program = self.on_host_of(&name, program);
        Ok(Launch {
            name,
            program,
            args,
            log: self.run.feeder_log(key),
        })
    }

    /// Starts the feeder of `key` (on the feeders' host, its input is
    /// copied there first, once).
    pub fn start_feeder(&mut self, key: &str) -> Result<(), ClusterError> {
        if let Some(r) = self.remote_of(&format!("feeder.{key}")).cloned() {
            let local = self.run.logs_dir();
            self.ensure_mirror("feeders", &r, r.dir.join(FEEDER_STATUS_DIR), local)?;
            if !self.uploaded.contains(key) {
                let local = self.settings.inputs.get(key).cloned().unwrap_or_default();
                r.upload(&local, &remote_input(&r, key), UPLOAD_TIMEOUT)
                    .map_err(|e| {
                        ClusterError::Io(io::Error::other(format!(
                            "copying the input of key {key} to host {}: {e}",
                            r.spec.name
                        )))
                    })?;
                self.uploaded.insert(key.to_owned());
            }
        }
        let l = self.feeder_launch(key)?;
        let starts = self.feeders.get(key).map_or(0, |m| m.starts);
        let mut m = self.spawn(&l)?;
        m.starts += starts;
        self.feeders.insert(key.to_owned(), m);
        self.save_state();
        Ok(())
    }

    /// SIGKILLs the feeder of `key`.
    pub fn crash_feeder(&mut self, key: &str) -> Result<(), ClusterError> {
        kill_running(self.feeders.get_mut(key), format!("feeder.{key}"))
    }

    /// Keys whose feeder finished its file.
    pub fn done_feeders(&self) -> &BTreeSet<String> {
        &self.done_feeders
    }

    /// Keys whose feeder is not running and not done (to be restarted).
    pub fn idle_feeders(&mut self) -> Vec<String> {
        let keys: Vec<String> = self.settings.inputs.keys().cloned().collect();
        keys.into_iter()
            .filter(|k| !self.done_feeders.contains(k))
            .filter(|k| !self.feeders.get_mut(k).is_some_and(|m| m.proc.is_running()))
            .collect()
    }

    /// Reaps whatever exited since the last call and reports it. A feeder
    /// that exited 0 is recorded as done.
    /// Processes for which `skip(name)` holds are left alone: a loop is
    /// acting on them and will account for their exit itself.
    pub fn reap(&mut self, skip: impl Fn(&str) -> bool) -> Vec<Death> {
        let mut out = Vec::new();
        let check = |who: String, m: &mut Member, seen: &mut Vec<Death>| {
            if skip(&who) {
                return;
            }
            if let Ok(Some(st)) = m.proc.try_wait() {
                unregister(m.proc.pid());
                seen.push(Death {
                    who,
                    status: describe_status(st),
                    success: st.success(),
                    ran_for: m.started.elapsed(),
                });
            }
        };
        let mut gone = Vec::new();
        if let Some(m) = self.sink.as_mut() {
            check("sink".into(), m, &mut gone);
        }
        if !gone.is_empty() {
            self.sink = None;
        }
        out.append(&mut gone);
        for (i, m) in self.workers.iter_mut() {
            check(worker_name(*i), m, &mut gone);
        }
        for d in &gone {
            if let Some(i) = crate::soak::spec::worker_index(&d.who) {
                self.workers.remove(&i);
            }
        }
        out.append(&mut gone);
        for (k, m) in self.feeders.iter_mut() {
            check(format!("feeder.{k}"), m, &mut gone);
        }
        for d in &gone {
            let key = d.who.trim_start_matches("feeder.").to_owned();
            if d.success {
                self.done_feeders.insert(key.clone());
            }
            self.feeders.remove(&key);
        }
        out.append(&mut gone);
        if !out.is_empty() {
            self.save_state();
        }
        out
    }

    /// Every live process: (role, name, pid).
    pub fn processes(&self) -> Vec<(&'static str, String, u32)> {
        let mut v = Vec::new();
        if let Some(m) = &self.sink {
            v.push(("sink", "sink".to_owned(), m.proc.pid()));
        }
        for (i, m) in &self.workers {
            v.push(("worker", worker_name(*i), m.proc.pid()));
        }
        for (k, m) in &self.feeders {
            v.push(("feeder", format!("feeder.{k}"), m.proc.pid()));
        }
        v
    }

    /// Sends `sig` to worker `i`'s process group.
    pub fn signal_worker(&self, i: usize, sig: Signal) {
        if let Some(m) = self.workers.get(&i) {
            m.signal(sig);
        }
    }

    /// Sends `sig` to every process group of the run.
    pub fn signal_all(&self, sig: Signal) {
        let members = self
            .sink
            .iter()
            .chain(self.workers.values())
            .chain(self.feeders.values());
        for m in members {
            m.signal(sig);
        }
    }

    /// Stops every process: SIGTERM, a grace period, then SIGKILL; all reaped.
    pub fn teardown(&mut self, grace: Duration) {
        self.signal_all(Signal::SIGCONT);
        self.signal_all(Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        let all_gone = |c: &mut Cluster| {
            c.sink
                .iter_mut()
                .chain(c.workers.values_mut())
                .chain(c.feeders.values_mut())
                .all(|m| !m.proc.is_running())
        };
        procs::wait_until(deadline, || all_gone(self));
        self.sink = None;
        self.workers.clear();
        self.feeders.clear();
        if let Some(mut d) = self.disks.take() {
            for pid in d.pids() {
                unregister(pid);
            }
            d.unmount_all();
        }
    }
}

/// A directory on a host mirrored into the run directory: the local ssh
/// client of `crasher mirror-dir` there, and the thread applying its
/// frames. Dropping it kills the client (so the remote wrapper kills the
/// mirror) and joins the thread, which then reads end-of-file.
struct RemoteMirror {
    proc: Proc,
    progress: Arc<super::mirror::MirrorProgress>,
    host: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RemoteMirror {
    fn drop(&mut self) {
        unregister(self.proc.pid());
        let _ = self.proc.kill();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long copying one input file to a host may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The directory, in the run's directory on the feeders' host, where they
/// write their status files (mirrored into the run directory's `logs/`).
pub const FEEDER_STATUS_DIR: &str = "feeder-status";

/// Where the input of `key` is copied on the feeders' host `r`.
fn remote_input(r: &Remote, key: &str) -> PathBuf {
    r.dir.join("inputs").join(format!("input.{key}"))
}

/// SIGKILLs a member that is running; an absent or exited one is an error
/// (it died by itself).
fn kill_running(m: Option<&mut Member>, who: String) -> Result<(), ClusterError> {
    match m {
        Some(m) => {
            if !m.proc.is_running() {
                return Err(ClusterError::NotRunning(who));
            }
            m.kill()?;
            Ok(())
        }
        None => Err(ClusterError::NotRunning(who)),
    }
}

/// Compresses a rotated log to `.gz` and removes the plain file.
pub fn gzip_file(path: &Path) -> io::Result<PathBuf> {
    use flate2::write::GzEncoder;
    let gz = path.with_extension("gz");
    let tmp = gz.with_extension("gz.tmp");
    let written = (|| {
        let mut input = fs::File::open(path)?;
        let mut enc = GzEncoder::new(fs::File::create(&tmp)?, flate2::Compression::fast());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()?;
        fs::rename(&tmp, &gz)
    })();
    if let Err(e) = written {
        // A full disk leaves the plain log, never a partial `.gz.tmp`.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::remove_file(path)?;
    Ok(gz)
}

/// Deletes all but the `keep` newest rotated `.gz` logs of each worker.
pub fn clean_old_gz(logs: &Path, keep: usize) -> io::Result<usize> {
    let mut by_worker: BTreeMap<String, Vec<(u128, PathBuf)>> = BTreeMap::new();
    for e in fs::read_dir(logs)? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        let Some((who, ts)) = stem.rsplit_once('.') else {
            continue;
        };
        if let Ok(ts) = ts.parse::<u128>() {
            by_worker.entry(who.to_owned()).or_default().push((ts, p));
        }
    }
    let mut removed = 0;
    for (_, mut files) in by_worker {
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (_, p) in files.into_iter().skip(keep) {
            fs::remove_file(p)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_gz_logs_beyond_five_per_worker_are_removed() {
        let t = tempfile::tempdir().unwrap();
        for ts in 1..=8u32 {
            fs::write(t.path().join(format!("worker1.{ts}.gz")), b"x").unwrap();
            fs::write(t.path().join(format!("initializer.{ts}.gz")), b"x").unwrap();
        }
        fs::write(t.path().join("worker1.log"), b"x").unwrap();
        assert_eq!(clean_old_gz(t.path(), 5).unwrap(), 6);
        assert!(t.path().join("worker1.8.gz").exists());
        assert!(t.path().join("worker1.4.gz").exists());
        assert!(!t.path().join("worker1.3.gz").exists());
        assert!(t.path().join("worker1.log").exists());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("w.123.log");
        fs::write(&p, b"hello\n").unwrap();
        let gz = gzip_file(&p).unwrap();
        assert!(!p.exists());
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(fs::File::open(gz).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello\n");
    }
}
