//! A full disk is an environment error of the machine the run is on, never
//! a finding about the system under test.
//!
//! When a disk fills suddenly (faster than the sanity loop's free-space
//! check notices), the first symptom is usually a process that dies with
//! ENOSPC, and the death monitor would report it as a violation. Every
//! outcome therefore passes through [`reclassify`]: a violation whose
//! diagnosis is an ENOSPC, or any violation but a safety one decided while
//! the run directory's file system is (nearly) full, becomes an
//! environment error (exit 2) labelled by whose writes failed (a safety
//! violation on a full disk stays one, with a note):
//!
//! - `DISK FULL (harness)`: crasher's own side (its sink, feeders, run
//!   record) could not write: the verdict is about the machine, not the
//!   system under test.
//! - `DISK FULL (system under test)`: a worker of the system under test
//!   died while the disk holding its own state was full: the system ran out
//!   of disk for its own state, which says nothing about its data
//!   guarantees either way.
//!
//! [`Reserve`] keeps a little space back so the final `run.json` can still
//! be written on a full disk (it is released just before that write).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::harness::Outcome;

/// Below this many free bytes a file system counts as full here (the
/// sanity loop stops the run earlier, at 64 MiB: this catches what
/// happened between two of its rounds).
pub const FULL_BELOW: u64 = 4 * 1024 * 1024;

/// Bytes kept back for the final run record.
pub const RESERVE_BYTES: usize = 1024 * 1024;

/// Name of the reserve file in the run directory.
pub const RESERVE_FILE: &str = ".disk-reserve";

/// Free bytes (for an unprivileged user) on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Whether `text` is an ENOSPC error as Rust and C programs print it.
pub fn says_enospc(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("os error 28")
}

/// The outcome to report instead of `outcome` if the disk holding
/// `run_dir` is full (see the module doc); other outcomes pass unchanged.
pub fn reclassify(run_dir: &Path, outcome: Outcome) -> Outcome {
    reclassify_with_free(run_dir, free_bytes(run_dir), outcome)
}

/// [`reclassify`] with the free space given. A safety violation (the
/// sanity check: data lost, duplicated, reordered or corrupted) whose
/// diagnosis is not itself an ENOSPC stays a violation on a full disk: the
/// sink fsyncs before it commits and dies when it cannot write, so a full
/// disk leaves committed output short, never wrong, and a real finding
/// must not be hidden by a coincidence. It gets a note about the disk.
fn reclassify_with_free(run_dir: &Path, free: Option<u64>, outcome: Outcome) -> Outcome {
    let Outcome::Violation { check, diagnosis } = &outcome else {
        return outcome;
    };
    let full = free.is_some_and(|f| f < FULL_BELOW);
    let enospc = says_enospc(diagnosis);
    if !full && !enospc {
        return outcome;
    }
    let free = match free {
        Some(f) => format!("{f} bytes free"),
        None => "free space unknown".to_owned(),
    };
    if !enospc && check == "sanity" {
        return Outcome::Violation {
            check: check.clone(),
            diagnosis: format!(
                "{diagnosis}\n(note: the file system holding {} had {free} when this was \
                 decided; a full disk can leave committed output short, not wrong, so this \
                 stays a violation)",
                run_dir.display()
            ),
        };
    }
    let first_line = diagnosis.lines().next().unwrap_or_default();
    let who = first_line.split_whitespace().next().unwrap_or_default();
    let sut = check == "process-death" && who != "sink";
    let label = if sut {
        format!(
            "DISK FULL (system under test): {who} ran out of disk for its own state \
             (the file system holding {} has {free}); the run says nothing about its data \
             guarantees",
            run_dir.display()
        )
    } else {
        format!(
            "DISK FULL (harness): the file system holding {} has {free}, so crasher's own \
             side could not write; this is the machine, not a finding about the system under test",
            run_dir.display()
        )
    };
    Outcome::Environment(format!("{label}. What was seen ({check}): {first_line}"))
}

/// Space held back in the run directory for the final run record.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    /// Writes `RESERVE_BYTES` into `run_dir/.disk-reserve` (best effort:
    /// `None` if the disk is already too full for it).
    pub fn take(run_dir: &Path) -> Option<Reserve> {
        let path = run_dir.join(RESERVE_FILE);
        let ok = std::fs::File::create(&path).and_then(|mut f| {
            f.write_all(&vec![0u8; RESERVE_BYTES])
                .and_then(|()| f.sync_all())
        });
        if ok.is_err() {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(Reserve { path })
    }

    /// Gives the space back.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_with_enospc_is_an_environment_error_labelled_by_whose_write_failed() {
        let t = tempfile::tempdir().unwrap();
        let sink = reclassify(
            t.path(),
            Outcome::Violation {
                check: "process-death".into(),
                diagnosis: "sink died by itself: exit 2; last log lines of x:\n\
                    FATAL cannot write out: No space left on device (os error 28)"
                    .into(),
            },
        );
        let Outcome::Environment(s) = sink else {
            panic!("{sink:?}")
        };
        assert!(s.starts_with("DISK FULL (harness)"), "{s}");
        let w = reclassify(
            t.path(),
            Outcome::Violation {
                check: "process-death".into(),
                diagnosis: "worker1 died by itself: No space left on device".into(),
            },
        );
        let Outcome::Environment(w) = w else {
            panic!("{w:?}")
        };
        assert!(
            w.starts_with("DISK FULL (system under test): worker1"),
            "{w}"
        );
        // With free space and no ENOSPC, a violation stays one.
        let v = Outcome::Violation {
            check: "sanity".into(),
            diagnosis: "SANITY2: key A".into(),
        };
        assert_eq!(reclassify(t.path(), v.clone()), v);
    }

    #[test]
    fn on_a_full_disk_only_a_safety_violation_without_enospc_stays_a_violation() {
        let t = tempfile::tempdir().unwrap();
        let full = Some(4096);
        let death = Outcome::Violation {
            check: "process-death".into(),
            diagnosis: "worker1 died by itself: exit 1".into(),
        };
        let Outcome::Environment(e) = reclassify_with_free(t.path(), full, death) else {
            panic!("a death on a full disk is the disk's")
        };
        assert!(e.contains("4096 bytes free"), "{e}");
        let lost = Outcome::Violation {
            check: "sanity".into(),
            diagnosis: "SANITY2: key A: lost bytes 10..20".into(),
        };
        let Outcome::Violation { check, diagnosis } = reclassify_with_free(t.path(), full, lost)
        else {
            panic!("a wrong byte is a finding even on a full disk")
        };
        assert_eq!(check, "sanity");
        assert!(diagnosis.starts_with("SANITY2: key A: lost bytes 10..20\n(note: "));
        assert!(diagnosis.contains("4096 bytes free"), "{diagnosis}");
        let enospc = Outcome::Violation {
            check: "sanity".into(),
            diagnosis: "verification failed: No space left on device (os error 28)".into(),
        };
        assert!(matches!(
            reclassify_with_free(t.path(), full, enospc),
            Outcome::Environment(_)
        ));
    }
}
