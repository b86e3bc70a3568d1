//! The namespace topology library itself, against the real kernel: guards remove what they
//! made, code runs inside namespaces, the NLB namespace spreads flows by 5-tuple hash, and
//! what cannot be set up is named.
//!
//! Needs root and iproute2: without them these tests fail, naming what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use rebuilder_tests::netns::{
    self, leftovers, Clsact, LabConfig, Link, MirrorLab, Netns, NetnsError, Route, Veth, Vxlan,
    VxlanConfig,
};

fn ns(purpose: &str) -> Netns {
    netns::preflight().unwrap_or_else(|e| panic!("{e}"));
    Netns::new(purpose).unwrap_or_else(|e| panic!("{e}"))
}

fn link_names(ns: &Netns) -> BTreeSet<String> {
    ns.ip(&["-o", "link", "show"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

#[test]
fn guards_remove_what_they_made() {
    let a = ns("guarda");
    let b = ns("guardb");
    let (a_name, b_name) = (a.name().to_owned(), b.name().to_owned());
    assert!(
        a_name.starts_with(&format!("rb-guarda-{}-", std::process::id())),
        "{a_name}"
    );
    assert_eq!(link_names(&a), BTreeSet::from(["lo".to_owned()]));

    let veth = Veth::new(&a, "rbta0", &b, "rbtb0").unwrap();
    assert!(link_names(&a).contains("rbta0") && link_names(&b).contains("rbtb0"));

    let addr = veth.a.add_addr("10.250.0.1/24").unwrap();
    assert!(a
        .ip(&["-o", "addr", "show", "dev", "rbta0"])
        .unwrap()
        .contains("10.250.0.1/24"));
    drop(addr);
    assert!(!a
        .ip(&["-o", "addr", "show", "dev", "rbta0"])
        .unwrap()
        .contains("10.250.0.1"));

    let before = veth.a.mtu().unwrap();
    let mtus = veth.set_mtu(9000).unwrap();
    assert_eq!((veth.a.mtu().unwrap(), veth.b.mtu().unwrap()), (9000, 9000));
    drop(mtus);
    assert_eq!(
        (veth.a.mtu().unwrap(), veth.b.mtu().unwrap()),
        (before, before)
    );

    veth.a.add_addr("10.250.0.1/24").unwrap().persist();
    let route = Route::via(&a, "10.251.0.0/16", "10.250.0.2".parse().unwrap(), "rbta0").unwrap();
    assert!(a.ip(&["route", "show"]).unwrap().contains("10.251.0.0/16"));
    drop(route);
    assert!(!a.ip(&["route", "show"]).unwrap().contains("10.251.0.0/16"));

    assert_eq!(a.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
    let fwd = a.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(a.read_sysctl("net.ipv4.ip_forward").unwrap(), "1");
    // Per namespace: the other one is untouched.
    assert_eq!(b.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
    drop(fwd);
    assert_eq!(a.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");

    let vx = Vxlan::new(
        &a,
        "rbtvx0",
        &VxlanConfig {
            vni: 99,
            local: "10.250.0.1".parse().unwrap(),
            remote: "10.250.0.2".parse().unwrap(),
            dstport: 4789,
            underlay: "rbta0".into(),
            mtu: Some(1400),
        },
    )
    .unwrap();
    vx.link().disable_offloads().unwrap();
    let details = a.ip(&["-d", "link", "show", "dev", "rbtvx0"]).unwrap();
    assert!(
        details.contains("vxlan id 99") && details.contains("mtu 1400"),
        "{details}"
    );

    let clsact = Clsact::add(&veth.a).unwrap();
    clsact.mirror_both("rbtvx0").unwrap();
    for dir in ["ingress", "egress"] {
        let f = a.tc(&["filter", "show", "dev", "rbta0", dir]).unwrap();
        assert!(f.contains("Egress Mirror to device rbtvx0"), "{dir}: {f}");
    }
    drop(clsact);
    assert!(!a
        .tc(&["qdisc", "show", "dev", "rbta0"])
        .unwrap()
        .contains("clsact"));

    drop(vx);
    assert!(!link_names(&a).contains("rbtvx0"));
    drop(veth);
    assert!(!link_names(&a).contains("rbta0") && !link_names(&b).contains("rbtb0"));

    drop((a, b));
    let left = leftovers(&netns::Created {
        namespaces: vec![a_name, b_name],
        interfaces: vec!["rbta0".into(), "rbtb0".into(), "rbtvx0".into()],
    })
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A namespace lives while any guard inside it does.
#[test]
fn a_namespace_outlives_its_handle_while_guards_hold_it() {
    let a = ns("holda");
    let b = ns("holdb");
    let name = a.name().to_owned();
    let veth = Veth::new(&a, "rbha0", &b, "rbhb0").unwrap();
    drop(a);
    assert!(link_names(veth.a.ns()).contains("rbha0"));
    assert!(!leftovers(&netns::Created {
        namespaces: vec![name.clone()],
        interfaces: vec![],
    })
    .unwrap()
    .is_empty());
    drop(veth);
    assert!(leftovers(&netns::Created {
        namespaces: vec![name],
        interfaces: vec![],
    })
    .unwrap()
    .is_empty());
}

#[test]
fn sockets_made_inside_a_namespace_stay_there() {
    let a = ns("sock");
    Link::new(&a, "lo")
        .add_addr("10.252.0.1/32")
        .unwrap()
        .persist();
    let here: SocketAddr = "10.252.0.1:0".parse().unwrap();
    // Not an address of the test's own namespace…
    assert!(TcpListener::bind(here).is_err());
    // …but one of the namespace's, whichever thread uses the socket afterwards.
    let listener = a.run(|| TcpListener::bind(here)).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let client = a
        .spawn("connect", move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        })
        .unwrap();
    let (_conn, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(10, 252, 0, 1)));
    client.join().unwrap().unwrap().unwrap();
    assert!(a
        .snmp()
        .unwrap()
        .get("Tcp.ActiveOpens")
        .is_some_and(|n| *n >= 1));
}

#[test]
fn panics_inside_a_namespace_reach_the_caller() {
    let a = ns("panic");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.run(|| panic!("inside")).ok();
    }));
    let msg = r.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>(), Some(&"inside"));
}

#[test]
fn stale_namespaces_of_dead_processes_are_swept() {
    netns::preflight().unwrap_or_else(|e| panic!("{e}"));
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A pid above pid_max never belongs to a live process.
    let stale = format!("rb-stale-{}-0", pid_max + 1);
    netns::ip(&["netns", "add", &stale]).unwrap();
    let alive = ns("alive");
    let swept = Netns::sweep_stale().unwrap();
    assert!(swept.contains(&stale), "{swept:?}");
    assert!(!swept.iter().any(|s| s == alive.name()), "{swept:?}");
    assert!(leftovers(&netns::Created {
        namespaces: vec![stale],
        interfaces: vec![],
    })
    .unwrap()
    .is_empty());
}

#[test]
fn failures_name_what_is_missing() {
    let a = ns("fail");
    let err = Vxlan::new(
        &a,
        "rbfvx0",
        &VxlanConfig {
            vni: 1 << 24,
            local: "10.0.0.1".parse().unwrap(),
            remote: "10.0.0.2".parse().unwrap(),
            dstport: 4789,
            underlay: "lo".into(),
            mtu: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, NetnsError::Config(_)), "{err}");

    let clsact = Clsact::add(&Link::new(&a, "lo")).unwrap();
    let err = clsact.mirror_both("rb-no-such-dev").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetnsError::Feature { .. }), "{msg}");
    assert!(
        msg.contains("mirred") && msg.contains("rb-no-such-dev"),
        "{msg}"
    );

    let err = LabConfig {
        nodes: 0,
        ..LabConfig::default()
    };
    let err = MirrorLab::build(err).err().unwrap();
    assert!(err.to_string().contains("nodes must be in 1..="), "{err}");
}

/// The `nlb` namespace alone: UDP flows to the collector address, from many source ports, are
/// spread over every node, and each flow sticks to one node.
#[test]
fn nlb_spreads_flows_by_five_tuple_and_keeps_each_on_one_node() {
    const NODES: usize = 3;
    const FLOWS: u16 = 48;
    const PER_FLOW: usize = 4;
    let lab = MirrorLab::build(LabConfig {
        nodes: NODES,
        ..LabConfig::default()
    })
    .unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    assert_eq!(
        lab.nlb_ns()
            .read_sysctl("net.ipv4.fib_multipath_hash_policy")
            .unwrap(),
        "1"
    );
    let collector = lab.collector_addr();
    let receivers: Vec<UdpSocket> = lab
        .nodes()
        .iter()
        .map(|n| {
            n.ns()
                .run(|| {
                    let s = UdpSocket::bind(collector)?;
                    s.set_read_timeout(Some(Duration::from_millis(300)))?;
                    std::io::Result::Ok(s)
                })
                .unwrap()
                .unwrap()
        })
        .collect();
    lab.origin_ns()
        .run(|| {
            for f in 0..FLOWS {
                // The origin's underlay address, as the VXLAN device sends from.
                let s = UdpSocket::bind(("10.77.2.1", 40_000 + f)).unwrap();
                for p in 0..PER_FLOW {
                    s.send_to(format!("{f}:{p}").as_bytes(), collector).unwrap();
                }
            }
        })
        .unwrap();
    let mut node_of: BTreeMap<u16, BTreeSet<usize>> = BTreeMap::new();
    let mut per_node = [0usize; NODES];
    for (i, r) in receivers.iter().enumerate() {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = r.recv_from(&mut buf) {
            // The lab's mirror session sends here too (the link's ARP and IPv6 chatter,
            // VXLAN-wrapped): only ours count.
            let Some(flow) = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|t| t.split_once(':'))
                .and_then(|(f, _)| f.parse::<u16>().ok())
            else {
                continue;
            };
            assert_eq!(from.port(), 40_000 + flow);
            node_of.entry(flow).or_default().insert(i);
            per_node[i] += 1;
        }
    }
    assert_eq!(
        per_node.iter().sum::<usize>(),
        usize::from(FLOWS) * PER_FLOW,
        "{per_node:?}"
    );
    assert!(
        node_of.values().all(|n| n.len() == 1),
        "a flow split: {node_of:?}"
    );
    // 48 flows over 3 nodes leaving one empty: about 3 in 10^8.
    assert!(per_node.iter().all(|n| *n > 0), "{per_node:?}");
}
