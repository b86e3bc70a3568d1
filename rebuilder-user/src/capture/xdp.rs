//! The XDP input (DESIGN §5): loads `rebuilder-ebpf`'s program, attaches it to the interface
//! receiving the mirrored traffic, and turns the records it writes into the BPF ring buffer
//! into [`Segment`]s.
//!
//! - Attaching: [`plan_attach`] decides which modes to try from the setting and the
//!   interface's facts ([`super::iface`]); [`run_plan`] tries them in order. Both are pure, so
//!   the fallback logic is tested without a kernel. `auto` tries driver (native) mode and falls
//!   back to generic mode, saying why; a busy interface (another XDP program) is an error in
//!   every mode, never a reason to fall back.
//! - Reading: [`XdpCapture::open`] loads and attaches on the caller's thread, so errors come
//!   before anything starts; [`XdpCapture::into_reader`] registers the ring buffer with the
//!   tokio runtime of the capture thread. [`XdpReader::drain`] copies a batch of records into
//!   one buffer (of a pool of two, counted in the memory budget) and hands out slices of it,
//!   because ring memory is released as soon as a record is consumed.
//! - The attachment is a bpf_link ([`rebuilder_ebpf::attach`]) held by the reader: it ends when
//!   the reader is dropped or the process dies, however it dies.

use std::fmt;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aya::maps::{MapData, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::XdpMode;
use aya::Ebpf;
use bytes::{Bytes, BytesMut};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rebuilder_ebpf::{Counter, LoadError, RecordError, RecordHeader, MAP_RECORDS};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::decode::Drop;
use super::iface::{self, IfaceError, IfaceFacts, NativeBlocker};
use crate::config::{Settings, XdpModeSetting};
use crate::metrics::OutcomeLabel;
use crate::segment::{FlowKey, Segment, TcpFlags, Timestamp};

mod check;

pub use check::{check, CheckReport};

/// The mode an XDP program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Native: the driver runs the program before any skb exists.
    Driver,
    /// Generic (skb) mode: the stack runs it, on every interface.
    Generic,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        }
    }

    pub fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which modes to try, in order, and why driver mode is skipped if it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachPlan {
    pub modes: Vec<AttachMode>,
    /// Set when `auto` skips driver mode because a driver rule forbids it.
    pub driver_skipped: Option<String>,
}

/// Decides what to try. `auto` skips driver mode when a known rule blocks it (attaching would
/// only fail); a forced `driver` still tries, so a driver that has lifted its limit is not
/// refused by an outdated rule here (the blockers are added to the error if it fails).
pub fn plan_attach(setting: XdpModeSetting, iface: &str, blockers: &[NativeBlocker]) -> AttachPlan {
    match setting {
        XdpModeSetting::Auto if blockers.is_empty() => AttachPlan {
            modes: vec![AttachMode::Driver, AttachMode::Generic],
            driver_skipped: None,
        },
        XdpModeSetting::Auto => AttachPlan {
            modes: vec![AttachMode::Generic],
            driver_skipped: Some(explain_blockers(iface, blockers)),
        },
        XdpModeSetting::Driver => AttachPlan {
            modes: vec![AttachMode::Driver],
            driver_skipped: None,
        },
        XdpModeSetting::Generic => AttachPlan {
            modes: vec![AttachMode::Generic],
            driver_skipped: None,
        },
    }
}

fn explain_blockers(iface: &str, blockers: &[NativeBlocker]) -> String {
    blockers
        .iter()
        .map(|b| b.explain(iface))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One failed attach attempt: the errno (when the kernel gave one) and the whole message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub errno: Option<i32>,
    pub message: String,
}

impl AttemptError {
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            errno: errno_of(e),
            message: error_chain(e),
        }
    }
}

/// The interface already has an XDP program: EBUSY ("Can't replace active BPF XDP link", or a
/// program attached without a link in the same mode) or EEXIST ("Native and generic XDP can't
/// be active at the same time").
pub fn is_busy(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EBUSY | libc::EEXIST))
}

/// Where and how the program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub iface: String,
    pub mode: AttachMode,
    pub requested: XdpModeSetting,
    /// Why not driver mode, when `auto` settled for generic mode.
    pub fallback: Option<String>,
}

/// Tries the plan's modes in order with `attempt`; the first that attaches wins. A busy
/// interface stops at once (another program is there in some mode: falling back could only
/// fail too, and the operator must know).
pub fn run_plan<T>(
    plan: &AttachPlan,
    setting: XdpModeSetting,
    iface: &str,
    blockers: &[NativeBlocker],
    mut attempt: impl FnMut(AttachMode) -> Result<T, AttemptError>,
) -> Result<(T, Attached), XdpError> {
    let mut fallback = plan.driver_skipped.clone();
    let mut last = None;
    for (i, &mode) in plan.modes.iter().enumerate() {
        match attempt(mode) {
            Ok(t) => {
                return Ok((
                    t,
                    Attached {
                        iface: iface.to_string(),
                        mode,
                        requested: setting,
                        fallback,
                    },
                ))
            }
            Err(e) if is_busy(e.errno) => {
                return Err(XdpError::Busy {
                    iface: iface.to_string(),
                    mode,
                    detail: e.message,
                })
            }
            Err(e) => {
                if i + 1 < plan.modes.len() {
                    fallback = Some(format!("{mode} mode failed: {}", e.message));
                }
                last = Some((mode, e));
            }
        }
    }
    let (mode, e) = last.ok_or(XdpError::NoMode)?;
    let mut hint = String::new();
    if mode == AttachMode::Driver && !blockers.is_empty() {
        hint = format!("; {}", explain_blockers(iface, blockers));
    }
    if e.errno == Some(libc::EPERM) || e.errno == Some(libc::EACCES) {
        hint.push_str(PRIVILEGE_HINT);
    }
    Err(XdpError::Attach {
        iface: iface.to_string(),
        mode,
        error: e.message,
        hint,
    })
}

const PRIVILEGE_HINT: &str = " (XDP needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)";

/// The errno of the first OS error in `e`'s source chain.
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

/// `e` and its sources as one line, skipping a source whose text its parent already shows.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("loading the XDP program: {message}{hint}")]
    Load { message: String, hint: &'static str },
    #[error(
        "an XDP program is already attached to {iface} (is another rebuilder capturing there? \
         `ip -d link show {iface}` shows it): {mode} mode attach refused: {detail}"
    )]
    Busy {
        iface: String,
        mode: AttachMode,
        detail: String,
    },
    #[error("cannot attach the XDP program to {iface} in {mode} mode: {error}{hint}")]
    Attach {
        iface: String,
        mode: AttachMode,
        error: String,
        hint: String,
    },
    #[error("no XDP mode to try")]
    NoMode,
    #[error("XDP ring buffer: {0}")]
    Ring(String),
    #[error("XDP capture thread runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl XdpError {
    fn load(e: &LoadError) -> Self {
        let errno = errno_of(e);
        XdpError::Load {
            message: error_chain(e),
            hint: if errno == Some(libc::EPERM) || errno == Some(libc::EACCES) {
                PRIVILEGE_HINT
            } else {
                ""
            },
        }
    }
}

/// Everything the XDP input needs, from `[xdp]` and `[capture]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    pub iface: String,
    pub mode: XdpModeSetting,
    pub ring_size: u32,
    pub pass_consumed: bool,
    pub inner_ports: Vec<u16>,
    pub vxlan_ports: Vec<u16>,
    pub vni_allow: Vec<u32>,
    pub vni_deny: Vec<u32>,
}

impl XdpConfig {
    pub fn from_settings(s: &Settings, iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            mode: s.xdp.mode,
            // Validated (or derived) to a power of two of at most 1 GiB.
            ring_size: u32::try_from(s.xdp_ring_bytes()).unwrap_or(u32::MAX),
            pass_consumed: s.xdp.pass_consumed,
            inner_ports: s.xdp.ports.clone(),
            vxlan_ports: s.capture.vxlan_ports.clone(),
            vni_allow: s.capture.vni_allow.clone(),
            vni_deny: s.capture.vni_deny.clone(),
        }
    }

    /// What the program is loaded with. The kernel filters by the allow list; the deny list
    /// is applied in userspace ([`RecordConverter`]), which applies both lists.
    pub fn program_config(&self) -> rebuilder_ebpf::Config {
        let mut ports = self.vxlan_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let mut vnis = self.vni_allow.clone();
        vnis.sort_unstable();
        vnis.dedup();
        rebuilder_ebpf::Config {
            vxlan_ports: ports,
            vnis,
            inner_ports: self.inner_ports.clone(),
            pass_consumed: self.pass_consumed,
            ring_size: self.ring_size,
            // A sixteenth of the ring: the reader is woken early enough never to let it fill,
            // and otherwise finds the records on its poll (`RING_POLL`).
            wakeup_bytes: self.ring_size / 16,
        }
    }
}

/// How often the ring's reader looks for records the kernel did not wake it for (the program
/// wakes it only past `wakeup_bytes`): the longest a quiet trickle of segments waits.
pub const RING_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Converts `CLOCK_MONOTONIC` nanoseconds (what `bpf_ktime_get_ns` returns) to nanoseconds
/// since the UNIX epoch, with an offset sampled from both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochClock {
    /// Epoch time minus monotonic time, in nanoseconds.
    offset_ns: i128,
}

impl EpochClock {
    pub fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Samples both clocks now. The wall clock is read between two monotonic reads and paired
    /// with their midpoint, which bounds the error by half the time the reads took.
    pub fn sample() -> Self {
        let before = monotonic_ns();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let after = monotonic_ns();
        let mid = (i128::from(before) + i128::from(after)) / 2;
        Self {
            offset_ns: wall as i128 - mid,
        }
    }

    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// The epoch time of monotonic instant `mono_ns`, clamped to the `u64` range.
    pub fn to_epoch(&self, mono_ns: u64) -> Timestamp {
        let t = i128::from(mono_ns) + self.offset_ns;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`;
    // CLOCK_MONOTONIC always exists on Linux. Rust's Instant does not expose its nanoseconds.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Turns ring records into segments, applying the VNI lists.
#[derive(Clone, Debug)]
pub struct RecordConverter {
    /// Sorted, deduplicated: binary searches over a few entries.
    vni_allow: Vec<u32>,
    vni_deny: Vec<u32>,
    pub clock: EpochClock,
}

impl RecordConverter {
    pub fn new(vni_allow: &[u32], vni_deny: &[u32], clock: EpochClock) -> Self {
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        Self {
            vni_allow: sorted(vni_allow),
            vni_deny: sorted(vni_deny),
            clock,
        }
    }

    /// The segment a parsed record describes; `payload` is the record's captured bytes, copied
    /// out of the ring. A denied VNI is a counted drop, as on the other inputs.
    pub fn convert(&self, h: &RecordHeader, payload: Bytes) -> Result<Segment, Drop> {
        let denied = self.vni_deny.binary_search(&h.vni).is_ok()
            || (!self.vni_allow.is_empty() && self.vni_allow.binary_search(&h.vni).is_err());
        if denied {
            return Err(Drop::VniDenied);
        }
        Ok(Segment {
            ts: self.clock.to_epoch(h.ts_ns),
            vni: h.vni,
            flow: FlowKey {
                src: h.src_ip(),
                dst: h.dst_ip(),
                src_port: h.src_port,
                dst_port: h.dst_port,
            },
            seq: h.seq,
            ack: h.ack,
            flags: TcpFlags(h.tcp_flags),
            payload,
            wire_len: h.wire_len,
        })
    }
}

/// Kinds of records [`rebuilder_ebpf::parse_record`] rejects, for the metric label.
pub const RECORD_ERRORS: [&str; 5] = [
    "short",
    "family",
    "captured_beyond_record",
    "captured_beyond_max",
    "captured_beyond_wire",
];

fn record_error_index(e: &RecordError) -> usize {
    match e {
        RecordError::Short { .. } => 0,
        RecordError::Family(_) => 1,
        RecordError::CapturedBeyondRecord { .. } => 2,
        RecordError::CapturedBeyondMax { .. } => 3,
        RecordError::CapturedBeyondWire { .. } => 4,
    }
}

/// What the reader has done, in plain integers (published as deltas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records taken from the ring, good or bad.
    pub records: u64,
    /// Records [`rebuilder_ebpf::parse_record`] rejected, by [`RECORD_ERRORS`] index.
    pub record_errors: [u64; RECORD_ERRORS.len()],
}

impl ReaderStats {
    pub fn bad_records(&self) -> u64 {
        self.record_errors.iter().sum()
    }
}

/// What the drop label of a record the reader could not parse says.
pub const BAD_RECORD: Drop = Drop::Malformed("unreadable XDP ring record");

/// How often the monotonic-to-epoch offset is sampled again (the wall clock may be stepped).
const CLOCK_REFRESH: Duration = Duration::from_secs(10);
/// Payload bytes one batch copies at most before handing its segments out.
pub const BATCH_BYTES: usize = 1 << 20;
/// What one batch buffer allocates: the batch and one more record's payload, taken before the
/// batch is known to be full.
const BATCH_BUFFER: usize = BATCH_BYTES + rebuilder_ebpf::PAYLOAD_MAX as usize;
/// Batch buffers the reader keeps: one being filled while the previous batch's segments are
/// still on their way to the workers.
pub use super::pool::POOL_BATCHES;
/// What the reader's pool of batch buffers holds, counted in the memory budget.
pub const POOL_BYTES: usize = POOL_BATCHES * crate::memory::alloc_size(BATCH_BUFFER);

/// Records taken from the ring, their payloads copied into one buffer: the ring space is
/// released record by record as they are taken, and one allocation serves the whole batch.
/// Buffers come from a pool of [`POOL_BATCHES`]: one whose segments are all gone is filled
/// again. The caller keeps the pool from running dry: when [`RecordBatch::has_spare`] says no
/// other buffer is free, it copies the batch's payloads out, which frees the buffer at once.
#[derive(Debug)]
pub struct RecordBatch {
    arena: BytesMut,
    /// The buffers of the last batches handed out, whole, most recent last.
    pool: super::pool::BufferPool,
    /// Header and payload range in `arena`, or `None` for a record that did not parse.
    pending: Vec<Option<(RecordHeader, usize, usize)>>,
    stats: ReaderStats,
}

impl Default for RecordBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatch {
    pub fn new() -> Self {
        Self {
            arena: BytesMut::new(),
            pool: super::pool::BufferPool::new(),
            pending: Vec::new(),
            stats: ReaderStats::default(),
        }
    }

    /// Enough payload copied: hand the batch out before taking more.
    pub fn is_full(&self) -> bool {
        self.arena.len() >= BATCH_BYTES
    }

    /// A buffer to copy payloads into: a free one of the pool, else a new one.
    fn start_buffer(&mut self) {
        if let Some(mut m) = self.pool.take_free() {
            m.clear();
            if m.capacity() >= BATCH_BUFFER {
                self.arena = m;
                return;
            }
        }
        self.arena = BytesMut::with_capacity(BATCH_BUFFER);
    }

    /// Whether the next batch has a free buffer besides the one the last batch is in.
    pub fn has_spare(&self) -> bool {
        self.pool.has_spare()
    }

    /// Parses one ring record and copies its payload; a record that does not parse is counted
    /// and handed out as [`BAD_RECORD`].
    pub fn take(&mut self, record: &[u8]) {
        if self.arena.capacity() == 0 {
            self.start_buffer();
        }
        self.stats.records += 1;
        match rebuilder_ebpf::parse_record(record) {
            Ok((h, payload)) => {
                let start = self.arena.len();
                self.arena.extend_from_slice(payload);
                self.pending.push(Some((h, start, payload.len())));
            }
            Err(e) => {
                if let Some(c) = self.stats.record_errors.get_mut(record_error_index(&e)) {
                    *c += 1;
                }
                tracing::debug!(error = %e, "unreadable XDP ring record skipped");
                self.pending.push(None);
            }
        }
    }

    /// Hands every record taken since the last call to `f`, in order, as a segment (its payload
    /// a slice of the batch's buffer) or the reason it was dropped.
    pub fn hand_out(&mut self, conv: &RecordConverter, mut f: impl FnMut(Result<Segment, Drop>)) {
        if self.pending.is_empty() {
            return;
        }
        let buf: Bytes = std::mem::take(&mut self.arena).freeze();
        for rec in self.pending.drain(..) {
            match rec {
                Some((h, start, len)) => f(conv.convert(&h, buf.slice(start..start + len))),
                None => f(Err(BAD_RECORD)),
            }
        }
        self.pool.keep(buf);
    }

    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }
}

/// Loaded and attached, not yet reading: made on any thread, sent to the capture thread.
pub struct XdpCapture {
    ebpf: Ebpf,
    link: FdLink,
    ring: RingBuf<MapData>,
    attached: Attached,
    facts: IfaceFacts,
    converter: RecordConverter,
}

impl XdpCapture {
    /// Loads the program with `cfg`, attaches it (see [`plan_attach`]), and logs how: one line,
    /// with the reason when `auto` fell back to generic mode.
    pub fn open(cfg: &XdpConfig) -> Result<Self, XdpError> {
        let facts = iface::probe(&cfg.iface)?;
        let blockers = iface::native_blockers(&facts);
        let mut ebpf =
            rebuilder_ebpf::load(&cfg.program_config()).map_err(|e| XdpError::load(&e))?;
        let plan = plan_attach(cfg.mode, &cfg.iface, &blockers);
        let (link, attached) = run_plan(&plan, cfg.mode, &cfg.iface, &blockers, |mode| {
            rebuilder_ebpf::attach(&mut ebpf, &cfg.iface, mode.xdp_mode())
                .map_err(|e| AttemptError::from_error(&e))
        })?;
        match &attached.fallback {
            Some(why) => tracing::warn!(
                iface = %attached.iface,
                "XDP program attached in generic mode, not driver mode: {why}"
            ),
            None => tracing::info!(
                iface = %attached.iface,
                mode = %attached.mode,
                driver = facts.driver_name().unwrap_or("unknown"),
                mtu = facts.mtu,
                "XDP program attached"
            ),
        }
        let map = ebpf
            .take_map(MAP_RECORDS)
            .ok_or_else(|| XdpError::Ring(format!("the object has no map {MAP_RECORDS:?}")))?;
        let ring = RingBuf::try_from(map).map_err(|e| XdpError::Ring(error_chain(&e)))?;
        Ok(Self {
            ebpf,
            link,
            ring,
            attached,
            facts,
            converter: RecordConverter::new(&cfg.vni_allow, &cfg.vni_deny, EpochClock::sample()),
        })
    }

    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    pub fn facts(&self) -> &IfaceFacts {
        &self.facts
    }

    /// Registers the ring buffer with the current tokio runtime (call it inside one: the
    /// capture thread's own).
    pub fn into_reader(self) -> Result<XdpReader, XdpError> {
        // register_with_interest panics outside a runtime; say so instead.
        tokio::runtime::Handle::try_current()
            .map_err(|e| XdpError::Ring(format!("no tokio runtime to register with: {e}")))?;
        // SAFETY: the RingBuf owns its map, which owns the descriptor (an OwnedFd) for as long
        // as the RingBuf lives; the AsyncFd owns the RingBuf, so the descriptor stays open and
        // the same until the AsyncFd is dropped. `get_mut` is only used to take records, never
        // to swap the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(self.ring, Interest::READABLE) }
            .map_err(|e| XdpError::Ring(format!("registering with the runtime: {e}")))?;
        Ok(XdpReader {
            ring,
            ebpf: self.ebpf,
            _link: self.link,
            attached: self.attached,
            converter: self.converter,
            clock_sampled: Instant::now(),
            batch: RecordBatch::new(),
        })
    }
}

/// What one [`XdpReader::drain`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    pub records: usize,
    /// The drain stopped at its limit: records may be waiting, do not wait before the next.
    pub more: bool,
}

/// Reads the ring buffer on the capture thread's runtime.
pub struct XdpReader {
    ring: AsyncFd<RingBuf<MapData>>,
    ebpf: Ebpf,
    /// Keeps the program attached: dropping it (or dying) detaches.
    _link: FdLink,
    attached: Attached,
    converter: RecordConverter,
    clock_sampled: Instant,
    batch: RecordBatch,
}

impl XdpReader {
    /// Waits until the ring has records or `timeout` passes. Readiness is cleared before the
    /// caller drains, so a record committed during the drain wakes the next wait.
    pub async fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        match tokio::time::timeout(timeout, self.ring.readable_mut()).await {
            Ok(Ok(mut guard)) => {
                guard.clear_ready();
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Ok(()),
        }
    }

    /// Takes up to `max_records` records from the ring and hands each to `f` as a segment or
    /// the reason it was dropped.
    pub fn drain(&mut self, max_records: usize, f: impl FnMut(Result<Segment, Drop>)) -> Drained {
        if self.clock_sampled.elapsed() >= CLOCK_REFRESH {
            self.converter.clock = EpochClock::sample();
            self.clock_sampled = Instant::now();
        }
        let ring = self.ring.get_mut();
        let mut taken = 0;
        while taken < max_records && !self.batch.is_full() {
            let Some(item) = ring.next() else { break };
            taken += 1;
            self.batch.take(&item);
            // `item` drops here: the kernel may reuse its ring space from now on.
        }
        let more = taken == max_records || self.batch.is_full();
        self.batch.hand_out(&self.converter, f);
        Drained {
            records: taken,
            more,
        }
    }

    pub fn stats(&self) -> &ReaderStats {
        self.batch.stats()
    }

    /// Whether the next drain has a free batch buffer besides the one the last drain filled
    /// (see [`RecordBatch::has_spare`]).
    pub fn has_spare(&self) -> bool {
        self.batch.has_spare()
    }

    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    /// The program's counters, summed over CPUs, by [`Counter::index`].
    pub fn kernel_counters(&self) -> Result<[u64; Counter::COUNT], LoadError> {
        rebuilder_ebpf::read_counters(&self.ebpf)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttachLabels {
    pub iface: String,
    pub mode: &'static str,
    pub requested: &'static str,
    /// Why not driver mode, when `auto` fell back; empty otherwise.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabels {
    pub iface: String,
    /// The driver's statistic name without its queue (`ethtool -S`), e.g. `xdp_drop`.
    pub counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceLabel {
    pub iface: String,
}

/// Metrics of the XDP input.
pub struct XdpMetrics {
    /// Kernel counters that are packet outcomes (each packet counts in exactly one).
    pub packets: Family<OutcomeLabel, PromCounter>,
    pub seen: PromCounter,
    pub truncated: PromCounter,
    pub pushed_bytes: PromCounter,
    pub records: PromCounter,
    pub record_errors: Family<ErrorLabel, PromCounter>,
    pub attached: Family<AttachLabels, Gauge>,
    /// The NIC driver's XDP statistics ([`super::nic`]), summed over queues.
    pub driver_packets: Family<DriverLabels, PromCounter>,
    /// Packets the driver took into its XDP path that the program never saw.
    pub driver_dropped: Family<IfaceLabel, PromCounter>,
}

impl XdpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            packets: Family::default(),
            seen: PromCounter::default(),
            truncated: PromCounter::default(),
            pushed_bytes: PromCounter::default(),
            records: PromCounter::default(),
            record_errors: Family::default(),
            attached: Family::default(),
            driver_packets: Family::default(),
            driver_dropped: Family::default(),
        };
        // Every label exists from the start, so a dashboard sees zeros, not gaps.
        for c in Counter::ALL.into_iter().filter(|c| c.is_outcome()) {
            let _ = m.packets.get_or_create(&OutcomeLabel { outcome: c.name() });
        }
        for error in RECORD_ERRORS {
            let _ = m.record_errors.get_or_create(&ErrorLabel { error });
        }
        let r = registry;
        r.register(
            "rebuilder_xdp_packets",
            "Packets the XDP program handled, by outcome (kernel counters; the outcomes add up \
             to rebuilder_xdp_seen_packets_total; ring_full is a segment lost for lack of ring space)",
            m.packets.clone(),
        );
        r.register(
            "rebuilder_xdp_seen_packets",
            "Packets the XDP program saw (kernel counter)",
            m.seen.clone(),
        );
        r.register(
            "rebuilder_xdp_truncated_segments",
            Counter::Truncated.help(),
            m.truncated.clone(),
        );
        r.register(
            "rebuilder_xdp_pushed_bytes",
            Counter::PushedBytes.help(),
            m.pushed_bytes.clone(),
        );
        r.register(
            "rebuilder_xdp_records",
            "Records read from the XDP ring buffer",
            m.records.clone(),
        );
        r.register(
            "rebuilder_xdp_record_errors",
            "XDP ring records that could not be read, skipped (counted as packets dropped, \
             outcome malformed)",
            m.record_errors.clone(),
        );
        r.register(
            "rebuilder_xdp_driver_packets",
            "The NIC driver's own XDP statistics (ethtool -S), summed over queues, by the \
             driver's name for them without the queue (ENA: xdp_drop, xdp_pass, ...)",
            m.driver_packets.clone(),
        );
        r.register(
            "rebuilder_xdp_driver_dropped_packets",
            "Packets the driver took into its XDP path that the program never saw, in driver \
             mode (ENA drops frames that do not fit one receive buffer): the driver's count \
             beyond the program's",
            m.driver_dropped.clone(),
        );
        r.register(
            "rebuilder_xdp_attached",
            "1 for the interface and mode the XDP program is attached in; reason says why not \
             driver mode when auto fell back to generic",
            m.attached.clone(),
        );
        m
    }

    /// Publishes `now - before` of the driver's XDP statistics; a statistic that went back
    /// (the driver reset its queues) counts from zero again.
    pub fn publish_driver(
        &self,
        iface: &str,
        now: &std::collections::BTreeMap<String, u64>,
        before: &std::collections::BTreeMap<String, u64>,
    ) {
        for (counter, &v) in now {
            let b = before.get(counter).copied().unwrap_or(0);
            let d = if v >= b { v - b } else { v };
            let c = self.driver_packets.get_or_create(&DriverLabels {
                iface: iface.to_string(),
                counter: counter.clone(),
            });
            c.inc_by(d);
        }
    }

    pub fn driver_dropped(&self, iface: &str, n: u64) {
        self.driver_dropped
            .get_or_create(&IfaceLabel {
                iface: iface.to_string(),
            })
            .inc_by(n);
    }

    pub fn set_attached(&self, a: &Attached) {
        if a.mode == AttachMode::Driver {
            // At zero from the start: the driver's loss is measured in driver mode only.
            self.driver_dropped(&a.iface, 0);
        }
        self.attached
            .get_or_create(&AttachLabels {
                iface: a.iface.clone(),
                mode: a.mode.as_str(),
                requested: a.requested.as_str(),
                reason: a.fallback.clone().unwrap_or_default(),
            })
            .set(1);
    }

    /// Publishes `now - before` of the kernel counters.
    pub fn publish_kernel(&self, now: &[u64; Counter::COUNT], before: &[u64; Counter::COUNT]) {
        for c in Counter::ALL {
            let i = c.index() as usize;
            let (Some(a), Some(b)) = (now.get(i), before.get(i)) else {
                continue;
            };
            let d = a.saturating_sub(*b);
            if d == 0 {
                continue;
            }
            match c {
                Counter::Seen => self.seen.inc_by(d),
                Counter::Truncated => self.truncated.inc_by(d),
                Counter::PushedBytes => self.pushed_bytes.inc_by(d),
                _ => self
                    .packets
                    .get_or_create(&OutcomeLabel { outcome: c.name() })
                    .inc_by(d),
            };
        }
    }

    /// Publishes `now - before` of the reader's counts.
    pub fn publish_reader(&self, now: &ReaderStats, before: &ReaderStats) {
        self.records
            .inc_by(now.records.saturating_sub(before.records));
        for ((error, a), b) in RECORD_ERRORS
            .iter()
            .zip(&now.record_errors)
            .zip(&before.record_errors)
        {
            if a > b {
                self.record_errors
                    .get_or_create(&ErrorLabel { error })
                    .inc_by(a - b);
            }
        }
    }
}

#[cfg(test)]
mod tests;
