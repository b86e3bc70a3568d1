//! [`Outputs`]: the fan-out every worker thread submits to. Starts each configured output
//! behind its own queue (the upstream pool's tasks, the JSONL writer's thread), hands each
//! request to every queue, and drains them at shutdown within a deadline, reporting what was
//! left. The outputs themselves are `super::upstream` and `super::jsonl`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use super::metrics::{JsonlMetrics, OutputMetrics, UpstreamMetrics};
use super::queue::Queue;
use super::{
    jsonl, upstream, DrainReport, DropReason, JsonlConfig, Mode, OutputDrain, OutputError,
    OutputTotals, OutputsConfig, QueueDepth, UpstreamConfig,
};
use crate::request::RebuiltRequest;
use crate::status::Health;

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
            let poll = jsonl::poll_interval(mode);
            let (q, a, name) = (
                Arc::clone(&queue),
                Arc::clone(&abandon),
                jcfg.path.display().to_string(),
            );
            let spawned = std::thread::Builder::new()
                .name("rebuilder-jsonl".into())
                .spawn(move || {
                    jsonl::run(q, out, jm, a, name, poll);
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
