//! The JSONL output end to end, started through `Outputs`: every request written (gaps
//! included), appending, counts, and the writer's behaviour on a failing destination.

use super::*;
use crate::output::tests::request;
use crate::output::{Mode, Outputs, OutputsConfig};
use crate::status::Health;
use base64::Engine as _;
use prometheus_client::registry::Registry;
use std::time::Duration;

fn temp_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "rebuilder-jsonl-{}-{tag}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn sample(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_every_request_gaps_included_and_appends() {
    let path = temp_path("all");
    std::fs::write(&path, "earlier line\n").unwrap();
    let mut registry = Registry::default();
    let outputs = Outputs::start(
        &OutputsConfig {
            upstream: None,
            jsonl: Some(JsonlConfig::new(&path)),
        },
        Mode::Offline,
        &mut registry,
        Health::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let mut gap = (*request(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npart")).clone();
    gap.flags.gap = true;
    let reqs = vec![
        request(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Arc::new(gap),
        request(b"GET /3 HTTP/1.1\r\n\r\n"),
    ];
    for r in &reqs {
        outputs.submit(Arc::clone(r));
    }
    let report = outputs.drain(Duration::from_secs(5)).await;
    assert!(report.finished() && report.abandoned() == 0, "{report:?}");

    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("earlier line"));
    let written: Vec<&str> = lines.collect();
    let expected: Vec<String> = reqs
        .iter()
        .map(|r| {
            String::from_utf8(encode_line(r))
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(written, expected);
    for (line, req) in written.iter().zip(&reqs) {
        assert_eq!(decode_raw(line), req.raw.to_vec());
    }
    let v: serde_json::Value = serde_json::from_str(written[1]).unwrap();
    assert_eq!(v["flags"]["gap"], serde_json::Value::Bool(true));
    assert_eq!(sample(&registry, "rebuilder_jsonl_written_total"), 3.0);
    assert_eq!(
        sample(
            &registry,
            "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"gap\"}"
        ),
        0.0
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_flushes_and_stops_the_writer() {
    let path = temp_path("drop");
    let mut registry = Registry::default();
    let outputs = Outputs::start(
        &OutputsConfig {
            upstream: None,
            jsonl: Some(JsonlConfig::new(&path)),
        },
        Mode::Live,
        &mut registry,
        Health::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let clone = outputs.clone();
    clone.submit(request(b"GET /kept HTTP/1.1\r\n\r\n"));
    drop(outputs);
    drop(clone);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sample(&registry, "rebuilder_jsonl_written_total") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "writer never flushed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains(r#""target":"/kept""#), "{text}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_are_counted_not_fatal() {
    let mut registry = Registry::default();
    let outputs = Outputs::start(
        &OutputsConfig {
            upstream: None,
            jsonl: Some(JsonlConfig::new("/dev/full")),
        },
        Mode::Live,
        &mut registry,
        Health::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    for _ in 0..5 {
        outputs.submit(request(b"GET / HTTP/1.1\r\n\r\n"));
    }
    let report = outputs.drain(Duration::from_secs(5)).await;
    assert!(report.finished(), "{report:?}");
    assert_eq!(sample(&registry, "rebuilder_jsonl_written_total"), 0.0);
    assert_eq!(
        sample(
            &registry,
            "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"write_error\"}"
        ),
        5.0
    );
    assert!(sample(&registry, "rebuilder_jsonl_write_errors_total") >= 1.0);
}

/// The request bytes a line carries (its `raw`, base64-decoded).
pub(super) fn decode_raw(line: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(v["raw"].as_str().unwrap())
        .unwrap()
}
