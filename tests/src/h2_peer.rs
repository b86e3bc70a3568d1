//! A real HTTP/2 cleartext server and client (hyper, i.e. the `h2` crate) for live tests in the
//! lab's namespaces: the origin a gRPC or h2c service runs as, and the client that calls it
//! with prior knowledge, unary calls and client-streaming ones, several streams at once on one
//! connection. Nothing here shares code with rebuilder's decoder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::gen::h2::H2Request;
use crate::netns::Netns;

#[derive(Debug, thiserror::Error)]
pub enum H2PeerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("namespace: {0}")]
    Netns(String),
    #[error("HTTP/2: {0}")]
    Http(String),
    #[error("the HTTP/2 client thread panicked")]
    Panicked,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The origin: HTTP/2 with prior knowledge, answering gRPC calls as gRPC does (a message and
/// `grpc-status: 0` in trailers) and anything else with a short 200.
/// A request a recording sink got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub version: hyper::Version,
    pub method: String,
    /// As the request named it (with scheme and authority over HTTP/2).
    pub uri: String,
    /// In the order they came (HTTP/1.1 `host` included; HTTP/2 `:authority` is in `uri`).
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

pub struct H2Server {
    served: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl H2Server {
    /// Listens on `addr` inside `ns`, answering as an origin.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<H2Server, H2PeerError> {
        let listener = ns
            .run(|| std::net::TcpListener::bind(addr))
            .map_err(|e| H2PeerError::Netns(e.to_string()))??;
        Self::on(listener, false)
    }

    /// A WAF sink on `listener` speaking HTTP/1.1 and HTTP/2 (prior knowledge) alike, which
    /// records every request it gets ([`H2Server::recorded`]).
    pub fn recording_sink(listener: std::net::TcpListener) -> Result<H2Server, H2PeerError> {
        Self::on(listener, true)
    }

    fn on(listener: std::net::TcpListener, record: bool) -> Result<H2Server, H2PeerError> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let served = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let rt = runtime()?;
        let (s, e, r) = (
            Arc::clone(&served),
            Arc::clone(&errors),
            Arc::clone(&recorded),
        );
        let thread = std::thread::Builder::new()
            .name("h2-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        let stream = tokio::select! {
                            _ = &mut rx => return,
                            a = listener.accept() => match a {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                        };
                        let (s, e, r) = (Arc::clone(&s), Arc::clone(&e), Arc::clone(&r));
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                                async move {
                                    let rec = if record { Some(&*r) } else { None };
                                    Ok::<_, std::convert::Infallible>(answer(req, &s, rec).await)
                                }
                            });
                            let result = if record {
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await
                                    .map_err(|e| e.to_string())
                            } else {
                                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await
                                    .map_err(|e| e.to_string())
                            };
                            if let Err(err) = result {
                                e.lock().unwrap_or_else(|p| p.into_inner()).push(err);
                            }
                        });
                    }
                });
            })?;
        Ok(H2Server {
            served,
            errors,
            recorded,
            stop: Some(tx),
            thread: Some(thread),
            addr,
        })
    }

    /// What a recording sink got, in order of completion.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered (bodies read to their end).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type ServerBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn answer(
    req: Request<Incoming>,
    served: &AtomicUsize,
    record: Option<&Mutex<Vec<Recorded>>>,
) -> Response<ServerBody> {
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let (parts, body) = req.into_parts();
    // Read the whole request first, as a unary or client-streaming handler does.
    let collected = body.collect().await;
    served.fetch_add(1, Ordering::SeqCst);
    if let (Some(r), Ok(c)) = (record, collected) {
        let list = |h: &HeaderMap| {
            h.iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        };
        let trailers = c.trailers().map(list).unwrap_or_default();
        r.lock().unwrap_or_else(|p| p.into_inner()).push(Recorded {
            version: parts.version,
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            fields: list(&parts.headers),
            body: c.to_bytes().to_vec(),
            trailers,
        });
    }
    if grpc {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
        let body = Full::new(Bytes::from_static(b"\x00\x00\x00\x00\x02ok"))
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/grpc"),
        );
        resp
    } else {
        Response::new(Full::new(Bytes::from_static(b"ok\n")).boxed())
    }
}

/// One call a client makes.
#[derive(Clone, Debug)]
pub enum Call {
    /// The whole request at once (its body, if any, with a known length).
    Unary(H2Request),
    /// A client-streaming call: the request's fields, then each message as its own DATA frame,
    /// `gap` apart, then the end of the stream. `request.body` is ignored.
    Streaming {
        request: H2Request,
        messages: Vec<Vec<u8>>,
        gap: Duration,
    },
}

impl Call {
    /// The request as it went out: for unary calls with a body, hyper states its length
    /// (`content-length`, after the other fields), as every HTTP/2 client library does; a
    /// stream's length is not known, so it has none; a streaming call's body is its messages,
    /// each length-prefixed as gRPC frames them.
    pub fn as_sent(&self) -> H2Request {
        match self {
            Call::Unary(r) => {
                let mut r = r.clone();
                if !r.body.is_empty() {
                    r.fields
                        .push(("content-length".into(), r.body.len().to_string()));
                }
                r
            }
            Call::Streaming {
                request, messages, ..
            } => {
                let mut r = request.clone();
                r.body = grpc_frames(messages);
                r
            }
        }
    }
}

/// Messages framed as gRPC frames them: a zero byte (not compressed), the length, the bytes.
pub fn grpc_frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for m in messages {
        body.push(0);
        body.extend_from_slice(&(m.len() as u32).to_be_bytes());
        body.extend_from_slice(m);
    }
    body
}

fn request<B>(r: &H2Request, body: B) -> Result<Request<B>, H2PeerError> {
    let authority = r.authority.clone().unwrap_or_default();
    let uri = format!("{}://{}{}", r.scheme, authority, r.path);
    let mut b = Request::builder().method(r.method.as_str()).uri(uri);
    for (n, v) in &r.fields {
        b = b.header(n.as_str(), v.as_str());
    }
    b.body(body).map_err(|e| H2PeerError::Http(e.to_string()))
}

/// Makes every call at once, each on its own stream of one connection from `ns` to `to`, and
/// waits for every answer (gRPC answers must carry `grpc-status: 0`). Returns the requests as
/// they went out.
pub fn run_client(
    ns: &Netns,
    to: SocketAddr,
    calls: Vec<Call>,
    timeout: Duration,
) -> Result<Vec<H2Request>, H2PeerError> {
    let handle = ns
        .spawn(
            "h2-client",
            move || -> Result<Vec<H2Request>, H2PeerError> {
                let rt = runtime()?;
                rt.block_on(async move {
                    tokio::time::timeout(timeout, client(to, calls))
                        .await
                        .map_err(|_| {
                            H2PeerError::Http(format!("calls not answered within {timeout:?}"))
                        })?
                })
            },
        )
        .map_err(|e| H2PeerError::Netns(e.to_string()))?;
    match handle.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(H2PeerError::Netns(e.to_string())),
        Err(_) => Err(H2PeerError::Panicked),
    }
}

async fn client(to: SocketAddr, calls: Vec<Call>) -> Result<Vec<H2Request>, H2PeerError> {
    let stream = tokio::net::TcpStream::connect(to).await?;
    let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, ServerBody>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| H2PeerError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let mut tasks = Vec::new();
    for call in &calls {
        let mut sender = sender.clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (status, grpc_status) = match &call {
                Call::Unary(r) => {
                    let resp = sender
                        .send_request(request(r, Full::new(Bytes::from(r.body.clone())).boxed())?)
                        .await
                        .map_err(|e| H2PeerError::Http(e.to_string()))?;
                    read(resp).await?
                }
                Call::Streaming {
                    request: r,
                    messages,
                    gap,
                } => {
                    let (mut tx, body) =
                        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
                    let messages = messages.clone();
                    let gap = *gap;
                    let feeder = tokio::spawn(async move {
                        for m in messages {
                            tokio::time::sleep(gap).await;
                            if tx.send_data(Bytes::from(grpc_frames(&[m]))).await.is_err() {
                                return;
                            }
                        }
                    });
                    let resp = sender
                        .send_request(request(r, body.boxed())?)
                        .await
                        .map_err(|e| H2PeerError::Http(e.to_string()))?;
                    let _ = feeder.await;
                    read(resp).await?
                }
            };
            let grpc = call
                .as_sent()
                .fields
                .iter()
                .any(|(n, v)| n == "content-type" && v.starts_with("application/grpc"));
            if status != 200 || (grpc && grpc_status.as_deref() != Some("0")) {
                return Err(H2PeerError::Http(format!(
                    "answer {status}, grpc-status {grpc_status:?}"
                )));
            }
            Ok::<_, H2PeerError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|_| H2PeerError::Panicked)??;
    }
    drop(sender);
    driver.abort();
    Ok(calls.iter().map(Call::as_sent).collect())
}

/// Status, and `grpc-status` from the trailers if any.
async fn read(resp: Response<Incoming>) -> Result<(u16, Option<String>), H2PeerError> {
    let status = resp.status().as_u16();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| H2PeerError::Http(e.to_string()))?;
    let grpc = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, grpc))
}
