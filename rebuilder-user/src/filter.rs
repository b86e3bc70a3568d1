//! Which rebuilt requests go to the outputs at all: load balancer health checks, the
//! operator's allow/deny rules, per-connection sampling and a global rate limit. Between the
//! workers' framing and the outputs; every request kept back is counted in
//! `rebuilder_requests_filtered_total{reason}`, never silently gone.
//!
//! In this order, the first that applies decides the reason:
//! 1. `health_check`: the User-Agent starts with one of `health_checks.user_agents`
//!    (`ELB-HealthChecker/` by default: ALB, NLB and classic ELB checks), or the client IP lies
//!    in `health_checks.source_cidrs`, or the connection's PROXY v2 header had the LOCAL command
//!    (the load balancer's own connection). Unless `health_checks.keep`.
//! 2. `host`, `method`, `path`: a deny rule matches, or an allow list of that kind is set and
//!    nothing in it matches. Hosts compare without case, port or trailing dot, `*.example.com`
//!    matching any subdomain; methods compare without case; paths are the target up to `?`
//!    (absolute-form targets: their path), as sent, not decoded: prefixes and regexes (`regex`
//!    crate, on bytes).
//! 3. `sample`: a connection is kept when a fixed hash of its 4-tuple (and `sample_seed`) falls
//!    under the rate, so a connection is kept or dropped whole (pipelined requests stay
//!    together), and the same connections on every run and every node.
//! 4. `rate_limit`: a token bucket (GCRA) shared by all workers, `rate_limit` requests per second
//!    of capture time with bursts of `rate_limit_burst`. Capture time is wall time live; an
//!    offline replay keeps what a live run would have, however fast it reads.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use regex::bytes::Regex;

use crate::metrics::ReasonLabel;
use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

/// Why a request was kept from the outputs (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterReason {
    HealthCheck = 0,
    Host,
    Method,
    Path,
    Sample,
    RateLimit,
}

impl FilterReason {
    pub const ALL: [FilterReason; 6] = [
        FilterReason::HealthCheck,
        FilterReason::Host,
        FilterReason::Method,
        FilterReason::Path,
        FilterReason::Sample,
        FilterReason::RateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::HealthCheck => "health_check",
            FilterReason::Host => "host",
            FilterReason::Method => "method",
            FilterReason::Path => "path",
            FilterReason::Sample => "sample",
            FilterReason::RateLimit => "rate_limit",
        }
    }
}

/// The default health checker User-Agent prefix: `ELB-HealthChecker/1.0` (classic ELB) and
/// `ELB-HealthChecker/2.0` (ALB, NLB).
pub const ELB_HEALTH_CHECKER: &str = "ELB-HealthChecker/";

/// An IP network, written `10.0.0.0/16`, `2001:db8::/32`, or a bare address (one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<ipnet::IpNet>() {
            return Ok(Cidr(n.trunc()));
        }
        t.parse::<IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                format!("{s:?} is not a network (e.g. 10.0.0.0/16, 2001:db8::/32, 10.1.2.3)")
            })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything the filter needs, as the settings give it (see `config`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterConfig {
    pub keep_health_checks: bool,
    pub health_check_user_agents: Vec<String>,
    pub health_check_cidrs: Vec<Cidr>,
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
    pub allow_methods: Vec<String>,
    pub deny_methods: Vec<String>,
    pub allow_paths: Vec<String>,
    pub deny_paths: Vec<String>,
    pub allow_path_regex: Vec<String>,
    pub deny_path_regex: Vec<String>,
    /// Fraction of connections kept, 0..=1.
    pub sample: f64,
    pub sample_seed: u64,
    /// Requests per second; None: no limit.
    pub rate_limit: Option<f64>,
    /// Requests let through at once; None: one second's worth.
    pub rate_limit_burst: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct FilterError {
    pub key: String,
    pub message: String,
}

/// Compiles a list of path regexes; the error names the entry.
pub fn compile_regexes(key: &str, list: &[String]) -> Result<Vec<Regex>, FilterError> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            Regex::new(r).map_err(|e| FilterError {
                key: format!("{key}[{i}]"),
                message: format!("invalid regex {r:?}: {e}"),
            })
        })
        .collect()
}

/// A host rule: exact, or `*.suffix`.
#[derive(Clone, Debug)]
enum HostRule {
    Exact(Vec<u8>),
    /// `.example.com` for `*.example.com`.
    Suffix(Vec<u8>),
}

impl HostRule {
    fn new(s: &str) -> HostRule {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        match s.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') => HostRule::Suffix(rest.as_bytes().to_vec()),
            _ => HostRule::Exact(s.into_bytes()),
        }
    }

    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostRule::Exact(h) => host.eq_ignore_ascii_case(h),
            HostRule::Suffix(sfx) => {
                host.len() > sfx.len()
                    && host
                        .get(host.len() - sfx.len()..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(sfx))
            }
        }
    }
}

#[derive(Default)]
struct PathRules {
    prefixes: Vec<Vec<u8>>,
    regexes: Vec<Regex>,
}

impl PathRules {
    fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.regexes.is_empty()
    }

    fn matches(&self, path: &[u8]) -> bool {
        self.prefixes.iter().any(|p| path.starts_with(p))
            || self.regexes.iter().any(|r| r.is_match(path))
    }
}

/// A token bucket shared by every worker, as the theoretical arrival time of the next request
/// (GCRA): one atomic, no lock.
struct RateLimiter {
    /// Nanoseconds between two requests at the rate.
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
    tat: AtomicU64,
}

impl RateLimiter {
    fn new(rate: f64, burst: u64) -> RateLimiter {
        let interval = (1e9 / rate).clamp(1.0, u64::MAX as f64 / 4.0) as u64;
        RateLimiter {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            tat: AtomicU64::new(0),
        }
    }

    /// Whether a request at capture time `now` fits. Workers may call with slightly
    /// out-of-order times: the earlier one counts from the later arrival time.
    fn admit(&self, now: Timestamp) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(self.interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(t) => tat = t,
            }
        }
    }
}

/// Registers `rebuilder_requests_filtered_total`, this room's counter, for
/// [`RequestFilter::new`] to count into.
pub fn register_metrics(registry: &mut Registry) -> Family<ReasonLabel, Counter> {
    let family = Family::default();
    registry.register(
        "rebuilder_requests_filtered",
        "Requests kept from every output on purpose, by reason (health_check, host, method, \
         path, sample, rate_limit)",
        family.clone(),
    );
    family
}

/// The filter of one run, shared by every worker.
pub struct RequestFilter {
    keep_health_checks: bool,
    user_agents: Vec<Vec<u8>>,
    cidrs: Vec<Cidr>,
    allow_hosts: Vec<HostRule>,
    deny_hosts: Vec<HostRule>,
    allow_methods: Vec<Vec<u8>>,
    deny_methods: Vec<Vec<u8>>,
    allow_paths: PathRules,
    deny_paths: PathRules,
    /// Below this (out of 2^53) a connection is kept; None: every one.
    sample_below: Option<u64>,
    sample_seed: u64,
    limiter: Option<RateLimiter>,
    counters: [Counter; 6],
}

impl RequestFilter {
    /// Counts into `family` (`rebuilder_requests_filtered_total`); every reason is created at
    /// once, so each shows in `/metrics` from the start.
    pub fn new(
        cfg: &FilterConfig,
        family: &Family<ReasonLabel, Counter>,
    ) -> Result<RequestFilter, FilterError> {
        let methods = |l: &[String]| -> Vec<Vec<u8>> {
            l.iter().map(|m| m.trim().as_bytes().to_vec()).collect()
        };
        let prefixes =
            |l: &[String]| -> Vec<Vec<u8>> { l.iter().map(|p| p.as_bytes().to_vec()).collect() };
        if !(0.0..=1.0).contains(&cfg.sample) {
            return Err(FilterError {
                key: "filter.sample".into(),
                message: format!("{} is not a fraction from 0 to 1", cfg.sample),
            });
        }
        let limiter = match cfg.rate_limit {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(RateLimiter::new(
                r,
                cfg.rate_limit_burst.unwrap_or(r.ceil() as u64).max(1),
            )),
            Some(r) => {
                return Err(FilterError {
                    key: "filter.rate_limit".into(),
                    message: format!("{r} is not a rate above 0 (leave it out for none)"),
                })
            }
        };
        if cfg.rate_limit_burst == Some(0) {
            return Err(FilterError {
                key: "filter.rate_limit_burst".into(),
                message: "must be at least 1".into(),
            });
        }
        let counters = FilterReason::ALL.map(|r| {
            family
                .get_or_create(&ReasonLabel { reason: r.as_str() })
                .clone()
        });
        Ok(RequestFilter {
            keep_health_checks: cfg.keep_health_checks,
            user_agents: prefixes(&cfg.health_check_user_agents),
            cidrs: cfg.health_check_cidrs.clone(),
            allow_hosts: cfg.allow_hosts.iter().map(|h| HostRule::new(h)).collect(),
            deny_hosts: cfg.deny_hosts.iter().map(|h| HostRule::new(h)).collect(),
            allow_methods: methods(&cfg.allow_methods),
            deny_methods: methods(&cfg.deny_methods),
            allow_paths: PathRules {
                prefixes: prefixes(&cfg.allow_paths),
                regexes: compile_regexes("filter.allow_path_regex", &cfg.allow_path_regex)?,
            },
            deny_paths: PathRules {
                prefixes: prefixes(&cfg.deny_paths),
                regexes: compile_regexes("filter.deny_path_regex", &cfg.deny_path_regex)?,
            },
            sample_below: (cfg.sample < 1.0).then_some((cfg.sample * (1u64 << 53) as f64) as u64),
            sample_seed: cfg.sample_seed,
            limiter,
            counters,
        })
    }

    /// True when `req` goes to the outputs; otherwise it is counted under its reason.
    pub fn admit(&self, req: &RebuiltRequest) -> bool {
        match self.reason(req) {
            None => true,
            Some(r) => {
                if let Some(c) = self.counters.get(r as usize) {
                    c.inc();
                }
                false
            }
        }
    }

    /// Requests filtered so far, by reason (only those that happened).
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        FilterReason::ALL
            .iter()
            .zip(&self.counters)
            .map(|(r, c)| (r.as_str(), c.get()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Why `req` is kept back, if it is. Consumes a rate-limit token when it would pass.
    pub fn reason(&self, req: &RebuiltRequest) -> Option<FilterReason> {
        if !self.keep_health_checks && self.is_health_check(req) {
            return Some(FilterReason::HealthCheck);
        }
        if !self.allow_hosts.is_empty() || !self.deny_hosts.is_empty() {
            let host = host_of(req);
            let any = |rules: &[HostRule]| host.is_some_and(|h| rules.iter().any(|r| r.matches(h)));
            if any(&self.deny_hosts) || (!self.allow_hosts.is_empty() && !any(&self.allow_hosts)) {
                return Some(FilterReason::Host);
            }
        }
        if !self.allow_methods.is_empty() || !self.deny_methods.is_empty() {
            let m = req.method_bytes();
            let any = |l: &[Vec<u8>]| l.iter().any(|x| x.eq_ignore_ascii_case(m));
            if any(&self.deny_methods)
                || (!self.allow_methods.is_empty() && !any(&self.allow_methods))
            {
                return Some(FilterReason::Method);
            }
        }
        if !self.allow_paths.is_empty() || !self.deny_paths.is_empty() {
            let path = path_of(req.target_bytes());
            if self.deny_paths.matches(path)
                || (!self.allow_paths.is_empty() && !self.allow_paths.matches(path))
            {
                return Some(FilterReason::Path);
            }
        }
        if let Some(below) = self.sample_below {
            if connection_hash(req.client, req.server, self.sample_seed) >> 11 >= below {
                return Some(FilterReason::Sample);
            }
        }
        if let Some(l) = &self.limiter {
            if !l.admit(req.last_ts) {
                return Some(FilterReason::RateLimit);
            }
        }
        None
    }

    fn is_health_check(&self, req: &RebuiltRequest) -> bool {
        if req.proxy.as_ref().is_some_and(|p| p.local) {
            return true;
        }
        if !self.cidrs.is_empty() {
            let ip = req.client_ip();
            if self.cidrs.iter().any(|c| c.contains(ip)) {
                return true;
            }
        }
        let head = req.head();
        // Most requests carry none of the prefixes anywhere in their head: one SIMD search each.
        if !self
            .user_agents
            .iter()
            .any(|ua| memchr::memmem::find(head, ua).is_some())
        {
            return false;
        }
        header_values(head, b"user-agent")
            .any(|v| self.user_agents.iter().any(|ua| v.starts_with(ua)))
    }
}

/// The values (leading whitespace trimmed) of every header named `name` (lowercase) in a head.
fn header_values<'a>(head: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.split(|&b| b == b'\n').skip(1).filter_map(move |line| {
        let colon = memchr::memchr(b':', line)?;
        let n = line.get(..colon)?;
        if !n.eq_ignore_ascii_case(name) {
            return None;
        }
        let v = line.get(colon + 1..)?;
        let start = v
            .iter()
            .position(|&c| c != b' ' && c != b'\t')
            .unwrap_or(v.len());
        v.get(start..)
    })
}

/// The host the request is for, without port or trailing dot: the Host header, else the
/// authority of an absolute-form target.
fn host_of(req: &RebuiltRequest) -> Option<&[u8]> {
    let raw = match req.host_bytes() {
        Some(h) => h,
        None => {
            let t = req.target_bytes();
            let after = memchr::memmem::find(t, b"://").map(|p| p + 3)?;
            let rest = t.get(after..)?;
            let end = rest
                .iter()
                .position(|&c| c == b'/' || c == b'?')
                .unwrap_or(rest.len());
            rest.get(..end)?
        }
    };
    let h = trim_ascii(raw);
    // `[v6]:port`, `[v6]`, `name:port`.
    let h = if h.first() == Some(&b'[') {
        let end = memchr::memchr(b']', h).map_or(h.len(), |p| p + 1);
        h.get(..end)?
    } else {
        match memchr::memrchr(b':', h) {
            Some(p) => h.get(..p)?,
            None => h,
        }
    };
    Some(h.strip_suffix(b".").unwrap_or(h))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    b.get(start..end).unwrap_or_default()
}

/// The path of a request target, as sent: up to `?` or `#`; for an absolute-form target, the
/// path after its authority (`/` when it has none); other forms (`*`, authority-form) whole.
pub fn path_of(target: &[u8]) -> &[u8] {
    let t = match memchr::memmem::find(target, b"://") {
        Some(p) if !target.starts_with(b"/") => {
            let rest = target.get(p + 3..).unwrap_or_default();
            match rest
                .iter()
                .position(|&c| c == b'/' || c == b'?' || c == b'#')
            {
                Some(s) if rest.get(s) == Some(&b'/') => rest.get(s..).unwrap_or_default(),
                _ => return b"/",
            }
        }
        _ => target,
    };
    let end = t
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(t.len());
    t.get(..end).unwrap_or_default()
}

/// A fixed hash of a connection's 4-tuple: FNV-1a over the addresses (IPv4 as mapped IPv6) and
/// ports, then the splitmix64 finaliser for an even spread. Defined here rather than taken from
/// `std`, whose hashers may change between releases: a capture must sample the same
/// connections with every build.
pub fn connection_hash(client: SocketAddr, server: SocketAddr, seed: u64) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for a in [client, server] {
        let ip = match a.ip().to_canonical() {
            IpAddr::V4(v) => v.to_ipv6_mapped(),
            IpAddr::V6(v) => v,
        };
        eat(&ip.octets());
        eat(&a.port().to_be_bytes());
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
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
}
