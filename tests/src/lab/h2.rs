//! The lab's HTTP/2 cleartext and gRPC clients (`cargo xtask lab --h2 N`): N connections to the
//! origin's HTTP/2 server ([`crate::h2_peer::H2Server`]), each with two calls in flight at a
//! time on its streams (GETs, form POSTs, gRPC unary calls, gRPC client-streaming calls),
//! every call entered in the [`Ledger`] with the HTTP/1.1 request the WAF must receive for it
//! (the README's rendering, `H2Request::http1`).
//!
//! Each request carries `x-lab-id: c<conn>-<n>` as its first field, so its rendering has the id
//! right after the `host` line; connection numbers start at [`H2_CONN_BASE`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::ledger::{Ledger, RequestId};
use crate::gen::h2::H2Request;
use crate::gen::proxy;
use crate::h2_peer::grpc_frames;
use crate::netns::{MirrorLab, Result};
use crate::rng::SplitMix64;

/// The port the lab's HTTP/2 origin listens on.
pub const H2_PORT: u16 = 8081;
/// Connection numbers of the HTTP/2 clients in request ids (the HTTP/1.x workload's start at 0).
pub const H2_CONN_BASE: u32 = 500_000;
const HOST: &str = "grpc.example.test";
/// Calls in flight at once on one connection (so streams interleave).
const IN_FLIGHT: usize = 2;
const POLL: Duration = Duration::from_millis(20);

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

struct Shared {
    stop: AtomicBool,
    paused: AtomicBool,
    /// Call loops waiting while paused.
    parked: AtomicUsize,
    sent: AtomicU64,
    unary: AtomicU64,
    streaming: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

/// What the HTTP/2 clients sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2Counts {
    pub connections: usize,
    pub streams: u64,
    pub grpc_unary: u64,
    pub grpc_streaming: u64,
}

pub struct H2Workload {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<()>>>,
    loops: usize,
    connections: usize,
}

impl H2Workload {
    /// `connections` clients from the client namespace to `origin`, each making calls at
    /// `rate` per second; with `client_ip_header`, every replay must carry the client's
    /// address in it.
    pub fn start(
        lab: &MirrorLab,
        origin: SocketAddr,
        connections: usize,
        rate: f64,
        seed: u64,
        ledger: Arc<Ledger>,
        client_ip_header: Option<&'static str>,
    ) -> Result<H2Workload> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            unary: AtomicU64::new(0),
            streaming: AtomicU64::new(0),
            errors: std::sync::Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for c in 0..connections {
            let conn = H2_CONN_BASE + c as u32;
            let (shared, ledger) = (Arc::clone(&shared), Arc::clone(&ledger));
            let gap = Duration::from_secs_f64(IN_FLIGHT as f64 / rate.max(0.01));
            let seed = seed ^ u64::from(conn).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            threads.push(lab.client_ns().spawn(&format!("h2-client-{c}"), move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                let result = rt.block_on(connection(
                    conn,
                    origin,
                    gap,
                    seed,
                    &shared,
                    &ledger,
                    client_ip_header,
                ));
                if let Err(e) = &result {
                    ledger.connection_failed(conn, e.clone());
                    shared
                        .errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("h2 connection {conn}: {e}"));
                }
            })?);
        }
        Ok(H2Workload {
            shared,
            threads,
            loops: connections * IN_FLIGHT,
            connections,
        })
    }

    /// Holds every call loop between calls; true once all of them are held.
    pub fn pause(&self, timeout: Duration) -> bool {
        self.shared.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        while self.shared.parked.load(Ordering::SeqCst) < self.loops {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
        true
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    pub fn counts(&self) -> H2Counts {
        H2Counts {
            connections: self.connections,
            streams: self.shared.sent.load(Ordering::SeqCst),
            grpc_unary: self.shared.unary.load(Ordering::SeqCst),
            grpc_streaming: self.shared.streaming.load(Ordering::SeqCst),
        }
    }

    /// Stops after each loop's current call; returns the connections' errors.
    pub fn stop(self) -> (H2Counts, Vec<String>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.resume();
        let counts = self.counts();
        let mut errors = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("an HTTP/2 client's namespace: {e}")),
                Err(_) => errors.push("an HTTP/2 client panicked".into()),
            }
        }
        errors.extend(
            self.shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..),
        );
        (counts, errors)
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    conn: u32,
    origin: SocketAddr,
    gap: Duration,
    seed: u64,
    shared: &Arc<Shared>,
    ledger: &Arc<Ledger>,
    client_ip_header: Option<&'static str>,
) -> std::result::Result<(), String> {
    let stream = tokio::net::TcpStream::connect(origin)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    ledger.connection_opened(conn, local);
    let (sender, driver) = hyper::client::conn::http2::handshake::<_, _, Body>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(driver);
    let seq = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for l in 0..IN_FLIGHT {
        let (mut sender, shared, ledger, seq) = (
            sender.clone(),
            Arc::clone(shared),
            Arc::clone(ledger),
            Arc::clone(&seq),
        );
        let mut rng = SplitMix64::new(seed ^ l as u64);
        loops.push(tokio::spawn(async move {
            while !shared.stop.load(Ordering::SeqCst) {
                if shared.paused.load(Ordering::SeqCst) {
                    shared.parked.fetch_add(1, Ordering::SeqCst);
                    while shared.paused.load(Ordering::SeqCst)
                        && !shared.stop.load(Ordering::SeqCst)
                    {
                        tokio::time::sleep(POLL).await;
                    }
                    shared.parked.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let n = seq.fetch_add(1, Ordering::SeqCst) as u32;
                let id = RequestId { conn, seq: n };
                call(
                    &mut sender,
                    id,
                    &mut rng,
                    &shared,
                    &ledger,
                    local.ip(),
                    client_ip_header,
                )
                .await?;
                tokio::time::sleep(gap.mul_f64(0.5 + rng.below(1000) as f64 / 1000.0)).await;
            }
            Ok::<_, String>(())
        }));
    }
    for l in loops {
        l.await.map_err(|e| e.to_string())??;
    }
    drop(sender);
    driver.abort();
    Ok(())
}

/// One call: the request is entered in the ledger (with the bytes the WAF must get) before a
/// byte of it is sent.
async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    id: RequestId,
    rng: &mut SplitMix64,
    shared: &Shared,
    ledger: &Ledger,
    client: IpAddr,
    client_ip_header: Option<&'static str>,
) -> std::result::Result<(), String> {
    let tag = id.to_string();
    let kind = rng.below(4);
    let mut req = match kind {
        0 => H2Request::get(
            HOST,
            &format!("/h2/items/{}?q=%27+OR+1%3D1", rng.below(1000)),
        ),
        1 => H2Request::post(
            HOST,
            "/h2/search",
            "application/x-www-form-urlencoded",
            format!("q=union+select+{tag}&page=2")
                .repeat(1 + rng.below(300) as usize)
                .into_bytes(),
        ),
        2 => H2Request::grpc(HOST, "/shop.Cart/Add", &[format!("{tag}:item").as_bytes()]),
        _ => H2Request::grpc(HOST, "/shop.Cart/Upload", &[]),
    };
    req.fields.insert(0, ("x-lab-id".into(), tag.clone()));
    let messages: Vec<Vec<u8>> = (0..2 + rng.below(4))
        .map(|i| {
            format!("{tag}:chunk-{i}:")
                .repeat(1 + rng.below(40) as usize)
                .into_bytes()
        })
        .collect();
    let streaming = kind == 3;
    // As sent: a known body gets its content-length from the client library; a stream none.
    let mut sent = req.clone();
    if streaming {
        sent.body = grpc_frames(&messages);
    } else if !sent.body.is_empty() {
        sent.fields
            .push(("content-length".into(), sent.body.len().to_string()));
    }
    let mut expected = sent.http1();
    if let Some(h) = client_ip_header {
        expected = proxy::with_client_ip(&expected, h, client);
    }
    ledger.sent_as(&expected, expected.clone());
    shared.sent.fetch_add(1, Ordering::SeqCst);
    match kind {
        2 => shared.unary.fetch_add(1, Ordering::SeqCst),
        3 => shared.streaming.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    let uri = format!("http://{HOST}{}", req.path);
    let mut b = Request::builder().method(req.method.as_str()).uri(uri);
    for (n, v) in &req.fields {
        b = b.header(n.as_str(), v.as_str());
    }
    let resp = if streaming {
        let (mut tx, body) =
            http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
        let gaps: Vec<u64> = messages.iter().map(|_| 5 + rng.below(30)).collect();
        let feeder = tokio::spawn(async move {
            for (m, ms) in messages.into_iter().zip(gaps) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if tx.send_data(Bytes::from(grpc_frames(&[m]))).await.is_err() {
                    return;
                }
            }
        });
        let r = sender
            .send_request(b.body(body.boxed()).map_err(|e| e.to_string())?)
            .await;
        let _ = feeder.await;
        r
    } else {
        sender
            .send_request(
                b.body(Full::new(Bytes::from(req.body)).boxed())
                    .map_err(|e| e.to_string())?,
            )
            .await
    }
    .map_err(|e| format!("{tag}: {e}"))?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("{tag}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{tag}: answered {status}"));
    }
    Ok(())
}
