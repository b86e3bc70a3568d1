//! The NIC driver's XDP statistics in `/metrics` (`rebuilder_xdp_driver_packets_total`,
//! `rebuilder_xdp_driver_dropped_packets_total`), on a real driver: veth in a network namespace,
//! the program attached in driver mode, mirrored requests going through it. The driver's
//! counters must move by what really crossed it, equal what `ethtool -S` reports, and the loss
//! before the program must stay at zero when the program saw every packet.
//!
//! Needs root, iproute2, ethtool (Debian packages) and XDP on veth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rebuilder_tests::lab::metrics::parse;
use rebuilder_tests::netns::{Capture, LabConfig, MirrorLab, XdpMode, NODE_IFACE};

/// `ethtool -S IFACE` in the node's namespace: the XDP statistics, summed over queues.
fn ethtool_xdp(lab: &MirrorLab) -> BTreeMap<String, u64> {
    let out = lab.nodes()[0]
        .ns()
        .command("ethtool")
        .args(["-S", NODE_IFACE])
        .output()
        .expect("ethtool is missing: apt-get install -y ethtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sums = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, value)) = line.trim().split_once(": ") else {
            continue;
        };
        // veth: rx_queue_N_xdp_packets and friends.
        if let Some(rest) = name.strip_prefix("rx_queue_") {
            if let Some((_, stat)) = rest.split_once('_') {
                if stat.starts_with("xdp") {
                    *sums.entry(stat.to_string()).or_insert(0) += value.parse::<u64>().unwrap();
                }
            }
        }
    }
    sums
}

fn metric(scrape: &str, name: &str, counter: Option<&str>) -> f64 {
    parse(scrape)
        .iter()
        .filter(|s| s.name == name && s.label("iface") == Some(NODE_IFACE))
        .filter(|s| counter.is_none_or(|c| s.label("counter") == Some(c)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn driver_xdp_counters_are_exported_as_the_driver_counts_them() {
    let mut lab = MirrorLab::build(LabConfig {
        capture: Capture::Xdp(XdpMode::Driver),
        ..LabConfig::default()
    })
    .expect("building the lab needs root, iproute2 and XDP on veth");
    lab.start_rebuilders(&[]).unwrap();
    lab.wait_ready(Duration::from_secs(20)).unwrap();
    let before = ethtool_xdp(&lab);

    // Requests through the mirror: the driver's XDP path takes every VXLAN copy.
    let origin = lab.origin_addr();
    for i in 0..20 {
        lab.client_ns()
            .run(move || -> std::io::Result<()> {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect_timeout(&origin, Duration::from_secs(5))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(s, "GET /nic/{i} HTTP/1.1\r\nHost: origin\r\n\r\n")?;
                let mut answer = [0u8; 1024];
                let _ = s.read(&mut answer)?;
                Ok(())
            })
            .unwrap()
            .expect("a request from the lab's client to its origin");
    }

    // The statistics are read every second; wait until the export caught up with ethtool, on
    // a snapshot that held still around the scrape (a late ACK or FIN of the traffic moving the
    // driver's counters between the two readings would compare different moments).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (scrape, now) = loop {
        let now = ethtool_xdp(&lab);
        let scrape = lab.metrics(0).unwrap();
        let still = ethtool_xdp(&lab) == now;
        let caught_up = ["xdp_packets", "xdp_drops"].iter().all(|c| {
            metric(&scrape, "rebuilder_xdp_driver_packets_total", Some(c)) as u64 == now[*c]
        });
        if (still && caught_up) || Instant::now() > deadline {
            break (scrape, now);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let moved = now["xdp_packets"] - before.get("xdp_packets").copied().unwrap_or(0);
    // Each request and its answer cross the mirror: at least a handshake, request and answer.
    assert!(
        moved >= 20 * 3,
        "the driver counted {moved} packets: {now:?}"
    );
    for counter in ["xdp_packets", "xdp_drops"] {
        assert_eq!(
            metric(&scrape, "rebuilder_xdp_driver_packets_total", Some(counter)) as u64,
            now[counter],
            "{counter}: ethtool says {now:?}\n{scrape}"
        );
    }
    // The program consumed (XDP_DROP) what it parsed: the driver's drops are its verdicts.
    assert!(now["xdp_drops"] > 0, "{now:?}");
    // Everything the driver took in, the program saw: no loss before it.
    let seen: f64 = parse(&scrape)
        .iter()
        .filter(|s| s.name == "rebuilder_xdp_seen_packets_total")
        .map(|s| s.value)
        .sum();
    assert!(
        seen as u64 >= moved,
        "program saw {seen}, driver took {moved}"
    );
    assert_eq!(
        metric(&scrape, "rebuilder_xdp_driver_dropped_packets_total", None),
        0.0,
        "{scrape}"
    );
    assert!(scrape.contains("rebuilder_xdp_driver_dropped_packets_total{iface=\"rbin0\"} 0"));
}
