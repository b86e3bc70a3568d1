//! The frame parse: the outer Ethernet (VLAN), IP and UDP headers, VXLAN, the inner Ethernet,
//! IP and TCP headers, with the checks rebuilder's XDP program makes, down to a record header
//! and the payload it covers.

use rebuilder_ebpf::{RecordHeader, FAMILY_IPV4, FAMILY_IPV6, PAYLOAD_MAX};

pub enum Parsed<'a> {
    Record(RecordHeader, &'a [u8]),
    NotVxlan,
    OuterFragment,
    Malformed,
    NotTcp,
    InnerFragment,
    PureAck,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const VXLAN_PORT: u16 = 4789;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Frag {
    None,
    First,
    Later,
}

struct L3 {
    l4_off: usize,
    l4_len: usize,
    proto: u8,
    frag: Frag,
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(off..)?.first_chunk::<2>()?))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(off..)?.first_chunk::<4>()?))
}

/// Ethernet and up to two VLAN tags in `b[off..]`: the ethertype and where the header ends.
fn parse_eth(b: &[u8], mut off: usize) -> Option<(u16, usize)> {
    let mut proto = be16(b, off + 12)?;
    off += 14;
    for _ in 0..2 {
        if !matches!(proto, 0x8100 | 0x88A8 | 0x9100) {
            break;
        }
        proto = be16(b, off + 2)?;
        off += 4;
    }
    Some((proto, off))
}

/// `Err(true)`: too short; `Err(false)`: present but invalid.
fn parse_ip(b: &[u8], proto: u16, off: usize) -> Result<L3, bool> {
    let hdr = |len: usize| b.get(off..off + len).ok_or(true);
    if proto == ETH_P_IP {
        let ip = hdr(20)?;
        if ip[0] >> 4 != 4 || ip[0] & 0xF < 5 {
            return Err(false);
        }
        let hlen = usize::from(ip[0] & 0xF) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if tot < hlen {
            return Err(false);
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
        Ok(L3 {
            l4_off: off + hlen,
            l4_len: tot - hlen,
            proto: ip[9],
            frag: if frag & 0x1FFF != 0 {
                Frag::Later
            } else if frag & 0x2000 != 0 {
                Frag::First
            } else {
                Frag::None
            },
            family: FAMILY_IPV4,
            src,
            dst,
        })
    } else {
        let ip = hdr(40)?;
        if ip[0] >> 4 != 6 {
            return Err(false);
        }
        let mut len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let mut next = ip[6];
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        let mut at = off + 40;
        let mut frag = Frag::None;
        // Hop-by-hop, routing, destination options, fragment: at most four, as in the kernel.
        for _ in 0..4 {
            if !matches!(next, 0 | 43 | 60 | 44) {
                break;
            }
            let ext = b.get(at..at + 8).ok_or(true)?;
            let hlen = if next == 44 {
                let fo = u16::from_be_bytes([ext[2], ext[3]]);
                if fo & 0xFFF8 != 0 {
                    frag = Frag::Later;
                } else if fo & 1 != 0 {
                    frag = Frag::First;
                }
                8
            } else {
                (usize::from(ext[1]) + 1) * 8
            };
            if len < hlen {
                return Err(false);
            }
            len -= hlen;
            at += hlen;
            next = ext[0];
        }
        Ok(L3 {
            l4_off: at,
            l4_len: len,
            proto: next,
            frag,
            family: FAMILY_IPV6,
            src,
            dst,
        })
    }
}

pub fn parse(frame: &[u8], ts_ns: u64) -> Parsed<'_> {
    // Outer headers: anything unexpected is "not ours" (the program already chose, but the
    // reader cannot trust that the map and program agree).
    let Some((proto, off)) = parse_eth(frame, 0) else {
        return Parsed::NotVxlan;
    };
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return Parsed::NotVxlan;
    }
    let Ok(outer) = parse_ip(frame, proto, off) else {
        return Parsed::NotVxlan;
    };
    if outer.proto != IPPROTO_UDP || outer.frag == Frag::Later {
        return Parsed::NotVxlan;
    }
    let (Some(dport), Some(udp_len)) =
        (be16(frame, outer.l4_off + 2), be16(frame, outer.l4_off + 4))
    else {
        return Parsed::NotVxlan;
    };
    if dport != VXLAN_PORT {
        return Parsed::NotVxlan;
    }
    if outer.frag == Frag::First {
        return Parsed::OuterFragment;
    }
    let udp_len = usize::from(udp_len);
    let ip_end = outer.l4_off + outer.l4_len;
    let udp_end = outer.l4_off + udp_len;
    if udp_len < 8 + 8 || udp_end > ip_end || ip_end > frame.len() {
        return Parsed::Malformed;
    }
    // From here on only the VXLAN payload counts (Ethernet padding may follow).
    let b = &frame[..udp_end];
    let vx = outer.l4_off + 8;
    let Some(vxlan) = b.get(vx..vx + 8) else {
        return Parsed::Malformed;
    };
    if vxlan[0] & 0x08 == 0 {
        return Parsed::Malformed;
    }
    let vni = u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]);

    let Some((proto, off)) = parse_eth(b, vx + 8) else {
        return Parsed::Malformed;
    };
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return Parsed::NotTcp;
    }
    let Ok(inner) = parse_ip(b, proto, off) else {
        return Parsed::Malformed;
    };
    if inner.frag != Frag::None {
        return Parsed::InnerFragment;
    }
    if inner.proto != IPPROTO_TCP {
        return Parsed::NotTcp;
    }
    let t = inner.l4_off;
    let Some(tcp) = b.get(t..t + 20) else {
        return Parsed::Malformed;
    };
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || inner.l4_len < doff {
        return Parsed::Malformed;
    }
    let flags = tcp[13];
    let payload_off = t + doff;
    let wire = inner.l4_len - doff;
    if wire == 0 && flags & (0x01 | 0x02 | 0x04) == 0 {
        return Parsed::PureAck;
    }
    // A truncated frame holds less than the inner IP header says.
    let avail = b.len().saturating_sub(payload_off);
    let cap = wire.min(avail).min(PAYLOAD_MAX as usize);
    let (Some(seq), Some(ack), Some(payload)) = (
        be32(tcp, 4),
        be32(tcp, 8),
        b.get(payload_off..payload_off + cap),
    ) else {
        return Parsed::Malformed;
    };
    let h = RecordHeader {
        ts_ns,
        vni,
        seq,
        ack,
        captured_len: cap as u32,
        wire_len: u32::try_from(wire).unwrap_or(u32::MAX),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        family: inner.family,
        tcp_flags: flags,
        reserved0: 0,
        src_addr: inner.src,
        dst_addr: inner.dst,
        reserved1: 0,
    };
    Parsed::Record(h, payload)
}
