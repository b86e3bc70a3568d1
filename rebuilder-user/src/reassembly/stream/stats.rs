//! What happened to the bytes and segments of the streams ([`StreamStats`]), counted by each
//! stream as it goes and summed by the worker, and the gap reasons' order in its arrays.
//!
//! Plain integers: the worker publishes them as metrics (`reassembly::metrics`), nothing here
//! knows about the exporter.

use crate::reassembly::GapReason;

/// Counts of what happened to the bytes and segments of the streams; plain integers summed by
/// the worker and published as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub segments: u64,
    pub out_of_order_segments: u64,
    pub delivered_bytes: u64,
    /// Bytes of segments that repeated bytes already delivered or buffered.
    pub duplicate_bytes: u64,
    /// Of those, bytes that differed from what was kept (first wins).
    pub conflict_bytes: u64,
    /// Bytes before the first byte of a stream picked up mid-connection.
    pub before_start_bytes: u64,
    /// Bytes carried on SYNs, dropped (`StreamConfig::syn_data` off).
    pub syn_data_bytes: u64,
    pub out_of_window_segments: u64,
    /// Segments that arrived after the stream's FIN or RST.
    pub after_end_segments: u64,
    /// Gaps by reason: count and bytes, indexed like [`GAP_REASONS`].
    pub gaps: [u64; 3],
    pub gap_bytes: [u64; 3],
    /// Holes skipped because the out-of-order buffer was full (a subset of `Lost` gaps).
    pub buffer_full_skips: u64,
    /// Out-of-order segments (and their bytes) dropped from the far end of a full buffer while
    /// the stream kept advancing.
    pub pruned_segments: u64,
    pub pruned_bytes: u64,
    /// Skips undone: data arrived inside a range skipped as lost.
    pub rewinds: u64,
    /// RSTs within the window but not at the stream's position: ignored.
    pub rst_ignored: u64,
    /// FINs seen ahead of the stream that it then ran past in order, or whose missing bytes
    /// never came: ignored.
    pub fin_ignored: u64,
}

pub const GAP_REASONS: [GapReason; 3] = [GapReason::Lost, GapReason::Truncated, GapReason::Closed];

pub(super) fn gap_index(reason: GapReason) -> usize {
    match reason {
        GapReason::Lost => 0,
        GapReason::Truncated => 1,
        GapReason::Closed => 2,
    }
}

impl StreamStats {
    pub fn add(&mut self, o: &StreamStats) {
        self.segments += o.segments;
        self.out_of_order_segments += o.out_of_order_segments;
        self.delivered_bytes += o.delivered_bytes;
        self.duplicate_bytes += o.duplicate_bytes;
        self.conflict_bytes += o.conflict_bytes;
        self.before_start_bytes += o.before_start_bytes;
        self.syn_data_bytes += o.syn_data_bytes;
        self.out_of_window_segments += o.out_of_window_segments;
        self.after_end_segments += o.after_end_segments;
        for i in 0..3 {
            self.gaps[i] += o.gaps[i];
            self.gap_bytes[i] += o.gap_bytes[i];
        }
        self.buffer_full_skips += o.buffer_full_skips;
        self.pruned_segments += o.pruned_segments;
        self.pruned_bytes += o.pruned_bytes;
        self.rewinds += o.rewinds;
        self.rst_ignored += o.rst_ignored;
        self.fin_ignored += o.fin_ignored;
    }
}
