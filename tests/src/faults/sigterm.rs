//! SIGTERM while the queue is full behind a slow upstream: the process drains within
//! `--drain-timeout`, exits 0, and counts what it abandoned.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::load::Driver;
use super::probe::{free_udp_port, metric, status_get, summary_value, terminate, wait_status};
use super::FaultError;
use crate::hostile::summary_drops;
use crate::process::Running;
use crate::sink::{unused_local_addr, Sink, SinkConfig};

pub struct SigtermReport {
    pub sent: usize,
    pub rebuilt: u64,
    pub replayed: u64,
    pub drops: BTreeMap<String, u64>,
    /// Queue depth just before SIGTERM.
    pub queued: u64,
    pub drain_timeout: Duration,
    /// From SIGTERM to exit.
    pub shutdown: Duration,
    pub exit: Option<i32>,
    pub failures: Vec<String>,
    pub stderr: String,
}

/// Fills the queue behind a slow upstream, sends SIGTERM under full load and checks the drain.
pub fn run_sigterm_under_load(bin: &Path) -> Result<SigtermReport, FaultError> {
    let drain_timeout = Duration::from_secs(1);
    let sink = Sink::start(SinkConfig {
        response_delay: Duration::from_millis(100),
        ..SinkConfig::default()
    })?;
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_udp_port()?);
    let status = unused_local_addr()?;
    let mut rb = Running::spawn_cmd(Command::new(bin).args([
        "run",
        "--udp",
        &udp.to_string(),
        "--udp-sockets",
        "1",
        "--workers",
        "1",
        "--status",
        &status.to_string(),
        "--upstream",
        &sink.url(),
        "--pool-size",
        "2",
        "--queue-requests",
        "300",
        "--drain-timeout",
        "1s",
    ]))?;
    wait_status(&mut rb, status, Duration::from_secs(20))?;
    let driver = Driver::start(udp, 400, 400 * 30)?;
    // 20 answers a second against 400 offered: the queue fills and stays full.
    let start = Instant::now();
    let mut queued = 0;
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok((200, m)) = status_get(status, "/metrics") {
            queued =
                metric(&m, "rebuilder_output_queue_requests{output=\"upstream\"}").unwrap_or(0);
            if queued >= 250 && start.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
    }
    // Under full load: the driver keeps sending through the signal.
    let (fin, shutdown) = terminate(rb, Duration::from_secs(20));
    let sent = driver.finish()?.len();
    drop(sink);
    let drops = summary_drops(&fin.stderr);
    let rebuilt = summary_value(&fin.stderr, "requests rebuilt").unwrap_or(0);
    let replayed = summary_value(&fin.stderr, "upstream").unwrap_or(0);
    let exit = fin.status.and_then(|s| s.code());
    let mut failures = Vec::new();
    if exit != Some(0) {
        failures.push(format!("exit status {exit:?}"));
    }
    if queued < 250 {
        failures.push(format!("the queue never filled ({queued} queued)"));
    }
    // The deadline, plus the capture's poll and the workers' finish.
    if shutdown > drain_timeout + Duration::from_secs(2) {
        failures.push(format!(
            "took {shutdown:?} to exit with a {drain_timeout:?} drain deadline"
        ));
    }
    let shutdown_drops = drops.get("upstream:shutdown").copied().unwrap_or(0);
    if shutdown_drops == 0 {
        failures.push(format!(
            "no request counted as abandoned at shutdown: {drops:?}"
        ));
    }
    let upstream_drops: u64 = drops
        .iter()
        .filter(|(k, _)| k.starts_with("upstream:"))
        .map(|(_, n)| n)
        .sum();
    if replayed + upstream_drops != rebuilt {
        failures.push(format!(
            "not every request accounted for: {rebuilt} rebuilt, {replayed} replayed, {upstream_drops} dropped ({drops:?})"
        ));
    }
    if fin.stderr.contains("panicked") {
        failures.push("rebuilder panicked".into());
    }
    Ok(SigtermReport {
        sent,
        rebuilt,
        replayed,
        drops,
        queued,
        drain_timeout,
        shutdown,
        exit,
        failures,
        stderr: fin.stderr,
    })
}
