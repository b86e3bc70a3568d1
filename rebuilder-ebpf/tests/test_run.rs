//! The XDP program run by the kernel on crafted frames (`BPF_PROG_TEST_RUN`).
//!
//! Needs root and a kernel with BPF, BTF and multi-buffer XDP (5.18+). Without them every test
//! fails with a message naming what is missing: a silently skipped kernel test proves nothing.
//!
//! Each test loads its own copy of the object (own maps), runs frames through it and checks the
//! verdict, the exact ring-buffer records and the exact counter deltas.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, RingBuf};
use aya::programs::{TestRun, TestRunOptions};
use aya::Ebpf;
use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel,
    Ipv6Header, SingleVlanHeader, TcpHeader, UdpHeader, VlanId, VlanPcp,
};
use rebuilder_ebpf::{
    load, parse_record, payload_class, read_counters, xdp_program, Config, Counter, RecordHeader,
    FAMILY_IPV4, FAMILY_IPV6, MAP_RECORDS, PAYLOAD_MAX, RECORD_HEADER_LEN,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Prerequisites and harness

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|e| panic!("prerequisite missing: cannot read /proc/self/status: {e}"));
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("prerequisite missing: no Uid line in /proc/self/status"));
    assert_eq!(
        euid, "0",
        "prerequisite missing: these tests load an XDP program and need root \
         (CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON); run them as root"
    );
}

/// CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns()` reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap()
}

struct Harness {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

#[derive(Debug)]
struct Record {
    header: RecordHeader,
    payload: Vec<u8>,
    /// Length of the ring-buffer sample: header plus size class.
    sample_len: usize,
}

struct Run {
    verdict: u32,
    /// The frame as the program left it.
    out: Vec<u8>,
    records: Vec<Record>,
    /// Counter deltas over the run, by counter index.
    delta: [u64; Counter::COUNT],
    /// CLOCK_MONOTONIC just before and just after the run.
    window: (u64, u64),
}

impl Harness {
    fn new(config: Config) -> Self {
        require_root();
        let mut ebpf = load(&config).unwrap_or_else(|e| {
            panic!(
                "prerequisite missing: the kernel refused the XDP program (BPF, BTF, \
                 BPF_F_XDP_HAS_FRAGS and bpf_xdp_load_bytes need Linux 5.18+): {e}\n{e:?}"
            )
        });
        let map = ebpf
            .take_map(MAP_RECORDS)
            .expect("object has the records map");
        let ring = RingBuf::try_from(map).expect("records is a ring buffer");
        Harness { ebpf, ring }
    }

    fn default() -> Self {
        Self::new(Config::default())
    }

    fn drain(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some(item) = self.ring.next() {
            let (header, payload) = parse_record(&item)
                .unwrap_or_else(|e| panic!("kernel wrote a record parse_record rejects: {e}"));
            records.push(Record {
                header,
                payload: payload.to_vec(),
                sample_len: item.len(),
            });
        }
        records
    }

    fn run(&mut self, frame: &[u8]) -> Run {
        assert!(
            self.drain().is_empty(),
            "ring buffer not empty before the run"
        );
        let before = read_counters(&self.ebpf).expect("read counters");
        let mut out = vec![0u8; frame.len()];
        let start = monotonic_ns();
        let result = {
            let program = xdp_program(&mut self.ebpf).expect("program");
            let opts = TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            };
            // BPF_PROG_TEST_RUN. For an xdp.frags program the kernel puts what exceeds one
            // page (minus headroom and skb_shared_info) into fragments, as a multi-buffer NIC
            // or veth would.
            program.test_run(opts).unwrap_or_else(|e| {
                panic!(
                    "BPF_PROG_TEST_RUN failed for a {}-byte frame: {e} ({e:?})",
                    frame.len()
                )
            })
        };
        let end = monotonic_ns();
        let after = read_counters(&self.ebpf).expect("read counters");
        let mut delta = [0u64; Counter::COUNT];
        for (i, d) in delta.iter_mut().enumerate() {
            *d = after[i] - before[i];
        }
        out.truncate(result.data_size_out as usize);
        Run {
            verdict: result.return_value,
            out,
            records: self.drain(),
            delta,
            window: (start, end),
        }
    }
}

/// The exact counter deltas of one packet with `outcome` (plus extras such as bytes).
fn deltas(outcome: Counter, extra: &[(Counter, u64)]) -> [u64; Counter::COUNT] {
    let mut d = [0u64; Counter::COUNT];
    d[Counter::Seen.index() as usize] = 1;
    d[outcome.index() as usize] = 1;
    for &(c, n) in extra {
        d[c.index() as usize] += n;
    }
    d
}

fn named(d: &[u64; Counter::COUNT]) -> Vec<(&'static str, u64)> {
    Counter::ALL
        .iter()
        .map(|c| (c.name(), d[c.index() as usize]))
        .filter(|(_, n)| *n != 0)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Frames, built header by header with etherparse

const INNER_V4: ([u8; 4], [u8; 4]) = ([10, 1, 0, 1], [10, 1, 0, 2]);
const INNER_V6: ([u8; 16], [u8; 16]) = (
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
);
const OUTER_V4: ([u8; 4], [u8; 4]) = ([172, 31, 0, 5], [172, 31, 0, 9]);
const OUTER_V6: ([u8; 16], [u8; 16]) = (
    [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
    [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
);
/// NOP NOP NOP EOL: four bytes of IPv4 options, so IHL is 6.
const IP_OPTIONS: [u8; 4] = [1, 1, 1, 0];

/// Ethernet header with `vlans` tags (802.1ad outside, 802.1Q inside).
fn eth(ether_type: EtherType, vlans: usize) -> Vec<u8> {
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
enum Frag {
    None,
    First,
    Later,
}

/// An IPv4 header claiming `payload_len` bytes of `proto`.
fn ipv4(
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
fn ipv6(src: [u8; 16], dst: [u8; 16], proto: u8, payload_len: usize, frag: Frag) -> Vec<u8> {
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
struct Inner {
    v6: bool,
    vlans: usize,
    ip_options: bool,
    frag: Frag,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    ack_flag: bool,
    psh: bool,
    payload: Vec<u8>,
    /// Payload bytes actually present (the rest cut off, as AWS truncation does).
    present: Option<usize>,
    /// Junk after the IP packet (Ethernet padding).
    pad: usize,
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
    fn tcp(&self) -> TcpHeader {
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

    fn flags(&self) -> u8 {
        u8::from(self.fin)
            | u8::from(self.syn) << 1
            | u8::from(self.rst) << 2
            | u8::from(self.psh) << 3
            | u8::from(self.ack_flag) << 4
    }

    /// The inner Ethernet frame.
    fn frame(&self) -> Vec<u8> {
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
    fn expected(&self, vni: u32) -> (RecordHeader, Vec<u8>) {
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
struct Outer {
    v6: bool,
    vlans: usize,
    ip_options: bool,
    frag: Frag,
    dst_port: u16,
    vni: u32,
    vxlan_flags: u8,
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
    fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        let mut vxlan = vec![self.vxlan_flags, 0, 0, 0];
        vxlan.extend_from_slice(&self.vni.to_be_bytes()[1..]);
        vxlan.push(0);
        self.udp(&[&vxlan[..], inner].concat())
    }

    /// `payload` in a UDP datagram to `dst_port`.
    fn udp(&self, payload: &[u8]) -> Vec<u8> {
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

/// Asserts that `run` pushed exactly `inner`'s record under `vni` and counted it.
fn assert_pushed(run: &Run, inner: &Inner, vni: u32, verdict: u32) {
    let (mut want, payload) = inner.expected(vni);
    assert_eq!(run.verdict, verdict, "verdict");
    assert_eq!(run.records.len(), 1, "records: {:?}", run.records);
    let got = &run.records[0];
    assert!(
        run.window.0 <= got.header.ts_ns && got.header.ts_ns <= run.window.1,
        "timestamp {} outside the CLOCK_MONOTONIC window {:?}",
        got.header.ts_ns,
        run.window
    );
    want.ts_ns = got.header.ts_ns;
    assert_eq!(got.header, want);
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload == payload, "payload bytes differ");
    assert_eq!(
        got.sample_len,
        RECORD_HEADER_LEN + payload_class(want.captured_len) as usize
    );
    let mut extra = vec![];
    if want.captured_len > 0 {
        extra.push((Counter::PushedBytes, u64::from(want.captured_len)));
    }
    if want.captured_len < want.wire_len {
        extra.push((Counter::Truncated, 1));
    }
    assert_eq!(named(&run.delta), named(&deltas(Counter::Pushed, &extra)));
}

/// Asserts that `run` produced no record, the verdict, and exactly one `outcome`.
fn assert_outcome(run: &Run, frame: &[u8], outcome: Counter, verdict: u32) {
    assert_eq!(run.verdict, verdict, "verdict for {outcome:?}");
    assert!(
        run.records.is_empty(),
        "unexpected records: {:?}",
        run.records
    );
    assert_eq!(named(&run.delta), named(&deltas(outcome, &[])));
    assert!(run.out == frame, "the program modified the frame");
}

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

fn arp_frame() -> Vec<u8> {
    let mut v = eth(EtherType::ARP, 0);
    // Ethernet/IPv4 ARP request.
    v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 1, 0, 1]);
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 1, 0, 2]);
    v.resize(60, 0);
    v
}

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
