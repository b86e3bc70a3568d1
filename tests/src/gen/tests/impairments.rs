//! Each impairment does what it says and reports it: truncation, dropped segments, random
//! loss, duplicates, reordering, mid-stream start, mirroring both ENIs, overlapping
//! retransmissions.

use super::*;

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
