//! Settings: one structure, filled from defaults, then the TOML file (`--config`), then flags.
//!
//! Every key of the file has a flag of the same meaning; unknown keys and bad values are errors
//! that name the key (`reassembly.idle_timeout: invalid duration "5 parsecs"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

/// A size in bytes, written as an integer or with a unit: `64MiB`, `512 KiB`, `16M`, `1G`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (e.g. 65536, 64KiB, 16MiB)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "invalid size unit in {s:?} (use B, KiB, MiB or GiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written with a unit: `500ms`, `2s`, `1m`, `1h`; a bare integer means seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 2s, 1m)"))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "invalid duration unit in {s:?} (use ms, s, m or h)"
                ))
            }
        };
        Ok(Span(d))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Span(Duration::from_secs(n))),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

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
}

impl Default for ReassemblySettings {
    fn default() -> Self {
        Self {
            workers: 0,
            reorder_timeout: Span(Duration::from_secs(1)),
            idle_timeout: Span(Duration::from_secs(60)),
            max_flow_buffer: ByteSize(4 << 20),
            max_window: ByteSize(8 << 20),
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
/// Smallest `memory_budget` accepted: the process's own part, a capture's buffers and room to
/// work in.
pub const MIN_MEMORY_BUDGET: u64 = 32 << 20;
/// The capture's kernel buffers (the XDP ring, the UDP sockets' receive buffers) get a quarter of
/// the budget when their sizes are not set.
pub const CAPTURE_SHARE_DIVISOR: u64 = 4;
/// The largest ring or receive buffer derived from the budget: 64 MiB absorbs a burst of
/// 0.5 s at 1 Gbit/s.
pub const MAX_DERIVED_CAPTURE_BUFFER: u64 = 64 << 20;
/// Smallest derived receive buffer per socket.
pub const MIN_DERIVED_RECV_BUFFER: u64 = 256 << 10;
/// What is left after the process and the capture (the working memory) must be at least this
/// fraction of the budget (a quarter), or the settings are refused.
pub const WORKING_MIN_DIVISOR: u64 = 4;
/// The output queues' share of the working memory when none is set explicitly: a quarter,
/// split evenly among the configured outputs.
pub const QUEUE_SHARE_DIVISOR: u64 = 4;
/// Explicit queue sizes must leave flows and segments in flight at least this fraction of the
/// working memory (a half).
pub const FLOW_SHARE_MIN_DIVISOR: u64 = 2;
/// Segments on their way from capture to the workers (queued, holding the buffers their
/// payloads are slices of) get an eighth of the working memory, split evenly among the workers.
pub const IN_FLIGHT_SHARE_DIVISOR: u64 = 8;

/// What the process holds before it buffers anything: its code and libraries paged in, the
/// runtimes', the allocator's and the metrics' own structures, the outputs' connections. Measured
/// at 8 to 10 MiB for a release build under load, 14 to 17 MiB for a debug build, whose code is
/// four times larger (`cargo xtask hostile`, README *Memory*).
pub const PROCESS_BASE: u64 = if cfg!(debug_assertions) {
    20 << 20
} else {
    12 << 20
};
/// What each thread adds: its stack as far as it is touched, and the allocator's pages it keeps
/// for its own size classes.
pub const PROCESS_PER_THREAD: u64 = 256 << 10;
/// Threads besides the workers and the capture's: main, the outputs' and status runtime (two),
/// and one for the progress line or the signal handling.
pub const OTHER_THREADS: u64 = 4;
/// What each upstream connection may hold: its response buffer, a 64 KiB head and a 16 KiB
/// read (`output::upstream`), up to twice that as it grows.
pub const UPSTREAM_CONNECTION_BYTES: u64 = 160 << 10;

/// Which input a run reads: each holds different buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// `replay`: a capture file, read through a pool of chunks.
    Pcap,
    /// `run --udp`: VXLAN datagrams from this many sockets.
    Udp { sockets: usize },
    /// `run --iface`: the XDP program's ring buffer.
    Xdp,
}

/// How `memory_budget` is divided, in bytes. Deterministic: the same settings always give the
/// same split.
///
/// - The process: [`PROCESS_BASE`], [`PROCESS_PER_THREAD`] for each thread and
///   [`UPSTREAM_CONNECTION_BYTES`] for each upstream connection.
/// - The capture: the XDP ring (`xdp.ring_size`, mapped into the process, resident once the
///   kernel has written all of it), or the UDP sockets' receive buffers (kernel memory, up to
///   twice `udp.recv_buffer` each, charged to the service's cgroup) and the readers' batch
///   buffers, or the chunks a capture file is read in. Sizes not set take a quarter of the
///   budget between them.
/// - The output queues' overhead: each request a queue may hold has a header beside its bytes,
///   and the allocator rounds its bytes up (by up to a quarter).
/// - The rest is the working memory, which must be at least a quarter of the budget (an error
///   names the keys that take the rest). Each configured output's queue gets its
///   `queue_bytes` when set, else `working / 4 / (number of configured outputs)`; together at
///   most half of it (an error names the keys). Segments in flight get an eighth, divided
///   evenly among the workers; flows get the rest, divided evenly among the workers.
/// - An output that is not configured holds nothing and gets nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySplit {
    /// The process's own part.
    pub process: u64,
    /// The capture's buffers, all of them.
    pub capture: u64,
    /// `SO_RCVBUF` to ask for on each UDP socket (0 for other inputs).
    pub recv_buffer: u64,
    /// The XDP ring buffer's size (0 for other inputs).
    pub xdp_ring: u64,
    /// What requests in the queues hold beyond the bytes the queues count: each request's
    /// header (for as many requests as the queues may hold) and the allocator's rounding of its
    /// bytes (up to a quarter of them).
    pub queue_overhead: u64,
    /// Bytes of the upstream queue (0 without an upstream).
    pub upstream_queue: u64,
    /// Bytes of the JSON lines queue (0 without JSON lines).
    pub jsonl_queue: u64,
    /// Bytes of segments queued for all workers together.
    pub in_flight: u64,
    /// Bytes all flows of all workers may hold together, their tables included.
    pub flows: u64,
}

impl MemorySplit {
    /// What the whole split adds up to: the budget.
    pub fn total(&self) -> u64 {
        self.process
            + self.capture
            + self.queue_overhead
            + self.upstream_queue
            + self.jsonl_queue
            + self.in_flight
            + self.flows
    }
}

/// A size for messages: `12MiB`, `1.5MiB`, `300KiB`.
fn human(b: u64) -> String {
    if b >= 1 << 20 {
        let m = b as f64 / f64::from(1u32 << 20);
        if b.is_multiple_of(1 << 20) {
            format!("{m:.0}MiB")
        } else {
            format!("{m:.1}MiB")
        }
    } else if b >= 1 << 10 {
        format!("{}KiB", b.div_ceil(1 << 10))
    } else {
        format!("{b}B")
    }
}

/// The largest power of two at most `n` (at least 1).
fn pow2_floor(n: u64) -> u64 {
    if n == 0 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

impl Settings {
    /// Reads a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let settings: Settings = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // toml's message repeats the source excerpt; keep the first line, the cause.
            let inner = e.into_inner().to_string();
            let message = inner
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, message: impl Into<String>) -> ConfigError {
            ConfigError::Value {
                key: key.into(),
                message: message.into(),
            }
        }
        if self.capture.vxlan_ports.is_empty() {
            return Err(bad("capture.vxlan_ports", "at least one port is needed"));
        }
        if let Some(v) = self
            .capture
            .vni_allow
            .iter()
            .chain(&self.capture.vni_deny)
            .find(|v| **v > 0xFF_FFFF)
        {
            return Err(bad(
                "capture.vni_allow/vni_deny",
                format!("VNI {v} is over 16777215 (24 bits)"),
            ));
        }
        if self.udp.batch == 0 || self.udp.batch > 1024 {
            return Err(bad("udp.batch", "must be 1..=1024"));
        }
        if self.reassembly.max_flow_buffer.bytes() == 0 {
            return Err(bad("reassembly.max_flow_buffer", "must be above 0"));
        }
        if self.memory_budget < ByteSize(MIN_MEMORY_BUDGET) {
            return Err(bad(
                "memory_budget",
                format!("must be at least {}", ByteSize(MIN_MEMORY_BUDGET)),
            ));
        }
        // The queues' keys and the budget's minimum, whatever the input; `run` checks its own
        // capture's buffers too (`Cli::settings`), and the pipeline splits for the input it
        // opens.
        self.memory_split(CaptureKind::Pcap)?;
        if self.reassembly.idle_timeout.0.is_zero() {
            return Err(bad("reassembly.idle_timeout", "must be above 0"));
        }
        if self.http.max_head_bytes < ByteSize(64) {
            return Err(bad("http.max_head_bytes", "must be at least 64 bytes"));
        }
        if self.http.max_headers == 0 {
            return Err(bad("http.max_headers", "must be above 0"));
        }
        // A table this side must mirror, charged per connection: 1 MiB is far above what any
        // server advertises (4 KiB to 64 KiB).
        if self.http.h2_max_table_size > ByteSize(1 << 20) {
            return Err(bad("http.h2_max_table_size", "must be at most 1MiB"));
        }
        if self.http.h2_max_streams == 0 {
            return Err(bad("http.h2_max_streams", "must be above 0"));
        }
        check_header_name(
            "http.original_length_header",
            &self.http.original_length_header,
        )?;
        if self.upstream.pool_size == 0 {
            return Err(bad("upstream.pool_size", "must be above 0"));
        }
        if self.upstream.queue_requests == 0 || self.jsonl.queue_requests == 0 {
            return Err(bad(
                "upstream.queue_requests/jsonl.queue_requests",
                "must be above 0",
            ));
        }
        if let Some(h) = &self.upstream.client_ip_header {
            check_header_name("upstream.client_ip_header", h)?;
        }
        if let Some(h) = &self.upstream.vni_header {
            check_header_name("upstream.vni_header", h)?;
        }
        if let Some(url) = &self.upstream.url {
            crate::output::upstream::UpstreamAddr::parse(url)
                .map_err(|e| bad("upstream.url", e.to_string()))?;
        }
        if let Some(iface) = &self.xdp.iface {
            check_iface_name("xdp.iface", iface)?;
        }
        if self.status.max_idle.is_some_and(|s| s.0.is_zero()) {
            return Err(bad(
                "status.max_idle",
                "must be above 0 (leave it out for none)",
            ));
        }
        if let Some(p) = self
            .proxy_protocol
            .require_ports
            .iter()
            .find(|p| self.proxy_protocol.forbid_ports.contains(p))
        {
            return Err(bad(
                "proxy_protocol.require_ports/forbid_ports",
                format!("port {p} is in both lists"),
            ));
        }
        for (key, list) in [
            ("health_checks.user_agents", &self.health_checks.user_agents),
            ("filter.allow_hosts", &self.filter.allow_hosts),
            ("filter.deny_hosts", &self.filter.deny_hosts),
            ("filter.allow_paths", &self.filter.allow_paths),
            ("filter.deny_paths", &self.filter.deny_paths),
        ] {
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(bad(key, "entries must not be empty"));
            }
        }
        for (key, list) in [
            ("filter.allow_methods", &self.filter.allow_methods),
            ("filter.deny_methods", &self.filter.deny_methods),
        ] {
            if let Some(m) = list.iter().find(|m| {
                m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            }) {
                return Err(bad(key, format!("{m:?} is not a method")));
            }
        }
        // The filter's own checks (fractions, rates, regexes) name their keys.
        crate::filter::RequestFilter::new(
            &self.filter_config(),
            &prometheus_client::metrics::family::Family::default(),
        )
        .map_err(|e| bad(&e.key, e.message))?;
        if let Some(size) = self.xdp.ring_size {
            let ring = size.bytes();
            if !ring.is_power_of_two() || !(XDP_RING_MIN..=XDP_RING_MAX).contains(&ring) {
                return Err(bad(
                    "xdp.ring_size",
                    format!(
                        "{} is not a power of two from {} to {}",
                        size,
                        ByteSize(XDP_RING_MIN),
                        ByteSize(XDP_RING_MAX)
                    ),
                ));
            }
        }
        if self.udp.recv_buffer.is_some_and(|b| b.bytes() == 0) {
            return Err(bad(
                "udp.recv_buffer",
                "must be above 0 (leave it out to derive it from memory_budget)",
            ));
        }
        Ok(())
    }

    /// Reassembly workers: `reassembly.workers`, or one per core but one.
    pub fn workers(&self) -> usize {
        if self.reassembly.workers == 0 {
            default_workers()
        } else {
            self.reassembly.workers
        }
    }

    /// UDP sockets (and reading threads): `udp.sockets`, or one per core.
    pub fn udp_sockets(&self) -> usize {
        if self.udp.sockets == 0 {
            cores()
        } else {
            self.udp.sockets
        }
    }

    /// What `run` reads: XDP when an interface is set, else UDP.
    pub fn run_capture(&self) -> CaptureKind {
        if self.xdp.iface.is_some() {
            CaptureKind::Xdp
        } else {
            CaptureKind::Udp {
                sockets: self.udp_sockets(),
            }
        }
    }

    /// The XDP ring's size: `xdp.ring_size`, else derived from the budget (see
    /// [`MemorySplit`]).
    pub fn xdp_ring_bytes(&self) -> u64 {
        match self.memory_split(CaptureKind::Xdp) {
            Ok(split) => split.xdp_ring,
            Err(_) => self.xdp.ring_size.map_or(XDP_RING_MIN, ByteSize::bytes),
        }
    }

    /// Splits `memory_budget` for a run reading `capture` (see [`MemorySplit`]). Settings whose
    /// explicit sizes do not fit are refused with an error naming the keys.
    pub fn memory_split(&self, capture: CaptureKind) -> Result<MemorySplit, ConfigError> {
        let budget = self.memory_budget.bytes();
        let workers = self.workers() as u64;
        let upstream = self.upstream.url.is_some();
        let jsonl = self.jsonl.path.is_some();
        let header = crate::request::QUEUED_REQUEST_BYTES as u64;
        let queue_overhead = u64::from(upstream) * self.upstream.queue_requests as u64 * header
            + u64::from(jsonl) * self.jsonl.queue_requests as u64 * header;
        let capture_threads = match capture {
            CaptureKind::Udp { sockets } => sockets.max(1) as u64,
            CaptureKind::Pcap | CaptureKind::Xdp => 1,
        };
        let threads = workers + capture_threads + OTHER_THREADS;
        let connections = if upstream {
            self.upstream.pool_size as u64
        } else {
            0
        };
        let process =
            PROCESS_BASE + PROCESS_PER_THREAD * threads + UPSTREAM_CONNECTION_BYTES * connections;
        // A kernel buffer not set takes a quarter of the budget, halved while that would leave
        // less than a quarter to work in (small budgets).
        let fit = |start: u64, min: u64, bytes: &dyn Fn(u64) -> u64| {
            let mut v = start.max(min);
            while v / 2 >= min
                && process + queue_overhead + bytes(v) + budget / WORKING_MIN_DIVISOR > budget
            {
                v /= 2;
            }
            v
        };
        let share = budget / CAPTURE_SHARE_DIVISOR;
        let (capture_bytes, recv_buffer, xdp_ring, capture_keys) = match capture {
            CaptureKind::Pcap => (crate::capture::pcap::POOL_BYTES as u64, 0, 0, ""),
            CaptureKind::Udp { sockets } => {
                let sockets = sockets.max(1) as u64;
                let pool = sockets * crate::capture::udp::pool_bytes(self.udp.batch) as u64;
                // The kernel holds up to twice what is asked for (SO_RCVBUF's doubling).
                let bytes = |recv: u64| sockets * 2 * recv + pool;
                let recv = match self.udp.recv_buffer {
                    Some(b) => b.bytes(),
                    None => fit(
                        (share / sockets / 2).min(MAX_DERIVED_CAPTURE_BUFFER),
                        MIN_DERIVED_RECV_BUFFER,
                        &bytes,
                    ),
                };
                (
                    bytes(recv),
                    recv,
                    0,
                    "udp.recv_buffer, udp.sockets, udp.batch, ",
                )
            }
            CaptureKind::Xdp => {
                let bytes = |ring: u64| ring + crate::capture::xdp::POOL_BYTES as u64;
                let ring = match self.xdp.ring_size {
                    Some(b) => b.bytes(),
                    None => fit(
                        pow2_floor(share.min(MAX_DERIVED_CAPTURE_BUFFER)),
                        XDP_RING_MIN,
                        &bytes,
                    ),
                };
                (bytes(ring), 0, ring, "xdp.ring_size, ")
            }
        };
        let fixed = process + capture_bytes + queue_overhead;
        let working = budget.saturating_sub(fixed);
        if working < budget / WORKING_MIN_DIVISOR {
            let mut keys = capture_keys.to_string();
            if upstream {
                keys.push_str("upstream.queue_requests, upstream.pool_size, ");
            }
            if jsonl {
                keys.push_str("jsonl.queue_requests, ");
            }
            keys.push_str("reassembly.workers, memory_budget");
            return Err(ConfigError::Value {
                key: keys,
                message: format!(
                    "memory_budget ({}) is too small for this run: the process takes {} ({threads} \
                     threads, {connections} upstream connections), the capture's buffers {}, the \
                     output queues' request headers {}, \
                     which leaves {} where at least a quarter of the budget ({}) is needed for \
                     queues, segments and flows: raise memory_budget, or lower what takes it",
                    self.memory_budget,
                    human(process),
                    human(capture_bytes),
                    human(queue_overhead),
                    human(working),
                    human(budget / WORKING_MIN_DIVISOR),
                ),
            });
        }

        let configured = u64::from(upstream) + u64::from(jsonl);
        let share = working / QUEUE_SHARE_DIVISOR / configured.max(1);
        let queue = |on: bool, explicit: Option<ByteSize>, key: &str| match (on, explicit) {
            (false, _) => Ok(0),
            (true, None) => Ok(share),
            (true, Some(ByteSize(0))) => Err(ConfigError::Value {
                key: key.into(),
                message: "must be above 0 (leave it out to derive it from memory_budget)".into(),
            }),
            (true, Some(b)) => Ok(b.bytes()),
        };
        let upstream_queue = queue(upstream, self.upstream.queue_bytes, "upstream.queue_bytes")?;
        let jsonl_queue = queue(jsonl, self.jsonl.queue_bytes, "jsonl.queue_bytes")?;
        let queues = upstream_queue.saturating_add(jsonl_queue);
        let max_queues = working - working / FLOW_SHARE_MIN_DIVISOR;
        if queues + queues / 4 > max_queues {
            return Err(ConfigError::Value {
                key: "upstream.queue_bytes + jsonl.queue_bytes".into(),
                message: format!(
                    "the output queues ({} + {}, and a quarter more for the allocator's \
                     rounding) may take at most half of what memory_budget ({}) leaves after the \
                     process and the capture ({}), the rest is for flows: lower them or raise \
                     memory_budget",
                    human(upstream_queue),
                    human(jsonl_queue),
                    self.memory_budget,
                    human(working),
                ),
            });
        }
        let rounding = queues / 4;
        let in_flight = working / IN_FLIGHT_SHARE_DIVISOR;
        Ok(MemorySplit {
            process,
            capture: capture_bytes,
            recv_buffer,
            xdp_ring,
            queue_overhead: queue_overhead + rounding,
            upstream_queue,
            jsonl_queue,
            in_flight,
            flows: working - queues - rounding - in_flight,
        })
    }

    pub fn proxy_policy(&self) -> crate::proxy::ProxyPolicy {
        let sorted = |v: &[u16]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        crate::proxy::ProxyPolicy {
            default: self.proxy_protocol.mode,
            require: sorted(&self.proxy_protocol.require_ports),
            forbid: sorted(&self.proxy_protocol.forbid_ports),
        }
    }

    pub fn filter_config(&self) -> crate::filter::FilterConfig {
        let (h, f) = (&self.health_checks, &self.filter);
        crate::filter::FilterConfig {
            keep_health_checks: h.keep,
            health_check_user_agents: h.user_agents.clone(),
            health_check_cidrs: h.source_cidrs.clone(),
            allow_hosts: f.allow_hosts.clone(),
            deny_hosts: f.deny_hosts.clone(),
            allow_methods: f.allow_methods.clone(),
            deny_methods: f.deny_methods.clone(),
            allow_paths: f.allow_paths.clone(),
            deny_paths: f.deny_paths.clone(),
            allow_path_regex: f.allow_path_regex.clone(),
            deny_path_regex: f.deny_path_regex.clone(),
            sample: f.sample,
            sample_seed: f.sample_seed,
            rate_limit: f.rate_limit,
            rate_limit_burst: f.rate_limit_burst,
        }
    }

    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            max_head_bytes: self.http.max_head_bytes.as_usize(),
            max_headers: self.http.max_headers,
            max_body_bytes: self.http.max_body_bytes.bytes(),
            original_length_header: self.http.original_length_header.clone(),
            h2_max_table_size: self.http.h2_max_table_size.as_usize(),
            h2_max_streams: self.http.h2_max_streams,
        }
    }

    pub fn stream_config(&self) -> crate::reassembly::StreamConfig {
        crate::reassembly::StreamConfig {
            reorder_timeout_ns: self.reassembly.reorder_timeout.0.as_nanos() as u64,
            max_buffered: self.reassembly.max_flow_buffer.as_usize(),
            max_window: self.reassembly.max_window.bytes(),
        }
    }
}

/// A header name must be an RFC 9110 token, or the inserted line would corrupt the request.
fn check_header_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Value {
            key: key.into(),
            message: format!("{name:?} is not a valid header name"),
        })
    }
}

/// An interface name as the kernel accepts it: 1 to 15 bytes, no `/`, no whitespace.
fn check_iface_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Value {
            key: key.into(),
            message: format!(
                "{name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
            ),
        })
    }
}

/// Number of threads to use when a setting says 0.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reassembly workers when `reassembly.workers` is 0: one per core but one, which the capture
/// (and the outputs) need. On the 2-vCPU instances this targets (c5n.large), a second worker
/// only contends with the capture thread: offline replay measured 1.9M packets/s with one
/// worker against 1.5M with two.
pub fn default_workers() -> usize {
    cores().saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!("64MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("512 KiB".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
        assert_eq!("1g".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
        assert_eq!("100".parse::<ByteSize>(), Ok(ByteSize(100)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999999999G".parse::<ByteSize>().is_err());
        assert_eq!(
            "500ms".parse::<Span>(),
            Ok(Span(Duration::from_millis(500)))
        );
        assert_eq!("2m".parse::<Span>(), Ok(Span(Duration::from_secs(120))));
        assert_eq!("3".parse::<Span>(), Ok(Span(Duration::from_secs(3))));
        assert!("1 fortnight".parse::<Span>().is_err());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Settings::default());
    }

    #[test]
    fn a_full_file_parses() {
        let s = parse(
            r#"
            drain_timeout = "5s"
            memory_budget = "512MiB"
            [log]
            format = "json"
            [capture]
            vxlan_ports = [4789, 8472]
            vni_allow = [7, 8]
            server_ports = [80, 8080]
            flow_key = "vni"
            [udp]
            listen = "127.0.0.1:4789"
            recv_buffer = "16MiB"
            [reassembly]
            workers = 2
            reorder_timeout = "250ms"
            [http]
            max_body_bytes = "1MiB"
            [upstream]
            url = "http://10.0.0.5:8080"
            client_ip_header = "X-Forwarded-For"
            vni_header = "X-Mirror-VNI"
            [jsonl]
            path = "-"
            [status]
            listen = "0.0.0.0:9479"
            "#,
        )
        .unwrap();
        assert_eq!(s.capture.vxlan_ports, vec![4789, 8472]);
        assert_eq!(s.capture.flow_key, FlowKeyMode::Vni);
        assert_eq!(s.udp.recv_buffer, Some(ByteSize(16 << 20)));
        assert_eq!(
            s.reassembly.reorder_timeout,
            Span(Duration::from_millis(250))
        );
        assert_eq!(s.http.max_body_bytes, ByteSize(1 << 20));
        assert_eq!(s.upstream.url.as_deref(), Some("http://10.0.0.5:8080"));
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.drain_timeout, Span(Duration::from_secs(5)));
        assert_eq!(s.memory_budget, ByteSize(512 << 20));
    }

    #[test]
    fn the_memory_budget_is_split_between_the_process_capture_queues_and_flows() {
        const MIB: u64 = 1 << 20;
        let settings = |text: &str| {
            let mut s = parse(text).unwrap();
            // Fixed, so that the figures do not depend on the machine's cores.
            s.reassembly.workers = 2;
            s.udp.sockets = 2;
            s
        };
        let threads = |capture: u64| 2 + capture + OTHER_THREADS;
        let process = |capture: u64| PROCESS_BASE + PROCESS_PER_THREAD * threads(capture);
        assert_eq!(Settings::default().memory_budget, ByteSize(256 * MIB));

        // Replay, no output: the process, the file's chunks, then the working memory: an eighth
        // in flight, the rest to flows.
        let s = settings("");
        let split = s.memory_split(CaptureKind::Pcap).unwrap();
        let working = 256 * MIB - process(1) - crate::capture::pcap::POOL_BYTES as u64;
        assert_eq!(
            split,
            MemorySplit {
                process: process(1),
                capture: crate::capture::pcap::POOL_BYTES as u64,
                recv_buffer: 0,
                xdp_ring: 0,
                queue_overhead: 0,
                upstream_queue: 0,
                jsonl_queue: 0,
                in_flight: working / 8,
                flows: working - working / 8,
            }
        );
        assert_eq!(split.total(), 256 * MIB);

        // UDP with an upstream: the sockets' kernel buffers (a quarter of the budget, doubled
        // by the kernel) and batch buffers; the queue gets a quarter of the working memory,
        // beside the headers of its 10000 requests and the rounding of its bytes.
        let s = settings("[upstream]\nurl = \"http://127.0.0.1:1\"\n");
        let split = s.memory_split(s.run_capture()).unwrap();
        assert_eq!(split.recv_buffer, 16 * MIB, "64 MiB over 2 sockets, halved");
        let capture = 2 * (2 * 16 * MIB + crate::capture::udp::pool_bytes(64) as u64);
        assert_eq!(split.capture, capture);
        let headers = 10_000 * crate::request::QUEUED_REQUEST_BYTES as u64;
        let working = 256 * MIB - process(2) - 16 * UPSTREAM_CONNECTION_BYTES - capture - headers;
        assert_eq!(split.upstream_queue, working / 4);
        assert_eq!(split.queue_overhead, headers + working / 4 / 4);
        assert_eq!(split.in_flight, working / 8);
        assert_eq!(
            split.flows,
            working - working / 4 - working / 4 / 4 - working / 8
        );
        assert_eq!(split.total(), 256 * MIB);
        assert!(split.flows > 256 * MIB / 3, "{split:?}");

        // XDP: the 64 MiB ring by default, and the reader's batch buffers.
        let s = settings("[xdp]\niface = \"eth1\"\n");
        let split = s.memory_split(s.run_capture()).unwrap();
        assert_eq!(split.xdp_ring, 64 * MIB);
        assert_eq!(
            split.capture,
            64 * MIB + crate::capture::xdp::POOL_BYTES as u64
        );
        assert_eq!(split.total(), 256 * MIB);
        // A smaller budget derives a smaller ring, a power of two.
        let s = settings("memory_budget = \"100MiB\"\n[xdp]\niface = \"eth1\"\n");
        assert_eq!(s.memory_split(s.run_capture()).unwrap().xdp_ring, 16 * MIB);

        // Two outputs share the quarter; the budget key scales everything.
        let s = settings(
            "memory_budget = \"1GiB\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[jsonl]\npath = \"-\"\n",
        );
        let split = s.memory_split(CaptureKind::Pcap).unwrap();
        assert_eq!(split.upstream_queue, split.jsonl_queue);
        let headers = 2 * 10_000 * crate::request::QUEUED_REQUEST_BYTES as u64;
        let working = 1024 * MIB - split.process - split.capture - headers;
        assert_eq!(split.upstream_queue, working / 8);
        assert_eq!(split.total(), 1024 * MIB);

        // An explicit value is used as given; the others keep their derived share.
        let s = settings(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\nqueue_bytes = \"60MiB\"\n[jsonl]\npath = \"-\"\n",
        );
        let split = s.memory_split(CaptureKind::Pcap).unwrap();
        assert_eq!(split.upstream_queue, 60 * MIB);
        assert_eq!(split.total(), 256 * MIB);

        // Explicit queues that do not leave half of the working memory are refused, naming
        // the keys.
        let e = parse(
            "memory_budget = \"64MiB\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\nqueue_bytes = \"30MiB\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("upstream.queue_bytes") && e.contains("memory_budget"),
            "{e}"
        );
        // An unconfigured output's explicit size takes nothing.
        let s = settings("memory_budget = \"64MiB\"\n[jsonl]\nqueue_bytes = \"40MiB\"\n");
        assert_eq!(s.memory_split(CaptureKind::Pcap).unwrap().jsonl_queue, 0);
        let e = parse("[jsonl]\npath = \"-\"\nqueue_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jsonl.queue_bytes"), "{e}");
        let e = parse("memory_budget = \"16MiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memory_budget") && e.contains(&ByteSize(MIN_MEMORY_BUDGET).to_string()),
            "{e}"
        );
        // The old place of the key is refused by name (nothing was released with it).
        let e = parse("[reassembly]\nmemory_budget = \"1GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory_budget"), "{e}");
    }

    #[test]
    fn the_shipped_example_fits_its_budget_on_any_instance() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rebuilder.toml");
        let mut s = Settings::from_file(&path).unwrap();
        s.upstream.url = Some("http://waf.internal:80".into());
        for cores in [1, 2, 4, 8, 16] {
            s.reassembly.workers = cores.max(2) - 1;
            s.udp.sockets = cores;
            for capture in [s.run_capture(), CaptureKind::Xdp, CaptureKind::Pcap] {
                let split = s.memory_split(capture).unwrap();
                assert_eq!(
                    split.total(),
                    s.memory_budget.bytes(),
                    "{cores} cores {capture:?}"
                );
            }
        }
    }

    #[test]
    fn explicit_capture_buffers_that_do_not_fit_the_budget_are_refused_by_name() {
        const MIB: u64 = 1 << 20;
        let settings = |text: &str| {
            let mut s = parse(text).unwrap();
            s.reassembly.workers = 2;
            s.udp.sockets = 2;
            s
        };
        // The shipped example's old 64 MiB per socket: 256 MiB of kernel buffers on two
        // sockets, more than the whole default budget.
        let s = settings("[udp]\nrecv_buffer = \"64MiB\"\n");
        let e = s.memory_split(s.run_capture()).unwrap_err().to_string();
        for key in ["udp.recv_buffer", "udp.sockets", "memory_budget"] {
            assert!(e.contains(key), "{key}: {e}");
        }
        assert!(e.contains("256MiB"), "{e}");
        // Replay does not hold the sockets' buffers: the same file replays.
        assert!(s.memory_split(CaptureKind::Pcap).is_ok());
        // A ring of half the budget leaves less than a quarter once the rest is counted.
        let s =
            settings("memory_budget = \"64MiB\"\n[xdp]\niface = \"eth1\"\nring_size = \"32MiB\"\n");
        let e = s.memory_split(s.run_capture()).unwrap_err().to_string();
        assert!(
            e.contains("xdp.ring_size") && e.contains("memory_budget"),
            "{e}"
        );
        let s = settings(
            "memory_budget = \"128MiB\"\n[xdp]\niface = \"eth1\"\nring_size = \"32MiB\"\n",
        );
        let split = s.memory_split(s.run_capture()).unwrap();
        assert_eq!(split.xdp_ring, 32 * MIB);
        assert_eq!(split.total(), 128 * MIB);
        // Derived sizes always fit the smallest budget with a worker and a socket (a debug
        // build's code takes 8 MiB more), and with two outputs (and their 20000 requests'
        // headers) a budget half as large again.
        for (budget, text) in [
            (MIN_MEMORY_BUDGET, ""),
            (MIN_MEMORY_BUDGET, "[xdp]\niface = \"eth1\"\n"),
            (
                MIN_MEMORY_BUDGET / 2 * 3,
                "[upstream]\nurl = \"http://127.0.0.1:1\"\n[jsonl]\npath = \"-\"\n",
            ),
        ] {
            let mut s = settings(&format!("memory_budget = \"{}\"\n{text}", ByteSize(budget)));
            s.reassembly.workers = 1;
            s.udp.sockets = 1;
            for capture in [CaptureKind::Pcap, s.run_capture()] {
                let split = s.memory_split(capture).unwrap();
                assert_eq!(split.total(), budget, "{text}: {split:?}");
                assert!(split.flows >= 4 * MIB, "{text}: {split:?}");
            }
        }
        let e = parse("[udp]\nrecv_buffer = 0\n").unwrap_err().to_string();
        assert!(e.contains("udp.recv_buffer"), "{e}");
    }

    #[test]
    fn the_xdp_section_parses_and_is_validated() {
        let s = parse(
            "[xdp]\niface = \"eth1\"\nmode = \"generic\"\nring_size = \"16MiB\"\n\
             pass_consumed = true\nports = [80, 443]\n",
        )
        .unwrap();
        assert_eq!(
            s.xdp,
            XdpSettings {
                iface: Some("eth1".into()),
                mode: XdpModeSetting::Generic,
                ring_size: Some(ByteSize(16 << 20)),
                pass_consumed: true,
                ports: vec![80, 443],
            }
        );
        assert_eq!(Settings::default().xdp.ring_size, None);
        assert_eq!(Settings::default().xdp_ring_bytes(), 64 << 20);
        assert_eq!(Settings::default().xdp.mode, XdpModeSetting::Auto);
        for (text, key) in [
            ("[xdp]\nring_size = 5000\n", "xdp.ring_size"),
            ("[xdp]\nring_size = \"2KiB\"\n", "xdp.ring_size"),
            ("[xdp]\nring_size = \"2GiB\"\n", "xdp.ring_size"),
            ("[xdp]\niface = \"\"\n", "xdp.iface"),
            ("[xdp]\niface = \"much-too-long-name\"\n", "xdp.iface"),
            ("[xdp]\nmode = \"native\"\n", "xdp.mode"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn max_idle_is_off_unless_set_and_never_zero() {
        assert_eq!(Settings::default().status.max_idle, None);
        let s = parse("[status]\nmax_idle = \"30s\"\n").unwrap();
        assert_eq!(s.status.max_idle, Some(Span(Duration::from_secs(30))));
        assert_eq!(
            parse("[status]\nmax_idle = 2\n").unwrap().status.max_idle,
            Some(Span(Duration::from_secs(2)))
        );
        let e = parse("[status]\nmax_idle = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("status.max_idle"), "{e}");
    }

    #[test]
    fn proxy_health_check_and_filter_sections_parse_and_are_validated() {
        let s = parse(
            r#"
            [proxy_protocol]
            mode = "forbid"
            require_ports = [8080, 80]
            [health_checks]
            keep = true
            user_agents = ["ELB-HealthChecker/", "kube-probe/"]
            source_cidrs = ["10.0.0.0/16", "2001:db8::/32", "10.9.9.9"]
            [filter]
            allow_hosts = ["*.example.com"]
            deny_methods = ["OPTIONS"]
            deny_paths = ["/static/"]
            allow_path_regex = ["^/api/"]
            sample = 0.1
            sample_seed = 7
            rate_limit = 250.5
            rate_limit_burst = 50
            "#,
        )
        .unwrap();
        let p = s.proxy_policy();
        assert_eq!(p.require, vec![80, 8080]);
        assert_eq!(p.mode_for(80), crate::proxy::ProxyMode::Require);
        assert_eq!(p.mode_for(443), crate::proxy::ProxyMode::Forbid);
        assert!(s.health_checks.keep);
        assert_eq!(s.health_checks.source_cidrs.len(), 3);
        let f = s.filter_config();
        assert_eq!((f.sample, f.sample_seed), (0.1, 7));
        assert_eq!((f.rate_limit, f.rate_limit_burst), (Some(250.5), Some(50)));
        let d = Settings::default();
        assert_eq!(d.proxy_policy().mode_for(80), crate::proxy::ProxyMode::Auto);
        assert_eq!(d.health_checks.user_agents, vec!["ELB-HealthChecker/"]);
        assert!(!d.health_checks.keep);
        assert_eq!((d.filter.sample, d.filter.rate_limit), (1.0, None));
        for (text, key) in [
            (
                "[proxy_protocol]\nmode = \"maybe\"\n",
                "proxy_protocol.mode",
            ),
            (
                "[proxy_protocol]\nrequire_ports = [80]\nforbid_ports = [80]\n",
                "proxy_protocol.require_ports",
            ),
            (
                "[health_checks]\nsource_cidrs = [\"10.0.0.0/40\"]\n",
                "health_checks.source_cidrs",
            ),
            (
                "[health_checks]\nuser_agents = [\"\"]\n",
                "health_checks.user_agents",
            ),
            ("[filter]\nsample = 1.5\n", "filter.sample"),
            ("[filter]\nrate_limit = -1\n", "filter.rate_limit"),
            (
                "[filter]\nrate_limit = 5\nrate_limit_burst = 0\n",
                "filter.rate_limit_burst",
            ),
            (
                "[filter]\ndeny_path_regex = [\"(\"]\n",
                "filter.deny_path_regex[0]",
            ),
            (
                "[filter]\nallow_methods = [\"GE T\"]\n",
                "filter.allow_methods",
            ),
            ("[filter]\nbogus = 1\n", "bogus"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[upstream]\nurll = \"http://x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream") && e.contains("urll"), "{e}");
        let e = parse("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[reassembly]\nidle_timeout = \"5 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reassembly.idle_timeout") && e.contains("parsecs"),
            "{e}"
        );
        let e = parse("[udp]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("udp.listen"), "{e}");
        let e = parse("[capture]\nvni_allow = [16777216]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vni_allow") && e.contains("16777216"), "{e}");
        let e = parse("[upstream]\nvni_header = \"X Bad\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream.vni_header"), "{e}");
        let e = parse("[upstream]\nurl = \"https://waf:443\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream.url"), "{e}");
        let e = parse("[capture\n").unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
    }
}
