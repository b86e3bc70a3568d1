//! The exporter's side of the metrics: the label sets the rooms share, and how a room publishes
//! the difference between two readings of its plain-integer counts.
//!
//! Depends on no room of the pipeline, on purpose: data flows one way (DESIGN §3), and the
//! exporter only reads. Each room registers its own counters, under names, help text and labels
//! it owns, in the one `Registry` the pipeline passes along at start (`capture::decode_metrics`,
//! `dispatch`, `reassembly::metrics`, `h2::metrics`, `worker::metrics`, `filter`,
//! `output::metrics`, `capture::xdp`); `status` serves that registry, in registration order.
//!
//! The hot path counts in plain integers (`DecodeStats`, `WorkerStats`); each thread publishes
//! the difference since its last publication every few hundred milliseconds. So a packet costs
//! no atomic operation, and the registry still sees every count.

use std::hash::Hash;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

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

/// Adds `now - before` to the series `label` of `family`, and only when the count grew: a
/// series that was not created at start appears once it has counted something.
pub fn add_delta<L: Clone + Hash + Eq>(
    family: &Family<L, Counter>,
    label: &L,
    now: u64,
    before: u64,
) {
    if now > before {
        family.get_or_create(label).inc_by(now - before);
    }
}
