//! What HTTP/2 decoding counts, as plain integers (no atomics on the hot path): frames by type,
//! streams by outcome, connections by how they started or why decoding stopped. The label
//! values live here with the counts they index; `metrics` publishes them.

/// Stream outcomes (`rebuilder_h2_streams_total{outcome}`), indexed like [`STREAM_OUTCOMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Rebuilt and handed on.
    Rebuilt,
    /// The client reset it before it was whole.
    Reset,
    /// The connection ended before it was whole.
    Incomplete,
    /// A hole in the stream cut its body.
    Gap,
    /// Its header block could not be decoded: HPACK state unknown (mid-stream pickup, a hole or
    /// an error earlier on the connection).
    Undecodable,
    /// Its header fields do not make a request (RFC 9113 §8.1.1, §8.3) or could not be rendered
    /// as HTTP/1.1 without changing its framing (CR/LF in a field, a content-length that is not
    /// the body's length, connection-specific fields).
    Malformed,
    /// More streams open at once than `h2_max_streams`.
    Refused,
    /// Its fields took more than `max_head_bytes` (RFC size: name + value + 32 each).
    HeadTooLarge,
}

pub const STREAM_OUTCOMES: [StreamOutcome; 8] = [
    StreamOutcome::Rebuilt,
    StreamOutcome::Reset,
    StreamOutcome::Incomplete,
    StreamOutcome::Gap,
    StreamOutcome::Undecodable,
    StreamOutcome::Malformed,
    StreamOutcome::Refused,
    StreamOutcome::HeadTooLarge,
];

impl StreamOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Rebuilt => "rebuilt",
            StreamOutcome::Reset => "reset",
            StreamOutcome::Incomplete => "incomplete",
            StreamOutcome::Gap => "gap",
            StreamOutcome::Undecodable => "undecodable",
            StreamOutcome::Malformed => "malformed",
            StreamOutcome::Refused => "refused",
            StreamOutcome::HeadTooLarge => "head_too_large",
        }
    }

    pub(super) fn index(self) -> usize {
        STREAM_OUTCOMES.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why decoding stopped for the rest of a connection
/// (`rebuilder_h2_connections_total{outcome}`), indexed like [`CONNECTION_OUTCOMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// HPACK decoding failed.
    Hpack,
    /// Frames a client may not send that way (PUSH_PROMISE, CONTINUATION out of place, a bad
    /// preface, malformed padding, a header block over the limit).
    Protocol,
    /// A hole in a header block or across frame boundaries, or a rewind.
    Gap,
}

pub const CONNECTION_OUTCOMES: [&str; 6] = [
    "prior_knowledge",
    "upgrade",
    "pickup",
    "hpack_error",
    "protocol_error",
    "gap",
];

/// Counts of one worker's HTTP/2 connections, plain integers like `HttpStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct H2Stats {
    /// By `KINDS` index.
    pub frames: [u64; 11],
    /// By `STREAM_OUTCOMES` index.
    pub streams: [u64; 8],
    /// By `CONNECTION_OUTCOMES` index: how connections started, and why decoding stopped.
    pub connections: [u64; 6],
    /// Requests whose body was over `max_body_bytes` (replayed as their head).
    pub body_over_limit: u64,
    /// Requests with trailers.
    pub trailers: u64,
    /// DATA bytes on a decodable connection that belong to no open stream (one refused,
    /// malformed, reset, already ended, or never opened): dropped, counted here.
    pub unattached_data_bytes: u64,
}

impl H2Stats {
    pub fn add(&mut self, o: &H2Stats) {
        for (a, b) in self.frames.iter_mut().zip(o.frames) {
            *a += b;
        }
        for (a, b) in self.streams.iter_mut().zip(o.streams) {
            *a += b;
        }
        for (a, b) in self.connections.iter_mut().zip(o.connections) {
            *a += b;
        }
        self.body_over_limit += o.body_over_limit;
        self.trailers += o.trailers;
        self.unattached_data_bytes += o.unattached_data_bytes;
    }

    pub(super) fn stream(&mut self, outcome: StreamOutcome) {
        self.streams[outcome.index()] += 1;
    }

    pub fn streams_of(&self, outcome: StreamOutcome) -> u64 {
        self.streams[outcome.index()]
    }
}
