//! One direction of one TCP connection, turned back into an ordered byte stream.
//!
//! Sequence numbers wrap at 2^32; internally every byte gets a 64-bit offset from the stream's
//! first byte, computed from the signed 32-bit distance to the next expected byte, so the rest
//! of the code never thinks about wrapping.
//!
//! Policies, chosen on purpose:
//! - Overlaps: bytes already delivered are final; a later copy of them is trimmed and counted as
//!   duplicate bytes. Among out-of-order bytes, first wins: a later copy of a buffered range is
//!   trimmed, and its differing bytes are counted as conflicts. A segment that arrives in order
//!   is delivered whole, and the buffered bytes it covers are dropped (differences counted as
//!   conflicts): that is what Linux's receive path does (the in-order segment is queued, the
//!   out-of-order queue is trimmed behind it), so the WAF sees what the server's application
//!   most likely read. Bytes planted ahead give way to the real segment they fall inside; bytes
//!   that reach past it are the stream's continuation for Linux and here alike. Retransmissions and the second copy of a doubly mirrored
//!   connection are identical, so this only matters for hostile traffic. Tested end to end by
//!   the hostile-traffic cases `conflicting-overlap` and `spoofed-ahead`.
//! - Holes: waited for until the reordering timeout (capture time), then skipped with a `Gap`
//!   event. The wait restarts whenever the stream advances in order, since a hole behind which
//!   the stream keeps moving is not a lost segment but bytes parked ahead of it (spoofed, or a
//!   stale copy). A hole that truncation made (the frame carried fewer bytes than its IP length
//!   says) is skipped at once: a retransmission through the same mirror session would be
//!   truncated the same way.
//! - A full out-of-order buffer: while the stream is stuck at its hole (a lost segment and a
//!   sender still sending), the hole is skipped at once; while it keeps advancing, the bytes
//!   farthest ahead are dropped instead (counted as `pruned`), as Linux prunes its out-of-order
//!   queue, so a flood of bytes parked ahead cannot force a skip over the real stream.
//! - A skip that was wrong is undone: when data arrives inside the range the last skip jumped
//!   over, the bytes delivered after it were not this connection's (spoofed bytes parked ahead
//!   during a pause), since a lost segment practically never turns up a second later. The stream
//!   goes back to that data with a `Rewind` event (counted), and the framer resynchronises.
//! - FIN: ends the stream when the stream reaches it. A FIN ahead that the stream runs past in
//!   order was not the sender's and is ignored; one whose missing bytes never come is forgotten
//!   after the reordering timeout rather than skipped to (a real end then shows as idleness),
//!   so a FIN planted ahead during a pause cannot close a live connection.
//! - RST: acts only when its sequence number is exactly the stream's next byte; any other RST
//!   within the window is counted and ignored (RFC 5961 §3: a receiver would answer it with a
//!   challenge ACK, and a passive observer simply keeps the stream).
//! - FIN reached only by skipping a hole (no in-order byte since) is forgotten, not acted on.
//! - Pickup mid-stream: the first segment seen fixes the stream's start; bytes before it are
//!   counted and ignored.
//!
//! Layout: this file is the state machine (a segment's way in: window, RST, FIN, in order or
//! not, rewinds; `tick` and `close`); `ooo` the out-of-order buffer and the ranges known lost;
//! `holes` delivering what became contiguous and skipping holes; `stats` the counts.

use std::collections::BTreeMap;
use std::mem::size_of;

use super::{EndReason, GapReason, StreamEvent};
use crate::segment::{Segment, Timestamp};

mod holes;
mod ooo;
mod stats;

use ooo::Pending;
use stats::gap_index;
pub use stats::{StreamStats, GAP_REASONS};

/// What every entry of the out-of-order buffer costs beyond its bytes' allocation: its share of
/// the map's nodes (11 entries of 48 bytes to a 576-byte leaf, at least half full) and the
/// `Bytes` header. Charged against the buffer cap so that a flood of one-byte segments is bounded
/// as tightly as a few big ones.
pub const OOO_ENTRY_OVERHEAD: usize = 112;

/// What an out-of-order entry of `len` bytes is charged: its copy as the allocator serves it
/// (up to a quarter more than asked, see `memory::alloc_size`) and the entry's overhead.
pub const fn ooo_entry_cost(len: usize) -> usize {
    crate::memory::alloc_size(len) + OOO_ENTRY_OVERHEAD
}

/// A map's first node, which a single entry takes whole.
const OOO_FIRST_NODE: usize = crate::memory::alloc_size(16 + 11 * (8 + size_of::<Pending>()));

/// At most this many truncation-made holes are remembered per stream; beyond it the reordering
/// timeout skips them instead (slower, never wrong).
const MAX_KNOWN_LOST: usize = 64;

/// What a stream may hold beyond `max_buffered`: the ranges it remembers as truncated, and the
/// first node of its out-of-order map. `buffered()` stays within `max_buffered +
/// MAX_METADATA_BYTES` (plus one segment that has not yet been checked against the cap).
pub const MAX_METADATA_BYTES: usize = MAX_KNOWN_LOST * size_of::<(u64, u64)>() + OOO_FIRST_NODE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// How long (capture time, ns) a hole may wait for the missing segment.
    pub reorder_timeout_ns: u64,
    /// Out-of-order bytes (plus per-entry overhead) one stream may hold.
    pub max_buffered: usize,
    /// Segments starting this far or further beyond the next expected byte are out of window.
    pub max_window: u64,
    /// Deliver bytes carried on a SYN (TCP Fast Open) rather than drop them (counted).
    pub syn_data: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            reorder_timeout_ns: 1_000_000_000,
            max_buffered: 4 << 20,
            max_window: 8 << 20,
            syn_data: false,
        }
    }
}

/// Reassembly state of one direction of one connection.
pub struct Stream {
    /// Sequence number of offset 0 (the byte after the SYN, or the first byte seen).
    base: u32,
    /// Offset of the next byte to deliver.
    next: u64,
    started_with_syn: bool,
    /// Out-of-order bytes by offset; entries never overlap each other.
    ooo: BTreeMap<u64, Pending>,
    ooo_cost: usize,
    /// Ranges known to be missing because their frames were truncated.
    known_lost: Vec<(u64, u64)>,
    /// Capture time since which the current hole has been waiting: since it opened, or since
    /// the stream last advanced in order.
    hole_since: Option<Timestamp>,
    /// The stream advanced in order while the current hole was open.
    advanced_past_hole: bool,
    /// The range the last skip jumped over (the skips since in-order data last arrived,
    /// together), until data turns up in it or another skip happens.
    skipped: Option<(u64, u64)>,
    /// The stream stands where a skip put it: no in-order data has arrived since.
    jumped: bool,
    /// Offset just past the last data byte, once the FIN is known.
    fin_at: Option<u64>,
    ended: Option<EndReason>,
}

impl Stream {
    /// Starts a stream at its first segment: after the SYN when it is one, else at the first
    /// byte this segment carries (pickup mid-stream).
    pub fn new(first: &Segment) -> Self {
        let syn = first.flags.syn();
        Self {
            base: if syn {
                first.seq.wrapping_add(1)
            } else {
                first.seq
            },
            next: 0,
            started_with_syn: syn,
            ooo: BTreeMap::new(),
            ooo_cost: 0,
            known_lost: Vec::new(),
            hole_since: None,
            advanced_past_hole: false,
            skipped: None,
            jumped: false,
            fin_at: None,
            ended: None,
        }
    }

    pub fn started_with_syn(&self) -> bool {
        self.started_with_syn
    }

    /// Sequence number of the SYN this stream started with; for a stream picked up without
    /// it, the one its SYN would have (one before the first byte seen).
    pub fn isn(&self) -> u32 {
        self.base.wrapping_sub(1)
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// Memory this stream holds, as charged against the memory budget: the out-of-order
    /// buffer (the per-stream cap applies to its entries alone, the first node of its map
    /// aside) and the holes known to be truncation.
    pub fn buffered(&self) -> usize {
        let first_node = if self.ooo.is_empty() {
            0
        } else {
            OOO_FIRST_NODE
        };
        self.ooo_cost
            + first_node
            + crate::memory::alloc_size(self.known_lost.capacity() * size_of::<(u64, u64)>())
    }

    /// Whether bytes are missing before buffered data or before the FIN.
    pub fn has_hole(&self) -> bool {
        self.ended.is_none() && (!self.ooo.is_empty() || self.fin_at.is_some_and(|f| f > self.next))
    }

    fn seq_of(&self, offset: u64) -> u32 {
        self.base.wrapping_add(offset as u32)
    }

    /// Offset of a sequence number: within ±2^31 of the next expected byte.
    fn offset_of(&self, seq: u32) -> i64 {
        let diff = seq.wrapping_sub(self.seq_of(self.next)) as i32;
        self.next as i64 + i64::from(diff)
    }

    /// Whether `wire` bytes starting at sequence number `seq` fall within `max_window` of the
    /// next expected byte (ahead) or of the bytes already behind it.
    pub fn in_window(&self, seq: u32, wire: u32, cfg: &StreamConfig) -> bool {
        let start = self.offset_of(seq);
        let window_end = self.next.saturating_add(cfg.max_window) as i64;
        start < window_end && start + i64::from(wire) >= self.next as i64 - cfg.max_window as i64
    }

    /// How far `seq` is from the stream's next expected byte, either way: when two connections
    /// share a 4-tuple, a segment belongs to the one it continues most closely.
    pub fn distance(&self, seq: u32) -> u64 {
        self.offset_of(seq).abs_diff(self.next as i64)
    }

    /// Feeds one segment of this direction; the resulting events are appended to `events`.
    pub fn push(
        &mut self,
        seg: &Segment,
        cfg: &StreamConfig,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        if self.ended.is_some() {
            stats.after_end_segments += 1;
            return;
        }
        stats.segments += 1;
        if seg.flags.syn() && !seg.flags.ack() && (seg.flags.rst() || seg.flags.fin()) {
            // A server in LISTEN discards a SYN that also carries RST or FIN (Linux does): it
            // opens and ends nothing, here neither, or one spoofed segment could close a
            // connection before its real SYN and have that SYN absorbed as a late duplicate.
            if seg.flags.rst() {
                stats.rst_ignored += 1;
            } else {
                stats.fin_ignored += 1;
            }
            return;
        }
        // Bytes on a SYN are TCP Fast Open's, which a server takes only with a valid cookie; a
        // server without one (or without Fast Open, Linux's default) drops them, and the client
        // sends them again after the handshake. Unless told the servers take them, they are
        // dropped here too, counted: kept, a client's own SYN could carry bytes the server never
        // read (a head promising a huge body, another protocol's) and hide the connection's real
        // requests from the WAF.
        let stripped;
        // Kept only on a SYN without ACK: what a Fast Open server may take.
        let keep = cfg.syn_data && !seg.flags.ack();
        let seg = if seg.flags.syn() && seg.wire_len > 0 && !keep {
            stats.syn_data_bytes += u64::from(seg.wire_len);
            stripped = Segment {
                payload: bytes::Bytes::new(),
                wire_len: 0,
                ..seg.clone()
            };
            &stripped
        } else {
            seg
        };
        let data_seq = seg.seq.wrapping_add(u32::from(seg.flags.syn()));
        let start = self.offset_of(data_seq);
        let wire = i64::from(seg.wire_len);
        if !self.in_window(data_seq, seg.wire_len, cfg) {
            // Far outside any window the receiver could have offered: spoofed or stale.
            stats.out_of_window_segments += 1;
            return;
        }
        if seg.flags.rst() {
            // RFC 5961 §3.2: only a RST exactly at the receiver's next byte resets. Not one just
            // past the highest byte seen either, though the sender's own RST lands there when
            // the mirror missed data: that position is an attacker's to choose, by planting a
            // byte ahead first. A real reset then shows as the stream going idle.
            let at = start.max(0) as u64;
            if start >= 0 && at == self.next {
                self.close(seg.ts, EndReason::Rst, events, stats);
            } else {
                stats.rst_ignored += 1;
            }
            return;
        }
        if let Some(fin) = self.fin_at {
            if start >= fin as i64 && wire > 0 {
                stats.after_end_segments += 1;
                return;
            }
        }
        if seg.flags.fin() && self.fin_at.is_none() {
            self.fin_at = Some((start + wire).max(self.next as i64) as u64);
        }

        let before = self.next;
        let start = self.rewind_if_skipped_wrongly(start, seg, events, stats);
        self.accept(start, seg, events, stats);
        self.drain(seg.ts, events, stats);
        if self.next > before && self.hole_since.is_some() {
            // Moving in order past an open hole: what waits beyond it is not the stream's
            // continuation, or not yet; its wait starts over.
            self.hole_since = Some(seg.ts);
            self.advanced_past_hole = true;
        }
        while self.ooo_cost > cfg.max_buffered {
            if self.advanced_past_hole {
                self.prune_farthest(stats);
            } else {
                stats.buffer_full_skips += 1;
                self.skip_hole(seg.ts, GapReason::Lost, events, stats);
                self.drain(seg.ts, events, stats);
            }
        }
        self.expire_hole(seg.ts, cfg, events, stats);
        self.check_fin(seg.ts, events, stats);
    }

    /// Data inside the range the last skip jumped over means the skip was wrong: the stream
    /// goes back to it. Returns the segment's start offset (unchanged).
    fn rewind_if_skipped_wrongly(
        &mut self,
        start: i64,
        seg: &Segment,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) -> i64 {
        let Some((from, to)) = self.skipped else {
            return start;
        };
        if seg.payload.is_empty() || start < from as i64 || start >= to as i64 {
            return start;
        }
        let at = start as u64;
        self.skipped = None;
        stats.rewinds += 1;
        events.push(StreamEvent::Rewind {
            back: self.next - at,
            ts: seg.ts,
        });
        self.next = at;
        self.jumped = false;
        // Whatever lies buffered beyond is still at its true offset; the hole up to it (if
        // any) waits from now.
        self.hole_since = None;
        self.advanced_past_hole = false;
        start
    }

    /// Places the segment's bytes: delivered at once when in order, else buffered.
    fn accept(
        &mut self,
        start: i64,
        seg: &Segment,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        let cap = seg.payload.len() as i64;
        let wire = i64::from(seg.wire_len);
        let next = self.next as i64;
        if start < 0 {
            stats.before_start_bytes += (-start).min(wire) as u64;
        }
        // Bytes already behind us: retransmission, second mirror copy, or before the start.
        let behind = (next - start).clamp(0, wire);
        stats.duplicate_bytes += (behind - (-start).clamp(0, behind)) as u64;
        if behind == wire {
            return;
        }
        let data_start = start + behind;
        if cap > behind {
            let data = seg.payload.slice(behind as usize..);
            if data_start == next {
                // The stream's own bytes again where it stands: whatever skip brought it here
                // is confirmed.
                self.jumped = false;
                // In order: delivered whole, without copying; buffered bytes it covers were a
                // guess about the future and give way (counted where they differ).
                self.trim_buffered(self.next, &data, stats);
                stats.delivered_bytes += data.len() as u64;
                self.next += data.len() as u64;
                if self.fin_at.is_some_and(|f| f < self.next) {
                    // The stream runs on in order past a FIN seen ahead of it: that FIN was
                    // not the sender's (a sender sends nothing after its FIN).
                    self.fin_at = None;
                    stats.fin_ignored += 1;
                }
                events.push(StreamEvent::Data {
                    bytes: data,
                    ts: seg.ts,
                });
            } else {
                stats.out_of_order_segments += 1;
                self.insert(data_start as u64, &data, seg.ts, stats);
            }
        }
        if cap < wire {
            let lost_from = (start + cap).max(next) as u64;
            self.note_lost(lost_from, (start + wire) as u64);
        }
    }

    fn check_fin(&mut self, ts: Timestamp, events: &mut Vec<StreamEvent>, stats: &mut StreamStats) {
        if self.ended.is_none() && self.fin_at.is_some_and(|f| f <= self.next) {
            if self.jumped {
                // Reached by skipping a hole, not by the stream's own bytes: a FIN planted ahead
                // (with a byte or two) during a pause would otherwise end a live connection. It
                // is forgotten; a real end shows as the stream going idle.
                self.fin_at = None;
                stats.fin_ignored += 1;
                return;
            }
            self.end(ts, EndReason::Fin, events);
        }
    }

    fn end(&mut self, ts: Timestamp, reason: EndReason, events: &mut Vec<StreamEvent>) {
        self.ended = Some(reason);
        self.ooo.clear();
        self.ooo_cost = 0;
        self.known_lost.clear();
        self.hole_since = None;
        events.push(StreamEvent::End { ts, reason });
    }

    /// Advances time without a segment: skips holes that waited longer than the timeout.
    pub fn tick(
        &mut self,
        now: Timestamp,
        cfg: &StreamConfig,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        if self.ended.is_none() {
            self.expire_hole(now, cfg, events, stats);
            self.check_fin(now, events, stats);
        }
    }

    /// Ends the stream now: every hole is skipped, everything buffered is delivered, then `End`.
    pub fn close(
        &mut self,
        ts: Timestamp,
        reason: EndReason,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        if self.ended.is_some() {
            return;
        }
        self.drain(ts, events, stats);
        while !self.ooo.is_empty() {
            self.skip_hole(ts, GapReason::Closed, events, stats);
            self.drain(ts, events, stats);
        }
        match self.fin_at {
            Some(fin) if fin <= self.next => self.end(ts, EndReason::Fin, events),
            Some(fin) => {
                self.emit_gap(fin - self.next, ts, GapReason::Closed, events, stats);
                self.next = fin;
                self.end(ts, reason, events);
            }
            None => self.end(ts, reason, events),
        }
    }
}

#[cfg(test)]
mod tests;
