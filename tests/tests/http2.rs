//! HTTP/2 cleartext and gRPC (issue 10, item 4) through the built binary: captures of h2c
//! connections (prior knowledge, `Upgrade: h2c`, gRPC unary and client-streaming calls with
//! trailers, interleaved streams, CONTINUATION, reordering and duplicates, a pickup mid-way)
//! replayed with `rebuilder replay` to a recording sink, which must receive each stream's
//! request rendered as HTTP/1.1 exactly as the README describes (`gen::h2::H2Request::http1`
//! writes that description independently of rebuilder's renderer). Live, on kernel-mirrored
//! traffic with a real HTTP/2 server and client: `mirror_http2.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use rebuilder_tests::compare::compare;
use rebuilder_tests::gen::h2::{self as h2, kind, H2Encoder, H2Request};
use rebuilder_tests::gen::{interleave, write_capture, CaptureFormat, Conversation, LinkType};
use rebuilder_tests::h2_peer::H2Server;
use rebuilder_tests::hostile::summary_drops;
use rebuilder_tests::process::run_rebuilder;
use rebuilder_tests::process::Scratch;
use rebuilder_tests::sink::Sink;

const TIMEOUT: Duration = Duration::from_secs(120);

fn client(n: u8) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 2, 0, n)),
        41_000 + u16::from(n),
    )
}

fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 9, 1)), 8080)
}

/// What the server answers on `stream`: its SETTINGS first, then `:status: 200`.
fn response(stream: u32, first: bool) -> Vec<u8> {
    let mut v = Vec::new();
    if first {
        v.extend(h2::frame(kind::SETTINGS, 0, 0, b""));
    }
    v.extend(h2::frame(
        kind::HEADERS,
        h2::flag::END_HEADERS | h2::flag::END_STREAM,
        stream,
        &[0x88],
    ));
    v
}

/// One h2c connection with prior knowledge: each request an exchange of its own.
fn prior_knowledge(c: SocketAddr, reqs: &[H2Request], chunk: usize) -> Conversation {
    let mut enc = H2Encoder::new();
    let mut conv = Conversation::new(c, server());
    for (i, r) in reqs.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let mut bytes = if i == 0 {
            h2::client_start()
        } else {
            Vec::new()
        };
        bytes.extend(enc.request(stream, r, chunk));
        conv = conv.exchange(bytes, response(stream, i == 0));
    }
    conv
}

fn workload() -> Vec<H2Request> {
    let mut get = H2Request::get("shop.example", "/h2/item?id=1");
    get.fields.push(("cookie".into(), "session=abc".into()));
    get.fields.push(("accept-language".into(), "en".into()));
    get.fields.push(("cookie".into(), "theme=dark".into()));
    let form = H2Request::post(
        "shop.example",
        "/h2/login",
        "application/x-www-form-urlencoded",
        b"user=admin'--&password=x".repeat(2000),
    );
    let mut unary = H2Request::grpc("api.example:50051", "/shop.Cart/Add", &[b"\x08\x96\x01"]);
    unary
        .trailers
        .push(("x-client-checksum".into(), "9f2c".into()));
    let stream = H2Request::grpc(
        "api.example:50051",
        "/shop.Cart/Upload",
        &[b"one", b"two", b"three", b"four", &[7u8; 3000]],
    );
    vec![get, form, unary, stream]
}

struct Replayed {
    received: Vec<Vec<u8>>,
    lines: Vec<serde_json::Value>,
    stderr: String,
}

/// The capture of `convs`, in `scratch`.
fn capture(scratch: &Scratch, convs: &[Conversation]) -> PathBuf {
    let pcap = scratch.path("h2.pcap");
    let plans: Vec<_> = convs
        .iter()
        .map(|c| c.build().expect("generator"))
        .collect();
    write_capture(
        &pcap,
        CaptureFormat::Pcap,
        LinkType::Ethernet,
        interleave(&plans),
    )
    .expect("write capture");
    pcap
}

fn replay(name: &str, convs: &[Conversation], extra: &[&str]) -> Replayed {
    let scratch = Scratch::new(&format!("h2-{name}"));
    let pcap = capture(&scratch, convs);
    let sink = Sink::start_default().expect("sink");
    let jsonl = scratch.path("out.jsonl");
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--pcap".into(),
        pcap.display().to_string(),
        "--upstream".into(),
        sink.url(),
        "--jsonl".into(),
        jsonl.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = run_rebuilder(&args, TIMEOUT);
    run.assert_success();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let lines = std::fs::read_to_string(&jsonl)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    Replayed {
        received: sink.take().into_iter().map(|r| r.raw).collect(),
        lines,
        stderr: run.stderr,
    }
}

#[test]
fn h2c_and_grpc_requests_are_replayed_as_http1_exactly() {
    let reqs = workload();
    let upgrade = b"GET /h2/upgrade HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n".to_vec();
    let after_upgrade = H2Request::get("shop.example", "/h2/after-upgrade");
    let mut enc = H2Encoder::new();
    let mut upgraded = h2::client_start();
    upgraded.extend(enc.request(3, &after_upgrade, 1000));
    let switching =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let mut big_headers = H2Request::get("shop.example", "/h2/continuation");
    big_headers
        .fields
        .push(("x-padding".into(), "p".repeat(40_000)));
    let convs = vec![
        prior_knowledge(client(1), &reqs, 16_384),
        // The same again, cut into small DATA frames, reordered and duplicated on the way.
        prior_knowledge(client(2), &reqs, 700)
            .reorder(4)
            .duplicate(0.2)
            .seed(7),
        Conversation::new(client(3), server())
            .exchange(upgrade.clone(), switching.to_vec())
            .exchange(upgraded, response(3, true)),
        // A header block in HEADERS and CONTINUATION frames (over 16 KiB).
        prior_knowledge(client(4), &[big_headers.clone()], 16_384),
    ];
    let out = replay("exact", &convs, &[]);
    let mut want: Vec<Vec<u8>> = Vec::new();
    for _ in 0..2 {
        want.extend(reqs.iter().map(H2Request::http1));
    }
    want.push(upgrade.clone());
    want.push(after_upgrade.http1());
    want.push(big_headers.http1());
    let cmp = compare(&want, out.received.iter());
    assert!(cmp.is_match(), "{cmp}\n{}", out.stderr);
    assert!(summary_drops(&out.stderr).is_empty(), "{}", out.stderr);

    // JSON lines say which stream each request was, with the same bytes.
    let h2_lines: Vec<&serde_json::Value> =
        out.lines.iter().filter(|l| l.get("h2").is_some()).collect();
    assert_eq!(
        h2_lines.len(),
        want.len() - 1,
        "every request but the upgrade"
    );
    let unary = h2_lines
        .iter()
        .find(|l| l["target"] == "/shop.Cart/Add" && l["client"] == client(1).to_string())
        .expect("the unary call");
    assert_eq!(unary["h2"]["stream"], 5);
    assert_eq!(unary["h2"]["scheme"], "http");
    assert_eq!(unary["h2"]["trailers"], 1);
    assert_eq!(unary["host"], "api.example:50051");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unary["raw"].as_str().expect("raw"))
        .expect("base64");
    assert_eq!(raw, reqs[2].http1());
}

#[test]
fn h2c_requests_keep_their_client_ip_header_and_filters_apply() {
    let reqs = workload();
    let convs = vec![prior_knowledge(client(5), &reqs, 16_384)];
    let out = replay(
        "filters",
        &convs,
        &["--add-client-ip", "--deny-path", "/shop.Cart/Upload"],
    );
    let want: Vec<Vec<u8>> = reqs[..3]
        .iter()
        .map(|r| {
            let mut raw = r.http1();
            let at = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head end")
                + 2;
            let line = format!("X-Forwarded-For: {}\r\n", client(5).ip());
            raw.splice(at..at, line.into_bytes());
            raw
        })
        .collect();
    let cmp = compare(&want, out.received.iter());
    assert!(cmp.is_match(), "{cmp}\n{}", out.stderr);
}

#[test]
fn a_connection_picked_up_mid_way_is_counted_never_guessed() {
    let reqs = workload();
    // The capture starts after the first two requests: the HPACK table is unknown.
    let mut enc = H2Encoder::new();
    let mut first = h2::client_start();
    first.extend(enc.request(1, &reqs[0], 16_384));
    first.extend(enc.request(3, &reqs[1], 16_384));
    let skip = first.len();
    let conv = Conversation::new(client(6), server())
        .exchange(first, response(1, true))
        .exchange(enc.request(5, &reqs[2], 16_384), response(5, false))
        .exchange(enc.request(7, &reqs[3], 16_384), response(7, false))
        .start_mid_stream(skip);
    let out = replay("pickup", &[conv], &[]);
    assert!(
        out.received.is_empty(),
        "nothing guessed: {:?}",
        out.received.len()
    );
    let drops = summary_drops(&out.stderr);
    assert_eq!(
        drops.get("request:h2_undecodable").copied(),
        Some(2),
        "{}",
        out.stderr
    );
}

#[test]
fn with_upstream_protocol_h2c_streams_are_replayed_over_http2() {
    let reqs = workload();
    let h1 = b"GET /plain HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: h1\r\n\r\n".to_vec();
    let convs = [
        prior_knowledge(client(7), &reqs, 16_384),
        Conversation::new(client(8), server())
            .exchange(h1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
    ];
    let scratch = Scratch::new("h2-h2c-upstream");
    let pcap = capture(&scratch, &convs);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let waf = H2Server::recording_sink(listener).expect("HTTP/1.1 and HTTP/2 sink");
    let run = run_rebuilder(
        [
            "replay",
            "--pcap",
            &pcap.display().to_string(),
            "--upstream",
            &format!("http://{}", waf.addr()),
            "--upstream-protocol",
            "h2c",
            "--add-client-ip",
        ],
        TIMEOUT,
    );
    run.assert_success();
    let got = waf.recorded();
    assert_eq!(got.len(), reqs.len() + 1, "{got:?}\n{}", run.stderr);
    let xff = client(7).ip().to_string().into_bytes();
    for r in &reqs {
        let g = got
            .iter()
            .find(|g| g.uri.ends_with(&r.path) && g.version == hyper::Version::HTTP_2)
            .unwrap_or_else(|| panic!("{} not replayed over HTTP/2: {got:?}", r.path));
        assert_eq!(g.method, r.method);
        assert_eq!(
            g.uri,
            format!("http://{}{}", r.authority.as_deref().unwrap_or(""), r.path)
        );
        // The fields as sent (cookie crumbs joined, as the rendering joins them), then the
        // body's length where the client sent none, then the client IP asked for.
        let mut want: Vec<(String, Vec<u8>)> = Vec::new();
        for (n, v) in &r.fields {
            match want.iter_mut().find(|(w, _)| w == n && n == "cookie") {
                Some((_, cv)) => {
                    cv.extend_from_slice(b"; ");
                    cv.extend_from_slice(v.as_bytes());
                }
                None => want.push((n.clone(), v.clone().into_bytes())),
            }
        }
        if !r.body.is_empty() {
            want.push((
                "content-length".into(),
                r.body.len().to_string().into_bytes(),
            ));
        }
        want.push(("x-forwarded-for".into(), xff.clone()));
        assert_eq!(g.fields, want, "{}", r.path);
        assert_eq!(g.body, r.body, "{}", r.path);
        let trailers: Vec<(String, Vec<u8>)> = r
            .trailers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect();
        assert_eq!(g.trailers, trailers, "{}", r.path);
    }
    let plain = got
        .iter()
        .find(|g| g.version == hyper::Version::HTTP_11)
        .expect("the HTTP/1.1 request, over HTTP/1.1");
    assert_eq!(plain.uri, "/plain");
}
