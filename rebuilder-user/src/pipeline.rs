//! Wires the stages together and runs them: capture threads → dispatcher → reassembly workers
//! → outputs, with the status server and signal handling beside them.
//!
//! Threads, not tasks, for capture and reassembly: they are CPU-bound loops that must never be
//! delayed by an executor. The outputs and the status server are I/O and live on a small tokio
//! runtime.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;
use prometheus_client::registry::Registry;

use crate::capture::decode::{DecodeConfig, DecodeStats, Decoder};
use crate::capture::decode_metrics::CaptureMetrics;
use crate::capture::gather::{Gather, Step};
use crate::capture::pcap::{PcapSource, PcapStats};
use crate::capture::udp::{self, UdpConfig};
use crate::capture::xdp::{Attached, ReaderStats, XdpCapture, XdpConfig, XdpError, XdpMetrics};
use crate::capture::CaptureError;
use crate::config::{CaptureKind, ConfigError, MemorySplit, Settings};
use crate::dispatch::DispatchMetrics;
use crate::dispatch::{self, Dispatcher, WorkItem, WorkerQueue};
use crate::metrics::{OutcomeLabel, ReasonLabel};
use crate::output::jsonl::JsonlConfig;
use crate::output::upstream::UpstreamConfig;
use crate::output::{Mode, OutputError, OutputTotals, Outputs, OutputsConfig};
use crate::status::{Health, Heartbeat};
use crate::worker::metrics::WorkerMetrics;
use crate::worker::{FlowTable, WorkerConfig, WorkerStats, DEFAULT_LINGER_NS};

/// How often threads publish their counters and live capture tells workers the time.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How long a capture read may wait before the thread checks its stop flag and beats.
const POLL: Duration = Duration::from_millis(200);
/// How often the XDP program's per-CPU counters are read (one map lookup per counter).
const KERNEL_COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// The longest a live capture thread holds segments before the workers get them, and its
/// pause after a thin socket read (see `capture::gather`).
const GATHER_MAX_DELAY: Duration = Duration::from_millis(1);
const GATHER_PAUSE: Duration = Duration::from_micros(200);
/// Ring records one XDP drain takes before the thread flushes, beats and publishes.
const XDP_DRAIN_MAX: usize = 4096;

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

enum Opened {
    Pcap {
        src: Box<PcapSource>,
        pace: Option<f64>,
        progress: bool,
    },
    Udp(Vec<udp::UdpReceiver>),
    Xdp(Box<XdpCapture>),
}

/// The XDP input's part of a [`Summary`].
#[derive(Debug)]
pub struct XdpSummary {
    pub attached: Attached,
    /// The program's counters at the end, by `rebuilder_ebpf::Counter::index`.
    pub kernel: [u64; rebuilder_ebpf::Counter::COUNT],
    pub reader: ReaderStats,
}

/// What a run did, printed at the end of `replay` (and at shutdown of `run`).
#[derive(Debug, Default)]
pub struct Summary {
    pub source: &'static str,
    pub elapsed: Duration,
    /// Frames read from the file, or datagrams received.
    pub packets: u64,
    pub decode: DecodeStats,
    pub pcap: Option<PcapStats>,
    pub udp_kernel_drops: u64,
    pub udp_truncated: u64,
    pub xdp: Option<XdpSummary>,
    pub segments_dropped_queue_full: u64,
    pub workers: WorkerStats,
    /// Requests kept from the outputs on purpose, by reason (only reasons that happened).
    pub filtered: Vec<(&'static str, u64)>,
    pub outputs: Vec<OutputTotals>,
    /// Requests the outputs still held when the drain deadline passed.
    pub abandoned: u64,
    /// Set when reading stopped early because of an error (the rest of the summary is still
    /// what was done up to there).
    pub read_error: Option<String>,
}

impl Summary {
    /// Every loss, with where it happened, for the summary and for tests.
    pub fn drops(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut push = |k: String, n: u64| {
            if n > 0 {
                out.push((k, n));
            }
        };
        for (d, n) in self.decode.drops() {
            push(format!("packet:{}", d.as_str()), n);
        }
        if let Some(p) = &self.pcap {
            push("record:corrupt".into(), p.corrupt);
            push("record:unsupported_link".into(), p.unsupported_link);
        }
        push("datagram:kernel_drop".into(), self.udp_kernel_drops);
        push("datagram:truncated".into(), self.udp_truncated);
        if let Some(x) = &self.xdp {
            use rebuilder_ebpf::Counter;
            for c in [Counter::RingFull, Counter::Malformed] {
                let n = x.kernel.get(c.index() as usize).copied().unwrap_or(0);
                push(format!("xdp:{}", c.name()), n);
            }
        }
        push(
            "segment:worker_queue_full".into(),
            self.segments_dropped_queue_full,
        );
        let s = &self.workers.stream;
        push("segment:out_of_window".into(), s.out_of_window_segments);
        // What spoofed segments tried and did not get (see reassembly/stream.rs): they change
        // nothing of the real stream, but an operator should see them.
        push("segment:pruned".into(), s.pruned_segments);
        push("segment:rst_ignored".into(), s.rst_ignored);
        push("segment:fin_ignored".into(), s.fin_ignored);
        push(
            "segment:second_connection".into(),
            self.workers.second_connections,
        );
        push("stream:rewound".into(), s.rewinds);
        // Bytes of later copies that differed from the first (first wins): not a loss of the
        // client's bytes, but what an attacker tried to slip in.
        push("bytes:conflict".into(), s.conflict_bytes);
        push("flow:evicted".into(), self.workers.flows_evicted);
        let h = &self.workers.http;
        use crate::h2::StreamOutcome as O;
        let h2 = |o| h.h2.streams_of(o);
        push("request:gap".into(), h.dropped_gap + h2(O::Gap));
        push("request:head_too_large".into(), h.dropped_head_too_large);
        push(
            "request:too_many_headers".into(),
            h.dropped_too_many_headers,
        );
        push("request:invalid".into(), h.dropped_invalid);
        push(
            "request:incomplete".into(),
            h.dropped_incomplete + h2(O::Incomplete),
        );
        push("request:h2_undecodable".into(), h2(O::Undecodable));
        push("request:h2_malformed".into(), h2(O::Malformed));
        push("request:h2_refused".into(), h2(O::Refused));
        push("request:h2_head_too_large".into(), h2(O::HeadTooLarge));
        push("bytes:h2_unattached".into(), h.h2.unattached_data_bytes);
        push("request:evicted".into(), self.workers.requests_evicted);
        let p = &self.workers.proxy;
        push("proxy_header:malformed".into(), p.malformed);
        push("proxy_header:truncated".into(), p.truncated);
        for o in &self.outputs {
            for (reason, n) in &o.dropped {
                push(format!("{}:{reason}", o.output), *n);
            }
        }
        out
    }

    pub fn print(&self, mut w: impl Write) -> std::io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let w_ = &self.workers;
        writeln!(w, "rebuilder {} summary", self.source)?;
        writeln!(w, "  elapsed          {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(
            w,
            "  packets          {} ({:.0}/s)",
            self.packets,
            self.packets as f64 / secs
        )?;
        if let Some(x) = &self.xdp {
            let k =
                |c: rebuilder_ebpf::Counter| x.kernel.get(c.index() as usize).copied().unwrap_or(0);
            writeln!(
                w,
                "  xdp              {} ({} mode): {} packets seen, {} segments pushed",
                x.attached.iface,
                x.attached.mode,
                k(rebuilder_ebpf::Counter::Seen),
                k(rebuilder_ebpf::Counter::Pushed)
            )?;
        }
        writeln!(w, "  segments         {}", self.decode.segments())?;
        writeln!(w, "  flows            {}", w_.flows_created)?;
        writeln!(
            w,
            "  gaps             {} ({} bytes)",
            w_.stream.gaps.iter().sum::<u64>(),
            w_.stream.gap_bytes.iter().sum::<u64>()
        )?;
        writeln!(
            w,
            "  requests rebuilt {} ({:.0}/s)",
            w_.requests,
            w_.requests as f64 / secs
        )?;
        let filtered: u64 = self.filtered.iter().map(|(_, n)| n).sum();
        let reasons: Vec<String> = self
            .filtered
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if reasons.is_empty() {
            writeln!(w, "  filtered         0")?;
        } else {
            writeln!(w, "  filtered         {filtered} ({})", reasons.join(" "))?;
        }
        let p = &w_.proxy;
        if p.v1 + p.v2 + p.v2_local > 0 {
            writeln!(
                w,
                "  proxy headers    {} (v1 {}, v2 {}, v2 local {})",
                p.v1 + p.v2 + p.v2_local,
                p.v1,
                p.v2,
                p.v2_local
            )?;
        }
        for o in &self.outputs {
            let verb = if o.output == "upstream" {
                "replayed"
            } else {
                "written"
            };
            writeln!(w, "  {:<16} {} {verb}", o.output, o.delivered)?;
        }
        let drops = self.drops();
        if drops.is_empty() {
            writeln!(w, "  dropped          none")?;
        } else {
            writeln!(w, "  dropped")?;
            for (k, n) in drops {
                writeln!(w, "    {k:<30} {n}")?;
            }
        }
        if let Some(e) = &self.read_error {
            writeln!(w, "  read error       {e}")?;
        }
        Ok(())
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

fn outputs_config(s: &Settings, split: &MemorySplit) -> OutputsConfig {
    let upstream = s.upstream.url.as_ref().map(|url| UpstreamConfig {
        url: url.clone(),
        pool_size: s.upstream.pool_size,
        connect_timeout: s.upstream.connect_timeout.0,
        response_timeout: s.upstream.response_timeout.0,
        queue_requests: s.upstream.queue_requests,
        queue_bytes: usize::try_from(split.upstream_queue).unwrap_or(usize::MAX),
        client_ip_header: s.upstream.client_ip_header.clone(),
        vni_header: s.upstream.vni_header.clone(),
        protocol: s.upstream.protocol,
    });
    let jsonl = s.jsonl.path.as_ref().map(|p| JsonlConfig {
        path: p.clone(),
        queue_requests: s.jsonl.queue_requests,
        queue_bytes: usize::try_from(split.jsonl_queue).unwrap_or(usize::MAX),
    });
    OutputsConfig { upstream, jsonl }
}

/// The counters before the outputs, each room's registered by that room; the field order is
/// the registration order, which is the order of `/metrics`.
struct PipelineMetrics {
    capture: CaptureMetrics,
    dispatch: DispatchMetrics,
    worker: WorkerMetrics,
    requests_filtered: prometheus_client::metrics::family::Family<
        ReasonLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl PipelineMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            capture: CaptureMetrics::register(registry),
            dispatch: DispatchMetrics::register(registry),
            worker: WorkerMetrics::register(registry),
            requests_filtered: crate::filter::register_metrics(registry),
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

/// Runs the pipeline until the input ends (a file) or `stop` is set (live, set by SIGINT or
/// SIGTERM), then drains the outputs and returns what happened.
pub fn run(
    settings: &Settings,
    input: Input,
    stop: Arc<AtomicBool>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let live = input.is_live();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rebuilder-io")
        .enable_all()
        .build()
        .map_err(PipelineError::Runtime)?;

    // The budget first: settings that do not fit are refused before anything is opened. Then
    // the input: a missing file or a busy port fails before anything starts.
    let source = input.source();
    let capture = match &input {
        Input::Pcap { .. } => CaptureKind::Pcap,
        Input::Udp | Input::Xdp => settings.run_capture(),
    };
    let split = settings.memory_split(capture)?;
    let opened = match input {
        Input::Pcap {
            path,
            pace,
            progress,
        } => {
            let mut src = PcapSource::open(&path)?;
            src.bound_chunks(crate::capture::pcap::POOL_CHUNKS);
            Opened::Pcap {
                src: Box::new(src),
                pace,
                progress,
            }
        }
        Input::Udp => Opened::Udp(udp::bind(&UdpConfig {
            addr: settings.udp.listen,
            sockets: settings.udp_sockets(),
            recv_buffer_bytes: usize::try_from(split.recv_buffer).unwrap_or(usize::MAX),
            batch: settings.udp.batch,
        })?),
        Input::Xdp => {
            let iface = settings.xdp.iface.as_deref().unwrap_or_default();
            let cfg = XdpConfig::from_settings(settings, iface);
            Opened::Xdp(Box::new(XdpCapture::open(&cfg)?))
        }
    };

    let mut registry = Registry::default();
    let metrics = Arc::new(PipelineMetrics::register(&mut registry));
    let xdp_metrics = match &opened {
        Opened::Xdp(cap) => {
            let m = XdpMetrics::register(&mut registry);
            m.set_attached(cap.attached());
            Some(Arc::new(m))
        }
        _ => None,
    };
    // Idling means something only for live capture.
    let health =
        Health::with_max_idle(settings.status.max_idle.filter(|_| live).map(|span| span.0));
    health.register(&mut registry);
    let mode = if live { Mode::Live } else { Mode::Offline };
    let outputs = Outputs::start(
        &outputs_config(settings, &split),
        mode,
        &mut registry,
        Arc::clone(&health),
        rt.handle(),
    )?;
    let registry = Arc::new(registry);

    let (status_stop_tx, status_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = settings.status.listen {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|source| PipelineError::StatusBind { addr, source })?;
        tracing::info!(%addr, "status server listening (/livez, /readyz, /healthz, /metrics)");
        let (reg, h) = (Arc::clone(&registry), Arc::clone(&health));
        rt.spawn(async move {
            let shutdown = async {
                let _ = status_stop_rx.await;
            };
            if let Err(e) = crate::status::serve_listener(listener, reg, h, shutdown).await {
                tracing::error!(error = %e, "status server stopped");
            }
        });
    }

    // SIGINT/SIGTERM: stop capture, then the outputs drain within the deadline. A second
    // signal exits at once, for an operator who does not want to wait.
    let flag = Arc::clone(&stop);
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        tracing::info!("signal received: stopping capture, draining outputs");
        flag.store(true, Ordering::Relaxed);
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("rebuilder: second signal, exiting now");
        std::process::exit(130);
    });

    let shared = Arc::new(Shared {
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        stop: Arc::clone(&stop),
        live,
        max_silence: settings.status.max_silence.0,
    });

    // Reassembly workers.
    let n_workers = settings.workers();
    let per_worker = |bytes: u64| usize::try_from(bytes / n_workers as u64).unwrap_or(usize::MAX);
    let budget = per_worker(split.flows);
    let (senders, queues) = dispatch::queues(n_workers, per_worker(split.in_flight));
    tracing::debug!(
        budget = %settings.memory_budget,
        process = split.process,
        capture = split.capture,
        queue_overhead = split.queue_overhead,
        upstream_queue = split.upstream_queue,
        jsonl_queue = split.jsonl_queue,
        in_flight_per_worker = per_worker(split.in_flight),
        flows_per_worker = budget,
        "memory budget split"
    );
    let mut server_ports = settings.capture.server_ports.clone();
    server_ports.sort_unstable();
    let wcfg = WorkerConfig {
        flow_key: settings.capture.flow_key,
        server_ports,
        stream: settings.stream_config(),
        http: Arc::new(settings.http_limits()),
        idle_timeout_ns: settings.reassembly.idle_timeout.0.as_nanos() as u64,
        linger_ns: DEFAULT_LINGER_NS,
        budget,
        proxy: settings.proxy_policy(),
    };
    let filter = Arc::new(crate::filter::RequestFilter::new(
        &settings.filter_config(),
        &metrics.requests_filtered,
    )?);
    let mut workers = Vec::new();
    for (i, rx) in queues.into_iter().enumerate() {
        let (cfg, out, sh) = (wcfg.clone(), outputs.clone(), Arc::clone(&shared));
        let f = Arc::clone(&filter);
        workers.push(spawn(format!("rebuilder-w{i}"), move || {
            worker_loop(i, rx, cfg, out, f, sh)
        })?);
    }

    // Capture.
    let decode_cfg = DecodeConfig {
        vxlan_ports: settings.capture.vxlan_ports.clone(),
        vni_allow: settings.capture.vni_allow.clone(),
        vni_deny: settings.capture.vni_deny.clone(),
    };
    let seed = now_ns() ^ u64::from(std::process::id());
    let mut summary = Summary {
        source,
        ..Summary::default()
    };
    match opened {
        Opened::Pcap {
            src,
            pace,
            progress,
        } => {
            let packets = Arc::new(AtomicU64::new(0));
            let total = src.total_bytes();
            let bytes_read = Arc::new(AtomicU64::new(0));
            let reporter = (progress && std::io::stderr().is_terminal()).then(|| {
                progress_line(
                    Arc::clone(&packets),
                    Arc::clone(&bytes_read),
                    total,
                    Arc::clone(&metrics),
                )
            });
            let ctx = PcapCtx {
                decode_cfg,
                pace,
                packets,
                bytes_read,
            };
            let disp = Dispatcher::new(senders.clone(), false, settings.capture.flow_key, seed);
            let sh = Arc::clone(&shared);
            let h = spawn("rebuilder-pcap".into(), move || {
                pcap_loop(src, disp, ctx, sh)
            })?;
            let r = join(h)?;
            if let Some((flag, h)) = reporter {
                flag.store(true, Ordering::Relaxed);
                let _ = h.join();
                eprintln!();
            }
            summary.packets = r.stats.records;
            summary.decode = r.decode;
            summary.segments_dropped_queue_full = r.dropped;
            summary.read_error = r.error;
            summary.pcap = Some(r.stats);
            if r.workers_gone {
                return Err(PipelineError::WorkersGone);
            }
        }
        Opened::Udp(receivers) => {
            let mut handles = Vec::new();
            for (i, rx) in receivers.into_iter().enumerate() {
                let disp = Dispatcher::new(senders.clone(), true, settings.capture.flow_key, seed);
                let (dec, sh) = (Decoder::new(&decode_cfg), Arc::clone(&shared));
                let buffer_bytes = settings.udp.batch * udp::SLOT_BYTES;
                handles.push(spawn(format!("rebuilder-udp{i}"), move || {
                    udp_loop(i, rx, dec, disp, sh, buffer_bytes)
                })?);
            }
            tracing::info!(addr = %settings.udp.listen, sockets = handles.len(), workers = n_workers, "capturing VXLAN from UDP");
            for h in handles {
                let r = join(h)?;
                summary.packets += r.datagrams;
                summary.decode.add(&r.decode);
                summary.udp_kernel_drops += r.kernel_drops;
                summary.udp_truncated += r.truncated;
                summary.segments_dropped_queue_full += r.dropped;
            }
        }
        Opened::Xdp(cap) => {
            let disp = Dispatcher::new(senders.clone(), true, settings.capture.flow_key, seed);
            let sh = Arc::clone(&shared);
            // Registered above whenever the input is XDP; a spare keeps this arm total.
            let xm = xdp_metrics
                .unwrap_or_else(|| Arc::new(XdpMetrics::register(&mut Registry::default())));
            tracing::info!(iface = %cap.attached().iface, mode = %cap.attached().mode, workers = n_workers, "capturing VXLAN through XDP");
            let h = spawn("rebuilder-xdp".into(), move || xdp_loop(*cap, disp, sh, xm))?;
            let r = join(h)?;
            // Capture is over either way; a failed capture thread is reported after the
            // workers and outputs have finished what they hold.
            match r {
                Ok(r) => {
                    summary.packets = r.reader.records;
                    summary.decode = r.decode;
                    summary.segments_dropped_queue_full = r.dropped;
                    summary.xdp = Some(XdpSummary {
                        attached: r.attached,
                        kernel: r.kernel,
                        reader: r.reader,
                    });
                }
                Err(e) => summary.read_error = Some(e.to_string()),
            }
        }
    }

    // Capture is over: workers finish their flows once every sender is gone.
    drop(senders);
    for h in workers {
        summary.workers.add(&join(h)?);
    }

    let deadline = if live || stop.load(Ordering::Relaxed) {
        settings.drain_timeout.0
    } else {
        // Offline, nothing is dropped for time: wait for the outputs, however long.
        Duration::from_secs(365 * 24 * 3600)
    };
    let report = rt.block_on(outputs.drain(deadline));
    summary.abandoned = report.abandoned();
    summary.outputs = outputs.totals();
    summary.filtered = filter.totals();
    summary.elapsed = started.elapsed();
    let _ = status_stop_tx.send(());
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(summary)
}

fn worker_loop(
    id: usize,
    queue: WorkerQueue,
    cfg: WorkerConfig,
    outputs: Outputs,
    filter: Arc<crate::filter::RequestFilter>,
    shared: Arc<Shared>,
) -> WorkerStats {
    let beat = shared.heartbeat(&format!("worker {id}"));
    let mut table = FlowTable::new(cfg);
    let mut emit = |req| {
        if filter.admit(&req) {
            outputs.submit(Arc::new(fit_raw(req)));
        }
    };
    let mut published = WorkerStats::default();
    let mut last_publish = Instant::now();
    loop {
        match queue.rx.recv_timeout(POLL) {
            Ok(WorkItem::Segments(batch)) => {
                for seg in &batch {
                    table.push(seg, &mut emit);
                }
                // Reassembly and framing copied what they keep: the payloads' buffers may go.
                let cost = dispatch::batch_cost(&batch);
                drop(batch);
                queue.inflight.release(cost);
            }
            Ok(WorkItem::Tick(now)) => table.tick(now, &mut emit),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(b) = &beat {
            b.beat();
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            let now = table.stats().clone();
            shared.metrics.worker.publish(&now, &published);
            published = now;
            last_publish = Instant::now();
        }
    }
    table.finish(&mut emit);
    let now = table.stats().clone();
    shared.metrics.worker.publish(&now, &published);
    if let Some(b) = &beat {
        b.stopped();
    }
    now
}

/// A request whose bytes sit in a larger allocation (the framer's buffer grows by doubling) gets
/// them copied into one of their size: a queue charges a request for its bytes, so the room to
/// spare would be memory no budget counts, up to as much again.
fn fit_raw(mut req: crate::request::RebuiltRequest) -> crate::request::RebuiltRequest {
    let raw = std::mem::take(&mut req.raw);
    req.raw = match raw.try_into_mut() {
        Ok(m) if m.capacity() > m.len() => bytes::Bytes::copy_from_slice(&m),
        Ok(m) => m.freeze(),
        Err(shared) => shared,
    };
    req
}

struct PcapCtx {
    decode_cfg: DecodeConfig,
    pace: Option<f64>,
    packets: Arc<AtomicU64>,
    bytes_read: Arc<AtomicU64>,
}

struct PcapResult {
    stats: PcapStats,
    decode: DecodeStats,
    dropped: u64,
    error: Option<String>,
    workers_gone: bool,
}

fn pcap_loop(
    mut src: Box<PcapSource>,
    mut disp: Dispatcher,
    ctx: PcapCtx,
    shared: Arc<Shared>,
) -> PcapResult {
    let decoder = Decoder::new(&ctx.decode_cfg);
    let mut decode = DecodeStats::default();
    let mut published = DecodeStats::default();
    let mut published_pcap = PcapStats::default();
    let mut published_dispatched = 0u64;
    let mut last_publish = Instant::now();
    let mut pace_origin: Option<(Instant, u64)> = None;
    let mut workers_gone = false;
    let mut n: u64 = 0;
    let mut chunk = src.chunk_generation();
    while let Some(frame) = src.next_frame() {
        n += 1;
        // A frame of another chunk: what waits for a batch to fill goes to the workers now, so
        // that only the current chunk is held by segments the workers have not got, and reading
        // (which waits for a free chunk: `bound_chunks`) never waits for its own segments.
        if src.chunk_generation() != chunk {
            chunk = src.chunk_generation();
            if disp.flush().is_err() {
                workers_gone = true;
                break;
            }
        }
        if let Some(speed) = ctx.pace {
            let (t0, ts0) = *pace_origin.get_or_insert((Instant::now(), frame.ts));
            let due = Duration::from_nanos((frame.ts.saturating_sub(ts0) as f64 / speed) as u64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                // Flush first: pacing means the workers must see what is due now.
                if disp.flush().is_err() {
                    workers_gone = true;
                    break;
                }
                // In slices, so that a signal stops a paced replay of a capture with a long
                // quiet stretch without waiting it out.
                let until = Instant::now() + wait;
                while !shared.stop.load(Ordering::Relaxed) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(POLL));
                }
            }
        }
        let r = decoder.decode_frame_owned(frame.link, frame.data, frame.ts);
        decode.record(&r);
        if let Ok(seg) = r {
            if disp.push(seg).is_err() {
                workers_gone = true;
                break;
            }
        }
        if n.is_multiple_of(4096) {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            ctx.packets.store(n, Ordering::Relaxed);
            ctx.bytes_read.store(src.bytes_read(), Ordering::Relaxed);
            if last_publish.elapsed() >= PUBLISH_EVERY {
                publish_pcap(
                    &shared.metrics,
                    &decode,
                    &published,
                    src.stats(),
                    &published_pcap,
                );
                shared
                    .metrics
                    .dispatch
                    .segments_dispatched
                    .inc_by(disp.dispatched - published_dispatched);
                published_dispatched = disp.dispatched;
                published = decode.clone();
                published_pcap = src.stats().clone();
                last_publish = Instant::now();
            }
        }
    }
    if disp.flush().is_err() {
        workers_gone = true;
    }
    ctx.packets.store(n, Ordering::Relaxed);
    ctx.bytes_read.store(src.bytes_read(), Ordering::Relaxed);
    publish_pcap(
        &shared.metrics,
        &decode,
        &published,
        src.stats(),
        &published_pcap,
    );
    shared
        .metrics
        .dispatch
        .segments_dispatched
        .inc_by(disp.dispatched - published_dispatched);
    PcapResult {
        stats: src.stats().clone(),
        decode,
        dropped: disp.dropped_queue_full,
        error: src.error().map(|e| e.to_string()),
        workers_gone,
    }
}

fn publish_pcap(
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

struct UdpResult {
    datagrams: u64,
    decode: DecodeStats,
    kernel_drops: u64,
    truncated: u64,
    dropped: u64,
}

/// Copies a capture batch's payloads out of the reader's buffer, into one allocation per worker,
/// when the batch is sparse (its payloads fill less than half of the buffer: a queued segment
/// would keep a whole buffer alive for a few bytes) or when `force`d (no other buffer of the
/// reader's pool is free, and the reader needs this one back). Dense batches stay zero-copy:
/// their buffer is one of the reader's pool, counted in the budget as the capture's. One
/// allocation per worker, because each worker releases its segments' in-flight charge when it
/// is done with them: an allocation shared between workers would stay alive, no longer charged,
/// while another worker still held a segment of it.
fn compact(
    segments: &mut [crate::segment::Segment],
    buffer_bytes: usize,
    force: bool,
    disp: &Dispatcher,
) {
    let total: usize = segments.iter().map(|s| s.payload.len()).sum();
    if total == 0 || (!force && total.saturating_mul(2) >= buffer_bytes) {
        return;
    }
    let owners: Vec<usize> = segments.iter().map(|s| disp.worker_of(s)).collect();
    let mut sizes = vec![0usize; disp.workers()];
    for (s, &w) in segments.iter().zip(&owners) {
        if let Some(n) = sizes.get_mut(w) {
            *n += s.payload.len();
        }
    }
    let mut arenas: Vec<bytes::BytesMut> = sizes
        .iter()
        .map(|&n| bytes::BytesMut::with_capacity(n))
        .collect();
    for (s, &w) in segments.iter().zip(&owners) {
        if let Some(a) = arenas.get_mut(w) {
            a.extend_from_slice(&s.payload);
        }
    }
    let mut frozen: Vec<bytes::Bytes> = arenas.into_iter().map(bytes::BytesMut::freeze).collect();
    for (s, &w) in segments.iter_mut().zip(&owners) {
        if let Some(b) = frozen.get_mut(w) {
            s.payload = b.split_to(s.payload.len());
        }
    }
}

fn udp_loop(
    id: usize,
    mut rx: udp::UdpReceiver,
    decoder: Decoder,
    mut disp: Dispatcher,
    shared: Arc<Shared>,
    buffer_bytes: usize,
) -> UdpResult {
    let beat = shared.heartbeat(&format!("udp capture {id}"));
    let mut decode = DecodeStats::default();
    let mut published = DecodeStats::default();
    let (mut pub_kernel, mut pub_trunc, mut pub_dispatched, mut pub_dropped) =
        (0u64, 0u64, 0u64, 0u64);
    let mut last_publish = Instant::now();
    let mut datagrams = 0u64;
    let mut segments = Vec::new();
    let mut gather = Gather::new(GATHER_MAX_DELAY, GATHER_PAUSE);
    while !shared.stop.load(Ordering::Relaxed) {
        let mut gone = false;
        let r = rx.recv_batch(gather.wait(POLL, Instant::now()), |payload, ts| {
            let r = decoder.decode_vxlan_owned(payload, ts);
            decode.record(&r);
            if let Ok(seg) = r {
                segments.push(seg);
            }
        });
        compact(&mut segments, buffer_bytes, !rx.has_spare(), &disp);
        for seg in segments.drain(..) {
            gone |= disp.push(seg).is_err();
        }
        let got = match r {
            Ok(n) => {
                datagrams += n as u64;
                if n > 0 {
                    shared.health.packets_captured();
                }
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "UDP receive failed");
                std::thread::sleep(POLL);
                0
            }
        };
        match gather.after_receive(got, rx.batch(), disp.has_pending(), Instant::now()) {
            Step::Flush => gone |= disp.flush().is_err(),
            Step::Read => {}
            Step::Pause(d) => std::thread::sleep(d),
        }
        if gone {
            tracing::error!("reassembly workers are gone; UDP capture {id} stops");
            break;
        }
        if let Some(b) = &beat {
            b.beat();
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            let _ = disp.tick(now_ns());
            let m = &shared.metrics;
            m.capture.publish_decode("udp", &decode, &published);
            published = decode.clone();
            m.capture
                .udp_kernel_drops
                .inc_by(rx.kernel_drops() - pub_kernel);
            pub_kernel = rx.kernel_drops();
            let trunc = rx.truncated_datagrams() - pub_trunc;
            if trunc > 0 {
                m.capture
                    .packets
                    .get_or_create(&crate::metrics::PacketLabels {
                        source: "udp",
                        outcome: "datagram_truncated",
                    })
                    .inc_by(trunc);
            }
            pub_trunc = rx.truncated_datagrams();
            m.dispatch
                .segments_dispatched
                .inc_by(disp.dispatched - pub_dispatched);
            pub_dispatched = disp.dispatched;
            if disp.dropped_queue_full > pub_dropped {
                m.dispatch
                    .segments_dropped
                    .get_or_create(&ReasonLabel {
                        reason: "worker_queue_full",
                    })
                    .inc_by(disp.dropped_queue_full - pub_dropped);
            }
            pub_dropped = disp.dropped_queue_full;
            last_publish = Instant::now();
        }
    }
    // Segments held for gathering are not thrown away at the stop.
    if disp.flush().is_err() {
        tracing::error!(
            "reassembly workers are gone; UDP capture {id} could not hand over its last segments"
        );
    }
    if let Some(b) = &beat {
        b.stopped();
    }
    shared
        .metrics
        .capture
        .publish_decode("udp", &decode, &published);
    UdpResult {
        datagrams,
        decode,
        kernel_drops: rx.kernel_drops(),
        truncated: rx.truncated_datagrams(),
        dropped: disp.dropped_queue_full,
    }
}

struct XdpResult {
    attached: Attached,
    reader: ReaderStats,
    decode: DecodeStats,
    kernel: [u64; rebuilder_ebpf::Counter::COUNT],
    dropped: u64,
}

/// How often the NIC driver's statistics are read (an ioctl; ENA may ask its device).
const NIC_STATS_EVERY: Duration = Duration::from_secs(1);

/// The driver's XDP statistics and the loss they show beyond the program's own count
/// ([`crate::capture::nic`]), followed from the XDP capture thread.
struct NicWatch {
    iface: String,
    driver: String,
    driver_mode: bool,
    before: std::collections::BTreeMap<String, u64>,
    unseen: crate::capture::nic::UnseenDrops,
    last: Instant,
    error_logged: bool,
}

impl NicWatch {
    fn program_seen(reader: &crate::capture::xdp::XdpReader) -> Option<u64> {
        let k = reader.kernel_counters().ok()?;
        k.get(rebuilder_ebpf::Counter::Seen.index() as usize)
            .copied()
    }

    fn start(reader: &crate::capture::xdp::XdpReader, driver: &str) -> Self {
        let attached = reader.attached();
        let mut w = Self {
            iface: attached.iface.clone(),
            driver: driver.to_string(),
            driver_mode: attached.mode == crate::capture::xdp::AttachMode::Driver,
            before: Default::default(),
            unseen: Default::default(),
            last: Instant::now(),
            error_logged: false,
        };
        // The program's count first, the driver's after (see UnseenDrops).
        let seen = Self::program_seen(reader);
        if let Ok(stats) = crate::capture::nic::read_stats(&w.iface) {
            let at_start = crate::capture::nic::xdp_counters(&stats);
            if let (Some(seen), Some(entered)) = (
                seen,
                crate::capture::nic::packets_entered(&w.driver, &at_start),
            ) {
                w.unseen.start(seen, entered);
            }
        }
        // `before` stays empty: the first reading publishes the driver's counters as they are
        // (what `ethtool -S` shows), packets it took before this process looked included.
        w
    }

    fn tick(&mut self, reader: &crate::capture::xdp::XdpReader, xm: &XdpMetrics) {
        if self.last.elapsed() < NIC_STATS_EVERY {
            return;
        }
        self.last = Instant::now();
        let stats = match crate::capture::nic::read_stats(&self.iface) {
            Ok(s) => s,
            Err(e) => {
                if !self.error_logged {
                    self.error_logged = true;
                    tracing::warn!(error = %e, "cannot read the NIC driver's statistics");
                }
                return;
            }
        };
        let now = crate::capture::nic::xdp_counters(&stats);
        xm.publish_driver(&self.iface, &now, &self.before);
        // The driver's count was read first, the program's now (see UnseenDrops).
        if self.driver_mode {
            if let (Some(entered), Some(seen)) = (
                crate::capture::nic::packets_entered(&self.driver, &now),
                Self::program_seen(reader),
            ) {
                let grown = self.unseen.update(entered, seen);
                if grown > 0 {
                    tracing::warn!(
                        iface = %self.iface,
                        driver = %self.driver,
                        dropped = grown,
                        "the driver dropped packets before the XDP program saw them (in driver \
                         mode ENA drops frames larger than one receive buffer)"
                    );
                    xm.driver_dropped(&self.iface, grown);
                }
            }
        }
        self.before = now;
    }
}

/// The XDP capture thread: its own current-thread runtime waits on the ring buffer, so the
/// outputs' runtime can never delay capture.
fn xdp_loop(
    cap: XdpCapture,
    disp: Dispatcher,
    shared: Arc<Shared>,
    xm: Arc<XdpMetrics>,
) -> Result<XdpResult, XdpError> {
    let beat = shared.heartbeat("xdp capture");
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(XdpError::Runtime)
        .and_then(|rt| rt.block_on(xdp_capture(cap, disp, &shared, &xm, beat.as_ref())));
    if let Err(e) = &result {
        tracing::error!(error = %e, "XDP capture stopped");
    }
    if let Some(b) = &beat {
        b.stopped();
    }
    result
}

async fn xdp_capture(
    cap: XdpCapture,
    mut disp: Dispatcher,
    shared: &Shared,
    xm: &XdpMetrics,
    beat: Option<&Heartbeat>,
) -> Result<XdpResult, XdpError> {
    let driver = cap.facts().driver_name().unwrap_or_default().to_string();
    let mut reader = cap.into_reader()?;
    let mut nic = NicWatch::start(&reader, &driver);
    let mut decode = DecodeStats::default();
    let mut published = DecodeStats::default();
    let mut published_reader = ReaderStats::default();
    let (mut pub_dispatched, mut pub_dropped) = (0u64, 0u64);
    let mut kernel = [0u64; rebuilder_ebpf::Counter::COUNT];
    let mut last_publish = Instant::now();
    let mut last_kernel = Instant::now();
    let mut kernel_error_logged = false;
    let mut more = false;
    let mut gone = false;
    let mut segments = Vec::new();
    let publish = |decode: &DecodeStats,
                   published: &DecodeStats,
                   reader: &ReaderStats,
                   published_reader: &ReaderStats,
                   disp: &Dispatcher,
                   pub_dispatched: &mut u64,
                   pub_dropped: &mut u64| {
        let m = &shared.metrics;
        m.capture.publish_decode("xdp", decode, published);
        xm.publish_reader(reader, published_reader);
        m.dispatch
            .segments_dispatched
            .inc_by(disp.dispatched - *pub_dispatched);
        *pub_dispatched = disp.dispatched;
        if disp.dropped_queue_full > *pub_dropped {
            m.dispatch
                .segments_dropped
                .get_or_create(&ReasonLabel {
                    reason: "worker_queue_full",
                })
                .inc_by(disp.dropped_queue_full - *pub_dropped);
        }
        *pub_dropped = disp.dropped_queue_full;
    };
    let mut read_kernel =
        |reader: &crate::capture::xdp::XdpReader,
         kernel: &mut [u64; rebuilder_ebpf::Counter::COUNT]| {
            match reader.kernel_counters() {
                Ok(now) => {
                    xm.publish_kernel(&now, kernel);
                    *kernel = now;
                }
                Err(e) if !kernel_error_logged => {
                    kernel_error_logged = true;
                    tracing::warn!(error = %e, "cannot read the XDP program's counters");
                }
                Err(_) => {}
            }
        };
    // One last drain after the stop flag: segments already in the ring are not thrown away
    // (one only, so that a busy link cannot hold the shutdown up).
    let mut last_round = false;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            last_round = true;
        }
        if !more && !last_round {
            if let Err(e) = reader.wait(crate::capture::xdp::RING_POLL).await {
                tracing::error!(error = %e, "waiting on the XDP ring buffer failed");
                tokio::time::sleep(POLL).await;
            }
        }
        let drained = reader.drain(XDP_DRAIN_MAX, |r| {
            decode.record(&r);
            if let Ok(seg) = r {
                segments.push(seg);
            }
        });
        compact(
            &mut segments,
            crate::capture::xdp::BATCH_BYTES,
            !reader.has_spare(),
            &disp,
        );
        for seg in segments.drain(..) {
            gone |= disp.push(seg).is_err();
        }
        more = drained.more;
        if drained.records > 0 {
            shared.health.packets_captured();
        }
        gone |= disp.flush().is_err();
        if gone {
            tracing::error!("reassembly workers are gone; XDP capture stops");
            break;
        }
        if let Some(b) = beat {
            b.beat();
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            let _ = disp.tick(now_ns());
            publish(
                &decode,
                &published,
                reader.stats(),
                &published_reader,
                &disp,
                &mut pub_dispatched,
                &mut pub_dropped,
            );
            published = decode.clone();
            published_reader = reader.stats().clone();
            last_publish = Instant::now();
        }
        if last_kernel.elapsed() >= KERNEL_COUNTERS_EVERY {
            read_kernel(&reader, &mut kernel);
            last_kernel = Instant::now();
        }
        nic.tick(&reader, xm);
        if last_round {
            break;
        }
    }
    publish(
        &decode,
        &published,
        reader.stats(),
        &published_reader,
        &disp,
        &mut pub_dispatched,
        &mut pub_dropped,
    );
    read_kernel(&reader, &mut kernel);
    Ok(XdpResult {
        attached: reader.attached().clone(),
        reader: reader.stats().clone(),
        decode,
        kernel,
        dropped: disp.dropped_queue_full,
    })
}

/// A one-line progress report on stderr while a long file is replayed.
fn progress_line(
    packets: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    total: Option<u64>,
    metrics: Arc<PipelineMetrics>,
) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let h = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            let p = packets.load(Ordering::Relaxed);
            let b = bytes.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            let pct = total.map_or(String::new(), |t| {
                format!("{:5.1}% ", 100.0 * b as f64 / t.max(1) as f64)
            });
            eprint!(
                "\r{pct}{p} packets ({:.0}/s), {} requests rebuilt   ",
                p as f64 / secs,
                metrics.worker.requests_rebuilt.get()
            );
        }
    });
    (done, h)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::segment::{FlowKey, Segment, TcpFlags};

    fn seg(payload: Bytes) -> Segment {
        Segment {
            ts: 0,
            vni: 1,
            flow: FlowKey {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                src_port: 1,
                dst_port: 80,
            },
            seq: 0,
            ack: 0,
            flags: TcpFlags(0),
            wire_len: payload.len() as u32,
            payload,
        }
    }

    #[test]
    fn sparse_or_forced_batches_are_copied_out_per_worker_and_dense_ones_are_not() {
        let (senders, _queues) = dispatch::queues(2, 1 << 20);
        let disp = Dispatcher::new(senders, true, crate::config::FlowKeyMode::Inner, 7);
        // Ports whose flows the dispatcher sends to worker 0 and to worker 1.
        let port_of = |w: usize| {
            (1..1000u16)
                .find(|&p| {
                    let mut s = seg(Bytes::new());
                    s.flow.src_port = p;
                    disp.worker_of(&s) == w
                })
                .unwrap()
        };
        let (p0, p1) = (port_of(0), port_of(1));
        let on = |port: u16, payload: Bytes| {
            let mut s = seg(payload);
            s.flow.src_port = port;
            s
        };
        // A 64-slot batch buffer holding four small datagrams, of both workers.
        let buffer = Bytes::from(vec![7u8; 64 * udp::SLOT_BYTES]);
        let mut segs = vec![
            on(p0, buffer.slice(100..150)),
            on(p1, buffer.slice(200..260)),
            on(p0, Bytes::new()),
            on(p0, buffer.slice(udp::SLOT_BYTES..udp::SLOT_BYTES + 1400)),
        ];
        let before: Vec<Vec<u8>> = segs.iter().map(|s| s.payload.to_vec()).collect();
        compact(&mut segs, buffer.len(), false, &disp);
        let after: Vec<Vec<u8>> = segs.iter().map(|s| s.payload.to_vec()).collect();
        assert_eq!(before, after, "the same bytes");
        assert!(
            buffer.is_unique(),
            "no segment refers to the batch buffer any more: the receiver may reuse it"
        );
        // Worker 0's payloads sit one after the other in one allocation, worker 1's apart.
        assert_eq!(
            segs[0].payload.as_ptr().wrapping_add(50),
            segs[3].payload.as_ptr()
        );
        let w0 = segs[0].payload.as_ptr() as usize;
        let w1 = segs[1].payload.as_ptr() as usize;
        assert!(
            w1 < w0 || w1 >= w0 + 1450,
            "worker 1's bytes are not in worker 0's allocation"
        );
        drop(segs);

        // More than half full: left as slices of the buffer, unless the reader needs it back.
        let dense = Bytes::from(vec![1u8; 4 * 1000]);
        let make = || -> Vec<Segment> {
            (0..4)
                .map(|i| on(p0 + i as u16 % 2, dense.slice(i * 1000..i * 1000 + 900)))
                .collect()
        };
        let mut segs = make();
        compact(&mut segs, dense.len(), false, &disp);
        assert_eq!(segs[1].payload.as_ptr(), dense.slice(1000..1001).as_ptr());
        drop(segs);
        let mut segs = make();
        compact(&mut segs, dense.len(), true, &disp);
        assert!(dense.is_unique());
        assert!(segs
            .iter()
            .all(|s| s.payload.len() == 900 && s.payload[0] == 1));
    }
}
