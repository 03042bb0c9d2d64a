//! Soaks of the reference cluster checked in the work-queue mode
//! (`verify_mode = "work-queue"`): its output is an exact prefix of each
//! input, a special case of "every line once, in any order", so it must
//! hold there too; and the mode still catches the injected loss and
//! duplication.

mod common;

use std::path::{Path, PathBuf};

/// A copy of env/passthrough.toml with `verify_mode = "work-queue"`.
fn work_queue_profile(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../env/passthrough.toml"),
    )
    .unwrap();
    let profile = dir.join("passthrough-work-queue.toml");
    std::fs::write(&profile, format!("verify_mode = \"work-queue\"\n{text}")).unwrap();
    profile
}

/// Runs `crasher 2 crash1` on keys A and B (200,000 source bytes each) in
/// work-queue mode with `extra` arguments; returns exit code, stdout (and
/// stderr) and the glyphs of its events ([`common::fault_glyphs`]).
fn soak(extra: &[&str]) -> (i32, String, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let profile = work_queue_profile(t.path());
    let mut args = vec![
        "2",
        "crash1",
        "--env",
        profile.to_str().unwrap(),
        "--keys",
        "A,B",
        "--input-bytes",
        "200000",
        "--rate",
        "100000",
    ];
    args.extend(extra);
    let (out, stdout, _) = common::soak(&t.path().join("runs"), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Read before the temporary runs folder goes.
    let glyphs = common::fault_glyphs(&stdout);
    let code = out.status.code().unwrap_or(-1);
    (code, format!("{stdout}\n{stderr}"), glyphs)
}

#[test]
fn the_reference_cluster_holds_in_work_queue_mode_under_crashes() {
    let (code, out, g) = soak(&["--timing", "crash_worker_start=1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SANITY LOOP SUCCESS: EOF found!"), "{out}");
    assert!(
        out.contains(
            "Verify mode: work-queue (every input line exactly once, in any order; a line is \
             missing once a later line of its key has been committed for more than 60s \
             (work_queue_missing_grace))"
        ),
        "{out}"
    );
    assert!(common::saw(&g, "c1"), "no crash of worker 1 seen:\n{out}");
}

#[test]
fn a_dropped_line_is_reported_missing_once_the_grace_has_passed() {
    let (code, out, _) = soak(&[
        "--timing",
        "crash_worker_start=1,work_queue_missing_grace=3",
        "--inject",
        "drop-after-recovery",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VIOLATION (sanity): SANITY2: key "), "{out}");
    assert!(out.contains(": missing (input line "), "{out}");
    assert!(
        out.contains(
            "missing: 1 input line(s) not committed although a later input line was committed \
             more than 3s before:"
        ),
        "{out}"
    );
}

#[test]
fn a_duplicated_line_is_a_duplicate_naming_the_sink_file() {
    let (code, out, _) = soak(&[
        "--timing",
        "crash_worker_start=1",
        "--inject",
        "duplicate-on-replay",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VIOLATION (sanity): SANITY2: key "), "{out}");
    assert!(out.contains(": duplicate (input line "), "{out}");
    assert!(out.contains("/sink/output."), "{out}");
}
