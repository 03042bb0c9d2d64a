//! State shared by every loop of a soak: the cluster, the output, the
//! crash gate, the seeded random sources, and the one outcome of the run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;

use super::glyphs::Glyphs;
use super::schedule::Schedule;
use super::timings::Timings;
use crate::run::cluster::Cluster;

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every key's input was committed and acked.
    Success(String),
    /// The duration ran out with no violation.
    DurationReached,
    /// A check failed. Liveness checks (the cluster made no progress
    /// although crasher left it alone) are named `liveness: STEP`; every
    /// other check is about what the cluster did (lost, duplicated,
    /// reordered data; a process that died by itself).
    Violation {
        /// Which check (`sanity`, `liveness: join`, `process-death`...).
        check: String,
        /// What it saw.
        diagnosis: String,
    },
    /// Nothing could be concluded.
    Unknown(String),
    /// The environment failed (disk full, missing program...).
    Environment(String),
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted,
}

/// What to do at a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum OnFailure {
    /// SIGSTOP every process and wait for a person (the original's behaviour).
    Pause,
    /// Tear everything down and exit 1 (for CI and scripts).
    Kill,
}

/// Counters of faults actually injected, so a run whose requested faults
/// never fired is not reported as a pass.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sink crashes.
    pub sink_crashes: AtomicU64,
    /// Worker crashes.
    pub worker_crashes: AtomicU64,
    /// Feeder crashes.
    pub feeder_crashes: AtomicU64,
    /// Joins.
    pub joins: AtomicU64,
    /// Shrinks.
    pub shrinks: AtomicU64,
    /// Pauses.
    pub pauses: AtomicU64,
    /// Disk faults (power losses, corruptions, truncations).
    pub disk_faults: AtomicU64,
    /// Network faults (partition, isolate, one-way, bridge, flaky).
    pub net_faults: AtomicU64,
}

/// Everything the loops share.
pub struct Harness {
    cluster: Mutex<Cluster>,
    /// Glyphs, messages and the timeline.
    pub out: Glyphs,
    /// Loop timings.
    pub timings: Timings,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// What to do at a violation.
    pub on_failure: OnFailure,
    /// Faults injected so far.
    pub counters: Counters,
    /// When faults may fire, whether they were observed, quiet time.
    pub schedule: Arc<Schedule>,
    busy: Mutex<BTreeSet<String>>,
    outcome: Mutex<Option<(Outcome, Instant)>>,
    finished: AtomicBool,
    /// The run directory (for the full-disk check of [`Harness::finish`]).
    run_root: std::path::PathBuf,
    /// Woken when the outcome is set.
    pub done: Notify,
}

impl Harness {
    /// A harness around a cluster, with the run's fault schedule.
    pub fn new(
        cluster: Cluster,
        out: Glyphs,
        timings: Timings,
        seed: u64,
        on_failure: OnFailure,
        schedule: Arc<Schedule>,
    ) -> Harness {
        Harness {
            run_root: cluster.run_dir().root().to_owned(),
            cluster: Mutex::new(cluster),
            out,
            timings,
            seed,
            on_failure,
            counters: Counters::default(),
            schedule,
            busy: Mutex::new(BTreeSet::new()),
            outcome: Mutex::new(None),
            finished: AtomicBool::new(false),
            done: Notify::new(),
        }
    }

    /// The cluster, for a short synchronous operation (never held across `.await`).
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A random source for the loop `name`, derived from the run's seed so
    /// the fault schedule of a run can be replayed.
    pub fn rng(&self, name: &str) -> ChaCha8Rng {
        loop_rng(self.seed, name)
    }

    /// Whether the run has an outcome (loops stop acting then).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Records the outcome if it is the first. At a violation with
    /// `--on-failure pause` the world is stopped right here, synchronously,
    /// before anything else runs.
    pub fn finish(&self, outcome: Outcome) {
        // A full disk is never a violation of the system under test.
        let outcome = super::diskfull::reclassify(&self.run_root, outcome);
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        self.finished.store(true, Ordering::SeqCst);
        // Taken before the world is stopped, so "N ms after detection"
        // counts the stop itself (with `--hosts`, a round trip per host).
        let decided = Instant::now();
        if matches!(outcome, Outcome::Violation { .. }) && self.on_failure == OnFailure::Pause {
            super::freeze::stop_the_world();
        }
        // The live status line gives the screen back to plain lines.
        self.out.end_live();
        *slot = Some((outcome, decided));
        drop(slot);
        self.done.notify_waiters();
        self.done.notify_one();
    }

    /// Reports a violation found by `check`.
    pub fn violation(&self, check: &str, diagnosis: impl Into<String>) {
        self.finish(Outcome::Violation {
            check: check.to_owned(),
            diagnosis: diagnosis.into(),
        });
    }

    /// The outcome and when it was decided, once there is one.
    pub fn outcome(&self) -> Option<(Outcome, Instant)> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reports that the cluster made no progress in `step` although
    /// crasher left it alone long enough (see `liveness::await_live`).
    pub fn liveness_violation(&self, step: &str, diagnosis: impl Into<String>) {
        self.violation(&format!("liveness: {step}"), diagnosis);
    }

    /// Claims `who` for a deliberate action (crash, shrink, pause), so the
    /// death monitor does not report it and no other loop acts on it.
    /// Returns `None` if another loop holds it.
    pub fn claim(&self, who: &str) -> Option<Claim<'_>> {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        b.insert(who.to_owned()).then(|| Claim {
            h: self,
            who: who.to_owned(),
        })
    }

    /// Whether a loop is acting on `who` now.
    pub fn is_claimed(&self, who: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(who)
    }
}

/// The random source of loop `name` for `seed`: SHA-256 of both, so the
/// derivation never changes between builds or Rust versions (unlike
/// `DefaultHasher`).
pub fn loop_rng(seed: u64, name: &str) -> ChaCha8Rng {
    use sha2::Digest;
    let mut d = sha2::Sha256::new();
    d.update(seed.to_le_bytes());
    d.update(name.as_bytes());
    ChaCha8Rng::from_seed(d.finalize().into())
}

/// A loop's hold on a process it is acting on; released on drop.
pub struct Claim<'a> {
    h: &'a Harness,
    who: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.h
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.who);
    }
}
