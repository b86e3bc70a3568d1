//! What the lab's requests are and how they are named: the fixed plans of the end-to-end tests,
//! the PROXY protocol header a load balancer would put first, health checks, and the
//! `X-Lab-Id` header that ties every request at the sink to what was sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::super::ledger::RequestId;
use super::{HEALTH_CHECK_CONN, HOST, ID_HEADER, LAB_VPCE_ID};
use crate::gen::http::{self, RequestBuilder};
use crate::http_client::ConnectionPlan;

/// Whether (and which) PROXY protocol header each connection of the workload starts with, as
/// a load balancer in front of the origin would send: a classic ELB sends v1, an NLB v2 (with
/// the AWS VPC endpoint TLV through PrivateLink).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyKind {
    #[default]
    Off,
    V1,
    V2,
    /// By connection: v1 over IPv4, v2 over IPv4 with TLVs, v2 over IPv6.
    Mix,
}

impl ProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Off => "off",
            ProxyKind::V1 => "v1",
            ProxyKind::V2 => "v2",
            ProxyKind::Mix => "mix",
        }
    }

    /// The header connection `conn` starts with, and the client IP it carries.
    pub fn header(self, conn: u32, origin: SocketAddr) -> Option<(Vec<u8>, IpAddr)> {
        use crate::gen::proxy;
        let v4 = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + (conn % 250) as u8)),
            20_000 + (conn % 40_000) as u16,
        );
        let v6 = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x77,
                0,
                0,
                0,
                0,
                1 + (conn % 60_000) as u16,
            )),
            v4.port(),
        );
        let tlvs = proxy::aws_tlvs(LAB_VPCE_ID, HOST);
        let (h, src) = match (self, conn % 3) {
            (ProxyKind::Off, _) => return None,
            (ProxyKind::V1, _) | (ProxyKind::Mix, 0) => (proxy::v1(v4, origin), v4),
            (ProxyKind::V2, _) | (ProxyKind::Mix, 1) => (proxy::v2(v4, origin, &tlvs), v4),
            (ProxyKind::Mix, _) => {
                let dst = SocketAddr::new(
                    IpAddr::V6(match origin.ip() {
                        IpAddr::V4(o) => o.to_ipv6_mapped(),
                        IpAddr::V6(o) => o,
                    }),
                    origin.port(),
                );
                (proxy::v2(v6, dst, &tlvs), v6)
            }
        };
        Some((h, src.ip()))
    }
}

impl std::str::FromStr for ProxyKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(ProxyKind::Off),
            "v1" => Ok(ProxyKind::V1),
            "v2" => Ok(ProxyKind::V2),
            "mix" => Ok(ProxyKind::Mix),
            _ => Err(format!("PROXY protocol {s:?}: use off, v1, v2 or mix")),
        }
    }
}

/// Health check `n` as a load balancer sends it: its request (tagged), whether it starts with
/// a PROXY v2 LOCAL header, and whether it comes from the health checker's address
/// ([`crate::netns::HEALTH_CHECKER`], which the lab's rebuilders get as `--health-check-cidr`).
/// By `n`: ELB-HealthChecker/2.0 from the client's address; another User-Agent from the
/// checker's address; with PROXY headers on, another User-Agent behind a LOCAL header.
pub fn health_check(n: u32, origin: SocketAddr, proxy: ProxyKind) -> (Vec<u8>, bool, bool) {
    let (ua, local, from_checker) = match n % 3 {
        0 => ("ELB-HealthChecker/2.0", false, false),
        1 => ("lab-probe/1.0", false, true),
        _ if proxy != ProxyKind::Off => ("lab-probe/1.0", true, false),
        _ => ("ELB-HealthChecker/2.0", false, true),
    };
    let raw = RequestBuilder::new("GET", "/health")
        .header("Host", origin.to_string())
        .header("Connection", "close")
        .header("User-Agent", ua)
        .header("Accept-Encoding", "gzip, compress, deflate")
        .build();
    (
        with_id(
            &raw,
            RequestId {
                conn: HEALTH_CHECK_CONN,
                seq: n,
            },
        ),
        local,
        from_checker,
    )
}

/// The traffic the mirror tests send through one lab: keep-alive GETs, bodies of several MB,
/// chunked bodies streamed piece by piece, pipelined requests, an `Expect: 100-continue`
/// upload and a HEAD.
pub fn mirror_plans(tag: &str) -> Vec<ConnectionPlan> {
    let mut plans = Vec::new();
    for c in 0..3 {
        plans.push(ConnectionPlan::new(
            (0..8)
                .map(|i| {
                    http::get_with_id(HOST, &format!("/items/{c}/{i}"), &format!("{tag}-g{c}-{i}"))
                })
                .collect(),
        ));
    }
    plans.push(ConnectionPlan::new(vec![
        http::post_with_id(
            HOST,
            "/upload/a",
            3 << 20,
            11,
            Some(&format!("{tag}-big-a")),
        ),
        http::get_with_id(HOST, "/after-upload", &format!("{tag}-between")),
        http::post_with_id(
            HOST,
            "/upload/b",
            (5 << 20) + 12_345,
            12,
            Some(&format!("{tag}-big-b")),
        ),
    ]));
    // A chunked body written as it is produced: 16 KiB at a time, 1 ms apart.
    plans.push(
        ConnectionPlan::new(vec![
            http::chunked_post(HOST, "/stream/1", &[1, 4_000, 70_000, 7, 130_000], 21),
            http::chunked_post(HOST, "/stream/2", &[65_536, 3], 22),
        ])
        .in_pieces(16 * 1024, Duration::from_millis(1)),
    );
    let mut pipelined = http::pipelined_gets(HOST, 12, &format!("{tag}-pipe"));
    pipelined.push(http::post_with_id(
        HOST,
        "/pipelined-post",
        40_000,
        31,
        Some(&format!("{tag}-pp")),
    ));
    plans.push(ConnectionPlan::new(pipelined).pipelined(13));
    plans.push(ConnectionPlan::new(vec![
        http::expect_continue_post(HOST, "/continue", 200_000, 41),
        RequestBuilder::new("HEAD", format!("/head/{tag}"))
            .header("Host", HOST)
            .build(),
    ]));
    plans
}

/// `connections` connections of four GETs and a POST of about 100 KB each: many flows, for
/// spreading over nodes.
pub fn spread_plans(connections: usize) -> Vec<ConnectionPlan> {
    (0..connections)
        .map(|c| {
            let mut reqs: Vec<Vec<u8>> = (0..4)
                .map(|i| http::get_with_id(HOST, &format!("/spread/{c}/{i}"), &format!("s{c}-{i}")))
                .collect();
            reqs.push(http::post_with_id(
                HOST,
                "/spread/post",
                100_000 + c,
                c as u64,
                Some(&format!("s{c}-p")),
            ));
            ConnectionPlan::new(reqs)
        })
        .collect()
}

/// `request` with `X-Lab-Id: id` inserted as its second line (after the request line), every
/// other byte untouched.
pub fn with_id(request: &[u8], id: RequestId) -> Vec<u8> {
    let line_end = request
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(request.len(), |p| p + 2);
    let (line, rest) = request.split_at(line_end.min(request.len()));
    let mut out = Vec::with_capacity(request.len() + 32);
    out.extend_from_slice(line);
    out.extend_from_slice(format!("{ID_HEADER}: {id}\r\n").as_bytes());
    out.extend_from_slice(rest);
    out
}

/// The id [`with_id`] put in `request`, if its second line is one; or, for an HTTP/2
/// stream's rendering (`lab::h2`), the `x-lab-id` line right after its `host` line.
pub fn id_of(request: &[u8]) -> Option<RequestId> {
    let line_end = request.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut rest = request.get(line_end..)?;
    if rest.starts_with(b"host: ") {
        let host_end = rest.windows(2).position(|w| w == b"\r\n")? + 2;
        rest = rest.get(host_end..)?.strip_prefix(b"x-lab-id: ")?;
    } else {
        rest = rest.strip_prefix(format!("{ID_HEADER}: ").as_bytes())?;
    }
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
}
