//! Decoder tests, with the packet builders they share (etherparse's `PacketBuilder`, so the
//! bytes are what a real stack sends). Here: link types and the outer path, drop labels and
//! counting, owned decoding; `inner` covers VXLAN, the inner frame and TCP; `props` throws
//! arbitrary and cut bytes at both entry points.

mod inner;
mod props;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv4Options, LinuxSllPacketType, PacketBuilder,
    TcpOptionElement, VlanId,
};

use super::inner::VXLAN_FLAG_I;
use super::*;
use crate::segment::TcpFlags;

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
fn outer_fragment_and_outer_not_udp() {
    let dgram = vxlan(5, &inner_v4(&http_payload()));
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, [172, 31, 0, 5], [172, 31, 0, 9]).unwrap();
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
