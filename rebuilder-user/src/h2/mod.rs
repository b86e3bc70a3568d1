//! HTTP/2 cleartext (h2c, gRPC) requests rebuilt from a client's byte stream.
//!
//! An [`H2Conn`] takes over a client stream once the HTTP/1.x framer has seen the HTTP/2
//! connection preface (prior knowledge, or after an `Upgrade: h2c` request): it reads frames
//! (`frame`), decodes header blocks with HPACK, and assembles each stream's request (pseudo-
//! headers, fields in order, DATA in order, trailers) into a [`RebuiltRequest`] whose `raw` is
//! the request rendered as HTTP/1.1 (`render`), so every output, and a WAF that speaks only
//! HTTP/1.1, takes it like any other.
//!
//! Choices:
//! - HPACK is `loona-hpack` (the `hpack` crate's maintained fork, tested against the
//!   hpack-test-case interop stories). Compared: `h2`'s decoder is private even under its
//!   `unstable` feature; `hpack` 0.3 is unmaintained (2016, rustc-serialize); `httlib-hpack`
//!   has one release line from 2021 and little use. `loona-hpack` hands out fields in order
//!   with their raw bytes, which a rebuilder needs (no normalising into a map).
//! - Only the client's direction is read. Its header blocks use the client's HPACK encoder,
//!   whose table size the server's SETTINGS bound (which this side may never see): size
//!   updates above `HttpLimits::h2_max_table_size` (4096, the protocol default, unless
//!   configured) are an HPACK error.
//! - Every header block is decoded, even for streams this side drops (refused, malformed):
//!   skipping one would leave the dynamic table out of step with the client's, and every later
//!   request would be guessed. A decoding error, a hole in a header block, or frames that lose
//!   their boundaries (a hole across a frame header, a rewind) end decoding for the rest of the
//!   connection: later streams are counted `undecodable`, never guessed. A hole inside a DATA
//!   frame only cuts that stream's body (its request is dropped, counted `gap`).
//! - A connection picked up mid-stream has an unknown HPACK table: its frames are followed (to
//!   count streams) but no header block is decoded (`undecodable`).
//! - Memory, charged to the connection's flow: the HPACK table (counted at three times its
//!   RFC size, what its entries really take), a header block being assembled (at most
//!   `max_head_bytes`), each open stream's fields and trailers (at most `max_head_bytes` each
//!   by RFC size, charged at what their allocations take: up to about four times that for
//!   tiny fields) and body (at most `max_body_bytes`), at most `h2_max_streams` streams.
//!
//! Here: the connection and its frame reader (preface, frame headers, holes, the end).
//! `frame` parses frame headers, `assemble` turns frames into requests, `render` writes them as
//! HTTP/1.1, `stats` counts and `metrics` publishes the counts. Depends on the HTTP/1.x
//! framer's flow context and limits only; nothing downstream.

mod assemble;
mod frame;
pub mod metrics;
mod render;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::{FlowContext, HttpLimits};
use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

use frame::{flags, Fields, HEADER_LEN};
pub use frame::{Head, Kind, KINDS};
pub use render::{H2Origin, TRAILER_FIELD};
pub use stats::{H2Stats, Stop, StreamOutcome, CONNECTION_OUTCOMES, STREAM_OUTCOMES};

/// The connection preface after the first head the HTTP/1.x framer reads (`PRI * HTTP/2.0`,
/// CRLF, CRLF).
pub const PREFACE_TAIL: &[u8] = b"SM\r\n\r\n";
/// The whole connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frames a pickup may start on are at most this long (SETTINGS_MAX_FRAME_SIZE's default):
/// a longer one is allowed only by a setting this side has not seen.
const PICKUP_MAX_FRAME: u32 = 16_384;
/// What an HPACK table entry really takes beyond its RFC size (which already adds 32 bytes
/// per entry): two `Vec`s and a deque slot.
const TABLE_COST_FACTOR: usize = 3;

/// How a connection came to be read as HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The preface at the start of the stream.
    PriorKnowledge,
    /// The preface after an `Upgrade: h2c` request.
    Upgrade,
    /// Frames found at a segment start of a stream picked up mid-connection.
    Pickup,
}

/// One stream's request as it arrives.
struct H2Stream {
    /// Decoded fields in order, pseudo-headers included.
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// What `fields` and `trailers` really take (their vectors and each name's and value's
    /// allocation at the allocator's size class), as charged to the budget.
    fields_size: usize,
    body: Vec<u8>,
    body_len: u64,
    over_limit: bool,
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// A hole cut the body: the request is dropped when it ends.
    gap: bool,
    first_ts: Timestamp,
    last_ts: Timestamp,
}

impl H2Stream {
    fn bytes(&self) -> usize {
        self.fields_size + crate::memory::alloc_size(self.body.capacity())
    }
}

/// What decoded fields take in memory: the vector of pairs (at its capacity) and each name's
/// and value's own allocation.
fn fields_cost(fields: &Vec<(Vec<u8>, Vec<u8>)>) -> usize {
    use crate::memory::alloc_size;
    alloc_size(fields.capacity() * std::mem::size_of::<(Vec<u8>, Vec<u8>)>())
        + fields
            .iter()
            .map(|(n, v)| alloc_size(n.capacity()) + alloc_size(v.capacity()))
            .sum::<usize>()
}

/// A header block being assembled from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    ts: Timestamp,
}

/// Where the reader is in the frame sequence.
enum Read {
    /// Matching the rest of the connection preface.
    Preface {
        matched: usize,
    },
    Header {
        buf: [u8; HEADER_LEN],
        have: usize,
    },
    /// A frame's payload, `left` bytes of it still to come.
    Payload {
        head: Head,
        left: u32,
        sink: Sink,
    },
}

enum Sink {
    Skip,
    /// HEADERS or CONTINUATION payload, kept whole (padding is stripped once it is).
    Keep(Vec<u8>),
    /// DATA: the pad length byte first when padded, then `data` bytes for the stream, then
    /// padding.
    Data {
        pad_len_due: bool,
        data: u32,
    },
}

/// Decoding state of one HTTP/2 client connection.
pub struct H2Conn {
    ctx: FlowContext,
    limits: Arc<HttpLimits>,
    hpack: loona_hpack::Decoder<'static>,
    read: Read,
    streams: HashMap<u32, H2Stream, foldhash::fast::RandomState>,
    block: Option<Block>,
    /// Header blocks are no longer decoded (HPACK state unknown): streams are counted as
    /// `undecodable`. Frames are still followed while `framed`.
    undecodable: bool,
    /// Frame boundaries are known; once lost, nothing more is read.
    framed: bool,
    /// Highest stream id a header block opened.
    max_id: u32,
}

impl H2Conn {
    /// A connection whose preface head (`PRI * HTTP/2.0` CRLF CRLF) the HTTP/1.x framer read;
    /// `tail_matched` bytes of [`PREFACE_TAIL`] are already behind.
    pub fn after_preface_head(
        ctx: FlowContext,
        limits: Arc<HttpLimits>,
        start: Start,
        stats: &mut H2Stats,
    ) -> Self {
        stats.connections[match start {
            Start::PriorKnowledge => 0,
            Start::Upgrade => 1,
            Start::Pickup => 2,
        }] += 1;
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(limits.h2_max_table_size);
        Self {
            ctx,
            limits,
            hpack,
            read: match start {
                Start::Pickup => Read::Header {
                    buf: [0; HEADER_LEN],
                    have: 0,
                },
                _ => Read::Preface { matched: 0 },
            },
            streams: HashMap::default(),
            block: None,
            undecodable: start == Start::Pickup,
            framed: true,
            max_id: 0,
        }
    }

    /// Whether `data`, the first bytes of a segment of a stream picked up mid-connection, are
    /// HTTP/2 frames from a client: one or more plausible frames that end exactly where the
    /// segment does. (Clients write frames whole; HTTP/1.x bytes match this by chance about
    /// once in ten million segments, judged by the header rules alone.)
    pub fn looks_like_frames(data: &[u8]) -> bool {
        let mut at = 0usize;
        let mut frames = 0;
        while at < data.len() {
            let Some(h) = data.get(at..at + HEADER_LEN) else {
                return false;
            };
            let mut b = [0u8; HEADER_LEN];
            b.copy_from_slice(h);
            let head = Head::parse(&b);
            if !head.plausible_from_client(PICKUP_MAX_FRAME) {
                return false;
            }
            at += HEADER_LEN + head.len as usize;
            frames += 1;
        }
        frames > 0 && at == data.len()
    }

    /// Whether nothing more will be read (frame boundaries lost).
    pub fn is_lost(&self) -> bool {
        !self.framed
    }

    /// Memory held, charged to the flow.
    pub fn buffered_bytes(&self) -> usize {
        let table = if self.undecodable {
            0
        } else {
            self.limits.h2_max_table_size * TABLE_COST_FACTOR
        };
        let block = self.block.as_ref().map_or(0, |b| b.bytes.capacity());
        let frame = match &self.read {
            Read::Payload {
                sink: Sink::Keep(v),
                ..
            } => v.capacity(),
            _ => 0,
        };
        let streams: usize = self
            .streams
            .values()
            .map(|s| s.bytes() + std::mem::size_of::<(u32, H2Stream)>())
            .sum();
        table + block + frame + streams
    }

    /// Consumes the next bytes of the stream; finished requests go to `out`.
    pub fn on_data(
        &mut self,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) {
        let mut rest = data;
        while !rest.is_empty() && self.framed {
            let used = match std::mem::replace(
                &mut self.read,
                Read::Header {
                    buf: [0; HEADER_LEN],
                    have: 0,
                },
            ) {
                Read::Preface { matched } => self.preface(matched, rest, stats),
                Read::Header { buf, have } => self.header(buf, have, rest, ts, out, stats),
                Read::Payload { head, left, sink } => {
                    self.payload(head, left, sink, rest, ts, out, stats)
                }
            };
            rest = rest.get(used..).unwrap_or_default();
        }
    }

    fn preface(&mut self, matched: usize, rest: &[u8], stats: &mut H2Stats) -> usize {
        let want = &PREFACE_TAIL[matched..];
        let n = want.len().min(rest.len());
        if rest[..n] != want[..n] {
            self.stop(Stop::Protocol, stats);
            return rest.len();
        }
        self.read = if matched + n == PREFACE_TAIL.len() {
            Read::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            }
        } else {
            Read::Preface {
                matched: matched + n,
            }
        };
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        mut buf: [u8; HEADER_LEN],
        have: usize,
        rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut H2Stats,
    ) -> usize {
        let n = (HEADER_LEN - have).min(rest.len());
        buf[have..have + n].copy_from_slice(&rest[..n]);
        if have + n < HEADER_LEN {
            self.read = Read::Header {
                buf,
                have: have + n,
            };
            return n;
        }
        let head = Head::parse(&buf);
        stats.frames[head.kind.index()] += 1;
        self.open(head, ts, out, stats);
        n
    }

    /// `len` bytes of the stream are missing.
    pub fn on_gap(&mut self, len: u64, stats: &mut H2Stats) {
        if !self.framed {
            return;
        }
        // Only a hole inside a DATA frame's payload (its header read) keeps the frames and the
        // table whole: it cuts that stream's body.
        if let Read::Payload {
            head,
            left,
            sink:
                Sink::Data {
                    pad_len_due: false,
                    data,
                },
        } = &mut self.read
        {
            if len <= u64::from(*data) {
                let cut = len as u32;
                *data -= cut;
                *left -= cut;
                if let Some(s) = self.streams.get_mut(&head.stream) {
                    s.gap = true;
                }
                if *left == 0 {
                    let (head, sink) = (*head, Sink::Skip);
                    self.finish_frame(head, sink, 0, &mut Vec::new(), stats);
                }
                return;
            }
        }
        self.stop(Stop::Gap, stats);
    }

    /// The stream is over: what is still open was never finished.
    pub fn on_end(&mut self, stats: &mut H2Stats) {
        for _ in self.streams.drain() {
            stats.stream(StreamOutcome::Incomplete);
        }
        // A header block cut by the end: a new stream's, unless its stream was open (counted
        // just above).
        if let Some(b) = self.block.take() {
            if b.stream > self.max_id {
                stats.stream(StreamOutcome::Incomplete);
            }
        }
    }

    /// Decoding ends for the rest of the connection; the open streams cannot finish.
    fn stop(&mut self, why: Stop, stats: &mut H2Stats) {
        stats.connections[match why {
            Stop::Hpack => 3,
            Stop::Protocol => 4,
            Stop::Gap => 5,
        }] += 1;
        let lost = if why == Stop::Gap {
            StreamOutcome::Gap
        } else {
            StreamOutcome::Undecodable
        };
        for _ in self.streams.drain() {
            stats.stream(lost);
        }
        if self.block.take().is_some() {
            stats.stream(StreamOutcome::Undecodable);
        }
        self.undecodable = true;
        // After an HPACK error the frames are still whole and later streams can be counted;
        // after anything else their boundaries are not known.
        self.framed = why == Stop::Hpack;
        self.read = Read::Header {
            buf: [0; HEADER_LEN],
            have: 0,
        };
    }
}

#[cfg(test)]
mod tests;
