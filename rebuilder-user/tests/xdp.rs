//! The XDP input end to end, with the real `rebuilder` binary inside network namespaces this
//! test creates: `run --iface`, a second instance on the same interface, `kill -9`, jumbo
//! frames; the mode fallback and `check --iface` are in `xdp_check.rs`.
//!
//! Needs root and `ip` (iproute2); a missing prerequisite fails the test and names it. Each
//! test makes its own namespace holding a veth pair: rebuilder attaches to one end, mirrored
//! frames (built by `rebuilder_tests::gen`) are written to the other end with an AF_PACKET
//! socket, so no address or route matters and no packet leaves the namespace. Everything is
//! bounded in time and torn down in `Drop`.
//!
//! Namespaces, the veth pair and status requests come from the shared topology library
//! (`rebuilder_tests::netns`), processes from `rebuilder_tests::process`; the bench built on
//! them, shared with `xdp_check.rs`, is `xdp/bench.rs`.

// Shared with xdp_check.rs, whose bridge device this file does not use.
#[allow(dead_code)]
#[path = "xdp/bench.rs"]
mod bench;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rebuilder_tests::gen::Conversation;
use rebuilder_tests::process::Running;

use bench::*;

/// The value of the metric line starting with `prefix` (name and labels), if present.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn request_bytes(tag: &str) -> Vec<u8> {
    format!(
        "GET /xdp/{tag}?q=1 HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: xdp-test\r\n\
         X-Odd:  spaced  value \r\n\r\n"
    )
    .into_bytes()
}

/// The outer frames of one mirrored connection carrying `request`.
fn conversation_frames(request: &[u8], client_port: u16) -> Vec<Vec<u8>> {
    conversation_frames_mss(request, client_port, 1448)
}

fn conversation_frames_mss(request: &[u8], client_port: u16, mss: usize) -> Vec<Vec<u8>> {
    let client: SocketAddr = format!("10.20.0.5:{client_port}").parse().unwrap();
    let server: SocketAddr = "10.20.0.80:80".parse().unwrap();
    let plan = Conversation::new(client, server)
        .vni(4242)
        .mss(mss)
        .exchange(
            request.to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        )
        .build()
        .expect("plan the conversation");
    plan.frames()
        .map(|f| f.expect("encode a frame").data)
        .collect()
}

/// Requests in a JSONL file, as (raw bytes, first_ts).
fn jsonl_requests(path: &Path) -> Vec<(Vec<u8>, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v["raw"].as_str().expect("raw"))
                .expect("base64");
            (raw, v["first_ts"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// `YYYY-MM-DD` (UTC) of a UNIX time, from Howard Hinnant's civil_from_days.
fn utc_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn run_args<'a>(ns: &'a Bench, jsonl: &'a str, mode: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--iface",
        &ns.rx,
        "--xdp-mode",
        mode,
        "--jsonl",
        jsonl,
        "--status",
        STATUS,
        "--workers",
        "1",
        "--drain-timeout",
        "3s",
    ]
}

/// Waits until `/metrics` says the program is attached, and returns that line's mode.
fn wait_attached(ns: &Bench, reb: &mut Running) -> String {
    let prefix = format!("rebuilder_xdp_attached{{iface=\"{}\",mode=\"", ns.rx);
    wait_for(
        Duration::from_secs(30),
        "the XDP attach metric",
        reb,
        || {
            let text = ns.http_get("/metrics")?;
            let line = text.lines().find(|l| l.starts_with(&prefix))?;
            let rest = line.strip_prefix(&prefix)?;
            Some(rest.split('"').next()?.to_string())
        },
    )
}

#[test]
fn run_iface_rebuilds_the_exact_request_and_exports_kernel_counters() {
    let ns = Bench::new(1500);
    let jsonl = ns.dir.join("requests.jsonl");
    let jsonl_s = jsonl.to_str().unwrap().to_string();
    let before = unix_now();
    let mut reb = ns.spawn(&run_args(&ns, &jsonl_s, "generic"));
    assert_eq!(wait_attached(&ns, &mut reb), "generic");
    let shown = ns.xdp_shown().expect("ip shows the program");
    assert!(shown.contains("xdpgeneric"), "{shown}");

    let request = request_bytes("generic");
    ns.send_frames(conversation_frames(&request, 40001));

    let got = wait_for(
        Duration::from_secs(20),
        "the request in the JSONL file",
        &mut reb,
        || {
            let reqs = jsonl_requests(&jsonl);
            (!reqs.is_empty()).then_some(reqs)
        },
    );
    assert_eq!(got.len(), 1, "one request, once: {got:?}");
    assert_eq!(
        String::from_utf8_lossy(&got[0].0),
        String::from_utf8_lossy(&request),
        "byte for byte"
    );
    // Capture time, converted from the kernel's monotonic clock: today, not the generator's
    // 2025 timestamps.
    let after = unix_now();
    let day = &got[0].1.get(..10).unwrap_or_default();
    assert!(
        [utc_date(before), utc_date(after)].iter().any(|d| d == day),
        "first_ts {} is not today ({})",
        got[0].1,
        utc_date(after)
    );

    // Kernel counters reach /metrics within about a second.
    let text = wait_for(
        Duration::from_secs(10),
        "kernel counters in /metrics",
        &mut reb,
        || {
            let text = ns.http_get("/metrics")?;
            let pushed = metric(&text, "rebuilder_xdp_packets_total{outcome=\"pushed\"}")?;
            (pushed >= 1.0).then_some(text)
        },
    );
    let seen = metric(&text, "rebuilder_xdp_seen_packets_total").unwrap();
    let pure_acks = metric(
        &text,
        "rebuilder_xdp_packets_total{outcome=\"filtered_pure_ack\"}",
    );
    assert!(seen >= 3.0, "seen {seen}\n{text}");
    assert!(
        pure_acks.unwrap_or(0.0) >= 1.0,
        "the handshake's ACK is filtered\n{text}"
    );
    assert!(text.contains("rebuilder_xdp_records_total"), "{text}");
    assert!(
        metric(
            &text,
            "rebuilder_packets_total{source=\"xdp\",outcome=\"segment\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "rebuilder_xdp_record_errors_total{error=\"short\"}"),
        Some(0.0)
    );

    // SIGTERM: a clean stop with a summary, and the program is gone.
    reb.signal(libc::SIGTERM);
    let (status, fin) = wait_exit(reb, Duration::from_secs(20));
    let err = &fin.stderr;
    assert!(status.success(), "{status}; stderr:\n{err}");
    assert!(err.contains("rebuilder xdp summary"), "{err}");
    assert!(
        err.contains(&format!("xdp              {} (generic mode)", ns.rx)),
        "{err}"
    );
    assert!(err.contains("requests rebuilt 1"), "{err}");
    assert_eq!(ns.xdp_shown(), None, "still attached after exit");
    assert_eq!(stdout(&fin), "", "the JSON lines went to the file");
}

#[test]
fn a_second_instance_fails_clearly_the_first_keeps_working_and_kill_9_detaches() {
    let ns = Bench::new(1500);
    let jsonl = ns.dir.join("first.jsonl");
    let jsonl_s = jsonl.to_str().unwrap().to_string();
    let mut first = ns.spawn(&run_args(&ns, &jsonl_s, "auto"));
    // veth runs XDP natively: auto settles on driver mode.
    assert_eq!(wait_attached(&ns, &mut first), "driver");
    let shown = ns.xdp_shown().expect("ip shows the program");
    assert!(!shown.contains("xdpgeneric"), "{shown}");

    let second_jsonl = ns.dir.join("second.jsonl");
    for mode in ["auto", "generic", "driver"] {
        let second = ns.spawn(&[
            "run",
            "--iface",
            &ns.rx,
            "--xdp-mode",
            mode,
            "--jsonl",
            second_jsonl.to_str().unwrap(),
            "--status",
            "127.0.0.1:9480",
        ]);
        let (status, fin) = wait_exit(second, Duration::from_secs(30));
        let err = &fin.stderr;
        assert!(
            !status.success(),
            "second instance ({mode}) succeeded: {err}"
        );
        assert!(
            err.contains(&format!("an XDP program is already attached to {}", ns.rx)),
            "{mode}: {err}"
        );
        assert!(
            !err.contains("XDP program attached"),
            "{mode}: no fallback after a busy error: {err}"
        );
    }

    // The first instance is still there and still capturing.
    assert!(first.alive(), "first instance exited");
    let request = request_bytes("first-still-works");
    ns.send_frames(conversation_frames(&request, 40002));
    let got = wait_for(
        Duration::from_secs(20),
        "the request in the JSONL file",
        &mut first,
        || {
            let reqs = jsonl_requests(&jsonl);
            (!reqs.is_empty()).then_some(reqs)
        },
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, request);
    assert!(!second_jsonl.exists() || jsonl_requests(&second_jsonl).is_empty());

    // SIGKILL: no destructor runs; the kernel closes the bpf_link with the process.
    first.signal(libc::SIGKILL);
    let (status, _) = wait_exit(first, Duration::from_secs(10));
    assert!(!status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(shown) = ns.xdp_shown() {
        assert!(
            Instant::now() < deadline,
            "XDP program still attached 10 s after kill -9: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn jumbo_segments_reach_a_native_multi_buffer_program_on_a_9000_mtu_veth() {
    let ns = Bench::new(9000);
    let jsonl = ns.dir.join("jumbo.jsonl");
    let jsonl_s = jsonl.to_str().unwrap().to_string();
    let mut reb = ns.spawn(&run_args(&ns, &jsonl_s, "driver"));
    assert_eq!(wait_attached(&ns, &mut reb), "driver");

    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    // 8800-byte segments: outer IPv4 packets of 8904 bytes, frames above a page, under the MTU.
    let frames = conversation_frames_mss(&request, 40003, 8800);
    assert!(
        frames.iter().any(|f| f.len() > 8800),
        "no jumbo frame planned"
    );
    ns.send_frames(frames);

    let got = wait_for(
        Duration::from_secs(20),
        "the jumbo request",
        &mut reb,
        || {
            let reqs = jsonl_requests(&jsonl);
            (!reqs.is_empty()).then_some(reqs)
        },
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.len(), request.len());
    assert!(got[0].0 == request, "bytes differ");
    let text = wait_for(Duration::from_secs(10), "kernel counters", &mut reb, || {
        let text = ns.http_get("/metrics")?;
        (metric(&text, "rebuilder_xdp_packets_total{outcome=\"pushed\"}")? >= 3.0).then_some(text)
    });
    assert_eq!(
        metric(&text, "rebuilder_xdp_truncated_segments_total"),
        Some(0.0),
        "{text}"
    );
}
