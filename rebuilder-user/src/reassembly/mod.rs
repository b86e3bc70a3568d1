//! TCP reassembly: one in-order byte stream per direction of a flow.
//!
//! The output is a sequence of [`StreamEvent`]s per stream: in-order data, gaps (bytes that will
//! never arrive) and the end. The HTTP framer consumes exactly that, so a hole is always visible
//! to it and a request that spans one can never be delivered as if whole.

use bytes::Bytes;

use crate::segment::Timestamp;

/// What a stream hands to its consumer, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next in-order bytes of the stream, with the capture time of the segment that
    /// carried them.
    Data { bytes: Bytes, ts: Timestamp },
    /// `len` bytes of the stream are missing and will never be delivered.
    Gap {
        len: u64,
        ts: Timestamp,
        reason: GapReason,
    },
    /// The bytes delivered since the last gap, and the end of that gap, were not this stream's:
    /// it goes `back` bytes behind the end of what it delivered and continues from there. A
    /// consumer drops what it was building and resynchronises, as after a gap. Only after a
    /// skip proved wrong (see `stream`'s policies).
    Rewind { back: u64, ts: Timestamp },
    /// The stream is over; nothing follows.
    End { ts: Timestamp, reason: EndReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// A hole waited longer than the reordering timeout, or out-of-order bytes filled the
    /// per-flow buffer: the missing segment is considered lost (mirror loss happens, DESIGN §2).
    Lost,
    /// The frame was cut (AWS PacketLength, MTU): the tail never reached us.
    Truncated,
    /// The stream was closed (FIN, RST, expiry, eviction, end of input) with a hole pending.
    Closed,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Lost => "lost",
            GapReason::Truncated => "truncated",
            GapReason::Closed => "closed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The sender's FIN was reached in order.
    Fin,
    Rst,
    /// No segment for the idle timeout.
    Idle,
    /// Evicted to stay within the memory budget.
    Evicted,
    /// The input ended (end of a capture file, shutdown).
    Shutdown,
    /// A SYN with a new initial sequence number reused the 4-tuple: the old stream is over.
    NewConnection,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
            EndReason::NewConnection => "new_connection",
        }
    }
}

pub mod metrics;
mod stream;

pub use stream::{
    ooo_entry_cost, Stream, StreamConfig, StreamStats, GAP_REASONS, MAX_METADATA_BYTES,
    OOO_ENTRY_OVERHEAD,
};
