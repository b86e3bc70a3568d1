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

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use super::link::VXLAN_OVERHEAD_V4;
use super::{Clsact, Link, Netns, NetnsError, Origin, Result, Route, Veth, Vxlan, VxlanConfig};
use crate::http_client::{run_connection, ClientError, ConnectionOutcome, ConnectionPlan};
use crate::process::{rebuilder_bin, Finished, Running};
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
    /// Builds the topology, starts the origin and the sink (not the rebuilders).
    pub fn build(cfg: LabConfig) -> Result<MirrorLab> {
        super::preflight()?;
        if cfg.nodes == 0 || cfg.nodes > MAX_NODES {
            return Err(NetnsError::Config(format!(
                "nodes must be in 1..={MAX_NODES}, got {}",
                cfg.nodes
            )));
        }
        if !(576..=65_000).contains(&cfg.mtu) {
            return Err(NetnsError::Config(format!(
                "mtu must be in 576..=65000, got {}",
                cfg.mtu
            )));
        }
        // A test killed before its guards ran leaves its namespaces; clear them so stale
        // state never accumulates on a CI machine.
        let _ = Netns::sweep_stale();
        let underlay_mtu = cfg.mtu + VXLAN_OVERHEAD_V4;
        let mut created = Created::default();

        let client = Netns::new("client")?;
        let origin_ns = Netns::new("origin")?;
        let nlb = Netns::new("nlb")?;
        let waf = Netns::new("waf")?;
        let node_ns = (0..cfg.nodes)
            .map(|i| Netns::new(&format!("node{i}")))
            .collect::<Result<Vec<_>>>()?;
        created.namespaces.extend(
            [&client, &origin_ns, &nlb, &waf]
                .into_iter()
                .chain(&node_ns)
                .map(|n| n.name().to_owned()),
        );
        let mut veths = Vec::new();
        let cidr24 = |a: Ipv4Addr| format!("{a}/24");

        // The production link, mirrored at the origin's end.
        let prod = veth(
            &mut created,
            &client,
            "rbcli0",
            &origin_ns,
            "rborg0",
            cfg.mtu,
        )?;
        prod.a.add_addr(&cidr24(CLIENT))?.persist();
        prod.a.add_addr(&cidr24(HEALTH_CHECKER))?.persist();
        prod.b.add_addr(&cidr24(ORIGIN))?.persist();
        // A retransmission timeout or a duplicate segment makes Linux pick a new flow hash
        // (net.core.txrehash), which would move the VXLAN flow to another outer source port
        // and so another node mid-connection: AWS hashes the 5-tuple, which never changes.
        for ns in [&client, &origin_ns] {
            match ns.sysctl("net.core.txrehash", "0") {
                Ok(s) => s.persist(),
                // Older kernels never rehash in the first place.
                Err(NetnsError::Sysctl { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }

        // The underlay towards the NLB.
        let under = veth(
            &mut created,
            &origin_ns,
            "rbund0",
            &nlb,
            "rbund1",
            underlay_mtu,
        )?;
        under.a.add_addr(&cidr24(ORIGIN_UNDERLAY))?.persist();
        under.b.add_addr(&cidr24(NLB_UNDERLAY))?.persist();
        Route::via(
            &origin_ns,
            &format!("{COLLECTOR}/32"),
            IpAddr::V4(NLB_UNDERLAY),
            "rbund0",
        )?
        .persist();

        // The mirror session.
        let vxlan = Vxlan::new(
            &origin_ns,
            "rbvx0",
            &VxlanConfig {
                vni: cfg.vni,
                local: IpAddr::V4(ORIGIN_UNDERLAY),
                remote: IpAddr::V4(COLLECTOR),
                dstport: VXLAN_PORT,
                underlay: "rbund0".into(),
                mtu: Some(cfg.mtu),
            },
        )?;
        created.interfaces.push("rbvx0".into());
        vxlan.link().disable_offloads()?;
        let clsact = Clsact::add(&prod.b)?;
        clsact.mirror_both(vxlan.name())?;

        // The NLB.
        nlb.sysctl("net.ipv4.ip_forward", "1")?.persist();
        nlb.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?
            .persist();

        let mut hops = Vec::new();
        let mut nodes = Vec::new();
        for (i, ns) in node_ns.into_iter().enumerate() {
            let (nlb_side, node_side) = node_link(i);
            let to_node = veth(
                &mut created,
                &nlb,
                &format!("rbnlb{i}"),
                &ns,
                NODE_IFACE,
                underlay_mtu,
            )?;
            to_node.a.add_addr(&cidr24(nlb_side))?.persist();
            to_node.b.add_addr(&cidr24(node_side))?.persist();
            Link::new(&ns, "lo")
                .add_addr(&format!("{COLLECTOR}/32"))?
                .persist();
            Route::add(
                &ns,
                "default",
                &["via", &nlb_side.to_string(), "dev", NODE_IFACE],
            )?
            .persist();
            hops.push((IpAddr::V4(node_side), format!("rbnlb{i}")));

            let (waf_side, node_waf_side) = waf_link(i);
            let to_waf = veth(
                &mut created,
                &ns,
                NODE_WAF_IFACE,
                &waf,
                &format!("rbw{i}"),
                1500,
            )?;
            to_waf.a.add_addr(&cidr24(node_waf_side))?.persist();
            to_waf.b.add_addr(&cidr24(waf_side))?.persist();
            veths.push(to_node);
            veths.push(to_waf);
            nodes.push(Node {
                ns,
                upstream: format!("http://{waf_side}:{}", cfg.sink_port),
                addr: node_side,
                waf_addr: node_waf_side,
                rebuilder: None,
            });
        }
        Route::multipath(&nlb, &format!("{COLLECTOR}/32"), &hops)?.persist();
        veths.push(prod);
        veths.push(under);

        let origin_addr = SocketAddr::new(IpAddr::V4(ORIGIN), cfg.origin_port);
        let listener = origin_ns.run(|| TcpListener::bind(origin_addr))??;
        let origin = Origin::from_listener(listener, cfg.origin_response.clone())?;
        let sink_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.sink_port);
        let listener = waf.run(|| TcpListener::bind(sink_addr))??;
        let sink = Sink::from_listener(listener, cfg.sink.clone())?;

        Ok(MirrorLab {
            nodes,
            origin,
            sink,
            clsact,
            vxlan,
            veths,
            client,
            origin_ns,
            nlb,
            waf,
            cfg,
            created,
        })
    }

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

    /// Starts `rebuilder run CAPTURE --upstream URL --status 0.0.0.0:9479 EXTRA…` in every
    /// node's namespace not running one, where CAPTURE is `--udp 10.77.100.1:4789` or
    /// `--iface rbin0 --xdp-mode MODE` ([`LabConfig::capture`]).
    ///
    /// The processes are killed when the lab is dropped and, should this process die first,
    /// by the kernel (`PR_SET_PDEATHSIG`) when the thread calling this ends: call it from the
    /// thread that owns the lab.
    pub fn start_rebuilders(&mut self, extra: &[&str]) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_rebuilder(i, extra)?;
        }
        Ok(())
    }

    /// [`start_rebuilders`](Self::start_rebuilders) for node `i` alone (a no-op when it runs).
    pub fn start_rebuilder(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let bin = rebuilder_bin();
        let capture = self.cfg.capture.args(self.collector_addr());
        let status = STATUS_LISTEN.to_string();
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        if node.rebuilder.is_some() {
            return Ok(());
        }
        let mut cmd = node.ns.command(&bin);
        cmd.arg("run")
            .args(&capture)
            .args(["--upstream", &node.upstream])
            .args(["--status", &status])
            .args(extra);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe; a rebuilder must never outlive the test
        // that started it (it would hold its namespace alive).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        node.rebuilder = Some(Running::spawn_cmd(&mut cmd)?);
        Ok(())
    }

    /// `kill -9` of node `i`'s rebuilder: no drain, no summary, as a crashed instance. Returns
    /// what it wrote, once reaped (None when none ran).
    pub fn kill_rebuilder(&mut self, i: usize) -> Option<Finished> {
        let r = self.nodes.get_mut(i)?.rebuilder.take()?;
        r.signal(libc::SIGKILL);
        Some(r.wait(Duration::from_secs(10)))
    }

    /// Waits until every started rebuilder answers `/metrics` (its UDP socket is bound, or
    /// its XDP program attached, before its status server starts). Fails with the process's
    /// stderr if one exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        for node in &mut self.nodes {
            let Some(r) = node.rebuilder.as_mut() else {
                continue;
            };
            loop {
                if !r.alive() {
                    return Err(NetnsError::Process(format!(
                        "rebuilder in {} exited at start:\n{}",
                        node.ns.name(),
                        r.stderr_so_far()
                    )));
                }
                if matches!(
                    http_get(&node.ns, STATUS, "/metrics", Duration::from_millis(500)),
                    Ok((200, _))
                ) {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(NetnsError::Timeout {
                        what: format!("rebuilder status server in {}", node.ns.name()),
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `GET /metrics` from node `i`'s rebuilder.
    pub fn metrics(&self, i: usize) -> Result<String> {
        let node = self
            .nodes
            .get(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        match http_get(&node.ns, STATUS, "/metrics", Duration::from_secs(2))? {
            (200, body) => Ok(body),
            (status, body) => Err(NetnsError::Config(format!(
                "/metrics in {} answered {status}: {body}",
                node.ns.name()
            ))),
        }
    }

    /// SIGTERMs every rebuilder and waits up to `timeout` for each (killing it after that);
    /// returns what each did, in node order (nodes never started are skipped).
    pub fn stop_rebuilders(&mut self, timeout: Duration) -> Vec<Finished> {
        for node in &self.nodes {
            if let Some(r) = &node.rebuilder {
                r.signal(libc::SIGTERM);
            }
        }
        self.nodes
            .iter_mut()
            .filter_map(|n| n.rebuilder.take())
            .map(|r| r.wait(timeout))
            .collect()
    }

    /// Runs every plan on its own connection from the client namespace to the origin, all at
    /// once, within `timeout`. Outcomes in plan order; the first failure is returned instead.
    pub fn drive(
        &self,
        plans: &[ConnectionPlan],
        timeout: Duration,
    ) -> Result<Vec<ConnectionOutcome>> {
        let deadline = Instant::now() + timeout;
        let to = self.origin_addr();
        let mut handles = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let plan = plan.clone();
            handles.push(self.client.spawn(&format!("client-{i}"), move || {
                let left = deadline.saturating_duration_since(Instant::now());
                let stream = crate::http_client::connect_from(
                    plan.source,
                    to,
                    left.max(Duration::from_millis(1)),
                )
                .map_err(|source| ClientError::Io {
                    connection: i,
                    source,
                })?;
                run_connection(stream, i, &plan, deadline)
            })?);
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for h in handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match r {
                Ok(Ok(o)) => out.push(o),
                Ok(Err(e)) => {
                    first_err.get_or_insert(NetnsError::Client(e));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// A veth pair with both ends at `mtu` for good, its names noted in `created`.
fn veth(created: &mut Created, a: &Netns, an: &str, b: &Netns, bn: &str, mtu: u32) -> Result<Veth> {
    let v = Veth::new(a, an, b, bn)?;
    created.interfaces.extend([an.to_owned(), bn.to_owned()]);
    for m in v.set_mtu(mtu)? {
        m.persist();
    }
    Ok(v)
}

/// A one-shot `GET path` over HTTP/1.1 from inside `ns`; status and body.
pub fn http_get(
    ns: &Netns,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = ns.run(move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(raw)
    })??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            NetnsError::Config(format!("not an HTTP response from {addr}: {text:.80}"))
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
