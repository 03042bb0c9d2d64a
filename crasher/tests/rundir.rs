//! A run directory holds one run: reusing one that holds a finished run,
//! or sharing one with a live run, is refused (exit 2) instead of mixing
//! two runs' output into one verdict (issue 12, items 1, 2, 11 and 14).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn crasher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crasher"));
    for var in [
        "CRASHER_ENV",
        "CRASHER_KEYS",
        "CRASHER_INPUT_BYTES",
        "CRASHER_RATE",
        "CRASHER_SEED",
        "CRASHER_INJECT",
        "CRASHER_RUN_DIR",
        "CRASHER_RUNS",
    ] {
        c.env_remove(var);
    }
    c.env("CRASHER_LOG", "warn");
    c
}

/// A tiny soak that reaches EOF success in a few seconds.
fn tiny_soak(runs: &Path, dir: &Path, extra: &[&str]) -> Command {
    soak_at_rate(runs, dir, "0", extra)
}

fn soak_at_rate(runs: &Path, dir: &Path, rate: &str, extra: &[&str]) -> Command {
    let mut c = crasher();
    c.args(["1", "--keys", "A", "--input-bytes", "2000", "--rate", rate])
        .args(["--on-failure", "kill", "--duration", "60s", "--runs"])
        .arg(runs)
        .arg("--run-dir")
        .arg(dir)
        .args(extra);
    c
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_run_dir_holding_a_finished_run_is_refused_until_forced_or_reset() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    let first = tiny_soak(t.path(), &d, &[]).output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));

    // Reuse: refused at once, naming the directory and the ways to reuse it.
    let again = tiny_soak(t.path(), &d, &["--seed", "7"]).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    assert!(err.contains(&d.display().to_string()), "{err}");
    assert!(
        err.contains("--force") && err.contains("crasher reset"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("SANITY"),
        "{}",
        show(&again)
    );

    // --force clears it: a real run (another seed) that holds on its own.
    let forced = tiny_soak(t.path(), &d, &["--seed", "7", "--force"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", show(&forced));

    // `crasher reset` clears it too.
    let reset = crasher()
        .arg("reset")
        .arg("--run-dir")
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", show(&reset));
    let after = tiny_soak(t.path(), &d, &[]).output().unwrap();
    assert_eq!(after.status.code(), Some(0), "{}", show(&after));
}

#[test]
fn a_second_soak_on_a_live_run_dir_exits_2_naming_the_holder() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    let log = t.path().join("first.out");
    let mut first = soak_at_rate(t.path(), &d, "100", &[])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Done, yay")
    {
        assert!(Instant::now() < deadline, "the first soak never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    let second = tiny_soak(t.path(), &d, &[]).output().unwrap();
    let took = start.elapsed();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let st = first.wait().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", show(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&d.display().to_string()), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The first run was not disturbed: it ended by the SIGTERM, verdict unknown.
    assert_eq!(st.code(), Some(3));
}

#[test]
fn a_run_dir_under_a_regular_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("file"), "").unwrap();
    let d = t.path().join("file/run");
    let o = tiny_soak(t.path(), &d, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(err.contains(&d.display().to_string()), "{err}");
    // The OS error is said once.
    assert_eq!(err.matches("os error 20").count(), 1, "{err}");
}

#[test]
fn reset_counts_each_stopped_process_once() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        crasher()
            .env("CRASHER_RUNS", t.path())
            .args(args)
            .output()
            .unwrap()
    };
    for _ in 0..3 {
        for step in [
            &["start-sink", "--input-bytes", "2000", "--keys", "A"][..],
            &["start-initializer", "-n", "1"],
            &["start-feeder", "A"],
        ] {
            let o = run(step);
            assert_eq!(o.status.code(), Some(0), "{step:?}: {}", show(&o));
        }
        let o = run(&["reset"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Stopped 3 process(es)"), "{out}");
    }
}
