//! The fault schedule: when a fault may fire, whether its effect was seen,
//! and how much time crasher left the cluster alone.
//!
//! Every fault of a run (crash, restart, sink crash, feeder crash, pause,
//! join, shrink, custom steps) goes through one [`Schedule`]:
//!
//! - **When it may fire.** A fault loop asks [`Schedule::acquire`] for a
//!   [`Ticket`] before it acts. Under `isolated` (the default) the ticket is
//!   granted only when no other fault is in progress and the previous one
//!   was *observed* — the sanity loop saw new committed data for every key
//!   that was still being fed after it ended — or its observation timed out.
//!   `overlapping` grants at once (the original's independent timers);
//!   `mixed` grants at once for a chosen share of faults, drawn from the
//!   schedule's own seeded source, and isolates the rest. The stabilize gate
//!   of the original (a crash loop whose worker fails to recover stops every
//!   fault until the cluster is ready again) is a [`Schedule::hold`] here,
//!   honoured in every mode.
//! - **Whether it was seen.** A ticket's end starts its observation; the
//!   sanity loop reports progress through [`Schedule::progress`]. Coverage
//!   per fault kind (fired, observed, overlapped, recovery time to the next
//!   commit) goes into the run record and the final summary.
//! - **Quiet time.** Liveness checks (readiness after a join, a shrink or a
//!   restart, ack progress, the acked-but-not-committed grace) count their
//!   deadline only over time in which crasher itself was not disturbing the
//!   cluster: see [`Schedule::disturbed`] and [`Schedule::epoch`], used by
//!   `liveness::await_live`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::Notify;

/// How faults are placed in time relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleMode {
    /// A fault fires only once the previous one was observed (or its
    /// observation timed out) and no other fault is in progress.
    Isolated,
    /// Every fault loop on its own timer, as the original scripts did.
    Overlapping,
    /// Isolated, except a share of faults (`--overlap-share`) that may fire
    /// while another is in progress or unobserved.
    Mixed,
}

impl fmt::Display for ScheduleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleMode::Isolated => "isolated",
            ScheduleMode::Overlapping => "overlapping",
            ScheduleMode::Mixed => "mixed",
        })
    }
}

/// How the schedule is set up for a run.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The mode.
    pub mode: ScheduleMode,
    /// `mixed`: the share of faults allowed to overlap (0..=1).
    pub overlap_share: f64,
    /// How long a fault's effect is waited for before the schedule moves on.
    pub observe_timeout: Duration,
    /// Whether committed data is verified while the run goes on (the sanity
    /// loop is on and the mode verifies). If not, no fault can be observed
    /// and `isolated` only keeps `quiet_window` between faults.
    pub observable: bool,
    /// The gap kept after a fault when nothing can be observed.
    pub quiet_window: Duration,
}

/// Coverage of one fault kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindCoverage {
    /// How many fired.
    pub fired: u64,
    /// How many were followed by new committed data on every fed key before
    /// the next fault started.
    pub observed: u64,
    /// How many started while another fault was in progress or unobserved.
    pub overlapped: u64,
    /// Seconds from the fault's end to the commit that observed it.
    pub recovery_s: Vec<f64>,
}

impl KindCoverage {
    /// (min, median, max) recovery seconds, if any fault was observed.
    pub fn recovery_stats(&self) -> Option<(f64, f64, f64)> {
        if self.recovery_s.is_empty() {
            return None;
        }
        let mut v = self.recovery_s.clone();
        v.sort_by(f64::total_cmp);
        Some((v[0], v[v.len() / 2], v[v.len() - 1]))
    }
}

/// One decision of a fault loop, recorded in order so two runs with the
/// same seed and arguments can be compared, and replayed (`fault`).
pub use triage::record::{Decision, Fault};

/// The identity of a fault in progress.
pub type FaultId = u64;

struct Active {
    kind: String,
    overlapped: bool,
    /// Observations this fault cut short (given back if it is cancelled).
    masked: BTreeMap<FaultId, Pending>,
}

struct Pending {
    kind: String,
    ended: Instant,
    baseline: BTreeMap<String, u64>,
}

struct Inner {
    rng: ChaCha8Rng,
    next_id: FaultId,
    active: BTreeMap<FaultId, Active>,
    pending: BTreeMap<FaultId, Pending>,
    holds: BTreeSet<String>,
    /// Bumped whenever a fault starts or ends.
    epoch: u64,
    coverage: BTreeMap<String, KindCoverage>,
    decisions: Vec<Decision>,
    /// Latest verified bytes per key, and whether the key is still fed.
    progress: BTreeMap<String, (u64, bool)>,
    /// Loops waiting for an isolated slot, in order of arrival: the slot
    /// goes to the one that has waited longest, so a loop on a short timer
    /// cannot starve one on a long timer (a crash loop re-asking every few
    /// seconds once took every slot of a 30 s run from the pause loop).
    queue: VecDeque<u64>,
    next_waiter: u64,
}

/// The run's one fault schedule; shared by every loop.
pub struct Schedule {
    cfg: ScheduleConfig,
    start: Instant,
    /// No fault starts at or after this instant (the run's final recovery
    /// window); set once the run's deadline is known.
    cutoff: std::sync::OnceLock<Instant>,
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A fault in progress; its end (explicit or on drop) starts its
/// observation.
pub struct Ticket {
    schedule: Arc<Schedule>,
    id: FaultId,
    ended: bool,
}

impl Ticket {
    /// This fault's id (liveness waits inside the fault exclude it).
    pub fn id(&self) -> FaultId {
        self.id
    }

    /// Ends the fault: crasher stopped acting on the cluster.
    pub fn end(mut self) {
        self.finish();
    }

    /// Takes the fault back: it never happened (its target could not be
    /// claimed), so it is not counted.
    pub fn cancel(mut self) {
        self.ended = true;
        self.schedule.cancel(self.id);
    }

    fn finish(&mut self) {
        if !self.ended {
            self.ended = true;
            self.schedule.end(self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A loop's place in the queue for an isolated slot; leaves the queue
/// when dropped, so a loop that stops waiting (its run ended, its task was
/// cancelled) does not hold up the loops behind it.
struct QueuePlace {
    schedule: Arc<Schedule>,
    number: u64,
    left: bool,
}

impl QueuePlace {
    fn join(schedule: &Arc<Schedule>) -> QueuePlace {
        let mut g = schedule.lock();
        let number = g.next_waiter;
        g.next_waiter += 1;
        g.queue.push_back(number);
        drop(g);
        QueuePlace {
            schedule: schedule.clone(),
            number,
            left: false,
        }
    }

    /// Leaves the queue while the caller holds the lock (it is starting its
    /// fault, which itself wakes the loops behind it).
    fn leave_locked(mut self, g: &mut Inner) {
        g.queue.retain(|&n| n != self.number);
        self.left = true;
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut g = self.schedule.lock();
        g.queue.retain(|&n| n != self.number);
        drop(g);
        self.schedule.changed.notify_waiters();
    }
}

impl Schedule {
    /// A schedule whose `mixed` draws come from `rng`.
    pub fn new(cfg: ScheduleConfig, rng: ChaCha8Rng) -> Arc<Schedule> {
        Arc::new(Schedule {
            cfg,
            start: Instant::now(),
            cutoff: std::sync::OnceLock::new(),
            inner: Mutex::new(Inner {
                rng,
                next_id: 1,
                active: BTreeMap::new(),
                pending: BTreeMap::new(),
                holds: BTreeSet::new(),
                epoch: 0,
                coverage: BTreeMap::new(),
                decisions: Vec::new(),
                progress: BTreeMap::new(),
                queue: VecDeque::new(),
                next_waiter: 0,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mode in force.
    pub fn mode(&self) -> ScheduleMode {
        self.cfg.mode
    }

    /// Starts no fault from `at` on: the last faults of a timed run get
    /// their chance to be observed before it ends. Custom scenarios
    /// ([`Schedule::force`]) are not held back.
    pub fn stop_faults_at(&self, at: Instant) {
        let _ = self.cutoff.set(at);
        self.changed.notify_waiters();
    }

    fn past_cutoff(&self) -> bool {
        self.cutoff.get().is_some_and(|&at| Instant::now() >= at)
    }

    /// Waits until a fault of `kind` may fire under the schedule, then
    /// starts it. `gated` is called (about once a second) while the
    /// stabilize gate holds the fault back, so the loop can print the
    /// original's `:cN` glyphs.
    pub async fn acquire(self: &Arc<Self>, kind: &str, gated: impl Fn()) -> Ticket {
        let overlap_ok = match self.cfg.mode {
            ScheduleMode::Overlapping => true,
            ScheduleMode::Isolated => false,
            ScheduleMode::Mixed => {
                let share = self.cfg.overlap_share;
                self.lock().rng.gen_bool(share.clamp(0.0, 1.0))
            }
        };
        // A fault that may overlap does not wait for a slot, so it does not
        // queue for one either.
        let place = (!overlap_ok).then(|| QueuePlace::join(self));
        let mut last_gate_glyph: Option<Instant> = None;
        loop {
            let notified = self.changed.notified();
            {
                let mut g = self.lock();
                self.expire(&mut g);
                let gate_closed = !g.holds.is_empty();
                let busy = !g.active.is_empty() || !g.pending.is_empty();
                let my_turn = place
                    .as_ref()
                    .map_or(true, |p| g.queue.front() == Some(&p.number));
                if !gate_closed && (overlap_ok || (!busy && my_turn)) && !self.past_cutoff() {
                    if let Some(p) = place {
                        p.leave_locked(&mut g);
                    }
                    return self.start_locked(&mut g, kind);
                }
                if gate_closed
                    && last_gate_glyph.map_or(true, |t| t.elapsed() >= Duration::from_secs(1))
                {
                    last_gate_glyph = Some(Instant::now());
                    drop(g);
                    gated();
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }

    /// Starts a fault of `kind` now, whatever the schedule says (custom
    /// scenarios and recipes, whose steps are a fixed sequence).
    pub fn force(self: &Arc<Self>, kind: &str) -> Ticket {
        let mut g = self.lock();
        self.start_locked(&mut g, kind)
    }

    fn start_locked(self: &Arc<Self>, g: &mut Inner, kind: &str) -> Ticket {
        let overlapped = !g.active.is_empty() || !g.pending.is_empty();
        // Faults whose observation was pending are masked by this one.
        let masked = std::mem::take(&mut g.pending);
        let id = g.next_id;
        g.next_id += 1;
        g.epoch += 1;
        g.active.insert(
            id,
            Active {
                kind: kind.to_owned(),
                overlapped,
                masked,
            },
        );
        let c = g.coverage.entry(kind.to_owned()).or_default();
        c.fired += 1;
        if overlapped {
            c.overlapped += 1;
        }
        self.changed.notify_waiters();
        Ticket {
            schedule: self.clone(),
            id,
            ended: false,
        }
    }

    fn end(&self, id: FaultId) {
        let mut g = self.lock();
        if let Some(a) = g.active.remove(&id) {
            g.epoch += 1;
            let baseline = g
                .progress
                .iter()
                .filter(|(_, (_, fed))| *fed)
                .map(|(k, (v, _))| (k.clone(), *v))
                .collect();
            g.pending.insert(
                id,
                Pending {
                    kind: a.kind,
                    ended: Instant::now(),
                    baseline,
                },
            );
        }
        drop(g);
        self.changed.notify_waiters();
    }

    fn cancel(&self, id: FaultId) {
        let mut g = self.lock();
        if let Some(a) = g.active.remove(&id) {
            g.epoch += 1;
            if let Some(c) = g.coverage.get_mut(&a.kind) {
                c.fired = c.fired.saturating_sub(1);
                if a.overlapped {
                    c.overlapped = c.overlapped.saturating_sub(1);
                }
            }
            g.pending.extend(a.masked);
        }
        drop(g);
        self.changed.notify_waiters();
    }

    /// Drops pending observations that timed out.
    fn expire(&self, g: &mut Inner) {
        let limit = if self.cfg.observable {
            self.cfg.observe_timeout
        } else {
            self.cfg.quiet_window
        };
        g.pending.retain(|_, p| p.ended.elapsed() < limit);
    }

    /// The sanity loop's latest figures: verified bytes per key, and
    /// whether the key is still being fed (not yet complete). A pending
    /// fault is observed when every key fed at its end has grown since.
    pub fn progress(&self, keys: &BTreeMap<String, (u64, bool)>) {
        let mut g = self.lock();
        g.progress = keys.clone();
        self.expire(&mut g);
        let mut seen = Vec::new();
        for (id, p) in &g.pending {
            let all = p
                .baseline
                .iter()
                .all(|(k, base)| keys.get(k).map_or(true, |(now, fed)| *now > *base || !*fed));
            if all && self.cfg.observable {
                seen.push((*id, p.kind.clone(), p.ended.elapsed().as_secs_f64()));
            }
        }
        for (id, kind, rec) in &seen {
            g.pending.remove(id);
            let c = g.coverage.entry(kind.clone()).or_default();
            c.observed += 1;
            c.recovery_s.push(*rec);
        }
        drop(g);
        if !seen.is_empty() {
            self.changed.notify_waiters();
        }
    }

    /// Closes the stabilize gate on behalf of `who` (no fault fires until
    /// every holder released it).
    pub fn hold(&self, who: &str) {
        self.lock().holds.insert(who.to_owned());
        self.changed.notify_waiters();
    }

    /// Releases `who`'s hold on the stabilize gate.
    pub fn release(&self, who: &str) {
        self.lock().holds.remove(who);
        self.changed.notify_waiters();
    }

    /// Whether a fault other than `own` is in progress now.
    pub fn disturbed(&self, own: Option<FaultId>) -> bool {
        self.lock().active.keys().any(|id| Some(*id) != own)
    }

    /// A counter bumped by every fault start and end: a liveness wait
    /// counts a poll step as quiet only if it did not change.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Records a decision of the loop `source`: `what` for people, `fault`
    /// for `crasher replay`.
    pub fn decide(&self, source: &str, what: impl Into<String>, fault: Fault) {
        let t = self.start.elapsed().as_secs_f64();
        self.lock().decisions.push(Decision {
            t,
            source: source.to_owned(),
            what: what.into(),
            fault: Some(fault),
        });
    }

    /// When the run started: recorded decision times count from here.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// The decisions so far, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.lock().decisions.clone()
    }

    /// Coverage so far, per fault kind.
    pub fn coverage(&self) -> BTreeMap<String, KindCoverage> {
        self.lock().coverage.clone()
    }

    /// The stabilize gate in a few words, for the live status line:
    /// which fault is in progress, which wait to be observed, who holds
    /// the gate, or `open`.
    pub fn gate_state(&self) -> String {
        let g = self.lock();
        let kinds = |it: &mut dyn Iterator<Item = &String>| {
            let v: Vec<&str> = it.map(String::as_str).collect();
            v.join(",")
        };
        if !g.active.is_empty() {
            format!(
                "in progress: {}",
                kinds(&mut g.active.values().map(|a| &a.kind))
            )
        } else if !g.pending.is_empty() {
            format!(
                "observing: {}",
                kinds(&mut g.pending.values().map(|p| &p.kind))
            )
        } else if !g.holds.is_empty() {
            format!("held: {}", kinds(&mut g.holds.iter()))
        } else {
            "open".to_owned()
        }
    }

    /// Whether faults can be observed in this run.
    pub fn observable(&self) -> bool {
        self.cfg.observable
    }

    /// One line per run: fired / observed / overlapped per kind, and
    /// recovery time to the next commit.
    pub fn summary_line(&self) -> String {
        let cov = self.coverage();
        if cov.is_empty() {
            return format!(
                "Fault coverage ({} schedule): no fault fired",
                self.cfg.mode
            );
        }
        let parts: Vec<String> = cov
            .iter()
            .map(|(k, c)| {
                let rec = c
                    .recovery_stats()
                    .map(|(lo, med, hi)| format!(", recovery {lo:.1}/{med:.1}/{hi:.1}s"))
                    .unwrap_or_default();
                if self.cfg.observable {
                    format!(
                        "{k} {} fired/{} observed/{} overlapped{rec}",
                        c.fired, c.observed, c.overlapped
                    )
                } else {
                    format!("{k} {} fired/{} overlapped", c.fired, c.overlapped)
                }
            })
            .collect();
        format!(
            "Fault coverage ({} schedule{}): {}",
            self.cfg.mode,
            if self.cfg.observable {
                ""
            } else {
                "; nothing verified, so no fault can be observed"
            },
            parts.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sched(mode: ScheduleMode) -> Arc<Schedule> {
        Schedule::new(
            ScheduleConfig {
                mode,
                overlap_share: 0.5,
                observe_timeout: Duration::from_secs(30),
                observable: true,
                quiet_window: Duration::from_secs(1),
            },
            ChaCha8Rng::seed_from_u64(1),
        )
    }

    fn keys(a: u64, b: u64) -> BTreeMap<String, (u64, bool)> {
        [("A".to_owned(), (a, true)), ("B".to_owned(), (b, true))].into()
    }

    #[tokio::test]
    async fn isolated_waits_for_the_previous_fault_to_be_observed() {
        let s = sched(ScheduleMode::Isolated);
        s.progress(&keys(10, 10));
        let t = s.acquire("crash1", || {}).await;
        assert!(s.disturbed(None));
        assert!(!s.disturbed(Some(t.id())));
        t.end();
        // Pending observation: a second fault must wait.
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.acquire("crash-sink", || {}).await.id() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished());
        // Only key A grew: not yet observed.
        s.progress(&keys(20, 10));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished());
        s.progress(&keys(20, 11));
        let id = tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, 2);
        let c = s.coverage();
        assert_eq!(c["crash1"].fired, 1);
        assert_eq!(c["crash1"].observed, 1);
        assert_eq!(c["crash-sink"].overlapped, 0);
    }

    #[tokio::test]
    async fn overlapping_grants_at_once_and_counts_masked_faults() {
        let s = sched(ScheduleMode::Overlapping);
        s.progress(&keys(10, 10));
        let a = s.acquire("crash1", || {}).await;
        let b = s.acquire("crash-sink", || {}).await;
        drop(a);
        drop(b);
        let c = s.acquire("crash1", || {}).await;
        c.end();
        s.progress(&keys(11, 11));
        let cov = s.coverage();
        assert_eq!(cov["crash1"].fired, 2);
        assert_eq!(cov["crash1"].overlapped, 1);
        assert_eq!(cov["crash1"].observed, 1);
        assert_eq!(cov["crash-sink"].overlapped, 1);
        assert_eq!(cov["crash-sink"].observed, 0);
    }

    #[tokio::test]
    async fn no_fault_starts_in_the_final_recovery_window() {
        let s = sched(ScheduleMode::Overlapping);
        s.acquire("crash1", || {}).await.end();
        s.stop_faults_at(Instant::now());
        let s2 = s.clone();
        let f = tokio::spawn(async move { s2.acquire("crash1", || {}).await.id() });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!f.is_finished(), "a fault started after the cutoff");
        f.abort();
        assert_eq!(s.coverage()["crash1"].fired, 1);
        // Scripted steps are not held back.
        assert_eq!(s.force("custom").id(), 2);
    }

    #[tokio::test]
    async fn a_hold_stops_every_mode_until_released() {
        let s = sched(ScheduleMode::Overlapping);
        s.hold("crash1");
        let s2 = s.clone();
        let f = tokio::spawn(async move { s2.acquire("pause", || {}).await.id() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!f.is_finished());
        s.release("crash1");
        tokio::time::timeout(Duration::from_secs(2), f)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn the_loop_that_waited_longest_gets_the_next_isolated_slot() {
        let s = sched(ScheduleMode::Isolated);
        s.progress(&keys(10, 10));
        let first = s.acquire("crash1", || {}).await;
        let s2 = s.clone();
        let pause = tokio::spawn(async move { s2.acquire("pause", || {}).await.id() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A waiter that gives up leaves the queue without holding it.
        let s3 = s.clone();
        let quitter = tokio::spawn(async move { s3.acquire("shrink", || {}).await.id() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        quitter.abort();
        let s4 = s.clone();
        let crash = tokio::spawn(async move {
            let t = s4.acquire("crash1", || {}).await;
            t.id()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.end();
        s.progress(&keys(11, 11));
        let id = tokio::time::timeout(Duration::from_secs(2), pause)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, 2, "the pause loop waited longest");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!crash.is_finished(), "the pause is not yet observed");
        s.progress(&keys(12, 12));
        let id = tokio::time::timeout(Duration::from_secs(2), crash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, 3);
    }

    #[test]
    fn complete_keys_do_not_block_observation() {
        let s = sched(ScheduleMode::Isolated);
        s.progress(&keys(10, 10));
        s.force("join").end();
        s.progress(&[("A".to_owned(), (11, true)), ("B".to_owned(), (10, false))].into());
        assert_eq!(s.coverage()["join"].observed, 1);
    }
}
