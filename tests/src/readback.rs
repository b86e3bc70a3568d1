//! An independent reading of generated captures: parses what was written (with etherparse's
//! header parsers and a checksum computed here), without reusing any of the generator's
//! bookkeeping. Tests of the generator, and anyone wanting to see what a capture holds, use it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use etherparse::{
    Ethernet2Header, Ipv4Header, Ipv6Header, SingleVlanHeader, TcpHeader, TcpOptionElement,
    UdpHeader,
};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use crate::error::GenError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedTcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// The header's flags byte (FIN 0x01 … CWR 0x80).
    pub flags: u8,
    pub header_len: usize,
    pub mss_option: Option<u16>,
    /// `None` when the segment is truncated (the checksum cannot be checked).
    pub checksum_ok: Option<bool>,
    /// Payload bytes present.
    pub payload: Vec<u8>,
    /// Payload length according to the IP header.
    pub payload_declared_len: usize,
}

/// The mirrored packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedInner {
    /// Bytes of the inner Ethernet frame present.
    pub captured_len: usize,
    /// (TPID, VLAN id), outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP header plus payload length according to the IP header.
    pub ip_declared_len: usize,
    /// IP bytes present.
    pub ip_captured_len: usize,
    /// `None` for IPv6.
    pub ipv4_checksum_ok: Option<bool>,
    /// IPv4 identification (`None` for IPv6).
    pub ip_id: Option<u16>,
    /// `None` when the TCP header itself is cut off, or the packet is not TCP.
    pub tcp: Option<DecodedTcp>,
}

impl DecodedInner {
    /// The AWS truncation signature: the IP header promises more than arrived.
    pub fn truncated(&self) -> bool {
        self.ip_declared_len > self.ip_captured_len
    }
}

/// One outer frame of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedFrame {
    pub ts: Duration,
    pub outer_src_mac: [u8; 6],
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    /// Always true for IPv6 (no header checksum).
    pub outer_ip_checksum_ok: bool,
    pub udp_src: u16,
    pub udp_dst: u16,
    /// The UDP length field matches the bytes present.
    pub udp_length_ok: bool,
    pub udp_checksum_zero: bool,
    /// A zero checksum (allowed over IPv4) counts as valid.
    pub udp_checksum_ok: bool,
    pub vxlan_flags: u8,
    /// The 24 + 8 reserved bits of the VXLAN header are zero.
    pub vxlan_reserved_zero: bool,
    pub vni: u32,
    pub inner: DecodedInner,
}

fn err(msg: impl Into<String>) -> GenError {
    GenError::Capture(msg.into())
}

/// One's-complement sum of big-endian 16-bit words (odd tail padded with zero), folded.
fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in chunks {
        let mut it = chunk.chunks_exact(2);
        for w in &mut it {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = it.remainder() {
            sum += u64::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Checks an L4 checksum over the pseudo-header and `segment` (checksum field included).
fn l4_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    let (s, d) = (ip_bytes(src), ip_bytes(dst));
    let len = segment.len() as u32;
    let pseudo_len: Vec<u8> = if src.is_ipv4() {
        vec![0, proto, (len >> 8) as u8, len as u8]
    } else {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, proto]);
        v
    };
    ones_sum(&[&s, &d, &pseudo_len, segment]) == 0xffff
}

/// Decodes the mirrored frame (from its Ethernet header; possibly truncated).
pub fn decode_inner(frame: &[u8]) -> Result<DecodedInner, GenError> {
    let (eth, mut rest) =
        Ethernet2Header::from_slice(frame).map_err(|e| err(format!("inner Ethernet: {e}")))?;
    let mut ether_type = eth.ether_type.0;
    let mut vlans = Vec::new();
    while ether_type == 0x8100 || ether_type == 0x88a8 {
        let (v, r) = SingleVlanHeader::from_slice(rest).map_err(|e| err(format!("VLAN: {e}")))?;
        vlans.push((ether_type, v.vlan_id.value()));
        ether_type = v.ether_type.0;
        rest = r;
    }
    let ip_captured_len = rest.len();
    let (src, dst, declared, ipv4_ok, ip_id, proto, after_ip) = match ether_type {
        0x0800 => {
            let (ip, r) =
                Ipv4Header::from_slice(rest).map_err(|e| err(format!("inner IPv4: {e}")))?;
            let hl = ip.header_len();
            let ok = rest.get(..hl).is_some_and(|h| ones_sum(&[h]) == 0xffff);
            (
                IpAddr::V4(Ipv4Addr::from(ip.source)),
                IpAddr::V4(Ipv4Addr::from(ip.destination)),
                usize::from(ip.total_len),
                Some(ok),
                Some(ip.identification),
                ip.protocol.0,
                r,
            )
        }
        0x86dd => {
            let (ip, r) =
                Ipv6Header::from_slice(rest).map_err(|e| err(format!("inner IPv6: {e}")))?;
            (
                IpAddr::V6(Ipv6Addr::from(ip.source)),
                IpAddr::V6(Ipv6Addr::from(ip.destination)),
                Ipv6Header::LEN + usize::from(ip.payload_length),
                None,
                None,
                ip.next_header.0,
                r,
            )
        }
        other => return Err(err(format!("inner ether type {other:#06x}"))),
    };
    let ip_header_len = ip_captured_len - after_ip.len();
    let l4_declared = declared.saturating_sub(ip_header_len);
    let l4 = after_ip
        .get(..l4_declared.min(after_ip.len()))
        .unwrap_or_default();
    let tcp = if proto == 6 {
        TcpHeader::from_slice(l4).ok().map(|(t, payload)| {
            let truncated = declared > ip_captured_len;
            let mss_option = t.options_iterator().find_map(|o| match o {
                Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                _ => None,
            });
            let flags = u8::from(t.fin)
                | u8::from(t.syn) << 1
                | u8::from(t.rst) << 2
                | u8::from(t.psh) << 3
                | u8::from(t.ack) << 4
                | u8::from(t.urg) << 5
                | u8::from(t.ece) << 6
                | u8::from(t.cwr) << 7;
            DecodedTcp {
                src_port: t.source_port,
                dst_port: t.destination_port,
                seq: t.sequence_number,
                ack: t.acknowledgment_number,
                flags,
                header_len: t.header_len(),
                mss_option,
                checksum_ok: (!truncated).then(|| l4_checksum_ok(src, dst, 6, l4)),
                payload: payload.to_vec(),
                payload_declared_len: l4_declared.saturating_sub(t.header_len()),
            }
        })
    } else {
        None
    };
    Ok(DecodedInner {
        captured_len: frame.len(),
        vlans,
        src,
        dst,
        ip_declared_len: declared,
        ip_captured_len,
        ipv4_checksum_ok: ipv4_ok,
        ip_id,
        tcp,
    })
}

/// Decodes a VXLAN datagram (header onwards): flags, reserved-bits-zero, VNI, inner packet.
pub fn decode_vxlan(payload: &[u8]) -> Result<(u8, bool, u32, DecodedInner), GenError> {
    let Some(h) = payload.get(..8) else {
        return Err(err(format!("{}-byte VXLAN datagram", payload.len())));
    };
    let reserved_zero = h[1] == 0 && h[2] == 0 && h[3] == 0 && h[7] == 0;
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    Ok((h[0], reserved_zero, vni, decode_inner(&payload[8..])?))
}

/// Decodes an outer frame of the given link type.
pub fn decode_frame(link: DataLink, ts: Duration, data: &[u8]) -> Result<DecodedFrame, GenError> {
    let short = || err(format!("{}-byte frame", data.len()));
    let (mac, proto, l3) = match link {
        DataLink::ETHERNET => {
            let (eth, r) = Ethernet2Header::from_slice(data)
                .map_err(|e| err(format!("outer Ethernet: {e}")))?;
            (eth.source, eth.ether_type.0, r)
        }
        DataLink::LINUX_SLL => {
            let h = data.get(..16).ok_or_else(short)?;
            if h[2..6] != [0, 1, 0, 6] {
                return Err(err(format!("SLL header {h:02x?}")));
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&h[6..12]);
            (mac, u16::from_be_bytes([h[14], h[15]]), &data[16..])
        }
        DataLink::LINUX_SLL2 => {
            let h = data.get(..20).ok_or_else(short)?;
            if h[8..10] != [0, 1] || h[11] != 6 {
                return Err(err(format!("SLL2 header {h:02x?}")));
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&h[12..18]);
            (mac, u16::from_be_bytes([h[0], h[1]]), &data[20..])
        }
        other => return Err(err(format!("link type {other:?}"))),
    };
    let (outer_src, outer_dst, ip_ok, udp_bytes) = match proto {
        0x0800 => {
            let (ip, r) =
                Ipv4Header::from_slice(l3).map_err(|e| err(format!("outer IPv4: {e}")))?;
            let ok = l3
                .get(..ip.header_len())
                .is_some_and(|h| ones_sum(&[h]) == 0xffff);
            (
                IpAddr::V4(Ipv4Addr::from(ip.source)),
                IpAddr::V4(Ipv4Addr::from(ip.destination)),
                ok,
                r,
            )
        }
        0x86dd => {
            let (ip, r) =
                Ipv6Header::from_slice(l3).map_err(|e| err(format!("outer IPv6: {e}")))?;
            (
                IpAddr::V6(Ipv6Addr::from(ip.source)),
                IpAddr::V6(Ipv6Addr::from(ip.destination)),
                true,
                r,
            )
        }
        other => return Err(err(format!("outer ether type {other:#06x}"))),
    };
    let (udp, vx) = UdpHeader::from_slice(udp_bytes).map_err(|e| err(format!("outer UDP: {e}")))?;
    let udp_checksum_zero = udp.checksum == 0;
    let udp_checksum_ok = (udp_checksum_zero && outer_src.is_ipv4())
        || l4_checksum_ok(outer_src, outer_dst, 17, udp_bytes);
    let (vxlan_flags, vxlan_reserved_zero, vni, inner) = decode_vxlan(vx)?;
    Ok(DecodedFrame {
        ts,
        outer_src_mac: mac,
        outer_src,
        outer_dst,
        outer_ip_checksum_ok: ip_ok,
        udp_src: udp.source_port,
        udp_dst: udp.destination_port,
        udp_length_ok: usize::from(udp.length) == udp_bytes.len(),
        udp_checksum_zero,
        udp_checksum_ok,
        vxlan_flags,
        vxlan_reserved_zero,
        vni,
        inner,
    })
}

/// Calls `f` with every raw packet of a pcap or pcapng file: link type, timestamp, bytes.
pub fn visit_raw(
    path: impl AsRef<Path>,
    mut f: impl FnMut(DataLink, Duration, &[u8]),
) -> Result<u64, GenError> {
    let mut file = BufReader::new(File::open(path.as_ref())?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)?;
    let file = BufReader::new(File::open(path.as_ref())?);
    let mut n = 0;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(file)?;
        // Interfaces are collected from the blocks themselves: the reader's own list is
        // borrowed while a block is alive.
        let mut links = Vec::new();
        while let Some(block) = r.next_block() {
            match block? {
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p) => {
                    let link = links.get(p.interface_id as usize).copied().ok_or_else(|| {
                        err(format!("packet on unknown interface {}", p.interface_id))
                    })?;
                    f(link, p.timestamp, &p.data);
                    n += 1;
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(file)?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            let p = p?;
            f(link, p.timestamp, &p.data);
            n += 1;
        }
    }
    Ok(n)
}

/// Decodes every frame of a capture file.
pub fn read_capture(path: impl AsRef<Path>) -> Result<Vec<DecodedFrame>, GenError> {
    let mut out = Vec::new();
    let mut first_err = None;
    visit_raw(path, |link, ts, data| match decode_frame(link, ts, data) {
        Ok(d) => out.push(d),
        Err(e) => {
            first_err.get_or_insert(e);
        }
    })?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
