//! End to end through `rebuilder run --udp`: VXLAN datagrams sent over loopback, requests
//! replayed to a recording sink, status server answering, SIGTERM draining and exiting 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rebuilder_tests::compare::compare;
use rebuilder_tests::faults::status_get as get;
use rebuilder_tests::gen::http;
use rebuilder_tests::gen::{
    interleave, send_vxlan, Conversation, ConversationPlan, UdpSendOptions,
};
use rebuilder_tests::process::Running;
use rebuilder_tests::sink::{unused_local_addr, Sink, SinkConfig};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

/// A value of a metric line `name{labels} value` (labels matched as a substring).
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn run_udp_replays_live_datagrams_and_drains_on_sigterm() {
    let sink = Sink::start_default().expect("sink");
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_udp_port());
    let status = unused_local_addr().expect("status port");
    let mut rb = Running::spawn([
        "run",
        "--udp",
        &udp.to_string(),
        "--udp-sockets",
        "2",
        "--upstream",
        &sink.url(),
        "--status",
        &status.to_string(),
        "--workers",
        "2",
    ])
    .expect("start rebuilder");

    // Ready when /healthz answers 200 (capture threads and workers beating, upstream reached).
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = get(status, "/healthz") {
            break;
        }
        assert!(
            rb.alive(),
            "rebuilder exited early:\n{}",
            rb.stderr_so_far()
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never healthy:\n{}",
            rb.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let resp = http::ok_response(32);
    let plans: Vec<ConversationPlan> = (0..16u16)
        .map(|i| {
            Conversation::new(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, i as u8 + 1)), 50000 + i),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 9, 1)), 80),
            )
            .id(u64::from(i))
            .requests(
                (0..6u64).map(|j| {
                    if j % 3 == 2 {
                        http::post("udp", &format!("/{i}/{j}"), 20_000, j)
                    } else {
                        http::get("udp", &format!("/{i}/{j}"))
                    }
                }),
                &resp,
            )
            .build()
            .expect("generator")
        })
        .collect();
    let want: Vec<Vec<u8>> = plans
        .iter()
        .flat_map(|p| {
            p.truth
                .rebuildable()
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let opts = UdpSendOptions {
        packets_per_second: Some(20_000),
        sockets: 4,
        ..UdpSendOptions::new(udp)
    };
    let sent = send_vxlan(interleave(&plans), &opts).expect("send");
    assert!(sent.packets > 500);

    sink.wait_for(want.len(), Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!("{e}; rebuilder said:\n{}", rb.stderr_so_far());
        });
    compare(
        want.iter().map(Vec::as_slice),
        sink.requests().iter().map(|r| r.raw.as_slice()),
    )
    .assert_match();

    // Metrics are published every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let (code, text) = get(status, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &text,
            "rebuilder_packets_total",
            "source=\"udp\",outcome=\"segment\""
        ),
        Some(sent.packets as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rebuilder_requests_rebuilt_total", ""),
        Some(want.len() as f64)
    );
    assert_eq!(
        metric(&text, "rebuilder_upstream_replayed_total", ""),
        Some(want.len() as f64)
    );
    assert!(text.contains("rebuilder_udp_kernel_drops_total"), "{text}");

    rb.signal(libc::SIGTERM);
    let done = rb.wait(Duration::from_secs(20));
    done.assert_success();
    assert!(
        done.stderr.contains("rebuilder udp summary"),
        "{}",
        done.stderr
    );
    assert_eq!(
        done.summary_value("requests rebuilt"),
        Some(want.len() as u64)
    );
}

/// `(livez, readyz, healthz)` status codes, the `/readyz` and `/healthz` bodies, and the
/// `rebuilder_live` / `rebuilder_ready` gauges, from one round of asking.
struct Verdicts {
    codes: (u16, u16, u16),
    readyz: String,
    healthz: String,
    gauges: (Option<f64>, Option<f64>),
}

fn verdicts(status: SocketAddr) -> std::io::Result<Verdicts> {
    let (livez, _) = get(status, "/livez")?;
    let (readyz, ready_body) = get(status, "/readyz")?;
    let (healthz, health_body) = get(status, "/healthz")?;
    let (_, scrape) = get(status, "/metrics")?;
    Ok(Verdicts {
        codes: (livez, readyz, healthz),
        readyz: ready_body,
        healthz: health_body,
        gauges: (
            metric(&scrape, "rebuilder_live ", ""),
            metric(&scrape, "rebuilder_ready ", ""),
        ),
    })
}

/// A WAF outage fails readiness (`/readyz`, `/healthz`, `rebuilder_ready`) but not liveness
/// (`/livez`, what the NLB asks, and `rebuilder_live`); readiness comes back with the WAF.
#[test]
fn an_unreachable_upstream_fails_readiness_not_liveness() {
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_udp_port());
    let status = unused_local_addr().expect("status port");
    let nobody = unused_local_addr().expect("closed port");
    let rb = Running::spawn([
        "run",
        "--udp",
        &udp.to_string(),
        "--upstream",
        &format!("http://{nobody}"),
        "--status",
        &status.to_string(),
    ])
    .expect("start rebuilder");
    let start = Instant::now();
    let down = loop {
        match verdicts(status) {
            Ok(v) if v.codes.1 == 503 && v.readyz.contains("upstream") => break v,
            _ if start.elapsed() > Duration::from_secs(20) => {
                panic!("no 503 for the upstream:\n{}", rb.stderr_so_far())
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(down.codes, (200, 503, 503), "{}", down.readyz);
    assert_eq!(down.gauges, (Some(1.0), Some(0.0)));
    assert!(
        down.readyz
            .starts_with(&format!("upstream unreachable: connect to {nobody}: ")),
        "{}",
        down.readyz
    );
    assert!(down.readyz.contains("refused"), "{}", down.readyz);
    assert_eq!(down.healthz, down.readyz, "/healthz means readiness");

    // The WAF comes back: ready again without any traffic (the pool probes it).
    let sink = Sink::start(SinkConfig {
        addr: nobody,
        ..SinkConfig::default()
    })
    .expect("sink on the upstream's address");
    let start = Instant::now();
    let up = loop {
        match verdicts(status) {
            Ok(v) if v.codes.1 == 200 => break v,
            _ if start.elapsed() > Duration::from_secs(10) => {
                panic!("never ready again:\n{}", rb.stderr_so_far())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(up.codes, (200, 200, 200), "{}", up.readyz);
    assert_eq!(up.gauges, (Some(1.0), Some(1.0)));
    drop(sink);
    rb.signal(libc::SIGTERM);
    rb.wait(Duration::from_secs(20)).assert_success();
}
