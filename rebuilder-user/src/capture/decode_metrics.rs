//! The capture room's metrics: packets by source and outcome (what `decode` made of them),
//! capture file records, and the datagrams the kernel dropped on the VXLAN sockets.
//!
//! Registered here, by the room whose counts they are, so the exporter (`crate::metrics`)
//! depends on nothing upstream of it. Reads `DecodeStats` (this room's plain-integer counts);
//! touches nothing but the counters it registers.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::decode::DecodeStats;
use crate::metrics::{OutcomeLabel, PacketLabels};

/// Counters of the capture threads (pcap, udp, xdp: told apart by the `source` label).
pub struct CaptureMetrics {
    pub packets: Family<PacketLabels, Counter>,
    pub capture_records: Family<OutcomeLabel, Counter>,
    pub udp_kernel_drops: Counter,
}

impl CaptureMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            packets: Family::default(),
            capture_records: Family::default(),
            udp_kernel_drops: Counter::default(),
        };
        registry.register(
            "rebuilder_packets",
            "Packets by capture source and outcome (segment, or the reason for dropping it)",
            m.packets.clone(),
        );
        registry.register(
            "rebuilder_capture_records",
            "Capture file records by outcome",
            m.capture_records.clone(),
        );
        registry.register(
            "rebuilder_udp_kernel_drops",
            "Datagrams the kernel dropped on the VXLAN sockets for lack of buffer room",
            m.udp_kernel_drops.clone(),
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
}
