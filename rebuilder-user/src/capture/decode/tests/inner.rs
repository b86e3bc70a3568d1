//! VXLAN, the inner frame (VLAN tags, IPv4 options, IPv6 extension headers, fragments) and
//! TCP (options, flags, truncation), through both entry points.

use super::super::ip::{IPV6_EXT_DEST_OPTS, IPV6_EXT_FRAGMENT, IPV6_EXT_HOP_BY_HOP};
use super::*;

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
