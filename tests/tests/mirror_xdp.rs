//! The workloads of `mirror_udp.rs` through the XDP input: `rebuilder run --iface rbin0
//! --xdp-mode driver` in each node namespace, the program attached natively to the veth that
//! faces the NLB namespace (with multi-buffer support at MTU 9050). What the sink received
//! must equal, byte for byte and as a multiset, what the client sent; the VXLAN datagrams never
//! reach the node's network stack, and everything else (the NLB's health check, other UDP, a
//! VXLAN-looking datagram to another port) passes through untouched.
//!
//! Needs root, iproute2 and a kernel with XDP on veth: without them these tests fail, naming
//! what is missing.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rebuilder_tests::lab::metrics::{parse, sum};
use rebuilder_tests::mirror::{
    assert_one_node_did_everything, assert_spread, client_bytes, mirror_and_compare, mirror_plans,
    node_udp, spread_plans,
};
use rebuilder_tests::netns::{Capture, LabConfig, MirrorLab, XdpMode};

fn xdp(cfg: LabConfig) -> LabConfig {
    LabConfig {
        capture: Capture::Xdp(XdpMode::Driver),
        ..cfg
    }
}

/// Datagrams sent to node `i` that XDP must pass: plain UDP to a port of its own, and a
/// VXLAN-looking one to a port that is not a VXLAN port.
const PASSED_DATAGRAMS: u64 = 6;

/// While the rebuilders run: the status server answers the NLB's health check across the
/// XDP interface, the program is attached in driver mode, and non-VXLAN traffic reaches the
/// node's sockets.
fn everything_else_passes(lab: &MirrorLab, i: usize) {
    let (code, body) = lab
        .health(i)
        .unwrap_or_else(|e| panic!("health check of node {i} from the nlb: {e}"));
    assert_eq!((code, body.as_str()), (200, "ok\n"), "node {i}");

    let node = &lab.nodes()[i];
    let addr = node.addr();
    let (plain, vxlanish) = node
        .ns()
        .run(move || {
            let bind = |port| {
                let s = UdpSocket::bind((addr, port))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                std::io::Result::Ok(s)
            };
            std::io::Result::Ok((bind(5555)?, bind(4790)?))
        })
        .unwrap()
        .unwrap();
    let (to_plain, to_vxlanish): (SocketAddr, SocketAddr) =
        ((addr, 5555).into(), (addr, 4790).into());
    lab.nlb_ns()
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for k in 0..PASSED_DATAGRAMS - 1 {
                s.send_to(format!("not vxlan {k}").as_bytes(), to_plain)
                    .unwrap();
            }
            // Flags with the I bit, VNI 7, then what could be an inner frame.
            let mut d = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
            d.extend_from_slice(&[0xab; 60]);
            s.send_to(&d, to_vxlanish).unwrap();
        })
        .unwrap();
    let mut buf = [0u8; 128];
    for k in 0..PASSED_DATAGRAMS - 1 {
        let (n, _) = plain
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("plain UDP datagram {k} did not pass XDP: {e}"));
        assert_eq!(&buf[..n], format!("not vxlan {k}").as_bytes());
    }
    let (n, _) = vxlanish
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("VXLAN to port 4790 did not pass XDP: {e}"));
    assert_eq!((n, buf[0], buf[6]), (68, 0x08, 7));

    let m = parse(&lab.metrics(i).unwrap());
    let attached: Vec<_> = m
        .iter()
        .filter(|s| s.name == "rebuilder_xdp_attached" && s.value == 1.0)
        .collect();
    assert_eq!(attached.len(), 1, "{attached:?}");
    assert_eq!(attached[0].label("iface"), Some("rbin0"));
    assert_eq!(attached[0].label("mode"), Some("driver"));
    // Counters are read from the kernel once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = parse(&lab.metrics(i).unwrap());
        let passed = sum(
            &m,
            "rebuilder_xdp_packets_total",
            &[("outcome", "passed_not_vxlan")],
        );
        if passed >= PASSED_DATAGRAMS as f64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "passed_not_vxlan {passed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Since the rebuilder was ready (`ready`: the counters then), the node's stack received
/// exactly the datagrams XDP passed, none of the VXLAN ones: no socket listens on 4789, so one
/// getting through would count as NoPorts. (Before the program is attached, the mirror's
/// copies of the client link's ARP and IPv6 chatter do reach the stack and count there.)
fn stack_saw_no_vxlan(lab: &MirrorLab, i: usize, ready: &BTreeMap<String, u64>) {
    let now = lab.nodes()[i].ns().snmp().unwrap();
    let delta = |k: &str| now.get(k).copied().unwrap_or(0) - ready.get(k).copied().unwrap_or(0);
    assert_eq!(delta("Udp.InDatagrams"), PASSED_DATAGRAMS, "{now:?}");
    assert_eq!(delta("Udp.NoPorts"), 0, "{now:?}");
    assert_eq!(node_udp(lab, i).1, 0, "node {i} saw fragments");
}

fn xdp_figures(lab: &MirrorLab, i: usize) -> (f64, f64, f64) {
    let m = parse(&lab.metrics(i).unwrap());
    (
        sum(&m, "rebuilder_xdp_packets_total", &[("outcome", "pushed")]),
        sum(&m, "rebuilder_xdp_truncated_segments_total", &[]),
        sum(
            &m,
            "rebuilder_xdp_packets_total",
            &[("outcome", "ring_full")],
        ),
    )
}

#[test]
fn mirrored_traffic_is_replayed_byte_for_byte_through_xdp() {
    let pushed = std::cell::Cell::new(0.0);
    mirror_and_compare(
        xdp(LabConfig::default()),
        &mirror_plans("xdp"),
        |lab, ready| {
            everything_else_passes(lab, 0);
            stack_saw_no_vxlan(lab, 0, &ready[0]);
            let (p, truncated, ring_full) = xdp_figures(lab, 0);
            assert_eq!((truncated, ring_full), (0.0, 0.0));
            pushed.set(p);
        },
        |_, run| {
            assert_one_node_did_everything(run);
            // At MTU 1500 every 1448 bytes of request is a segment of its own.
            assert!(
                pushed.get() > (client_bytes(run) / 1448) as f64,
                "{} segments for {} bytes",
                pushed.get(),
                client_bytes(run)
            );
        },
    );
}

/// Multi-MB bodies in 9000-byte frames: the program runs natively on a 9050-MTU veth (above a
/// page, so as a multi-buffer `xdp.frags` program) and reads every byte past the first buffer.
#[test]
fn jumbo_frames_reach_the_native_program_whole() {
    let cfg = xdp(LabConfig {
        mtu: 9000,
        ..LabConfig::default()
    });
    let pushed = std::cell::Cell::new(0.0);
    mirror_and_compare(
        cfg,
        &mirror_plans("xdp-jumbo"),
        |lab, ready| {
            everything_else_passes(lab, 0);
            stack_saw_no_vxlan(lab, 0, &ready[0]);
            let (p, truncated, ring_full) = xdp_figures(lab, 0);
            assert_eq!((truncated, ring_full), (0.0, 0.0));
            pushed.set(p);
        },
        |lab, run| {
            assert_one_node_did_everything(run);
            assert_eq!(lab.veths()[0].a.mtu().unwrap(), 9050);
            assert!(
                pushed.get() < (client_bytes(run) / 1448) as f64,
                "{} segments for {} bytes: frames were not jumbo",
                pushed.get(),
                client_bytes(run)
            );
        },
    );
}

#[test]
fn flows_spread_over_two_xdp_nodes_replay_everything_once() {
    let cfg = xdp(LabConfig {
        nodes: 2,
        ..LabConfig::default()
    });
    mirror_and_compare(
        cfg,
        &spread_plans(16),
        |lab, ready| {
            for (i, ready) in ready.iter().enumerate() {
                everything_else_passes(lab, i);
                stack_saw_no_vxlan(lab, i, ready);
            }
        },
        |_, run| assert_spread(run),
    );
}
