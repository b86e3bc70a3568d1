//! `cargo xtask lab` in CI: the lab library with short runs, each bounded well under a minute.
//! One node and three nodes deliver every request byte for byte exactly once, with every node
//! of three at work; a node killed with `kill -9` mid-run loses exactly the requests of its
//! flows sent after its death, in the report and in the metrics; `/healthz` follows the
//! upstream going away and coming back, and the mirror being removed and restored; PROXY
//! protocol clients arrive stripped with their client IP, health checks filtered.
//!
//! Needs root, iproute2 and XDP on veth: without them these tests fail, naming what is missing.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rebuilder_tests::lab::workload::MixConfig;
use rebuilder_tests::lab::{Kill, Lab, LabOptions, LabReport, NodeState};
use rebuilder_tests::netns::leftovers;

/// The workload of these tests: modest, since everything runs as a debug build on two cores
/// shared with other tests.
fn options(nodes: usize, connections: usize, duration: Duration) -> LabOptions {
    LabOptions {
        nodes,
        duration,
        mix: MixConfig {
            connections,
            rate: 60.0,
            max_body: 1 << 20,
            seed: 7,
            ..MixConfig::default()
        },
        rebuilder_args: vec!["--workers".into(), "1".into()],
        ..LabOptions::default()
    }
}

/// Runs a lab to its report, then checks the teardown.
fn run(opts: LabOptions) -> LabReport {
    let started = Instant::now();
    let mut lab = Lab::start(opts).unwrap_or_else(|e| panic!("cannot start the lab: {e}"));
    let created = lab.mirror().created();
    let never = AtomicBool::new(false);
    let report = lab
        .run(&never, &mut std::io::sink())
        .unwrap_or_else(|e| panic!("lab run: {e}"));
    drop(lab);
    let left = leftovers(&created).expect("listing namespaces and links");
    assert!(left.is_empty(), "left behind: {left:?}");
    eprintln!("{report}(in {:?})", started.elapsed());
    report
}

/// What every node's metrics say against what the sink received from it.
fn assert_metrics_match_the_sink(report: &LabReport) {
    for (i, row) in report.rows.iter().enumerate() {
        let f = row
            .figures
            .as_ref()
            .unwrap_or_else(|| panic!("no figures for node {i}\n{report}"));
        let at_sink = report.verdict.per_node[i].requests;
        assert_eq!(f.replayed, at_sink, "node {i}\n{report}");
        assert_eq!(f.rebuilt, at_sink, "node {i}\n{report}");
        assert!(f.dropped.is_empty(), "node {i}: {:?}\n{report}", f.dropped);
        assert_eq!(f.xdp_mode.as_deref(), Some("driver"), "{report}");
    }
}

#[test]
fn one_node_delivers_every_request_once_byte_for_byte() {
    let report = run(options(1, 6, Duration::from_secs(4)));
    let v = &report.verdict;
    assert!(report.ok(), "{report}");
    assert!(v.sent > 50, "{report}");
    assert_eq!(v.exact, v.sent, "{report}");
    assert_eq!((v.missing, v.duplicated, v.mismatched), (0, 0, 0));
    assert_eq!(v.received, v.sent);
    assert_eq!(v.received_bytes, v.sent_bytes);
    assert_eq!(v.connections_per_node, vec![6]);
    assert_metrics_match_the_sink(&report);
    assert!(matches!(report.rows[0].health, Some(Ok((200, _)))));
    let table = report.to_string();
    assert!(
        table.contains("result    OK: every request arrived once, byte for byte\n"),
        "{table}"
    );
}

/// 32 flows over three nodes: one of them getting none has a probability of 3·(2/3)^32,
/// under 1 in 100,000.
#[test]
fn three_nodes_share_the_flows_and_none_is_idle() {
    let report = run(options(3, 32, Duration::from_secs(4)));
    let v = &report.verdict;
    assert!(report.ok(), "{report}");
    assert_eq!(v.exact, v.sent);
    assert_eq!(v.connections_per_node.iter().sum::<usize>(), 32, "{report}");
    for i in 0..3 {
        assert!(v.connections_per_node[i] > 0, "node {i} idle\n{report}");
        assert!(v.per_node[i].requests > 0, "node {i} idle\n{report}");
    }
    assert_eq!(
        v.per_node.iter().map(|n| n.requests).sum::<u64>(),
        v.sent,
        "{report}"
    );
    assert_metrics_match_the_sink(&report);
}

#[test]
fn a_killed_node_loses_exactly_the_requests_of_its_flows_after_its_death() {
    let mut opts = options(3, 24, Duration::from_secs(6));
    opts.kill = Some(Kill {
        node: 1,
        after: Duration::from_secs(2),
    });
    let report = run(opts);
    let v = &report.verdict;
    assert!(report.ok(), "{report}");
    let Some(NodeState::Killed { at }) = report.rows.get(1).map(|r| r.state) else {
        panic!("node 1 not killed\n{report}");
    };
    assert!(at >= Duration::from_secs(2), "{report}");
    // The dead node's flows went on sending; all of that and nothing else is lost.
    assert!(
        v.connections_per_node[1] > 0,
        "node 1 had no flow\n{report}"
    );
    assert!(v.lost_with_dead_node > 0, "{report}");
    assert_eq!(v.missing, 0, "{report}");
    assert_eq!(v.delivered_after_death, 0, "{report}");
    assert_eq!(v.exact + v.lost_with_dead_node, v.sent, "{report}");
    assert_eq!(v.received, v.exact, "{report}");
    // The survivors replayed everything of their flows; the dead node, as read just before
    // its death, everything it had been sent.
    assert_metrics_match_the_sink(&report);
    for i in [0, 2] {
        assert!(
            matches!(report.rows[i].health, Some(Ok((200, _)))),
            "{report}"
        );
    }
    let table = report.to_string();
    assert!(table.contains("node1   killed at "), "{table}");
    assert!(
        table.contains(&format!(
            "lost with node1 (its flows, after it was killed): {}\n",
            v.lost_with_dead_node
        )),
        "{table}"
    );
}

/// Polls node 0's `/healthz` (as the NLB namespace sees it) until `want` says yes; returns
/// how long that took and the answer.
fn wait_health(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> (Duration, String) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        lab.absorb();
        match lab.mirror().health(0) {
            Ok((code, body)) if want(code, &body) => return (start.elapsed(), body),
            Ok((code, body)) => last = format!("{code} {body}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {timeout:?}; last answer: {last}");
}

#[test]
fn healthz_follows_the_upstream_and_the_mirror() {
    let mut opts = options(1, 4, Duration::from_secs(60));
    opts.mix.rate = 40.0;
    opts.mix.max_body = 64 << 10;
    opts.max_idle = Some(Duration::from_secs(2));
    let lab = Lab::start(opts).unwrap_or_else(|e| panic!("cannot start the lab: {e}"));
    let created = lab.mirror().created();
    let workload = lab
        .start_workload()
        .unwrap_or_else(|e| panic!("workload: {e}"));
    let ok = |code: u16, body: &str| code == 200 && body == "ok\n";
    wait_health(&lab, "healthy with traffic", Duration::from_secs(10), ok);

    // The upstream goes away: the node's link to the WAF is down (connects fail at once).
    lab.mirror().set_waf_link(0, false).unwrap();
    let (t, body) = wait_health(&lab, "503 upstream", Duration::from_secs(20), |c, b| {
        c == 503 && b.contains("upstream unreachable")
    });
    eprintln!("upstream away: 503 after {t:?}: {body}");
    lab.mirror().set_waf_link(0, true).unwrap();
    let (t, _) = wait_health(&lab, "200 upstream back", Duration::from_secs(20), ok);
    eprintln!("upstream back: 200 after {t:?}");

    // The WAF goes away: it resets its open connections and every new one.
    lab.mirror().sink().set_refusing(true);
    lab.mirror().sink().reset_connections();
    let (t, body) = wait_health(&lab, "503 refusing", Duration::from_secs(20), |c, b| {
        c == 503 && b.contains("upstream unreachable")
    });
    eprintln!("sink refusing: 503 after {t:?}: {body}");
    lab.mirror().sink().set_refusing(false);
    let (t, _) = wait_health(&lab, "200 sink back", Duration::from_secs(20), ok);
    eprintln!("sink back: 200 after {t:?}");

    // Capture stops: the mirror session is removed.
    lab.mirror().remove_mirror().unwrap();
    let (t, body) = wait_health(&lab, "503 idle", Duration::from_secs(20), |c, b| {
        c == 503 && b.starts_with("no packets for ")
    });
    eprintln!("mirror removed: 503 after {t:?}: {body}");
    assert!(body.ends_with(" s (max idle 2.0 s)\n"), "{body}");
    lab.mirror().restore_mirror().unwrap();
    let (t, _) = wait_health(&lab, "200 mirror back", Duration::from_secs(20), ok);
    eprintln!("mirror restored: 200 after {t:?}");

    let errors = workload.stop();
    assert!(errors.is_empty(), "{errors:?}");
    drop(lab);
    assert!(leftovers(&created).unwrap().is_empty());
}

/// The lab with every connection behind a PROXY header (v1, v2 with the AWS TLVs, v2 over
/// IPv6) and ELB-style health checks, through XDP: every request arrives once, without the
/// header and with the client IP it carried; every health check is filtered, not missing.
#[test]
fn proxy_clients_and_health_checks_arrive_stripped_or_filtered() {
    let mut opts = options(1, 6, Duration::from_secs(4));
    opts.mix.proxy = rebuilder_tests::lab::workload::ProxyKind::Mix;
    opts.mix.health_checks = 6.0;
    let report = run(opts);
    let v = &report.verdict;
    assert!(report.ok(), "{report}");
    assert!(v.sent > 50 && v.filtered >= 12, "{report}");
    assert_eq!(v.exact + v.filtered, v.sent, "{report}");
    assert_eq!(
        (v.missing, v.filtered_arrived, v.mismatched),
        (0, 0, 0),
        "{report}"
    );
    let f = report.rows[0].figures.as_ref().expect("figures");
    assert_eq!(
        f.filtered.get("health_check"),
        Some(&v.filtered),
        "{report}"
    );
    // Connections 0 and 3 v1, 1 and 4 v2, 2 and 5 v2 over IPv6; every third check is LOCAL.
    assert_eq!(f.proxy_headers.get("v1"), Some(&2), "{report}");
    assert_eq!(f.proxy_headers.get("v2"), Some(&4), "{report}");
    assert!(
        f.proxy_headers.get("v2_local").is_some_and(|n| *n >= 4),
        "{report}"
    );
    assert_eq!(f.rebuilt, v.exact + v.filtered, "{report}");
    assert_eq!(f.replayed, v.exact, "{report}");
    assert!(f.dropped.is_empty(), "{:?}\n{report}", f.dropped);
    let table = report.to_string();
    assert!(table.contains("health checks "), "{table}");
    assert!(
        table.contains("PROXY protocol mix: headers stripped by the nodes"),
        "{table}"
    );
    assert!(
        table.contains("result    OK: every request arrived once, byte for byte\n"),
        "{table}"
    );
}
