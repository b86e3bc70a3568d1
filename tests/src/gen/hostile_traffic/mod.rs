//! Hostile mirrored traffic: captures in which attackers do what attackers do (floods, spoofed
//! segments, endless bodies and headers, broken encapsulation), with legitimate connections
//! interleaved in the same capture, and what a correct rebuilder must make of each.
//!
//! Every [`HostileCase`] says which requests must come out byte-exact exactly once (the
//! legitimate ones, and the hostile ones that are still well-formed requests), and which drops
//! the rebuilder's end-of-run summary must show, under which reason and how many. The keys are
//! the summary's (`packet:inner_fragment`, `request:incomplete`, ...). Everything is
//! deterministic from the seed.
//!
//! The cases (see [`HostileKind`]): SYN floods without data; many concurrent half-open flows;
//! segments with sequence numbers far outside the window (also one sent before a connection's
//! SYN, which must not poison the connection); overlapping segments with conflicting bytes (first
//! wins); never-ending chunked bodies; 1 MB header lines; requests trickled a byte at a time;
//! endless pipelines; garbage after the VXLAN header; VXLAN without the I flag; inner IP
//! fragments; zero-window probes; out-of-order data behind holes that never fill, more than the
//! memory budget altogether; spoofed segments into live connections (parked ahead, SYNs with new
//! ISNs, RSTs and FINs off the stream's position, one segment before a connection's SYN).
//!
//! This module holds the cases' types and [`build`]; the attacks live one family per
//! submodule (floods, sequence-space attacks, HTTP abuse, broken encapsulation, spoofing), all
//! written through the shared `Builder` in `builder`. Depends only on the generator's own
//! conversation planner and frame encoder; nothing here knows about rebuilder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::encode::Frame;
use crate::error::GenError;
use builder::Builder;

// One module per attack family, each adding its cases to the shared [`Builder`] in an
// `impl Builder` block; `builder` holds the builder and the hand-written connection they use.
mod builder;
mod encapsulation;
mod floods;
mod http_abuse;
mod sequence;
mod spoofing;
#[cfg(test)]
mod tests;

const MSS: usize = 1448;
const NS_PER_MS: u64 = 1_000_000;
/// Where every attacked (and legitimately used) service listens.
pub const VICTIM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 80);
const VICTIM_HOST: &str = "victim.example";

/// The attacks, one capture each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostileKind {
    /// SYNs from many sources, never any data.
    SynFlood,
    /// Many connections opened with a partial request head that never completes.
    HalfOpen,
    /// Segments whose sequence numbers are far outside the window, into attackers' and
    /// legitimate connections, and before a legitimate connection's SYN.
    OutOfWindow,
    /// Overlapping segments with conflicting bytes: the first copy wins.
    ConflictingOverlap,
    /// Chunked bodies that never end.
    EndlessChunked,
    /// Header lines (and request targets) of 1 MB.
    HugeHeader,
    /// Requests sent one byte per segment, some never finished (slowloris).
    Trickle,
    /// Pipelined requests back to back without end.
    EndlessPipeline,
    /// Garbage after a valid VXLAN header.
    VxlanGarbage,
    /// Whole connections encapsulated without the VXLAN I flag.
    VxlanNoIFlag,
    /// Whole connections whose inner IP packets are fragments (IPv4 and IPv6).
    InnerFragments,
    /// Requests held up by a zero window and probed (both probe styles), some forever.
    ZeroWindowProbes,
    /// Connections holding megabytes of out-of-order data behind a hole that never fills:
    /// more than the memory budget altogether, so flows must be evicted.
    OutOfOrderHoles,
    /// PROXY protocol headers that never complete (v2 declaring 64 KiB, held while
    /// incomplete), malformed ones and v1 lines that never end, each followed by a request;
    /// and whole headers trickled a byte per segment.
    ProxyHeaders,
    /// Spoofed segments inside the window of live legitimate connections, ahead of their
    /// streams: junk parked ahead during a pause (long enough for the hole to be skipped),
    /// forged copies of body segments sent before the real ones, and megabytes of parked bytes
    /// flooding the out-of-order buffer during a transfer.
    SpoofedAhead,
    /// SYNs with new ISNs on live legitimate connections (far off, and within the window),
    /// some followed by requests of their own; a retransmitted real SYN.
    SpoofedSyn,
    /// RSTs and FINs with sequence numbers that are not the stream's position (ahead, behind,
    /// out of window) into live legitimate connections, during pauses and transfers.
    SpoofedClose,
    /// One segment sent from a connection's own client endpoint before its SYN, to make the
    /// direction look like no client's or to move its start: a SYN-ACK, a status line, bytes
    /// 64 KiB past the ISN the client will use, or a request head promising a 1 GB body at
    /// the first byte the client's SYN will announce.
    SpoofedFirst,
}

impl HostileKind {
    pub const ALL: [HostileKind; 18] = [
        HostileKind::SynFlood,
        HostileKind::HalfOpen,
        HostileKind::OutOfWindow,
        HostileKind::ConflictingOverlap,
        HostileKind::EndlessChunked,
        HostileKind::HugeHeader,
        HostileKind::Trickle,
        HostileKind::EndlessPipeline,
        HostileKind::VxlanGarbage,
        HostileKind::VxlanNoIFlag,
        HostileKind::InnerFragments,
        HostileKind::ZeroWindowProbes,
        HostileKind::OutOfOrderHoles,
        HostileKind::ProxyHeaders,
        HostileKind::SpoofedAhead,
        HostileKind::SpoofedSyn,
        HostileKind::SpoofedClose,
        HostileKind::SpoofedFirst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HostileKind::SynFlood => "syn-flood",
            HostileKind::HalfOpen => "half-open",
            HostileKind::OutOfWindow => "out-of-window",
            HostileKind::ConflictingOverlap => "conflicting-overlap",
            HostileKind::EndlessChunked => "endless-chunked",
            HostileKind::HugeHeader => "huge-header",
            HostileKind::Trickle => "trickle",
            HostileKind::EndlessPipeline => "endless-pipeline",
            HostileKind::VxlanGarbage => "vxlan-garbage",
            HostileKind::VxlanNoIFlag => "vxlan-no-i-flag",
            HostileKind::InnerFragments => "inner-fragments",
            HostileKind::ZeroWindowProbes => "zero-window-probes",
            HostileKind::OutOfOrderHoles => "out-of-order-holes",
            HostileKind::ProxyHeaders => "proxy-headers",
            HostileKind::SpoofedAhead => "spoofed-ahead",
            HostileKind::SpoofedSyn => "spoofed-syn",
            HostileKind::SpoofedClose => "spoofed-close",
            HostileKind::SpoofedFirst => "spoofed-first",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How big each case is. [`HostileScale::ci`] keeps every capture to a few thousand packets
/// (and forces eviction with a small budget where the attack is volume); [`HostileScale::full`]
/// is what `cargo xtask hostile` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct HostileScale {
    /// SYNs of the flood.
    pub syn_flood: usize,
    /// `--memory-budget` for the SYN flood (None: the default), small enough in CI that the
    /// flood is evicted (and the process's peak RSS is held to it).
    pub syn_flood_budget: Option<&'static str>,
    /// Concurrent half-open flows.
    pub half_open: usize,
    /// Legitimate connections interleaved in every case (three requests each).
    pub legit_connections: usize,
    /// Attacker connections of the cases that have a few big ones.
    pub attackers: usize,
    /// Body bytes each endless chunked body sends before the capture ends.
    pub chunked_bytes: usize,
    /// `--max-body-bytes` for the endless chunked bodies (None: the default, 16MiB).
    pub max_body: Option<&'static str>,
    /// Length of the huge header line or target.
    pub huge_line: usize,
    /// Connections trickling whole requests one byte at a time.
    pub trickle: usize,
    /// Requests on each endless pipeline.
    pub pipeline: usize,
    /// Frames of each kind of VXLAN garbage.
    pub garbage: usize,
    /// Zero-window probes per probed connection.
    pub probes: usize,
    /// Connections holding out-of-order data behind a hole, and how much each holds.
    pub holes: usize,
    pub hole_bytes: usize,
    /// `--memory-budget` for the holes (None: the default).
    pub holes_budget: Option<&'static str>,
    /// Legitimate keep-alive connections with pauses that the spoofing cases aim at.
    pub spoof_victims: usize,
    /// Capture time each case spans.
    pub span: Duration,
}

impl HostileScale {
    pub fn ci() -> Self {
        Self {
            // 48 MiB is the smallest budget that fits a debug build (what `cargo test` runs)
            // with its two outputs' queues: the flows get 8 MiB of it (15 MiB in a release
            // build), about 13,000 (24,000) SYN-only flows; 40,000 SYNs are evicted in both.
            syn_flood: 40_000,
            syn_flood_budget: Some("48MiB"),
            half_open: 5_000,
            legit_connections: 12,
            attackers: 3,
            chunked_bytes: 512 << 10,
            max_body: Some("256KiB"),
            huge_line: 1 << 20,
            trickle: 8,
            pipeline: 2_000,
            garbage: 50,
            probes: 12,
            // 24 MiB of out-of-order data against the same budget's flows (8 MiB, 15 in a
            // release build); each hole's 1.2 MiB (as charged) is more than an eighth of a
            // worker's share either way, so the holes go first, largest first.
            holes: 24,
            hole_bytes: 1 << 20,
            holes_budget: Some("48MiB"),
            spoof_victims: 4,
            span: Duration::from_secs(3),
        }
    }

    pub fn full() -> Self {
        Self {
            syn_flood: 1_000_000,
            syn_flood_budget: None,
            half_open: 100_000,
            legit_connections: 200,
            attackers: 8,
            chunked_bytes: 24 << 20,
            max_body: None,
            huge_line: 1 << 20,
            trickle: 200,
            pipeline: 200_000,
            garbage: 20_000,
            probes: 60,
            holes: 100,
            hole_bytes: 3 << 20,
            holes_budget: None,
            spoof_victims: 40,
            span: Duration::from_secs(20),
        }
    }
}

/// How many times a drop must be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Exactly(u64),
    AtLeast(u64),
}

impl Expect {
    pub fn holds(self, n: u64) -> bool {
        match self {
            Expect::Exactly(e) => n == e,
            Expect::AtLeast(e) => n >= e,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Exactly(n) => write!(f, "{n}"),
            Expect::AtLeast(n) => write!(f, ">= {n}"),
        }
    }
}

/// One hostile capture and what must come of it.
#[derive(Clone, Debug)]
pub struct HostileCase {
    pub kind: HostileKind,
    /// In arrival order.
    pub frames: Vec<Frame>,
    /// Requests of the legitimate connections: each must be replayed byte-exact exactly once.
    pub legit: Vec<Vec<u8>>,
    /// Requests of the hostile connections that are still whole, well-formed requests (a
    /// trickled request, a pipelined one, the first copy of an overlapped one): each must be
    /// replayed byte-exact exactly once too. Nothing else may be replayed.
    pub hostile_delivered: Vec<Vec<u8>>,
    /// Every drop the summary must show, by its key; a key not listed must not appear.
    pub drops: Vec<(String, Expect)>,
    /// Extra `rebuilder replay` flags the case needs.
    pub args: Vec<String>,
    /// A line saying what the case is.
    pub about: String,
}

impl HostileCase {
    /// Every request that must arrive, legitimate ones first.
    pub fn expected(&self) -> impl Iterator<Item = &[u8]> {
        self.legit
            .iter()
            .chain(&self.hostile_delivered)
            .map(Vec::as_slice)
    }
}

/// Builds the capture of one attack at the given scale.
pub fn build(kind: HostileKind, scale: &HostileScale, seed: u64) -> Result<HostileCase, GenError> {
    let mut b = Builder::new(kind, scale, seed);
    b.legit()?;
    match kind {
        HostileKind::SynFlood => b.syn_flood()?,
        HostileKind::HalfOpen => b.half_open()?,
        HostileKind::OutOfWindow => b.out_of_window()?,
        HostileKind::ConflictingOverlap => b.conflicting_overlap()?,
        HostileKind::EndlessChunked => b.endless_chunked()?,
        HostileKind::HugeHeader => b.huge_header()?,
        HostileKind::Trickle => b.trickle()?,
        HostileKind::EndlessPipeline => b.endless_pipeline()?,
        HostileKind::VxlanGarbage => b.vxlan_garbage()?,
        HostileKind::VxlanNoIFlag => b.vxlan_no_i_flag()?,
        HostileKind::InnerFragments => b.inner_fragments()?,
        HostileKind::ZeroWindowProbes => b.zero_window_probes()?,
        HostileKind::OutOfOrderHoles => b.out_of_order_holes()?,
        HostileKind::ProxyHeaders => b.proxy_headers()?,
        HostileKind::SpoofedAhead => b.spoofed_ahead()?,
        HostileKind::SpoofedSyn => b.spoofed_syn()?,
        HostileKind::SpoofedClose => b.spoofed_close()?,
        HostileKind::SpoofedFirst => b.spoofed_first()?,
    }
    Ok(b.finish())
}

/// `n` connections of concurrent half-open flows only, without legitimate traffic: what the
/// RSS-per-flow figures are measured on. Each flow is a SYN and a partial request head.
pub fn concurrent_flows(n: usize, span: Duration, seed: u64) -> Result<HostileCase, GenError> {
    let scale = HostileScale {
        half_open: n,
        legit_connections: 0,
        span,
        ..HostileScale::ci()
    };
    let mut b = Builder::new(HostileKind::HalfOpen, &scale, seed);
    b.half_open()?;
    Ok(b.finish())
}
