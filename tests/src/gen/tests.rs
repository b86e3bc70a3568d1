//! The generator checked against an independent reading of what it wrote (`readback`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::error::GenError;
use crate::readback::{decode_vxlan, read_capture, visit_raw, DecodedFrame};

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        Self(
            std::env::temp_dir().join(format!("rebuilder-tests-{}-{n}-{name}", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const HOST: &str = "example.com";

fn client() -> SocketAddr {
    "10.1.0.5:41000".parse().unwrap()
}

fn server() -> SocketAddr {
    "10.2.0.9:80".parse().unwrap()
}

fn conv() -> Conversation {
    Conversation::new(client(), server()).seed(42)
}

fn write_read(plan: &ConversationPlan, format: CaptureFormat, link: LinkType) -> Vec<DecodedFrame> {
    let f = TempFile::new("c.pcap");
    let n = write_capture(&f.0, format, link, plan.frames()).unwrap();
    assert_eq!(n as usize, plan.len());
    read_capture(&f.0).unwrap()
}

fn decode(plan: &ConversationPlan) -> Vec<DecodedFrame> {
    write_read(plan, CaptureFormat::PcapNanos, LinkType::Ethernet)
}

fn from(d: &DecodedFrame, who: SocketAddr) -> bool {
    d.inner.src == who.ip()
        && d.inner
            .tcp
            .as_ref()
            .is_some_and(|t| t.src_port == who.port())
}

/// Data segments sent by `who`, in arrival order: (seq, payload).
fn data(frames: &[DecodedFrame], who: SocketAddr) -> Vec<(u32, Vec<u8>)> {
    frames
        .iter()
        .filter(|d| from(d, who))
        .filter_map(|d| d.inner.tcp.as_ref())
        .filter(|t| !t.payload.is_empty())
        .map(|t| (t.seq, t.payload.clone()))
        .collect()
}

/// Asserts the segments from `who` follow each other without gap or overlap from `isn + 1`
/// and returns their concatenation.
fn contiguous_stream(frames: &[DecodedFrame], who: SocketAddr, isn: u32) -> Vec<u8> {
    let mut next = isn.wrapping_add(1);
    let mut out = Vec::new();
    for (seq, p) in data(frames, who) {
        assert_eq!(
            seq,
            next,
            "segment at offset {} is not contiguous",
            out.len()
        );
        next = next.wrapping_add(p.len() as u32);
        out.extend_from_slice(&p);
    }
    out
}

fn requests_concat(plan: &ConversationPlan) -> Vec<u8> {
    plan.truth
        .requests
        .iter()
        .flat_map(|r| r.bytes.clone())
        .collect()
}

fn tcp_flags(d: &DecodedFrame) -> u8 {
    d.inner.tcp.as_ref().map_or(0, |t| t.flags)
}

#[test]
fn clean_conversation_reads_back_exactly() {
    let requests = vec![
        http::get_with_id(HOST, "/", "1"),
        http::post(HOST, "/upload", 3000, 7),
        http::chunked_post(HOST, "/chunks", &[100, 2000, 5], 9),
        http::http10_get(HOST, "/old"),
    ];
    let mut c = conv().vni(777);
    for (i, r) in requests.iter().enumerate() {
        c = c.exchange(r.clone(), http::ok_response(100 + 2000 * i));
    }
    let plan = c.build().unwrap();
    let frames = decode(&plan);
    assert_eq!(frames.len(), plan.len());

    let to_server = super::vxlan_source_port(client(), server());
    let to_client = super::vxlan_source_port(server(), client());
    assert_ne!(to_server, to_client);
    for d in &frames {
        assert!(d.outer_ip_checksum_ok);
        assert_eq!(d.outer_src, MirrorPath::default().src);
        assert_eq!(d.outer_dst, MirrorPath::default().dst);
        assert_eq!(d.udp_dst, 4789);
        assert!(d.udp_length_ok);
        assert!(d.udp_checksum_zero && d.udp_checksum_ok);
        assert_eq!(d.vxlan_flags, 0x08);
        assert!(d.vxlan_reserved_zero);
        assert_eq!(d.vni, 777);
        assert_eq!(
            d.udp_src,
            if from(d, client()) {
                to_server
            } else {
                to_client
            }
        );
        assert_eq!(d.inner.ipv4_checksum_ok, Some(true));
        assert!(!d.inner.truncated());
        let t = d.inner.tcp.as_ref().unwrap();
        assert_eq!(t.checksum_ok, Some(true));
        assert!(t.payload.len() <= 1448);
        if t.payload.len() == 1448 {
            assert_eq!(d.inner.ip_declared_len, 1500);
            assert_eq!(d.inner.captured_len, 1514);
        }
    }

    // Handshake and teardown.
    let f = |i: usize| &frames[i];
    assert!(from(f(0), client()));
    assert_eq!(tcp_flags(f(0)), flags::SYN);
    let syn = f(0).inner.tcp.as_ref().unwrap();
    assert_eq!(
        (syn.seq, syn.mss_option, syn.header_len),
        (plan.client_isn, Some(1448), 40)
    );
    assert_eq!(tcp_flags(f(1)), flags::SYN | flags::ACK);
    let syn_ack = f(1).inner.tcp.as_ref().unwrap();
    assert_eq!(
        (syn_ack.seq, syn_ack.ack),
        (plan.server_isn, plan.client_isn.wrapping_add(1))
    );
    assert_eq!(tcp_flags(f(2)), flags::ACK);
    let n = frames.len();
    assert_eq!(tcp_flags(f(n - 3)), flags::FIN | flags::ACK);
    assert!(from(f(n - 3), client()));
    assert_eq!(tcp_flags(f(n - 2)), flags::FIN | flags::ACK);
    assert!(from(f(n - 2), server()));
    assert_eq!(tcp_flags(f(n - 1)), flags::ACK);
    let client_fin = f(n - 3).inner.tcp.as_ref().unwrap();
    let total = requests.iter().map(Vec::len).sum::<usize>() as u32;
    assert_eq!(
        client_fin.seq,
        plan.client_isn.wrapping_add(1).wrapping_add(total)
    );

    // Byte streams.
    assert_eq!(
        contiguous_stream(&frames, client(), plan.client_isn),
        requests.concat()
    );
    let responses: Vec<u8> = (0..4)
        .flat_map(|i| http::ok_response(100 + 2000 * i))
        .collect();
    assert_eq!(
        contiguous_stream(&frames, server(), plan.server_isn),
        responses
    );
    // The server acknowledges everything the client sent before answering.
    let last_client_data = frames
        .iter()
        .rposition(|d| from(d, client()) && !d.inner.tcp.as_ref().unwrap().payload.is_empty())
        .unwrap();
    let ack_after = frames[last_client_data + 1].inner.tcp.as_ref().unwrap();
    assert_eq!(
        ack_after.ack,
        plan.client_isn.wrapping_add(1).wrapping_add(total)
    );

    // Timing: 50 µs between packets, plus 200 µs think time between requests.
    for w in frames.windows(2) {
        let dt = w[1].ts - w[0].ts;
        assert!(
            dt == Duration::from_micros(50) || dt == Duration::from_micros(250),
            "{dt:?}"
        );
    }
    assert_eq!(frames[0].ts, DEFAULT_EPOCH);

    assert!(plan.truth.requests.iter().all(|r| r.rebuildable));
    assert_eq!(
        plan.truth
            .requests
            .iter()
            .map(|r| r.bytes.clone())
            .collect::<Vec<_>>(),
        requests
    );
    assert_eq!(plan.report.holes, Vec::<std::ops::Range<usize>>::new());
}

#[test]
fn same_seed_same_bytes_other_seed_other_isns() {
    let build = |seed| {
        conv()
            .seed(seed)
            .exchange(http::get(HOST, "/"), http::ok_response(1))
            .build()
            .unwrap()
    };
    let a: Vec<Frame> = build(1).frames().map(Result::unwrap).collect();
    let b: Vec<Frame> = build(1).frames().map(Result::unwrap).collect();
    assert_eq!(a, b);
    let (p1, p2) = (build(1), build(2));
    assert_ne!(
        (p1.client_isn, p1.server_isn),
        (p2.client_isn, p2.server_isn)
    );
}

#[test]
fn ipv6_inside_and_outside_with_qinq() {
    let c: SocketAddr = "[fd00:1::5]:50000".parse().unwrap();
    let s: SocketAddr = "[fd00:2::9]:443".parse().unwrap();
    let path = MirrorPath {
        src: "fd00:e1::1".parse().unwrap(),
        dst: "fd00:e0::200".parse().unwrap(),
        vni: MAX_VNI,
    };
    let plan = Conversation::new(c, s)
        .mirror(path)
        .vlans(&[100, 4095])
        .exchange(http::post(HOST, "/v6", 2000, 1), http::ok_response(10))
        .build()
        .unwrap();
    let frames = decode(&plan);
    for d in &frames {
        assert_eq!(
            (d.outer_src, d.outer_dst, d.vni),
            (path.src, path.dst, MAX_VNI)
        );
        assert!(
            !d.udp_checksum_zero && d.udp_checksum_ok,
            "IPv6 needs a real UDP checksum"
        );
        assert_eq!(d.inner.vlans, vec![(0x88a8, 100), (0x8100, 4095)]);
        assert_eq!(d.inner.ipv4_checksum_ok, None);
        assert_eq!(d.inner.tcp.as_ref().unwrap().checksum_ok, Some(true));
    }
    assert_eq!(
        contiguous_stream(&frames, c, plan.client_isn),
        requests_concat(&plan)
    );

    let one = conv()
        .vlans(&[7])
        .exchange(http::get(HOST, "/"), vec![])
        .build()
        .unwrap();
    assert!(decode(&one)
        .iter()
        .all(|d| d.inner.vlans == vec![(0x8100, 7)]));
}

#[test]
fn jumbo_mss_makes_9000_byte_packets() {
    let plan = conv()
        .mss(8948)
        .exchange(http::post(HOST, "/big", 30_000, 3), http::ok_response(0))
        .build()
        .unwrap();
    let frames = decode(&plan);
    let biggest = frames
        .iter()
        .map(|d| d.inner.ip_declared_len)
        .max()
        .unwrap();
    assert_eq!(biggest, 9000);
    assert_eq!(frames[0].inner.tcp.as_ref().unwrap().mss_option, Some(8948));
    assert_eq!(
        contiguous_stream(&frames, client(), plan.client_isn),
        requests_concat(&plan)
    );
}

#[test]
fn sequence_numbers_wrap_past_2_32() {
    let plan = conv()
        .client_isn(Isn::WrapAfter(1000))
        .server_isn(Isn::WrapAfter(10))
        .requests(
            (0..3).map(|i| http::post(HOST, "/w", 1500, i)),
            &http::ok_response(50),
        )
        .build()
        .unwrap();
    // Byte 1000 of the client stream has sequence number 0.
    assert_eq!(plan.client_isn.wrapping_add(1 + 1000), 0);
    let frames = decode(&plan);
    let seqs: Vec<u32> = data(&frames, client()).iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).any(|w| w[1] < w[0]), "no wrap in {seqs:?}");
    assert_eq!(
        contiguous_stream(&frames, client(), plan.client_isn),
        requests_concat(&plan)
    );
    assert_eq!(
        contiguous_stream(&frames, server(), plan.server_isn).len(),
        3 * http::ok_response(50).len()
    );
}

#[test]
fn pipelining_shares_segments_only_when_asked() {
    let reqs = http::pipelined_gets(HOST, 5, "p");
    let shared = conv()
        .pipelined(5, true)
        .requests(reqs.clone(), &http::ok_response(1))
        .build()
        .unwrap();
    let frames = decode(&shared);
    let segs = data(&frames, client());
    let total: usize = reqs.iter().map(Vec::len).sum();
    assert_eq!(segs.len(), total.div_ceil(1448));
    assert!(segs.len() < 5);
    assert_eq!(
        contiguous_stream(&frames, client(), shared.client_isn),
        reqs.concat()
    );
    // All five requests go out before the first response.
    let first_response = frames
        .iter()
        .position(|d| from(d, server()) && !d.inner.tcp.as_ref().unwrap().payload.is_empty())
        .unwrap();
    let last_request = frames
        .iter()
        .rposition(|d| from(d, client()) && !d.inner.tcp.as_ref().unwrap().payload.is_empty())
        .unwrap();
    assert!(last_request < first_response);

    let separate = conv()
        .pipelined(5, false)
        .requests(reqs.clone(), &http::ok_response(1))
        .build()
        .unwrap();
    let frames = decode(&separate);
    let payloads: Vec<Vec<u8>> = data(&frames, client())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(payloads, reqs);
}

#[test]
fn expect_continue_pauses_for_100() {
    let req = http::expect_continue_post(HOST, "/up", 500, 1);
    let head = http::expect_continue_split(&req).unwrap();
    let plan = conv()
        .exchange(req.clone(), http::ok_response(2))
        .build()
        .unwrap();
    let frames = decode(&plan);
    let data_frames: Vec<(bool, Vec<u8>)> = frames
        .iter()
        .filter_map(|d| {
            d.inner
                .tcp
                .as_ref()
                .map(|t| (from(d, client()), t.payload.clone()))
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    assert_eq!(
        data_frames,
        vec![
            (true, req[..head].to_vec()),
            (false, http::CONTINUE_RESPONSE.to_vec()),
            (true, req[head..].to_vec()),
            (false, http::ok_response(2)),
        ]
    );
}

#[test]
fn truncation_cuts_inner_frames_and_marks_requests() {
    let tiny = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    let plan = conv()
        .packet_length(200)
        .exchange(tiny.clone(), http::ok_response(0))
        .exchange(http::get_with_id(HOST, "/long", "x"), http::ok_response(0))
        .exchange(tiny.clone(), http::ok_response(0))
        .build()
        .unwrap();
    assert_eq!(
        plan.truth
            .requests
            .iter()
            .map(|r| r.rebuildable)
            .collect::<Vec<_>>(),
        vec![true, false, true]
    );
    assert_eq!(plan.truth.affected(), vec![1]);
    let frames = decode(&plan);
    let mut truncated = 0;
    for d in &frames {
        assert!(d.inner.captured_len <= 200);
        let t = d.inner.tcp.as_ref().unwrap();
        let whole = 14 + d.inner.ip_declared_len;
        if whole > 200 {
            truncated += 1;
            assert!(d.inner.truncated());
            assert_eq!(d.inner.captured_len, 200);
            assert_eq!(
                d.inner.ip_declared_len - d.inner.ip_captured_len,
                whole - 200
            );
            assert_eq!(t.checksum_ok, None);
            assert!(t.payload.len() < t.payload_declared_len);
        } else {
            assert!(!d.inner.truncated());
            assert_eq!(t.checksum_ok, Some(true));
        }
        assert!(d.udp_length_ok);
    }
    assert!(truncated > 0);
    assert_eq!(plan.report.truncated_packets, truncated);
    let long = plan.report.client_segments[1].clone();
    assert_eq!(plan.report.holes, vec![long]);
}

#[test]
fn dropped_segment_makes_a_hole_in_one_request() {
    let plan = conv()
        .requests(
            (0..3).map(|i| http::post(HOST, "/d", 3000, i)),
            &http::ok_response(0),
        )
        .drop_client_segment(4)
        .build()
        .unwrap();
    assert_eq!(plan.report.client_segments.len(), 9);
    assert_eq!(plan.report.dropped_client_segments, vec![4]);
    assert_eq!(
        plan.report.holes,
        vec![plan.report.client_segments[4].clone()]
    );
    assert_eq!(plan.truth.affected(), vec![1]);
    assert_eq!(plan.truth.rebuildable().count(), 2);
    let frames = decode(&plan);
    let got: Vec<u32> = data(&frames, client()).iter().map(|(s, _)| *s).collect();
    let hole_seq = plan
        .client_isn
        .wrapping_add(1 + plan.report.client_segments[4].start as u32);
    assert_eq!(got.len(), 8);
    assert!(!got.contains(&hole_seq));
}

#[test]
fn dropping_a_segment_shared_by_two_requests_affects_both() {
    let reqs = http::pipelined_gets(HOST, 3, "s");
    let boundary = reqs[0].len();
    let mss = 97;
    let probe = conv()
        .mss(mss)
        .pipelined(3, true)
        .requests(reqs.clone(), &[])
        .build()
        .unwrap();
    let seg = probe
        .report
        .client_segments
        .iter()
        .position(|r| r.start < boundary && r.end > boundary)
        .expect("a segment straddles the first request boundary");
    let plan = conv()
        .mss(mss)
        .pipelined(3, true)
        .requests(reqs, &[])
        .drop_client_segment(seg)
        .build()
        .unwrap();
    assert_eq!(plan.truth.affected(), vec![0, 1]);
    assert!(matches!(
        conv()
            .exchange(b"x".to_vec(), vec![])
            .drop_client_segment(1)
            .build(),
        Err(GenError::NoSuchSegment { index: 1, count: 1 })
    ));
}

#[test]
fn random_loss_is_deterministic_and_reported() {
    let build = |seed| {
        conv()
            .seed(seed)
            .requests(
                (0..40).map(|i| http::get_with_id(HOST, "/", &i.to_string())),
                &[],
            )
            .loss(0.2)
            .build()
            .unwrap()
    };
    let (a, b, c) = (build(5), build(5), build(6));
    assert_eq!(
        a.report.dropped_client_segments,
        b.report.dropped_client_segments
    );
    assert_ne!(
        a.report.dropped_client_segments,
        c.report.dropped_client_segments
    );
    assert!(!a.report.dropped_client_segments.is_empty());
    // One segment per request here, so affected requests are exactly the dropped segments.
    assert_eq!(a.truth.affected(), a.report.dropped_client_segments);
    assert_eq!(
        data(&decode(&a), client()).len(),
        40 - a.report.dropped_client_segments.len()
    );
}

#[test]
fn duplicates_repeat_every_data_segment_later() {
    let plan = conv()
        .requests(
            (0..2).map(|i| http::post(HOST, "/", 3000, i)),
            &http::ok_response(100),
        )
        .duplicate(1.0)
        .build()
        .unwrap();
    let frames = decode(&plan);
    // (from client, seq, payload) -> [(position, IP id)]
    type Copies = Vec<(usize, u16)>;
    let mut seen: HashMap<(bool, u32, Vec<u8>), Copies> = HashMap::new();
    for (i, d) in frames.iter().enumerate() {
        let t = d.inner.tcp.as_ref().unwrap();
        if !t.payload.is_empty() {
            seen.entry((from(d, client()), t.seq, t.payload.clone()))
                .or_default()
                .push((i, d.inner.ip_id.unwrap()));
        }
    }
    assert_eq!(plan.report.retransmissions, seen.len());
    for copies in seen.values() {
        assert_eq!(copies.len(), 2);
        assert!(copies[0].0 < copies[1].0);
        assert_ne!(
            copies[0].1, copies[1].1,
            "a retransmission is a new IP datagram"
        );
    }
    assert!(plan.truth.requests.iter().all(|r| r.rebuildable));
}

#[test]
fn reordering_moves_packets_within_the_window_only() {
    let base = || {
        conv().requests(
            (0..6).map(|i| http::get_with_id(HOST, "/r", &i.to_string())),
            &http::ok_response(10),
        )
    };
    let plain = decode(&base().build().unwrap());
    let shuffled = decode(&base().reorder(4).build().unwrap());
    assert_eq!(plain.len(), shuffled.len());
    let key = |d: &DecodedFrame| (d.inner.src, d.inner.ip_id.unwrap());
    let pos: HashMap<_, usize> = plain.iter().enumerate().map(|(i, d)| (key(d), i)).collect();
    let mut moved = 0;
    for (i, d) in shuffled.iter().enumerate() {
        let j = pos[&key(d)];
        assert!(i.abs_diff(j) <= 4, "packet moved from {j} to {i}");
        moved += usize::from(i != j);
        let mut same = d.clone();
        same.ts = plain[j].ts;
        assert_eq!(same, plain[j]);
    }
    assert!(moved > 0);
    // The clock does not move: arrival times are the same sequence.
    assert_eq!(
        plain.iter().map(|d| d.ts).collect::<Vec<_>>(),
        shuffled.iter().map(|d| d.ts).collect::<Vec<_>>()
    );
}

#[test]
fn mid_stream_start_skips_handshake_and_first_bytes() {
    let reqs: Vec<Vec<u8>> = (0..4)
        .map(|i| http::get_with_id(HOST, "/m", &i.to_string()))
        .collect();
    let k = reqs[0].len() + 1;
    let plan = conv()
        .requests(reqs.clone(), &http::ok_response(3))
        .start_mid_stream(k)
        .build()
        .unwrap();
    assert_eq!(
        plan.truth
            .requests
            .iter()
            .map(|r| r.rebuildable)
            .collect::<Vec<_>>(),
        vec![false, false, true, true]
    );
    let frames = decode(&plan);
    assert!(frames.iter().all(|d| tcp_flags(d) & flags::SYN == 0));
    let first = frames[0].inner.tcp.as_ref().unwrap();
    assert!(from(&frames[0], client()));
    let offset = first.seq.wrapping_sub(plan.client_isn.wrapping_add(1)) as usize;
    assert_eq!(offset, reqs[0].len() + reqs[1].len());
    assert_eq!(first.payload, reqs[2]);
    assert_eq!(plan.report.holes, vec![0..offset]);
}

#[test]
fn mirroring_both_enis_delivers_every_packet_twice() {
    let second = MirrorPath {
        src: "10.0.9.9".parse().unwrap(),
        dst: MirrorPath::default().dst,
        vni: 4242,
    };
    let base = || {
        conv().requests(
            (0..4).map(|i| http::post(HOST, "/", 2000, i)),
            &http::ok_response(10),
        )
    };
    let single = base().build().unwrap();
    let plan = base()
        .mirror_twice(second, Duration::from_micros(30))
        .build()
        .unwrap();
    assert_eq!(plan.len(), 2 * single.len());
    assert_eq!(plan.report.mirror_copies, single.len());
    let frames = decode(&plan);
    let mut groups: BTreeMap<(bool, u16), Vec<&DecodedFrame>> = BTreeMap::new();
    for d in &frames {
        groups
            .entry((from(d, client()), d.inner.ip_id.unwrap()))
            .or_default()
            .push(d);
    }
    assert_eq!(groups.len(), single.len());
    for g in groups.values() {
        assert_eq!(g.len(), 2);
        let paths: HashSet<_> = g.iter().map(|d| (d.outer_src, d.vni)).collect();
        assert_eq!(
            paths,
            HashSet::from([
                (MirrorPath::default().src, MirrorPath::default().vni),
                (second.src, 4242)
            ])
        );
        assert_eq!(g[0].inner, g[1].inner);
        assert_eq!(g[0].udp_src, g[1].udp_src);
        assert!(g[1].ts.abs_diff(g[0].ts) <= Duration::from_micros(30));
    }
    // Copies are interleaved with the originals, not appended.
    let second_positions: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, d)| d.vni == 4242)
        .map(|(i, _)| i)
        .collect();
    assert!(
        second_positions.last().unwrap() - second_positions.first().unwrap()
            > second_positions.len()
    );
    assert!(plan.truth.requests.iter().all(|r| r.rebuildable));
}

#[test]
fn overlapping_retransmissions_span_two_segments_with_identical_bytes() {
    let plan = conv()
        .requests((0..2).map(|i| http::post(HOST, "/o", 3000, i)), &[])
        .overlapping_retransmits(2)
        .build()
        .unwrap();
    assert_eq!(plan.report.overlaps, 2);
    let frames = decode(&plan);
    let segs = data(&frames, client());
    assert_eq!(segs.len(), plan.report.client_segments.len() + 2);
    let starts: HashSet<usize> = plan
        .report
        .client_segments
        .iter()
        .map(|r| r.start)
        .collect();
    let stream = plan.client_stream();
    let mut overlaps = 0;
    for (seq, payload) in segs {
        let begin = seq.wrapping_sub(plan.client_isn.wrapping_add(1)) as usize;
        let end = begin + payload.len();
        assert_eq!(payload, stream[begin..end]);
        if !starts.contains(&begin) {
            overlaps += 1;
            let boundaries = plan
                .report
                .client_segments
                .iter()
                .filter(|r| r.start > begin && r.start < end)
                .count();
            assert_eq!(boundaries, 1, "{begin}..{end} spans one segment boundary");
        }
    }
    assert_eq!(overlaps, 2);
    assert!(plan.truth.requests.iter().all(|r| r.rebuildable));
}

#[test]
fn every_format_and_link_type_reads_back_the_same() {
    let plan = conv()
        .vlans(&[5])
        .requests(
            (0..2).map(|i| http::post(HOST, "/f", 2000, i)),
            &http::ok_response(20),
        )
        .build()
        .unwrap();
    let reference = decode(&plan);
    for format in [
        CaptureFormat::Pcap,
        CaptureFormat::PcapNanos,
        CaptureFormat::PcapNg,
    ] {
        for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2] {
            assert_eq!(
                write_read(&plan, format, link),
                reference,
                "{format:?} {link:?}"
            );
        }
    }

    let outer_mac = {
        let f = plan.frame(0).unwrap().unwrap();
        f.data[6..12].to_vec()
    };
    let raw_first = |format, link| {
        let f = TempFile::new("raw.pcap");
        write_capture(&f.0, format, link, plan.frames()).unwrap();
        let magic = std::fs::read(&f.0).unwrap()[..4].to_vec();
        let mut first = None;
        visit_raw(&f.0, |_, _, d| {
            first.get_or_insert_with(|| d.to_vec());
        })
        .unwrap();
        (magic, first.unwrap())
    };
    let (magic, sll) = raw_first(CaptureFormat::Pcap, LinkType::LinuxSll);
    assert_eq!(magic, 0xa1b2_c3d4u32.to_ne_bytes());
    assert_eq!(sll[..6], [0, 0, 0, 1, 0, 6]);
    assert_eq!(sll[6..12], outer_mac[..]);
    assert_eq!(sll[12..16], [0, 0, 0x08, 0x00]);
    let (magic, sll2) = raw_first(CaptureFormat::PcapNanos, LinkType::LinuxSll2);
    assert_eq!(magic, 0xa1b2_3c4du32.to_ne_bytes());
    assert_eq!(sll2[..12], [0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
    assert_eq!(sll2[12..18], outer_mac[..]);
    assert_eq!(sll2[18..20], [0, 0]);
    let (magic, _) = raw_first(CaptureFormat::PcapNg, LinkType::Ethernet);
    assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a]);

    // pcapng says its timestamps are in nanoseconds.
    let f = TempFile::new("ng.pcapng");
    write_capture(
        &f.0,
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        plan.frames(),
    )
    .unwrap();
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(&f.0).unwrap()).unwrap();
    let _ = r.next_block().unwrap().unwrap();
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    assert_eq!(
        r.interfaces()[0].options,
        vec![InterfaceDescriptionOption::IfTsResol(9)]
    );
}

#[test]
fn invalid_settings_are_typed_errors() {
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    assert!(matches!(
        Conversation::new(client(), v6).build(),
        Err(GenError::MixedInnerFamilies { .. })
    ));
    let bad_path = MirrorPath {
        src: "::1".parse().unwrap(),
        ..MirrorPath::default()
    };
    assert!(matches!(
        conv().mirror(bad_path).build(),
        Err(GenError::MixedOuterFamilies { .. })
    ));
    assert!(matches!(
        conv().vni(1 << 24).build(),
        Err(GenError::VniTooLarge(16_777_216))
    ));
    assert!(matches!(
        conv().vlans(&[1, 2, 3]).build(),
        Err(GenError::TooManyVlans(3))
    ));
    assert!(matches!(
        conv().vlans(&[4096]).build(),
        Err(GenError::VlanIdTooLarge(4096))
    ));
    assert!(matches!(
        conv().mss(0).build(),
        Err(GenError::BadMss { mss: 0, .. })
    ));
    assert!(matches!(
        conv().mss(MAX_MSS + 1).build(),
        Err(GenError::BadMss { .. })
    ));
    assert!(matches!(
        conv().loss(1.5).build(),
        Err(GenError::BadRate {
            what: "loss rate",
            ..
        })
    ));
    assert!(matches!(
        conv().duplicate(f64::NAN).build(),
        Err(GenError::BadRate { .. })
    ));
    assert!(matches!(
        conv().packet_length(0).build(),
        Err(GenError::BadPacketLength)
    ));
    assert!(matches!(
        conv().pipelined(0, false).build(),
        Err(GenError::BadBatch)
    ));
    assert!(matches!(
        conv().exchange(vec![], vec![]).build(),
        Err(GenError::EmptyRequest(0))
    ));
    // The largest MSS still encodes.
    let big = conv()
        .mss(MAX_MSS)
        .exchange(http::post(HOST, "/", MAX_MSS, 1), vec![])
        .build()
        .unwrap();
    assert!(big.frames().all(|f| f.is_ok()));
}

fn small_traffic() -> TrafficConfig {
    TrafficConfig {
        concurrency: 4,
        conversations: Some(10),
        requests_per_connection: 3,
        post_percent: 50,
        post_bytes: 2000,
        wrap_every: 3,
        seed: 11,
        ..TrafficConfig::default()
    }
}

#[test]
fn traffic_interleaves_conversations_and_matches_truth() {
    let mut t = Traffic::new(small_traffic()).unwrap();
    let f = TempFile::new("traffic.pcap");
    let mut w = CaptureWriter::create(&f.0, CaptureFormat::PcapNanos, LinkType::Ethernet).unwrap();
    let mut per_conv: HashMap<u64, usize> = HashMap::new();
    let mut order = Vec::new();
    for frame in t.by_ref() {
        let frame = frame.unwrap();
        *per_conv.entry(frame.conversation).or_default() += 1;
        order.push(frame.conversation);
        w.write_frame(&frame).unwrap();
    }
    w.finish().unwrap();
    let truths = t.drain_truth();
    assert_eq!(truths.len(), 10);
    assert_eq!(t.conversations_started(), 10);
    assert_eq!(per_conv.values().sum::<usize>() as u64, t.packets_planned());
    // Interleaved: the first conversations' packets alternate rather than come in blocks.
    assert!(order[..40].iter().collect::<HashSet<_>>().len() >= 4);

    let frames = read_capture(&f.0).unwrap();
    assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts));
    let mut wrapped = 0;
    for truth in &truths {
        assert_eq!(truth.requests.len(), 3);
        assert!(truth.requests.iter().all(|r| r.rebuildable));
        let mine: Vec<DecodedFrame> = frames
            .iter()
            .filter(|d| {
                from(d, truth.client) || from(d, truth.server) && d.inner.dst == truth.client.ip()
            })
            .cloned()
            .collect();
        assert!(mine.iter().all(|d| d.vni == truth.vni));
        let syn = mine[0].inner.tcp.as_ref().unwrap();
        assert_eq!(syn.flags, flags::SYN);
        let stream = contiguous_stream(&mine, truth.client, syn.seq);
        let expected: Vec<u8> = truth
            .requests
            .iter()
            .flat_map(|r| r.bytes.clone())
            .collect();
        assert_eq!(stream, expected);
        let seqs: Vec<u32> = data(&mine, truth.client).iter().map(|(s, _)| *s).collect();
        wrapped += usize::from(seqs.windows(2).any(|w| w[1] < w[0]));
    }
    assert!(wrapped >= 1, "wrap_every = 3 wraps some conversations");

    // Same config, same bytes.
    let again: Vec<Frame> = Traffic::new(small_traffic())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let once: Vec<Frame> = Traffic::new(small_traffic())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(again, once);
}

#[test]
fn traffic_packet_target_opens_connections_until_reached() {
    let cfg = TrafficConfig {
        concurrency: 8,
        packets: Some(2000),
        requests_per_connection: 2,
        ..TrafficConfig::default()
    };
    let mut t = Traffic::new(cfg).unwrap();
    let mut buf = Vec::new();
    let mut n = 0u64;
    let mut last = Duration::ZERO;
    while let Some(meta) = t.next_into(&mut buf) {
        let meta = meta.unwrap();
        assert!(meta.ts >= last);
        last = meta.ts;
        n += 1;
    }
    assert_eq!(n, t.packets_planned());
    assert!(n >= 2000);
    // Never more than one more conversation per slot than needed.
    let per_conv = n / t.conversations_started();
    assert!(n < 2000 + 8 * (per_conv + 10), "{n}");
    assert!(matches!(
        Traffic::new(TrafficConfig {
            concurrency: 0,
            ..TrafficConfig::default()
        }),
        Err(GenError::Zero(_))
    ));
}

#[test]
fn interleave_merges_plans_by_time() {
    let a = conv()
        .exchange(http::get(HOST, "/a"), vec![])
        .build()
        .unwrap();
    let b = Conversation::new("10.1.0.6:41001".parse().unwrap(), server())
        .id(1)
        .start(DEFAULT_EPOCH + Duration::from_micros(25))
        .exchange(http::get(HOST, "/b"), vec![])
        .build()
        .unwrap();
    let plans = [a, b];
    let merged: Vec<Frame> = interleave(&plans).map(Result::unwrap).collect();
    assert_eq!(merged.len(), plans[0].len() + plans[1].len());
    assert!(merged.windows(2).all(|w| w[0].ts <= w[1].ts));
    let ids: Vec<u64> = merged.iter().take(4).map(|f| f.conversation).collect();
    assert_eq!(ids, vec![0, 1, 0, 1]);
}

#[test]
fn udp_sender_delivers_vxlan_payloads_per_flow_socket() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let plan = conv()
        .vni(99)
        .requests(
            (0..3).map(|i| http::post(HOST, "/u", 1000, i)),
            &http::ok_response(5),
        )
        .build()
        .unwrap();
    let frames: Vec<Frame> = plan.frames().map(Result::unwrap).collect();
    let opts = UdpSendOptions {
        target: rx.local_addr().unwrap(),
        packets_per_second: Some(1000),
        sockets: 3,
    };
    let start = Instant::now();
    let stats = send_vxlan(frames.iter().cloned().map(Ok), &opts).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(stats.packets as usize, frames.len());
    // Pacing: packet i is not sent before i ms (a lower bound only; sleeping may overshoot).
    assert!(
        elapsed >= Duration::from_millis(frames.len() as u64 - 3),
        "{elapsed:?}"
    );
    let mut buf = vec![0u8; 65536];
    let mut sources: HashMap<u16, HashSet<SocketAddr>> = HashMap::new();
    for f in &frames {
        let (n, src) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], f.vxlan_payload());
        let (flags_byte, reserved_zero, vni, inner) = decode_vxlan(&buf[..n]).unwrap();
        assert_eq!((flags_byte, reserved_zero, vni), (0x08, true, 99));
        assert_eq!(inner.tcp.unwrap().checksum_ok, Some(true));
        sources
            .entry(f.outer_source_port())
            .or_default()
            .insert(src);
    }
    assert_eq!(sources.len(), 2, "one outer port per direction");
    assert!(
        sources.values().all(|s| s.len() == 1),
        "one socket per flow: {sources:?}"
    );
    let far = UdpSendOptions::new("192.0.2.1:4789".parse().unwrap());
    assert!(matches!(
        VxlanSender::new(&far),
        Err(GenError::NotLoopback(_))
    ));
}
