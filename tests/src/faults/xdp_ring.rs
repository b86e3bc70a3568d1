//! A full XDP ring (root): a tiny ring buffer and a burst into a veth; the full ring is
//! counted, and requests sent afterwards are still rebuilt.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::load::{connection_frames, fault_request};
use super::probe::{metric, terminate};
use super::{setup, FaultError};
use crate::hostile::summary_drops;
use crate::netns::{self, Netns, Veth};
use crate::process::Running;

pub struct RingFullReport {
    pub burst: usize,
    pub ring_full: u64,
    pub pushed: u64,
    /// Requests sent after the burst that came out, of those sent.
    pub after_rebuilt: usize,
    pub after_sent: usize,
    pub exit: Option<i32>,
    pub failures: Vec<String>,
    pub stderr: String,
}

/// A 4 KiB ring buffer and a burst of `burst` data segments into the veth while rebuilder is
/// stopped: the ring overflows (counted as `ring_full`), then, rebuilder resumed, connections
/// sent at an easy pace are still rebuilt.
pub fn run_xdp_ring_full(bin: &Path, burst: usize) -> Result<RingFullReport, FaultError> {
    netns::preflight()?;
    let ns = Netns::new("ring")?;
    let (rx, tx) = ("rbrngrx0", "rbrngtx0");
    let _veth = Veth::new(&ns, rx, &ns, tx)?;
    let status: SocketAddr = "127.0.0.1:9479".parse().map_err(|_| setup("address"))?;
    let dir = std::env::temp_dir().join(format!("rebuilder-ring-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let jsonl = dir.join("requests.jsonl");
    let mut rb = Running::spawn_cmd(ns.command(bin).args([
        "run",
        "--iface",
        rx,
        "--xdp-mode",
        "generic",
        "--xdp-ring-size",
        "4KiB",
        "--jsonl",
        &jsonl.display().to_string(),
        "--status",
        &status.to_string(),
        "--workers",
        "1",
        "--drain-timeout",
        "2s",
    ]))?;
    let metrics = |ns: &Netns| {
        netns::http_get(ns, status, "/metrics", Duration::from_secs(2))
            .ok()
            .filter(|(c, _)| *c == 200)
            .map(|(_, b)| b)
    };
    let start = Instant::now();
    while !metrics(&ns).is_some_and(|m| m.contains("rebuilder_xdp_attached")) {
        if !rb.alive() || start.elapsed() > Duration::from_secs(30) {
            return Err(setup(format!(
                "XDP never attached:\n{}",
                rb.stderr_so_far()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The burst: data segments of many connections (no handshake needed: picked up).
    let mut frames = Vec::with_capacity(burst);
    for n in 0..burst {
        let fs = connection_frames(100_000 + n)?;
        // The request segment is the fourth packet (SYN, SYN-ACK, ACK, request).
        if let Some(f) = fs.into_iter().nth(3) {
            frames.push(f.data);
        }
    }
    // Stopped, rebuilder cannot read the ring, so the burst overflows it whatever the
    // scheduling: left running, a reader on the other core could keep pace with one sender.
    rb.signal(libc::SIGSTOP);
    let sent = ns.send_frames(tx, frames);
    rb.signal(libc::SIGCONT);
    sent?;
    let mut ring_full = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        ring_full = metrics(&ns)
            .and_then(|m| metric(&m, "rebuilder_xdp_packets_total{outcome=\"ring_full\"}"))
            .unwrap_or(0);
        if ring_full > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Afterwards, at an easy pace: every one of these must come out.
    let after_sent = 20;
    for n in 0..after_sent {
        for f in connection_frames(200_000 + n)? {
            ns.send_frames(tx, vec![f.data])?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let wanted: Vec<Vec<u8>> = (0..after_sent)
        .map(|n| fault_request(200_000 + n))
        .collect();
    let read_jsonl = || -> Vec<Vec<u8>> {
        use base64::Engine;
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v["raw"].as_str()?)
                    .ok()
            })
            .collect()
    };
    let start = Instant::now();
    let mut after_rebuilt = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let got = read_jsonl();
        after_rebuilt = wanted
            .iter()
            .filter(|w| got.iter().filter(|g| g == w).count() == 1)
            .count();
        if after_rebuilt == after_sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = metrics(&ns).unwrap_or_default();
    let pushed = metric(&last, "rebuilder_xdp_packets_total{outcome=\"pushed\"}").unwrap_or(0);
    ring_full =
        metric(&last, "rebuilder_xdp_packets_total{outcome=\"ring_full\"}").unwrap_or(ring_full);
    let (fin, _) = terminate(rb, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
    let exit = fin.status.and_then(|s| s.code());
    let mut failures = Vec::new();
    if exit != Some(0) {
        failures.push(format!("exit status {exit:?}"));
    }
    // A 4 KiB ring holds a dozen records at most (the smallest size class is 256 bytes of
    // payload plus the header): nearly all of the burst must be counted as ring_full.
    if ring_full + 64 < burst as u64 {
        failures.push(format!(
            "only {ring_full} ring_full for a burst of {burst} into a 4 KiB ring nobody read"
        ));
    }
    let summary_ring_full = summary_drops(&fin.stderr)
        .get("xdp:ring_full")
        .copied()
        .unwrap_or(0);
    // /metrics reads the kernel's counters once a second; the summary reads them at the end.
    if summary_ring_full < ring_full || summary_ring_full == 0 {
        failures.push(format!(
            "the summary says {summary_ring_full} ring_full, /metrics said {ring_full}"
        ));
    }
    if after_rebuilt != after_sent {
        failures.push(format!(
            "{after_rebuilt} of {after_sent} requests sent after the burst rebuilt once"
        ));
    }
    Ok(RingFullReport {
        burst,
        ring_full,
        pushed,
        after_rebuilt,
        after_sent,
        exit,
        failures,
        stderr: fin.stderr,
    })
}
