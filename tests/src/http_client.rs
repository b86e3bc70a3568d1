//! An HTTP/1.1 keep-alive client that writes exact bytes on a TCP connection and reads each
//! response, recording what it sent: that record is the ground truth an end-to-end test
//! compares the WAF sink's against.
//!
//! Raw TCP, not an HTTP library: the requests are whatever bytes the test made (hostile and
//! malformed ones included), written as given. Responses are framed (Content-Length, chunked,
//! or to the close; none for HEAD, 1xx, 204, 304) only to know when to send the next request.
//! Works on any `TcpStream`, so the connection may come from inside a network namespace.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::gen::http::expect_continue_split;
use crate::sink::framer;

const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_BODY: u64 = 1 << 30;

/// What one connection sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPlan {
    pub requests: Vec<Vec<u8>>,
    /// Requests written back to back before their responses are read (1: one at a time).
    pub pipeline: usize,
    /// Write each request in pieces of this many bytes, pausing between them (a body
    /// streamed as it is produced); `None` writes each request at once.
    pub pieces: Option<(usize, Duration)>,
    /// Written once, before the first request and as a write of its own: a PROXY protocol
    /// header, as a load balancer sends it.
    pub preamble: Vec<u8>,
    /// The local address to connect from (another address of the client's host, e.g. a load
    /// balancer node's); None: the system's choice.
    pub source: Option<std::net::IpAddr>,
}

impl ConnectionPlan {
    /// One request at a time, each written at once.
    pub fn new(requests: Vec<Vec<u8>>) -> Self {
        Self {
            requests,
            pipeline: 1,
            pieces: None,
            preamble: Vec::new(),
            source: None,
        }
    }

    /// Connects from `ip` (see [`ConnectionPlan::source`]).
    pub fn from_address(mut self, ip: std::net::IpAddr) -> Self {
        self.source = Some(ip);
        self
    }

    /// Starts the connection with `bytes` (see [`ConnectionPlan::preamble`]).
    pub fn with_preamble(mut self, bytes: Vec<u8>) -> Self {
        self.preamble = bytes;
        self
    }

    /// Writes `depth` requests back to back, then reads their responses.
    pub fn pipelined(mut self, depth: usize) -> Self {
        self.pipeline = depth;
        self
    }

    /// Streams every request in `size`-byte writes, `pause` apart.
    pub fn in_pieces(mut self, size: usize, pause: Duration) -> Self {
        self.pieces = Some((size, pause));
        self
    }
}

/// A request as it went out, whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRequest {
    /// Index of the connection among those a driver ran.
    pub connection: usize,
    /// Index of the request on its connection.
    pub index: usize,
    pub raw: Vec<u8>,
}

/// A response as it came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Its bytes, head and body.
    pub len: usize,
}

/// What one connection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionOutcome {
    pub sent: Vec<SentRequest>,
    /// Final responses (interim `100 Continue` ones are not counted), in order.
    pub responses: Vec<Response>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection {connection}: {source}")]
    Io {
        connection: usize,
        #[source]
        source: io::Error,
    },
    #[error("connection {connection}: no progress before the deadline ({waited:?})")]
    Timeout { connection: usize, waited: Duration },
    #[error("connection {connection}: bad response: {reason}")]
    BadResponse { connection: usize, reason: String },
    #[error("connection {connection}: closed by the server after {responses} responses")]
    ClosedEarly { connection: usize, responses: usize },
    #[error("invalid plan: {0}")]
    Plan(String),
}

/// A TCP connection to `to`, from `source` when given (bound before connecting).
pub fn connect_from(
    source: Option<std::net::IpAddr>,
    to: std::net::SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect_timeout(&to, timeout);
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.bind(&std::net::SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&to.into(), timeout)?;
    Ok(sock.into())
}

/// Sends `plan` on `stream`, reading every response, all before `deadline`.
pub fn run_connection(
    stream: TcpStream,
    connection: usize,
    plan: &ConnectionPlan,
    deadline: Instant,
) -> Result<ConnectionOutcome, ClientError> {
    if plan.pipeline == 0 {
        return Err(ClientError::Plan(
            "pipeline depth must be at least 1".into(),
        ));
    }
    let mut c = KeepAlive::new(stream, connection)?;
    if !plan.preamble.is_empty() {
        c.preamble(&plan.preamble, deadline)?;
    }
    let mut outcome = ConnectionOutcome::default();
    let mut index = 0usize;
    for batch in plan.requests.chunks(plan.pipeline) {
        let responses = c.exchange(batch, plan.pieces, deadline)?;
        for req in batch {
            outcome.sent.push(SentRequest {
                connection,
                index,
                raw: req.clone(),
            });
            index += 1;
        }
        outcome.responses.extend(responses);
    }
    c.finish();
    Ok(outcome)
}

fn is_head(req: &[u8]) -> bool {
    let start = req
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(req.len());
    req.get(start..).is_some_and(|r| r.starts_with(b"HEAD "))
}

/// One keep-alive client connection, used batch after batch: what a long-lived client (a
/// browser, a service calling another) does.
pub struct KeepAlive {
    stream: TcpStream,
    connection: usize,
    deadline: Instant,
    start: Instant,
    buf: Vec<u8>,
    /// Final responses read on this connection so far.
    responses: usize,
}

impl KeepAlive {
    /// Takes a connected stream; `connection` names it in errors.
    pub fn new(stream: TcpStream, connection: usize) -> Result<Self, ClientError> {
        let now = Instant::now();
        let c = KeepAlive {
            stream,
            connection,
            deadline: now,
            start: now,
            buf: Vec::new(),
            responses: 0,
        };
        c.stream.set_nodelay(true).map_err(|e| c.io(e))?;
        Ok(c)
    }

    /// The local address: with the origin's, the connection's 4-tuple.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Writes `batch` back to back (pipelined when longer than one), then reads one final
    /// response per request, all before `deadline`. A request alone in flight that asks for
    /// `100 Continue` waits for it before its body, as a real client does.
    pub fn exchange(
        &mut self,
        batch: &[Vec<u8>],
        pieces: Option<(usize, Duration)>,
        deadline: Instant,
    ) -> Result<Vec<Response>, ClientError> {
        if matches!(pieces, Some((0, _))) {
            return Err(ClientError::Plan("piece size must be at least 1".into()));
        }
        self.deadline = deadline;
        self.start = Instant::now();
        for req in batch {
            match expect_continue_split(req).filter(|_| batch.len() == 1) {
                Some(split) => {
                    let (head, body) = req.split_at(split.min(req.len()));
                    self.write(head, pieces)?;
                    let interim = self.read_response(false, true)?;
                    if !(100..200).contains(&interim.status) {
                        return Err(self.bad(format!(
                            "answered {} before the body of an Expect: 100-continue request",
                            interim.status
                        )));
                    }
                    self.write(body, pieces)?;
                }
                None => self.write(req, pieces)?,
            }
        }
        let mut responses = Vec::with_capacity(batch.len());
        for req in batch {
            responses.push(self.read_response(is_head(req), false)?);
            self.responses += 1;
        }
        Ok(responses)
    }

    /// Writes bytes that are no request (a PROXY header) before the first one.
    pub fn preamble(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ClientError> {
        self.deadline = deadline;
        self.start = Instant::now();
        self.write(bytes, None)
    }

    /// Closes the sending side, as a client done with the connection does.
    pub fn finish(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn io(&self, source: io::Error) -> ClientError {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return self.timeout();
        }
        ClientError::Io {
            connection: self.connection,
            source,
        }
    }

    fn timeout(&self) -> ClientError {
        ClientError::Timeout {
            connection: self.connection,
            waited: self.start.elapsed(),
        }
    }

    fn bad(&self, reason: String) -> ClientError {
        ClientError::BadResponse {
            connection: self.connection,
            reason,
        }
    }

    /// Time left, never zero (a zero timeout means "forever" to the socket API).
    fn left(&self) -> Result<Duration, ClientError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timeout())
        } else {
            Ok(left)
        }
    }

    fn write(
        &mut self,
        bytes: &[u8],
        pieces: Option<(usize, Duration)>,
    ) -> Result<(), ClientError> {
        let (size, pause) = pieces.unwrap_or((bytes.len().max(1), Duration::ZERO));
        let mut first = true;
        for piece in bytes.chunks(size) {
            if !first && !pause.is_zero() {
                std::thread::sleep(pause.min(self.left()?));
            }
            first = false;
            let left = self.left()?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            self.stream.write_all(piece).map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    /// Reads one response. Interim (1xx) responses are returned when `interim` is set, else
    /// skipped.
    fn read_response(
        &mut self,
        head_request: bool,
        interim: bool,
    ) -> Result<Response, ClientError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match frame_response(&self.buf, head_request).map_err(|e| self.bad(e))? {
                Framed::Whole { len, status } => {
                    self.buf.drain(..len);
                    if (100..200).contains(&status) && !interim {
                        continue;
                    }
                    return Ok(Response { status, len });
                }
                Framed::Partial | Framed::ToClose => {}
            }
            let left = self.left()?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if let Framed::ToClose =
                        frame_response(&self.buf, head_request).map_err(|e| self.bad(e))?
                    {
                        let status = status_code(&self.buf).map_err(|e| self.bad(e))?;
                        let len = self.buf.len();
                        self.buf.clear();
                        return Ok(Response { status, len });
                    }
                    return Err(ClientError::ClosedEarly {
                        connection: self.connection,
                        responses: self.responses,
                    });
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// A whole response of `len` bytes starts the buffer.
    Whole { len: usize, status: u16 },
    /// More bytes needed.
    Partial,
    /// The head is complete and the body runs to the connection's close.
    ToClose,
}

fn status_code(buf: &[u8]) -> Result<u16, String> {
    let line_end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    let line = buf.get(..line_end).unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") {
        return Err(format!(
            "status line {:?}",
            String::from_utf8_lossy(line.get(..64).unwrap_or(line))
        ));
    }
    let code = words.next().unwrap_or_default();
    std::str::from_utf8(code)
        .ok()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("status code {:?}", String::from_utf8_lossy(code)))
}

/// Where the response at the start of `buf` ends. The sink's request framer finds head and
/// body boundaries the same way for responses (a status line in place of a request line);
/// what differs is which responses have no body and that a response may run to the close.
fn frame_response(buf: &[u8], head_request: bool) -> Result<Framed, String> {
    let Some(head) = framer::parse_head(buf, MAX_RESPONSE_HEAD).map_err(|e| e.to_string())? else {
        return Ok(Framed::Partial);
    };
    let status = status_code(buf)?;
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framed::Whole {
            len: head.len,
            status,
        });
    }
    if !head.chunked && head.content_length.is_none() {
        return Ok(Framed::ToClose);
    }
    match framer::frame_request(buf, MAX_RESPONSE_HEAD, MAX_RESPONSE_BODY)
        .map_err(|e| e.to_string())?
    {
        Some(len) => Ok(Framed::Whole { len, status }),
        None => Ok(Framed::Partial),
    }
}

#[cfg(test)]
mod tests;
