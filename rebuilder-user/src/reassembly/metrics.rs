//! The reassembly room's metrics: what the streams did with segments and bytes, and the holes
//! they skipped.
//!
//! Registered here, by the room whose counts they are, so the exporter (`crate::metrics`)
//! depends on nothing upstream of it. Reads [`StreamStats`]; the worker publishes them (it sums
//! its streams' counts) and adds its own flow-level outcomes to [`StreamMetrics::segments`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{StreamStats, GAP_REASONS};
use crate::metrics::{add_delta, OutcomeLabel, ReasonLabel};

pub struct StreamMetrics {
    /// `rebuilder_stream_segments_total`: the worker counts some outcomes here too (segments
    /// that reach no stream), so it is public.
    pub segments: Family<OutcomeLabel, Counter>,
    bytes: Family<OutcomeLabel, Counter>,
    gaps: Family<ReasonLabel, Counter>,
    gap_bytes: Family<ReasonLabel, Counter>,
    gaps_buffer_full: Counter,
}

impl StreamMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            segments: Family::default(),
            bytes: Family::default(),
            gaps: Family::default(),
            gap_bytes: Family::default(),
            gaps_buffer_full: Counter::default(),
        };
        // Every gap reason exists from the start, at zero (alerts see 0, not an absent series).
        for reason in GAP_REASONS.iter() {
            let r = ReasonLabel {
                reason: reason.as_str(),
            };
            let _ = m.gaps.get_or_create(&r);
            let _ = m.gap_bytes.get_or_create(&r);
        }
        let r = registry;
        r.register(
            "rebuilder_stream_segments",
            "Segments by what reassembly did with them (in_order, out_of_order, out_of_window, \
             after_end, ignored, after_close, without_flow; against spoofing: pruned from a full \
             buffer, rst_ignored and fin_ignored when not at the stream's position, rewound when a \
             skip proved wrong, second_connection for a SYN with a new ISN on a live 4-tuple)",
            m.segments.clone(),
        );
        r.register(
            "rebuilder_stream_bytes",
            "Payload bytes by what reassembly did with them (delivered, duplicate, conflict with \
             what was kept first, pruned, before_start of a picked-up stream, syn_data dropped \
             from a SYN)",
            m.bytes.clone(),
        );
        r.register(
            "rebuilder_gaps",
            "Holes skipped in streams, by reason",
            m.gaps.clone(),
        );
        r.register(
            "rebuilder_gap_bytes",
            "Bytes skipped in streams, by reason",
            m.gap_bytes.clone(),
        );
        r.register("rebuilder_gaps_buffer_full", "Holes skipped early because a stream's out-of-order buffer was full (part of reason=lost)", m.gaps_buffer_full.clone());
        m
    }

    /// Publishes `s - p` (now, before) of the streams' counts.
    pub fn publish(&self, s: &StreamStats, p: &StreamStats) {
        let inc = |f: &Family<OutcomeLabel, Counter>, outcome: &'static str, a: u64, b: u64| {
            add_delta(f, &OutcomeLabel { outcome }, a, b)
        };
        let seg = &self.segments;
        let in_order = |x: &StreamStats| x.segments - x.out_of_order_segments;
        inc(seg, "in_order", in_order(s), in_order(p));
        inc(
            seg,
            "out_of_order",
            s.out_of_order_segments,
            p.out_of_order_segments,
        );
        inc(
            seg,
            "out_of_window",
            s.out_of_window_segments,
            p.out_of_window_segments,
        );
        inc(seg, "after_end", s.after_end_segments, p.after_end_segments);
        inc(seg, "pruned", s.pruned_segments, p.pruned_segments);
        inc(seg, "rst_ignored", s.rst_ignored, p.rst_ignored);
        inc(seg, "fin_ignored", s.fin_ignored, p.fin_ignored);
        inc(seg, "rewound", s.rewinds, p.rewinds);
        let bytes = &self.bytes;
        inc(bytes, "delivered", s.delivered_bytes, p.delivered_bytes);
        inc(bytes, "duplicate", s.duplicate_bytes, p.duplicate_bytes);
        inc(bytes, "conflict", s.conflict_bytes, p.conflict_bytes);
        inc(bytes, "pruned", s.pruned_bytes, p.pruned_bytes);
        inc(
            bytes,
            "before_start",
            s.before_start_bytes,
            p.before_start_bytes,
        );
        inc(bytes, "syn_data", s.syn_data_bytes, p.syn_data_bytes);
        for (i, reason) in GAP_REASONS.iter().enumerate() {
            let r = ReasonLabel {
                reason: reason.as_str(),
            };
            add_delta(&self.gaps, &r, s.gaps[i], p.gaps[i]);
            add_delta(&self.gap_bytes, &r, s.gap_bytes[i], p.gap_bytes[i]);
        }
        self.gaps_buffer_full
            .inc_by(s.buffer_full_skips - p.buffer_full_skips);
    }
}
