//! A disk that fills suddenly mid-run is an environment error (exit 2)
//! with the reason, never a violation; `run.json` gets its final verdict
//! and no temporary file is left (issue 12, item 3).
//!
//! The test mounts a small tmpfs of its own for the runs folder (it needs
//! root; without it the test says so and passes vacuously) and unmounts it
//! in a drop guard.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: PathBuf,
    _t: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir, _t: t })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmp_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            tmp_files(&p, found);
        } else if e.file_name().to_string_lossy().contains(".tmp") {
            found.push(p);
        }
    }
}

#[test]
fn a_disk_that_fills_mid_run_is_an_environment_error() {
    fill_mid_run(&[]);
}

/// The sanity loop's free-space check runs only every 30 s here, so the
/// first to notice the full disk is the sink dying of ENOSPC: the death
/// monitor's report must still not be a violation.
#[test]
fn a_sink_killed_by_a_full_disk_is_not_a_violation() {
    let stdout = fill_mid_run(&["--timing", "sanity_period=30"]);
    // Usually a process dies of the full disk first (the sink or, as the
    // sink's writes land in the page it already has, a worker): labelled
    // DISK FULL. Rarely nothing dies before the next sanity round, whose
    // free-space check stops the run: exit 2 as well.
    assert!(
        stdout.contains("DISK FULL (") || stdout.contains("MiB free"),
        "{stdout}"
    );
}

fn fill_mid_run(extra: &[&str]) -> String {
    let Some(fs) = Tmpfs::mount("96m") else {
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return "DISK FULL (harness) (skipped)".into();
    };
    let runs = fs.dir.join("runs");
    let out = fs.dir.join("../soak.out");
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    for v in [
        "CRASHER_ENV",
        "CRASHER_RUN_DIR",
        "CRASHER_KEYS",
        "CRASHER_SEED",
    ] {
        c.env_remove(v);
    }
    let child = c
        .env("CRASHER_LOG", "warn")
        .args([
            "1",
            "--keys",
            "A,B",
            "--input-bytes",
            "400000",
            "--rate",
            "20000",
        ])
        .args(["--duration", "60s", "--on-failure", "kill", "--runs"])
        .arg(&runs)
        .args(extra)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    while !text().contains("Done, yay") {
        assert!(Instant::now() < deadline, "never started:\n{}", text());
        assert!(child.0.try_wait().unwrap().is_none(), "ended:\n{}", text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Once the sink is writing output, fill the disk at once.
    let sink_dir = std::fs::canonicalize(runs.join("current"))
        .unwrap()
        .join("sink");
    let writing = || {
        std::fs::read_dir(&sink_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    };
    while !writing() {
        assert!(Instant::now() < deadline, "no sink output:\n{}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut filler = std::fs::File::create(fs.dir.join("filler")).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    while filler.write_all(&chunk).is_ok() {}
    while filler.write_all(&chunk[..4096]).is_ok() {}
    // A little room back, as a disk filled by someone else has: the run's
    // processes use it up themselves.
    let len = filler.metadata().unwrap().len();
    filler.set_len(len - 512 * 1024).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not end:\n{}", text());
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = text();
    eprintln!("{stdout}");
    assert_eq!(status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("DISK FULL") || stdout.contains("MiB free"),
        "{stdout}"
    );
    assert!(!stdout.contains("VIOLATION"), "{stdout}");
    let record = std::fs::read_to_string(runs.join("current/run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["verdict"], "environment error", "{record}");
    let mut tmp = Vec::new();
    tmp_files(&fs.dir, &mut tmp);
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    stdout
}
