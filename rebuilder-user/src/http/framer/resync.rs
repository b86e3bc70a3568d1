//! The framer's resynchronisation phase: after a hole, an error or a pickup mid-stream, bytes
//! are skipped (and counted) until a line starts with a strict request line, which begins the
//! next head; until the stream has shown a request, a status line there ends framing (the
//! stream is the server's). The byte-by-byte matchers are `super::super::start_line`; this
//! phase decides what a line start is and how much of a candidate line is held.

use super::{Phase, RequestFramer};
use crate::http::start_line::{RequestLine, StatusLine, Step};
use crate::http::{extend_bounded, HttpStats};
use crate::http1::head_end::HeadEnd;
use crate::segment::Timestamp;

pub(super) struct Resync {
    /// The next byte starts a line.
    pub(super) line_start: bool,
    /// Matching the line that started at a line start; its bytes are in `buf`.
    pub(super) candidate: Option<Candidate>,
}

impl Resync {
    pub(super) fn at(line_start: bool) -> Phase {
        Phase::Resync(Resync {
            line_start,
            candidate: None,
        })
    }

    /// Bytes of the current line counted but not held in `buf`.
    pub(super) fn passed(&self) -> usize {
        self.candidate.as_ref().map_or(0, |c| c.passed)
    }
}

/// What the current line may still turn out to be; dead when both are `None`.
pub(super) struct Candidate {
    request: Option<RequestLine>,
    /// Only until the stream has shown a request.
    status: Option<StatusLine>,
    /// Bytes of the line passed once only the status matcher was left: it keeps no bytes, so
    /// they are counted, not held (`buf` holds the line only while it may become a head).
    passed: usize,
}

impl RequestFramer {
    pub(super) fn resync(
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
}
