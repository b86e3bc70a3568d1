//! The DESIGN §8 topology, built from the guards of this module:
//!
//! ```text
//!  client ──veth (MTU m)── origin ─────veth (m+50)───── nlb ──veth (m+50)── node0 ──veth── waf
//!  10.77.1.1      10.77.1.2│ rborg0   10.77.2.1   10.77.2.2  │ multipath        │ 10.79.0.2  10.79.0.1
//!                          │ tc clsact: ingress+egress       │ to 10.77.100.1   │ rebuilder  Sink
//!                          └─ mirred → rbvx0 (VXLAN, VNI)    │ by 5-tuple hash  │ --udp 10.77.100.1:4789
//!                             remote 10.77.100.1:4789        │                  │ or --iface rbin0 (XDP)
//!                                                            └── node1 … (each has 10.77.100.1 on lo)
//! ```
//!
//! The origin's interface towards the client is mirrored both ways, as an AWS session mirrors
//! an ENI, into a kernel VXLAN device whose copies travel as UDP to the collector address. The
//! `nlb` namespace stands in for the NLB: it forwards each VXLAN flow to one rebuilder node,
//! chosen by a multipath route hashing the outer 5-tuple (`fib_multipath_hash_policy=1`),
//! and the VXLAN device sets the outer source port from a hash of the inner flow, as AWS does.
//! Each node holds the collector address on its loopback (like an NLB target seeing its own
//! address) and has its own link to the `waf` namespace, where one sink records everything.
//!
//! The VXLAN device lives in the origin's namespace, never in a node's: it binds UDP 4789
//! where it lives and would take the datagrams meant for the rebuilder.
//!
//! A node's rebuilder captures with a UDP socket on the collector address ([`Capture::Udp`]) or
//! with the XDP program on `rbin0`, its interface facing the `nlb` ([`Capture::Xdp`]). Its status
//! server listens on every address of the node, so the `nlb` namespace can health-check it over
//! `rbin0` as an NLB does ([`MirrorLab::health`]): that traffic crosses the XDP program too.
//!
//! This file holds the settings, the nodes and the lab's accessors; `lab/build.rs` builds the
//! topology, `lab/rebuilders.rs` starts, probes, stops and drives traffic through the
//! rebuilders.

mod build;
mod rebuilders;

pub use rebuilders::http_get;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{Clsact, Netns, NetnsError, Origin, Result, Veth, Vxlan};
use crate::process::Running;
use crate::sink::{Sink, SinkConfig};

/// The VNI the lab's mirror session uses unless told otherwise.
pub const LAB_VNI: u32 = 7_340_033;
const VXLAN_PORT: u16 = 4789;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// A second address of the client namespace: a load balancer node's, the source of health
/// checks that `--health-check-cidr` names.
pub const HEALTH_CHECKER: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 100);
const ORIGIN: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const ORIGIN_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
const NLB_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
/// The NLB's listener address, which every node also holds.
const COLLECTOR: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 1);
const STATUS_PORT: u16 = 9479;
const STATUS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), STATUS_PORT);
/// Where each node's status server listens: every address of the node.
const STATUS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), STATUS_PORT);
const MAX_NODES: usize = 200;
/// A node's interface facing the `nlb`, where mirrored traffic arrives.
pub const NODE_IFACE: &str = "rbin0";
/// A node's interface facing the `waf`.
pub const NODE_WAF_IFACE: &str = "rbwaf0";

/// An XDP attach mode, as `rebuilder run --xdp-mode` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Driver,
    Generic,
}

impl XdpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Driver => "driver",
            XdpMode::Generic => "generic",
        }
    }
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "driver" => Ok(XdpMode::Driver),
            "generic" => Ok(XdpMode::Generic),
            _ => Err(format!("XDP mode {s:?}: use auto, driver or generic")),
        }
    }
}

/// How the nodes' rebuilders capture the mirrored traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// `rebuilder run --udp 10.77.100.1:4789`: a socket on the collector address.
    Udp,
    /// `rebuilder run --iface rbin0 --xdp-mode MODE`: the XDP program on the node's interface
    /// facing the `nlb`, which consumes the VXLAN datagrams before the stack sees them.
    Xdp(XdpMode),
}

impl Capture {
    /// The `rebuilder run` arguments choosing this input.
    pub fn args(self, collector: SocketAddr) -> Vec<String> {
        match self {
            Capture::Udp => vec!["--udp".into(), collector.to_string()],
            Capture::Xdp(mode) => vec![
                "--iface".into(),
                NODE_IFACE.into(),
                "--xdp-mode".into(),
                mode.as_str().into(),
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Capture::Udp => "udp",
            Capture::Xdp(_) => "xdp",
        }
    }
}

/// nlb side and node side of node `i`'s link.
fn node_link(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let i = u8::try_from(i).unwrap_or(u8::MAX);
    (Ipv4Addr::new(10, 78, i, 1), Ipv4Addr::new(10, 78, i, 2))
}

/// waf side and node side of node `i`'s link to the WAF.
fn waf_link(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let i = u8::try_from(i).unwrap_or(u8::MAX);
    (Ipv4Addr::new(10, 79, i, 1), Ipv4Addr::new(10, 79, i, 2))
}

#[derive(Clone, Debug)]
pub struct LabConfig {
    /// MTU of the mirrored client–origin link. Every link the copies cross gets this plus
    /// [`VXLAN_OVERHEAD_V4`], so frames of this size are mirrored whole.
    pub mtu: u32,
    /// Rebuilder namespaces behind the `nlb` one.
    pub nodes: usize,
    pub vni: u32,
    pub origin_port: u16,
    pub sink_port: u16,
    /// What the origin answers to every request.
    pub origin_response: Vec<u8>,
    /// The WAF sink's behaviour (`addr` is ignored: it listens on `sink_port` in `waf`).
    pub sink: SinkConfig,
    /// How the rebuilders capture.
    pub capture: Capture,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            mtu: 1500,
            nodes: 1,
            vni: LAB_VNI,
            origin_port: 80,
            sink_port: 8080,
            origin_response: crate::gen::http::ok_response(64),
            sink: SinkConfig::default(),
            capture: Capture::Udp,
        }
    }
}

/// A rebuilder namespace and the process running there, if started.
pub struct Node {
    ns: Netns,
    upstream: String,
    /// Its address on the link from the `nlb`.
    addr: Ipv4Addr,
    /// Its address on the link to the `waf`: where its replays come from.
    waf_addr: Ipv4Addr,
    rebuilder: Option<Running>,
}

impl Node {
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The node's address on its link from the `nlb` (on [`NODE_IFACE`]).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The source address of this node's replays, as the sink sees it.
    pub fn waf_addr(&self) -> Ipv4Addr {
        self.waf_addr
    }

    /// The status server as seen from the `nlb` namespace (across [`NODE_IFACE`]).
    pub fn status_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.addr), STATUS_PORT)
    }

    /// Where this node's rebuilder replays to (the sink, over this node's own link).
    pub fn upstream_url(&self) -> &str {
        &self.upstream
    }

    pub fn rebuilder(&mut self) -> Option<&mut Running> {
        self.rebuilder.as_mut()
    }
}

/// What a lab made, for checking after it is gone that nothing is left (see
/// [`leftovers`](super::leftovers)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    pub namespaces: Vec<String>,
    /// Interface names, all made inside the lab's namespaces.
    pub interfaces: Vec<String>,
}

/// The whole topology. Dropping it stops the rebuilders, the origin and the sink, then deletes
/// every interface and namespace, in that order (fields drop in declaration order).
pub struct MirrorLab {
    nodes: Vec<Node>,
    origin: Origin,
    sink: Sink,
    clsact: Clsact,
    vxlan: Vxlan,
    veths: Vec<Veth>,
    client: Netns,
    origin_ns: Netns,
    nlb: Netns,
    waf: Netns,
    cfg: LabConfig,
    created: Created,
}

impl MirrorLab {
    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    pub fn client_ns(&self) -> &Netns {
        &self.client
    }

    pub fn origin_ns(&self) -> &Netns {
        &self.origin_ns
    }

    pub fn nlb_ns(&self) -> &Netns {
        &self.nlb
    }

    pub fn waf_ns(&self) -> &Netns {
        &self.waf
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// The mirror session's tc qdisc on the origin's interface.
    pub fn mirror(&self) -> &Clsact {
        &self.clsact
    }

    /// Every veth pair of the topology.
    pub fn veths(&self) -> &[Veth] {
        &self.veths
    }

    pub fn vxlan(&self) -> &Vxlan {
        &self.vxlan
    }

    /// The origin server's address, reachable from the client namespace.
    pub fn origin_addr(&self) -> SocketAddr {
        self.origin.addr()
    }

    /// Where the mirrored VXLAN datagrams go, and where every node's rebuilder listens.
    pub fn collector_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(COLLECTOR), VXLAN_PORT)
    }

    /// Each node's status server on its loopback (inside the node's namespace).
    pub fn status_addr(&self) -> SocketAddr {
        STATUS
    }

    /// The node whose replays come from `ip` (see [`Node::waf_addr`]).
    pub fn node_of_peer(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| IpAddr::V4(n.waf_addr) == ip)
    }

    /// `GET /healthz` (readiness: threads beating, the WAF reachable) of node `i`, from the
    /// `nlb` namespace over the node's [`NODE_IFACE`], the path an NLB's health check takes
    /// (the NLB itself asks `/livez`): status code and body.
    pub fn health(&self, i: usize) -> Result<(u16, String)> {
        let node = self
            .nodes
            .get(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        http_get(
            &self.nlb,
            node.status_addr(),
            "/healthz",
            Duration::from_secs(2),
        )
    }

    /// Removes the mirror session's filters (nothing reaches the nodes any more), keeping the
    /// qdisc; [`restore_mirror`](Self::restore_mirror) puts them back.
    pub fn remove_mirror(&self) -> Result<()> {
        self.clsact.clear()
    }

    pub fn restore_mirror(&self) -> Result<()> {
        self.clsact.clear()?;
        self.clsact.mirror_both(self.vxlan.name())
    }

    /// Takes node `i`'s link to the `waf` down (`up == false`: its upstream becomes
    /// unreachable) or back up.
    pub fn set_waf_link(&self, i: usize, up: bool) -> Result<()> {
        let node = self
            .nodes
            .get(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        let state = if up { "up" } else { "down" };
        node.ns.ip(&["link", "set", "dev", NODE_WAF_IFACE, state])?;
        Ok(())
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The WAF stand-in, recording what every rebuilder replayed.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn created(&self) -> Created {
        self.created.clone()
    }
}
