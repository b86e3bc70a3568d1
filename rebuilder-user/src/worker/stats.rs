//! The counts one worker keeps, as plain integers (no atomics on the hot path): its streams',
//! framers' and PROXY headers' counts and its own flow and request counts. Published as metrics
//! by `metrics`, summed across workers for the end-of-run summary.

use crate::http::HttpStats;
use crate::proxy::ProxyStats;
use crate::reassembly::StreamStats;

/// Counts kept by one worker, published as metrics by the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub stream: StreamStats,
    pub http: HttpStats,
    pub proxy: ProxyStats,
    pub flows_created: u64,
    pub flows_closed: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    /// Requests in progress (head or body partly received) in flows evicted for the budget.
    pub requests_evicted: u64,
    /// Segments of directions that carry no requests (server side, not HTTP, upgraded).
    pub segments_ignored: u64,
    /// Segments that reached a closed flow (late duplicates, retransmitted FINs).
    pub segments_after_close: u64,
    /// Pure ACKs (and lone FIN/RST) of flows never seen: they carry nothing to rebuild.
    pub segments_without_flow: u64,
    /// SYNs with a new ISN on a 4-tuple whose connection was still live: followed as a second
    /// connection beside it rather than ending it.
    pub second_connections: u64,
    pub requests: u64,
    /// Gauges, as of the last update.
    pub flows_open: u64,
    pub buffered_bytes: u64,
}

impl WorkerStats {
    pub fn add(&mut self, o: &WorkerStats) {
        self.stream.add(&o.stream);
        add_http(&mut self.http, &o.http);
        self.proxy.add(&o.proxy);
        self.flows_created += o.flows_created;
        self.flows_closed += o.flows_closed;
        self.flows_expired += o.flows_expired;
        self.flows_evicted += o.flows_evicted;
        self.requests_evicted += o.requests_evicted;
        self.segments_ignored += o.segments_ignored;
        self.segments_after_close += o.segments_after_close;
        self.segments_without_flow += o.segments_without_flow;
        self.second_connections += o.second_connections;
        self.requests += o.requests;
        self.flows_open += o.flows_open;
        self.buffered_bytes += o.buffered_bytes;
    }
}

fn add_http(a: &mut HttpStats, b: &HttpStats) {
    a.requests += b.requests;
    a.malformed_replayed += b.malformed_replayed;
    a.body_over_limit += b.body_over_limit;
    a.expect_continue += b.expect_continue;
    a.dropped_gap += b.dropped_gap;
    a.dropped_head_too_large += b.dropped_head_too_large;
    a.dropped_too_many_headers += b.dropped_too_many_headers;
    a.dropped_invalid += b.dropped_invalid;
    a.dropped_incomplete += b.dropped_incomplete;
    a.resync_skipped_bytes += b.resync_skipped_bytes;
    a.h2_preface += b.h2_preface;
    a.upgrades += b.upgrades;
    a.connects += b.connects;
    a.response_streams += b.response_streams;
    a.non_http_streams += b.non_http_streams;
    a.h2.add(&b.h2);
}
