//! Issue 10 items 1–3 on real kernel-mirrored traffic (the topology of `mirror_udp.rs`): the
//! client sends PROXY v1/v2 headers as a load balancer would (the origin skips them), health
//! checks as an ELB does, and requests the operator's rules filter; the rebuilders must replay
//! exactly the requests that should arrive, without the header and with the client IP it
//! carried, and count the rest by reason. Through `run --udp` here and `run --iface` (XDP) for
//! the sampling test; `replay_settings.rs` runs the same offline, and the lab (`lab.rs`) live at length.
//!
//! Needs root and iproute2 (XDP on veth for the XDP test): without them these tests fail,
//! naming what is missing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rebuilder_tests::compare::compare;
use rebuilder_tests::gen::http::{self, RequestBuilder};
use rebuilder_tests::gen::proxy;
use rebuilder_tests::http_client::ConnectionPlan;
use rebuilder_tests::lab::metrics::{parse, sum, Sample};
use rebuilder_tests::mirror::{rebuilder_args, show, REPLAY, SETUP, TRAFFIC};
use rebuilder_tests::netns::{leftovers, Capture, LabConfig, MirrorLab, XdpMode, HEALTH_CHECKER};
use rebuilder_tests::process::Finished;
use rebuilder_tests::sink::ReceivedRequest;

const HOST: &str = "shop.example.test";

/// What one run did: what the sink got, node 0's metrics at the end, the processes.
struct Outcome {
    received: Vec<ReceivedRequest>,
    metrics: Vec<Sample>,
    finished: Vec<Finished>,
    origin_proxy_headers: usize,
}

/// Builds a one-node lab, starts its rebuilder with `extra`, drives `plans`, waits until
/// `expect` requests are at the sink (and a quiet spell for any beyond), reads the metrics,
/// stops everything and checks the teardown.
fn mirror(capture: Capture, plans: &[ConnectionPlan], extra: &[&str], expect: usize) -> Outcome {
    let mut lab = MirrorLab::build(LabConfig {
        capture,
        ..LabConfig::default()
    })
    .unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let created = lab.created();
    let mut args = rebuilder_args(capture);
    args.extend_from_slice(extra);
    lab.start_rebuilders(&args)
        .unwrap_or_else(|e| panic!("cannot start rebuilder: {e}"));
    lab.wait_ready(SETUP)
        .unwrap_or_else(|e| panic!("rebuilder not ready: {e}"));
    let outcomes = lab
        .drive(plans, TRAFFIC)
        .unwrap_or_else(|e| panic!("client: {e}"));
    let sent: usize = outcomes.iter().map(|o| o.sent.len()).sum();
    assert_eq!(lab.origin().served(), sent, "{:?}", lab.origin().errors());
    assert!(
        lab.origin().errors().is_empty(),
        "{:?}",
        lab.origin().errors()
    );
    let waited = lab.sink().wait_for(expect, REPLAY);
    lab.sink()
        .wait_quiet(Duration::from_millis(500), Duration::from_secs(3));
    // Workers publish their counters a few times a second.
    std::thread::sleep(Duration::from_millis(600));
    let metrics = parse(&lab.metrics(0).unwrap_or_else(|e| panic!("/metrics: {e}")));
    let received = lab.sink().requests();
    let origin_proxy_headers = lab.origin().proxy_headers();
    let finished = lab.stop_rebuilders(Duration::from_secs(10));
    if let Err(e) = waited {
        panic!("{e}: {} at the sink\n{}", received.len(), show(&finished));
    }
    for f in &finished {
        f.assert_success();
    }
    drop(lab);
    let left = leftovers(&created).expect("listing namespaces and links");
    assert!(left.is_empty(), "left behind: {left:?}");
    Outcome {
        received,
        metrics,
        finished,
        origin_proxy_headers,
    }
}

fn get(path: &str) -> Vec<u8> {
    http::get_with_id(HOST, path, path)
}

fn health_check(ua: &str) -> Vec<u8> {
    RequestBuilder::new("GET", "/health")
        .header("Host", "10.77.1.2")
        .header("User-Agent", ua)
        .header("Connection", "close")
        .build()
}

fn filtered(m: &[Sample], reason: &str) -> f64 {
    sum(
        m,
        "rebuilder_requests_filtered_total",
        &[("reason", reason)],
    )
}

fn proxy_headers(m: &[Sample], outcome: &str) -> f64 {
    sum(m, "rebuilder_proxy_headers_total", &[("outcome", outcome)])
}

#[test]
fn proxy_headers_are_stripped_health_checks_and_rules_filtered_through_udp() {
    let origin: SocketAddr = "10.77.1.2:80".parse().expect("origin");
    let client: IpAddr = "10.77.1.1".parse().expect("client");
    let src4: SocketAddr = "198.51.100.9:50001".parse().expect("address");
    let src6: SocketAddr = "[2001:db8:77::9]:50002".parse().expect("address");
    let dst6: SocketAddr = "[::ffff:10.77.1.2]:80".parse().expect("address");
    let tlvs = proxy::aws_tlvs("vpce-0e2e0000000000001", HOST);
    let v1: Vec<Vec<u8>> = (0..4).map(|i| get(&format!("/v1/{i}"))).collect();
    let v2: Vec<Vec<u8>> = (0..6).map(|i| get(&format!("/v2/{i}"))).collect();
    let v2six: Vec<Vec<u8>> = (0..3).map(|i| get(&format!("/v6/{i}"))).collect();
    let bad: Vec<Vec<u8>> = (0..2).map(|i| get(&format!("/bad/{i}"))).collect();
    let rules = vec![
        get("/static/logo.png"),
        RequestBuilder::new("OPTIONS", "/api")
            .header("Host", HOST)
            .build(),
        http::get("ads.example.test", "/banner"),
        get("/kept"),
    ];
    let plans = vec![
        ConnectionPlan::new(v1.clone()).with_preamble(proxy::v1(src4, origin)),
        ConnectionPlan::new(v2.clone())
            .pipelined(3)
            .with_preamble(proxy::v2(src4, origin, &tlvs)),
        ConnectionPlan::new(v2six.clone()).with_preamble(proxy::v2(src6, dst6, &tlvs)),
        // Counted as malformed; the stream resynchronises; its requests go on without a
        // client IP of their own (the connection's source is the client's).
        ConnectionPlan::new(bad.clone())
            .with_preamble(b"PROXY TCP4 198.51.100.300 10.77.1.2 1 80\r\n".to_vec()),
        ConnectionPlan::new(vec![health_check("ELB-HealthChecker/2.0")]),
        ConnectionPlan::new(vec![health_check("probe/1")]).from_address(HEALTH_CHECKER.into()),
        ConnectionPlan::new(vec![health_check("probe/1")]).with_preamble(proxy::v2_local()),
        ConnectionPlan::new(rules.clone()),
    ];
    let xff = |r: &Vec<u8>, ip: IpAddr| proxy::with_client_ip(r, "X-Forwarded-For", ip);
    let mut want: Vec<Vec<u8>> = Vec::new();
    want.extend(v1.iter().map(|r| xff(r, src4.ip())));
    want.extend(v2.iter().map(|r| xff(r, src4.ip())));
    want.extend(v2six.iter().map(|r| xff(r, src6.ip())));
    want.extend(bad.iter().map(|r| xff(r, client)));
    want.push(xff(&rules[3], client));
    let jsonl = std::env::temp_dir().join(format!(
        "rebuilder-mirror-proxy-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&jsonl);
    let jsonl_arg = jsonl.display().to_string();
    let cidr = format!("{HEALTH_CHECKER}/32");
    let out = mirror(
        Capture::Udp,
        &plans,
        &[
            "--add-client-ip",
            "--jsonl",
            &jsonl_arg,
            "--health-check-cidr",
            &cidr,
            "--deny-path",
            "/static/",
            "--deny-method",
            "OPTIONS",
            "--deny-host",
            "ads.example.test",
        ],
        want.len(),
    );
    let cmp = compare(&want, out.received.iter().map(|r| &r.raw));
    assert!(cmp.is_match(), "{cmp}\n{}", show(&out.finished));
    assert_eq!(
        out.origin_proxy_headers, 5,
        "the origin saw every header the client sent"
    );
    let m = &out.metrics;
    assert_eq!(
        (
            filtered(m, "health_check"),
            filtered(m, "path"),
            filtered(m, "method"),
            filtered(m, "host"),
            filtered(m, "sample"),
            filtered(m, "rate_limit"),
        ),
        (3.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    );
    assert_eq!(
        (
            proxy_headers(m, "v1"),
            proxy_headers(m, "v2"),
            proxy_headers(m, "v2_local"),
            proxy_headers(m, "malformed"),
        ),
        (1.0, 2.0, 1.0, 1.0)
    );
    let f = &out.finished[0];
    assert_eq!(f.summary_value("filtered"), Some(6), "{}", f.stderr);

    // JSON lines: every request the filters let through, with the client IP beside the
    // connection's source, and the header's TLVs.
    let text = std::fs::read_to_string(&jsonl).expect("jsonl output");
    let _ = std::fs::remove_file(&jsonl);
    let mut by_ip: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert!(
            v["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("10.77.1.1:")),
            "{v}"
        );
        let ip = v["client_ip"].as_str().expect("client_ip").to_owned();
        if ip.starts_with("198.51.100.") || ip.starts_with("2001:") {
            let p = &v["proxy"];
            if p["version"] == 2 {
                assert_eq!(p["aws_vpce_id"], "vpce-0e2e0000000000001", "{v}");
                assert_eq!(p["authority"], HOST, "{v}");
            } else {
                assert_eq!(p["destination"], "10.77.1.2:80", "{v}");
            }
        } else {
            assert!(v.get("proxy").is_none(), "{v}");
        }
        *by_ip.entry(ip).or_default() += 1;
    }
    assert_eq!(
        by_ip,
        BTreeMap::from([
            ("10.77.1.1".to_owned(), 3),
            ("198.51.100.9".to_owned(), 10),
            ("2001:db8:77::9".to_owned(), 3),
        ])
    );
}

/// `--sample 0.5` through XDP: every connection arrives whole or not at all, and what did not
/// arrive is exactly what the node counted as sampled out.
#[test]
fn sampling_keeps_or_drops_whole_connections_through_xdp() {
    let plans: Vec<ConnectionPlan> = (0..16)
        .map(|c| {
            ConnectionPlan::new((0..4).map(|i| get(&format!("/s{c}/{i}"))).collect())
                .pipelined(if c % 2 == 0 { 4 } else { 1 })
        })
        .collect();
    // The count to wait for is unknown until the end: wait for one, then for quiet.
    let out = mirror(
        Capture::Xdp(XdpMode::Driver),
        &plans,
        &["--sample", "0.5"],
        1,
    );
    let mut per_conn: BTreeMap<String, usize> = BTreeMap::new();
    for r in &out.received {
        let t = String::from_utf8_lossy(&r.raw);
        let conn = t.split('/').nth(1).unwrap_or("?").to_owned();
        *per_conn.entry(conn).or_default() += 1;
    }
    assert!(
        per_conn.values().all(|n| *n == 4),
        "whole connections: {per_conn:?}"
    );
    // All 16 kept or none: a probability of 2^-15.
    assert!(per_conn.len() < 16, "{per_conn:?}");
    let missing = 64 - out.received.len();
    assert_eq!(
        filtered(&out.metrics, "sample"),
        missing as f64,
        "{per_conn:?}"
    );
}

/// `--rate-limit` through UDP: a burst of pipelined requests is cut to the bucket's size (and
/// what one more second may add), every one that arrives is whole, the rest is counted.
#[test]
fn the_rate_limit_cuts_a_burst_and_counts_the_rest_through_udp() {
    let burst: Vec<Vec<u8>> = (0..40).map(|i| get(&format!("/burst/{i}"))).collect();
    let plans = vec![ConnectionPlan::new(burst.clone()).pipelined(20)];
    let out = mirror(
        Capture::Udp,
        &plans,
        &["--rate-limit", "1", "--rate-limit-burst", "10"],
        10,
    );
    let n = out.received.len();
    assert!((10..=13).contains(&n), "{n} arrived");
    for r in &out.received {
        assert!(burst.contains(&r.raw), "not a whole request sent");
    }
    assert_eq!(filtered(&out.metrics, "rate_limit"), (40 - n) as f64);
}
