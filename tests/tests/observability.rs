//! The operations kit (`deploy/observability/`): the alert rules pass promtool and their unit
//! tests, the Grafana dashboard follows Grafana's dashboard JSON model and its queries compile,
//! and every metric the rules and the dashboard name is one a running rebuilder exports (read
//! from a real `/metrics` scrape, so a renamed metric breaks this test).
//!
//! Tools: promtool (Debian package prometheus). The scrape needs root (a network namespace and
//! an XDP program on a veth), as the other end-to-end tests do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rebuilder_tests::netns::{Capture, LabConfig, MirrorLab, XdpMode};
use rebuilder_tests::process::workspace_root;
use serde_json::Value;

fn kit() -> PathBuf {
    workspace_root().join("deploy/observability")
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool is missing: install it with `apt-get install -y prometheus`")
}

fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(kit().join("dashboard.json")).unwrap()).unwrap()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels is a list") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// `(panel title, refId, expr)` of every query.
fn queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or_default().to_string(),
                t["refId"].as_str().unwrap_or_default().to_string(),
                t["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// The alert rules' expressions.
fn rule_exprs() -> Vec<(String, String)> {
    // The rules file is YAML; promtool has validated it. Its `expr:` values are plain or
    // block scalars, read here line by line.
    let text = std::fs::read_to_string(kit().join("rules.yml")).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut alert = String::new();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("- alert: ") {
            alert = a.trim().to_string();
        } else if let Some(e) = t.strip_prefix("expr: ") {
            let indent = line.len() - t.len();
            let mut expr = String::new();
            if e.trim() == "|" {
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    expr.push_str(nt);
                    expr.push('\n');
                    lines.next();
                }
            } else {
                expr = e.to_string();
            }
            out.push((alert.clone(), expr));
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let out = promtool_ok(&kit(), &["check", "rules", "rules.yml"]);
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
    let out = promtool_ok(&kit(), &["test", "rules", "rules_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    promtool_ok(&kit(), &["check", "config", "prometheus.yml"]);
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(kit().join("rules_test.yml")).unwrap();
    for (alert, _) in rule_exprs() {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test in rules_test.yml"
        );
    }
}

/// A unit test that cannot fail is no test: a broken rule makes promtool's tests fail.
#[test]
fn the_rule_tests_catch_a_broken_rule() {
    let scratch = std::env::temp_dir().join(format!("rebuilder-obs-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let rules = std::fs::read_to_string(kit().join("rules.yml")).unwrap();
    std::fs::write(
        scratch.join("rules.yml"),
        rules.replacen("> 0.01", "> 0.1", 1),
    )
    .unwrap();
    std::fs::copy(kit().join("rules_test.yml"), scratch.join("rules_test.yml")).unwrap();
    let out = Command::new(promtool())
        .current_dir(&scratch)
        .args(["test", "rules", "rules_test.yml"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("RebuilderPacketsDropped"), "{said}");
}

/// Grafana's dashboard JSON model (grafana.com/docs/grafana/latest/dashboards/build-dashboards/
/// view-dashboard-json-model/): the fields it requires and the invariants Grafana relies on.
#[test]
fn dashboard_follows_the_grafana_json_model() {
    let d = dashboard();
    for key in [
        "title",
        "uid",
        "panels",
        "templating",
        "time",
        "schemaVersion",
    ] {
        assert!(!d[key].is_null(), "dashboard lacks {key}");
    }
    let uid = d["uid"].as_str().unwrap();
    assert!(
        (1..=40).contains(&uid.len())
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "uid {uid:?}: Grafana takes 1 to 40 of [A-Za-z0-9_-]"
    );
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());

    let vars: Vec<&Value> = d["templating"]["list"].as_array().unwrap().iter().collect();
    let var_names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    let known = [
        "timeseries",
        "stat",
        "row",
        "table",
        "gauge",
        "text",
        "bargauge",
    ];
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(u64, u64, u64, u64, String)> = Vec::new();
    for p in panels(&d) {
        let title = p["title"].as_str().expect("every panel has a title");
        let kind = p["type"].as_str().unwrap();
        assert!(known.contains(&kind), "{title}: panel type {kind}");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: id used twice"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w >= 1 && h >= 1 && x + w <= 24, "{title}: gridPos {g}");
        for (ox, oy, ow, oh, other) in &cells {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        cells.push((x, y, w, h, title.to_string()));
        if kind == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{title}");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert!(
            p["fieldConfig"]["defaults"].is_object() && p["fieldConfig"]["overrides"].is_array(),
            "{title}: fieldConfig needs defaults and overrides"
        );
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: refId twice"
            );
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    // Every $variable a query uses is defined (or one of Grafana's own).
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    for (title, refid, expr) in queries(&d) {
        for c in re.captures_iter(&expr) {
            let name = &c[1];
            assert!(
                var_names.contains(name) || name.starts_with("__"),
                "{title}/{refid}: ${name} is not a dashboard variable"
            );
        }
    }
}

/// Each panel query is valid PromQL: promtool compiles it as a recording rule, with Grafana's
/// variables replaced by what Grafana would substitute.
#[test]
fn dashboard_queries_compile() {
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, _, expr)) in queries(&d).iter().enumerate() {
        let e = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("rebuilder-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("queries.yml"), rules).unwrap();
    let out = promtool_ok(&dir, &["check", "rules", "queries.yml"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries(&d).len())),
        "{out}"
    );
}

/// Metrics the rules and dashboard may use before rebuilder exports them, while the work that
/// adds them is on another branch. The test below fails once rebuilder exports one: then take
/// it out. Empty: `rebuilder_live` and `rebuilder_ready` (liveness and readiness) are exported.
const PENDING: &[&str] = &[];

/// Sample names a family declares with `# TYPE NAME KIND` (OpenMetrics, as prometheus-client
/// writes it): counters sample as NAME_total, histograms as NAME_bucket/_sum/_count.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            "info" => {
                out.insert(format!("{name}_info"));
            }
            _ => {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn rules_and_dashboard_use_metrics_rebuilder_exports() {
    // One XDP node (driver mode on its veth) with an upstream: every family of the pipeline,
    // the XDP input and the upstream output is registered.
    let mut lab = MirrorLab::build(LabConfig {
        capture: Capture::Xdp(XdpMode::Driver),
        ..LabConfig::default()
    })
    .expect("building the lab needs root, iproute2 and XDP on veth");
    lab.start_rebuilders(&[]).unwrap();
    lab.wait_ready(Duration::from_secs(20)).unwrap();
    // One request through the mirror, so that the packet counters have a label set.
    let origin = lab.origin_addr();
    lab.client_ns()
        .run(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(&origin, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(
                b"GET /observability HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n",
            )?;
            // The answer's first bytes are enough: the request has been mirrored by then.
            let mut answer = vec![0; 4096];
            let n = s.read(&mut answer)?;
            answer.truncate(n);
            Ok(answer)
        })
        .unwrap()
        .expect("a request from the lab's client to its origin");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let scrape = lab.metrics(0).unwrap();
        if scrape.contains("# TYPE rebuilder_packets counter")
            || std::time::Instant::now() > deadline
        {
            break scrape;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let exported = exported_names(&scrape);
    assert!(
        exported.contains("rebuilder_xdp_packets_total")
            && exported.contains("rebuilder_upstream_latency_seconds_bucket"),
        "{scrape}"
    );

    let name = regex::Regex::new(r"\brebuilder_[a-z0-9_]+\b").unwrap();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for (alert, expr) in rule_exprs() {
        for m in name.find_iter(&expr) {
            used.insert((m.as_str().to_string(), format!("alert {alert}")));
        }
    }
    for (title, refid, expr) in queries(&dashboard()) {
        for m in name.find_iter(&expr) {
            used.insert((m.as_str().to_string(), format!("panel {title}/{refid}")));
        }
    }
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<&(String, String)> = used
        .iter()
        .filter(|(n, _)| !exported.contains(n) && !PENDING.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported by rebuilder: {missing:#?}\nexported: {exported:#?}"
    );
    for p in PENDING {
        assert!(
            !exported.contains(*p),
            "{p} is exported now: remove it from PENDING in {}",
            file!()
        );
    }
}
