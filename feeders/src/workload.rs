//! Workload shapes: how a feeder's rate varies over time, so a soak can
//! stress catch-up after a burst or a backlog during recovery (seed 000:
//! fablab's workloads).
//!
//! A shape scales the feeder's `--rate` by a factor that depends on the
//! time since the run's start (`--workload-epoch`), so a restarted feeder
//! keeps the run's phase instead of starting its shape over:
//!
//! | shape | factor |
//! |---|---|
//! | `constant` | 1 |
//! | `bursts:ON/OFF` | 1 for ON seconds, then 0 for OFF seconds, repeated |
//! | `ramp:PERIOD` | rises linearly from 0 to 2 over PERIOD/2 seconds and falls back over the next PERIOD/2 (a triangle whose mean is 1) |
//! | `jitter:F` | a new random factor in [1-F, 1+F] every second (0 ≤ F ≤ 1), the same for a given seed and second |
//!
//! Every shape's long-run mean factor is 1, except `bursts`, whose mean is
//! ON/(ON+OFF): a burst sends at the full `--rate`, and the pauses between
//! bursts build a backlog the cluster must catch up with.

use std::fmt;
use std::str::FromStr;

/// How a feeder's rate varies over time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Workload {
    /// The configured rate, always.
    #[default]
    Constant,
    /// Full rate for `on` seconds, nothing for `off` seconds.
    Bursts {
        /// Seconds at full rate.
        on: f64,
        /// Seconds silent.
        off: f64,
    },
    /// A triangle wave of `period` seconds between 0 and twice the rate.
    Ramp {
        /// Seconds from one trough to the next.
        period: f64,
    },
    /// A random factor in [1-fraction, 1+fraction], new every second.
    Jitter {
        /// How far the factor strays from 1.
        fraction: f64,
        /// Makes the sequence of factors reproducible.
        seed: u64,
    },
}

/// A shape that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workload {text:?}: {why} (shapes: constant, bursts:ON/OFF, ramp:PERIOD, jitter:F)")]
pub struct WorkloadError {
    text: String,
    why: String,
}

fn seconds(text: &str, what: &str, whole: &str) -> Result<f64, WorkloadError> {
    let err = |why: String| WorkloadError {
        text: whole.to_owned(),
        why,
    };
    let v: f64 = text
        .parse()
        .map_err(|_| err(format!("{what} {text:?} is not a number of seconds")))?;
    if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
        return Err(err(format!(
            "{what} must be in (0, 86400] seconds, not {v}"
        )));
    }
    Ok(v)
}

impl FromStr for Workload {
    type Err = WorkloadError;

    fn from_str(text: &str) -> Result<Workload, WorkloadError> {
        let err = |why: &str| WorkloadError {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (text, None),
        };
        match (name, arg) {
            ("constant", None) => Ok(Workload::Constant),
            ("bursts", Some(a)) => {
                let (on, off) = a
                    .split_once('/')
                    .ok_or_else(|| err("bursts needs ON/OFF"))?;
                Ok(Workload::Bursts {
                    on: seconds(on, "ON", text)?,
                    off: seconds(off, "OFF", text)?,
                })
            }
            ("ramp", Some(a)) => Ok(Workload::Ramp {
                period: seconds(a, "PERIOD", text)?,
            }),
            ("jitter", Some(a)) => {
                let fraction: f64 = a.parse().map_err(|_| err("F is not a number"))?;
                if !(0.0..=1.0).contains(&fraction) {
                    return Err(err("F must be between 0 and 1"));
                }
                Ok(Workload::Jitter { fraction, seed: 0 })
            }
            ("constant", Some(_)) => Err(err("constant takes no argument")),
            ("bursts" | "ramp" | "jitter", None) => Err(err("missing its argument after `:`")),
            _ => Err(err("unknown shape")),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Constant => write!(f, "constant"),
            Workload::Bursts { on, off } => write!(f, "bursts:{on}/{off}"),
            Workload::Ramp { period } => write!(f, "ramp:{period}"),
            Workload::Jitter { fraction, .. } => write!(f, "jitter:{fraction}"),
        }
    }
}

/// Where a feeder's shape counts time from: the run's start as Unix
/// milliseconds (`--workload-epoch`), or this process's start.
pub fn epoch_instant(epoch_unix_ms: Option<u64>, now: std::time::Instant) -> std::time::Instant {
    let Some(ms) = epoch_unix_ms else {
        return now;
    };
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = std::time::Duration::from_millis(ms);
    match unix_now.checked_sub(epoch) {
        // The run started `ago` before now.
        Some(ago) => now.checked_sub(ago).unwrap_or(now),
        // An epoch in the future: the shape starts then.
        None => now + (epoch - unix_now),
    }
}

/// A feeder's rate limiter: `rate` bytes per second (`None`: 0, no
/// limit) shaped by `workload` from `epoch_ms`, with `jitter` seeded by the
/// input file's `name`. Every feeder (`feed`, `nats-feed`, `redis-feed`)
/// builds its bucket here.
pub fn bucket(
    rate: u64,
    workload: Workload,
    epoch_ms: Option<u64>,
    name: &[u8],
    now: std::time::Instant,
) -> Option<crate::rate::TokenBucket> {
    (rate > 0).then(|| {
        let shape = workload.with_seed(seed_for(name));
        crate::rate::TokenBucket::shaped(rate, shape, epoch_instant(epoch_ms, now), now)
    })
}

/// A seed for `jitter` that differs per input file, so keys do not move
/// in step: splitmix64 over the file name's bytes.
pub fn seed_for(name: &[u8]) -> u64 {
    name.iter().fold(0x5eed, |h, b| mix(h ^ u64::from(*b)))
}

/// splitmix64: a well-mixed 64-bit value from `x` (no state, no crate).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Workload {
    /// The same shape with its random sequence drawn from `seed` (only
    /// `jitter` has one).
    pub fn with_seed(self, seed: u64) -> Workload {
        match self {
            Workload::Jitter { fraction, .. } => Workload::Jitter { fraction, seed },
            other => other,
        }
    }

    /// The rate factor `t` seconds after the run's start.
    pub fn factor(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match *self {
            Workload::Constant => 1.0,
            Workload::Bursts { on, off } => {
                if t % (on + off) < on {
                    1.0
                } else {
                    0.0
                }
            }
            Workload::Ramp { period } => {
                let phase = (t % period) / period;
                if phase < 0.5 {
                    4.0 * phase
                } else {
                    4.0 * (1.0 - phase)
                }
            }
            Workload::Jitter { fraction, seed } => {
                let slot = t as u64;
                let u = (mix(seed ^ mix(slot)) >> 11) as f64 / (1u64 << 53) as f64;
                1.0 - fraction + 2.0 * fraction * u
            }
        }
    }

    /// When, at or after `t`, the factor is next above zero (`t` itself
    /// unless `t` falls in a burst's pause).
    pub fn next_active(&self, t: f64) -> f64 {
        match *self {
            Workload::Bursts { on, off } => {
                let phase = t.max(0.0) % (on + off);
                if phase < on {
                    t
                } else {
                    t + (on + off - phase)
                }
            }
            _ => t,
        }
    }

    /// The long-run mean factor.
    pub fn mean(&self) -> f64 {
        match *self {
            Workload::Bursts { on, off } => on / (on + off),
            _ => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_print_back() {
        for text in [
            "constant",
            "bursts:5/10",
            "ramp:60",
            "jitter:0.5",
            "bursts:0.5/1.5",
        ] {
            let w: Workload = text.parse().unwrap();
            assert_eq!(w.to_string(), text);
        }
        for bad in [
            "",
            "sine:3",
            "bursts:5",
            "bursts:5/0",
            "bursts:x/1",
            "ramp",
            "ramp:-1",
            "ramp:inf",
            "jitter:2",
            "jitter:nan",
            "constant:1",
        ] {
            let e = bad.parse::<Workload>().unwrap_err().to_string();
            assert!(e.contains("shapes: constant"), "{bad}: {e}");
        }
    }

    #[test]
    fn factors_follow_the_shape() {
        let b = Workload::Bursts { on: 2.0, off: 3.0 };
        assert_eq!(b.factor(0.0), 1.0);
        assert_eq!(b.factor(1.9), 1.0);
        assert_eq!(b.factor(2.0), 0.0);
        assert_eq!(b.factor(4.9), 0.0);
        assert_eq!(b.factor(5.0), 1.0);
        assert_eq!(b.next_active(3.0), 5.0);
        assert_eq!(b.next_active(6.0), 6.0);
        let r = Workload::Ramp { period: 10.0 };
        assert_eq!(r.factor(0.0), 0.0);
        assert_eq!(r.factor(2.5), 1.0);
        assert_eq!(r.factor(5.0), 2.0);
        assert_eq!(r.factor(7.5), 1.0);
        let j = Workload::Jitter {
            fraction: 0.5,
            seed: 7,
        };
        let fs: Vec<f64> = (0..200).map(|s| j.factor(s as f64 + 0.5)).collect();
        assert!(fs.iter().all(|f| (0.5..=1.5).contains(f)), "{fs:?}");
        assert_eq!(j.factor(3.1), j.factor(3.9), "one factor per second");
        assert_ne!(fs[0], fs[1]);
        let mean = fs.iter().sum::<f64>() / fs.len() as f64;
        assert!((mean - 1.0).abs() < 0.1, "mean {mean}");
        assert_ne!(j.with_seed(8).factor(0.5), j.factor(0.5));
    }

    #[test]
    fn every_shape_averages_its_mean_factor() {
        for w in [
            Workload::Constant,
            Workload::Ramp { period: 7.0 },
            Workload::Bursts { on: 1.0, off: 3.0 },
        ] {
            let n = 70_000;
            let avg = (0..n).map(|i| w.factor(i as f64 * 0.001)).sum::<f64>() / n as f64;
            assert!((avg - w.mean()).abs() < 0.01, "{w}: {avg} vs {}", w.mean());
        }
    }
}
