//! Prometheus metrics of the outputs. Registered under full `rebuilder_` names into the registry
//! the caller passes (so that registry must not add a prefix of its own). Per-label counters are
//! resolved once at start, so the hot path is one atomic add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::DropReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutputLabels {
    pub output: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub output: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProbeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClassLabels {
    pub class: &'static str,
}

/// Shared by every output, told apart by the `output` label.
#[derive(Clone)]
pub(crate) struct OutputMetrics {
    dropped: Family<DropLabels, Counter>,
    queue_requests: Family<OutputLabels, Gauge>,
    queue_bytes: Family<OutputLabels, Gauge>,
}

impl OutputMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            dropped: Family::default(),
            queue_requests: Family::default(),
            queue_bytes: Family::default(),
        };
        registry.register(
            "rebuilder_output_dropped",
            "Requests an output did not deliver, by output and reason",
            m.dropped.clone(),
        );
        registry.register(
            "rebuilder_output_queue_requests",
            "Requests waiting in an output's queue",
            m.queue_requests.clone(),
        );
        registry.register(
            "rebuilder_output_queue_bytes",
            "Bytes of the requests waiting in an output's queue",
            m.queue_bytes.clone(),
        );
        m
    }

    pub(crate) fn dropped(&self, output: &'static str, reason: DropReason) -> Counter {
        self.dropped.get_or_create_owned(&DropLabels {
            output,
            reason: reason.as_str(),
        })
    }

    pub(crate) fn queue_requests(&self, output: &'static str) -> Gauge {
        self.queue_requests
            .get_or_create_owned(&OutputLabels { output })
    }

    pub(crate) fn queue_bytes(&self, output: &'static str) -> Gauge {
        self.queue_bytes
            .get_or_create_owned(&OutputLabels { output })
    }
}

/// Why a replay failed; one label value of `rebuilder_upstream_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Connection refused, unreachable, name resolution failed.
    Connect = 0,
    ConnectTimeout,
    Write,
    ResponseTimeout,
    InvalidResponse,
    /// The connection closed or was reset before the response was complete.
    Reset,
    /// Not tried: the upstream failed to accept connections and is in its reconnect backoff.
    Unreachable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::ConnectTimeout,
        ErrorKind::Write,
        ErrorKind::ResponseTimeout,
        ErrorKind::InvalidResponse,
        ErrorKind::Reset,
        ErrorKind::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Write => "write",
            ErrorKind::ResponseTimeout => "response_timeout",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Reset => "reset",
            ErrorKind::Unreachable => "unreachable",
        }
    }
}

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    pub replayed: Counter,
    pub errors: [Counter; ErrorKind::ALL.len()],
    pub stale_retries: Counter,
    pub latency: Histogram,
    pub connections_opened: Counter,
    /// Connect attempts to an upstream marked unreachable: `connected` ended the outage.
    pub probes_connected: Counter,
    pub probes_failed: Counter,
    responses: [Counter; STATUS_CLASSES.len()],
}

impl UpstreamMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let errors: Family<KindLabels, Counter> = Family::default();
        let responses: Family<ClassLabels, Counter> = Family::default();
        let probes: Family<ProbeLabels, Counter> = Family::default();
        let m = Self {
            replayed: Counter::default(),
            errors: ErrorKind::ALL
                .map(|k| errors.get_or_create_owned(&KindLabels { kind: k.as_str() })),
            stale_retries: Counter::default(),
            // 0.5 ms .. ~16 s: loopback WAFs answer in well under a millisecond, a slow one in
            // seconds, and the response timeout caps it.
            latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            connections_opened: Counter::default(),
            probes_connected: probes.get_or_create_owned(&ProbeLabels {
                outcome: "connected",
            }),
            probes_failed: probes.get_or_create_owned(&ProbeLabels { outcome: "failed" }),
            responses: STATUS_CLASSES
                .map(|c| responses.get_or_create_owned(&ClassLabels { class: c })),
        };
        registry.register(
            "rebuilder_upstream_replayed",
            "Requests replayed to the upstream and answered",
            m.replayed.clone(),
        );
        registry.register(
            "rebuilder_upstream_errors",
            "Replays that failed, by kind (each one is also a drop with reason upstream_error)",
            errors,
        );
        registry.register(
            "rebuilder_upstream_stale_retries",
            "Requests resent on a fresh connection because the upstream had closed an idle keep-alive one",
            m.stale_retries.clone(),
        );
        registry.register(
            "rebuilder_upstream_latency_seconds",
            "Time from writing a request to the end of its response",
            m.latency.clone(),
        );
        registry.register(
            "rebuilder_upstream_connections_opened",
            "TCP connections opened to the upstream",
            m.connections_opened.clone(),
        );
        registry.register(
            "rebuilder_upstream_probes",
            "Connect attempts to an upstream marked unreachable, a few a second while it is (they carry no request)",
            probes,
        );
        registry.register(
            "rebuilder_upstream_responses",
            "Upstream responses by status class",
            responses,
        );
        m
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> &Counter {
        &self.errors[kind as usize]
    }

    pub(crate) fn response(&self, status: u16) -> &Counter {
        &self.responses[status_class_index(status)]
    }
}

#[derive(Clone)]
pub(crate) struct JsonlMetrics {
    pub written: Counter,
    pub write_errors: Counter,
}

impl JsonlMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            written: Counter::default(),
            write_errors: Counter::default(),
        };
        registry.register(
            "rebuilder_jsonl_written",
            "Requests written as JSON lines",
            m.written.clone(),
        );
        registry.register(
            "rebuilder_jsonl_write_errors",
            "Failed writes or flushes of the JSON lines output",
            m.write_errors.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let got: Vec<&str> = [
            100, 101, 199, 200, 204, 302, 404, 499, 500, 599, 0, 99, 600, 999,
        ]
        .iter()
        .map(|s| STATUS_CLASSES[status_class_index(*s)])
        .collect();
        assert_eq!(
            got,
            [
                "1xx", "1xx", "1xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "other",
                "other", "other", "other"
            ]
        );
    }

    #[test]
    fn kinds_index_their_own_slot() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
