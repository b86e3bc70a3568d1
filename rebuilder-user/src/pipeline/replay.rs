//! The file input (`replay`): the thread that reads a capture file, decodes its frames and
//! hands the segments to the workers, as fast as they take them or paced by the timestamps,
//! and the progress line beside it.
//!
//! Reads the file through `capture::pcap`, decodes through `capture::decode`, and talks to the
//! workers only through its `Dispatcher`; offline, the dispatcher waits for room rather than
//! dropping, so nothing read is lost for speed.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics::{publish_pcap, DispatchPublished, PipelineMetrics};
use super::{join, spawn, CaptureCtx, PipelineError, Shared, Summary, POLL, PUBLISH_EVERY};
use crate::capture::decode::{DecodeConfig, DecodeStats, Decoder};
use crate::capture::pcap::{PcapSource, PcapStats};
use crate::dispatch::Dispatcher;

/// Reads `src` to its end (or the stop flag) on its own thread and fills `summary` with what it
/// did; the workers having gone away early is the one error.
pub(super) fn capture(
    src: Box<PcapSource>,
    pace: Option<f64>,
    progress: bool,
    ctx: CaptureCtx<'_>,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let metrics = &ctx.shared.metrics;
    let packets = Arc::new(AtomicU64::new(0));
    let total = src.total_bytes();
    let bytes_read = Arc::new(AtomicU64::new(0));
    let reporter = (progress && std::io::stderr().is_terminal()).then(|| {
        progress_line(
            Arc::clone(&packets),
            Arc::clone(&bytes_read),
            total,
            Arc::clone(metrics),
        )
    });
    let disp = ctx.dispatcher(false);
    let sh = Arc::clone(ctx.shared);
    let pctx = PcapCtx {
        decode_cfg: ctx.decode_cfg,
        pace,
        packets,
        bytes_read,
    };
    let h = spawn("rebuilder-pcap".into(), move || {
        pcap_loop(src, disp, pctx, sh)
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
    Ok(())
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
    let mut published_dispatch = DispatchPublished::default();
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
                // Offline the dispatcher waits for room and never drops: only the dispatched
                // count moves.
                published_dispatch.publish(&shared.metrics.dispatch, &disp);
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
    published_dispatch.publish(&shared.metrics.dispatch, &disp);
    PcapResult {
        stats: src.stats().clone(),
        decode,
        dropped: disp.dropped_queue_full,
        error: src.error().map(|e| e.to_string()),
        workers_gone,
    }
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
