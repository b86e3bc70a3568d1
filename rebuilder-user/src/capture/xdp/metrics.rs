//! The XDP input's metrics ([`XdpMetrics`]): the program's per-CPU counters, the reader's
//! records, the attachment, and the NIC driver's XDP statistics, each published as deltas.
//!
//! Registered by the XDP input itself (the exporter only reads); it reads the stats the reader
//! and the capture thread hand it and touches nothing else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rebuilder_ebpf::Counter;

use super::attach::{AttachMode, Attached};
use super::record::{ReaderStats, RECORD_ERRORS};
use crate::metrics::OutcomeLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttachLabels {
    pub iface: String,
    pub mode: &'static str,
    pub requested: &'static str,
    /// Why not driver mode, when `auto` fell back; empty otherwise.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabels {
    pub iface: String,
    /// The driver's statistic name without its queue (`ethtool -S`), e.g. `xdp_drop`.
    pub counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceLabel {
    pub iface: String,
}

/// Metrics of the XDP input.
pub struct XdpMetrics {
    /// Kernel counters that are packet outcomes (each packet counts in exactly one).
    pub packets: Family<OutcomeLabel, PromCounter>,
    pub seen: PromCounter,
    pub truncated: PromCounter,
    pub pushed_bytes: PromCounter,
    pub records: PromCounter,
    pub record_errors: Family<ErrorLabel, PromCounter>,
    pub attached: Family<AttachLabels, Gauge>,
    /// The NIC driver's XDP statistics ([`crate::capture::nic`]), summed over queues.
    pub driver_packets: Family<DriverLabels, PromCounter>,
    /// Packets the driver took into its XDP path that the program never saw.
    pub driver_dropped: Family<IfaceLabel, PromCounter>,
}

impl XdpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            packets: Family::default(),
            seen: PromCounter::default(),
            truncated: PromCounter::default(),
            pushed_bytes: PromCounter::default(),
            records: PromCounter::default(),
            record_errors: Family::default(),
            attached: Family::default(),
            driver_packets: Family::default(),
            driver_dropped: Family::default(),
        };
        // Every label exists from the start, so a dashboard sees zeros, not gaps.
        for c in Counter::ALL.into_iter().filter(|c| c.is_outcome()) {
            let _ = m.packets.get_or_create(&OutcomeLabel { outcome: c.name() });
        }
        for error in RECORD_ERRORS {
            let _ = m.record_errors.get_or_create(&ErrorLabel { error });
        }
        let r = registry;
        r.register(
            "rebuilder_xdp_packets",
            "Packets the XDP program handled, by outcome (kernel counters; the outcomes add up \
             to rebuilder_xdp_seen_packets_total; ring_full is a segment lost for lack of ring space)",
            m.packets.clone(),
        );
        r.register(
            "rebuilder_xdp_seen_packets",
            "Packets the XDP program saw (kernel counter)",
            m.seen.clone(),
        );
        r.register(
            "rebuilder_xdp_truncated_segments",
            Counter::Truncated.help(),
            m.truncated.clone(),
        );
        r.register(
            "rebuilder_xdp_pushed_bytes",
            Counter::PushedBytes.help(),
            m.pushed_bytes.clone(),
        );
        r.register(
            "rebuilder_xdp_records",
            "Records read from the XDP ring buffer",
            m.records.clone(),
        );
        r.register(
            "rebuilder_xdp_record_errors",
            "XDP ring records that could not be read, skipped (counted as packets dropped, \
             outcome malformed)",
            m.record_errors.clone(),
        );
        r.register(
            "rebuilder_xdp_driver_packets",
            "The NIC driver's own XDP statistics (ethtool -S), summed over queues, by the \
             driver's name for them without the queue (ENA: xdp_drop, xdp_pass, ...)",
            m.driver_packets.clone(),
        );
        r.register(
            "rebuilder_xdp_driver_dropped_packets",
            "Packets the driver took into its XDP path that the program never saw, in driver \
             mode (ENA drops frames that do not fit one receive buffer): the driver's count \
             beyond the program's",
            m.driver_dropped.clone(),
        );
        r.register(
            "rebuilder_xdp_attached",
            "1 for the interface and mode the XDP program is attached in; reason says why not \
             driver mode when auto fell back to generic",
            m.attached.clone(),
        );
        m
    }

    /// Publishes `now - before` of the driver's XDP statistics; a statistic that went back
    /// (the driver reset its queues) counts from zero again.
    pub fn publish_driver(
        &self,
        iface: &str,
        now: &std::collections::BTreeMap<String, u64>,
        before: &std::collections::BTreeMap<String, u64>,
    ) {
        for (counter, &v) in now {
            let b = before.get(counter).copied().unwrap_or(0);
            let d = if v >= b { v - b } else { v };
            let c = self.driver_packets.get_or_create(&DriverLabels {
                iface: iface.to_string(),
                counter: counter.clone(),
            });
            c.inc_by(d);
        }
    }

    pub fn driver_dropped(&self, iface: &str, n: u64) {
        self.driver_dropped
            .get_or_create(&IfaceLabel {
                iface: iface.to_string(),
            })
            .inc_by(n);
    }

    pub fn set_attached(&self, a: &Attached) {
        if a.mode == AttachMode::Driver {
            // At zero from the start: the driver's loss is measured in driver mode only.
            self.driver_dropped(&a.iface, 0);
        }
        self.attached
            .get_or_create(&AttachLabels {
                iface: a.iface.clone(),
                mode: a.mode.as_str(),
                requested: a.requested.as_str(),
                reason: a.fallback.clone().unwrap_or_default(),
            })
            .set(1);
    }

    /// Publishes `now - before` of the kernel counters.
    pub fn publish_kernel(&self, now: &[u64; Counter::COUNT], before: &[u64; Counter::COUNT]) {
        for c in Counter::ALL {
            let i = c.index() as usize;
            let (Some(a), Some(b)) = (now.get(i), before.get(i)) else {
                continue;
            };
            let d = a.saturating_sub(*b);
            if d == 0 {
                continue;
            }
            match c {
                Counter::Seen => self.seen.inc_by(d),
                Counter::Truncated => self.truncated.inc_by(d),
                Counter::PushedBytes => self.pushed_bytes.inc_by(d),
                _ => self
                    .packets
                    .get_or_create(&OutcomeLabel { outcome: c.name() })
                    .inc_by(d),
            };
        }
    }

    /// Publishes `now - before` of the reader's counts.
    pub fn publish_reader(&self, now: &ReaderStats, before: &ReaderStats) {
        self.records
            .inc_by(now.records.saturating_sub(before.records));
        for ((error, a), b) in RECORD_ERRORS
            .iter()
            .zip(&now.record_errors)
            .zip(&before.record_errors)
        {
            if a > b {
                self.record_errors
                    .get_or_create(&ErrorLabel { error })
                    .inc_by(a - b);
            }
        }
    }
}
