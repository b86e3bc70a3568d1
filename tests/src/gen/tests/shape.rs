//! A clean conversation, read back independently: exact bytes, determinism by seed, IPv6 and
//! QinQ, jumbo frames, sequence wrap, pipelining and `Expect: 100-continue`.

use super::*;

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
