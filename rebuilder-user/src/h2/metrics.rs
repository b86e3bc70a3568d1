//! The HTTP/2 room's metrics: client frames by type, streams by outcome, connections by how
//! they started or why decoding stopped, and DATA that belonged to no open stream.
//!
//! Registered here, by the room whose counts they are, so the exporter (`crate::metrics`)
//! depends on nothing upstream of it. Reads [`H2Stats`]; the worker publishes them (it sums its
//! connections' counts). Requests lost or flagged because of HTTP/2 are counted in the worker's
//! request families, which span HTTP/1.x too.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{H2Stats, CONNECTION_OUTCOMES, KINDS, STREAM_OUTCOMES};
use crate::metrics::{add_delta, KindLabel, OutcomeLabel};

pub struct H2Metrics {
    frames: Family<KindLabel, Counter>,
    streams: Family<OutcomeLabel, Counter>,
    connections: Family<OutcomeLabel, Counter>,
    unattached_data_bytes: Counter,
}

impl H2Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            frames: Family::default(),
            streams: Family::default(),
            connections: Family::default(),
            unattached_data_bytes: Counter::default(),
        };
        // Every stream outcome exists from the start, at zero (alerts see 0, not an absent
        // series).
        for outcome in STREAM_OUTCOMES {
            let _ = m.streams.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        let r = registry;
        r.register(
            "rebuilder_h2_frames",
            "HTTP/2 frames clients sent, by type",
            m.frames.clone(),
        );
        r.register(
            "rebuilder_h2_streams",
            "HTTP/2 streams by outcome (rebuilt; reset by the client; incomplete at the end; \
             gap; undecodable: HPACK state unknown; malformed; refused: too many open; \
             head_too_large)",
            m.streams.clone(),
        );
        r.register(
            "rebuilder_h2_connections",
            "HTTP/2 client connections by how they started (prior_knowledge, upgrade, pickup) \
             and why decoding stopped (hpack_error, protocol_error, gap)",
            m.connections.clone(),
        );
        r.register(
            "rebuilder_h2_unattached_data_bytes",
            "HTTP/2 DATA bytes on no open stream (refused, malformed, reset, ended or never \
             opened), dropped",
            m.unattached_data_bytes.clone(),
        );
        m
    }

    /// Publishes `g - f` (now, before) of the connections' counts.
    pub fn publish(&self, g: &H2Stats, f: &H2Stats) {
        for (i, k) in KINDS.iter().enumerate() {
            let kind = KindLabel { kind: k.as_str() };
            add_delta(&self.frames, &kind, g.frames[i], f.frames[i]);
        }
        for (i, o) in STREAM_OUTCOMES.iter().enumerate() {
            let outcome = OutcomeLabel {
                outcome: o.as_str(),
            };
            add_delta(&self.streams, &outcome, g.streams[i], f.streams[i]);
        }
        for (i, o) in CONNECTION_OUTCOMES.iter().enumerate() {
            let outcome = OutcomeLabel { outcome: o };
            add_delta(
                &self.connections,
                &outcome,
                g.connections[i],
                f.connections[i],
            );
        }
        self.unattached_data_bytes
            .inc_by(g.unattached_data_bytes - f.unattached_data_bytes);
    }
}
