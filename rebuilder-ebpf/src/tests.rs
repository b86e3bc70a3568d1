//! Unit tests of the crate without a kernel: record parsing (examples and properties), the
//! config's validation, the counters' names, the build-time ABI layout check, and the
//! measuring tools' mode argument.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::load::holds_xdp_link;

fn header_bytes(h: &RecordHeader) -> Vec<u8> {
    h.to_bytes().to_vec()
}

fn sample() -> RecordHeader {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[10, 0, 0, 2]);
    RecordHeader {
        ts_ns: 123_456_789,
        vni: 0xabcdef,
        seq: 1000,
        ack: 2000,
        captured_len: 5,
        wire_len: 7,
        src_port: 40000,
        dst_port: 80,
        family: FAMILY_IPV4,
        tcp_flags: 0x18,
        reserved0: 0,
        src_addr: src,
        dst_addr: dst,
        reserved1: 0,
    }
}

#[test]
fn header_serialisation_is_as_long_as_the_struct() {
    assert_eq!(
        header_bytes(&sample()).len(),
        std::mem::size_of::<RecordHeader>()
    );
    assert_eq!(RECORD_HEADER_LEN, std::mem::size_of::<RecordHeader>());
}

#[test]
fn parses_a_record_with_class_padding() {
    let h = sample();
    let mut buf = header_bytes(&h);
    buf.extend_from_slice(b"hello");
    buf.resize(RECORD_HEADER_LEN + 256, 0xee);
    let (got, payload) = parse_record(&buf).unwrap();
    assert_eq!(got, h);
    assert_eq!(payload, b"hello");
    assert_eq!(got.src_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(got.dst_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    assert!(got.is_truncated());
}

#[test]
fn ipv6_addresses() {
    let mut h = sample();
    h.family = FAMILY_IPV6;
    h.src_addr = Ipv6Addr::LOCALHOST.octets();
    h.captured_len = 0;
    h.wire_len = 0;
    let buf = header_bytes(&h);
    let (got, payload) = parse_record(&buf).unwrap();
    assert_eq!(got.src_ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(payload.is_empty());
    assert!(!got.is_truncated());
}

#[test]
fn rejects_bad_records() {
    let h = sample();
    let mut buf = header_bytes(&h);
    buf.extend_from_slice(b"hell");
    assert_eq!(
        parse_record(&buf),
        Err(RecordError::CapturedBeyondRecord {
            captured: 5,
            available: 4
        })
    );
    assert_eq!(
        parse_record(&buf[..71]),
        Err(RecordError::Short { len: 71 })
    );
    assert_eq!(parse_record(&[]), Err(RecordError::Short { len: 0 }));

    let mut bad = h;
    bad.family = 5;
    assert_eq!(
        parse_record(&header_bytes(&bad)),
        Err(RecordError::Family(5))
    );

    let mut bad = h;
    bad.captured_len = 8;
    assert_eq!(
        parse_record(&header_bytes(&bad)),
        Err(RecordError::CapturedBeyondWire {
            captured: 8,
            wire: 7
        })
    );

    let mut bad = h;
    bad.captured_len = PAYLOAD_MAX + 1;
    bad.wire_len = u32::MAX;
    assert_eq!(
        parse_record(&header_bytes(&bad)),
        Err(RecordError::CapturedBeyondMax {
            captured: PAYLOAD_MAX + 1
        })
    );
}

#[test]
fn classes() {
    assert_eq!(payload_class(0), 256);
    assert_eq!(payload_class(256), 256);
    assert_eq!(payload_class(257), 1500);
    assert_eq!(payload_class(1501), 4096);
    assert_eq!(payload_class(4097), 9216);
    assert_eq!(payload_class(9216), 9216);
    assert_eq!(payload_class(100_000), 9216);
}

#[test]
fn port_bitmap_sets_exactly_the_listed_bits() {
    let words = port_bitmap(&[0, 63, 64, 80, 65535]);
    assert_eq!(words.len(), PORT_WORDS as usize);
    assert_eq!(words[0], 1 | 1 << 63);
    assert_eq!(words[1], 1 | 1 << 16);
    assert_eq!(words[1023], 1 << 63);
    assert_eq!(words.iter().map(|w| w.count_ones()).sum::<u32>(), 5);
}

#[test]
fn config_validation() {
    let ok = Config::default();
    assert_eq!(ok.validate().unwrap(), [4789, 0, 0, 0]);
    let cases = [
        Config {
            vxlan_ports: vec![],
            ..Config::default()
        },
        Config {
            vxlan_ports: vec![1, 2, 3, 4, 5],
            ..Config::default()
        },
        Config {
            vxlan_ports: vec![4789, 0],
            ..Config::default()
        },
        Config {
            vnis: vec![1 << 24],
            ..Config::default()
        },
        Config {
            vnis: vec![1; VNI_ALLOW_MAX as usize + 1],
            ..Config::default()
        },
        Config {
            ring_size: 0,
            ..Config::default()
        },
    ];
    for case in cases {
        assert!(
            matches!(case.validate(), Err(LoadError::Config(_))),
            "{case:?}"
        );
    }
}

#[test]
fn counter_names_are_unique_and_indices_dense() {
    let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Counter::COUNT);
    for (i, c) in Counter::ALL.iter().enumerate() {
        assert_eq!(c.index() as usize, i);
    }
}

#[test]
fn no_xdp_link_is_found_for_a_program_this_process_never_attached() {
    assert!(!holds_xdp_link(u32::MAX).unwrap());
}

/// The build-time layout check (see build.rs) must cover every field and counter: a fact
/// it does not assert is a divergence it cannot catch.
#[test]
fn layout_check_covers_the_whole_abi() {
    let check = include_str!(concat!(env!("OUT_DIR"), "/abi_layout_check.c"));
    for (field, offset, size) in RECORD_FIELDS {
        let at = format!("offsetof(struct rb_record, {field}) == {offset},");
        let width = format!("sizeof(((struct rb_record *)0)->{field}) == {size},");
        assert!(check.contains(&at), "missing: {at}");
        assert!(check.contains(&width), "missing: {width}");
    }
    let tiled: usize = RECORD_FIELDS.iter().map(|f| f.2).sum();
    assert_eq!(tiled, std::mem::size_of::<RecordHeader>());
    assert!(check.contains(&format!("{tiled} == sizeof(struct rb_record),")));
    for c in Counter::ALL {
        let fact = format!("RB_CNT_{} == {},", c.name().to_ascii_uppercase(), c.index());
        assert!(check.contains(&fact), "missing: {fact}");
    }
    assert!(check.contains(&format!("RB_CNT_MAX == {},", Counter::COUNT)));
}

proptest! {
    #[test]
    fn parse_record_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok((h, payload)) = parse_record(&buf) {
            prop_assert_eq!(payload.len(), h.captured_len as usize);
            prop_assert!(h.captured_len <= h.wire_len);
            prop_assert!(h.family == FAMILY_IPV4 || h.family == FAMILY_IPV6);
            prop_assert_eq!(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload.len()], payload);
        }
    }

    #[test]
    fn parse_record_round_trips(
        ts in any::<u64>(), vni in 0u32..1 << 24, seq in any::<u32>(), ack in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        extra_wire in 0u32..10_000, v6 in any::<bool>(), flags in any::<u8>(),
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), padding in 0usize..64,
    ) {
        let h = RecordHeader {
            ts_ns: ts, vni, seq, ack,
            captured_len: payload.len() as u32,
            wire_len: payload.len() as u32 + extra_wire,
            src_port: 1, dst_port: 2,
            family: if v6 { FAMILY_IPV6 } else { FAMILY_IPV4 },
            tcp_flags: flags, reserved0: 0, src_addr: src, dst_addr: dst, reserved1: 0,
        };
        let mut buf = header_bytes(&h);
        buf.extend_from_slice(&payload);
        buf.resize(buf.len() + padding, 0);
        let (got, got_payload) = parse_record(&buf).unwrap();
        prop_assert_eq!(got, h);
        prop_assert_eq!(got_payload, &payload[..]);
    }
}

#[test]
fn xdp_mode_arg_defaults_to_driver_and_names_a_bad_mode() {
    use aya::programs::XdpMode;
    assert!(matches!(super::xdp_mode_arg(None), Ok(XdpMode::Driver)));
    assert!(matches!(
        super::xdp_mode_arg(Some("driver")),
        Ok(XdpMode::Driver)
    ));
    assert!(matches!(
        super::xdp_mode_arg(Some("generic")),
        Ok(XdpMode::Skb)
    ));
    let e = super::xdp_mode_arg(Some("native"))
        .err()
        .unwrap_or_default();
    assert!(e.contains("\"native\""), "{e}");
}
