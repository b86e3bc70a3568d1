//! A reassembly worker: owns the flows its dispatcher sends it, runs each client stream through
//! reassembly and HTTP framing, and hands out the rebuilt requests.
//!
//! The flow table lives here rather than in `reassembly` because a flow's life (which side is
//! the client, when it is ignored, closed or evicted) depends on both the TCP stream and what
//! the framer found in it.
//!
//! Here: the configuration, the flow types and the table's routing of segments to flows.
//! `connection` runs a connection's streams, `evict` decides which flows leave the table
//! (memory budget, idle expiry), `map` is the table's storage, `stats` the plain-integer counts
//! and `metrics` their publication. Depends on reassembly, proxy and http (the stages a stream
//! runs through); nothing downstream of the worker.

use std::mem::size_of;
use std::sync::Arc;

use crate::config::FlowKeyMode;
use crate::http::{FlowContext, HttpLimits, RequestFramer};
use crate::memory::alloc_size;
use crate::proxy::{ProxyInfo, ProxyPolicy, StreamStart};
use crate::reassembly::{EndReason, Stream, StreamConfig, StreamEvent};
use crate::request::RebuiltRequest;
use crate::segment::{FlowKey, Segment, Timestamp};

mod connection;
mod evict;
mod map;
pub mod metrics;
mod stats;

use connection::{after_first, close_flow, feed, new_active};
use map::FlowMap;
pub use stats::WorkerStats;

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

enum FlowState {
    /// A client stream being rebuilt. Boxed: most flows of a busy table are the small kinds
    /// (server sides, closed connections lingering), which should not pay for this one.
    Active(Box<Active>),
    /// A direction that carries no requests: its segments are counted and dropped. `isn`: the
    /// client's SYN it began with, if it did: that SYN again is late, any other SYN without ACK
    /// starts a new connection, as on a closed 4-tuple.
    Ignored { client: bool, isn: Option<u32> },
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
    /// from this stream's, or this stream was picked up without its SYN. A late SYN of a
    /// picked-up connection is possible (its first data segment overtaking it by a round trip)
    /// but every SYN is followed as another connection all the same: taken as this one, its
    /// bytes would be read as the continuation of whatever segment was picked up first, so a
    /// single segment sent from the client's endpoint ahead of its SYN (a request head
    /// promising a huge body, before, at or past the first byte the SYN announces) could hide
    /// the connection's requests from the WAF. Followed beside it, each real segment goes to
    /// the connection it continues; the price, in the legitimate case, is a request replayed
    /// twice if a copy of the overtaking segment comes again later, and on a connection
    /// mirrored twice (`FlowKeyMode::Inner`) whose first copy of the SYN was lost and whose
    /// second came more than a round trip late, each copy of the stream going to one of the
    /// two connections, every request.
    fn is_other_connection(&self, seg: &Segment) -> bool {
        !self.stream.started_with_syn() || self.stream.isn() != seg.seq
    }

    /// Whether a segment that continues `self` and `other` equally closely is `self`'s: a
    /// connection that began with its SYN wins over one that was picked up (which may be a
    /// spoofed segment, able to line its end up with the real stream's next segment).
    fn wins_tie_over(&self, other: &Active) -> bool {
        self.stream.started_with_syn() && !other.stream.started_with_syn()
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
                // So is a new SYN on an ignored direction: what made it ignored (a SYN-ACK, a
                // status line or non-HTTP bytes seen first) may have been one spoofed segment
                // sent from the client's own endpoint, which would otherwise hide every later
                // connection on the 4-tuple from the WAF. Only a client sends a SYN without
                // ACK, so the new connection is rebuilt; a server side never sees one.
                FlowState::Ignored { isn, .. } => {
                    seg.flags.syn() && !seg.flags.ack() && isn != Some(seg.seq)
                }
                // A new SYN on a live one is followed beside it (see `Active::second`).
                FlowState::Active(_) => false,
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
                    let first =
                        alone || a.takes(seg, stream_cfg) && !(syn && a.is_other_connection(seg));
                    let second = a.second.as_deref().filter(|b| {
                        b.takes(seg, stream_cfg) && !(syn && b.is_other_connection(seg))
                    });
                    let to_second = if alone {
                        false
                    } else if let Some(b) = second {
                        // In both windows (ISNs within a window of each other): the one it
                        // continues most closely.
                        let (to_b, to_a) = (b.distance(seg), a.distance(seg));
                        !first || to_b < to_a || (to_b == to_a && b.wins_tie_over(a))
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
                            if !a.stream.started_with_syn() && old.stream.started_with_syn() {
                                // The first was picked up without its SYN, the second began
                                // with one: the pickup (possibly a bait sent ahead of the real
                                // SYN) gives way and the second becomes the first, so that a
                                // further SYN cannot push the real connection out.
                                std::mem::swap(a, &mut old);
                            }
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
                FlowState::Ignored { isn, .. } => {
                    if !replace {
                        self.stats.segments_ignored += 1;
                    }
                    if seg.flags.rst() || seg.flags.fin() {
                        flow.state = FlowState::Closed { isn: *isn };
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
                Some(FlowState::Ignored { client, .. }) => Some(!client),
                _ => None,
            }
        };
        let state = if client == Some(false) {
            FlowState::Ignored {
                client: false,
                isn: None,
            }
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

/// The default for `linger_ns`.
pub const DEFAULT_LINGER_NS: u64 = 30 * NS_PER_SEC;

#[cfg(test)]
mod tests;
