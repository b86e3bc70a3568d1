//! What `rebuilder replay`'s settings and surroundings do, through the built binary: a slow
//! upstream slows the replay and loses nothing; missing or invalid captures are clear errors;
//! added headers and body limits change only what they must; pacing follows the capture's
//! timestamps; PROXY headers, health checks and filters; sampling and the rate limit.
//! The harness is `rebuilder_tests::replay`; fidelity is checked in `replay.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rebuilder_tests::compare::compare;
use rebuilder_tests::gen::http;
use rebuilder_tests::gen::{CaptureFormat, Conversation, LinkType, DEFAULT_EPOCH};
use rebuilder_tests::process::run_rebuilder;
use rebuilder_tests::process::Scratch;
use rebuilder_tests::replay::{build, expected, raw_of, replay, scratch_pcap, v4, write, TIMEOUT};
use rebuilder_tests::sink::{ReceivedRequest, Sink};

#[test]
fn a_slow_upstream_slows_the_replay_and_loses_nothing() {
    let scratch = Scratch::new("e2e-slow");
    let resp = http::ok_response(10);
    let conv = Conversation::new(v4(6, 1, 46000), v4(9, 7, 80))
        .requests((0..60).map(|i| http::get("slow", &format!("/{i}"))), &resp);
    let plans = build(&[conv]);
    let sink = Sink::start(rebuilder_tests::sink::SinkConfig {
        response_delay: Duration::from_millis(5),
        ..Default::default()
    })
    .expect("sink");
    let pcap = scratch_pcap(&scratch, &plans);
    let run = run_rebuilder(
        [
            "replay",
            "--pcap",
            &pcap.display().to_string(),
            "--upstream",
            &sink.url(),
            "--pool-size",
            "2",
            "--queue-requests",
            "4",
        ],
        TIMEOUT,
    );
    run.assert_success();
    compare(
        expected(&plans).iter().map(Vec::as_slice),
        sink.take().iter().map(|r| r.raw.as_slice()),
    )
    .assert_match();
}

#[test]
fn missing_or_invalid_capture_files_are_clear_errors() {
    let scratch = Scratch::new("e2e-bad");
    let missing = scratch.path("nope.pcap");
    let run = run_rebuilder(
        [
            "replay",
            "--pcap",
            &missing.display().to_string(),
            "--jsonl",
            "-",
        ],
        TIMEOUT,
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("nope.pcap") && run.stderr.contains("no such file"),
        "{}",
        run.stderr
    );

    let text = scratch.path("notes.txt");
    std::fs::write(&text, "these are not packets\n").expect("write");
    let run = run_rebuilder(
        [
            "replay",
            "--pcap",
            &text.display().to_string(),
            "--jsonl",
            "-",
        ],
        TIMEOUT,
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(1));
    assert!(run.stderr.contains("not a pcap"), "{}", run.stderr);

    let cfg = scratch.path("bad.toml");
    std::fs::write(&cfg, "[upstream]\npool_size = \"many\"\n").expect("write");
    let run = run_rebuilder(
        [
            "--config",
            &cfg.display().to_string(),
            "replay",
            "--pcap",
            "x",
        ],
        TIMEOUT,
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(1));
    assert!(run.stderr.contains("upstream.pool_size"), "{}", run.stderr);
}

#[test]
fn added_headers_and_over_limit_bodies_change_only_what_they_must() {
    let scratch = Scratch::new("e2e-rewrite");
    let resp = http::ok_response(10);
    let small = http::get("rw", "/small");
    let big = http::post("rw", "/big", 200_000, 9);
    let with_xff =
        b"GET /proxied HTTP/1.1\r\nHost: rw\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n".to_vec();
    let conv = Conversation::new(v4(7, 1, 47000), v4(9, 8, 80))
        .vni(321)
        .exchange(small.clone(), resp.clone())
        .exchange(big.clone(), resp.clone())
        .exchange(with_xff, resp.clone());
    let plans = build(&[conv]);
    let pcap = scratch_pcap(&scratch, &plans);
    let (_, received, lines) = replay(
        &pcap,
        &scratch,
        &["--add-client-ip", "--add-vni", "--max-body-bytes", "64KiB"],
    );
    let got: Vec<&[u8]> = received.iter().map(|r| r.raw.as_slice()).collect();
    let small_out = b"GET /small HTTP/1.1\r\nHost: rw\r\n".to_vec();
    // Inserted just before the blank line; every other byte as sent.
    let head_end = small.len() - 2;
    let small_out = got
        .iter()
        .find(|g| g.starts_with(&small_out))
        .expect("the small GET was replayed");
    assert_eq!(&small_out[..head_end], &small[..head_end]);
    let added = &small_out[head_end..];
    assert!(
        added == b"X-Mirror-VNI: 321\r\nX-Forwarded-For: 10.1.7.1\r\n\r\n"
            || added == b"X-Forwarded-For: 10.1.7.1\r\nX-Mirror-VNI: 321\r\n\r\n",
        "{:?}",
        String::from_utf8_lossy(added)
    );
    let proxied = b"GET /proxied HTTP/1.1\r\nHost: rw\r\nX-Forwarded-For: 192.0.2.1, 10.1.7.1\r\nX-Mirror-VNI: 321\r\n\r\n";
    let proxied_alt =
        b"GET /proxied HTTP/1.1\r\nHost: rw\r\nX-Forwarded-For: 192.0.2.1, 10.1.7.1\r\n";
    assert!(
        got.iter()
            .any(|g| g.starts_with(proxied_alt) && g.ends_with(b"X-Mirror-VNI: 321\r\n\r\n")),
        "the existing X-Forwarded-For is appended to: {:?} (e.g. {:?})",
        got.iter()
            .map(|g| String::from_utf8_lossy(&g[..g.len().min(200)]))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(proxied)
    );
    // The big body went over the 64 KiB limit: its head alone, framing consistent, length stated.
    let big_out = got
        .iter()
        .find(|g| g.starts_with(b"POST /big"))
        .expect("the big POST's head was replayed");
    let text = String::from_utf8_lossy(big_out);
    assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    assert!(
        text.contains("X-Rebuilder-Original-Body-Length: 200000\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "no body follows: {text}");
    // The JSON lines keep what the client sent (no added headers) and flag the over-limit body.
    let big_line = lines
        .iter()
        .find(|l| l["target"] == "/big")
        .expect("jsonl record");
    assert_eq!(big_line["flags"]["body_over_limit"], true);
    assert_eq!(big_line["body_len"], 200_000);
    assert!(
        lines.iter().any(|l| raw_of(l) == small),
        "jsonl has the small GET exactly as sent"
    );
}

#[test]
fn pace_follows_the_capture_timestamps() {
    let scratch = Scratch::new("e2e-pace");
    let resp = http::ok_response(10);
    // Two connections 1.5 s apart in capture time.
    let plans = build(&[
        Conversation::new(v4(8, 1, 48000), v4(9, 9, 80))
            .id(1)
            .exchange(http::get("p", "/a"), resp.clone()),
        Conversation::new(v4(8, 2, 48001), v4(9, 9, 80))
            .id(2)
            .start(DEFAULT_EPOCH + Duration::from_millis(1500))
            .exchange(http::get("p", "/b"), resp.clone()),
    ]);
    let pcap = scratch_pcap(&scratch, &plans);
    let t = std::time::Instant::now();
    let (_, received, _) = replay(&pcap, &scratch, &["--pace", "realtime"]);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "realtime pacing waited {:?}",
        t.elapsed()
    );
    assert_eq!(received.len(), 2);
}

/// PROXY protocol, health checks, filters and sampling offline (issue 10 items 1–3): the same
/// code path as live capture after the decoder, so this is `rebuilder replay`'s proof; the
/// mirror tests and the lab run the same through `run --udp` and `run --iface`.
#[test]
fn proxy_headers_health_checks_and_filters_in_a_replayed_capture() {
    use rebuilder_tests::gen::proxy;
    let scratch = Scratch::new("e2e-proxy");
    let resp = http::ok_response(16);
    let host = "shop.example";
    let server = v4(9, 1, 80);
    let nlb = v4(200, 1, 0).ip();
    let src4: SocketAddr = "203.0.113.7:51000".parse().unwrap();
    let src6: SocketAddr = "[2001:db8::7]:51001".parse().unwrap();
    let dst6: SocketAddr = "[2001:db8::5]:80".parse().unwrap();
    let gets = |tag: &str| -> Vec<Vec<u8>> {
        (0..3)
            .map(|i| http::get_with_id(host, &format!("/{tag}/{i}"), &format!("{tag}-{i}")))
            .collect()
    };
    let hc = |ua: &str| {
        http::RequestBuilder::new("GET", "/health")
            .header("Host", "10.1.9.1")
            .header("User-Agent", ua)
            .build()
    };
    let convs = vec![
        // Classic ELB: v1, from an NLB-like address; the request pipelined behind the header.
        Conversation::new(SocketAddr::new(nlb, 40001), server)
            .preamble(proxy::v1(src4, server))
            .requests(gets("v1"), &resp),
        // NLB through PrivateLink: v2 with the VPC endpoint id, IPv6 client.
        Conversation::new(SocketAddr::new(nlb, 40002), server)
            .preamble(proxy::v2(
                src6,
                dst6,
                &proxy::aws_tlvs("vpce-0abc", "shop.example"),
            ))
            .requests(gets("v2"), &resp),
        // A broken header: counted, the stream resynchronises, its requests still replayed.
        Conversation::new(SocketAddr::new(nlb, 40003), server)
            .preamble(b"PROXY TCP4 999.0.0.1 10.1.9.1 1 80\r\n".to_vec())
            .requests(gets("bad"), &resp),
        // Health checks: ELB's User-Agent; behind a LOCAL header; from the checker network.
        Conversation::new(v4(0, 50, 40004), server)
            .exchange(hc("ELB-HealthChecker/2.0"), resp.clone()),
        Conversation::new(SocketAddr::new(nlb, 40005), server)
            .preamble(proxy::v2_local())
            .exchange(hc("probe/1"), resp.clone()),
        Conversation::new(v4(77, 9, 40006), server).exchange(hc("probe/1"), resp.clone()),
        // Filtered by rules: a denied path, a denied method, a denied host.
        Conversation::new(v4(0, 51, 40007), server)
            .exchange(http::get(host, "/static/logo.png"), resp.clone())
            .exchange(
                http::RequestBuilder::new("OPTIONS", "/api")
                    .header("Host", host)
                    .build(),
                resp.clone(),
            )
            .exchange(http::get("ads.example", "/x"), resp.clone()),
    ];
    let plans = build(&convs);
    let pcap = scratch.path("proxy.pcapng");
    write(&plans, &pcap, CaptureFormat::PcapNg, LinkType::Ethernet);
    let (run, received, lines) = replay(
        &pcap,
        &scratch,
        &[
            "--add-client-ip",
            "--health-check-cidr",
            "10.1.77.0/24",
            "--deny-path",
            "/static/",
            "--deny-method",
            "OPTIONS",
            "--deny-host",
            "ads.example",
        ],
    );
    let xff = |raw: &[u8], ip: IpAddr| proxy::with_client_ip(raw, "X-Forwarded-For", ip);
    let mut want: Vec<Vec<u8>> = Vec::new();
    want.extend(gets("v1").iter().map(|r| xff(r, src4.ip())));
    want.extend(gets("v2").iter().map(|r| xff(r, src6.ip())));
    want.extend(gets("bad").iter().map(|r| xff(r, nlb)));
    let cmp = compare(&want, received.iter().map(|r| &r.raw));
    assert!(cmp.is_match(), "{cmp}\n{}", run.stderr);
    // JSON lines: the same requests (as the client sent them), with the client IP beside the
    // connection's source and the header's TLVs.
    assert_eq!(lines.len(), 9, "{lines:?}");
    for l in &lines {
        let raw = raw_of(l);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.starts_with("PROXY"),
            "the header is not part of a request"
        );
        let (ip, proxy) = if text.contains("/v1/") {
            ("203.0.113.7", Some((1, None)))
        } else if text.contains("/v2/") {
            ("2001:db8::7", Some((2, Some("vpce-0abc"))))
        } else {
            ("10.1.200.1", None)
        };
        assert_eq!(
            l["client"].as_str().unwrap().split(':').next(),
            Some("10.1.200.1")
        );
        assert_eq!(l["client_ip"], ip, "{l}");
        match proxy {
            Some((version, vpce)) => {
                assert_eq!(l["proxy"]["version"], version, "{l}");
                assert_eq!(l["proxy"]["aws_vpce_id"].as_str(), vpce, "{l}");
                if version == 2 {
                    assert_eq!(l["proxy"]["authority"], "shop.example");
                    assert_eq!(l["proxy"]["destination"], "[2001:db8::5]:80");
                }
            }
            None => assert!(l.get("proxy").is_none(), "{l}"),
        }
    }
    assert_eq!(run.summary_value("filtered"), Some(6), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("filtered         6 (health_check=3 host=1 method=1 path=1)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("proxy headers    3 (v1 1, v2 1, v2 local 1)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("proxy_header:malformed"),
        "{}",
        run.stderr
    );

    // --keep-health-checks: the three checks are replayed too; sampling at 0 keeps nothing,
    // counted by reason (without --health-check-cidr, the third check is a request like any).
    let (run, received, _) = replay(&pcap, &scratch, &["--keep-health-checks"]);
    assert_eq!(received.len(), 9 + 3 + 3, "{}", run.stderr);
    let (run, received, lines) = replay(&pcap, &scratch, &["--sample", "0"]);
    assert!(received.is_empty() && lines.is_empty());
    assert!(
        run.stderr
            .contains("filtered         15 (health_check=2 sample=13)"),
        "{}",
        run.stderr
    );
}

/// `--sample` keeps whole connections, the same ones on every run; `--rate-limit` counts in
/// capture time, so a replay keeps what a live run would.
#[test]
fn sampling_keeps_whole_connections_and_the_rate_limit_counts_in_capture_time() {
    let scratch = Scratch::new("e2e-sample");
    let resp = http::ok_response(16);
    let convs: Vec<Conversation> = (0..40u8)
        .map(|c| {
            Conversation::new(v4(1, c, 41000 + u16::from(c)), v4(9, 1, 80))
                .id(u64::from(c))
                .requests(
                    (0..5)
                        .map(|i| http::get_with_id("h", &format!("/{c}/{i}"), &format!("{c}-{i}"))),
                    &resp,
                )
                .pipelined(5, true)
        })
        .collect();
    let plans = build(&convs);
    let pcap = scratch.path("sample.pcap");
    write(&plans, &pcap, CaptureFormat::Pcap, LinkType::Ethernet);
    let kept = |received: &[ReceivedRequest]| {
        let mut by_conn: std::collections::BTreeMap<String, usize> = Default::default();
        for r in received {
            let t = String::from_utf8_lossy(&r.raw);
            let conn = t.split('/').nth(1).unwrap_or("?").to_owned();
            *by_conn.entry(conn).or_default() += 1;
        }
        by_conn
    };
    let (run, a, _) = replay(&pcap, &scratch, &["--sample", "0.5"]);
    let ka = kept(&a);
    assert!(ka.values().all(|n| *n == 5), "whole connections: {ka:?}");
    // 40 connections at one half: all or none kept has a probability of 2^-39.
    assert!(!ka.is_empty() && ka.len() < 40, "{ka:?}");
    let dropped = 200 - a.len() as u64;
    assert!(
        run.stderr
            .contains(&format!("filtered         {dropped} (sample={dropped})")),
        "{}",
        run.stderr
    );
    let (_, b, _) = replay(&pcap, &scratch, &["--sample", "0.5"]);
    assert_eq!(kept(&b), ka, "the same connections every run");
    let (_, c, _) = replay(&pcap, &scratch, &["--sample", "0.5", "--sample-seed", "1"]);
    assert_ne!(kept(&c), ka, "another seed, another subset");

    // The capture's 200 requests span about 40 ms of capture time: a limit of 10/s with a
    // burst of 20 lets the burst through and (at most) a token more, however fast the replay.
    let (run, d, _) = replay(
        &pcap,
        &scratch,
        &["--rate-limit", "10", "--rate-limit-burst", "20"],
    );
    assert!((20..=21).contains(&d.len()), "{} {}", d.len(), run.stderr);
    assert_eq!(run.summary_value("filtered"), Some(200 - d.len() as u64));
}
