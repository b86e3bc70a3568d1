//! A flood of mirrored frames as fast as loopback takes them into `rebuilder run --udp`: the
//! peak RSS of a live rebuilder, its drops and flows.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::probe::{free_udp_port, peak_rss_kib, summary_value, terminate, wait_status};
use super::FaultError;
use crate::gen::{Frame, UdpSendOptions, VxlanSender};
use crate::hostile::summary_drops;
use crate::process::Running;
use crate::sink::{unused_local_addr, Sink};

#[derive(Clone, Debug)]
pub struct LiveFloodReport {
    pub sent: usize,
    pub peak_rss_kib: u64,
    pub drops: BTreeMap<String, u64>,
    pub flows: Option<u64>,
    pub exit: Option<i32>,
    pub elapsed: Duration,
    pub stderr: String,
}

/// Sends `frames` as fast as loopback takes them to `rebuilder run --udp` (default budget,
/// `--workers 2`, `--udp-sockets 2`), then stops it: the peak RSS of a live flood.
pub fn run_live_flood(
    bin: &Path,
    frames: &[Frame],
    packets_per_second: Option<u64>,
    extra: &[&str],
) -> Result<LiveFloodReport, FaultError> {
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_udp_port()?);
    let status = unused_local_addr()?;
    let sink = Sink::start_default()?;
    let mut rb = Running::spawn_cmd(
        Command::new(bin)
            .args([
                "run",
                "--udp",
                &udp.to_string(),
                "--udp-sockets",
                "2",
                "--workers",
                "2",
                "--status",
                &status.to_string(),
                "--upstream",
                &sink.url(),
                "--drain-timeout",
                "5s",
            ])
            .args(extra),
    )?;
    wait_status(&mut rb, status, Duration::from_secs(20))?;
    let pid = rb.id();
    let start = Instant::now();
    let mut tx = VxlanSender::new(&UdpSendOptions {
        sockets: 8,
        packets_per_second,
        ..UdpSendOptions::new(udp)
    })?;
    for f in frames {
        tx.send(f)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = peak_rss_kib(pid).unwrap_or(0);
    let (fin, _) = terminate(rb, Duration::from_secs(30));
    Ok(LiveFloodReport {
        sent: frames.len(),
        peak_rss_kib: peak,
        drops: summary_drops(&fin.stderr),
        flows: summary_value(&fin.stderr, "flows"),
        exit: fin.status.and_then(|s| s.code()),
        elapsed: start.elapsed(),
        stderr: fin.stderr,
    })
}
