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

/// Bytes per second with a burst of [`TokenBucket::BURST_FRACTION`] of a
/// second's worth.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// The burst allowance, as a fraction of one second of traffic.
    pub const BURST_FRACTION: f64 = 0.05;

    /// A bucket for `bytes_per_sec` (> 0), starting full.
    pub fn new(bytes_per_sec: u64, now: Instant) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        let capacity = (rate * Self::BURST_FRACTION).max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Adds the tokens earned since the last refill.
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
    }

    /// Whether something may be sent now (after the last [`refill`](Self::refill)).
    pub fn may_send(&self) -> bool {
        self.tokens > 0.0
    }

    /// Pays for `bytes` just sent (the balance may go negative).
    pub fn consume(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// When sending will be allowed again (now if it already is).
    pub fn ready_at(&self) -> Instant {
        if self.tokens > 0.0 {
            return self.last;
        }
        // Just past the point where the balance turns positive.
        let wait = (-self.tokens + 1.0) / self.rate;
        self.last + Duration::from_secs_f64(wait)
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
