//! One function per low-level command (see the module doc of
//! [`crate::manual`] and docs/commands.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::Instant;

use super::run::Run;
use super::{
    finish, Fail, KeyArgs, PollAllReadyArgs, PollReadyArgs, RunArgs, ShrinkArgs,
    StartInitializerArgs, StartSinkArgs, StartWorkerArgs, WorkerArgs,
};
use crate::exit;
use crate::run::cluster::{self, Start};
use crate::run::profile::Mode;
use crate::run::query;
use crate::run::rundir::RunDir;
use crate::soak::spec::{worker_name, MAX_WORKERS};

/// Rotated logs kept per worker, as the soak keeps.
const KEEP_ROTATED: usize = 5;

fn worker_number(n: usize) -> Result<usize, Fail> {
    if n < MAX_WORKERS {
        Ok(n)
    } else {
        Err(Fail::Env(format!(
            "Error: bad worker number: {n} (0 is the initializer, workers are 1 to {})",
            MAX_WORKERS - 1
        )))
    }
}

fn wait_secs(w: f64) -> Result<Duration, Fail> {
    Duration::try_from_secs_f64(w)
        .map_err(|_| Fail::Env(format!("Error: -w {w}: not a number of seconds")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn string_keys(m: BTreeMap<&'static str, u16>) -> BTreeMap<String, u16> {
    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `crasher start-sink`: starts the run's sink (creating a run if there
/// is none) and waits until it listens.
pub fn start_sink(a: StartSinkArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let (mut run, _) = Run::open_or_create(&a.run, &a.new)?;
        let c = run.cluster()?;
        let l = c.sink_launch()?;
        let port = c.sink_port();
        let ports = BTreeMap::from([("listen".to_owned(), port)]);
        run.start(&l, "sink", ports, Some(port))?;
        Ok(exit::HOLDS)
    })())
}

/// `crasher start-initializer [-n N]`: starts worker 0 (creating a run if
/// there is none) and waits until its external port listens.
pub fn start_initializer(a: StartInitializerArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        if let Some(n) = a.workers.filter(|n| !(1..=MAX_WORKERS).contains(n)) {
            return Err(Fail::Env(format!(
                "Error: -n {n}: a cluster has 1 to {MAX_WORKERS} workers"
            )));
        }
        let (mut run, _) = Run::open_or_create(&a.run, &a.new)?;
        if let Some(n) = a.workers {
            run.st.worker_count = n;
        }
        if run.running("sink").is_none() {
            eprintln!(
                "warning: the sink of run {} is not running: start it first (`crasher start-sink`)",
                run.st.run_id
            );
        }
        start_worker_as(&mut run, 0, Start::Initial)
    })())
}

fn start_worker_as(run: &mut Run, i: usize, how: Start) -> Result<u8, Fail> {
    let c = run.cluster()?;
    let l = c.worker_launch(i, how)?;
    let ports = string_keys(c.worker_ports(i));
    let external = c.external_addr(i).port();
    if !run.st.members.contains(&i) {
        run.st.members.push(i);
        run.st.members.sort_unstable();
    }
    run.start(&l, "worker", ports, Some(external))?;
    Ok(exit::HOLDS)
}

fn start_member(sel: &crate::ops::RunSel, worker: usize, join: bool) -> Result<u8, Fail> {
    let i = worker_number(worker)?;
    if i == 0 {
        return Err(Fail::Env(
            "Error: worker 0 is the initializer: start it with `crasher start-initializer`".into(),
        ));
    }
    let mut run = Run::open(sel)?;
    if join && !run.profile.capabilities.grow {
        return Err(Fail::Env(format!(
            "Error: profile {} cannot grow its cluster (capabilities.grow = false)",
            run.profile.origin
        )));
    }
    let how = if join { Start::Join } else { Start::Initial };
    start_worker_as(&mut run, i, how)
}

/// `crasher start-worker [-j] N`: starts worker N as a member (or, with
/// `-j`, joining the running cluster).
pub fn start_worker(a: StartWorkerArgs) -> anyhow::Result<ExitCode> {
    finish(start_member(&a.run, a.worker, a.join))
}

/// `crasher join-worker N`: `start-worker -j N`.
pub fn join_worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    finish(start_member(&a.run, a.worker, true))
}

/// `crasher crash-worker N`: SIGKILLs worker N (0 = initializer) and
/// rotates its log as the soak's crash loop does.
pub fn crash_worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let i = worker_number(a.worker)?;
        let run = Run::open(&a.run)?;
        let name = worker_name(i);
        run.crash(&name, format!("Error: worker {name} is not running"))?;
        let dir = RunDir::open(&run.st.run_dir, &run.st.run_id);
        if let Some(aside) = dir.rotate_worker_log(&name) {
            let rotated = cluster::gzip_file(&aside)
                .and_then(|_| cluster::clean_old_gz(&dir.logs_dir(), KEEP_ROTATED));
            if let Err(e) = rotated {
                eprintln!("warning: cannot compress {}: {e}", aside.display());
            }
        }
        Ok(exit::HOLDS)
    })())
}

/// `crasher shrink-worker N`: asks the initializer to remove worker N,
/// as the original did (eligibility query, then the shrink), and waits
/// until the worker exits.
pub fn shrink_worker(a: ShrinkArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let i = worker_number(a.worker)?;
        if i == 0 {
            return Err(Fail::Env(
                "Error: cannot shrink the initializer worker".into(),
            ));
        }
        let limit = wait_secs(a.wait)?;
        let name = worker_name(i);
        // The run's lock is not held while the cluster works.
        let (init, rec, run_id) = {
            let run = Run::open(&a.run)?;
            if !run.profile.capabilities.grow {
                return Err(Fail::Env(format!(
                    "Error: profile {} cannot shrink its cluster (capabilities.grow = false)",
                    run.profile.origin
                )));
            }
            let rec = run
                .running(&name)
                .cloned()
                .ok_or_else(|| Fail::State(format!("Error: worker {name} is not running")))?;
            if run.running("initializer").is_none() {
                return Err(Fail::State(
                    "Error: the initializer is not running (shrink requests go to it)".into(),
                ));
            }
            (run.cluster()?.external_addr(0), rec, run.st.run_id.clone())
        };
        let rt = runtime()?;
        match rt.block_on(query::shrink(init, Vec::new(), true, limit)) {
            Ok(Ok(r)) if r.node_names.contains(&name) => {}
            Ok(Ok(r)) => {
                return Err(Fail::State(format!(
                    "Error: worker {name} is not eligible to be shrunk\nEligible: |{},|",
                    r.node_names.join(",")
                )))
            }
            Ok(Err(e)) => {
                return Err(Fail::State(format!(
                    "Error: the initializer refused the eligibility query: {e}"
                )))
            }
            Err(e) => {
                return Err(Fail::State(format!(
                    "Error: cannot ask the initializer: {e}"
                )))
            }
        }
        rt.block_on(query::shrink_and_wait(init, &name, limit, || {
            rec.of_run(&run_id)
        }))
        .map_err(|e| Fail::State(format!("Error: shrinking {name} failed: {e}")))?;
        let mut run = Run::open(&a.run)?;
        run.st.members.retain(|&m| m != i);
        run.st.processes.remove(&name);
        run.save()?;
        Ok(exit::HOLDS)
    })())
}

/// Why a worker's readiness failed, plus whether its process is dead.
fn not_ready(run: &Run, name: &str, last: &str) -> String {
    if run.running(name).is_none() {
        format!("{last} (its process is not running)")
    } else {
        last.to_owned()
    }
}

/// `crasher poll-ready [-w SECS] [-v] N`: asks worker N itself until it
/// is ready. Exit 0 ready, 1 not ready by the deadline (the last answer and
/// `Failed` are printed), 2 unknown worker.
pub fn poll_ready(a: PollReadyArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let i = worker_number(a.worker)?;
        let limit = wait_secs(a.wait)?;
        let run = Run::view(&a.run)?;
        let name = worker_name(i);
        let known = run
            .st
            .processes
            .get(&name)
            .is_some_and(|r| r.role == "worker");
        if !known {
            let workers: Vec<&str> = run
                .st
                .processes
                .iter()
                .filter(|(_, r)| r.role == "worker")
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(Fail::Env(format!(
                "Error: unknown worker {i}: run {} has no {name} (its workers: {})",
                run.st.run_id,
                if workers.is_empty() {
                    "none".to_owned()
                } else {
                    workers.join(", ")
                }
            )));
        }
        let addr = run.cluster()?.readiness_addr(i);
        if a.verbose {
            println!("TCP port number = {}", addr.port());
        }
        let rt = runtime()?;
        let kind = run.profile.readiness.kind;
        match rt.block_on(query::poll_worker(kind, addr, Instant::now() + limit)) {
            Ok(()) => {
                if a.verbose {
                    println!("Success");
                }
                Ok(exit::HOLDS)
            }
            Err(last) => {
                println!("{}", not_ready(&run, &name, &last));
                println!("Failed");
                Ok(exit::VIOLATION)
            }
        }
    })())
}

/// `crasher poll-all-ready [-w SECS] [-v]`: polls every member of the run,
/// each on its own external port, within one shared budget.
pub fn poll_all_ready(a: PollAllReadyArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let limit = wait_secs(a.wait)?;
        let run = Run::view(&a.run)?;
        if run.st.members.is_empty() {
            return Err(Fail::Env(format!(
                "Error: run {} has no workers (start them with `crasher start-initializer` and `crasher start-worker`)",
                run.st.run_id
            )));
        }
        let c = run.cluster()?;
        let rt = runtime()?;
        let kind = run.profile.readiness.kind;
        let deadline = Instant::now() + limit;
        for &i in &run.st.members {
            let name = worker_name(i);
            let addr: SocketAddr = c.readiness_addr(i);
            if a.verbose {
                println!("Worker {name}: port = {}", addr.port());
            }
            if let Err(last) = rt.block_on(query::poll_worker(kind, addr, deadline)) {
                println!(
                    "Failed for worker {name} within {}s: {}",
                    a.wait,
                    not_ready(&run, &name, &last)
                );
                return Ok(exit::VIOLATION);
            }
        }
        if a.verbose {
            println!("Success");
        }
        Ok(exit::HOLDS)
    })())
}

fn check_key(run: &Run, key: &str) -> Result<(), Fail> {
    if run.st.inputs.contains_key(key) {
        return Ok(());
    }
    let keys: Vec<&str> = run.st.inputs.keys().map(String::as_str).collect();
    Err(Fail::Env(format!(
        "Error: {key:?} is not a key of run {} (its keys: {})",
        run.st.run_id,
        keys.join(",")
    )))
}

/// `crasher start-feeder KEY`: starts the feeder of KEY (writing its input
/// file first if it is missing).
pub fn start_feeder(a: KeyArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let mut run = Run::open(&a.run)?;
        check_key(&run, &a.key)?;
        let setup = run.setup().clone();
        let tcp = run.profile.mode == Mode::Tcp;
        crate::soak::ensure_input_files(
            &setup.input_dir,
            &[a.key.as_bytes()[0]],
            setup.input_bytes,
            setup.seed,
            tcp,
        )
        .map_err(|e| Fail::Env(format!("Error: {e:#}")))?;
        let l = run.cluster()?.feeder_launch(&a.key)?;
        run.start(&l, "feeder", BTreeMap::new(), None)?;
        Ok(exit::HOLDS)
    })())
}

/// `crasher crash-feeder KEY`: SIGKILLs the feeder of KEY.
pub fn crash_feeder(a: KeyArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let run = Run::open(&a.run)?;
        check_key(&run, &a.key)?;
        let name = format!("feeder.{}", a.key);
        run.crash(&name, format!("Error: {name} is not running"))?;
        Ok(exit::HOLDS)
    })())
}

/// `crasher crash-sink`: SIGKILLs the sink.
pub fn crash_sink(a: RunArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let run = Run::open(&a.run)?;
        run.crash("sink", "Error: sink is not running".into())?;
        Ok(exit::HOLDS)
    })())
}
