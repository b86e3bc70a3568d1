//! Tests of the stream start: headers stripped and read, held across segments, forbidden,
//! malformed or cut short, and streams without one.

use super::header::{PP2_SUBTYPE_AWS_VPCE_ID, PP2_TYPE_AWS};
use super::*;
use crate::reassembly::EndReason;
use proptest::prelude::*;

/// Hand-made headers (independent of the parser): v1, and v2 with addresses and TLVs.
fn v1(src: &str, dst: &str, sp: u16, dp: u16) -> Vec<u8> {
    let fam = if src.contains(':') { "TCP6" } else { "TCP4" };
    format!("PROXY {fam} {src} {dst} {sp} {dp}\r\n").into_bytes()
}

fn v2(command: u8, addrs: Option<([u8; 4], [u8; 4], u16, u16)>, tlvs: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    let mut body = Vec::new();
    match addrs {
        Some((s, d, sp, dp)) => {
            h.push(0x11);
            body.extend_from_slice(&s);
            body.extend_from_slice(&d);
            body.extend_from_slice(&sp.to_be_bytes());
            body.extend_from_slice(&dp.to_be_bytes());
        }
        None => h.push(0x00),
    }
    body.extend_from_slice(tlvs);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

fn aws_tlvs() -> Vec<u8> {
    let mut t = vec![PP2_TYPE_AWS, 0, 23, PP2_SUBTYPE_AWS_VPCE_ID];
    t.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    t.extend_from_slice(&[0x02, 0, 16]);
    t.extend_from_slice(b"shop.example.com");
    t
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

/// Feeds `pieces` as data events, then an end; returns what the framer saw (data joined,
/// and each non-data event as a marker), the info and the counts.
fn run(mode: ProxyMode, pieces: &[&[u8]]) -> (Vec<u8>, Vec<String>, Option<ProxyInfo>, ProxyStats) {
    let mut s = StreamStart::new(mode);
    let mut stats = ProxyStats::default();
    let mut data = Vec::new();
    let mut marks = Vec::new();
    let mut max_held = 0;
    let mut fwd = |ev: StreamEvent| match ev {
        StreamEvent::Data { bytes, .. } => {
            marks.push(format!("data{}", bytes.len()));
            data.extend_from_slice(&bytes);
        }
        StreamEvent::Gap { len, .. } => marks.push(format!("gap{len}")),
        StreamEvent::Rewind { back, .. } => marks.push(format!("rewind{back}")),
        StreamEvent::End { .. } => marks.push("end".into()),
    };
    for (i, p) in pieces.iter().enumerate() {
        s.on_event(
            StreamEvent::Data {
                bytes: Bytes::copy_from_slice(p),
                ts: i as u64,
            },
            &mut stats,
            &mut fwd,
        );
        max_held = max_held.max(s.buffered_bytes());
    }
    s.on_event(
        StreamEvent::End {
            ts: 99,
            reason: EndReason::Fin,
        },
        &mut stats,
        &mut fwd,
    );
    assert_eq!(s.buffered_bytes(), 0, "nothing held once decided");
    assert!(max_held <= V2_FIXED + 65535);
    (data, marks, s.info().map(|i| (**i).clone()), stats)
}

#[test]
fn a_v1_header_is_stripped_and_its_source_kept() {
    let h = v1("203.0.113.7", "10.0.0.5", 51000, 80);
    let (data, _, info, stats) = run(ProxyMode::Auto, &[&[&h[..], GET].concat()]);
    assert_eq!(data, GET);
    let info = info.unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(info.source, Some("203.0.113.7:51000".parse().unwrap()));
    assert_eq!(info.destination, Some("10.0.0.5:80".parse().unwrap()));
    assert_eq!(info.header_len, h.len());
    assert_eq!((stats.v1, stats.malformed), (1, 0));
    let h6 = v1("2001:db8::1", "2001:db8::2", 1, 443);
    let (data, _, info, _) = run(ProxyMode::Require, &[&h6, GET]);
    assert_eq!(data, GET);
    assert_eq!(
        info.unwrap().source,
        Some("[2001:db8::1]:1".parse().unwrap())
    );
}

#[test]
fn a_v2_header_with_aws_tlvs_is_stripped_and_read() {
    let h = v2(
        1,
        Some(([198, 51, 100, 9], [10, 0, 0, 5], 40000, 80)),
        &aws_tlvs(),
    );
    let (data, marks, info, stats) = run(ProxyMode::Auto, &[&[&h[..], GET].concat()]);
    assert_eq!(data, GET);
    assert_eq!(marks, vec![format!("data{}", GET.len()), "end".into()]);
    let info = info.unwrap();
    assert_eq!((info.version, info.local), (2, false));
    assert_eq!(info.source, Some("198.51.100.9:40000".parse().unwrap()));
    assert_eq!(info.aws_vpce_id.as_deref(), Some("vpce-08d2bf15fac5001c9"));
    assert_eq!(info.authority.as_deref(), Some("shop.example.com"));
    assert_eq!(info.tlv_types, vec![0xEA, 0x02]);
    assert_eq!((stats.v2, stats.bad_tlv), (1, 0));
}

#[test]
fn a_v2_local_header_has_no_address() {
    let h = v2(0, None, &[]);
    let (data, _, info, stats) = run(ProxyMode::Auto, &[&h, GET]);
    assert_eq!(data, GET);
    let info = info.unwrap();
    assert!(info.local && info.source.is_none());
    assert_eq!(stats.v2_local, 1);
}

#[test]
fn without_a_header_every_byte_passes_in_order() {
    let (data, marks, info, stats) = run(ProxyMode::Auto, &[GET]);
    assert_eq!((data.as_slice(), info), (GET, None));
    assert_eq!(marks, vec![format!("data{}", GET.len()), "end".into()]);
    assert_eq!(stats, ProxyStats::default());
    // `P`, `PR` …: undecided until a byte differs from both signatures.
    let req = b"PUT /x HTTP/1.1\r\n\r\n";
    let (data, _, _, stats) = run(ProxyMode::Require, &[&req[..1], &req[1..3], &req[3..]]);
    assert_eq!(data, req);
    assert_eq!(stats.missing, 1);
    // A lone CR (a v2 prefix) then an ordinary request line.
    let (data, _, _, _) = run(ProxyMode::Auto, &[b"\r", b"\nGET / HTTP/1.1\r\n\r\n"]);
    assert_eq!(data, b"\r\nGET / HTTP/1.1\r\n\r\n");
}

#[test]
fn a_forbidden_header_is_the_clients_own_bytes() {
    let h = v1("1.2.3.4", "5.6.7.8", 1, 2);
    let all = [&h[..], GET].concat();
    let (data, _, info, stats) = run(ProxyMode::Forbid, &[&all]);
    assert_eq!((data, info), (all, None));
    assert_eq!(stats.forbidden, 1);
}

#[test]
fn a_malformed_header_is_counted_and_the_stream_picked_up() {
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..],
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2 3 4 5 6 7 8 9\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04abcd",
    ] {
        let all = [bad, GET].concat();
        let (data, marks, info, stats) = run(ProxyMode::Auto, &[&all]);
        assert_eq!(data, all, "the framer gets the bytes to resynchronise on");
        assert_eq!(marks[0], "gap0", "{:?}", String::from_utf8_lossy(bad));
        assert_eq!((info, stats.malformed), (None, 1));
    }
    // A v1 line longer than 107 bytes is no header, even with its CRLF in the same segment.
    let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 120], b"\r\n"].concat();
    let all = [&long[..], GET].concat();
    let (data, _, info, stats) = run(ProxyMode::Auto, &[&all]);
    assert_eq!((data, info, stats.malformed), (all.clone(), None, 1));
    let ok = [&b"PROXY UNKNOWN "[..], &[b'x'; 107 - 16], b"\r\n"].concat();
    assert_eq!(ok.len(), 107);
    let (data, _, info, _) = run(ProxyMode::Auto, &[&[&ok[..], GET].concat()]);
    assert_eq!(
        (data.as_slice(), info.map(|i| i.header_len)),
        (GET, Some(107))
    );
    // A v1 line that never ends: given up at 107 bytes, not held forever.
    let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
    let (_, _, _, stats) = run(ProxyMode::Auto, &[&long]);
    assert_eq!(stats.malformed, 1);
}

#[test]
fn a_header_cut_by_the_end_or_a_hole_is_truncated() {
    let h = v2(1, Some(([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), &aws_tlvs());
    let (data, marks, info, stats) = run(ProxyMode::Auto, &[&h[..20]]);
    assert!(data.is_empty() && info.is_none());
    assert_eq!((marks, stats.truncated), (vec!["end".to_owned()], 1));

    let mut s = StreamStart::new(ProxyMode::Auto);
    let mut stats = ProxyStats::default();
    let mut seen = Vec::new();
    let mut fwd = |ev| seen.push(ev);
    s.on_event(
        StreamEvent::Data {
            bytes: Bytes::copy_from_slice(&h[..30]),
            ts: 1,
        },
        &mut stats,
        &mut fwd,
    );
    assert!(s.buffered_bytes() >= h.len(), "charged for what it holds");
    s.on_event(
        StreamEvent::Gap {
            len: 100,
            ts: 2,
            reason: GapReason::Lost,
        },
        &mut stats,
        &mut fwd,
    );
    assert_eq!(stats.truncated, 1);
    assert!(matches!(
        seen.as_slice(),
        [StreamEvent::Gap { len: 100, .. }]
    ));
    assert!(s.is_done());
}

proptest! {
    /// Any split of header + requests gives the framer exactly the requests' bytes, and
    /// the same header.
    #[test]
    fn any_split_strips_the_same_header(
        kind in 0usize..4,
        cuts in proptest::collection::vec(0usize..200, 0..6),
    ) {
        let header = match kind {
            0 => v1("203.0.113.7", "10.0.0.5", 51000, 80),
            1 => v1("2001:db8::7", "2001:db8::5", 51000, 8080),
            2 => v2(1, Some(([198, 51, 100, 9], [10, 0, 0, 5], 40000, 80)), &aws_tlvs()),
            _ => v2(0, None, &aws_tlvs()),
        };
        let body = [GET, b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"].concat();
        let all = [&header[..], &body].concat();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (all.len() + 1)).collect();
        cuts.push(0);
        cuts.push(all.len());
        cuts.sort_unstable();
        cuts.dedup();
        let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &all[w[0]..w[1]]).collect();
        let (data, marks, info, stats) = run(ProxyMode::Auto, &pieces);
        prop_assert_eq!(data, body);
        prop_assert!(marks.iter().all(|m| m.starts_with("data") || m == "end"));
        let info = info.expect("a header");
        prop_assert_eq!(info.header_len, header.len());
        prop_assert_eq!(stats.malformed + stats.truncated, 0);
    }
}
