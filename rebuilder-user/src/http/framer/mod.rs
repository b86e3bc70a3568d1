//! [`RequestFramer`]: the state machine that frames one client-to-server stream into requests.
//! This module holds the framer's state, hands each byte to the phase it is in, and handles what
//! cuts across phases (gaps, the stream's end, pushing a finished request); each phase is a
//! child module: `head` (reading a head), `body` (reading or skipping a body), `resync`
//! (looking for the next request). It reads heads with `super::request_head`, recognises lines
//! with `super::start_line`, delimits with `crate::http1`, and hands HTTP/2 to `crate::h2`.
//!
//! What it guarantees: [`RequestFramer`] turns the [`StreamEvent`]s of one client-to-server
//! stream into [`RebuiltRequest`]s whose `raw` bytes are exactly what the client sent:
//!
//! - A head is delimited first (the blank line, searched only in new bytes) and parsed once,
//!   with a lenient httparse configuration; a head httparse refuses is still replayed, flagged
//!   `malformed`, when its request line reads as `TOKEN SP something SP HTTP/1.x`.
//! - The body follows Transfer-Encoding: chunked (final coding), else Content-Length, else there
//!   is none. Bytes are copied out of the events into a buffer owned by the request, so no input
//!   `Bytes` (possibly a slice of a large capture chunk) outlives the call.
//! - Empty lines between requests (RFC 9112 §2.2) are skipped and belong to no request.
//! - After a hole, an error or a pickup mid-stream, the framer resynchronises: it skips bytes
//!   until a line that begins with a strict request line (see `resync`). A line start is the
//!   byte after an LF, and also the first byte of a pickup and the first byte after a gap:
//!   segments often begin with a request, and a false match would need a whole request line.
//!   Until the stream has shown a request, a line starting `HTTP/1.x DDD` there means the stream
//!   is the server's direction (a pickup without SYN guessed wrong): counted in
//!   `response_streams`, done.
//! - A body over `max_body_bytes` is counted, not kept; the request is pushed once the body has
//!   passed (for both framings, so a gap in it can still be flagged), as its head with framing
//!   rewritten (`request_head::rewrite_without_body`). With chunked framing, a Content-Length
//!   that came alongside Transfer-Encoding is set to `0` and no second one is added.
//! - Content-Length values that disagree, or a Transfer-Encoding whose final coding is not
//!   chunked, leave the body's end unknown: the request is dropped as invalid and the framer
//!   resynchronises.
//! - A record cut by a gap holds the bytes before the hole; its `body_len` is the body bytes it
//!   holds (the original length when the body was also over the limit).
//! - Memory: at most `max_head_bytes` while reading a head or resynchronising, plus at most
//!   `max_body_bytes` of body.

mod body;
mod head;
mod resync;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;

use super::request_head::{self, HeadInfo};
use super::{FlowContext, HttpLimits, HttpStats};
use crate::h2::{H2Conn, Start};
use crate::http1::head_end::HeadEnd;
use crate::reassembly::StreamEvent;
use crate::request::{RebuiltRequest, RequestFlags};
use crate::segment::Timestamp;
use body::{after_gap_in_length, Body, BodyKind};
use resync::Resync;

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
            let (head, host) = request_head::rewrite_without_body(
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
