//! Reading heads strictly and leniently, their framing, and the over-limit rewrite.

use super::*;

fn cfg() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.ignore_invalid_headers_in_requests(true)
        .allow_multiple_spaces_in_request_line_delimiters(true);
    c
}

fn text<'a>(head: &'a [u8], r: &Range<usize>) -> &'a [u8] {
    &head[r.clone()]
}

#[test]
fn strict_head_fields() {
    let head = b"POST /a?b=c HTTP/1.1\r\nhOsT:  example.com \r\nContent-Length: 12\r\nExpect: 100-Continue\r\n\r\n";
    let info = read_head(&cfg(), head, 10).unwrap();
    assert_eq!(text(head, &info.method), b"POST");
    assert_eq!(text(head, &info.target), b"/a?b=c");
    assert_eq!(text(head, info.host.as_ref().unwrap()), b"example.com");
    assert_eq!(info.version_minor, 1);
    assert_eq!(info.framing, Framing::Length(12));
    assert!(info.expect_continue);
    assert!(!info.malformed && info.crlf && !info.upgrade && !info.connect);
}

#[test]
fn framing_rules() {
    let f = |h: &[u8]| read_head(&cfg(), h, 10).unwrap().framing;
    assert_eq!(f(b"GET / HTTP/1.1\r\n\r\n"), Framing::None);
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
        Framing::Length(5)
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
        Framing::Length(5)
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        Framing::Invalid
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
        Framing::Invalid
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        Framing::Invalid
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nContent-Length:\r\n\r\n"),
        Framing::Invalid
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\nContent-Length: 3\r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        Framing::Invalid
    );
    assert_eq!(
        f(b"P / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Framing::Chunked
    );
}

#[test]
fn upgrade_needs_both_headers_and_connect_is_seen() {
    let up = read_head(
        &cfg(),
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        10,
    )
    .unwrap();
    assert!(up.upgrade);
    let half = read_head(
        &cfg(),
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        10,
    )
    .unwrap();
    assert!(!half.upgrade);
    let c = read_head(
        &cfg(),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        10,
    )
    .unwrap();
    assert!(c.connect);
}

#[test]
fn too_many_headers_on_stack_and_heap_paths() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(read_head(&cfg(), &head, 10), Err(HeadError::TooManyHeaders));
    assert_eq!(read_head(&cfg(), &head, 99), Err(HeadError::TooManyHeaders));
    assert!(read_head(&cfg(), &head, 100).is_ok());
    assert!(read_head(&cfg(), &head, 1000).is_ok());
}

#[test]
fn lenient_reading_of_a_refused_head() {
    // A space inside the target and a NUL in a header value: httparse refuses both.
    let head = b"GET /a b HTTP/1.1\r\nHost: h\r\nX-Bad: a\0b\r\nContent-Length : 3\r\n\r\n";
    assert!(matches!(parse_strict(&cfg(), head, 10), Strict::Invalid));
    let info = read_head(&cfg(), head, 10).unwrap();
    assert!(info.malformed);
    assert_eq!(text(head, &info.method), b"GET");
    assert_eq!(text(head, &info.target), b"/a b");
    assert_eq!(text(head, info.host.as_ref().unwrap()), b"h");
    assert_eq!(info.framing, Framing::Length(3));
    assert_eq!(read_head(&cfg(), head, 2), Err(HeadError::TooManyHeaders));
}

#[test]
fn lenient_rejects_what_is_not_a_request_line() {
    for head in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /x\r\n\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"G\0T / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            read_head(&cfg(), head, 10),
            Err(HeadError::Invalid),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn rewrite_content_length() {
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 123456\r\nHost: h.example\r\n\r\n";
    let info = read_head(&cfg(), head, 10).unwrap();
    let (new, host) = rewrite_without_body(head, &info, "X-Orig", 123456);
    assert_eq!(
        new,
        b"POST /u HTTP/1.1\r\nContent-Length: 0\r\nHost: h.example\r\nX-Orig: 123456\r\n\r\n"
    );
    assert_eq!(&new[host.unwrap()], b"h.example");
}

#[test]
fn rewrite_chunked_with_bare_lf() {
    let head = b"POST /u HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nX-A: b\n\n";
    let info = read_head(&cfg(), head, 10).unwrap();
    let (new, host) = rewrite_without_body(head, &info, "X-Orig", 99);
    assert_eq!(
        new,
        b"POST /u HTTP/1.1\nHost: h\nX-A: b\nContent-Length: 0\nX-Orig: 99\n\n"
    );
    assert_eq!(&new[host.unwrap()], b"h");
}

#[test]
fn rewrite_chunked_with_content_length_too() {
    let head =
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nHost: h\r\n\r\n";
    let info = read_head(&cfg(), head, 10).unwrap();
    let (new, host) = rewrite_without_body(head, &info, "X-Orig", 7);
    assert_eq!(
        new,
        b"POST /u HTTP/1.1\r\nContent-Length: 0\r\nHost: h\r\nX-Orig: 7\r\n\r\n"
    );
    assert_eq!(&new[host.unwrap()], b"h");
}
