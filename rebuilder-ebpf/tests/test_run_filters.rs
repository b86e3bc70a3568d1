//! The XDP program run by the kernel on crafted frames (`BPF_PROG_TEST_RUN`): what it does not
//! keep. Filtered (VNI, inner ports, pure ACKs, fragments, not TCP), passed untouched (not
//! VXLAN, outer fragments) and malformed frames, each with its verdict and exact counters; the
//! kept segments are in `test_run.rs`.
//!
//! Needs root and a kernel with BPF, BTF and multi-buffer XDP (5.18+): every test fails with a
//! message naming what is missing, never a silent skip. The harness and frame builders are
//! `test_run/harness.rs` and `test_run/frames.rs`, shared with `test_run.rs`.

// Shared with test_run.rs.
#[path = "test_run/frames.rs"]
mod frames;
#[path = "test_run/harness.rs"]
mod harness;

use etherparse::{EtherType, UdpHeader};
use rebuilder_ebpf::{Config, Counter};

use frames::*;
use harness::*;

// ---------------------------------------------------------------------------------------------
// Filters

#[test]
fn vni_allow_list() {
    let mut h = Harness::new(Config {
        vnis: vec![100, 0xfffffe],
        ..Config::default()
    });
    let inner = Inner::default();
    for vni in [100, 0xfffffe] {
        let run = h.run(
            &Outer {
                vni,
                ..Outer::default()
            }
            .wrap(&inner.frame()),
        );
        assert_pushed(&run, &inner, vni, XDP_DROP);
    }
    for vni in [0, 101, 0xffffff] {
        let frame = Outer {
            vni,
            ..Outer::default()
        }
        .wrap(&inner.frame());
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::FilteredVni, XDP_DROP);
    }
}

#[test]
fn inner_port_selection_either_direction() {
    let mut h = Harness::new(Config {
        inner_ports: vec![80, 8080, 65535],
        ..Config::default()
    });
    for (src, dst) in [(40000, 80), (80, 40000), (1, 65535), (8080, 8080)] {
        let inner = Inner {
            src_port: src,
            dst_port: dst,
            ..Inner::default()
        };
        let run = h.run(&Outer::default().wrap(&inner.frame()));
        assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    }
    for (src, dst) in [(40000, 443), (81, 79), (0, 0)] {
        let inner = Inner {
            src_port: src,
            dst_port: dst,
            ..Inner::default()
        };
        let frame = Outer::default().wrap(&inner.frame());
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::FilteredPort, XDP_DROP);
    }
}

#[test]
fn pure_ack_is_dropped() {
    let mut h = Harness::default();
    for v6 in [false, true] {
        let inner = Inner {
            v6,
            psh: false,
            payload: vec![],
            ..Inner::default()
        };
        let frame = Outer::default().wrap(&inner.frame());
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::FilteredPureAck, XDP_DROP);
    }
    // A truncated segment that lost all its payload still had payload: kept, as a gap.
    let inner = Inner {
        payload: vec![b'z'; 100],
        present: Some(0),
        ..Inner::default()
    };
    let run = h.run(&Outer::default().wrap(&inner.frame()));
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
}

#[test]
fn inner_fragments_are_filtered() {
    let mut h = Harness::default();
    for v6 in [false, true] {
        for frag in [Frag::First, Frag::Later] {
            let inner = Inner {
                v6,
                frag,
                ..Inner::default()
            };
            let frame = Outer::default().wrap(&inner.frame());
            let run = h.run(&frame);
            assert_outcome(&run, &frame, Counter::FilteredFragment, XDP_DROP);
        }
    }
}

#[test]
fn inner_not_tcp_is_filtered() {
    let mut h = Harness::default();
    // Inner UDP (DNS) over IPv4 and IPv6.
    for v6 in [false, true] {
        let dns = UdpHeader {
            source_port: 5353,
            destination_port: 53,
            length: 12,
            checksum: 0,
        };
        let mut inner = eth(if v6 { EtherType::IPV6 } else { EtherType::IPV4 }, 0);
        if v6 {
            inner.extend(ipv6(INNER_V6.0, INNER_V6.1, 17, 12, Frag::None));
        } else {
            inner.extend(ipv4(INNER_V4.0, INNER_V4.1, 17, 12, false, Frag::None));
        }
        inner.extend_from_slice(&dns.to_bytes());
        inner.extend_from_slice(b"abcd");
        let frame = Outer::default().wrap(&inner);
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::FilteredNotTcp, XDP_DROP);
    }
    // Inner ARP.
    let frame = Outer::default().wrap(&arp_frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::FilteredNotTcp, XDP_DROP);
}

// ---------------------------------------------------------------------------------------------
// Not ours: passed untouched

#[test]
fn wrong_udp_port_passes_untouched() {
    let mut h = Harness::default();
    for v6 in [false, true] {
        let frame = Outer {
            v6,
            dst_port: 4788,
            ..Outer::default()
        }
        .wrap(&Inner::default().frame());
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::PassedNotVxlan, XDP_PASS);
    }
}

#[test]
fn non_vxlan_traffic_passes_untouched() {
    let mut h = Harness::default();
    // DNS over UDP.
    let dns = Outer {
        dst_port: 53,
        ..Outer::default()
    }
    .udp(b"\x12\x34\x01\x00\x00\x01");
    // TCP to the health check port, and SSH: outer TCP, not UDP.
    let mut health = eth(EtherType::IPV4, 0);
    let tcp = Inner {
        dst_port: 8080,
        ..Inner::default()
    };
    health.extend(ipv4(OUTER_V4.0, OUTER_V4.1, 6, 20, false, Frag::None));
    health.extend_from_slice(&tcp.tcp().to_bytes());
    // ICMPv6 echo.
    let mut icmp6 = eth(EtherType::IPV6, 0);
    icmp6.extend(ipv6(OUTER_V6.0, OUTER_V6.1, 58, 8, Frag::None));
    icmp6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    // Runt frame: Ethernet header only.
    let runt = eth(EtherType::IPV4, 0);
    // Unknown ethertype.
    let mut lldp = eth(EtherType(0x88cc), 0);
    lldp.resize(60, 0);
    for frame in [dns, health, icmp6, arp_frame(), runt, lldp] {
        let run = h.run(&frame);
        assert_outcome(&run, &frame, Counter::PassedNotVxlan, XDP_PASS);
    }
}

#[test]
fn outer_fragments_pass() {
    let mut h = Harness::default();
    for v6 in [false, true] {
        let first = Outer {
            v6,
            frag: Frag::First,
            ..Outer::default()
        }
        .wrap(&Inner::default().frame());
        let run = h.run(&first);
        assert_outcome(&run, &first, Counter::PassedOuterFragment, XDP_PASS);
        // A later fragment has no UDP header: nothing says it is VXLAN.
        let later = Outer {
            v6,
            frag: Frag::Later,
            ..Outer::default()
        }
        .wrap(&Inner::default().frame());
        let run = h.run(&later);
        assert_outcome(&run, &later, Counter::PassedNotVxlan, XDP_PASS);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed

#[test]
fn garbage_after_the_vxlan_header_is_malformed() {
    let mut h = Harness::default();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Shorter than an inner Ethernet header.
    cases.push(("short", Outer::default().wrap(&[0x5a; 9])));
    // Ethernet says IPv4, the bytes after it are not.
    let mut bad_version = eth(EtherType::IPV4, 0);
    bad_version.extend_from_slice(&[0xf5; 40]);
    cases.push(("bad IP version", Outer::default().wrap(&bad_version)));
    // IHL below 5.
    let mut bad_ihl = eth(EtherType::IPV4, 0);
    bad_ihl.extend_from_slice(&[0x43; 40]);
    cases.push(("IHL < 5", Outer::default().wrap(&bad_ihl)));
    // IPv4 total length shorter than its header.
    let mut frame = Inner::default().frame();
    frame[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("total length < header", Outer::default().wrap(&frame)));
    // TCP data offset below 5.
    let mut frame = Inner::default().frame();
    frame[14 + 20 + 12] = 0x40;
    cases.push(("TCP doff < 5", Outer::default().wrap(&frame)));
    // TCP header cut short.
    let frame = Inner::default().frame();
    cases.push((
        "TCP header cut",
        Outer::default().wrap(&frame[..14 + 20 + 10]),
    ));
    // IPv6 claims less payload than the TCP header needs.
    let mut frame = Inner {
        v6: true,
        ..Inner::default()
    }
    .frame();
    frame[18..20].copy_from_slice(&8u16.to_be_bytes());
    cases.push(("IPv6 payload < TCP header", Outer::default().wrap(&frame)));
    // VXLAN without the I flag.
    cases.push((
        "no I flag",
        Outer {
            vxlan_flags: 0,
            ..Outer::default()
        }
        .wrap(&Inner::default().frame()),
    ));
    // UDP length longer than the packet.
    let mut frame = Outer::default().wrap(&Inner::default().frame());
    frame[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&2000u16.to_be_bytes());
    cases.push(("UDP length beyond IP", frame));
    // UDP length too short for VXLAN.
    let mut frame = Outer::default().wrap(&Inner::default().frame());
    frame[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&12u16.to_be_bytes());
    cases.push(("UDP length < 16", frame));
    // Outer IP length beyond the frame.
    let mut frame = Outer::default().wrap(&Inner::default().frame());
    let claimed = u16::try_from(frame.len()).unwrap();
    frame[16..18].copy_from_slice(&claimed.to_be_bytes());
    cases.push(("outer IP length beyond frame", frame));

    for (what, frame) in cases {
        let run = h.run(&frame);
        assert_eq!(run.verdict, XDP_DROP, "{what}");
        assert!(run.records.is_empty(), "{what}: {:?}", run.records);
        assert_eq!(
            named(&run.delta),
            named(&deltas(Counter::Malformed, &[])),
            "{what}"
        );
    }
}
