//! The live half of `cargo xtask bench` (run as root): a burst of VXLAN traffic is replayed at
//! top speed with tcpreplay into a veth, and received on the other end, side by side, by
//! (a) a bare counting XDP_DROP program (the ceiling), (b) `rebuilder run --iface` (XDP) and
//! (c) `rebuilder run --udp`; and the same file is replayed offline (`rebuilder replay`), so
//! the per-packet CPU of each capture path is compared with offline on the same traffic and
//! the same output. Each rebuilder variant runs twice: writing JSON lines (the capture path's
//! own cost) and replaying to an HTTP sink (what a node pays with the upstream output). Every
//! request is checked byte for byte against the generator's truth. Prints a table.
//!
//! CPU is the rebuilder process's user + system time from just before the burst to the end of
//! its replay (loading and verifying the XDP program is not per-packet work); for offline, the
//! whole `replay` run. The XDP program itself runs in the kernel's receive path, charged to
//! whoever is sending (here tcpreplay), so it is measured apart from the kernel's own
//! per-program statistics (`kernel.bpf_stats_enabled`, ns per packet) and added to the XDP
//! path's CPU ("with XDP program") before it is compared with offline: a node pays for both.
//! The UDP path's kernel receive work (IP and UDP input, queueing) is likewise charged to the
//! sender and is not counted; the time the daemon spends in `recvmmsg` is.
//!
//! On this kind of machine (2 cores) the sender and the kernel's receive path share the cores
//! and caches with the receiver, which could slow the same code; the variant "offline replay →
//! jsonl, burst beside" measures that, running the offline replay during a burst to the bare
//! XDP_DROP, and the live paths are also compared with it (printed below the table).
//!
//! Each round runs every variant once, back to back; the ratios (vs XDP_DROP, vs offline) are
//! medians of each round's ratio, the other columns medians of the runs.
//!
//! Traffic stays inside two namespaces this program creates and removes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Parser;
use rebuilder_tests::compare::compare;
use rebuilder_tests::netns::{self, Netns, Veth};
use rebuilder_tests::process::Running;
use rebuilder_tests::sink::Sink;
use rebuilder_tests::truth::read_truth;

#[derive(Parser)]
struct Args {
    /// The burst (VXLAN frames with outer destination 10.0.0.200, as rebuilder-gen writes them).
    #[arg(long)]
    pcap: PathBuf,
    /// The generator's truth file for the burst: what every request must be, byte for byte.
    #[arg(long)]
    truth: PathBuf,
    #[arg(long)]
    rebuilder: PathBuf,
    #[arg(long)]
    xdp_drop: PathBuf,
    /// Repetitions of each variant; medians are reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Only the variants whose name contains this (e.g. `XDP`, `udp`, `jsonl`).
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
    /// Requests that came out, and how many of them matched the truth byte for byte.
    replayed: u64,
    exact: u64,
    cpu_secs: f64,
    peak_rss_kib: u64,
    /// The XDP program's mean run time per packet (kernel statistics), when it ran.
    xdp_ns: Option<f64>,
    /// Context switches of the receiver's threads during the burst (live rebuilder only).
    switches: Option<u64>,
    notes: String,
}

/// Where a rebuilder variant's requests go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Jsonl,
    Sink,
}

/// How a variant receives the burst.
#[derive(Clone, Copy)]
enum Receiver {
    BareDrop,
    Xdp,
    Udp,
    Offline,
    /// Offline, while the burst goes to the bare XDP_DROP.
    OfflineBesideBurst,
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

/// Context switches of every thread of a running process, voluntary (a thread blocked: a
/// wake-up later) and not: the wake-ups a capture path costs.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The requests of a JSON-lines output file, raw bytes.
fn jsonl_requests(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).context("an output line")?;
            let raw = v["raw"].as_str().context("a line without raw")?;
            B64.decode(raw).context("raw is not base64")
        })
        .collect()
}

/// Requests that came out exactly as the truth says they were sent (multiset match).
fn exact(truth: &[Vec<u8>], got: &[Vec<u8>]) -> u64 {
    let c = compare(truth, got);
    let missing: usize = c.missing.iter().map(|d| d.count).sum();
    (c.expected - missing) as u64
}

/// The kernel's run time and run count of every loaded XDP program (bpf_stats).
fn xdp_prog_stats() -> (u64, u64) {
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
    else {
        return (0, 0);
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return (0, 0);
    };
    v.as_array().map_or((0, 0), |progs| {
        progs
            .iter()
            .filter(|p| p["type"] == "xdp")
            .fold((0, 0), |(ns, n), p| {
                (
                    ns + p["run_time_ns"].as_u64().unwrap_or(0),
                    n + p["run_cnt"].as_u64().unwrap_or(0),
                )
            })
    })
}

/// The bare counting XDP_DROP, attached to rx0 (stopped by [`stop_drop`]).
fn start_drop(rx: &Netns, a: &Args) -> Result<std::process::Child> {
    let child = rx
        .command(&a.xdp_drop)
        .args(["rx0", "driver"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting xdp-drop")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

/// Detaches the XDP_DROP and returns how many packets it dropped.
fn stop_drop(mut child: std::process::Child) -> Result<u64> {
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("dropped ")
        .and_then(|n| n.parse().ok())
        .with_context(|| {
            format!(
                "xdp-drop said {text:?} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn bare_drop(tx: &Netns, rx: &Netns, a: &Args) -> Result<Outcome> {
    let child = start_drop(rx, a)?;
    let before = xdp_prog_stats();
    let sent = tcpreplay(tx, &a.pcap)?;
    let after = xdp_prog_stats();
    let handled = stop_drop(child)?;
    Ok(Outcome {
        sent,
        handled,
        replayed: 0,
        exact: 0,
        cpu_secs: 0.0,
        peak_rss_kib: 0,
        xdp_ns: per_run(before, after),
        switches: None,
        notes: String::new(),
    })
}

/// The offline replay while the burst is sent to the bare XDP_DROP: the same work as
/// [`offline`], on a machine as busy as during a live run. On this 2-core machine tcpreplay and
/// the kernel's receive path share the cores (and their caches) with the receiver, which a NIC
/// does not; this control shows how much of a live path's cost over offline that load alone
/// accounts for. The replay starts 100 ms into the burst and must end before it (noted if not).
fn offline_beside_burst(tx: &Netns, rx: &Netns, a: &Args, truth: &[Vec<u8>]) -> Result<Outcome> {
    let child = start_drop(rx, a)?;
    let (sent, replay, replay_secs) = std::thread::scope(|s| {
        let burst = s.spawn(|| tcpreplay(tx, &a.pcap));
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let replay = offline(a, truth, Output::Jsonl);
        let secs = t0.elapsed().as_secs_f64();
        let sent = burst
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the tcpreplay thread panicked")));
        (sent, replay, secs)
    });
    stop_drop(child)?;
    let (sent, mut o) = (sent?, replay?);
    if replay_secs + 0.1 > sent.secs {
        o.notes = format!(
            "replay ({replay_secs:.2} s) outlasted the burst ({:.2} s)",
            sent.secs
        );
    }
    Ok(o)
}

fn per_run(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let runs = after.1.saturating_sub(before.1);
    (runs > 0).then(|| after.0.saturating_sub(before.0) as f64 / runs as f64)
}

fn rebuilder(
    tx: &Netns,
    rx: &Netns,
    a: &Args,
    truth: &[Vec<u8>],
    capture: &[&str],
    output: Output,
) -> Result<Outcome> {
    let sink = rx.run(Sink::start_default)??;
    let jsonl = std::env::temp_dir().join(format!("rebuilder-bench-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&jsonl);
    let status: SocketAddr = "127.0.0.1:9479".parse()?;
    let mut cmd = rx.command(&a.rebuilder);
    cmd.arg("run").args(capture).args([
        "--status",
        &status.to_string(),
        "--queue-requests",
        "100000",
    ]);
    match output {
        Output::Jsonl => cmd.arg("--jsonl").arg(&jsonl),
        Output::Sink => cmd.args(["--upstream", &sink.url()]),
    };
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
    // CPU spent loading and attaching (the verifier runs on this process's time) is not
    // per-packet work: the burst's cost is what the process spends from here on.
    let (cpu_before, _) = usage(rb.id());
    let switches_before = context_switches(rb.id());
    let xdp_before = xdp_prog_stats();
    let sent = tcpreplay(tx, &a.pcap)?;
    let xdp_after = xdp_prog_stats();
    // Done when the output has been quiet for two seconds.
    let progress = || match output {
        Output::Jsonl => std::fs::metadata(&jsonl).map_or(0, |m| m.len() as usize),
        Output::Sink => sink.received(),
    };
    let mut last = (progress(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(2) && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
        let n = progress();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let (_, metrics) = netns::http_get(rx, status, "/metrics", Duration::from_secs(5))?;
    let (cpu_after, peak_rss_kib) = usage(rb.id());
    let switches = context_switches(rb.id()).saturating_sub(switches_before);
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
    let got = match output {
        Output::Jsonl => jsonl_requests(&jsonl)?,
        Output::Sink => sink.take().into_iter().map(|r| r.raw).collect(),
    };
    let _ = std::fs::remove_file(&jsonl);
    Ok(Outcome {
        sent,
        handled,
        replayed: got.len() as u64,
        exact: exact(truth, &got),
        cpu_secs: cpu_after - cpu_before,
        switches: Some(switches),
        peak_rss_kib,
        xdp_ns: if capture[0] == "--iface" {
            per_run(xdp_before, xdp_after)
        } else {
            None
        },
        notes,
    })
}

/// `rebuilder replay` of the same file, under GNU time (CPU and peak RSS of the whole run).
fn offline(a: &Args, truth: &[Vec<u8>], output: Output) -> Result<Outcome> {
    let dir = std::env::temp_dir();
    let jsonl = dir.join(format!("rebuilder-bench-{}.jsonl", std::process::id()));
    let report = dir.join(format!("rebuilder-bench-time-{}", std::process::id()));
    let sink = Sink::start_default()?;
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(&a.rebuilder)
        .args(["replay", "--no-progress", "--pcap"])
        .arg(&a.pcap);
    match output {
        Output::Jsonl => cmd.arg("--jsonl").arg(&jsonl),
        Output::Sink => cmd.args(["--upstream", &sink.url()]),
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running rebuilder replay under /usr/bin/time (Debian package time)")?;
    if !out.status.success() {
        bail!(
            "rebuilder replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t = std::fs::read_to_string(&report)?;
    let _ = std::fs::remove_file(&report);
    let f: Vec<f64> = t
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 3 {
        bail!("cannot read GNU time's report {t:?}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let packets = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("packets"))
        .and_then(|v| v.trim_start_matches([' ', ':']).split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let got = match output {
        Output::Jsonl => jsonl_requests(&jsonl)?,
        Output::Sink => {
            sink.wait_quiet(Duration::from_millis(500), Duration::from_secs(30));
            sink.take().into_iter().map(|r| r.raw).collect()
        }
    };
    let _ = std::fs::remove_file(&jsonl);
    Ok(Outcome {
        sent: Sent { packets, secs: 0.0 },
        handled: packets,
        replayed: got.len() as u64,
        exact: exact(truth, &got),
        cpu_secs: f[0] + f[1],
        peak_rss_kib: f[2] as u64,
        xdp_ns: None,
        switches: None,
        notes: String::new(),
    })
}

/// The median over rounds of `value[i] / base[i]`; none when the base was not measured in every
/// round (`--only` leaving it out).
fn round_ratios(value: &[f64], base: &[f64]) -> Option<f64> {
    (!base.is_empty() && base.len() == value.len())
        .then(|| median(value.iter().zip(base).map(|(v, b)| v / b).collect()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let a = Args::parse();
    netns::preflight()?;
    let truth: Vec<Vec<u8>> = read_truth(&a.truth)
        .with_context(|| format!("reading {}", a.truth.display()))?
        .into_iter()
        .filter(|t| t.rebuildable)
        .map(|t| t.raw)
        .collect();
    // The kernel keeps per-program run time only while asked to; restored on the way out.
    let stats_was = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap_or_else(|_| "0".into());
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
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

    let xdp: &[&str] = &["--iface", "rx0", "--xdp-mode", "driver"];
    let udp: &[&str] = &["--udp", "10.0.0.200:4789"];
    let variants: [(&str, Receiver, Output); 8] = [
        ("bare XDP_DROP (ceiling)", Receiver::BareDrop, Output::Jsonl),
        ("offline replay → jsonl", Receiver::Offline, Output::Jsonl),
        (
            "offline replay → jsonl, burst beside",
            Receiver::OfflineBesideBurst,
            Output::Jsonl,
        ),
        ("XDP (driver) → jsonl", Receiver::Xdp, Output::Jsonl),
        ("UDP socket → jsonl", Receiver::Udp, Output::Jsonl),
        (
            "offline replay → HTTP sink",
            Receiver::Offline,
            Output::Sink,
        ),
        ("XDP (driver) → HTTP sink", Receiver::Xdp, Output::Sink),
        ("UDP socket → HTTP sink", Receiver::Udp, Output::Sink),
    ];
    let mut results: Vec<Vec<Outcome>> = variants.iter().map(|_| Vec::new()).collect();
    for run in 0..a.runs {
        for (i, (name, receiver, output)) in variants.iter().enumerate() {
            if a.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                continue;
            }
            eprintln!("run {}/{}: {name}", run + 1, a.runs);
            let o = match receiver {
                Receiver::BareDrop => bare_drop(&tx, &rx, &a)?,
                Receiver::Xdp => rebuilder(&tx, &rx, &a, &truth, xdp, *output)?,
                Receiver::Udp => rebuilder(&tx, &rx, &a, &truth, udp, *output)?,
                Receiver::Offline => offline(&a, &truth, *output)?,
                Receiver::OfflineBesideBurst => offline_beside_burst(&tx, &rx, &a, &truth)?,
            };
            results[i].push(o);
        }
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_was.trim());
    // Each run's rate against the ceiling measured in the same round, then the median of those
    // ratios: the machine's speed drifts between rounds more than a program's cost differs.
    let ceiling_pps: Vec<f64> = results[0].iter().map(|o| o.sent.pps()).collect();
    let vs_ceiling = |rs: &[Outcome]| {
        round_ratios(
            &rs.iter().map(|o| o.sent.pps()).collect::<Vec<_>>(),
            &ceiling_pps,
        )
    };
    let cpu_per_m = |o: &Outcome| o.cpu_secs / (o.handled.max(1) as f64 / 1e6);
    // The XDP program runs in the kernel's receive path, outside the daemon's CPU time, but a
    // node pays for it all the same: the comparison with offline counts it.
    let all_per_m = |o: &Outcome| {
        let program = o.xdp_ns.unwrap_or(0.0) * o.sent.packets as f64 * 1e-9;
        (o.cpu_secs + program) / (o.handled.max(1) as f64 / 1e6)
    };
    // Offline's CPU per run, for the output the live variant writes to.
    let offline_cpu = |output: Output| {
        variants
            .iter()
            .zip(&results)
            .find(|((_, r, out), rs)| {
                matches!(r, Receiver::Offline) && *out == output && !rs.is_empty()
            })
            .map(|(_, rs)| rs.iter().map(all_per_m).collect::<Vec<_>>())
    };
    // Like the ceiling: each run against offline in the same round (they run back to back).
    let vs_offline = |rs: &[Outcome], output: Output| {
        round_ratios(
            &rs.iter().map(all_per_m).collect::<Vec<_>>(),
            &offline_cpu(output)?,
        )
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "burst: {} ({} requests); medians of {} run(s)",
        a.pcap.display(),
        truth.len(),
        a.runs
    )?;
    writeln!(out, "| receiver → output | packets | sent at (pps) | vs XDP_DROP | lost | requests byte-exact | CPU s / M packets | with XDP program | vs offline | context switches / k packets | XDP prog ns/packet | peak RSS | notes |")?;
    writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for ((name, receiver, output), rs) in variants.iter().zip(&results) {
        if rs.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(&Outcome) -> f64| median(rs.iter().map(f).collect());
        let na = || "n/a".to_string();
        let live = !matches!(receiver, Receiver::Offline | Receiver::OfflineBesideBurst);
        let bare = matches!(receiver, Receiver::BareDrop);
        let sent = pick(&|o| o.sent.packets as f64);
        let handled = pick(&|o| o.handled as f64);
        let pps = pick(&|o| o.sent.pps());
        let cpu = pick(&cpu_per_m);
        let all = pick(&all_per_m);
        let row = [
            name.to_string(),
            format!("{sent:.0}"),
            if live { format!("{pps:.0}") } else { na() },
            match vs_ceiling(rs) {
                Some(r) if live => format!("{:.0}%", 100.0 * r),
                _ => na(),
            },
            if live {
                format!("{:.0}", (sent - handled).max(0.0))
            } else {
                na()
            },
            if bare {
                na()
            } else {
                format!(
                    "{:.0} / {} ({:.0} out)",
                    pick(&|o| o.exact as f64),
                    truth.len(),
                    pick(&|o| o.replayed as f64)
                )
            },
            if bare { na() } else { format!("{cpu:.2}") },
            if bare || !matches!(receiver, Receiver::Xdp) {
                na()
            } else {
                format!("{all:.2}")
            },
            match vs_offline(rs, *output) {
                Some(r) if !bare => format!("{r:.2}×"),
                _ => na(),
            },
            match rs
                .iter()
                .filter_map(|o| Some(o.switches? as f64 * 1e3 / o.handled.max(1) as f64))
                .collect::<Vec<_>>()
            {
                v if v.is_empty() => na(),
                v => format!("{:.1}", median(v)),
            },
            match rs.iter().filter_map(|o| o.xdp_ns).collect::<Vec<_>>() {
                v if v.is_empty() => na(),
                v => format!("{:.0}", median(v)),
            },
            if bare {
                na()
            } else {
                format!("{:.0} MiB", pick(&|o| o.peak_rss_kib as f64) / 1024.0)
            },
            rs.last().map_or(String::new(), |o| o.notes.clone()),
        ];
        writeln!(out, "| {} |", row.join(" | "))?;
    }
    // The live paths against the offline replay under the same load (see `offline_beside_burst`).
    let beside: Option<Vec<f64>> = variants
        .iter()
        .zip(&results)
        .find(|((_, r, _), rs)| matches!(r, Receiver::OfflineBesideBurst) && !rs.is_empty())
        .map(|(_, rs)| rs.iter().map(all_per_m).collect());
    if let Some(base) = beside {
        for ((name, receiver, output), rs) in variants.iter().zip(&results) {
            let live = matches!(receiver, Receiver::Xdp | Receiver::Udp);
            if let (true, Output::Jsonl, Some(r)) = (
                live,
                output,
                round_ratios(&rs.iter().map(all_per_m).collect::<Vec<_>>(), &base),
            ) {
                writeln!(out, "{name}: {r:.2}× offline with the burst beside")?;
            }
        }
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
