//! Liveness waits that know what crasher itself is doing.
//!
//! A check that waits for the cluster to make progress (a member ready
//! after a join, a shrink or a restart) counts its budget only over *quiet*
//! time: time in which no fault of crasher's, other than the one the wait
//! belongs to, was in progress, and no fault started or ended (see
//! [`Schedule::disturbed`](super::schedule::Schedule::disturbed) and
//! [`Schedule::epoch`](super::schedule::Schedule::epoch)). A paused member,
//! a crashed coordinator or a feeder being restarted stops the clock.
//!
//! The wait ends in one of three ways: the step succeeded; the budget of
//! quiet time ran out (a liveness violation: the cluster was left alone
//! and did not progress); or crasher's own faults never left enough quiet
//! time within a hard cap (the verdict is unknown, never a violation).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::harness::{Harness, Outcome};
use super::schedule::FaultId;

/// How long one attempt of a wait may take (and so the grain of the quiet
/// clock).
const STEP: Duration = Duration::from_secs(1);

/// Why a liveness wait did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum NotLive {
    /// The budget of quiet time ran out.
    Stalled {
        /// The last attempt's error.
        last: String,
        /// Quiet seconds counted.
        quiet: f64,
        /// Seconds waited in all.
        waited: f64,
    },
    /// crasher's own faults left too little quiet time to judge.
    Unjudgeable {
        /// The last attempt's error.
        last: String,
        /// Quiet seconds counted.
        quiet: f64,
        /// Seconds waited in all.
        waited: f64,
    },
    /// The cluster answered the step with a refusal (not a matter of time).
    Refused(String),
    /// The run ended while waiting.
    Finished,
}

impl NotLive {
    /// A one-line description.
    pub fn describe(&self, budget: Duration) -> String {
        match self {
            NotLive::Stalled {
                last,
                quiet,
                waited,
            } => format!(
                "no progress in {quiet:.1}s of quiet time (no fault of crasher's in progress; \
                 {waited:.1}s waited in all, budget {:.0}s): {last}",
                budget.as_secs_f64()
            ),
            NotLive::Unjudgeable {
                last,
                quiet,
                waited,
            } => format!(
                "crasher's own faults left only {quiet:.1}s of quiet time in {waited:.1}s, less \
                 than the {:.0}s needed to judge: {last}",
                budget.as_secs_f64()
            ),
            NotLive::Refused(why) => why.clone(),
            NotLive::Finished => "the run ended while waiting".to_owned(),
        }
    }

    /// Ends the run as this outcome says: a liveness violation of `step`
    /// for [`NotLive::Stalled`], a violation of `step` for a refusal, an
    /// unknown verdict for [`NotLive::Unjudgeable`], nothing if the run
    /// already ended.
    pub fn conclude(&self, h: &Harness, step: &str, what: &str, budget: Duration) {
        let text = format!("{what}: {}", self.describe(budget));
        match self {
            NotLive::Stalled { .. } => {
                h.out.line(&format!("LIVENESS ({step}): {text}"));
                h.liveness_violation(step, text);
            }
            NotLive::Refused(_) => {
                h.out.line(&format!("{step}: pause the world: {text}"));
                h.violation(step, text);
            }
            NotLive::Unjudgeable { .. } => h.finish(Outcome::Unknown(text)),
            NotLive::Finished => {}
        }
    }
}

/// The hard cap on a wait's wall time: past it with too little quiet
/// time, the wait gives up as [`NotLive::Unjudgeable`].
pub fn cap(budget: Duration) -> Duration {
    (budget * 6).max(budget + Duration::from_secs(60))
}

/// Repeats `attempt(deadline)` (each attempt given one [`STEP`]) until it
/// succeeds, `budget` of quiet time has passed, or the cap is reached.
/// `own` is the fault this wait belongs to (not counted as a disturbance).
pub async fn await_live<T, F, Fut>(
    h: &Harness,
    own: Option<FaultId>,
    budget: Duration,
    mut attempt: F,
) -> Result<T, NotLive>
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let cap = cap(budget);
    let mut quiet = Duration::ZERO;
    loop {
        if h.finished() {
            return Err(NotLive::Finished);
        }
        let epoch = h.schedule.epoch();
        let calm = !h.schedule.disturbed(own);
        let step_start = Instant::now();
        let left = budget.saturating_sub(quiet).max(Duration::from_millis(100));
        let last = match attempt(step_start + left.min(STEP)).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if calm && !h.schedule.disturbed(own) && h.schedule.epoch() == epoch {
            quiet += step_start.elapsed();
        }
        let waited = started.elapsed();
        let figures = (quiet.as_secs_f64(), waited.as_secs_f64());
        if quiet >= budget {
            return Err(NotLive::Stalled {
                last,
                quiet: figures.0,
                waited: figures.1,
            });
        }
        if waited >= cap {
            return Err(NotLive::Unjudgeable {
                last,
                quiet: figures.0,
                waited: figures.1,
            });
        }
        // An attempt that failed fast must not spin.
        let spent = step_start.elapsed();
        if spent < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(100) - spent).await;
        }
    }
}

/// A stopwatch of quiet time for checks that sample on their own period
/// (ack progress, the acked-but-not-committed grace): [`QuietClock::tick`]
/// adds the time since the previous tick if no fault disturbed it.
#[derive(Debug)]
pub struct QuietClock {
    last: Instant,
    epoch: u64,
    calm: bool,
    quiet: Duration,
}

impl QuietClock {
    /// A clock at zero, from now.
    pub fn start(h: &Harness) -> QuietClock {
        QuietClock {
            last: Instant::now(),
            epoch: h.schedule.epoch(),
            calm: !h.schedule.disturbed(None),
            quiet: Duration::ZERO,
        }
    }

    /// Accounts the time since the last tick; returns the quiet total.
    pub fn tick(&mut self, h: &Harness) -> Duration {
        let epoch = h.schedule.epoch();
        let calm = !h.schedule.disturbed(None);
        if self.calm && calm && epoch == self.epoch {
            self.quiet += self.last.elapsed();
        }
        self.last = Instant::now();
        self.epoch = epoch;
        self.calm = calm;
        self.quiet
    }

    /// Back to zero (progress was seen).
    pub fn reset(&mut self, h: &Harness) {
        *self = QuietClock::start(h);
    }
}
