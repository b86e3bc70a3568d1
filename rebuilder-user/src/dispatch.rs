//! Sends each segment to the worker that owns its flow, in batches.
//!
//! Both directions of a connection hash to the same worker (the key is made direction-free),
//! so a worker sees the whole conversation when both directions reach this node. Live capture
//! never waits for a worker: a full worker queue drops the batch and counts it. Offline the
//! dispatcher waits instead, so a file is never lossy because the machine is slow.

use std::hash::BuildHasher;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::FlowKeyMode;
use crate::segment::{Segment, Timestamp};

/// Segments per message to a worker: amortises the channel's synchronisation.
pub const BATCH: usize = 64;
/// Messages a worker's queue holds.
pub const QUEUE_BATCHES: usize = 256;

pub enum WorkItem {
    Segments(Vec<Segment>),
    /// Time passes (live capture): lets idle workers expire flows and holes.
    Tick(Timestamp),
}

#[derive(Debug, thiserror::Error)]
#[error("all reassembly workers have stopped")]
pub struct WorkersGone;

/// Creates the queues of `n` workers.
pub fn queues(n: usize) -> (Vec<Sender<WorkItem>>, Vec<Receiver<WorkItem>>) {
    (0..n.max(1))
        .map(|_| crossbeam_channel::bounded(QUEUE_BATCHES))
        .unzip()
}

/// One per capture thread.
pub struct Dispatcher {
    senders: Vec<Sender<WorkItem>>,
    pending: Vec<Vec<Segment>>,
    live: bool,
    by_vni: bool,
    hasher: foldhash::fast::FixedState,
    /// Segments handed to workers.
    pub dispatched: u64,
    /// Segments dropped because a worker's queue was full (live only).
    pub dropped_queue_full: u64,
}

impl Dispatcher {
    /// `seed` must be the same for every dispatcher of a process, so that all capture threads
    /// send a flow to the same worker.
    pub fn new(
        senders: Vec<Sender<WorkItem>>,
        live: bool,
        flow_key: FlowKeyMode,
        seed: u64,
    ) -> Self {
        let n = senders.len();
        Self {
            senders,
            pending: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            live,
            by_vni: flow_key == FlowKeyMode::Vni,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            dispatched: 0,
            dropped_queue_full: 0,
        }
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
        if self.live {
            match self.senders[w].try_send(WorkItem::Segments(batch)) {
                Ok(()) => self.dispatched += n,
                Err(TrySendError::Full(_)) => self.dropped_queue_full += n,
                Err(TrySendError::Disconnected(_)) => return Err(WorkersGone),
            }
        } else {
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

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
        let (tx, _rx) = queues(4);
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
        let (tx, rx) = queues(1);
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
}
