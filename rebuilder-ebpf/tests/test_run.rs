//! The XDP program run by the kernel on crafted frames (`BPF_PROG_TEST_RUN`): the segments it
//! keeps (the records it writes, exactly), its settings and the ring; what it filters, passes
//! or finds malformed is in `test_run_filters.rs`.
//!
//! Needs root and a kernel with BPF, BTF and multi-buffer XDP (5.18+). Without them every test
//! fails with a message naming what is missing: a silently skipped kernel test proves nothing.
//!
//! Each test loads its own copy of the object (own maps), runs frames through it and checks the
//! verdict, the exact ring-buffer records and the exact counter deltas.
//!
//! The harness (load, run, drain, assert) is in `test_run/harness.rs`, the frame builders in
//! `test_run/frames.rs`, shared by both test binaries; this file holds only the tests, by what
//! they check.

// Shared with test_run_filters.rs; the fragment builders are only used there.
#[allow(dead_code)]
#[path = "test_run/frames.rs"]
mod frames;
#[path = "test_run/harness.rs"]
mod harness;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{EtherType, SingleVlanHeader, VlanId, VlanPcp};
use rebuilder_ebpf::{read_counters, xdp_program, Config, Counter, PAYLOAD_MAX, RECORD_HEADER_LEN};

use frames::*;
use harness::*;

// ---------------------------------------------------------------------------------------------
// Kept segments

#[test]
fn ipv4_in_ipv4() {
    let mut h = Harness::default();
    let inner = Inner::default();
    let outer = Outer::default();
    let frame = outer.wrap(&inner.frame());
    let run = h.run(&frame);
    assert_pushed(&run, &inner, outer.vni, XDP_DROP);
}

#[test]
fn ipv6_in_ipv6() {
    let mut h = Harness::default();
    let inner = Inner {
        v6: true,
        ..Inner::default()
    };
    let outer = Outer {
        v6: true,
        vni: 7,
        ..Outer::default()
    };
    let run = h.run(&outer.wrap(&inner.frame()));
    assert_pushed(&run, &inner, 7, XDP_DROP);
    assert_eq!(
        run.records[0].header.src_ip(),
        IpAddr::V6(Ipv6Addr::from(INNER_V6.0))
    );
}

#[test]
fn mixed_families() {
    let mut h = Harness::default();
    for (outer_v6, inner_v6) in [(false, true), (true, false)] {
        let inner = Inner {
            v6: inner_v6,
            ..Inner::default()
        };
        let outer = Outer {
            v6: outer_v6,
            ..Outer::default()
        };
        let run = h.run(&outer.wrap(&inner.frame()));
        assert_pushed(&run, &inner, outer.vni, XDP_DROP);
    }
}

#[test]
fn vlan_tags_and_ip_options_outer_and_inner() {
    let mut h = Harness::default();
    for vlans in 0..=2 {
        for v6 in [false, true] {
            let inner = Inner {
                v6,
                vlans,
                ip_options: true,
                ..Inner::default()
            };
            let outer = Outer {
                vlans,
                ip_options: true,
                vni: 0xffffff,
                ..Outer::default()
            };
            let run = h.run(&outer.wrap(&inner.frame()));
            assert_pushed(&run, &inner, 0xffffff, XDP_DROP);
            assert_eq!(run.records[0].header.dst_ip(), {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(INNER_V6.1))
                } else {
                    IpAddr::V4(Ipv4Addr::from(INNER_V4.1))
                }
            });
        }
    }
}

#[test]
fn three_vlan_tags_are_not_parsed() {
    let mut h = Harness::default();
    // A third tag: the program stops after two and sees ethertype 0x8100 where IP should be.
    let mut frame = Outer::default().wrap(&Inner::default().frame());
    let tag = SingleVlanHeader {
        pcp: VlanPcp::ZERO,
        drop_eligible_indicator: false,
        vlan_id: VlanId::try_new(7).unwrap(),
        ether_type: EtherType::VLAN_TAGGED_FRAME,
    };
    let mut outer = eth(EtherType::VLAN_TAGGED_FRAME, 2);
    outer.extend_from_slice(&tag.to_bytes()[..]);
    // Fix the innermost tag to announce IPv4, keeping 3 tags in front.
    let n = outer.len();
    outer[n - 2..].copy_from_slice(&[0x08, 0x00]);
    frame.splice(..14, outer);
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::PassedNotVxlan, XDP_PASS);
}

#[test]
fn segment_sizes_pick_their_size_class() {
    let mut h = Harness::default();
    for len in [1usize, 256, 257, 1460, 1500, 1501, 4096, 4097] {
        let inner = Inner {
            payload: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
            ..Inner::default()
        };
        let run = h.run(&Outer::default().wrap(&inner.frame()));
        assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    }
}

#[test]
fn jumbo_9000_byte_payload_non_linear() {
    let mut h = Harness::default();
    let inner = Inner {
        payload: (0..9000).map(|i| (i % 253) as u8).collect(),
        ..Inner::default()
    };
    let frame = Outer::default().wrap(&inner.frame());
    // More than a page: BPF_PROG_TEST_RUN puts the tail into fragments.
    assert!(frame.len() > 4096);
    let run = h.run(&frame);
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    assert_eq!(run.records[0].header.captured_len, 9000);
    assert_eq!(run.records[0].sample_len, RECORD_HEADER_LEN + 9216);
}

#[test]
fn jumbo_ipv6_with_vlans_non_linear() {
    let mut h = Harness::default();
    let inner = Inner {
        v6: true,
        vlans: 2,
        payload: (0..8900).map(|i| (i % 241) as u8).collect(),
        ..Inner::default()
    };
    let outer = Outer {
        v6: true,
        vlans: 2,
        ..Outer::default()
    };
    let run = h.run(&outer.wrap(&inner.frame()));
    assert_pushed(&run, &inner, outer.vni, XDP_DROP);
}

/// An outer IPv6 frame whose destination-options headers (`ext` bytes in all, a multiple of 8,
/// split into headers of at most 2048 bytes) push everything after them `ext` bytes further in.
fn outer_v6_with_options(ext: usize, inner: &[u8]) -> Vec<u8> {
    assert!(ext.is_multiple_of(8) && ext <= 4 * 2048);
    let mut sizes = vec![];
    let mut left = ext;
    while left > 0 {
        let n = left.min(2048);
        sizes.push(n);
        left -= n;
    }
    let mut vxlan = vec![0x08, 0, 0, 0];
    vxlan.extend_from_slice(&Outer::default().vni.to_be_bytes()[1..]);
    vxlan.push(0);
    let udp_len = 8 + vxlan.len() + inner.len();
    let mut v = eth(EtherType::IPV6, 0);
    let mut ip = ipv6(OUTER_V6.0, OUTER_V6.1, 60, ext + udp_len, Frag::None);
    if sizes.is_empty() {
        ip[6] = 17;
    }
    v.extend(ip);
    for (i, &n) in sizes.iter().enumerate() {
        let next = if i + 1 == sizes.len() { 17 } else { 60 };
        // Next header, length in 8-byte units after the first 8, then padding options: PadN
        // (type 1) carries at most 255 bytes of zeros, Pad1 (type 0) is a single byte.
        let mut h = vec![next, u8::try_from(n / 8 - 1).unwrap()];
        while h.len() < n {
            let k = (n - h.len()).min(257);
            if k == 1 {
                h.push(0);
            } else {
                h.extend([1, u8::try_from(k - 2).unwrap()]);
                h.resize(h.len() + k - 2, 0);
            }
        }
        v.extend(h);
    }
    v.extend_from_slice(&51234u16.to_be_bytes());
    v.extend_from_slice(&4789u16.to_be_bytes());
    v.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend(vxlan);
    v.extend_from_slice(inner);
    v
}

#[test]
fn headers_deep_in_the_frame_or_in_its_fragments_parse_alike() {
    // The program copies headers from the frame's linear part when they lie in its first
    // kilobyte and asks the kernel for them otherwise (deeper, or in a multi-buffer frame's
    // fragments, which BPF_PROG_TEST_RUN starts at about 3.5 KB). Outer extension headers move
    // the inner headers through both boundaries, 8 bytes at a time, so every header is also
    // seen straddling each of them.
    let mut h = Harness::default();
    let inner = Inner {
        payload: b"GET / HTTP/1.1\r\nHost: deep\r\n\r\n".to_vec(),
        ..Inner::default()
    };
    let frame = inner.frame();
    let mut seen_fragmented = false;
    for ext in (0..=3800).step_by(8) {
        let outer = outer_v6_with_options(ext, &frame);
        seen_fragmented |= outer.len() > 3600;
        let run = h.run(&outer);
        assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    }
    assert!(seen_fragmented, "no frame reached the fragments");
}

#[test]
fn payload_over_the_largest_class_is_truncated_and_flagged() {
    let mut h = Harness::default();
    let inner = Inner {
        payload: (0..12000).map(|i| (i % 249) as u8).collect(),
        ..Inner::default()
    };
    let run = h.run(&Outer::default().wrap(&inner.frame()));
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    let header = run.records[0].header;
    assert_eq!((header.captured_len, header.wire_len), (PAYLOAD_MAX, 12000));
    assert!(header.is_truncated());
}

#[test]
fn truncated_frame_carries_captured_and_wire_lengths() {
    let mut h = Harness::default();
    // The inner IP header says 1000 payload bytes; only 300 arrived (AWS PacketLength).
    let inner = Inner {
        payload: vec![b'x'; 1000],
        present: Some(300),
        ..Inner::default()
    };
    let run = h.run(&Outer::default().wrap(&inner.frame()));
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    assert_eq!(
        (
            run.records[0].header.captured_len,
            run.records[0].header.wire_len
        ),
        (300, 1000)
    );
    assert_eq!(run.delta[Counter::Truncated.index() as usize], 1);

    // Cut inside the TCP payload of a jumbo frame, IPv6.
    let inner = Inner {
        v6: true,
        payload: vec![b'y'; 8000],
        present: Some(5000),
        ..Inner::default()
    };
    let run = h.run(&Outer::default().wrap(&inner.frame()));
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut h = Harness::default();
    let inner = Inner {
        payload: b"hi".to_vec(),
        pad: 6,
        ..Inner::default()
    };
    let run = h.run(&Outer::default().wrap(&inner.frame()));
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
    assert_eq!(run.records[0].payload, b"hi");

    // Junk after the UDP datagram (outer padding) is not read either.
    let mut frame = Outer::default().wrap(&inner.frame());
    frame.extend_from_slice(&[0xee; 8]);
    let run = h.run(&frame);
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
}

#[test]
fn syn_fin_rst_without_payload_are_kept() {
    let mut h = Harness::default();
    let cases = [
        Inner {
            syn: true,
            ack_flag: false,
            psh: false,
            payload: vec![],
            ..Inner::default()
        },
        Inner {
            syn: true,
            ack_flag: true,
            psh: false,
            payload: vec![],
            ..Inner::default()
        },
        Inner {
            fin: true,
            psh: false,
            payload: vec![],
            ..Inner::default()
        },
        Inner {
            rst: true,
            ack_flag: false,
            psh: false,
            payload: vec![],
            ..Inner::default()
        },
        Inner {
            v6: true,
            fin: true,
            psh: false,
            payload: vec![],
            ..Inner::default()
        },
    ];
    for inner in cases {
        let run = h.run(&Outer::default().wrap(&inner.frame()));
        assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);
        assert_eq!(run.records[0].header.captured_len, 0);
        assert_eq!(run.records[0].sample_len, RECORD_HEADER_LEN + 256);
    }
}

#[test]
fn several_vxlan_ports() {
    let mut h = Harness::new(Config {
        vxlan_ports: vec![4789, 8472],
        ..Config::default()
    });
    let inner = Inner::default();
    for port in [4789, 8472] {
        let outer = Outer {
            dst_port: port,
            ..Outer::default()
        };
        let run = h.run(&outer.wrap(&inner.frame()));
        assert_pushed(&run, &inner, outer.vni, XDP_DROP);
    }
    let frame = Outer {
        dst_port: 4790,
        ..Outer::default()
    }
    .wrap(&inner.frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::PassedNotVxlan, XDP_PASS);
}

// ---------------------------------------------------------------------------------------------
// Settings and the ring

#[test]
fn pass_consumed_setting_passes_what_would_be_dropped() {
    let mut h = Harness::new(Config {
        pass_consumed: true,
        vnis: vec![5],
        ..Config::default()
    });
    let inner = Inner::default();
    let frame = Outer {
        vni: 5,
        ..Outer::default()
    }
    .wrap(&inner.frame());
    let run = h.run(&frame);
    assert_pushed(&run, &inner, 5, XDP_PASS);
    assert!(run.out == frame, "consumed-but-passed frame modified");

    let frame = Outer {
        vni: 6,
        ..Outer::default()
    }
    .wrap(&inner.frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::FilteredVni, XDP_PASS);

    let pure_ack = Inner {
        psh: false,
        payload: vec![],
        ..Inner::default()
    };
    let frame = Outer {
        vni: 5,
        ..Outer::default()
    }
    .wrap(&pure_ack.frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::FilteredPureAck, XDP_PASS);

    let frame = Outer {
        vni: 5,
        vxlan_flags: 0,
        ..Outer::default()
    }
    .wrap(&inner.frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::Malformed, XDP_PASS);
}

#[test]
fn ring_full_is_counted_and_never_blocks() {
    // One page: room for two 1500-class records (8 + 72 + 1500 bytes each), not three.
    let mut h = Harness::new(Config {
        ring_size: 4096,
        ..Config::default()
    });
    let inner = Inner {
        payload: vec![b'r'; 1400],
        ..Inner::default()
    };
    let frame = Outer::default().wrap(&inner.frame());
    let mut results = Vec::new();
    for _ in 0..3 {
        let before = read_counters(&h.ebpf).unwrap();
        let program = xdp_program(&mut h.ebpf).unwrap();
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        };
        let verdict = program.test_run(opts).unwrap().return_value;
        let after = read_counters(&h.ebpf).unwrap();
        let mut delta = [0u64; Counter::COUNT];
        for (i, d) in delta.iter_mut().enumerate() {
            *d = after[i] - before[i];
        }
        results.push((verdict, delta));
    }
    let pushed = deltas(Counter::Pushed, &[(Counter::PushedBytes, 1400)]);
    assert_eq!(results[0], (XDP_DROP, pushed));
    assert_eq!(results[1], (XDP_DROP, pushed));
    assert_eq!(results[2], (XDP_DROP, deltas(Counter::RingFull, &[])));
    // The two records that fit are intact; once read, there is room again.
    let records = h.drain();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.payload, inner.payload);
    }
    let run = h.run(&frame);
    assert_pushed(&run, &inner, Outer::default().vni, XDP_DROP);

    // A jumbo record can never fit in one page: counted as ring full, verdict unchanged.
    let jumbo = Inner {
        payload: vec![b'j'; 5000],
        ..Inner::default()
    };
    let frame = Outer::default().wrap(&jumbo.frame());
    let run = h.run(&frame);
    assert_outcome(&run, &frame, Counter::RingFull, XDP_DROP);
}

#[test]
fn counters_add_up() {
    let mut h = Harness::new(Config {
        vnis: vec![1],
        ..Config::default()
    });
    let good = Outer {
        vni: 1,
        ..Outer::default()
    }
    .wrap(&Inner::default().frame());
    let other_vni = Outer {
        vni: 2,
        ..Outer::default()
    }
    .wrap(&Inner::default().frame());
    let not_vxlan = arp_frame();
    for frame in [&good, &good, &other_vni, &not_vxlan] {
        h.run(frame);
    }
    let totals = read_counters(&h.ebpf).unwrap();
    let outcomes: u64 = Counter::ALL
        .iter()
        .filter(|c| c.is_outcome())
        .map(|c| totals[c.index() as usize])
        .sum();
    assert_eq!(totals[Counter::Seen.index() as usize], 4);
    assert_eq!(outcomes, 4);
    assert_eq!(totals[Counter::Pushed.index() as usize], 2);
    assert_eq!(totals[Counter::FilteredVni.index() as usize], 1);
    assert_eq!(totals[Counter::PassedNotVxlan.index() as usize], 1);
}
