//! The requests, ids and the mix, checked without a lab.

use super::mix::MIX;
use super::*;
use crate::gen::http::hostile;

#[test]
fn proxy_headers_and_health_checks_are_what_load_balancers_send() {
    let origin: SocketAddr = "10.77.1.2:80".parse().unwrap();
    assert_eq!(ProxyKind::Off.header(0, origin), None);
    let (h, ip) = ProxyKind::V1.header(4, origin).unwrap();
    assert_eq!(h, b"PROXY TCP4 198.51.100.5 10.77.1.2 20004 80\r\n");
    assert_eq!(ip, "198.51.100.5".parse::<IpAddr>().unwrap());
    let kinds: Vec<(u8, bool)> = (0..3)
        .map(|c| {
            let (h, ip) = ProxyKind::Mix.header(c, origin).unwrap();
            (if h.starts_with(b"PROXY") { 1 } else { 2 }, ip.is_ipv6())
        })
        .collect();
    assert_eq!(kinds, vec![(1, false), (2, false), (2, true)]);
    let (h, _) = ProxyKind::V2.header(0, origin).unwrap();
    assert!(h
        .windows(LAB_VPCE_ID.len())
        .any(|w| w == LAB_VPCE_ID.as_bytes()));
    let checks: Vec<_> = (0..3)
        .map(|n| health_check(n, origin, ProxyKind::Mix))
        .collect();
    assert!(String::from_utf8_lossy(&checks[0].0).contains("User-Agent: ELB-HealthChecker/2.0"));
    assert_eq!((checks[1].1, checks[1].2), (false, true));
    assert_eq!((checks[2].1, checks[2].2), (true, false));
    assert_eq!(
        id_of(&checks[2].0),
        Some(RequestId {
            conn: HEALTH_CHECK_CONN,
            seq: 2
        })
    );
    assert!(!health_check(2, origin, ProxyKind::Off).1);
}

#[test]
fn ids_go_in_as_the_second_line_and_come_back_out() {
    let id = RequestId { conn: 7, seq: 42 };
    let req = hostile::odd_header_case(HOST);
    let tagged = with_id(&req, id);
    let line_end = req.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    assert_eq!(&tagged[..line_end], &req[..line_end]);
    assert_eq!(
        &tagged[line_end..line_end + 19],
        b"X-Lab-Id: c7-42\r\nhO".as_slice()
    );
    assert_eq!(&tagged[line_end + 17..], &req[line_end..]);
    assert_eq!(id_of(&tagged), Some(id));
    assert_eq!(id_of(&req), None);
    assert_eq!(id_of(b"GET / HTTP/1.1\r\nX-Lab-Id: c1-x\r\n\r\n"), None);
    assert_eq!(id_of(b""), None);
}

#[test]
fn every_action_comes_up_and_steps_are_deterministic() {
    let mut rng = SplitMix64::new(5);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        seen.insert(format!("{:?}", Action::pick(&mut rng)));
    }
    assert_eq!(seen.len(), MIX.len(), "{seen:?}");

    let build = |seed| {
        let mut rng = SplitMix64::new(seed);
        let mut seq = 0;
        (0..50)
            .flat_map(|_| {
                let a = Action::pick(&mut rng);
                step(a, &mut rng, 1 << 20, || {
                    seq += 1;
                    RequestId { conn: 0, seq }
                })
                .batch
            })
            .collect::<Vec<_>>()
    };
    let a = build(9);
    assert_eq!(a, build(9));
    assert_ne!(a, build(10));
    // Every request is tagged, with distinct ids, and parses as HTTP/1.1 whole.
    let mut ids = std::collections::BTreeSet::new();
    for r in &a {
        assert!(ids.insert(id_of(r).expect("tagged")));
        let n = crate::sink::framer::frame_request(r, 1 << 20, 1 << 30)
            .unwrap()
            .expect("whole");
        assert_eq!(n, r.len());
    }
}

#[test]
fn big_posts_stay_within_their_bounds() {
    let mut rng = SplitMix64::new(3);
    for max in [1usize, 70_000, 4 << 20] {
        for _ in 0..20 {
            let s = step(Action::BigPost, &mut rng, max, || RequestId {
                conn: 0,
                seq: 0,
            });
            let head = crate::sink::framer::parse_head(&s.batch[0], 1 << 20)
                .unwrap()
                .unwrap();
            let len = head.content_length.unwrap();
            assert!(len <= (max as u64).max(1) && len >= (64u64 << 10).min(max as u64));
        }
    }
}
