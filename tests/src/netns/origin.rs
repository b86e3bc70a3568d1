//! The origin server of a lab: the production service whose traffic is mirrored. A threaded
//! HTTP/1.1 keep-alive server answering every request with the same fixed response.
//!
//! Requests are framed with the sink's framer (Content-Length, chunked, pipelined), so the
//! origin reads exactly one request before answering it, as a real server does; which bytes
//! it got is not its business (the client records what it sent, the sink what it received).
//! A PROXY protocol header at the start of a connection (v1 or v2, as a load balancer sends
//! one) is skipped by its length and counted, as a server configured for proxy protocol does.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::sink::framer;

const POLL: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 1 << 20;
const MAX_BODY: u64 = 1 << 30;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

struct Shared {
    stop: AtomicBool,
    served: AtomicUsize,
    request_bytes: AtomicU64,
    proxy_headers: AtomicUsize,
    errors: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    response: Vec<u8>,
}

impl Shared {
    fn error(&self, e: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }
}

/// A running origin server; dropping it stops it and joins its threads.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Origin {
    /// Serves on `listener` (made inside the origin's namespace), answering every request
    /// with `response` (a whole HTTP/1.1 response, e.g. [`crate::gen::http::ok_response`]).
    pub fn from_listener(listener: TcpListener, response: Vec<u8>) -> io::Result<Origin> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            served: AtomicUsize::new(0),
            request_bytes: AtomicU64::new(0),
            proxy_headers: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            response,
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("origin-accept".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(Origin {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// PROXY protocol headers skipped at connection starts so far.
    pub fn proxy_headers(&self) -> usize {
        self.shared.proxy_headers.load(Ordering::SeqCst)
    }

    /// Bytes of the requests answered so far.
    pub fn request_bytes(&self) -> u64 {
        self.shared.request_bytes.load(Ordering::SeqCst)
    }

    /// Connections that ended badly (unframeable bytes, a request cut short, I/O errors).
    pub fn errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut id = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name(format!("origin-conn-{id}"))
                    .spawn(move || serve(stream, &s));
                match spawned {
                    Ok(h) => shared
                        .threads
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(h),
                    Err(e) => shared.error(format!("connection {id}: spawn: {e}")),
                }
                id += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    if let Err(e) = serve_inner(&mut stream, shared) {
        shared.error(e);
    }
}

fn serve_inner(stream: &mut TcpStream, shared: &Shared) -> Result<(), String> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .map_err(|e| format!("{peer}: {e}"))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut continued = false;
    // Until the first bytes show whether a PROXY header leads the connection.
    let mut at_start = true;
    loop {
        if at_start {
            match crate::gen::proxy::header_len(&buf) {
                Some(Some(n)) => {
                    buf.drain(..n);
                    shared.proxy_headers.fetch_add(1, Ordering::SeqCst);
                    at_start = false;
                }
                Some(None) => {}
                None => at_start = false,
            }
        }
        if !at_start {
            loop {
                match framer::frame_request(&buf, MAX_HEAD, MAX_BODY) {
                    Ok(Some(n)) => {
                        buf.drain(..n);
                        continued = false;
                        shared.served.fetch_add(1, Ordering::SeqCst);
                        shared.request_bytes.fetch_add(n as u64, Ordering::SeqCst);
                        stream
                            .write_all(&shared.response)
                            .map_err(|e| format!("{peer}: write: {e}"))?;
                    }
                    Ok(None) => {
                        if !continued {
                            if let Ok(Some(head)) = framer::parse_head(&buf, MAX_HEAD) {
                                if head.expect_continue && buf.len() == head.len {
                                    continued = true;
                                    stream
                                        .write_all(CONTINUE)
                                        .map_err(|e| format!("{peer}: write: {e}"))?;
                                }
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        let _ = stream.shutdown(Shutdown::Both);
                        return Err(format!("{peer}: cannot frame a request: {e}"));
                    }
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(()),
            Ok(0) => {
                return Err(format!(
                    "{peer}: closed inside a request ({} bytes)",
                    buf.len()
                ))
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("{peer}: read: {e}")),
        }
    }
}
