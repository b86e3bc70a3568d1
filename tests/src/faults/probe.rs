//! Probes of a running rebuilder, from outside: its status server (`GET`), a metric's value,
//! its end-of-run summary, its RSS, waiting for it to serve and stopping it with SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::{setup, FaultError};
use crate::process::{Finished, Running};

/// `GET path` on a status server: (status, body).
pub fn status_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((code, body))
}

/// The value of the metric line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

pub(super) fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(super) fn wait_status(
    rb: &mut Running,
    status: SocketAddr,
    limit: Duration,
) -> Result<(), FaultError> {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = status_get(status, "/metrics") {
            return Ok(());
        }
        if !rb.alive() {
            return Err(setup(format!(
                "rebuilder exited early:\n{}",
                rb.stderr_so_far()
            )));
        }
        if start.elapsed() > limit {
            return Err(setup(format!(
                "no status server after {limit:?}:\n{}",
                rb.stderr_so_far()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number on the summary line `label   N ...`.
pub(super) fn summary_value(stderr: &str, label: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(label)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// SIGTERM, then wait for the exit; (finished, time to exit).
pub(super) fn terminate(rb: Running, limit: Duration) -> (Finished, Duration) {
    rb.signal(libc::SIGTERM);
    let t = Instant::now();
    let fin = rb.wait(limit);
    (fin, t.elapsed())
}

/// Peak resident set size of a process so far (VmHWM), KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmHWM:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
