//! Soaks with lossy disks (`--disk lossy`, docs/disk.md): the reference
//! cluster holds under power losses, `--inject skip-fsync` is caught by
//! `power-loss` but not by plain crashes, corruption is reported, and no
//! lossyfs mount or process outlives a run.
//!
//! These need /dev/fuse and fusermount3 (root); they are skipped, with the
//! reason printed, only when /dev/fuse is absent.

mod common;

use common::saw;
use std::path::Path;
use std::process::{Command, Output};

fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    c.env_remove("CRASHER_ENV")
        .env_remove("CRASHER_DISK")
        .env("CRASHER_LOG", "warn");
    c
}

fn fuse() -> bool {
    let ok = Path::new("/dev/fuse").exists();
    if !ok {
        eprintln!("SKIPPED: /dev/fuse is absent: this machine cannot mount FUSE file systems");
    }
    ok
}

/// Runs a soak in a fresh runs folder; checks that no process of the run
/// and no mount under the folder is left; returns the exit code, stdout and
/// the glyphs of the run's events.
fn soak(args: &[&str]) -> (i32, String, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let runs = t.path().canonicalize().unwrap();
    let out: Output = crasher()
        .args(args)
        .arg("--runs")
        .arg(&runs)
        .args([
            "--on-failure",
            "kill",
            "--keys",
            "A,B,C",
            "--input-bytes",
            "400000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(id) = stdout.lines().find_map(|l| {
        l.strip_prefix("Run ")?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    }) {
        let left = procs::processes_of_run(&id);
        assert!(left.is_empty(), "processes of run {id} survived: {left:?}");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let runs_s = runs.display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&runs_s)).collect();
    assert!(left.is_empty(), "mounts survived the run: {left:?}");
    let glyphs = common::fault_glyphs(&stdout);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr:\n{stderr}"),
        glyphs,
    )
}

#[test]
fn power_loss_without_lossy_disks_is_a_usage_error() {
    for word in ["power-loss", "power-loss-all"] {
        let out = crasher().args(["3", word]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--disk lossy"), "{err}");
    }
}

#[test]
fn the_reference_cluster_holds_under_power_loss_and_power_loss_all() {
    if !fuse() {
        return;
    }
    let (code, out, g) = soak(&[
        "3",
        "power-loss",
        "power-loss-all",
        "--disk",
        "lossy",
        "--seed",
        "2",
        "--duration",
        "45s",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(saw(&g, "PLA") && saw(&g, "rA"), "{out}");
    assert!(out.contains("un-synced writes dropped"), "{out}");
}

#[test]
fn skip_fsync_is_caught_by_power_loss() {
    if !fuse() {
        return;
    }
    // Any worker's power loss exposes it: the initializer's
    // coordinator.json holds the commit decisions, every worker's sink.json
    // its resume offset.
    let (code, out, _) = soak(&[
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
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("PL"), "{out}");
    assert!(out.contains("VIOLATION"), "{out}");
}

#[test]
fn skip_fsync_is_not_caught_by_plain_crashes() {
    // The same bug and length, with SIGKILLs of the initializer on plain
    // disks: the page cache keeps what was not fsynced.
    let (code, out, g) = soak(&[
        "3",
        "crash0",
        "--inject",
        "skip-fsync",
        "--seed",
        "5",
        "--duration",
        "40s",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(saw(&g, "c0"), "{out}");
}

#[test]
fn corrupting_the_coordinator_state_is_reported() {
    if !fuse() {
        return;
    }
    // passthrough keeps its commit decisions in one unreplicated file: a
    // flipped bit in it stops the node from starting, and crasher says so.
    let (code, out, _) = soak(&[
        "3",
        "corrupt",
        "--disk",
        "lossy",
        "--seed",
        "1",
        "--duration",
        "40s",
        "--timing",
        "corrupt_gap_min=1,corrupt_gap_max=3",
    ]);
    assert!(
        out.contains("corrupt: ") && out.contains("flipped"),
        "{out}"
    );
    // Either the node cannot parse its state (VIOLATION (corrupt)), or the
    // flip still parses and changes a committed position (a duplicate or a
    // loss: VIOLATION (sanity)), or it hit a byte that does not matter.
    assert!(code == 0 || code == 1, "{out}");
    if code == 1 {
        assert!(out.contains("VIOLATION ("), "{out}");
    }
    eprintln!("{out}");
}

fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

fn mounted(p: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/mounts").unwrap();
    let p = p.display().to_string();
    text.lines()
        .any(|l| l.split(' ').nth(1) == Some(p.as_str()))
}

#[test]
fn the_lossyfs_process_loses_on_command_and_unmounts_on_sigterm_and_parent_death() {
    if !fuse() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let mnt = root.join("mnt");
    // Started by a shell that is then killed: the lossyfs outlives its
    // parent only until it notices.
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} lossyfs {} --dir {} 2>{} & wait",
            env!("CARGO_BIN_EXE_crasher"),
            mnt.display(),
            root.join("work").display(),
            root.join("lossyfs.log").display()
        ))
        .spawn()
        .unwrap();
    let sock = root.join("work/control.sock");
    assert!(
        wait_until(std::time::Duration::from_secs(10), || mounted(&mnt)
            && sock.exists()),
        "not mounted"
    );
    std::fs::write(mnt.join("unsynced"), "x").unwrap();
    let f = std::fs::File::create(mnt.join("synced")).unwrap();
    f.sync_all().unwrap();
    std::fs::File::open(&mnt).unwrap().sync_all().unwrap();
    drop(f);
    std::fs::write(mnt.join("late"), "y").unwrap();
    let out = crasher()
        .args(["lossyfs", "--lose"])
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // `unsynced` was created before the folder fsync: its name survives,
    // empty; `late` was created after it: gone.
    assert_eq!(names, ["synced", "unsynced"]);
    assert_eq!(std::fs::read(mnt.join("unsynced")).unwrap(), b"");
    sh.kill().unwrap();
    sh.wait().unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || !mounted(&mnt)),
        "still mounted after its parent died"
    );
    let log = std::fs::read_to_string(root.join("lossyfs.log")).unwrap();
    assert!(log.contains("SIGTERM: unmounting"), "{log}");
    // Not mounted: the client says so (exit 2).
    let out = crasher()
        .args(["lossyfs", "--lose"])
        .arg(&mnt)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_during_a_lossy_run_leaves_no_mount_and_no_process() {
    if !fuse() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let runs = t.path().canonicalize().unwrap();
    let log = runs.join("out");
    let child = crasher()
        .args([
            "3",
            "power-loss",
            "--disk",
            "lossy",
            "--keys",
            "A",
            "--input-bytes",
            "400000",
            "--on-failure",
            "kill",
            "--runs",
        ])
        .arg(&runs)
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let runs_s = runs.display().to_string();
    let count_mounts = || {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&runs_s))
            .count()
    };
    assert!(
        wait_until(std::time::Duration::from_secs(60), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Done, yay")
        }),
        "never started: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(count_mounts(), 3, "one mount per node");
    let text = std::fs::read_to_string(&log).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_whitespace().next())
        .unwrap()
        .to_owned();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            procs::processes_of_run(&id).is_empty()
        }),
        "processes of run {id} survived"
    );
    assert_eq!(count_mounts(), 0, "mounts survived Ctrl-C");
}
