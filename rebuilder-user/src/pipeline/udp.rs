//! The UDP input (`run` with UDP capture): one thread per socket receiving VXLAN datagrams in
//! batches, decoding them and handing the segments to the workers, gathered a little (at most
//! `GATHER_MAX_DELAY`) so that the workers get full batches.
//!
//! Receives through `capture::udp`, gathers with `capture::gather`, decodes through
//! `capture::decode`, and talks to the workers only through its `Dispatcher`; live, the
//! dispatcher drops rather than waits, so a slow worker never holds up the socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::compact::compact;
use super::metrics::{DispatchPublished, PipelineMetrics};
use super::{join, now_ns, spawn, CaptureCtx, PipelineError, Shared, Summary, POLL, PUBLISH_EVERY};
use crate::capture::decode::{DecodeStats, Decoder};
use crate::capture::gather::{Gather, Step};
use crate::capture::udp;
use crate::dispatch::Dispatcher;

/// The longest a live capture thread holds segments before the workers get them, and its
/// pause after a thin socket read (see `capture::gather`). The thread holds a segment at most
/// 2 ms, as long as the XDP reader's poll; a datagram that arrives during a pause also waits
/// in the socket for up to the pause first (so up to 3 ms in all). On the burst, 1 ms / 200 µs
/// cost 50 context switches per thousand packets and 2 ms / 1 ms 20, with ~15% less CPU per
/// packet (medians of 3 alternating runs): each read and each hand-over carries more. What
/// arrives during a pause waits in the socket's receive buffer: at 1 M datagrams/s, 1 ms is
/// ~1,000 of them, ~2 MB of kernel memory with MTU-sized frames, which the buffers derived
/// from the default memory budget hold (a small budget, or SO_RCVBUF capped by rmem_max, which
/// `capture::udp` warns about, may not: the kernel then counts drops). A read that fills a
/// quarter of a batch never pauses, so under load the thread reads back to back.
const GATHER_MAX_DELAY: Duration = Duration::from_millis(2);
const GATHER_PAUSE: Duration = Duration::from_millis(1);

/// The most datagrams a capture thread still reads once told to stop (like the XDP reader's
/// last drain).
const LAST_DRAIN_MAX: usize = 4096;

/// Runs one capture thread per socket until the stop flag, and adds what each did to
/// `summary`.
pub(super) fn capture(
    receivers: Vec<udp::UdpReceiver>,
    ctx: CaptureCtx<'_>,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let settings = ctx.settings;
    let mut handles = Vec::new();
    for (i, rx) in receivers.into_iter().enumerate() {
        let disp = ctx.dispatcher(true);
        let (dec, sh) = (Decoder::new(&ctx.decode_cfg), Arc::clone(ctx.shared));
        handles.push(spawn(format!("rebuilder-udp{i}"), move || {
            udp_loop(i, rx, dec, disp, sh)
        })?);
    }
    tracing::info!(addr = %settings.udp.listen, sockets = handles.len(), workers = ctx.n_workers, "capturing VXLAN from UDP");
    for h in handles {
        let r = join(h)?;
        summary.packets += r.datagrams;
        summary.decode.add(&r.decode);
        summary.udp_kernel_drops += r.kernel_drops;
        summary.udp_truncated += r.truncated;
        summary.segments_dropped_queue_full += r.dropped;
    }
    Ok(())
}

struct UdpResult {
    datagrams: u64,
    decode: DecodeStats,
    kernel_drops: u64,
    truncated: u64,
    dropped: u64,
}

/// What a UDP capture thread has published so far, so that each publication adds the deltas.
#[derive(Default)]
struct UdpPublished {
    decode: DecodeStats,
    kernel_drops: u64,
    truncated: u64,
    dispatch: DispatchPublished,
}

impl UdpPublished {
    /// Adds everything the thread counted since the last call.
    fn publish(
        &mut self,
        m: &PipelineMetrics,
        decode: &DecodeStats,
        rx: &mut udp::UdpReceiver,
        disp: &Dispatcher,
    ) {
        m.capture.publish_decode("udp", decode, &self.decode);
        self.decode = decode.clone();
        let kernel_drops = rx.kernel_drops();
        m.capture
            .udp_kernel_drops
            .inc_by(kernel_drops - self.kernel_drops);
        self.kernel_drops = kernel_drops;
        let trunc = rx.truncated_datagrams() - self.truncated;
        if trunc > 0 {
            m.capture
                .packets
                .get_or_create(&crate::metrics::PacketLabels {
                    source: "udp",
                    outcome: "datagram_truncated",
                })
                .inc_by(trunc);
        }
        self.truncated = rx.truncated_datagrams();
        self.dispatch.publish(&m.dispatch, disp);
    }
}

/// One UDP socket's capture thread: receive a batch, decode it, copy it out if the socket's
/// buffer pool has no other free buffer, hand the segments over, and flush when `Gather` says
/// the workers should have them.
fn udp_loop(
    id: usize,
    mut rx: udp::UdpReceiver,
    decoder: Decoder,
    mut disp: Dispatcher,
    shared: Arc<Shared>,
) -> UdpResult {
    let beat = shared.heartbeat(&format!("udp capture {id}"));
    let mut decode = DecodeStats::default();
    let mut published = UdpPublished::default();
    let mut last_publish = Instant::now();
    let mut datagrams = 0u64;
    let mut segments = Vec::new();
    let mut gather = Gather::new(GATHER_MAX_DELAY, GATHER_PAUSE);
    // Datagrams read after the stop flag: what queued in the socket during the last pause is
    // read too (without waiting), up to LAST_DRAIN_MAX so that a busy link cannot hold the
    // shutdown up. The XDP reader does the same with one last drain of its ring.
    let mut after_stop = 0usize;
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let mut gone = false;
        let wait = if stopping {
            Duration::ZERO
        } else {
            gather.wait(POLL)
        };
        let r = rx.recv_batch(wait, |payload, ts| {
            let r = decoder.decode_vxlan_owned(payload, ts);
            decode.record(&r);
            if let Ok(seg) = r {
                segments.push(seg);
            }
        });
        compact(&mut segments, !rx.has_spare(), &disp);
        for seg in segments.drain(..) {
            gone |= disp.push(seg).is_err();
        }
        match r {
            Ok(n) => {
                datagrams += n as u64;
                if n > 0 {
                    shared.health.packets_captured();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "UDP receive failed");
                std::thread::sleep(POLL);
            }
        }
        if !stopping {
            match gather.after_receive(
                rx.last_read(),
                rx.batch(),
                disp.has_pending(),
                Instant::now(),
            ) {
                Step::Flush => gone |= disp.flush().is_err(),
                Step::Read => {}
                Step::Pause(d) => std::thread::sleep(d),
            }
        }
        if gone {
            tracing::error!("reassembly workers are gone; UDP capture {id} stops");
            break;
        }
        if stopping {
            // A read short of a full batch (truncated datagrams count: they were read) emptied
            // the socket, or failed.
            after_stop += rx.last_read();
            if rx.last_read() < rx.batch() || after_stop >= LAST_DRAIN_MAX {
                break;
            }
            continue;
        }
        if let Some(b) = &beat {
            b.beat();
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            // Held segments go first: a worker told the time before it has them could expire
            // a hole they fill.
            if disp.flush().is_err() {
                tracing::error!("reassembly workers are gone; UDP capture {id} stops");
                break;
            }
            let _ = disp.tick(now_ns());
            published.publish(&shared.metrics, &decode, &mut rx, &disp);
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
    // The last counts too (the loop publishes every PUBLISH_EVERY; up to that much of
    // dispatched and dropped segments, kernel drops and truncated datagrams would otherwise
    // never reach /metrics).
    published.publish(&shared.metrics, &decode, &mut rx, &disp);
    UdpResult {
        datagrams,
        decode,
        // What /metrics got, not a second read: a drop between the two would make the run's
        // summary and the metric disagree.
        kernel_drops: published.kernel_drops,
        truncated: rx.truncated_datagrams(),
        dropped: disp.dropped_queue_full,
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::sync::atomic::AtomicBool;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::capture::decode::DecodeConfig;
    use crate::config::FlowKeyMode;
    use crate::dispatch;
    use crate::status::Health;

    #[test]
    fn datagrams_queued_when_the_stop_comes_are_still_read() {
        // A batch of 16 and 100 datagrams queued: the last reads go on until the socket is
        // empty, not one read only. The first is too long for a slot: truncated and counted,
        // it still fills its place in the first read, which is a full one.
        let mut rx = udp::bind(&udp::UdpConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            sockets: 1,
            recv_buffer_bytes: 4 << 20,
            batch: 16,
        })
        .unwrap();
        let rx = rx.remove(0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let n = 100u64;
        // Loopback delivers within send_to: every datagram is queued when it returns.
        for i in 0..n {
            let len = if i == 0 { udp::SLOT_BYTES + 100 } else { 40 };
            tx.send_to(&vec![i as u8; len], rx.local_addr()).unwrap();
        }
        let (senders, _queues) = dispatch::queues(1, 1 << 20);
        let disp = Dispatcher::new(senders, true, FlowKeyMode::Inner, 7);
        // The stop flag is up before the loop starts, as when a signal lands during a pause.
        let shared = Arc::new(Shared {
            metrics: Arc::new(PipelineMetrics::register(&mut Registry::default())),
            health: Health::new(),
            stop: Arc::new(AtomicBool::new(true)),
            live: false,
            max_silence: Duration::from_secs(1),
        });
        let r = udp_loop(0, rx, Decoder::new(&DecodeConfig::default()), disp, shared);
        assert_eq!(r.truncated, 1);
        assert_eq!(r.datagrams, n - 1);
        // 40 bytes are no VXLAN frame: each is a counted drop, none is lost unseen.
        assert_eq!(r.decode.dropped(), n - 1);
    }
}
