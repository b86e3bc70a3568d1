//! Attacks on TCP's sequence space: segments far outside the window, overlapping segments
//! with conflicting bytes (first wins), zero-window probes, and out-of-order data behind holes
//! that never fill. What they test: reassembly accepts only what a receiver would, and its
//! memory caps hold.

use super::super::conversation::{flags, Direction};
use super::super::http;
use super::builder::{attacker, epoch_ns, human, mid_ts, span_ns, ts_ns, Builder, RawConn};
use super::{Expect, MSS, NS_PER_MS, VICTIM_HOST};
use crate::error::GenError;

impl Builder<'_> {
    pub(super) fn out_of_window(&mut self) -> Result<(), GenError> {
        // Far from anything a receiver would accept: half the sequence space, a quarter ahead,
        // 256 MiB behind.
        const FAR: [u32; 3] = [0x8000_0000, 0x4000_0000, 0u32.wrapping_sub(0x1000_0000)];
        let mut out_of_window = 0u64;
        let mut second_connections = 0u64;
        let plans = std::mem::take(&mut self.legit_plans);
        for (i, plan) in plans.iter().enumerate() {
            let Some(syn) = plan.packets().first() else {
                continue;
            };
            let t = plan.truth.client;
            let mut spoof = RawConn::new(
                self.id(),
                t,
                plan.truth.server,
                plan.truth.vni,
                plan.client_isn,
                plan.server_isn,
            );
            let data_seq = plan.client_isn.wrapping_add(1);
            for (k, far) in FAR.iter().enumerate() {
                let req = format!("GET /injected/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n");
                // Right after the SYN, and again in the middle of the connection.
                for ts in [syn.ts + 1 + k as u64, mid_ts(plan) + 1 + k as u64] {
                    self.frames.push(spoof.packet(
                        ts,
                        Direction::ClientToServer,
                        data_seq.wrapping_add(*far),
                        flags::ACK | flags::PSH,
                        req.as_bytes(),
                    )?);
                    out_of_window += 1;
                }
            }
            if i % 2 == 0 {
                // Before the SYN: the first segment seen for this 4-tuple is the spoofed one,
                // which must not leave the real connection out of its window. It starts a
                // connection of its own (picked up mid-stream); the real SYN then starts a
                // second one beside it, and the injections half the sequence space off (at
                // the spoofed segment's own sequence number) fall in the first one's window.
                second_connections += 1;
                out_of_window -= 2;
                self.frames.push(spoof.packet(
                    syn.ts.saturating_sub(1000),
                    Direction::ClientToServer,
                    data_seq.wrapping_add(0x8000_0000),
                    flags::ACK | flags::PSH,
                    b"\x00\x01\x02 not a request, never a request \x03\x04",
                )?);
            }
        }
        self.legit_plans = plans;
        let n = self.scale.attackers;
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let base = c.next;
            for (k, far) in FAR.iter().enumerate() {
                let req = format!("GET /far/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n");
                self.frames.push(c.packet(
                    ts + 1000 * (k as u64 + 1),
                    Direction::ClientToServer,
                    base.wrapping_add(*far),
                    flags::ACK | flags::PSH,
                    req.as_bytes(),
                )?);
                out_of_window += 1;
            }
        }
        self.expect("segment:out_of_window", Expect::Exactly(out_of_window));
        self.expect(
            "segment:second_connection",
            Expect::Exactly(second_connections),
        );
        self.about = format!(
            "{out_of_window} segments 256MiB to 2GiB off, into legitimate and attackers' connections; spoofed segments before SYNs"
        );
        Ok(())
    }

    pub(super) fn conflicting_overlap(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let mut conflicts = 0u64;
        for i in 0..n {
            for pattern in 0..3u8 {
                let ts = self.at(i * 3 + usize::from(pattern), n * 3);
                let mut c = self.conn(attacker(i * 3 + usize::from(pattern)), 7);
                let req = http::post_with_id(
                    VICTIM_HOST,
                    &format!("/overlap/{i}/{pattern}"),
                    4000,
                    i as u64,
                    Some(&format!("o-{i}-{pattern}")),
                );
                self.frames.push(c.syn(ts)?);
                let base = c.next;
                let s1 = 0..MSS;
                let s2 = MSS..2 * MSS;
                let s3 = 2 * MSS..req.len();
                let seg = |r: &std::ops::Range<usize>| req.get(r.clone()).unwrap_or_default();
                let forged: Vec<u8> = seg(&s2).iter().map(|b| b ^ 0x01).collect();
                let seq = |off: usize| base.wrapping_add(off as u32);
                let mut t = ts + 10_000;
                let mut send = |c: &mut RawConn, off: usize, bytes: &[u8]| {
                    t += 10_000;
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        seq(off),
                        flags::ACK | flags::PSH,
                        bytes,
                    )
                };
                let mut delivered = req.clone();
                match pattern {
                    // In order, then a forged copy of delivered bytes: trimmed as a duplicate.
                    0 => {
                        for r in [&s1, &s2, &s3] {
                            self.frames.push(send(&mut c, r.start, seg(r))?);
                        }
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                    }
                    // The real copy waits out of order, the forged one conflicts with it.
                    1 => {
                        self.frames.push(send(&mut c, s2.start, seg(&s2))?);
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                        self.frames.push(send(&mut c, s1.start, seg(&s1))?);
                        self.frames.push(send(&mut c, s3.start, seg(&s3))?);
                        conflicts += s2.len() as u64;
                    }
                    // The forged copy comes first: it wins, as documented.
                    _ => {
                        self.frames.push(send(&mut c, s2.start, &forged)?);
                        self.frames.push(send(&mut c, s2.start, seg(&s2))?);
                        self.frames.push(send(&mut c, s1.start, seg(&s1))?);
                        self.frames.push(send(&mut c, s3.start, seg(&s3))?);
                        conflicts += s2.len() as u64;
                        if let Some(d) = delivered.get_mut(s2.clone()) {
                            d.copy_from_slice(&forged);
                        }
                    }
                }
                c.next = seq(req.len());
                t += 10_000;
                self.frames.push(c.fin(t)?);
                self.hostile_delivered.push(delivered);
            }
        }
        self.expect("bytes:conflict", Expect::Exactly(conflicts));
        self.about = format!(
            "{} connections re-sending a body segment with other bytes, before, between and after the real one",
            n * 3
        );
        Ok(())
    }
}

impl Builder<'_> {
    pub(super) fn zero_window_probes(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let probes = self.scale.probes;
        let every = 250 * NS_PER_MS;
        for i in 0..2 * n {
            let forever = i >= n;
            let ts = self.at(i, 2 * n) / 2 + epoch_ns() / 2;
            let mut c = self.conn(attacker(i), 7);
            let req = http::post_with_id(
                VICTIM_HOST,
                &format!("/zero-window/{i}"),
                6000,
                i as u64,
                Some(&format!("z-{i}")),
            );
            self.frames.push(c.syn(ts)?);
            self.frames.push(c.syn_ack(ts + 1000)?);
            // The server's window closes after the first 3000 bytes.
            let first = 3000;
            self.frames
                .extend(c.stream(ts + 2000, 1000, req.get(..first).unwrap_or_default())?);
            let held = c.next;
            let probe_byte = req.get(first..=first).unwrap_or_default().to_vec();
            let mut t = ts + 100_000;
            for p in 0..probes {
                t += every;
                let frame = if p % 2 == 0 {
                    // Linux: an old sequence number, no data: asks for an ACK.
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        held.wrapping_sub(1),
                        flags::ACK,
                        b"",
                    )?
                } else {
                    // BSD: the next byte, beyond the closed window, again and again.
                    c.packet(
                        t,
                        Direction::ClientToServer,
                        held,
                        flags::ACK | flags::PSH,
                        &probe_byte,
                    )?
                };
                self.frames.push(frame);
                let ack = c.server_packet(t + 10_000, flags::ACK, b"")?;
                self.frames.push(ack);
            }
            if !forever {
                // The window opens: the rest, from the probed byte on.
                let rest = req.get(first..).unwrap_or_default().to_vec();
                let frames = c.stream(t + every, 1000, &rest)?;
                let end = frames.last().map_or(t, |f| ts_ns(f.ts));
                self.frames.extend(frames);
                self.frames.push(c.fin(end + 1000)?);
                self.hostile_delivered.push(req);
            }
        }
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!(
            "{} requests held by a zero window for {probes} probes ({n} forever)",
            2 * n
        );
        Ok(())
    }
}

/// Payload of a 9000-byte jumbo frame.
const JUMBO_MSS: usize = 8948;

impl Builder<'_> {
    pub(super) fn out_of_order_holes(&mut self) -> Result<(), GenError> {
        let n = self.scale.holes;
        let per = self.scale.hole_bytes;
        // All within half a second of capture time, so that no hole is given up for waiting
        // (the reordering timeout is 1 s): only the budget can free them.
        let window = span_ns(self.scale.span).min(500 * NS_PER_MS);
        for i in 0..n {
            let ts = epoch_ns() + window / 4 * i as u64 / n as u64;
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            // The first byte never comes; everything after it does, in jumbo segments.
            let data = http::body_bytes(per, i as u64);
            let base = c.next.wrapping_add(1);
            let gap = window / 2 / (per / JUMBO_MSS + 1) as u64;
            for (k, chunk) in data.chunks(JUMBO_MSS).enumerate() {
                self.frames.push(c.packet(
                    ts + 1000 + gap * k as u64,
                    Direction::ClientToServer,
                    base.wrapping_add((k * JUMBO_MSS) as u32),
                    flags::ACK,
                    chunk,
                )?);
            }
        }
        if let Some(b) = self.scale.holes_budget {
            self.args.extend(["--memory-budget".into(), b.into()]);
        }
        self.expect("flow:evicted", Expect::AtLeast(1));
        self.about = format!(
            "{n} connections holding {} each behind a hole that never fills{}",
            human(per),
            self.scale
                .holes_budget
                .map_or(String::new(), |b| format!(", memory budget {b}"))
        );
        Ok(())
    }
}
