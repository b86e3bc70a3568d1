//! The `rate_limit` filter: a token bucket (GCRA) shared by every worker, over capture time.
//! Lock-free (one atomic), because every worker asks it for every request that got this far.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::segment::Timestamp;

/// A token bucket shared by every worker, as the theoretical arrival time of the next request
/// (GCRA): one atomic, no lock.
pub(super) struct RateLimiter {
    /// Nanoseconds between two requests at the rate.
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
    tat: AtomicU64,
}

impl RateLimiter {
    pub(super) fn new(rate: f64, burst: u64) -> RateLimiter {
        let interval = (1e9 / rate).clamp(1.0, u64::MAX as f64 / 4.0) as u64;
        RateLimiter {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            tat: AtomicU64::new(0),
        }
    }

    /// Whether a request at capture time `now` fits. Workers may call with slightly
    /// out-of-order times: the earlier one counts from the later arrival time.
    pub(super) fn admit(&self, now: Timestamp) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(self.interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(t) => tat = t,
            }
        }
    }
}
