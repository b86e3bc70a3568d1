//! Wires the stages together and runs them: capture threads → dispatcher → reassembly workers
//! → outputs, with the status server and signal handling beside them.
//!
//! Threads, not tasks, for capture and reassembly: they are CPU-bound loops that must never be
//! delayed by an executor. The outputs and the status server are I/O and live on a small tokio
//! runtime.
//!
//! Layout: this module holds what every thread of a run shares (the stop flag and health in
//! `Shared`, the publish cadence, thread spawning and joining, the error type); `run` is the
//! wiring common to every command; one module per input runs its capture thread(s): `replay`
//! (a capture file), `udp` (VXLAN sockets), `xdp` (the XDP ring); `worker` is the reassembly
//! worker thread; `compact` copies a capture batch out of the reader's buffer it needs back;
//! `metrics` publishes the threads' counters; `summary` is what a run reports at the end.

mod compact;
mod metrics;
mod replay;
mod run;
mod summary;
mod udp;
mod worker;
mod xdp;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::decode::DecodeConfig;
use crate::capture::xdp::XdpError;
use crate::capture::CaptureError;
use crate::config::{ConfigError, Settings};
use crate::dispatch::{Dispatcher, Senders};
use crate::output::OutputError;
use crate::status::{Health, Heartbeat};

pub use run::run;
pub use summary::{Summary, XdpSummary};

use metrics::PipelineMetrics;

/// How often threads publish their counters and live capture tells workers the time.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How long a capture read may wait before the thread checks its stop flag and beats.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("status server: {0}")]
    Status(#[from] crate::status::StatusError),
    #[error("cannot bind the status server on {addr}: {source}")]
    StatusBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a pipeline thread panicked: {0}")]
    Panicked(String),
    #[error("all reassembly workers stopped early")]
    WorkersGone,
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
}

/// Where segments come from.
pub enum Input {
    /// A capture file, read as fast as the outputs take it, or paced by its timestamps.
    Pcap {
        path: PathBuf,
        pace: Option<f64>,
        progress: bool,
    },
    /// VXLAN datagrams on UDP sockets.
    Udp,
    /// Segments from the XDP program on `settings.xdp.iface`.
    Xdp,
}

impl Input {
    fn is_live(&self) -> bool {
        !matches!(self, Input::Pcap { .. })
    }
    fn source(&self) -> &'static str {
        match self {
            Input::Pcap { .. } => "pcap",
            Input::Udp => "udp",
            Input::Xdp => "xdp",
        }
    }
}

/// Shared by every thread of a run.
struct Shared {
    metrics: Arc<PipelineMetrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    live: bool,
    max_silence: Duration,
}

impl Shared {
    fn heartbeat(&self, name: &str) -> Option<Heartbeat> {
        self.live
            .then(|| self.health.component(name, self.max_silence))
    }
}

/// What a capture arm gets from `run`'s wiring: where its segments go (one dispatcher per
/// capture thread, all to the same workers) and what it decodes with.
struct CaptureCtx<'a> {
    settings: &'a Settings,
    senders: &'a Senders,
    seed: u64,
    decode_cfg: DecodeConfig,
    shared: &'a Arc<Shared>,
    n_workers: usize,
}

impl CaptureCtx<'_> {
    /// A dispatcher to the run's workers: `live` ones drop when a worker's queue is full,
    /// offline ones wait for room.
    fn dispatcher(&self, live: bool) -> Dispatcher {
        Dispatcher::new(
            self.senders.clone(),
            live,
            self.settings.capture.flow_key,
            self.seed,
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn join<T>(h: JoinHandle<T>) -> Result<T, PipelineError> {
    h.join().map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        PipelineError::Panicked(msg)
    })
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, PipelineError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|source| PipelineError::Thread { name, source })
}
