//! Tests of the request filter: each rule and reason, their order, sampling and the rate limit.

use std::sync::Arc;

use super::*;
use crate::proxy::ProxyInfo;
use crate::request::RequestFlags;
use bytes::Bytes;

/// A request as the framer would make it (ranges found by hand).
fn req(raw: &str, client: &str) -> RebuiltRequest {
    let raw = raw.as_bytes();
    let head_len = memchr::memmem::find(raw, b"\r\n\r\n").map_or(raw.len(), |p| p + 4);
    let sp1 = memchr::memchr(b' ', raw).unwrap();
    let sp2 = sp1 + 1 + memchr::memchr(b' ', &raw[sp1 + 1..]).unwrap();
    let host = memchr::memmem::find(raw, b"\r\nHost: ").map(|p| {
        let s = p + 8;
        s..s + memchr::memmem::find(&raw[s..], b"\r\n").unwrap()
    });
    RebuiltRequest {
        first_ts: 1,
        last_ts: 1,
        vni: 1,
        client: client.parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
        raw: Bytes::copy_from_slice(raw),
        head_len,
        method: 0..sp1,
        target: sp1 + 1..sp2,
        host,
        version_minor: 1,
        body_len: 0,
        flags: RequestFlags::default(),
        proxy: None,
        h2: None,
    }
}

fn filter(cfg: FilterConfig) -> (RequestFilter, Family<ReasonLabel, Counter>) {
    let fam = Family::default();
    (RequestFilter::new(&cfg, &fam).unwrap(), fam)
}

fn defaults() -> FilterConfig {
    FilterConfig {
        health_check_user_agents: vec![ELB_HEALTH_CHECKER.into()],
        sample: 1.0,
        ..FilterConfig::default()
    }
}

const C: &str = "10.0.0.1:40000";

#[test]
fn elb_health_checks_are_filtered_unless_kept() {
    let (f, fam) = filter(defaults());
    let hc = req(
        "GET /health HTTP/1.1\r\nHost: 10.0.0.2\r\nuser-agent:  ELB-HealthChecker/2.0\r\n\r\n",
        C,
    );
    assert_eq!(f.reason(&hc), Some(FilterReason::HealthCheck));
    assert!(!f.admit(&hc));
    assert_eq!(f.totals(), vec![("health_check", 1)]);
    assert_eq!(
        fam.get_or_create(&ReasonLabel {
            reason: "health_check"
        })
        .get(),
        1
    );
    // The prefix elsewhere in the head is not a User-Agent.
    let other = req(
        "GET /x HTTP/1.1\r\nHost: h\r\nReferer: ELB-HealthChecker/2.0\r\nUser-Agent: curl/8\r\n\r\n",
        C,
    );
    assert!(f.admit(&other));
    let (keep, _) = filter(FilterConfig {
        keep_health_checks: true,
        ..defaults()
    });
    assert!(keep.admit(&hc));
}

#[test]
fn health_checks_by_source_network_and_by_proxy_local() {
    let (f, _) = filter(FilterConfig {
        health_check_cidrs: vec![
            "10.77.1.96/28".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ],
        ..defaults()
    });
    let get = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(!f.admit(&req(get, "10.77.1.100:5000")));
    assert!(!f.admit(&req(get, "[::ffff:10.77.1.101]:5000")));
    assert!(!f.admit(&req(get, "[2001:db8::7]:1")));
    assert!(f.admit(&req(get, "10.77.1.1:5000")));
    // Behind a proxy, the client IP is the header's source, not the balancer's address.
    let mut r = req(get, "10.77.1.100:5000");
    r.proxy = Some(Arc::new(ProxyInfo {
        version: 2,
        source: Some("198.51.100.1:9".parse().unwrap()),
        ..ProxyInfo::default()
    }));
    assert!(f.admit(&r));
    // LOCAL: the balancer's own connection.
    let mut r = req(get, "10.1.1.1:5000");
    r.proxy = Some(Arc::new(ProxyInfo {
        version: 2,
        local: true,
        ..ProxyInfo::default()
    }));
    assert_eq!(f.reason(&r), Some(FilterReason::HealthCheck));
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert_eq!(
        "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
        "10.0.0.0/8"
    );
}

#[test]
fn hosts_methods_and_paths() {
    let (f, _) = filter(FilterConfig {
        allow_hosts: vec!["*.Example.com".into(), "api.test".into()],
        deny_hosts: vec!["admin.example.com".into()],
        deny_methods: vec!["options".into()],
        allow_paths: vec!["/v1/".into()],
        allow_path_regex: vec!["^/v[23]/".into()],
        deny_paths: vec!["/v1/static/".into()],
        deny_path_regex: vec![r"\.png$".into()],
        ..defaults()
    });
    let r = |line: &str, host: &str| {
        f.reason(&req(&format!("{line} HTTP/1.1\r\nHost: {host}\r\n\r\n"), C))
    };
    assert_eq!(r("GET /v1/a", "shop.example.com"), None);
    assert_eq!(r("GET /v1/a", "SHOP.example.COM.:8080"), None);
    assert_eq!(r("GET /v2/a?x=/v1/", "api.test"), None);
    assert_eq!(r("GET /v1/a", "example.com"), Some(FilterReason::Host));
    assert_eq!(
        r("GET /v1/a", "admin.example.com"),
        Some(FilterReason::Host)
    );
    assert_eq!(r("OPTIONS /v1/a", "api.test"), Some(FilterReason::Method));
    assert_eq!(r("GET /v4/a", "api.test"), Some(FilterReason::Path));
    assert_eq!(r("GET /v1/static/x", "api.test"), Some(FilterReason::Path));
    assert_eq!(r("GET /v1/i.png?v=2", "api.test"), Some(FilterReason::Path));
    assert_eq!(
        r("GET http://api.test:80/v1/a?q", "api.test"),
        None,
        "absolute-form target: its path"
    );
    // No Host: the absolute target's authority, else nothing to allow.
    let abs = req("GET http://api.test/v1/b HTTP/1.1\r\n\r\n", C);
    assert_eq!(f.reason(&abs), None);
    let none = req("GET /v1/b HTTP/1.0\r\n\r\n", C);
    assert_eq!(f.reason(&none), Some(FilterReason::Host));
    assert_eq!(path_of(b"http://h"), b"/");
    assert_eq!(path_of(b"*"), b"*");
    assert_eq!(path_of(b"/a#f"), b"/a");
    let e = compile_regexes("filter.deny_path_regex", &["(".into()]).unwrap_err();
    assert!(
        e.to_string().starts_with("filter.deny_path_regex[0]: "),
        "{e}"
    );
}

#[test]
fn sampling_keeps_whole_connections_at_about_the_rate() {
    let (f, _) = filter(FilterConfig {
        sample: 0.25,
        sample_seed: 3,
        ..defaults()
    });
    let mut kept = 0;
    for port in 0..4000u16 {
        let client = format!("10.0.{}.{}:{}", port % 7, port % 251, 30000 + port);
        let a = f.admit(&req("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", &client));
        let b = f.admit(&req("POST /b HTTP/1.1\r\nHost: h\r\n\r\n", &client));
        assert_eq!(a, b, "one connection, one decision");
        kept += u32::from(a);
    }
    // 1000 expected; 6 standard deviations is 164.
    assert!((836..=1164).contains(&kept), "{kept}");
    // Fixed forever: a replay, another node, another build sample the same connections.
    assert_eq!(
        connection_hash(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            0
        ),
        connection_hash(
            "[::ffff:10.0.0.1]:1".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            0
        )
    );
    assert_eq!(
        connection_hash(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            0
        ),
        0x0d93_fcda_820d_e949
    );
    let (none, _) = filter(FilterConfig {
        sample: 0.0,
        ..defaults()
    });
    assert_eq!(
        none.reason(&req("GET / HTTP/1.1\r\n\r\n", C)),
        Some(FilterReason::Sample)
    );
}

#[test]
fn the_rate_limit_lets_bursts_and_the_rate_through_in_capture_time() {
    let (f, _) = filter(FilterConfig {
        rate_limit: Some(10.0),
        rate_limit_burst: Some(5),
        ..defaults()
    });
    let at = |ts: u64| {
        let mut r = req("GET / HTTP/1.1\r\n\r\n", C);
        r.last_ts = ts;
        f.admit(&r)
    };
    let sec = 1_000_000_000u64;
    let t0 = 100 * sec;
    // A burst of 5 at once, then nothing until the next token 100 ms later.
    let burst: Vec<bool> = (0..8).map(|_| at(t0)).collect();
    assert_eq!(burst, [true, true, true, true, true, false, false, false]);
    assert!(at(t0 + sec / 10));
    assert!(!at(t0 + sec / 10));
    // One second later: 10 more (the bucket holds 5, so at most 5 at once).
    let later = (0..20).filter(|_| at(t0 + 2 * sec)).count();
    assert_eq!(later, 5);
    // Steady 10/s over 10 s of capture time: about 100.
    let steady = (0..1000u64)
        .filter(|i| at(t0 + 3 * sec + i * sec / 100))
        .count();
    assert!((100..=106).contains(&steady), "{steady}");
    assert_eq!(f.totals().first().map(|t| t.0), Some("rate_limit"));
    let fam = Family::default();
    for bad in [
        FilterConfig {
            sample: 1.5,
            ..defaults()
        },
        FilterConfig {
            rate_limit: Some(0.0),
            ..defaults()
        },
        FilterConfig {
            rate_limit: Some(1.0),
            rate_limit_burst: Some(0),
            ..defaults()
        },
    ] {
        assert!(RequestFilter::new(&bad, &fam).is_err());
    }
}
