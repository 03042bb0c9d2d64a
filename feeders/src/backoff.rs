//! Exponential back-off for the drivers that talk to a cluster over a
//! client library (`nats-feed`, `nats-sink`, `redis-feed`, `redis-sink`).

use std::time::Duration;

use crate::log::Logger;

/// Exponential back-off between retries, 50 ms doubling to 1 s, logging
/// the first failure of a run of failures and then every tenth (as a
/// warning: the soak reads `ERROR` in a sink log as a violation, and a
/// cluster fault is the cluster's business, checked by the output).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
}

impl Backoff {
    /// First delay.
    pub const MIN: Duration = Duration::from_millis(50);
    /// Longest delay.
    pub const MAX: Duration = Duration::from_secs(1);

    /// A back-off with no failure yet.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The delay after `failures` consecutive failures.
    pub fn delay_for(failures: u64) -> Duration {
        let shift = failures.saturating_sub(1).min(10) as u32;
        (Self::MIN * 2u32.pow(shift)).min(Self::MAX)
    }

    /// Records a failure, logs it (sparsely) and waits before the retry.
    pub async fn fail(&mut self, log: &Logger, what: std::fmt::Arguments<'_>) {
        self.failures += 1;
        let delay = Self::delay_for(self.failures);
        if self.failures == 1 || self.failures % 10 == 0 {
            log.warn(format_args!(
                "{what}; retry #{} in {} ms",
                self.failures,
                delay.as_millis()
            ));
        }
        tokio::time::sleep(delay).await;
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_50_ms_to_1_s() {
        assert_eq!(Backoff::delay_for(1), Duration::from_millis(50));
        assert_eq!(Backoff::delay_for(2), Duration::from_millis(100));
        assert_eq!(Backoff::delay_for(5), Duration::from_millis(800));
        assert_eq!(Backoff::delay_for(6), Duration::from_secs(1));
        assert_eq!(Backoff::delay_for(1000), Duration::from_secs(1));
    }
}
