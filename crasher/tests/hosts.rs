//! `--hosts`: the reference cluster on three lab hosts, each a network
//! namespace with its own address running a real `sshd`, built by
//! `crasher lab-hosts` inside namespaces of its own (no route to the
//! host's network; everything dies with it). A soak with crash1,
//! crash-sink and grow holds; an injected bug is caught; pause-the-world
//! stops every process of the run on every host; SIGKILL of crasher
//! leaves no process on any host.
//!
//! Needs root, network namespaces and `sshd` (Debian `openssh-server`,
//! installed by `.ci/install-deps`). Outside CI a machine without them says
//! the tests are skipped; in CI (`CI=true`) that is a failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{crasher, fault_glyphs, run_id, saw};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_crasher");

/// Whether the lab can be built here; `false` (skip) only outside CI.
fn lab_available() -> bool {
    let sshd = ["/usr/sbin/sshd", "/sbin/sshd"]
        .iter()
        .any(|p| Path::new(p).is_file());
    let problem = match netlab::preflight() {
        Err(e) => Some(e.to_string()),
        Ok(()) if !sshd => Some("sshd is not installed (Debian openssh-server)".into()),
        Ok(()) if netlab::which("ssh").is_none() => Some("ssh is not installed".into()),
        Ok(()) => None,
    };
    match problem {
        None => true,
        Some(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the --hosts lab tests: {e}")
        }
        Some(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// `crasher lab-hosts 3 --dir DIR [--hold] -- crasher SOAK... --hosts
/// DIR/hosts.toml --runs DIR/runs`, stdout to `DIR/out`; killed (with its
/// whole lab) when dropped.
struct LabRun {
    child: Child,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl LabRun {
    fn start(soak: &[&str], hold: bool) -> LabRun {
        LabRun::start_with(soak, hold, &[])
    }

    /// `lab_args` go to lab-hosts (e.g. `--host-env K=V`).
    fn start_with(soak: &[&str], hold: bool, lab_args: &[String]) -> LabRun {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut c = crasher();
        c.args(["lab-hosts", "3", "--dir"]).arg(&dir);
        if hold {
            c.arg("--hold");
        }
        c.args(lab_args);
        c.arg("--")
            .arg(BIN)
            .args(soak)
            .arg("--hosts")
            .arg(dir.join("hosts.toml"))
            .arg("--runs")
            .arg(dir.join("runs"))
            .stdin(if hold { Stdio::piped() } else { Stdio::null() })
            .stdout(std::fs::File::create(dir.join("out")).unwrap())
            .stderr(std::fs::File::create(dir.join("err")).unwrap());
        LabRun {
            child: c.spawn().unwrap(),
            dir,
            _tmp: tmp,
        }
    }

    fn output(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("out")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("err")).unwrap_or_default();
        format!("{out}\n--- stderr ---\n{err}")
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("out")).unwrap_or_default()
    }

    /// The run id, once crasher printed it.
    fn run_id(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(id) = run_id(&self.stdout()) {
                return id;
            }
            assert!(Instant::now() < deadline, "no run id:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for lab-hosts (and so crasher) to end; its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "lab-hosts still runs after {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends `--hold`: lab-hosts tears the lab down.
    fn release(&mut self) {
        drop(self.child.stdin.take());
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        // SIGKILL of lab-hosts: the parent-death signals kill unshare and
        // the PID 1 of the lab, and with it every process of the lab.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent pid and command name of `pid`.
fn parent_and_comm(pid: u32) -> Option<(u32, String)> {
    let s = procs::stat::stat(pid)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some((s.ppid, comm.trim().to_owned()))
}

/// Whether `pid` runs under an sshd (a process started on a lab host).
fn on_a_host(pid: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        let Some((ppid, comm)) = parent_and_comm(p) else {
            return false;
        };
        if comm == "sshd" {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

fn netns(pid: u32) -> Option<u64> {
    netlab::netns_inode(&pid.to_string()).ok()
}

/// The processes of run `id` on the lab hosts, with their network
/// namespace.
fn remote_processes(id: &str) -> Vec<(u32, u64)> {
    procs::processes_of_run(id)
        .into_iter()
        .filter(|&p| on_a_host(p))
        .filter_map(|p| Some((p, netns(p)?)))
        .collect()
}

/// Waits until run `id` has processes on `hosts` distinct lab hosts.
fn wait_for_hosts(run: &LabRun, id: &str, hosts: usize, limit: Duration) -> Vec<(u32, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let r = remote_processes(id);
        if r.iter().map(|(_, ns)| ns).collect::<BTreeSet<_>>().len() >= hosts {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never had processes on {hosts} hosts (has {r:?}):\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The crasher soak under lab-hosts (its `--hosts` argument names the
/// hosts file; lab-hosts' own command line names it after `--`).
fn soak_pid(dir: &Path) -> Option<u32> {
    let hosts = dir.join("hosts.toml").display().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            // Not lab-hosts itself, nor the setpriv/unshare wrapping it.
            args.first().is_some_and(|a| a == BIN)
                && args.get(1).is_some_and(|a| a != "lab-hosts")
                && args.iter().any(|a| a == &hosts)
        })
}

#[test]
fn a_three_host_soak_with_crash1_crash_sink_and_grow_holds() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "crash1",
            "crash-sink",
            "grow",
            "--duration",
            "35s",
            "--input-bytes",
            "1000000",
            "--on-failure",
            "kill",
        ],
        false,
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Hosts: host0 198.18.0.10, host1 198.18.0.11, host2 198.18.0.12"),
        "{out}"
    );
    let glyphs = fault_glyphs(&run.stdout());
    for g in ["c1", "r1", "cS", "rS"] {
        assert!(saw(&glyphs, g), "no {g} in {glyphs:?}:\n{out}");
    }
    assert!(out.contains("Join worker3."), "{out}");
    // The workers' logs came back over ssh into the run directory, the
    // crashed worker's rotated and gzipped as on one host.
    let id = run_id(&run.stdout()).unwrap();
    let logs = run.dir.join("runs").join(&id).join("logs");
    let init = std::fs::read_to_string(logs.join("initializer.log")).unwrap();
    assert!(init.contains("listening on 198.18.0.10:"), "{init}");
    let w2 = std::fs::read_to_string(logs.join("worker2.log")).unwrap();
    assert!(w2.contains("listening on 198.18.0.12:"), "{w2}");
    let gz = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("worker1.") && n.ends_with(".gz")
        })
        .count();
    assert!(gz >= 1, "no rotated worker1 log in {}", logs.display());
    // The workers' state lived on their hosts.
    assert!(run
        .dir
        .join("host1/work")
        .join(&id)
        .join("state/worker1")
        .is_dir());
}

#[test]
fn an_injected_bug_is_caught_across_hosts() {
    injected_bug_is_caught(&[]);
}

/// `--inject duplicate-on-replay` under crash1 on lab hosts (`lab_args`
/// to lab-hosts): exit 1, a sanity violation.
fn injected_bug_is_caught(lab_args: &[&str]) {
    if !lab_available() {
        return;
    }
    let lab_args: Vec<String> = lab_args.iter().map(|a| a.to_string()).collect();
    let mut run = LabRun::start_with(
        &[
            "3",
            "crash1",
            "--duration",
            "90s",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--inject",
            "duplicate-on-replay",
            "--timing",
            "crash_worker_start=1",
            "--on-failure",
            "kill",
        ],
        false,
        &lab_args,
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("VIOLATION (sanity)"), "{out}");
}

#[test]
fn pause_the_world_stops_every_process_on_every_host() {
    pause_the_world_on_hosts(None);
}

/// As above, with the sink on host1 and the feeders on host2: they, and
/// the mirrors of their files, are stopped there too.
#[test]
fn pause_the_world_stops_the_sink_feeders_and_mirrors_on_hosts() {
    pause_the_world_on_hosts(Some(("host1", "host2")));
}

/// Pause-the-world at a violation, with the sink and feeders here
/// (`None`) or on the hosts named (sink, feeders).
fn pause_the_world_on_hosts(placed: Option<(&str, &str)>) {
    if !lab_available() {
        return;
    }
    let lab_args: Vec<String> = match placed {
        Some((sink, feeders)) => vec![
            "--sink-on".into(),
            sink.into(),
            "--feeders-on".into(),
            feeders.into(),
        ],
        None => Vec::new(),
    };
    let mut run = LabRun::start_with(
        &[
            "3",
            "crash1",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--inject",
            "duplicate-on-replay",
            "--timing",
            "crash_worker_start=1",
        ],
        true,
        &lab_args,
    );
    let id = run.run_id(Duration::from_secs(60));
    let manifest = run.dir.join("runs").join(&id).join("paused.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !manifest.is_file() {
        assert!(Instant::now() < deadline, "never paused:\n{}", run.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The world was stopped before paused.json was written.
    let remote = remote_processes(&id);
    let hosts: BTreeSet<u64> = remote.iter().map(|(_, ns)| *ns).collect();
    assert_eq!(
        hosts.len(),
        3,
        "processes of the run on {} hosts, not 3: {remote:?}",
        hosts.len()
    );
    for (pid, _) in &remote {
        let st = procs::stat::stat(*pid).expect("a stopped process is still there");
        assert!(
            st.stopped(),
            "remote pid {pid} is in state {}, not T:\n{}",
            st.state,
            run.output()
        );
    }
    // And on the control machine: every process of the run but the ssh
    // master connections, which carry the signals.
    for pid in procs::processes_of_run(&id) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let master = cmd.split(|b| *b == 0).any(|a| a == b"-M");
        if let Some(st) = procs::stat::stat(pid) {
            assert!(
                master || st.stopped() || st.dead(),
                "pid {pid} ({}) is in state {}",
                String::from_utf8_lossy(&cmd),
                st.state
            );
        }
    }
    // `crasher status` names each worker's host.
    let status = crasher()
        .args(["status", "--json", "--run-dir"])
        .arg(run.dir.join("runs").join(&id))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        )
    });
    let host_of = |name: &str| {
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["host"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(host_of("initializer").as_deref(), Some("host0"), "{v}");
    assert_eq!(host_of("worker2").as_deref(), Some("host2"), "{v}");
    let (sink, feeders) = placed.unwrap_or(("local", "local"));
    assert_eq!(host_of("sink").as_deref(), Some(sink), "{v}");
    assert_eq!(host_of("feeder.A").as_deref(), Some(feeders), "{v}");
    if placed.is_some() {
        // The mirrors run there too, and were stopped with the rest.
        let comms: Vec<String> = remote
            .iter()
            .filter_map(|(pid, _)| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect();
        assert!(
            comms.iter().filter(|c| c.contains("mirror-dir")).count() == 2,
            "{comms:?}"
        );
    }
    // Ctrl-C ends the pause: exit 1, nothing of the run left anywhere
    // (lab-hosts holds the hosts meanwhile).
    let soak = soak_pid(&run.dir).expect("the soak is still there");
    kill(Pid::from_raw(soak as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run.output().contains("command ended") {
        assert!(Instant::now() < deadline, "no teardown:\n{}", run.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        run.output().contains("command ended (1)"),
        "{}",
        run.output()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !procs::processes_of_run(&id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(procs::processes_of_run(&id), Vec::<u32>::new());
    run.release();
    run.wait(Duration::from_secs(20));
}

#[test]
fn sigkill_of_crasher_leaves_no_process_on_any_host() {
    sigkill_on_hosts(&[]);
}

/// As above, with the sink, the feeders and their mirrors on hosts.
#[test]
fn sigkill_of_crasher_leaves_no_sink_feeder_or_mirror_on_any_host() {
    sigkill_on_hosts(&["--sink-on", "host1", "--feeders-on", "host2"]);
}

/// SIGKILL of crasher during a soak on lab hosts (`lab_args` to
/// lab-hosts): nothing of the run is left anywhere within a few seconds.
fn sigkill_on_hosts(lab_args: &[&str]) {
    if !lab_available() {
        return;
    }
    let lab_args: Vec<String> = lab_args.iter().map(|a| a.to_string()).collect();
    let mut run = LabRun::start_with(
        &[
            "3",
            "crash1",
            "--duration",
            "120s",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
        ],
        true,
        &lab_args,
    );
    let id = run.run_id(Duration::from_secs(60));
    let remote = wait_for_hosts(&run, &id, 3, Duration::from_secs(60));
    let host_ns: BTreeSet<u64> = remote.iter().map(|(_, ns)| *ns).collect();
    if !lab_args.is_empty() {
        // The sink, both feeders and both mirrors run on the hosts.
        let placed =
            |c: &str| c.contains("mirror-dir") || c.contains(" sink ") || c.contains(" feed ");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = remote_processes(&id)
                .iter()
                .filter_map(|(pid, _)| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
                .filter(|c| placed(&String::from_utf8_lossy(c).replace('\0', " ")))
                .count();
            if n >= 5 {
                break;
            }
            assert!(Instant::now() < deadline, "{n} of 5:\n{}", run.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let soak = soak_pid(&run.dir).expect("the soak runs");
    kill(Pid::from_raw(soak as i32), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.output().contains("command ended") {
        assert!(Instant::now() < deadline, "crasher survived SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Instant::now();
    // Within a few seconds: no process of the run anywhere, and on the
    // hosts nothing but the listening sshd (no session left either).
    let leftovers = || -> Vec<String> {
        let mut v: Vec<String> = procs::processes_of_run(&id)
            .into_iter()
            .map(|p| format!("{p} of the run"))
            .collect();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if netns(pid).is_some_and(|ns| host_ns.contains(&ns)) {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                let listener = cmd.contains("sshd -D -e -f");
                let holder = cmd.contains("sleep infinity");
                if !listener && !holder && procs::stat::stat(pid).is_some_and(|s| !s.dead()) {
                    v.push(format!("{pid} on a host: {cmd}"));
                }
            }
        }
        v
    };
    let clean = procs::wait_until(killed + Duration::from_secs(5), || leftovers().is_empty());
    assert!(clean, "left after SIGKILL: {:?}", leftovers());
    run.release();
    run.wait(Duration::from_secs(20));
    let _ = std::io::stderr().flush();
}

/// Bad hosts files and unreachable hosts are usage or environment errors
/// (exit 2) that name the file and field, or the host, before anything
/// starts; no lab needed.
#[test]
fn a_bad_hosts_file_or_an_unreachable_host_is_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let run = |file: &str, extra: &[&str]| {
        let p = t.path().join("hosts.toml");
        std::fs::write(&p, file).unwrap();
        let out = crasher()
            .args(["3", "crash1", "--duration", "10s", "--hosts"])
            .arg(&p)
            .arg("--runs")
            .arg(t.path().join("runs"))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(
        "control_address = \"127.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"db.example\"\nworkdir = \"/tmp\"\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("hosts.toml: host[0] (a): field `address`"),
        "{err}"
    );
    let (code, err) = run(
        "control_address = \"127.0.0.1\"\n[[host]]\nnme = \"a\"\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("hosts.toml") && err.contains("nme"), "{err}");
    let good =
        "control_address = \"127.0.0.1\"\n[[host]]\nname = \"a\"\ndestination = \"127.0.0.1\"\n\
                port = 1\nworkdir = \"/tmp\"\nssh_args = [\"-F\", \"/dev/null\"]\n";
    let (code, err) = run(good, &["--network", "lab"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not combine with"), "{err}");
    // The sink or the feeders on a host: no network faults, and the
    // targeted words need the sink here.
    let placed = format!("sink = \"a\"\n{good}");
    let (code, err) = run(&placed, &["partition"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("network faults") && err.contains("on a host"),
        "{err}"
    );
    let (code, err) = run(&placed, &["crash-at-prepare"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("keep the sink here"), "{err}");
    if netlab::which("ssh").is_none() {
        eprintln!("skipped the unreachable host: no ssh");
        return;
    }
    // Nothing listens on port 1: the master connection fails at once.
    let (code, err) = run(good, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("host a (127.0.0.1): no SSH connection"),
        "{err}"
    );
}

/// The nats-server binary, as crasher/tests/nats.rs finds it.
fn nats_server() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CRASHER_NATS_SERVER") {
        candidates.push(p.into());
    }
    candidates.push(root.join(".venv-nats/bin/nats-server"));
    candidates.push("/usr/sbin/nats-server".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// NATS JetStream across the three hosts (one nats-server per host, the
/// JetStream cluster's routes between them), with crashes and pauses over
/// SSH: holds. Skipped, like crasher/tests/nats.rs, without nats-server.
#[test]
fn nats_jetstream_across_three_hosts_holds() {
    let Some(server) = nats_server() else {
        eprintln!("SKIPPED: no nats-server binary; run .ci/install-nats to run it");
        return;
    };
    if !lab_available() {
        return;
    }
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../env/nats-jetstream.toml");
    let profile = profile.display().to_string();
    let mut run = LabRun::start_with(
        &[
            "3",
            "crash1",
            "pause",
            "--env",
            &profile,
            "--keys",
            "A,B",
            "--input-bytes",
            "200000",
            "--rate",
            "5000",
            "--duration",
            "30s",
            "--on-failure",
            "kill",
            // As in nats.rs: this is about holding, not coverage.
            "--min-observed",
            "0",
        ],
        false,
        &[
            "--host-env".into(),
            format!("CRASHER_NATS_SERVER={}", server.display()),
        ],
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(0), "{out}");
    let id = run_id(&run.stdout()).unwrap();
    let logs = run.dir.join("runs").join(&id).join("logs");
    let w1 = std::fs::read_to_string(logs.join("worker1.log")).unwrap();
    assert!(
        w1.contains("Listening for client connections on 198.18.0.11:"),
        "{w1}"
    );
    let glyphs = fault_glyphs(&run.stdout());
    assert!(saw(&glyphs, "c1"), "{glyphs:?}");
}

/// The sshd listeners of the lab hosts of `dir` (one per host): their
/// network namespaces are the hosts'.
fn host_sshds(dir: &Path) -> Vec<u32> {
    let dir = dir.display().to_string();
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("sshd -D -e -f") && cmd.contains(&dir)
        })
        .collect();
    v.sort();
    v
}

/// The nftables tables of `pid`'s network namespace whose name starts
/// with `crasher` (`nft list tables` run there with nsenter).
fn crasher_tables(pid: u32) -> Vec<String> {
    let out = std::process::Command::new(netlab::which("nsenter").unwrap())
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(netlab::which("nft").unwrap())
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" crasher"))
        .map(str::to_owned)
        .collect()
}

/// Every crasher table on the hosts of `dir`, as `PID: table`.
fn tables_on_hosts(dir: &Path) -> Vec<String> {
    host_sshds(dir)
        .into_iter()
        .flat_map(|p| {
            crasher_tables(p)
                .into_iter()
                .map(move |t| format!("{p}: {t}"))
        })
        .collect()
}

/// The `(fired, observed)` counts of fault `word` in the coverage line.
fn coverage(out: &str, word: &str) -> Option<(u32, u32)> {
    let line = out.lines().find(|l| l.starts_with("Fault coverage"))?;
    let at = line.find(&format!(" {word} "))? + word.len() + 2;
    let mut nums = line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap());
    Some((nums.next()?, nums.next()?))
}

/// Network faults on the hosts: a three-host soak with crash1 and
/// partition holds, the partitions fire and are observed, the run's table
/// is seen on the hosts while it runs, and after the run no crasher table
/// is left on any host.
#[test]
fn a_three_host_soak_with_partition_holds_and_leaves_no_table() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "crash1",
            "partition",
            "--duration",
            "40s",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "1000000",
            "--timing",
            "net_start=2",
            "--on-failure",
            "kill",
        ],
        true,
    );
    let id = run.run_id(Duration::from_secs(60));
    let table = format!("table inet crasher_{}", id.replace('-', "_"));
    // Sampled while the run goes on: the rules are in the run's table on
    // the hosts themselves.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(200);
    while !run.output().contains("command ended") {
        assert!(Instant::now() < deadline, "no end:\n{}", run.output());
        for t in tables_on_hosts(&run.dir) {
            seen.insert(t);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.output();
    assert!(out.contains("command ended (0)"), "{out}");
    let (fired, observed) = coverage(&out, "partition").unwrap_or_else(|| panic!("{out}"));
    assert!(fired >= 1 && observed >= 1, "{out}");
    let glyphs = fault_glyphs(&run.stdout());
    assert!(saw(&glyphs, "{H}"), "{glyphs:?}");
    assert!(
        !seen.is_empty() && seen.iter().all(|t| t.ends_with(&table)),
        "tables seen on the hosts: {seen:?}, want {table}"
    );
    assert_eq!(host_sshds(&run.dir).len(), 3);
    assert_eq!(tables_on_hosts(&run.dir), Vec::<String>::new());
    run.release();
    run.wait(Duration::from_secs(20));
}

/// `isolate` cuts a host from the control machine too, but never crasher's
/// SSH: the fault is healed through the isolated host's own control shell.
/// Then SIGKILL of crasher while a fault is in force: within 5 s no
/// crasher table is left on any host (each host's control shell deletes
/// the run's table when its session ends).
#[test]
fn sigkill_of_crasher_during_a_network_fault_leaves_no_table() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "isolate",
            "--duration",
            "120s",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
            "--timing",
            "net_start=1,net_gap_min=1,net_gap_max=2,net_hold_min=4,net_hold_max=5",
        ],
        true,
    );
    let id = run.run_id(Duration::from_secs(60));
    let table = format!("table inet crasher_{}", id.replace('-', "_"));
    // An isolation, then its heal (over the isolated host's SSH), then
    // the next fault in force on a host.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let glyphs = run.stdout();
        let healed = glyphs
            .find("{I:")
            .is_some_and(|at| glyphs[at..].contains("{H}"));
        if healed && !tables_on_hosts(&run.dir).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no isolation healed and another in force:\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = tables_on_hosts(&run.dir);
    assert!(during.iter().all(|t| t.ends_with(&table)), "{during:?}");
    let soak = soak_pid(&run.dir).expect("the soak runs");
    kill(Pid::from_raw(soak as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let clean = procs::wait_until(killed + Duration::from_secs(5), || {
        tables_on_hosts(&run.dir).is_empty()
    });
    assert!(
        clean,
        "left 5 s after SIGKILL: {:?} (was {during:?})",
        tables_on_hosts(&run.dir)
    );
    assert_eq!(host_sshds(&run.dir).len(), 3);
    run.release();
    run.wait(Duration::from_secs(30));
}

/// The split-brain bug (`--inject commit-when-cut-off`, which
/// crasher/tests/netlab_soak.rs catches with `partition`) is caught across
/// hosts too.
#[test]
fn split_brain_bug_is_caught_by_partition_across_hosts() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "partition",
            "--inject",
            "commit-when-cut-off",
            "--timing",
            "net_hold_min=6,net_hold_max=8",
            "--duration",
            "45s",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "1000000",
            "--on-failure",
            "kill",
        ],
        false,
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("VIOLATION (sanity)"), "{out}");
}

/// The lossyfs mounts (mount points) in the mount namespace of the lab
/// hosts of `dir` (they share the lab's: `/proc/SSHD/mounts`) and in this
/// machine's, under `dir`.
fn lossy_mounts(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    let mut tables: Vec<String> = host_sshds(dir)
        .into_iter()
        .map(|p| format!("/proc/{p}/mounts"))
        .collect();
    tables.push("/proc/self/mounts".into());
    let mut v: Vec<String> = tables
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(t)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f.len() > 2 && f[2] == "fuse.lossyfs" && f[1].starts_with(&d))
                        .then(|| f[1].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `--disk lossy` on the hosts: a three-host soak with crash1 and
/// power-loss holds; each worker's state directory was a lossyfs mount on
/// its host (seen in the hosts' mount namespace while the run went on);
/// the power losses fired and were observed; afterwards no lossyfs mount
/// is left there or here.
#[test]
fn a_three_host_soak_with_power_loss_on_lossy_disks_holds_and_leaves_no_mount() {
    if !lab_available() || !Path::new("/dev/fuse").exists() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "crash1",
            "power-loss",
            "--disk",
            "lossy",
            "--duration",
            "40s",
            "--keys",
            "A,B",
            "--input-bytes",
            "1000000",
            "--on-failure",
            "kill",
        ],
        true,
    );
    let id = run.run_id(Duration::from_secs(60));
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(200);
    while !run.output().contains("command ended") {
        assert!(Instant::now() < deadline, "no end:\n{}", run.output());
        seen.extend(lossy_mounts(&run.dir));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.output();
    assert!(out.contains("command ended (0)"), "{out}");
    let (fired, observed) = coverage(&out, "power-loss").unwrap_or_else(|| panic!("{out}"));
    assert!(fired >= 1 && observed >= 1, "{out}");
    assert!(
        out.contains("un-synced writes dropped (nodes before"),
        "{out}"
    );
    let want: BTreeSet<String> = ["host0/work", "host1/work", "host2/work"]
        .iter()
        .zip(["initializer", "worker1", "worker2"])
        .map(|(h, w)| format!("{}/{h}/{id}/state/{w}", run.dir.display()))
        .collect();
    assert_eq!(seen, want, "lossyfs mounts seen while the run went on");
    assert_eq!(host_sshds(&run.dir).len(), 3);
    assert_eq!(lossy_mounts(&run.dir), Vec::<String>::new());
    run.release();
    run.wait(Duration::from_secs(20));
}

/// The bug `power-loss` catches on one host (`--inject skip-fsync`: the
/// workers acknowledge what they never fsynced) is caught across hosts.
#[test]
fn skip_fsync_is_caught_by_power_loss_across_hosts() {
    if !lab_available() || !Path::new("/dev/fuse").exists() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "power-loss",
            "--disk",
            "lossy",
            "--inject",
            "skip-fsync",
            "--seed",
            "5",
            "--duration",
            "40s",
            "--on-failure",
            "kill",
        ],
        false,
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(1), "{out}");
    let glyphs = fault_glyphs(&run.stdout());
    assert!(glyphs.iter().any(|g| g.starts_with("PL")), "{out}");
    assert!(out.contains("VIOLATION"), "{out}");
}

/// SIGKILL of crasher while lossyfs is mounted on every host: within 5 s
/// no lossyfs mount is left in the hosts' mount namespace (each lossyfs
/// dies with its session and unmounts, and the control shell unmounts
/// what is left when its own session ends), and no process of the run.
#[test]
fn sigkill_of_crasher_leaves_no_lossyfs_mount_on_any_host() {
    if !lab_available() || !Path::new("/dev/fuse").exists() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "crash1",
            "--disk",
            "lossy",
            "--duration",
            "120s",
            "--keys",
            "A,B",
            "--input-bytes",
            "4000000",
            "--rate",
            "100000",
        ],
        true,
    );
    let id = run.run_id(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(90);
    while lossy_mounts(&run.dir).len() < 3 || !run.stdout().contains("Cluster ready") {
        assert!(Instant::now() < deadline, "no mounts:\n{}", run.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let soak = soak_pid(&run.dir).expect("the soak runs");
    kill(Pid::from_raw(soak as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let clean = procs::wait_until(killed + Duration::from_secs(5), || {
        lossy_mounts(&run.dir).is_empty() && procs::processes_of_run(&id).is_empty()
    });
    assert!(
        clean,
        "left 5 s after SIGKILL: mounts {:?}, processes {:?}",
        lossy_mounts(&run.dir),
        procs::processes_of_run(&id)
    );
    assert_eq!(host_sshds(&run.dir).len(), 3);
    run.release();
    run.wait(Duration::from_secs(30));
}

/// `corrupt` and `truncate` on the hosts: the surgery is done there (the
/// file and its bytes are read and written on the worker's host, through
/// its control shell), reported as on one machine, and a node that cannot
/// read its state afterwards is a violation.
#[test]
fn corrupt_and_truncate_act_on_the_hosts_files() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start(
        &[
            "3",
            "corrupt",
            "truncate",
            "--seed",
            "1",
            "--duration",
            "30s",
            "--timing",
            "corrupt_gap_min=1,corrupt_gap_max=3",
            "--on-failure",
            "kill",
        ],
        false,
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    let id = run_id(&run.stdout()).unwrap();
    // `corrupt: worker1: worker.json: bit 2 of byte 12 of 34 flipped (…)`
    // or `truncate: initializer: sink.json: cut from 96 to 24 bytes`.
    let done: Vec<&str> = out
        .lines()
        .filter(|l| {
            (l.starts_with("corrupt: ") && l.contains(" flipped ("))
                || (l.starts_with("truncate: ") && l.contains(": cut from "))
        })
        .collect();
    assert!(!done.is_empty(), "no surgery:\n{out}");
    for l in &done {
        let mut parts = l.splitn(4, ": ");
        let (_, name, file) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let host = match name {
            "initializer" => 0,
            w => w.trim_start_matches("worker").parse::<usize>().unwrap() % 3,
        };
        let there = run
            .dir
            .join(format!("host{host}/work"))
            .join(&id)
            .join("state")
            .join(name)
            .join(file);
        assert!(there.is_file(), "{l}: no {}", there.display());
    }
    assert!(code == Some(0) || code == Some(1), "{out}");
    if code == Some(1) {
        assert!(out.contains("VIOLATION ("), "{out}");
    }
}

/// A `[[trigger]]` that isolates works across hosts as in a lab: each time
/// a worker logs its recovery, another worker's host is cut from the
/// others (SSH excepted) for a second. The run holds, each firing says how
/// long after its line the cut was in force, and no table is left.
#[test]
fn a_log_trigger_can_isolate_a_host() {
    if !lab_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(format!(
        "{}/../env/passthrough.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let profile = t.path().join("trigger.toml");
    std::fs::write(
        &profile,
        format!(
            "{base}\n[[trigger]]\nrole = \"worker\"\nregex = 'start #[0-9]+ \\(recovering'\n\
             action = \"isolate\"\ntarget = \"other\"\ndown = 1.0\ncooldown = 0.0\n"
        ),
    )
    .unwrap();
    let mut run = LabRun::start(
        &[
            "3",
            "crash1",
            "--env",
            profile.to_str().unwrap(),
            "--duration",
            "30s",
            "--seed",
            "5",
            // The trigger's cut overlaps the crash it follows: the crash's
            // observation is cut short by design.
            "--min-observed",
            "0",
            "--on-failure",
            "kill",
        ],
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(200);
    while !run.output().contains("command ended") {
        assert!(Instant::now() < deadline, "no end:\n{}", run.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.output();
    assert!(out.contains("command ended (0)"), "{out}");
    let reports: Vec<String> = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with("Trigger 1: isolate of "))
        .map(str::to_owned)
        .collect();
    assert!(!reports.is_empty(), "the trigger never fired:\n{out}");
    assert!(
        reports
            .iter()
            .all(|l| l.contains("ms after its timestamp") && !l.contains("of worker1 ")),
        "{reports:?}"
    );
    let glyphs = fault_glyphs(&run.stdout());
    assert!(saw(&glyphs, "{H}"), "the cut was never healed: {glyphs:?}");
    assert_eq!(tables_on_hosts(&run.dir), Vec::<String>::new());
    run.release();
    run.wait(Duration::from_secs(20));
}

/// The byte content of `path`, empty if it is missing.
fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// The hosts file places the sink on host1 and the feeders on host2: the
/// sink writes its output there and the supervisor verifies the mirror of
/// it in the run directory; the inputs are copied to host2 and the
/// feeders' status files mirrored back. Under crash1, crash-sink and
/// crash-source the run holds, and verifies data (an unknown verdict for
/// want of a mirror would fail here).
#[test]
fn the_sink_and_feeders_on_hosts_are_verified_through_the_mirror() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start_with(
        &[
            "3",
            "crash1",
            "crash-sink",
            "crash-source",
            "--duration",
            "35s",
            "--keys",
            "A,B",
            "--input-bytes",
            "1000000",
            "--on-failure",
            "kill",
        ],
        false,
        &[
            "--sink-on".into(),
            "host1".into(),
            "--feeders-on".into(),
            "host2".into(),
        ],
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sink on host1, feeders on host2"), "{out}");
    let glyphs = fault_glyphs(&run.stdout());
    for g in ["c1", "cS", "rS"] {
        assert!(saw(&glyphs, g), "no {g} in {glyphs:?}:\n{out}");
    }
    let id = run_id(&run.stdout()).unwrap();
    let local = run.dir.join("runs").join(&id);
    let sink_log = std::fs::read_to_string(local.join("logs/sink.log")).unwrap();
    assert!(sink_log.contains("198.18.0.11"), "{sink_log}");
    // The sink wrote on host1; the run directory holds a mirror of it: at
    // the end each mirrored txnlog is a prefix of the host's (the sink
    // may have committed more between the last sync and the teardown).
    let remote_sink = run.dir.join("host1/work").join(&id).join("sink");
    let mut logs = 0;
    for e in std::fs::read_dir(&remote_sink).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".txnlog") {
            continue;
        }
        let theirs = bytes(&e.path());
        let ours = bytes(&local.join("sink").join(&name));
        assert!(!ours.is_empty(), "{name} was not mirrored");
        assert!(
            theirs.starts_with(&ours),
            "{name}: the mirror is not a prefix"
        );
        logs += 1;
    }
    assert!(
        logs >= 3,
        "{logs} txnlogs on host1 in {}",
        remote_sink.display()
    );
    // The feeders ran on host2 from copies of the inputs; their status
    // files came back.
    let host2 = run.dir.join("host2/work").join(&id);
    for k in ["A", "B"] {
        assert!(host2.join(format!("inputs/input.{k}")).is_file());
        assert!(host2
            .join(format!("feeder-status/feeder.{k}.status"))
            .is_file());
        assert!(local.join(format!("logs/feeder.{k}.status")).is_file());
    }
    let verified = regex::Regex::new(r"key A: [1-9][0-9]* of").unwrap();
    assert!(verified.is_match(&out), "nothing verified:\n{out}");
}

/// With the sink on a host, an injected bug is still caught during the
/// run, through the mirror of the sink's output.
#[test]
fn an_injected_bug_is_caught_with_the_sink_on_a_host() {
    injected_bug_is_caught(&["--sink-on", "host1"]);
}

/// With the sink on a host, shrinks make the sink rename the departed
/// workers' files there; the mirror renames its copies (their inodes, by
/// which the verifier follows them, kept), so the run holds and the run
/// directory has the renamed files, each a prefix of the host's.
#[test]
fn shrinks_with_the_sink_on_a_host_rename_the_mirrored_files() {
    if !lab_available() {
        return;
    }
    let mut run = LabRun::start_with(
        &[
            "3",
            "grow",
            "shrink",
            "--duration",
            "30s",
            "--keys",
            "A,B",
            "--input-bytes",
            "2000000",
            "--timing",
            "grow_start=1",
            "--on-failure",
            "kill",
        ],
        false,
        &["--sink-on".into(), "host1".into()],
    );
    let code = run.wait(Duration::from_secs(200));
    let out = run.output();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Shrink worker"), "{out}");
    let id = run_id(&run.stdout()).unwrap();
    let local = run.dir.join("runs").join(&id).join("sink");
    let remote = run.dir.join("host1/work").join(&id).join("sink");
    // `output.workerN.SECONDS.MICROS.txnlog`: a departed worker's log.
    let renamed: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txnlog") && n.matches('.').count() >= 4)
        .collect();
    assert!(
        !renamed.is_empty(),
        "no renamed file in {}",
        local.display()
    );
    for n in &renamed {
        let ours = bytes(&local.join(n));
        assert!(bytes(&remote.join(n)).starts_with(&ours), "{n}");
        let data = n.trim_end_matches(".txnlog");
        assert!(
            bytes(&remote.join(data)).starts_with(&bytes(&local.join(data))),
            "{data}"
        );
    }
}
