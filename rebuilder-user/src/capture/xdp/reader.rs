//! Loading, attaching and reading: [`XdpCapture::open`] loads and attaches on the caller's
//! thread (so errors come before anything starts), [`XdpCapture::into_reader`] registers the
//! ring buffer with the capture thread's tokio runtime, and [`XdpReader::drain`] takes records
//! into a [`RecordBatch`] and hands out segments.
//!
//! The one part of the XDP input that touches the kernel's program and maps; the attachment is
//! a bpf_link held by the reader, so it ends when the reader is dropped or the process dies.

use std::io;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use aya::programs::links::FdLink;
use aya::Ebpf;
use rebuilder_ebpf::{Counter, LoadError, MAP_RECORDS};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::attach::{error_chain, plan_attach, run_plan, Attached, AttemptError, XdpError};
use super::batch::RecordBatch;
use super::config::XdpConfig;
use super::record::{EpochClock, ReaderStats, RecordConverter};
use crate::capture::decode::Drop;
use crate::capture::iface::{self, IfaceFacts};
use crate::segment::Segment;

/// How often the ring's reader looks for records the kernel did not wake it for (the program
/// wakes it only past `wakeup_bytes`): the longest a quiet trickle of segments waits.
pub const RING_POLL: std::time::Duration = std::time::Duration::from_millis(2);
/// How often the monotonic-to-epoch offset is sampled again (the wall clock may be stepped).
const CLOCK_REFRESH: Duration = Duration::from_secs(10);

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
