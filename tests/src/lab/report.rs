//! The lab's final table.

use std::fmt;
use std::time::Duration;

use super::ledger::{Death, Verdict};
use super::metrics::NodeFigures;
use super::workload::ProxyKind;
use crate::netns::Capture;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Up,
    /// `kill -9` this long into the run.
    Killed {
        at: Duration,
    },
}

/// One node's line.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    pub name: String,
    pub state: NodeState,
    /// From its `/metrics` at the end (a killed node: just before its death); None when it
    /// could not be read.
    pub figures: Option<NodeFigures>,
    /// `/healthz` as the `nlb` sees it at the end (None for a killed node).
    pub health: Option<Result<(u16, String), String>>,
}

/// Everything a lab run found.
#[derive(Clone, Debug)]
pub struct LabReport {
    /// What the HTTP/2 clients sent, when they ran.
    pub h2: Option<super::h2::H2Counts>,
    /// The PROXY protocol headers the clients sent.
    pub proxy: ProxyKind,
    /// Whether health checks were sent.
    pub health_checks: bool,
    pub nodes: usize,
    pub capture: Capture,
    pub vni: u32,
    pub mtu: u32,
    pub connections: usize,
    /// How long the workload ran.
    pub traffic: Duration,
    pub rows: Vec<NodeRow>,
    pub verdict: Verdict,
    pub death: Option<Death>,
    /// Whether the sink had everything it could have before the drain deadline.
    pub drained: bool,
    pub interrupted: bool,
    /// Why the run could not do what it was asked (a kill that could not be staged).
    pub failure: Option<String>,
}

impl LabReport {
    /// Every request arrived once, byte for byte (but those a killed node explains), every
    /// node that should have worked did, and the run was not cut short.
    pub fn ok(&self) -> bool {
        self.verdict.ok()
            && !self.interrupted
            && self.failure.is_none()
            && self.filtered_matches()
            && self.proxy_headers_match()
            && self.h2_matches()
    }

    /// Requests the nodes filtered as health checks, by their metrics (None when a node's
    /// figures are missing).
    pub fn health_checks_filtered(&self) -> Option<u64> {
        self.rows
            .iter()
            .map(|r| {
                r.figures
                    .as_ref()
                    .map(|f| f.filtered.get("health_check").copied().unwrap_or(0))
            })
            .sum()
    }

    /// Every health check the ledger saw not arrive is one the nodes counted as filtered,
    /// and nothing else was filtered (a killed node's count stops at its death, so then only
    /// the health checks must be at least its share).
    pub fn filtered_matches(&self) -> bool {
        let others = self.rows.iter().any(|r| {
            r.figures
                .as_ref()
                .is_some_and(|f| f.filtered.keys().any(|k| k != "health_check"))
        });
        match self.health_checks_filtered() {
            _ if others => false,
            Some(n) if self.death.is_none() => n == self.verdict.filtered,
            Some(n) => n <= self.verdict.filtered,
            None => self.death.is_some(),
        }
    }

    /// PROXY headers stripped by the nodes, by their metrics.
    pub fn proxy_headers(&self) -> u64 {
        self.rows
            .iter()
            .filter_map(|r| r.figures.as_ref())
            .map(|f| f.proxy_headers.values().sum::<u64>())
            .sum()
    }

    /// HTTP/2 streams the nodes rebuilt.
    pub fn h2_rebuilt(&self) -> u64 {
        self.rows
            .iter()
            .filter_map(|r| r.figures.as_ref())
            .map(|f| f.h2_rebuilt)
            .sum()
    }

    /// Every HTTP/2 stream sent was rebuilt by a node as one (the ledger checks the bytes).
    pub fn h2_matches(&self) -> bool {
        match self.h2 {
            Some(h) if self.death.is_none() => self.h2_rebuilt() == h.streams,
            _ => true,
        }
    }

    /// With PROXY clients, every workload connection's header was stripped by a node (and a
    /// LOCAL one per third health check); without, none was.
    pub fn proxy_headers_match(&self) -> bool {
        if self.death.is_some() {
            return true;
        }
        let want = match self.proxy {
            ProxyKind::Off => 0,
            _ => self.connections as u64 + self.local_health_checks(),
        };
        self.proxy_headers() == want
    }

    /// Health checks sent behind a PROXY v2 LOCAL header (every third, see
    /// [`health_check`](super::workload::health_check)).
    fn local_health_checks(&self) -> u64 {
        if self.proxy == ProxyKind::Off {
            return 0;
        }
        let sent = self.verdict.filtered + self.verdict.filtered_arrived;
        (0..sent).filter(|n| n % 3 == 2).count() as u64
    }
}

/// `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("?"))
    }
}

impl fmt::Display for LabReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verdict;
        let secs = self.traffic.as_secs_f64().max(1e-3);
        let capture = match self.capture {
            Capture::Udp => "UDP socket".to_owned(),
            Capture::Xdp(m) => format!("XDP ({} mode requested)", m.as_str()),
        };
        writeln!(
            f,
            "rebuilder lab: {} node{}, capture {capture}, VNI {}, MTU {}, {} connections, {:.1} s of traffic",
            self.nodes,
            if self.nodes == 1 { "" } else { "s" },
            self.vni,
            self.mtu,
            self.connections,
            self.traffic.as_secs_f64()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<7} {:<16} {:>5} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}  {:<8} dropped",
            "node",
            "state",
            "flows",
            "packets",
            "segments",
            "rebuilt",
            "replayed",
            "at sink",
            "req/s",
            "healthz"
        )?;
        for (i, r) in self.rows.iter().enumerate() {
            let state = match (r.state, &r.figures) {
                (NodeState::Up, Some(fg)) => match &fg.xdp_mode {
                    Some(m) => format!("up, xdp {m}"),
                    None => "up, udp".to_owned(),
                },
                (NodeState::Up, None) => "up".to_owned(),
                (NodeState::Killed { at }, _) => format!("killed at {:.1} s", at.as_secs_f64()),
            };
            let flows = v.connections_per_node.get(i).copied().unwrap_or(0);
            let at_sink = v.per_node.get(i).map_or(0, |t| t.requests);
            let health = match &r.health {
                None => "-".to_owned(),
                Some(Ok((code, _))) => code.to_string(),
                Some(Err(_)) => "no answer".to_owned(),
            };
            let (packets, segments, rebuilt, replayed, dropped) = match &r.figures {
                Some(fg) => (
                    fg.packets.to_string(),
                    fg.segments.to_string(),
                    fg.rebuilt.to_string(),
                    fg.replayed.to_string(),
                    if fg.dropped.is_empty() {
                        "none".to_owned()
                    } else {
                        fg.dropped
                            .iter()
                            .map(|(k, n)| format!("{k}={n}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    },
                ),
                None => ("?".into(), "?".into(), "?".into(), "?".into(), "?".into()),
            };
            writeln!(
                f,
                "{:<7} {:<16} {:>5} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7.1}  {:<8} {dropped}",
                r.name,
                state,
                flows,
                packets,
                segments,
                rebuilt,
                replayed,
                at_sink,
                at_sink as f64 / secs,
                health
            )?;
        }
        for r in &self.rows {
            if let Some(Ok((code, body))) = &r.health {
                if *code != 200 {
                    writeln!(f, "  {} /healthz: {body}", r.name)?;
                }
            }
            if let Some(Err(e)) = &r.health {
                writeln!(f, "  {} /healthz: {e}", r.name)?;
            }
            if let NodeState::Killed { .. } = r.state {
                writeln!(f, "  {}: figures as read just before the kill", r.name)?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "requests  sent {} ({}); at the sink {} ({})",
            v.sent,
            bytes(v.sent_bytes),
            v.received,
            bytes(v.received_bytes)
        )?;
        writeln!(
            f,
            "          byte-exact once {}, missing {}, duplicated {}, not byte-exact {}, unidentified {}",
            v.exact, v.missing, v.duplicated, v.mismatched, v.unidentified
        )?;
        if self.health_checks {
            writeln!(
                f,
                "          health checks {} sent, filtered by the nodes {} (not replayed, as they must not be), at the sink {}",
                v.filtered + v.filtered_arrived,
                self.health_checks_filtered()
                    .map_or("?".to_owned(), |n| n.to_string()),
                v.filtered_arrived
            )?;
        }
        if self.proxy != ProxyKind::Off {
            writeln!(
                f,
                "          PROXY protocol {}: headers stripped by the nodes {} (connections {}, LOCAL health checks {}); every request replayed with the client IP it carried",
                self.proxy.as_str(),
                self.proxy_headers(),
                self.connections,
                self.local_health_checks()
            )?;
        }
        if let Some(h) = self.h2 {
            writeln!(
                f,
                "          HTTP/2 (h2c) {} streams on {} connections (gRPC unary {}, client-streaming {}), rebuilt by the nodes {}, each replayed as HTTP/1.1",
                h.streams,
                h.connections,
                h.grpc_unary,
                h.grpc_streaming,
                self.h2_rebuilt()
            )?;
        }
        if let Some(d) = self.death {
            writeln!(
                f,
                "          lost with node{} (its flows, after it was killed): {}{}",
                d.node,
                v.lost_with_dead_node,
                if v.delivered_after_death > 0 {
                    format!(
                        "; yet {} of them arrived (a flow moved)",
                        v.delivered_after_death
                    )
                } else {
                    String::new()
                }
            )?;
        }
        if v.connections_unplaced > 0 || v.split_connections > 0 || v.unknown_peer > 0 {
            writeln!(
                f,
                "          connections with no request at the sink {}, split over nodes {}; \
                 requests from no node's address {}",
                v.connections_unplaced, v.split_connections, v.unknown_peer
            )?;
        }
        writeln!(
            f,
            "rates     {:.1} requests/s, {}/s sent; {:.1} requests/s at the sink",
            v.sent as f64 / secs,
            bytes((v.sent_bytes as f64 / secs) as u64),
            v.received as f64 / secs
        )?;
        for e in v.client_errors.iter().take(5) {
            writeln!(f, "client    {e}")?;
        }
        if let Some(e) = &self.failure {
            writeln!(f, "failure   {e}")?;
        }
        if !self.drained {
            writeln!(
                f,
                "drain     the sink was still short of requests at the deadline"
            )?;
        }
        for e in v.examples.iter().take(10) {
            writeln!(f, "  {e}")?;
        }
        let result = if self.interrupted {
            "INTERRUPTED".to_owned()
        } else if self.ok() {
            match self.death {
                Some(d) => format!(
                    "OK: every request arrived once, byte for byte, except exactly those of node{}'s flows after its death",
                    d.node
                ),
                None => "OK: every request arrived once, byte for byte".to_owned(),
            }
        } else {
            "FAILED".to_owned()
        };
        writeln!(f, "result    {result}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(bytes(3 << 40), "3072.0 GiB");
    }
}
