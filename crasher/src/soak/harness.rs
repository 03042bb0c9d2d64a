//! What every loop of a soak shares: the handle to the cluster's owner,
//! the output, the schedule, the seeded random sources, and the one outcome
//! of the run. Nothing here is a lock on run state: the cluster (with its
//! claims) is reached through its owner (`run::owner`), the outcome is
//! written once, and the read-only parts of the run (profile, run
//! directory, settings) are plain copies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;

use super::glyphs::Glyphs;
use super::schedule::Schedule;
use super::spec::worker_name;
use super::timings::Timings;
use crate::run::cluster::{Cluster, Settings};
use crate::run::owner::ClusterOwner;
use crate::run::profile::Profile;
use crate::run::rundir::RunDir;

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
    cluster: ClusterOwner,
    profile: Profile,
    run_dir: RunDir,
    settings: Settings,
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
    outcome: OnceLock<(Outcome, Instant)>,
    finished: AtomicBool,
    /// Woken when the outcome is set.
    pub done: Notify,
}

impl Harness {
    /// A harness around a cluster, with the run's fault schedule. The
    /// cluster moves to its owner's thread.
    pub fn new(
        cluster: Cluster,
        out: Glyphs,
        timings: Timings,
        seed: u64,
        on_failure: OnFailure,
        schedule: Arc<Schedule>,
    ) -> std::io::Result<Harness> {
        Ok(Harness {
            profile: cluster.profile().clone(),
            run_dir: cluster.run_dir().clone(),
            settings: cluster.settings().clone(),
            cluster: ClusterOwner::spawn("cluster-owner", cluster)?,
            out,
            timings,
            seed,
            on_failure,
            counters: Counters::default(),
            schedule,
            outcome: OnceLock::new(),
            finished: AtomicBool::new(false),
            done: Notify::new(),
        })
    }

    /// Runs `f` on the cluster, through its owner (see `run::owner`), and
    /// returns its result.
    pub async fn cluster<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster) -> R + Send + 'static,
    ) -> R {
        self.cluster.call(f).await
    }

    /// The workers expected to be members now.
    pub async fn members(&self) -> Vec<usize> {
        self.cluster(|c| c.members().iter().copied().collect())
            .await
    }

    /// Whether worker `i` is expected to be a member now.
    pub async fn is_member(&self, i: usize) -> bool {
        self.cluster(move |c| c.members().contains(&i)).await
    }

    /// The keys whose feeder finished its file (exit 0).
    pub async fn done_feeders(&self) -> std::collections::BTreeSet<String> {
        self.cluster(|c| c.done_feeders().clone()).await
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The run directory.
    pub fn run_dir(&self) -> &RunDir {
        &self.run_dir
    }

    /// The run's settings (inputs, rate, initial size).
    pub fn settings(&self) -> &Settings {
        &self.settings
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
    /// before anything else runs (it needs nothing from the cluster's
    /// owner: see `freeze::stop_the_world`).
    pub fn finish(&self, outcome: Outcome) {
        // The first caller wins; a later one changes nothing.
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        // A full disk is never a violation of the system under test.
        let outcome = super::diskfull::reclassify(self.run_dir.root(), outcome);
        let outcome = after_own_panic(super::signals::panicked(), outcome);
        // Taken before the world is stopped, so "N ms after detection"
        // counts the stop itself (with `--hosts`, a round trip per host).
        let decided = Instant::now();
        if matches!(outcome, Outcome::Violation { .. }) && self.on_failure == OnFailure::Pause {
            super::freeze::stop_the_world();
        }
        // The live status line gives the screen back to plain lines.
        self.out.end_live();
        let _ = self.outcome.set((outcome, decided));
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
        self.outcome.get().cloned()
    }

    /// Reports that the cluster made no progress in `step` although
    /// crasher left it alone long enough (see `liveness::await_live`).
    pub fn liveness_violation(&self, step: &str, diagnosis: impl Into<String>) {
        self.violation(&format!("liveness: {step}"), diagnosis);
    }

    /// Claims `who` for a deliberate action (crash, shrink, pause), so the
    /// death monitor does not report it and no other loop acts on it.
    /// Returns `None` if another loop holds it.
    pub async fn claim(&self, who: &str) -> Option<Claim<'_>> {
        let name = who.to_owned();
        self.cluster(move |c| c.claim(&name)).await.then(|| Claim {
            h: self,
            who: who.to_owned(),
        })
    }

    /// Claims one member that no other loop holds, the `pick`-th of them
    /// (modulo their number), waiting up to `within` for one to be free
    /// (`None`: none was, or the run ended). A random fault aimed at "any
    /// member" takes this, holding its schedule ticket, rather than drawing
    /// among all members and giving up when the drawn one is busy: a crash
    /// loop keeps its worker claimed while the worker recovers, after its
    /// own fault was observed, so a pause that drew that worker lost the
    /// turn the schedule had just given it, and a short soak could end
    /// having paused nothing.
    pub async fn claim_any_member(
        &self,
        pick: u64,
        within: std::time::Duration,
    ) -> Option<(usize, Claim<'_>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let claimed = self
                .cluster(move |c| {
                    let free: Vec<usize> = c
                        .members()
                        .iter()
                        .copied()
                        .filter(|&i| !c.is_claimed(&worker_name(i)))
                        .collect();
                    let i = pick_one(&free, pick)?;
                    c.claim(&worker_name(i)).then_some(i)
                })
                .await;
            if let Some(index) = claimed {
                return Some((
                    index,
                    Claim {
                        h: self,
                        who: worker_name(index),
                    },
                ));
            }
            if self.finished() || tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }
}

/// How often [`Harness::claim_any_member`] asks again for a free member.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The `pick`-th of `free` (modulo their number); `None` if there is none.
fn pick_one(free: &[usize], pick: u64) -> Option<usize> {
    let n = u64::try_from(free.len()).ok().filter(|&n| n > 0)?;
    usize::try_from(pick % n).ok().map(|k| free[k])
}

/// The outcome to report once crasher itself panicked: its panic hook
/// killed every process of the run, so a process that "died by itself", a
/// stall or a verdict of success afterwards is crasher's doing, not
/// evidence about the system under test. Nothing can be concluded (exit 3);
/// an environment error or an interrupt stays what it is.
pub fn after_own_panic(panicked: bool, outcome: Outcome) -> Outcome {
    match outcome {
        o @ (Outcome::Environment(_) | Outcome::Interrupted | Outcome::Unknown(_)) => o,
        o if !panicked => o,
        o => Outcome::Unknown(format!(
            "crasher itself panicked (its message is above) and killed every process of the \
             run; what it would have reported is not evidence about the system under test: {o:?}"
        )),
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
        // Sent, not awaited: the owner runs commands in order, so any claim
        // asked for after this drop sees it released.
        let who = std::mem::take(&mut self.who);
        self.h.cluster.post(move |c| c.release(&who));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_member_is_picked_among_the_free_ones_only() {
        assert_eq!(pick_one(&[], 7), None);
        assert_eq!(pick_one(&[2], u64::MAX), Some(2));
        let free = [0, 2, 5];
        let picked: Vec<usize> = (0..6).map(|p| pick_one(&free, p).unwrap()).collect();
        assert_eq!(picked, [0, 2, 5, 0, 2, 5]);
    }

    #[test]
    fn nothing_is_concluded_after_crashers_own_panic() {
        let death = Outcome::Violation {
            check: "process-death".into(),
            diagnosis: "worker1 died by itself: signal 9 (SIGKILL)".into(),
        };
        assert_eq!(after_own_panic(false, death.clone()), death);
        match after_own_panic(true, death) {
            Outcome::Unknown(why) => {
                assert!(why.contains("crasher itself panicked"), "{why}");
                assert!(why.contains("worker1 died by itself"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            after_own_panic(true, Outcome::DurationReached),
            Outcome::Unknown(_)
        ));
        assert!(matches!(
            after_own_panic(true, Outcome::Success("EOF".into())),
            Outcome::Unknown(_)
        ));
        assert_eq!(
            after_own_panic(true, Outcome::Interrupted),
            Outcome::Interrupted
        );
        let env = Outcome::Environment("disk full".into());
        assert_eq!(after_own_panic(true, env.clone()), env);
    }
}
