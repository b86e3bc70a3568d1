//! Upstream faults: `rebuilder run --udp` on loopback under steady load, replaying to a sink
//! that is healthy, then refuses, resets, hangs, answers slowly or answers garbage (or a host
//! that is gone), then heals; measured and checked (drops by reason, queue bounds, RSS while
//! down, recovery within [`MAX_RECOVERY`], every request accounted for).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::load::{request_number, Driver};
use super::probe::{
    free_udp_port, metric, rss_kib, status_get, summary_value, terminate, wait_status,
};
use super::{setup, FaultError};
use crate::hostile::summary_drops;
use crate::process::Running;
use crate::sink::{unused_local_addr, Answer, Sink, SinkConfig};

/// How soon replay must resume once the upstream is back (the bound: within a
/// second). The first request sent after healing must reach the sink by then.
pub const MAX_RECOVERY: Duration = Duration::from_secs(1);

/// What goes wrong with the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listens: connections are refused.
    Refused,
    /// Connections time out: SYNs go unanswered, as when the upstream's host is gone.
    Silent,
    /// Connections are accepted and reset at once; open ones are reset.
    Reset,
    /// Requests are read and never answered.
    Hang,
    /// Each answer takes 200 ms: far less than the offered rate gets through.
    Slow,
    /// Answers that are not HTTP.
    Garbage,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Refused,
        Fault::Silent,
        Fault::Reset,
        Fault::Hang,
        Fault::Slow,
        Fault::Garbage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Refused => "refusing",
            Fault::Silent => "silent",
            Fault::Reset => "resetting",
            Fault::Hang => "hanging",
            Fault::Slow => "slow",
            Fault::Garbage => "garbage",
        }
    }

    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The drop reason (output `upstream`) this fault must show.
    pub fn drop_reason(self) -> &'static str {
        match self {
            Fault::Slow => "upstream:queue_full",
            _ => "upstream:upstream_error",
        }
    }

    /// `rebuilder_upstream_errors_total` kinds of which at least one must be counted.
    pub fn error_kinds(self) -> &'static [&'static str] {
        match self {
            Fault::Refused => &["connect", "unreachable"],
            Fault::Silent => &["connect_timeout", "unreachable"],
            Fault::Reset => &["reset", "write"],
            Fault::Hang => &["response_timeout"],
            Fault::Slow => &[],
            Fault::Garbage => &["invalid_response"],
        }
    }
}

/// How long each phase lasts and how the rebuilder is set up.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    pub bin: PathBuf,
    /// Requests per second, spread over 20 keep-alive connections.
    pub rate: u32,
    pub healthy: Duration,
    pub down: Duration,
    /// After the upstream healed and replay recovered.
    pub after: Duration,
    pub queue_requests: usize,
    pub queue_bytes: &'static str,
    pub memory_budget: &'static str,
}

impl FaultConfig {
    pub fn ci(bin: PathBuf) -> Self {
        Self {
            bin,
            rate: 100,
            healthy: Duration::from_millis(800),
            down: Duration::from_secs(3),
            after: Duration::from_millis(1500),
            queue_requests: 1000,
            queue_bytes: "8KiB",
            // The budget is the whole process's (README, *Memory*): a debug build's own part
            // (about 20 MiB, its threads and upstream connections included) leaves too little
            // of 32 MiB for the rest; 48 MiB is the smallest the tests' runs fit with room.
            memory_budget: "48MiB",
        }
    }
}

/// RSS samples of the process, KiB.
#[derive(Clone, Debug, Default)]
pub struct RssTrace {
    pub samples: Vec<u64>,
}

impl RssTrace {
    pub fn first(&self) -> u64 {
        self.samples.first().copied().unwrap_or(0)
    }
    pub fn max(&self) -> u64 {
        self.samples.iter().copied().max().unwrap_or(0)
    }
    pub fn last(&self) -> u64 {
        self.samples.last().copied().unwrap_or(0)
    }
    /// Growth from the first sample to the highest, KiB.
    pub fn growth(&self) -> u64 {
        self.max().saturating_sub(self.first())
    }
    /// Growth of the second half over the first (highest sample of each), KiB: what a leak
    /// per dropped request would show, while warming up (queue filled, connections opened)
    /// happens in the first half.
    pub fn late_growth(&self) -> u64 {
        let (a, b) = self.samples.split_at(self.samples.len() / 2);
        let peak = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        peak(b).saturating_sub(peak(a))
    }
}

#[derive(Clone, Debug)]
pub struct FaultReport {
    pub fault: Fault,
    /// How long the upstream was down.
    pub down: Duration,
    /// Requests sent.
    pub sent: usize,
    pub sent_before: usize,
    pub sent_while_down: usize,
    /// From healing to the end.
    pub sent_after: usize,
    pub rebuilt: u64,
    pub replayed: u64,
    /// Summary drops by key.
    pub drops: BTreeMap<String, u64>,
    /// `rebuilder_upstream_errors_total` by kind.
    pub errors: BTreeMap<String, u64>,
    pub max_queue_requests: u64,
    pub max_queue_bytes: u64,
    pub queue_bytes_limit: u64,
    /// RSS while the upstream was down.
    pub rss_down: RssTrace,
    /// `/livez` and `/readyz` status codes at the end of the outage.
    pub probes_down: (u16, u16),
    /// From healing to the first request sent after it arriving at the sink.
    pub recovery: Option<Duration>,
    /// Requests sent a second after recovery that did not arrive exactly once.
    pub lost_after_recovery: usize,
    /// Requests the sink received more than once.
    pub duplicated: usize,
    pub exit: Option<i32>,
    /// From SIGTERM to exit.
    pub shutdown: Duration,
    pub failures: Vec<String>,
    pub stderr: String,
}

impl FaultReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.passed(),
            "{}: {}\n--- rebuilder stderr:\n{}",
            self.fault.name(),
            self.failures.join("\n"),
            self.stderr
        );
    }
}

pub(super) fn upstream_errors(metrics: &str) -> BTreeMap<String, u64> {
    let prefix = "rebuilder_upstream_errors_total{kind=\"";
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (kind, value) = rest.split_once("\"} ")?;
            let n = value.trim().parse::<f64>().ok()? as u64;
            (n > 0).then(|| (kind.to_string(), n))
        })
        .collect()
}

/// A listener at `addr` whose accept queue is full, so the kernel drops the SYNs that reach it:
/// connecting times out, as it does to a host that is gone (without root or a firewall rule).
pub(super) struct Blackhole {
    _listener: socket2::Socket,
    _filler: TcpStream,
}

impl Blackhole {
    fn new(addr: SocketAddr) -> std::io::Result<Self> {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        listener.set_reuse_address(true)?;
        listener.bind(&addr.into())?;
        // A backlog of 0 holds one connection (never accepted); the next SYNs are dropped.
        listener.listen(0)?;
        let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        Ok(Self {
            _listener: listener,
            _filler: filler,
        })
    }
}

/// Runs one upstream fault from healthy, through down, to healed, and checks it.
pub fn run_fault(fault: Fault, cfg: &FaultConfig) -> Result<FaultReport, FaultError> {
    let udp = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_udp_port()?);
    let status = unused_local_addr()?;
    let mut sink = Some(Sink::start(SinkConfig::default())?);
    let upstream = sink
        .as_ref()
        .map(Sink::addr)
        .ok_or_else(|| setup("no sink"))?;
    let queue_requests = cfg.queue_requests.to_string();
    let mut rb = Running::spawn_cmd(Command::new(&cfg.bin).args([
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
        &format!("http://{upstream}"),
        "--pool-size",
        "4",
        "--connect-timeout",
        "300ms",
        "--response-timeout",
        "500ms",
        "--queue-requests",
        &queue_requests,
        "--queue-bytes",
        cfg.queue_bytes,
        "--memory-budget",
        cfg.memory_budget,
        "--drain-timeout",
        "2s",
    ]))?;
    wait_status(&mut rb, status, Duration::from_secs(20))?;
    let pid = rb.id();
    // Enough for every phase, the longest recovery waited for included.
    let seconds = (cfg.healthy + cfg.down + cfg.after).as_secs() + 20;
    let driver = Driver::start(udp, cfg.rate, cfg.rate as usize * seconds as usize)?;
    std::thread::sleep(cfg.healthy);

    // Down.
    let down_at = driver.count();
    let went_down = Instant::now();
    let mut blackhole = None;
    match fault {
        Fault::Refused => drop(sink.take()),
        Fault::Silent => {
            drop(sink.take());
            blackhole = Some(Blackhole::new(upstream)?);
        }
        Fault::Reset => {
            if let Some(s) = &sink {
                s.set_refusing(true);
                s.reset_connections();
            }
        }
        Fault::Hang => {
            if let Some(s) = &sink {
                s.set_answer(Answer::Hang);
            }
        }
        Fault::Slow => {
            if let Some(s) = &sink {
                s.set_response_delay(Duration::from_millis(200));
            }
        }
        Fault::Garbage => {
            if let Some(s) = &sink {
                s.set_answer(Answer::Garbage);
            }
        }
    }
    let mut rss_down = RssTrace::default();
    let (mut max_q, mut max_qb) = (0u64, 0u64);
    let (mut scrapes, mut not_live) = (0usize, 0usize);
    let mut ready_gauge = None;
    let until = Instant::now() + cfg.down;
    while Instant::now() < until {
        if let Some(r) = rss_kib(pid) {
            rss_down.samples.push(r);
        }
        if let Ok((200, m)) = status_get(status, "/metrics") {
            let q = "{output=\"upstream\"}";
            max_q =
                max_q.max(metric(&m, &format!("rebuilder_output_queue_requests{q}")).unwrap_or(0));
            max_qb =
                max_qb.max(metric(&m, &format!("rebuilder_output_queue_bytes{q}")).unwrap_or(0));
            scrapes += 1;
            if metric(&m, "rebuilder_live ") != Some(1) {
                not_live += 1;
            }
            ready_gauge = metric(&m, "rebuilder_ready ");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the NLB (liveness) and an operator (readiness) see at the end of the outage.
    let probes_down = (
        status_get(status, "/livez").map_or(0, |(c, _)| c),
        status_get(status, "/readyz").map_or(0, |(c, _)| c),
    );

    // Healed.
    let healed_at = driver.count();
    let healed = Instant::now();
    let down = healed.duration_since(went_down);
    match fault {
        Fault::Refused | Fault::Silent => {
            drop(blackhole.take());
            sink = Some(Sink::start(SinkConfig {
                addr: upstream,
                ..SinkConfig::default()
            })?);
        }
        Fault::Reset => {
            if let Some(s) = &sink {
                s.set_refusing(false);
            }
        }
        Fault::Hang | Fault::Garbage => {
            if let Some(s) = &sink {
                s.set_answer(Answer::Ok);
            }
        }
        Fault::Slow => {
            if let Some(s) = &sink {
                s.set_response_delay(Duration::ZERO);
            }
        }
    }
    let sink_now = sink
        .as_ref()
        .ok_or_else(|| setup("no sink after healing"))?;
    let mut recovery = None;
    while healed.elapsed() < Duration::from_secs(15) {
        let fresh = sink_now
            .requests()
            .iter()
            .filter_map(|r| request_number(&r.raw))
            .any(|n| n >= healed_at);
        if fresh {
            recovery = Some(healed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(cfg.after);
    let sent = driver.finish()?;
    sink_now.wait_quiet(Duration::from_millis(400), Duration::from_secs(10));
    let metrics = status_get(status, "/metrics")
        .map(|(_, m)| m)
        .unwrap_or_default();
    let (fin, shutdown) = terminate(rb, Duration::from_secs(15));

    // Everything the sinks received (the first one is gone for `Refused`, and with it what
    // it recorded before the fault: those requests were all answered, so they are counted as
    // replayed by the rebuilder and not needed here).
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for r in sink_now.requests() {
        if let Some(n) = request_number(&r.raw) {
            *counts.entry(n).or_default() += 1;
        }
    }
    let drops = summary_drops(&fin.stderr);
    let errors = upstream_errors(&metrics);
    let rebuilt = summary_value(&fin.stderr, "requests rebuilt").unwrap_or(0);
    let replayed = summary_value(&fin.stderr, "upstream").unwrap_or(0);
    let steady_from = recovery.map(|r| healed + r + Duration::from_secs(1));
    let lost_after_recovery = match steady_from {
        Some(t) => sent
            .iter()
            .enumerate()
            .filter(|(_, at)| **at >= t)
            .filter(|(n, _)| counts.get(n) != Some(&1))
            .count(),
        None => sent.len() - healed_at,
    };
    let duplicated = counts.values().filter(|c| **c > 1).count();
    let queue_bytes_limit = crate::hostile::parse_size(cfg.queue_bytes).unwrap_or(0);

    let mut failures = Vec::new();
    let exit = fin.status.and_then(|s| s.code());
    if exit != Some(0) {
        failures.push(format!("exit status {exit:?} after SIGTERM"));
    }
    if fin.stderr.contains("panicked") {
        failures.push("rebuilder panicked".into());
    }
    if rebuilt != sent.len() as u64 {
        failures.push(format!("{} requests sent, {rebuilt} rebuilt", sent.len()));
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
    if drops.get(fault.drop_reason()).copied().unwrap_or(0) == 0 {
        failures.push(format!(
            "no drop counted as {}: {drops:?}",
            fault.drop_reason()
        ));
    }
    let kinds = fault.error_kinds();
    if !kinds.is_empty()
        && !kinds
            .iter()
            .any(|k| errors.get(*k).copied().unwrap_or(0) > 0)
    {
        failures.push(format!("no upstream error of kind {kinds:?}: {errors:?}"));
    }
    if max_q > cfg.queue_requests as u64 || max_qb > queue_bytes_limit {
        failures.push(format!(
            "queue over its bounds: {max_q} requests (max {}), {max_qb} bytes (max {queue_bytes_limit})",
            cfg.queue_requests
        ));
    }
    // Flat: the down period adds no more than 8 MiB over its first sample, and its second half
    // no more than 2 MiB over its first. The allocator takes memory from the system in steps of
    // 2 MiB: under load one such step lands in either half of a few seconds' outage (seen: +2048
    // KiB at once, then nothing), which tighter bounds failed on. A leak per dropped request
    // shows as growth that goes on: over an outage of a minute or more (`cargo xtask hostile
    // --outage 5m`) the second half may add 1 MiB at most.
    let late_bound = if cfg.down >= Duration::from_secs(60) {
        1024
    } else {
        2048
    };
    if rss_down.growth() > 8192 || rss_down.late_growth() > late_bound {
        failures.push(format!(
            "RSS grew by {} KiB while the upstream was down ({:?})",
            rss_down.growth(),
            rss_down.samples
        ));
    }
    // Liveness never depends on the upstream: a WAF outage must not get nodes replaced.
    if not_live > 0 || probes_down.0 != 200 {
        failures.push(format!(
            "not live while the upstream was down: rebuilder_live 0 in {not_live} of {scrapes} scrapes, /livez {}",
            probes_down.0
        ));
    }
    // Readiness does, where the upstream cannot be reached at all.
    if matches!(fault, Fault::Refused | Fault::Silent)
        && (probes_down.1 != 503 || ready_gauge != Some(0))
    {
        failures.push(format!(
            "still ready with the upstream unreachable: /readyz {}, rebuilder_ready {ready_gauge:?}",
            probes_down.1
        ));
    }
    match recovery {
        None => failures.push("replay never recovered".into()),
        Some(r) if r > MAX_RECOVERY => failures.push(format!(
            "replay took {r:?} to recover (at most {MAX_RECOVERY:?})"
        )),
        _ => {}
    }
    if lost_after_recovery > 0 {
        failures.push(format!(
            "{lost_after_recovery} requests sent after recovery did not arrive exactly once"
        ));
    }
    if duplicated > 0 {
        failures.push(format!("{duplicated} requests arrived more than once"));
    }
    Ok(FaultReport {
        fault,
        down,
        sent: sent.len(),
        sent_before: down_at,
        sent_while_down: healed_at - down_at,
        sent_after: sent.len() - healed_at,
        rebuilt,
        replayed,
        drops,
        errors,
        max_queue_requests: max_q,
        max_queue_bytes: max_qb,
        queue_bytes_limit,
        rss_down,
        probes_down,
        recovery,
        lost_after_recovery,
        duplicated,
        exit,
        shutdown,
        failures,
        stderr: fin.stderr,
    })
}
