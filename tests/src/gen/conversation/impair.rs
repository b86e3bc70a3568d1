//! The impairments applied to a planned packet list, each recorded in the
//! [`ImpairmentReport`] and the truth: dropped segments and random loss, duplicates, reordering
//! within a window, truncation to a packet length, a mid-stream start, overlapping
//! retransmissions and a second mirror with skew.

use std::ops::Range;

use super::super::encode::Encoder;
use super::*;
use crate::error::GenError;
use crate::rng::SplitMix64;

fn is_client_data(p: &PlannedPacket) -> bool {
    p.dir == Direction::ClientToServer && !p.payload.is_empty()
}

pub(super) fn impair(
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
