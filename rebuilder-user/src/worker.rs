//! A reassembly worker: owns the flows its dispatcher sends it, runs each client stream through
//! reassembly and HTTP framing, and hands out the rebuilt requests.
//!
//! The flow table lives here rather than in `reassembly` because a flow's life (which side is
//! the client, when it is ignored, closed or evicted) depends on both the TCP stream and what
//! the framer found in it.

use std::cmp::Reverse;
use std::mem::size_of;
use std::sync::Arc;

use crate::config::FlowKeyMode;
use crate::http::{FlowContext, HttpLimits, HttpStats, RequestFramer};
use crate::memory::alloc_size;
use crate::proxy::{ProxyInfo, ProxyPolicy, ProxyStats, StreamStart};
use crate::reassembly::{EndReason, Stream, StreamConfig, StreamEvent, StreamStats};
use crate::request::RebuiltRequest;
use crate::segment::{FlowKey, Segment, Timestamp};

mod map;
pub mod metrics;

use map::FlowMap;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A flow is one direction of a connection, scoped by VNI when flows are told apart by VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableKey {
    /// The VNI in `FlowKeyMode::Vni`, 0 otherwise.
    pub scope: u32,
    pub flow: FlowKey,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub flow_key: FlowKeyMode,
    /// Sorted.
    pub server_ports: Vec<u16>,
    pub stream: StreamConfig,
    pub http: Arc<HttpLimits>,
    pub idle_timeout_ns: u64,
    /// How long a closed flow is remembered, so that late duplicates (retransmissions, the
    /// second copy of a doubly mirrored connection) are absorbed instead of starting a new
    /// stream that would replay requests twice.
    pub linger_ns: u64,
    /// Bytes this worker may hold across all its flows, the table's own memory included.
    pub budget: usize,
    /// PROXY protocol at stream start, by server port.
    pub proxy: ProxyPolicy,
}

/// Counts kept by one worker, published as metrics by the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub stream: StreamStats,
    pub http: HttpStats,
    pub proxy: ProxyStats,
    pub flows_created: u64,
    pub flows_closed: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    /// Requests in progress (head or body partly received) in flows evicted for the budget.
    pub requests_evicted: u64,
    /// Segments of directions that carry no requests (server side, not HTTP, upgraded).
    pub segments_ignored: u64,
    /// Segments that reached a closed flow (late duplicates, retransmitted FINs).
    pub segments_after_close: u64,
    /// Pure ACKs (and lone FIN/RST) of flows never seen: they carry nothing to rebuild.
    pub segments_without_flow: u64,
    /// SYNs with a new ISN on a 4-tuple whose connection was still live: followed as a second
    /// connection beside it rather than ending it.
    pub second_connections: u64,
    pub requests: u64,
    /// Gauges, as of the last update.
    pub flows_open: u64,
    pub buffered_bytes: u64,
}

impl WorkerStats {
    pub fn add(&mut self, o: &WorkerStats) {
        self.stream.add(&o.stream);
        add_http(&mut self.http, &o.http);
        self.proxy.add(&o.proxy);
        self.flows_created += o.flows_created;
        self.flows_closed += o.flows_closed;
        self.flows_expired += o.flows_expired;
        self.flows_evicted += o.flows_evicted;
        self.requests_evicted += o.requests_evicted;
        self.segments_ignored += o.segments_ignored;
        self.segments_after_close += o.segments_after_close;
        self.segments_without_flow += o.segments_without_flow;
        self.second_connections += o.second_connections;
        self.requests += o.requests;
        self.flows_open += o.flows_open;
        self.buffered_bytes += o.buffered_bytes;
    }
}

fn add_http(a: &mut HttpStats, b: &HttpStats) {
    a.requests += b.requests;
    a.malformed_replayed += b.malformed_replayed;
    a.body_over_limit += b.body_over_limit;
    a.expect_continue += b.expect_continue;
    a.dropped_gap += b.dropped_gap;
    a.dropped_head_too_large += b.dropped_head_too_large;
    a.dropped_too_many_headers += b.dropped_too_many_headers;
    a.dropped_invalid += b.dropped_invalid;
    a.dropped_incomplete += b.dropped_incomplete;
    a.resync_skipped_bytes += b.resync_skipped_bytes;
    a.h2_preface += b.h2_preface;
    a.upgrades += b.upgrades;
    a.connects += b.connects;
    a.response_streams += b.response_streams;
    a.non_http_streams += b.non_http_streams;
    a.h2.add(&b.h2);
}

enum FlowState {
    /// A client stream being rebuilt. Boxed: most flows of a busy table are the small kinds
    /// (server sides, closed connections lingering), which should not pay for this one.
    Active(Box<Active>),
    /// A direction that carries no requests: its segments are counted and dropped.
    Ignored { client: bool },
    /// Ended by FIN or RST: remembered for `linger_ns` to absorb late duplicates.
    Closed { isn: Option<u32> },
}

struct Active {
    stream: Stream,
    framer: RequestFramer,
    /// Until the stream's first bytes show whether a PROXY header leads them (streams that
    /// began with their SYN only); dropped once decided.
    start: Option<Box<StreamStart>>,
    /// The header found, stamped on every request of the stream.
    proxy: Option<Arc<ProxyInfo>>,
    /// Capture time of the last segment this connection took.
    last_seen: Timestamp,
    /// A second connection on the same 4-tuple: a SYN with a new ISN arrived while this one was
    /// live. A passive observer cannot tell a spoofed SYN (which the server answers with a
    /// challenge ACK, RFC 5961 §4, keeping the connection) from port reuse after a FIN it
    /// missed, so both are followed, each segment going to the connection whose window it
    /// falls in; the second takes over when this one ends (FIN, RST, idle). Never more than
    /// one: a further new SYN replaces it.
    second: Option<Box<Active>>,
    /// This connection became the first when the one before it went quiet (see `second`).
    took_over: bool,
}

impl Active {
    /// What this connection holds from the allocator: its box, its buffers (as allocated, size
    /// class included) and a second connection's.
    fn cost(&self) -> usize {
        ACTIVE_HEAP
            + self.stream.buffered()
            + alloc_size(self.framer.buffered_bytes())
            + alloc_size(self.framer.state_bytes())
            + self
                .start
                .as_ref()
                .map_or(0, |s| START_HEAP + alloc_size(s.buffered_bytes()))
            + self.second.as_ref().map_or(0, |b| b.cost())
    }

    /// Whether a SYN (without ACK) starts another connection than this one: its ISN differs
    /// from this stream's, or, for a stream picked up without its SYN (no ISN to compare),
    /// its data would start outside this stream's window (a late SYN of this connection lands
    /// just before the bytes seen).
    fn is_other_connection(&self, seg: &Segment, cfg: &StreamConfig) -> bool {
        if self.stream.started_with_syn() {
            self.stream.isn() != seg.seq
        } else {
            !self.stream.in_window(seg.seq.wrapping_add(1), 0, cfg)
        }
    }

    fn distance(&self, seg: &Segment) -> u64 {
        self.stream
            .distance(seg.seq.wrapping_add(u32::from(seg.flags.syn())))
    }

    /// Whether the segment falls within this connection's window.
    fn takes(&self, seg: &Segment, cfg: &StreamConfig) -> bool {
        let data_seq = seg.seq.wrapping_add(u32::from(seg.flags.syn()));
        self.stream.in_window(data_seq, seg.wire_len, cfg)
    }
}

struct Flow {
    state: FlowState,
    last_seen: Timestamp,
    /// What this flow was last charged against the budget.
    cost: usize,
    /// Order of creation: breaks ties in eviction so that a replay evicts the same flows every
    /// time (the table's iteration order is random).
    serial: u64,
}

/// What a client stream's box takes from the allocator (its size class, not its size: 328 bytes
/// are served from the 384-byte class).
const ACTIVE_HEAP: usize = alloc_size(size_of::<Active>());
/// The box of a stream's start (PROXY protocol detection), while it lives.
const START_HEAP: usize = alloc_size(size_of::<StreamStart>());

/// A flow holding at least this fraction of its worker's budget (an eighth) dominates: when the
/// budget is exceeded such flows are evicted first, largest first, before the least recently
/// active ones. One eviction then frees the most memory for the fewest requests lost, and one
/// huge stream (an endless body, a window full of out-of-order data) cannot push out many small
/// ones.
const DOMINANT_SHARE_DIVISOR: usize = 8;

impl Flow {
    /// What the flow holds beyond its slot in the table (which [`FlowMap::bytes`] charges).
    fn current_cost(&self) -> usize {
        match &self.state {
            FlowState::Active(a) => a.cost(),
            _ => 0,
        }
    }

    /// The eviction order among flows that do not dominate: least recently active first, ties
    /// by creation.
    fn rank(&self) -> u128 {
        (u128::from(self.last_seen) << 64) | u128::from(self.serial)
    }
}

/// The flows of one worker and everything that happens to them.
pub struct FlowTable {
    cfg: WorkerConfig,
    flows: FlowMap,
    clock: Timestamp,
    last_sweep: Timestamp,
    /// What the flows hold beyond the table: the sum of their `cost`.
    buffered: usize,
    events: Vec<StreamEvent>,
    stats: WorkerStats,
    serial: u64,
}

impl FlowTable {
    pub fn new(cfg: WorkerConfig) -> Self {
        Self {
            cfg,
            flows: FlowMap::default(),
            clock: 0,
            last_sweep: 0,
            buffered: 0,
            events: Vec::new(),
            stats: WorkerStats::default(),
            serial: 0,
        }
    }

    pub fn stats(&mut self) -> &WorkerStats {
        self.stats.flows_open = self.flows.len() as u64;
        self.stats.buffered_bytes = self.buffered() as u64;
        &self.stats
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Everything the table holds from the allocator, charged against the budget: the flows'
    /// buffers and state, and the table's own slots and index.
    pub fn buffered(&self) -> usize {
        self.buffered + self.flows.bytes()
    }

    fn key_of(&self, seg: &Segment) -> TableKey {
        let scope = match self.cfg.flow_key {
            FlowKeyMode::Inner => 0,
            FlowKeyMode::Vni => seg.vni,
        };
        TableKey {
            scope,
            flow: seg.flow,
        }
    }

    /// Processes one segment; complete requests go to `emit`.
    pub fn push(&mut self, seg: &Segment, emit: &mut impl FnMut(RebuiltRequest)) {
        if seg.ts > self.clock {
            self.clock = seg.ts;
        }
        let key = self.key_of(seg);
        let carries = !seg.payload.is_empty() || seg.wire_len > 0 || seg.flags.syn();

        let replace = match self.flows.get(&key) {
            None if !carries => {
                self.stats.segments_without_flow += 1;
                false
            }
            None => true,
            Some(flow) => match flow.state {
                // A new SYN on a closed 4-tuple is a new connection; anything else is late.
                FlowState::Closed { isn } => {
                    if seg.flags.syn() && !seg.flags.ack() && isn != Some(seg.seq) {
                        true
                    } else {
                        self.stats.segments_after_close += 1;
                        false
                    }
                }
                // A new SYN on a live one is followed beside it (see `Active::second`).
                FlowState::Active(_) | FlowState::Ignored { .. } => false,
            },
        };
        if replace {
            let flow = self.new_flow(&key, seg);
            self.stats.flows_created += 1;
            // No free slot: the table would grow by a chunk. Past the budget, flows are evicted
            // instead and their slots taken.
            if !self.flows.contains_key(&key)
                && self.flows.is_full()
                && self.buffered() + map::GROWTH_BYTES > self.cfg.budget
            {
                let target = (self.cfg.budget / 10 * 9)
                    .min(self.cfg.budget.saturating_sub(map::GROWTH_BYTES));
                self.evict(target, map::SLOT_BYTES, emit);
            }
            let cost = flow.cost;
            if let Some(old) = self.flows.insert(key, flow) {
                self.buffered -= old.cost;
            }
            self.buffered += cost;
        }

        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last_seen = self.clock;
            match &mut flow.state {
                FlowState::Active(a) => {
                    let (stream_cfg, http) = (&self.cfg.stream, &self.cfg.http);
                    let syn = seg.flags.syn() && !seg.flags.ack();
                    // The usual case, one connection and no SYN, goes to it without working out
                    // windows here: its stream does (and counts what falls outside).
                    let alone = a.second.is_none() && !syn && !a.took_over;
                    let first = alone
                        || a.takes(seg, stream_cfg)
                            && !(syn && a.is_other_connection(seg, stream_cfg));
                    let second = a.second.as_deref().filter(|b| {
                        b.takes(seg, stream_cfg) && !(syn && b.is_other_connection(seg, stream_cfg))
                    });
                    let to_second = if alone {
                        false
                    } else if let Some(b) = second {
                        // In both windows (ISNs within a window of each other): the one it
                        // continues most closely.
                        !first || b.distance(seg) < a.distance(seg)
                    } else if first {
                        false
                    } else if (syn && !replace)
                        || (a.took_over && a.second.is_none() && !seg.payload.is_empty())
                    {
                        // A SYN of neither connection: a second one starts (replacing an
                        // earlier second, whose end delivers what it held). Data of neither,
                        // on a connection that took over from one that went quiet: that one
                        // may only have been idle (a keep-alive past the idle timeout) while a
                        // spoofed SYN, kept warm, took its place; its data is picked up as a
                        // second connection rather than lost.
                        if let Some(mut old) = a.second.take() {
                            old.stream.close(
                                self.clock,
                                EndReason::NewConnection,
                                &mut self.events,
                                &mut self.stats.stream,
                            );
                            feed(&mut old, &mut self.events, &mut self.stats, emit);
                        }
                        self.stats.second_connections += 1;
                        a.second = Some(Box::new(new_active(
                            &key,
                            seg,
                            self.clock,
                            &self.cfg.proxy,
                            http,
                        )));
                        true
                    } else {
                        // Out of both windows: the first connection counts it.
                        false
                    };
                    let responses = self.stats.http.response_streams;
                    let conn: &mut Active = match (to_second, a.second.as_deref_mut()) {
                        (true, Some(b)) => b,
                        _ => a,
                    };
                    conn.last_seen = self.clock;
                    conn.stream
                        .push(seg, stream_cfg, &mut self.events, &mut self.stats.stream);
                    feed(conn, &mut self.events, &mut self.stats, emit);
                    let over = conn.stream.ended().is_some() || conn.framer.is_done();
                    if over && to_second {
                        // The second connection ended first: the live first one keeps the
                        // 4-tuple, and the ended second stays as a tombstone that absorbs its
                        // own late segments (ACKs after its FIN, retransmissions) as after its
                        // end, until it idles out or another SYN takes its place. One that
                        // stopped being HTTP/1.x is forgotten.
                        if conn.stream.ended().is_some() {
                            self.stats.flows_closed += 1;
                        } else {
                            a.second = None;
                        }
                    } else if over {
                        let client = self.stats.http.response_streams == responses;
                        flow.state = after_first(a, client, &mut self.stats);
                    }
                }
                FlowState::Ignored { .. } => {
                    if !replace {
                        self.stats.segments_ignored += 1;
                    }
                    if seg.flags.rst() || seg.flags.fin() {
                        flow.state = FlowState::Closed { isn: None };
                    }
                }
                FlowState::Closed { .. } => {}
            }
            let new_cost = flow.current_cost();
            self.buffered = self.buffered + new_cost - flow.cost;
            flow.cost = new_cost;
        }

        if self.buffered() > self.cfg.budget {
            self.evict(self.cfg.budget / 10 * 9, 0, emit);
        }
        if self.clock.saturating_sub(self.last_sweep) >= NS_PER_SEC {
            self.sweep(emit);
        }
    }

    /// Decides which side a new flow is: SYN first, then configured server ports, then what
    /// the reverse direction already is, then the content (the framer looks for request lines
    /// and gives up on response streams).
    fn new_flow(&mut self, key: &TableKey, seg: &Segment) -> Flow {
        let client = if seg.flags.syn() {
            Some(!seg.flags.ack())
        } else if !self.cfg.server_ports.is_empty()
            && self
                .cfg
                .server_ports
                .binary_search(&key.flow.dst_port)
                .is_ok()
        {
            Some(true)
        } else if !self.cfg.server_ports.is_empty()
            && self
                .cfg
                .server_ports
                .binary_search(&key.flow.src_port)
                .is_ok()
        {
            Some(false)
        } else {
            let rev = TableKey {
                scope: key.scope,
                flow: key.flow.reversed(),
            };
            match self.flows.get(&rev).map(|f| &f.state) {
                Some(FlowState::Active(_)) => Some(false),
                Some(FlowState::Ignored { client }) => Some(!client),
                _ => None,
            }
        };
        let state = if client == Some(false) {
            FlowState::Ignored { client: false }
        } else {
            FlowState::Active(Box::new(new_active(
                key,
                seg,
                self.clock,
                &self.cfg.proxy,
                &self.cfg.http,
            )))
        };
        self.serial += 1;
        let mut flow = Flow {
            state,
            last_seen: self.clock,
            cost: 0,
            serial: self.serial,
        };
        flow.cost = flow.current_cost();
        flow
    }

    /// Closes a flow's stream, delivers what it held and forgets the flow.
    fn end_flow(
        &mut self,
        key: &TableKey,
        reason: EndReason,
        emit: &mut impl FnMut(RebuiltRequest),
    ) {
        if let Some(mut flow) = self.flows.remove(key) {
            self.buffered -= flow.cost;
            close_flow(
                &mut flow,
                reason,
                self.clock,
                &mut self.events,
                &mut self.stats,
                emit,
            );
        }
    }

    /// Evicts flows until the table holds at most `target` bytes. Dominant flows go first,
    /// largest first; then the least recently active (capture time), older first; ties go by
    /// creation order. Each evicted flow is counted, and so is a request it was in the middle
    /// of. Called with a target below the budget (90% of it), so that eviction runs in batches
    /// rather than on every segment.
    ///
    /// A flow's slot stays allocated for the next flow: `slot_value` is what an evicted flow's
    /// slot counts for towards the target, 0 when the budget was exceeded by what flows hold,
    /// [`map::SLOT_BYTES`] when a new flow needs a slot and the table may not grow.
    fn evict(&mut self, target: usize, slot_value: usize, emit: &mut impl FnMut(RebuiltRequest)) {
        let Some(mut need) = self.buffered().checked_sub(target).filter(|n| *n > 0) else {
            return;
        };
        let dominant = self.cfg.budget / DOMINANT_SHARE_DIVISOR;
        let incomplete = self.stats.http.dropped_incomplete;
        // At most a handful of flows can each hold an eighth of the budget.
        let mut big: Vec<(usize, u64, TableKey)> = self
            .flows
            .iter()
            .filter(|(_, f)| f.cost >= dominant)
            .map(|(k, f)| (f.cost, f.serial, *k))
            .collect();
        big.sort_unstable_by_key(|&(cost, serial, _)| (Reverse(cost), serial));
        for (cost, _, key) in big {
            if need == 0 {
                break;
            }
            self.end_flow(&key, EndReason::Evicted, emit);
            self.stats.flows_evicted += 1;
            need = need.saturating_sub(cost + slot_value);
        }
        if need > 0 {
            let (below, then) = self.least_recent(need, dominant, slot_value);
            let FlowTable {
                flows,
                events,
                stats,
                buffered,
                clock,
                ..
            } = self;
            flows.retain(
                |_, f| f.cost >= dominant || f.rank() >= below,
                |_, mut flow| {
                    *buffered -= flow.cost;
                    close_flow(&mut flow, EndReason::Evicted, *clock, events, stats, emit);
                    stats.flows_evicted += 1;
                },
            );
            for key in then {
                self.end_flow(&key, EndReason::Evicted, emit);
                self.stats.flows_evicted += 1;
            }
        }
        // Flows gone, their slots kept: a flood's worth of them is given back once it is mostly
        // free, if building the smaller table beside the big one fits.
        if slot_value == 0
            && self.flows.worth_compacting()
            && self.buffered() + self.flows.compact_cost() <= self.cfg.budget
        {
            self.flows.compact();
        }
        // The framer counts a request cut by the end of its stream as incomplete; here the
        // budget cut it, which the operator must be able to tell apart.
        let evicted = self.stats.http.dropped_incomplete - incomplete;
        self.stats.http.dropped_incomplete = incomplete;
        self.stats.requests_evicted += evicted;
    }

    /// The least recently active flows (not dominant) whose eviction frees `need` bytes, each
    /// counting its cost and `slot_value`: every flow ranked below the first value returned,
    /// then the keys returned, in order. Found by narrowing a histogram of ranks pass after pass
    /// rather than by sorting every flow: a sort wanted a vector of every flow, 64 bytes each,
    /// at the moment memory is short (9 MiB per worker under a SYN flood).
    fn least_recent(
        &self,
        need: usize,
        dominant: usize,
        slot_value: usize,
    ) -> (u128, Vec<TableKey>) {
        const BUCKETS: usize = 64;
        /// Few enough candidates left to sort.
        const FEW: usize = 256;
        let candidates = || self.flows.iter().filter(|(_, f)| f.cost < dominant);
        let value = |f: &Flow| f.cost + slot_value;
        let (mut lo, mut hi) = (u128::MAX, 0u128);
        for (_, f) in candidates() {
            lo = lo.min(f.rank());
            hi = hi.max(f.rank());
        }
        if lo > hi {
            return (0, Vec::new());
        }
        // Every flow ranked below `lo` is evicted; together they free `freed`.
        let mut freed = 0usize;
        loop {
            let width = (hi - lo) / BUCKETS as u128 + 1;
            let mut value_in = [0usize; BUCKETS];
            let mut count = [0usize; BUCKETS];
            let mut min = [u128::MAX; BUCKETS];
            let mut max = [0u128; BUCKETS];
            for (_, f) in candidates() {
                let r = f.rank();
                if r < lo || r > hi {
                    continue;
                }
                let b = ((r - lo) / width) as usize;
                value_in[b] += value(f);
                count[b] += 1;
                min[b] = min[b].min(r);
                max[b] = max[b].max(r);
            }
            let mut b = 0;
            while b < BUCKETS && freed + value_in[b] < need {
                freed += value_in[b];
                b += 1;
            }
            if b == BUCKETS {
                // Not enough even with all of them: all go.
                return (hi.saturating_add(1), Vec::new());
            }
            lo = min[b];
            hi = max[b];
            if count[b] <= FEW || lo == hi {
                let mut few: Vec<(u128, usize, TableKey)> = candidates()
                    .filter(|(_, f)| (lo..=hi).contains(&f.rank()))
                    .map(|(k, f)| (f.rank(), value(f), *k))
                    .collect();
                few.sort_unstable_by_key(|&(r, _, _)| r);
                let mut then = Vec::new();
                for (_, v, k) in few {
                    if freed >= need {
                        break;
                    }
                    freed += v;
                    then.push(k);
                }
                return (lo, then);
            }
        }
    }

    /// Once a second of capture time: expires idle flows and holes that waited too long.
    fn sweep(&mut self, emit: &mut impl FnMut(RebuiltRequest)) {
        self.last_sweep = self.clock;
        let now = self.clock;
        let idle = self.cfg.idle_timeout_ns;
        let linger = self.cfg.linger_ns.min(idle);
        let mut holes = Vec::new();
        // Idle flows go in the same pass that finds the flows with holes: no list of them is
        // made, which after a flood would be most of the table.
        let FlowTable {
            flows,
            events,
            stats,
            buffered,
            ..
        } = self;
        flows.retain(
            |key, flow| {
                let silent = now.saturating_sub(flow.last_seen);
                match &flow.state {
                    FlowState::Active(_) | FlowState::Ignored { .. } if silent >= idle => false,
                    FlowState::Closed { .. } if silent >= linger => false,
                    FlowState::Active(a) if a.stream.has_hole() || a.second.is_some() => {
                        holes.push(*key);
                        true
                    }
                    _ => true,
                }
            },
            |_, mut flow| {
                if matches!(flow.state, FlowState::Active(_)) {
                    stats.flows_expired += 1;
                }
                *buffered -= flow.cost;
                close_flow(&mut flow, EndReason::Idle, now, events, stats, emit);
            },
        );
        // Skipping a hole hands buffered bytes to the framer, which may then take on a body
        // (up to 64 KiB reserved at once): the budget is checked after each flow, as after each
        // segment, or one sweep over many flows with holes could overshoot it many times over.
        for key in holes {
            let Some(flow) = self.flows.get_mut(&key) else {
                continue; // evicted below for an earlier flow
            };
            if let FlowState::Active(a) = &mut flow.state {
                let (events, stats) = (&mut self.events, &mut self.stats);
                // One of two connections on the 4-tuple gone quiet: it is over, the other
                // stays (the second taking over when the first went). An ended second (a
                // tombstone) just goes.
                if let Some(b) = a.second.as_deref_mut() {
                    if now.saturating_sub(b.last_seen) >= idle {
                        if b.stream.ended().is_none() {
                            b.stream
                                .close(now, EndReason::Idle, events, &mut stats.stream);
                            feed(b, events, stats, emit);
                            stats.flows_expired += 1;
                        }
                        a.second = None;
                    }
                }
                let live_second = a
                    .second
                    .as_ref()
                    .is_some_and(|b| b.stream.ended().is_none());
                if live_second && now.saturating_sub(a.last_seen) >= idle {
                    a.stream
                        .close(now, EndReason::Idle, events, &mut stats.stream);
                    feed(a, events, stats, emit);
                    stats.flows_expired += 1;
                    if let Some(b) = a.second.take() {
                        *a = b;
                        a.took_over = true;
                    }
                }
                a.stream
                    .tick(now, &self.cfg.stream, events, &mut stats.stream);
                feed(a, events, stats, emit);
                if let Some(b) = a
                    .second
                    .as_deref_mut()
                    .filter(|b| b.stream.ended().is_none())
                {
                    b.stream
                        .tick(now, &self.cfg.stream, events, &mut stats.stream);
                    feed(b, events, stats, emit);
                    if b.stream.ended().is_some() {
                        stats.flows_closed += 1;
                    }
                }
                if a.stream.ended().is_some() {
                    flow.state = after_first(a, true, stats);
                }
            }
            let cost = flow.current_cost();
            self.buffered = self.buffered + cost - flow.cost;
            flow.cost = cost;
            if self.buffered() > self.cfg.budget {
                self.evict(self.cfg.budget / 10 * 9, 0, emit);
            }
        }
        // A flood over, its flows expired: the slots they kept are given back.
        if self.flows.worth_compacting()
            && self.buffered() + self.flows.compact_cost() <= self.cfg.budget
        {
            self.flows.compact();
        }
    }

    /// Advances time without segments (live capture ticks).
    pub fn tick(&mut self, now: Timestamp, emit: &mut impl FnMut(RebuiltRequest)) {
        if now > self.clock {
            self.clock = now;
        }
        if self.clock.saturating_sub(self.last_sweep) >= NS_PER_SEC {
            self.sweep(emit);
        }
    }

    /// The input is over: every stream is closed and what can be delivered is.
    pub fn finish(&mut self, emit: &mut impl FnMut(RebuiltRequest)) {
        // Taken out whole rather than key by key: a list of every key would be the last
        // allocation of a full table, at the peak.
        for (_, mut flow) in self.flows.take_all() {
            self.buffered -= flow.cost;
            close_flow(
                &mut flow,
                EndReason::Shutdown,
                self.clock,
                &mut self.events,
                &mut self.stats,
                emit,
            );
        }
    }
}

/// A client connection starting at `seg` (its SYN, or the first segment of a pickup).
fn new_active(
    key: &TableKey,
    seg: &Segment,
    now: Timestamp,
    proxy: &ProxyPolicy,
    http: &Arc<HttpLimits>,
) -> Active {
    let ctx = FlowContext {
        vni: seg.vni,
        client: key.flow.src_addr(),
        server: key.flow.dst_addr(),
    };
    let stream = Stream::new(seg);
    let framer = RequestFramer::new(ctx, http.clone(), stream.started_with_syn());
    // Only a stream seen from its SYN can show its first bytes; a pickup never looks.
    let start = stream
        .started_with_syn()
        .then(|| Box::new(StreamStart::new(proxy.mode_for(key.flow.dst_port))));
    Active {
        stream,
        framer,
        start,
        proxy: None,
        last_seen: now,
        second: None,
        took_over: false,
    }
}

/// Closes a flow that is leaving the table: its connections' streams end for `reason`, and what
/// they held is delivered (or counted).
fn close_flow(
    flow: &mut Flow,
    reason: EndReason,
    now: Timestamp,
    events: &mut Vec<StreamEvent>,
    stats: &mut WorkerStats,
    emit: &mut impl FnMut(RebuiltRequest),
) {
    if let FlowState::Active(a) = &mut flow.state {
        a.stream.close(now, reason, events, &mut stats.stream);
        feed(a, events, stats, emit);
        if let Some(b) = a.second.as_deref_mut() {
            b.stream.close(now, reason, events, &mut stats.stream);
            feed(b, events, stats, emit);
        }
    }
}

/// What a flow becomes when its first connection is over: the second connection if there is
/// one, else closed (remembering the ISN, so late duplicates are absorbed) or, when the framer
/// gave up on a live stream (a response stream whose side was guessed wrong, an upgrade,
/// HTTP/2), ignored.
fn after_first(a: &mut Box<Active>, client: bool, stats: &mut WorkerStats) -> FlowState {
    let ended = a.stream.ended().is_some();
    if ended {
        stats.flows_closed += 1;
    }
    if let Some(second) = a.second.take().filter(|b| b.stream.ended().is_none()) {
        return FlowState::Active(second);
    }
    if ended {
        FlowState::Closed {
            isn: a.stream.started_with_syn().then(|| a.stream.isn()),
        }
    } else {
        FlowState::Ignored { client }
    }
}

/// Runs a stream's pending events through its start (PROXY protocol) and its framer.
fn feed(
    active: &mut Active,
    events: &mut Vec<StreamEvent>,
    stats: &mut WorkerStats,
    emit: &mut impl FnMut(RebuiltRequest),
) {
    if events.is_empty() {
        return;
    }
    let Active {
        framer,
        start,
        proxy,
        ..
    } = active;
    // Allocates only when a request comes out; requests go on as soon as their event is framed.
    let mut out = Vec::new();
    for ev in events.drain(..) {
        let mut frame = |ev: StreamEvent| {
            framer.on_event(ev, &mut out, &mut stats.http);
        };
        match start {
            Some(s) => {
                s.on_event(ev, &mut stats.proxy, &mut frame);
                if s.is_done() {
                    *proxy = s.take_info();
                    *start = None;
                }
            }
            None => frame(ev),
        }
        stats.requests += out.len() as u64;
        for mut req in out.drain(..) {
            req.proxy.clone_from(proxy);
            emit(req);
        }
    }
}

/// The default for `linger_ns`.
pub const DEFAULT_LINGER_NS: u64 = 30 * NS_PER_SEC;

#[cfg(test)]
mod tests;
