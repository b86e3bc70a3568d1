//! `rebuilder-hostile`: the hostile-traffic runner behind `cargo xtask hostile`.
//!
//! Generates each attack of `rebuilder_tests::gen::hostile_traffic` (full size by default),
//! replays it with `rebuilder replay` under GNU time to a recording sink, and prints a table:
//! case, packets, peak RSS against its bound, legitimate (and well-formed hostile) requests
//! recovered byte-exact exactly once, and every drop by reason. Then the peak RSS of the whole
//! process with N concurrent flows open (10k and 100k by default), held to the default budget
//! (256 MiB) like everything else. Then the upstream faults, each down for `--fault-down`
//! seconds, SIGTERM under load, a full XDP ring and a live flood. With `--outage 5m`, last, the
//! long outage: the upstream down for that long under steady traffic, reported phase by phase
//! (requests, drops by reason, RSS, readiness, recovery).
//!
//! Exit status: 0 when every case passed and every RSS target held, 1 otherwise, 2 when the
//! runner itself could not work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rebuilder_tests::faults::{
    run_fault, run_live_flood, run_sigterm_under_load, run_xdp_ring_full, Fault, FaultConfig,
    MAX_RECOVERY,
};
use rebuilder_tests::gen::hostile_traffic::{build, concurrent_flows, HostileKind, HostileScale};
use rebuilder_tests::hostile::{run_case, table, CaseReport, RunConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scale {
    /// The sizes of the CI test (seconds).
    Ci,
    /// The sizes the issue asks for (1M SYNs, 100k half-open flows, ...; a few minutes).
    Full,
}

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask hostile",
    about = "Replay hostile mirrored traffic (with legitimate requests interleaved) through \
             rebuilder under GNU time; report peak RSS, drops by reason and requests recovered"
)]
struct Args {
    /// The rebuilder binary (default: target/release/rebuilder next to this one).
    #[arg(long, value_name = "PATH")]
    rebuilder: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Scale::Full)]
    scale: Scale,
    /// Only these cases (repeatable): syn-flood, half-open, out-of-window, conflicting-overlap,
    /// endless-chunked, huge-header, trickle, endless-pipeline, vxlan-garbage, vxlan-no-i-flag,
    /// inner-fragments, zero-window-probes, out-of-order-holes, proxy-headers, spoofed-ahead,
    /// spoofed-syn, spoofed-close, spoofed-first.
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// Concurrent-flow counts to measure peak RSS at (comma-separated; 0 skips).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    flows: Vec<usize>,
    /// Skip the hostile captures (run only the flows, faults and flood parts).
    #[arg(long)]
    no_cases: bool,
    /// Skip the upstream faults, SIGTERM under load, the full XDP ring and the live flood.
    #[arg(long)]
    no_faults: bool,
    /// How long the upstream stays down in each fault (seconds).
    #[arg(long, default_value_t = 10)]
    fault_down: u64,
    /// Also run the long outage: the upstream down for this long (e.g. 5m, 300s) under steady
    /// traffic; fails unless memory stays flat, every request is replayed or dropped under a
    /// reason, the node stays live (and not ready), and replay resumes within 1 s of the
    /// upstream's return. Off by default (it takes as long as it says). Only it:
    /// `--outage 5m --no-cases --no-faults --flows 0`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    outage: Option<Duration>,
    /// What the upstream does during the long outage: refusing (nothing listens), silent
    /// (connections time out: the host is gone), resetting, hanging, slow, garbage.
    #[arg(long, value_name = "FAULT", default_value = "refusing", value_parser = parse_fault)]
    outage_fault: Fault,
    /// Requests per second during the long outage (over 20 keep-alive connections).
    #[arg(long, default_value_t = 200)]
    outage_rate: u32,
    /// SYNs of the live flood sent to `rebuilder run --udp` at full speed (0 skips).
    #[arg(long, default_value_t = 1_000_000)]
    live_flood: usize,
    /// `--workers` of every replay (fixed, so the budget's split does not depend on the machine).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scratch directory (default: a new one under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// More flags for every `rebuilder replay` (after `--`).
    #[arg(last = true)]
    rebuilder_args: Vec<String>,
}

/// `300`, `300s`, `5m`, `1h`, `1500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 5m or 300s"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

fn parse_fault(name: &str) -> Result<Fault, String> {
    Fault::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        format!("{name:?}: one of {}", names.join(", "))
    })
}

/// The RSS target at any number of concurrent flows, in MiB: the default budget, which is the
/// whole process's.
fn flows_target_mib(_flows: usize) -> u64 {
    rebuilder_tests::hostile::DEFAULT_BUDGET >> 20
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rebuilder-hostile: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let bin = match &args.rebuilder {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("rebuilder"),
    };
    if !bin.exists() {
        return Err(format!("no rebuilder binary at {}", bin.display()));
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rebuilder-hostile-{}", std::process::id()))
    });
    let kinds: Vec<HostileKind> = if args.no_cases {
        Vec::new()
    } else if args.cases.is_empty() {
        HostileKind::ALL.to_vec()
    } else {
        args.cases
            .iter()
            .map(|c| HostileKind::from_name(c).ok_or_else(|| format!("unknown case {c:?}")))
            .collect::<Result<_, _>>()?
    };
    let scale = match args.scale {
        Scale::Ci => HostileScale::ci(),
        Scale::Full => HostileScale::full(),
    };
    let mut cfg = RunConfig::new(bin.clone(), dir.clone());
    cfg.workers = args.workers;
    cfg.extra = args.rebuilder_args.clone();
    cfg.timeout = Duration::from_secs(900);
    println!(
        "rebuilder {} with {} workers, {:?} scale, scratch {}",
        bin.display(),
        args.workers,
        args.scale,
        dir.display()
    );

    let mut reports: Vec<CaseReport> = Vec::new();
    for kind in kinds {
        eprint!("{:<20} generating", kind.name());
        let case = build(kind, &scale, args.seed).map_err(|e| e.to_string())?;
        eprint!(", {} packets, replaying", case.frames.len());
        let r = run_case(&case, &cfg).map_err(|e| e.to_string())?;
        eprintln!(
            ", {:.1} s, {}",
            r.elapsed.as_secs_f64(),
            if r.passed() { "ok" } else { "FAIL" }
        );
        reports.push(r);
    }
    let mut ok = true;
    if !reports.is_empty() {
        println!("\nhostile captures (every case also carries legitimate connections):\n");
        print!("{}", table(&reports));
        for r in &reports {
            println!("  {:<20} {}", r.name, r.about);
        }
        for r in reports.iter().filter(|r| !r.passed()) {
            ok = false;
            println!("\n{} FAILED:", r.name);
            for f in &r.failures {
                println!("  {f}");
            }
            if !r.comparison.is_match() {
                println!("{}", r.comparison);
            }
            let tail: Vec<&str> = r.stderr.lines().rev().take(30).collect();
            println!("  rebuilder stderr (end):");
            for l in tail.into_iter().rev() {
                println!("    {l}");
            }
        }
    }

    let counts: Vec<usize> = args.flows.iter().copied().filter(|n| *n > 0).collect();
    if !counts.is_empty() {
        println!("\npeak RSS of the whole process with N concurrent flows open (each a SYN and a partial request head, default budget):\n");
        let baseline = flows_rss(0, &cfg, args.seed)?;
        println!(
            "{:>9} {:>12} {:>12} {:>10}  result",
            "flows", "peak RSS", "per flow", "target"
        );
        println!(
            "{:>9} {:>12} {:>12} {:>10}  baseline",
            0,
            mib(baseline.peak_rss_kib),
            "",
            ""
        );
        for n in counts {
            let r = flows_rss(n, &cfg, args.seed)?;
            let per_flow =
                (r.peak_rss_kib.saturating_sub(baseline.peak_rss_kib) * 1024) as f64 / n as f64;
            let target = flows_target_mib(n);
            let held = r.peak_rss_kib <= target * 1024 && r.passed();
            ok &= held;
            println!(
                "{:>9} {:>12} {:>10.0} B {:>6} MiB  {}",
                n,
                mib(r.peak_rss_kib),
                per_flow,
                target,
                if held { "ok" } else { "FAIL" }
            );
            if !r.passed() {
                println!("  {}", r.failures.join("\n  "));
            }
        }
    }
    if !args.no_faults {
        ok &= faults(args, &bin)?;
    }
    if let Some(down) = args.outage {
        ok &= outage(args, &bin, down)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nresult: {}",
        if ok {
            "OK: no crash, memory within bounds, every drop counted under its reason, every legitimate request byte-exact once"
        } else {
            "FAILED (see above)"
        }
    );
    Ok(ok)
}

fn flows_rss(n: usize, cfg: &RunConfig, seed: u64) -> Result<CaseReport, String> {
    let case = concurrent_flows(n, Duration::from_secs(10), seed).map_err(|e| e.to_string())?;
    run_case(&case, cfg).map_err(|e| e.to_string())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn kib_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Upstream faults, SIGTERM under load, a full XDP ring (as root) and a live UDP flood.
fn faults(args: &Args, bin: &std::path::Path) -> Result<bool, String> {
    let mut ok = true;
    let mut cfg = FaultConfig::ci(bin.to_path_buf());
    cfg.down = Duration::from_secs(args.fault_down);
    cfg.rate = 200;
    println!(
        "\nupstream faults: `rebuilder run --udp`, {} requests/s over 20 keep-alive connections, upstream down for {} s then healed; \
         queue bounded to {} requests and {}; RSS sampled every 100 ms while down (growth: over the \
         first sample / of the second half over the first); /livez and /readyz at the end of the outage; \
         recovery: from healing to the first request sent after it at the sink (at most 1 s):\n",
        cfg.rate,
        args.fault_down,
        cfg.queue_requests,
        cfg.queue_bytes
    );
    println!(
        "{:<10} {:>6} {:>9} {:>12} {:>11} {:>11} {:>10}  {:<6} drops by reason; upstream errors by kind",
        "fault", "down", "queue max", "RSS down MiB", "growth KiB", "live/ready", "recovery", "result"
    );
    for fault in Fault::ALL {
        let r = run_fault(fault, &cfg).map_err(|e| format!("{}: {e}", fault.name()))?;
        ok &= r.passed();
        println!(
            "{:<10} {:>6} {:>9} {:>12} {:>11} {:>11} {:>10}  {:<6} {}; {}",
            fault.name(),
            r.sent_while_down,
            r.max_queue_requests,
            format!(
                "{}..{}",
                kib_mib(r.rss_down.first()),
                kib_mib(r.rss_down.max())
            ),
            format!("{}/{}", r.rss_down.growth(), r.rss_down.late_growth()),
            format!("{}/{}", r.probes_down.0, r.probes_down.1),
            r.recovery
                .map_or("never".to_string(), |d| format!("{} ms", d.as_millis())),
            if r.passed() { "ok" } else { "FAIL" },
            join(&r.drops),
            join(&r.errors)
        );
        for f in &r.failures {
            println!("    {f}");
        }
    }
    let s = run_sigterm_under_load(bin).map_err(|e| format!("sigterm: {e}"))?;
    ok &= s.failures.is_empty();
    println!(
        "\nSIGTERM under full load: {} queued, exit {:?} after {} ms (drain deadline {} ms); {} rebuilt = {} replayed + {}: {}",
        s.queued,
        s.exit,
        s.shutdown.as_millis(),
        s.drain_timeout.as_millis(),
        s.rebuilt,
        s.replayed,
        join(&s.drops),
        if s.failures.is_empty() { "ok".to_string() } else { s.failures.join("; ") }
    );
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        let r = run_xdp_ring_full(bin, 3000).map_err(|e| format!("xdp ring: {e}"))?;
        ok &= r.failures.is_empty();
        println!(
            "full XDP ring (4 KiB, burst of {} segments into a veth): ring_full {}, pushed {}, later requests rebuilt {}/{}: {}",
            r.burst,
            r.ring_full,
            r.pushed,
            r.after_rebuilt,
            r.after_sent,
            if r.failures.is_empty() { "ok".to_string() } else { r.failures.join("; ") }
        );
    } else {
        println!("full XDP ring: skipped (needs root)");
    }
    if args.live_flood > 0 {
        let scale = HostileScale {
            syn_flood: args.live_flood,
            syn_flood_budget: None,
            ..HostileScale::full()
        };
        let case = build(HostileKind::SynFlood, &scale, args.seed).map_err(|e| e.to_string())?;
        let r =
            run_live_flood(bin, &case.frames, None, &[]).map_err(|e| format!("live flood: {e}"))?;
        // The whole process within its budget (the default): the sockets' kernel buffers are
        // charged to it too, so RSS has room to spare.
        let held = r.exit == Some(0)
            && r.peak_rss_kib
                <= rebuilder_tests::hostile::rss_bound_kib(
                    rebuilder_tests::hostile::DEFAULT_BUDGET,
                );
        ok &= held;
        println!(
            "live SYN flood over UDP ({} packets at full speed, default budget, 2 workers): peak RSS {} MiB, exit {:?}, {}: {}",
            r.sent,
            kib_mib(r.peak_rss_kib),
            r.exit,
            join(&r.drops),
            if held { "ok" } else { "FAIL" }
        );
    }
    Ok(ok)
}

/// The long outage: healthy for 5 s, the upstream down for `down`, then 5 s healed.
fn outage(args: &Args, bin: &std::path::Path, down: Duration) -> Result<bool, String> {
    let mut cfg = FaultConfig::ci(bin.to_path_buf());
    cfg.rate = args.outage_rate;
    cfg.healthy = Duration::from_secs(5);
    cfg.down = down;
    cfg.after = Duration::from_secs(5);
    let fault = args.outage_fault;
    println!(
        "\nlong upstream outage: `rebuilder run --udp`, {} requests/s over 20 keep-alive connections, \
         the upstream {} for {} (pool of 4, queue {} requests / {}, budget {}); RSS sampled every 100 ms while down",
        cfg.rate,
        fault.name(),
        human(down),
        cfg.queue_requests,
        cfg.queue_bytes,
        cfg.memory_budget
    );
    let r = run_fault(fault, &cfg).map_err(|e| format!("outage: {e}"))?;
    let upstream_drops: u64 = r
        .drops
        .iter()
        .filter(|(k, _)| k.starts_with("upstream:"))
        .map(|(_, n)| n)
        .sum();
    println!(
        "  requests  sent {}: {} before, {} during the outage ({}), {} after; rebuilt {}, replayed {}, dropped {}",
        r.sent,
        r.sent_before,
        r.sent_while_down,
        human(r.down),
        r.sent_after,
        r.rebuilt,
        r.replayed,
        upstream_drops
    );
    println!(
        "  drops     {} ({})",
        join(&r.drops),
        if r.replayed + upstream_drops == r.rebuilt {
            "every rebuilt request replayed or dropped under a reason"
        } else {
            "NOT every rebuilt request accounted for"
        }
    );
    println!("  errors    {}", join(&r.errors));
    println!(
        "  queue     at most {} requests / {} B (bounds {} / {} B)",
        r.max_queue_requests, r.max_queue_bytes, cfg.queue_requests, r.queue_bytes_limit
    );
    println!(
        "  RSS       during the outage ({} samples): first {} MiB, max {} MiB, last {} MiB; growth +{} KiB over the first, second half +{} KiB over the first half",
        r.rss_down.samples.len(),
        kib_mib(r.rss_down.first()),
        kib_mib(r.rss_down.max()),
        kib_mib(r.rss_down.last()),
        r.rss_down.growth(),
        r.rss_down.late_growth()
    );
    println!(
        "  health    at the end of the outage: /livez {} (what the NLB asks), /readyz {}",
        r.probes_down.0, r.probes_down.1
    );
    println!(
        "  recovery  {} after the upstream came back (at most {} ms)",
        r.recovery
            .map_or("never".to_string(), |d| format!("{} ms", d.as_millis())),
        MAX_RECOVERY.as_millis()
    );
    println!(
        "  result    {}",
        if r.passed() {
            "ok".to_string()
        } else {
            format!("FAIL: {}", r.failures.join("; "))
        }
    );
    Ok(r.passed())
}

/// `5m 0s`, `12s`, `1500 ms`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else if s > 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn join(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
