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
//! memory budget altogether.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use etherparse::Ipv4Header;

use super::conversation::{
    flags, Conversation, ConversationPlan, Direction, MirrorPath, Origin, PlannedPacket,
    DEFAULT_EPOCH,
};
use super::encode::{Encoder, Frame, VXLAN_HEADER_LEN};
use super::http;
use crate::error::GenError;
use crate::rng::SplitMix64;

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
}

impl HostileKind {
    pub const ALL: [HostileKind; 17] = [
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

struct Builder<'a> {
    kind: HostileKind,
    scale: &'a HostileScale,
    rng: SplitMix64,
    frames: Vec<Frame>,
    legit: Vec<Vec<u8>>,
    hostile_delivered: Vec<Vec<u8>>,
    drops: Vec<(String, Expect)>,
    args: Vec<String>,
    about: String,
    /// Plans of the legitimate connections, for cases that aim at them.
    legit_plans: Vec<ConversationPlan>,
    next_id: u64,
}

fn epoch_ns() -> u64 {
    u64::try_from(DEFAULT_EPOCH.as_nanos()).unwrap_or(0)
}

fn span_ns(span: Duration) -> u64 {
    u64::try_from(span.as_nanos())
        .unwrap_or(u64::MAX / 4)
        .max(1)
}

/// Attacker `i`'s address: 172.16.0.0/12, 60,000 ports per address.
fn attacker(i: usize) -> SocketAddr {
    let host = 0xAC10_0000u32 + 1 + (i / 60_000) as u32;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(host)), 1024 + (i % 60_000) as u16)
}

fn attacker_v6(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xbad, 0, 0, 0, 0, 0, 1 + i as u16)),
        20_000 + i as u16,
    )
}

impl<'a> Builder<'a> {
    fn new(kind: HostileKind, scale: &'a HostileScale, seed: u64) -> Self {
        Self {
            kind,
            scale,
            rng: SplitMix64::new(seed ^ 0x4057_11e0_0000_0000 ^ kind as u64),
            frames: Vec::new(),
            legit: Vec::new(),
            hostile_delivered: Vec::new(),
            drops: Vec::new(),
            args: Vec::new(),
            about: String::new(),
            legit_plans: Vec::new(),
            next_id: 1,
        }
    }

    fn finish(mut self) -> HostileCase {
        // Stable: frames given the same time keep the order they were made in.
        self.frames.sort_by_key(|f| f.ts);
        HostileCase {
            kind: self.kind,
            frames: self.frames,
            legit: self.legit,
            hostile_delivered: self.hostile_delivered,
            drops: self.drops,
            args: self.args,
            about: self.about,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn expect(&mut self, key: &str, e: Expect) {
        self.drops.push((key.to_string(), e));
    }

    /// Time `i` of `n` evenly over the span, from the epoch.
    fn at(&self, i: usize, n: usize) -> u64 {
        let span = span_ns(self.scale.span);
        epoch_ns() + (u128::from(span) * i as u128 / n.max(1) as u128) as u64
    }

    fn conn(&mut self, client: SocketAddr, vni: u32) -> RawConn {
        let isn = self.rng.next_u32();
        let id = self.id();
        RawConn::new(id, client, VICTIM, vni, isn, self.rng.next_u32())
    }

    /// The legitimate traffic every case carries: keep-alive connections spread over the span,
    /// each a GET, a POST with a body over several segments and a chunked POST, all unique.
    fn legit(&mut self) -> Result<(), GenError> {
        let n = self.scale.legit_connections;
        let resp = http::ok_response(32);
        for i in 0..n {
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1)),
                30_000 + (i % 30_000) as u16,
            );
            let tag = format!("{}-{i}", self.kind.name());
            let conv = Conversation::new(client, VICTIM)
                .id(self.id())
                .seed(self.rng.next_u64())
                .start(Duration::from_nanos(self.at(i, n) + 777))
                .exchange(
                    http::get_with_id(
                        "shop.example",
                        &format!("/legit/{tag}"),
                        &format!("l-{tag}"),
                    ),
                    resp.clone(),
                )
                .exchange(
                    http::post_with_id(
                        "shop.example",
                        &format!("/legit/{tag}/form"),
                        3000 + i,
                        i as u64,
                        Some(&format!("p-{tag}")),
                    ),
                    resp.clone(),
                )
                .exchange(
                    http::chunked_post(
                        "shop.example",
                        &format!("/legit/{tag}/chunked"),
                        &[100, 2000, 7],
                        i as u64,
                    ),
                    resp.clone(),
                );
            let plan = conv.build()?;
            self.legit
                .extend(plan.truth.rebuildable().map(<[u8]>::to_vec));
            for f in plan.frames() {
                self.frames.push(f?);
            }
            self.legit_plans.push(plan);
        }
        Ok(())
    }

    fn syn_flood(&mut self) -> Result<(), GenError> {
        let n = self.scale.syn_flood;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
        }
        match self.scale.syn_flood_budget {
            Some(budget) => {
                self.args.extend(["--memory-budget".into(), budget.into()]);
                // The flood is bigger than the budget: flows are evicted, none in the middle
                // of a request (SYN-only flows hold none, and legitimate ones are recent).
                self.expect("flow:evicted", Expect::AtLeast(1));
                self.about = format!("{n} SYNs, no data, memory budget {budget}");
            }
            None => {
                self.expect("flow:evicted", Expect::AtLeast(1));
                self.about = format!("{n} SYNs, no data");
            }
        }
        Ok(())
    }

    fn half_open(&mut self) -> Result<(), GenError> {
        let n = self.scale.half_open;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let head = format!(
                "GET /half-open/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nUser-Agent: slow\r\nX-Hold: "
            );
            self.frames.push(c.send(ts + 50_000, head.as_bytes())?);
        }
        // Still open when the capture ends: each partial request is counted, none replayed.
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!("{n} concurrent connections, each a partial head, never finished");
        Ok(())
    }

    fn out_of_window(&mut self) -> Result<(), GenError> {
        // Far from anything a receiver would accept: half the sequence space, a quarter ahead,
        // 256 MiB behind.
        const FAR: [u32; 3] = [0x8000_0000, 0x4000_0000, 0u32.wrapping_sub(0x1000_0000)];
        let mut out_of_window = 0u64;
        let mut second_connections = 0u64;
        let plans = std::mem::take(&mut self.legit_plans);
        for (i, plan) in plans.iter().enumerate() {
            let Some(syn) = plan.packets().first() else {
                continue;
            };
            let t = plan.truth.client;
            let mut spoof = RawConn::new(
                self.id(),
                t,
                plan.truth.server,
                plan.truth.vni,
                plan.client_isn,
                plan.server_isn,
            );
            let data_seq = plan.client_isn.wrapping_add(1);
            for (k, far) in FAR.iter().enumerate() {
                let req = format!("GET /injected/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n");
                // Right after the SYN, and again in the middle of the connection.
                for ts in [syn.ts + 1 + k as u64, mid_ts(plan) + 1 + k as u64] {
                    self.frames.push(spoof.packet(
                        ts,
                        Direction::ClientToServer,
                        data_seq.wrapping_add(*far),
                        flags::ACK | flags::PSH,
                        req.as_bytes(),
                    )?);
                    out_of_window += 1;
                }
            }
            if i % 2 == 0 {
                // Before the SYN: the first segment seen for this 4-tuple is the spoofed one,
                // which must not leave the real connection out of its window. It starts a
                // connection of its own (picked up mid-stream); the real SYN then starts a
                // second one beside it, and the injections half the sequence space off (at
                // the spoofed segment's own sequence number) fall in the first one's window.
                second_connections += 1;
                out_of_window -= 2;
                self.frames.push(spoof.packet(
                    syn.ts.saturating_sub(1000),
                    Direction::ClientToServer,
                    data_seq.wrapping_add(0x8000_0000),
                    flags::ACK | flags::PSH,
                    b"\x00\x01\x02 not a request, never a request \x03\x04",
                )?);
            }
        }
        self.legit_plans = plans;
        let n = self.scale.attackers;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let base = c.next;
            for (k, far) in FAR.iter().enumerate() {
                let req = format!("GET /far/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n");
                self.frames.push(c.packet(
                    ts + 1000 * (k as u64 + 1),
                    Direction::ClientToServer,
                    base.wrapping_add(*far),
                    flags::ACK | flags::PSH,
                    req.as_bytes(),
                )?);
                out_of_window += 1;
            }
        }
        self.expect("segment:out_of_window", Expect::Exactly(out_of_window));
        self.expect(
            "segment:second_connection",
            Expect::Exactly(second_connections),
        );
        self.about = format!(
            "{out_of_window} segments 256MiB to 2GiB off, into legitimate and attackers' connections; spoofed segments before SYNs"
        );
        Ok(())
    }

    fn conflicting_overlap(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let mut conflicts = 0u64;
        for i in 0..n {
            for pattern in 0..3u8 {
                let ts = self.at(i * 3 + usize::from(pattern), n * 3);
                let mut c = self.conn(attacker(i * 3 + usize::from(pattern)), 7);
                let req = http::post_with_id(
                    VICTIM_HOST,
                    &format!("/overlap/{i}/{pattern}"),
                    4000,
                    i as u64,
                    Some(&format!("o-{i}-{pattern}")),
                );
                self.frames.push(c.syn(ts)?);
                let base = c.next;
                let s1 = 0..MSS;
                let s2 = MSS..2 * MSS;
                let s3 = 2 * MSS..req.len();
                let seg = |r: &std::ops::Range<usize>| req.get(r.clone()).unwrap_or_default();
                let forged: Vec<u8> = seg(&s2).iter().map(|b| b ^ 0x01).collect();
                let seq = |off: usize| base.wrapping_add(off as u32);
                let mut t = ts + 10_000;
                let mut send = |c: &mut RawConn, off: usize, bytes: &[u8]| {
                    t += 10_000;
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        seq(off),
                        flags::ACK | flags::PSH,
                        bytes,
                    )
                };
                let mut delivered = req.clone();
                match pattern {
                    // In order, then a forged copy of delivered bytes: trimmed as a duplicate.
                    0 => {
                        for r in [&s1, &s2, &s3] {
                            self.frames.push(send(&mut c, r.start, seg(r))?);
                        }
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                    }
                    // The real copy waits out of order, the forged one conflicts with it.
                    1 => {
                        self.frames.push(send(&mut c, s2.start, seg(&s2))?);
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                        self.frames.push(send(&mut c, s1.start, seg(&s1))?);
                        self.frames.push(send(&mut c, s3.start, seg(&s3))?);
                        conflicts += s2.len() as u64;
                    }
                    // The forged copy comes first: it wins, as documented.
                    _ => {
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                        self.frames.push(send(&mut c, s2.start, seg(&s2))?);
                        self.frames.push(send(&mut c, s1.start, seg(&s1))?);
                        self.frames.push(send(&mut c, s3.start, seg(&s3))?);
                        conflicts += s2.len() as u64;
                        if let Some(d) = delivered.get_mut(s2.clone()) {
                            d.copy_from_slice(&forged);
                        }
                    }
                }
                c.next = seq(req.len());
                t += 10_000;
                self.frames.push(c.fin(t)?);
                self.hostile_delivered.push(delivered);
            }
        }
        self.expect("bytes:conflict", Expect::Exactly(conflicts));
        self.about = format!(
            "{} connections re-sending a body segment with other bytes, before, between and after the real one",
            n * 3
        );
        Ok(())
    }

    fn endless_chunked(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let total = self.scale.chunked_bytes;
        for i in 0..n {
            let ts = self.at(i, n * 2);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = format!(
                "POST /endless/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            if i == 0 {
                // One chunk announced as 2^44 bytes.
                stream.extend_from_slice(b"100000000000\r\n");
                stream.extend(http::body_bytes(total, i as u64));
            } else {
                let chunk = http::body_bytes(1024, i as u64);
                while stream.len() < total {
                    stream.extend_from_slice(b"400\r\n");
                    stream.extend_from_slice(&chunk);
                    stream.extend_from_slice(b"\r\n");
                }
            }
            let gap = span_ns(self.scale.span) / 2 / (stream.len() / MSS + 1) as u64;
            self.frames
                .extend(c.stream(ts + 1000, gap.max(1), &stream)?);
        }
        if let Some(max) = self.scale.max_body {
            self.args.extend(["--max-body-bytes".into(), max.into()]);
        }
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!(
            "{n} chunked bodies of {} that never end",
            human(self.scale.chunked_bytes)
        );
        Ok(())
    }

    fn huge_header(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let line = vec![b'a'; self.scale.huge_line];
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = Vec::new();
            if i % 2 == 0 {
                stream.extend_from_slice(
                    format!("GET /huge-header/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nX-Huge: ")
                        .as_bytes(),
                );
                stream.extend_from_slice(&line);
                stream.extend_from_slice(b"\r\n\r\n");
            } else {
                stream.extend_from_slice(b"GET /");
                stream.extend_from_slice(&line);
                stream.extend_from_slice(
                    format!(" HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n").as_bytes(),
                );
            }
            // The connection goes on: the next request must be found and replayed.
            let after =
                http::get_with_id(VICTIM_HOST, &format!("/after-huge/{i}"), &format!("h-{i}"));
            stream.extend_from_slice(&after);
            self.hostile_delivered.push(after);
            self.frames.extend(c.stream(ts + 1000, 2000, &stream)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        self.expect("request:head_too_large", Expect::Exactly(n as u64));
        self.about = format!(
            "{n} requests with a {} header line or target, each followed by a good one",
            human(self.scale.huge_line)
        );
        Ok(())
    }

    fn trickle(&mut self) -> Result<(), GenError> {
        let n = self.scale.trickle;
        let slow = self.scale.attackers;
        let span = span_ns(self.scale.span);
        for i in 0..n + slow {
            let ts = self.at(i, n + slow) / 2 + epoch_ns() / 2;
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let bytes = if i < n {
                let req =
                    http::get_with_id(VICTIM_HOST, &format!("/trickle/{i}"), &format!("t-{i}"));
                self.hostile_delivered.push(req.clone());
                req
            } else {
                // Slowloris: header after header, never the blank line.
                let mut b =
                    format!("GET /slowloris/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n").into_bytes();
                let mut k = 0;
                while b.len() < 2000 {
                    b.extend_from_slice(format!("X-Slow-{k}: {k}\r\n").as_bytes());
                    k += 1;
                }
                b
            };
            let gap = span / 2 / bytes.len() as u64;
            for (k, byte) in bytes.iter().enumerate() {
                self.frames
                    .push(c.send(ts + 1000 + gap * k as u64, std::slice::from_ref(byte))?);
            }
            if i < n {
                self.frames
                    .push(c.fin(ts + 2000 + gap * bytes.len() as u64)?);
            }
        }
        self.expect("request:incomplete", Expect::Exactly(slow as u64));
        self.about =
            format!("{n} requests sent a byte per segment, {slow} slowloris heads never finished");
        Ok(())
    }

    fn endless_pipeline(&mut self) -> Result<(), GenError> {
        let conns = 2usize;
        let per = self.scale.pipeline / conns;
        for i in 0..conns {
            let ts = self.at(i, conns * 4);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = Vec::new();
            for k in 0..per {
                let req = format!("GET /pipe/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n")
                    .into_bytes();
                stream.extend_from_slice(&req);
                self.hostile_delivered.push(req);
            }
            // The capture ends in the middle of the next one.
            stream.extend_from_slice(format!("GET /pipe/{i}/{per} HTTP/1.1\r\nHo").as_bytes());
            let gap = span_ns(self.scale.span) / 2 / (stream.len() / MSS + 1) as u64;
            self.frames
                .extend(c.stream(ts + 1000, gap.max(1), &stream)?);
        }
        self.expect("request:incomplete", Expect::Exactly(conns as u64));
        self.about = format!(
            "{conns} connections pipelining {per} requests each without pause, never closed"
        );
        Ok(())
    }

    fn vxlan_garbage(&mut self) -> Result<(), GenError> {
        let n = self.scale.garbage;
        let mut c = self.conn(attacker(0), 7);
        let template = c.packet(
            epoch_ns(),
            Direction::ClientToServer,
            c.next,
            flags::ACK,
            b"x",
        )?;
        for i in 0..4 * n {
            let ts = self.at(i, 4 * n) + 333;
            let len = 60 + self.rng.below(1400) as usize;
            let mut inner: Vec<u8> = (0..len).map(|_| self.rng.next_u32() as u8).collect();
            let flavour = i % 4;
            match flavour {
                // Random bytes whose type field is not IP (nor a VLAN tag).
                0 => {
                    let types: [u16; 4] = [0x0806, 0x88cc, 0x1234, 0x9000];
                    let t = types[self.rng.below(4) as usize].to_be_bytes();
                    inner[12..14].copy_from_slice(&t);
                }
                // A valid IPv4 header carrying UDP, then random bytes.
                1 => {
                    inner[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                    let payload = (len - 14 - 20) as u16;
                    let ip =
                        Ipv4Header::new(payload, 64, etherparse::IpNumber::UDP, [1; 4], [2; 4])
                            .map_err(|e| GenError::TooLarge(e.to_string()))?;
                    inner[14..34].copy_from_slice(&ip.to_bytes());
                }
                // IPv4 whose total length is shorter than its own header.
                2 => {
                    inner[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                    inner.resize(inner.len().max(34), 0);
                    inner[14] = 0x45;
                    inner[16..18].copy_from_slice(&10u16.to_be_bytes());
                }
                // Not even a whole VXLAN header.
                _ => inner.clear(),
            }
            let mut f = template.clone();
            f.ts = Duration::from_nanos(ts);
            if flavour == 3 {
                let short = (self.rng.below(VXLAN_HEADER_LEN as u64 - 1) + 1) as usize;
                f.data.truncate(f.vxlan_offset + short);
            } else {
                f.data.truncate(f.vxlan_offset + VXLAN_HEADER_LEN);
                f.data.extend_from_slice(&inner);
            }
            fix_outer_lengths(&mut f)?;
            self.frames.push(f);
        }
        for key in [
            "packet:inner_not_ip",
            "packet:inner_not_tcp",
            "packet:malformed",
            "packet:vxlan_too_short",
        ] {
            self.expect(key, Expect::Exactly(n as u64));
        }
        self.about = format!("{} frames of garbage after the VXLAN header", 4 * n);
        Ok(())
    }

    /// Whole attacker connections (SYN, a request, FIN), as frames.
    fn attacker_conversations(
        &mut self,
        n: usize,
        what: &str,
        v6: bool,
    ) -> Result<Vec<Frame>, GenError> {
        let mut out = Vec::new();
        for i in 0..n {
            let client = if v6 { attacker_v6(i) } else { attacker(i) };
            let server = if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 1)), 80)
            } else {
                VICTIM
            };
            let plan = Conversation::new(client, server)
                .id(self.id())
                .seed(self.rng.next_u64())
                .start(Duration::from_nanos(self.at(i, n) + 555))
                .exchange(
                    http::post(VICTIM_HOST, &format!("/{what}/{i}"), 5000, i as u64),
                    http::ok_response(8),
                )
                .build()?;
            for f in plan.frames() {
                out.push(f?);
            }
        }
        Ok(out)
    }

    fn vxlan_no_i_flag(&mut self) -> Result<(), GenError> {
        let frames = self.attacker_conversations(self.scale.attackers * 4, "no-i-flag", false)?;
        let n = frames.len();
        for (k, mut f) in frames.into_iter().enumerate() {
            // Reserved bits set or not, only the I flag is missing.
            let flags = [0x00, 0x80, 0x04, 0xf7][k % 4];
            if let Some(b) = f.data.get_mut(f.vxlan_offset) {
                *b = flags;
            }
            self.frames.push(f);
        }
        self.expect("packet:vxlan_no_i_flag", Expect::Exactly(n as u64));
        self.about = format!("{n} frames of whole connections without the VXLAN I flag");
        Ok(())
    }

    fn inner_fragments(&mut self) -> Result<(), GenError> {
        let v4 = self.attacker_conversations(self.scale.attackers * 2, "frag4", false)?;
        let v6 = self.attacker_conversations(self.scale.attackers * 2, "frag6", true)?;
        let n = v4.len() + v6.len();
        for (k, mut f) in v4.into_iter().enumerate() {
            let ip = f.vxlan_offset + VXLAN_HEADER_LEN + 14;
            // More fragments follow, or this is a later fragment (offset 185 × 8).
            let field: u16 = if k % 2 == 0 { 0x2000 } else { 185 };
            if let Some(b) = f.data.get_mut(ip + 6..ip + 8) {
                b.copy_from_slice(&field.to_be_bytes());
            }
            refresh_ipv4_checksum(&mut f.data, ip);
            self.frames.push(f);
        }
        for (k, mut f) in v6.into_iter().enumerate() {
            let ip = f.vxlan_offset + VXLAN_HEADER_LEN + 14;
            insert_ipv6_fragment_header(&mut f, ip, k % 2 == 0)?;
            self.frames.push(f);
        }
        self.expect("packet:inner_fragment", Expect::Exactly(n as u64));
        self.about = format!("{n} frames of whole connections as inner IPv4 and IPv6 fragments");
        Ok(())
    }

    fn zero_window_probes(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let probes = self.scale.probes;
        let every = 250 * NS_PER_MS;
        for i in 0..2 * n {
            let forever = i >= n;
            let ts = self.at(i, 2 * n) / 2 + epoch_ns() / 2;
            let mut c = self.conn(attacker(i), 7);
            let req = http::post_with_id(
                VICTIM_HOST,
                &format!("/zero-window/{i}"),
                6000,
                i as u64,
                Some(&format!("z-{i}")),
            );
            self.frames.push(c.syn(ts)?);
            self.frames.push(c.syn_ack(ts + 1000)?);
            // The server's window closes after the first 3000 bytes.
            let first = 3000;
            self.frames
                .extend(c.stream(ts + 2000, 1000, req.get(..first).unwrap_or_default())?);
            let held = c.next;
            let probe_byte = req.get(first..=first).unwrap_or_default().to_vec();
            let mut t = ts + 100_000;
            for p in 0..probes {
                t += every;
                let frame = if p % 2 == 0 {
                    // Linux: an old sequence number, no data: asks for an ACK.
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        held.wrapping_sub(1),
                        flags::ACK,
                        b"",
                    )?
                } else {
                    // BSD: the next byte, beyond the closed window, again and again.
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        held,
                        flags::ACK | flags::PSH,
                        &probe_byte,
                    )?
                };
                self.frames.push(frame);
                let ack = c.server_packet(t + 10_000, flags::ACK, b"")?;
                self.frames.push(ack);
            }
            if !forever {
                // The window opens: the rest, from the probed byte on.
                let rest = req.get(first..).unwrap_or_default().to_vec();
                let frames = c.stream(t + every, 1000, &rest)?;
                let end = frames.last().map_or(t, |f| ts_ns(f.ts));
                self.frames.extend(frames);
                self.frames.push(c.fin(end + 1000)?);
                self.hostile_delivered.push(req);
            }
        }
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!(
            "{} requests held by a zero window for {probes} probes ({n} forever)",
            2 * n
        );
        Ok(())
    }
}

impl Builder<'_> {
    fn out_of_order_holes(&mut self) -> Result<(), GenError> {
        let n = self.scale.holes;
        let per = self.scale.hole_bytes;
        // All within half a second of capture time, so that no hole is given up for waiting
        // (the reordering timeout is 1 s): only the budget can free them.
        let window = span_ns(self.scale.span).min(500 * NS_PER_MS);
        for i in 0..n {
            let ts = epoch_ns() + window / 4 * i as u64 / n as u64;
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            // The first byte never comes; everything after it does, in jumbo segments.
            let data = http::body_bytes(per, i as u64);
            let base = c.next.wrapping_add(1);
            let gap = window / 2 / (per / JUMBO_MSS + 1) as u64;
            for (k, chunk) in data.chunks(JUMBO_MSS).enumerate() {
                self.frames.push(c.packet(
                    ts + 1000 + gap * k as u64,
                    Direction::ClientToServer,
                    base.wrapping_add((k * JUMBO_MSS) as u32),
                    flags::ACK,
                    chunk,
                )?);
            }
        }
        if let Some(b) = self.scale.holes_budget {
            self.args.extend(["--memory-budget".into(), b.into()]);
        }
        self.expect("flow:evicted", Expect::AtLeast(1));
        self.about = format!(
            "{n} connections holding {} each behind a hole that never fills{}",
            human(per),
            self.scale
                .holes_budget
                .map_or(String::new(), |b| format!(", memory budget {b}"))
        );
        Ok(())
    }
}

impl Builder<'_> {
    /// The spoofing cases' victims: keep-alive connections whose requests (all legitimate,
    /// all expected byte-exact once) are `VICTIM_PAUSE` apart.
    fn victims(&mut self) -> Result<Vec<Victim>, GenError> {
        let n = self.scale.spoof_victims;
        let resp = http::ok_response(32);
        let mut out = Vec::new();
        for i in 0..n {
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 2, (i / 250) as u8, (i % 250) as u8 + 1)),
                40_000 + i as u16,
            );
            let tag = format!("{}-{i}", self.kind.name());
            let requests = [
                http::get_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/1"),
                    &format!("v1-{tag}"),
                ),
                http::post_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/2"),
                    VICTIM_BODIES[0],
                    i as u64,
                    Some(&format!("v2-{tag}")),
                ),
                http::get_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/3"),
                    &format!("v3-{tag}"),
                ),
                http::post_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/4"),
                    VICTIM_BODIES[1],
                    i as u64 + 1,
                    Some(&format!("v4-{tag}")),
                ),
            ];
            let mut conv = Conversation::new(client, VICTIM)
                .id(self.id())
                .seed(self.rng.next_u64())
                .think_time(VICTIM_PAUSE)
                .start(Duration::from_nanos(self.at(i, n) + 991));
            let mut stream = Vec::new();
            let mut starts = Vec::new();
            for r in requests {
                starts.push(stream.len());
                stream.extend_from_slice(&r);
                conv = conv.exchange(r, resp.clone());
            }
            let plan = conv.build()?;
            self.legit
                .extend(plan.truth.rebuildable().map(<[u8]>::to_vec));
            for f in plan.frames() {
                self.frames.push(f?);
            }
            out.push(Victim {
                plan,
                stream,
                starts,
            });
        }
        Ok(out)
    }

    fn spoofed_ahead(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let (mut conflicts, mut rewinds) = (0u64, 0u64);
        let junk = [b'#'; 64];
        let flood = [b'#'; MSS];
        for v in &victims {
            let mut spoof = v.raw(self.id());
            let push = |spoof: &mut RawConn, ts: u64, off: usize, bytes: &[u8]| {
                spoof.packet(
                    ts,
                    Direction::ClientToServer,
                    v.seq(off),
                    flags::ACK | flags::PSH,
                    bytes,
                )
            };
            // (a) In the pause before request 2: junk 64 KiB ahead, and more of it 1.2 s
            // later, which finds the hole waited out and skips it. Request 2 then arrives
            // where the stream really is: the skip is undone.
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let ahead = off2 + (64 << 10);
            self.frames
                .push(push(&mut spoof, t2 - 1_400 * NS_PER_MS, ahead, &junk)?);
            self.frames.push(push(
                &mut spoof,
                t2 - 200 * NS_PER_MS,
                ahead + junk.len(),
                &junk,
            )?);
            rewinds += 1;
            // (b) During request 2's body: forged bytes inside three later segments (7 bytes
            // in from either end), sent before the real ones. Each real segment arrives in order
            // and covers its forged bytes: it wins, as in Linux's receive path. (Forged bytes
            // that the stream reaches before their real copy, i.e. that start exactly where it
            // continues, are read by the server's TCP too, and delivered by rebuilder alike.)
            let body = v.request_packets(1);
            if let (Some((t, _)), Some(later)) = (body.get(1), body.get(5..8)) {
                for (k, (_, r)) in later.iter().enumerate() {
                    let inner = r.start + 7..r.end - 7;
                    let forged: Vec<u8> =
                        v.stream[inner.clone()].iter().map(|b| b ^ 0x01).collect();
                    conflicts += forged.len() as u64;
                    self.frames
                        .push(push(&mut spoof, t + 1 + k as u64, inner.start, &forged)?);
                }
            }
            // (c) During request 4's body: ~5 MiB parked 1 MiB ahead, 80 segments after each
            // real one: more than a stream's out-of-order buffer (4 MiB), while the stream
            // moves, so the far end of the buffer is pruned and the stream never skips.
            let body = v.request_packets(3);
            let mut at = v.starts[3] + (1 << 20);
            for (t, _) in body.iter().skip(1).take(body.len().saturating_sub(3)) {
                for k in 0..80u64 {
                    self.frames.push(push(&mut spoof, t + 1 + k, at, &flood)?);
                    at += flood.len();
                }
            }
        }
        self.expect("bytes:conflict", Expect::Exactly(conflicts));
        self.expect("stream:rewound", Expect::Exactly(rewinds));
        self.expect("segment:pruned", Expect::AtLeast(1));
        self.about = format!(
            "{} live connections: junk parked 64 KiB ahead in pauses, forged copies of body segments ahead of the real ones, 5 MiB parked ahead during a transfer",
            victims.len()
        );
        Ok(())
    }

    fn spoofed_syn(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let mut second = 0u64;
        for (i, v) in victims.iter().enumerate() {
            let mut spoof = v.raw(self.id());
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let request = |what: &str| {
                format!("GET /spoofed-syn/{i}/{what} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n")
                    .into_bytes()
            };
            // (a) In the pause before request 2: a SYN with an ISN far off; every other one
            // followed by a request of its own (replayed as what it is: a whole request).
            let isn = v
                .plan
                .client_isn
                .wrapping_add(0x4000_0000)
                .wrapping_add(i as u32);
            let t = t2 - 1_000 * NS_PER_MS;
            self.frames
                .push(spoof.packet(t, Direction::ClientToServer, isn, flags::SYN, b"")?);
            second += 1;
            if i % 2 == 0 {
                let r = request("far");
                self.frames.push(spoof.packet(
                    t + 1000,
                    Direction::ClientToServer,
                    isn.wrapping_add(1),
                    flags::ACK | flags::PSH,
                    &r,
                )?);
                self.hostile_delivered.push(r);
            }
            // (b) During request 2's body: a SYN whose ISN is 512 KiB ahead of the real stream,
            // inside its window; every other one with a request.
            let body = v.request_packets(1);
            if let Some((t, _)) = body.get(2) {
                let isn = v.seq(off2 + (512 << 10));
                self.frames.push(spoof.packet(
                    t + 1,
                    Direction::ClientToServer,
                    isn,
                    flags::SYN,
                    b"",
                )?);
                second += 1;
                if i % 2 == 1 {
                    let r = request("near");
                    self.frames.push(spoof.packet(
                        t + 2,
                        Direction::ClientToServer,
                        isn.wrapping_add(1),
                        flags::ACK | flags::PSH,
                        &r,
                    )?);
                    self.hostile_delivered.push(r);
                }
            }
            // (c) In the pause before request 3: the real SYN again, as a stale retransmission.
            let t3 = v.request_ts(2);
            self.frames.push(spoof.packet(
                t3 - 500 * NS_PER_MS,
                Direction::ClientToServer,
                v.plan.client_isn,
                flags::SYN,
                b"",
            )?);
        }
        self.expect("segment:second_connection", Expect::Exactly(second));
        self.about = format!(
            "{} live connections, each sent two SYNs with new ISNs (far off, and within the window), some with requests, and its own SYN again",
            victims.len()
        );
        Ok(())
    }

    fn spoofed_close(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let (mut rst, mut fin, mut oow) = (0u64, 0u64, 0u64);
        for v in &victims {
            let mut spoof = v.raw(self.id());
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let ctl = |spoof: &mut RawConn, ts: u64, seq: u32, f: u8| {
                spoof.packet(ts, Direction::ClientToServer, seq, f, b"")
            };
            // (a) In the pause before request 2: RSTs ahead, behind and far out of the window,
            // and a FIN ahead, which request 2 (20 KB) then runs past.
            let t = t2 - 1_400 * NS_PER_MS;
            self.frames
                .push(ctl(&mut spoof, t, v.seq(off2 + 1000), flags::RST)?);
            self.frames.push(ctl(
                &mut spoof,
                t + 1,
                v.seq(off2 - 100),
                flags::RST | flags::ACK,
            )?);
            self.frames.push(ctl(
                &mut spoof,
                t + 2,
                v.seq(off2).wrapping_add(0x1000_0000),
                flags::RST,
            )?);
            self.frames.push(ctl(
                &mut spoof,
                t + 3,
                v.seq(off2 + 5000),
                flags::FIN | flags::ACK,
            )?);
            rst += 2;
            oow += 1;
            fin += 1;
            // (b) During request 2's body: a RST at a later segment's sequence number and one
            // at an earlier one.
            let body = v.request_packets(1);
            if let (Some((t, early)), Some((_, late))) = (body.get(3), body.get(6)) {
                self.frames
                    .push(ctl(&mut spoof, t + 1, v.seq(late.start), flags::RST)?);
                self.frames.push(ctl(
                    &mut spoof,
                    t + 2,
                    v.seq(early.start),
                    flags::RST | flags::ACK,
                )?);
                rst += 2;
            }
            // (c) During request 4's body: a FIN 8 segments ahead, inside a segment, which the
            // body runs past. (One exactly where a segment of the body will end is the
            // sender's as far as anyone can tell: it ends the server's side of the connection
            // too, as Linux queues it and acts on it when its sequence number is reached.)
            let body = v.request_packets(3);
            if let (Some((t, _)), Some((_, ahead))) = (body.get(1), body.get(9)) {
                self.frames.push(ctl(
                    &mut spoof,
                    t + 1,
                    v.seq(ahead.start + 100),
                    flags::FIN | flags::ACK,
                )?);
                fin += 1;
            }
        }
        self.expect("segment:rst_ignored", Expect::Exactly(rst));
        self.expect("segment:fin_ignored", Expect::Exactly(fin));
        self.expect("segment:out_of_window", Expect::Exactly(oow));
        self.about = format!(
            "{} live connections sent RSTs ahead, behind and out of window, and FINs ahead of their streams",
            victims.len()
        );
        Ok(())
    }

    fn proxy_headers(&mut self) -> Result<(), GenError> {
        use super::proxy;
        let n = self.scale.attackers;
        let held = n * 4;
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 4444);
        let mut k = 0;
        let mut next = |b: &mut Self| {
            k += 1;
            (k, b.conn(attacker(k), 7))
        };
        // v2 headers declaring the largest length and sending half of it: held (and charged)
        // until the capture ends, then counted as truncated.
        for i in 0..held {
            let (_, mut c) = next(self);
            let ts = self.at(i, held);
            self.frames.push(c.syn(ts)?);
            let full = proxy::v2(src, VICTIM, &proxy::tlv(0xE0, &vec![b'p'; 65_535 - 12 - 3]));
            self.frames
                .extend(c.stream(ts + 1000, 2000, &full[..full.len() / 2])?);
        }
        // Malformed headers, then a request: counted, the stream resynchronises, the request
        // arrives (without a client IP of its own).
        let bad: [&[u8]; 3] = [
            b"PROXY TCP4 300.1.1.1 10.9.0.1 1 80\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x91\x11\x00\x0c000000000000",
            b"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
        ];
        for i in 0..n {
            let (k, mut c) = next(self);
            let ts = self.at(i, n) + 500;
            self.frames.push(c.syn(ts)?);
            let req = http::get_with_id(
                VICTIM_HOST,
                &format!("/after-bad-proxy/{k}"),
                &format!("pb-{k}"),
            );
            self.hostile_delivered.push(req.clone());
            // In a segment of its own, as a load balancer sends a header: the framer takes a
            // segment's start for a line start, so the request after it is found even when the
            // broken header is binary (glued to it in one segment, it would be skipped with
            // the header, as in any pickup).
            self.frames.push(c.send(ts + 1000, bad[i % bad.len()])?);
            self.frames.extend(c.stream(ts + 2000, 2000, &req)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        // A whole header a byte per segment, then a request: stripped, the request arrives.
        for i in 0..n {
            let (k, mut c) = next(self);
            let ts = self.at(i, n) + 700;
            self.frames.push(c.syn(ts)?);
            let header = proxy::v2(src, VICTIM, &proxy::aws_tlvs("vpce-0bad", VICTIM_HOST));
            for (j, byte) in header.iter().enumerate() {
                self.frames
                    .push(c.send(ts + 1000 + 100 * j as u64, std::slice::from_ref(byte))?);
            }
            let req = http::get_with_id(
                VICTIM_HOST,
                &format!("/after-slow-proxy/{k}"),
                &format!("ps-{k}"),
            );
            self.hostile_delivered.push(req.clone());
            self.frames.extend(c.stream(ts + 100_000_000, 2000, &req)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        self.expect("proxy_header:truncated", Expect::Exactly(held as u64));
        self.expect("proxy_header:malformed", Expect::Exactly(n as u64));
        self.about = format!(
            "{held} v2 PROXY headers declaring 64 KiB cut at half, {n} malformed ones and {n} \
             trickled a byte per segment, each of the last two followed by a request"
        );
        Ok(())
    }
}

/// Payload of a 9000-byte jumbo frame.
const JUMBO_MSS: usize = 8948;

/// Pause between the requests of a spoofing victim: longer than rebuilder's reordering timeout
/// (1 s), so a hole opened by a spoofed segment during it is waited out and skipped.
const VICTIM_PAUSE: Duration = Duration::from_millis(1500);
/// Sizes of the POST bodies of a victim: several segments, then many.
const VICTIM_BODIES: [usize; 2] = [20_000, 64 << 10];

/// A legitimate keep-alive connection that spoofed segments aim at: its requests (GET, POST,
/// GET, big POST, with pauses between), where each starts in the client's byte stream, and the
/// stream itself.
struct Victim {
    plan: ConversationPlan,
    /// The client's byte stream (the requests back to back).
    stream: Vec<u8>,
    /// Offset of each request in `stream`.
    starts: Vec<usize>,
}

impl Victim {
    /// Sequence number of stream offset `off`.
    fn seq(&self, off: usize) -> u32 {
        self.plan
            .client_isn
            .wrapping_add(1)
            .wrapping_add(off as u32)
    }

    /// The client's data packets: (time, stream range).
    fn client_data(&self) -> Vec<(u64, std::ops::Range<usize>)> {
        self.plan
            .packets()
            .iter()
            .filter(|p| p.dir == Direction::ClientToServer && !p.payload.is_empty())
            .map(|p| (p.ts, p.payload.clone()))
            .collect()
    }

    /// The data packets of request `k`, in order.
    fn request_packets(&self, k: usize) -> Vec<(u64, std::ops::Range<usize>)> {
        let from = self.starts[k];
        let to = self.starts.get(k + 1).copied().unwrap_or(self.stream.len());
        self.client_data()
            .into_iter()
            .filter(|(_, r)| r.start >= from && r.start < to)
            .collect()
    }

    /// When request `k` starts.
    fn request_ts(&self, k: usize) -> u64 {
        self.request_packets(k).first().map_or(0, |p| p.0)
    }

    fn raw(&self, id: u64) -> RawConn {
        RawConn::new(
            id,
            self.plan.truth.client,
            self.plan.truth.server,
            self.plan.truth.vni,
            self.plan.client_isn,
            self.plan.server_isn,
        )
    }
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

fn ts_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Time of the middle packet of a conversation.
fn mid_ts(plan: &ConversationPlan) -> u64 {
    let p = plan.packets();
    p.get(p.len() / 2).map_or(0, |p| p.ts)
}

/// One connection written packet by packet, sequence numbers and all, for what the
/// conversation planner would never do.
struct RawConn {
    enc: Encoder,
    id: u64,
    /// Next client sequence number.
    next: u32,
    server_next: u32,
    ip_id: u16,
}

impl RawConn {
    fn new(
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        vni: u32,
        isn: u32,
        server_isn: u32,
    ) -> Self {
        let path = MirrorPath {
            vni,
            ..MirrorPath::default()
        };
        Self {
            enc: Encoder::new([client, server], Vec::new(), MSS, vec![path], None),
            id,
            next: isn,
            server_next: server_isn,
            ip_id: (id as u16).wrapping_mul(7919),
        }
    }

    fn packet(
        &mut self,
        ts: u64,
        dir: Direction,
        seq: u32,
        f: u8,
        payload: &[u8],
    ) -> Result<Frame, GenError> {
        self.ip_id = self.ip_id.wrapping_add(1);
        let ack = match dir {
            Direction::ClientToServer => self.server_next,
            Direction::ServerToClient => self.next,
        };
        let p = PlannedPacket {
            ts,
            dir,
            seq,
            ack: if f & flags::ACK != 0 { ack } else { 0 },
            flags: f,
            payload: 0..payload.len(),
            path: 0,
            origin: Origin::Original,
            ip_id: self.ip_id,
            tsval: (ts / NS_PER_MS) as u32,
            tsecr: 0,
        };
        let mut data = Vec::new();
        let vxlan_offset = self.enc.encode(&p, payload, &mut data)?;
        Ok(Frame {
            ts: Duration::from_nanos(ts),
            data,
            vxlan_offset,
            conversation: self.id,
        })
    }

    fn syn(&mut self, ts: u64) -> Result<Frame, GenError> {
        let f = self.packet(ts, Direction::ClientToServer, self.next, flags::SYN, b"")?;
        self.next = self.next.wrapping_add(1);
        Ok(f)
    }

    fn syn_ack(&mut self, ts: u64) -> Result<Frame, GenError> {
        let f = self.packet(
            ts,
            Direction::ServerToClient,
            self.server_next,
            flags::SYN | flags::ACK,
            b"",
        )?;
        self.server_next = self.server_next.wrapping_add(1);
        Ok(f)
    }

    fn server_packet(&mut self, ts: u64, f: u8, payload: &[u8]) -> Result<Frame, GenError> {
        let seq = self.server_next;
        self.server_next = seq.wrapping_add(payload.len() as u32);
        self.packet(ts, Direction::ServerToClient, seq, f, payload)
    }

    /// Client data at the next sequence number.
    fn send(&mut self, ts: u64, payload: &[u8]) -> Result<Frame, GenError> {
        let seq = self.next;
        self.next = seq.wrapping_add(payload.len() as u32);
        self.packet(
            ts,
            Direction::ClientToServer,
            seq,
            flags::ACK | flags::PSH,
            payload,
        )
    }

    /// Client data in MSS-sized segments, `gap` ns apart.
    fn stream(&mut self, ts: u64, gap: u64, bytes: &[u8]) -> Result<Vec<Frame>, GenError> {
        bytes
            .chunks(MSS)
            .enumerate()
            .map(|(k, chunk)| self.send(ts + gap * k as u64, chunk))
            .collect()
    }

    fn fin(&mut self, ts: u64) -> Result<Frame, GenError> {
        let f = self.packet(
            ts,
            Direction::ClientToServer,
            self.next,
            flags::FIN | flags::ACK,
            b"",
        )?;
        self.next = self.next.wrapping_add(1);
        Ok(f)
    }
}

/// After the bytes behind the VXLAN header changed: the outer IPv4 total length (and header
/// checksum) and UDP length follow the frame.
fn fix_outer_lengths(f: &mut Frame) -> Result<(), GenError> {
    let udp = f
        .vxlan_offset
        .checked_sub(8)
        .ok_or_else(|| GenError::Capture("frame without a UDP header before VXLAN".into()))?;
    let udp_len = u16::try_from(f.data.len() - udp)
        .map_err(|_| GenError::TooLarge(format!("{} bytes of UDP", f.data.len() - udp)))?;
    let ip = 14;
    if f.data.get(ip).map(|b| b >> 4) != Some(4) || udp != ip + 20 {
        return Err(GenError::Capture(
            "only outer IPv4 without options is rewritten".into(),
        ));
    }
    let total = udp_len + 20;
    f.data[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    refresh_ipv4_checksum(&mut f.data, ip);
    f.data[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
    f.data[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    Ok(())
}

/// Recomputes the checksum of the IPv4 header at `ip` (no-op if it is not one).
fn refresh_ipv4_checksum(data: &mut [u8], ip: usize) {
    let Some(first) = data.get(ip) else {
        return;
    };
    let len = usize::from(first & 0x0f) * 4;
    let Some(h) = data.get_mut(ip..ip + len) else {
        return;
    };
    h[10] = 0;
    h[11] = 0;
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Turns the inner IPv6 packet at `ip` into a fragment: a Fragment header goes between the
/// IPv6 header and TCP (first fragment with more to come, or a later one).
fn insert_ipv6_fragment_header(f: &mut Frame, ip: usize, first: bool) -> Result<(), GenError> {
    if f.data.get(ip).map(|b| b >> 4) != Some(6) {
        return Err(GenError::Capture("inner packet is not IPv6".into()));
    }
    let next = f.data[ip + 6];
    f.data[ip + 6] = 44;
    let plen = u16::from_be_bytes([f.data[ip + 4], f.data[ip + 5]]) + 8;
    f.data[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    let off_flags: u16 = if first { 0x0001 } else { 185 << 3 };
    let mut frag = vec![next, 0];
    frag.extend_from_slice(&off_flags.to_be_bytes());
    frag.extend_from_slice(&0x5eed_f00du32.to_be_bytes());
    let at = ip + 40;
    f.data.splice(at..at, frag);
    fix_outer_lengths(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_builds_at_ci_scale_deterministically() {
        let scale = HostileScale::ci();
        for kind in HostileKind::ALL {
            let a = build(kind, &scale, 1).unwrap();
            let b = build(kind, &scale, 1).unwrap();
            assert_eq!(a.frames, b.frames, "{kind:?}");
            assert!(!a.frames.is_empty() && !a.drops.is_empty(), "{kind:?}");
            let victims = match kind {
                HostileKind::SpoofedAhead | HostileKind::SpoofedSyn | HostileKind::SpoofedClose => {
                    scale.spoof_victims * 4
                }
                _ => 0,
            };
            assert_eq!(
                a.legit.len(),
                scale.legit_connections * 3 + victims,
                "{kind:?}"
            );
            assert!(
                a.frames.windows(2).all(|w| w[0].ts <= w[1].ts),
                "{kind:?} in arrival order"
            );
            assert_eq!(HostileKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn garbage_and_fragments_keep_outer_lengths_consistent() {
        let scale = HostileScale::ci();
        for kind in [HostileKind::VxlanGarbage, HostileKind::InnerFragments] {
            let case = build(kind, &scale, 2).unwrap();
            for f in &case.frames {
                let total = u16::from_be_bytes([f.data[16], f.data[17]]) as usize;
                assert_eq!(total + 14, f.data.len(), "{kind:?}: outer IPv4 length");
                let udp = f.vxlan_offset - 8;
                let udp_len = u16::from_be_bytes([f.data[udp + 4], f.data[udp + 5]]) as usize;
                assert_eq!(udp + udp_len, f.data.len(), "{kind:?}: UDP length");
            }
        }
    }
}
