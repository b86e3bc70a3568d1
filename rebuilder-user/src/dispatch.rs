//! Sends each segment to the worker that owns its flow, in batches.
//!
//! Both directions of a connection hash to the same worker (the key is made direction-free),
//! so a worker sees the whole conversation when both directions reach this node. Live capture
//! never waits for a worker: a full worker queue drops the batch and counts it. Offline the
//! dispatcher waits instead, so a file is never lossy because the machine is slow.
//!
//! A worker's queue is bounded twice: in batches, and in bytes (a [`ByteRoom`]), because a
//! segment keeps the buffer its payload is a slice of (a capture file chunk, a receive batch,
//! an XDP batch) alive until the worker is done with it. The byte bound is the in-flight share
//! of the memory budget (`Settings::memory_split`).
//!
//! Registers its own counters ([`DispatchMetrics`]): segments handed on, and dropped before
//! reassembly. The capture threads that own a dispatcher publish its counts into them.

use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::FlowKeyMode;
use crate::metrics::ReasonLabel;
use crate::room::ByteRoom;
use crate::segment::{Segment, Timestamp};

/// Segments per message to a worker: amortises the channel's synchronisation.
pub const BATCH: usize = 64;
/// Messages a worker's queue holds.
pub const QUEUE_BATCHES: usize = 256;
/// What a queued segment costs beyond its payload: the segment itself and the headers of the
/// frame its payload was cut from (which the payload's buffer holds too).
pub const SEGMENT_OVERHEAD: usize = size_of::<Segment>() + 128;

pub enum WorkItem {
    Segments(Vec<Segment>),
    /// Time passes (live capture): lets idle workers expire flows and holes.
    Tick(Timestamp),
}

#[derive(Debug, thiserror::Error)]
#[error("all reassembly workers have stopped")]
pub struct WorkersGone;

/// What a batch of segments is charged against its worker's in-flight bytes: each segment and
/// its payload, and the batch's room for more (a batch sent early, when capture goes idle, has
/// room for [`BATCH`] segments). A `Vec`, not a slice: its capacity is allocated too.
#[allow(clippy::ptr_arg)]
pub fn batch_cost(batch: &Vec<Segment>) -> usize {
    batch
        .iter()
        .map(|s| s.payload.len() + SEGMENT_OVERHEAD)
        .sum::<usize>()
        + (batch.capacity() - batch.len()) * size_of::<Segment>()
}

/// A worker's end of its queue. Dropping it (the worker ending, however it ends) closes the
/// queue's byte account, so that a dispatcher waiting for room stops waiting.
pub struct WorkerQueue {
    pub rx: Receiver<WorkItem>,
    pub inflight: Arc<ByteRoom>,
}

impl Drop for WorkerQueue {
    fn drop(&mut self) {
        self.inflight.close();
    }
}

/// The dispatchers' end of every worker's queue: clone it into each capture thread.
#[derive(Clone)]
pub struct Senders {
    senders: Vec<Sender<WorkItem>>,
    inflight: Vec<Arc<ByteRoom>>,
}

/// Creates the queues of `n` workers, each holding at most `bytes_per_worker` of segments.
pub fn queues(n: usize, bytes_per_worker: usize) -> (Senders, Vec<WorkerQueue>) {
    let mut senders = Vec::new();
    let mut inflight = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..n.max(1) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_BATCHES);
        let account = Arc::new(ByteRoom::new(bytes_per_worker));
        senders.push(tx);
        inflight.push(Arc::clone(&account));
        receivers.push(WorkerQueue {
            rx,
            inflight: account,
        });
    }
    (Senders { senders, inflight }, receivers)
}

/// One per capture thread.
pub struct Dispatcher {
    senders: Vec<Sender<WorkItem>>,
    inflight: Vec<Arc<ByteRoom>>,
    pending: Vec<Vec<Segment>>,
    live: bool,
    by_vni: bool,
    hasher: foldhash::fast::FixedState,
    /// Segments handed to workers.
    pub dispatched: u64,
    /// Segments dropped because a worker's queue was full (live only), in batches or bytes.
    pub dropped_queue_full: u64,
}

impl Dispatcher {
    /// `seed` must be the same for every dispatcher of a process, so that all capture threads
    /// send a flow to the same worker.
    pub fn new(senders: Senders, live: bool, flow_key: FlowKeyMode, seed: u64) -> Self {
        let n = senders.senders.len();
        Self {
            senders: senders.senders,
            inflight: senders.inflight,
            pending: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            live,
            by_vni: flow_key == FlowKeyMode::Vni,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            dispatched: 0,
            dropped_queue_full: 0,
        }
    }

    /// Workers this dispatcher sends to.
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    pub fn worker_of(&self, seg: &Segment) -> usize {
        let n = self.senders.len();
        if n == 1 {
            return 0;
        }
        let key = seg.flow.canonical();
        let vni = if self.by_vni { seg.vni } else { 0 };
        (self.hasher.hash_one((key, vni)) % n as u64) as usize
    }

    pub fn push(&mut self, seg: Segment) -> Result<(), WorkersGone> {
        let w = self.worker_of(&seg);
        self.pending[w].push(seg);
        if self.pending[w].len() >= BATCH {
            self.send(w)?;
        }
        Ok(())
    }

    /// Whether segments wait in a partial batch (not yet sent to their worker).
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    /// Sends every partial batch (the capture is idle or done).
    pub fn flush(&mut self) -> Result<(), WorkersGone> {
        for w in 0..self.senders.len() {
            if !self.pending[w].is_empty() {
                self.send(w)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, w: usize) -> Result<(), WorkersGone> {
        let batch = std::mem::replace(&mut self.pending[w], Vec::with_capacity(BATCH));
        let n = batch.len() as u64;
        let cost = batch_cost(&batch);
        let account = &self.inflight[w];
        if self.live {
            if !account.try_reserve(cost) {
                self.dropped_queue_full += n;
                return Ok(());
            }
            match self.senders[w].try_send(WorkItem::Segments(batch)) {
                Ok(()) => self.dispatched += n,
                Err(TrySendError::Full(_)) => {
                    account.release(cost);
                    self.dropped_queue_full += n;
                }
                Err(TrySendError::Disconnected(_)) => return Err(WorkersGone),
            }
        } else {
            if !account.reserve_blocking(cost) {
                return Err(WorkersGone);
            }
            self.senders[w]
                .send(WorkItem::Segments(batch))
                .map_err(|_| WorkersGone)?;
            self.dispatched += n;
        }
        Ok(())
    }

    /// Tells every worker the time; skipped for a worker whose queue is full (it is busy, and
    /// the segments it is working through carry time too).
    pub fn tick(&mut self, now: Timestamp) -> Result<(), WorkersGone> {
        for s in &self.senders {
            if let Err(TrySendError::Disconnected(_)) = s.try_send(WorkItem::Tick(now)) {
                return Err(WorkersGone);
            }
        }
        Ok(())
    }
}

/// The dispatch room's counters, registered by it so the exporter reads them without knowing
/// this room.
pub struct DispatchMetrics {
    pub segments_dispatched: Counter,
    pub segments_dropped: Family<ReasonLabel, Counter>,
}

impl DispatchMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            segments_dispatched: Counter::default(),
            segments_dropped: Family::default(),
        };
        // At zero from the start: an alert on its rate sees 0, not an absent series.
        let _ = m.segments_dropped.get_or_create(&ReasonLabel {
            reason: "worker_queue_full",
        });
        registry.register(
            "rebuilder_segments_dispatched",
            "Segments handed to reassembly workers",
            m.segments_dispatched.clone(),
        );
        registry.register(
            "rebuilder_segments_dropped",
            "Segments dropped before reassembly, by reason",
            m.segments_dropped.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::segment::{FlowKey, TcpFlags};

    fn seg(src_port: u16, reversed: bool) -> Segment {
        let mut flow = FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port,
            dst_port: 80,
        };
        if reversed {
            flow = flow.reversed();
        }
        Segment {
            ts: 0,
            vni: 1,
            flow,
            seq: 0,
            ack: 0,
            flags: TcpFlags(0),
            payload: Bytes::new(),
            wire_len: 0,
        }
    }

    #[test]
    fn both_directions_go_to_one_worker_and_flows_spread() {
        let (tx, _rx) = queues(4, 1 << 20);
        let d = Dispatcher::new(tx, true, FlowKeyMode::Inner, 7);
        let mut used = [false; 4];
        for port in 1000..1200 {
            let w = d.worker_of(&seg(port, false));
            assert_eq!(w, d.worker_of(&seg(port, true)));
            used[w] = true;
        }
        assert!(
            used.iter().all(|u| *u),
            "200 flows should reach all 4 workers"
        );
    }

    #[test]
    fn live_mode_drops_and_counts_when_a_worker_is_full() {
        let (tx, rx) = queues(1, usize::MAX);
        let mut d = Dispatcher::new(tx, true, FlowKeyMode::Inner, 7);
        for _ in 0..(QUEUE_BATCHES + 3) * BATCH {
            d.push(seg(1, false)).unwrap();
        }
        assert_eq!(d.dispatched, (QUEUE_BATCHES * BATCH) as u64);
        assert_eq!(d.dropped_queue_full, (3 * BATCH) as u64);
        drop(rx);
        d.push(seg(1, false)).unwrap();
        assert!(
            d.flush().is_err(),
            "a dead worker is an error, not a silent drop"
        );
    }

    fn with_payload(len: usize) -> Segment {
        let mut s = seg(1, false);
        s.payload = Bytes::from(vec![b'x'; len]);
        s.wire_len = len as u32;
        s
    }

    #[test]
    fn live_mode_drops_batches_over_the_byte_bound_and_counts_them() {
        let cost = batch_cost(&vec![with_payload(9000); BATCH]);
        let (tx, rx) = queues(1, 3 * cost);
        let mut d = Dispatcher::new(tx, true, FlowKeyMode::Inner, 7);
        for _ in 0..5 * BATCH {
            d.push(with_payload(9000)).unwrap();
        }
        assert_eq!(d.dispatched, 3 * BATCH as u64, "three batches fit");
        assert_eq!(d.dropped_queue_full, 2 * BATCH as u64);
        assert_eq!(rx[0].inflight.bytes(), 3 * cost);
        // The worker handles one: room for one more.
        let Ok(WorkItem::Segments(b)) = rx[0].rx.try_recv() else {
            panic!("a batch")
        };
        rx[0].inflight.release(batch_cost(&b));
        for _ in 0..BATCH {
            d.push(with_payload(9000)).unwrap();
        }
        assert_eq!(d.dispatched, 4 * BATCH as u64);
    }

    #[test]
    fn offline_mode_waits_for_room_and_stops_waiting_when_the_worker_is_gone() {
        let cost = batch_cost(&vec![with_payload(1000); BATCH]);
        let (tx, mut rx) = queues(1, cost);
        let mut d = Dispatcher::new(tx, false, FlowKeyMode::Inner, 7);
        for _ in 0..BATCH {
            d.push(with_payload(1000)).unwrap();
        }
        let producer = std::thread::spawn(move || {
            for _ in 0..BATCH {
                d.push(with_payload(1000))?;
            }
            Ok::<_, WorkersGone>(d.dispatched)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !producer.is_finished(),
            "must wait while the bytes are taken"
        );
        let q = rx.remove(0);
        let Ok(WorkItem::Segments(b)) = q.rx.try_recv() else {
            panic!("a batch")
        };
        q.inflight.release(batch_cost(&b));
        assert_eq!(producer.join().unwrap().unwrap(), 2 * BATCH as u64);

        // A worker that stops releases nobody: its end closing ends the wait.
        let (tx, mut rx) = queues(1, cost);
        let mut d = Dispatcher::new(tx, false, FlowKeyMode::Inner, 7);
        for _ in 0..BATCH {
            d.push(with_payload(1000)).unwrap();
        }
        let producer = std::thread::spawn(move || {
            for _ in 0..BATCH {
                d.push(with_payload(1000))?;
            }
            Ok::<_, WorkersGone>(())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(rx.remove(0));
        assert!(producer.join().unwrap().is_err());
    }
}
