//! From frames to requests: what a frame's payload is for once its header is read, DATA into a
//! stream's body, header blocks (HEADERS, CONTINUATION) decoded with HPACK into fields, and a
//! stream's end rendered as a request (`render`) or counted with its outcome.
//!
//! Part of the connection (`super`): it works on the connection's own state and counts into
//! its `H2Stats`.

use super::*;

impl H2Conn {
    /// Decides what to do with a frame's payload once its header is read.
    pub(super) fn open(
        &mut self,
        head: Head,
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) {
        // A header block must continue on its own stream, with nothing in between.
        let in_block = self.block.as_ref().map(|b| b.stream);
        let continuation = head.kind == Kind::Continuation;
        if continuation != (in_block.is_some() && in_block == Some(head.stream))
            || (in_block.is_some() && !continuation)
        {
            return self.stop(Stop::Protocol, stats);
        }
        let sink = match head.kind {
            Kind::Headers | Kind::Continuation => {
                // The block (and this frame) must fit the limit before any of it is kept.
                let held = self.block.as_ref().map_or(0, |b| b.bytes.len());
                if held + head.len as usize > self.limits.max_head_bytes {
                    // Its stream is lost with the decoding (an open block is counted by stop).
                    if self.block.is_none() {
                        stats.stream(StreamOutcome::Undecodable);
                    }
                    return self.stop(Stop::Protocol, stats);
                }
                Sink::Keep(Vec::with_capacity(head.len as usize))
            }
            Kind::Data => {
                if head.has(flags::PADDED) && head.len == 0 {
                    return self.stop(Stop::Protocol, stats);
                }
                if let Some(s) = self.streams.get_mut(&head.stream) {
                    s.last_ts = ts;
                }
                Sink::Data {
                    pad_len_due: head.has(flags::PADDED),
                    data: head.len,
                }
            }
            Kind::PushPromise => return self.stop(Stop::Protocol, stats),
            Kind::RstStream => {
                if self.streams.remove(&head.stream).is_some() {
                    stats.stream(StreamOutcome::Reset);
                }
                Sink::Skip
            }
            _ => Sink::Skip,
        };
        self.read = Read::Payload {
            head,
            left: head.len,
            sink,
        };
        if head.len == 0 {
            // An empty frame is whole at its header: an empty DATA frame with END_STREAM is
            // how streaming clients end their request.
            self.finish_frame(head, Sink::Skip, ts, out, stats);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn payload(
        &mut self,
        head: Head,
        left: u32,
        sink: Sink,
        rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) -> usize {
        let n = (left as usize).min(rest.len());
        let chunk = &rest[..n];
        let left = left - n as u32;
        let sink = match sink {
            Sink::Skip => Sink::Skip,
            Sink::Keep(mut v) => {
                v.extend_from_slice(chunk);
                Sink::Keep(v)
            }
            Sink::Data {
                mut pad_len_due,
                mut data,
            } => {
                let mut chunk = chunk;
                if pad_len_due {
                    if let Some((&pad, tail)) = chunk.split_first() {
                        // RFC 9113 §6.1: padding as long as the payload is an error.
                        if u32::from(pad) >= head.len {
                            self.stop(Stop::Protocol, stats);
                            return rest.len();
                        }
                        data = head.len - 1 - u32::from(pad);
                        pad_len_due = false;
                        chunk = tail;
                    }
                }
                let take = (data as usize).min(chunk.len());
                if take > 0 {
                    self.body(head.stream, &chunk[..take], ts, stats);
                    data -= take as u32;
                }
                Sink::Data { pad_len_due, data }
            }
        };
        if left == 0 {
            self.finish_frame(head, sink, ts, out, stats);
        } else {
            self.read = Read::Payload { head, left, sink };
        }
        n
    }

    pub(super) fn body(&mut self, stream: u32, bytes: &[u8], ts: Timestamp, stats: &mut H2Stats) {
        let Some(s) = self.streams.get_mut(&stream) else {
            // Undecodable, every stream was counted as such already.
            if !self.undecodable {
                stats.unattached_data_bytes += bytes.len() as u64;
            }
            return;
        };
        s.body_len += bytes.len() as u64;
        s.last_ts = ts;
        if s.over_limit {
            return;
        }
        if s.body_len > self.limits.max_body_bytes {
            s.over_limit = true;
            s.body = Vec::new();
            return;
        }
        let limit = usize::try_from(self.limits.max_body_bytes).unwrap_or(usize::MAX);
        crate::http::extend_bounded(&mut s.body, bytes, limit);
    }

    /// A frame's payload is complete.
    pub(super) fn finish_frame(
        &mut self,
        head: Head,
        sink: Sink,
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) {
        self.read = Read::Header {
            buf: [0; HEADER_LEN],
            have: 0,
        };
        match head.kind {
            Kind::Headers => {
                let payload = match sink {
                    Sink::Keep(v) => v,
                    _ => Vec::new(),
                };
                let fragment = match frame::headers_fragment(&head, &payload) {
                    Fields::Ok(r) => payload.get(r).unwrap_or_default().to_vec(),
                    Fields::Malformed => return self.stop(Stop::Protocol, stats),
                };
                self.block = Some(Block {
                    stream: head.stream,
                    end_stream: head.has(flags::END_STREAM),
                    bytes: fragment,
                    ts,
                });
                if head.has(flags::END_HEADERS) {
                    self.header_block(out, stats);
                }
            }
            Kind::Continuation => {
                if let (Some(b), Sink::Keep(v)) = (self.block.as_mut(), sink) {
                    b.bytes.extend_from_slice(&v);
                }
                if head.has(flags::END_HEADERS) {
                    self.header_block(out, stats);
                }
            }
            Kind::Data if head.has(flags::END_STREAM) => self.end_stream(head.stream, out, stats),
            _ => {}
        }
    }

    /// A whole header block: decoded, then a new request, trailers, or counted.
    pub(super) fn header_block(&mut self, out: &mut Vec<RebuiltRequest>, stats: &mut H2Stats) {
        let Some(block) = self.block.take() else {
            return;
        };
        let id = block.stream;
        let existing = self.streams.contains_key(&id);
        let new_id = id > self.max_id;
        self.max_id = self.max_id.max(id);
        if self.undecodable {
            // Each stream once (client stream ids only grow; trailers come on a known one).
            if new_id {
                stats.stream(StreamOutcome::Undecodable);
            }
            return;
        }
        // Decoded whatever becomes of the stream, so the table stays in step.
        let cap = self.limits.max_head_bytes;
        let mut fields = Vec::new();
        let mut size = 0usize;
        let mut over = false;
        let decoded = self.hpack.decode_with_cb(&block.bytes, |name, value| {
            size += name.len() + value.len() + 32;
            if size > cap {
                over = true;
            }
            if !over {
                fields.push((name.into_owned(), value.into_owned()));
            }
        });
        if decoded.is_err() {
            if existing {
                self.streams.remove(&id);
            }
            stats.stream(StreamOutcome::Undecodable);
            return self.stop(Stop::Hpack, stats);
        }
        if existing {
            // Trailers: only with END_STREAM (RFC 9113 §8.1).
            let Some(mut s) = self.streams.remove(&id) else {
                return;
            };
            if !block.end_stream || over {
                stats.stream(if over {
                    StreamOutcome::HeadTooLarge
                } else {
                    StreamOutcome::Malformed
                });
                return;
            }
            s.fields_size += fields_cost(&fields);
            s.trailers = fields;
            s.last_ts = block.ts;
            self.streams.insert(id, s);
            return self.end_stream(id, out, stats);
        }
        // A client opens streams on odd ids, each higher than the last (RFC 9113 §5.1.1): a
        // HEADERS frame on an even id, or on an id already used and closed, opens none.
        if id % 2 == 0 || !new_id {
            stats.stream(StreamOutcome::Malformed);
            return;
        }
        if over {
            stats.stream(StreamOutcome::HeadTooLarge);
            return;
        }
        if self.streams.len() >= self.limits.h2_max_streams {
            stats.stream(StreamOutcome::Refused);
            return;
        }
        self.streams.insert(
            id,
            H2Stream {
                fields_size: fields_cost(&fields),
                fields,
                body: Vec::new(),
                body_len: 0,
                over_limit: false,
                trailers: Vec::new(),
                gap: false,
                first_ts: block.ts,
                last_ts: block.ts,
            },
        );
        if block.end_stream {
            self.end_stream(id, out, stats);
        }
    }

    /// The client finished sending a stream: its request is rendered and handed on.
    pub(super) fn end_stream(
        &mut self,
        id: u32,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        if s.gap {
            stats.stream(StreamOutcome::Gap);
            return;
        }
        let parts = render::Parts {
            stream_id: id,
            fields: s.fields,
            body: s.body,
            body_len: s.body_len,
            over_limit: s.over_limit,
            trailers: s.trailers,
            first_ts: s.first_ts,
            last_ts: s.last_ts,
        };
        match render::render(&self.ctx, &self.limits, parts) {
            Ok(req) => {
                stats.stream(StreamOutcome::Rebuilt);
                stats.body_over_limit += u64::from(req.flags.body_over_limit);
                if req.h2.as_ref().is_some_and(|h| !h.trailers.is_empty()) {
                    stats.trailers += 1;
                }
                out.push(req);
            }
            Err(render::Malformed) => stats.stream(StreamOutcome::Malformed),
        }
    }
}
