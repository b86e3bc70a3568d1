//! The reassembly worker thread: takes its queue's segment batches and ticks, feeds them to its
//! `FlowTable`, and submits each rebuilt request the filter admits to the outputs.
//!
//! One per worker, all alike; it knows its queue, its table, the filter and the outputs, and
//! publishes its stats to the worker metrics. Capture and other workers are out of its sight.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;

use super::{Shared, POLL, PUBLISH_EVERY};
use crate::dispatch::{self, WorkItem, WorkerQueue};
use crate::output::Outputs;
use crate::worker::{FlowTable, WorkerConfig, WorkerStats};

pub(super) fn worker_loop(
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
