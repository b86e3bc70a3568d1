//! A TCP server standing in for the WAF: records the exact bytes of every request it receives
//! and answers each with an empty `200 OK`.
//!
//! Threads, not tokio: a test sink must be boring, and a thread per connection is plenty for
//! the dozens of keep-alive connections a rebuilder opens.

pub mod framer;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use framer::FramingError;

/// The answer to every request.
pub const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
/// The answer to the last request before a `close_after` close, when it is announced.
pub const OK_CLOSE_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// What [`Answer::Garbage`] sends instead of a response: not HTTP at all.
pub const GARBAGE_RESPONSE: &[u8] = b"\x00\x17 this is not HTTP \xff\xfe\r\n\r\n";

/// How the sink answers each request it records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Answer {
    /// `200 OK` (after `response_delay`).
    #[default]
    Ok,
    /// Never: the request is recorded and the connection left hanging.
    Hang,
    /// Bytes that are not an HTTP response.
    Garbage,
}

impl Answer {
    fn code(self) -> u8 {
        match self {
            Answer::Ok => 0,
            Answer::Hang => 1,
            Answer::Garbage => 2,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => Answer::Hang,
            2 => Answer::Garbage,
            _ => Answer::Ok,
        }
    }
}
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub addr: SocketAddr,
    /// Wait this long before answering each request.
    pub response_delay: Duration,
    /// Close a connection after answering this many requests on it.
    pub close_after: Option<usize>,
    /// Say `Connection: close` in the last answer before a `close_after` close, as nginx does
    /// at its `keepalive_requests` limit; false closes without warning.
    pub announce_close: bool,
    /// Accept connections and reset them at once.
    pub refuse: bool,
    /// Answer `100 Continue` when a head with `Expect: 100-continue` arrives without its body.
    pub send_continue: bool,
    /// How requests are answered (changeable later with [`Sink::set_answer`]).
    pub answer: Answer,
    pub max_head: usize,
    pub max_body: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            response_delay: Duration::ZERO,
            close_after: None,
            announce_close: true,
            refuse: false,
            send_continue: false,
            answer: Answer::Ok,
            max_head: 1 << 20,
            max_body: 256 << 20,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Index of the connection (in order of acceptance, from 0).
    pub connection: usize,
    /// Index of the request on its connection.
    pub index: usize,
    /// When its last byte arrived, since the sink started.
    pub at: Duration,
    /// Who sent it (with several rebuilders, which one replayed it).
    pub peer: SocketAddr,
    pub raw: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionErrorKind {
    /// The bytes cannot be framed as a request; the connection was closed.
    Framing(FramingError),
    /// The peer closed the connection in the middle of a request.
    Incomplete {
        bytes: usize,
    },
    Io(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionError {
    pub connection: usize,
    pub kind: ConnectionErrorKind,
    /// The first bytes of what could not be framed.
    pub excerpt: Vec<u8>,
}

/// `wait_for` ran out of time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("waited {waited:?} for {expected} requests, {received} arrived")]
pub struct WaitTimeout {
    pub expected: usize,
    pub received: usize,
    pub waited: Duration,
}

#[derive(Default)]
struct State {
    requests: Vec<ReceivedRequest>,
    received_total: usize,
    errors: Vec<ConnectionError>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    stop: AtomicBool,
    refuse: AtomicBool,
    answer: AtomicU8,
    delay_us: AtomicU64,
    /// 0 means never.
    close_after: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    /// Bumped by `reset_connections`: connections opened before reset themselves.
    resets: AtomicU64,
    open: AtomicUsize,
    started: Instant,
    cfg: SinkConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take every later assertion down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, connection: usize, kind: ConnectionErrorKind, bytes: &[u8]) {
        let excerpt = bytes.get(..256).unwrap_or(bytes).to_vec();
        self.lock().errors.push(ConnectionError {
            connection,
            kind,
            excerpt,
        });
    }
}

pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Sink {
    /// A sink on 127.0.0.1 at a free port, with default options.
    pub fn start_default() -> io::Result<Sink> {
        Self::start(SinkConfig::default())
    }

    /// Binds `cfg.addr` and starts serving.
    pub fn start(cfg: SinkConfig) -> io::Result<Sink> {
        let listener = TcpListener::bind(cfg.addr)?;
        Self::from_listener(listener, cfg)
    }

    /// Serves on a listener made elsewhere (for instance inside a network namespace; accepted
    /// connections belong to the listener's namespace whatever thread accepts them).
    /// `cfg.addr` is ignored.
    pub fn from_listener(listener: TcpListener, cfg: SinkConfig) -> io::Result<Sink> {
        let addr = listener.local_addr()?;
        // Non-blocking accept so the acceptor notices `stop` without a wake-up connection.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            refuse: AtomicBool::new(cfg.refuse),
            answer: AtomicU8::new(cfg.answer.code()),
            delay_us: AtomicU64::new(
                u64::try_from(cfg.response_delay.as_micros()).unwrap_or(u64::MAX),
            ),
            close_after: AtomicUsize::new(cfg.close_after.unwrap_or(0)),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            resets: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            started: Instant::now(),
            cfg,
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("sink-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Sink {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, for an upstream URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until at least `n` requests have arrived since the sink started (taking them
    /// does not reset this count).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let start = Instant::now();
        let mut st = self.shared.lock();
        while st.received_total < n {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(WaitTimeout {
                    expected: n,
                    received: st.received_total,
                    waited: start.elapsed(),
                });
            }
            st = self
                .shared
                .arrived
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }

    /// Waits until no request has arrived for `quiet`, or `timeout` passes; returns the total.
    /// For checking that nothing more (no duplicate) shows up.
    pub fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> usize {
        let start = Instant::now();
        let mut st = self.shared.lock();
        loop {
            let before = st.received_total;
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return before;
            }
            let (g, res) = self
                .shared
                .arrived
                .wait_timeout(st, quiet.min(left))
                .unwrap_or_else(|p| p.into_inner());
            st = g;
            if res.timed_out() && st.received_total == before {
                return before;
            }
        }
    }

    /// Removes and returns the requests recorded so far, in arrival order.
    pub fn take(&self) -> Vec<ReceivedRequest> {
        std::mem::take(&mut self.shared.lock().requests)
    }

    /// A copy of the requests recorded (and not taken) so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests received since the start.
    pub fn received(&self) -> usize {
        self.shared.lock().received_total
    }

    pub fn errors(&self) -> Vec<ConnectionError> {
        self.shared.lock().errors.clone()
    }

    /// Connections accepted (refused ones included).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    pub fn set_refusing(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Resets (RST) every open connection within a poll interval, as a WAF that crashed or
    /// was replaced; with [`set_refusing`](Self::set_refusing) the upstream is gone.
    pub fn reset_connections(&self) {
        self.shared.resets.fetch_add(1, Ordering::SeqCst);
    }

    /// From now on, requests are answered this way (on every connection).
    pub fn set_answer(&self, answer: Answer) {
        self.shared.answer.store(answer.code(), Ordering::SeqCst);
    }

    pub fn set_response_delay(&self, delay: Duration) {
        self.shared.delay_us.store(
            u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    pub fn set_close_after(&self, n: Option<usize>) {
        self.shared
            .close_after
            .store(n.unwrap_or(0), Ordering::SeqCst);
    }

    /// Stops accepting, closes every connection and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(&mut self.shared.lock().threads);
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .field("received", &self.received())
            .finish()
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.refuse.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    // Linger 0 turns the close into a RST: the peer sees a reset, not a
                    // polite FIN it might mistake for an idle-timeout close.
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    continue;
                }
                let s = Arc::clone(&shared);
                shared.open.fetch_add(1, Ordering::SeqCst);
                let spawned = thread::Builder::new()
                    .name(format!("sink-conn-{id}"))
                    .spawn(move || {
                        serve(stream, id, peer, &s);
                        s.open.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(h) => shared.lock().threads.push(h),
                    Err(e) => {
                        shared.open.fetch_sub(1, Ordering::SeqCst);
                        shared.error(id, ConnectionErrorKind::Io(format!("spawn: {e}")), &[]);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn sleep_unless_stopped(d: Duration, shared: &Shared) {
    let end = Instant::now() + d;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        thread::sleep((end - now).min(POLL));
    }
}

/// Half-closes, then discards what the peer still sends for a moment before closing: closing
/// with unread bytes would send a RST that can destroy the last answer in flight (nginx's
/// `lingering_close` exists for the same reason).
fn lingering_close(stream: &mut TcpStream, shared: &Shared) {
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + Duration::from_millis(500);
    let mut scratch = [0u8; 4096];
    while Instant::now() < end && !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn serve(mut stream: TcpStream, id: usize, peer: SocketAddr, shared: &Shared) {
    let resets = shared.resets.load(Ordering::SeqCst);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_read_timeout(Some(POLL)) {
        shared.error(id, ConnectionErrorKind::Io(e.to_string()), &[]);
        return;
    }
    let cfg = &shared.cfg;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut served = 0usize;
    let mut continued = false;
    loop {
        loop {
            match framer::frame_request(&buf, cfg.max_head, cfg.max_body) {
                Ok(Some(n)) => {
                    let raw: Vec<u8> = buf.drain(..n).collect();
                    continued = false;
                    {
                        let mut st = shared.lock();
                        st.requests.push(ReceivedRequest {
                            connection: id,
                            index: served,
                            at: shared.started.elapsed(),
                            peer,
                            raw,
                        });
                        st.received_total += 1;
                    }
                    shared.arrived.notify_all();
                    served += 1;
                    match Answer::from_code(shared.answer.load(Ordering::SeqCst)) {
                        Answer::Ok => {}
                        Answer::Hang => continue,
                        Answer::Garbage => {
                            if let Err(e) = stream.write_all(GARBAGE_RESPONSE) {
                                shared.error(
                                    id,
                                    ConnectionErrorKind::Io(format!("write: {e}")),
                                    &[],
                                );
                                return;
                            }
                            continue;
                        }
                    }
                    let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
                    if !delay.is_zero() {
                        sleep_unless_stopped(delay, shared);
                    }
                    let limit = shared.close_after.load(Ordering::SeqCst);
                    let closing = limit > 0 && served >= limit;
                    let answer = if closing && cfg.announce_close {
                        OK_CLOSE_RESPONSE
                    } else {
                        OK_RESPONSE
                    };
                    if let Err(e) = stream.write_all(answer) {
                        shared.error(id, ConnectionErrorKind::Io(format!("write: {e}")), &[]);
                        return;
                    }
                    if closing {
                        lingering_close(&mut stream, shared);
                        return;
                    }
                }
                Ok(None) => {
                    if cfg.send_continue && !continued {
                        if let Ok(Some(head)) = framer::parse_head(&buf, cfg.max_head) {
                            if head.expect_continue && buf.len() == head.len {
                                continued = true;
                                if let Err(e) = stream.write_all(CONTINUE) {
                                    shared.error(
                                        id,
                                        ConnectionErrorKind::Io(format!("write: {e}")),
                                        &[],
                                    );
                                    return;
                                }
                            }
                        }
                    }
                    break;
                }
                Err(e) => {
                    shared.error(id, ConnectionErrorKind::Framing(e), &buf);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if shared.resets.load(Ordering::SeqCst) != resets {
            // Linger 0: the close is a RST, as from a WAF that went away.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !buf.is_empty() {
                    shared.error(
                        id,
                        ConnectionErrorKind::Incomplete { bytes: buf.len() },
                        &buf,
                    );
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.error(id, ConnectionErrorKind::Io(format!("read: {e}")), &buf);
                return;
            }
        }
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, then released): connecting to it is
/// refused. For testing how a client copes with an absent upstream.
pub fn unused_local_addr() -> io::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    l.local_addr()
}

#[cfg(test)]
mod tests;
