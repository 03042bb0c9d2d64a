//! State shared by every loop of a soak: the cluster, the output, the
//! crash gate, the seeded random sources, and the one outcome of the run.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use nix::sys::signal::Signal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;

use super::cluster::Cluster;
use super::glyphs::Glyphs;
use super::timings::Timings;

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every key's input was committed and acked.
    Success(String),
    /// The duration ran out with no violation.
    DurationReached,
    /// A check failed.
    Violation {
        /// Which check (`sanity`, `ack-progress`, `crash-loop`...).
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
    gate_flags: BTreeSet<String>,
    gate_present: Mutex<BTreeSet<String>>,
    busy: Mutex<BTreeSet<String>>,
    outcome: Mutex<Option<(Outcome, Instant)>>,
    finished: AtomicBool,
    /// Woken when the outcome is set.
    pub done: Notify,
}

impl Harness {
    /// A harness around a started cluster. `gate_flags` are the names of
    /// the crash loops that share the stabilize gate.
    pub fn new(
        cluster: Cluster,
        out: Glyphs,
        timings: Timings,
        seed: u64,
        on_failure: OnFailure,
        gate_flags: BTreeSet<String>,
    ) -> Harness {
        Harness {
            cluster: Mutex::new(cluster),
            out,
            timings,
            seed,
            on_failure,
            counters: Counters::default(),
            gate_present: Mutex::new(gate_flags.clone()),
            gate_flags,
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
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        ChaCha8Rng::seed_from_u64(self.seed ^ h.finish())
    }

    /// Whether the run has an outcome (loops stop acting then).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Records the outcome if it is the first. At a violation with
    /// `--on-failure pause` the world is stopped right here, synchronously,
    /// before anything else runs.
    pub fn finish(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        self.finished.store(true, Ordering::SeqCst);
        if matches!(outcome, Outcome::Violation { .. }) && self.on_failure == OnFailure::Pause {
            self.cluster().signal_all(Signal::SIGSTOP);
        }
        *slot = Some((outcome, Instant::now()));
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

    /// Whether every crash loop's gate flag is present (crashes allowed).
    pub fn gate_open(&self) -> bool {
        *self.gate_present.lock().unwrap_or_else(|e| e.into_inner()) == self.gate_flags
    }

    /// Removes (`false`) or restores (`true`) a loop's gate flag.
    pub fn set_gate(&self, flag: &str, present: bool) {
        let mut g = self.gate_present.lock().unwrap_or_else(|e| e.into_inner());
        if present {
            g.insert(flag.to_owned());
        } else {
            g.remove(flag);
        }
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
