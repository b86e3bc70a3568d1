//! Many conversations at once, merged by arrival time, streamed frame by frame.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::conversation::{
    Conversation, ConversationPlan, ConversationTruth, Impairments, Isn, MirrorPath, DEFAULT_EPOCH,
    MAX_VNI,
};
use super::encode::Frame;
use super::http;
use crate::error::GenError;
use crate::rng::{mix, SplitMix64};

/// Where a frame encoded by `next_into` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    pub ts: Duration,
    pub vxlan_offset: usize,
    pub conversation: u64,
}

/// Merges already planned conversations into one stream in arrival order (ties: lower plan
/// index first).
pub struct Interleave<'a> {
    plans: &'a [ConversationPlan],
    cursors: Vec<usize>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

pub fn interleave(plans: &[ConversationPlan]) -> Interleave<'_> {
    let heap = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.packets().first().map(|f| Reverse((f.ts, i))))
        .collect();
    Interleave {
        plans,
        cursors: vec![0; plans.len()],
        heap,
    }
}

impl Iterator for Interleave<'_> {
    type Item = Result<Frame, GenError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((_, i)) = self.heap.pop()?;
        let plan = self.plans.get(i)?;
        let cursor = self.cursors.get_mut(i)?;
        let frame = plan.frame(*cursor);
        *cursor += 1;
        if let Some(p) = plan.packets().get(*cursor) {
            self.heap.push(Reverse((p.ts, i)));
        }
        frame.transpose()
    }
}

/// What [`Traffic`] generates: keep-alive HTTP conversations (GETs and POSTs) between many
/// clients and a few servers, `concurrency` of them open at any time.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Connections open at once (at least 1).
    pub concurrency: usize,
    /// Total conversations. `None`: `concurrency` of them, unless `packets` is set.
    pub conversations: Option<u64>,
    /// Keep opening connections until at least this many packets are planned (open
    /// conversations then finish, so the total slightly exceeds it). With `conversations`
    /// also set, whichever limit is reached first stops new connections.
    pub packets: Option<u64>,
    pub requests_per_connection: usize,
    /// Share of requests that are POSTs, in percent.
    pub post_percent: u8,
    pub post_bytes: usize,
    pub response_bytes: usize,
    pub seed: u64,
    pub mss: usize,
    pub ipv6_inner: bool,
    pub ipv6_outer: bool,
    pub vlans: Vec<u16>,
    /// Time between packets of one conversation.
    pub gap: Duration,
    pub start: Duration,
    /// Number of distinct servers (each its own mirror session and VNI).
    pub servers: usize,
    /// Every n-th conversation gets a client ISN that wraps past 2^32 mid-stream (0: never).
    pub wrap_every: u64,
    /// Applied to every conversation (each with its own seed).
    pub impairments: Impairments,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            conversations: None,
            packets: None,
            requests_per_connection: 10,
            post_percent: 30,
            post_bytes: 1024,
            response_bytes: 256,
            seed: 1,
            mss: 1448,
            ipv6_inner: false,
            ipv6_outer: false,
            vlans: Vec::new(),
            gap: Duration::from_micros(50),
            start: DEFAULT_EPOCH,
            servers: 4,
            wrap_every: 8,
            impairments: Impairments::default(),
        }
    }
}

impl TrafficConfig {
    /// The conversation [`Traffic`] generates as number `id`, starting at `start`.
    pub fn conversation(&self, id: u64, start: Duration) -> Conversation {
        let seed = mix(self.seed ^ mix(id.wrapping_add(0x7ea5)));
        let mut rng = SplitMix64::new(seed);
        let servers = self.servers.max(1) as u64;
        let s = (id % servers) as u16;
        let client_port = 32768 + rng.below(28000) as u16;
        let (client_ip, server_ip) = if self.ipv6_inner {
            let c = Ipv6Addr::from(0xfd00_00c1_0000_0000_0000_0000_0000_0000u128 | u128::from(id));
            let sv = Ipv6Addr::new(0xfd00, 0x5e, 0, 0, 0, 0, 0, 10 + s);
            (IpAddr::V6(c), IpAddr::V6(sv))
        } else {
            let c = Ipv4Addr::from(0x0a80_0000u32 | (id as u32 & 0x003f_ffff));
            (
                IpAddr::V4(c),
                IpAddr::V4(Ipv4Addr::new(10, 0, 2, 10 + s as u8)),
            )
        };
        let server_port = if s.is_multiple_of(2) { 80 } else { 8080 };
        let (eni, target) = if self.ipv6_outer {
            (
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0xe1, 0, 0, 0, 0, 0, 10 + s)),
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0xe0, 0, 0, 0, 0, 0, 200)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(10, 0, 2, 10 + s as u8)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
            )
        };
        let vni = (mix(self.seed ^ u64::from(s) ^ 0x0f1e) as u32) & MAX_VNI;
        let host = format!("svc{s}.internal");
        let response = http::ok_response(self.response_bytes);
        let mut requests = Vec::with_capacity(self.requests_per_connection);
        for j in 0..self.requests_per_connection {
            let rid = format!("{id}-{j}");
            if rng.below(100) < u64::from(self.post_percent) {
                requests.push(http::post_with_id(
                    &host,
                    &format!("/api/items/{j}"),
                    self.post_bytes,
                    rng.next_u64(),
                    Some(&rid),
                ));
            } else {
                requests.push(http::get_with_id(
                    &host,
                    &format!("/page/{j}?session={id}"),
                    &rid,
                ));
            }
        }
        let client_len: usize = requests.iter().map(Vec::len).sum();
        let client_isn = if self.wrap_every > 0 && id % self.wrap_every == self.wrap_every - 1 {
            Isn::WrapAfter(rng.below(client_len as u64) as u32)
        } else {
            Isn::Seeded
        };
        Conversation::new(
            SocketAddr::new(client_ip, client_port),
            SocketAddr::new(server_ip, server_port),
        )
        .id(id)
        .seed(seed)
        .start(start)
        .gap(self.gap)
        .mss(self.mss)
        .vlans(&self.vlans)
        .mirror(MirrorPath {
            src: eni,
            dst: target,
            vni,
        })
        .client_isn(client_isn)
        .requests(requests, &response)
        .impairments(self.impairments.clone())
    }
}

struct Active {
    plan: ConversationPlan,
    cursor: usize,
}

/// An endless-feeling, bounded stream of interleaved conversations (see [`TrafficConfig`]).
/// Frames come out in arrival order; the truth of each conversation becomes available (via
/// [`Traffic::drain_truth`]) when the conversation is planned, before its first frame.
pub struct Traffic {
    cfg: TrafficConfig,
    rng: SplitMix64,
    slots: Vec<Option<Active>>,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    started: u64,
    planned: u64,
    truths: Vec<ConversationTruth>,
}

impl Traffic {
    pub fn new(cfg: TrafficConfig) -> Result<Self, GenError> {
        if cfg.concurrency == 0 {
            return Err(GenError::Zero("concurrency"));
        }
        if cfg.requests_per_connection == 0 {
            return Err(GenError::Zero("requests per connection"));
        }
        let mut t = Self {
            rng: SplitMix64::new(mix(cfg.seed ^ 0x7a4f)),
            slots: (0..cfg.concurrency).map(|_| None).collect(),
            heap: BinaryHeap::new(),
            started: 0,
            planned: 0,
            truths: Vec::new(),
            cfg,
        };
        let start = u64::try_from(t.cfg.start.as_nanos()).unwrap_or(0);
        let spread = u64::try_from(t.cfg.gap.as_nanos())
            .unwrap_or(0)
            .saturating_mul(2);
        for slot in 0..t.cfg.concurrency {
            if !t.may_start() {
                break;
            }
            let at = start + t.rng.below(spread.max(1));
            t.start_in(slot, at)?;
        }
        Ok(t)
    }

    fn may_start(&self) -> bool {
        match (self.cfg.conversations, self.cfg.packets) {
            (Some(n), Some(p)) => self.started < n && self.planned < p,
            (Some(n), None) => self.started < n,
            (None, Some(p)) => self.planned < p,
            (None, None) => self.started < self.cfg.concurrency as u64,
        }
    }

    fn start_in(&mut self, slot: usize, at: u64) -> Result<(), GenError> {
        let id = self.started;
        self.started += 1;
        let mut plan = self
            .cfg
            .conversation(id, Duration::from_nanos(at))
            .build()?;
        self.planned += plan.len() as u64;
        // Moved, not cloned: the plan does not need its truth to encode frames.
        let requests = std::mem::take(&mut plan.truth.requests);
        self.truths.push(ConversationTruth {
            requests,
            ..plan.truth.clone()
        });
        if let Some(first) = plan.packets().first() {
            self.heap.push(Reverse((first.ts, id, slot)));
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Active { plan, cursor: 0 });
        }
        Ok(())
    }

    /// Truth of the conversations planned since the last call.
    pub fn drain_truth(&mut self) -> Vec<ConversationTruth> {
        std::mem::take(&mut self.truths)
    }

    /// Conversations started so far.
    pub fn conversations_started(&self) -> u64 {
        self.started
    }

    /// Packets planned so far (emitted or not).
    pub fn packets_planned(&self) -> u64 {
        self.planned
    }

    /// Encodes the next frame into `out` (reusing its allocation).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Option<Result<FrameMeta, GenError>> {
        let Reverse((_, id, slot)) = self.heap.pop()?;
        let active = self.slots.get_mut(slot)?.as_mut()?;
        let encoded = active.plan.encode_into(active.cursor, out);
        active.cursor += 1;
        if let Some(p) = active.plan.packets().get(active.cursor) {
            self.heap.push(Reverse((p.ts, id, slot)));
        } else {
            let end = active.plan.packets().last().map_or(0, |p| p.ts);
            if let Some(s) = self.slots.get_mut(slot) {
                *s = None;
            }
            if self.may_start() {
                let idle = u64::try_from(self.cfg.gap.as_nanos())
                    .unwrap_or(0)
                    .saturating_mul(4);
                let at = end + 1 + self.rng.below(idle.max(1));
                if let Err(e) = self.start_in(slot, at) {
                    return Some(Err(e));
                }
            }
        }
        match encoded {
            Ok(Some((ts, vxlan_offset))) => Some(Ok(FrameMeta {
                ts,
                vxlan_offset,
                conversation: id,
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl Iterator for Traffic {
    type Item = Result<Frame, GenError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut data = Vec::new();
        Some(self.next_into(&mut data)?.map(|m| Frame {
            ts: m.ts,
            data,
            vxlan_offset: m.vxlan_offset,
            conversation: m.conversation,
        }))
    }
}
