//! HTTP/2 streams through the framer, as the worker feeds them: prior knowledge, upgrade,
//! pickup, every way a connection can go wrong.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use rebuilder_tests::gen::h2::{self as gen, flag, frame, kind, H2Encoder, H2Request};

use super::*;
use crate::http::{HttpStats, RequestFramer};
use crate::reassembly::{EndReason, GapReason, StreamEvent};

fn ctx() -> FlowContext {
    FlowContext {
        vni: 9,
        client: "10.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        server: "10.0.0.2:80".parse::<SocketAddr>().unwrap(),
    }
}

struct Run {
    framer: RequestFramer,
    out: Vec<RebuiltRequest>,
    stats: HttpStats,
}

impl Run {
    fn new() -> Self {
        Self::with(HttpLimits::default(), true)
    }
    fn with(limits: HttpLimits, at_start: bool) -> Self {
        Self {
            framer: RequestFramer::new(ctx(), Arc::new(limits), at_start),
            out: Vec::new(),
            stats: HttpStats::default(),
        }
    }
    fn data(&mut self, b: &[u8]) {
        self.framer.on_event(
            StreamEvent::Data {
                bytes: Bytes::copy_from_slice(b),
                ts: 5,
            },
            &mut self.out,
            &mut self.stats,
        );
    }
    fn gap(&mut self, len: u64) {
        self.framer.on_event(
            StreamEvent::Gap {
                len,
                ts: 6,
                reason: GapReason::Lost,
            },
            &mut self.out,
            &mut self.stats,
        );
    }
    fn end(&mut self) {
        self.framer.on_event(
            StreamEvent::End {
                ts: 7,
                reason: EndReason::Fin,
            },
            &mut self.out,
            &mut self.stats,
        );
    }
    fn raws(&self) -> Vec<Vec<u8>> {
        self.out.iter().map(|r| r.raw.to_vec()).collect()
    }
    fn outcome(&self, o: StreamOutcome) -> u64 {
        self.stats.h2.streams_of(o)
    }
}

fn requests() -> Vec<H2Request> {
    let mut get = H2Request::get("shop.example", "/a?x=1");
    get.fields.push(("cookie".into(), "a=1".into()));
    get.fields.push(("x-trace".into(), "t1".into()));
    get.fields.push(("cookie".into(), "b=2".into()));
    let post = H2Request::post(
        "shop.example",
        "/form",
        "application/x-www-form-urlencoded",
        b"name=alice&q=%27+OR+1%3D1--".repeat(300),
    );
    let mut grpc = H2Request::grpc("api.example:50051", "/pkg.Svc/Call", &[b"hello", b"world"]);
    grpc.trailers.push(("x-checksum".into(), "abc".into()));
    // A second GET reuses dynamic table entries of the first.
    let again = H2Request::get("shop.example", "/b");
    vec![get, post, grpc, again]
}

/// A client connection: preface, settings, the requests on streams 1, 3, 5, ... with their
/// frames interleaved (HEADERS of all, then DATA round-robin).
fn connection(reqs: &[H2Request]) -> Vec<u8> {
    let mut enc = H2Encoder::new();
    let mut v = gen::client_start();
    let mut per: Vec<Vec<u8>> = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        per.push(enc.request(1 + 2 * i as u32, r, 1000));
    }
    // Interleave frame by frame: the decoder must keep streams apart.
    let mut frames: Vec<Vec<Vec<u8>>> = per.iter().map(|b| split_frames(b)).collect();
    loop {
        let mut any = false;
        for f in frames.iter_mut() {
            if !f.is_empty() {
                let first = f.remove(0);
                // A header block and its CONTINUATIONs stay together.
                v.extend(first);
                while f.first().is_some_and(|n| n[3] == kind::CONTINUATION) {
                    v.extend(f.remove(0));
                }
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    v
}

fn split_frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 9 {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        out.push(b[..9 + len].to_vec());
        b = &b[9 + len..];
    }
    out
}

#[test]
fn prior_knowledge_requests_are_rendered_as_http1_in_stream_order() {
    let reqs = requests();
    let mut r = Run::new();
    r.data(&connection(&reqs));
    let expected: Vec<Vec<u8>> = reqs.iter().map(H2Request::http1).collect();
    // Stream 1 (a GET) ends with its HEADERS; the others end in DATA, in the order they end.
    let mut got = r.raws();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(r.outcome(StreamOutcome::Rebuilt), 4);
    assert_eq!(r.stats.h2_preface, 1);
    assert_eq!(r.stats.h2.connections[0], 1);
    assert_eq!(r.stats.h2.trailers, 1);
    assert!(!r.framer.is_done());
    let grpc = r
        .out
        .iter()
        .find(|q| q.target_bytes() == b"/pkg.Svc/Call")
        .unwrap();
    assert_eq!(grpc.host_bytes(), Some(&b"api.example:50051"[..]));
    assert_eq!(grpc.method_bytes(), b"POST");
    let origin = grpc.h2.as_ref().unwrap();
    assert_eq!(origin.stream_id, 5);
    assert_eq!(
        origin.trailers,
        vec![(Bytes::from("x-checksum"), Bytes::from("abc"))]
    );
    assert_eq!(&grpc.raw[grpc.head_len..], &reqs[2].body[..]);
    // Cookie crumbs joined where the first one was.
    let get = String::from_utf8(expected[0].clone()).unwrap();
    assert!(get.contains("cookie: a=1; b=2\r\nx-trace: t1\r\n"), "{get}");
    r.end();
    assert_eq!(r.outcome(StreamOutcome::Incomplete), 0);
}

#[test]
fn an_h2c_upgrade_hands_the_stream_to_http2_and_a_declined_one_stays_http1() {
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let mut enc = H2Encoder::new();
    let req = H2Request::get("shop.example", "/after-upgrade");
    let mut bytes = upgrade.to_vec();
    bytes.extend(gen::client_start());
    bytes.extend(enc.request(3, &req, 1000));
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.raws(), vec![upgrade.to_vec(), req.http1()]);
    assert_eq!(r.stats.h2.connections[1], 1, "started by an upgrade");
    assert_eq!(r.stats.upgrades, 1);

    // The server declined: the client goes on in HTTP/1.1.
    let next = b"GET /next HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    let mut r = Run::new();
    r.data(upgrade);
    r.data(next);
    assert_eq!(r.raws(), vec![upgrade.to_vec(), next.to_vec()]);
    assert_eq!(r.stats.h2.connections, [0; 6]);

    // h2c offered beside websocket: the server may choose websocket, whose frames are not
    // requests; framing ends as for any upgrade.
    let both =
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n";
    let mut r = Run::new();
    r.data(both);
    r.data(b"\x81\x85 masked websocket frame");
    assert_eq!(r.raws(), vec![both.to_vec()]);
    assert!(r.framer.is_done());
}

#[test]
fn malformed_requests_are_counted_never_rendered() {
    let mut enc = H2Encoder::new();
    let mut bytes = gen::client_start();
    let base = H2Request::get("shop.example", "/ok");
    let mut bad: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![
        // A CR LF in a value would inject a header into the replay.
        vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/x".to_vec()),
            (b"x-evil".to_vec(), b"a\r\nx-injected: 1".to_vec()),
        ],
        // No :path.
        vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ],
        // A connection-specific field that would change the replay's framing.
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/x".to_vec()),
            (b"transfer-encoding".to_vec(), b"chunked".to_vec()),
        ],
        // A pseudo-header after a regular field.
        vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b"accept".to_vec(), b"*/*".to_vec()),
            (b":path".to_vec(), b"/x".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ],
    ];
    // Found by the `h2` fuzz target: a control character in a value, which HTTP/1.1 parsers
    // (and HTTP/2 servers) refuse; and a field name that is not a token.
    bad.push(vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":path".to_vec(), b"/x".to_vec()),
        (b"x-ctl".to_vec(), b"a\x01b".to_vec()),
    ]);
    bad.push(vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":path".to_vec(), b"/x".to_vec()),
        (b"x(y)".to_vec(), b"v".to_vec()),
    ]);
    // Found in review: an authority that would move the path (`#`), and one that differs from
    // the client's host field.
    bad.push(vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":authority".to_vec(), b"good.example#".to_vec()),
        (b":path".to_vec(), b"/evil".to_vec()),
    ]);
    bad.push(vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":authority".to_vec(), b"a.example".to_vec()),
        (b":path".to_vec(), b"/x".to_vec()),
        (b"host".to_vec(), b"b.example".to_vec()),
    ]);
    let mut id = 1;
    for fields in &bad {
        bytes.extend(enc.headers(id, fields, true));
        id += 2;
    }
    // A content-length that is not the body's length.
    let mut lying = H2Request::post("shop.example", "/cl", "text/plain", b"12345".to_vec());
    lying.fields.push(("content-length".into(), "3".into()));
    bytes.extend(enc.request(id, &lying, 100));
    id += 2;
    bytes.extend(enc.request(id, &base, 100));
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.outcome(StreamOutcome::Malformed), 9);
    assert_eq!(r.raws(), vec![base.http1()], "the table stayed in step");
}

#[test]
fn an_hpack_error_stops_decoding_and_later_streams_are_counted_undecodable() {
    let mut enc = H2Encoder::new();
    let mut bytes = gen::client_start();
    bytes.extend(enc.request(1, &H2Request::get("a.example", "/1"), 100));
    // Index 200 is in neither table.
    bytes.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &[0x80 | 0x7f, 200 - 127],
    ));
    bytes.extend(enc.request(5, &H2Request::get("a.example", "/3"), 100));
    bytes.extend(enc.request(7, &H2Request::get("a.example", "/4"), 100));
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.stats.h2.connections[3], 1, "hpack_error");
    assert_eq!(r.outcome(StreamOutcome::Undecodable), 3);
}

#[test]
fn a_table_size_update_above_the_limit_is_an_hpack_error() {
    let mut bytes = gen::client_start();
    // Dynamic table size update to 65536, then an indexed :method GET.
    let mut block = vec![0x3f];
    let mut n = 65_536 - 31;
    while n >= 128 {
        block.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    block.push(n as u8);
    block.push(0x82);
    bytes.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    ));
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.stats.h2.connections[3], 1);
    let mut r = Run::with(
        HttpLimits {
            h2_max_table_size: 65_536,
            ..HttpLimits::default()
        },
        true,
    );
    r.data(&bytes);
    assert_eq!(r.stats.h2.connections[3], 0);
    assert_eq!(r.outcome(StreamOutcome::Malformed), 1, "only :method");
}

#[test]
fn a_hole_in_a_body_drops_that_request_and_the_rest_goes_on() {
    let mut enc = H2Encoder::new();
    let big = H2Request::post("a.example", "/big", "text/plain", vec![b'x'; 3000]);
    let small = H2Request::get("a.example", "/small");
    let mut bytes = gen::client_start();
    let start = bytes.len();
    bytes.extend(enc.request(1, &big, 3000));
    bytes.extend(enc.request(3, &small, 100));
    // Cut 100 bytes out of the middle of the DATA payload.
    let data_at = start + split_frames(&bytes[start..])[0].len() + 9;
    let mut r = Run::new();
    r.data(&bytes[..data_at + 500]);
    r.gap(100);
    r.data(&bytes[data_at + 600..]);
    assert_eq!(r.raws(), vec![small.http1()]);
    assert_eq!(r.outcome(StreamOutcome::Gap), 1);

    // A hole across frame headers: the frames are lost, and the streams open with them.
    let mut r = Run::new();
    r.data(&bytes[..data_at + 500]);
    r.gap(2520);
    r.data(&bytes[data_at + 3020..]);
    assert!(r.out.is_empty());
    assert!(r.framer.is_done());
    assert_eq!(r.stats.h2.connections[5], 1, "gap");
    assert_eq!(r.outcome(StreamOutcome::Gap), 1);
}

#[test]
fn a_pickup_follows_frames_and_counts_undecodable_streams() {
    let mut enc = H2Encoder::new();
    let mut bytes = gen::client_start();
    bytes.extend(enc.request(1, &H2Request::get("a.example", "/1"), 100));
    let mid = bytes.len();
    bytes.extend(enc.request(3, &H2Request::get("a.example", "/2"), 100));
    let mut grpc = H2Request::grpc("a.example", "/S/M", &[b"m"]);
    grpc.trailers.push(("x-t".into(), "1".into()));
    bytes.extend(enc.request(5, &grpc, 100));
    // Picked up at a segment that starts with a frame: nothing decoded, streams counted once.
    let mut r = Run::with(HttpLimits::default(), false);
    r.data(&bytes[mid..]);
    assert!(r.out.is_empty());
    assert_eq!(r.stats.h2.connections[2], 1, "pickup");
    assert_eq!(r.outcome(StreamOutcome::Undecodable), 2);
    // HTTP/1.x picked up mid-stream is not taken for frames.
    let mut r = Run::with(HttpLimits::default(), false);
    r.data(b"x=1\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.stats.h2.connections[2], 0);
}

#[test]
fn limits_refuse_streams_and_cut_large_bodies_and_heads() {
    let limits = HttpLimits {
        max_body_bytes: 1000,
        max_head_bytes: 2048,
        h2_max_streams: 2,
        ..HttpLimits::default()
    };
    let mut enc = H2Encoder::new();
    let mut bytes = gen::client_start();
    // Three streams open at once (HEADERS without END_STREAM): the third is refused.
    let post = |p: &str| H2Request::post("a.example", p, "text/plain", vec![b'b'; 1500]);
    for (i, p) in ["/1", "/2", "/3"].iter().enumerate() {
        bytes.extend(enc.headers(1 + 2 * i as u32, &post(p).header_list(), false));
    }
    for i in 0..3u32 {
        bytes.extend(gen::data(1 + 2 * i, &[b'b'; 1500], true, Some(7)));
    }
    // Fields over the limit from a small block: one field indexed, then referenced 40 times.
    let mut huge = H2Request::get("a.example", "/huge");
    for _ in 0..40 {
        huge.fields.push(("x-big".into(), "v".repeat(100)));
    }
    bytes.extend(enc.request(7, &huge, 100));
    let mut r = Run::with(limits.clone(), true);
    r.data(&bytes);
    assert_eq!(r.outcome(StreamOutcome::Refused), 1);
    assert_eq!(r.outcome(StreamOutcome::HeadTooLarge), 1);
    assert_eq!(r.out.len(), 2);
    for q in &r.out {
        assert!(q.flags.body_over_limit);
        assert_eq!(q.body_len, 1500);
        let head = String::from_utf8(q.raw.to_vec()).unwrap();
        assert!(
            head.ends_with("X-Rebuilder-Original-Body-Length: 1500\r\ncontent-length: 0\r\n\r\n"),
            "{head}"
        );
    }
    assert!(r.framer.buffered_bytes() <= 3 * limits.h2_max_table_size + 4096);

    // A header block itself over the limit cannot be decoded: decoding ends there.
    let mut r = Run::with(limits, true);
    let mut b = gen::client_start();
    let mut enc = H2Encoder::new();
    let mut big = H2Request::get("a.example", "/big-block");
    big.fields.push(("x-big".into(), "v".repeat(3000)));
    b.extend(enc.request(1, &big, 100));
    r.data(&b);
    assert_eq!(r.stats.h2.connections[4], 1, "protocol_error");
    assert_eq!(r.outcome(StreamOutcome::Undecodable), 1);
}

#[test]
fn resets_protocol_errors_and_the_end_are_counted() {
    let mut enc = H2Encoder::new();
    let mut bytes = gen::client_start();
    bytes.extend(enc.headers(1, &H2Request::get("a", "/1").header_list(), false));
    bytes.extend(frame(kind::RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    // DATA on the reset stream, and on one never opened: dropped, counted.
    bytes.extend(gen::data(1, b"late", false, None));
    bytes.extend(gen::data(9, b"nowhere", true, None));
    bytes.extend(enc.headers(3, &H2Request::get("a", "/3").header_list(), false));
    let mut r = Run::new();
    r.data(&bytes);
    r.end();
    assert_eq!(r.outcome(StreamOutcome::Reset), 1);
    assert_eq!(r.outcome(StreamOutcome::Incomplete), 1);
    assert_eq!(r.stats.h2.unattached_data_bytes, 11);

    // A CONTINUATION with no header block before it.
    let mut r = Run::new();
    let mut b = gen::client_start();
    b.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x82"));
    b.extend(enc.request(3, &H2Request::get("a", "/x"), 100));
    r.data(&b);
    assert!(r.out.is_empty());
    assert!(r.framer.is_done());
    assert_eq!(r.stats.h2.connections[4], 1, "protocol_error");

    // A wrong preface tail.
    let mut r = Run::new();
    r.data(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    assert_eq!(r.stats.h2.connections[4], 1);
}

#[test]
fn a_stream_ended_by_an_empty_data_frame_is_rebuilt() {
    // How streaming clients end a request: the body's frames, then an empty DATA frame with
    // END_STREAM (and an empty HEADERS-less trailer-free end).
    let mut enc = H2Encoder::new();
    let req = H2Request::grpc("a.example", "/S/Stream", &[b"one", b"two"]);
    let mut bytes = gen::client_start();
    bytes.extend(enc.headers(1, &req.header_list(), false));
    bytes.extend(gen::data(1, &req.body[..8], false, None));
    bytes.extend(gen::data(1, &req.body[8..], false, None));
    bytes.extend(gen::data(1, b"", true, None));
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.raws(), vec![req.http1()]);
}

#[test]
fn header_blocks_in_continuation_frames_and_padded_priority_headers() {
    let mut enc = H2Encoder::new();
    enc.max_frame = 50;
    let mut req = H2Request::get("a.example", "/cont");
    req.fields.push(("x-long".into(), "L".repeat(400)));
    let mut bytes = gen::client_start();
    bytes.extend(enc.request(1, &req, 100));
    // HEADERS with PADDED and PRIORITY around the block.
    let mut enc2 = H2Encoder::new();
    let plain = enc2.headers(1, &H2Request::get("b", "/p").header_list(), true);
    let block = &plain[9..];
    let mut payload = vec![3u8, 0, 0, 0, 0, 16];
    payload.extend_from_slice(block);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut r = Run::new();
    r.data(&bytes);
    assert_eq!(r.raws(), vec![req.http1()]);
    let mut r = Run::new();
    let mut b = gen::client_start();
    b.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM | flag::PADDED | flag::PRIORITY,
        1,
        &payload,
    ));
    r.data(&b);
    assert_eq!(r.raws(), vec![H2Request::get("b", "/p").http1()]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any split of a connection into segments rebuilds the same requests.
    #[test]
    fn any_segmentation_rebuilds_the_same_requests(cuts in proptest::collection::vec(0usize..20_000, 0..40)) {
        let reqs = requests();
        let bytes = connection(&reqs);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut r = Run::new();
        for w in cuts.windows(2) {
            r.data(&bytes[w[0]..w[1]]);
        }
        let mut got = r.raws();
        got.sort();
        let mut want: Vec<Vec<u8>> = reqs.iter().map(H2Request::http1).collect();
        want.sort();
        prop_assert_eq!(got, want);
    }
}
