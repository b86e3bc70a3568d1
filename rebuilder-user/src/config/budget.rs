//! The memory budget's arithmetic: how `memory_budget` is divided between the process, the
//! capture's buffers, the output queues, segments in flight and flows ([`MemorySplit`]), and
//! the sizes derived from it when not set. Deterministic, so the same settings always give the
//! same split.
//!
//! It reads the settings and the buffer sizes other rooms declare (the capture pools, the queued
//! request header), and decides nothing else; refusals are [`ConfigError::Value`]s naming the
//! keys to change.

use super::units::ByteSize;
use super::{ConfigError, Settings, XDP_RING_MIN};

/// Smallest `memory_budget` accepted: the process's own part, a capture's buffers and room to
/// work in.
pub const MIN_MEMORY_BUDGET: u64 = 32 << 20;
/// The capture's kernel buffers (the XDP ring, the UDP sockets' receive buffers) get a quarter of
/// the budget when their sizes are not set.
pub const CAPTURE_SHARE_DIVISOR: u64 = 4;
/// The largest ring or receive buffer derived from the budget: 64 MiB absorbs a burst of
/// 0.5 s at 1 Gbit/s.
pub const MAX_DERIVED_CAPTURE_BUFFER: u64 = 64 << 20;
/// Smallest derived receive buffer per socket.
pub const MIN_DERIVED_RECV_BUFFER: u64 = 256 << 10;
/// What is left after the process and the capture (the working memory) must be at least this
/// fraction of the budget (a quarter), or the settings are refused.
pub const WORKING_MIN_DIVISOR: u64 = 4;
/// The output queues' share of the working memory when none is set explicitly: a quarter,
/// split evenly among the configured outputs.
pub const QUEUE_SHARE_DIVISOR: u64 = 4;
/// Explicit queue sizes must leave flows and segments in flight at least this fraction of the
/// working memory (a half).
pub const FLOW_SHARE_MIN_DIVISOR: u64 = 2;
/// Segments on their way from capture to the workers (queued, holding the buffers their
/// payloads are slices of) get an eighth of the working memory, split evenly among the workers.
pub const IN_FLIGHT_SHARE_DIVISOR: u64 = 8;

/// What the process holds before it buffers anything: its code and libraries paged in, the
/// runtimes', the allocator's and the metrics' own structures, the outputs' connections. Measured
/// at 8 to 10 MiB for a release build under load, 14 to 17 MiB for a debug build, whose code is
/// four times larger (`cargo xtask hostile`, README *Memory*).
pub const PROCESS_BASE: u64 = if cfg!(debug_assertions) {
    20 << 20
} else {
    12 << 20
};
/// What each thread adds: its stack as far as it is touched, and the allocator's pages it keeps
/// for its own size classes.
pub const PROCESS_PER_THREAD: u64 = 256 << 10;
/// Threads besides the workers and the capture's: main, the outputs' and status runtime (two),
/// and one for the progress line or the signal handling.
pub const OTHER_THREADS: u64 = 4;
/// What each upstream connection may hold: its response buffer, a 64 KiB head and a 16 KiB
/// read (`output::upstream`), up to twice that as it grows.
pub const UPSTREAM_CONNECTION_BYTES: u64 = 160 << 10;

/// Which input a run reads: each holds different buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// `replay`: a capture file, read through a pool of chunks.
    Pcap,
    /// `run --udp`: VXLAN datagrams from this many sockets.
    Udp { sockets: usize },
    /// `run --iface`: the XDP program's ring buffer.
    Xdp,
}

/// How `memory_budget` is divided, in bytes. Deterministic: the same settings always give the
/// same split.
///
/// - The process: [`PROCESS_BASE`], [`PROCESS_PER_THREAD`] for each thread and
///   [`UPSTREAM_CONNECTION_BYTES`] for each upstream connection.
/// - The capture: the XDP ring (`xdp.ring_size`, mapped into the process, resident once the
///   kernel has written all of it), or the UDP sockets' receive buffers (kernel memory, up to
///   twice `udp.recv_buffer` each, charged to the service's cgroup) and the readers' batch
///   buffers, or the chunks a capture file is read in. Sizes not set take a quarter of the
///   budget between them.
/// - The output queues' overhead: each request a queue may hold has a header beside its bytes,
///   and the allocator rounds its bytes up (by up to a quarter).
/// - The rest is the working memory, which must be at least a quarter of the budget (an error
///   names the keys that take the rest). Each configured output's queue gets its
///   `queue_bytes` when set, else `working / 4 / (number of configured outputs)`; together at
///   most half of it (an error names the keys). Segments in flight get an eighth, divided
///   evenly among the workers; flows get the rest, divided evenly among the workers.
/// - An output that is not configured holds nothing and gets nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySplit {
    /// The process's own part.
    pub process: u64,
    /// The capture's buffers, all of them.
    pub capture: u64,
    /// `SO_RCVBUF` to ask for on each UDP socket (0 for other inputs).
    pub recv_buffer: u64,
    /// The XDP ring buffer's size (0 for other inputs).
    pub xdp_ring: u64,
    /// What requests in the queues hold beyond the bytes the queues count: each request's
    /// header (for as many requests as the queues may hold) and the allocator's rounding of its
    /// bytes (up to a quarter of them).
    pub queue_overhead: u64,
    /// Bytes of the upstream queue (0 without an upstream).
    pub upstream_queue: u64,
    /// Bytes of the JSON lines queue (0 without JSON lines).
    pub jsonl_queue: u64,
    /// Bytes of segments queued for all workers together.
    pub in_flight: u64,
    /// Bytes all flows of all workers may hold together, their tables included.
    pub flows: u64,
}

impl MemorySplit {
    /// What the whole split adds up to: the budget.
    pub fn total(&self) -> u64 {
        self.process
            + self.capture
            + self.queue_overhead
            + self.upstream_queue
            + self.jsonl_queue
            + self.in_flight
            + self.flows
    }
}

/// A size for messages: `12MiB`, `1.5MiB`, `300KiB`.
fn human(b: u64) -> String {
    if b >= 1 << 20 {
        let m = b as f64 / f64::from(1u32 << 20);
        if b.is_multiple_of(1 << 20) {
            format!("{m:.0}MiB")
        } else {
            format!("{m:.1}MiB")
        }
    } else if b >= 1 << 10 {
        format!("{}KiB", b.div_ceil(1 << 10))
    } else {
        format!("{b}B")
    }
}

/// The largest power of two at most `n` (at least 1).
fn pow2_floor(n: u64) -> u64 {
    if n == 0 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

impl Settings {
    /// The XDP ring's size: `xdp.ring_size`, else derived from the budget (see
    /// [`MemorySplit`]).
    pub fn xdp_ring_bytes(&self) -> u64 {
        match self.memory_split(CaptureKind::Xdp) {
            Ok(split) => split.xdp_ring,
            Err(_) => self.xdp.ring_size.map_or(XDP_RING_MIN, ByteSize::bytes),
        }
    }

    /// Splits `memory_budget` for a run reading `capture` (see [`MemorySplit`]). Settings whose
    /// explicit sizes do not fit are refused with an error naming the keys.
    pub fn memory_split(&self, capture: CaptureKind) -> Result<MemorySplit, ConfigError> {
        let budget = self.memory_budget.bytes();
        let workers = self.workers() as u64;
        let upstream = self.upstream.url.is_some();
        let jsonl = self.jsonl.path.is_some();
        let header = crate::request::QUEUED_REQUEST_BYTES as u64;
        let queue_overhead = u64::from(upstream) * self.upstream.queue_requests as u64 * header
            + u64::from(jsonl) * self.jsonl.queue_requests as u64 * header;
        let capture_threads = match capture {
            CaptureKind::Udp { sockets } => sockets.max(1) as u64,
            CaptureKind::Pcap | CaptureKind::Xdp => 1,
        };
        let threads = workers + capture_threads + OTHER_THREADS;
        let connections = if upstream {
            self.upstream.pool_size as u64
        } else {
            0
        };
        let process =
            PROCESS_BASE + PROCESS_PER_THREAD * threads + UPSTREAM_CONNECTION_BYTES * connections;
        // A kernel buffer not set takes a quarter of the budget, halved while that would leave
        // less than a quarter to work in (small budgets).
        let fit = |start: u64, min: u64, bytes: &dyn Fn(u64) -> u64| {
            let mut v = start.max(min);
            while v / 2 >= min
                && process + queue_overhead + bytes(v) + budget / WORKING_MIN_DIVISOR > budget
            {
                v /= 2;
            }
            v
        };
        let share = budget / CAPTURE_SHARE_DIVISOR;
        let (capture_bytes, recv_buffer, xdp_ring, capture_keys) = match capture {
            CaptureKind::Pcap => (crate::capture::pcap::POOL_BYTES as u64, 0, 0, ""),
            CaptureKind::Udp { sockets } => {
                let sockets = sockets.max(1) as u64;
                let pool = sockets * crate::capture::udp::pool_bytes(self.udp.batch) as u64;
                // The kernel holds up to twice what is asked for (SO_RCVBUF's doubling).
                let bytes = |recv: u64| sockets * 2 * recv + pool;
                let recv = match self.udp.recv_buffer {
                    Some(b) => b.bytes(),
                    None => fit(
                        (share / sockets / 2).min(MAX_DERIVED_CAPTURE_BUFFER),
                        MIN_DERIVED_RECV_BUFFER,
                        &bytes,
                    ),
                };
                (
                    bytes(recv),
                    recv,
                    0,
                    "udp.recv_buffer, udp.sockets, udp.batch, ",
                )
            }
            CaptureKind::Xdp => {
                let bytes = |ring: u64| ring + crate::capture::xdp::POOL_BYTES as u64;
                let ring = match self.xdp.ring_size {
                    Some(b) => b.bytes(),
                    None => fit(
                        pow2_floor(share.min(MAX_DERIVED_CAPTURE_BUFFER)),
                        XDP_RING_MIN,
                        &bytes,
                    ),
                };
                (bytes(ring), 0, ring, "xdp.ring_size, ")
            }
        };
        let fixed = process + capture_bytes + queue_overhead;
        let working = budget.saturating_sub(fixed);
        if working < budget / WORKING_MIN_DIVISOR {
            let mut keys = capture_keys.to_string();
            if upstream {
                keys.push_str("upstream.queue_requests, upstream.pool_size, ");
            }
            if jsonl {
                keys.push_str("jsonl.queue_requests, ");
            }
            keys.push_str("reassembly.workers, memory_budget");
            return Err(ConfigError::Value {
                key: keys,
                message: format!(
                    "memory_budget ({}) is too small for this run: the process takes {} ({threads} \
                     threads, {connections} upstream connections), the capture's buffers {}, the \
                     output queues' request headers {}, \
                     which leaves {} where at least a quarter of the budget ({}) is needed for \
                     queues, segments and flows: raise memory_budget, or lower what takes it",
                    self.memory_budget,
                    human(process),
                    human(capture_bytes),
                    human(queue_overhead),
                    human(working),
                    human(budget / WORKING_MIN_DIVISOR),
                ),
            });
        }

        let configured = u64::from(upstream) + u64::from(jsonl);
        let share = working / QUEUE_SHARE_DIVISOR / configured.max(1);
        let queue = |on: bool, explicit: Option<ByteSize>, key: &str| match (on, explicit) {
            (false, _) => Ok(0),
            (true, None) => Ok(share),
            (true, Some(ByteSize(0))) => Err(ConfigError::Value {
                key: key.into(),
                message: "must be above 0 (leave it out to derive it from memory_budget)".into(),
            }),
            (true, Some(b)) => Ok(b.bytes()),
        };
        let upstream_queue = queue(upstream, self.upstream.queue_bytes, "upstream.queue_bytes")?;
        let jsonl_queue = queue(jsonl, self.jsonl.queue_bytes, "jsonl.queue_bytes")?;
        let queues = upstream_queue.saturating_add(jsonl_queue);
        let max_queues = working - working / FLOW_SHARE_MIN_DIVISOR;
        if queues + queues / 4 > max_queues {
            return Err(ConfigError::Value {
                key: "upstream.queue_bytes + jsonl.queue_bytes".into(),
                message: format!(
                    "the output queues ({} + {}, and a quarter more for the allocator's \
                     rounding) may take at most half of what memory_budget ({}) leaves after the \
                     process and the capture ({}), the rest is for flows: lower them or raise \
                     memory_budget",
                    human(upstream_queue),
                    human(jsonl_queue),
                    self.memory_budget,
                    human(working),
                ),
            });
        }
        let rounding = queues / 4;
        let in_flight = working / IN_FLIGHT_SHARE_DIVISOR;
        Ok(MemorySplit {
            process,
            capture: capture_bytes,
            recv_buffer,
            xdp_ring,
            queue_overhead: queue_overhead + rounding,
            upstream_queue,
            jsonl_queue,
            in_flight,
            flows: working - queues - rounding - in_flight,
        })
    }
}
