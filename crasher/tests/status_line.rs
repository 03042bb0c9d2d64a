//! The live status line (issue 18): in a real terminal (a tmux pane) a
//! soak shows a status line at the bottom that changes every second while
//! the glyphs keep growing above it; piped output has no escape codes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_id, soak};

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(size: (u16, u16), command: &str) -> Tmux {
        let socket = format!("crasher-status-test-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &size.0.to_string(), "-y", &size.1.to_string()])
            .arg(command)
            .status()
            .unwrap();
        assert!(ok.success(), "tmux new-session failed");
        Tmux { socket }
    }

    /// The pane's visible text, trailing empty lines dropped.
    fn capture(&self) -> Vec<String> {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Polls the pane until `cond` holds on it (or the deadline passes).
    fn wait_for(&self, what: &str, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.capture();
            if cond(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never seen; the pane:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn is_status(line: &str) -> bool {
    line.contains(" | faults ") && line.contains(" | members ")
}

/// Glyph characters on the glyph lines after `Done, yay`.
fn glyph_count(lines: &[String]) -> usize {
    lines
        .iter()
        .skip_while(|l| !l.starts_with("Done, yay"))
        .skip(1)
        .filter(|l| !is_status(l))
        .map(|l| l.trim().len())
        .sum()
}

#[test]
fn a_soak_in_a_terminal_shows_a_live_status_line_under_the_glyphs() {
    if !Tmux::available() {
        assert!(
            std::env::var("CI").is_err(),
            "tmux is required in CI (.ci/install-deps installs it)"
        );
        eprintln!("skipped: no tmux");
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let command = format!(
        "CRASHER_LOG=warn {} 2 crash1 --duration 40s --keys A,B --input-bytes 2000000 \
         --rate 20000 --on-failure kill --runs {}; sleep 60",
        env!("CARGO_BIN_EXE_crasher"),
        runs.path().display()
    );
    let tmux = Tmux::start((160, 24), &command);
    let first = tmux.wait_for("the status line", |l| {
        l.iter().any(|l| l.starts_with("Done, yay")) && l.last().is_some_and(|l| is_status(l))
    });
    let id = first
        .iter()
        .find_map(|l| run_id(l))
        .expect("the run id line");
    let status1 = first.last().unwrap().clone();
    assert!(
        status1.contains(" of 40s ("),
        "no elapsed/remaining: {status1}"
    );
    assert!(status1.contains("verified "), "no progress: {status1}");
    // A second look: the line has changed (time moves at least once a
    // second), it is still the bottom line, and the glyphs above it grew.
    let second = tmux.wait_for("a changed status line", |l| {
        l.last().is_some_and(|s| is_status(s) && *s != status1)
            && glyph_count(l) > glyph_count(&first)
    });
    let status2 = second.last().unwrap();
    assert_ne!(&status1, status2);
    assert_eq!(
        second.iter().filter(|l| is_status(l)).count(),
        1,
        "one status line only:\n{}",
        second.join("\n")
    );
    // Closing the terminal (SIGHUP) tears the run down like Ctrl-C.
    drop(tmux);
    assert!(
        procs::wait_until(Instant::now() + Duration::from_secs(10), || {
            procs::processes_of_run(&id).is_empty()
        }),
        "processes of run {id} survived the closed terminal"
    );
}

#[test]
fn piped_output_has_no_escape_codes_and_no_status_line() {
    let runs = tempfile::tempdir().unwrap();
    let (out, stdout, _) = soak(
        runs.path(),
        &[
            "2",
            "crash1",
            "--duration",
            "6s",
            "--timing",
            "crash_worker_start=0.5",
            // What matters here is the output, not whether the crash's
            // effect was seen in 6 s on a loaded machine.
            "--min-observed",
            "0",
            "--keys",
            "A",
            "--input-bytes",
            "400000",
            "--rate",
            "20000",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "escape codes in piped output:\n{stdout}"
    );
    assert!(
        !stdout.lines().any(is_status),
        "a status line in piped output:\n{stdout}"
    );
}
