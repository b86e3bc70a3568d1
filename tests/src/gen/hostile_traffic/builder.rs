//! The shared writer of every hostile case: the [`Builder`] that collects frames, expected
//! requests and expected drops, the legitimate traffic every case carries, and [`RawConn`], a
//! connection written packet by packet for what the conversation planner would never do.
//! The attack families (sibling modules) add their cases to `Builder` in their own `impl`
//! blocks, which is why its fields are visible to the parent module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::super::conversation::{
    flags, Conversation, ConversationPlan, Direction, MirrorPath, Origin, PlannedPacket,
    DEFAULT_EPOCH,
};
use super::super::encode::{Encoder, Frame};
use super::super::http;
use super::{Expect, HostileCase, HostileKind, HostileScale, MSS, NS_PER_MS, VICTIM};
use crate::error::GenError;
use crate::rng::SplitMix64;

pub(super) struct Builder<'a> {
    pub(super) kind: HostileKind,
    pub(super) scale: &'a HostileScale,
    pub(super) rng: SplitMix64,
    pub(super) frames: Vec<Frame>,
    pub(super) legit: Vec<Vec<u8>>,
    pub(super) hostile_delivered: Vec<Vec<u8>>,
    pub(super) drops: Vec<(String, Expect)>,
    pub(super) args: Vec<String>,
    pub(super) about: String,
    /// Plans of the legitimate connections, for cases that aim at them.
    pub(super) legit_plans: Vec<ConversationPlan>,
    pub(super) next_id: u64,
}

pub(super) fn epoch_ns() -> u64 {
    u64::try_from(DEFAULT_EPOCH.as_nanos()).unwrap_or(0)
}

pub(super) fn span_ns(span: Duration) -> u64 {
    u64::try_from(span.as_nanos())
        .unwrap_or(u64::MAX / 4)
        .max(1)
}

/// Attacker `i`'s address: 172.16.0.0/12, 60,000 ports per address.
pub(super) fn attacker(i: usize) -> SocketAddr {
    let host = 0xAC10_0000u32 + 1 + (i / 60_000) as u32;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(host)), 1024 + (i % 60_000) as u16)
}

pub(super) fn attacker_v6(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xbad, 0, 0, 0, 0, 0, 1 + i as u16)),
        20_000 + i as u16,
    )
}

impl<'a> Builder<'a> {
    pub(super) fn new(kind: HostileKind, scale: &'a HostileScale, seed: u64) -> Self {
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

    pub(super) fn finish(mut self) -> HostileCase {
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

    pub(super) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn expect(&mut self, key: &str, e: Expect) {
        self.drops.push((key.to_string(), e));
    }

    /// Time `i` of `n` evenly over the span, from the epoch.
    pub(super) fn at(&self, i: usize, n: usize) -> u64 {
        let span = span_ns(self.scale.span);
        epoch_ns() + (u128::from(span) * i as u128 / n.max(1) as u128) as u64
    }

    pub(super) fn conn(&mut self, client: SocketAddr, vni: u32) -> RawConn {
        let isn = self.rng.next_u32();
        let id = self.id();
        RawConn::new(id, client, VICTIM, vni, isn, self.rng.next_u32())
    }

    /// The legitimate traffic every case carries: keep-alive connections spread over the span,
    /// each a GET, a POST with a body over several segments and a chunked POST, all unique.
    pub(super) fn legit(&mut self) -> Result<(), GenError> {
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
}

pub(super) fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

pub(super) fn ts_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Time of the middle packet of a conversation.
pub(super) fn mid_ts(plan: &ConversationPlan) -> u64 {
    let p = plan.packets();
    p.get(p.len() / 2).map_or(0, |p| p.ts)
}

/// One connection written packet by packet, sequence numbers and all, for what the
/// conversation planner would never do.
pub(super) struct RawConn {
    pub(super) enc: Encoder,
    pub(super) id: u64,
    /// Next client sequence number.
    pub(super) next: u32,
    pub(super) server_next: u32,
    pub(super) ip_id: u16,
}

impl RawConn {
    pub(super) fn new(
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

    pub(super) fn packet(
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

    pub(super) fn syn(&mut self, ts: u64) -> Result<Frame, GenError> {
        let f = self.packet(ts, Direction::ClientToServer, self.next, flags::SYN, b"")?;
        self.next = self.next.wrapping_add(1);
        Ok(f)
    }

    pub(super) fn syn_ack(&mut self, ts: u64) -> Result<Frame, GenError> {
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

    pub(super) fn server_packet(
        &mut self,
        ts: u64,
        f: u8,
        payload: &[u8],
    ) -> Result<Frame, GenError> {
        let seq = self.server_next;
        self.server_next = seq.wrapping_add(payload.len() as u32);
        self.packet(ts, Direction::ServerToClient, seq, f, payload)
    }

    /// Client data at the next sequence number.
    pub(super) fn send(&mut self, ts: u64, payload: &[u8]) -> Result<Frame, GenError> {
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
    pub(super) fn stream(
        &mut self,
        ts: u64,
        gap: u64,
        bytes: &[u8],
    ) -> Result<Vec<Frame>, GenError> {
        bytes
            .chunks(MSS)
            .enumerate()
            .map(|(k, chunk)| self.send(ts + gap * k as u64, chunk))
            .collect()
    }

    pub(super) fn fin(&mut self, ts: u64) -> Result<Frame, GenError> {
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
