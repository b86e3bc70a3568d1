//! The live half of `cargo xtask bench` (run as root): a burst of VXLAN traffic is replayed at
//! top speed with tcpreplay into a veth, and received on the other end, side by side, by
//! (a) a bare counting XDP_DROP program (the ceiling), (b) `rebuilder run --iface` (XDP) and
//! (c) `rebuilder run --udp`; each replays to a recording sink. Prints a table.
//!
//! Traffic stays inside two namespaces this program creates and removes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rebuilder_tests::netns::{self, Netns, Veth};
use rebuilder_tests::process::Running;
use rebuilder_tests::sink::Sink;

#[derive(Parser)]
struct Args {
    /// The burst (VXLAN frames with outer destination 10.0.0.200, as rebuilder-gen writes them).
    #[arg(long)]
    pcap: PathBuf,
    /// Requests in the burst (from the generator's truth file).
    #[arg(long)]
    requests: u64,
    #[arg(long)]
    rebuilder: PathBuf,
    #[arg(long)]
    xdp_drop: PathBuf,
    /// Repetitions of each variant; medians are reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Only the variants whose name contains this (e.g. `XDP`, `udp`).
    #[arg(long)]
    only: Option<String>,
}

/// What tcpreplay says it sent.
#[derive(Clone, Copy, Default)]
struct Sent {
    packets: u64,
    secs: f64,
}

impl Sent {
    fn pps(self) -> f64 {
        self.packets as f64 / self.secs.max(1e-9)
    }
}

struct Outcome {
    sent: Sent,
    handled: u64,
    replayed: u64,
    cpu_secs: f64,
    peak_rss_kib: u64,
    notes: String,
}

fn tcpreplay(tx: &Netns, pcap: &PathBuf) -> Result<Sent> {
    let out = tx
        .command("tcpreplay")
        .args(["-i", "tx0", "--topspeed", "-q"])
        .arg(pcap)
        .output()
        .context("running tcpreplay (Debian package tcpreplay)")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("tcpreplay failed: {text}");
    }
    // "Actual: 463125 packets (... bytes) sent in 1.23 seconds"
    let line = text
        .lines()
        .find(|l| l.contains("Actual:"))
        .with_context(|| format!("tcpreplay output: {text}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let packets = words
        .get(1)
        .and_then(|w| w.parse().ok())
        .context("tcpreplay packet count")?;
    let secs = words
        .iter()
        .position(|w| *w == "seconds")
        .and_then(|i| words.get(i - 1))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0);
    Ok(Sent { packets, secs })
}

/// utime + stime (seconds) and VmHWM (KiB) of a running process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (ticks(11) + ticks(12)) / hz.max(1.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn bare_drop(tx: &Netns, rx: &Netns, a: &Args) -> Result<Outcome> {
    let mut child = rx
        .command(&a.xdp_drop)
        .args(["rx0", "driver"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting xdp-drop")?;
    std::thread::sleep(Duration::from_millis(500));
    let sent = tcpreplay(tx, &a.pcap)?;
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let handled = text
        .trim()
        .strip_prefix("dropped ")
        .and_then(|n| n.parse().ok())
        .with_context(|| {
            format!(
                "xdp-drop said {text:?} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(Outcome {
        sent,
        handled,
        replayed: 0,
        cpu_secs: 0.0,
        peak_rss_kib: 0,
        notes: String::new(),
    })
}

fn rebuilder(tx: &Netns, rx: &Netns, a: &Args, capture: &[&str]) -> Result<Outcome> {
    let sink = rx.run(Sink::start_default)??;
    let status: SocketAddr = "127.0.0.1:9479".parse()?;
    let mut cmd = rx.command(&a.rebuilder);
    cmd.arg("run").args(capture).args([
        "--upstream",
        &sink.url(),
        "--status",
        &status.to_string(),
        "--queue-requests",
        "100000",
    ]);
    let mut rb = Running::spawn_cmd(&mut cmd)?;
    let start = Instant::now();
    while !matches!(
        netns::http_get(rx, status, "/healthz", Duration::from_secs(1)),
        Ok((200, _))
    ) {
        if !rb.alive() || start.elapsed() > Duration::from_secs(20) {
            bail!("rebuilder did not become healthy:\n{}", rb.stderr_so_far());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = tcpreplay(tx, &a.pcap)?;
    // Done when the sink has been quiet for two seconds.
    let mut last = (sink.received(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(2) && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
        let n = sink.received();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let (_, metrics) = netns::http_get(rx, status, "/metrics", Duration::from_secs(5))?;
    let (cpu_secs, peak_rss_kib) = usage(rb.id());
    rb.signal(libc::SIGTERM);
    let done = rb.wait(Duration::from_secs(30));
    let handled = if capture[0] == "--iface" {
        metric(&metrics, "rebuilder_xdp_seen_packets_total", "")
    } else {
        metric(&metrics, "rebuilder_packets_total", "source=\"udp\"")
    };
    let notes = format!(
        "ring_full={} udp_kernel_drops={} worker_queue_full={} output_dropped={}",
        metric(
            &metrics,
            "rebuilder_xdp_packets_total",
            "outcome=\"ring_full\""
        ),
        metric(&metrics, "rebuilder_udp_kernel_drops_total", ""),
        metric(
            &metrics,
            "rebuilder_segments_dropped_total",
            "worker_queue_full"
        ),
        metric(&metrics, "rebuilder_output_dropped_total", ""),
    );
    if done.status.is_none_or(|s| !s.success()) {
        bail!("rebuilder did not exit cleanly:\n{}", done.stderr);
    }
    Ok(Outcome {
        sent,
        handled,
        replayed: sink.received() as u64,
        cpu_secs,
        peak_rss_kib,
        notes,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let a = Args::parse();
    netns::preflight()?;
    let tx = Netns::new("benchtx")?;
    let rx = Netns::new("benchrx")?;
    let veth = Veth::new(&tx, "tx0", &rx, "rx0")?;
    // Kept: the guards restore the old MTU when dropped.
    let _mtu = veth.set_mtu(9000)?;
    // The UDP path needs the frames addressed to rx0: the generator's mirror target address,
    // and its MAC (the first frame's destination).
    let mac = first_dst_mac(&a.pcap)?;
    rx.ip(&["link", "set", "dev", "rx0", "address", &mac])?;
    rx.ip(&["addr", "add", "10.0.0.200/16", "dev", "rx0"])?;
    rx.ip(&["link", "set", "dev", "lo", "up"])?;
    rx.write_sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    rx.write_sysctl("net.ipv4.conf.rx0.rp_filter", "0")?;

    let variants: [(&str, Option<&[&str]>); 3] = [
        ("bare XDP_DROP (ceiling)", None),
        (
            "rebuilder --iface (XDP, driver)",
            Some(&["--iface", "rx0", "--xdp-mode", "driver"]),
        ),
        ("rebuilder --udp", Some(&["--udp", "10.0.0.200:4789"])),
    ];
    let mut results: Vec<Vec<Outcome>> = variants.iter().map(|_| Vec::new()).collect();
    for run in 0..a.runs {
        for (i, (name, capture)) in variants.iter().enumerate() {
            if a.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                continue;
            }
            eprintln!("run {}/{}: {name}", run + 1, a.runs);
            let o = match capture {
                None => bare_drop(&tx, &rx, &a)?,
                Some(c) => rebuilder(&tx, &rx, &a, c)?,
            };
            results[i].push(o);
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "burst: {} ({} requests)", a.pcap.display(), a.requests)?;
    writeln!(out, "| receiver | packets sent | sent at (pps) | handled | lost | requests replayed | CPU s / M packets | peak RSS | notes |")?;
    writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for ((name, _), rs) in variants.iter().zip(&results) {
        if rs.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(&Outcome) -> f64| median(rs.iter().map(f).collect());
        let sent = pick(&|o| o.sent.packets as f64);
        let handled = pick(&|o| o.handled as f64);
        let cpu = pick(&|o| o.cpu_secs / (o.handled.max(1) as f64 / 1e6));
        let replayed = if name.starts_with("bare") {
            "n/a".to_string()
        } else {
            format!("{:.0} / {}", pick(&|o| o.replayed as f64), a.requests)
        };
        let cpu = if name.starts_with("bare") {
            "n/a".to_string()
        } else {
            format!("{cpu:.2}")
        };
        let rss = if name.starts_with("bare") {
            "n/a".to_string()
        } else {
            format!("{:.0} MiB", pick(&|o| o.peak_rss_kib as f64) / 1024.0)
        };
        writeln!(
            out,
            "| {name} | {sent:.0} | {:.0} | {handled:.0} | {:.0} | {replayed} | {cpu} | {rss} | {} |",
            pick(&|o| o.sent.pps()),
            (sent - handled).max(0.0),
            rs.last().map_or("", |o| o.notes.as_str())
        )?;
    }
    drop(veth);
    Ok(())
}

/// Destination MAC of the first frame of a classic pcap file (Ethernet link type).
fn first_dst_mac(pcap: &PathBuf) -> Result<String> {
    let mut f = std::fs::File::open(pcap)?;
    let mut head = [0u8; 24 + 16 + 6];
    std::io::Read::read_exact(&mut f, &mut head).context("reading the burst's first frame")?;
    let m = &head[40..46];
    Ok(m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}
