//! One HTTP/1.x-over-TCP conversation, planned packet by packet, with its ground truth.
//!
//! Planning is separate from encoding: a [`ConversationPlan`] holds the two byte streams and a
//! list of [`PlannedPacket`]s (ranges into those streams), and frames are encoded one at a time
//! when asked for. That keeps a million-packet capture cheap to stream.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use super::encode::{Encoder, Frame};
use super::http;
use crate::error::GenError;
use crate::rng::SplitMix64;

/// TCP flag bits as in the header's flags byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// 2025-01-01T00:00:00Z, the default start of generated captures.
pub const DEFAULT_EPOCH: Duration = Duration::from_secs(1_735_689_600);
/// Largest MSS accepted: keeps every inner and outer IP datagram under 64 KiB.
pub const MAX_MSS: usize = 65_000;
/// Largest VNI VXLAN can carry.
pub const MAX_VNI: u32 = (1 << 24) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn other(self) -> Self {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// 0 for client→server, 1 for server→client.
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// One traffic mirror session as seen by the target: outer source (the mirrored ENI's primary
/// IP), outer destination (the target) and the session's VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorPath {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub vni: u32,
}

impl Default for MirrorPath {
    fn default() -> Self {
        Self {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 10)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
            vni: 0x00c0_ffee & MAX_VNI,
        }
    }
}

/// How an initial sequence number is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isn {
    /// Drawn from the conversation's seed.
    Seeded,
    Fixed(u32),
    /// Chosen so that the sequence number wraps past 2^32 after this many payload bytes: the
    /// byte at offset `n` of the stream has sequence number 0.
    WrapAfter(u32),
}

/// How the conversation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Client FIN, server FIN, client ACK.
    Fin,
    /// Client RST.
    Rst,
    /// No teardown: the connection is still open when the capture ends.
    Open,
}

/// Where a planned packet comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Original,
    /// A second copy of a data segment, sent later (a retransmission).
    Retransmission,
    /// A retransmission spanning the second half of one client segment and the first half of
    /// the next, with identical bytes.
    Overlap,
}

/// One packet of a conversation, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPacket {
    /// Arrival time in nanoseconds since the UNIX epoch.
    pub ts: u64,
    pub dir: Direction,
    pub seq: u32,
    pub ack: u32,
    /// [`flags`] bits.
    pub flags: u8,
    /// The payload, as a range of this direction's byte stream.
    pub payload: Range<usize>,
    /// Which mirror session delivers it (0, or 1 for the copy from the second ENI).
    pub path: usize,
    pub origin: Origin,
    pub ip_id: u16,
    pub tsval: u32,
    pub tsecr: u32,
}

/// The second mirror session when both ends of a connection are mirrored: every packet appears
/// again under this path, up to `max_skew` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondMirror {
    pub path: MirrorPath,
    pub max_skew: Duration,
}

/// What goes wrong on the way to the mirror target. All of it is deterministic from the
/// conversation's seed. Applied in this order: mid-stream start, drops and loss, overlapping
/// retransmissions, retransmissions, second mirror copy, reordering; truncation applies to
/// every packet delivered. So a dropped segment is missing from both mirror copies, and
/// retransmissions never fill a drop's hole (a retransmission of the mirror's loss does not
/// happen: the real receiver got the segment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairments {
    /// Each packet may arrive up to this many positions late (0: in order).
    pub reorder_window: usize,
    /// Probability that a data segment (either direction) is retransmitted (appears twice).
    pub duplicate_rate: f64,
    /// Client data segments (index among the conversation's client data segments, from 0) that
    /// never reach the target.
    pub drop_client_segments: Vec<usize>,
    /// Probability that any client data segment never reaches the target.
    pub loss_rate: f64,
    /// AWS PacketLength: at most this many bytes of each inner frame are delivered.
    pub packet_length: Option<usize>,
    /// Start the capture in the middle of the connection: no handshake, and the first client
    /// data segment delivered is the first one starting at or after this stream offset.
    pub start_mid_stream: Option<usize>,
    /// Both ENIs mirrored.
    pub mirror_twice: Option<SecondMirror>,
    /// How many overlapping retransmissions to add (fewer if the conversation has fewer pairs
    /// of adjacent client segments).
    pub overlapping_retransmits: usize,
}

/// A request and the response the server answers it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

/// A request as the client sent it, and whether a correct rebuilder can deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthRequest {
    pub bytes: Vec<u8>,
    /// False when any of its bytes reach the target only truncated or not at all.
    pub rebuildable: bool,
}

/// The ground truth of one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationTruth {
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// VNI of the primary mirror session.
    pub vni: u32,
    /// Every request the client sent, in order.
    pub requests: Vec<TruthRequest>,
}

impl ConversationTruth {
    /// The requests a correct rebuilder delivers, in order.
    pub fn rebuildable(&self) -> impl Iterator<Item = &[u8]> {
        self.requests
            .iter()
            .filter(|r| r.rebuildable)
            .map(|r| r.bytes.as_slice())
    }

    /// Indices of the requests a hole makes unrebuildable.
    pub fn affected(&self) -> Vec<usize> {
        self.requests
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.rebuildable)
            .map(|(i, _)| i)
            .collect()
    }
}

/// What the impairments actually did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImpairmentReport {
    /// Every client data segment as originally sent, by index (stream offsets).
    pub client_segments: Vec<Range<usize>>,
    /// Indices into `client_segments` of the ones dropped (explicitly or by `loss_rate`; not
    /// counting those before a mid-stream start).
    pub dropped_client_segments: Vec<usize>,
    /// Client stream ranges that never arrive whole (drops, truncation, mid-stream start).
    pub holes: Vec<Range<usize>>,
    pub retransmissions: usize,
    pub overlaps: usize,
    /// Packets (copies included) cut by `packet_length`.
    pub truncated_packets: usize,
    pub mirror_copies: usize,
}

/// Builder for one conversation. Defaults: IPv4 outer path [`MirrorPath::default`], no VLAN,
/// MSS 1448, seeded ISNs, 50 µs between packets, 200 µs think time between request batches,
/// no pipelining, FIN teardown, starting at [`DEFAULT_EPOCH`].
#[derive(Clone, Debug)]
pub struct Conversation {
    id: u64,
    client: SocketAddr,
    server: SocketAddr,
    mirror: MirrorPath,
    vlans: Vec<u16>,
    mss: usize,
    client_isn: Isn,
    server_isn: Isn,
    exchanges: Vec<Exchange>,
    /// Client bytes before the first request that belong to no request (a PROXY header).
    preamble: Vec<u8>,
    batch: usize,
    share_segments: bool,
    start: Duration,
    gap: Duration,
    think: Duration,
    seed: u64,
    close: Close,
    impairments: Impairments,
}

impl Conversation {
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            id: 0,
            client,
            server,
            mirror: MirrorPath::default(),
            vlans: Vec::new(),
            mss: 1448,
            client_isn: Isn::Seeded,
            server_isn: Isn::Seeded,
            exchanges: Vec::new(),
            preamble: Vec::new(),
            batch: 1,
            share_segments: false,
            start: DEFAULT_EPOCH,
            gap: Duration::from_micros(50),
            think: Duration::from_micros(200),
            seed: 0,
            close: Close::Fin,
            impairments: Impairments::default(),
        }
    }

    /// Identifies the conversation in [`Frame::conversation`] and its truth.
    pub fn id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    pub fn mirror(mut self, path: MirrorPath) -> Self {
        self.mirror = path;
        self
    }

    pub fn vni(mut self, vni: u32) -> Self {
        self.mirror.vni = vni;
        self
    }

    /// Inner VLAN tags, outermost first: one (802.1Q) or two (QinQ, outer tag 802.1ad).
    pub fn vlans(mut self, ids: &[u16]) -> Self {
        self.vlans = ids.to_vec();
        self
    }

    /// Payload bytes per full segment (1448 for a 1500-MTU path with TCP timestamps; 8948 for
    /// 9000-byte jumbo frames).
    pub fn mss(mut self, mss: usize) -> Self {
        self.mss = mss;
        self
    }

    pub fn client_isn(mut self, isn: Isn) -> Self {
        self.client_isn = isn;
        self
    }

    pub fn server_isn(mut self, isn: Isn) -> Self {
        self.server_isn = isn;
        self
    }

    pub fn exchange(mut self, request: impl Into<Vec<u8>>, response: impl Into<Vec<u8>>) -> Self {
        self.exchanges.push(Exchange {
            request: request.into(),
            response: response.into(),
        });
        self
    }

    /// Adds every request, each answered with `response`.
    pub fn requests<I, R>(mut self, requests: I, response: &[u8]) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<Vec<u8>>,
    {
        for r in requests {
            self.exchanges.push(Exchange {
                request: r.into(),
                response: response.to_vec(),
            });
        }
        self
    }

    /// Pipelining: the client sends `batch` requests back to back before the responses come;
    /// with `share_segments` the batch is one byte run split by MSS (requests share segments),
    /// otherwise each request starts a new segment.
    /// Bytes the client stream starts with, in a segment of their own, before any request and
    /// part of none (what a load balancer with PROXY protocol puts first).
    pub fn preamble(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.preamble = bytes.into();
        self
    }

    pub fn pipelined(mut self, batch: usize, share_segments: bool) -> Self {
        self.batch = batch;
        self.share_segments = share_segments;
        self
    }

    pub fn start(mut self, start: Duration) -> Self {
        self.start = start;
        self
    }

    /// Time between consecutive packets.
    pub fn gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// Extra idle time before each request batch after the first.
    pub fn think_time(mut self, think: Duration) -> Self {
        self.think = think;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn close(mut self, close: Close) -> Self {
        self.close = close;
        self
    }

    pub fn impairments(mut self, impairments: Impairments) -> Self {
        self.impairments = impairments;
        self
    }

    pub fn reorder(mut self, window: usize) -> Self {
        self.impairments.reorder_window = window;
        self
    }

    pub fn duplicate(mut self, rate: f64) -> Self {
        self.impairments.duplicate_rate = rate;
        self
    }

    pub fn drop_client_segment(mut self, index: usize) -> Self {
        self.impairments.drop_client_segments.push(index);
        self
    }

    pub fn loss(mut self, rate: f64) -> Self {
        self.impairments.loss_rate = rate;
        self
    }

    pub fn packet_length(mut self, bytes: usize) -> Self {
        self.impairments.packet_length = Some(bytes);
        self
    }

    pub fn start_mid_stream(mut self, client_bytes: usize) -> Self {
        self.impairments.start_mid_stream = Some(client_bytes);
        self
    }

    pub fn mirror_twice(mut self, path: MirrorPath, max_skew: Duration) -> Self {
        self.impairments.mirror_twice = Some(SecondMirror { path, max_skew });
        self
    }

    pub fn overlapping_retransmits(mut self, n: usize) -> Self {
        self.impairments.overlapping_retransmits = n;
        self
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.client.is_ipv4() != self.server.is_ipv4() {
            return Err(GenError::MixedInnerFamilies {
                client: self.client.ip(),
                server: self.server.ip(),
            });
        }
        let mut paths = vec![self.mirror];
        if let Some(m) = self.impairments.mirror_twice {
            paths.push(m.path);
        }
        for p in &paths {
            if p.src.is_ipv4() != p.dst.is_ipv4() {
                return Err(GenError::MixedOuterFamilies {
                    src: p.src,
                    dst: p.dst,
                });
            }
            if p.vni > MAX_VNI {
                return Err(GenError::VniTooLarge(p.vni));
            }
        }
        if self.vlans.len() > 2 {
            return Err(GenError::TooManyVlans(self.vlans.len()));
        }
        if let Some(id) = self.vlans.iter().find(|id| **id > 0x0fff) {
            return Err(GenError::VlanIdTooLarge(*id));
        }
        if self.mss == 0 || self.mss > MAX_MSS {
            return Err(GenError::BadMss {
                mss: self.mss,
                max: MAX_MSS,
            });
        }
        if self.batch == 0 {
            return Err(GenError::BadBatch);
        }
        for (what, value) in [
            ("duplicate rate", self.impairments.duplicate_rate),
            ("loss rate", self.impairments.loss_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(GenError::BadRate { what, value });
            }
        }
        if self.impairments.packet_length == Some(0) {
            return Err(GenError::BadPacketLength);
        }
        if let Some(i) = self.exchanges.iter().position(|e| e.request.is_empty()) {
            return Err(GenError::EmptyRequest(i));
        }
        Ok(())
    }

    /// Plans every packet and computes the ground truth.
    pub fn build(&self) -> Result<ConversationPlan, GenError> {
        self.validate()?;
        let mut rng = SplitMix64::new(self.seed ^ 0x5eed_0000_0000_0000 ^ self.id);
        let isn = |how: Isn, rng: &mut SplitMix64| match how {
            Isn::Seeded => rng.next_u32(),
            Isn::Fixed(x) => x,
            Isn::WrapAfter(n) => u32::MAX.wrapping_sub(n),
        };
        let client_isn = isn(self.client_isn, &mut rng);
        let server_isn = isn(self.server_isn, &mut rng);
        let start = u64::try_from(self.start.as_nanos()).unwrap_or(u64::MAX / 2);
        let gap = u64::try_from(self.gap.as_nanos())
            .unwrap_or(u64::MAX / 4)
            .max(1);
        let think = u64::try_from(self.think.as_nanos()).unwrap_or(0);

        let mut tl = Timeline {
            pkts: Vec::new(),
            t: start,
            start,
            gap,
            next: [client_isn, server_isn],
            ts_base: [rng.next_u32(), rng.next_u32()],
            last_tsval: [0, 0],
            ip_id: [rng.next_u32() as u16, rng.next_u32() as u16],
            mss: self.mss,
        };
        let mut streams: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut request_ranges = Vec::with_capacity(self.exchanges.len());

        tl.push(Direction::ClientToServer, flags::SYN, 0..0);
        tl.push(Direction::ServerToClient, flags::SYN | flags::ACK, 0..0);
        tl.push(Direction::ClientToServer, flags::ACK, 0..0);
        if !self.preamble.is_empty() {
            streams[0].extend_from_slice(&self.preamble);
            tl.send(Direction::ClientToServer, 0..streams[0].len());
        }

        for (bi, batch) in self.exchanges.chunks(self.batch).enumerate() {
            if bi > 0 {
                tl.t = tl.t.saturating_add(think);
            }
            let mut pending = streams[0].len();
            for ex in batch {
                let begin = streams[0].len();
                streams[0].extend_from_slice(&ex.request);
                let end = streams[0].len();
                request_ranges.push(begin..end);
                if let Some(head) = http::expect_continue_split(&ex.request) {
                    let head_end = begin + head;
                    tl.send(Direction::ClientToServer, pending.min(begin)..head_end);
                    let s = streams[1].len();
                    streams[1].extend_from_slice(http::CONTINUE_RESPONSE);
                    tl.send(Direction::ServerToClient, s..streams[1].len());
                    pending = head_end;
                }
                if !self.share_segments {
                    tl.send(Direction::ClientToServer, pending..end);
                    pending = end;
                }
            }
            tl.send(Direction::ClientToServer, pending..streams[0].len());
            let responses_begin = streams[1].len();
            for ex in batch {
                let s = streams[1].len();
                streams[1].extend_from_slice(&ex.response);
                if !self.share_segments {
                    tl.send(Direction::ServerToClient, s..streams[1].len());
                }
            }
            if self.share_segments {
                tl.send(Direction::ServerToClient, responses_begin..streams[1].len());
            }
        }
        match self.close {
            Close::Fin => {
                tl.push(Direction::ClientToServer, flags::FIN | flags::ACK, 0..0);
                tl.push(Direction::ServerToClient, flags::FIN | flags::ACK, 0..0);
                tl.push(Direction::ClientToServer, flags::ACK, 0..0);
            }
            Close::Rst => tl.push(Direction::ClientToServer, flags::RST | flags::ACK, 0..0),
            Close::Open => {}
        }

        let mut paths = vec![self.mirror];
        if let Some(m) = self.impairments.mirror_twice {
            paths.push(m.path);
        }
        let enc = Encoder::new(
            [self.client, self.server],
            self.vlans.clone(),
            self.mss,
            paths,
            self.impairments.packet_length,
        );
        let (packets, report) = impair(
            tl.pkts,
            &self.impairments,
            &enc,
            gap,
            streams[0].len(),
            &mut rng,
        )?;

        let requests = self
            .exchanges
            .iter()
            .zip(&request_ranges)
            .map(|(ex, r)| TruthRequest {
                bytes: ex.request.clone(),
                rebuildable: !report
                    .holes
                    .iter()
                    .any(|h| h.start < r.end && r.start < h.end),
            })
            .collect();
        Ok(ConversationPlan {
            truth: ConversationTruth {
                id: self.id,
                client: self.client,
                server: self.server,
                vni: self.mirror.vni,
                requests,
            },
            report,
            client_isn,
            server_isn,
            packets,
            streams,
            enc,
            id: self.id,
        })
    }
}

struct Timeline {
    pkts: Vec<PlannedPacket>,
    t: u64,
    start: u64,
    gap: u64,
    /// Next sequence number each side sends.
    next: [u32; 2],
    ts_base: [u32; 2],
    last_tsval: [u32; 2],
    ip_id: [u16; 2],
    mss: usize,
}

impl Timeline {
    fn push(&mut self, dir: Direction, f: u8, payload: Range<usize>) {
        let d = dir.index();
        let o = 1 - d;
        let seq = self.next[d];
        let ack = if f & flags::ACK != 0 { self.next[o] } else { 0 };
        // TCP timestamps tick in milliseconds (Linux).
        let tsval = self.ts_base[d].wrapping_add(((self.t - self.start) / 1_000_000) as u32);
        let tsecr = self.last_tsval[o];
        self.last_tsval[d] = tsval;
        let consumed = payload.len() as u32 + u32::from(f & (flags::SYN | flags::FIN) != 0);
        self.next[d] = seq.wrapping_add(consumed);
        self.pkts.push(PlannedPacket {
            ts: self.t,
            dir,
            seq,
            ack,
            flags: f,
            payload,
            path: 0,
            origin: Origin::Original,
            ip_id: self.ip_id[d],
            tsval,
            tsecr,
        });
        self.ip_id[d] = self.ip_id[d].wrapping_add(1);
        self.t = self.t.saturating_add(self.gap);
    }

    /// Sends a byte range in MSS-sized segments (PSH on the last), the peer acknowledging every
    /// second segment and the last one, as delayed ACK does.
    fn send(&mut self, dir: Direction, range: Range<usize>) {
        let mut off = range.start;
        let mut n = 0usize;
        while off < range.end {
            let end = off.saturating_add(self.mss).min(range.end);
            let last = end == range.end;
            self.push(
                dir,
                flags::ACK | if last { flags::PSH } else { 0 },
                off..end,
            );
            n += 1;
            if n.is_multiple_of(2) || last {
                self.push(dir.other(), flags::ACK, 0..0);
            }
            off = end;
        }
    }
}

fn is_client_data(p: &PlannedPacket) -> bool {
    p.dir == Direction::ClientToServer && !p.payload.is_empty()
}

fn impair(
    mut pkts: Vec<PlannedPacket>,
    imp: &Impairments,
    enc: &Encoder,
    gap: u64,
    client_len: usize,
    rng: &mut SplitMix64,
) -> Result<(Vec<PlannedPacket>, ImpairmentReport), GenError> {
    let mut report = ImpairmentReport::default();
    let client_data: Vec<usize> = pkts
        .iter()
        .enumerate()
        .filter(|(_, p)| is_client_data(p))
        .map(|(i, _)| i)
        .collect();
    report.client_segments = client_data
        .iter()
        .filter_map(|&i| pkts.get(i))
        .map(|p| p.payload.clone())
        .collect();
    let mut keep = vec![true; pkts.len()];

    if let Some(k) = imp.start_mid_stream {
        let first = client_data
            .iter()
            .copied()
            .find(|&i| pkts.get(i).is_some_and(|p| p.payload.start >= k))
            .unwrap_or_else(|| client_data.last().map_or(0, |l| l + 1));
        keep.iter_mut().take(first).for_each(|k| *k = false);
    }
    let mut drop_rng = rng.fork(1);
    let mut dropped = vec![false; client_data.len()];
    for &si in &imp.drop_client_segments {
        let Some(&p) = client_data.get(si) else {
            return Err(GenError::NoSuchSegment {
                index: si,
                count: client_data.len(),
            });
        };
        if keep[p] {
            keep[p] = false;
            dropped[si] = true;
        }
    }
    if imp.loss_rate > 0.0 {
        for (si, &p) in client_data.iter().enumerate() {
            if keep[p] && drop_rng.chance(imp.loss_rate) {
                keep[p] = false;
                dropped[si] = true;
            }
        }
    }
    report.dropped_client_segments = dropped
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| i)
        .collect();
    let mut keep_iter = keep.into_iter();
    pkts.retain(|_| keep_iter.next().unwrap_or(false));

    let mut extra = Vec::new();
    if imp.overlapping_retransmits > 0 {
        let mut ov_rng = rng.fork(2);
        let client: Vec<&PlannedPacket> = pkts.iter().filter(|p| is_client_data(p)).collect();
        let mut pairs: Vec<(&PlannedPacket, &PlannedPacket)> = client
            .windows(2)
            .filter_map(|w| match w {
                [a, b] if a.payload.end == b.payload.start => Some((*a, *b)),
                _ => None,
            })
            .collect();
        while report.overlaps < imp.overlapping_retransmits && !pairs.is_empty() {
            let (a, b) = pairs.swap_remove(ov_rng.below(pairs.len() as u64) as usize);
            let begin = a.payload.start + a.payload.len() / 2;
            let end = (b.payload.start + b.payload.len().div_ceil(2)).min(begin + enc.mss);
            if end <= b.payload.start {
                continue;
            }
            let seq = a.seq.wrapping_add((begin - a.payload.start) as u32);
            extra.push(PlannedPacket {
                ts: b.ts + 1 + ov_rng.below(3 * gap),
                seq,
                flags: flags::ACK | flags::PSH,
                payload: begin..end,
                origin: Origin::Overlap,
                ip_id: ov_rng.next_u32() as u16,
                ..b.clone()
            });
            report.overlaps += 1;
        }
    }
    if imp.duplicate_rate > 0.0 {
        let mut dup_rng = rng.fork(3);
        for p in &pkts {
            if !p.payload.is_empty() && dup_rng.chance(imp.duplicate_rate) {
                extra.push(PlannedPacket {
                    ts: p.ts + 1 + gap * dup_rng.range_inclusive(1, 3),
                    origin: Origin::Retransmission,
                    ip_id: dup_rng.next_u32() as u16,
                    ..p.clone()
                });
                report.retransmissions += 1;
            }
        }
    }
    if !extra.is_empty() {
        pkts.extend(extra);
        pkts.sort_by_key(|p| p.ts);
    }

    if let Some(m) = imp.mirror_twice {
        let mut m_rng = rng.fork(4);
        let skew = u64::try_from(m.max_skew.as_nanos()).unwrap_or(u64::MAX / 4);
        let copies: Vec<PlannedPacket> = pkts
            .iter()
            .map(|p| PlannedPacket {
                ts: p.ts + m_rng.below(skew.saturating_add(1)),
                path: 1,
                ..p.clone()
            })
            .collect();
        report.mirror_copies = copies.len();
        pkts.extend(copies);
        pkts.sort_by_key(|p| p.ts);
    }

    if imp.reorder_window > 0 {
        let mut r_rng = rng.fork(5);
        let times: Vec<u64> = pkts.iter().map(|p| p.ts).collect();
        let mut keyed: Vec<(usize, PlannedPacket)> = pkts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i + r_rng.below(imp.reorder_window as u64 + 1) as usize, p))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        // Arrival times stay monotonic: the packets change places, the clock does not.
        pkts = keyed
            .into_iter()
            .zip(times)
            .map(|((_, p), ts)| PlannedPacket { ts, ..p })
            .collect();
    }

    report.truncated_packets = pkts.iter().filter(|p| enc.truncates(p)).count();

    // A truncated segment is a gap, never data (DESIGN §2), so only whole client segments cover
    // the stream.
    let mut covered: Vec<Range<usize>> = pkts
        .iter()
        .filter(|p| is_client_data(p) && !enc.truncates(p))
        .map(|p| p.payload.clone())
        .collect();
    covered.sort_by_key(|r| r.start);
    let mut at = 0usize;
    for r in covered {
        if r.start > at {
            report.holes.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < client_len {
        report.holes.push(at..client_len);
    }
    Ok((pkts, report))
}

/// A conversation with every packet planned, ready to encode.
#[derive(Clone, Debug)]
pub struct ConversationPlan {
    pub truth: ConversationTruth,
    pub report: ImpairmentReport,
    pub client_isn: u32,
    pub server_isn: u32,
    packets: Vec<PlannedPacket>,
    /// Client→server and server→client byte streams.
    streams: [Vec<u8>; 2],
    enc: Encoder,
    id: u64,
}

impl ConversationPlan {
    /// Packets in arrival order.
    pub fn packets(&self) -> &[PlannedPacket] {
        &self.packets
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Everything the client sent, concatenated.
    pub fn client_stream(&self) -> &[u8] {
        &self.streams[0]
    }

    /// Everything the server sent, concatenated.
    pub fn server_stream(&self) -> &[u8] {
        &self.streams[1]
    }

    /// Encodes packet `i` into `out`, returning its timestamp and the VXLAN header offset.
    pub fn encode_into(
        &self,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Duration, usize)>, GenError> {
        let Some(p) = self.packets.get(i) else {
            return Ok(None);
        };
        let stream = &self.streams[p.dir.index()];
        let payload = stream.get(p.payload.clone()).unwrap_or_default();
        let vxlan_offset = self.enc.encode(p, payload, out)?;
        Ok(Some((Duration::from_nanos(p.ts), vxlan_offset)))
    }

    pub fn frame(&self, i: usize) -> Result<Option<Frame>, GenError> {
        let mut data = Vec::new();
        Ok(self
            .encode_into(i, &mut data)?
            .map(|(ts, vxlan_offset)| Frame {
                ts,
                data,
                vxlan_offset,
                conversation: self.id,
            }))
    }

    /// All frames in arrival order.
    pub fn frames(&self) -> impl Iterator<Item = Result<Frame, GenError>> + '_ {
        (0..self.packets.len()).filter_map(|i| self.frame(i).transpose())
    }
}
