//! Turning a planned TCP segment into the bytes AWS Traffic Mirroring delivers: the inner
//! Ethernet frame (optionally VLAN-tagged, optionally truncated) behind VXLAN, UDP/4789, outer
//! IPv4/IPv6 and outer Ethernet.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, SingleVlanHeader,
    TcpHeader, TcpOptionElement, UdpHeader, VlanId,
};

use super::conversation::{flags, Direction, MirrorPath, PlannedPacket};
use crate::error::GenError;
use crate::rng::mix;

/// The IANA VXLAN port, which AWS uses.
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN header flags byte with only the I (valid VNI) bit set.
pub const VXLAN_FLAG_I: u8 = 0x08;
pub const VXLAN_HEADER_LEN: usize = 8;
/// 802.1ad service tag, the outer tag of a QinQ frame.
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// One mirrored packet as delivered to the mirror target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Arrival time, since the UNIX epoch.
    pub ts: Duration,
    /// The outer Ethernet frame, whole (outer headers are never truncated; the inner frame may be).
    pub data: Vec<u8>,
    /// Where the VXLAN header starts in `data`: `data[vxlan_offset..]` is what a UDP socket
    /// bound to 4789 receives.
    pub vxlan_offset: usize,
    /// The id of the conversation this packet belongs to.
    pub conversation: u64,
}

impl Frame {
    /// The UDP payload: VXLAN header onwards.
    pub fn vxlan_payload(&self) -> &[u8] {
        self.data.get(self.vxlan_offset..).unwrap_or_default()
    }

    /// The mirrored (inner) Ethernet frame, possibly truncated.
    pub fn inner(&self) -> &[u8] {
        self.data
            .get(self.vxlan_offset + VXLAN_HEADER_LEN..)
            .unwrap_or_default()
    }

    /// The outer UDP source port (the flow hash), 0 if the frame is too short to have one.
    pub fn outer_source_port(&self) -> u16 {
        outer_source_port(&self.data, self.vxlan_offset)
    }
}

/// The outer UDP source port of an encoded frame whose VXLAN header is at `vxlan_offset`.
pub fn outer_source_port(frame: &[u8], vxlan_offset: usize) -> u16 {
    let at = vxlan_offset.wrapping_sub(8);
    match frame.get(at..at.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// The outer UDP source port for packets of the inner flow `src → dst`: a hash of the 5-tuple
/// (RFC 7348 §5 recommends this; AWS does it), mapped into the dynamic range 49152..=65535.
/// Directional: the reverse flow hashes differently, like AWS, so the two directions of one
/// connection may reach different targets behind an NLB.
pub fn vxlan_source_port(src: SocketAddr, dst: SocketAddr) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            feed(&s.octets());
            feed(&d.octets());
        }
        (s, d) => {
            feed(&ip16(s));
            feed(&ip16(d));
        }
    }
    feed(&src.port().to_be_bytes());
    feed(&dst.port().to_be_bytes());
    feed(&[6]);
    49152 + (mix(h) % 16384) as u16
}

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A locally administered MAC derived from an address, stable across runs.
fn mac_for(ip: IpAddr, salt: u8) -> [u8; 6] {
    let h = mix(u64::from_le_bytes(ip16(ip)[8..16].try_into().unwrap_or([0; 8])) ^ u64::from(salt));
    let b = h.to_be_bytes();
    [0x02, salt, b[0], b[1], b[2], b[3]]
}

/// Everything about a conversation that stays the same from packet to packet.
#[derive(Clone, Debug)]
pub(crate) struct Encoder {
    /// Client, server.
    pub ends: [SocketAddr; 2],
    pub vlans: Vec<u16>,
    pub mss: usize,
    /// The mirror sessions delivering this conversation: index 0 always, 1 when both ENIs are
    /// mirrored.
    pub paths: Vec<MirrorPath>,
    pub packet_length: Option<usize>,
    macs: [[u8; 6]; 2],
    outer_ports: [u16; 2],
    flow_labels: [u32; 2],
}

impl Encoder {
    pub fn new(
        ends: [SocketAddr; 2],
        vlans: Vec<u16>,
        mss: usize,
        paths: Vec<MirrorPath>,
        packet_length: Option<usize>,
    ) -> Self {
        let [c, s] = ends;
        let label = |a: SocketAddr, b: SocketAddr| {
            u32::from(vxlan_source_port(a, b)) << 4 & Ipv6FlowLabel::MAX_U32
        };
        Self {
            ends,
            vlans,
            mss,
            paths,
            packet_length,
            macs: [mac_for(c.ip(), 0x0c), mac_for(s.ip(), 0x05)],
            outer_ports: [vxlan_source_port(c, s), vxlan_source_port(s, c)],
            flow_labels: [label(c, s), label(s, c)],
        }
    }

    fn ip_header_len(&self) -> usize {
        if self.ends[0].is_ipv4() {
            Ipv4Header::MIN_LEN
        } else {
            Ipv6Header::LEN
        }
    }

    /// Length of the untruncated inner Ethernet frame carrying `p`.
    pub fn inner_frame_len(&self, p: &PlannedPacket) -> usize {
        let tcp = if p.flags & flags::SYN != 0 { 40 } else { 32 };
        Ethernet2Header::LEN + 4 * self.vlans.len() + self.ip_header_len() + tcp + p.payload.len()
    }

    /// Whether AWS PacketLength truncation cuts `p`.
    pub fn truncates(&self, p: &PlannedPacket) -> bool {
        self.packet_length
            .is_some_and(|n| self.inner_frame_len(p) > n)
    }

    /// Writes the outer frame for `p` (whose payload bytes are `payload`) into `out`, returning
    /// the offset of the VXLAN header.
    pub fn encode(
        &self,
        p: &PlannedPacket,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, GenError> {
        out.clear();
        let d = p.dir.index();
        let (src, dst) = match p.dir {
            Direction::ClientToServer => (self.ends[0], self.ends[1]),
            Direction::ServerToClient => (self.ends[1], self.ends[0]),
        };
        let path = self
            .paths
            .get(p.path)
            .or(self.paths.first())
            .ok_or(GenError::Capture(String::from(
                "conversation has no mirror path",
            )))?;

        let syn = p.flags & flags::SYN != 0;
        let window = match (syn, p.dir) {
            (true, Direction::ClientToServer) => 64240,
            (true, Direction::ServerToClient) => 65160,
            (false, Direction::ClientToServer) => 502,
            (false, Direction::ServerToClient) => 509,
        };
        let mut tcp = TcpHeader::new(src.port(), dst.port(), p.seq, window);
        tcp.acknowledgment_number = p.ack;
        tcp.fin = p.flags & flags::FIN != 0;
        tcp.syn = syn;
        tcp.rst = p.flags & flags::RST != 0;
        tcp.psh = p.flags & flags::PSH != 0;
        tcp.ack = p.flags & flags::ACK != 0;
        let ts = TcpOptionElement::Timestamp(p.tsval, p.tsecr);
        let options_result = if syn {
            // Linux's SYN option layout (20 bytes): mss, sackOK, TS, nop, wscale.
            let mss = u16::try_from(self.mss).unwrap_or(u16::MAX);
            tcp.set_options(&[
                TcpOptionElement::MaximumSegmentSize(mss),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                ts,
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
        } else {
            tcp.set_options(&[TcpOptionElement::Noop, TcpOptionElement::Noop, ts])
        };
        options_result.map_err(|e| GenError::TooLarge(format!("TCP options: {e}")))?;

        let inner_len = self.inner_frame_len(p);
        let captured = self.packet_length.map_or(inner_len, |n| inner_len.min(n));

        // Outer headers.
        let udp_len = 8 + VXLAN_HEADER_LEN + captured;
        let too_large = || GenError::TooLarge(format!("outer UDP datagram of {udp_len} bytes"));
        let udp_len16 = u16::try_from(udp_len).map_err(|_| too_large())?;
        let outer_type = if path.src.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        out.extend_from_slice(
            &Ethernet2Header {
                source: mac_for(path.src, 0xe0),
                destination: mac_for(path.dst, 0x7a),
                ether_type: outer_type,
            }
            .to_bytes(),
        );
        let mut udp = UdpHeader {
            source_port: self.outer_ports[d],
            destination_port: VXLAN_PORT,
            length: udp_len16,
            checksum: 0,
        };
        let outer_v6 = match (path.src, path.dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                let mut ip = Ipv4Header::new(udp_len16, 64, IpNumber::UDP, s.octets(), t.octets())
                    .map_err(|_| too_large())?;
                ip.identification = p.ip_id ^ (p.path as u16).wrapping_mul(0x5bd1);
                ip.header_checksum = ip.calc_header_checksum();
                out.extend_from_slice(&ip.to_bytes());
                None
            }
            (s, t) => {
                let (s, t) = (ip16(s), ip16(t));
                let ip = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: udp_len16,
                    next_header: IpNumber::UDP,
                    hop_limit: 64,
                    source: s,
                    destination: t,
                };
                out.extend_from_slice(&ip.to_bytes());
                Some((s, t))
            }
        };
        let udp_at = out.len();
        out.extend_from_slice(&udp.to_bytes());
        let vxlan_offset = out.len();
        let vni = path.vni.to_be_bytes();
        out.extend_from_slice(&[VXLAN_FLAG_I, 0, 0, 0, vni[1], vni[2], vni[3], 0]);

        // Inner frame.
        let inner_start = out.len();
        let ip_type = if src.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        let first_type = match self.vlans.len() {
            0 => ip_type,
            1 => EtherType(ETHERTYPE_VLAN),
            _ => EtherType(ETHERTYPE_QINQ),
        };
        out.extend_from_slice(
            &Ethernet2Header {
                source: self.macs[d],
                destination: self.macs[1 - d],
                ether_type: first_type,
            }
            .to_bytes(),
        );
        for (i, id) in self.vlans.iter().enumerate() {
            let next = if i + 1 == self.vlans.len() {
                ip_type
            } else {
                EtherType(ETHERTYPE_VLAN)
            };
            let vlan_id = VlanId::try_new(*id).map_err(|_| GenError::VlanIdTooLarge(*id))?;
            out.extend_from_slice(
                &SingleVlanHeader {
                    vlan_id,
                    ether_type: next,
                    ..Default::default()
                }
                .to_bytes(),
            );
        }
        let l4_len = tcp.header_len() + payload.len();
        let l4_len16 = u16::try_from(l4_len)
            .map_err(|_| GenError::TooLarge(format!("inner TCP segment of {l4_len} bytes")))?;
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                let mut ip = Ipv4Header::new(l4_len16, 64, IpNumber::TCP, s.octets(), t.octets())
                    .map_err(|e| GenError::TooLarge(e.to_string()))?;
                ip.identification = p.ip_id;
                ip.dont_fragment = true;
                ip.header_checksum = ip.calc_header_checksum();
                tcp.checksum = tcp
                    .calc_checksum_ipv4(&ip, payload)
                    .map_err(|e| GenError::TooLarge(e.to_string()))?;
                out.extend_from_slice(&ip.to_bytes());
            }
            (s, t) => {
                let ip = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::try_new(self.flow_labels[d])
                        .unwrap_or(Ipv6FlowLabel::ZERO),
                    payload_length: l4_len16,
                    next_header: IpNumber::TCP,
                    hop_limit: 64,
                    source: ip16(s),
                    destination: ip16(t),
                };
                tcp.checksum = tcp
                    .calc_checksum_ipv6(&ip, payload)
                    .map_err(|e| GenError::TooLarge(e.to_string()))?;
                out.extend_from_slice(&ip.to_bytes());
            }
        }
        out.extend_from_slice(&tcp.to_bytes());
        out.extend_from_slice(payload);
        out.truncate(inner_start + captured);

        // IPv6 forbids a zero UDP checksum (RFC 8200), so compute it over what is really sent.
        if let Some((s, t)) = outer_v6 {
            let body = out.get(udp_at + 8..).unwrap_or_default();
            udp.checksum = udp
                .calc_checksum_ipv6_raw(s, t, body)
                .map_err(|e| GenError::TooLarge(e.to_string()))?;
            if let Some(slot) = out.get_mut(udp_at + 6..udp_at + 8) {
                slot.copy_from_slice(&udp.checksum.to_be_bytes());
            }
        }
        Ok(vxlan_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_port_is_directional_stable_and_in_range() {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let p = vxlan_source_port(a, b);
        assert_eq!(p, vxlan_source_port(a, b));
        assert!(p >= 49152);
        assert!(vxlan_source_port(b, a) >= 49152);
        assert_ne!(p, vxlan_source_port(b, a));
        let c: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        assert_ne!(p, vxlan_source_port(c, b));
    }
}
