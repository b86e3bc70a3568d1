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

pub mod headers;
pub mod jsonl;
mod metrics;
mod queue;
pub mod upstream;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

pub use headers::{HeaderAdds, DEFAULT_CLIENT_IP_HEADER, DEFAULT_VNI_HEADER};
pub use jsonl::JsonlConfig;
pub use metrics::ErrorKind;
pub use upstream::{UpstreamAddr, UpstreamConfig, UpstreamProtocol};

use crate::request::RebuiltRequest;
use crate::status::Health;
use metrics::{JsonlMetrics, OutputMetrics, UpstreamMetrics};
use queue::Queue;

pub const DEFAULT_QUEUE_REQUESTS: usize = 10_000;
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// How a full queue is handled.
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

enum Runner {
    Tasks(Vec<JoinHandle<()>>),
    Thread {
        done: tokio::sync::oneshot::Receiver<()>,
        abandon: Arc<AtomicBool>,
    },
    Drained,
}

struct Slot {
    queue: Arc<Queue>,
    /// Requests this output delivered (replayed, or written).
    delivered: prometheus_client::metrics::counter::Counter,
    /// Requests cut by a gap are not whole requests: never replayed.
    skip_gaps: bool,
    runner: Mutex<Runner>,
}

/// Fan-out to every configured output. A cheap handle: clone it into every worker.
#[derive(Clone)]
pub struct Outputs {
    slots: Arc<Slots>,
}

struct Slots(Vec<Slot>);

impl std::ops::Deref for Slots {
    type Target = Vec<Slot>;
    fn deref(&self) -> &Vec<Slot> {
        &self.0
    }
}

impl Drop for Slots {
    /// The last handle is gone without a drain: let the consumers finish what is queued and
    /// end, instead of waiting forever on queues nobody can fill.
    fn drop(&mut self) {
        for s in &self.0 {
            s.queue.close();
        }
    }
}

impl Outputs {
    /// Validates the whole configuration, registers the metrics and starts every output. Nothing
    /// is started if anything is invalid. With no output configured, submitted requests go
    /// nowhere (useful to measure the pipeline alone).
    pub fn start(
        cfg: &OutputsConfig,
        mode: Mode,
        registry: &mut Registry,
        health: Arc<Health>,
        rt: &tokio::runtime::Handle,
    ) -> Result<Self, OutputError> {
        let upstream_addr = cfg
            .upstream
            .as_ref()
            .map(UpstreamConfig::validate)
            .transpose()?;
        if let Some(j) = &cfg.jsonl {
            j.validate()?;
        }
        let jsonl_out = cfg.jsonl.as_ref().map(JsonlConfig::open).transpose()?;

        let metrics = OutputMetrics::register(registry);
        let mut slots = Vec::new();
        if let (Some(ucfg), Some(addr)) = (&cfg.upstream, upstream_addr) {
            let queue = Queue::new(
                "upstream",
                mode,
                ucfg.queue_requests,
                ucfg.queue_bytes,
                &metrics,
            );
            let um = UpstreamMetrics::register(registry);
            let delivered = um.replayed.clone();
            let tasks =
                upstream::spawn(ucfg, addr, Arc::clone(&queue), Arc::clone(&health), um, rt);
            slots.push(Slot {
                queue,
                delivered,
                skip_gaps: true,
                runner: Mutex::new(Runner::Tasks(tasks)),
            });
        }
        if let (Some(jcfg), Some(out)) = (&cfg.jsonl, jsonl_out) {
            let queue = Queue::new(
                "jsonl",
                mode,
                jcfg.queue_requests,
                jcfg.queue_bytes,
                &metrics,
            );
            let jm = JsonlMetrics::register(registry);
            let delivered = jm.written.clone();
            let abandon = Arc::new(AtomicBool::new(false));
            let (done_tx, done) = tokio::sync::oneshot::channel();
            let (q, a, name) = (
                Arc::clone(&queue),
                Arc::clone(&abandon),
                jcfg.path.display().to_string(),
            );
            let spawned = std::thread::Builder::new()
                .name("rebuilder-jsonl".into())
                .spawn(move || {
                    jsonl::run(q, out, jm, a, name);
                    let _ = done_tx.send(());
                });
            if let Err(e) = spawned {
                // Do not leave the upstream pool running behind a failed start.
                for s in &slots {
                    s.queue.close();
                }
                return Err(OutputError::Thread(e));
            }
            slots.push(Slot {
                queue,
                delivered,
                skip_gaps: false,
                runner: Mutex::new(Runner::Thread { done, abandon }),
            });
        }
        Ok(Self {
            slots: Arc::new(Slots(slots)),
        })
    }

    /// Hands a request to every output. Called from worker threads (sync, outside the runtime).
    /// Never blocks in Live mode; in Offline mode waits for room in each queue in turn.
    pub fn submit(&self, req: Arc<RebuiltRequest>) {
        for s in self.slots.iter() {
            if s.skip_gaps && req.flags.gap {
                s.queue.count_drop(DropReason::Gap);
                continue;
            }
            s.queue.push(Arc::clone(&req));
        }
    }

    /// What each output delivered and dropped so far: for the end-of-run summary.
    pub fn totals(&self) -> Vec<OutputTotals> {
        self.slots
            .iter()
            .map(|s| OutputTotals {
                output: s.queue.name,
                delivered: s.delivered.get(),
                dropped: DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), s.queue.dropped(*r)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            })
            .collect()
    }

    /// What waits in each output's queue now (requests, bytes): for progress reports.
    pub fn queue_depths(&self) -> Vec<QueueDepth> {
        self.slots
            .iter()
            .map(|s| QueueDepth {
                output: s.queue.name,
                requests: s.queue.len(),
                bytes: s.queue.bytes(),
            })
            .collect()
    }

    /// Stops accepting, waits until every queued request has been handled or `deadline` has
    /// passed, and reports what was left (counted as dropped for `shutdown`). The JSONL output
    /// is flushed. Meant to be called once; a second call finds nothing left to wait for.
    pub async fn drain(&self, deadline: Duration) -> DrainReport {
        let until = tokio::time::Instant::now() + deadline;
        let before: Vec<u64> = self
            .slots
            .iter()
            .map(|s| s.queue.dropped(DropReason::Shutdown))
            .collect();
        for s in self.slots.iter() {
            s.queue.close();
        }
        let mut report = DrainReport::default();
        for (s, before) in self.slots.iter().zip(before) {
            let runner = {
                let mut r = s.runner.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut *r, Runner::Drained)
            };
            let finished = match runner {
                Runner::Tasks(handles) => {
                    let mut all = true;
                    for mut h in handles {
                        if tokio::time::timeout_at(until, &mut h).await.is_err() {
                            // Aborting drops the task's request guard, which counts it.
                            h.abort();
                            let _ = h.await;
                            all = false;
                        }
                    }
                    all
                }
                Runner::Thread { done, abandon } => {
                    match tokio::time::timeout_at(until, done).await {
                        Ok(_) => true,
                        Err(_) => {
                            abandon.store(true, std::sync::atomic::Ordering::Relaxed);
                            false
                        }
                    }
                }
                Runner::Drained => true,
            };
            while let Some(left) = s.queue.try_pop() {
                left.drop_as(DropReason::Shutdown);
            }
            let abandoned = s.queue.dropped(DropReason::Shutdown).saturating_sub(before);
            if !finished || abandoned > 0 {
                tracing::warn!(
                    output = s.queue.name,
                    abandoned,
                    "output not fully drained before the deadline"
                );
            }
            report.outputs.push(OutputDrain {
                output: s.queue.name,
                finished,
                abandoned,
            });
        }
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::request::RequestFlags;
    use bytes::Bytes;

    /// A request from `raw` (a whole request whose head ends at the first blank line).
    pub(crate) fn request(raw: &[u8]) -> Arc<RebuiltRequest> {
        request_from(raw, "10.1.2.3:40000", 77)
    }

    pub(crate) fn request_from(raw: &[u8], client: &str, vni: u32) -> Arc<RebuiltRequest> {
        let head_len = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |p| p + 4);
        let sp1 = raw.iter().position(|&c| c == b' ').unwrap_or(0);
        let sp2 = raw[sp1 + 1..]
            .iter()
            .position(|&c| c == b' ')
            .map_or(sp1 + 1, |p| sp1 + 1 + p);
        Arc::new(RebuiltRequest {
            first_ts: 1,
            last_ts: 2,
            vni,
            client: client.parse().unwrap(),
            server: "10.9.9.9:80".parse().unwrap(),
            raw: Bytes::copy_from_slice(raw),
            head_len,
            method: 0..sp1,
            target: sp1 + 1..sp2,
            host: None,
            version_minor: 1,
            body_len: (raw.len() - head_len) as u64,
            flags: RequestFlags::default(),
            proxy: None,
            h2: None,
        })
    }

    #[test]
    fn config_errors_are_clear() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let start = |cfg: OutputsConfig| {
            Outputs::start(
                &cfg,
                Mode::Live,
                &mut Registry::default(),
                Health::new(),
                rt.handle(),
            )
            .err()
            .unwrap()
        };
        let up = |u: &str| OutputsConfig {
            upstream: Some(UpstreamConfig::new(u)),
            jsonl: None,
        };
        let e = start(up("https://waf:443"));
        assert!(matches!(e, OutputError::Https { .. }));
        assert!(e.to_string().contains("https is not supported"), "{e}");
        for bad in [
            "http://waf:80/api",
            "http://waf:80?x",
            "ftp://waf",
            "waf:80",
            "http://:80",
            "http://waf:0",
            "http://waf:x",
            "http://u@waf",
            "http://::1:80",
            "http://[::1",
        ] {
            assert!(
                matches!(start(up(bad)), OutputError::InvalidUrl { .. }),
                "{bad}"
            );
        }
        let mut c = UpstreamConfig::new("http://waf");
        c.pool_size = 0;
        assert!(matches!(
            start(OutputsConfig {
                upstream: Some(c),
                jsonl: None
            }),
            OutputError::Zero {
                what: "upstream pool_size"
            }
        ));
        let mut c = UpstreamConfig::new("http://waf");
        c.vni_header = Some("Bad Name".into());
        assert!(matches!(
            start(OutputsConfig {
                upstream: Some(c),
                jsonl: None
            }),
            OutputError::InvalidHeaderName { .. }
        ));
        let e = start(OutputsConfig {
            upstream: None,
            jsonl: Some(JsonlConfig::new("/nonexistent-dir/x.jsonl")),
        });
        assert!(matches!(e, OutputError::JsonlOpen { .. }));
        assert!(e.to_string().contains("/nonexistent-dir/x.jsonl"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metric_names_are_registered() {
        let mut registry = Registry::default();
        let path =
            std::env::temp_dir().join(format!("rebuilder-names-{}.jsonl", std::process::id()));
        let outputs = Outputs::start(
            &OutputsConfig {
                upstream: Some(UpstreamConfig::new("http://127.0.0.1:9")),
                jsonl: Some(JsonlConfig::new(&path)),
            },
            Mode::Live,
            &mut registry,
            Health::new(),
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "rebuilder_output_dropped_total{output=\"upstream\",reason=\"queue_full\"} 0",
            "rebuilder_output_dropped_total{output=\"upstream\",reason=\"gap\"} 0",
            "rebuilder_output_dropped_total{output=\"upstream\",reason=\"upstream_error\"} 0",
            "rebuilder_output_dropped_total{output=\"upstream\",reason=\"shutdown\"} 0",
            "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"write_error\"} 0",
            "rebuilder_output_queue_requests{output=\"upstream\"} 0",
            "rebuilder_output_queue_bytes{output=\"jsonl\"} 0",
            "rebuilder_upstream_replayed_total 0",
            "rebuilder_upstream_errors_total{kind=\"connect\"} 0",
            "rebuilder_upstream_errors_total{kind=\"response_timeout\"} 0",
            "rebuilder_upstream_stale_retries_total 0",
            "rebuilder_upstream_latency_seconds_count 0",
            "rebuilder_upstream_connections_opened_total",
            "rebuilder_upstream_responses_total{class=\"2xx\"} 0",
            "rebuilder_jsonl_written_total 0",
            "rebuilder_jsonl_write_errors_total 0",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing from\n{text}"
            );
        }
        drop(outputs);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn handles_cross_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Outputs>();
        fn sendable<T: Send + Clone + 'static>() {}
        sendable::<crate::status::Heartbeat>();
    }

    #[test]
    fn urls() {
        let p = |u: &str| UpstreamAddr::parse(u).unwrap();
        assert_eq!(
            p("http://waf.internal:8080"),
            UpstreamAddr {
                host: "waf.internal".into(),
                port: 8080
            }
        );
        assert_eq!(
            p("HTTP://10.0.0.1/"),
            UpstreamAddr {
                host: "10.0.0.1".into(),
                port: 80
            }
        );
        assert_eq!(
            p("http://[::1]:81/"),
            UpstreamAddr {
                host: "::1".into(),
                port: 81
            }
        );
        assert_eq!(p("http://[::1]:81").to_string(), "[::1]:81");
        assert_eq!(
            p("http://[fe80::1]"),
            UpstreamAddr {
                host: "fe80::1".into(),
                port: 80
            }
        );
    }
}
