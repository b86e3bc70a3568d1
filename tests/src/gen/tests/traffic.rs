//! The traffic mixer (interleaving, packet targets, merging by time) and the UDP sender.

use super::*;

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
