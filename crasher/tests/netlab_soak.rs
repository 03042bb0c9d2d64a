//! Soaks in a lab network (`--network lab`): they hold under network
//! faults, and leave nothing behind — no process of the run, no network
//! namespace it made, and the host's interfaces, routes and nftables
//! ruleset exactly as before — even when crasher is SIGKILLed mid-run or
//! stopped by a signal.
//!
//! Need root, iproute2, nftables and util-linux: without them each test
//! says it is skipped (in CI they must run: `.ci/install-deps` installs
//! nftables).

mod common;

use common::crasher;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

fn available() -> bool {
    match netlab::preflight() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the lab tests: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// The host namespace's interfaces, addresses, routes and ruleset.
fn host_snapshot() -> String {
    netlab::network_snapshot().unwrap()
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    procs::wait_until(Instant::now() + limit, &mut cond)
}

/// The run id from the first line of the transcript (`Run ID in DIR`).
fn run_id(stdout: &Path) -> Option<String> {
    common::run_id(&std::fs::read_to_string(stdout).ok()?)
}

/// Now, in clock ticks since boot: the unit of [`procs::start_time`].
fn now_ticks() -> u64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    (secs * procs::stat::ticks_per_second() as f64).ceil() as u64
}

/// What [`NsWatch`] saw of one network namespace.
#[derive(Debug, Clone, Copy)]
struct Sighting {
    /// When a process of the run was last seen in it ([`now_ticks`]).
    last: u64,
    /// That process.
    pid: u32,
}

/// Every network namespace a run's processes (those carrying its
/// `CRASHER_RUN_ID`) were in over the run's whole life — the lab, each
/// initial node and each node made later by `grow` — sampled every 50 ms
/// by a thread from the moment the run prints its id until the watch is
/// stopped. A node namespace lives as long as its holder process, which
/// carries the run id, so none is missed.
struct NsWatch {
    seen: Arc<Mutex<BTreeMap<u64, Sighting>>>,
    id: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsWatch {
    /// Starts watching the run whose transcript is `stdout`.
    fn start(stdout: PathBuf) -> NsWatch {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let id = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, id, stop) = (seen.clone(), id.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let known = id.lock().unwrap().clone();
                    if let Some(run) = known.or_else(|| run_id(&stdout)) {
                        *id.lock().unwrap() = Some(run.clone());
                        sample(&run, &seen);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        NsWatch {
            seen,
            id,
            stop,
            thread: Some(thread),
        }
    }

    /// Samples once now and returns every namespace seen so far.
    fn now(&self) -> BTreeMap<u64, Sighting> {
        let run = self.id.lock().unwrap().clone();
        if let Some(run) = run {
            sample(&run, &self.seen);
        }
        self.seen.lock().unwrap().clone()
    }

    /// Stops sampling and returns every namespace seen.
    fn finish(&mut self) -> BTreeMap<u64, Sighting> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for NsWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Records the network namespace of every process of run `id`.
fn sample(id: &str, seen: &Mutex<BTreeMap<u64, Sighting>>) {
    for pid in procs::processes_of_run(id) {
        // Read before the time, so `last` is never before the sighting.
        if let Ok(ino) = netlab::netns_inode(&pid.to_string()) {
            let last = now_ticks();
            seen.lock().unwrap().insert(ino, Sighting { last, pid });
        }
    }
}

/// The namespaces of `seen` that still exist and are the run's, with the
/// processes that keep them (in them or holding them open). The kernel
/// gives a new namespace the lowest free inode number, so another run's
/// namespace made after this run's was freed may get its number: a
/// namespace counts as the run's only if a process keeping it had started
/// by the time the run was last seen in it.
fn left_namespaces(seen: &BTreeMap<u64, Sighting>) -> BTreeMap<u64, BTreeSet<u32>> {
    netlab::netns_holders()
        .into_iter()
        .filter(|(ino, pids)| {
            seen.get(ino).is_some_and(|s| {
                pids.iter()
                    .any(|&p| procs::start_time(p).is_some_and(|t| t <= s.last))
            })
        })
        .collect()
}

struct Run {
    child: Child,
    stdout: std::path::PathBuf,
    watch: NsWatch,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let stdout = dir.path().join("stdout");
    let child = crasher()
        .args(args)
        .arg("--runs")
        .arg(dir.path().join("runs"))
        .args(["--on-failure", "kill", "--network", "lab"])
        .stdout(Stdio::from(File::create(&stdout).unwrap()))
        .stderr(Stdio::from(
            File::create(dir.path().join("stderr")).unwrap(),
        ))
        .spawn()
        .unwrap();
    Run {
        child,
        watch: NsWatch::start(stdout.clone()),
        stdout,
        _dir: dir,
    }
}

fn transcript(r: &Run) -> String {
    let err = r.stdout.with_file_name("stderr");
    format!(
        "{}\n--- stderr:\n{}",
        std::fs::read_to_string(&r.stdout).unwrap_or_default(),
        std::fs::read_to_string(err).unwrap_or_default()
    )
}

/// Waits until the run's cluster is up and returns its id and the network
/// namespaces its processes have been in so far.
fn wait_up(r: &Run) -> (String, BTreeSet<u64>) {
    let mut id = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            id = run_id(&r.stdout);
            std::fs::read_to_string(&r.stdout).is_ok_and(|s| s.contains("Done, yay"))
        }),
        "the lab run never came up:\n{}",
        transcript(r)
    );
    let ns = r.watch.now().into_keys().collect();
    (id.unwrap(), ns)
}

/// Starts a lab run and waits until it is up ([`wait_up`]). A run whose
/// reference cluster never became ready at start-up (exit 3 before any
/// fault: a rare passthrough start-up hang, see docs/findings.md) is
/// started once more, saying so; that is not what these tests check.
fn start_ready(args: &[&str]) -> (Run, String, BTreeSet<u64>) {
    for attempt in 1..=2 {
        let mut r = start(args);
        let mut exited = None;
        wait_for(Duration::from_secs(60), || {
            exited = r.child.try_wait().ok().flatten();
            exited.is_some()
                || std::fs::read_to_string(&r.stdout).is_ok_and(|s| s.contains("Done, yay"))
        });
        let out = transcript(&r);
        if attempt == 1
            && exited.is_some_and(|st| st.code() == Some(3))
            && out.contains("did not become ready")
        {
            eprintln!("the cluster never became ready at start-up; starting again:\n{out}");
            continue;
        }
        let (id, ns) = wait_up(&r);
        return (r, id, ns);
    }
    unreachable!("the loop returns on its second attempt")
}

/// Waits until no process of run `id` is left, then stops `r`'s namespace
/// watch and returns what it saw; `false` with it if processes remain.
fn run_gone(r: &mut Run, id: &str) -> (bool, BTreeMap<u64, Sighting>) {
    let gone = wait_for(Duration::from_secs(10), || {
        procs::processes_of_run(id).is_empty()
    });
    (gone, r.watch.finish())
}

/// Asserts that nothing of run `id` is left: no process, none of the
/// network namespaces its processes were in at any time of the run
/// ([`NsWatch`]), and the host's network as `before`.
fn assert_nothing_left(r: &mut Run, id: &str, before: &str) {
    let (gone, seen) = run_gone(r, id);
    assert!(
        gone,
        "processes of run {id} left: {:?}",
        procs::processes_of_run(id)
    );
    let host = netlab::netns_inode("self").unwrap();
    assert!(
        !seen.contains_key(&host),
        "a process of the run was in the host's namespace"
    );
    let clean = wait_for(Duration::from_secs(10), || {
        left_namespaces(&seen).is_empty()
    });
    assert!(
        clean,
        "namespaces of run {id} left (inode: pids keeping it): {:?}",
        left_namespaces(&seen)
    );
    assert_eq!(before, host_snapshot(), "the host's network changed");
}

/// The run record (`run.json`) of the run whose transcript is `stdout`.
fn record(stdout: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(stdout).unwrap();
    let dir = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Run ")?
                .split_once(" in ")
                .map(|(_, d)| d.to_owned())
        })
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(Path::new(&dir).join("run.json")).unwrap())
        .unwrap()
}

#[test]
fn crash1_partition_holds_in_a_lab_and_leaves_nothing() {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let host_ns = netlab::netns_inode("self").unwrap();
    let (mut r, id, ns) = start_ready(&[
        "3",
        "crash1",
        "partition",
        "--duration",
        "40s",
        "--keys",
        "A,B,C",
        "--input-bytes",
        "1000000",
    ]);
    // The lab and one namespace per worker, none of them the host's.
    assert!(ns.len() >= 4 && !ns.contains(&host_ns), "{ns:?}");
    let st = r.child.wait().unwrap();
    let out = transcript(&r);
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("{P:") && out.contains("{H}"), "{out}");
    assert!(out.contains("Duration reached with no violation"), "{out}");
    assert_nothing_left(&mut r, &id, &before);
}

/// A process the test starts, killed when dropped.
struct Kept(Child);

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The second "Done when" command, shortened:
/// `crasher 3 isolate one-way bridge flaky grow --network lab`. It holds;
/// network faults fire and are observed (every fed key's verified output
/// grew after each of them); workers join, each in a node of its own; and
/// nothing is left. The leftover check must see the namespace of a node
/// that `grow` made after the run was up: the test keeps one such
/// namespace alive with a process of its own (not the run's), checks that
/// it is reported, then lets it go.
#[test]
fn isolate_one_way_bridge_flaky_grow_holds_in_a_lab_and_leaves_nothing() {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let (mut r, id, up) = start_ready(&[
        "3",
        "isolate",
        "one-way",
        "bridge",
        "flaky",
        "grow",
        "--duration",
        "40s",
        "--keys",
        "A,B,C",
        "--input-bytes",
        "1000000",
        // Each fault is one of the four kinds at random: in 40 s (about
        // five faults) one kind is often never drawn, which would make
        // the verdict unknown. Every kind observed is the 5-minute run's
        // bar (docs/benchmarks.md); here the faults are counted below.
        "--min-observed",
        "0",
        "--timing",
        "net_start=2,net_gap_min=1,net_gap_max=2,net_hold_min=2,net_hold_max=4",
    ]);
    assert!(up.len() >= 4, "the lab and three nodes: {up:?}");

    // A namespace first seen after the run was up: a node made by `grow`.
    let mut grown = None;
    let added = wait_for(Duration::from_secs(40), || {
        grown = r.watch.now().into_keys().find(|ino| !up.contains(ino));
        grown.is_some()
    });
    assert!(added, "no node was added:\n{}", transcript(&r));
    let grown = grown.unwrap();
    // Keep it with a process that is not the run's (no CRASHER_RUN_ID),
    // entered through a process of the run that is in it.
    let mut keeper: Option<Kept> = None;
    let kept = wait_for(Duration::from_secs(20), || {
        if let Some(k) = keeper.as_mut() {
            if netlab::netns_inode(&k.0.id().to_string()).is_ok_and(|i| i == grown) {
                return true;
            }
            if k.0.try_wait().unwrap().is_none() {
                return false;
            }
            // nsenter failed: the process it went through had gone.
        }
        let Some(s) = r.watch.now().get(&grown).copied() else {
            return false;
        };
        let child = Command::new(netlab::which("nsenter").unwrap())
            .arg(format!("--net=/proc/{}/ns/net", s.pid))
            .arg("--")
            .arg(netlab::which("sleep").unwrap())
            .arg("600")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        keeper = Some(Kept(child));
        false
    });
    assert!(kept, "cannot enter the grown node's namespace {grown}");
    let keeper = keeper.unwrap();

    let mut exited = None;
    wait_for(Duration::from_secs(120), || {
        exited = r.child.try_wait().unwrap();
        exited.is_some()
    });
    let out = transcript(&r);
    let st = exited.unwrap_or_else(|| panic!("the run did not end:\n{out}"));
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("Duration reached with no violation"), "{out}");

    let rec = record(&r.stdout);
    let cov = &rec["coverage"];
    let count = |kind: &str, what: &str| cov[kind][what].as_u64().unwrap_or(0);
    let kinds = ["isolate", "one-way", "bridge", "flaky"];
    let fired: u64 = kinds.iter().map(|k| count(k, "fired")).sum();
    let observed: u64 = kinds.iter().map(|k| count(k, "observed")).sum();
    assert!(
        fired >= 3,
        "network faults fired: {fired}, coverage {cov}\n{out}"
    );
    // The schedule is isolated: a fault fires only once the previous one
    // was observed (or its 30 s observe_timeout passed, longer than the
    // gaps here), so only the last fault can be unobserved for want of
    // time: it may still wait for new commits on every key when the
    // duration ends. Any other unobserved fault fails the test.
    assert!(
        observed + 1 >= fired,
        "{observed} of {fired} network faults observed: {cov}\n{out}"
    );
    assert!(count("join", "fired") >= 1, "no join: {cov}");
    // run.events has one event per fault, and a heal for each.
    let glyphs = common::fault_glyphs(&std::fs::read_to_string(&r.stdout).unwrap());
    let faults = glyphs
        .iter()
        .filter(|g| {
            ["{I:", "{O:", "{B:", "{F:"]
                .iter()
                .any(|p| g.starts_with(p))
        })
        .count() as u64;
    let heals = glyphs.iter().filter(|g| *g == "{H}").count() as u64;
    assert!(faults == fired && heals >= fired, "{glyphs:?}: {cov}");

    // The run is gone, but the grown node's namespace is kept: the check
    // reports it, kept by the keeper alone.
    let (gone, seen) = run_gone(&mut r, &id);
    assert!(
        gone,
        "processes of run {id} left: {:?}",
        procs::processes_of_run(&id)
    );
    assert!(seen.contains_key(&grown));
    let mut left = BTreeMap::new();
    wait_for(Duration::from_secs(10), || {
        left = left_namespaces(&seen);
        left.keys().eq([&grown])
    });
    let only_keeper = BTreeSet::from([keeper.0.id()]);
    assert_eq!(
        left,
        BTreeMap::from([(grown, only_keeper)]),
        "the check must report the grown node's kept namespace, and it alone"
    );
    drop(keeper);
    assert_nothing_left(&mut r, &id, &before);
}

#[test]
fn sigkill_of_crasher_mid_run_leaves_nothing() {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let (mut r, id, ns) = start_ready(&[
        "3",
        "partition",
        "isolate",
        "--duration",
        "5m",
        "--keys",
        "A,B",
        "--input-bytes",
        "1000000",
        "--timing",
        "net_start=0,net_gap_min=0.2,net_gap_max=0.5",
    ]);
    assert!(ns.len() >= 4, "{ns:?}");
    // The run's processes do not inherit the inner crasher's marker.
    for pid in procs::processes_of_run(&id) {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        assert!(!env.contains("CRASHER_NETLAB_INNER"), "pid {pid}");
    }
    // Kill it while a fault is in force.
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&r.stdout).is_ok_and(|s| s.contains("{P:") || s.contains("{I:"))
        }),
        "no network fault fired:\n{}",
        transcript(&r)
    );
    // `crasher status` shows the lab's network state.
    let st = crasher()
        .args(["status", "--json", "--runs"])
        .arg(r.stdout.with_file_name("runs"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let net = json["network"].as_str().unwrap_or_default();
    assert!(net.starts_with("lab: "), "{json}");
    r.child.kill().unwrap();
    r.child.wait().unwrap();
    assert_nothing_left(&mut r, &id, &before);
}

#[test]
fn network_faults_without_a_lab_are_usage_errors() {
    for word in ["partition", "isolate", "one-way", "bridge", "flaky"] {
        let out = crasher().args(["2", word]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{word}: {err}");
        assert!(err.contains("--network lab"), "{word}: {err}");
    }
}

/// The split-brain bug switch (`--inject commit-when-cut-off`): a member
/// cut off from its coordinator commits the lines it holds on its own.
/// A partition exposes it (duplicates once the coordinator rolls back)...
#[test]
fn split_brain_bug_is_caught_by_partition() {
    if !available() {
        return;
    }
    // The duplicates show only once the coordinator rolls back the
    // checkpoint the cut-off member committed alone, which it does when
    // that checkpoint times out (5 s at 1 s checkpoints). The default hold
    // of 2-6 s outlasts it in about one partition in five, so a 45 s run
    // missed the bug now and then (seen in CI); every hold here does.
    let (mut r, id, _) = start_ready(&[
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
    ]);
    let st = r.child.wait().unwrap();
    let out = transcript(&r);
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(out.contains("VIOLATION (sanity)"), "{out}");
    assert_nothing_left(&mut r, &id, &host_snapshot());
}

/// ... while crash-only runs of the same length hold: a crash closes the
/// coordinator's link, so the bug never acts.
#[test]
fn split_brain_bug_survives_crash_only_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = crasher()
        .args([
            "3",
            "crash0",
            "crash1",
            "--inject",
            "commit-when-cut-off",
            "--duration",
            "45s",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "1000000",
            "--on-failure",
            "kill",
            "--runs",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Duration reached with no violation"),
        "{stdout}"
    );
}

/// Without the privileges to make namespaces, `--network lab` is an
/// environment error (exit 2) that says what is missing.
#[test]
fn a_lab_without_privileges_is_exit_2_naming_what_is_missing() {
    if !available() {
        return;
    }
    // The same binary as an unprivileged user (nobody).
    let out = Command::new(netlab::which("setpriv").unwrap())
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_crasher"))
        .args(["2", "partition", "--network", "lab"])
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("failed to execute") {
        eprintln!("skipped: nobody cannot run the test binary here: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--network lab is not available") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

/// Sends `sig` to crasher in a lab run that is up: the outer crasher
/// forwards it into the lab and the run tears down as usual (verdict
/// unknown, exit 3, a final run record) and leaves nothing.
fn signal_is_forwarded_and_leaves_nothing(sig: Signal) {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let (mut r, id, _) = start_ready(&[
        "2",
        "flaky",
        "--duration",
        "5m",
        "--keys",
        "A",
        "--input-bytes",
        "1000000",
    ]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.child.id() as i32), sig).unwrap();
    let mut exited = None;
    wait_for(Duration::from_secs(60), || {
        exited = r.child.try_wait().unwrap();
        exited.is_some()
    });
    let out = transcript(&r);
    let st = exited.unwrap_or_else(|| panic!("{sig} did not end the run:\n{out}"));
    assert_eq!(st.code(), Some(3), "{sig}: {out}");
    assert!(out.contains("Interrupted"), "{sig}: {out}");
    let rec = record(&r.stdout);
    assert_eq!(rec["verdict"], "unknown", "{sig}: {rec}");
    assert_eq!(rec["exit_code"], 3, "{sig}: {rec}");
    assert_nothing_left(&mut r, &id, &before);
}

/// SIGTERM to crasher is forwarded into the lab.
#[test]
fn sigterm_is_forwarded_into_the_lab_and_leaves_nothing() {
    signal_is_forwarded_and_leaves_nothing(Signal::SIGTERM);
}

/// Ctrl-C (SIGINT) to crasher is forwarded into the lab.
#[test]
fn sigint_is_forwarded_into_the_lab_and_leaves_nothing() {
    signal_is_forwarded_and_leaves_nothing(Signal::SIGINT);
}

/// SIGQUIT (Ctrl-\\) to crasher is forwarded into the lab; the run record
/// is final, not left `running`.
#[test]
fn sigquit_is_forwarded_into_the_lab_and_leaves_nothing() {
    signal_is_forwarded_and_leaves_nothing(Signal::SIGQUIT);
}

/// SIGUSR1 ends a plain crasher (its default action); in a lab run it is
/// forwarded too, as SIGTERM while the inner crasher has no handler for it
/// (as PID 1 of its namespace it would never see it), so the run still
/// tears down and leaves nothing.
#[test]
fn sigusr1_is_forwarded_into_the_lab_and_leaves_nothing() {
    signal_is_forwarded_and_leaves_nothing(Signal::SIGUSR1);
}

/// `[network] mode = "lab"` in a profile puts the run in a lab without
/// `--network` (and so allows network fault words).
#[test]
fn a_profile_can_put_a_run_in_a_lab() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("lab.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../env/passthrough.toml"
    ))
    .unwrap();
    std::fs::write(&profile, format!("{text}\n[network]\nmode = \"lab\"\n")).unwrap();
    let out = crasher()
        .args(["2", "flaky", "--env"])
        .arg(&profile)
        .args([
            "--duration",
            "12s",
            "--keys",
            "A",
            "--input-bytes",
            "200000",
            "--on-failure",
            "kill",
            "--timing",
            "net_start=1,net_gap_min=0.5,net_gap_max=1,net_flaky_percent=10",
            "--runs",
        ])
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Network: lab"), "{all}");
    if out.status.code() == Some(3) && stdout.contains("did not become ready") {
        // The rare start-up hang of the reference cluster (findings.md):
        // the lab was built, which is what this test is about.
        eprintln!("the cluster never became ready at start-up:\n{all}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(stdout.contains("{F:"), "{all}");
}
