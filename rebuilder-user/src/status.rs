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
//! `rebuilder_ready`, computed when scraped (see `health::HealthCollector`).
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
//!
//! This module serves the endpoints and the registry every room registered its counters in
//! (reading it only); `health` keeps and judges the heartbeats. Depends on nothing of the
//! pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

mod health;

pub use health::{Health, Heartbeat};

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
mod tests;
