//! Prometheus metrics of the capture and reassembly stages.
//!
//! The hot path counts in plain integers (`DecodeStats`, `WorkerStats`); each thread publishes
//! the difference since its last publication every few hundred milliseconds. So a packet costs
//! no atomic operation, and the registry still sees every count. The outputs register their own
//! metrics (per request, not per packet).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::capture::decode::DecodeStats;
use crate::reassembly::GAP_REASONS;
use crate::worker::WorkerStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PacketLabels {
    pub source: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Metrics of everything before the outputs.
pub struct PipelineMetrics {
    pub packets: Family<PacketLabels, Counter>,
    pub capture_records: Family<OutcomeLabel, Counter>,
    pub udp_kernel_drops: Counter,
    pub segments_dispatched: Counter,
    pub segments_dropped: Family<ReasonLabel, Counter>,
    pub stream_segments: Family<OutcomeLabel, Counter>,
    pub stream_bytes: Family<OutcomeLabel, Counter>,
    pub gaps: Family<ReasonLabel, Counter>,
    pub gap_bytes: Family<ReasonLabel, Counter>,
    pub gaps_buffer_full: Counter,
    pub flows: Family<OutcomeLabel, Counter>,
    pub flows_open: Gauge,
    pub buffered_bytes: Gauge,
    pub http_streams: Family<KindLabel, Counter>,
    pub http_resync_skipped_bytes: Counter,
    pub requests_rebuilt: Counter,
    pub requests_flagged: Family<KindLabel, Counter>,
    /// Requests lost before reaching any output, by reason. The outputs count their own drops
    /// in `rebuilder_output_dropped_total`.
    pub requests_lost: Family<ReasonLabel, Counter>,
    /// What stream starts carried: PROXY protocol headers by version, or what was wrong.
    pub proxy_headers: Family<OutcomeLabel, Counter>,
    /// Requests rebuilt but kept from every output on purpose (health checks, filters,
    /// sampling, the rate limit), by reason. Counted by `filter`.
    pub requests_filtered: Family<ReasonLabel, Counter>,
    /// HTTP/2 client frames by type, streams by outcome, connections by how they started or
    /// why decoding stopped (`h2`).
    pub h2_frames: Family<KindLabel, Counter>,
    pub h2_streams: Family<OutcomeLabel, Counter>,
    pub h2_connections: Family<OutcomeLabel, Counter>,
    pub h2_unattached_data_bytes: Counter,
}

impl PipelineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            packets: Family::default(),
            capture_records: Family::default(),
            udp_kernel_drops: Counter::default(),
            segments_dispatched: Counter::default(),
            segments_dropped: Family::default(),
            stream_segments: Family::default(),
            stream_bytes: Family::default(),
            gaps: Family::default(),
            gap_bytes: Family::default(),
            gaps_buffer_full: Counter::default(),
            flows: Family::default(),
            flows_open: Gauge::default(),
            buffered_bytes: Gauge::default(),
            http_streams: Family::default(),
            http_resync_skipped_bytes: Counter::default(),
            requests_rebuilt: Counter::default(),
            requests_flagged: Family::default(),
            requests_lost: Family::default(),
            proxy_headers: Family::default(),
            requests_filtered: Family::default(),
            h2_frames: Family::default(),
            h2_streams: Family::default(),
            h2_connections: Family::default(),
            h2_unattached_data_bytes: Counter::default(),
        };
        // Loss counters exist from the start, at zero: an alert on their rate sees 0, not an
        // absent series, and a scrape shows every family a dashboard or rule may use.
        for reason in [
            "gap",
            "head_too_large",
            "too_many_headers",
            "invalid",
            "incomplete",
            "evicted",
            "h2_undecodable",
            "h2_malformed",
            "h2_refused",
            "h2_head_too_large",
        ] {
            let _ = m.requests_lost.get_or_create(&ReasonLabel { reason });
        }
        for outcome in crate::h2::STREAM_OUTCOMES {
            let _ = m.h2_streams.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        for reason in GAP_REASONS.iter() {
            let r = ReasonLabel {
                reason: reason.as_str(),
            };
            let _ = m.gaps.get_or_create(&r);
            let _ = m.gap_bytes.get_or_create(&r);
        }
        let _ = m.segments_dropped.get_or_create(&ReasonLabel {
            reason: "worker_queue_full",
        });
        let r = registry;
        r.register(
            "rebuilder_packets",
            "Packets by capture source and outcome (segment, or the reason for dropping it)",
            m.packets.clone(),
        );
        r.register(
            "rebuilder_capture_records",
            "Capture file records by outcome",
            m.capture_records.clone(),
        );
        r.register(
            "rebuilder_udp_kernel_drops",
            "Datagrams the kernel dropped on the VXLAN sockets for lack of buffer room",
            m.udp_kernel_drops.clone(),
        );
        r.register(
            "rebuilder_segments_dispatched",
            "Segments handed to reassembly workers",
            m.segments_dispatched.clone(),
        );
        r.register(
            "rebuilder_segments_dropped",
            "Segments dropped before reassembly, by reason",
            m.segments_dropped.clone(),
        );
        r.register(
            "rebuilder_stream_segments",
            "Segments by what reassembly did with them (in_order, out_of_order, out_of_window, \
             after_end, ignored, after_close, without_flow; against spoofing: pruned from a full \
             buffer, rst_ignored and fin_ignored when not at the stream's position, rewound when a \
             skip proved wrong, second_connection for a SYN with a new ISN on a live 4-tuple)",
            m.stream_segments.clone(),
        );
        r.register(
            "rebuilder_stream_bytes",
            "Payload bytes by what reassembly did with them",
            m.stream_bytes.clone(),
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
        r.register("rebuilder_flows", "Flow lifecycle events", m.flows.clone());
        r.register(
            "rebuilder_flows_open",
            "Flows currently tracked",
            m.flows_open.clone(),
        );
        r.register(
            "rebuilder_buffered_bytes",
            "Bytes held by all flows (out-of-order data, partial requests, flow state) and their \
             tables, as the allocator serves them",
            m.buffered_bytes.clone(),
        );
        r.register(
            "rebuilder_http_streams",
            "Streams whose HTTP/1.x parsing ended early, by kind",
            m.http_streams.clone(),
        );
        r.register(
            "rebuilder_http_resync_skipped_bytes",
            "Bytes skipped while looking for the next request line",
            m.http_resync_skipped_bytes.clone(),
        );
        r.register(
            "rebuilder_requests_rebuilt",
            "Requests rebuilt from streams (including those flagged with a gap)",
            m.requests_rebuilt.clone(),
        );
        r.register(
            "rebuilder_requests_flagged",
            "Rebuilt requests by flag",
            m.requests_flagged.clone(),
        );
        r.register(
            "rebuilder_h2_frames",
            "HTTP/2 frames clients sent, by type",
            m.h2_frames.clone(),
        );
        r.register(
            "rebuilder_h2_streams",
            "HTTP/2 streams by outcome (rebuilt; reset by the client; incomplete at the end; \
             gap; undecodable: HPACK state unknown; malformed; refused: too many open; \
             head_too_large)",
            m.h2_streams.clone(),
        );
        r.register(
            "rebuilder_h2_connections",
            "HTTP/2 client connections by how they started (prior_knowledge, upgrade, pickup) \
             and why decoding stopped (hpack_error, protocol_error, gap)",
            m.h2_connections.clone(),
        );
        r.register(
            "rebuilder_h2_unattached_data_bytes",
            "HTTP/2 DATA bytes on no open stream (refused, malformed, reset, ended or never \
             opened), dropped",
            m.h2_unattached_data_bytes.clone(),
        );
        r.register(
            "rebuilder_requests_lost",
            "Requests lost before any output, by reason",
            m.requests_lost.clone(),
        );
        r.register(
            "rebuilder_proxy_headers",
            "PROXY protocol headers at the start of client streams by outcome (v1, v2, v2_local, \
             or malformed, truncated, missing, forbidden, bad_tlv)",
            m.proxy_headers.clone(),
        );
        r.register(
            "rebuilder_requests_filtered",
            "Requests kept from every output on purpose, by reason (health_check, host, method, \
             path, sample, rate_limit)",
            m.requests_filtered.clone(),
        );
        m
    }

    fn packets(&self, source: &'static str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.packets
                .get_or_create(&PacketLabels { source, outcome })
                .inc_by(n);
        }
    }

    /// Publishes `now - before` of a capture thread's decode counts.
    pub fn publish_decode(&self, source: &'static str, now: &DecodeStats, before: &DecodeStats) {
        self.packets(source, "segment", now.segments() - before.segments());
        for ((drop, n), (_, b)) in now.drops().zip(before.drops()) {
            self.packets(source, drop.as_str(), n - b);
        }
    }

    /// Publishes `now - before` of a worker's counts.
    pub fn publish_worker(&self, now: &WorkerStats, before: &WorkerStats) {
        let inc = |f: &Family<OutcomeLabel, Counter>, outcome: &'static str, a: u64, b: u64| {
            if a > b {
                f.get_or_create(&OutcomeLabel { outcome }).inc_by(a - b);
            }
        };
        let (s, p) = (&now.stream, &before.stream);
        let seg = &self.stream_segments;
        let in_order = |x: &crate::reassembly::StreamStats| x.segments - x.out_of_order_segments;
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
        inc(
            seg,
            "second_connection",
            now.second_connections,
            before.second_connections,
        );
        inc(
            seg,
            "ignored",
            now.segments_ignored,
            before.segments_ignored,
        );
        inc(
            seg,
            "after_close",
            now.segments_after_close,
            before.segments_after_close,
        );
        inc(
            seg,
            "without_flow",
            now.segments_without_flow,
            before.segments_without_flow,
        );
        let bytes = &self.stream_bytes;
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
        for (i, reason) in GAP_REASONS.iter().enumerate() {
            let r = ReasonLabel {
                reason: reason.as_str(),
            };
            if s.gaps[i] > p.gaps[i] {
                self.gaps.get_or_create(&r).inc_by(s.gaps[i] - p.gaps[i]);
            }
            if s.gap_bytes[i] > p.gap_bytes[i] {
                self.gap_bytes
                    .get_or_create(&r)
                    .inc_by(s.gap_bytes[i] - p.gap_bytes[i]);
            }
        }
        self.gaps_buffer_full
            .inc_by(s.buffer_full_skips - p.buffer_full_skips);
        let fl = &self.flows;
        inc(fl, "created", now.flows_created, before.flows_created);
        inc(fl, "closed", now.flows_closed, before.flows_closed);
        inc(fl, "expired", now.flows_expired, before.flows_expired);
        inc(fl, "evicted", now.flows_evicted, before.flows_evicted);
        self.flows_open
            .inc_by(now.flows_open as i64 - before.flows_open as i64);
        self.buffered_bytes
            .inc_by(now.buffered_bytes as i64 - before.buffered_bytes as i64);

        let (h, q) = (&now.http, &before.http);
        let kind = |f: &Family<KindLabel, Counter>, kind: &'static str, a: u64, b: u64| {
            if a > b {
                f.get_or_create(&KindLabel { kind }).inc_by(a - b);
            }
        };
        kind(&self.http_streams, "http2", h.h2_preface, q.h2_preface);
        kind(&self.http_streams, "upgrade", h.upgrades, q.upgrades);
        kind(&self.http_streams, "connect", h.connects, q.connects);
        kind(
            &self.http_streams,
            "response",
            h.response_streams,
            q.response_streams,
        );
        kind(
            &self.http_streams,
            "not_http",
            h.non_http_streams,
            q.non_http_streams,
        );
        kind(
            &self.requests_flagged,
            "malformed",
            h.malformed_replayed,
            q.malformed_replayed,
        );
        kind(
            &self.requests_flagged,
            "body_over_limit",
            h.body_over_limit,
            q.body_over_limit,
        );
        kind(
            &self.requests_flagged,
            "expect_continue",
            h.expect_continue,
            q.expect_continue,
        );
        self.http_resync_skipped_bytes
            .inc_by(h.resync_skipped_bytes - q.resync_skipped_bytes);
        self.requests_rebuilt.inc_by(now.requests - before.requests);
        let lost = |reason: &'static str, a: u64, b: u64| {
            if a > b {
                self.requests_lost
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(a - b);
            }
        };
        lost("gap", h.dropped_gap, q.dropped_gap);
        lost(
            "head_too_large",
            h.dropped_head_too_large,
            q.dropped_head_too_large,
        );
        lost(
            "too_many_headers",
            h.dropped_too_many_headers,
            q.dropped_too_many_headers,
        );
        lost("invalid", h.dropped_invalid, q.dropped_invalid);
        lost("incomplete", h.dropped_incomplete, q.dropped_incomplete);
        lost("evicted", now.requests_evicted, before.requests_evicted);
        let (g, f) = (&h.h2, &q.h2);
        for (i, k) in crate::h2::KINDS.iter().enumerate() {
            kind(&self.h2_frames, k.as_str(), g.frames[i], f.frames[i]);
        }
        for (i, o) in crate::h2::STREAM_OUTCOMES.iter().enumerate() {
            inc(&self.h2_streams, o.as_str(), g.streams[i], f.streams[i]);
        }
        for (i, o) in crate::h2::CONNECTION_OUTCOMES.iter().enumerate() {
            inc(&self.h2_connections, o, g.connections[i], f.connections[i]);
        }
        self.h2_unattached_data_bytes
            .inc_by(g.unattached_data_bytes - f.unattached_data_bytes);
        use crate::h2::StreamOutcome as O;
        for (reason, o) in [
            ("gap", O::Gap),
            ("incomplete", O::Incomplete),
            ("h2_undecodable", O::Undecodable),
            ("h2_malformed", O::Malformed),
            ("h2_refused", O::Refused),
            ("h2_head_too_large", O::HeadTooLarge),
        ] {
            lost(reason, g.streams_of(o), f.streams_of(o));
        }
        kind(
            &self.requests_flagged,
            "body_over_limit",
            g.body_over_limit,
            f.body_over_limit,
        );
        for ((outcome, a), (_, b)) in now
            .proxy
            .outcomes()
            .into_iter()
            .zip(before.proxy.outcomes())
        {
            inc(&self.proxy_headers, outcome, a, b);
        }
    }
}
