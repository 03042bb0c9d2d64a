//! Every delay and period of the loops, with the original's values as
//! defaults, overridable with `--timing NAME=SECONDS` (repeatable) or
//! `CRASHER_TIMINGS="NAME=SECONDS,..."`.

use std::time::Duration;

macro_rules! timings {
    ($( $(#[$doc:meta])* $name:ident = $default:expr ),* $(,)?) => {
        /// Loop timings in seconds.
        #[derive(Debug, Clone, serde::Serialize)]
        pub struct Timings {
            $( $(#[$doc])* pub $name: f64, )*
        }

        impl Default for Timings {
            fn default() -> Self {
                Timings { $( $name: $default, )* }
            }
        }

        impl Timings {
            /// Sets one timing by name.
            pub fn set(&mut self, name: &str, value: f64) -> Result<(), String> {
                match name {
                    $( stringify!($name) => self.$name = value, )*
                    other => return Err(format!(
                        "unknown timing {other:?}; known: {}",
                        [$( stringify!($name) ),*].join(", ")
                    )),
                }
                Ok(())
            }
        }
    };
}

timings! {
    /// Sink crash loop: wait before the first crash ("checkpoint #1 first").
    crash_sink_start = 3.0,
    /// Sink down-time is U[0, this).
    crash_sink_down = 2.0,
    /// Gap between sink crashes is U[min, max).
    crash_sink_gap_min = 10.0,
    /// See `crash_sink_gap_min`.
    crash_sink_gap_max = 25.0,
    /// Worker crash loop: wait before the first crash.
    crash_worker_start = 3.0,
    /// Delay before each crash is U[0, this).
    crash_worker_before = 4.0,
    /// Worker down-time is U[0, this).
    crash_worker_down = 4.0,
    /// Pause after a restart.
    crash_worker_after = 0.25,
    /// `.slow`: iterations of ~1 s between crashes.
    crash_worker_slow_iterations = 120.0,
    /// Readiness wait for the crashed worker after restart.
    crash_worker_ready = 8.0,
    /// Readiness wait for all workers when that fails.
    crash_worker_all_ready = 20.0,
    /// Feeder crash loop: wait before the first crash.
    crash_source_start = 3.0,
    /// Feeder down-time is U[0, this).
    crash_source_down = 2.0,
    /// Gap between feeder crashes is U[min, max).
    crash_source_gap_min = 5.0,
    /// See `crash_source_gap_min`.
    crash_source_gap_max = 15.0,
    /// Pause loop: a process stays stopped U[min, max) seconds.
    pause_min = 1.0,
    /// See `pause_min`.
    pause_max = 10.0,
    /// Gap between pauses is U[min, max).
    pause_gap_min = 5.0,
    /// See `pause_gap_min`.
    pause_gap_max = 15.0,
    /// A fault aimed at any member (pause, power-loss, corrupt, truncate,
    /// the targeted words) waits up to this long, holding its turn, for a
    /// member no other loop holds (a crashed one stays claimed until it
    /// has recovered).
    member_claim_wait = 10.0,
    /// Grow/shrink loop: wait before the first change.
    grow_start = 2.0,
    /// Readiness wait after a join or shrink (the original used 4).
    grow_ready = 10.0,
    /// Ack progress: wait before the first window.
    ack_progress_start = 5.0,
    /// Ack progress: every feeder must see an ack within each window.
    ack_progress_period = 180.0,
    /// Registry progress: wait before the first check.
    registry_progress_start = 10.0,
    /// Registry progress: period.
    registry_progress_period = 15.0,
    /// Sanity: period of verification rounds.
    sanity_period = 1.0,
    /// Sanity: how long a key may stay short of its input after its feeder
    /// saw the last ack before that is a loss.
    acked_commit_grace = 15.0,
    /// Sanity: how much quiet time (no fault of crasher's in progress) may
    /// pass with not one byte newly committed on any key still being fed
    /// before that is a liveness violation (`liveness: commit-progress`);
    /// 0 turns the check off.
    commit_stall = 60.0,
    /// Sanity, `verify_mode = "work-queue"` and `"work-queue-at-least-once"`:
    /// an input line not committed is missing (a violation) once a line
    /// that comes later in the key's input has been committed (its `2-ok`
    /// time) for more than this many seconds; the check after a key's
    /// feeder saw its last ack also waits at least this long.
    work_queue_missing_grace = 60.0,
    /// Clean old gzip files: period.
    clean_gz_period = 10.0,
    /// Schedule: how long a fault's effect (new commits on every fed key)
    /// is waited for before the schedule counts it unobserved and moves on.
    observe_timeout = 30.0,
    /// Schedule: a `--duration` run starts no new fault in its last
    /// min(this, a sixth of the duration) seconds, so the last fault can be
    /// observed before the run ends (Jepsen's final recovery).
    final_quiet = 10.0,
    /// Schedule: the gap kept after a fault when nothing is verified during
    /// the run (no-sanity, TCP mode), so nothing can be observed.
    quiet_window = 3.0,
    /// Disk faults (power-loss, corrupt, truncate): wait before the first.
    disk_fault_start = 5.0,
    /// Gap between power losses is U[min, max).
    power_loss_gap_min = 5.0,
    /// See `power_loss_gap_min`.
    power_loss_gap_max = 12.0,
    /// Gap between corruptions or truncations is U[min, max).
    corrupt_gap_min = 10.0,
    /// See `corrupt_gap_min`.
    corrupt_gap_max = 20.0,
    /// Down-time of a node hit by a disk fault is U[0, this).
    disk_fault_down = 2.0,
    /// Readiness wait for the whole cluster after a disk fault.
    disk_fault_ready = 30.0,
    /// Start-up: readiness wait for the whole cluster.
    startup_ready = 30.0,
    /// Network faults: wait before the first one.
    net_start = 5.0,
    /// Gap between network faults (healed to next fault) is U[min, max).
    net_gap_min = 3.0,
    /// See `net_gap_min`.
    net_gap_max = 8.0,
    /// A network fault is held U[min, max) seconds, then healed.
    net_hold_min = 2.0,
    /// See `net_hold_min` (kept below `crash_worker_ready`).
    net_hold_max = 6.0,
    /// `flaky`: percent of the node's packets dropped, each way.
    net_flaky_percent = 30.0,
    /// TCP mode: a timed run whose receiver got nothing for this long at
    /// the end while blasters were still sending has an unknown verdict.
    tcp_receive_stall = 30.0,
}

/// The longest a timing may be: a week. Beyond it a value is a typo (and
/// `1e300` would overflow a `Duration` and silently become 0 s).
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

impl Timings {
    /// Applies `NAME=SECONDS` settings.
    pub fn apply(&mut self, settings: &[String]) -> Result<(), String> {
        for s in settings
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.trim().is_empty())
        {
            let (name, value) = s
                .split_once('=')
                .ok_or_else(|| format!("timing {s:?}: expected NAME=SECONDS"))?;
            let v: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v <= MAX_SECONDS)
                .ok_or_else(|| {
                    format!(
                        "timing {name}: {value:?} is not a number of seconds from 0 to {MAX_SECONDS} (a week)"
                    )
                })?;
            self.set(name.trim(), v)?;
        }
        Ok(())
    }
}

/// Seconds as a Duration (negative or NaN → zero).
pub fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_and_unknown_names_fail() {
        let mut t = Timings::default();
        t.apply(&["sanity_period=0.5,crash_sink_down=1".into()])
            .unwrap();
        assert_eq!(t.sanity_period, 0.5);
        assert_eq!(t.crash_sink_down, 1.0);
        assert!(t.apply(&["nope=1".into()]).is_err());
        assert!(t.apply(&["sanity_period=-1".into()]).is_err());
        let e = t.apply(&["startup_ready=1e300".into()]).unwrap_err();
        assert!(e.contains("startup_ready"), "{e}");
        assert!(t.apply(&["startup_ready=inf".into()]).is_err());
        assert_eq!(t.startup_ready, 30.0);
        t.apply(&["startup_ready=604800".into()]).unwrap();
    }
}
