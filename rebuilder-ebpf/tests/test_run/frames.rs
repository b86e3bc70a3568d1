//! Frames built header by header with etherparse: outer Ethernet (with VLAN tags), IPv4 or
//! IPv6 (with options or fragments), UDP and VXLAN, around an inner TCP segment; and what the
//! program must record for each. Plain bytes; nothing here loads or runs the program.

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel,
    Ipv6Header, SingleVlanHeader, TcpHeader, UdpHeader, VlanId, VlanPcp,
};
use rebuilder_ebpf::{RecordHeader, FAMILY_IPV4, FAMILY_IPV6, PAYLOAD_MAX};

pub(crate) const INNER_V4: ([u8; 4], [u8; 4]) = ([10, 1, 0, 1], [10, 1, 0, 2]);
pub(crate) const INNER_V6: ([u8; 16], [u8; 16]) = (
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
);
pub(crate) const OUTER_V4: ([u8; 4], [u8; 4]) = ([172, 31, 0, 5], [172, 31, 0, 9]);
pub(crate) const OUTER_V6: ([u8; 16], [u8; 16]) = (
    [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
    [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
);
/// NOP NOP NOP EOL: four bytes of IPv4 options, so IHL is 6.
pub(crate) const IP_OPTIONS: [u8; 4] = [1, 1, 1, 0];

/// Ethernet header with `vlans` tags (802.1ad outside, 802.1Q inside).
pub(crate) fn eth(ether_type: EtherType, vlans: usize) -> Vec<u8> {
    let tpids = [EtherType::PROVIDER_BRIDGING, EtherType::VLAN_TAGGED_FRAME];
    let tags = &tpids[tpids.len() - vlans..];
    let first = tags.first().copied().unwrap_or(ether_type);
    let mut v = Ethernet2Header {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
        ether_type: first,
    }
    .to_bytes()
    .to_vec();
    for (i, _) in tags.iter().enumerate() {
        let next = tags.get(i + 1).copied().unwrap_or(ether_type);
        let tag = SingleVlanHeader {
            pcp: VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(100 + i as u16).unwrap(),
            ether_type: next,
        };
        v.extend_from_slice(&tag.to_bytes());
    }
    v
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Frag {
    None,
    First,
    Later,
}

/// An IPv4 header claiming `payload_len` bytes of `proto`.
pub(crate) fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload_len: usize,
    options: bool,
    frag: Frag,
) -> Vec<u8> {
    let mut h = Ipv4Header::new(0, 64, IpNumber(proto), src, dst).unwrap();
    if options {
        h.options = Ipv4Options::try_from(&IP_OPTIONS[..]).unwrap();
    }
    h.set_payload_len(payload_len).unwrap();
    match frag {
        Frag::None => {}
        Frag::First => h.more_fragments = true,
        Frag::Later => h.fragment_offset = IpFragOffset::try_new(185).unwrap(),
    }
    h.header_checksum = h.calc_header_checksum();
    h.to_bytes().to_vec()
}

/// An IPv6 header (plus a fragment header when `frag` says so) claiming `payload_len` bytes of
/// `proto` after the extension headers.
pub(crate) fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    payload_len: usize,
    frag: Frag,
) -> Vec<u8> {
    let ext: Vec<u8> = match frag {
        Frag::None => Vec::new(),
        // Next header, reserved, offset (13 bits) | M, identification.
        Frag::First => vec![proto, 0, 0x00, 0x01, 0, 0, 0, 7],
        Frag::Later => vec![proto, 0, 0x05, 0xc8, 0, 0, 0, 7],
    };
    let h = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: u16::try_from(payload_len + ext.len()).unwrap(),
        next_header: IpNumber(if ext.is_empty() { proto } else { 44 }),
        hop_limit: 64,
        source: src,
        destination: dst,
    };
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(&ext);
    v
}

#[derive(Clone, Debug)]
pub(crate) struct Inner {
    pub(crate) v6: bool,
    pub(crate) vlans: usize,
    pub(crate) ip_options: bool,
    pub(crate) frag: Frag,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) syn: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
    pub(crate) ack_flag: bool,
    pub(crate) psh: bool,
    pub(crate) payload: Vec<u8>,
    /// Payload bytes actually present (the rest cut off, as AWS truncation does).
    pub(crate) present: Option<usize>,
    /// Junk after the IP packet (Ethernet padding).
    pub(crate) pad: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            v6: false,
            vlans: 0,
            ip_options: false,
            frag: Frag::None,
            src_port: 40000,
            dst_port: 80,
            seq: 0x0102_0304,
            ack: 0xa0b0_c0d0,
            syn: false,
            fin: false,
            rst: false,
            ack_flag: true,
            psh: true,
            payload: b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
            present: None,
            pad: 0,
        }
    }
}

impl Inner {
    pub(crate) fn tcp(&self) -> TcpHeader {
        let mut t = TcpHeader::new(self.src_port, self.dst_port, self.seq, 502);
        t.acknowledgment_number = self.ack;
        t.syn = self.syn;
        t.fin = self.fin;
        t.rst = self.rst;
        t.ack = self.ack_flag;
        t.psh = self.psh;
        if self.syn {
            // MSS option, so data offset > 5 is exercised.
            t.set_options_raw(&[2, 4, 0x23, 0x28]).unwrap();
        }
        t
    }

    pub(crate) fn flags(&self) -> u8 {
        u8::from(self.fin)
            | u8::from(self.syn) << 1
            | u8::from(self.rst) << 2
            | u8::from(self.psh) << 3
            | u8::from(self.ack_flag) << 4
    }

    /// The inner Ethernet frame.
    pub(crate) fn frame(&self) -> Vec<u8> {
        let tcp = self.tcp().to_bytes();
        let l4_len = tcp.len() + self.payload.len();
        let mut v = eth(
            if self.v6 {
                EtherType::IPV6
            } else {
                EtherType::IPV4
            },
            self.vlans,
        );
        if self.v6 {
            v.extend(ipv6(INNER_V6.0, INNER_V6.1, 6, l4_len, self.frag));
        } else {
            v.extend(ipv4(
                INNER_V4.0,
                INNER_V4.1,
                6,
                l4_len,
                self.ip_options,
                self.frag,
            ));
        }
        v.extend_from_slice(&tcp);
        let present = self.present.unwrap_or(self.payload.len());
        v.extend_from_slice(&self.payload[..present]);
        v.extend(std::iter::repeat_n(0xee, self.pad));
        v
    }

    /// The record the program must write for this segment under `vni`.
    pub(crate) fn expected(&self, vni: u32) -> (RecordHeader, Vec<u8>) {
        let present = self.present.unwrap_or(self.payload.len());
        let captured = present.min(PAYLOAD_MAX as usize);
        let (family, src, dst) = if self.v6 {
            (FAMILY_IPV6, INNER_V6.0, INNER_V6.1)
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..4].copy_from_slice(&INNER_V4.0);
            d[..4].copy_from_slice(&INNER_V4.1);
            (FAMILY_IPV4, s, d)
        };
        let header = RecordHeader {
            ts_ns: 0,
            vni,
            seq: self.seq,
            ack: self.ack,
            captured_len: captured as u32,
            wire_len: self.payload.len() as u32,
            src_port: self.src_port,
            dst_port: self.dst_port,
            family,
            tcp_flags: self.flags(),
            reserved0: 0,
            src_addr: src,
            dst_addr: dst,
            reserved1: 0,
        };
        (header, self.payload[..captured].to_vec())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Outer {
    pub(crate) v6: bool,
    pub(crate) vlans: usize,
    pub(crate) ip_options: bool,
    pub(crate) frag: Frag,
    pub(crate) dst_port: u16,
    pub(crate) vni: u32,
    pub(crate) vxlan_flags: u8,
}

impl Default for Outer {
    fn default() -> Self {
        Outer {
            v6: false,
            vlans: 0,
            ip_options: false,
            frag: Frag::None,
            dst_port: 4789,
            vni: 0x00ab_cdef,
            vxlan_flags: 0x08,
        }
    }
}

impl Outer {
    /// `inner` (whatever bytes) wrapped in VXLAN, UDP, IP and Ethernet.
    pub(crate) fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        let mut vxlan = vec![self.vxlan_flags, 0, 0, 0];
        vxlan.extend_from_slice(&self.vni.to_be_bytes()[1..]);
        vxlan.push(0);
        self.udp(&[&vxlan[..], inner].concat())
    }

    /// `payload` in a UDP datagram to `dst_port`.
    pub(crate) fn udp(&self, payload: &[u8]) -> Vec<u8> {
        let udp_len = UdpHeader::LEN + payload.len();
        let udp = UdpHeader {
            source_port: 51234,
            destination_port: self.dst_port,
            length: u16::try_from(udp_len).unwrap(),
            checksum: 0,
        };
        let mut v = eth(
            if self.v6 {
                EtherType::IPV6
            } else {
                EtherType::IPV4
            },
            self.vlans,
        );
        if self.v6 {
            v.extend(ipv6(OUTER_V6.0, OUTER_V6.1, 17, udp_len, self.frag));
        } else {
            v.extend(ipv4(
                OUTER_V4.0,
                OUTER_V4.1,
                17,
                udp_len,
                self.ip_options,
                self.frag,
            ));
        }
        v.extend_from_slice(&udp.to_bytes());
        v.extend_from_slice(payload);
        v
    }
}

/// An Ethernet ARP request: a frame that is not IP at all.
pub(crate) fn arp_frame() -> Vec<u8> {
    let mut v = eth(EtherType::ARP, 0);
    // Ethernet/IPv4 ARP request.
    v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 1, 0, 1]);
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 1, 0, 2]);
    v.resize(60, 0);
    v
}
