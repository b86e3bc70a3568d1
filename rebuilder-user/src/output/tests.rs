//! The outputs as a whole: configuration errors, metric names, handles across threads, upstream
//! URLs; and the request builders (`request`, `request_from`) other output tests share.

use super::*;
use crate::request::{RebuiltRequest, RequestFlags};
use crate::status::Health;
use bytes::Bytes;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// A request from `raw` (a whole request whose head ends at the first blank line).
pub(crate) fn request(raw: &[u8]) -> Arc<RebuiltRequest> {
    request_from(raw, "10.1.2.3:40000", 77)
}

pub(crate) fn request_from(raw: &[u8], client: &str, vni: u32) -> Arc<RebuiltRequest> {
    let head_len = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let sp1 = raw.iter().position(|&c| c == b' ').unwrap_or(0);
    let sp2 = raw[sp1 + 1..]
        .iter()
        .position(|&c| c == b' ')
        .map_or(sp1 + 1, |p| sp1 + 1 + p);
    Arc::new(RebuiltRequest {
        first_ts: 1,
        last_ts: 2,
        vni,
        client: client.parse().unwrap(),
        server: "10.9.9.9:80".parse().unwrap(),
        raw: Bytes::copy_from_slice(raw),
        head_len,
        method: 0..sp1,
        target: sp1 + 1..sp2,
        host: None,
        version_minor: 1,
        body_len: (raw.len() - head_len) as u64,
        flags: RequestFlags::default(),
        proxy: None,
        h2: None,
    })
}

#[test]
fn config_errors_are_clear() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = |cfg: OutputsConfig| {
        Outputs::start(
            &cfg,
            Mode::Live,
            &mut Registry::default(),
            Health::new(),
            rt.handle(),
        )
        .err()
        .unwrap()
    };
    let up = |u: &str| OutputsConfig {
        upstream: Some(UpstreamConfig::new(u)),
        jsonl: None,
    };
    let e = start(up("https://waf:443"));
    assert!(matches!(e, OutputError::Https { .. }));
    assert!(e.to_string().contains("https is not supported"), "{e}");
    for bad in [
        "http://waf:80/api",
        "http://waf:80?x",
        "ftp://waf",
        "waf:80",
        "http://:80",
        "http://waf:0",
        "http://waf:x",
        "http://u@waf",
        "http://::1:80",
        "http://[::1",
    ] {
        assert!(
            matches!(start(up(bad)), OutputError::InvalidUrl { .. }),
            "{bad}"
        );
    }
    let mut c = UpstreamConfig::new("http://waf");
    c.pool_size = 0;
    assert!(matches!(
        start(OutputsConfig {
            upstream: Some(c),
            jsonl: None
        }),
        OutputError::Zero {
            what: "upstream pool_size"
        }
    ));
    let mut c = UpstreamConfig::new("http://waf");
    c.vni_header = Some("Bad Name".into());
    assert!(matches!(
        start(OutputsConfig {
            upstream: Some(c),
            jsonl: None
        }),
        OutputError::InvalidHeaderName { .. }
    ));
    let e = start(OutputsConfig {
        upstream: None,
        jsonl: Some(JsonlConfig::new("/nonexistent-dir/x.jsonl")),
    });
    assert!(matches!(e, OutputError::JsonlOpen { .. }));
    assert!(e.to_string().contains("/nonexistent-dir/x.jsonl"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_are_registered() {
    let mut registry = Registry::default();
    let path = std::env::temp_dir().join(format!("rebuilder-names-{}.jsonl", std::process::id()));
    let outputs = Outputs::start(
        &OutputsConfig {
            upstream: Some(UpstreamConfig::new("http://127.0.0.1:9")),
            jsonl: Some(JsonlConfig::new(&path)),
        },
        Mode::Live,
        &mut registry,
        Health::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for name in [
        "rebuilder_output_dropped_total{output=\"upstream\",reason=\"queue_full\"} 0",
        "rebuilder_output_dropped_total{output=\"upstream\",reason=\"gap\"} 0",
        "rebuilder_output_dropped_total{output=\"upstream\",reason=\"upstream_error\"} 0",
        "rebuilder_output_dropped_total{output=\"upstream\",reason=\"shutdown\"} 0",
        "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"write_error\"} 0",
        "rebuilder_output_queue_requests{output=\"upstream\"} 0",
        "rebuilder_output_queue_bytes{output=\"jsonl\"} 0",
        "rebuilder_upstream_replayed_total 0",
        "rebuilder_upstream_errors_total{kind=\"connect\"} 0",
        "rebuilder_upstream_errors_total{kind=\"response_timeout\"} 0",
        "rebuilder_upstream_stale_retries_total 0",
        "rebuilder_upstream_latency_seconds_count 0",
        "rebuilder_upstream_connections_opened_total",
        "rebuilder_upstream_responses_total{class=\"2xx\"} 0",
        "rebuilder_jsonl_written_total 0",
        "rebuilder_jsonl_write_errors_total 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from\n{text}"
        );
    }
    drop(outputs);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn handles_cross_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Outputs>();
    fn sendable<T: Send + Clone + 'static>() {}
    sendable::<crate::status::Heartbeat>();
}

#[test]
fn urls() {
    let p = |u: &str| UpstreamAddr::parse(u).unwrap();
    assert_eq!(
        p("http://waf.internal:8080"),
        UpstreamAddr {
            host: "waf.internal".into(),
            port: 8080
        }
    );
    assert_eq!(
        p("HTTP://10.0.0.1/"),
        UpstreamAddr {
            host: "10.0.0.1".into(),
            port: 80
        }
    );
    assert_eq!(
        p("http://[::1]:81/"),
        UpstreamAddr {
            host: "::1".into(),
            port: 81
        }
    );
    assert_eq!(p("http://[::1]:81").to_string(), "[::1]:81");
    assert_eq!(
        p("http://[fe80::1]"),
        UpstreamAddr {
            host: "fe80::1".into(),
            port: 80
        }
    );
}
