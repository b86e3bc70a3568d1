//! Whole streams framed into requests: fields, pipelining, chunked bodies, head and body
//! limits, malformed and hostile heads, trickled bytes, the stream's end.

use super::*;

#[test]
fn a_body_in_progress_is_charged_for_what_its_head_keeps() {
    let mut head = b"POST /many HTTP/1.1\r\nHost: h\r\n".to_vec();
    for _ in 0..200 {
        head.extend_from_slice(b"Content-Length: 10\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut run = Run::start();
    run.data(&head, 1).data(b"01234", 2);
    let charged = run.framer.buffered_bytes() + run.framer.state_bytes();
    // The head itself, plus 200 ranges of 16 bytes.
    assert!(
        charged >= head.len() + 200 * 16,
        "{charged} for a head of {}",
        head.len()
    );
    run.data(b"56789", 3);
    assert_eq!(run.out.len(), 1);
    assert_eq!(
        run.framer.buffered_bytes() + run.framer.state_bytes(),
        0,
        "nothing held between requests"
    );
}

#[test]
fn single_get_fields() {
    let run = one_event(GET);
    assert_eq!(run.raws(), vec![GET]);
    let r = &run.out[0];
    assert_eq!(r.method_bytes(), b"GET");
    assert_eq!(r.target_bytes(), b"/index.html?a=1");
    assert_eq!(r.host_bytes(), Some(&b"example.com"[..]));
    assert_eq!((r.head_len, r.body_len, r.version_minor), (GET.len(), 0, 1));
    assert_eq!((r.vni, r.client, r.server), (7, ctx().client, ctx().server));
    assert_eq!((r.first_ts, r.last_ts), (1, 1));
    assert_eq!(r.flags, RequestFlags::default());
    assert_eq!(
        run.stats,
        HttpStats {
            requests: 1,
            ..Default::default()
        }
    );
    assert_eq!(run.framer.buffered_bytes(), 0);
    assert!(!run.framer.is_done());
}

#[test]
fn pipelined_requests_in_one_event() {
    let input = cat(&[GET, POST, CHUNKED, GET10, NEXT]);
    let run = one_event(&input);
    assert_eq!(run.raws(), vec![GET, POST, CHUNKED, GET10, NEXT]);
    assert_eq!(run.out[1].body_len, 11);
    assert_eq!(run.out[1].head(), &POST[..POST.len() - 11]);
    let head_len = memchr::memmem::find(CHUNKED, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(run.out[2].head_len, head_len);
    assert_eq!(run.out[2].body_len, (CHUNKED.len() - head_len) as u64);
    assert_eq!(run.out[3].version_minor, 0);
    assert_eq!(run.out[3].host, None);
    assert_eq!(run.stats.requests, 5);
}

#[test]
fn empty_lines_between_requests_belong_to_none() {
    let input = cat(&[GET, b"\r\n\r\n\n", NEXT]);
    let run = one_event(&input);
    assert_eq!(run.raws(), vec![GET, NEXT]);
    assert_eq!(run.stats.resync_skipped_bytes, 0);
}

#[test]
fn chunked_zero_length_last_chunk_with_trailers_only() {
    let req = b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let run = one_event(&cat(&[req, NEXT]));
    assert_eq!(run.raws(), vec![&req[..], NEXT]);
}

#[test]
fn chunked_uppercase_hex_and_leading_zeros() {
    let mut req = b"PUT /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n001F\r\n".to_vec();
    req.extend_from_slice(&[b'q'; 31]);
    req.extend_from_slice(b"\r\n00000\r\n\r\n");
    let run = one_event(&cat(&[&req, NEXT]));
    assert_eq!(run.raws(), vec![&req[..], NEXT]);
}

#[test]
fn chunked_invalid_size_is_counted_and_framing_resumes() {
    let bad = b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let run = one_event(&cat(&[bad, NEXT]));
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.dropped_invalid, 1);
    // "zz\r\n" is skipped: resynchronisation starts at the offending byte.
    assert_eq!(run.stats.resync_skipped_bytes, 4);
}

#[test]
fn head_too_large_is_dropped_and_next_request_found() {
    let limits = HttpLimits {
        max_head_bytes: 100,
        ..Default::default()
    };
    let mut big = b"GET /big HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend_from_slice(&[b'a'; 200]);
    big.extend_from_slice(b"\r\nX-More: b\r\n\r\n");
    let mut run = Run::new(limits, true);
    run.data(&cat(&[&big, NEXT]), 1);
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.dropped_head_too_large, 1);
    assert_eq!(run.stats.resync_skipped_bytes, (big.len() - 100) as u64);
}

#[test]
fn head_at_the_limit_is_kept() {
    let limits = HttpLimits {
        max_head_bytes: NEXT.len(),
        ..Default::default()
    };
    let mut run = Run::new(limits, true);
    run.data(NEXT, 1).data(NEXT, 2);
    assert_eq!(run.raws(), vec![NEXT, NEXT]);
}

#[test]
fn too_many_headers() {
    let limits = HttpLimits {
        max_headers: 3,
        ..Default::default()
    };
    let four = b"GET /4 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let three = b"GET /3 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let mut run = Run::new(limits, true);
    run.data(&cat(&[four, three]), 1);
    assert_eq!(run.raws(), vec![&three[..]]);
    assert_eq!(run.stats.dropped_too_many_headers, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 0);
}

#[test]
fn content_length_body_over_limit_keeps_head_only() {
    let head = b"POST /up HTTP/1.1\r\nContent-Length: 20\r\nHost: h\r\n\r\n";
    let mut run = Run::new(small_body_limits(), true);
    run.data(head, 1);
    for (i, part) in [&b"0123456"[..], b"789abcdefghij"].iter().enumerate() {
        run.data(part, 2 + i as u64);
        assert!(
            run.framer.buffered_bytes() <= head.len(),
            "body must not be buffered"
        );
    }
    run.data(NEXT, 9);
    let want: &[u8] = b"POST /up HTTP/1.1\r\nContent-Length: 0\r\nHost: h\r\nX-Rebuilder-Original-Body-Length: 20\r\n\r\n";
    assert_eq!(run.raws(), vec![want, NEXT]);
    let r = &run.out[0];
    assert_eq!((r.head_len, r.body_len), (want.len(), 20));
    assert_eq!(r.host_bytes(), Some(&b"h"[..]));
    assert_eq!((r.first_ts, r.last_ts), (1, 3));
    assert!(r.flags.body_over_limit && !r.flags.gap);
    assert_eq!(run.stats.body_over_limit, 1);
    assert_eq!(run.stats.requests, 2);
}

#[test]
fn content_length_at_the_limit_is_kept() {
    let req = b"POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    let run = {
        let mut r = Run::new(small_body_limits(), true);
        r.data(req, 1);
        r
    };
    assert_eq!(run.raws(), vec![&req[..]]);
}

#[test]
fn chunked_body_over_limit_keeps_head_only() {
    let head = b"POST /up HTTP/1.1\nTransfer-Encoding: chunked\nHost: h\n\n";
    let body = b"5\nhello\n6;x=y\n world\n0\nT: 1\n\n";
    let mut run = Run::new(small_body_limits(), true);
    run.data(head, 1);
    for (i, b) in body.iter().enumerate() {
        run.data(std::slice::from_ref(b), 2 + i as u64);
        assert!(run.framer.buffered_bytes() <= head.len() + 10);
    }
    run.data(NEXT, 100);
    let want = format!(
        "POST /up HTTP/1.1\nHost: h\nContent-Length: 0\nX-Rebuilder-Original-Body-Length: {}\n\n",
        body.len()
    );
    assert_eq!(run.raws(), vec![want.as_bytes(), NEXT]);
    let r = &run.out[0];
    assert_eq!(r.body_len, body.len() as u64);
    assert_eq!(r.host_bytes(), Some(&b"h"[..]));
    assert_eq!(r.last_ts, 1 + body.len() as u64);
    assert!(r.flags.body_over_limit);
}

#[test]
fn malformed_but_delimited_request_is_replayed() {
    let space_in_target = b"GET /a b/../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n";
    let nul_in_header = b"POST /x HTTP/1.1\r\nX-Evil: a\0b\r\nContent-Length: 3\r\n\r\nabc";
    let run = one_event(&cat(&[space_in_target, nul_in_header, NEXT]));
    assert_eq!(
        run.raws(),
        vec![&space_in_target[..], &nul_in_header[..], NEXT]
    );
    assert!(run.out[0].flags.malformed && run.out[1].flags.malformed);
    assert!(!run.out[2].flags.malformed);
    assert_eq!(run.out[0].target_bytes(), b"/a b/../../etc/passwd");
    assert_eq!(run.out[1].body_len, 3);
    assert_eq!(run.stats.malformed_replayed, 2);
    assert_eq!(run.stats.requests, 3);
}

#[test]
fn undelimited_or_unrecognisable_heads_are_dropped() {
    let run = one_event(&cat(&[b"HELLO THERE\r\nfoo\r\n\r\n", NEXT]));
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.dropped_invalid, 1);
    let conflicting = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    let run = one_event(&cat(&[conflicting, b"\r\n", NEXT]));
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.dropped_invalid, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 6);
}

#[test]
fn hostile_requests_come_out_unchanged() {
    let mut long_url = b"GET /".to_vec();
    long_url.extend(std::iter::repeat_n(b'A', 8192));
    long_url.extend_from_slice(b"?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let body = b"user=admin'--&pass=' OR '1'='1'; --";
    let mut login = format!(
        "POST /login HTTP/1.1\r\ncOnTeNt-LeNgTh: {}\r\nHOST: shop\r\n\r\n",
        body.len()
    )
    .into_bytes();
    login.extend_from_slice(body);
    // (request, host, replayed as malformed)
    let cases: Vec<(Vec<u8>, &[u8], bool)> = vec![
        (b"GET /search?q=1'%20OR%20'1'='1'--;DROP%20TABLE%20users HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(), b"shop", false),
        (b"GET /q?id=1'+UNION+SELECT+password+FROM+users-- HTTP/1.1\r\nhOsT: shop\r\n\r\n".to_vec(), b"shop", false),
        (login, b"shop", false),
        (long_url, b"h", false),
        (b"GET /caf\xc3\xa9/\xe2\x82\xac HTTP/1.1\r\nX-Bin: \xff\x80\xfe\r\nHost: h\xe9\r\n\r\n".to_vec(), b"h\xe9", false),
        // Not UTF-8 in the target: httparse refuses it, the lenient reading keeps it.
        (b"GET /\xff\xfe<script> HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), b"h", true),
    ];
    for (req, host, malformed) in &cases {
        let run = one_event(&cat(&[req, NEXT]));
        assert_eq!(
            run.raws(),
            vec![&req[..], NEXT],
            "{:?}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(run.out[0].flags.malformed, *malformed);
        assert_eq!(run.out[0].host_bytes(), Some(*host));
    }
    let run = one_event(&cases[2].0);
    assert_eq!(run.out[0].body_len, body.len() as u64);
    let run = one_event(&cases[3].0);
    assert_eq!(run.out[0].target.len(), 8192 + 5);
}

#[test]
fn trickled_request_frames_the_same() {
    let input = cat(&[POST, CHUNKED]);
    let whole = one_event(&input);
    let mut run = Run::start();
    for (i, b) in input.iter().enumerate() {
        run.data(std::slice::from_ref(b), i as u64);
    }
    assert_eq!(run.raws(), whole.raws());
    assert_eq!(
        (run.out[0].first_ts, run.out[0].last_ts),
        (0, POST.len() as u64 - 1)
    );
    assert_eq!(
        (run.out[1].first_ts, run.out[1].last_ts),
        (POST.len() as u64, input.len() as u64 - 1)
    );
    assert_eq!(run.out[1].target, whole.out[1].target);
}

#[test]
fn large_trickled_head_is_parsed_once() {
    let mut req = b"GET /big HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        req.extend_from_slice(format!("X-H{i:03}: ").as_bytes());
        req.extend(std::iter::repeat_n(b'v', 300));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    assert!(req.len() > 60_000 && req.len() < 64 * 1024);
    let mut run = Run::start();
    for b in &req {
        run.data(std::slice::from_ref(b), 1);
        assert!(run.framer.buffered_bytes() <= 64 * 1024);
    }
    assert_eq!(run.raws(), vec![&req[..]]);
    assert_eq!(run.framer.head_parses, 1);
}

#[test]
fn expect_continue_is_counted_and_body_follows() {
    let head = b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let mut run = Run::start();
    run.data(head, 1).data(b"data", 5);
    assert_eq!(run.raws(), vec![&cat(&[head, b"data"])[..]]);
    assert_eq!(run.stats.expect_continue, 1);
    assert_eq!((run.out[0].first_ts, run.out[0].last_ts), (1, 5));
}

#[test]
fn end_drops_a_partial_request() {
    let mut run = Run::start();
    run.data(GET, 1).data(&POST[..POST.len() - 3], 2).end();
    assert_eq!(run.raws(), vec![GET]);
    assert_eq!(run.stats.dropped_incomplete, 1);
    assert!(run.framer.is_done());
    assert_eq!(run.framer.buffered_bytes(), 0);
    run.data(NEXT, 3);
    assert_eq!(run.out.len(), 1);

    let mut idle = Run::start();
    idle.data(GET, 1).end();
    assert_eq!(idle.stats.dropped_incomplete, 0);
}

#[test]
fn end_while_resyncing_counts_the_candidate() {
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(b"xx\nGET /partial HT", 1).end();
    assert!(run.out.is_empty());
    assert_eq!(run.stats.resync_skipped_bytes, 18);
    assert_eq!(run.stats.dropped_incomplete, 0);
}
