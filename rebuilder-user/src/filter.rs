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
//!
//! Depends only on the rebuilt request and the metrics' label set; registers its own counter
//! ([`register_metrics`]). `rate` is the rate limit's token bucket.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use regex::bytes::Regex;

use crate::metrics::ReasonLabel;
use crate::request::RebuiltRequest;

mod rate;

use rate::RateLimiter;

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
mod tests;
