//! Broken encapsulation: garbage after a valid VXLAN header, VXLAN without the I flag, and
//! whole connections as inner IPv4 and IPv6 fragments; with the frame surgery they need (outer
//! lengths and checksums kept consistent). What they test: the decoder drops and counts what it
//! cannot read, and nothing else suffers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use etherparse::Ipv4Header;

use super::super::conversation::{flags, Conversation, Direction};
use super::super::encode::{Frame, VXLAN_HEADER_LEN};
use super::super::http;
use super::builder::{attacker, attacker_v6, epoch_ns, Builder};
use super::{Expect, VICTIM, VICTIM_HOST};
use crate::error::GenError;

impl Builder<'_> {
    pub(super) fn vxlan_garbage(&mut self) -> Result<(), GenError> {
        let n = self.scale.garbage;
        let mut c = self.conn(attacker(0), 7);
        let template = c.packet(
            epoch_ns(),
            Direction::ClientToServer,
            c.next,
            flags::ACK,
            b"x",
        )?;
        for i in 0..4 * n {
            let ts = self.at(i, 4 * n) + 333;
            let len = 60 + self.rng.below(1400) as usize;
            let mut inner: Vec<u8> = (0..len).map(|_| self.rng.next_u32() as u8).collect();
            let flavour = i % 4;
            match flavour {
                // Random bytes whose type field is not IP (nor a VLAN tag).
                0 => {
                    let types: [u16; 4] = [0x0806, 0x88cc, 0x1234, 0x9000];
                    let t = types[self.rng.below(4) as usize].to_be_bytes();
                    inner[12..14].copy_from_slice(&t);
                }
                // A valid IPv4 header carrying UDP, then random bytes.
                1 => {
                    inner[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                    let payload = (len - 14 - 20) as u16;
                    let ip =
                        Ipv4Header::new(payload, 64, etherparse::IpNumber::UDP, [1; 4], [2; 4])
                            .map_err(|e| GenError::TooLarge(e.to_string()))?;
                    inner[14..34].copy_from_slice(&ip.to_bytes());
                }
                // IPv4 whose total length is shorter than its own header.
                2 => {
                    inner[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                    inner.resize(inner.len().max(34), 0);
                    inner[14] = 0x45;
                    inner[16..18].copy_from_slice(&10u16.to_be_bytes());
                }
                // Not even a whole VXLAN header.
                _ => inner.clear(),
            }
            let mut f = template.clone();
            f.ts = Duration::from_nanos(ts);
            if flavour == 3 {
                let short = (self.rng.below(VXLAN_HEADER_LEN as u64 - 1) + 1) as usize;
                f.data.truncate(f.vxlan_offset + short);
            } else {
                f.data.truncate(f.vxlan_offset + VXLAN_HEADER_LEN);
                f.data.extend_from_slice(&inner);
            }
            fix_outer_lengths(&mut f)?;
            self.frames.push(f);
        }
        for key in [
            "packet:inner_not_ip",
            "packet:inner_not_tcp",
            "packet:malformed",
            "packet:vxlan_too_short",
        ] {
            self.expect(key, Expect::Exactly(n as u64));
        }
        self.about = format!("{} frames of garbage after the VXLAN header", 4 * n);
        Ok(())
    }

    /// Whole attacker connections (SYN, a request, FIN), as frames.
    fn attacker_conversations(
        &mut self,
        n: usize,
        what: &str,
        v6: bool,
    ) -> Result<Vec<Frame>, GenError> {
        let mut out = Vec::new();
        for i in 0..n {
            let client = if v6 { attacker_v6(i) } else { attacker(i) };
            let server = if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 1)), 80)
            } else {
                VICTIM
            };
            let plan = Conversation::new(client, server)
                .id(self.id())
                .seed(self.rng.next_u64())
                .start(Duration::from_nanos(self.at(i, n) + 555))
                .exchange(
                    http::post(VICTIM_HOST, &format!("/{what}/{i}"), 5000, i as u64),
                    http::ok_response(8),
                )
                .build()?;
            for f in plan.frames() {
                out.push(f?);
            }
        }
        Ok(out)
    }

    pub(super) fn vxlan_no_i_flag(&mut self) -> Result<(), GenError> {
        let frames = self.attacker_conversations(self.scale.attackers * 4, "no-i-flag", false)?;
        let n = frames.len();
        for (k, mut f) in frames.into_iter().enumerate() {
            // Reserved bits set or not, only the I flag is missing.
            let flags = [0x00, 0x80, 0x04, 0xf7][k % 4];
            if let Some(b) = f.data.get_mut(f.vxlan_offset) {
                *b = flags;
            }
            self.frames.push(f);
        }
        self.expect("packet:vxlan_no_i_flag", Expect::Exactly(n as u64));
        self.about = format!("{n} frames of whole connections without the VXLAN I flag");
        Ok(())
    }

    pub(super) fn inner_fragments(&mut self) -> Result<(), GenError> {
        let v4 = self.attacker_conversations(self.scale.attackers * 2, "frag4", false)?;
        let v6 = self.attacker_conversations(self.scale.attackers * 2, "frag6", true)?;
        let n = v4.len() + v6.len();
        for (k, mut f) in v4.into_iter().enumerate() {
            let ip = f.vxlan_offset + VXLAN_HEADER_LEN + 14;
            // More fragments follow, or this is a later fragment (offset 185 × 8).
            let field: u16 = if k % 2 == 0 { 0x2000 } else { 185 };
            if let Some(b) = f.data.get_mut(ip + 6..ip + 8) {
                b.copy_from_slice(&field.to_be_bytes());
            }
            refresh_ipv4_checksum(&mut f.data, ip);
            self.frames.push(f);
        }
        for (k, mut f) in v6.into_iter().enumerate() {
            let ip = f.vxlan_offset + VXLAN_HEADER_LEN + 14;
            insert_ipv6_fragment_header(&mut f, ip, k % 2 == 0)?;
            self.frames.push(f);
        }
        self.expect("packet:inner_fragment", Expect::Exactly(n as u64));
        self.about = format!("{n} frames of whole connections as inner IPv4 and IPv6 fragments");
        Ok(())
    }
}

/// After the bytes behind the VXLAN header changed: the outer IPv4 total length (and header
/// checksum) and UDP length follow the frame.
pub(super) fn fix_outer_lengths(f: &mut Frame) -> Result<(), GenError> {
    let udp = f
        .vxlan_offset
        .checked_sub(8)
        .ok_or_else(|| GenError::Capture("frame without a UDP header before VXLAN".into()))?;
    let udp_len = u16::try_from(f.data.len() - udp)
        .map_err(|_| GenError::TooLarge(format!("{} bytes of UDP", f.data.len() - udp)))?;
    let ip = 14;
    if f.data.get(ip).map(|b| b >> 4) != Some(4) || udp != ip + 20 {
        return Err(GenError::Capture(
            "only outer IPv4 without options is rewritten".into(),
        ));
    }
    let total = udp_len + 20;
    f.data[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    refresh_ipv4_checksum(&mut f.data, ip);
    f.data[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
    f.data[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    Ok(())
}

/// Recomputes the checksum of the IPv4 header at `ip` (no-op if it is not one).
pub(super) fn refresh_ipv4_checksum(data: &mut [u8], ip: usize) {
    let Some(first) = data.get(ip) else {
        return;
    };
    let len = usize::from(first & 0x0f) * 4;
    let Some(h) = data.get_mut(ip..ip + len) else {
        return;
    };
    h[10] = 0;
    h[11] = 0;
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Turns the inner IPv6 packet at `ip` into a fragment: a Fragment header goes between the
/// IPv6 header and TCP (first fragment with more to come, or a later one).
pub(super) fn insert_ipv6_fragment_header(
    f: &mut Frame,
    ip: usize,
    first: bool,
) -> Result<(), GenError> {
    if f.data.get(ip).map(|b| b >> 4) != Some(6) {
        return Err(GenError::Capture("inner packet is not IPv6".into()));
    }
    let next = f.data[ip + 6];
    f.data[ip + 6] = 44;
    let plen = u16::from_be_bytes([f.data[ip + 4], f.data[ip + 5]]) + 8;
    f.data[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    let off_flags: u16 = if first { 0x0001 } else { 185 << 3 };
    let mut frag = vec![next, 0];
    frag.extend_from_slice(&off_flags.to_be_bytes());
    frag.extend_from_slice(&0x5eed_f00du32.to_be_bytes());
    let at = ip + 40;
    f.data.splice(at..at, frag);
    fix_outer_lengths(f)
}
