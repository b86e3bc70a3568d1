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

use bytes::Bytes;
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
        Self { vxlan_ports: vec![VXLAN_PORT], vni_allow: Vec::new(), vni_deny: Vec::new() }
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
        Self { vxlan_ports: ports, vni_allow: sorted(&cfg.vni_allow), vni_deny: sorted(&cfg.vni_deny) }
    }

    /// A whole outer frame (link layer first): outer IPv4/IPv6 → UDP to one of `vxlan_ports` →
    /// VXLAN.
    pub fn decode_frame(&self, link: LinkType, frame: &Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        let d: &[u8] = frame;
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
        self.decode_vxlan_at(frame, udp_end, datagram_end.min(d.len()), ts)
    }

    /// The UDP payload of a VXLAN datagram (socket path): VXLAN header first.
    pub fn decode_vxlan(&self, datagram: &Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        self.decode_vxlan_at(datagram, 0, datagram.len(), ts)
    }

    fn vni_allowed(&self, vni: u32) -> bool {
        (self.vni_allow.is_empty() || self.vni_allow.binary_search(&vni).is_ok())
            && (self.vni_deny.is_empty() || self.vni_deny.binary_search(&vni).is_err())
    }

    /// Decodes the VXLAN datagram that occupies `frame[start..end]` (`end <= frame.len()`).
    fn decode_vxlan_at(&self, frame: &Bytes, start: usize, end: usize, ts: Timestamp) -> Result<Segment, Drop> {
        // Everything past the datagram (Ethernet padding, trailers) is not ours.
        let d = frame.get(..end).ok_or(Drop::Malformed("datagram beyond the frame"))?;
        let vx = d.get(start..start + VXLAN_HEADER_LEN).ok_or(Drop::VxlanTooShort)?;
        if vx[0] & VXLAN_FLAG_I == 0 {
            return Err(Drop::VxlanNoIFlag);
        }
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        if !self.vni_allowed(vni) {
            return Err(Drop::VniDenied);
        }

        let eth = start + VXLAN_HEADER_LEN;
        let ethertype = be16(d, eth + 12).ok_or(Drop::HeadersTruncated)?;
        let (ethertype, net) = skip_vlan_tags(d, ethertype, eth + ETHERNET_HEADER_LEN, Drop::InnerNotIp)?;
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
        let wire_len = u32::try_from(ip.end - payload_start).map_err(|_| Drop::Malformed("inner ip length"))?;
        let payload = frame.slice(payload_start..arrived_end);

        Ok(Segment {
            ts,
            vni,
            flow: FlowKey { src: ip.src, dst: ip.dst, src_port: tcp.source_port(), dst_port: tcp.destination_port() },
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            flags: TcpFlags(tcp.slice()[13]),
            payload,
            wire_len,
        })
    }
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
fn skip_vlan_tags(d: &[u8], mut ethertype: u16, mut off: usize, too_deep: Drop) -> Result<(u16, usize), Drop> {
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
            IPV6_EXT_HOP_BY_HOP | IPV6_EXT_ROUTING | IPV6_EXT_DEST_OPTS | IPV6_EXT_MOBILITY | IPV6_EXT_HIP
            | IPV6_EXT_SHIM6 => h.get(pos + 1).map(|&l| (usize::from(l) + 1) * 8),
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
            return Err(Drop::Malformed("ipv6 extension header beyond the payload length"));
        }
        let ext_len = ext_len.ok_or(Drop::HeadersTruncated)?;
        if pos + ext_len > end {
            return Err(Drop::Malformed("ipv6 extension header beyond the payload length"));
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
