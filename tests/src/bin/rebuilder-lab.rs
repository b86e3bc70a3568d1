//! `rebuilder-lab`: the lab behind `cargo xtask lab` (which builds everything in release mode
//! and runs this as root). Builds the DESIGN §8 topology in network namespaces, drives a mixed
//! HTTP workload through kernel mirroring into N rebuilders, and reports whether every request
//! reached the WAF sink byte for byte, exactly once.
//!
//! Exit status: 0 when it did, 1 when a request is missing, duplicated or not byte-exact,
//! 2 when the lab cannot be set up, 130 when interrupted.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rebuilder_tests::lab::workload::{MixConfig, ProxyKind};
use rebuilder_tests::lab::{Kill, Lab, LabOptions, Progress};
use rebuilder_tests::netns::{self, Capture, Netns, NetnsError, XdpMode, LAB_VNI};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CaptureArg {
    Xdp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Driver,
    Generic,
    Auto,
}

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask lab",
    about = "Mirror live HTTP traffic through the kernel into N rebuilder nodes (network \
             namespaces) and check that every request reaches the WAF sink byte for byte, once"
)]
struct Args {
    /// Rebuilder nodes behind the NLB namespace.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// How long the workload runs (seconds, or with a unit: 500ms, 20s, 2m).
    #[arg(long, default_value = "20", value_parser = parse_duration)]
    duration: Duration,
    /// After the report, keep everything running until Ctrl-C, to look around.
    #[arg(long)]
    keep: bool,
    /// The mirror session's VXLAN network identifier.
    #[arg(long, default_value_t = LAB_VNI)]
    vni: u32,
    /// How the rebuilders capture: the XDP program on their interface, or a UDP socket.
    #[arg(long, value_enum, default_value_t = CaptureArg::Xdp)]
    capture: CaptureArg,
    /// XDP attach mode (veth runs XDP natively: driver).
    #[arg(long, value_enum, default_value_t = ModeArg::Driver)]
    xdp_mode: ModeArg,
    /// MTU of the mirrored client–origin link (the underlay gets 50 more).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Concurrent client connections, each one flow for the whole run; default 8 per node.
    #[arg(long)]
    connections: Option<usize>,
    /// Steps per second over all connections (a step is a GET, a POST, a pipelined batch …).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Largest upload body, in bytes (suffixes K, M: 4M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    max_body: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give every rebuilder --max-idle (seconds or with a unit).
    #[arg(long, value_parser = parse_duration)]
    max_idle: Option<Duration>,
    /// Every client connection starts with a PROXY protocol header, as behind a load
    /// balancer: `v1` (classic ELB), `v2` (NLB, with the AWS VPC endpoint TLV), or `mix` (v1,
    /// v2 over IPv4, v2 over IPv6 by connection). The rebuilders get --add-client-ip, and every
    /// request must reach the WAF without the header and with the client IP it carried.
    #[arg(long, default_value = "off", value_parser = parse_proxy)]
    proxy: ProxyKind,
    /// Load balancer health checks per second, each on a connection of its own (User-Agent
    /// ELB-HealthChecker/2.0; from the checker address 10.77.1.100, which the rebuilders get as
    /// --health-check-cidr; behind a PROXY v2 LOCAL header with --proxy). None must reach the
    /// WAF: the nodes count them as filtered.
    #[arg(long, default_value_t = 0.0)]
    health_checks: f64,
    /// HTTP/2 cleartext (prior knowledge) client connections beside the HTTP/1.x ones, to an
    /// HTTP/2 origin on port 8081: GETs, form POSTs, gRPC unary and client-streaming calls,
    /// two streams at a time per connection, 20 calls/s each. Every stream must reach the WAF
    /// as the HTTP/1.1 request the README describes, once.
    #[arg(long, default_value_t = 0)]
    h2: usize,
    /// kill -9 node NODE's rebuilder SECS into the run: NODE@SECS, e.g. 1@5.
    #[arg(long, value_parser = parse_kill)]
    kill: Option<Kill>,
    /// Remove what labs killed before their teardown left behind, and exit.
    #[arg(long)]
    clean: bool,
    /// More `rebuilder run` flags, after `--`.
    #[arg(last = true)]
    rebuilder_args: Vec<String>,
}

fn parse_proxy(s: &str) -> Result<ProxyKind, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 20, 20s, 500ms, 2m)"))?;
    if !(v.is_finite() && v > 0.0 && v * scale < 86_400.0) {
        return Err(format!("{s:?}: a duration above 0 and under a day"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        _ => (t, 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 65536, 64K, 4M)"))?;
    n.checked_mul(mul)
        .filter(|n| (1..=(256 << 20)).contains(n))
        .ok_or_else(|| format!("{s:?}: a size from 1 byte to 256M"))
}

fn parse_kill(s: &str) -> Result<Kill, String> {
    let (node, at) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: NODE@SECS, e.g. 1@5"))?;
    let node = node
        .trim_start_matches("node")
        .parse()
        .map_err(|_| format!("{s:?}: the node is a number (0 for node0)"))?;
    Ok(Kill {
        node,
        after: parse_duration(at)?,
    })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to a static atomic, which is
        // async-signal-safe; sigaction-style replacement of the default disposition is what
        // lets the lab tear its namespaces down on Ctrl-C instead of leaving them.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "rebuilder-lab: needs root (network namespaces, veth and VXLAN devices, tc, XDP); \
             run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask lab`"
        );
        return ExitCode::from(2);
    }
    if args.clean {
        return match Netns::sweep_stale() {
            Ok(gone) if gone.is_empty() => {
                println!("nothing to clean");
                ExitCode::SUCCESS
            }
            Ok(gone) => {
                for g in gone {
                    println!("removed namespace {g}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rebuilder-lab: {e}");
                ExitCode::from(2)
            }
        };
    }
    // The rebuilder built beside this binary, unless told otherwise.
    if std::env::var_os("REBUILDER_BIN").is_none() {
        if let Some(sibling) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("rebuilder")))
            .filter(|p| p.exists())
        {
            std::env::set_var("REBUILDER_BIN", sibling);
        }
    }
    catch_signals();
    let capture = match args.capture {
        CaptureArg::Udp => Capture::Udp,
        CaptureArg::Xdp => Capture::Xdp(match args.xdp_mode {
            ModeArg::Driver => XdpMode::Driver,
            ModeArg::Generic => XdpMode::Generic,
            ModeArg::Auto => XdpMode::Auto,
        }),
    };
    let progress = if std::io::stderr().is_terminal() {
        Progress::Line
    } else {
        Progress::Lines(Duration::from_secs(5))
    };
    let opts = LabOptions {
        nodes: args.nodes,
        duration: args.duration,
        vni: args.vni,
        capture,
        mtu: args.mtu,
        mix: MixConfig {
            connections: args.connections.unwrap_or(0),
            rate: args.rate,
            max_body: args.max_body,
            seed: args.seed,
            proxy: args.proxy,
            health_checks: args.health_checks,
        },
        max_idle: args.max_idle,
        kill: args.kill,
        progress,
        rebuilder_args: args.rebuilder_args.clone(),
        h2_connections: args.h2,
    };
    eprintln!(
        "rebuilder-lab: building {} node{} ({} capture), VNI {} …",
        opts.nodes,
        if opts.nodes == 1 { "" } else { "s" },
        capture.name(),
        opts.vni
    );
    let mut lab = match Lab::start(opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rebuilder-lab: cannot set the lab up: {e}");
            if matches!(e, NetnsError::MissingTool { .. }) {
                eprintln!("  install it with: apt-get install -y iproute2");
            }
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "rebuilder-lab: origin {}, mirrored to the collector {}, {} connections for {:.0} s",
        lab.mirror().origin_addr(),
        lab.mirror().collector_addr(),
        lab.options().connections(),
        args.duration.as_secs_f64()
    );
    let report = match lab.run(&INTERRUPTED, &mut std::io::stderr()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rebuilder-lab: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if args.keep && !INTERRUPTED.load(Ordering::Relaxed) {
        print!("{}", lab.look_around());
        while !INTERRUPTED.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let created = lab.mirror().created();
    drop(lab);
    match netns::leftovers(&created) {
        Ok(left) if !left.is_empty() => eprintln!("rebuilder-lab: left behind: {left:?}"),
        Err(e) => eprintln!("rebuilder-lab: cannot check the teardown: {e}"),
        Ok(_) => eprintln!("rebuilder-lab: torn down"),
    }
    if report.interrupted {
        ExitCode::from(130)
    } else if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err() && parse_duration("x").is_err());
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err() && parse_size("1G").is_err());
        assert_eq!(
            parse_kill("1@5"),
            Ok(Kill {
                node: 1,
                after: Duration::from_secs(5)
            })
        );
        assert_eq!(parse_kill("node2@1.5s").map(|k| k.node), Ok(2));
        assert!(parse_kill("1").is_err() && parse_kill("x@1").is_err());
        let a = Args::try_parse_from(["lab", "--nodes", "3", "--", "--workers", "1"]).unwrap();
        assert_eq!(
            (a.nodes, a.capture, a.xdp_mode),
            (3, CaptureArg::Xdp, ModeArg::Driver)
        );
        assert_eq!(a.duration, Duration::from_secs(20));
        assert_eq!(a.rebuilder_args, vec!["--workers", "1"]);
        assert_eq!((a.proxy, a.health_checks), (ProxyKind::Off, 0.0));
        let a = Args::try_parse_from(["lab", "--proxy", "mix", "--health-checks", "2"]).unwrap();
        assert_eq!((a.proxy, a.health_checks), (ProxyKind::Mix, 2.0));
        assert!(Args::try_parse_from(["lab", "--proxy", "v3"]).is_err());
    }
}
