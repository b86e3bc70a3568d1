//! From a captured packet to a [`Segment`]: outer link layer → outer IPv4/IPv6 → UDP to a VXLAN
//! port → VXLAN (RFC 7348) → inner Ethernet (up to two VLAN tags) → IPv4/IPv6 → TCP.
//!
//! This runs once per mirrored packet, well above a million times a second, so the happy path
//! neither allocates nor hashes: offsets are computed on the borrowed bytes, etherparse's header
//! slices read the fields, and the payload is a `Bytes::slice` of the input (a reference count,
//! no copy).
//!
//! Lengths are trusted in one direction only. A frame that ends before the length the inner IP
//! header announces is a *truncated* segment (AWS PacketLength, MTU, snaplen): it is delivered
//! with `wire_len > payload.len()` so reassembly records a gap. Lengths that contradict each other
//! (an IP total length shorter than its own header, a UDP length past the IP packet) are
//! `Malformed`. Checksums are not verified: mirrored copies of locally sent packets may carry
//! offloaded, not-yet-filled checksums, and the outer path was already checked by the kernel
//! that received it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use bytes::{Buf, Bytes};
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::segment::{FlowKey, Segment, TcpFlags, Timestamp};

/// The IANA port for VXLAN, which AWS Traffic Mirroring uses.
pub const VXLAN_PORT: u16 = 4789;

const VXLAN_HEADER_LEN: usize = 8;
const VXLAN_FLAG_I: u8 = 0x08;
const ETHERNET_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const TCP_MIN_HEADER_LEN: usize = 20;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// 802.1Q/802.1ad allow stacking; AWS and ordinary trunks use at most two.
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_EXT_HOP_BY_HOP: u8 = 0;
const IPV6_EXT_ROUTING: u8 = 43;
const IPV6_EXT_FRAGMENT: u8 = 44;
const IPV6_EXT_AUTH: u8 = 51;
const IPV6_EXT_DEST_OPTS: u8 = 60;
const IPV6_EXT_MOBILITY: u8 = 135;
const IPV6_EXT_HIP: u8 = 139;
const IPV6_EXT_SHIM6: u8 = 140;
/// A bound on the extension-header walk so a crafted chain cannot make it long; real packets
/// carry zero to three.
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// What the decoder accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeConfig {
    /// UDP destination ports that carry VXLAN (outer frames only; the socket path has already
    /// chosen its port by binding it).
    pub vxlan_ports: Vec<u16>,
    /// VNIs (mirror sessions) to keep; empty keeps all.
    pub vni_allow: Vec<u32>,
    /// VNIs to drop; wins over `vni_allow`.
    pub vni_deny: Vec<u32>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            vxlan_ports: vec![VXLAN_PORT],
            vni_allow: Vec::new(),
            vni_deny: Vec::new(),
        }
    }
}

/// The first header of a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// DLT_EN10MB (1).
    Ethernet,
    /// Linux "cooked" capture v1, DLT_LINUX_SLL (113): what `tcpdump -i any` wrote before 4.99.
    LinuxSll,
    /// Linux "cooked" capture v2, DLT_LINUX_SLL2 (276): `tcpdump -i any` today.
    LinuxSll2,
    /// No link header: the frame starts with an IPv4 or IPv6 header (DLT_RAW 101 and 12,
    /// LINKTYPE_IPV4 228, LINKTYPE_IPV6 229).
    RawIp,
}

impl LinkType {
    /// Maps a pcap LINKTYPE_ value to the link types the decoder understands.
    pub fn from_linktype(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            // 12 is DLT_RAW on OpenBSD-derived writers; 101 is LINKTYPE_RAW everywhere.
            12 | 101 | 228 | 229 => Some(Self::RawIp),
            _ => None,
        }
    }

    /// The pcap LINKTYPE_ value a writer would use for this link type.
    pub fn linktype(self) -> u32 {
        match self {
            Self::Ethernet => 1,
            Self::LinuxSll => 113,
            Self::LinuxSll2 => 276,
            Self::RawIp => 101,
        }
    }
}

/// Why a packet yields no segment. Each variant is a metric label (`as_str`), so no drop is
/// silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The outer link layer carries something other than IPv4/IPv6 (ARP, LLDP, ...).
    NotIp,
    /// The outer IP packet is a fragment, so the VXLAN datagram is not whole in it.
    OuterFragment,
    /// The outer IP packet is not UDP.
    NotUdp,
    /// UDP, but not to one of the configured VXLAN ports.
    NotVxlanPort,
    /// Fewer than the 8 bytes of a VXLAN header after the UDP header.
    VxlanTooShort,
    /// VXLAN header without the I flag: the VNI field is not valid (RFC 7348 §5).
    VxlanNoIFlag,
    /// The VNI is not allowed by the configuration.
    VniDenied,
    /// The encapsulated frame is not IPv4/IPv6 (ARP, more than two VLAN tags, garbage).
    InnerNotIp,
    /// The inner IP packet is a fragment (IPv4 MF/offset, IPv6 Fragment header).
    InnerFragment,
    /// The inner IP packet carries something other than TCP (UDP, ICMP, ESP, ...).
    InnerNotTcp,
    /// The frame ends before the inner TCP header does (truncation reached the headers), so
    /// there is no sequence number to place the bytes with.
    HeadersTruncated,
    /// Lengths or fields that contradict each other; the detail names which.
    Malformed(&'static str),
}

impl Drop {
    /// Number of distinct outcomes (labels).
    pub const COUNT: usize = 12;

    /// Every label once (`Malformed` with an empty detail), in `index` order.
    pub const ALL: [Drop; Drop::COUNT] = [
        Drop::NotIp,
        Drop::OuterFragment,
        Drop::NotUdp,
        Drop::NotVxlanPort,
        Drop::VxlanTooShort,
        Drop::VxlanNoIFlag,
        Drop::VniDenied,
        Drop::InnerNotIp,
        Drop::InnerFragment,
        Drop::InnerNotTcp,
        Drop::HeadersTruncated,
        Drop::Malformed(""),
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::NotIp => "not_ip",
            Drop::OuterFragment => "outer_fragment",
            Drop::NotUdp => "not_udp",
            Drop::NotVxlanPort => "not_vxlan_port",
            Drop::VxlanTooShort => "vxlan_too_short",
            Drop::VxlanNoIFlag => "vxlan_no_i_flag",
            Drop::VniDenied => "vni_denied",
            Drop::InnerNotIp => "inner_not_ip",
            Drop::InnerFragment => "inner_fragment",
            Drop::InnerNotTcp => "inner_not_tcp",
            Drop::HeadersTruncated => "headers_truncated",
            Drop::Malformed(_) => "malformed",
        }
    }

    /// Position in [`Drop::ALL`]: a stable array index for counters.
    pub fn index(self) -> usize {
        match self {
            Drop::NotIp => 0,
            Drop::OuterFragment => 1,
            Drop::NotUdp => 2,
            Drop::NotVxlanPort => 3,
            Drop::VxlanTooShort => 4,
            Drop::VxlanNoIFlag => 5,
            Drop::VniDenied => 6,
            Drop::InnerNotIp => 7,
            Drop::InnerFragment => 8,
            Drop::InnerNotTcp => 9,
            Drop::HeadersTruncated => 10,
            Drop::Malformed(_) => 11,
        }
    }

    /// What was inconsistent, for `Malformed`.
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Drop::Malformed(d) if !d.is_empty() => Some(d),
            _ => None,
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(d) => write!(f, "{}: {d}", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

/// A count per decode outcome: segments, then each [`Drop`] label. Kept per capture thread and
/// summed with `add`, so counting costs an array increment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeStats {
    counts: [u64; Drop::COUNT + 1],
}

impl DecodeStats {
    pub fn record(&mut self, r: &Result<Segment, Drop>) {
        let i = match r {
            Ok(_) => 0,
            Err(d) => 1 + d.index(),
        };
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    pub fn segments(&self) -> u64 {
        self.counts[0]
    }

    /// Packets dropped with this label.
    pub fn drop_count(&self, d: Drop) -> u64 {
        self.counts.get(1 + d.index()).copied().unwrap_or(0)
    }

    /// Every label with its count, zeros included (so a metric exists before the first drop).
    pub fn drops(&self) -> impl Iterator<Item = (Drop, u64)> + '_ {
        Drop::ALL.into_iter().map(|d| (d, self.drop_count(d)))
    }

    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.counts[1..].iter().sum()
    }

    pub fn add(&mut self, other: &DecodeStats) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

/// Decodes mirrored packets into segments. Cheap to share across threads by reference.
#[derive(Debug, Clone)]
pub struct Decoder {
    vxlan_ports: Vec<u16>,
    /// Sorted and deduplicated so a lookup is a binary search over a few entries.
    vni_allow: Vec<u32>,
    vni_deny: Vec<u32>,
}

/// Where the IP header put things, as offsets into the frame. `end` is what the header claims
/// and may lie beyond the bytes that arrived.
struct IpInfo {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: usize,
    end: usize,
    fragment: bool,
}

impl Decoder {
    pub fn new(cfg: &DecodeConfig) -> Self {
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut ports = cfg.vxlan_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Self {
            vxlan_ports: ports,
            vni_allow: sorted(&cfg.vni_allow),
            vni_deny: sorted(&cfg.vni_deny),
        }
    }

    /// A whole outer frame (link layer first): outer IPv4/IPv6 → UDP to one of `vxlan_ports` →
    /// VXLAN.
    pub fn decode_frame(
        &self,
        link: LinkType,
        frame: &Bytes,
        ts: Timestamp,
    ) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.frame_segment(link, frame, ts)?;
        seg.payload = frame.slice(payload);
        Ok(seg)
    }

    /// As [`Decoder::decode_frame`], taking the frame: the payload is the frame itself trimmed
    /// in place, with no reference count touched. The pcap reader hands every frame over this
    /// way; each clone and drop of a slice is an atomic operation on the chunk's count, which
    /// the workers' drops keep pulling to the other core (a sixth of the replay's CPU time).
    pub fn decode_frame_owned(
        &self,
        link: LinkType,
        frame: Bytes,
        ts: Timestamp,
    ) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.frame_segment(link, &frame, ts)?;
        seg.payload = trim_into(frame, payload);
        Ok(seg)
    }

    /// The segment of a frame, with an empty payload, and where the payload lies in the frame.
    fn frame_segment(
        &self,
        link: LinkType,
        d: &[u8],
        ts: Timestamp,
    ) -> Result<(Segment, Range<usize>), Drop> {
        let (ethertype, net) = link_layer(link, d)?;
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err(Drop::NotIp);
        }
        let ip = ip_layer(d, net, ethertype)?;
        if ip.fragment {
            return Err(Drop::OuterFragment);
        }
        if ip.proto != IPPROTO_UDP {
            return Err(Drop::NotUdp);
        }
        let udp_end = ip.l4 + UDP_HEADER_LEN;
        if udp_end > ip.end {
            return Err(Drop::Malformed("outer udp header beyond the ip packet"));
        }
        let udp = d.get(ip.l4..udp_end).ok_or(Drop::HeadersTruncated)?;
        let udp = UdpHeaderSlice::from_slice(udp).map_err(|_| Drop::HeadersTruncated)?;
        if !self.vxlan_ports.contains(&udp.destination_port()) {
            return Err(Drop::NotVxlanPort);
        }
        let udp_len = usize::from(udp.length());
        if udp_len < UDP_HEADER_LEN {
            return Err(Drop::Malformed("outer udp length below its header"));
        }
        let datagram_end = ip.l4 + udp_len;
        if datagram_end > ip.end {
            return Err(Drop::Malformed("outer udp length beyond the ip packet"));
        }
        // A snaplen may have cut the outer packet: the inner IP header then tells how much.
        self.decode_vxlan_at(d, udp_end, datagram_end.min(d.len()), ts)
    }

    /// The UDP payload of a VXLAN datagram (socket path): VXLAN header first.
    pub fn decode_vxlan(&self, datagram: &Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.decode_vxlan_at(datagram, 0, datagram.len(), ts)?;
        seg.payload = datagram.slice(payload);
        Ok(seg)
    }

    /// As [`Decoder::decode_vxlan`], taking the datagram and trimming it in place into the
    /// payload (see [`Decoder::decode_frame_owned`] for why).
    pub fn decode_vxlan_owned(&self, datagram: Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        let (seg, payload) = self.decode_vxlan_at(&datagram, 0, datagram.len(), ts)?;
        Ok(Segment {
            payload: trim_into(datagram, payload),
            ..seg
        })
    }

    fn vni_allowed(&self, vni: u32) -> bool {
        (self.vni_allow.is_empty() || self.vni_allow.binary_search(&vni).is_ok())
            && (self.vni_deny.is_empty() || self.vni_deny.binary_search(&vni).is_err())
    }

    /// Decodes the VXLAN datagram that occupies `frame[start..end]` (`end <= frame.len()`):
    /// the segment, with an empty payload, and where the payload lies in `frame`.
    fn decode_vxlan_at(
        &self,
        frame: &[u8],
        start: usize,
        end: usize,
        ts: Timestamp,
    ) -> Result<(Segment, Range<usize>), Drop> {
        // Everything past the datagram (Ethernet padding, trailers) is not ours.
        let d = frame
            .get(..end)
            .ok_or(Drop::Malformed("datagram beyond the frame"))?;
        let vx = d
            .get(start..start + VXLAN_HEADER_LEN)
            .ok_or(Drop::VxlanTooShort)?;
        if vx[0] & VXLAN_FLAG_I == 0 {
            return Err(Drop::VxlanNoIFlag);
        }
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        if !self.vni_allowed(vni) {
            return Err(Drop::VniDenied);
        }

        let eth = start + VXLAN_HEADER_LEN;
        let ethertype = be16(d, eth + 12).ok_or(Drop::HeadersTruncated)?;
        let (ethertype, net) =
            skip_vlan_tags(d, ethertype, eth + ETHERNET_HEADER_LEN, Drop::InnerNotIp)?;
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err(Drop::InnerNotIp);
        }
        let ip = ip_layer(d, net, ethertype)?;
        if ip.fragment {
            return Err(Drop::InnerFragment);
        }
        if ip.proto != IPPROTO_TCP {
            return Err(Drop::InnerNotTcp);
        }

        let t = ip.l4;
        if t + TCP_MIN_HEADER_LEN > ip.end {
            return Err(Drop::Malformed("inner tcp header beyond the ip packet"));
        }
        let offset_byte = *d.get(t + 12).ok_or(Drop::HeadersTruncated)?;
        let tcp_len = usize::from(offset_byte >> 4) * 4;
        if tcp_len < TCP_MIN_HEADER_LEN {
            return Err(Drop::Malformed("inner tcp data offset below 5"));
        }
        let payload_start = t + tcp_len;
        if payload_start > ip.end {
            return Err(Drop::Malformed("inner tcp options beyond the ip packet"));
        }
        let tcp = d.get(t..payload_start).ok_or(Drop::HeadersTruncated)?;
        let tcp = TcpHeaderSlice::from_slice(tcp).map_err(|_| Drop::HeadersTruncated)?;

        // The IP header's length is the truth about the wire; what arrived may be less.
        let arrived_end = ip.end.min(d.len());
        let wire_len = u32::try_from(ip.end - payload_start)
            .map_err(|_| Drop::Malformed("inner ip length"))?;
        Ok((
            Segment {
                ts,
                vni,
                flow: FlowKey {
                    src: ip.src,
                    dst: ip.dst,
                    src_port: tcp.source_port(),
                    dst_port: tcp.destination_port(),
                },
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: TcpFlags(tcp.slice()[13]),
                payload: Bytes::new(),
                wire_len,
            },
            payload_start..arrived_end,
        ))
    }
}

/// `buf[range]` without touching the reference count. An empty payload (SYNs, FINs, pure ACKs)
/// lets go of the buffer instead: an empty slice still holding it would pin a whole receive
/// batch or read chunk for as long as the segment waits in a queue.
fn trim_into(mut buf: Bytes, range: Range<usize>) -> Bytes {
    if range.is_empty() {
        return Bytes::new();
    }
    buf.truncate(range.end);
    buf.advance(range.start);
    buf
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Returns the ethertype of the network layer and where it starts.
fn link_layer(link: LinkType, d: &[u8]) -> Result<(u16, usize), Drop> {
    match link {
        LinkType::Ethernet => {
            let ethertype = be16(d, 12).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, ETHERNET_HEADER_LEN, Drop::NotIp)
        }
        LinkType::LinuxSll => {
            // The protocol field is an ethertype for ARPHRD_ETHER-like devices; VLAN tags, when
            // libpcap leaves them in, follow it exactly as on Ethernet.
            if d.len() < SLL_HEADER_LEN {
                return Err(Drop::HeadersTruncated);
            }
            let ethertype = be16(d, 14).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, SLL_HEADER_LEN, Drop::NotIp)
        }
        LinkType::LinuxSll2 => {
            if d.len() < SLL2_HEADER_LEN {
                return Err(Drop::HeadersTruncated);
            }
            let ethertype = be16(d, 0).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, SLL2_HEADER_LEN, Drop::NotIp)
        }
        LinkType::RawIp => match d.first().map(|b| b >> 4) {
            Some(4) => Ok((ETHERTYPE_IPV4, 0)),
            Some(6) => Ok((ETHERTYPE_IPV6, 0)),
            Some(_) => Err(Drop::NotIp),
            None => Err(Drop::HeadersTruncated),
        },
    }
}

/// Follows up to two 802.1Q/802.1ad tags; `ethertype` is the type field just before `off`.
fn skip_vlan_tags(
    d: &[u8],
    mut ethertype: u16,
    mut off: usize,
    too_deep: Drop,
) -> Result<(u16, usize), Drop> {
    let mut tags = 0;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        if tags == MAX_VLAN_TAGS {
            return Err(too_deep);
        }
        ethertype = be16(d, off + 2).ok_or(Drop::HeadersTruncated)?;
        off += VLAN_TAG_LEN;
        tags += 1;
    }
    Ok((ethertype, off))
}

fn ip_layer(d: &[u8], off: usize, ethertype: u16) -> Result<IpInfo, Drop> {
    let h = d.get(off..).ok_or(Drop::HeadersTruncated)?;
    if ethertype == ETHERTYPE_IPV4 {
        ipv4(h, off)
    } else {
        ipv6(h, off)
    }
}

fn ipv4(h: &[u8], off: usize) -> Result<IpInfo, Drop> {
    let first = *h.first().ok_or(Drop::HeadersTruncated)?;
    if first >> 4 != 4 {
        return Err(Drop::Malformed("ip version does not match the ethertype"));
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(Drop::Malformed("ipv4 header length below 20"));
    }
    if h.len() < header_len {
        return Err(Drop::HeadersTruncated);
    }
    let ip = Ipv4HeaderSlice::from_slice(h).map_err(|_| Drop::Malformed("ipv4 header"))?;
    let total_len = usize::from(ip.total_len());
    if total_len < header_len {
        return Err(Drop::Malformed("ipv4 total length below its header"));
    }
    Ok(IpInfo {
        src: IpAddr::V4(Ipv4Addr::from(ip.source())),
        dst: IpAddr::V4(Ipv4Addr::from(ip.destination())),
        proto: ip.protocol().0,
        l4: off + header_len,
        end: off + total_len,
        fragment: ip.more_fragments() || ip.fragments_offset().value() != 0,
    })
}

fn ipv6(h: &[u8], off: usize) -> Result<IpInfo, Drop> {
    let first = *h.first().ok_or(Drop::HeadersTruncated)?;
    if first >> 4 != 6 {
        return Err(Drop::Malformed("ip version does not match the ethertype"));
    }
    let ip = Ipv6HeaderSlice::from_slice(h).map_err(|_| Drop::HeadersTruncated)?;
    let end = IPV6_HEADER_LEN + usize::from(ip.payload_length());
    let mut next = ip.next_header().0;
    let mut pos = IPV6_HEADER_LEN;
    let mut fragment = false;
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        let ext_len = match next {
            IPV6_EXT_HOP_BY_HOP | IPV6_EXT_ROUTING | IPV6_EXT_DEST_OPTS | IPV6_EXT_MOBILITY
            | IPV6_EXT_HIP | IPV6_EXT_SHIM6 => h.get(pos + 1).map(|&l| (usize::from(l) + 1) * 8),
            IPV6_EXT_AUTH => h.get(pos + 1).map(|&l| (usize::from(l) + 2) * 4),
            IPV6_EXT_FRAGMENT => {
                fragment = true;
                break;
            }
            _ => {
                return Ok(IpInfo {
                    src: IpAddr::V6(Ipv6Addr::from(ip.source())),
                    dst: IpAddr::V6(Ipv6Addr::from(ip.destination())),
                    proto: next,
                    l4: off + pos,
                    end: off + end,
                    fragment,
                })
            }
        };
        // Lengths first against the header's own claim (contradiction), then against what
        // arrived (truncation).
        if pos + 2 > end {
            return Err(Drop::Malformed(
                "ipv6 extension header beyond the payload length",
            ));
        }
        let ext_len = ext_len.ok_or(Drop::HeadersTruncated)?;
        if pos + ext_len > end {
            return Err(Drop::Malformed(
                "ipv6 extension header beyond the payload length",
            ));
        }
        if pos + ext_len > h.len() {
            return Err(Drop::HeadersTruncated);
        }
        next = *h.get(pos).ok_or(Drop::HeadersTruncated)?;
        pos += ext_len;
    }
    if fragment {
        // The caller maps this to the outer or inner fragment label; nothing after the
        // Fragment header is read.
        return Ok(IpInfo {
            src: IpAddr::V6(Ipv6Addr::from(ip.source())),
            dst: IpAddr::V6(Ipv6Addr::from(ip.destination())),
            proto: IPV6_EXT_FRAGMENT,
            l4: off + pos,
            end: off + end,
            fragment,
        });
    }
    Err(Drop::Malformed("too many ipv6 extension headers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        IpHeaders, IpNumber, Ipv4Header, Ipv4Options, LinuxSllPacketType, PacketBuilder,
        TcpOptionElement, VlanId,
    };
    use proptest::prelude::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT4: [u8; 4] = [10, 1, 2, 3];
    const SERVER4: [u8; 4] = [10, 9, 8, 7];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const TS: Timestamp = 1_700_000_000_123_456_789;
    const SEQ: u32 = 0xdead_beef;
    const ACK: u32 = 0x0102_0304;

    fn http_payload() -> Vec<u8> {
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec()
    }

    /// Inner Ethernet + IPv4 + TCP (PSH|ACK).
    fn inner_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn inner_v6(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(CLIENT6, SERVER6, 64)
            .tcp(40000, 443, SEQ, 1000)
            .ack(ACK);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![
            VXLAN_FLAG_I,
            0,
            0,
            0,
            (vni >> 16) as u8,
            (vni >> 8) as u8,
            vni as u8,
            0,
        ];
        v.extend_from_slice(inner);
        v
    }

    fn outer_v4(dst_port: u16, datagram: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64)
            .udp(51234, dst_port);
        let mut v = Vec::new();
        b.write(&mut v, datagram).unwrap();
        v
    }

    fn outer_v6(dst_port: u16, datagram: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv6(SERVER6, CLIENT6, 64)
            .udp(51234, dst_port);
        let mut v = Vec::new();
        b.write(&mut v, datagram).unwrap();
        v
    }

    fn decoder() -> Decoder {
        Decoder::new(&DecodeConfig::default())
    }

    fn decode_eth(frame: Vec<u8>) -> Result<Segment, Drop> {
        decoder().decode_frame(LinkType::Ethernet, &Bytes::from(frame), TS)
    }

    fn assert_v4_segment(seg: &Segment, vni: u32, payload: &[u8]) {
        assert_eq!(seg.ts, TS);
        assert_eq!(seg.vni, vni);
        assert_eq!(seg.flow.src, IpAddr::V4(Ipv4Addr::from(CLIENT4)));
        assert_eq!(seg.flow.dst, IpAddr::V4(Ipv4Addr::from(SERVER4)));
        assert_eq!((seg.flow.src_port, seg.flow.dst_port), (40000, 80));
        assert_eq!((seg.seq, seg.ack), (SEQ, ACK));
        assert_eq!(seg.flags, TcpFlags(TcpFlags::ACK | TcpFlags::PSH));
        assert_eq!(&seg.payload[..], payload);
        assert_eq!(seg.wire_len as usize, payload.len());
    }

    fn assert_inside(seg: &Segment, frame: &Bytes) {
        let f = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let p = seg.payload.as_ptr() as usize;
        assert!(
            f.contains(&p) && p + seg.payload.len() <= f.end,
            "payload must be a slice of the frame"
        );
    }

    #[test]
    fn ethernet_ipv4_outer_ipv4_inner() {
        let payload = http_payload();
        let frame = Bytes::from(outer_v4(VXLAN_PORT, &vxlan(0x12_3456, &inner_v4(&payload))));
        let seg = decoder()
            .decode_frame(LinkType::Ethernet, &frame, TS)
            .unwrap();
        assert_v4_segment(&seg, 0x12_3456, &payload);
        assert!(!seg.is_truncated());
        assert_inside(&seg, &frame);
    }

    #[test]
    fn ipv6_outer_and_ipv6_inner() {
        let payload = vec![0x5a; 1200];
        let frame = Bytes::from(outer_v6(VXLAN_PORT, &vxlan(7, &inner_v6(&payload))));
        let seg = decoder()
            .decode_frame(LinkType::Ethernet, &frame, TS)
            .unwrap();
        assert_eq!(seg.vni, 7);
        assert_eq!(seg.flow.src, IpAddr::V6(Ipv6Addr::from(CLIENT6)));
        assert_eq!(seg.flow.dst, IpAddr::V6(Ipv6Addr::from(SERVER6)));
        assert_eq!((seg.flow.src_port, seg.flow.dst_port), (40000, 443));
        assert_eq!(seg.flags, TcpFlags(TcpFlags::ACK));
        assert_eq!(&seg.payload[..], &payload[..]);
        assert_eq!(seg.wire_len, 1200);
        assert_inside(&seg, &frame);
    }

    #[test]
    fn linux_sll_link() {
        let payload = http_payload();
        let b = PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [2, 0, 0, 0, 0, 1, 0, 0])
            .ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64)
            .udp(51234, VXLAN_PORT);
        let mut v = Vec::new();
        b.write(&mut v, &vxlan(42, &inner_v4(&payload))).unwrap();
        assert_eq!(&v[14..16], &[0x08, 0x00]);
        let seg = decoder()
            .decode_frame(LinkType::LinuxSll, &Bytes::from(v), TS)
            .unwrap();
        assert_v4_segment(&seg, 42, &payload);
    }

    fn raw_ip_v4_udp(datagram: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64).udp(51234, VXLAN_PORT);
        let mut v = Vec::new();
        b.write(&mut v, datagram).unwrap();
        v
    }

    #[test]
    fn linux_sll2_link() {
        let payload = http_payload();
        // protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address.
        let mut v = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        let b = PacketBuilder::ipv6(SERVER6, CLIENT6, 64).udp(51234, VXLAN_PORT);
        b.write(&mut v, &vxlan(42, &inner_v4(&payload))).unwrap();
        let seg = decoder()
            .decode_frame(LinkType::LinuxSll2, &Bytes::from(v.clone()), TS)
            .unwrap();
        assert_v4_segment(&seg, 42, &payload);

        // The same bytes under the wrong link type are not mistaken for a segment.
        assert!(decoder()
            .decode_frame(LinkType::Ethernet, &Bytes::from(v), TS)
            .is_err());
    }

    #[test]
    fn raw_ip_link() {
        let payload = http_payload();
        let v = raw_ip_v4_udp(&vxlan(1, &inner_v4(&payload)));
        let seg = decoder()
            .decode_frame(LinkType::RawIp, &Bytes::from(v), TS)
            .unwrap();
        assert_v4_segment(&seg, 1, &payload);
        assert_eq!(
            decoder().decode_frame(LinkType::RawIp, &Bytes::from_static(&[0x50, 0, 0]), TS),
            Err(Drop::NotIp)
        );
    }

    #[test]
    fn outer_vlan_tag() {
        let payload = http_payload();
        let b = PacketBuilder::ethernet2(MAC_B, MAC_A)
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64)
            .udp(51234, VXLAN_PORT);
        let mut v = Vec::new();
        b.write(&mut v, &vxlan(3, &inner_v4(&payload))).unwrap();
        assert_v4_segment(&decode_eth(v).unwrap(), 3, &payload);
    }

    #[test]
    fn inner_vlan_one_and_two_tags() {
        let payload = http_payload();
        let one = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(10).unwrap())
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK)
            .psh();
        let mut inner = Vec::new();
        one.write(&mut inner, &payload).unwrap();
        assert_eq!(&inner[12..14], &[0x81, 0x00]);
        assert_v4_segment(
            &decode_eth(outer_v4(VXLAN_PORT, &vxlan(9, &inner))).unwrap(),
            9,
            &payload,
        );

        let two = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK)
            .psh();
        let mut inner = Vec::new();
        two.write(&mut inner, &payload).unwrap();
        assert_eq!(&inner[12..14], &[0x88, 0xa8]);
        assert_v4_segment(
            &decode_eth(outer_v4(VXLAN_PORT, &vxlan(9, &inner))).unwrap(),
            9,
            &payload,
        );

        // A third tag is more than the decoder follows.
        let mut three = inner[..12].to_vec();
        three.extend_from_slice(&[0x81, 0x00, 0, 30]);
        three.extend_from_slice(&inner[12..]);
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(9, &three))),
            Err(Drop::InnerNotIp)
        );
    }

    #[test]
    fn inner_ipv4_with_options() {
        let payload = http_payload();
        let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, CLIENT4, SERVER4).unwrap();
        // Record Route with room for two addresses, then padding: 12 bytes of options.
        ip.options = Ipv4Options::try_from(&[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]).unwrap();
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK)
            .psh();
        let mut inner = Vec::new();
        b.write(&mut inner, &payload).unwrap();
        assert_eq!(inner[14] & 0x0f, 8, "ihl 8: 20 bytes + 12 of options");
        assert_v4_segment(
            &decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))).unwrap(),
            5,
            &payload,
        );
    }

    /// Inserts raw IPv6 extension bytes after the inner IPv6 header (Ethernet is 14 bytes),
    /// chaining them in front of the old next header.
    fn with_v6_ext(inner: &[u8], ext_type: u8, ext: &[u8]) -> Vec<u8> {
        let mut v = inner[..54].to_vec();
        let old_next = v[14 + 6];
        v[14 + 6] = ext_type;
        let plen = u16::from_be_bytes([v[18], v[19]]) + ext.len() as u16;
        v[18..20].copy_from_slice(&plen.to_be_bytes());
        let mut e = ext.to_vec();
        e[0] = old_next;
        v.extend_from_slice(&e);
        v.extend_from_slice(&inner[54..]);
        v
    }

    #[test]
    fn inner_ipv6_extension_headers_are_skipped() {
        let payload = http_payload();
        let inner = inner_v6(&payload);
        // Destination options (8 bytes: PadN), then hop-by-hop in front of it (16 bytes).
        let inner = with_v6_ext(&inner, IPV6_EXT_DEST_OPTS, &[0, 0, 1, 4, 0, 0, 0, 0]);
        let inner = with_v6_ext(
            &inner,
            IPV6_EXT_HOP_BY_HOP,
            &[0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let seg = decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))).unwrap();
        assert_eq!(&seg.payload[..], &payload[..]);
        assert_eq!(seg.wire_len as usize, payload.len());
        assert_eq!(seg.seq, SEQ);

        // An extension header that claims to run past the IPv6 payload length is malformed.
        let mut bad = inner.clone();
        bad[54 + 1] = 200;
        assert!(matches!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &bad))),
            Err(Drop::Malformed(_))
        ));
    }

    #[test]
    fn tcp_options_are_skipped() {
        let payload = http_payload();
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK)
            .psh()
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(123456, 654321),
                TcpOptionElement::MaximumSegmentSize(1460),
            ])
            .unwrap();
        let mut inner = Vec::new();
        b.write(&mut inner, &payload).unwrap();
        assert_eq!(
            inner[14 + 20 + 12] >> 4,
            9,
            "data offset 9: 20 + 16 bytes of options"
        );
        assert_v4_segment(
            &decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))).unwrap(),
            5,
            &payload,
        );
    }

    #[test]
    fn syn_and_fin_flags() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, 77, 1000)
            .syn();
        let mut inner = Vec::new();
        b.write(&mut inner, &[]).unwrap();
        let seg = decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))).unwrap();
        assert_eq!(seg.flags, TcpFlags(TcpFlags::SYN));
        assert_eq!((seg.seq, seg.wire_len, seg.payload.len()), (77, 0, 0));
        assert_eq!(seg.seq_len(), 1);
    }

    #[test]
    fn truncated_frame_is_a_segment_with_a_short_payload() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let full = outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(&payload)));
        // Cut 400 bytes off the end, as a snaplen or PacketLength would.
        let cut = Bytes::from(full[..full.len() - 400].to_vec());
        let seg = decoder()
            .decode_frame(LinkType::Ethernet, &cut, TS)
            .unwrap();
        assert!(seg.is_truncated());
        assert_eq!(seg.wire_len, 1000);
        assert_eq!(&seg.payload[..], &payload[..600]);
        assert_inside(&seg, &cut);

        // The socket path: the datagram itself is cut (the outer headers are consistent).
        let dgram = vxlan(5, &inner_v4(&payload));
        let seg = decoder()
            .decode_vxlan(&Bytes::from(dgram[..dgram.len() - 1].to_vec()), TS)
            .unwrap();
        assert_eq!((seg.payload.len(), seg.wire_len), (999, 1000));
    }

    #[test]
    fn cut_inside_the_tcp_header_is_a_drop() {
        let payload = http_payload();
        let dgram = vxlan(5, &inner_v4(&payload));
        // VXLAN 8 + Ethernet 14 + IPv4 20 + 10 bytes of the TCP header.
        let cut = Bytes::from(dgram[..8 + 14 + 20 + 10].to_vec());
        assert_eq!(
            decoder().decode_vxlan(&cut, TS),
            Err(Drop::HeadersTruncated)
        );
        let cut = Bytes::from(dgram[..8 + 14 + 10].to_vec());
        assert_eq!(
            decoder().decode_vxlan(&cut, TS),
            Err(Drop::HeadersTruncated)
        );
        // The same through a frame whose outer lengths say the datagram was whole.
        let frame = outer_v4(VXLAN_PORT, &dgram);
        let cut = frame[..14 + 20 + 8 + 8 + 14 + 20 + 19].to_vec();
        assert_eq!(decode_eth(cut), Err(Drop::HeadersTruncated));
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A bare ACK is shorter than Ethernet's minimum, so the inner frame carries padding.
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(40000, 80, SEQ, 1000)
            .ack(ACK);
        let mut inner = Vec::new();
        b.write(&mut inner, &[]).unwrap();
        inner.extend_from_slice(&[0xee; 6]);
        let mut frame = outer_v4(VXLAN_PORT, &vxlan(5, &inner));
        // And the outer frame has a trailer past the outer IP packet.
        frame.extend_from_slice(&[0xff; 4]);
        let seg = decode_eth(frame).unwrap();
        assert_eq!((seg.payload.len(), seg.wire_len), (0, 0));
    }

    #[test]
    fn wrong_udp_port_and_configured_ports() {
        let dgram = vxlan(5, &inner_v4(&http_payload()));
        assert_eq!(decode_eth(outer_v4(4790, &dgram)), Err(Drop::NotVxlanPort));
        let d = Decoder::new(&DecodeConfig {
            vxlan_ports: vec![8472, 4790],
            ..Default::default()
        });
        assert!(d
            .decode_frame(LinkType::Ethernet, &Bytes::from(outer_v4(4790, &dgram)), TS)
            .is_ok());
        assert_eq!(
            d.decode_frame(
                LinkType::Ethernet,
                &Bytes::from(outer_v4(VXLAN_PORT, &dgram)),
                TS
            ),
            Err(Drop::NotVxlanPort)
        );
    }

    #[test]
    fn vxlan_without_i_flag_or_too_short() {
        let mut dgram = vxlan(5, &inner_v4(&http_payload()));
        dgram[0] = 0;
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &dgram)),
            Err(Drop::VxlanNoIFlag)
        );
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &[8, 0, 0, 0, 0, 0])),
            Err(Drop::VxlanTooShort)
        );
        assert_eq!(
            decoder().decode_vxlan(&Bytes::from_static(&[8, 0, 0]), TS),
            Err(Drop::VxlanTooShort)
        );
    }

    #[test]
    fn vni_allow_and_deny() {
        let frame = |vni| Bytes::from(outer_v4(VXLAN_PORT, &vxlan(vni, &inner_v4(b"x"))));
        let allow = Decoder::new(&DecodeConfig {
            vni_allow: vec![300, 100, 200],
            ..Default::default()
        });
        assert_eq!(
            allow
                .decode_frame(LinkType::Ethernet, &frame(200), TS)
                .unwrap()
                .vni,
            200
        );
        assert_eq!(
            allow.decode_frame(LinkType::Ethernet, &frame(201), TS),
            Err(Drop::VniDenied)
        );

        let deny = Decoder::new(&DecodeConfig {
            vni_deny: vec![0xff_ffff],
            ..Default::default()
        });
        assert_eq!(
            deny.decode_frame(LinkType::Ethernet, &frame(0xff_ffff), TS),
            Err(Drop::VniDenied)
        );
        assert!(deny.decode_frame(LinkType::Ethernet, &frame(1), TS).is_ok());

        let both = Decoder::new(&DecodeConfig {
            vni_allow: vec![1, 2],
            vni_deny: vec![2],
            ..Default::default()
        });
        assert!(both.decode_frame(LinkType::Ethernet, &frame(1), TS).is_ok());
        assert_eq!(
            both.decode_frame(LinkType::Ethernet, &frame(2), TS),
            Err(Drop::VniDenied)
        );
    }

    #[test]
    fn inner_udp_and_icmp_are_not_tcp() {
        let mut udp = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(CLIENT4, SERVER4, 64)
            .udp(53, 53)
            .write(&mut udp, b"dns")
            .unwrap();
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &udp))),
            Err(Drop::InnerNotTcp)
        );
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(CLIENT6, SERVER6, 64)
            .icmpv6_echo_request(1, 2)
            .write(&mut icmp, b"ping")
            .unwrap();
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &icmp))),
            Err(Drop::InnerNotTcp)
        );
    }

    #[test]
    fn inner_fragments() {
        let payload = http_payload();
        for (mf, offset) in [(true, 0u16), (false, 185)] {
            let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, CLIENT4, SERVER4).unwrap();
            ip.more_fragments = mf;
            ip.fragment_offset = etherparse::IpFragOffset::try_new(offset).unwrap();
            let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ip(IpHeaders::Ipv4(ip, Default::default()))
                .tcp(1, 2, 3, 4);
            let mut inner = Vec::new();
            b.write(&mut inner, &payload).unwrap();
            assert_eq!(
                decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))),
                Err(Drop::InnerFragment)
            );
        }
        let inner = with_v6_ext(
            &inner_v6(&payload),
            IPV6_EXT_FRAGMENT,
            &[0, 0, 0, 1, 0, 0, 0, 9],
        );
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, &inner))),
            Err(Drop::InnerFragment)
        );
    }

    #[test]
    fn outer_fragment_and_outer_not_udp() {
        let dgram = vxlan(5, &inner_v4(&http_payload()));
        let mut ip =
            Ipv4Header::new(0, 64, IpNumber::UDP, [172, 31, 0, 5], [172, 31, 0, 9]).unwrap();
        ip.more_fragments = true;
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .udp(1, VXLAN_PORT)
            .write(&mut v, &dgram)
            .unwrap();
        assert_eq!(decode_eth(v), Err(Drop::OuterFragment));

        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64)
            .tcp(1, VXLAN_PORT, 0, 0)
            .write(&mut v, &dgram)
            .unwrap();
        assert_eq!(decode_eth(v), Err(Drop::NotUdp));
    }

    #[test]
    fn garbage_after_the_vxlan_header() {
        let mut g = vxlan(5, &[]);
        g.extend_from_slice(b"this is not an ethernet frame at all, just text");
        assert_eq!(decode_eth(outer_v4(VXLAN_PORT, &g)), Err(Drop::InnerNotIp));
        assert_eq!(
            decode_eth(outer_v4(VXLAN_PORT, &vxlan(5, b"short"))),
            Err(Drop::HeadersTruncated)
        );
        // An IPv4 ethertype over bytes that are not IPv4.
        let mut bad = vxlan(5, &[0; 12]);
        bad.extend_from_slice(&[0x08, 0x00, 0x60, 0, 0, 0]);
        bad.extend_from_slice(&[0; 40]);
        assert!(matches!(
            decode_eth(outer_v4(VXLAN_PORT, &bad)),
            Err(Drop::Malformed(_))
        ));
    }

    #[test]
    fn outer_arp_is_not_ip() {
        let mut arp = Vec::new();
        arp.extend_from_slice(&[0xff; 6]);
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[172, 31, 0, 5, 0, 0, 0, 0, 0, 0, 172, 31, 0, 9]);
        assert_eq!(decode_eth(arp), Err(Drop::NotIp));
    }

    #[test]
    fn inconsistent_lengths_are_malformed() {
        let good = outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(&http_payload())));
        // Outer UDP length beyond the outer IP packet.
        let mut v = good.clone();
        v[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4000u16.to_be_bytes());
        assert!(matches!(decode_eth(v), Err(Drop::Malformed(_))));
        // Outer UDP length below its own header.
        let mut v = good.clone();
        v[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(decode_eth(v), Err(Drop::Malformed(_))));
        // Outer IPv4 total length below its header.
        let mut v = good.clone();
        v[14 + 2..14 + 4].copy_from_slice(&10u16.to_be_bytes());
        assert!(matches!(decode_eth(v), Err(Drop::Malformed(_))));
        // Inner IPv4 total length too short to hold the TCP header.
        let inner_ip = 14 + 20 + 8 + 8 + 14;
        let mut v = good.clone();
        v[inner_ip + 2..inner_ip + 4].copy_from_slice(&30u16.to_be_bytes());
        assert!(matches!(decode_eth(v), Err(Drop::Malformed(_))));
        // TCP data offset below 5.
        let mut v = good.clone();
        v[inner_ip + 20 + 12] = 0x40;
        assert_eq!(
            decode_eth(v),
            Err(Drop::Malformed("inner tcp data offset below 5"))
        );
        // Inner IPv4 header length below 20.
        let mut v = good;
        v[inner_ip] = 0x44;
        assert!(matches!(decode_eth(v), Err(Drop::Malformed(_))));
    }

    #[test]
    fn drop_labels_are_unique_and_indexed() {
        for (i, d) in Drop::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
        let mut labels: Vec<_> = Drop::ALL.iter().map(|d| d.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Drop::COUNT);
        assert_eq!(Drop::Malformed("x").to_string(), "malformed: x");
        assert_eq!(Drop::NotIp.to_string(), "not_ip");
    }

    #[test]
    fn stats_count_each_outcome() {
        let d = decoder();
        let good = Bytes::from(outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(b"abc"))));
        let wrong_port = Bytes::from(outer_v4(53, b"x"));
        let mut a = DecodeStats::default();
        a.record(&d.decode_frame(LinkType::Ethernet, &good, TS));
        a.record(&d.decode_frame(LinkType::Ethernet, &good, TS));
        a.record(&d.decode_frame(LinkType::Ethernet, &wrong_port, TS));
        let mut b = DecodeStats::default();
        b.record(&d.decode_frame(LinkType::Ethernet, &wrong_port, TS));
        b.record(&Err(Drop::Malformed("detail does not matter")));
        a.add(&b);
        assert_eq!(a.segments(), 2);
        assert_eq!(a.dropped(), 3);
        let drops: Vec<_> = a
            .drops()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d.as_str(), n))
            .collect();
        assert_eq!(drops, vec![("not_vxlan_port", 2), ("malformed", 1)]);
        assert_eq!(a.drops().count(), Drop::COUNT);
    }

    #[test]
    fn owned_decoding_lets_go_of_the_buffer_when_the_payload_is_empty() {
        let d = decoder();
        for (payload, pinned) in [(&b""[..], false), (&b"GET"[..], true)] {
            let dgram = Bytes::from(vxlan(5, &inner_v4(payload)));
            let frame = Bytes::from(outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(payload))));
            for (buf, seg) in [
                (dgram.clone(), d.decode_vxlan_owned(dgram, TS).unwrap()),
                (
                    frame.clone(),
                    d.decode_frame_owned(LinkType::Ethernet, frame, TS).unwrap(),
                ),
            ] {
                assert_eq!(&seg.payload[..], payload);
                // Unique again only if the segment holds no reference to the buffer.
                assert_eq!(buf.try_into_mut().is_err(), pinned, "payload {payload:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), port in any::<u16>()) {
            let d = Decoder::new(&DecodeConfig { vxlan_ports: vec![port, VXLAN_PORT], ..Default::default() });
            let b = Bytes::from(data);
            for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp] {
                if let Ok(seg) = d.decode_frame(link, &b, TS) {
                    prop_assert!(seg.payload.len() <= seg.wire_len as usize);
                }
            }
            let _ = d.decode_vxlan(&b, TS);
        }

        /// Random bytes behind valid headers reach the deeper parsers.
        #[test]
        fn arbitrary_bytes_after_valid_prefix_never_panic(
            cut in 0usize..120,
            tail in proptest::collection::vec(any::<u8>(), 0..120),
            v6 in any::<bool>(),
        ) {
            let full = if v6 { vxlan(5, &inner_v6(b"hello")) } else { vxlan(5, &inner_v4(b"hello")) };
            let mut data = full[..cut.min(full.len())].to_vec();
            data.extend_from_slice(&tail);
            let _ = decoder().decode_vxlan(&Bytes::from(data.clone()), TS);
            let _ = decode_eth(outer_v4(VXLAN_PORT, &data));
        }

        /// The owned decoders, which trim the buffer in place, give what the slicing ones give,
        /// on valid frames cut anywhere and followed by anything.
        #[test]
        fn owned_and_borrowed_decoding_agree(
            cut in 0usize..700,
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            v6 in any::<bool>(),
        ) {
            let payload: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
            let dgram = if v6 { vxlan(5, &inner_v6(&payload)) } else { vxlan(5, &inner_v4(&payload)) };
            let mut frame = outer_v4(VXLAN_PORT, &dgram);
            frame.truncate(cut.max(1));
            frame.extend_from_slice(&tail);
            let d = decoder();
            let frame = Bytes::from(frame);
            prop_assert_eq!(
                d.decode_frame(LinkType::Ethernet, &frame, TS),
                d.decode_frame_owned(LinkType::Ethernet, frame.clone(), TS)
            );
            let mut dg = dgram.clone();
            dg.truncate(cut.max(1));
            dg.extend_from_slice(&tail);
            let dg = Bytes::from(dg);
            prop_assert_eq!(d.decode_vxlan(&dg, TS), d.decode_vxlan_owned(dg.clone(), TS));
        }

        /// Any cut of a valid frame is either the same segment with a shorter payload or a
        /// counted drop: never wrong data.
        #[test]
        fn any_cut_is_a_prefix_or_a_drop(keep in 0usize..700) {
            let payload: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
            let full = outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(&payload)));
            let keep = keep.min(full.len());
            match decode_eth(full[..keep].to_vec()) {
                Ok(seg) => {
                    prop_assert_eq!(seg.wire_len, 500);
                    prop_assert_eq!(&seg.payload[..], &payload[..seg.payload.len()]);
                    prop_assert_eq!(keep, full.len() - 500 + seg.payload.len());
                }
                Err(d) => prop_assert!(matches!(d, Drop::HeadersTruncated | Drop::VxlanTooShort), "{:?}", d),
            }
        }
    }
}
