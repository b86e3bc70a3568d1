//! The worker room's metrics: flows, requests rebuilt, flagged and lost, what HTTP/1.x parsing
//! met, and the PROXY protocol headers at stream starts.
//!
//! Registered here, by the room that sums these counts ([`WorkerStats`] gathers its streams',
//! framers' and connections' plain integers), so the exporter (`crate::metrics`) depends on
//! nothing upstream of it. The stream and HTTP/2 families are registered by their own rooms
//! (`reassembly::metrics`, `h2::metrics`), in the order `/metrics` has always listed them; the
//! request families stay here because a request is lost or flagged for HTTP/1.x and HTTP/2
//! reasons alike.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::WorkerStats;
use crate::h2::metrics::H2Metrics;
use crate::h2::StreamOutcome;
use crate::metrics::{add_delta, KindLabel, OutcomeLabel, ReasonLabel};
use crate::reassembly::metrics::StreamMetrics;

pub struct WorkerMetrics {
    stream: StreamMetrics,
    flows: Family<OutcomeLabel, Counter>,
    flows_open: Gauge,
    buffered_bytes: Gauge,
    http_streams: Family<KindLabel, Counter>,
    http_resync_skipped_bytes: Counter,
    /// Read by the offline progress line.
    pub requests_rebuilt: Counter,
    requests_flagged: Family<KindLabel, Counter>,
    h2: H2Metrics,
    /// Requests lost before reaching any output, by reason. The outputs count their own drops
    /// in `rebuilder_output_dropped_total`.
    requests_lost: Family<ReasonLabel, Counter>,
    /// What stream starts carried: PROXY protocol headers by version, or what was wrong.
    proxy_headers: Family<OutcomeLabel, Counter>,
}

impl WorkerMetrics {
    /// Registers, in the order `/metrics` lists them: the stream families, flows, HTTP/1.x,
    /// requests, the HTTP/2 families, requests lost, PROXY headers.
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry;
        let stream = StreamMetrics::register(r);
        let flows = Family::default();
        let flows_open = Gauge::default();
        let buffered_bytes = Gauge::default();
        let http_streams = Family::default();
        let http_resync_skipped_bytes = Counter::default();
        let requests_rebuilt = Counter::default();
        let requests_flagged = Family::default();
        let requests_lost: Family<ReasonLabel, Counter> = Family::default();
        let proxy_headers = Family::default();
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
            let _ = requests_lost.get_or_create(&ReasonLabel { reason });
        }
        r.register("rebuilder_flows", "Flow lifecycle events", flows.clone());
        r.register(
            "rebuilder_flows_open",
            "Flows currently tracked",
            flows_open.clone(),
        );
        r.register(
            "rebuilder_buffered_bytes",
            "Bytes held by all flows (out-of-order data, partial requests, flow state) and their \
             tables, as the allocator serves them",
            buffered_bytes.clone(),
        );
        r.register(
            "rebuilder_http_streams",
            "Streams whose HTTP/1.x parsing ended early, by kind",
            http_streams.clone(),
        );
        r.register(
            "rebuilder_http_resync_skipped_bytes",
            "Bytes skipped while looking for the next request line",
            http_resync_skipped_bytes.clone(),
        );
        r.register(
            "rebuilder_requests_rebuilt",
            "Requests rebuilt from streams (including those flagged with a gap)",
            requests_rebuilt.clone(),
        );
        r.register(
            "rebuilder_requests_flagged",
            "Rebuilt requests by flag",
            requests_flagged.clone(),
        );
        let h2 = H2Metrics::register(r);
        r.register(
            "rebuilder_requests_lost",
            "Requests lost before any output, by reason",
            requests_lost.clone(),
        );
        r.register(
            "rebuilder_proxy_headers",
            "PROXY protocol headers at the start of client streams by outcome (v1, v2, v2_local, \
             or malformed, truncated, missing, forbidden, bad_tlv)",
            proxy_headers.clone(),
        );
        Self {
            stream,
            flows,
            flows_open,
            buffered_bytes,
            http_streams,
            http_resync_skipped_bytes,
            requests_rebuilt,
            requests_flagged,
            h2,
            requests_lost,
            proxy_headers,
        }
    }

    /// Publishes `now - before` of a worker's counts.
    pub fn publish(&self, now: &WorkerStats, before: &WorkerStats) {
        let inc = |f: &Family<OutcomeLabel, Counter>, outcome: &'static str, a: u64, b: u64| {
            add_delta(f, &OutcomeLabel { outcome }, a, b)
        };
        let kind = |f: &Family<KindLabel, Counter>, kind: &'static str, a: u64, b: u64| {
            add_delta(f, &KindLabel { kind }, a, b)
        };
        let lost = |reason: &'static str, a: u64, b: u64| {
            add_delta(&self.requests_lost, &ReasonLabel { reason }, a, b)
        };

        self.stream.publish(&now.stream, &before.stream);
        // Segments that reached no stream, counted by the flow table.
        let seg = &self.stream.segments;
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
        self.h2.publish(g, f);
        use StreamOutcome as O;
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
