//! Reachability: the breaker that stops the pool from connecting while the upstream is down,
//! the backoff (shared by the prober and by a pool task after a failed exchange), and the
//! prober that connects on its own until the upstream is back (the policy is in the parent's
//! top comment). Touches only the pool's shared state (`super::pool::Shared`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pool::Shared;

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between probes of an unreachable upstream (and of a task after a failed
/// exchange). It bounds how long replay takes to resume once the upstream is back, whatever
/// the length of the outage, so it stays well under a second; a connect attempt four times a
/// second per node is no load for a WAF's load balancer.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Probes pending at once, at most: with the defaults (2 s connect timeout, a probe every
/// 250 ms) about 8 are; this only matters with a much longer connect timeout.
const MAX_PROBES: usize = 16;
/// How often an idle prober looks whether the pool has ended.
const PROBER_IDLE_CHECK: Duration = Duration::from_millis(250);

/// Whether the pool may connect: closed (yes) until a connect fails, then open (no: only the
/// prober connects) until a connect succeeds.
#[derive(Default)]
pub(super) struct Breaker {
    state: Mutex<BreakerState>,
    /// Wakes the prober when the breaker opens.
    opened: tokio::sync::Notify,
}

#[derive(Default)]
struct BreakerState {
    open: bool,
    /// The prober's current spacing; zero when closed.
    backoff: Duration,
    /// Bumped by every success: a connect that started before it and fails after it says
    /// nothing about the upstream now (a SYN sent during the outage, timing out), so it must
    /// not reopen the breaker.
    generation: u64,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a pool task connect now? The generation to report a failure with, or None while the
    /// upstream is unreachable.
    pub(super) fn admit(&self) -> Option<u64> {
        let s = self.lock();
        (!s.open).then_some(s.generation)
    }

    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(super) fn is_open(&self) -> bool {
        self.lock().open
    }

    pub(super) fn succeeded(&self) {
        let mut s = self.lock();
        *s = BreakerState {
            generation: s.generation.wrapping_add(1),
            ..BreakerState::default()
        };
    }

    /// A connect that started at `generation` failed. Returns whether it still tells anything
    /// (false for one from before the last success); if so the breaker is open now.
    pub(super) fn failed(&self, generation: u64) -> bool {
        let mut s = self.lock();
        if generation != s.generation {
            return false;
        }
        if !s.open {
            s.open = true;
            drop(s);
            self.opened.notify_one();
        }
        true
    }

    /// While open: how long the prober waits before its next attempt (the backoff, doubled
    /// each time up to its cap). None while closed.
    pub(super) fn next_probe_in(&self) -> Option<Duration> {
        let mut s = self.lock();
        if !s.open {
            return None;
        }
        s.backoff = next_backoff(s.backoff);
        Some(s.backoff)
    }
}

pub(super) fn next_backoff(cur: Duration) -> Duration {
    if cur.is_zero() {
        BACKOFF_MIN
    } else {
        (cur * 2).min(BACKOFF_MAX)
    }
}

impl Shared {
    /// One connect attempt that carries no request, while the breaker is open. The connection
    /// is left for the pool's next request (one at a time: later ones are closed).
    pub(super) async fn probe(self: Arc<Self>) {
        let generation = self.breaker.generation();
        match self.connect().await {
            Ok(mut conn) => {
                conn.probed = true;
                self.spare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(conn);
                self.metrics.probes_connected.inc();
                if self.breaker.is_open() {
                    tracing::info!(upstream = %self.addr_text, "upstream accepts connections again");
                }
                self.breaker.succeeded();
                self.mark(true, "");
            }
            Err(f) => {
                self.metrics.probes_failed.inc();
                tracing::debug!(upstream = %self.addr_text, error = %f, "probe failed");
                if self.breaker.failed(generation) {
                    self.mark(false, &f.to_string());
                }
            }
        }
    }
}

/// Probes the upstream while the breaker is open, independently of traffic (so `/readyz`
/// recovers without requests too) and of the pool (so no request waits on a probe). Ends with
/// the pool (after a drain, too: an upstream back during it still gets the rest); dropping the
/// set aborts the probes still pending.
pub(super) async fn prober(shared: Arc<Shared>) {
    let mut probes = tokio::task::JoinSet::new();
    while shared.workers_left.load(Ordering::Relaxed) > 0 {
        while probes.try_join_next().is_some() {}
        match shared.breaker.next_probe_in() {
            None => {
                // Closed: sleep until it opens, looking at the pool now and then.
                let _ =
                    tokio::time::timeout(PROBER_IDLE_CHECK, shared.breaker.opened.notified()).await;
            }
            Some(wait) => {
                tokio::time::sleep(wait).await;
                if shared.breaker.is_open() && probes.len() < MAX_PROBES {
                    probes.spawn(Arc::clone(&shared).probe());
                }
            }
        }
    }
}
