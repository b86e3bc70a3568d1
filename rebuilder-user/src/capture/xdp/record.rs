//! From ring record to [`Segment`]: the clock that turns the program's monotonic timestamps
//! into epoch time, the [`RecordConverter`] that applies the VNI lists, and the labels of the
//! records that do not parse.
//!
//! Pure: it reads parsed record headers (`rebuilder_ebpf`) and the clocks, never the ring.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rebuilder_ebpf::{RecordError, RecordHeader};

use crate::capture::decode::Drop;
use crate::segment::{FlowKey, Segment, TcpFlags, Timestamp};

/// Converts `CLOCK_MONOTONIC` nanoseconds (what `bpf_ktime_get_ns` returns) to nanoseconds
/// since the UNIX epoch, with an offset sampled from both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochClock {
    /// Epoch time minus monotonic time, in nanoseconds.
    offset_ns: i128,
}

impl EpochClock {
    pub fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Samples both clocks now. The wall clock is read between two monotonic reads and paired
    /// with their midpoint, which bounds the error by half the time the reads took.
    pub fn sample() -> Self {
        let before = monotonic_ns();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let after = monotonic_ns();
        let mid = (i128::from(before) + i128::from(after)) / 2;
        Self {
            offset_ns: wall as i128 - mid,
        }
    }

    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// The epoch time of monotonic instant `mono_ns`, clamped to the `u64` range.
    pub fn to_epoch(&self, mono_ns: u64) -> Timestamp {
        let t = i128::from(mono_ns) + self.offset_ns;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`;
    // CLOCK_MONOTONIC always exists on Linux. Rust's Instant does not expose its nanoseconds.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Turns ring records into segments, applying the VNI lists.
#[derive(Clone, Debug)]
pub struct RecordConverter {
    /// Sorted, deduplicated: binary searches over a few entries.
    vni_allow: Vec<u32>,
    vni_deny: Vec<u32>,
    pub clock: EpochClock,
}

impl RecordConverter {
    pub fn new(vni_allow: &[u32], vni_deny: &[u32], clock: EpochClock) -> Self {
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        Self {
            vni_allow: sorted(vni_allow),
            vni_deny: sorted(vni_deny),
            clock,
        }
    }

    /// The segment a parsed record describes; `payload` is the record's captured bytes, copied
    /// out of the ring. A denied VNI is a counted drop, as on the other inputs.
    pub fn convert(&self, h: &RecordHeader, payload: Bytes) -> Result<Segment, Drop> {
        let denied = self.vni_deny.binary_search(&h.vni).is_ok()
            || (!self.vni_allow.is_empty() && self.vni_allow.binary_search(&h.vni).is_err());
        if denied {
            return Err(Drop::VniDenied);
        }
        Ok(Segment {
            ts: self.clock.to_epoch(h.ts_ns),
            vni: h.vni,
            flow: FlowKey {
                src: h.src_ip(),
                dst: h.dst_ip(),
                src_port: h.src_port,
                dst_port: h.dst_port,
            },
            seq: h.seq,
            ack: h.ack,
            flags: TcpFlags(h.tcp_flags),
            payload,
            wire_len: h.wire_len,
        })
    }
}

/// Kinds of records [`rebuilder_ebpf::parse_record`] rejects, for the metric label.
pub const RECORD_ERRORS: [&str; 5] = [
    "short",
    "family",
    "captured_beyond_record",
    "captured_beyond_max",
    "captured_beyond_wire",
];

pub(super) fn record_error_index(e: &RecordError) -> usize {
    match e {
        RecordError::Short { .. } => 0,
        RecordError::Family(_) => 1,
        RecordError::CapturedBeyondRecord { .. } => 2,
        RecordError::CapturedBeyondMax { .. } => 3,
        RecordError::CapturedBeyondWire { .. } => 4,
    }
}

/// What the reader has done, in plain integers (published as deltas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records taken from the ring, good or bad.
    pub records: u64,
    /// Records [`rebuilder_ebpf::parse_record`] rejected, by [`RECORD_ERRORS`] index.
    pub record_errors: [u64; RECORD_ERRORS.len()],
}

impl ReaderStats {
    pub fn bad_records(&self) -> u64 {
        self.record_errors.iter().sum()
    }
}

/// What the drop label of a record the reader could not parse says.
pub const BAD_RECORD: Drop = Drop::Malformed("unreadable XDP ring record");
