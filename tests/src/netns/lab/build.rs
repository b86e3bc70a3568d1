//! Building the lab: namespaces, veth pairs with their MTUs, addresses and routes, the tc
//! mirror into the VXLAN device, the NLB's multipath route, the nodes' collector address, and
//! the origin and sink started in their namespaces. Everything made is noted in [`Created`]
//! so that the teardown can be checked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use super::super::link::VXLAN_OVERHEAD_V4;
use super::super::{
    Clsact, Link, Netns, NetnsError, Origin, Result, Route, Veth, Vxlan, VxlanConfig,
};
use super::*;
use crate::sink::Sink;

impl MirrorLab {
    /// Builds the topology, starts the origin and the sink (not the rebuilders).
    pub fn build(cfg: LabConfig) -> Result<MirrorLab> {
        super::super::preflight()?;
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
