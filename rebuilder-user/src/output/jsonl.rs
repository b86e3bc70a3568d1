//! One JSON object per line per request: the forensic record. Requests cut by a gap are written
//! too (flagged), unlike upstream replay.
//!
//! Two jobs, two places: `encode` turns a request into its line (the line format, the contract
//! readers rely on, is documented there); this module is the writer: its settings
//! ([`JsonlConfig`]), opening the destination, and the thread that drains the output's queue
//! into it, counting lines only once a flush has put them there. Writing is blocking I/O, so it
//! runs on its own thread, not on the runtime. Touches the output's queue and metrics (`super`).

mod encode;
#[cfg(test)]
mod tests;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::JsonlMetrics;
use super::queue::{Queue, Taken};
use super::{DropReason, Mode, OutputError, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_REQUESTS};

pub use encode::{encode_line, encode_line_into, rfc3339_nanos};

const WRITE_BUFFER: usize = 256 * 1024;
/// The reused line buffer is kept up to this capacity (lines of ordinary requests fit).
const KEEP_LINE_CAPACITY: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonlConfig {
    /// File to append to, or `-` for standard output.
    pub path: PathBuf,
    pub queue_requests: usize,
    pub queue_bytes: usize,
}

impl JsonlConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_requests: DEFAULT_QUEUE_REQUESTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }

    pub fn is_stdout(&self) -> bool {
        self.path == Path::new("-")
    }

    pub(crate) fn validate(&self) -> Result<(), OutputError> {
        if self.queue_requests == 0 {
            return Err(OutputError::Zero {
                what: "jsonl queue_requests",
            });
        }
        if self.queue_bytes == 0 {
            return Err(OutputError::Zero {
                what: "jsonl queue_bytes",
            });
        }
        Ok(())
    }

    /// Opens the destination: appends to an existing file rather than truncating a record.
    pub(crate) fn open(&self) -> Result<Box<dyn Write + Send>, OutputError> {
        if self.is_stdout() {
            return Ok(Box::new(std::io::stdout()));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|source| OutputError::JsonlOpen {
                path: self.path.clone(),
                source,
            })?;
        Ok(Box::new(f))
    }
}

/// Where the writer stands: lines are counted as written only once a flush has put them in the
/// destination, so a failing destination (disk full, closed pipe) counts exactly the lines it
/// lost.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Lines in the buffer, not yet flushed.
    pending: u64,
    queue: Arc<Queue>,
    metrics: JsonlMetrics,
    name: String,
    logged: bool,
}

impl Writer {
    fn write_line(&mut self, line: &[u8]) {
        // Flush before the buffer would spill by itself, so every flush is one we observe.
        if self.out.buffer().len() + line.len() > self.out.capacity() {
            self.flush();
        }
        self.pending += 1;
        if let Err(e) = self.out.write_all(line) {
            self.failed(e, "write");
        } else if line.len() >= self.out.capacity() {
            // Too large for the buffer: it went straight to the destination.
            self.flush();
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Ok(()) => {
                self.metrics.written.inc_by(self.pending);
                self.pending = 0;
            }
            Err(e) => self.failed(e, "flush"),
        }
    }

    /// The buffered lines are lost: count them and start over with an empty buffer, so a
    /// half-written buffer is not retried into the middle of a line forever.
    fn failed(&mut self, e: std::io::Error, what: &str) {
        self.metrics.write_errors.inc();
        self.queue.count_drops(DropReason::WriteError, self.pending);
        self.pending = 0;
        if !self.logged {
            self.logged = true;
            tracing::error!(output = %self.name, error = %e, "JSONL {what} failed; further errors are only counted");
        }
        let out = std::mem::replace(&mut self.out, BufWriter::new(Box::new(std::io::sink())));
        let (inner, _discarded) = out.into_parts();
        self.out = BufWriter::with_capacity(WRITE_BUFFER, inner);
    }
}

/// How long an idle writer polls its queue before it blocks.
const POLL_FOR: Duration = Duration::from_millis(50);

/// How often an idle writer looks at its queue. Each look that finds lines writes them all
/// (one `write` per 256 KiB buffered), so the interval sets how many lines a wake-up and a
/// write carry. Live, capture threads hold segments up to 2 ms before handing them over, so
/// looking every 500 µs mostly found a fraction of a hand-over. On the burst, 2 ms instead of
/// 500 µs took the JSON-lines thread from 170 to 141 ms (UDP) and from 141 to 116 ms (XDP)
/// (per-thread CPU from schedstat, medians of 4 alternating runs, lower in all 8 pairs). The
/// queue must hold what arrives in one interval: the default 10,000 requests cover 5 M
/// requests/s; a `queue_requests` set much lower drops (counted, `queue_full`) sooner than it
/// did with 500 µs. Offline (a file replayed at full speed, or paced), 2 ms cost more (75 →
/// 100 ms, and 0.04 CPU s more for the whole replay): thousands of requests then wait between
/// looks and are freed in bulk, their bytes cold in the cache, and the allocator's pages turn
/// over (`perf`: TLB shootdowns, unmapping). So each mode keeps its own.
pub(crate) fn poll_interval(mode: Mode) -> Duration {
    match mode {
        Mode::Live => Duration::from_millis(2),
        Mode::Offline => Duration::from_micros(500),
    }
}

/// Waits for the next request: polls every `every` for up to `POLL_FOR`, then blocks.
fn poll_then_block(queue: &Arc<Queue>, every: Duration) -> Option<Taken> {
    let polls = POLL_FOR.as_micros() / every.as_micros().max(1);
    for _ in 0..polls {
        std::thread::sleep(every);
        if let Some(t) = queue.try_pop() {
            return Some(t);
        }
        if queue.is_closed() {
            break;
        }
    }
    queue.pop_blocking()
}

/// The writer thread: drains the queue into `out`, flushing whenever the queue runs empty (so
/// a reader following the file sees lines promptly while bursts still batch) and at the end.
/// When `abandon` is set (drain deadline passed) the rest is counted as dropped for shutdown.
pub(crate) fn run(
    queue: Arc<Queue>,
    out: Box<dyn Write + Send>,
    metrics: JsonlMetrics,
    abandon: Arc<AtomicBool>,
    name: String,
    poll: Duration,
) {
    let mut w = Writer {
        out: BufWriter::with_capacity(WRITE_BUFFER, out),
        pending: 0,
        queue: Arc::clone(&queue),
        metrics,
        name,
        logged: false,
    };
    // One line buffer, reused: its capacity follows the requests seen, up to a bound.
    let mut line = Vec::new();
    loop {
        let taken = match queue.try_pop() {
            Some(t) => t,
            None => {
                w.flush();
                // Poll a little before blocking: a blocked consumer costs every producer a
                // futex wake-up per request, which at hundreds of thousands of requests per
                // second is most of the output's cost. A few milliseconds of latency are
                // nothing here.
                match poll_then_block(&queue, poll) {
                    Some(t) => t,
                    None => break,
                }
            }
        };
        if abandon.load(Ordering::Relaxed) {
            taken.drop_as(DropReason::Shutdown);
            continue;
        }
        line.clear();
        encode_line_into(&mut line, taken.request());
        w.write_line(&line);
        if line.capacity() > KEEP_LINE_CAPACITY {
            // A multi-megabyte request passed: give its buffer back rather than hold it.
            line = Vec::new();
        }
        // Counted by the writer from here on (written at flush, or dropped on failure).
        taken.done();
    }
    w.flush();
}
