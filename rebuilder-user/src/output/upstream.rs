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
//!   a backoff doubling to [`BACKOFF_MAX`] (250 ms) ends, without waiting for the attempts
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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::headers::HeaderAdds;
use super::metrics::{ErrorKind, UpstreamMetrics};
use super::queue::Queue;
use super::{DropReason, OutputError, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_REQUESTS};
use crate::http1::{ResponseError, ResponseFramer};
use crate::status::Health;

/// Largest response head the framer accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Unconsumed response bytes beyond this mean the framer is not making progress.
const MAX_RESPONSE_BUFFER: usize = MAX_RESPONSE_HEAD + READ_CHUNK;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `http://HOST[:PORT][/]`. HOST may be a name (resolved at every connect, so a load
    /// balancer's changing addresses are followed), an IPv4 address or a bracketed IPv6 one.
    pub url: String,
    /// Concurrent connections (one task each).
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// From the start of writing a request to the end of its response.
    pub response_timeout: Duration,
    pub queue_requests: usize,
    pub queue_bytes: usize,
    /// Name of the header carrying the client IP (appended proxy-style); None: not added.
    pub client_ip_header: Option<String>,
    /// Name of the header carrying the VNI; None: not added.
    pub vni_header: Option<String>,
    /// How requests rebuilt from HTTP/2 streams are replayed (HTTP/1.x requests always go
    /// byte-exact over HTTP/1.1).
    pub protocol: UpstreamProtocol,
}

/// How HTTP/2 streams' requests reach the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// As their HTTP/1.1 rendering, over the byte-exact keep-alive pool.
    #[default]
    Http1,
    /// Over an HTTP/2 connection with prior knowledge (h2c), fields and trailers as HTTP/2
    /// carries them, for a WAF that listens for HTTP/2.
    H2c,
}

impl UpstreamConfig {
    pub const DEFAULT_POOL_SIZE: usize = 16;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            queue_requests: DEFAULT_QUEUE_REQUESTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            client_ip_header: None,
            vni_header: None,
            protocol: UpstreamProtocol::Http1,
        }
    }

    fn header_adds(&self) -> HeaderAdds {
        HeaderAdds {
            client_ip: self.client_ip_header.clone(),
            vni: self.vni_header.clone(),
        }
    }

    pub(crate) fn validate(&self) -> Result<UpstreamAddr, OutputError> {
        let addr = UpstreamAddr::parse(&self.url)?;
        for (what, v) in [
            ("upstream pool_size", self.pool_size),
            ("upstream queue_requests", self.queue_requests),
            ("upstream queue_bytes", self.queue_bytes),
        ] {
            if v == 0 {
                return Err(OutputError::Zero { what });
            }
        }
        for (what, d) in [
            ("upstream connect_timeout", self.connect_timeout),
            ("upstream response_timeout", self.response_timeout),
        ] {
            if d.is_zero() {
                return Err(OutputError::Zero { what });
            }
        }
        self.header_adds().validate()?;
        Ok(addr)
    }
}

/// Where the upstream is, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

impl UpstreamAddr {
    pub fn parse(url: &str) -> Result<Self, OutputError> {
        let invalid = |reason: &str| OutputError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected http://HOST:PORT"))?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(OutputError::Https {
                url: url.to_string(),
            });
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid("the scheme must be http"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") {
            return Err(invalid(
                "a path, query or fragment is not supported: requests are replayed with their own targets",
            ));
        }
        if authority.contains('@') {
            return Err(invalid("user information is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("invalid IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("unexpected text after the IPv6 address"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(invalid("an IPv6 address must be in brackets"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(invalid("invalid port")),
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether the pool may connect: closed (yes) until a connect fails, then open (no: only the
/// prober connects) until a connect succeeds.
#[derive(Default)]
struct Breaker {
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
    fn admit(&self) -> Option<u64> {
        let s = self.lock();
        (!s.open).then_some(s.generation)
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn is_open(&self) -> bool {
        self.lock().open
    }

    fn succeeded(&self) {
        let mut s = self.lock();
        *s = BreakerState {
            generation: s.generation.wrapping_add(1),
            ..BreakerState::default()
        };
    }

    /// A connect that started at `generation` failed. Returns whether it still tells anything
    /// (false for one from before the last success); if so the breaker is open now.
    fn failed(&self, generation: u64) -> bool {
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
    fn next_probe_in(&self) -> Option<Duration> {
        let mut s = self.lock();
        if !s.open {
            return None;
        }
        s.backoff = next_backoff(s.backoff);
        Some(s.backoff)
    }
}

fn next_backoff(cur: Duration) -> Duration {
    if cur.is_zero() {
        BACKOFF_MIN
    } else {
        (cur * 2).min(BACKOFF_MAX)
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("upstream in reconnect backoff")]
    Unreachable,
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {addr}: timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("no complete response within {0:?}")]
    ResponseTimeout(Duration),
    #[error("invalid response: {0}")]
    Invalid(String),
    #[error("connection closed before the response was complete{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Reset {
        got_bytes: bool,
        source: Option<std::io::Error>,
    },
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Unreachable => ErrorKind::Unreachable,
            Failure::Connect { .. } => ErrorKind::Connect,
            Failure::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            Failure::Write(_) => ErrorKind::Write,
            Failure::ResponseTimeout(_) => ErrorKind::ResponseTimeout,
            Failure::Invalid(_) => ErrorKind::InvalidResponse,
            Failure::Reset { .. } => ErrorKind::Reset,
        }
    }

    /// Failed before the upstream said anything about this request, so resending it cannot
    /// duplicate it (modulo an upstream that processed it and closed without answering).
    fn before_any_response(&self) -> bool {
        matches!(
            self,
            Failure::Write(_)
                | Failure::Reset {
                    got_bytes: false,
                    ..
                }
        )
    }

    fn is_connect(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable | Failure::Connect { .. } | Failure::ConnectTimeout { .. }
        )
    }
}

mod h2c;

const REACH_UNKNOWN: u8 = 0;
const REACH_UP: u8 = 1;
const REACH_DOWN: u8 = 2;

struct Shared {
    addr: UpstreamAddr,
    addr_text: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    adds: HeaderAdds,
    queue: Arc<Queue>,
    breaker: Breaker,
    health: Arc<Health>,
    /// A connection opened by a probe, for the pool's next request.
    spare: Mutex<Option<Conn>>,
    /// Pool tasks still running: the prober stops when none is.
    workers_left: AtomicUsize,
    /// Mirrors what was last told to `health`, so the hot path does not take its lock.
    reach: AtomicU8,
    metrics: UpstreamMetrics,
    /// Last time a replay failure was logged at warn level (they are rate limited).
    last_warn: Mutex<Option<Instant>>,
    /// With `--upstream-protocol h2c`: the HTTP/2 connection HTTP/2 streams' requests go on.
    h2c: Option<h2c::H2cClient>,
}

impl Shared {
    fn mark(&self, up: bool, reason: &str) {
        let want = if up { REACH_UP } else { REACH_DOWN };
        if self.reach.swap(want, Ordering::Relaxed) != want {
            self.health.set_upstream(up, reason);
        }
    }

    fn warn(&self, f: &Failure) {
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            *last = Some(now);
            tracing::warn!(upstream = %self.addr_text, error = %f, "replay failed (further failures logged at debug for 10 s)");
        } else {
            tracing::debug!(upstream = %self.addr_text, error = %f, "replay failed");
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
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
    async fn open(&self) -> Result<Conn, Failure> {
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
    fn take_spare(&self) -> Option<Conn> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// One connect attempt that carries no request, while the breaker is open. The connection
    /// is left for the pool's next request (one at a time: later ones are closed).
    async fn probe(self: Arc<Self>) {
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

struct Conn {
    stream: TcpStream,
    /// Responses completed on this connection: > 0 means it is a reused keep-alive connection.
    responses: u64,
    /// Opened by a probe and left idle for the pool: like a reused connection, the upstream
    /// may have closed it meanwhile.
    probed: bool,
    buf: Vec<u8>,
}

impl Conn {
    /// Whether the upstream already closed (or wrote unsolicited bytes on) this idle connection.
    /// Best effort: a close that the reactor has not seen yet is caught by the stale retry.
    fn looks_closed(&self) -> bool {
        let mut b = [0u8; 1];
        !matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

struct Answer {
    status: u16,
    keep_alive: bool,
}

/// Writes `payload` and reads its response to the end.
async fn exchange(conn: &mut Conn, payload: &[u8], is_head: bool) -> Result<Answer, Failure> {
    conn.stream
        .write_all(payload)
        .await
        .map_err(Failure::Write)?;
    let mut framer = ResponseFramer::new(is_head, MAX_RESPONSE_HEAD);
    conn.buf.clear();
    let mut got_bytes = false;
    loop {
        if conn.buf.len() >= MAX_RESPONSE_BUFFER {
            return Err(Failure::Invalid(format!(
                "framer made no progress on {} bytes",
                conn.buf.len()
            )));
        }
        conn.buf.reserve(READ_CHUNK);
        let n = conn
            .stream
            .read_buf(&mut conn.buf)
            .await
            .map_err(|e| Failure::Reset {
                got_bytes,
                source: Some(e),
            })?;
        if n == 0 {
            if !got_bytes {
                return Err(Failure::Reset {
                    got_bytes,
                    source: None,
                });
            }
            return match framer.on_eof() {
                Ok(status) => Ok(Answer {
                    status,
                    keep_alive: false,
                }),
                Err(ResponseError::Incomplete) => Err(Failure::Reset {
                    got_bytes,
                    source: None,
                }),
                Err(e) => Err(Failure::Invalid(e.to_string())),
            };
        }
        got_bytes = true;
        // Feed until the framer stops consuming: one read may hold an interim 1xx response and
        // the final one.
        loop {
            let p = framer
                .feed(&conn.buf)
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            let consumed = p.consumed.min(conn.buf.len());
            conn.buf.drain(..consumed);
            if p.complete {
                // Bytes after the response were not asked for: the connection is out of step.
                let keep_alive = p.keep_alive && conn.buf.is_empty();
                return Ok(Answer {
                    status: p.status.unwrap_or(0),
                    keep_alive,
                });
            }
            if consumed == 0 || conn.buf.is_empty() {
                break;
            }
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    /// This task's pause after an exchange failure; zero after a success.
    backoff: Duration,
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

    async fn handle(&mut self, taken: super::queue::Taken) {
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

    async fn run(mut self, first: bool) {
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

/// Probes the upstream while the breaker is open, independently of traffic (so `/readyz`
/// recovers without requests too) and of the pool (so no request waits on a probe). Ends with
/// the pool (after a drain, too: an upstream back during it still gets the rest); dropping the
/// set aborts the probes still pending.
async fn prober(shared: Arc<Shared>) {
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

/// The source a PROXY header carried when the connection had one (the load balancer's own
/// address is the connection's source then), else the connection's source.
fn client_ip(req: &crate::request::RebuiltRequest) -> IpAddr {
    req.client_ip()
}

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

#[cfg(test)]
mod tests {
    //! End to end on loopback against a tiny HTTP sink. These exercise the response framer
    //! (`crate::http1::response`) through the real exchange path.

    use super::*;
    use crate::output::tests::{request, request_from};
    use crate::output::{Mode, Outputs, OutputsConfig};
    use crate::request::RebuiltRequest;
    use prometheus_client::registry::Registry;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Behaviour {
        Answer,
        /// Answer each request after a pause.
        Slow(Duration),
        /// Read requests, never answer.
        Hang,
        /// Answer with bytes that are not HTTP.
        Garbage,
        /// Answer the first request of each connection; on the second, close without a byte
        /// (the race where an upstream closes an idle keep-alive connection as a request
        /// arrives).
        CloseOnSecond,
        /// Answer, then close the connection once it has been idle this long.
        CloseIdle(Duration),
    }

    #[derive(Default)]
    struct SinkState {
        accepted: AtomicUsize,
        /// (connection number, exact request bytes) of every request answered.
        answered: Mutex<Vec<(usize, Vec<u8>)>>,
        /// Every byte received, per connection number.
        received: Mutex<Vec<Vec<u8>>>,
        active: AtomicUsize,
        max_active: AtomicUsize,
    }

    struct Sink {
        addr: SocketAddr,
        state: Arc<SinkState>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Sink {
        fn answered(&self) -> Vec<(usize, Vec<u8>)> {
            self.state.answered.lock().unwrap().clone()
        }
        fn accepted(&self) -> usize {
            self.state.accepted.load(Ordering::SeqCst)
        }
    }

    impl Drop for Sink {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Length of the first whole request in `buf`, by Content-Length or chunked framing.
    fn request_len(buf: &[u8]) -> Option<usize> {
        let (head_end, sep) = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => (p + 4, 4),
            None => (buf.windows(2).position(|w| w == b"\n\n")? + 2, 2),
        };
        let head = String::from_utf8_lossy(&buf[..head_end - sep]).to_ascii_lowercase();
        let mut len = 0usize;
        let mut chunked = false;
        for line in head.lines().skip(1) {
            if let Some(v) = line.strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
            if line.starts_with("transfer-encoding:") && line.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            // The last chunk ("0" line), then the trailers up to an empty line.
            let body = &buf[head_end..];
            let last = if body.starts_with(b"0\r\n") {
                0
            } else {
                body.windows(5).position(|w| w == b"\r\n0\r\n")? + 2
            };
            let end = body[last..].windows(4).position(|w| w == b"\r\n\r\n")?;
            return Some(head_end + last + end + 4);
        }
        (buf.len() >= head_end + len).then_some(head_end + len)
    }

    async fn sink_on(listener: TcpListener, behaviour: Behaviour) -> Sink {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(SinkState::default());
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let conn = st.accepted.fetch_add(1, Ordering::SeqCst);
                st.received.lock().unwrap().push(Vec::new());
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    loop {
                        let mut chunk = [0u8; 4096];
                        let read = match behaviour {
                            Behaviour::CloseIdle(idle) if served > 0 && buf.is_empty() => {
                                match tokio::time::timeout(idle, s.read(&mut chunk)).await {
                                    Ok(r) => r,
                                    Err(_) => return,
                                }
                            }
                            _ => s.read(&mut chunk).await,
                        };
                        let n = match read {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        st.received.lock().unwrap()[conn].extend_from_slice(&chunk[..n]);
                        while let Some(len) = request_len(&buf) {
                            let req: Vec<u8> = buf.drain(..len).collect();
                            let resp: &[u8] = match behaviour {
                                Behaviour::Hang => {
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                Behaviour::Garbage => b"SPLAT\x00\x01 nonsense\r\n\r\n",
                                Behaviour::CloseOnSecond if served == 1 => return,
                                _ if req.starts_with(b"HEAD ") => {
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                                }
                                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                            };
                            let now = st.active.fetch_add(1, Ordering::SeqCst) + 1;
                            st.max_active.fetch_max(now, Ordering::SeqCst);
                            if let Behaviour::Slow(d) = behaviour {
                                tokio::time::sleep(d).await;
                            }
                            st.answered.lock().unwrap().push((conn, req));
                            st.active.fetch_sub(1, Ordering::SeqCst);
                            if s.write_all(resp).await.is_err() {
                                return;
                            }
                            served += 1;
                        }
                    }
                });
            }
        });
        Sink { addr, state, task }
    }

    async fn sink(behaviour: Behaviour) -> Sink {
        sink_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), behaviour).await
    }

    struct Rig {
        outputs: Outputs,
        registry: Registry,
        health: Arc<Health>,
    }

    impl Rig {
        /// Value of one sample line of the exposition, e.g.
        /// `rebuilder_output_dropped_total{output="upstream",reason="gap"}`.
        fn metric(&self, sample: &str) -> f64 {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
                .parse()
                .unwrap()
        }
        fn dropped(&self, reason: &str) -> f64 {
            self.metric(&format!(
                "rebuilder_output_dropped_total{{output=\"upstream\",reason=\"{reason}\"}}"
            ))
        }
        fn errors(&self, kind: &str) -> f64 {
            self.metric(&format!(
                "rebuilder_upstream_errors_total{{kind=\"{kind}\"}}"
            ))
        }
        fn replayed(&self) -> f64 {
            self.metric("rebuilder_upstream_replayed_total")
        }
        fn probes(&self, outcome: &str) -> f64 {
            self.metric(&format!(
                "rebuilder_upstream_probes_total{{outcome=\"{outcome}\"}}"
            ))
        }
    }

    fn rig(cfg: UpstreamConfig, mode: Mode) -> Rig {
        let mut registry = Registry::default();
        let health = Health::new();
        let outputs = Outputs::start(
            &OutputsConfig {
                upstream: Some(cfg),
                jsonl: None,
            },
            mode,
            &mut registry,
            Arc::clone(&health),
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        Rig {
            outputs,
            registry,
            health,
        }
    }

    fn cfg(addr: SocketAddr, pool: usize) -> UpstreamConfig {
        let mut c = UpstreamConfig::new(format!("http://{addr}"));
        c.pool_size = pool;
        c.connect_timeout = Duration::from_secs(1);
        c.response_timeout = Duration::from_secs(5);
        c
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn varied_requests() -> Vec<Arc<RebuiltRequest>> {
        [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nx=1&y=%00\xff\r",
            b"PUT /c HTTP/1.1\r\nhost: A\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            b"GET /../../etc/passwd?q=<script> HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
            b"GET /lf HTTP/1.1\nHost: a\n\n",
            b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /after-head HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ]
        .iter()
        .map(|r| request(r))
        .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_byte_exact_on_one_reused_connection() {
        let sink = sink(Behaviour::Answer).await;
        let rig = rig(cfg(sink.addr, 1), Mode::Live);
        let reqs = varied_requests();
        for r in &reqs {
            // One at a time so that order on the single connection is the submission order.
            let before = sink.answered().len();
            rig.outputs.submit(Arc::clone(r));
            eventually("the answer", || sink.answered().len() == before + 1).await;
        }
        let expected: Vec<u8> = reqs.iter().flat_map(|r| r.raw.to_vec()).collect();
        assert_eq!(sink.state.received.lock().unwrap().concat(), expected);
        assert_eq!(
            sink.answered()
                .iter()
                .map(|(_, r)| r.clone())
                .collect::<Vec<_>>(),
            reqs.iter().map(|r| r.raw.to_vec()).collect::<Vec<_>>()
        );
        assert_eq!(
            sink.accepted(),
            1,
            "one keep-alive connection for everything"
        );
        eventually("metrics", || rig.replayed() == reqs.len() as f64).await;
        assert_eq!(
            rig.metric("rebuilder_upstream_responses_total{class=\"2xx\"}"),
            reqs.len() as f64
        );
        assert_eq!(
            rig.metric("rebuilder_upstream_connections_opened_total"),
            1.0
        );
        assert_eq!(
            rig.metric("rebuilder_upstream_latency_seconds_count"),
            reqs.len() as f64
        );
        assert_eq!(rig.health.check(), Ok(()));
        let report = rig.outputs.drain(Duration::from_secs(5)).await;
        assert_eq!(
            report.outputs,
            vec![crate::output::OutputDrain {
                output: "upstream",
                finished: true,
                abandoned: 0
            }]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn added_headers_arrive_and_body_is_untouched() {
        let sink = sink(Behaviour::Answer).await;
        let mut c = cfg(sink.addr, 1);
        c.client_ip_header = Some(crate::output::DEFAULT_CLIENT_IP_HEADER.into());
        c.vni_header = Some(crate::output::DEFAULT_VNI_HEADER.into());
        let rig = rig(c, Mode::Live);
        rig.outputs.submit(request_from(
            b"POST /p HTTP/1.1\r\nHost: orig\r\nx-forwarded-for: 1.1.1.1\r\nContent-Length: 4\r\n\r\nbody",
            "[2001:db8::5]:5555",
            99,
        ));
        eventually("the answer", || sink.answered().len() == 1).await;
        assert_eq!(
            String::from_utf8(sink.answered()[0].1.clone()).unwrap(),
            "POST /p HTTP/1.1\r\nHost: orig\r\nx-forwarded-for: 1.1.1.1, 2001:db8::5\r\nContent-Length: 4\r\nX-Mirror-VNI: 99\r\n\r\nbody"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_runs_requests_concurrently() {
        let sink = sink(Behaviour::Slow(Duration::from_millis(200))).await;
        let rig = rig(cfg(sink.addr, 4), Mode::Live);
        for i in 0..8 {
            rig.outputs.submit(request(
                format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            ));
        }
        eventually("8 answers", || sink.answered().len() == 8).await;
        assert_eq!(sink.state.max_active.load(Ordering::SeqCst), 4);
        assert_eq!(sink.accepted(), 4);
        let mut targets: Vec<String> = sink
            .answered()
            .iter()
            .map(|(_, r)| {
                String::from_utf8_lossy(r)
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .to_string()
            })
            .collect();
        targets.sort();
        assert_eq!(targets, (0..8).map(|i| format!("/{i}")).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_closing_keep_alive_loses_nothing() {
        // The close races the request: the retry path proper.
        let sink = sink(Behaviour::CloseOnSecond).await;
        let rig = rig(cfg(sink.addr, 1), Mode::Live);
        for i in 0..5 {
            let before = sink.answered().len();
            rig.outputs.submit(request(
                format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            ));
            eventually("the answer", || sink.answered().len() == before + 1).await;
        }
        let answered = sink.answered();
        assert_eq!(answered.len(), 5);
        // Each request after the first went out on a reused connection that was closed under
        // it, and was resent on a fresh one.
        assert_eq!(
            answered.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        eventually("metrics", || rig.replayed() == 5.0).await;
        assert_eq!(rig.metric("rebuilder_upstream_stale_retries_total"), 4.0);
        assert_eq!(rig.dropped("upstream_error"), 0.0);

        // The close happens while idle, well before the next request.
        let sink = self::sink(Behaviour::CloseIdle(Duration::from_millis(20))).await;
        let rig = self::rig(cfg(sink.addr, 1), Mode::Live);
        for i in 0..4 {
            let before = sink.answered().len();
            rig.outputs.submit(request(
                format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            ));
            eventually("the answer", || sink.answered().len() == before + 1).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sink.answered().len(), 4);
        assert_eq!(sink.accepted(), 4);
        eventually("metrics", || rig.replayed() == 4.0).await;
        assert_eq!(rig.dropped("upstream_error"), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_upstream_is_bounded_and_recovers() {
        // A port with nothing listening.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mut c = cfg(addr, 4);
        c.queue_requests = 50;
        let rig = rig(c, Mode::Live);
        let req = request(b"GET /dead HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut submitted = 0.0;
        for _ in 0..40 {
            for _ in 0..50 {
                rig.outputs.submit(Arc::clone(&req));
                submitted += 1.0;
            }
            let depth = rig.outputs.queue_depths();
            assert!(
                depth[0].requests <= 50 && depth[0].bytes <= 50 * req.raw.len(),
                "{depth:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eventually("the queue to run empty", || {
            rig.outputs.queue_depths()[0].requests == 0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let upstream_error = rig.dropped("upstream_error");
        assert_eq!(upstream_error + rig.dropped("queue_full"), submitted);
        assert_eq!(
            rig.errors("connect") + rig.errors("unreachable"),
            upstream_error
        );
        // Backoff: a handful of connect attempts over ~0.4 s (by the pool until the first
        // failure, then by the prober), not thousands.
        let attempts = rig.errors("connect") + rig.probes("failed");
        assert!((1.0..=20.0).contains(&attempts), "{attempts}");
        assert!(rig.probes("failed") >= 1.0);
        assert_eq!(
            rig.metric("rebuilder_upstream_connections_opened_total"),
            0.0
        );
        let health = rig.health.check().unwrap_err();
        assert!(
            health.starts_with("upstream unreachable: connect to 127.0.0.1:"),
            "{health}"
        );

        // The upstream comes back on the same port: replay resumes by itself.
        let sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
        let back = Instant::now();
        eventually("replay to resume", || {
            rig.outputs
                .submit(request(b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"));
            !sink.answered().is_empty()
        })
        .await;
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "recovered after {:?}",
            back.elapsed()
        );
        eventually("health to recover", || rig.health.check().is_ok()).await;
        assert_eq!(
            sink.answered()[0].1,
            b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_recovers_without_traffic() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let rig = rig(cfg(addr, 2), Mode::Live);
        eventually("health to see the dead upstream", || {
            rig.health.check().is_err()
        })
        .await;
        let _sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
        eventually("health to recover by the idle probe", || {
            rig.health.check().is_ok()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hanging_upstream_times_out_and_reconnects() {
        let sink = sink(Behaviour::Hang).await;
        let mut c = cfg(sink.addr, 1);
        c.response_timeout = Duration::from_millis(200);
        let rig = rig(c, Mode::Live);
        rig.outputs.submit(request(b"GET /1 HTTP/1.1\r\n\r\n"));
        rig.outputs.submit(request(b"GET /2 HTTP/1.1\r\n\r\n"));
        eventually("two timeouts", || rig.errors("response_timeout") == 2.0).await;
        assert_eq!(rig.dropped("upstream_error"), 2.0);
        assert_eq!(rig.replayed(), 0.0);
        // A timed-out connection is never reused.
        eventually("the second connection", || sink.accepted() == 2).await;
        // Connects worked: the upstream is reachable, only slow.
        assert_eq!(rig.health.check(), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_response_is_an_error_and_reconnects() {
        let sink = sink(Behaviour::Garbage).await;
        let rig = rig(cfg(sink.addr, 1), Mode::Live);
        rig.outputs.submit(request(b"GET /1 HTTP/1.1\r\n\r\n"));
        eventually("first error", || rig.errors("invalid_response") == 1.0).await;
        rig.outputs.submit(request(b"GET /2 HTTP/1.1\r\n\r\n"));
        eventually("second error", || rig.errors("invalid_response") == 2.0).await;
        assert_eq!(sink.accepted(), 2);
        assert_eq!(rig.dropped("upstream_error"), 2.0);
        assert_eq!(
            sink.state.received.lock().unwrap().concat(),
            b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_mode_drops_newest_and_never_blocks() {
        let sink = sink(Behaviour::Hang).await;
        let mut c = cfg(sink.addr, 1);
        c.queue_requests = 2;
        c.response_timeout = Duration::from_secs(60);
        let rig = rig(c, Mode::Live);
        rig.outputs.submit(request(b"GET /first HTTP/1.1\r\n\r\n"));
        eventually("the first request in flight", || {
            !sink.state.received.lock().unwrap().concat().is_empty()
        })
        .await;
        let outputs = rig.outputs.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..1000 {
                outputs.submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("submit blocked in Live mode");
        assert_eq!(rig.dropped("queue_full"), 998.0);
        let depth = rig.outputs.queue_depths();
        assert_eq!(depth[0].requests, 2);
        // The oldest were kept: /0 and /1 wait in the queue.
        let report = rig.outputs.drain(Duration::from_millis(100)).await;
        assert_eq!(
            report.outputs,
            vec![crate::output::OutputDrain {
                output: "upstream",
                finished: false,
                abandoned: 3
            }]
        );
        assert_eq!(rig.dropped("shutdown"), 3.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_mode_waits_and_drops_nothing() {
        let sink = sink(Behaviour::Slow(Duration::from_millis(5))).await;
        let mut c = cfg(sink.addr, 1);
        c.queue_requests = 1;
        let rig = rig(c, Mode::Offline);
        let outputs = rig.outputs.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..50 {
                outputs.submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
            }
        });
        // The producer cannot be done before most requests were answered: it had to wait.
        eventually("the producer", || producer.is_finished()).await;
        assert!(sink.answered().len() >= 48, "{}", sink.answered().len());
        let report = rig.outputs.drain(Duration::from_secs(10)).await;
        assert!(report.finished() && report.abandoned() == 0, "{report:?}");
        let targets: Vec<Vec<u8>> = sink.answered().into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            targets,
            (0..50)
                .map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(rig.dropped("queue_full"), 0.0);
        assert_eq!(rig.replayed(), 50.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gap_requests_are_never_sent() {
        let sink = sink(Behaviour::Answer).await;
        let rig = rig(cfg(sink.addr, 1), Mode::Live);
        let mut gap =
            (*request(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial")).clone();
        gap.flags.gap = true;
        rig.outputs.submit(Arc::new(gap));
        rig.outputs.submit(request(b"GET /whole HTTP/1.1\r\n\r\n"));
        let report = rig.outputs.drain(Duration::from_secs(5)).await;
        assert!(report.finished(), "{report:?}");
        assert_eq!(
            sink.state.received.lock().unwrap().concat(),
            b"GET /whole HTTP/1.1\r\n\r\n"
        );
        assert_eq!(rig.dropped("gap"), 1.0);
        assert_eq!(rig.replayed(), 1.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_finishes_the_queue_then_refuses() {
        let sink = sink(Behaviour::Slow(Duration::from_millis(20))).await;
        let rig = rig(cfg(sink.addr, 2), Mode::Live);
        for i in 0..10 {
            rig.outputs
                .submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
        }
        let report = rig.outputs.drain(Duration::from_secs(10)).await;
        assert!(report.finished() && report.abandoned() == 0, "{report:?}");
        assert_eq!(sink.answered().len(), 10);
        rig.outputs.submit(request(b"GET /late HTTP/1.1\r\n\r\n"));
        assert_eq!(rig.dropped("shutdown"), 1.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fans_out_to_upstream_and_jsonl() {
        let sink = sink(Behaviour::Answer).await;
        let path =
            std::env::temp_dir().join(format!("rebuilder-fanout-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut registry = Registry::default();
        let outputs = Outputs::start(
            &OutputsConfig {
                upstream: Some(cfg(sink.addr, 2)),
                jsonl: Some(crate::output::JsonlConfig::new(&path)),
            },
            Mode::Live,
            &mut registry,
            Health::new(),
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        let mut gap = (*request(b"GET /gap HTTP/1.1\r\n\r\n")).clone();
        gap.flags.gap = true;
        outputs.submit(Arc::new(gap));
        outputs.submit(request(b"GET /whole HTTP/1.1\r\n\r\n"));
        let report = outputs.drain(Duration::from_secs(5)).await;
        assert_eq!(
            report
                .outputs
                .iter()
                .map(|o| (o.output, o.finished, o.abandoned))
                .collect::<Vec<_>>(),
            [("upstream", true, 0), ("jsonl", true, 0)]
        );
        assert_eq!(
            sink.state.received.lock().unwrap().concat(),
            b"GET /whole HTTP/1.1\r\n\r\n"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let targets: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(targets, ["/gap", "/whole"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..6 {
            b = next_backoff(b);
            seen.push(b.as_millis());
        }
        assert_eq!(seen, [50, 100, 200, 250, 250, 250]);
    }

    #[test]
    fn breaker_opens_on_a_failure_and_closes_on_a_success() {
        let br = Breaker::default();
        let g = br.admit().expect("closed: everyone may connect");
        assert_eq!(br.next_probe_in(), None, "no probing while closed");
        assert!(br.failed(g));
        assert!(br.is_open());
        assert_eq!(br.admit(), None, "open: the pool does not connect");
        assert!(br.failed(g), "more failures of the same outage");
        let spacing: Vec<u128> = (0..6)
            .map(|_| br.next_probe_in().unwrap().as_millis())
            .collect();
        assert_eq!(spacing, [50, 100, 200, 250, 250, 250]);
        br.succeeded();
        let g2 = br.admit().expect("closed again");
        assert_ne!(g, g2);
        // A connect that started during the outage (its SYN unanswered) and fails now says
        // nothing about the upstream: it must not reopen the breaker.
        assert!(!br.failed(g));
        assert!(br.admit().is_some());
        // A new outage starts its backoff from the beginning.
        assert!(br.failed(g2));
        assert_eq!(br.next_probe_in(), Some(BACKOFF_MIN));
    }

    /// Submits a request every 10 ms until the sink has answered one sent after `since`;
    /// returns how long that took from `since`, and how many were submitted.
    async fn time_to_resume(rig: &Rig, sink: &Sink, since: Instant) -> (Duration, usize) {
        let limit = since + Duration::from_secs(10);
        let mut submitted = 0;
        while Instant::now() < limit {
            rig.outputs
                .submit(request(b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"));
            submitted += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            if sink
                .answered()
                .iter()
                .any(|(_, r)| r.starts_with(b"GET /back "))
            {
                return (since.elapsed(), submitted);
            }
        }
        panic!("replay did not resume within 10 s");
    }

    /// Steady traffic to a dead upstream for `span`; how many requests.
    async fn submit_for(rig: &Rig, span: Duration) -> usize {
        let until = Instant::now() + span;
        let mut submitted = 0;
        while Instant::now() < until {
            rig.outputs
                .submit(request(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n"));
            submitted += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        submitted
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_resumes_within_a_second_after_a_long_refusal() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let rig = rig(cfg(addr, 4), Mode::Live);
        // Long enough for the backoff to reach its cap (50 + 100 + 200 + 250 ms): from then on
        // a longer outage behaves the same, so this stands for a 5-minute one.
        let mut submitted = submit_for(&rig, Duration::from_millis(1200)).await;
        // The worst moment to come back: just after a probe failed.
        let probes = rig.probes("failed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while rig.probes("failed") == probes {
            assert!(Instant::now() < deadline, "no probe for 5 s");
            rig.outputs
                .submit(request(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n"));
            submitted += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
        let (took, more) = time_to_resume(&rig, &sink, Instant::now()).await;
        submitted += more;
        eprintln!("resumed {took:?} after the upstream came back");
        assert!(took < Duration::from_secs(1), "resumed after {took:?}");
        // Every request is either replayed or dropped under a reason.
        let report = rig.outputs.drain(Duration::from_secs(5)).await;
        assert!(report.finished(), "{report:?}");
        assert_eq!(rig.replayed(), sink.answered().len() as f64);
        assert_eq!(
            rig.replayed() + rig.dropped("upstream_error") + rig.dropped("queue_full"),
            submitted as f64
        );
        assert_eq!(
            rig.errors("connect") + rig.errors("unreachable"),
            rig.dropped("upstream_error")
        );
        assert_eq!(rig.probes("connected"), 1.0);
    }

    /// A listener whose accept queue is full, so the kernel drops SYNs: what a WAF whose host
    /// is gone looks like (connects time out rather than being refused).
    fn blackhole() -> (std::net::TcpListener, std::net::TcpStream) {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        // A backlog of 0 holds one connection; the next SYNs are dropped.
        sock.listen(0).unwrap();
        let listener: std::net::TcpListener = sock.into();
        let filler = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener, filler)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_resumes_within_a_second_when_a_silent_upstream_returns() {
        let (listener, _filler) = blackhole();
        let addr = listener.local_addr().unwrap();
        // One pool task: were probes made by pool tasks, carrying requests, it would sit in a
        // connect for each probe's whole timeout while the queue filled behind it.
        let mut c = cfg(addr, 1);
        c.queue_requests = 1000;
        let rig = rig(c, Mode::Live);
        submit_for(&rig, Duration::from_millis(2500)).await;
        // Unknown for the first second (the pool's first connect times out), then the pool
        // drops requests at once, and the queue does not grow.
        assert!(
            rig.errors("unreachable") >= 50.0,
            "{}",
            rig.errors("unreachable")
        );
        assert!(
            rig.outputs.queue_depths()[0].requests < 10,
            "{:?}",
            rig.outputs.queue_depths()
        );
        assert_eq!(rig.dropped("queue_full"), 0.0);
        assert!(rig.probes("failed") >= 1.0);
        assert!(rig.health.check().is_err());
        // The upstream answers again: the accept queue drains, SYNs are answered.
        listener.set_nonblocking(true).unwrap();
        let since = Instant::now();
        let sink = sink_on(TcpListener::from_std(listener).unwrap(), Behaviour::Answer).await;
        let (took, _) = time_to_resume(&rig, &sink, since).await;
        eprintln!("resumed {took:?} after the silent upstream came back");
        assert!(took < Duration::from_secs(1), "resumed after {took:?}");
        eventually("health to recover", || rig.health.check().is_ok()).await;
    }
}
