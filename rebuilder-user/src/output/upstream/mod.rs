//! Byte-exact replay to an HTTP/1.1 upstream (the WAF) over a pool of keep-alive connections.
//!
//! Why not an HTTP client: a WAF must see malformed and hostile requests exactly as sent, which
//! a normalising client (hyper included) cannot produce (DESIGN §3). So each pool task writes the
//! request's raw bytes itself and only frames the response, to know where it ends and reuse the
//! connection.
//!
//! Failure policy:
//! - A reused keep-alive connection that fails before any response byte (the upstream closed it
//!   while idle) is retried once on a fresh connection: not an error, counted as a stale retry.
//! - A failed connect opens a shared breaker: while it is open no pool task connects, and
//!   requests that would need a new connection are dropped at once (kind `unreachable`). A
//!   prober task of its own connects instead, carrying no request: after 50 ms, then each time
//!   a backoff doubling to `breaker::BACKOFF_MAX` (250 ms) ends, without waiting for the attempts
//!   before it; the first that connects closes the breaker. So a dead upstream costs one cheap
//!   drop per request and a few connect attempts a second, the queue keeps flowing (offline
//!   replays do not crawl, and no backlog goes stale waiting for the upstream), and replay
//!   resumes within a backoff of the upstream's return, however long it was away: the cap, not
//!   the outage's length, bounds the wait. Probes overlap because an upstream whose host is gone
//!   drops SYNs: one attempt then hangs for `connect_timeout` (the kernel resends its SYN only
//!   after 1 s, then 3 s), and waiting for it would leave the return unseen for seconds. Nor do
//!   probes hold a pool task or a request, so however many are pending, the queue drains. The
//!   connection a successful probe opened serves the pool's next request. Probes are counted in
//!   `rebuilder_upstream_probes_total{outcome}`, not as replay errors: no request was lost.
//! - Any other failure (write, timeout, invalid response, reset) drops the request, closes that
//!   connection, and makes that task pause for its own backoff (the same doubling and cap,
//!   less the time the failed attempt already took) before the next request, so an upstream
//!   that fails fast cannot make the pool spin, and one that fails slowly (hangs) is not kept
//!   waiting longer than it takes.
//!
//! One module per job:
//! - `config`: what the operator configures ([`UpstreamConfig`]) and where the upstream is
//!   ([`UpstreamAddr`], from its URL).
//! - `pool`: the state the pool tasks share, and opening connections through the breaker.
//! - `breaker`: whether the upstream is reachable, the backoff, and the prober that finds out
//!   when it is back.
//! - `exchange`: writing one request and reading its response to the end (framed by
//!   `crate::http1::ResponseFramer`).
//! - `task`: one pool task: takes requests from the queue, replays them (resending once on a
//!   stale keep-alive connection), counts the outcome, pauses after a failure.
//! - `failure`: why one replay failed, and how that is counted.
//! - `h2c`: HTTP/2 streams' requests over an HTTP/2 connection instead.
//!
//! May touch: the output queue and metrics (`super`), `crate::http1` for response framing, and
//! `crate::status::Health` to report reachability; nothing upstream of the outputs.

mod breaker;
mod config;
mod exchange;
mod failure;
mod h2c;
mod pool;
mod task;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::metrics::UpstreamMetrics;
use super::queue::Queue;
use crate::status::Health;
use breaker::{prober, Breaker};
use failure::Failure;
use pool::{Shared, REACH_UNKNOWN};
use task::Worker;

pub use config::{UpstreamAddr, UpstreamConfig, UpstreamProtocol};

/// Starts the pool; the tasks end when the queue is closed and empty.
pub(crate) fn spawn(
    cfg: &UpstreamConfig,
    addr: UpstreamAddr,
    queue: Arc<Queue>,
    health: Arc<Health>,
    metrics: UpstreamMetrics,
    rt: &tokio::runtime::Handle,
) -> Vec<JoinHandle<()>> {
    let shared = Arc::new(Shared {
        addr_text: addr.to_string(),
        addr,
        connect_timeout: cfg.connect_timeout,
        response_timeout: cfg.response_timeout,
        adds: cfg.header_adds(),
        queue,
        breaker: Breaker::default(),
        health,
        reach: AtomicU8::new(REACH_UNKNOWN),
        spare: Mutex::new(None),
        workers_left: AtomicUsize::new(cfg.pool_size),
        metrics,
        last_warn: Mutex::new(None),
        h2c: (cfg.protocol == UpstreamProtocol::H2c).then(h2c::H2cClient::default),
    });
    // Not among the handles a drain waits for: it ends by itself once the pool has.
    rt.spawn(prober(Arc::clone(&shared)));
    (0..cfg.pool_size)
        .map(|i| {
            let w = Worker {
                shared: Arc::clone(&shared),
                conn: None,
                backoff: Duration::ZERO,
            };
            rt.spawn(w.run(i == 0))
        })
        .collect()
}
