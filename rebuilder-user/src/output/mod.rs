//! Where rebuilt requests go: byte-exact replay to an upstream (the WAF) and/or JSON lines.
//!
//! Worker threads (plain std threads) hand each request to [`Outputs::submit`]; every configured
//! output has its own bounded queue (in requests and in bytes) and its own consumers, so a slow
//! output never holds up another, and in `Live` mode never holds up capture (DESIGN §4). Every
//! request an output does not deliver is counted in `rebuilder_output_dropped_total` with its
//! output and reason.
//!
//! Metrics (registered by [`Outputs::start`] under these full names):
//! - `rebuilder_output_dropped_total{output,reason}`: reason is `queue_full`, `gap`,
//!   `upstream_error`, `shutdown` or `write_error`;
//! - `rebuilder_output_queue_requests{output}`, `rebuilder_output_queue_bytes{output}`;
//! - `rebuilder_upstream_replayed_total`, `rebuilder_upstream_errors_total{kind}` (one per
//!   `upstream_error` drop, kinds in [`ErrorKind`]), `rebuilder_upstream_stale_retries_total`,
//!   `rebuilder_upstream_latency_seconds` (histogram), `rebuilder_upstream_connections_opened_total`,
//!   `rebuilder_upstream_responses_total{class}` (`1xx`..`5xx`, `other`);
//! - `rebuilder_jsonl_written_total` (counted once flushed), `rebuilder_jsonl_write_errors_total`.
//!
//! Layout: this module holds the outputs' shared vocabulary (modes, drop reasons, errors,
//! settings, reports); `fanout` is [`Outputs`] (start, submit, drain); `queue` the bounded
//! queue in front of each output; `metrics` their counters; `upstream` and `jsonl` the two
//! outputs; `headers` what the upstream output may add to a request. Depends on the request
//! records, `http1` (response framing) and `status` (reachability); nothing upstream of them.

mod fanout;
pub mod headers;
pub mod jsonl;
mod metrics;
mod queue;
#[cfg(test)]
pub(crate) mod tests;
pub mod upstream;

pub use fanout::Outputs;
pub use headers::{HeaderAdds, DEFAULT_CLIENT_IP_HEADER, DEFAULT_VNI_HEADER};
pub use jsonl::JsonlConfig;
pub use metrics::ErrorKind;
pub use upstream::{UpstreamAddr, UpstreamConfig, UpstreamProtocol};

pub const DEFAULT_QUEUE_REQUESTS: usize = 10_000;
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Live or offline: how a full queue is handled, and how often an idle JSON-lines writer
/// looks for lines (`jsonl::poll_interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live capture: a full queue drops the newest request (counted); the caller never waits.
    Live,
    /// Pcap replay: the caller waits for room (backpressure); nothing is dropped for lack of
    /// room.
    Offline,
}

/// Why an output did not deliver a request (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    QueueFull = 0,
    /// Cut by a hole in the stream: never replayed upstream.
    Gap,
    /// The replay failed; `rebuilder_upstream_errors_total` says how.
    UpstreamError,
    /// Submitted after drain began, or still queued or in flight at the drain deadline.
    Shutdown,
    /// The JSONL destination refused the write.
    WriteError,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Gap,
        DropReason::UpstreamError,
        DropReason::Shutdown,
        DropReason::WriteError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Gap => "gap",
            DropReason::UpstreamError => "upstream_error",
            DropReason::Shutdown => "shutdown",
            DropReason::WriteError => "write_error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "upstream URL {url:?}: https is not supported; replay goes to the WAF in plain HTTP (use http://HOST:PORT)"
    )]
    Https { url: String },
    #[error("upstream URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{what} header name {name:?} is not a valid HTTP header name")]
    InvalidHeaderName { what: &'static str, name: String },
    #[error("{what} must be greater than zero")]
    Zero { what: &'static str },
    #[error("cannot open the JSONL output {}: {source}", .path.display())]
    JsonlOpen {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the JSONL writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputsConfig {
    pub upstream: Option<UpstreamConfig>,
    pub jsonl: Option<JsonlConfig>,
}

/// What one output left undone when [`Outputs::drain`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputDrain {
    /// `upstream` or `jsonl`.
    pub output: &'static str,
    /// Every queued request was handled before the deadline.
    pub finished: bool,
    /// Requests dropped for `shutdown` since the drain began: still queued or in flight at the
    /// deadline, or submitted after the drain began.
    pub abandoned: u64,
}

/// What one output did over the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputTotals {
    /// `upstream` or `jsonl`.
    pub output: &'static str,
    /// Requests replayed (upstream) or written (jsonl).
    pub delivered: u64,
    /// Requests not delivered, by reason (only reasons that happened).
    pub dropped: Vec<(&'static str, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub output: &'static str,
    pub requests: usize,
    pub bytes: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub outputs: Vec<OutputDrain>,
}

impl DrainReport {
    pub fn finished(&self) -> bool {
        self.outputs.iter().all(|o| o.finished)
    }

    pub fn abandoned(&self) -> u64 {
        self.outputs.iter().map(|o| o.abandoned).sum()
    }
}
