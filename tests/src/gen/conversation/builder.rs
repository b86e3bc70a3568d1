//! [`Conversation`]: the builder of one connection's plan (endpoints, exchanges, pipelining,
//! timing, teardown, impairments to apply) and the planner that turns it into packets on a
//! timeline, with TCP's sequence numbers, ACKs, timestamps and IP IDs as a Linux peer would
//! send them.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::super::encode::Encoder;
use super::super::http;
use super::impair::impair;
use super::*;
use crate::error::GenError;
use crate::rng::SplitMix64;

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
