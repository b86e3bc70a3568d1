//! HTTP/1.x framing of a client's byte stream into requests (the wire rules shared with
//! response framing are in `http1`).
//!
//! [`RequestFramer`] turns the [`StreamEvent`]s of one client-to-server stream into
//! [`RebuiltRequest`]s whose `raw` bytes are exactly what the client sent:
//!
//! - A head is delimited first (the blank line, searched only in new bytes) and parsed once,
//!   with a lenient httparse configuration; a head httparse refuses is still replayed, flagged
//!   `malformed`, when its request line reads as `TOKEN SP something SP HTTP/1.x`.
//! - The body follows Transfer-Encoding: chunked (final coding), else Content-Length, else there
//!   is none. Bytes are copied out of the events into a buffer owned by the request, so no input
//!   `Bytes` (possibly a slice of a large capture chunk) outlives the call.
//! - Empty lines between requests (RFC 9112 §2.2) are skipped and belong to no request.
//! - After a hole, an error or a pickup mid-stream, the framer resynchronises: it skips bytes
//!   until a line that begins with a strict request line (see `resync`). A line start is the byte
//!   after an LF, and also the first byte of a pickup and the first byte after a gap: segments
//!   often begin with a request, and a false match would need a whole request line. Until the
//!   stream has shown a request, a line starting `HTTP/1.x DDD` there means the stream is the
//!   server's direction (a pickup without SYN guessed wrong): counted in `response_streams`, done.
//! - A body over `max_body_bytes` is counted, not kept; the request is pushed once the body has
//!   passed (for both framings, so a gap in it can still be flagged), as its head with framing
//!   rewritten (`head::rewrite_without_body`). With chunked framing, a Content-Length that came
//!   alongside Transfer-Encoding is set to `0` and no second one is added.
//! - Content-Length values that disagree, or a Transfer-Encoding whose final coding is not
//!   chunked, leave the body's end unknown: the request is dropped as invalid and the framer
//!   resynchronises.
//! - A record cut by a gap holds the bytes before the hole; its `body_len` is the body bytes it
//!   holds (the original length when the body was also over the limit).
//! - Memory: at most `max_head_bytes` while reading a head or resynchronising, plus at most
//!   `max_body_bytes` of body.

mod head;
mod resync;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::h2::{H2Conn, H2Stats, Start};
use crate::reassembly::StreamEvent;
use crate::request::{RebuiltRequest, RequestFlags};
use crate::segment::Timestamp;

use crate::http1::chunked::{ChunkedDecoder, InvalidChunk};
use crate::http1::head_end::HeadEnd;
use head::{Framing, HeadError, HeadInfo};
use resync::{RequestLine, StatusLine, Step};

/// Limits on what one request may hold. Defaults are sized for real traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus headers plus the blank line.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Body bytes as sent (chunk framing included).
    pub max_body_bytes: u64,
    /// Header added to a request whose body was over the limit, stating the original body
    /// length.
    pub original_length_header: String,
    /// HTTP/2: the largest HPACK dynamic table a client's size update may ask for (the
    /// server's SETTINGS_HEADER_TABLE_SIZE, 4096 unless it advertised more).
    pub h2_max_table_size: usize,
    /// HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS
    /// of common servers is 100 to 250); more are refused, counted.
    pub h2_max_streams: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            max_body_bytes: 16 * 1024 * 1024,
            original_length_header: "X-Rebuilder-Original-Body-Length".to_string(),
            h2_max_table_size: 4096,
            h2_max_streams: 256,
        }
    }
}

/// Who the stream belongs to, stamped on every request it yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowContext {
    pub vni: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Counts of everything the framer saw, dropped or skipped. Plain integers: the worker owns
/// one and publishes it to the metrics now and then, so the hot path touches no atomics.
///
/// `requests` counts every record pushed to `out`, flagged ones included; `malformed_replayed`,
/// `body_over_limit` and `dropped_gap` say how many of those (or, for `dropped_gap`, of requests
/// that had no complete head) were special. The other `dropped_*` counters count requests for
/// which no record was pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub requests: u64,
    pub malformed_replayed: u64,
    pub body_over_limit: u64,
    pub expect_continue: u64,
    pub dropped_gap: u64,
    pub dropped_head_too_large: u64,
    pub dropped_too_many_headers: u64,
    pub dropped_invalid: u64,
    pub dropped_incomplete: u64,
    pub resync_skipped_bytes: u64,
    pub h2_preface: u64,
    pub upgrades: u64,
    pub connects: u64,
    pub response_streams: u64,
    pub non_http_streams: u64,
    /// HTTP/2 connections, frames and streams (`h2`).
    pub h2: H2Stats,
}

/// The first head of an HTTP/2 prior-knowledge connection: the 24-byte preface starts with it,
/// and no HTTP/1.x request can, so the remaining `SM\r\n\r\n` need not be waited for.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
const RESPONSE_START: &[u8] = b"HTTP/1.";
/// A TLS handshake record: content type 22, major version 3.
const TLS_START: &[u8] = &[0x16, 0x03];
/// A body buffer is grown as bytes arrive, from at most this much: a Content-Length alone must
/// not reserve memory the client may never send.
const INITIAL_BODY_RESERVE: usize = 64 * 1024;

/// Frames one client-to-server stream into requests.
pub struct RequestFramer {
    ctx: FlowContext,
    limits: Arc<HttpLimits>,
    parser: httparse::ParserConfig,
    phase: Phase,
    /// The request being built (head, then body unless it is over the limit), or the candidate
    /// request line while resynchronising.
    buf: Vec<u8>,
    first_ts: Timestamp,
    last_ts: Timestamp,
    /// At stream start, the first bytes may still show another protocol (TLS, a response).
    sniff: bool,
    /// At stream start, the first head may be the HTTP/2 preface.
    first_head: bool,
    /// A head has been read as a request: from then on this is surely the client's direction.
    seen_request: bool,
    /// httparse runs, so tests can check that trickled heads are parsed once.
    head_parses: u64,
}

enum Phase {
    /// Between requests.
    Idle,
    /// `buf` holds the head so far.
    Head(HeadEnd),
    Body(Box<Body>),
    /// The rest of a Content-Length body whose request was already emitted (cut by a gap).
    Skip {
        remaining: u64,
    },
    Resync(Resync),
    /// HTTP/2 from here on (the preface was read, or frames found in a pickup).
    H2(Box<H2Conn>),
    Done,
}

struct Body {
    info: HeadInfo,
    head_len: usize,
    kind: BodyKind,
    /// Counted, not kept: `buf` holds the head only.
    over_limit: bool,
    /// Body bytes (as sent) so far.
    seen: u64,
}

enum BodyKind {
    Length(u64),
    Chunked(ChunkedDecoder),
}

struct Resync {
    /// The next byte starts a line.
    line_start: bool,
    /// Matching the line that started at a line start; its bytes are in `buf`.
    candidate: Option<Candidate>,
}

impl Resync {
    fn at(line_start: bool) -> Phase {
        Phase::Resync(Resync {
            line_start,
            candidate: None,
        })
    }

    /// Bytes of the current line counted but not held in `buf`.
    fn passed(&self) -> usize {
        self.candidate.as_ref().map_or(0, |c| c.passed)
    }
}

/// What the current line may still turn out to be; dead when both are `None`.
struct Candidate {
    request: Option<RequestLine>,
    /// Only until the stream has shown a request.
    status: Option<StatusLine>,
    /// Bytes of the line passed once only the status matcher was left: it keeps no bytes, so
    /// they are counted, not held (`buf` holds the line only while it may become a head).
    passed: usize,
}

impl RequestFramer {
    /// `at_stream_start` is true when the stream began with a SYN, so its first byte is the
    /// first byte of a request; otherwise (pickup mid-stream) the framer looks for the next
    /// request line first.
    pub fn new(ctx: FlowContext, limits: Arc<HttpLimits>, at_stream_start: bool) -> Self {
        let mut parser = httparse::ParserConfig::default();
        parser
            .ignore_invalid_headers_in_requests(true)
            .allow_multiple_spaces_in_request_line_delimiters(true);
        let phase = if at_stream_start {
            Phase::Idle
        } else {
            Resync::at(true)
        };
        Self {
            ctx,
            limits,
            parser,
            phase,
            buf: Vec::new(),
            first_ts: 0,
            last_ts: 0,
            sniff: at_stream_start,
            first_head: at_stream_start,
            seen_request: false,
            head_parses: 0,
        }
    }

    /// Consumes one stream event; complete requests (and requests cut by a gap, flagged) are
    /// pushed to `out`.
    pub fn on_event(
        &mut self,
        ev: StreamEvent,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) {
        if self.is_done() {
            return;
        }
        match ev {
            StreamEvent::Data { bytes, ts } => self.on_data(&bytes, ts, out, stats),
            StreamEvent::Gap { len, .. } => self.on_gap(len, out, stats),
            // Going back is a gap of unknown length: whatever was being built is cut, and
            // framing resynchronises at the next request line.
            StreamEvent::Rewind { .. } => self.on_gap(u64::MAX, out, stats),
            StreamEvent::End { .. } => self.on_end(stats),
        }
    }

    /// Bytes held for a request not yet complete: counted against the memory budget. This is
    /// the allocation, not just the bytes in it, and stays within `max_head_bytes +
    /// max_body_bytes`.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
            + match &self.phase {
                Phase::H2(c) => c.buffered_bytes(),
                _ => 0,
            }
    }

    /// What the framer's state holds besides [`buffered_bytes`](Self::buffered_bytes), also
    /// counted against the memory budget: while a body is read, the parsed head (up to one
    /// range per header, so a head of many `Content-Length` lines costs about as much again).
    pub fn state_bytes(&self) -> usize {
        match &self.phase {
            Phase::Body(b) => {
                let range = std::mem::size_of::<std::ops::Range<usize>>();
                std::mem::size_of::<Body>()
                    + range
                        * (b.info.content_length_values.capacity()
                            + b.info.transfer_encoding_lines.capacity())
            }
            _ => 0,
        }
    }

    /// True once the stream no longer carries HTTP/1.x requests to frame (upgrade, CONNECT,
    /// HTTP/2 preface, a response stream, another protocol, or the stream ended): the caller may
    /// stop buffering it.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    fn on_data(
        &mut self,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) {
        // Clients send each request with its own write, so the start of a segment is a likely
        // request start even where the bytes before it (a body) did not end a line: without
        // this, a stream picked up inside a body would miss every following request until one
        // happened to follow a newline.
        if let Phase::Resync(r) = &mut self.phase {
            if r.candidate.is_none() {
                r.line_start = true;
                // A stream picked up in the middle of an HTTP/2 connection: its frames can be
                // followed from a segment that starts with one, its header blocks not decoded.
                if !self.seen_request && H2Conn::looks_like_frames(data) {
                    stats.resync_skipped_bytes += self.buf.len() as u64;
                    self.buf = Vec::new();
                    self.phase = Phase::H2(Box::new(H2Conn::after_preface_head(
                        self.ctx,
                        self.limits.clone(),
                        Start::Pickup,
                        &mut stats.h2,
                    )));
                }
            }
        }
        let mut off = 0;
        while let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
            // Every phase either consumes a byte or hands over to one that will (Idle → Head,
            // Head or Body → Resync), so this terminates.
            off += match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Done => {
                    self.phase = Phase::Done;
                    return;
                }
                Phase::Idle => self.idle(rest, ts),
                Phase::Head(scan) => self.head(scan, rest, ts, out, stats),
                Phase::Body(body) => self.body(body, rest, ts, out, stats),
                Phase::Skip { remaining } => self.skip(remaining, rest),
                Phase::Resync(r) => self.resync(r, rest, ts, stats),
                Phase::H2(mut conn) => {
                    conn.on_data(rest, ts, out, &mut stats.h2);
                    self.phase = if conn.is_lost() {
                        Phase::Done
                    } else {
                        Phase::H2(conn)
                    };
                    rest.len()
                }
            };
        }
    }

    fn idle(&mut self, rest: &[u8], ts: Timestamp) -> usize {
        let blank = rest
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank < rest.len() {
            self.first_ts = ts;
            self.phase = Phase::Head(HeadEnd::default());
        }
        blank
    }

    fn head(
        &mut self,
        mut scan: HeadEnd,
        rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) -> usize {
        let max = self.limits.max_head_bytes;
        let allowed = max.saturating_sub(self.buf.len());
        let window = rest.get(..allowed.min(rest.len())).unwrap_or_default();
        let found = scan.scan(window);
        let take = found.unwrap_or(window.len());
        extend_bounded(&mut self.buf, window.get(..take).unwrap_or_default(), max);
        self.last_ts = ts;
        if self.sniff && self.sniff_other_protocol(stats) {
            return take;
        }
        match found {
            Some(_) => self.finish_head(out, stats),
            None if rest.len() > allowed => {
                stats.dropped_head_too_large += 1;
                self.buf = Vec::new();
                self.phase = Resync::at(scan.ends_line());
            }
            None => self.phase = Phase::Head(scan),
        }
        take
    }

    /// Looks at the first bytes of the stream; true when they show it is not HTTP/1.x requests.
    fn sniff_other_protocol(&mut self, stats: &mut HttpStats) -> bool {
        let b = self.buf.as_slice();
        if b.starts_with(TLS_START) {
            stats.non_http_streams += 1;
            self.set_done();
            return true;
        }
        if b.starts_with(RESPONSE_START) {
            stats.response_streams += 1;
            self.set_done();
            return true;
        }
        let undecided = (b.len() < TLS_START.len() && TLS_START.starts_with(b))
            || (b.len() < RESPONSE_START.len() && RESPONSE_START.starts_with(b));
        self.sniff = undecided;
        false
    }

    fn finish_head(&mut self, out: &mut Vec<RebuiltRequest>, stats: &mut HttpStats) {
        self.sniff = false;
        if std::mem::take(&mut self.first_head) && self.buf == H2_PREFACE_HEAD {
            stats.h2_preface += 1;
            let start = if self.seen_request {
                Start::Upgrade
            } else {
                Start::PriorKnowledge
            };
            self.buf = Vec::new();
            self.phase = Phase::H2(Box::new(H2Conn::after_preface_head(
                self.ctx,
                self.limits.clone(),
                start,
                &mut stats.h2,
            )));
            return;
        }
        self.head_parses += 1;
        let info = match head::read_head(&self.parser, &self.buf, self.limits.max_headers) {
            Ok(info) => info,
            Err(HeadError::TooManyHeaders) => {
                stats.dropped_too_many_headers += 1;
                return self.drop_and_resync();
            }
            Err(HeadError::Invalid) => {
                stats.dropped_invalid += 1;
                return self.drop_and_resync();
            }
        };
        self.seen_request = true;
        if info.expect_continue {
            stats.expect_continue += 1;
        }
        let head_len = self.buf.len();
        // A CONNECT request has no content (RFC 9110 §9.3.6), whatever its headers say.
        let framing = if info.connect {
            Framing::None
        } else {
            info.framing
        };
        let kind = match framing {
            Framing::Invalid => {
                stats.dropped_invalid += 1;
                return self.drop_and_resync();
            }
            Framing::None | Framing::Length(0) => {
                self.emit(&info, head_len, 0, false, false, out, stats);
                return;
            }
            Framing::Length(n) => BodyKind::Length(n),
            Framing::Chunked => BodyKind::Chunked(ChunkedDecoder::new()),
        };
        let over_limit = match kind {
            BodyKind::Length(n) => n > self.limits.max_body_bytes,
            BodyKind::Chunked(_) => false,
        };
        if let (BodyKind::Length(n), false) = (&kind, over_limit) {
            let want = usize::try_from(*n)
                .unwrap_or(usize::MAX)
                .min(INITIAL_BODY_RESERVE);
            self.buf.reserve_exact(want);
        }
        self.phase = Phase::Body(Box::new(Body {
            info,
            head_len,
            kind,
            over_limit,
            seen: 0,
        }));
    }

    /// The head in `buf` ended with a complete line, so resynchronisation starts at a line.
    fn drop_and_resync(&mut self) {
        self.buf = Vec::new();
        self.phase = Resync::at(true);
    }

    fn body(
        &mut self,
        mut body: Box<Body>,
        rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) -> usize {
        let max_body = self.limits.max_body_bytes;
        let cap = body
            .head_len
            .saturating_add(usize::try_from(max_body).unwrap_or(usize::MAX));
        let (take, complete) = match &mut body.kind {
            BodyKind::Length(total) => {
                let remaining = total.saturating_sub(body.seen);
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                if !body.over_limit {
                    extend_bounded(&mut self.buf, rest.get(..take).unwrap_or_default(), cap);
                }
                (take, take as u64 == remaining)
            }
            BodyKind::Chunked(dec) => match dec.feed(rest) {
                Ok(n) => {
                    let held = (self.buf.len() - body.head_len.min(self.buf.len())) as u64;
                    if !body.over_limit && held.saturating_add(n as u64) > max_body {
                        body.over_limit = true;
                        self.buf.truncate(body.head_len);
                        self.buf.shrink_to_fit();
                    }
                    if !body.over_limit {
                        extend_bounded(&mut self.buf, rest.get(..n).unwrap_or_default(), cap);
                    }
                    (n, dec.is_done())
                }
                Err(InvalidChunk { at }) => {
                    // The bytes before the offending one go with the dropped request; the
                    // framing is lost, so look for the next request from there.
                    stats.dropped_invalid += 1;
                    self.buf = Vec::new();
                    self.phase = Resync::at(false);
                    return at;
                }
            },
        };
        body.seen += take as u64;
        if take > 0 {
            self.last_ts = ts;
        }
        if complete {
            self.emit(
                &body.info,
                body.head_len,
                body.seen,
                body.over_limit,
                false,
                out,
                stats,
            );
        } else {
            self.phase = Phase::Body(body);
        }
        take
    }

    fn skip(&mut self, remaining: u64, rest: &[u8]) -> usize {
        let take = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        let left = remaining - take as u64;
        self.phase = if left == 0 {
            Phase::Idle
        } else {
            Phase::Skip { remaining: left }
        };
        take
    }

    fn resync(
        &mut self,
        mut r: Resync,
        rest: &[u8],
        ts: Timestamp,
        stats: &mut HttpStats,
    ) -> usize {
        let max = self.limits.max_head_bytes;
        let mut i = 0;
        while i < rest.len() {
            let Some(c) = r.candidate.as_mut() else {
                if r.line_start {
                    r.line_start = false;
                    r.candidate = Some(Candidate {
                        request: Some(RequestLine::new()),
                        status: (!self.seen_request).then(StatusLine::new),
                        passed: 0,
                    });
                    self.first_ts = ts;
                    continue;
                }
                let tail = rest.get(i..).unwrap_or_default();
                let (skipped, line_end) =
                    memchr::memchr(b'\n', tail).map_or((tail.len(), false), |p| (p + 1, true));
                stats.resync_skipped_bytes += skipped as u64;
                r.line_start = line_end;
                i += skipped;
                continue;
            };
            let start = i;
            let mut last = 0;
            while let Some(&b) = rest.get(i) {
                i += 1;
                last = b;
                if let Some(status) = c.status.as_mut() {
                    match status.step(b) {
                        Some(true) => {
                            stats.resync_skipped_bytes +=
                                (self.buf.len() + c.passed + (i - start)) as u64;
                            stats.response_streams += 1;
                            self.set_done();
                            return i;
                        }
                        Some(false) => {}
                        None => c.status = None,
                    }
                }
                if let Some(request) = c.request.as_mut() {
                    match request.step(b) {
                        Step::Matched => {
                            extend_bounded(
                                &mut self.buf,
                                rest.get(start..i).unwrap_or_default(),
                                max,
                            );
                            self.last_ts = ts;
                            self.phase = Phase::Head(HeadEnd::at_line_start());
                            return i;
                        }
                        // Such a line could not begin a head within the limit anyway.
                        Step::More if self.buf.len() + (i - start) >= max => c.request = None,
                        Step::More => {}
                        Step::Failed => c.request = None,
                    }
                }
                if c.request.is_none() && c.status.is_none() {
                    break;
                }
            }
            let line = self.buf.len() + c.passed + (i - start);
            if c.request.is_none() && c.status.is_none() {
                stats.resync_skipped_bytes += line as u64;
                self.buf.clear();
                r.candidate = None;
                r.line_start = last == b'\n';
            } else if c.request.is_some() {
                extend_bounded(&mut self.buf, rest.get(start..i).unwrap_or_default(), max);
            } else {
                // Holding them would let a status line outgrow `max_head_bytes`.
                c.passed = line;
                self.buf = Vec::new();
            }
        }
        self.phase = Phase::Resync(r);
        i
    }

    fn on_gap(&mut self, len: u64, out: &mut Vec<RebuiltRequest>, stats: &mut HttpStats) {
        self.sniff = false;
        self.first_head = false;
        let resync = Resync::at(true);
        self.phase = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Done => Phase::Done,
            Phase::H2(mut conn) => {
                conn.on_gap(len, &mut stats.h2);
                if conn.is_lost() {
                    Phase::Done
                } else {
                    Phase::H2(conn)
                }
            }
            Phase::Idle => resync,
            Phase::Head(_) => {
                stats.dropped_gap += 1;
                self.buf = Vec::new();
                resync
            }
            Phase::Resync(r) => {
                stats.resync_skipped_bytes += (self.buf.len() + r.passed()) as u64;
                self.buf = Vec::new();
                resync
            }
            Phase::Skip { remaining } => after_gap_in_length(remaining, len),
            Phase::Body(body) => {
                stats.dropped_gap += 1;
                let body_len = match body.kind {
                    BodyKind::Length(total) if body.over_limit => total,
                    _ => body.seen,
                };
                if self.emit(
                    &body.info,
                    body.head_len,
                    body_len,
                    body.over_limit,
                    true,
                    out,
                    stats,
                ) {
                    return;
                }
                match body.kind {
                    // The length is known, so framing goes on right after the body.
                    BodyKind::Length(total) => after_gap_in_length(total - body.seen, len),
                    BodyKind::Chunked(_) => resync,
                }
            }
        };
    }

    fn on_end(&mut self, stats: &mut HttpStats) {
        match &mut self.phase {
            Phase::H2(conn) => conn.on_end(&mut stats.h2),
            Phase::Head(_) | Phase::Body(_) => stats.dropped_incomplete += 1,
            Phase::Resync(r) => stats.resync_skipped_bytes += (self.buf.len() + r.passed()) as u64,
            Phase::Idle | Phase::Skip { .. } | Phase::Done => {}
        }
        self.set_done();
    }

    fn set_done(&mut self) {
        self.buf = Vec::new();
        self.phase = Phase::Done;
    }

    /// Pushes the request in `buf` and moves to Idle, or to Done after an upgrade or CONNECT
    /// (returns true then).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        info: &HeadInfo,
        head_len: usize,
        body_len: u64,
        over_limit: bool,
        gap: bool,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) -> bool {
        let buf = std::mem::take(&mut self.buf);
        let (raw, head_len, host) = if over_limit {
            let (head, host) = head::rewrite_without_body(
                buf.get(..head_len).unwrap_or_default(),
                info,
                &self.limits.original_length_header,
                body_len,
            );
            let len = head.len();
            (head, len, host)
        } else {
            (buf, head_len, info.host.clone())
        };
        out.push(RebuiltRequest {
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            vni: self.ctx.vni,
            client: self.ctx.client,
            server: self.ctx.server,
            raw: Bytes::from(raw),
            head_len,
            method: info.method.clone(),
            target: info.target.clone(),
            host,
            version_minor: info.version_minor,
            body_len,
            flags: RequestFlags {
                body_over_limit: over_limit,
                gap,
                malformed: info.malformed,
            },
            // Set by the worker from the stream's start (`proxy`).
            proxy: None,
            h2: None,
        });
        stats.requests += 1;
        stats.malformed_replayed += u64::from(info.malformed);
        stats.body_over_limit += u64::from(over_limit);
        if info.connect {
            stats.connects += 1;
        } else if info.upgrade {
            stats.upgrades += 1;
        }
        if info.upgrade_h2c && !info.connect {
            // The server may switch to HTTP/2 (the client's preface then follows) or decline
            // (HTTP/1.1 goes on): the next head tells.
            self.first_head = true;
            self.phase = Phase::Idle;
            return false;
        }
        if info.connect || info.upgrade {
            self.set_done();
            return true;
        }
        self.phase = Phase::Idle;
        false
    }
}

/// A gap of `len` bytes where `remaining` bytes of a Content-Length body were still due.
fn after_gap_in_length(remaining: u64, len: u64) -> Phase {
    match len.cmp(&remaining) {
        std::cmp::Ordering::Less => Phase::Skip {
            remaining: remaining - len,
        },
        std::cmp::Ordering::Equal => Phase::Idle,
        // The hole swallowed the start of whatever followed the body.
        std::cmp::Ordering::Greater => Resync::at(true),
    }
}

/// Appends without letting the allocation outgrow `limit` (doubling would overshoot it by up to
/// twice): the per-stream memory bound is on the allocation, not just the bytes.
pub(crate) fn extend_bounded(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let target = buf.capacity().saturating_mul(2).min(limit).max(need);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reassembly::{EndReason, GapReason};
    use proptest::prelude::*;

    fn ctx() -> FlowContext {
        FlowContext {
            vni: 7,
            client: "10.0.0.1:40000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
        }
    }

    struct Run {
        framer: RequestFramer,
        out: Vec<RebuiltRequest>,
        stats: HttpStats,
    }

    impl Run {
        fn new(limits: HttpLimits, at_start: bool) -> Self {
            Self {
                framer: RequestFramer::new(ctx(), Arc::new(limits), at_start),
                out: Vec::new(),
                stats: HttpStats::default(),
            }
        }

        fn start() -> Self {
            Self::new(HttpLimits::default(), true)
        }

        fn data(&mut self, b: &[u8], ts: Timestamp) -> &mut Self {
            let ev = StreamEvent::Data {
                bytes: Bytes::copy_from_slice(b),
                ts,
            };
            self.framer.on_event(ev, &mut self.out, &mut self.stats);
            self
        }

        fn gap(&mut self, len: u64, ts: Timestamp) -> &mut Self {
            let ev = StreamEvent::Gap {
                len,
                ts,
                reason: GapReason::Lost,
            };
            self.framer.on_event(ev, &mut self.out, &mut self.stats);
            self
        }

        fn end(&mut self) -> &mut Self {
            let ev = StreamEvent::End {
                ts: 999,
                reason: EndReason::Fin,
            };
            self.framer.on_event(ev, &mut self.out, &mut self.stats);
            self
        }

        fn raws(&self) -> Vec<&[u8]> {
            self.out.iter().map(|r| &r.raw[..]).collect()
        }
    }

    fn one_event(input: &[u8]) -> Run {
        let mut run = Run::start();
        run.data(input, 1);
        run
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const GET: &[u8] = b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n";
    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n";
    const POST: &[u8] =
        b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello=world";
    const CHUNKED: &[u8] = b"POST /up HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n0A\r\n0123456789\r\n0;last=yes\r\nTrailer-A: x\r\nTrailer-B: y\r\n\r\n";
    const GET10: &[u8] = b"GET /old HTTP/1.0\r\n\r\n";

    #[test]
    fn a_body_in_progress_is_charged_for_what_its_head_keeps() {
        let mut head = b"POST /many HTTP/1.1\r\nHost: h\r\n".to_vec();
        for _ in 0..200 {
            head.extend_from_slice(b"Content-Length: 10\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut run = Run::start();
        run.data(&head, 1).data(b"01234", 2);
        let charged = run.framer.buffered_bytes() + run.framer.state_bytes();
        // The head itself, plus 200 ranges of 16 bytes.
        assert!(
            charged >= head.len() + 200 * 16,
            "{charged} for a head of {}",
            head.len()
        );
        run.data(b"56789", 3);
        assert_eq!(run.out.len(), 1);
        assert_eq!(
            run.framer.buffered_bytes() + run.framer.state_bytes(),
            0,
            "nothing held between requests"
        );
    }

    #[test]
    fn single_get_fields() {
        let run = one_event(GET);
        assert_eq!(run.raws(), vec![GET]);
        let r = &run.out[0];
        assert_eq!(r.method_bytes(), b"GET");
        assert_eq!(r.target_bytes(), b"/index.html?a=1");
        assert_eq!(r.host_bytes(), Some(&b"example.com"[..]));
        assert_eq!((r.head_len, r.body_len, r.version_minor), (GET.len(), 0, 1));
        assert_eq!((r.vni, r.client, r.server), (7, ctx().client, ctx().server));
        assert_eq!((r.first_ts, r.last_ts), (1, 1));
        assert_eq!(r.flags, RequestFlags::default());
        assert_eq!(
            run.stats,
            HttpStats {
                requests: 1,
                ..Default::default()
            }
        );
        assert_eq!(run.framer.buffered_bytes(), 0);
        assert!(!run.framer.is_done());
    }

    #[test]
    fn pipelined_requests_in_one_event() {
        let input = cat(&[GET, POST, CHUNKED, GET10, NEXT]);
        let run = one_event(&input);
        assert_eq!(run.raws(), vec![GET, POST, CHUNKED, GET10, NEXT]);
        assert_eq!(run.out[1].body_len, 11);
        assert_eq!(run.out[1].head(), &POST[..POST.len() - 11]);
        let head_len = memchr::memmem::find(CHUNKED, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(run.out[2].head_len, head_len);
        assert_eq!(run.out[2].body_len, (CHUNKED.len() - head_len) as u64);
        assert_eq!(run.out[3].version_minor, 0);
        assert_eq!(run.out[3].host, None);
        assert_eq!(run.stats.requests, 5);
    }

    #[test]
    fn empty_lines_between_requests_belong_to_none() {
        let input = cat(&[GET, b"\r\n\r\n\n", NEXT]);
        let run = one_event(&input);
        assert_eq!(run.raws(), vec![GET, NEXT]);
        assert_eq!(run.stats.resync_skipped_bytes, 0);
    }

    #[test]
    fn chunked_zero_length_last_chunk_with_trailers_only() {
        let req =
            b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Checksum: abc\r\n\r\n";
        let run = one_event(&cat(&[req, NEXT]));
        assert_eq!(run.raws(), vec![&req[..], NEXT]);
    }

    #[test]
    fn chunked_uppercase_hex_and_leading_zeros() {
        let mut req = b"PUT /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n001F\r\n".to_vec();
        req.extend_from_slice(&[b'q'; 31]);
        req.extend_from_slice(b"\r\n00000\r\n\r\n");
        let run = one_event(&cat(&[&req, NEXT]));
        assert_eq!(run.raws(), vec![&req[..], NEXT]);
    }

    #[test]
    fn chunked_invalid_size_is_counted_and_framing_resumes() {
        let bad = b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let run = one_event(&cat(&[bad, NEXT]));
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.dropped_invalid, 1);
        // "zz\r\n" is skipped: resynchronisation starts at the offending byte.
        assert_eq!(run.stats.resync_skipped_bytes, 4);
    }

    #[test]
    fn head_too_large_is_dropped_and_next_request_found() {
        let limits = HttpLimits {
            max_head_bytes: 100,
            ..Default::default()
        };
        let mut big = b"GET /big HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend_from_slice(&[b'a'; 200]);
        big.extend_from_slice(b"\r\nX-More: b\r\n\r\n");
        let mut run = Run::new(limits, true);
        run.data(&cat(&[&big, NEXT]), 1);
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.dropped_head_too_large, 1);
        assert_eq!(run.stats.resync_skipped_bytes, (big.len() - 100) as u64);
    }

    #[test]
    fn head_at_the_limit_is_kept() {
        let limits = HttpLimits {
            max_head_bytes: NEXT.len(),
            ..Default::default()
        };
        let mut run = Run::new(limits, true);
        run.data(NEXT, 1).data(NEXT, 2);
        assert_eq!(run.raws(), vec![NEXT, NEXT]);
    }

    #[test]
    fn too_many_headers() {
        let limits = HttpLimits {
            max_headers: 3,
            ..Default::default()
        };
        let four = b"GET /4 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        let three = b"GET /3 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let mut run = Run::new(limits, true);
        run.data(&cat(&[four, three]), 1);
        assert_eq!(run.raws(), vec![&three[..]]);
        assert_eq!(run.stats.dropped_too_many_headers, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 0);
    }

    fn small_body_limits() -> HttpLimits {
        HttpLimits {
            max_body_bytes: 10,
            ..Default::default()
        }
    }

    #[test]
    fn content_length_body_over_limit_keeps_head_only() {
        let head = b"POST /up HTTP/1.1\r\nContent-Length: 20\r\nHost: h\r\n\r\n";
        let mut run = Run::new(small_body_limits(), true);
        run.data(head, 1);
        for (i, part) in [&b"0123456"[..], b"789abcdefghij"].iter().enumerate() {
            run.data(part, 2 + i as u64);
            assert!(
                run.framer.buffered_bytes() <= head.len(),
                "body must not be buffered"
            );
        }
        run.data(NEXT, 9);
        let want: &[u8] = b"POST /up HTTP/1.1\r\nContent-Length: 0\r\nHost: h\r\nX-Rebuilder-Original-Body-Length: 20\r\n\r\n";
        assert_eq!(run.raws(), vec![want, NEXT]);
        let r = &run.out[0];
        assert_eq!((r.head_len, r.body_len), (want.len(), 20));
        assert_eq!(r.host_bytes(), Some(&b"h"[..]));
        assert_eq!((r.first_ts, r.last_ts), (1, 3));
        assert!(r.flags.body_over_limit && !r.flags.gap);
        assert_eq!(run.stats.body_over_limit, 1);
        assert_eq!(run.stats.requests, 2);
    }

    #[test]
    fn content_length_at_the_limit_is_kept() {
        let req = b"POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        let run = {
            let mut r = Run::new(small_body_limits(), true);
            r.data(req, 1);
            r
        };
        assert_eq!(run.raws(), vec![&req[..]]);
    }

    #[test]
    fn chunked_body_over_limit_keeps_head_only() {
        let head = b"POST /up HTTP/1.1\nTransfer-Encoding: chunked\nHost: h\n\n";
        let body = b"5\nhello\n6;x=y\n world\n0\nT: 1\n\n";
        let mut run = Run::new(small_body_limits(), true);
        run.data(head, 1);
        for (i, b) in body.iter().enumerate() {
            run.data(std::slice::from_ref(b), 2 + i as u64);
            assert!(run.framer.buffered_bytes() <= head.len() + 10);
        }
        run.data(NEXT, 100);
        let want = format!(
            "POST /up HTTP/1.1\nHost: h\nContent-Length: 0\nX-Rebuilder-Original-Body-Length: {}\n\n",
            body.len()
        );
        assert_eq!(run.raws(), vec![want.as_bytes(), NEXT]);
        let r = &run.out[0];
        assert_eq!(r.body_len, body.len() as u64);
        assert_eq!(r.host_bytes(), Some(&b"h"[..]));
        assert_eq!(r.last_ts, 1 + body.len() as u64);
        assert!(r.flags.body_over_limit);
    }

    #[test]
    fn gap_in_head_drops_and_resyncs() {
        let mut run = Run::start();
        run.data(b"GET /cut HTTP/1.1\r\nHo", 1)
            .gap(10, 2)
            .data(b"st: x\r\n\r\n", 3)
            .data(NEXT, 4);
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.dropped_gap, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 9);
    }

    #[test]
    fn gap_in_content_length_body_continues_after_the_body() {
        let head = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        let mut run = Run::start();
        run.data(&cat(&[head, b"01234"]), 1)
            .gap(3, 2)
            .data(&cat(&[b"89", NEXT]), 3);
        assert_eq!(run.raws(), vec![&cat(&[head, b"01234"])[..], NEXT]);
        let r = &run.out[0];
        assert!(r.flags.gap && !r.is_replayable());
        assert_eq!((r.body_len, r.last_ts), (5, 1));
        assert!(!run.out[1].flags.gap);
        assert_eq!(run.stats.dropped_gap, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 0);
    }

    #[test]
    fn gap_past_the_end_of_a_content_length_body_resyncs() {
        let head = b"POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
        let mut run = Run::start();
        run.data(&cat(&[head, b"01"]), 1)
            .gap(7, 2)
            .data(b"et /lost HTTP/1.1\r\n\r\n", 3)
            .data(NEXT, 4);
        assert_eq!(run.out.len(), 2);
        assert!(run.out[0].flags.gap);
        assert_eq!(&run.out[1].raw[..], NEXT);
        assert_eq!(run.stats.resync_skipped_bytes, 21);
    }

    #[test]
    fn gap_in_chunked_body_emits_what_arrived_and_resyncs() {
        let head = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut run = Run::start();
        run.data(&cat(&[head, b"5\r\nhel"]), 1)
            .gap(2, 2)
            .data(&cat(&[b"\r\n0\r\n\r\n", NEXT]), 3);
        assert_eq!(run.raws(), vec![&cat(&[head, b"5\r\nhel"])[..], NEXT]);
        assert!(run.out[0].flags.gap);
        assert_eq!(run.out[0].body_len, 6);
        assert_eq!(run.stats.dropped_gap, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 7);
    }

    #[test]
    fn gap_while_idle_resyncs_without_a_drop() {
        let mut run = Run::start();
        run.data(GET, 1).gap(100, 2).data(NEXT, 3);
        assert_eq!(run.raws(), vec![GET, NEXT]);
        assert_eq!(run.stats.dropped_gap, 0);
        assert_eq!(run.stats.resync_skipped_bytes, 0);
    }

    #[test]
    fn pickup_mid_stream_skips_to_the_next_request() {
        let junk = b"dy of an earlier request\r\nmore body, no newline at end: GET / HTTP/1.1 ";
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(junk, 1).data(b"\n", 2).data(GET, 3);
        assert_eq!(run.raws(), vec![GET]);
        assert_eq!(run.stats.resync_skipped_bytes, junk.len() as u64 + 1);
        assert_eq!(run.out[0].first_ts, 3);
    }

    #[test]
    fn pickup_at_a_request_start_skips_nothing() {
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(&GET[..10], 1).data(&GET[10..], 2).data(POST, 3);
        assert_eq!(run.raws(), vec![GET, POST]);
        assert_eq!(run.stats.resync_skipped_bytes, 0);
        assert_eq!((run.out[0].first_ts, run.out[0].last_ts), (1, 2));
    }

    /// Found by the `http` fuzz target: while resynchronising, a line that could by then only
    /// be a status line (`HTTP/1` fails as a method at the `/`) was still held in the buffer,
    /// past `max_head_bytes`.
    #[test]
    fn status_line_candidate_is_not_held_past_the_head_limit() {
        let limits = HttpLimits {
            max_head_bytes: 4,
            ..Default::default()
        };
        let mut run = Run::new(limits, false);
        run.data(b"x\nHTTP/1", 1);
        assert!(
            run.framer.buffered_bytes() <= 4,
            "holds {}",
            run.framer.buffered_bytes()
        );
        run.data(b".1 200 OK\r\n", 2);
        assert_eq!(run.stats.response_streams, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 2 + 12);
        assert!(run.framer.is_done());
    }

    #[test]
    fn status_line_candidate_cut_by_a_gap_is_counted() {
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(b"HTTP/1.", 1).gap(5, 2).data(NEXT, 3);
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.resync_skipped_bytes, 7);
        assert_eq!(run.stats.response_streams, 0);
    }

    #[test]
    fn pickup_of_a_response_stream_gives_up() {
        let input = b"ent-Type: text/html\r\n\r\n<html>GET / HTTP/1.1</html>\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let status_at = memchr::memmem::find(input, b"HTTP/1.1 200").unwrap();
        for cut in 0..=input.len() {
            let mut run = Run::new(HttpLimits::default(), false);
            run.data(&input[..cut], 1)
                .data(&input[cut..], 2)
                .data(GET, 3);
            assert!(run.out.is_empty());
            assert_eq!(run.stats.response_streams, 1);
            assert_eq!(run.stats.resync_skipped_bytes, status_at as u64 + 12);
            assert!(run.framer.is_done());
        }
    }

    #[test]
    fn status_lines_in_a_client_stream_do_not_end_it() {
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(GET, 1)
            .gap(5, 2)
            .data(b"HTTP/1.1 200 OK\r\n", 3)
            .data(NEXT, 4);
        assert_eq!(run.raws(), vec![GET, NEXT]);
        assert_eq!(run.stats.response_streams, 0);
        assert!(!run.framer.is_done());
    }

    #[test]
    fn upgrade_ends_framing() {
        let req = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let mut run = Run::start();
        run.data(&cat(&[req, b"\x81\x85binary"]), 1).data(GET, 2);
        assert_eq!(run.raws(), vec![&req[..]]);
        assert_eq!(run.stats.upgrades, 1);
        assert!(run.framer.is_done());
        assert_eq!(run.framer.buffered_bytes(), 0);
    }

    #[test]
    fn connect_ends_framing() {
        let req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 5\r\n\r\n";
        let mut run = Run::start();
        run.data(&cat(&[req, b"\x16\x03\x01\x02\x00"]), 1)
            .data(GET, 2);
        assert_eq!(run.raws(), vec![&req[..]]);
        assert_eq!(run.out[0].body_len, 0);
        assert_eq!(run.stats.connects, 1);
        assert!(run.framer.is_done());
    }

    fn every_split(input: &[u8], check: impl Fn(&Run)) {
        for cut in 0..=input.len() {
            let mut run = Run::start();
            run.data(&input[..cut], 1).data(&input[cut..], 2);
            check(&run);
        }
    }

    #[test]
    fn h2_preface_hands_the_stream_to_http2() {
        // The preface, then a SETTINGS frame header (its 18-byte payload still to come).
        let input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00";
        every_split(input, |run| {
            assert!(run.out.is_empty());
            assert_eq!(run.stats.h2_preface, 1);
            assert_eq!(run.stats.h2.connections[0], 1, "prior knowledge");
            assert_eq!(run.stats.h2.frames[4], 1, "the SETTINGS frame");
            assert_eq!(run.stats.requests + run.stats.resync_skipped_bytes, 0);
            assert!(!run.framer.is_done());
        });
    }

    #[test]
    fn response_stream_ends_framing() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        every_split(input, |run| {
            assert!(run.out.is_empty());
            assert_eq!(
                run.stats,
                HttpStats {
                    response_streams: 1,
                    ..Default::default()
                }
            );
            assert!(run.framer.is_done());
        });
    }

    #[test]
    fn tls_stream_ends_framing() {
        let input = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03GET / HTTP/1.1\r\n\r\n";
        every_split(input, |run| {
            assert!(run.out.is_empty());
            assert_eq!(
                run.stats,
                HttpStats {
                    non_http_streams: 1,
                    ..Default::default()
                }
            );
            assert!(run.framer.is_done());
        });
    }

    #[test]
    fn requests_sharing_a_prefix_with_other_protocols_still_frame() {
        let head = b"HEAD /h HTTP/1.1\r\n\r\n";
        let httpx = b"HTTPX /h HTTP/1.1\r\n\r\n";
        for input in [&head[..], httpx] {
            every_split(input, |run| {
                assert_eq!(run.raws(), vec![input]);
                assert!(!run.framer.is_done());
            });
        }
        // Only the stream's first head may be the preface; later it is just an invalid head.
        let mut run = Run::start();
        run.data(GET, 1)
            .data(b"PRI * HTTP/2.0\r\n\r\n", 2)
            .data(NEXT, 3);
        assert_eq!(run.raws(), vec![GET, NEXT]);
        assert_eq!(run.stats.dropped_invalid, 1);
    }

    #[test]
    fn malformed_but_delimited_request_is_replayed() {
        let space_in_target = b"GET /a b/../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n";
        let nul_in_header = b"POST /x HTTP/1.1\r\nX-Evil: a\0b\r\nContent-Length: 3\r\n\r\nabc";
        let run = one_event(&cat(&[space_in_target, nul_in_header, NEXT]));
        assert_eq!(
            run.raws(),
            vec![&space_in_target[..], &nul_in_header[..], NEXT]
        );
        assert!(run.out[0].flags.malformed && run.out[1].flags.malformed);
        assert!(!run.out[2].flags.malformed);
        assert_eq!(run.out[0].target_bytes(), b"/a b/../../etc/passwd");
        assert_eq!(run.out[1].body_len, 3);
        assert_eq!(run.stats.malformed_replayed, 2);
        assert_eq!(run.stats.requests, 3);
    }

    #[test]
    fn undelimited_or_unrecognisable_heads_are_dropped() {
        let run = one_event(&cat(&[b"HELLO THERE\r\nfoo\r\n\r\n", NEXT]));
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.dropped_invalid, 1);
        let conflicting = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
        let run = one_event(&cat(&[conflicting, b"\r\n", NEXT]));
        assert_eq!(run.raws(), vec![NEXT]);
        assert_eq!(run.stats.dropped_invalid, 1);
        assert_eq!(run.stats.resync_skipped_bytes, 6);
    }

    #[test]
    fn hostile_requests_come_out_unchanged() {
        let mut long_url = b"GET /".to_vec();
        long_url.extend(std::iter::repeat_n(b'A', 8192));
        long_url.extend_from_slice(b"?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        let body = b"user=admin'--&pass=' OR '1'='1'; --";
        let mut login = format!(
            "POST /login HTTP/1.1\r\ncOnTeNt-LeNgTh: {}\r\nHOST: shop\r\n\r\n",
            body.len()
        )
        .into_bytes();
        login.extend_from_slice(body);
        // (request, host, replayed as malformed)
        let cases: Vec<(Vec<u8>, &[u8], bool)> = vec![
            (b"GET /search?q=1'%20OR%20'1'='1'--;DROP%20TABLE%20users HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(), b"shop", false),
            (b"GET /q?id=1'+UNION+SELECT+password+FROM+users-- HTTP/1.1\r\nhOsT: shop\r\n\r\n".to_vec(), b"shop", false),
            (login, b"shop", false),
            (long_url, b"h", false),
            (b"GET /caf\xc3\xa9/\xe2\x82\xac HTTP/1.1\r\nX-Bin: \xff\x80\xfe\r\nHost: h\xe9\r\n\r\n".to_vec(), b"h\xe9", false),
            // Not UTF-8 in the target: httparse refuses it, the lenient reading keeps it.
            (b"GET /\xff\xfe<script> HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), b"h", true),
        ];
        for (req, host, malformed) in &cases {
            let run = one_event(&cat(&[req, NEXT]));
            assert_eq!(
                run.raws(),
                vec![&req[..], NEXT],
                "{:?}",
                String::from_utf8_lossy(req)
            );
            assert_eq!(run.out[0].flags.malformed, *malformed);
            assert_eq!(run.out[0].host_bytes(), Some(*host));
        }
        let run = one_event(&cases[2].0);
        assert_eq!(run.out[0].body_len, body.len() as u64);
        let run = one_event(&cases[3].0);
        assert_eq!(run.out[0].target.len(), 8192 + 5);
    }

    #[test]
    fn trickled_request_frames_the_same() {
        let input = cat(&[POST, CHUNKED]);
        let whole = one_event(&input);
        let mut run = Run::start();
        for (i, b) in input.iter().enumerate() {
            run.data(std::slice::from_ref(b), i as u64);
        }
        assert_eq!(run.raws(), whole.raws());
        assert_eq!(
            (run.out[0].first_ts, run.out[0].last_ts),
            (0, POST.len() as u64 - 1)
        );
        assert_eq!(
            (run.out[1].first_ts, run.out[1].last_ts),
            (POST.len() as u64, input.len() as u64 - 1)
        );
        assert_eq!(run.out[1].target, whole.out[1].target);
    }

    #[test]
    fn large_trickled_head_is_parsed_once() {
        let mut req = b"GET /big HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            req.extend_from_slice(format!("X-H{i:03}: ").as_bytes());
            req.extend(std::iter::repeat_n(b'v', 300));
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        assert!(req.len() > 60_000 && req.len() < 64 * 1024);
        let mut run = Run::start();
        for b in &req {
            run.data(std::slice::from_ref(b), 1);
            assert!(run.framer.buffered_bytes() <= 64 * 1024);
        }
        assert_eq!(run.raws(), vec![&req[..]]);
        assert_eq!(run.framer.head_parses, 1);
    }

    #[test]
    fn expect_continue_is_counted_and_body_follows() {
        let head =
            b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        let mut run = Run::start();
        run.data(head, 1).data(b"data", 5);
        assert_eq!(run.raws(), vec![&cat(&[head, b"data"])[..]]);
        assert_eq!(run.stats.expect_continue, 1);
        assert_eq!((run.out[0].first_ts, run.out[0].last_ts), (1, 5));
    }

    #[test]
    fn end_drops_a_partial_request() {
        let mut run = Run::start();
        run.data(GET, 1).data(&POST[..POST.len() - 3], 2).end();
        assert_eq!(run.raws(), vec![GET]);
        assert_eq!(run.stats.dropped_incomplete, 1);
        assert!(run.framer.is_done());
        assert_eq!(run.framer.buffered_bytes(), 0);
        run.data(NEXT, 3);
        assert_eq!(run.out.len(), 1);

        let mut idle = Run::start();
        idle.data(GET, 1).end();
        assert_eq!(idle.stats.dropped_incomplete, 0);
    }

    #[test]
    fn end_while_resyncing_counts_the_candidate() {
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(b"xx\nGET /partial HT", 1).end();
        assert!(run.out.is_empty());
        assert_eq!(run.stats.resync_skipped_bytes, 18);
        assert_eq!(run.stats.dropped_incomplete, 0);
    }

    /// One generated request: its bytes and what the framer must report about it.
    #[derive(Clone, Debug)]
    struct Expected {
        raw: Vec<u8>,
        method: &'static str,
        target: String,
        host: String,
        head_len: usize,
        version_minor: u8,
    }

    fn arb_target() -> impl Strategy<Value = String> {
        "/[a-zA-Z0-9_.~%=&?/-]{0,40}"
    }

    fn arb_host() -> impl Strategy<Value = String> {
        "[a-z0-9.-]{1,20}"
    }

    fn arb_chunk() -> impl Strategy<Value = (Vec<u8>, u8)> {
        (prop::collection::vec(any::<u8>(), 1..40), 0u8..4)
    }

    fn arb_request() -> impl Strategy<Value = Expected> {
        prop_oneof![
            (arb_target(), arb_host(), any::<bool>()).prop_map(|(target, host, v10)| {
                let minor = u8::from(!v10);
                let head = format!("GET {target} HTTP/1.{minor}\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
                Expected {
                    head_len: head.len(),
                    raw: head.into_bytes(),
                    method: "GET",
                    target,
                    host,
                    version_minor: minor,
                }
            }),
            (arb_target(), arb_host(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(
                |(target, host, body)| {
                    let head = format!(
                        "POST {target} HTTP/1.1\r\nhost: {host}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let head_len = head.len();
                    let mut raw = head.into_bytes();
                    raw.extend_from_slice(&body);
                    Expected { raw, method: "POST", target, host, head_len, version_minor: 1 }
                }
            ),
            (
                arb_target(),
                arb_host(),
                prop::collection::vec(arb_chunk(), 0..5),
                prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3)
            )
                .prop_map(|(target, host, chunks, trailers)| {
                    let head = format!(
                        "PUT {target} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: {host}\r\n\r\n"
                    );
                    let head_len = head.len();
                    let mut raw = head.into_bytes();
                    for (data, style) in &chunks {
                        let size = match style {
                            0 => format!("{:x}\r\n", data.len()),
                            1 => format!("000{:X}\r\n", data.len()),
                            2 => format!("{:x};name=value;flag\r\n", data.len()),
                            _ => format!("{:x} ;q=\"quoted;str\"\r\n", data.len()),
                        };
                        raw.extend_from_slice(size.as_bytes());
                        raw.extend_from_slice(data);
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(b"0;end\r\n");
                    for t in &trailers {
                        raw.extend_from_slice(t.as_bytes());
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(b"\r\n");
                    Expected { raw, method: "PUT", target, host, head_len, version_minor: 1 }
                }),
        ]
    }

    /// Cuts `input` at the given points into events with timestamps 1, 2, ...; returns the
    /// events and each event's byte range.
    fn split(input: &[u8], cuts: &[prop::sample::Index]) -> Vec<(std::ops::Range<usize>, u64)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.push(0);
        points.push(input.len());
        points.sort_unstable();
        points
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[0]..w[1], i as u64 + 1))
            .collect()
    }

    fn ts_of(events: &[(std::ops::Range<usize>, u64)], offset: usize) -> u64 {
        events
            .iter()
            .find(|(r, _)| r.contains(&offset))
            .map(|(_, ts)| *ts)
            .unwrap()
    }

    /// Pieces of hostile or broken streams: valid requests, cut requests, heads httparse
    /// refuses, bad chunk sizes, lone line endings, other protocols' openings, random bytes.
    fn arb_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            arb_request().prop_map(|r| r.raw),
            (arb_request(), any::<prop::sample::Index>()).prop_map(|(r, i)| {
                let cut = i.index(r.raw.len());
                r.raw[..cut].to_vec()
            }),
            Just(b"GET /a b HTTP/1.1\r\nX: \x00\r\n\r\n".to_vec()),
            Just(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec()),
            Just(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec()),
            Just(b"GET /u HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
            Just(vec![0x16, 0x03, 0x01]),
            prop::collection::vec(any::<u8>(), 0..64),
            "[A-Z]{1,6} /[ -~]{0,20} HTTP/1\\.[01]\r?\n([A-Za-z-]{1,12}: [ -~]{0,20}\r?\n){0,6}\r?\n"
                .prop_map(String::into_bytes),
        ]
    }

    fn tight_limits() -> HttpLimits {
        HttpLimits {
            max_head_bytes: 160,
            max_headers: 4,
            max_body_bytes: 64,
            h2_max_table_size: 16,
            h2_max_streams: 1,
            ..Default::default()
        }
    }

    /// What a stream that turned HTTP/2 (the preface is among the pieces) may hold beyond an
    /// HTTP/1.x one under `tight_limits`: the HPACK table's charge, a header block and the frame
    /// being read (each at most `max_head_bytes`), one open stream (fields and trailers, each at
    /// most `max_head_bytes` by RFC size and about four times that in allocations, its body, and
    /// its table entry).
    const H2_TIGHT_EXTRA: usize = 3 * 16 + 160 + 160 + 8 * 160 + 64 + 256;

    type Range = std::ops::Range<usize>;
    type Shape = (Bytes, usize, Range, Range, Option<Range>, u64, RequestFlags);

    /// What must not depend on how the stream was cut into events.
    fn shape(r: &RebuiltRequest) -> Shape {
        let (m, t, h) = (r.method.clone(), r.target.clone(), r.host.clone());
        (r.raw.clone(), r.head_len, m, t, h, r.body_len, r.flags)
    }

    fn check_record(r: &RebuiltRequest, input: &[u8]) -> Result<(), TestCaseError> {
        prop_assert!(r.head_len <= r.raw.len());
        prop_assert!(r.method.end <= r.head_len && r.target.end <= r.head_len);
        prop_assert!(r.host.as_ref().is_none_or(|h| h.end <= r.head_len));
        prop_assert!(!r.method.is_empty() && !r.target.is_empty());
        if !r.flags.body_over_limit {
            // Exactly bytes the client sent, in one piece.
            prop_assert!(memchr::memmem::find(input, &r.raw).is_some());
            prop_assert_eq!(r.body_len, (r.raw.len() - r.head_len) as u64);
        }
        Ok(())
    }

    #[test]
    fn pickup_inside_a_body_resyncs_at_the_next_segment_start() {
        // Picked up in the tail of a POST body that does not end a line: the next request
        // starts a segment, not a line, and must still be found.
        let next = b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz".to_vec();
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(b"tail of a body, no newline", 1);
        run.data(&next, 2);
        run.data(&next, 3);
        assert_eq!(run.raws(), vec![&next[..], &next[..]]);
        assert_eq!(run.stats.resync_skipped_bytes, 26);
        // Inside one segment, a request line after body bytes is not a candidate: a body that
        // merely contains such text is not taken for a request.
        let mut run = Run::new(HttpLimits::default(), false);
        let mut joined = b"body bytes ".to_vec();
        joined.extend_from_slice(&next);
        run.data(&joined, 1);
        assert!(run.out.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_split_frames_the_same_requests(
            reqs in prop::collection::vec(arb_request(), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let input: Vec<u8> = reqs.iter().flat_map(|r| r.raw.iter().copied()).collect();
            let events = split(&input, &cuts);
            let mut run = Run::start();
            for (range, ts) in &events {
                run.data(&input[range.clone()], *ts);
            }
            prop_assert_eq!(run.out.len(), reqs.len());
            let mut offset = 0;
            for (got, want) in run.out.iter().zip(&reqs) {
                prop_assert_eq!(&got.raw[..], &want.raw[..]);
                prop_assert_eq!(got.method_bytes(), want.method.as_bytes());
                prop_assert_eq!(got.target_bytes(), want.target.as_bytes());
                prop_assert_eq!(got.host_bytes(), Some(want.host.as_bytes()));
                prop_assert_eq!(got.head_len, want.head_len);
                prop_assert_eq!(got.body_len, (want.raw.len() - want.head_len) as u64);
                prop_assert_eq!(got.version_minor, want.version_minor);
                prop_assert_eq!(got.flags, RequestFlags::default());
                prop_assert_eq!(got.first_ts, ts_of(&events, offset));
                prop_assert_eq!(got.last_ts, ts_of(&events, offset + want.raw.len() - 1));
                offset += want.raw.len();
            }
            prop_assert_eq!(run.stats.requests, reqs.len() as u64);
            prop_assert_eq!(run.framer.buffered_bytes(), 0);
        }

        #[test]
        fn pickup_after_any_junk_and_split_finds_the_requests(
            junk in prop::collection::vec("[a-z ]{0,30}", 1..5),
            reqs in prop::collection::vec(arb_request(), 1..4),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let mut input: Vec<u8> = junk.join("\r\n").into_bytes();
            input.extend_from_slice(b"\r\n");
            let junk_len = input.len();
            input.extend(reqs.iter().flat_map(|r| r.raw.iter().copied()));
            let mut run = Run::new(HttpLimits::default(), false);
            for (range, ts) in split(&input, &cuts) {
                run.data(&input[range], ts);
            }
            let raws: Vec<&[u8]> = reqs.iter().map(|r| &r.raw[..]).collect();
            prop_assert_eq!(run.raws(), raws);
            prop_assert_eq!(run.stats.resync_skipped_bytes, junk_len as u64);
        }

        #[test]
        fn hostile_streams_frame_the_same_at_any_split_within_bounds(
            pieces in prop::collection::vec(arb_piece(), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
            at_start in any::<bool>(),
        ) {
            let input = pieces.concat();
            let mut whole = Run::new(tight_limits(), at_start);
            whole.data(&input, 1);
            let mut run = Run::new(tight_limits(), at_start);
            let bound = 160 + 64 + H2_TIGHT_EXTRA;
            // A segment boundary is a request-start candidate by design (resync), so only a cut
            // that cannot start a method token or a status line (uppercase) leaves the framing
            // unchanged; those are the cuts this property varies.
            let cuts: Vec<_> = cuts
                .into_iter()
                .filter(|c| !input.get(c.index(input.len() + 1)).is_some_and(u8::is_ascii_uppercase))
                .collect();
            for (range, ts) in split(&input, &cuts) {
                run.data(&input[range], ts);
                prop_assert!(run.framer.buffered_bytes() <= bound);
            }
            let a: Vec<_> = whole.out.iter().map(shape).collect();
            let b: Vec<_> = run.out.iter().map(shape).collect();
            prop_assert_eq!(a, b);
            prop_assert_eq!(&whole.stats, &run.stats);
            for r in &run.out {
                check_record(r, &input)?;
            }
        }

        #[test]
        fn hostile_streams_with_gaps_stay_sane(
            pieces in prop::collection::vec(arb_piece(), 1..8),
            events in prop::collection::vec((any::<prop::sample::Index>(), 0u64..40, any::<bool>()), 0..16),
        ) {
            let input = pieces.concat();
            let mut run = Run::new(tight_limits(), true);
            let mut points: Vec<(usize, u64, bool)> = events.iter().map(|(i, len, gap)| (i.index(input.len() + 1), *len, *gap)).collect();
            points.sort_unstable();
            let mut at = 0;
            for (ts, (p, len, gap)) in points.into_iter().enumerate() {
                run.data(&input[at..p], ts as u64);
                at = p;
                if gap {
                    run.gap(len, ts as u64);
                }
                prop_assert!(run.framer.buffered_bytes() <= 160 + 64 + H2_TIGHT_EXTRA);
            }
            run.data(&input[at..], 99);
            run.end();
            prop_assert!(run.framer.is_done());
            prop_assert_eq!(run.framer.buffered_bytes(), 0);
            for r in &run.out {
                check_record(r, &input)?;
            }
        }
    }
}
