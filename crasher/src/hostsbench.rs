//! `crasher hosts-bench --hosts FILE`: what a fault costs over SSH. It
//! times, with crasher's own code paths (`run::hosts`), a crash (SIGKILL
//! of a process group and its reaping) and pause-the-world (SIGSTOP to a
//! process group on every host) and a start (until the program runs) on
//! the hosts of FILE, and the same on this machine, and prints the
//! latencies (see docs/hosts.md).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use procs::Proc;

use crate::run::hosts::{signal_every_host, Hosts, HostsConfig, Remote};

/// `crasher hosts-bench`.
#[derive(Debug, clap::Args)]
pub struct HostsBenchArgs {
    /// The hosts file.
    #[arg(long)]
    pub hosts: PathBuf,
    /// A directory for the ssh sockets and logs (created).
    #[arg(long)]
    pub dir: PathBuf,
    /// How many crashes and pauses of each kind.
    #[arg(long, default_value_t = 30)]
    pub rounds: usize,
    /// Signal without the hosts' control shells: one SSH session (and
    /// login shell) per signal, crasher's fallback when a control shell
    /// failed.
    #[arg(long)]
    pub sessions: bool,
}

/// Runs the benchmark; prints one line per measurement.
pub fn run(a: HostsBenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = HostsConfig::load(&a.hosts)?;
    std::fs::create_dir_all(&a.dir)?;
    let run_id = format!("hosts-bench-{}", std::process::id());
    let hosts = Hosts::connect(&cfg, &a.dir, &run_id)?;
    if a.sessions {
        for r in hosts.remotes() {
            r.close_control_shell();
        }
    }
    let sleep = netlab::which("sleep").context("no sleep on PATH")?;
    let log = a.dir.join("bench.log");
    let (mut crash_local, mut crash_remote) = (Vec::new(), Vec::new());
    let (mut pause_local, mut pause_remote) = (Vec::new(), Vec::new());
    let (mut start_local, mut start_over_ssh) = (Vec::new(), Vec::new());
    let sh = netlab::which("sh").context("no sh on PATH")?;
    let up = ["-c".to_owned(), "echo up; exec sleep 1000".to_owned()];
    for round in 0..a.rounds {
        // A start (as a restart after a crash does it) until the program
        // runs: `sh` prints `up` first thing, and the time is until that
        // line is in its log here (for a host, written by the local ssh
        // client: a new session, the remote wrapper, setsid, the program).
        let started_log = a.dir.join(format!("start{round}.log"));
        let t = Instant::now();
        let mut c = Command::new(&sh);
        c.args(&up);
        let mut p = Proc::spawn("start", c, &started_log)?;
        await_line(&started_log, "up", &mut p)?;
        start_local.push(t.elapsed());
        p.kill()?;
        let r = &hosts.remotes()[round % hosts.remotes().len()];
        let started_log = a.dir.join(format!("start{round}.remote.log"));
        let name = format!("start{round}");
        let t = Instant::now();
        let mut c = r.ssh();
        c.arg(r.wrapped(&name, &run_id, &sh, &up))
            .env(procs::RUN_ID_VAR, &run_id);
        let mut p = Proc::spawn_with_open_stdin(&name, c, &started_log)?;
        await_line(&started_log, "up", &mut p)?;
        start_over_ssh.push(t.elapsed());
        r.signal(&name, Signal::SIGKILL)
            .map_err(anyhow::Error::msg)?;
        p.wait_deadline(Instant::now() + Duration::from_secs(10))?;
        // A crash on this machine: killpg(SIGKILL), then reap.
        let mut p = Proc::spawn("local", sleep_cmd(&sleep), &log)?;
        let t = Instant::now();
        p.kill()?;
        crash_local.push(t.elapsed());
        // A crash on a host, as `Member::kill` does it: SIGKILL to the
        // remote group over the master, then the session ends once the
        // wrapper reaped the process.
        let r = &hosts.remotes()[round % hosts.remotes().len()];
        let name = format!("bench{round}");
        let mut p = start_remote(r, &name, &run_id, &sleep, &log)?;
        let t = Instant::now();
        r.signal(&name, Signal::SIGKILL)
            .map_err(anyhow::Error::msg)?;
        p.wait_deadline(Instant::now() + Duration::from_secs(10))?;
        crash_remote.push(t.elapsed());
        // Pause-the-world with one process per host (and as many here):
        // SIGSTOP until every process is seen stopped here, and until
        // every host's `kill` returned there.
        let mut locals: Vec<Proc> = (0..hosts.remotes().len())
            .map(|i| Proc::spawn(&format!("l{i}"), sleep_cmd(&sleep), &log))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        for l in &locals {
            l.signal(Signal::SIGSTOP)?;
        }
        procs::wait_until(Instant::now() + Duration::from_secs(5), || {
            locals
                .iter()
                .all(|l| procs::stat::stat(l.pid()).is_some_and(|s| s.stopped()))
        });
        pause_local.push(t.elapsed());
        for l in &mut locals {
            l.kill()?;
        }
        let mut remotes: Vec<Proc> = hosts
            .remotes()
            .iter()
            .enumerate()
            .map(|(i, r)| start_remote(r, &format!("p{round}.{i}"), &run_id, &sleep, &log))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        signal_every_host(Signal::SIGSTOP);
        pause_remote.push(t.elapsed());
        signal_every_host(Signal::SIGKILL);
        for p in &mut remotes {
            p.wait_deadline(Instant::now() + Duration::from_secs(10))?;
        }
    }
    println!(
        "{} rounds, {} hosts, signals {} (crash: SIGKILL and reaped; pause: SIGSTOP to one process group per host)",
        a.rounds,
        hosts.remotes().len(),
        if a.sessions {
            "one ssh session each"
        } else {
            "through each host's control shell"
        }
    );
    for (what, v) in [
        ("crash, local", &mut crash_local),
        ("crash, over ssh", &mut crash_remote),
        ("pause-the-world, local", &mut pause_local),
        ("pause-the-world, over ssh", &mut pause_remote),
        ("start, local", &mut start_local),
        ("start, over ssh", &mut start_over_ssh),
    ] {
        println!("{what:<26} {}", summary(v));
    }
    Ok(ExitCode::SUCCESS)
}

fn sleep_cmd(sleep: &Path) -> Command {
    let mut c = Command::new(sleep);
    c.arg("1000");
    c
}

/// Starts `sleep 1000` on `r` under the remote wrapper, as the cluster
/// starts a worker there, and waits until the wrapper wrote its pgid.
fn start_remote(
    r: &Remote,
    name: &str,
    run_id: &str,
    sleep: &Path,
    log: &Path,
) -> anyhow::Result<Proc> {
    let mut c = r.ssh();
    c.arg(r.wrapped(name, run_id, sleep, &["1000".to_owned()]))
        .env(procs::RUN_ID_VAR, run_id);
    let mut p = Proc::spawn_with_open_stdin(name, c, log)?;
    let pids = crate::run::hosts::shell_quote(&r.dir.join("pids").join(name).display().to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    while r
        .run(&format!("test -s {pids}"), Duration::from_secs(10))
        .is_err()
    {
        if Instant::now() > deadline || !p.is_running() {
            bail!("{name} did not start on {}", r.spec.name);
        }
    }
    Ok(p)
}

/// Waits (10 s at most) until `log` holds a line `line`, which `p` prints
/// as soon as it runs.
fn await_line(log: &Path, line: &str, p: &mut Proc) -> anyhow::Result<()> {
    // Polled every 0.2 ms (procs::wait_until backs off to 50 ms, too
    // coarse for a local start of a few ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = || std::fs::read_to_string(log).is_ok_and(|t| t.lines().any(|l| l == line));
    while !printed() && p.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !text.lines().any(|l| l == line) {
        bail!("{} never printed {line:?}: {text}", p.name());
    }
    Ok(())
}

/// `median M ms, p90 P ms, max X ms`.
fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    if v.is_empty() {
        return "no samples".into();
    }
    format!(
        "median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    )
}
