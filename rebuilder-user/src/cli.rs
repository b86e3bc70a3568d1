//! Command line. Every flag overrides the matching key of the `--config` file.
//!
//! Here: the commands and flags (clap's definitions, their help text, `Pace`). `settings`
//! turns a parsed command line into the run's `Settings`. Depends on `config`, and on the
//! value types of the rooms some flags set (`output::UpstreamProtocol`, `proxy::ProxyMode`,
//! `filter::Cidr`), so that a flag parses into what the room takes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ByteSize, FlowKeyMode, LogFormat, Settings, Span, XdpModeSetting};

#[derive(Debug, Parser)]
#[command(
    name = "rebuilder",
    version,
    about = "Rebuilds HTTP requests from AWS VPC Traffic Mirroring (VXLAN) packets and replays them byte for byte",
    long_about = "Rebuilds HTTP requests from AWS VPC Traffic Mirroring packets (VXLAN over UDP/4789) \
                  and replays them, byte for byte, to a WAF or writes them as JSON lines.\n\n\
                  Settings come from defaults, then the --config TOML file, then flags."
)]
pub struct Cli {
    /// TOML configuration file (same settings as the flags; flags override it).
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "REBUILDER_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. `info`, `debug`, `rebuilder=trace` (or RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture live mirrored traffic and replay the requests: through XDP on an interface
    /// (--iface), or from a UDP socket (--udp, the default).
    Run(RunArgs),
    /// Rebuild the requests of a capture file (pcap or pcapng), replay them, print a summary.
    Replay(ReplayArgs),
    /// Report what this kernel (and interface) supports.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Receive VXLAN datagrams on this UDP address (no privileges needed).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "0.0.0.0:4789")]
    pub udp: Option<SocketAddr>,

    /// Capture through the XDP program on this interface (needs root, or CAP_BPF,
    /// CAP_NET_ADMIN and CAP_PERFMON). Consumed VXLAN packets are dropped in the kernel.
    #[arg(long, value_name = "IFACE", conflicts_with = "udp")]
    pub iface: Option<String>,

    /// XDP attach mode: `auto` tries driver (native) mode and falls back to generic, saying why.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpModeSetting>,

    /// Debugging: packets the XDP program consumes still go to the network stack.
    #[arg(long)]
    pub xdp_pass: bool,

    /// Ring buffer between the XDP program and userspace (a power of two, e.g. 64MiB).
    #[arg(long, value_name = "SIZE")]
    pub xdp_ring_size: Option<ByteSize>,

    /// Inner TCP ports the XDP program keeps, either direction (repeatable or
    /// comma-separated); default: all.
    #[arg(long = "xdp-port", value_name = "PORT", value_delimiter = ',')]
    pub xdp_ports: Vec<u16>,

    /// UDP sockets (and receiving threads) bound with SO_REUSEPORT; 0 = one per core.
    #[arg(long, value_name = "N")]
    pub udp_sockets: Option<usize>,

    /// Receive buffer per UDP socket (e.g. 64MiB); the kernel may cap it (net.core.rmem_max).
    #[arg(long, value_name = "SIZE")]
    pub recv_buffer: Option<ByteSize>,

    /// Status server address (/livez, /readyz, /healthz, /metrics); default 0.0.0.0:9479.
    #[arg(long, value_name = "ADDR")]
    pub status: Option<SocketAddr>,

    /// /readyz and /healthz fail ("no packets for N s") when no packet has been captured for
    /// this long (e.g. 30s), counted from the last packet; /livez does not; default: off.
    #[arg(long, value_name = "DURATION")]
    pub max_idle: Option<Span>,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture file to read (pcap or pcapng; Ethernet, Linux SLL or SLL2 link types).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,

    /// Pace by the capture's timestamps: `realtime`, or a speed factor such as `2` or `0.5`.
    /// Default: as fast as the outputs take it.
    #[arg(long, value_name = "SPEED")]
    pub pace: Option<Pace>,

    /// Serve /livez, /readyz, /healthz and /metrics on this address while replaying.
    #[arg(long, value_name = "ADDR")]
    pub status: Option<SocketAddr>,

    /// Never show the progress line (it is shown only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Interface to check for XDP support.
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,

    /// Do not attach the program to the interface to see which mode works (an attach is
    /// detached at once, but on some drivers, ENA among them, it briefly restarts the queues).
    #[arg(long)]
    pub no_attach_test: bool,
}

/// Replay speed relative to the capture's own timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace(pub f64);

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let f = if s.eq_ignore_ascii_case("realtime") {
            1.0
        } else {
            s.trim_end_matches(['x', 'X'])
                .parse::<f64>()
                .map_err(|_| format!("invalid pace {s:?}: use `realtime` or a factor like 2"))?
        };
        if f.is_finite() && f > 0.0 {
            Ok(Pace(f))
        } else {
            Err(format!("invalid pace {s:?}: the factor must be above 0"))
        }
    }
}

/// Flags shared by `run` and `replay`.
#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// Replay requests to this WAF/origin: http://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Write one JSON object per request to this file, or `-` for stdout.
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<PathBuf>,

    /// Keep-alive connections to the upstream.
    #[arg(long, value_name = "N")]
    pub pool_size: Option<usize>,

    /// How requests rebuilt from HTTP/2 (h2c, gRPC) streams reach the upstream: `http1`
    /// replays their HTTP/1.1 rendering on the byte-exact pool, `h2c` sends them over an
    /// HTTP/2 connection (prior knowledge), trailers as trailers. HTTP/1.x requests always go
    /// byte-exact over HTTP/1.1.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub upstream_protocol: Option<crate::output::UpstreamProtocol>,

    /// Upstream connect timeout (e.g. 2s).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<Span>,

    /// Upstream response timeout (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub response_timeout: Option<Span>,

    /// Requests the upstream queue holds; when full, live capture drops the newest (counted).
    #[arg(long, value_name = "N")]
    pub queue_requests: Option<usize>,

    /// Bytes the upstream queue holds (e.g. 64MiB); default: a quarter of --memory-budget,
    /// shared with --jsonl when both are on.
    #[arg(long, value_name = "SIZE")]
    pub queue_bytes: Option<ByteSize>,

    /// Add the client IP to each replayed request in this header (appended to an existing one,
    /// as proxies do). Without a value: X-Forwarded-For.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "X-Forwarded-For")]
    pub add_client_ip: Option<String>,

    /// Add the mirror session's VNI to each replayed request in this header. Without a value:
    /// X-Mirror-VNI.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "X-Mirror-VNI")]
    pub add_vni: Option<String>,

    /// UDP destination port carrying VXLAN (repeatable).
    #[arg(long = "vxlan-port", value_name = "PORT")]
    pub vxlan_ports: Vec<u16>,

    /// Only these VNIs (repeatable or comma-separated).
    #[arg(long, value_name = "VNI", value_delimiter = ',')]
    pub vni_allow: Vec<u32>,

    /// Never these VNIs (repeatable or comma-separated).
    #[arg(long, value_name = "VNI", value_delimiter = ',')]
    pub vni_deny: Vec<u32>,

    /// Ports the mirrored servers listen on (repeatable or comma-separated): tells the client
    /// side of connections picked up without their SYN.
    #[arg(long = "server-port", value_name = "PORT", value_delimiter = ',')]
    pub server_ports: Vec<u16>,

    /// How flows are told apart: `inner` (4-tuple; a connection mirrored on both ends yields
    /// each request once) or `vni` (VNI + 4-tuple; for overlapping address spaces).
    #[arg(long, value_enum)]
    pub flow_key: Option<FlowKeyMode>,

    /// Reassembly worker threads; 0 = one per core but one (at least one).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// How long a hole in a stream waits for its missing segment (e.g. 1s).
    #[arg(long, value_name = "DURATION")]
    pub reorder_timeout: Option<Span>,

    /// Close flows silent for this long (e.g. 60s).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<Span>,

    /// Out-of-order bytes one stream may hold (e.g. 4MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_flow_buffer: Option<ByteSize>,

    /// The mirrored servers take data on a SYN (TCP Fast Open): replay it (by default it is
    /// dropped, counted, as a server without Fast Open drops it).
    #[arg(long)]
    pub syn_data: bool,

    /// Budget for every buffered byte (output queues and flows; e.g. 256MiB). The queues get
    /// a quarter unless their sizes are set, flows the rest; over it flows are evicted, counted.
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<ByteSize>,

    /// Largest request head (request line and headers).
    #[arg(long, value_name = "SIZE")]
    pub max_head_bytes: Option<ByteSize>,

    /// Most headers in one request.
    #[arg(long, value_name = "N")]
    pub max_headers: Option<usize>,

    /// Largest body replayed; larger ones are replayed as their head with the original length
    /// stated in a header.
    #[arg(long, value_name = "SIZE")]
    pub max_body_bytes: Option<ByteSize>,

    /// HTTP/2: largest HPACK dynamic table a client may ask for (the mirrored servers'
    /// SETTINGS_HEADER_TABLE_SIZE; 4KiB, the protocol default).
    #[arg(long, value_name = "SIZE")]
    pub h2_max_table_size: Option<ByteSize>,

    /// HTTP/2: streams one connection may have open at once; more are refused, counted.
    #[arg(long, value_name = "N")]
    pub h2_max_streams: Option<usize>,

    /// How long outputs may take to drain at shutdown (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<Span>,

    /// PROXY protocol at the start of connections to server ports not listed with the two
    /// flags below: `auto` strips a v1/v2 header when one leads the stream, `require` also
    /// counts streams without one, `forbid` never strips (a header is then the client's bytes).
    #[arg(long, value_enum, value_name = "MODE")]
    pub proxy_protocol: Option<crate::proxy::ProxyMode>,

    /// Server ports whose load balancer always sends a PROXY header (repeatable or
    /// comma-separated).
    #[arg(
        long = "proxy-protocol-require-port",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub proxy_protocol_require_ports: Vec<u16>,

    /// Server ports without PROXY protocol (repeatable or comma-separated).
    #[arg(
        long = "proxy-protocol-forbid-port",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub proxy_protocol_forbid_ports: Vec<u16>,

    /// Replay load balancer health checks too (by default they are counted and not replayed).
    #[arg(long)]
    pub keep_health_checks: bool,

    /// Client networks whose requests are health checks, e.g. the load balancer's subnets
    /// (repeatable or comma-separated: 10.0.0.0/24, 2001:db8::/64, 10.0.0.7).
    #[arg(long = "health-check-cidr", value_name = "CIDR", value_delimiter = ',')]
    pub health_check_cidrs: Vec<crate::filter::Cidr>,

    /// User-Agent prefixes of health checkers (repeatable); replaces the default
    /// `ELB-HealthChecker/`.
    #[arg(long = "health-check-user-agent", value_name = "PREFIX")]
    pub health_check_user_agents: Vec<String>,

    /// Replay only requests for these hosts (repeatable or comma-separated; `*.example.com`
    /// matches subdomains).
    #[arg(long = "allow-host", value_name = "HOST", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,

    /// Never replay requests for these hosts (repeatable or comma-separated).
    #[arg(long = "deny-host", value_name = "HOST", value_delimiter = ',')]
    pub deny_hosts: Vec<String>,

    /// Replay only these methods (repeatable or comma-separated).
    #[arg(long = "allow-method", value_name = "METHOD", value_delimiter = ',')]
    pub allow_methods: Vec<String>,

    /// Never replay these methods (repeatable or comma-separated).
    #[arg(long = "deny-method", value_name = "METHOD", value_delimiter = ',')]
    pub deny_methods: Vec<String>,

    /// Replay only paths starting with this (repeatable).
    #[arg(long = "allow-path", value_name = "PREFIX")]
    pub allow_paths: Vec<String>,

    /// Never replay paths starting with this (repeatable).
    #[arg(long = "deny-path", value_name = "PREFIX")]
    pub deny_paths: Vec<String>,

    /// Replay only paths matching this regex (repeatable).
    #[arg(long = "allow-path-regex", value_name = "REGEX")]
    pub allow_path_regex: Vec<String>,

    /// Never replay paths matching this regex (repeatable).
    #[arg(long = "deny-path-regex", value_name = "REGEX")]
    pub deny_path_regex: Vec<String>,

    /// Keep this fraction of connections, each whole (e.g. 0.1), chosen by a fixed hash of
    /// the connection.
    #[arg(long, value_name = "FRACTION")]
    pub sample: Option<f64>,

    /// Another subset of connections at the same --sample rate.
    #[arg(long, value_name = "N")]
    pub sample_seed: Option<u64>,

    /// Replay at most this many requests per second (capture time, all workers together);
    /// the rest is counted.
    #[arg(long, value_name = "REQUESTS")]
    pub rate_limit: Option<f64>,

    /// Requests --rate-limit lets through at once (default: one second's worth).
    #[arg(long, value_name = "N")]
    pub rate_limit_burst: Option<u64>,
}

mod settings;

#[cfg(test)]
mod tests;
