//! `cargo xtask bench`: whole-process figures, measured side by side in one run.
//!
//! A capture of keep-alive HTTP traffic (GETs and POSTs with bodies) is generated once, then
//! `rebuilder replay --pcap F --jsonl /dev/null` and the reference, tshark extracting every
//! HTTP request of the same file, run alternately; medians and ratios are printed. A second,
//! twice larger capture with the same concurrency shows whether peak RSS follows the number of
//! concurrent flows rather than the file size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{cargo, deps, release_bin, root, run};

struct Opts {
    packets: u64,
    runs: usize,
    connections: u64,
    skip_tshark: bool,
    offline: bool,
    live: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        packets: 1_000_000,
        runs: 3,
        connections: 512,
        skip_tshark: false,
        offline: true,
        live: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<u64> {
            it.next()
                .with_context(|| format!("{what} needs a value"))?
                .parse()
                .with_context(|| format!("bad {what}"))
        };
        match a.as_str() {
            "--packets" => o.packets = num("--packets")?,
            "--runs" => o.runs = num("--runs")? as usize,
            "--connections" => o.connections = num("--connections")?,
            "--no-tshark" => o.skip_tshark = true,
            "--offline-only" => o.live = false,
            "--live-only" => o.offline = false,
            other => bail!(
                "unknown bench option {other:?} (--packets N, --runs N, --connections N, --no-tshark, --offline-only, --live-only)"
            ),
        }
    }
    Ok(o)
}

/// One timed process.
struct Sample {
    wall: f64,
    cpu: f64,
    max_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` under GNU time, which reports CPU time and peak RSS.
fn timed(cmd: &[&str]) -> Result<Sample> {
    let report = std::env::temp_dir().join(format!("rebuilder-bench-time-{}", std::process::id()));
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&report)
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
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
    Ok(Sample {
        wall,
        cpu: f[0] + f[1],
        max_rss_kib: f[2] as u64,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn summary_value(stderr: &str, label: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.trim_start()
            .strip_prefix(label)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Generates (or reuses) a capture of `packets` packets; returns it and its request count.
fn capture(dir: &Path, packets: u64, connections: u64) -> Result<(PathBuf, u64)> {
    let pcap = dir.join(format!("keepalive-{packets}-{connections}.pcap"));
    let truth = pcap.with_extension("truth");
    if !pcap.exists() || !truth.exists() {
        println!(
            "generating {} ({packets} packets, {connections} concurrent connections)",
            pcap.display()
        );
        run(Command::new(release_bin("rebuilder-gen")).args([
            "--out",
            &pcap.display().to_string(),
            "--truth",
            &truth.display().to_string(),
            "--packets",
            &packets.to_string(),
            "--connections",
            &connections.to_string(),
            "--requests-per-connection",
            "20",
            "--post-percent",
            "30",
            "--post-bytes",
            "2000",
            "--seed",
            "7",
        ]))?;
    }
    let requests = std::fs::read_to_string(&truth)?.lines().count() as u64;
    Ok((pcap, requests))
}

pub fn bench(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    deps::ensure(deps::BUILD)?;
    deps::ensure(deps::BENCH)?;
    if o.live {
        if !deps::is_root() {
            bail!("the live benchmark needs root (network namespaces, XDP); use --offline-only, or run as root");
        }
        deps::ensure(deps::BENCH_LIVE)?;
    }
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "rebuilder",
        "-p",
        "rebuilder-tests",
        "-p",
        "rebuilder-ebpf",
        "--bins",
    ]))?;
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir)?;
    if o.offline {
        offline(&o, &dir)?;
    }
    if o.live {
        live(&o, &dir)?;
    }
    Ok(())
}

/// Issues 3 and 12: a burst of 100k requests at tcpreplay's top speed into a veth, received by
/// a bare XDP_DROP program, rebuilder in XDP mode and on a UDP socket, and replayed offline
/// from the same file, each to JSON lines and to an HTTP sink; then the XDP program's own
/// cost per packet.
fn live(o: &Opts, dir: &Path) -> Result<()> {
    let pcap = dir.join("burst-100k.pcap");
    let truth = pcap.with_extension("truth");
    if !pcap.exists() || !truth.exists() {
        println!("generating {} (100k requests)", pcap.display());
        run(Command::new(release_bin("rebuilder-gen")).args([
            "--out",
            &pcap.display().to_string(),
            "--truth",
            &truth.display().to_string(),
            "--conversations",
            "5000",
            "--connections",
            "500",
            "--requests-per-connection",
            "20",
            "--post-percent",
            "30",
            "--post-bytes",
            "2000",
            "--seed",
            "11",
        ]))?;
    }
    println!();
    run(Command::new(release_bin("rebuilder-bench-live"))
        .arg("--pcap")
        .arg(&pcap)
        .arg("--truth")
        .arg(&truth)
        .args(["--runs", &o.runs.to_string()])
        .arg("--rebuilder")
        .arg(release_bin("rebuilder"))
        .arg("--xdp-drop")
        .arg(release_bin("xdp-drop")))?;
    // The program's own cost without the live burst's noise (BPF_PROG_TEST_RUN on the same
    // frames): the figure to compare changes to the C source by.
    println!();
    run(Command::new(release_bin("xdp-cost"))
        .arg(&pcap)
        .args(["2000", "200"]))
}

/// Issue 2's figures: offline replay of 1M packets against tshark on the same file.
fn offline(o: &Opts, dir: &Path) -> Result<()> {
    let (pcap, requests) = capture(dir, o.packets, o.connections)?;
    let (pcap2, _) = capture(dir, o.packets * 2, o.connections)?;
    let rb = release_bin("rebuilder");
    let rb = rb.to_str().context("binary path")?;
    let file = pcap.to_str().context("path")?;
    let file2 = pcap2.to_str().context("path")?;
    let replay = |f: &str, workers: &str| {
        vec![
            rb.to_string(),
            "replay".into(),
            "--pcap".into(),
            f.to_string(),
            "--jsonl".into(),
            "/dev/null".into(),
            "--no-progress".into(),
            "--workers".into(),
            workers.to_string(),
        ]
    };
    let tshark: Vec<String> = [
        "tshark",
        "-r",
        file,
        "-n",
        "-d",
        "udp.port==4789,vxlan",
        "-Y",
        "http.request",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let (mut rb_wall, mut rb_cpu, mut rb1_wall, mut rb1_cpu, mut ts_wall, mut rss, mut rss2) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut packets, mut rebuilt, mut ts_requests) = (0, 0, 0);
    for i in 0..o.runs {
        println!("run {}/{}", i + 1, o.runs);
        let s = timed(
            &replay(file, "0")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        packets = summary_value(&s.stderr, "packets").unwrap_or(0);
        rebuilt = summary_value(&s.stderr, "requests rebuilt").unwrap_or(0);
        rb_wall.push(s.wall);
        rb_cpu.push(s.cpu);
        rss.push(s.max_rss_kib as f64);
        let s = timed(
            &replay(file, "1")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        rb1_wall.push(s.wall);
        rb1_cpu.push(s.cpu);
        let s = timed(
            &replay(file2, "0")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        rss2.push(s.max_rss_kib as f64);
        if !o.skip_tshark {
            let s = timed(&tshark.iter().map(String::as_str).collect::<Vec<_>>())?;
            ts_requests = s.stdout.lines().count() as u64;
            ts_wall.push(s.wall);
        }
    }
    let (w, c, w1, c1) = (
        median(rb_wall),
        median(rb_cpu),
        median(rb1_wall),
        median(rb1_cpu),
    );
    let mpkts = packets as f64 / 1e6;
    println!();
    println!(
        "capture: {} ({packets} packets, {requests} requests in the truth)",
        pcap.display()
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| requests rebuilt / in the traffic | {rebuilt} / {requests} |");
    println!(
        "| rebuilder wall time, default workers (median of {}) | {w:.3} s |",
        o.runs
    );
    println!(
        "| packets/s (wall), default workers | {:.0} |",
        packets as f64 / w
    );
    println!(
        "| requests/s (wall), default workers | {:.0} |",
        rebuilt as f64 / w
    );
    println!(
        "| CPU seconds per million packets, default workers | {:.3} |",
        c / mpkts
    );
    println!(
        "| packets per CPU-second, default workers | {:.0} |",
        packets as f64 / c
    );
    println!("| rebuilder wall time, --workers 1 | {w1:.3} s |");
    println!(
        "| packets/s (wall), --workers 1 | {:.0} |",
        packets as f64 / w1
    );
    println!(
        "| packets per CPU-second, --workers 1 | {:.0} |",
        packets as f64 / c1
    );
    println!(
        "| peak RSS, {} packets | {:.1} MiB |",
        packets,
        median(rss) / 1024.0
    );
    println!(
        "| peak RSS, {} packets (2x file, same concurrency) | {:.1} MiB |",
        o.packets * 2,
        median(rss2) / 1024.0
    );
    if !o.skip_tshark {
        let t = median(ts_wall);
        println!("| tshark wall time (requests found: {ts_requests}) | {t:.3} s |");
        println!("| speed ratio rebuilder / tshark | {:.1}x |", t / w);
    }
    Ok(())
}
