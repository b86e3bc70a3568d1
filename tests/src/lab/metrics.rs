//! Reading a node's `/metrics` (Prometheus / OpenMetrics text) into the figures the lab's
//! table shows: packets, segments, requests rebuilt and replayed, drops by reason.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",…} number`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// The samples of an exposition text; comment lines and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?.to_owned();
    let mut rest = line.get(name_end..)?;
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest.get(..eq)?.trim().to_owned();
            rest = rest.get(eq + 1..)?.strip_prefix('"')?;
            // Values escape `\`, `"` and newlines with a backslash.
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            };
            labels.insert(key, value);
            rest = rest.get(end + 1..)?;
        }
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of the samples named `name` whose labels include every pair of `filter`.
pub fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && filter.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// What the lab's table shows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFigures {
    /// Packets the capture saw: the XDP program's count, or the datagrams decoded.
    pub packets: u64,
    /// TCP segments handed on (XDP: pushed by the kernel program).
    pub segments: u64,
    pub rebuilt: u64,
    pub replayed: u64,
    /// Losses by `where:reason`, non-zero ones only.
    pub dropped: BTreeMap<String, u64>,
    /// `driver`/`generic` when captured through XDP.
    pub xdp_mode: Option<String>,
    /// Requests kept from the outputs on purpose, by reason (non-zero ones only).
    pub filtered: BTreeMap<String, u64>,
    /// PROXY protocol headers stripped at stream starts, by version (`v1`, `v2`, `v2_local`).
    pub proxy_headers: BTreeMap<String, u64>,
    /// HTTP/2 streams rebuilt (`rebuilder_h2_streams_total{outcome="rebuilt"}`).
    pub h2_rebuilt: u64,
}

impl NodeFigures {
    pub fn from_text(text: &str) -> NodeFigures {
        Self::from_samples(&parse(text))
    }

    pub fn from_samples(s: &[Sample]) -> NodeFigures {
        let n = |v: f64| v.max(0.0) as u64;
        let xdp_mode = s
            .iter()
            .find(|x| x.name == "rebuilder_xdp_attached" && x.value >= 1.0)
            .and_then(|x| x.label("mode"))
            .map(str::to_owned);
        let user_packets = n(sum(s, "rebuilder_packets_total", &[]));
        let packets = if xdp_mode.is_some() {
            n(sum(s, "rebuilder_xdp_seen_packets_total", &[]))
        } else {
            user_packets
        };
        let mut dropped = BTreeMap::new();
        let mut add = |key: String, v: f64| {
            if v >= 1.0 {
                *dropped.entry(key).or_insert(0) += n(v);
            }
        };
        for x in s {
            let label = |k: &str| x.label(k).unwrap_or("?").to_owned();
            match x.name.as_str() {
                "rebuilder_packets_total" if x.label("outcome") != Some("segment") => {
                    add(format!("packet:{}", label("outcome")), x.value)
                }
                "rebuilder_xdp_packets_total"
                    if matches!(x.label("outcome"), Some("ring_full" | "malformed")) =>
                {
                    add(format!("xdp:{}", label("outcome")), x.value)
                }
                "rebuilder_udp_kernel_drops_total" => add("datagram:kernel_drop".into(), x.value),
                "rebuilder_segments_dropped_total" => {
                    add(format!("segment:{}", label("reason")), x.value)
                }
                "rebuilder_requests_lost_total" => {
                    add(format!("request:{}", label("reason")), x.value)
                }
                "rebuilder_output_dropped_total" => {
                    add(format!("{}:{}", label("output"), label("reason")), x.value)
                }
                "rebuilder_proxy_headers_total"
                    if !matches!(x.label("outcome"), Some("v1" | "v2" | "v2_local")) =>
                {
                    add(format!("proxy_header:{}", label("outcome")), x.value)
                }
                _ => {}
            }
        }
        let by = |name: &str, key: &str, only: &dyn Fn(&str) -> bool| {
            let mut m = BTreeMap::new();
            for x in s.iter().filter(|x| x.name == name && x.value >= 1.0) {
                let k = x.label(key).unwrap_or("?");
                if only(k) {
                    *m.entry(k.to_owned()).or_insert(0) += n(x.value);
                }
            }
            m
        };
        let filtered = by("rebuilder_requests_filtered_total", "reason", &|_| true);
        let proxy_headers = by("rebuilder_proxy_headers_total", "outcome", &|k| {
            matches!(k, "v1" | "v2" | "v2_local")
        });
        NodeFigures {
            filtered,
            proxy_headers,
            packets,
            segments: n(sum(s, "rebuilder_packets_total", &[("outcome", "segment")])),
            rebuilt: n(sum(s, "rebuilder_requests_rebuilt_total", &[])),
            replayed: n(sum(s, "rebuilder_upstream_replayed_total", &[])),
            h2_rebuilt: n(sum(
                s,
                "rebuilder_h2_streams_total",
                &[("outcome", "rebuilt")],
            )),
            dropped,
            xdp_mode,
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP rebuilder_packets Packets
# TYPE rebuilder_packets counter
rebuilder_packets_total{source="xdp",outcome="segment"} 120
rebuilder_packets_total{source="xdp",outcome="not_vxlan"} 3
rebuilder_xdp_seen_packets_total 200
rebuilder_xdp_packets_total{outcome="pushed"} 120
rebuilder_xdp_packets_total{outcome="ring_full"} 0
rebuilder_xdp_packets_total{outcome="malformed"} 2
rebuilder_xdp_attached{iface="rbin0",mode="driver",requested="driver",reason="a \"quoted\", comma"} 1
rebuilder_requests_rebuilt_total 40
rebuilder_upstream_replayed_total 39
rebuilder_output_dropped_total{output="upstream",reason="gap"} 1
rebuilder_requests_lost_total{reason="gap"} 1.0 1700000000
rebuilder_requests_filtered_total{reason="health_check"} 6
rebuilder_requests_filtered_total{reason="sample"} 0
rebuilder_proxy_headers_total{outcome="v2"} 4
rebuilder_proxy_headers_total{outcome="malformed"} 1
# EOF
"#;

    #[test]
    fn samples_parse_with_escaped_labels() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 15);
        let attached = s
            .iter()
            .find(|x| x.name == "rebuilder_xdp_attached")
            .unwrap();
        assert_eq!(attached.label("reason"), Some("a \"quoted\", comma"));
        assert_eq!(attached.label("mode"), Some("driver"));
        assert_eq!(attached.value, 1.0);
        assert_eq!(sum(&s, "rebuilder_packets_total", &[]), 123.0);
        assert_eq!(
            sum(&s, "rebuilder_packets_total", &[("outcome", "segment")]),
            120.0
        );
        assert!(parse("broken{a=\"x} 1\nname{a=\"1\"} nope\n").is_empty());
    }

    #[test]
    fn figures_collect_every_drop_by_reason() {
        let f = NodeFigures::from_text(TEXT);
        assert_eq!(
            (f.packets, f.segments, f.rebuilt, f.replayed),
            (200, 120, 40, 39)
        );
        assert_eq!(f.xdp_mode.as_deref(), Some("driver"));
        assert_eq!(
            f.dropped,
            BTreeMap::from([
                ("packet:not_vxlan".to_owned(), 3),
                ("xdp:malformed".to_owned(), 2),
                ("upstream:gap".to_owned(), 1),
                ("request:gap".to_owned(), 1),
                ("proxy_header:malformed".to_owned(), 1),
            ])
        );
        assert_eq!(f.dropped_total(), 8);
        assert_eq!(f.filtered, BTreeMap::from([("health_check".to_owned(), 6)]));
        assert_eq!(f.proxy_headers, BTreeMap::from([("v2".to_owned(), 4)]));
        let udp = NodeFigures::from_text(
            "rebuilder_packets_total{source=\"udp\",outcome=\"segment\"} 5\n\
             rebuilder_udp_kernel_drops_total 4\n",
        );
        assert_eq!((udp.packets, udp.segments, udp.xdp_mode), (5, 5, None));
        assert_eq!(udp.dropped.get("datagram:kernel_drop"), Some(&4));
    }
}
