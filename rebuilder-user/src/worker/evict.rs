//! Which flows leave a worker's table, and when: eviction when the table's memory exceeds the
//! worker's budget (dominant flows first, then the least recently active), and the sweep once a
//! second of capture time that expires idle flows and holes that waited too long.
//!
//! Part of the flow table (`super`): it works on the table's own fields, and ends flows through
//! `connection`, so an evicted or expired stream delivers (or counts) what it held like any other.

use std::cmp::Reverse;

use super::connection::{after_first, close_flow, feed};
use super::*;

impl FlowTable {
    /// Evicts flows until the table holds at most `target` bytes. Dominant flows go first,
    /// largest first; then the least recently active (capture time), older first; ties go by
    /// creation order. Each evicted flow is counted, and so is a request it was in the middle
    /// of. Called with a target below the budget (90% of it), so that eviction runs in batches
    /// rather than on every segment.
    ///
    /// A flow's slot stays allocated for the next flow: `slot_value` is what an evicted flow's
    /// slot counts for towards the target, 0 when the budget was exceeded by what flows hold,
    /// [`map::SLOT_BYTES`] when a new flow needs a slot and the table may not grow.
    pub(super) fn evict(
        &mut self,
        target: usize,
        slot_value: usize,
        emit: &mut impl FnMut(RebuiltRequest),
    ) {
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
    pub(super) fn least_recent(
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
    pub(super) fn sweep(&mut self, emit: &mut impl FnMut(RebuiltRequest)) {
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
}
