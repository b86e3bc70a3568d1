//! The settings' schema: every section and key of the TOML file as a serde structure, with its
//! default. What a key means is documented here, once; the CLI fills the same fields.
//!
//! Types and defaults only: parsing a file is `load`, checks across keys are `validate`, and
//! the memory arithmetic is `budget`. `deny_unknown_fields` on every section is what makes an
//! unknown key an error that names it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, Span};

/// How flows are told apart, which decides what happens when both ends of a connection are
/// mirrored (the same segments arrive under two outer sources and possibly two VNIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlowKeyMode {
    /// By the inner 4-tuple only: the two copies are one stream, the second copy's bytes are
    /// trimmed as retransmissions, and each request comes out once. The default.
    Inner,
    /// By VNI and inner 4-tuple: for deployments where different mirror sessions carry
    /// overlapping address spaces. Both copies of a doubly mirrored connection are then
    /// replayed: mirror only one side of a connection in this mode.
    Vni,
}

/// How the XDP program is attached (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Driver (native) mode where the interface allows it, else generic mode, saying why.
    Auto,
    /// Driver (native) mode only: fail if the driver refuses.
    Driver,
    /// Generic (skb) mode only: works on every interface, costs more per packet.
    Generic,
}

impl XdpModeSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpModeSetting::Auto => "auto",
            XdpModeSetting::Driver => "driver",
            XdpModeSetting::Generic => "generic",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The whole process's memory: its own fixed part, the capture's buffers, output queues,
    /// segments in flight and flows, split by [`Settings::memory_split`].
    pub memory_budget: ByteSize,
    pub log: LogSettings,
    pub capture: CaptureSettings,
    pub udp: UdpSettings,
    pub reassembly: ReassemblySettings,
    pub http: HttpSettings,
    pub upstream: UpstreamSettings,
    pub jsonl: JsonlSettings,
    pub status: StatusSettings,
    pub xdp: XdpSettings,
    /// How long outputs may take to drain at shutdown.
    pub drain_timeout: Span,
    pub proxy_protocol: ProxyProtocolSettings,
    pub health_checks: HealthCheckSettings,
    pub filter: FilterSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            memory_budget: ByteSize(DEFAULT_MEMORY_BUDGET),
            log: LogSettings::default(),
            capture: CaptureSettings::default(),
            udp: UdpSettings::default(),
            reassembly: ReassemblySettings::default(),
            http: HttpSettings::default(),
            upstream: UpstreamSettings::default(),
            jsonl: JsonlSettings::default(),
            status: StatusSettings::default(),
            xdp: XdpSettings::default(),
            drain_timeout: Span(Duration::from_secs(10)),
            proxy_protocol: ProxyProtocolSettings::default(),
            health_checks: HealthCheckSettings::default(),
            filter: FilterSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter: `info`, `rebuilder=debug`, ...
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    /// UDP destination ports that carry VXLAN.
    pub vxlan_ports: Vec<u16>,
    /// Only these VNIs (empty: all).
    pub vni_allow: Vec<u32>,
    /// Never these VNIs.
    pub vni_deny: Vec<u32>,
    /// Ports the mirrored servers listen on: decides the client side of a connection picked up
    /// without its SYN. Empty: the content decides (a request line vs. a status line).
    pub server_ports: Vec<u16>,
    pub flow_key: FlowKeyMode,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            vxlan_ports: vec![4789],
            vni_allow: Vec::new(),
            vni_deny: Vec::new(),
            server_ports: Vec::new(),
            flow_key: FlowKeyMode::Inner,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpSettings {
    pub listen: SocketAddr,
    /// Sockets bound with SO_REUSEPORT, one receiving thread each; 0 = one per core.
    pub sockets: usize,
    /// SO_RCVBUF asked for each socket (the kernel holds up to twice it); absent: derived from
    /// `memory_budget` (see [`Settings::memory_split`]).
    pub recv_buffer: Option<ByteSize>,
    /// Datagrams per recvmmsg call.
    pub batch: usize,
}

impl Default for UdpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4789)),
            sockets: 0,
            recv_buffer: None,
            batch: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReassemblySettings {
    /// Reassembly workers (threads); 0 = one per core but one (at least one).
    pub workers: usize,
    /// How long a hole in a stream waits for its missing segment.
    pub reorder_timeout: Span,
    /// A flow with no segment for this long is closed.
    pub idle_timeout: Span,
    /// Out-of-order bytes one stream may hold before its oldest hole is skipped.
    pub max_flow_buffer: ByteSize,
    /// Segments further than this beyond the next expected byte are out of window.
    pub max_window: ByteSize,
    /// The mirrored servers accept data on a SYN (TCP Fast Open): deliver it. Off: it is
    /// dropped, counted, as a server without Fast Open drops it.
    pub syn_data: bool,
}

impl Default for ReassemblySettings {
    fn default() -> Self {
        Self {
            workers: 0,
            reorder_timeout: Span(Duration::from_secs(1)),
            idle_timeout: Span(Duration::from_secs(60)),
            max_flow_buffer: ByteSize(4 << 20),
            max_window: ByteSize(8 << 20),
            syn_data: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub max_head_bytes: ByteSize,
    pub max_headers: usize,
    pub max_body_bytes: ByteSize,
    /// Header stating the original body length of a request whose body was over the limit.
    pub original_length_header: String,
    /// HTTP/2: largest HPACK dynamic table a client may ask for (the server's
    /// SETTINGS_HEADER_TABLE_SIZE).
    pub h2_max_table_size: ByteSize,
    /// HTTP/2: streams one connection may have open at once.
    pub h2_max_streams: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        let d = crate::http::HttpLimits::default();
        Self {
            max_head_bytes: ByteSize(d.max_head_bytes as u64),
            max_headers: d.max_headers,
            max_body_bytes: ByteSize(d.max_body_bytes),
            original_length_header: d.original_length_header,
            h2_max_table_size: ByteSize(d.h2_max_table_size as u64),
            h2_max_streams: d.h2_max_streams,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// `http://HOST:PORT` of the WAF; absent: no replay.
    pub url: Option<String>,
    pub pool_size: usize,
    pub connect_timeout: Span,
    pub response_timeout: Span,
    pub queue_requests: usize,
    /// Bytes the queue may hold; absent: derived from `memory_budget` (see
    /// [`Settings::memory_split`]).
    pub queue_bytes: Option<ByteSize>,
    /// Add the client IP in this header (appended to an existing one, as proxies do).
    pub client_ip_header: Option<String>,
    /// Add the VNI in this header.
    pub vni_header: Option<String>,
    /// `http1` (default): HTTP/2 streams' requests replayed as HTTP/1.1; `h2c`: over HTTP/2.
    pub protocol: crate::output::UpstreamProtocol,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            connect_timeout: Span(Duration::from_secs(2)),
            response_timeout: Span(Duration::from_secs(10)),
            queue_requests: 10_000,
            queue_bytes: None,
            client_ip_header: None,
            vni_header: None,
            protocol: crate::output::UpstreamProtocol::Http1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlSettings {
    /// File to append JSON lines to, or `-` for stdout; absent: no JSON output.
    pub path: Option<PathBuf>,
    pub queue_requests: usize,
    /// As `upstream.queue_bytes`.
    pub queue_bytes: Option<ByteSize>,
}

impl Default for JsonlSettings {
    fn default() -> Self {
        Self {
            path: None,
            queue_requests: 10_000,
            queue_bytes: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// Address of the status server (`/livez`, `/readyz`, `/healthz`, `/metrics`). `run`
    /// serves it by default; `replay` only when set.
    pub listen: Option<SocketAddr>,
    /// A pipeline component silent for longer than this makes `/livez` (and so `/readyz` and
    /// `/healthz`) fail.
    pub max_silence: Span,
    /// `run` only: no packet captured for longer than this makes `/readyz` and `/healthz` fail
    /// (counted from the last packet, so not before the first one); `/livez` does not look at
    /// traffic. Absent: idling is healthy.
    pub max_idle: Option<Span>,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_silence: Span(Duration::from_secs(5)),
            max_idle: None,
        }
    }
}

/// The XDP input of `run` (`--iface`). VXLAN ports and the VNI lists come from `[capture]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpSettings {
    /// Interface receiving the mirrored traffic; set: `run` captures through XDP, not UDP.
    pub iface: Option<String>,
    pub mode: XdpModeSetting,
    /// Ring buffer between the XDP program and userspace: a power of two, at least a page;
    /// absent: derived from `memory_budget` (see [`Settings::memory_split`]).
    pub ring_size: Option<ByteSize>,
    /// Consumed packets still go to the stack (debugging; the kernel then also sees the
    /// VXLAN datagrams).
    pub pass_consumed: bool,
    /// Inner TCP ports to keep (a segment is kept when either of its ports is listed); empty
    /// keeps all.
    pub ports: Vec<u16>,
}

/// Largest ring buffer accepted: the map size is a `u32` and the kernel wants a power of two.
pub const XDP_RING_MAX: u64 = 1 << 30;
/// Smallest ring buffer accepted: one page.
pub const XDP_RING_MIN: u64 = 4096;

impl Default for XdpSettings {
    fn default() -> Self {
        Self {
            iface: None,
            mode: XdpModeSetting::Auto,
            ring_size: None,
            pass_consumed: false,
            ports: Vec::new(),
        }
    }
}

/// PROXY protocol at the start of client streams (see `proxy`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyProtocolSettings {
    /// For server ports in neither list: `auto` detects and strips a header.
    pub mode: crate::proxy::ProxyMode,
    /// Server ports whose load balancer always sends a header.
    pub require_ports: Vec<u16>,
    /// Server ports without proxy protocol: a header there is the client's own bytes.
    pub forbid_ports: Vec<u16>,
}

/// Load balancer health checks (see `filter`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSettings {
    /// Replay health checks like any request instead of filtering them.
    pub keep: bool,
    /// User-Agent prefixes of health checkers.
    pub user_agents: Vec<String>,
    /// Client networks whose requests are health checks (e.g. the load balancer's subnets).
    pub source_cidrs: Vec<crate::filter::Cidr>,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            keep: false,
            user_agents: vec![crate::filter::ELB_HEALTH_CHECKER.into()],
            source_cidrs: Vec::new(),
        }
    }
}

/// Which requests reach the outputs (see `filter`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
    pub allow_methods: Vec<String>,
    pub deny_methods: Vec<String>,
    /// Path prefixes.
    pub allow_paths: Vec<String>,
    pub deny_paths: Vec<String>,
    /// Regexes on the path.
    pub allow_path_regex: Vec<String>,
    pub deny_path_regex: Vec<String>,
    /// Fraction of connections kept, whole (0 to 1).
    pub sample: f64,
    /// Picks another subset of connections at the same rate.
    pub sample_seed: u64,
    /// Requests per second (capture time) let through, all workers together; absent: no limit.
    pub rate_limit: Option<f64>,
    /// Requests let through at once; absent: one second's worth.
    pub rate_limit_burst: Option<u64>,
}

impl Default for FilterSettings {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            allow_methods: Vec::new(),
            deny_methods: Vec::new(),
            allow_paths: Vec::new(),
            deny_paths: Vec::new(),
            allow_path_regex: Vec::new(),
            deny_path_regex: Vec::new(),
            sample: 1.0,
            sample_seed: 0,
            rate_limit: None,
            rate_limit_burst: None,
        }
    }
}

/// Default status address for `run` when none is configured.
pub const DEFAULT_STATUS_ADDR: &str = "0.0.0.0:9479";

/// Default `memory_budget`: 256 MiB for the whole process.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;
