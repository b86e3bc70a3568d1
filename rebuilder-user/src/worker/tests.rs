//! Tests of the flow table: which side is rebuilt, duplicates, port reuse and spoofed SYNs,
//! pickups, expiry and the end of input. `budget` tests the memory budget and eviction,
//! `proxy` PROXY protocol headers at stream start; both use the helpers here.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;

use super::*;
use crate::segment::TcpFlags;

mod budget;
mod proxy;

const SEC: u64 = NS_PER_SEC;

fn cfg() -> WorkerConfig {
    WorkerConfig {
        flow_key: FlowKeyMode::Inner,
        server_ports: Vec::new(),
        stream: StreamConfig::default(),
        http: Arc::new(HttpLimits::default()),
        idle_timeout_ns: 60 * SEC,
        linger_ns: 30 * SEC,
        budget: 64 << 20,
        proxy: crate::proxy::ProxyPolicy::default(),
    }
}

fn client(port: u16) -> FlowKey {
    FlowKey {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        src_port: port,
        dst_port: 8080,
    }
}

fn seg(flow: FlowKey, seq: u32, flags: u8, payload: &[u8], ts: u64, vni: u32) -> Segment {
    Segment {
        ts,
        vni,
        flow,
        seq,
        ack: 1,
        flags: TcpFlags(flags),
        payload: Bytes::copy_from_slice(payload),
        wire_len: payload.len() as u32,
    }
}

const A: u8 = TcpFlags::ACK;

const REQ: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

/// A whole connection: handshake, one request, the server's response, FIN both ways.
fn connection(port: u16, isn: u32, vni: u32, t0: u64) -> Vec<Segment> {
    let c = client(port);
    let s = c.reversed();
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    vec![
        seg(c, isn, TcpFlags::SYN, b"", t0, vni),
        seg(s, 9000, TcpFlags::SYN | A, b"", t0 + 1, vni),
        seg(c, isn + 1, A, b"", t0 + 2, vni),
        seg(c, isn + 1, A | TcpFlags::PSH, REQ, t0 + 3, vni),
        seg(s, 9001, A | TcpFlags::PSH, resp, t0 + 4, vni),
        seg(
            c,
            isn + 1 + REQ.len() as u32,
            A | TcpFlags::FIN,
            b"",
            t0 + 5,
            vni,
        ),
        seg(
            s,
            9001 + resp.len() as u32,
            A | TcpFlags::FIN,
            b"",
            t0 + 6,
            vni,
        ),
    ]
}

fn run(table: &mut FlowTable, segs: &[Segment]) -> Vec<RebuiltRequest> {
    let mut out = Vec::new();
    for s in segs {
        table.push(s, &mut |r| out.push(r));
    }
    out
}

#[test]
fn client_side_is_rebuilt_and_server_side_ignored() {
    let mut t = FlowTable::new(cfg());
    let out = run(&mut t, &connection(40000, 100, 7, 0));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].raw[..], REQ);
    assert_eq!(out[0].vni, 7);
    assert_eq!(out[0].client, client(40000).src_addr());
    let st = t.stats().clone();
    assert_eq!(
        st.http.response_streams, 0,
        "SYN decided the server side; its bytes were never framed"
    );
    assert_eq!(st.segments_ignored, 2, "response and server FIN");
    assert_eq!(st.flows_closed, 1);
}

#[test]
fn doubly_mirrored_connection_yields_each_request_once() {
    // Both ENIs mirrored: every packet twice, under two VNIs, the second copy a little late.
    let a = connection(40001, 500, 11, 0);
    let b = connection(40001, 500, 22, 0);
    let mut both = Vec::new();
    for (x, y) in a.iter().zip(&b) {
        both.push(x.clone());
        both.push(y.clone());
    }
    // Second copies lag further, arriving after the first copy's FIN.
    let mut lagged: Vec<Segment> = a.clone();
    lagged.extend(b.iter().cloned().map(|mut s| {
        s.ts += SEC;
        s
    }));

    for segs in [both, lagged] {
        let mut t = FlowTable::new(cfg());
        let out = run(&mut t, &segs);
        assert_eq!(out.len(), 1, "inner flow key: one request");
        assert_eq!(&out[0].raw[..], REQ);
        assert_eq!(out[0].vni, 11, "the VNI of the copy seen first");
    }

    let mut c = cfg();
    c.flow_key = FlowKeyMode::Vni;
    let mut t = FlowTable::new(c);
    let mut both = a.clone();
    both.extend(b);
    let out = run(&mut t, &both);
    assert_eq!(
        out.len(),
        2,
        "vni flow key: each session's copy is its own connection"
    );
}

#[test]
fn a_new_syn_on_a_closed_four_tuple_is_a_new_connection() {
    let mut t = FlowTable::new(cfg());
    let mut segs = connection(40002, 100, 7, 0);
    segs.extend(connection(40002, 777_777, 7, 2 * SEC));
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 2);
}

#[test]
fn port_reuse_without_a_fin_is_followed_beside_the_old_stream() {
    let mut t = FlowTable::new(cfg());
    let c = client(40003);
    let partial = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345";
    let mut segs = vec![
        seg(c, 10, TcpFlags::SYN, b"", 0, 1),
        seg(c, 11, A, partial, 1, 1),
    ];
    segs.extend(connection(40003, 5000, 1, 2));
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 1, "the new connection's request, at once");
    assert_eq!(&out[0].raw[..], REQ);
    assert_eq!(t.stats().second_connections, 1);
    // The old stream (its FIN missed) is still there until it idles out or the input ends.
    assert_eq!(t.stats().http.dropped_incomplete, 0);
    t.finish(&mut |_| panic!("nothing more is whole"));
    assert_eq!(t.stats().http.dropped_incomplete, 1);
}

/// Client segments of one connection: SYN, then each payload in turn, `SEC` apart from `t0`.
fn client_segments(c: FlowKey, isn: u32, t0: u64, payloads: &[&[u8]]) -> Vec<Segment> {
    let mut v = vec![seg(c, isn, TcpFlags::SYN, b"", t0, 1)];
    let mut seq = isn + 1;
    for (i, p) in payloads.iter().enumerate() {
        v.push(seg(
            c,
            seq,
            A | TcpFlags::PSH,
            p,
            t0 + (i as u64 + 1) * SEC,
            1,
        ));
        seq += p.len() as u32;
    }
    v
}

#[test]
fn a_spoofed_syn_with_a_new_isn_does_not_end_a_live_connection() {
    let mut t = FlowTable::new(cfg());
    let c = client(40010);
    let (r1, r2, r3): (&[u8], &[u8], &[u8]) = (
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let real = client_segments(c, 1000, 0, &[r1, r2, r3]);
    let spoofed: &[u8] = b"GET /spoofed HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut segs = real[..2].to_vec();
    // Two SYNs with new ISNs, the second with data of its own, between the real requests.
    segs.push(seg(c, 900_000, TcpFlags::SYN, b"", SEC + 1, 1));
    segs.push(seg(c, 5_000_000, TcpFlags::SYN, b"", SEC + 2, 1));
    segs.push(seg(c, 5_000_001, A, spoofed, SEC + 3, 1));
    segs.extend_from_slice(&real[2..]);
    let out = run(&mut t, &segs);
    let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
    assert_eq!(raws, vec![r1, spoofed, r2, r3]);
    let st = t.stats().clone();
    assert_eq!(st.second_connections, 2);
    assert_eq!(st.stream.out_of_window_segments, 0);
    assert_eq!(st.http.dropped_gap + st.http.dropped_incomplete, 0);
}

#[test]
fn the_second_connection_takes_over_when_the_first_ends_or_idles() {
    let r1: &[u8] = b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n";
    let r2: &[u8] = b"GET /new HTTP/1.1\r\nHost: x\r\n\r\n";
    // The first ends with a FIN after the second began: the second goes on alone.
    let mut t = FlowTable::new(cfg());
    let c = client(40011);
    let mut segs = client_segments(c, 100, 0, &[r1]);
    segs.push(seg(c, 7000, TcpFlags::SYN, b"", 2 * SEC, 1));
    segs.push(seg(
        c,
        101 + r1.len() as u32,
        A | TcpFlags::FIN,
        b"",
        3 * SEC,
        1,
    ));
    segs.push(seg(c, 7001, A, r2, 4 * SEC, 1));
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[1].raw[..], r2);
    assert!(matches!(
        t.flows.get(&TableKey { scope: 0, flow: c }).map(|f| &f.state),
        Some(FlowState::Active(a)) if a.second.is_none() && a.stream.isn() == 7000
    ));

    // The first goes quiet for the idle timeout while the second is used: the second stays.
    let mut t = FlowTable::new(cfg());
    let mut segs = client_segments(c, 100, 0, &[r1]);
    segs.push(seg(c, 7000, TcpFlags::SYN, b"", 2 * SEC, 1));
    let mut seq = 7001;
    for i in 0..70u64 {
        segs.push(seg(c, seq, A, r2, (3 + i) * SEC, 1));
        seq += r2.len() as u32;
    }
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 71);
    assert_eq!(t.stats().flows_expired, 1, "the first connection");
    assert!(matches!(
        t.flows.get(&TableKey { scope: 0, flow: c }).map(|f| &f.state),
        Some(FlowState::Active(a)) if a.second.is_none() && a.stream.isn() == 7000
    ));
}

#[test]
fn pickup_uses_server_ports_then_content() {
    let c = client(40004);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    // Without server ports: the content decides (a status line gives the direction away).
    let mut t = FlowTable::new(cfg());
    let out = run(
        &mut t,
        &[
            seg(c.reversed(), 50, A, resp, 0, 1),
            seg(c, 70, A, REQ, 1, 1),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(t.stats().http.response_streams, 1);

    // With server ports, a response stream is never framed at all.
    let mut conf = cfg();
    conf.server_ports = vec![8080];
    let mut t = FlowTable::new(conf);
    let out = run(
        &mut t,
        &[
            seg(c.reversed(), 50, A, resp, 0, 1),
            seg(c, 70, A, REQ, 1, 1),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(t.stats().http.response_streams, 0);
    assert_eq!(
        t.stats().segments_ignored,
        0,
        "the creating segment is not counted twice"
    );
}

#[test]
fn pure_acks_of_unknown_flows_create_nothing() {
    let mut t = FlowTable::new(cfg());
    let c = client(40005);
    for i in 0..100 {
        t.push(&seg(c, 1 + i, A, b"", u64::from(i), 1), &mut |_| {
            panic!("no request")
        });
    }
    assert_eq!(t.flows(), 0);
    assert_eq!(t.stats().segments_without_flow, 100);
}

#[test]
fn idle_flows_expire_and_their_partial_requests_are_counted() {
    let mut t = FlowTable::new(cfg());
    let c = client(40006);
    let segs = [
        seg(c, 10, TcpFlags::SYN, b"", 0, 1),
        seg(c, 11, A, b"GET /slow HTTP/1.1\r\nHo", 1, 1),
    ];
    assert!(run(&mut t, &segs).is_empty());
    assert_eq!(t.flows(), 1);
    assert!(t.buffered() > ACTIVE_HEAP);
    t.tick(61 * SEC, &mut |_| panic!("no request"));
    assert_eq!(t.flows(), 0);
    assert_eq!(
        t.buffered(),
        t.flows.bytes(),
        "only the table's slots are left"
    );
    let st = t.stats().clone();
    assert_eq!(st.flows_expired, 1);
    assert_eq!(st.http.dropped_incomplete, 1);
}

#[test]
fn closed_flows_linger_then_go() {
    let mut t = FlowTable::new(cfg());
    run(&mut t, &connection(40007, 100, 7, 0));
    assert_eq!(t.flows(), 2, "both directions remembered as closed");
    t.tick(29 * SEC, &mut |_| {});
    assert_eq!(t.flows(), 2);
    t.tick(31 * SEC, &mut |_| {});
    assert_eq!(t.flows(), 0);
    assert_eq!(
        t.buffered(),
        t.flows.bytes(),
        "only the table's slots are left"
    );
    t.finish(&mut |_| {});
    assert_eq!(t.buffered(), 0, "finish gives the table back");
}

#[test]
fn finish_delivers_what_it_can_and_counts_the_rest() {
    let mut t = FlowTable::new(cfg());
    let c = client(40008);
    let segs = [
        seg(c, 10, TcpFlags::SYN, b"", 0, 1),
        seg(c, 11, A, REQ, 1, 1),
        seg(c, 11 + REQ.len() as u32, A, b"GET /cut HTTP/1.1\r\n", 2, 1),
    ];
    let mut out = run(&mut t, &segs);
    t.finish(&mut |r| out.push(r));
    assert_eq!(out.len(), 1);
    assert_eq!(t.flows(), 0);
    assert_eq!(t.stats().http.dropped_incomplete, 1);
}

#[test]
fn a_spoofed_segment_before_the_syn_does_not_poison_the_connection() {
    let mut t = FlowTable::new(cfg());
    let c = client(40100);
    let isn = 5000u32;
    // Seen first for this 4-tuple: junk half the sequence space away.
    let mut segs = vec![seg(
        c,
        isn.wrapping_add(0x8000_0000),
        A,
        b"\x00junk, not a request",
        0,
        1,
    )];
    segs.extend(connection(40100, isn, 1, 10));
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 1, "the real connection's request");
    assert_eq!(&out[0].raw[..], REQ);
    assert_eq!(t.stats().stream.out_of_window_segments, 0);
}

#[test]
fn a_late_syn_of_a_connection_picked_up_first_does_not_replay_its_request() {
    let mut t = FlowTable::new(cfg());
    let mut segs = connection(40101, 7000, 1, 10);
    // The request arrives before the handshake (reordering): picked up, then its own SYN,
    // followed as a second connection (see `Active::is_other_connection`), which the later
    // segments do not continue as closely as the first.
    let req = segs.remove(3);
    segs.insert(0, req);
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].raw[..], REQ);
    assert_eq!(
        t.stats().flows_created,
        2,
        "client and server side, no replacement"
    );
    assert_eq!(t.stats().second_connections, 1);
}

#[test]
fn a_spoofed_syn_kept_warm_cannot_take_over_an_idle_keep_alive_connection() {
    // The real client's connection goes quiet past the idle timeout; a spoofed SYN with a new
    // ISN, kept alive by a byte every 10 s, takes its place; the real client then sends again.
    let mut t = FlowTable::new(cfg());
    let c = client(40012);
    let r1: &[u8] = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let r2: &[u8] = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut segs = client_segments(c, 100, 0, &[r1]);
    segs.push(seg(c, 9_000_000, TcpFlags::SYN, b"", 2 * SEC, 1));
    for i in 0..8u32 {
        segs.push(seg(
            c,
            9_000_001 + i,
            A,
            b"x",
            (10 + 10 * u64::from(i)) * SEC,
            1,
        ));
    }
    segs.push(seg(
        c,
        101 + r1.len() as u32,
        A | TcpFlags::PSH,
        r2,
        95 * SEC,
        1,
    ));
    let out = run(&mut t, &segs);
    let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
    assert_eq!(
        raws,
        vec![r1, r2],
        "the real client's next request is picked up"
    );
}

#[test]
fn one_spoofed_segment_from_the_client_side_does_not_hide_its_next_connection() {
    // An attacker sends, from its own endpoint to the server (inbound, so mirrored), one
    // segment that makes the direction look like no client's: a SYN-ACK, a status line or
    // bytes of another protocol. The server answers with an RST that an ingress-only mirror
    // never shows. Then it connects from the same endpoint; its request must reach the WAF.
    let bait: [(&str, u8, &[u8]); 3] = [
        ("SYN-ACK", TcpFlags::SYN | A, b""),
        ("status line", A | TcpFlags::PSH, b"HTTP/1.1 200 OK\r\n\r\n"),
        ("TLS bytes", A | TcpFlags::PSH, b"\x16\x03\x01\x00\x05hello"),
    ];
    for (i, (what, flags, payload)) in bait.into_iter().enumerate() {
        let mut t = FlowTable::new(cfg());
        let port = 40102 + i as u16;
        let mut segs = vec![seg(client(port), 123_456, flags, payload, 0, 1)];
        segs.extend(connection(port, 7000, 1, 10));
        let out = run(&mut t, &segs);
        assert_eq!(
            out.len(),
            1,
            "{what} first: the real connection's request: {:?}",
            t.stats()
        );
        assert_eq!(&out[0].raw[..], REQ, "{what}");
    }
}

#[test]
fn an_ignored_stream_absorbs_its_own_syn_but_not_a_new_one() {
    let mut t = FlowTable::new(cfg());
    let c = client(40110);
    let tls = seg(
        c,
        501,
        A | TcpFlags::PSH,
        b"\x16\x03\x01\x00\x05hello",
        2,
        1,
    );
    let mut segs = vec![
        seg(c, 500, TcpFlags::SYN, b"", 0, 1),
        seg(c.reversed(), 9000, TcpFlags::SYN | A, b"", 1, 1),
        tls,
        // The second copy of a doubly mirrored SYN: the same connection, not a new one.
        seg(c, 500, TcpFlags::SYN, b"", 3, 1),
    ];
    let out = run(&mut t, &segs);
    assert!(out.is_empty());
    assert_eq!(t.stats().flows_created, 2, "client and server side only");
    assert_eq!(t.stats().segments_ignored, 1, "the duplicate SYN");
    // The 4-tuple reused without a FIN seen: a new ISN is a new connection.
    segs = connection(40110, 70_000, 1, 10);
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].raw[..], REQ);
}

/// A request head promising a body far longer than anything that follows: a framer that takes it
/// reads every later byte of its stream as body.
const ENDLESS: &[u8] = b"POST /bait HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n";

#[test]
fn a_bait_picked_up_before_or_after_the_isn_does_not_swallow_the_connection() {
    // The bait ends exactly where the real data starts, starts 100 bytes past it, overlaps its
    // start, or starts exactly there; a framer reading the real bytes as the bait's body would
    // replay nothing.
    let isn = 7000u32;
    for (i, at) in [
        isn + 1,
        isn + 1 - ENDLESS.len() as u32,
        isn + 1 + 100,
        isn + 1 - ENDLESS.len() as u32 / 2,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = FlowTable::new(cfg());
        let port = 40120 + i as u16;
        let mut segs = vec![seg(client(port), at, A | TcpFlags::PSH, ENDLESS, 0, 1)];
        segs.extend(connection(port, isn, 1, 10));
        let out = run(&mut t, &segs);
        let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
        assert!(
            raws.contains(&REQ),
            "bait at ISN+1{:+}: {raws:?}",
            i64::from(at) - i64::from(isn) - 1
        );
        assert_eq!(
            t.stats().second_connections,
            1,
            "the real SYN is another connection"
        );
    }
}

#[test]
fn a_tie_goes_to_the_connection_that_began_with_its_syn() {
    // The bait is picked up 100 bytes past the ISN and ends where the real stream's second
    // segment begins: that segment continues both connections exactly.
    let mut t = FlowTable::new(cfg());
    let c = client(40130);
    let isn = 9000u32;
    let r1: &[u8] = b"GET /one HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let r2: &[u8] = b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n";
    // The bait: the endless head padded with body bytes, from 100 bytes past the ISN to the
    // end of r1.
    let end = isn + 1 + r1.len() as u32;
    let bait_at = isn + 1 + 100;
    let mut bait = ENDLESS.to_vec();
    assert!(
        r1.len() - 100 >= bait.len(),
        "r1 is long enough to hide the bait in"
    );
    bait.resize(r1.len() - 100, b'z');
    let segs = vec![
        seg(c, bait_at, A | TcpFlags::PSH, &bait, 0, 1),
        seg(c, isn, TcpFlags::SYN, b"", 10, 1),
        seg(c, isn + 1, A | TcpFlags::PSH, r1, 12, 1),
        seg(c, end, A | TcpFlags::PSH, r2, 13, 1),
    ];
    let out = run(&mut t, &segs);
    let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
    assert_eq!(raws, vec![r1, r2]);
}

#[test]
fn a_pickup_that_ends_at_once_does_not_absorb_the_real_syn() {
    // One segment at exactly the first byte the SYN will announce, which ends its stream on
    // the spot: an upgrade request, or a byte with FIN. The real SYN then starts the connection.
    let up: &[u8] =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    for (i, (flags, bait)) in [(A | TcpFlags::PSH, up), (A | TcpFlags::FIN, &b"x"[..])]
        .into_iter()
        .enumerate()
    {
        let mut t = FlowTable::new(cfg());
        let port = 40140 + i as u16;
        let mut segs = vec![seg(client(port), 7001, flags, bait, 0, 1)];
        segs.extend(connection(port, 7000, 1, 10));
        let out = run(&mut t, &segs);
        let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
        assert!(raws.contains(&REQ), "bait {i}: {raws:?}");
    }
}

#[test]
fn a_further_syn_cannot_push_the_real_connection_out_of_the_second_place() {
    // A bait picked up at the first byte, the real SYN (second connection), then a spoofed SYN
    // far off: the bait gives way, not the real connection.
    let mut t = FlowTable::new(cfg());
    let c = client(40145);
    let mut segs = vec![seg(c, 7001, A | TcpFlags::PSH, ENDLESS, 0, 1)];
    let mut real = connection(40145, 7000, 1, 10);
    let rest = real.split_off(3);
    segs.extend(real);
    segs.push(seg(c, 900_000_000, TcpFlags::SYN, b"", 14, 1));
    segs.extend(rest);
    let out = run(&mut t, &segs);
    let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
    assert_eq!(raws, vec![REQ]);
}

#[test]
fn a_syn_carrying_rst_or_fin_opens_and_ends_nothing() {
    // Sent before the real SYN with the same ISN: were it to end a stream, the real SYN would
    // be absorbed as a late duplicate of the closed one.
    for (i, flags) in [TcpFlags::RST, TcpFlags::FIN].into_iter().enumerate() {
        let mut t = FlowTable::new(cfg());
        let port = 40150 + i as u16;
        let mut segs = vec![seg(client(port), 7000, TcpFlags::SYN | flags, b"", 0, 1)];
        segs.extend(connection(port, 7000, 1, 10));
        let out = run(&mut t, &segs);
        assert_eq!(out.len(), 1, "SYN with flags {flags:#x}");
        let st = t.stats().stream.clone();
        assert_eq!(st.rst_ignored + st.fin_ignored, 1);
    }
}

#[test]
fn bytes_on_a_syn_are_dropped_and_counted_unless_the_servers_take_them() {
    // (a) The client's own SYN carries a head promising a 1 GB body; a server without Fast
    // Open drops those bytes and the client sends its real request after the handshake.
    // (b) A Fast Open client: the request rides on the SYN and the stream continues after it.
    let (bait, fast_open) = (40160, 40161);
    let segs = |port: u16| {
        let mut segs = connection(port, 7000, 1, 10);
        if port == bait {
            segs[0] = seg(client(port), 7000, TcpFlags::SYN, ENDLESS, 10, 1);
        } else {
            segs[0] = seg(client(port), 7000, TcpFlags::SYN, REQ, 10, 1);
            // The request is not sent again; the FIN follows it.
            segs.remove(3);
        }
        segs
    };
    for syn_data in [false, true] {
        let mut c = cfg();
        c.stream.syn_data = syn_data;
        for port in [bait, fast_open] {
            let mut t = FlowTable::new(c.clone());
            let out = run(&mut t, &segs(port));
            let raws: Vec<&[u8]> = out.iter().map(|r| &r.raw[..]).collect();
            let dropped = t.stats().stream.syn_data_bytes;
            match (syn_data, port == bait) {
                // Dropped: the real request comes out; a Fast Open request is lost, counted.
                (false, true) => assert_eq!((raws, dropped), (vec![REQ], ENDLESS.len() as u64)),
                (false, false) => assert_eq!((raws, dropped), (vec![], REQ.len() as u64)),
                // Kept: what a Fast Open server reads, the bait's body included.
                (true, true) => assert_eq!((raws, dropped), (vec![], 0)),
                (true, false) => assert_eq!((raws, dropped), (vec![REQ], 0)),
            }
        }
    }
}
