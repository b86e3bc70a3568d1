//! The counters the pipeline's threads publish: the [`PipelineMetrics`] aggregate of the rooms
//! before the outputs (each registered by its own room), and the helpers that turn a thread's
//! running totals into counter increments.
//!
//! Only reads the capture, dispatch and worker stats it is given: publishing never changes
//! what a thread counts.

use prometheus_client::registry::Registry;

use crate::capture::decode::DecodeStats;
use crate::capture::decode_metrics::CaptureMetrics;
use crate::capture::pcap::PcapStats;
use crate::dispatch::{DispatchMetrics, Dispatcher};
use crate::metrics::{OutcomeLabel, ReasonLabel};
use crate::worker::metrics::WorkerMetrics;

/// The counters before the outputs, each room's registered by that room; the field order is
/// the registration order, which is the order of `/metrics`.
pub(super) struct PipelineMetrics {
    pub(super) capture: CaptureMetrics,
    pub(super) dispatch: DispatchMetrics,
    pub(super) worker: WorkerMetrics,
    pub(super) requests_filtered: prometheus_client::metrics::family::Family<
        ReasonLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl PipelineMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            capture: CaptureMetrics::register(registry),
            dispatch: DispatchMetrics::register(registry),
            worker: WorkerMetrics::register(registry),
            requests_filtered: crate::filter::register_metrics(registry),
        }
    }
}

/// What of one dispatcher's counts the metrics already hold, so that each publication adds
/// only what is new (every capture thread has its own dispatcher).
#[derive(Default)]
pub(super) struct DispatchPublished {
    dispatched: u64,
    dropped: u64,
}

impl DispatchPublished {
    /// Adds the segments dispatched and dropped (worker queue full) since the last call.
    pub(super) fn publish(&mut self, m: &DispatchMetrics, disp: &Dispatcher) {
        m.segments_dispatched
            .inc_by(disp.dispatched - self.dispatched);
        self.dispatched = disp.dispatched;
        if disp.dropped_queue_full > self.dropped {
            m.segments_dropped
                .get_or_create(&ReasonLabel {
                    reason: "worker_queue_full",
                })
                .inc_by(disp.dropped_queue_full - self.dropped);
        }
        self.dropped = disp.dropped_queue_full;
    }
}

/// Adds a file reader's decode outcomes and record counts since the last call.
pub(super) fn publish_pcap(
    m: &PipelineMetrics,
    decode: &DecodeStats,
    before: &DecodeStats,
    stats: &PcapStats,
    stats_before: &PcapStats,
) {
    m.capture.publish_decode("pcap", decode, before);
    let rec = |outcome: &'static str, a: u64, b: u64| {
        if a > b {
            m.capture
                .capture_records
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(a - b);
        }
    };
    rec("read", stats.records, stats_before.records);
    rec("corrupt", stats.corrupt, stats_before.corrupt);
    rec(
        "unsupported_link",
        stats.unsupported_link,
        stats_before.unsupported_link,
    );
}
