//! The framer's head phase: skipping blank lines between requests, finding the end of a head
//! within `max_head_bytes`, recognising a stream that is not HTTP/1.x requests at all (TLS, a
//! response stream, the HTTP/2 preface), then reading the head (`super::super::request_head`)
//! and choosing the body phase it calls for. It works on the framer's own buffer and state.

use super::body::{Body, BodyKind};
use super::resync::Resync;
use super::{Phase, RequestFramer};
use crate::h2::{H2Conn, Start};
use crate::http::request_head::{self, Framing, HeadError};
use crate::http::{extend_bounded, HttpStats};
use crate::http1::chunked::ChunkedDecoder;
use crate::http1::head_end::HeadEnd;
use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

/// The first head of an HTTP/2 prior-knowledge connection: the 24-byte preface starts with it,
/// and no HTTP/1.x request can, so the remaining `SM\r\n\r\n` need not be waited for.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
const RESPONSE_START: &[u8] = b"HTTP/1.";
/// A TLS handshake record: content type 22, major version 3.
const TLS_START: &[u8] = &[0x16, 0x03];
/// A body buffer is grown as bytes arrive, from at most this much: a Content-Length alone must
/// not reserve memory the client may never send.
const INITIAL_BODY_RESERVE: usize = 64 * 1024;

impl RequestFramer {
    pub(super) fn idle(&mut self, rest: &[u8], ts: Timestamp) -> usize {
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

    pub(super) fn head(
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
        let info = match request_head::read_head(&self.parser, &self.buf, self.limits.max_headers) {
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
}
