//! The committed seeds decode to the inputs `make-seeds` meant, pass every check, and produce
//! what a person reading them expects; so the fuzzers start from cases that reach deep.

use std::fs;
use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use rebuilder_fuzz::{decode, h2, http, known, proxy, reassembly, record};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target)
        .join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn all(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("seed directory")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("seed"))
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

fn reassembly_input(bytes: &[u8]) -> reassembly::Input {
    let input = reassembly::Input::arbitrary_take_rest(Unstructured::new(bytes)).expect("input");
    assert_eq!(input.encode(), bytes, "encode must be what arbitrary reads");
    input
}

fn http_input(bytes: &[u8]) -> http::Input {
    let input = http::Input::arbitrary_take_rest(Unstructured::new(bytes)).expect("input");
    assert_eq!(input.encode(), bytes, "encode must be what arbitrary reads");
    input
}

#[test]
fn every_seed_passes_its_checks() {
    for (_, s) in all("decode") {
        decode::check(&s);
    }
    for (_, s) in all("record") {
        record::check(&s);
    }
    for (_, s) in all("reassembly") {
        reassembly::check(&reassembly_input(&s));
    }
    for (_, s) in all("http") {
        http::check(&http_input(&s));
    }
    for (_, s) in all("proxy") {
        proxy::check(&proxy_input(&s));
    }
    for (_, s) in all("h2") {
        h2::check(&h2_input(&s));
    }
}

fn h2_input(bytes: &[u8]) -> h2::Input {
    let input = h2::Input::arbitrary_take_rest(Unstructured::new(bytes)).expect("input");
    assert_eq!(input.encode(), bytes, "encode must be what arbitrary reads");
    input
}

#[test]
fn h2_seeds_rebuild_what_they_carry() {
    use rebuilder::h2::StreamOutcome as O;
    let run = |name: &str| h2::check(&h2_input(&seed("h2", name)));
    let targets = |o: &h2::Outcome| -> Vec<String> {
        o.records
            .iter()
            .map(|r| String::from_utf8_lossy(r.target_bytes()).into_owned())
            .collect()
    };
    let o = run("prior-knowledge");
    assert_eq!(targets(&o), ["/a", "/a", "/pkg.Svc/Call"]);
    let grpc = &o.records[2];
    assert_eq!(&grpc.raw[grpc.head_len..], b"\x00\x00\x00\x00\x03abcxy");
    assert_eq!(grpc.h2.as_ref().map(|h| h.trailers.len()), Some(1));
    assert_eq!(targets(&run("split-frames")), ["/a", "/a", "/pkg.Svc/Call"]);
    let o = run("upgrade");
    assert_eq!(targets(&o), ["/", "/up"]);
    assert_eq!(targets(&run("continuation")), ["/long"]);
    let o = run("reset-and-end");
    assert_eq!(o.stats.h2.streams_of(O::Reset), 1);
    assert_eq!(targets(&o), ["/pkg.Svc/Call"]);
    let o = run("gap-in-data");
    assert_eq!(
        (o.stats.h2.streams_of(O::Gap), targets(&o)),
        (1, vec!["/b".to_string()])
    );
    let o = run("gap-over-frames");
    assert_eq!(
        (targets(&o), o.stats.h2.connections[5]),
        (vec!["/a".to_string()], 1)
    );
    let o = run("pickup");
    assert!(o.records.is_empty());
    assert_eq!(o.stats.h2.streams_of(O::Undecodable), 2);
    let o = run("hpack-error");
    assert!(o.records.is_empty());
    assert_eq!(o.stats.h2.connections[3], 1);
}

fn proxy_input(bytes: &[u8]) -> proxy::Input {
    let input = proxy::Input::arbitrary_take_rest(Unstructured::new(bytes)).expect("input");
    assert_eq!(input.encode(), bytes, "encode must be what arbitrary reads");
    input
}

#[test]
fn proxy_seeds_strip_what_they_carry() {
    let run = |name: &str| proxy::check(&proxy_input(&seed("proxy", name)));
    let o = run("v1-whole");
    assert_eq!((o.stats.v1, o.header_len, o.requests), (1, Some(42), 1));
    assert_eq!(o.source, Some("203.0.113.7:51000".parse().unwrap()));
    let o = run("v2-nlb-split");
    assert_eq!((o.stats.v2, o.requests), (1, 1));
    assert_eq!(o.source, Some("[2001:db8::7]:51000".parse().unwrap()));
    let o = run("v2-local");
    assert_eq!((o.stats.v2_local, o.source, o.requests), (1, None, 1));
    let o = run("v1-malformed");
    assert_eq!((o.stats.malformed, o.requests), (1, 1));
    let o = run("v2-cut-by-gap");
    assert_eq!((o.stats.truncated, o.requests), (1, 1));
    let o = run("forbid");
    assert_eq!((o.stats.forbidden, o.header_len), (1, None));
    let o = run("require-missing");
    assert_eq!((o.stats.missing, o.requests), (1, 1));
    let o = run("v1-unknown-over-107");
    assert_eq!((o.stats.malformed, o.header_len, o.requests), (1, None, 1));
    let o = run("v2-bad-tlv");
    assert_eq!((o.stats.v2, o.stats.bad_tlv, o.requests), (1, 1, 1));
}

#[test]
fn in_order_connection_rebuilds_every_known_request() {
    let s = reassembly::check(&reassembly_input(&seed("reassembly", "in-order")));
    assert_eq!(
        (s.requests, s.model_data, s.model_gaps),
        (24, known::stream().len() as u64, 0)
    );
    assert_eq!(s.table.stream.delivered_bytes, known::stream().len() as u64);
    assert_eq!((s.table.flows_created, s.table.flows_closed), (1, 1));
}

#[test]
fn tiny_limits_evict_and_expire() {
    let s = reassembly::check(&reassembly_input(&seed(
        "reassembly",
        "tiny-limits-many-flows",
    )));
    assert!(s.table.flows_evicted > 0, "{:?}", s.table);
    assert!(s.table.flows_expired > 0, "{:?}", s.table);
    // Evicted flows come back at their next segment, picked up mid-stream.
    assert!(s.table.flows_created > 5, "{:?}", s.table);
}

#[test]
fn lost_and_truncated_segments_become_gaps() {
    let s = reassembly::check(&reassembly_input(&seed("reassembly", "truncated-lost")));
    // 300 bytes lost at 600, 300 - 300 * 40 / 128 = 207 truncated at 1200.
    assert_eq!(s.model_gaps, 300 + 207);
    assert_eq!(s.model_data + s.model_gaps, known::stream().len() as u64);
}

#[test]
fn http_seeds_frame_what_they_carry() {
    assert_eq!(http::check(&http_input(&seed("http", "get"))), 1);
    // POST, PUT, GET; the POST cut by the gap (flagged); the GET after it.
    assert_eq!(http::check(&http_input(&seed("http", "pipelined-gap"))), 5);
    // Picked up inside a body: the POST (over the 5-byte limit) and the PUT.
    assert_eq!(
        http::check(&http_input(&seed("http", "pickup-over-limit"))),
        2
    );
    // 200 chunked (after the 100), 204, 1.0 with a length, 304.
    assert_eq!(http::check(&http_input(&seed("http", "responses"))), 4);
}

#[test]
fn decode_seeds_are_segments() {
    use bytes::Bytes;
    use rebuilder::capture::{Decoder, LinkType};
    let s = seed("decode", "eth-ipv4-vxlan-ipv4-get");
    let d = Decoder::new(&decode::config(s[0]));
    let seg = d
        .decode_frame(LinkType::Ethernet, &Bytes::copy_from_slice(&s[2..]), 0)
        .expect("segment");
    assert_eq!((seg.vni, seg.seq), (7, 0xdead_beef));
    assert!(seg.payload.starts_with(b"GET /index.html"));
    let s = seed("decode", "truncated");
    let seg = d
        .decode_frame(LinkType::Ethernet, &Bytes::copy_from_slice(&s[2..]), 0)
        .expect("segment");
    assert!(seg.is_truncated());
    assert_eq!(seg.wire_len as usize, seg.payload.len() + 20);
}
