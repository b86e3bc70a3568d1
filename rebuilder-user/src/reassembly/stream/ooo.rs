//! The out-of-order buffer of a [`Stream`]: bytes that arrived ahead of the next expected one,
//! kept by offset, first copy wins, each entry copied out of the capture buffer and charged
//! ([`ooo_entry_cost`]) against the stream's cap; and the ranges known lost to truncation.
//!
//! Only the buffer's own bookkeeping: when to deliver, skip or prune is the state machine's
//! (`stream.rs`) and the holes' (`holes.rs`) decision.

use bytes::Bytes;

use super::{ooo_entry_cost, Stream, StreamStats, MAX_KNOWN_LOST};
use crate::segment::Timestamp;

/// One buffered range: its bytes (a copy of their own) and the capture time that carried them.
pub(super) struct Pending {
    pub(super) data: Bytes,
    pub(super) ts: Timestamp,
}

impl Stream {
    /// Drops the out-of-order entry farthest ahead.
    pub(super) fn prune_farthest(&mut self, stats: &mut StreamStats) {
        if let Some((_, p)) = self.ooo.pop_last() {
            self.ooo_cost -= ooo_entry_cost(p.data.len());
            stats.pruned_segments += 1;
            stats.pruned_bytes += p.data.len() as u64;
        }
    }

    /// Drops the buffered bytes that in-order `data` at `start` covers, counting them as
    /// duplicates and their differing bytes as conflicts; a buffered entry reaching beyond
    /// `data` keeps its tail.
    pub(super) fn trim_buffered(&mut self, start: u64, data: &[u8], stats: &mut StreamStats) {
        let end = start + data.len() as u64;
        while let Some(entry) = self.ooo.first_entry() {
            let at = *entry.key();
            if at >= end {
                break;
            }
            let p = entry.remove();
            self.ooo_cost -= ooo_entry_cost(p.data.len());
            let p_end = at + p.data.len() as u64;
            let o_from = at.max(start);
            let o_to = p_end.min(end);
            if o_to > o_from {
                stats.duplicate_bytes += o_to - o_from;
                let kept = &p.data[(o_from - at) as usize..(o_to - at) as usize];
                let new = &data[(o_from - start) as usize..(o_to - start) as usize];
                if kept != new {
                    stats.conflict_bytes +=
                        kept.iter().zip(new).filter(|(a, b)| a != b).count() as u64;
                }
            }
            if p_end > end {
                // A copy: a slice would keep the whole entry's allocation, charged for the
                // tail alone.
                let tail = Bytes::copy_from_slice(&p.data[(end - at) as usize..]);
                self.ooo_cost += ooo_entry_cost(tail.len());
                self.ooo.insert(
                    end,
                    Pending {
                        data: tail,
                        ts: p.ts,
                    },
                );
            }
        }
    }

    pub(super) fn note_lost(&mut self, from: u64, to: u64) {
        if from < to && self.known_lost.len() < MAX_KNOWN_LOST {
            self.known_lost.push((from, to));
        }
    }

    /// Buffers an out-of-order range, keeping bytes already buffered (first wins).
    pub(super) fn insert(
        &mut self,
        start: u64,
        data: &[u8],
        ts: Timestamp,
        stats: &mut StreamStats,
    ) {
        let end = start + data.len() as u64;
        // Existing entries overlapping [start, end): the one starting before `start` (entries
        // never overlap, so at most one can reach into the range) and those starting inside it.
        let before = self
            .ooo
            .range(..start)
            .next_back()
            .map(|(k, p)| (*k, p.data.len() as u64));
        let mut overlaps: Vec<(u64, u64)> = Vec::new();
        if let Some((k, len)) = before {
            if k + len > start {
                overlaps.push((k, len));
            }
        }
        overlaps.extend(
            self.ooo
                .range(start..end)
                .map(|(k, p)| (*k, p.data.len() as u64)),
        );

        let mut cur = start;
        for (k, len) in overlaps {
            if k > cur {
                self.insert_piece(cur, &data[(cur - start) as usize..(k - start) as usize], ts);
            }
            let o_from = k.max(start);
            let o_to = (k + len).min(end);
            if o_to > o_from {
                stats.duplicate_bytes += o_to - o_from;
                if let Some(p) = self.ooo.get(&k) {
                    let kept = &p.data[(o_from - k) as usize..(o_to - k) as usize];
                    let new = &data[(o_from - start) as usize..(o_to - start) as usize];
                    if kept != new {
                        stats.conflict_bytes +=
                            kept.iter().zip(new).filter(|(a, b)| a != b).count() as u64;
                    }
                }
            }
            cur = cur.max(k + len);
        }
        if cur < end {
            self.insert_piece(cur, &data[(cur - start) as usize..], ts);
        }
    }

    pub(super) fn insert_piece(&mut self, at: u64, bytes: &[u8], ts: Timestamp) {
        if bytes.is_empty() {
            return;
        }
        // A copy: the input may be a slice of a large capture buffer that must not stay pinned
        // while this waits for a hole to fill.
        self.ooo_cost += ooo_entry_cost(bytes.len());
        self.ooo.insert(
            at,
            Pending {
                data: Bytes::copy_from_slice(bytes),
                ts,
            },
        );
    }
}
