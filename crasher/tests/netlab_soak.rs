//! Soaks in a lab network (`--network lab`): they hold under network
//! faults, and leave nothing behind — no process of the run, no network
//! namespace it made, and the host's interfaces, routes and nftables
//! ruleset exactly as before — even when crasher is SIGKILLed mid-run.
//!
//! Need root, iproute2, nftables and util-linux: without them each test
//! says it is skipped (in CI they must run: `.ci/install-deps` installs
//! nftables).

mod common;

use common::crasher;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Network namespaces the run's processes are in (the lab and the nodes).
fn run_namespaces(id: &str) -> BTreeSet<u64> {
    procs::processes_of_run(id)
        .into_iter()
        .filter_map(|p| netlab::netns_inode(&p.to_string()).ok())
        .collect()
}

struct Run {
    child: Child,
    stdout: std::path::PathBuf,
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
/// namespaces its processes are in.
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
    let id = id.unwrap();
    let ns = run_namespaces(&id);
    (id, ns)
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

/// Asserts that nothing of run `id` is left: no process, none of the
/// namespaces `ns`, and the host's network as `before`.
fn assert_nothing_left(id: &str, ns: &BTreeSet<u64>, before: &str) {
    let gone = wait_for(Duration::from_secs(10), || {
        procs::processes_of_run(id).is_empty() && netlab::all_netns_inodes().is_disjoint(ns)
    });
    assert!(
        gone,
        "left behind: processes {:?}, namespaces {:?}",
        procs::processes_of_run(id),
        netlab::all_netns_inodes()
            .intersection(ns)
            .collect::<Vec<_>>()
    );
    assert_eq!(before, host_snapshot(), "the host's network changed");
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
    assert_nothing_left(&id, &ns, &before);
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
    assert_nothing_left(&id, &ns, &before);
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
    let (mut r, id, ns) = start_ready(&[
        "3",
        "partition",
        "--inject",
        "commit-when-cut-off",
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
    assert_nothing_left(&id, &ns, &host_snapshot());
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

/// SIGTERM to crasher is forwarded into the lab: the run tears down as
/// usual (verdict unknown, exit 3) and leaves nothing.
#[test]
fn sigterm_is_forwarded_into_the_lab_and_leaves_nothing() {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let (mut r, id, ns) = start_ready(&[
        "2",
        "flaky",
        "--duration",
        "5m",
        "--keys",
        "A",
        "--input-bytes",
        "1000000",
    ]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = r.child.wait().unwrap();
    let out = transcript(&r);
    assert_eq!(st.code(), Some(3), "{out}");
    assert!(out.contains("Interrupted"), "{out}");
    assert_nothing_left(&id, &ns, &before);
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
