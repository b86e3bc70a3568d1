//! Spoofing aimed at live legitimate connections: segments inside their window ahead of the
//! stream, SYNs with new ISNs, and RSTs and FINs at the wrong sequence numbers. What they test:
//! a legitimate connection's requests still come out byte-exact, once, whatever is injected.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::super::conversation::{flags, Conversation, ConversationPlan, Direction};
use super::super::http;
use super::builder::{Builder, RawConn};
use super::{Expect, MSS, NS_PER_MS, VICTIM, VICTIM_HOST};
use crate::error::GenError;

impl Builder<'_> {
    /// The spoofing cases' victims: keep-alive connections whose requests (all legitimate,
    /// all expected byte-exact once) are `VICTIM_PAUSE` apart.
    fn victims(&mut self) -> Result<Vec<Victim>, GenError> {
        let n = self.scale.spoof_victims;
        let resp = http::ok_response(32);
        let mut out = Vec::new();
        for i in 0..n {
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 2, (i / 250) as u8, (i % 250) as u8 + 1)),
                40_000 + i as u16,
            );
            let tag = format!("{}-{i}", self.kind.name());
            let requests = [
                http::get_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/1"),
                    &format!("v1-{tag}"),
                ),
                http::post_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/2"),
                    VICTIM_BODIES[0],
                    i as u64,
                    Some(&format!("v2-{tag}")),
                ),
                http::get_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/3"),
                    &format!("v3-{tag}"),
                ),
                http::post_with_id(
                    "shop.example",
                    &format!("/victim/{tag}/4"),
                    VICTIM_BODIES[1],
                    i as u64 + 1,
                    Some(&format!("v4-{tag}")),
                ),
            ];
            let mut conv = Conversation::new(client, VICTIM)
                .id(self.id())
                .seed(self.rng.next_u64())
                .think_time(VICTIM_PAUSE)
                .start(Duration::from_nanos(self.at(i, n) + 991));
            let mut stream = Vec::new();
            let mut starts = Vec::new();
            for r in requests {
                starts.push(stream.len());
                stream.extend_from_slice(&r);
                conv = conv.exchange(r, resp.clone());
            }
            let plan = conv.build()?;
            self.legit
                .extend(plan.truth.rebuildable().map(<[u8]>::to_vec));
            for f in plan.frames() {
                self.frames.push(f?);
            }
            out.push(Victim {
                plan,
                stream,
                starts,
            });
        }
        Ok(out)
    }

    pub(super) fn spoofed_ahead(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let (mut conflicts, mut rewinds) = (0u64, 0u64);
        let junk = [b'#'; 64];
        let flood = [b'#'; MSS];
        for v in &victims {
            let mut spoof = v.raw(self.id());
            let push = |spoof: &mut RawConn, ts: u64, off: usize, bytes: &[u8]| {
                spoof.packet(
                    ts,
                    Direction::ClientToServer,
                    v.seq(off),
                    flags::ACK | flags::PSH,
                    bytes,
                )
            };
            // (a) In the pause before request 2: junk 64 KiB ahead, and more of it 1.2 s
            // later, which finds the hole waited out and skips it. Request 2 then arrives
            // where the stream really is: the skip is undone.
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let ahead = off2 + (64 << 10);
            self.frames
                .push(push(&mut spoof, t2 - 1_400 * NS_PER_MS, ahead, &junk)?);
            self.frames.push(push(
                &mut spoof,
                t2 - 200 * NS_PER_MS,
                ahead + junk.len(),
                &junk,
            )?);
            rewinds += 1;
            // (b) During request 2's body: forged bytes inside three later segments (7 bytes
            // in from either end), sent before the real ones. Each real segment arrives in order
            // and covers its forged bytes: it wins, as in Linux's receive path. (Forged bytes
            // that the stream reaches before their real copy, i.e. that start exactly where it
            // continues, are read by the server's TCP too, and delivered by rebuilder alike.)
            let body = v.request_packets(1);
            if let (Some((t, _)), Some(later)) = (body.get(1), body.get(5..8)) {
                for (k, (_, r)) in later.iter().enumerate() {
                    let inner = r.start + 7..r.end - 7;
                    let forged: Vec<u8> =
                        v.stream[inner.clone()].iter().map(|b| b ^ 0x01).collect();
                    conflicts += forged.len() as u64;
                    self.frames
                        .push(push(&mut spoof, t + 1 + k as u64, inner.start, &forged)?);
                }
            }
            // (c) During request 4's body: ~5 MiB parked 1 MiB ahead, 80 segments after each
            // real one: more than a stream's out-of-order buffer (4 MiB), while the stream
            // moves, so the far end of the buffer is pruned and the stream never skips.
            let body = v.request_packets(3);
            let mut at = v.starts[3] + (1 << 20);
            for (t, _) in body.iter().skip(1).take(body.len().saturating_sub(3)) {
                for k in 0..80u64 {
                    self.frames.push(push(&mut spoof, t + 1 + k, at, &flood)?);
                    at += flood.len();
                }
            }
        }
        self.expect("bytes:conflict", Expect::Exactly(conflicts));
        self.expect("stream:rewound", Expect::Exactly(rewinds));
        self.expect("segment:pruned", Expect::AtLeast(1));
        self.about = format!(
            "{} live connections: junk parked 64 KiB ahead in pauses, forged copies of body segments ahead of the real ones, 5 MiB parked ahead during a transfer",
            victims.len()
        );
        Ok(())
    }

    pub(super) fn spoofed_syn(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let mut second = 0u64;
        for (i, v) in victims.iter().enumerate() {
            let mut spoof = v.raw(self.id());
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let request = |what: &str| {
                format!("GET /spoofed-syn/{i}/{what} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n")
                    .into_bytes()
            };
            // (a) In the pause before request 2: a SYN with an ISN far off; every other one
            // followed by a request of its own (replayed as what it is: a whole request).
            let isn = v
                .plan
                .client_isn
                .wrapping_add(0x4000_0000)
                .wrapping_add(i as u32);
            let t = t2 - 1_000 * NS_PER_MS;
            self.frames
                .push(spoof.packet(t, Direction::ClientToServer, isn, flags::SYN, b"")?);
            second += 1;
            if i % 2 == 0 {
                let r = request("far");
                self.frames.push(spoof.packet(
                    t + 1000,
                    Direction::ClientToServer,
                    isn.wrapping_add(1),
                    flags::ACK | flags::PSH,
                    &r,
                )?);
                self.hostile_delivered.push(r);
            }
            // (b) During request 2's body: a SYN whose ISN is 512 KiB ahead of the real stream,
            // inside its window; every other one with a request.
            let body = v.request_packets(1);
            if let Some((t, _)) = body.get(2) {
                let isn = v.seq(off2 + (512 << 10));
                self.frames.push(spoof.packet(
                    t + 1,
                    Direction::ClientToServer,
                    isn,
                    flags::SYN,
                    b"",
                )?);
                second += 1;
                if i % 2 == 1 {
                    let r = request("near");
                    self.frames.push(spoof.packet(
                        t + 2,
                        Direction::ClientToServer,
                        isn.wrapping_add(1),
                        flags::ACK | flags::PSH,
                        &r,
                    )?);
                    self.hostile_delivered.push(r);
                }
            }
            // (c) In the pause before request 3: the real SYN again, as a stale retransmission.
            let t3 = v.request_ts(2);
            self.frames.push(spoof.packet(
                t3 - 500 * NS_PER_MS,
                Direction::ClientToServer,
                v.plan.client_isn,
                flags::SYN,
                b"",
            )?);
        }
        self.expect("segment:second_connection", Expect::Exactly(second));
        self.about = format!(
            "{} live connections, each sent two SYNs with new ISNs (far off, and within the window), some with requests, and its own SYN again",
            victims.len()
        );
        Ok(())
    }

    pub(super) fn spoofed_close(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let (mut rst, mut fin, mut oow) = (0u64, 0u64, 0u64);
        for v in &victims {
            let mut spoof = v.raw(self.id());
            let (t2, off2) = (v.request_ts(1), v.starts[1]);
            let ctl = |spoof: &mut RawConn, ts: u64, seq: u32, f: u8| {
                spoof.packet(ts, Direction::ClientToServer, seq, f, b"")
            };
            // (a) In the pause before request 2: RSTs ahead, behind and far out of the window,
            // and a FIN ahead, which request 2 (20 KB) then runs past.
            let t = t2 - 1_400 * NS_PER_MS;
            self.frames
                .push(ctl(&mut spoof, t, v.seq(off2 + 1000), flags::RST)?);
            self.frames.push(ctl(
                &mut spoof,
                t + 1,
                v.seq(off2 - 100),
                flags::RST | flags::ACK,
            )?);
            self.frames.push(ctl(
                &mut spoof,
                t + 2,
                v.seq(off2).wrapping_add(0x1000_0000),
                flags::RST,
            )?);
            self.frames.push(ctl(
                &mut spoof,
                t + 3,
                v.seq(off2 + 5000),
                flags::FIN | flags::ACK,
            )?);
            rst += 2;
            oow += 1;
            fin += 1;
            // (b) During request 2's body: a RST at a later segment's sequence number and one
            // at an earlier one.
            let body = v.request_packets(1);
            if let (Some((t, early)), Some((_, late))) = (body.get(3), body.get(6)) {
                self.frames
                    .push(ctl(&mut spoof, t + 1, v.seq(late.start), flags::RST)?);
                self.frames.push(ctl(
                    &mut spoof,
                    t + 2,
                    v.seq(early.start),
                    flags::RST | flags::ACK,
                )?);
                rst += 2;
            }
            // (c) During request 4's body: a FIN 8 segments ahead, inside a segment, which the
            // body runs past. (One exactly where a segment of the body will end is the
            // sender's as far as anyone can tell: it ends the server's side of the connection
            // too, as Linux queues it and acts on it when its sequence number is reached.)
            let body = v.request_packets(3);
            if let (Some((t, _)), Some((_, ahead))) = (body.get(1), body.get(9)) {
                self.frames.push(ctl(
                    &mut spoof,
                    t + 1,
                    v.seq(ahead.start + 100),
                    flags::FIN | flags::ACK,
                )?);
                fin += 1;
            }
        }
        self.expect("segment:rst_ignored", Expect::Exactly(rst));
        self.expect("segment:fin_ignored", Expect::Exactly(fin));
        self.expect("segment:out_of_window", Expect::Exactly(oow));
        self.about = format!(
            "{} live connections sent RSTs ahead, behind and out of window, and FINs ahead of their streams",
            victims.len()
        );
        Ok(())
    }

    pub(super) fn spoofed_first(&mut self) -> Result<(), GenError> {
        let victims = self.victims()?;
        let (mut second, mut endless_heads) = (0u64, 0u64);
        for (i, v) in victims.iter().enumerate() {
            let mut spoof = v.raw(self.id());
            // 1 ms before the victim's SYN, from its endpoint (an attacker connecting from a
            // port it chose, or one that knows the client's next port and ISN).
            let t = v
                .plan
                .packets()
                .first()
                .map_or(0, |p| p.ts)
                .saturating_sub(NS_PER_MS);
            let ahead = v.seq(64 << 10);
            let endless = format!(
                "POST /bait HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nContent-Length: 1000000000\r\n\r\n"
            );
            let (seq, f, payload): (u32, u8, &[u8]) = match i % 4 {
                // Would make the direction the server's.
                0 => (
                    v.plan.client_isn ^ 0x5555_5555,
                    flags::SYN | flags::ACK,
                    b"",
                ),
                // A response stream, to a framer looking at a pickup.
                1 => (
                    ahead,
                    flags::ACK | flags::PSH,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                ),
                // A request head promising a 1 GB body, at exactly the first byte the SYN will
                // announce: taken as the same connection, the real bytes would be its body.
                3 => {
                    second += 1;
                    endless_heads += 1;
                    (v.seq(0), flags::ACK | flags::PSH, endless.as_bytes())
                }
                // A pickup 64 KiB into the connection: its SYN lands before it.
                _ => {
                    second += 1;
                    (ahead, flags::ACK | flags::PSH, b"\x16\x03\x01\x00\x05hello")
                }
            };
            self.frames
                .push(spoof.packet(t, Direction::ClientToServer, seq, f, payload)?);
        }
        self.expect("segment:second_connection", Expect::Exactly(second));
        // The bait's own head, its body never sent, is counted when the capture ends.
        self.expect("request:incomplete", Expect::Exactly(endless_heads));
        self.about = format!(
            "{} connections, each preceded by one segment from its own client endpoint: a SYN-ACK, a status line, bytes 64 KiB past its ISN, or a head promising a 1 GB body at its first byte",
            victims.len()
        );
        Ok(())
    }
}

/// Pause between the requests of a spoofing victim: longer than rebuilder's reordering timeout
/// (1 s), so a hole opened by a spoofed segment during it is waited out and skipped.
const VICTIM_PAUSE: Duration = Duration::from_millis(1500);
/// Sizes of the POST bodies of a victim: several segments, then many.
const VICTIM_BODIES: [usize; 2] = [20_000, 64 << 10];

/// A legitimate keep-alive connection that spoofed segments aim at: its requests (GET, POST,
/// GET, big POST, with pauses between), where each starts in the client's byte stream, and the
/// stream itself.
struct Victim {
    plan: ConversationPlan,
    /// The client's byte stream (the requests back to back).
    stream: Vec<u8>,
    /// Offset of each request in `stream`.
    starts: Vec<usize>,
}

impl Victim {
    /// Sequence number of stream offset `off`.
    fn seq(&self, off: usize) -> u32 {
        self.plan
            .client_isn
            .wrapping_add(1)
            .wrapping_add(off as u32)
    }

    /// The client's data packets: (time, stream range).
    fn client_data(&self) -> Vec<(u64, std::ops::Range<usize>)> {
        self.plan
            .packets()
            .iter()
            .filter(|p| p.dir == Direction::ClientToServer && !p.payload.is_empty())
            .map(|p| (p.ts, p.payload.clone()))
            .collect()
    }

    /// The data packets of request `k`, in order.
    fn request_packets(&self, k: usize) -> Vec<(u64, std::ops::Range<usize>)> {
        let from = self.starts[k];
        let to = self.starts.get(k + 1).copied().unwrap_or(self.stream.len());
        self.client_data()
            .into_iter()
            .filter(|(_, r)| r.start >= from && r.start < to)
            .collect()
    }

    /// When request `k` starts.
    fn request_ts(&self, k: usize) -> u64 {
        self.request_packets(k).first().map_or(0, |p| p.0)
    }

    fn raw(&self, id: u64) -> RawConn {
        RawConn::new(
            id,
            self.plan.truth.client,
            self.plan.truth.server,
            self.plan.truth.vni,
            self.plan.client_isn,
            self.plan.server_isn,
        )
    }
}
