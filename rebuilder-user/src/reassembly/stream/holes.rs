//! Holes in a [`Stream`]: delivering what became contiguous, skipping the holes truncation
//! made at once, and the others when the reordering timeout passes (or the buffer is full),
//! each skip a counted `Gap` event and remembered so that a wrong one can be rewound.
//!
//! Works on the stream's out-of-order buffer (`ooo.rs`) and its skip bookkeeping; what a new
//! segment does is the state machine's (`stream.rs`).

use super::{gap_index, ooo_entry_cost, Stream, StreamConfig, StreamStats};
use crate::reassembly::{GapReason, StreamEvent};
use crate::segment::Timestamp;

impl Stream {
    /// Delivers everything contiguous from `next`, skipping holes known to be truncation.
    pub(super) fn drain(
        &mut self,
        ts: Timestamp,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        loop {
            while let Some(entry) = self.ooo.first_entry() {
                let at = *entry.key();
                if at > self.next {
                    break;
                }
                let p = entry.remove();
                self.ooo_cost -= ooo_entry_cost(p.data.len());
                let end = at + p.data.len() as u64;
                if end <= self.next {
                    stats.duplicate_bytes += p.data.len() as u64;
                    continue;
                }
                let skip = (self.next - at) as usize;
                stats.duplicate_bytes += skip as u64;
                let bytes = p.data.slice(skip..);
                stats.delivered_bytes += bytes.len() as u64;
                self.next = end;
                events.push(StreamEvent::Data { bytes, ts: p.ts });
            }
            let next = self.next;
            let lost_end = self
                .known_lost
                .iter()
                .filter(|(f, t)| *f <= next && next < *t)
                .map(|r| r.1)
                .max();
            if let Some(lost_end) = lost_end {
                let until = self
                    .ooo
                    .keys()
                    .next()
                    .map_or(lost_end, |k| (*k).min(lost_end));
                self.emit_gap(until - next, ts, GapReason::Truncated, events, stats);
                self.next = until;
                continue;
            }
            break;
        }
        let next = self.next;
        self.known_lost.retain(|(_, t)| *t > next);
        if !self.has_hole() {
            self.hole_since = None;
            self.advanced_past_hole = false;
        } else if self.hole_since.is_none() {
            self.hole_since = Some(ts);
            self.advanced_past_hole = false;
        }
    }

    pub(super) fn emit_gap(
        &mut self,
        len: u64,
        ts: Timestamp,
        reason: GapReason,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        if len == 0 {
            return;
        }
        let i = gap_index(reason);
        stats.gaps[i] += 1;
        stats.gap_bytes[i] += len;
        events.push(StreamEvent::Gap { len, ts, reason });
    }

    /// Gives up on the first hole: skips to the next buffered byte (or to the FIN).
    pub(super) fn skip_hole(
        &mut self,
        ts: Timestamp,
        reason: GapReason,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        let target = match (self.ooo.keys().next(), self.fin_at) {
            (Some(k), _) => *k,
            (None, Some(fin)) => fin,
            (None, None) => return,
        };
        if target > self.next {
            self.emit_gap(target - self.next, ts, reason, events, stats);
            // Skips with no in-order data between them are one jump as far as a rewind goes:
            // the real stream may resume anywhere from where the first one left.
            let from = match self.skipped {
                Some((from, _)) if self.jumped => from,
                _ => self.next,
            };
            self.skipped = Some((from, target));
            self.next = target;
            self.jumped = true;
        }
        self.hole_since = None;
        self.advanced_past_hole = false;
    }

    pub(super) fn expire_hole(
        &mut self,
        now: Timestamp,
        cfg: &StreamConfig,
        events: &mut Vec<StreamEvent>,
        stats: &mut StreamStats,
    ) {
        while let Some(since) = self.hole_since {
            if now.saturating_sub(since) < cfg.reorder_timeout_ns {
                break;
            }
            if self.ooo.is_empty() && self.fin_at.is_some_and(|f| f > self.next) {
                // Only a FIN waits ahead, and the bytes before it never came: skipping to it
                // would end the stream on the word of one segment that may be spoofed (during
                // a pause, a FIN planted ahead would otherwise close a live connection). It is
                // forgotten instead; a real end shows as the stream going idle.
                self.fin_at = None;
                self.hole_since = None;
                self.advanced_past_hole = false;
                stats.fin_ignored += 1;
                break;
            }
            self.skip_hole(now, GapReason::Lost, events, stats);
            self.drain(now, events, stats);
            // A later hole starts its wait now: its segments were only just reachable.
            if self.hole_since.is_some() {
                self.hole_since = Some(now);
                break;
            }
        }
    }
}
