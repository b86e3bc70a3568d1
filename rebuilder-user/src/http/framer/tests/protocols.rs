//! Streams that stop being HTTP/1.x requests: upgrades, CONNECT, the HTTP/2 preface, response
//! and TLS streams, and requests that merely start like them.

use super::*;

#[test]
fn upgrade_ends_framing() {
    let req = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
    let mut run = Run::start();
    run.data(&cat(&[req, b"\x81\x85binary"]), 1).data(GET, 2);
    assert_eq!(run.raws(), vec![&req[..]]);
    assert_eq!(run.stats.upgrades, 1);
    assert!(run.framer.is_done());
    assert_eq!(run.framer.buffered_bytes(), 0);
}

#[test]
fn connect_ends_framing() {
    let req =
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 5\r\n\r\n";
    let mut run = Run::start();
    run.data(&cat(&[req, b"\x16\x03\x01\x02\x00"]), 1)
        .data(GET, 2);
    assert_eq!(run.raws(), vec![&req[..]]);
    assert_eq!(run.out[0].body_len, 0);
    assert_eq!(run.stats.connects, 1);
    assert!(run.framer.is_done());
}

#[test]
fn h2_preface_hands_the_stream_to_http2() {
    // The preface, then a SETTINGS frame header (its 18-byte payload still to come).
    let input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00";
    every_split(input, |run| {
        assert!(run.out.is_empty());
        assert_eq!(run.stats.h2_preface, 1);
        assert_eq!(run.stats.h2.connections[0], 1, "prior knowledge");
        assert_eq!(run.stats.h2.frames[4], 1, "the SETTINGS frame");
        assert_eq!(run.stats.requests + run.stats.resync_skipped_bytes, 0);
        assert!(!run.framer.is_done());
    });
}

#[test]
fn response_stream_ends_framing() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    every_split(input, |run| {
        assert!(run.out.is_empty());
        assert_eq!(
            run.stats,
            HttpStats {
                response_streams: 1,
                ..Default::default()
            }
        );
        assert!(run.framer.is_done());
    });
}

#[test]
fn tls_stream_ends_framing() {
    let input = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03GET / HTTP/1.1\r\n\r\n";
    every_split(input, |run| {
        assert!(run.out.is_empty());
        assert_eq!(
            run.stats,
            HttpStats {
                non_http_streams: 1,
                ..Default::default()
            }
        );
        assert!(run.framer.is_done());
    });
}

#[test]
fn requests_sharing_a_prefix_with_other_protocols_still_frame() {
    let head = b"HEAD /h HTTP/1.1\r\n\r\n";
    let httpx = b"HTTPX /h HTTP/1.1\r\n\r\n";
    for input in [&head[..], httpx] {
        every_split(input, |run| {
            assert_eq!(run.raws(), vec![input]);
            assert!(!run.framer.is_done());
        });
    }
    // Only the stream's first head may be the preface; later it is just an invalid head.
    let mut run = Run::start();
    run.data(GET, 1)
        .data(b"PRI * HTTP/2.0\r\n\r\n", 2)
        .data(NEXT, 3);
    assert_eq!(run.raws(), vec![GET, NEXT]);
    assert_eq!(run.stats.dropped_invalid, 1);
}
