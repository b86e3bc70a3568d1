//! The pool's shared state: where the upstream is, its settings, the queue, the breaker, the
//! metrics and health it reports to, and a connection a probe left; and opening a connection
//! (through the breaker, counted, reachability reported). Every pool task holds it in an `Arc`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::breaker::Breaker;
use super::failure::Failure;
use super::{h2c, UpstreamAddr};
use crate::output::headers::HeaderAdds;
use crate::output::metrics::UpstreamMetrics;
use crate::output::queue::Queue;
use crate::status::Health;

pub(super) const REACH_UNKNOWN: u8 = 0;
pub(super) const REACH_UP: u8 = 1;
pub(super) const REACH_DOWN: u8 = 2;

pub(super) struct Shared {
    pub(super) addr: UpstreamAddr,
    pub(super) addr_text: String,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) adds: HeaderAdds,
    pub(super) queue: Arc<Queue>,
    pub(super) breaker: Breaker,
    pub(super) health: Arc<Health>,
    /// A connection opened by a probe, for the pool's next request.
    pub(super) spare: Mutex<Option<Conn>>,
    /// Pool tasks still running: the prober stops when none is.
    pub(super) workers_left: AtomicUsize,
    /// Mirrors what was last told to `health`, so the hot path does not take its lock.
    pub(super) reach: AtomicU8,
    pub(super) metrics: UpstreamMetrics,
    /// Last time a replay failure was logged at warn level (they are rate limited).
    pub(super) last_warn: Mutex<Option<Instant>>,
    /// With `--upstream-protocol h2c`: the HTTP/2 connection HTTP/2 streams' requests go on.
    pub(super) h2c: Option<h2c::H2cClient>,
}

impl Shared {
    pub(super) fn mark(&self, up: bool, reason: &str) {
        let want = if up { REACH_UP } else { REACH_DOWN };
        if self.reach.swap(want, Ordering::Relaxed) != want {
            self.health.set_upstream(up, reason);
        }
    }

    pub(super) fn warn(&self, f: &Failure) {
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            *last = Some(now);
            tracing::warn!(upstream = %self.addr_text, error = %f, "replay failed (further failures logged at debug for 10 s)");
        } else {
            tracing::debug!(upstream = %self.addr_text, error = %f, "replay failed");
        }
    }

    pub(super) async fn connect(&self) -> Result<Conn, Failure> {
        let fut = TcpStream::connect((self.addr.host.as_str(), self.addr.port));
        let stream = match tokio::time::timeout(self.connect_timeout, fut).await {
            Err(_) => {
                return Err(Failure::ConnectTimeout {
                    addr: self.addr_text.clone(),
                    after: self.connect_timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(Failure::Connect {
                    addr: self.addr_text.clone(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        // Requests are written whole; Nagle would only add latency to the last segment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY failed");
        }
        self.metrics.connections_opened.inc();
        Ok(Conn {
            stream,
            responses: 0,
            probed: false,
            buf: Vec::new(),
        })
    }

    /// A new connection, unless the breaker says the upstream is down.
    pub(super) async fn open(&self) -> Result<Conn, Failure> {
        let Some(generation) = self.breaker.admit() else {
            return Err(Failure::Unreachable);
        };
        match self.connect().await {
            Ok(c) => {
                self.breaker.succeeded();
                self.mark(true, "");
                Ok(c)
            }
            Err(f) => {
                if self.breaker.failed(generation) {
                    self.mark(false, &f.to_string());
                }
                Err(f)
            }
        }
    }

    /// A connection a probe opened, if one is waiting.
    pub(super) fn take_spare(&self) -> Option<Conn> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// Responses completed on this connection: > 0 means it is a reused keep-alive connection.
    pub(super) responses: u64,
    /// Opened by a probe and left idle for the pool: like a reused connection, the upstream
    /// may have closed it meanwhile.
    pub(super) probed: bool,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    /// Whether the upstream already closed (or wrote unsolicited bytes on) this idle connection.
    /// Best effort: a close that the reactor has not seen yet is caught by the stale retry.
    pub(super) fn looks_closed(&self) -> bool {
        let mut b = [0u8; 1];
        !matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
