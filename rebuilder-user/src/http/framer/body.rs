//! The framer's body phase: a body delimited by Content-Length or chunked framing (the decoder
//! is `crate::http1::chunked`), kept up to `max_body_bytes` or only counted beyond it, and the
//! skipping of what is left of a Content-Length body after a gap cut its request short.

use super::resync::Resync;
use super::{Phase, RequestFramer};
use crate::http::request_head::HeadInfo;
use crate::http::{extend_bounded, HttpStats};
use crate::http1::chunked::{ChunkedDecoder, InvalidChunk};
use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

pub(super) struct Body {
    pub(super) info: HeadInfo,
    pub(super) head_len: usize,
    pub(super) kind: BodyKind,
    /// Counted, not kept: `buf` holds the head only.
    pub(super) over_limit: bool,
    /// Body bytes (as sent) so far.
    pub(super) seen: u64,
}

pub(super) enum BodyKind {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl RequestFramer {
    pub(super) fn body(
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

    pub(super) fn skip(&mut self, remaining: u64, rest: &[u8]) -> usize {
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
}

/// A gap of `len` bytes where `remaining` bytes of a Content-Length body were still due.
pub(super) fn after_gap_in_length(remaining: u64, len: u64) -> Phase {
    match len.cmp(&remaining) {
        std::cmp::Ordering::Less => Phase::Skip {
            remaining: remaining - len,
        },
        std::cmp::Ordering::Equal => Phase::Idle,
        // The hole swallowed the start of whatever followed the body.
        std::cmp::Ordering::Greater => Resync::at(true),
    }
}
