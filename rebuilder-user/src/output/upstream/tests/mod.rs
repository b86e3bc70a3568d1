//! End to end on loopback against a tiny HTTP sink. These exercise the response framer
//! (`crate::http1::response`) through the real exchange path.
//!
//! Shared rig here (a sink that answers, hangs, garbles or closes; outputs started on it); one
//! file per area: `replay` (what arrives, connection reuse), `queue` (modes, drain, fan-out),
//! `outage` (failures, backoff, breaker, recovery).

mod outage;
mod queue;
mod replay;

use super::breaker::{next_backoff, Breaker, BACKOFF_MIN};
use super::*;
use crate::output::tests::{request, request_from};
use crate::output::{Mode, Outputs, OutputsConfig};
use crate::request::RebuiltRequest;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
