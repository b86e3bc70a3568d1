//! Tests of PROXY protocol headers at a stream's start, through the flow table.

use super::*;

/// A v2 header from an NLB: PROXY command, IPv4, the AWS VPC endpoint TLV.
fn nlb_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut tlv = vec![0xEA, 0, 5, 0x01];
    tlv.extend_from_slice(b"vpce");
    let mut h = crate::proxy::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&((12 + tlv.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[10, 0, 0, 2]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h.extend_from_slice(&tlv);
    h
}

#[test]
fn a_proxy_header_at_stream_start_is_stripped_and_stamped_on_every_request() {
    let mut t = FlowTable::new(cfg());
    let c = client(41000);
    let h = nlb_header([203, 0, 113, 9], 55000);
    // The header in a segment of its own (as an NLB sends it), then two pipelined requests
    // whose first segment is cut in the middle of the first request.
    let both = [REQ, REQ].concat();
    let mut segs = vec![
        seg(c, 100, TcpFlags::SYN, b"", 0, 1),
        seg(c, 101, A | TcpFlags::PSH, &h[..10], 1, 1),
    ];
    let out = run(&mut t, &segs);
    assert!(out.is_empty());
    assert!(
        t.buffered() >= 10 + std::mem::size_of::<crate::proxy::StreamStart>(),
        "a header held while incomplete is charged: {}",
        t.buffered()
    );
    let at = 101 + 10;
    segs = vec![
        seg(c, at, A | TcpFlags::PSH, &h[10..], 2, 1),
        seg(
            c,
            at + (h.len() - 10) as u32,
            A | TcpFlags::PSH,
            &both[..7],
            3,
            1,
        ),
        seg(
            c,
            at + (h.len() - 10 + 7) as u32,
            A | TcpFlags::PSH,
            &both[7..],
            4,
            1,
        ),
    ];
    let out = run(&mut t, &segs);
    assert_eq!(out.len(), 2);
    for r in &out {
        assert_eq!(&r.raw[..], REQ, "the WAF gets the bytes after the header");
        assert_eq!(r.client, c.src_addr());
        let p = r.proxy.as_ref().expect("stamped");
        assert_eq!(p.source, Some("203.0.113.9:55000".parse().unwrap()));
        assert_eq!(p.aws_vpce_id.as_deref(), Some("vpce"));
        assert_eq!(r.client_ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
    }
    assert_eq!(out[0].first_ts, 3, "the request starts after the header");
    assert_eq!(t.stats().proxy.v2, 1);
}

#[test]
fn a_stream_picked_up_mid_stream_never_looks_for_a_header() {
    let mut t = FlowTable::new(cfg());
    let c = client(41001);
    let h = nlb_header([203, 0, 113, 9], 55000);
    // No SYN: the first bytes seen are not the connection's first bytes.
    let out = run(
        &mut t,
        &[seg(
            c,
            5000,
            A | TcpFlags::PSH,
            &[&h[..], REQ, REQ].concat(),
            1,
            1,
        )],
    );
    // The framer resynchronises at a request line; no header is believed.
    assert!(!out.is_empty());
    assert!(out.iter().all(|r| r.proxy.is_none() && &r.raw[..] == REQ));
    assert_eq!(t.stats().proxy, crate::proxy::ProxyStats::default());
}

#[test]
fn a_malformed_header_is_counted_and_the_stream_resynchronises() {
    let mut t = FlowTable::new(cfg());
    let c = client(41002);
    let bad = b"PROXY TCP4 999.0.0.1 10.0.0.2 1 2\r\n";
    let out = run(
        &mut t,
        &[
            seg(c, 100, TcpFlags::SYN, b"", 0, 1),
            seg(c, 101, A | TcpFlags::PSH, &[&bad[..], REQ].concat(), 1, 1),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].raw[..], REQ);
    assert!(out[0].proxy.is_none());
    let st = t.stats().clone();
    assert_eq!(st.proxy.malformed, 1);
    assert_eq!(st.http.resync_skipped_bytes, bad.len() as u64);
}
