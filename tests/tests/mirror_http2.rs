//! HTTP/2 cleartext and gRPC (issue 10, item 4) on real kernel-mirrored traffic (the topology of
//! `mirror_udp.rs`): a real HTTP/2 server (hyper) in the origin namespace, a real client
//! (hyper, with prior knowledge) calling it with plain requests, gRPC unary and client-streaming
//! calls on several streams of one connection, and curl `--http2-prior-knowledge`. Every
//! stream's request must reach the WAF sink once, rendered as HTTP/1.1 exactly as the README
//! describes. Through `run --udp` and `run --iface` (XDP), and with `--upstream-protocol h2c`
//! (replayed over HTTP/2 to an HTTP/2 sink).
//!
//! Needs root, iproute2 and curl: without them these tests fail, naming what is missing.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use rebuilder_tests::compare::compare;
use rebuilder_tests::gen::h2::H2Request;
use rebuilder_tests::h2_peer::{run_client, Call, H2Server};
use rebuilder_tests::lab::metrics::{parse, sum};
use rebuilder_tests::mirror::{rebuilder_args, show, REPLAY, SETUP};
use rebuilder_tests::netns::{leftovers, Capture, LabConfig, MirrorLab, XdpMode};

const H2_PORT: u16 = 8081;

fn calls(tag: &str) -> Vec<Call> {
    let host = "grpc.example.test";
    let mut get = H2Request::get(host, &format!("/{tag}/catalog?page=2"));
    get.fields.push(("x-request-id".into(), format!("{tag}-1")));
    let form = H2Request::post(
        host,
        &format!("/{tag}/search"),
        "application/x-www-form-urlencoded",
        format!("q=%27+UNION+SELECT+password+FROM+users--&tag={tag}")
            .repeat(400)
            .into_bytes(),
    );
    let unary = H2Request::grpc(
        host,
        "/shop.Cart/Add",
        &[format!("{tag}:item-42").as_bytes()],
    );
    let mut streaming = H2Request::grpc(host, "/shop.Cart/Upload", &[]);
    streaming.body.clear();
    vec![
        Call::Unary(get),
        Call::Unary(form),
        Call::Unary(unary),
        Call::Streaming {
            request: streaming,
            messages: (0..5)
                .map(|i| format!("{tag}:chunk-{i}:").repeat(50).into_bytes())
                .collect(),
            gap: Duration::from_millis(60),
        },
    ]
}

/// curl with prior knowledge from the client namespace; its request as the sink must see it.
fn curl(lab: &MirrorLab, to: SocketAddr, path: &str) -> Vec<u8> {
    let url = format!("http://{to}{path}");
    let out = lab
        .client_ns()
        .run(|| {
            Command::new("curl")
                .args([
                    "--http2-prior-knowledge",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-m",
                    "10",
                ])
                .args(["-H", "x-from: curl", &url])
                .output()
        })
        .expect("enter the client namespace")
        .unwrap_or_else(|e| panic!("curl (Debian package curl) cannot run: {e}"));
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl --version");
    let v = String::from_utf8_lossy(&version.stdout);
    let ua = v.split_whitespace().take(2).collect::<Vec<_>>().join("/");
    format!(
        "GET {path} HTTP/1.1\r\nhost: {to}\r\nuser-agent: {ua}\r\naccept: */*\r\nx-from: curl\r\n\r\n"
    )
    .into_bytes()
}

fn run(capture: Capture, extra: &[&str], tag: &str) {
    let mut lab = MirrorLab::build(LabConfig {
        capture,
        ..LabConfig::default()
    })
    .unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let created = lab.created();
    let to = SocketAddr::new(lab.origin_addr().ip(), H2_PORT);
    let server = H2Server::start(lab.origin_ns(), to).expect("HTTP/2 origin");
    let mut args = rebuilder_args(capture);
    args.extend_from_slice(extra);
    lab.start_rebuilders(&args)
        .unwrap_or_else(|e| panic!("cannot start rebuilder: {e}"));
    lab.wait_ready(SETUP)
        .unwrap_or_else(|e| panic!("rebuilder not ready: {e}"));

    let calls = calls(tag);
    let sent = run_client(lab.client_ns(), to, calls.clone(), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("HTTP/2 client: {e}"));
    let mut want: Vec<Vec<u8>> = sent.iter().map(H2Request::http1).collect();
    want.push(curl(&lab, to, &format!("/{tag}/curl")));
    assert_eq!(server.served(), calls.len() + 1, "{:?}", server.errors());

    let waited = lab.sink().wait_for(want.len(), REPLAY);
    lab.sink()
        .wait_quiet(Duration::from_millis(500), Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(600));
    let metrics = parse(&lab.metrics(0).unwrap_or_else(|e| panic!("/metrics: {e}")));
    let received = lab.sink().requests();
    let finished = lab.stop_rebuilders(Duration::from_secs(10));
    if let Err(e) = waited {
        let cmp = compare(&want, received.iter().map(|r| &r.raw));
        panic!(
            "{e}: {} at the sink\n{cmp}\n{}",
            received.len(),
            show(&finished)
        );
    }
    for f in &finished {
        f.assert_success();
    }
    let cmp = compare(&want, received.iter().map(|r| &r.raw));
    assert!(cmp.is_match(), "{cmp}\n{}", show(&finished));
    let streams = |o: &str| sum(&metrics, "rebuilder_h2_streams_total", &[("outcome", o)]);
    assert_eq!(streams("rebuilt"), want.len() as f64);
    for o in [
        "undecodable",
        "malformed",
        "gap",
        "refused",
        "head_too_large",
    ] {
        assert_eq!(streams(o), 0.0, "{o}");
    }
    assert_eq!(
        sum(
            &metrics,
            "rebuilder_h2_connections_total",
            &[("outcome", "prior_knowledge")]
        ),
        2.0,
        "the client's connection and curl's"
    );
    drop(server);
    drop(lab);
    let left = leftovers(&created).expect("listing namespaces and links");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn h2c_and_grpc_streams_reach_the_waf_through_udp() {
    run(Capture::Udp, &[], "udp");
}

#[test]
fn h2c_and_grpc_streams_reach_the_waf_through_xdp() {
    run(Capture::Xdp(XdpMode::Driver), &[], "xdp");
}
