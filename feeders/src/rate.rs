//! A token bucket limiting payload bytes per second.
//!
//! The original feeder slept a fixed 50 ms between bursts and ended a burst
//! when its average since a reset exceeded the limit, which made the real
//! rate depend on line size and scheduling. A token bucket gives the
//! configured long-run rate with bounded bursts, whatever the line size.
//!
//! Sending is allowed while the balance is positive; a send may overdraw it
//! by one item (so an item larger than the bucket still goes out, and the
//! debt is then paid back by waiting).

use std::time::{Duration, Instant};

use crate::workload::Workload;

/// Bytes per second with a burst of [`TokenBucket::BURST_FRACTION`] of a
/// second's worth, optionally shaped over time by a [`Workload`].
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    shape: Workload,
    /// The instant the shape's time counts from (the run's start).
    epoch: Instant,
}

impl TokenBucket {
    /// The burst allowance, as a fraction of one second of traffic.
    pub const BURST_FRACTION: f64 = 0.05;

    /// The longest [`ready_at`](Self::ready_at) looks ahead while a shape
    /// is changing the rate: the caller refills and asks again.
    const SHAPED_WAIT_MAX: Duration = Duration::from_millis(250);

    /// A bucket for `bytes_per_sec` (> 0), starting full.
    pub fn new(bytes_per_sec: u64, now: Instant) -> TokenBucket {
        TokenBucket::shaped(bytes_per_sec, Workload::Constant, now, now)
    }

    /// A bucket whose rate is `bytes_per_sec` times `shape`'s factor at
    /// the time since `epoch`, starting full.
    pub fn shaped(
        bytes_per_sec: u64,
        shape: Workload,
        epoch: Instant,
        now: Instant,
    ) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        let capacity = (rate * Self::BURST_FRACTION).max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
            shape,
            epoch,
        }
    }

    fn since_epoch(&self, at: Instant) -> f64 {
        if at >= self.epoch {
            at.duration_since(self.epoch).as_secs_f64()
        } else {
            -self.epoch.duration_since(at).as_secs_f64()
        }
    }

    /// The rate in force at `at`.
    pub fn rate_at(&self, at: Instant) -> f64 {
        self.rate * self.shape.factor(self.since_epoch(at))
    }

    /// Adds the tokens earned since the last refill (at the rate in force
    /// half-way through, so a shape's changes are followed closely).
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        let mid = self.last + dt / 2;
        self.tokens = (self.tokens + dt.as_secs_f64() * self.rate_at(mid)).min(self.capacity);
        self.last = now;
    }

    /// Whether something may be sent now (after the last [`refill`](Self::refill)).
    pub fn may_send(&self) -> bool {
        self.tokens > 0.0
    }

    /// Pays for `bytes` just sent (the balance may go negative).
    pub fn consume(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// When sending will be allowed again (now if it already is). Under a
    /// shape this is a guess at most 250 ms ahead (or the end of a burst's
    /// pause): refill then and ask again.
    pub fn ready_at(&self) -> Instant {
        if self.tokens > 0.0 {
            return self.last;
        }
        let t = self.since_epoch(self.last);
        let rate = self.rate_at(self.last);
        if rate <= 0.0 {
            let resume = self.shape.next_active(t);
            let wait = Duration::from_secs_f64((resume - t).max(0.001));
            return self.last + wait;
        }
        // Just past the point where the balance turns positive.
        let wait = Duration::from_secs_f64((-self.tokens + 1.0) / rate);
        if self.shape == Workload::Constant {
            self.last + wait
        } else {
            self.last + wait.min(Self::SHAPED_WAIT_MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated sending of `item`-byte items for `secs` seconds.
    fn simulate(rate: u64, item: usize, secs: f64) -> f64 {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        let mut now = t0;
        let mut sent = 0usize;
        let end = t0 + Duration::from_secs_f64(secs);
        while now < end {
            b.refill(now);
            while b.may_send() {
                b.consume(item);
                sent += item;
            }
            now = b.ready_at().max(now + Duration::from_micros(1));
        }
        sent as f64
    }

    #[test]
    fn long_run_rate_matches_the_limit() {
        for (rate, item) in [(66_000, 49), (100_000, 50), (150, 49), (1000, 5000)] {
            let secs = 20.0;
            let got = simulate(rate, item, secs);
            let want = rate as f64 * secs;
            let slack = rate as f64 * TokenBucket::BURST_FRACTION + 2.0 * item as f64;
            assert!(
                (got - want).abs() <= slack,
                "rate {rate} item {item}: sent {got}, wanted {want}±{slack}"
            );
        }
    }

    /// Bytes sent per whole second of a shaped bucket over `secs` seconds.
    fn simulate_shaped(rate: u64, shape: Workload, item: usize, secs: usize) -> Vec<f64> {
        let t0 = Instant::now();
        let mut b = TokenBucket::shaped(rate, shape, t0, t0);
        let mut now = t0;
        let mut per_second = vec![0.0; secs];
        loop {
            let s = (now - t0).as_secs_f64() as usize;
            if s >= secs {
                return per_second;
            }
            b.refill(now);
            while b.may_send() {
                b.consume(item);
                per_second[s] += item as f64;
            }
            now = b.ready_at().max(now + Duration::from_micros(1));
        }
    }

    #[test]
    fn a_shaped_bucket_sends_what_the_shape_says_each_second() {
        let rate = 10_000;
        let bursts = simulate_shaped(rate, Workload::Bursts { on: 2.0, off: 3.0 }, 50, 20);
        for (s, sent) in bursts.iter().enumerate() {
            let want = if s % 5 < 2 { rate as f64 } else { 0.0 };
            // A burst starts with a full bucket: one burst allowance extra.
            assert!(
                (sent - want).abs() <= rate as f64 * 0.06 + 100.0,
                "second {s}: sent {sent}, wanted {want}: {bursts:?}"
            );
        }
        let ramp = simulate_shaped(rate, Workload::Ramp { period: 10.0 }, 50, 10);
        for (s, sent) in ramp.iter().enumerate() {
            let want = rate as f64 * Workload::Ramp { period: 10.0 }.factor(s as f64 + 0.5);
            assert!(
                (sent - want).abs() <= rate as f64 * 0.1 + 100.0,
                "second {s}: sent {sent}, wanted {want}: {ramp:?}"
            );
        }
        let total: f64 = ramp.iter().sum();
        assert!(
            (total - 10.0 * rate as f64).abs() < 0.05 * 10.0 * rate as f64,
            "{total}"
        );
    }

    #[test]
    fn an_empty_bucket_says_when_it_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.may_send());
        b.consume(550);
        assert!(!b.may_send());
        // 500 bytes of debt at 1000 B/s: about half a second.
        let wait = b.ready_at() - t0;
        assert!(wait >= Duration::from_millis(500) && wait < Duration::from_millis(503));
        b.refill(b.ready_at());
        assert!(b.may_send());
    }
}
