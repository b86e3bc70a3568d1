//! What the operator configures for the upstream output, and where the upstream is: the URL
//! parsed into host and port (plain http only, no path), with validation of the settings that
//! must not be zero. Pure data and parsing; no I/O.

use std::time::Duration;

use crate::output::headers::HeaderAdds;
use crate::output::{OutputError, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_REQUESTS};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `http://HOST[:PORT][/]`. HOST may be a name (resolved at every connect, so a load
    /// balancer's changing addresses are followed), an IPv4 address or a bracketed IPv6 one.
    pub url: String,
    /// Concurrent connections (one task each).
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// From the start of writing a request to the end of its response.
    pub response_timeout: Duration,
    pub queue_requests: usize,
    pub queue_bytes: usize,
    /// Name of the header carrying the client IP (appended proxy-style); None: not added.
    pub client_ip_header: Option<String>,
    /// Name of the header carrying the VNI; None: not added.
    pub vni_header: Option<String>,
    /// How requests rebuilt from HTTP/2 streams are replayed (HTTP/1.x requests always go
    /// byte-exact over HTTP/1.1).
    pub protocol: UpstreamProtocol,
}

/// How HTTP/2 streams' requests reach the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// As their HTTP/1.1 rendering, over the byte-exact keep-alive pool.
    #[default]
    Http1,
    /// Over an HTTP/2 connection with prior knowledge (h2c), fields and trailers as HTTP/2
    /// carries them, for a WAF that listens for HTTP/2.
    H2c,
}

impl UpstreamConfig {
    pub const DEFAULT_POOL_SIZE: usize = 16;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            queue_requests: DEFAULT_QUEUE_REQUESTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            client_ip_header: None,
            vni_header: None,
            protocol: UpstreamProtocol::Http1,
        }
    }

    pub(super) fn header_adds(&self) -> HeaderAdds {
        HeaderAdds {
            client_ip: self.client_ip_header.clone(),
            vni: self.vni_header.clone(),
        }
    }

    pub(crate) fn validate(&self) -> Result<UpstreamAddr, OutputError> {
        let addr = UpstreamAddr::parse(&self.url)?;
        for (what, v) in [
            ("upstream pool_size", self.pool_size),
            ("upstream queue_requests", self.queue_requests),
            ("upstream queue_bytes", self.queue_bytes),
        ] {
            if v == 0 {
                return Err(OutputError::Zero { what });
            }
        }
        for (what, d) in [
            ("upstream connect_timeout", self.connect_timeout),
            ("upstream response_timeout", self.response_timeout),
        ] {
            if d.is_zero() {
                return Err(OutputError::Zero { what });
            }
        }
        self.header_adds().validate()?;
        Ok(addr)
    }
}

/// Where the upstream is, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

impl UpstreamAddr {
    pub fn parse(url: &str) -> Result<Self, OutputError> {
        let invalid = |reason: &str| OutputError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected http://HOST:PORT"))?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(OutputError::Https {
                url: url.to_string(),
            });
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid("the scheme must be http"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") {
            return Err(invalid(
                "a path, query or fragment is not supported: requests are replayed with their own targets",
            ));
        }
        if authority.contains('@') {
            return Err(invalid("user information is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("invalid IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("unexpected text after the IPv6 address"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(invalid("an IPv6 address must be in brackets"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(invalid("invalid port")),
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
