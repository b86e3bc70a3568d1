//! Health and metrics over HTTP, for three different askers:
//!
//! - `/livez`, liveness: the process, its capture threads and its reassembly workers are
//!   beating. Nothing about the upstream or about traffic: this is what the NLB's health check
//!   (and through it the Auto Scaling Group) asks, and a WAF outage must not make the group
//!   replace every node at once for a problem new nodes cannot fix.
//! - `/readyz`, readiness: live, and the upstream (when one is configured) reachable, and, with
//!   `max_idle`, packets arriving. DESIGN §2's "does the pipeline really work": what alerts and
//!   operators watch.
//! - `/healthz`: the same as `/readyz`. It predates the split and keeps its documented meaning
//!   (components, upstream, idle), so existing checks do not change behaviour.
//!
//! `/metrics` (Prometheus) carries both verdicts as the gauges `rebuilder_live` and
//! `rebuilder_ready`, computed when scraped (see [`HealthCollector`]).
//!
//! Liveness is tracked by heartbeats: every pipeline component that must keep running (capture
//! thread, workers) gets a [`Heartbeat`] and beats while it makes progress. `beat()` sits on the
//! hot path, so it is a single relaxed store of a flag; each assessment (any endpoint, or a
//! scrape) consumes the flag and remembers when it last saw it. A component is therefore
//! reported silent at most one check interval later than its real silence exceeded
//! `max_silence`, which is well within what a health checker polling every few seconds can
//! notice anyway. Several askers share that memory: whoever consumes a beat records it for all
//! of them (under one lock), so `/livez` polled by the NLB never makes a beating component look
//! silent to `/readyz` or to a scrape, and the other way round.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Content type of what `prometheus_client::encoding::text::encode` produces.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A slow or stuck health client must not hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot bind the status server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("status server failed to accept connections on {addr}: {source}")]
    Accept {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

struct Component {
    name: String,
    max_silence: Duration,
    /// Set by `beat()`, cleared by `check()`.
    beaten: AtomicBool,
    stopped: AtomicBool,
    /// Nanoseconds since `Health::epoch` when `check()` last saw a beat (or the component was
    /// registered).
    last_seen: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum UpstreamState {
    /// No upstream configured, or nothing tried yet.
    Unknown,
    Reachable,
    Unreachable(String),
}

/// Whether the pipeline is healthy: every registered component beats, none has stopped, and
/// the upstream (if one reported) is reachable.
pub struct Health {
    epoch: Instant,
    components: Mutex<Vec<Arc<Component>>>,
    upstream: Mutex<UpstreamState>,
    /// Fail when no packet was captured for longer than this (once one was).
    max_idle: Option<Duration>,
    /// Nanoseconds since `epoch` of the last batch holding packets; `NEVER` before the first.
    last_packet: AtomicU64,
}

const NEVER: u64 = u64::MAX;

/// A component's handle on its own liveness. Cheap to clone; every clone beats for the same
/// component.
#[derive(Clone)]
pub struct Heartbeat {
    component: Arc<Component>,
}

impl Heartbeat {
    /// The component made progress. One relaxed store: fine to call per packet.
    #[inline]
    pub fn beat(&self) {
        self.component.beaten.store(true, Ordering::Relaxed);
    }

    /// The component is gone for good (thread ended); health fails from now on.
    pub fn stopped(&self) {
        self.component.stopped.store(true, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.component.name
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data that is still meaningful.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    pub fn new() -> Arc<Self> {
        Self::with_max_idle(None)
    }

    /// With `max_idle`, `/healthz` also fails once no packet has been captured for that long
    /// (counted from the last packet; nothing is said before the first one).
    pub fn with_max_idle(max_idle: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            components: Mutex::new(Vec::new()),
            upstream: Mutex::new(UpstreamState::Unknown),
            max_idle,
            last_packet: AtomicU64::new(NEVER),
        })
    }

    /// A capture thread got packets in its last batch. A clock read and one relaxed store: call
    /// it per batch, not per packet.
    #[inline]
    pub fn packets_captured(&self) {
        self.last_packet.store(self.now_ns(), Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A pipeline component (capture thread, worker) that must beat at least every
    /// `max_silence`.
    pub fn component(&self, name: &str, max_silence: Duration) -> Heartbeat {
        let component = Arc::new(Component {
            name: name.to_string(),
            max_silence,
            beaten: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            last_seen: AtomicU64::new(self.now_ns()),
        });
        lock(&self.components).push(Arc::clone(&component));
        Heartbeat { component }
    }

    pub fn set_upstream(&self, reachable: bool, reason: &str) {
        let state = if reachable {
            UpstreamState::Reachable
        } else {
            UpstreamState::Unreachable(reason.to_string())
        };
        let mut cur = lock(&self.upstream);
        if *cur != state {
            match &state {
                UpstreamState::Unreachable(r) => {
                    tracing::warn!(reason = %r, "upstream unreachable")
                }
                _ => tracing::info!("upstream reachable"),
            }
            *cur = state;
        }
    }

    /// Whether the upstream was last seen unreachable (false while unknown).
    pub fn upstream_unreachable(&self) -> bool {
        matches!(*lock(&self.upstream), UpstreamState::Unreachable(_))
    }

    /// Liveness (`/livez`): Ok while every component beats and none has stopped, else the
    /// reasons (silent components by name, stopped ones). Says nothing about the upstream or
    /// about traffic.
    pub fn live(&self) -> Result<(), String> {
        verdict(self.component_reasons(self.now_ns()))
    }

    /// Readiness (`/readyz`): live, and the upstream (if one reported) reachable, and no
    /// longer than `max_idle` without packets. The reasons in that order.
    pub fn ready(&self) -> Result<(), String> {
        let now = self.now_ns();
        let mut reasons = self.component_reasons(now);
        reasons.extend(self.readiness_reasons(now));
        verdict(reasons)
    }

    /// `/healthz`: readiness. The endpoint predates the split and has always meant components,
    /// upstream and idle, so it keeps that meaning.
    pub fn check(&self) -> Result<(), String> {
        self.ready()
    }

    /// Both verdicts from one sweep of the components (for the gauges).
    fn assess(&self) -> (bool, bool) {
        let now = self.now_ns();
        let live = self.component_reasons(now).is_empty();
        (live, live && self.readiness_reasons(now).is_empty())
    }

    /// Why a component is not alive. Consumes the beat flags, so it runs under the components
    /// lock: a caller that consumes a beat records it in `last_seen` before any other caller
    /// can look, and every caller (`/livez`, `/readyz`, `/healthz`, a scrape) judges silence
    /// from that shared record. Without the lock, one caller could clear a flag and another
    /// read the old `last_seen` in between and report a beating component as silent.
    fn component_reasons(&self, now: u64) -> Vec<String> {
        let mut reasons = Vec::new();
        let components = lock(&self.components);
        for c in components.iter() {
            if c.stopped.load(Ordering::Relaxed) {
                reasons.push(format!("{} stopped", c.name));
                continue;
            }
            if c.beaten.swap(false, Ordering::Relaxed) {
                c.last_seen.store(now, Ordering::Relaxed);
                continue;
            }
            let silent =
                Duration::from_nanos(now.saturating_sub(c.last_seen.load(Ordering::Relaxed)));
            if silent > c.max_silence {
                reasons.push(format!(
                    "{} silent for {:.1}s (max {:.1}s)",
                    c.name,
                    silent.as_secs_f64(),
                    c.max_silence.as_secs_f64()
                ));
            }
        }
        reasons
    }

    /// What readiness needs beyond liveness: packets within `max_idle`, a reachable upstream.
    fn readiness_reasons(&self, now: u64) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(max) = self.max_idle {
            let last = self.last_packet.load(Ordering::Relaxed);
            if last != NEVER {
                let idle = Duration::from_nanos(now.saturating_sub(last));
                if idle > max {
                    reasons.push(format!(
                        "no packets for {:.1} s (max idle {:.1} s)",
                        idle.as_secs_f64(),
                        max.as_secs_f64()
                    ));
                }
            }
        }
        if let UpstreamState::Unreachable(r) = &*lock(&self.upstream) {
            reasons.push(format!("upstream unreachable: {r}"));
        }
        reasons
    }

    /// Registers `rebuilder_live` and `rebuilder_ready` in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(HealthCollector(Arc::clone(self))));
    }
}

fn verdict(reasons: Vec<String>) -> Result<(), String> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// `rebuilder_live` and `rebuilder_ready`, 0 or 1, assessed at each scrape.
///
/// Why at scrape time rather than set by a periodic task: the gauges then say exactly what
/// `/livez` and `/readyz` would have answered at the moment Prometheus looked, never a value one
/// period old, and no timer has to run (or be stopped) beside the pipeline. Reading them
/// consumes heartbeats like any endpoint does, which is harmless: see the module doc.
struct HealthCollector(Arc<Health>);

impl std::fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthCollector")
    }
}

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (live, ready) = self.0.assess();
        for (name, help, value) in [
            (
                "rebuilder_live",
                "1 while /livez answers 200: every capture thread and reassembly worker beats",
                live,
            ),
            (
                "rebuilder_ready",
                "1 while /readyz (and /healthz) answers 200: live, the upstream (if any) reachable, packets arriving (with --max-idle)",
                ready,
            ),
        ] {
            let gauge = ConstGauge::new(i64::from(value));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// Binds `addr` and serves `/healthz` and `/metrics` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StatusError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StatusError::Bind { addr, source })?;
    serve_listener(listener, registry, health, shutdown).await
}

/// Like [`serve`] on an already bound listener (lets a caller bind port 0 and learn the port).
pub async fn serve_listener(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StatusError> {
    let addr = listener
        .local_addr()
        .map_err(|source| StatusError::Accept {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    tracing::info!(%addr, "status server listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Per-connection failures (the peer reset before accept, fd pressure) must not
                // take the health endpoint down; back off briefly so fd exhaustion cannot spin.
                Err(e) if is_transient_accept_error(&e) => {
                    tracing::debug!(error = %e, "status accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(source) => return Err(StatusError::Accept { addr, source }),
            },
        };
        let registry = Arc::clone(&registry);
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = Arc::clone(&registry);
                let health = Arc::clone(&health);
                async move { Ok::<_, Infallible>(route(&req, &registry, &health)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "status connection ended with an error");
            }
        });
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// 200 "ok", or 503 with the reasons, one line.
fn verdict_response(verdict: Result<(), String>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match verdict {
        Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".to_string()),
        Err(reasons) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            format!("{reasons}\n"),
        ),
    }
}

fn route(req: &Request<Incoming>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::NOT_FOUND, PLAIN, "not found\n".to_string());
    }
    match req.uri().path() {
        "/livez" => verdict_response(health.live()),
        "/readyz" | "/healthz" => verdict_response(health.ready()),
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => text(StatusCode::OK, METRICS_CONTENT_TYPE, body),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    "metrics encoding failed\n".to_string(),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on its own connection; returns (status code, headers+body text).
    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, head.to_string(), body.to_string())
    }

    async fn start(
        registry: Registry,
        health: Arc<Health>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_listener(
            listener,
            Arc::new(registry),
            health,
            async move {
                let _ = rx.await;
            },
        ));
        (addr, tx)
    }

    #[test]
    fn check_reports_silence_stop_and_upstream() {
        let health = Health::new();
        assert_eq!(health.check(), Ok(()));
        let hb = health.component("worker-0", Duration::from_millis(50));
        let other = health.component("capture", Duration::from_secs(3600));
        hb.beat();
        assert_eq!(health.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let err = health.check().unwrap_err();
        assert!(err.starts_with("worker-0 silent for "), "{err}");
        assert!(!err.contains("capture"), "{err}");
        hb.clone().beat();
        assert_eq!(health.check(), Ok(()));

        health.set_upstream(false, "connection refused");
        assert_eq!(
            health.check(),
            Err("upstream unreachable: connection refused".to_string())
        );
        assert!(health.upstream_unreachable());
        health.set_upstream(true, "");
        assert_eq!(health.check(), Ok(()));

        other.stopped();
        assert_eq!(health.check(), Err("capture stopped".to_string()));
    }

    #[test]
    fn max_idle_fails_health_only_after_packets_stop() {
        let health = Health::with_max_idle(Some(Duration::from_millis(50)));
        let hb = health.component("udp capture 0", Duration::from_secs(3600));
        hb.beat();
        // No packet yet: a fresh node is not failed for idling.
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(health.check(), Ok(()));
        health.packets_captured();
        assert_eq!(health.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let err = health.check().unwrap_err();
        assert!(err.starts_with("no packets for 0."), "{err}");
        assert!(err.ends_with(" s (max idle 0.1 s)"), "{err}");
        // Beating capture threads do not help; packets do.
        hb.beat();
        assert!(health.check().is_err());
        health.packets_captured();
        assert_eq!(health.check(), Ok(()));
        // Reasons add up.
        std::thread::sleep(Duration::from_millis(80));
        health.set_upstream(false, "refused");
        let err = health.check().unwrap_err();
        assert!(
            err.starts_with("no packets for ") && err.ends_with("; upstream unreachable: refused"),
            "{err}"
        );

        // Without max_idle, idling never fails.
        let health = Health::new();
        health.packets_captured();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(health.check(), Ok(()));
    }

    #[tokio::test]
    async fn healthz_follows_heartbeats_and_upstream() {
        let health = Health::new();
        let hb = health.component("worker-1", Duration::from_millis(150));
        let (addr, _stop) = start(Registry::default(), Arc::clone(&health)).await;

        hb.beat();
        let (code, head, body) = get(addr, "GET", "/healthz").await;
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        assert!(head.contains("content-type: text/plain"), "{head}");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let (code, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(code, 503);
        assert!(body.starts_with("worker-1 silent for "), "{body}");

        hb.beat();
        let (code, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!((code, body.as_str()), (200, "ok\n"));

        health.set_upstream(false, "connect: Connection refused");
        let (code, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(
            (code, body.as_str()),
            (503, "upstream unreachable: connect: Connection refused\n")
        );

        health.set_upstream(true, "");
        hb.beat();
        let (code, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!((code, body.as_str()), (200, "ok\n"));
    }

    #[test]
    fn liveness_ignores_the_upstream_and_idling_readiness_does_not() {
        let health = Health::with_max_idle(Some(Duration::from_millis(50)));
        let hb = health.component("worker 0", Duration::from_secs(3600));
        hb.beat();
        health.packets_captured();
        assert_eq!((health.live(), health.ready()), (Ok(()), Ok(())));

        // Upstream down: only readiness fails.
        health.set_upstream(false, "connection refused");
        assert_eq!(health.live(), Ok(()));
        assert_eq!(
            health.ready(),
            Err("upstream unreachable: connection refused".to_string())
        );
        health.set_upstream(true, "");

        // Idle: only readiness fails.
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(health.live(), Ok(()));
        let err = health.ready().unwrap_err();
        assert!(err.starts_with("no packets for "), "{err}");
        // /healthz means readiness.
        assert_eq!(health.check(), health.ready());
        assert_eq!(health.assess(), (true, false));
        health.packets_captured();
        assert_eq!(health.assess(), (true, true));
    }

    #[test]
    fn silence_and_stop_fail_liveness_and_readiness() {
        let health = Health::new();
        let worker = health.component("worker 1", Duration::from_millis(50));
        let capture = health.component("udp capture 0", Duration::from_secs(3600));
        worker.beat();
        assert_eq!(health.live(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        let err = health.live().unwrap_err();
        assert!(err.starts_with("worker 1 silent for "), "{err}");
        let err = health.ready().unwrap_err();
        assert!(err.starts_with("worker 1 silent for "), "{err}");
        assert_eq!(health.assess(), (false, false));
        worker.beat();
        assert_eq!(health.live(), Ok(()));

        capture.stopped();
        assert_eq!(health.live(), Err("udp capture 0 stopped".to_string()));
        assert_eq!(health.ready(), Err("udp capture 0 stopped".to_string()));
        // Not live is never ready, whatever the upstream says.
        health.set_upstream(true, "");
        assert_eq!(health.assess(), (false, false));
    }

    #[test]
    fn askers_do_not_consume_each_others_beats() {
        // One beat, consumed by the first asker: the others, within max_silence, still count it.
        let health = Health::new();
        let hb = health.component("worker 0", Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(150));
        hb.beat();
        assert_eq!(health.live(), Ok(()));
        // 250 ms since the component was registered, 100 since it beat: only the beat that
        // /livez consumed, remembered for everyone, keeps the others from calling it silent.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(health.ready(), Ok(()));
        assert_eq!(health.assess(), (true, true));
        assert_eq!(health.check(), Ok(()));

        // A component beating every 10 ms, with three askers polling as fast as they can: none
        // of them ever sees it silent.
        let health = Health::new();
        let hb = health.component("worker 0", Duration::from_millis(50));
        let stop = Arc::new(AtomicBool::new(false));
        let beater = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    hb.beat();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let askers: Vec<_> = (0..3)
            .map(|i| {
                let health = Arc::clone(&health);
                std::thread::spawn(move || {
                    let until = Instant::now() + Duration::from_millis(400);
                    let mut asked = 0u32;
                    while Instant::now() < until {
                        let verdict = match i {
                            0 => health.live(),
                            1 => health.ready(),
                            _ => match health.assess() {
                                (true, true) => Ok(()),
                                other => Err(format!("{other:?}")),
                            },
                        };
                        assert_eq!(verdict, Ok(()), "asker {i} after {asked} asks");
                        asked += 1;
                    }
                    asked
                })
            })
            .collect();
        for a in askers {
            assert!(a.join().unwrap() > 10);
        }
        stop.store(true, Ordering::Relaxed);
        beater.join().unwrap();
        // Silence is still seen once it is real (a check later: the last beat may be unread).
        assert_eq!(health.live(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        assert!(health.live().is_err());
        assert!(health.ready().is_err());
    }

    /// The value of `rebuilder_{name}` in a scrape.
    fn gauge(scrape: &str, name: &str) -> Option<i64> {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&format!("rebuilder_{name} "))?.parse().ok())
    }

    #[tokio::test]
    async fn livez_readyz_healthz_and_gauges() {
        let health = Health::with_max_idle(Some(Duration::from_millis(300)));
        let hb = health.component("worker 1", Duration::from_millis(150));
        let mut registry = Registry::default();
        health.register(&mut registry);
        let (addr, _stop) = start(registry, Arc::clone(&health)).await;
        // Every endpoint and the gauges: (livez, readyz, healthz, live, ready), and the bodies.
        let ask = || async {
            let (l, _, lb) = get(addr, "GET", "/livez").await;
            let (r, _, rb) = get(addr, "GET", "/readyz").await;
            let (h, _, hb) = get(addr, "GET", "/healthz").await;
            let (m, _, scrape) = get(addr, "GET", "/metrics").await;
            assert_eq!(m, 200);
            assert!(
                scrape.contains("# TYPE rebuilder_live gauge\n")
                    && scrape.contains("# TYPE rebuilder_ready gauge\n"),
                "{scrape}"
            );
            assert_eq!(rb, hb, "/healthz says what /readyz says");
            let gauges = (
                gauge(&scrape, "live").unwrap(),
                gauge(&scrape, "ready").unwrap(),
            );
            ((l, r, h), gauges, lb, rb)
        };

        hb.beat();
        let (codes, gauges, livez, readyz) = ask().await;
        assert_eq!((codes, gauges), ((200, 200, 200), (1, 1)));
        assert_eq!((livez.as_str(), readyz.as_str()), ("ok\n", "ok\n"));

        // Upstream down: live, not ready.
        health.set_upstream(false, "connect: Connection refused");
        hb.beat();
        let (codes, gauges, livez, readyz) = ask().await;
        assert_eq!((codes, gauges), ((200, 503, 503), (1, 0)));
        assert_eq!(livez, "ok\n");
        assert_eq!(
            readyz,
            "upstream unreachable: connect: Connection refused\n"
        );
        health.set_upstream(true, "");

        // Packets stopped: live, not ready.
        health.packets_captured();
        tokio::time::sleep(Duration::from_millis(400)).await;
        hb.beat();
        let (codes, gauges, _, readyz) = ask().await;
        assert_eq!((codes, gauges), ((200, 503, 503), (1, 0)));
        assert!(readyz.starts_with("no packets for "), "{readyz}");
        health.packets_captured();

        // A silent worker: neither.
        tokio::time::sleep(Duration::from_millis(250)).await;
        health.packets_captured();
        let (codes, gauges, livez, readyz) = ask().await;
        assert_eq!((codes, gauges), ((503, 503, 503), (0, 0)));
        assert!(livez.starts_with("worker 1 silent for "), "{livez}");
        assert_eq!(livez, readyz);

        hb.beat();
        assert_eq!(ask().await.0, (200, 200, 200));

        // A stopped one: neither, named.
        hb.stopped();
        let (codes, gauges, livez, _) = ask().await;
        assert_eq!((codes, gauges), ((503, 503, 503), (0, 0)));
        assert_eq!(livez, "worker 1 stopped\n");
        assert_eq!(get(addr, "HEAD", "/livez").await.0, 503);
    }

    #[tokio::test]
    async fn metrics_and_not_found() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        c.inc_by(7);
        registry.register("rebuilder_test_things", "Things seen by the test", c);
        let (addr, stop) = start(registry, Health::new()).await;

        let (code, head, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            body.contains("# TYPE rebuilder_test_things counter\n"),
            "{body}"
        );
        assert!(body.contains("\nrebuilder_test_things_total 7\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        assert_eq!(get(addr, "GET", "/").await.0, 404);
        assert_eq!(get(addr, "GET", "/healthz/x").await.0, 404);
        assert_eq!(get(addr, "POST", "/healthz").await.0, 404);
        assert_eq!(get(addr, "GET", "/livez/").await.0, 404);
        // Without `Health::register`, no health gauges.
        assert!(!body.contains("rebuilder_live"), "{body}");

        // After shutdown the listener is gone.
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(
            addr,
            Arc::new(Registry::default()),
            Health::new(),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StatusError::Bind { .. }));
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
