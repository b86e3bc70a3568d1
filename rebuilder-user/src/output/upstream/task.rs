//! One pool task: takes requests from the queue, replays each (over HTTP/2 when `h2c` can carry
//! it, else byte-exact on its keep-alive connection, resending once when a reused connection
//! turns out to have been closed), counts the outcome, and pauses for its backoff after a
//! failure so a failing upstream cannot make the pool spin.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::next_backoff;
use super::exchange::exchange;
use super::failure::Failure;
use super::h2c;
use super::pool::{Conn, Shared};
use crate::output::queue::Taken;
use crate::output::DropReason;

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Option<Conn>,
    /// This task's pause after an exchange failure; zero after a success.
    pub(super) backoff: Duration,
}

impl Worker {
    async fn replay(&mut self, payload: &[u8], is_head: bool) -> Result<u16, Failure> {
        let mut retried = false;
        loop {
            let mut conn = match self.conn.take().or_else(|| self.shared.take_spare()) {
                Some(c) if !c.looks_closed() => c,
                _ => self.shared.open().await?,
            };
            let reused = conn.responses > 0 || conn.probed;
            let started = Instant::now();
            let result = match tokio::time::timeout(
                self.shared.response_timeout,
                exchange(&mut conn, payload, is_head),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Failure::ResponseTimeout(self.shared.response_timeout)),
            };
            match result {
                Ok(answer) => {
                    self.shared
                        .metrics
                        .latency
                        .observe(started.elapsed().as_secs_f64());
                    if answer.keep_alive {
                        conn.responses += 1;
                        self.conn = Some(conn);
                    }
                    return Ok(answer.status);
                }
                Err(f) if reused && !retried && f.before_any_response() => {
                    tracing::debug!(error = %f, "idle keep-alive connection was closed by the upstream; resending");
                    self.shared.metrics.stale_retries.inc();
                    retried = true;
                }
                Err(f) => return Err(f),
            }
        }
    }

    async fn handle(&mut self, taken: Taken) {
        let req = taken.request();
        let payload = self
            .shared
            .adds
            .apply(&req.raw, req.head_len, client_ip(req), req.vni);
        let is_head = req.raw.get(req.method.clone()) == Some(b"HEAD".as_slice());
        let started = Instant::now();
        let over_h2 = match (&self.shared.h2c, &req.h2) {
            (Some(client), Some(origin)) if !h2c::is_connect(req) => {
                match h2c::build(&payload, origin, &self.shared.addr_text) {
                    Ok(request) => Some((client, request)),
                    Err(h2c::NotRepresentable(why)) => {
                        tracing::debug!(%why, "HTTP/2 cannot carry this request; replayed over HTTP/1.1");
                        None
                    }
                }
            }
            _ => None,
        };
        let result = match over_h2 {
            Some((client, request)) => client.replay(&self.shared, request).await,
            None => self.replay(&payload, is_head).await,
        };
        match result {
            Ok(status) => {
                self.shared.metrics.replayed.inc();
                self.shared.metrics.response(status).inc();
                self.shared.mark(true, "");
                self.backoff = Duration::ZERO;
                taken.done();
            }
            Err(f) => {
                self.shared.metrics.error(f.kind()).inc();
                taken.drop_as(DropReason::UpstreamError);
                if !matches!(f, Failure::Unreachable) {
                    self.shared.warn(&f);
                }
                if !f.is_connect() {
                    // The pause keeps a fast-failing upstream from making the pool spin; an
                    // attempt that already took that long (a response timeout) needs none, and
                    // pausing anyway would only delay noticing that the upstream is back.
                    self.backoff = next_backoff(self.backoff);
                    let pause = self.backoff.saturating_sub(started.elapsed());
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    }

    pub(super) async fn run(mut self, first: bool) {
        if first {
            // Learn reachability at start instead of at the first request, and keep the
            // connection for it.
            if let Ok(c) = self.shared.open().await {
                self.conn = Some(c);
            }
        }
        while let Some(taken) = self.shared.queue.pop().await {
            self.handle(taken).await;
        }
    }
}

impl Drop for Worker {
    /// Also when a drain deadline aborts the task.
    fn drop(&mut self) {
        self.shared.workers_left.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The source a PROXY header carried when the connection had one (the load balancer's own
/// address is the connection's source then), else the connection's source.
fn client_ip(req: &crate::request::RebuiltRequest) -> IpAddr {
    req.client_ip()
}
