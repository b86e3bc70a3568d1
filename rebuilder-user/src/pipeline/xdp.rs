//! The XDP input (`run` with XDP capture): the thread that drains the XDP program's ring
//! buffer, decodes the records and hands the segments to the workers, and beside it follows
//! the program's and the NIC driver's counters.
//!
//! Reads through `capture::xdp` and `capture::nic`, decodes through `capture::decode`, and
//! talks to the workers only through its `Dispatcher` (live: drops rather than waits). Its
//! own current-thread runtime waits on the ring, so the outputs' runtime never delays capture.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use super::compact::compact;
use super::metrics::DispatchPublished;
use super::{join, now_ns, spawn, CaptureCtx, PipelineError, Shared, Summary, XdpSummary};
use super::{POLL, PUBLISH_EVERY};
use crate::capture::decode::DecodeStats;
use crate::capture::nic;
use crate::capture::xdp::{
    self, AttachMode, Attached, ReaderStats, XdpCapture, XdpError, XdpMetrics, XdpReader,
};
use crate::dispatch::Dispatcher;
use crate::status::Heartbeat;

/// How often the XDP program's per-CPU counters are read (one map lookup per counter).
const KERNEL_COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// Ring records one XDP drain takes before the thread flushes, beats and publishes.
const XDP_DRAIN_MAX: usize = 4096;

/// Runs the capture thread until the stop flag and fills `summary`; a capture that failed is
/// reported in `summary.read_error`, not as an error, so that the workers and outputs still
/// finish what they hold.
pub(super) fn capture(
    cap: Box<XdpCapture>,
    xdp_metrics: Option<Arc<XdpMetrics>>,
    ctx: CaptureCtx<'_>,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let disp = ctx.dispatcher(true);
    let sh = Arc::clone(ctx.shared);
    // Registered whenever the input is XDP; a spare keeps this total.
    let xm =
        xdp_metrics.unwrap_or_else(|| Arc::new(XdpMetrics::register(&mut Registry::default())));
    tracing::info!(iface = %cap.attached().iface, mode = %cap.attached().mode, workers = ctx.n_workers, "capturing VXLAN through XDP");
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
    Ok(())
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
    unseen: nic::UnseenDrops,
    last: Instant,
    error_logged: bool,
}

impl NicWatch {
    fn program_seen(reader: &XdpReader) -> Option<u64> {
        let k = reader.kernel_counters().ok()?;
        k.get(rebuilder_ebpf::Counter::Seen.index() as usize)
            .copied()
    }

    fn start(reader: &XdpReader, driver: &str) -> Self {
        let attached = reader.attached();
        let mut w = Self {
            iface: attached.iface.clone(),
            driver: driver.to_string(),
            driver_mode: attached.mode == AttachMode::Driver,
            before: Default::default(),
            unseen: Default::default(),
            last: Instant::now(),
            error_logged: false,
        };
        // The program's count first, the driver's after (see UnseenDrops).
        let seen = Self::program_seen(reader);
        if let Ok(stats) = nic::read_stats(&w.iface) {
            let at_start = nic::xdp_counters(&stats);
            if let (Some(seen), Some(entered)) = (seen, nic::packets_entered(&w.driver, &at_start))
            {
                w.unseen.start(seen, entered);
            }
        }
        // `before` stays empty: the first reading publishes the driver's counters as they are
        // (what `ethtool -S` shows), packets it took before this process looked included.
        w
    }

    fn tick(&mut self, reader: &XdpReader, xm: &XdpMetrics) {
        if self.last.elapsed() < NIC_STATS_EVERY {
            return;
        }
        self.last = Instant::now();
        let stats = match nic::read_stats(&self.iface) {
            Ok(s) => s,
            Err(e) => {
                if !self.error_logged {
                    self.error_logged = true;
                    tracing::warn!(error = %e, "cannot read the NIC driver's statistics");
                }
                return;
            }
        };
        let now = nic::xdp_counters(&stats);
        xm.publish_driver(&self.iface, &now, &self.before);
        // The driver's count was read first, the program's now (see UnseenDrops).
        if self.driver_mode {
            if let (Some(entered), Some(seen)) = (
                nic::packets_entered(&self.driver, &now),
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
    let mut published_dispatch = DispatchPublished::default();
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
                   published_dispatch: &mut DispatchPublished| {
        let m = &shared.metrics;
        m.capture.publish_decode("xdp", decode, published);
        xm.publish_reader(reader, published_reader);
        published_dispatch.publish(&m.dispatch, disp);
    };
    let mut read_kernel =
        |reader: &XdpReader, kernel: &mut [u64; rebuilder_ebpf::Counter::COUNT]| match reader
            .kernel_counters()
        {
            Ok(now) => {
                xm.publish_kernel(&now, kernel);
                *kernel = now;
            }
            Err(e) if !kernel_error_logged => {
                kernel_error_logged = true;
                tracing::warn!(error = %e, "cannot read the XDP program's counters");
            }
            Err(_) => {}
        };
    // One last drain after the stop flag: segments already in the ring are not thrown away
    // (one only, so that a busy link cannot hold the shutdown up).
    let mut last_round = false;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            last_round = true;
        }
        if !more && !last_round {
            if let Err(e) = reader.wait(xdp::RING_POLL).await {
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
        compact(&mut segments, !reader.has_spare(), &disp);
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
                &mut published_dispatch,
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
        &mut published_dispatch,
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
