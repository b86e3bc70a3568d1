//! What the lab's clients send: fixed plans for the end-to-end tests, and [`Workload`], a
//! mixed, paced, long-running workload over persistent keep-alive connections whose every
//! request is entered in a [`Ledger`] before it is written.
//!
//! Every request of the mixed workload carries `X-Lab-Id: c<connection>-<n>` as its second
//! line, so whatever arrives at the sink can be matched to what was sent, and to the
//! connection (so the flow, so the node) it belongs to; the rest of each request is exactly
//! what the generator makes, hostile ones included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ledger::{Ledger, RequestId};
use crate::gen::http::{self, hostile, RequestBuilder};
use crate::http_client::{ConnectionPlan, KeepAlive};
use crate::netns::{MirrorLab, NetnsError, Result};
use crate::rng::SplitMix64;

/// The `Host` the lab's clients ask for.
pub const HOST: &str = "shop.example.test";
/// The header naming each request of the mixed workload.
pub const ID_HEADER: &str = "X-Lab-Id";
/// Longest a single exchange (a multi-MB upload included) may take before the connection is
/// given up as broken.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a paused or sleeping connection thread looks at its flags.
const POLL: Duration = Duration::from_millis(20);
/// The connection number in the ids of health checks (`c999999-<n>`): each check is a
/// connection of its own, none a flow of the workload.
pub const HEALTH_CHECK_CONN: u32 = 999_999;
/// The header the lab's rebuilders add the client IP in when the clients send PROXY headers
/// (`--add-client-ip`).
pub const CLIENT_IP_HEADER: &str = "X-Forwarded-For";
/// The VPC endpoint id the lab's v2 headers carry.
pub const LAB_VPCE_ID: &str = "vpce-0lab0000000000001";

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

/// What one step of a connection sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A browser-like keep-alive GET.
    Get,
    /// 2 to 8 GETs and a small POST written back to back.
    Pipelined,
    /// A POST with a body of up to 64 KiB.
    SmallPost,
    /// A POST with a body of 64 KiB up to the maximum body size, log-uniformly.
    BigPost,
    /// A chunked POST with trailers, streamed 16 KiB at a time.
    Chunked,
    /// A POST that waits for `100 Continue` before its body.
    ExpectContinue,
    /// One of [`hostile::parseable`]: SQL injection, path traversal, odd header case, …
    Hostile,
}

/// How often each action comes up, out of the sum of the weights.
const MIX: [(Action, u64); 7] = [
    (Action::Get, 60),
    (Action::Pipelined, 8),
    (Action::SmallPost, 10),
    (Action::BigPost, 3),
    (Action::Chunked, 6),
    (Action::ExpectContinue, 3),
    (Action::Hostile, 10),
];

impl Action {
    fn pick(rng: &mut SplitMix64) -> Action {
        let total: u64 = MIX.iter().map(|(_, w)| w).sum();
        let mut x = rng.below(total);
        for (a, w) in MIX {
            if x < w {
                return a;
            }
            x -= w;
        }
        Action::Get
    }
}

/// The shape of a mixed workload.
#[derive(Clone, Debug)]
pub struct MixConfig {
    /// Concurrent keep-alive connections, each a flow of its own for the whole run.
    pub connections: usize,
    /// Steps per second over all connections (a step is one action: usually one request).
    pub rate: f64,
    /// Largest body of a [`Action::BigPost`].
    pub max_body: usize,
    pub seed: u64,
    /// The PROXY protocol header each connection starts with; the rebuilders must replay
    /// every request with the header's source in [`CLIENT_IP_HEADER`].
    pub proxy: ProxyKind,
    /// Load balancer health checks per second (0: none), each on a connection of its own; the
    /// rebuilders must filter every one.
    pub health_checks: f64,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            connections: 8,
            rate: 100.0,
            max_body: 4 << 20,
            seed: 1,
            proxy: ProxyKind::Off,
            health_checks: 0.0,
        }
    }
}

/// One step's requests and how they are written.
struct Step {
    batch: Vec<Vec<u8>>,
    pieces: Option<(usize, Duration)>,
}

/// Builds the requests of `action`, tagged with ids from `next_id`.
fn step(
    action: Action,
    rng: &mut SplitMix64,
    max_body: usize,
    mut next_id: impl FnMut() -> RequestId,
) -> Step {
    let n = rng.next_u32();
    let mut tagged = |raw: Vec<u8>| with_id(&raw, next_id());
    let seed = rng.next_u64();
    match action {
        Action::Get => Step {
            batch: vec![tagged(http::get(HOST, &format!("/items/{}", n % 1000)))],
            pieces: None,
        },
        Action::Pipelined => {
            let k = rng.range_inclusive(2, 8) as usize;
            let mut batch: Vec<Vec<u8>> = (0..k)
                .map(|i| tagged(http::get(HOST, &format!("/pipelined/{n}/{i}"))))
                .collect();
            let len = rng.range_inclusive(1, 4096) as usize;
            batch.push(tagged(http::post(HOST, "/pipelined/post", len, seed)));
            Step {
                batch,
                pieces: None,
            }
        }
        Action::SmallPost => {
            let len = rng.range_inclusive(1, 64 << 10) as usize;
            Step {
                batch: vec![tagged(http::post(HOST, "/form", len, seed))],
                pieces: None,
            }
        }
        Action::BigPost => {
            let lo = (64u64 << 10).min(max_body as u64);
            let hi = (max_body as u64).max(lo);
            // Log-uniform: as many uploads of 100 KB as of 1 MB, so big ones stay rare in bytes.
            let (a, b) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
            let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let len = ((a + (b - a) * x).exp() as u64).clamp(lo, hi) as usize;
            Step {
                batch: vec![tagged(http::post(HOST, "/upload", len, seed))],
                pieces: None,
            }
        }
        Action::Chunked => {
            let chunks: Vec<usize> = (0..rng.range_inclusive(1, 6))
                .map(|_| rng.range_inclusive(1, 80_000) as usize)
                .collect();
            Step {
                batch: vec![tagged(http::chunked_post(HOST, "/stream", &chunks, seed))],
                pieces: Some((16 * 1024, Duration::from_millis(1))),
            }
        }
        Action::ExpectContinue => {
            let len = rng.range_inclusive(1, 256 << 10) as usize;
            Step {
                batch: vec![tagged(http::expect_continue_post(
                    HOST,
                    "/continue",
                    len,
                    seed,
                ))],
                pieces: None,
            }
        }
        Action::Hostile => {
            let all = hostile::parseable(HOST);
            let i = rng.below(all.len() as u64) as usize;
            let raw = all.into_iter().nth(i).unwrap_or_default();
            Step {
                batch: vec![tagged(raw)],
                pieces: None,
            }
        }
    }
}

#[derive(Default)]
struct GateState {
    paused: bool,
    stop: bool,
    /// Connection threads waiting at the gate (or finished).
    parked: usize,
}

/// Lets the runner hold every connection between two steps (to kill a node at a known point),
/// and stop them.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while paused; false once stopping.
    fn pass(&self) -> bool {
        let mut st = self.lock();
        if st.paused && !st.stop {
            st.parked += 1;
            self.changed.notify_all();
            while st.paused && !st.stop {
                st = self
                    .changed
                    .wait_timeout(st, POLL)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            st.parked -= 1;
        }
        !st.stop
    }

    /// A thread is done for good: it counts as parked from now on.
    fn leave(&self) {
        self.lock().parked += 1;
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.lock().stop
    }
}

/// A running mixed workload: one thread per connection, inside the lab's client namespace.
pub struct Workload {
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<Result<Result<()>>>>,
    connections: usize,
}

impl Workload {
    /// Opens every connection to the lab's origin and starts sending. Each connection steps at
    /// `rate / connections` per second, the first steps spread over one interval.
    pub fn start(lab: &MirrorLab, cfg: &MixConfig, ledger: Arc<Ledger>) -> Result<Workload> {
        if cfg.connections == 0 || !(cfg.rate > 0.0 && cfg.rate.is_finite()) {
            return Err(NetnsError::Config(format!(
                "a workload needs connections and a positive rate (got {} and {})",
                cfg.connections, cfg.rate
            )));
        }
        if !(cfg.health_checks >= 0.0 && cfg.health_checks.is_finite()) {
            return Err(NetnsError::Config(format!(
                "health checks per second must be 0 or more (got {})",
                cfg.health_checks
            )));
        }
        let interval = Duration::from_secs_f64(cfg.connections as f64 / cfg.rate);
        let gate = Arc::new(Gate::default());
        let origin = lab.origin_addr();
        let start = Instant::now();
        let mut threads = Vec::new();
        if cfg.health_checks > 0.0 {
            let checker = HealthChecker {
                origin,
                interval: Duration::from_secs_f64(1.0 / cfg.health_checks),
                proxy: cfg.proxy,
                ledger: Arc::clone(&ledger),
                gate: Arc::clone(&gate),
            };
            threads.push(lab.client_ns().spawn("lab-health", move || checker.run())?);
        }
        for c in 0..cfg.connections {
            let conn =
                u32::try_from(c).map_err(|_| NetnsError::Config("too many connections".into()))?;
            let first = start + interval.mul_f64(c as f64 / cfg.connections as f64);
            let ctx = ConnCtx {
                conn,
                origin,
                interval,
                first,
                max_body: cfg.max_body,
                rng: SplitMix64::new(cfg.seed ^ (u64::from(conn) << 32) ^ 0x1ab),
                proxy: cfg.proxy.header(conn, origin),
                ledger: Arc::clone(&ledger),
                gate: Arc::clone(&gate),
            };
            threads.push(
                lab.client_ns()
                    .spawn(&format!("lab-conn-{c}"), move || ctx.run())?,
            );
        }
        Ok(Workload {
            gate,
            connections: threads.len(),
            threads,
        })
    }

    /// Holds every connection before its next step; true once all of them wait (or ended),
    /// false if that took longer than `timeout` (they stay paused).
    pub fn pause(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.gate.lock();
        st.paused = true;
        while st.parked < self.connections {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .gate
                .changed
                .wait_timeout(st, left.min(POLL))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    pub fn resume(&self) {
        self.gate.lock().paused = false;
        self.gate.changed.notify_all();
    }

    /// Stops after each connection's current step and closes the connections. Returns the
    /// errors of connections that failed (they are in the ledger too).
    pub fn stop(self) -> Vec<String> {
        {
            let mut st = self.gate.lock();
            st.stop = true;
        }
        self.gate.changed.notify_all();
        let mut errors = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) | Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("a connection thread panicked".into()),
            }
        }
        errors
    }
}

struct ConnCtx {
    conn: u32,
    origin: SocketAddr,
    interval: Duration,
    first: Instant,
    max_body: usize,
    rng: SplitMix64,
    /// The PROXY header to start with and the client IP it carries.
    proxy: Option<(Vec<u8>, IpAddr)>,
    ledger: Arc<Ledger>,
    gate: Arc<Gate>,
}

impl ConnCtx {
    fn run(mut self) -> Result<()> {
        let r = self.steps();
        if let Err(e) = &r {
            self.ledger.connection_failed(self.conn, e.to_string());
        }
        self.gate.leave();
        r
    }

    fn steps(&mut self) -> Result<()> {
        let c = self.conn as usize;
        let stream = TcpStream::connect_timeout(&self.origin, Duration::from_secs(5))?;
        let mut ka = KeepAlive::new(stream, c)?;
        if let Some(a) = ka.local_addr() {
            self.ledger.connection_opened(self.conn, a);
        }
        if let Some((header, _)) = &self.proxy {
            ka.preamble(header, Instant::now() + EXCHANGE_TIMEOUT)?;
        }
        let mut next = self.first;
        let mut seq = 0u32;
        loop {
            // Sleep in slices so that a stop is noticed.
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if self.gate.stopping() {
                    ka.finish();
                    return Ok(());
                }
                std::thread::sleep(left.min(POLL));
            }
            if !self.gate.pass() {
                break;
            }
            let action = Action::pick(&mut self.rng);
            let conn = self.conn;
            let st = step(action, &mut self.rng, self.max_body, || {
                let id = RequestId { conn, seq };
                seq = seq.wrapping_add(1);
                id
            });
            // Entered before a byte is written: the sink may see it before write() returns.
            for raw in &st.batch {
                match &self.proxy {
                    Some((_, ip)) => self.ledger.sent_as(
                        raw,
                        crate::gen::proxy::with_client_ip(raw, CLIENT_IP_HEADER, *ip),
                    ),
                    None => self.ledger.sent(raw),
                }
            }
            let responses = ka.exchange(&st.batch, st.pieces, Instant::now() + EXCHANGE_TIMEOUT)?;
            if let Some(r) = responses.iter().find(|r| r.status != 200) {
                return Err(NetnsError::Config(format!(
                    "connection {c}: the origin answered {}",
                    r.status
                )));
            }
            next += self.interval;
            // Behind by more than a few steps (a long upload): carry on from now rather
            // than bursting to catch up.
            let now = Instant::now();
            if next + self.interval * 4 < now {
                next = now;
            }
        }
        ka.finish();
        Ok(())
    }
}

/// The thread sending health checks, one connection each, as a load balancer does.
struct HealthChecker {
    origin: SocketAddr,
    interval: Duration,
    proxy: ProxyKind,
    ledger: Arc<Ledger>,
    gate: Arc<Gate>,
}

impl HealthChecker {
    fn run(self) -> Result<()> {
        let r = self.checks();
        if let Err(e) = &r {
            self.ledger
                .connection_failed(HEALTH_CHECK_CONN, format!("health checks: {e}"));
        }
        self.gate.leave();
        r
    }

    fn checks(&self) -> Result<()> {
        let mut next = Instant::now() + self.interval / 2;
        for n in 0u32.. {
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if self.gate.stopping() {
                    return Ok(());
                }
                std::thread::sleep(left.min(POLL));
            }
            if !self.gate.pass() {
                break;
            }
            let (raw, local, from_checker) = health_check(n, self.origin, self.proxy);
            let source = from_checker.then_some(IpAddr::V4(crate::netns::HEALTH_CHECKER));
            let stream =
                crate::http_client::connect_from(source, self.origin, Duration::from_secs(5))?;
            let mut ka = KeepAlive::new(stream, HEALTH_CHECK_CONN as usize)?;
            let deadline = Instant::now() + EXCHANGE_TIMEOUT;
            if local {
                ka.preamble(&crate::gen::proxy::v2_local(), deadline)?;
            }
            self.ledger.sent_filtered(&raw);
            let responses = ka.exchange(std::slice::from_ref(&raw), None, deadline)?;
            ka.finish();
            if let Some(r) = responses.iter().find(|r| r.status != 200) {
                return Err(NetnsError::Config(format!(
                    "health check {n}: the origin answered {}",
                    r.status
                )));
            }
            next += self.interval;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_and_health_checks_are_what_load_balancers_send() {
        let origin: SocketAddr = "10.77.1.2:80".parse().unwrap();
        assert_eq!(ProxyKind::Off.header(0, origin), None);
        let (h, ip) = ProxyKind::V1.header(4, origin).unwrap();
        assert_eq!(h, b"PROXY TCP4 198.51.100.5 10.77.1.2 20004 80\r\n");
        assert_eq!(ip, "198.51.100.5".parse::<IpAddr>().unwrap());
        let kinds: Vec<(u8, bool)> = (0..3)
            .map(|c| {
                let (h, ip) = ProxyKind::Mix.header(c, origin).unwrap();
                (if h.starts_with(b"PROXY") { 1 } else { 2 }, ip.is_ipv6())
            })
            .collect();
        assert_eq!(kinds, vec![(1, false), (2, false), (2, true)]);
        let (h, _) = ProxyKind::V2.header(0, origin).unwrap();
        assert!(h
            .windows(LAB_VPCE_ID.len())
            .any(|w| w == LAB_VPCE_ID.as_bytes()));
        let checks: Vec<_> = (0..3)
            .map(|n| health_check(n, origin, ProxyKind::Mix))
            .collect();
        assert!(String::from_utf8_lossy(&checks[0].0).contains("User-Agent: ELB-HealthChecker/2.0"));
        assert_eq!((checks[1].1, checks[1].2), (false, true));
        assert_eq!((checks[2].1, checks[2].2), (true, false));
        assert_eq!(
            id_of(&checks[2].0),
            Some(RequestId {
                conn: HEALTH_CHECK_CONN,
                seq: 2
            })
        );
        assert!(!health_check(2, origin, ProxyKind::Off).1);
    }

    #[test]
    fn ids_go_in_as_the_second_line_and_come_back_out() {
        let id = RequestId { conn: 7, seq: 42 };
        let req = hostile::odd_header_case(HOST);
        let tagged = with_id(&req, id);
        let line_end = req.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        assert_eq!(&tagged[..line_end], &req[..line_end]);
        assert_eq!(
            &tagged[line_end..line_end + 19],
            b"X-Lab-Id: c7-42\r\nhO".as_slice()
        );
        assert_eq!(&tagged[line_end + 17..], &req[line_end..]);
        assert_eq!(id_of(&tagged), Some(id));
        assert_eq!(id_of(&req), None);
        assert_eq!(id_of(b"GET / HTTP/1.1\r\nX-Lab-Id: c1-x\r\n\r\n"), None);
        assert_eq!(id_of(b""), None);
    }

    #[test]
    fn every_action_comes_up_and_steps_are_deterministic() {
        let mut rng = SplitMix64::new(5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(format!("{:?}", Action::pick(&mut rng)));
        }
        assert_eq!(seen.len(), MIX.len(), "{seen:?}");

        let build = |seed| {
            let mut rng = SplitMix64::new(seed);
            let mut seq = 0;
            (0..50)
                .flat_map(|_| {
                    let a = Action::pick(&mut rng);
                    step(a, &mut rng, 1 << 20, || {
                        seq += 1;
                        RequestId { conn: 0, seq }
                    })
                    .batch
                })
                .collect::<Vec<_>>()
        };
        let a = build(9);
        assert_eq!(a, build(9));
        assert_ne!(a, build(10));
        // Every request is tagged, with distinct ids, and parses as HTTP/1.1 whole.
        let mut ids = std::collections::BTreeSet::new();
        for r in &a {
            assert!(ids.insert(id_of(r).expect("tagged")));
            let n = crate::sink::framer::frame_request(r, 1 << 20, 1 << 30)
                .unwrap()
                .expect("whole");
            assert_eq!(n, r.len());
        }
    }

    #[test]
    fn big_posts_stay_within_their_bounds() {
        let mut rng = SplitMix64::new(3);
        for max in [1usize, 70_000, 4 << 20] {
            for _ in 0..20 {
                let s = step(Action::BigPost, &mut rng, max, || RequestId {
                    conn: 0,
                    seq: 0,
                });
                let head = crate::sink::framer::parse_head(&s.batch[0], 1 << 20)
                    .unwrap()
                    .unwrap();
                let len = head.content_length.unwrap();
                assert!(len <= (max as u64).max(1) && len >= (64u64 << 10).min(max as u64));
            }
        }
    }
}
