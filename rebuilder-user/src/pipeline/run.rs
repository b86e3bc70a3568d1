//! The wiring of a run, the same for every command: check the memory budget, open the input,
//! register the metrics, start the outputs, the status server and the signal handler, then the
//! reassembly workers, hand over to the input's capture arm (`replay`, `udp` or `xdp`), and at
//! the end join the workers and drain the outputs.
//!
//! The one place that knows every room: it builds each from the settings and connects them,
//! and leaves the per-input loops to their own modules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use super::metrics::PipelineMetrics;
use super::worker::worker_loop;
use super::{join, now_ns, replay, spawn, udp, xdp};
use super::{CaptureCtx, Input, PipelineError, Shared, Summary};
use crate::capture::decode::DecodeConfig;
use crate::capture::pcap::PcapSource;
use crate::capture::udp::{self as udp_capture, UdpConfig, UdpReceiver};
use crate::capture::xdp::{XdpCapture, XdpConfig, XdpMetrics};
use crate::config::{CaptureKind, MemorySplit, Settings};
use crate::dispatch;
use crate::output::jsonl::JsonlConfig;
use crate::output::upstream::UpstreamConfig;
use crate::output::{Mode, Outputs, OutputsConfig};
use crate::status::Health;
use crate::worker::{WorkerConfig, DEFAULT_LINGER_NS};

/// The input, opened: what `run` checks before it starts any thread.
enum Opened {
    Pcap {
        src: Box<PcapSource>,
        pace: Option<f64>,
        progress: bool,
    },
    Udp(Vec<UdpReceiver>),
    Xdp(Box<XdpCapture>),
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
        Input::Udp => Opened::Udp(udp_capture::bind(&UdpConfig {
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
    let ctx = CaptureCtx {
        settings,
        senders: &senders,
        seed,
        decode_cfg,
        shared: &shared,
        n_workers,
    };
    match opened {
        Opened::Pcap {
            src,
            pace,
            progress,
        } => replay::capture(src, pace, progress, ctx, &mut summary)?,
        Opened::Udp(receivers) => udp::capture(receivers, ctx, &mut summary)?,
        Opened::Xdp(cap) => xdp::capture(cap, xdp_metrics, ctx, &mut summary)?,
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
