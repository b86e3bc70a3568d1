//! Replaying hostile captures ([`crate::gen::hostile_traffic`]) through the real `rebuilder`
//! and judging what came out: `rebuilder replay --pcap F --upstream SINK --jsonl F` runs under
//! GNU time (`/usr/bin/time -v`) for its peak RSS; then the exit status, panics, the RSS bound,
//! every drop of the summary (reason and count) and the exact bytes the sink received are
//! checked against what the case says must happen.
//!
//! The RSS bound is the budget itself: `memory_budget` is the whole process's memory (its own
//! part, the capture's buffers, queues, segments in flight and flows; README *Memory*), so peak
//! RSS never exceeds it, whatever the attack.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::compare::{compare, Comparison};
use crate::gen::hostile_traffic::HostileCase;
use crate::gen::{CaptureFormat, CaptureWriter, LinkType};
use crate::process::Running;
use crate::sink::{Sink, SinkConfig};

/// GNU time, which reports the peak RSS of the command it runs.
pub const GNU_TIME: &str = "/usr/bin/time";
/// The default `memory_budget` of rebuilder.
pub const DEFAULT_BUDGET: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostileError {
    #[error(
        "{GNU_TIME} (Debian package `time`) is missing and cannot be installed here: {0}; \
         install it with `apt-get install time`"
    )]
    NoTime(String),
    #[error("writing the capture {path}: {source}")]
    Capture {
        path: PathBuf,
        source: crate::GenError,
    },
    #[error("the sink: {0}")]
    Sink(std::io::Error),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Time(String),
}

/// Makes sure GNU time is there: as root on an apt system it is installed when missing.
pub fn ensure_gnu_time() -> Result<PathBuf, HostileError> {
    let path = PathBuf::from(GNU_TIME);
    if path.exists() {
        return Ok(path);
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HostileError::NoTime("not root".into()));
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| HostileError::NoTime(format!("apt-get: {e}")))
    };
    eprintln!("installing the Debian package `time` (GNU time, for peak RSS)");
    if !apt(&["install", "-y", "-qq", "time"])?.success() {
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq", "time"])?;
    }
    if path.exists() {
        Ok(path)
    } else {
        Err(HostileError::NoTime("apt-get install time failed".into()))
    }
}

/// How to run a case.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The `rebuilder` binary.
    pub bin: PathBuf,
    /// Scratch directory for the capture, the JSON lines and GNU time's report.
    pub dir: PathBuf,
    /// `--workers`: fixed, so that the split of the budget does not depend on the machine.
    pub workers: usize,
    /// More flags, after the case's own.
    pub extra: Vec<String>,
    pub timeout: Duration,
    /// Keep the capture file afterwards.
    pub keep_capture: bool,
}

impl RunConfig {
    pub fn new(bin: PathBuf, dir: PathBuf) -> Self {
        Self {
            bin,
            dir,
            workers: 2,
            extra: Vec::new(),
            timeout: Duration::from_secs(120),
            keep_capture: false,
        }
    }
}

/// What one replay of a case did, and everything it got wrong.
#[derive(Clone, Debug)]
pub struct CaseReport {
    pub name: String,
    pub about: String,
    pub packets: usize,
    pub capture_bytes: u64,
    pub elapsed: Duration,
    /// Exit status (None: killed at the timeout or by a signal).
    pub exit: Option<i32>,
    pub peak_rss_kib: u64,
    pub rss_bound_kib: u64,
    /// Every drop of the summary, by key.
    pub drops: BTreeMap<String, u64>,
    pub flows: Option<u64>,
    pub legit_total: usize,
    /// Legitimate requests that arrived byte-exact exactly once.
    pub legit_recovered: usize,
    pub hostile_total: usize,
    pub hostile_recovered: usize,
    pub comparison: Comparison,
    /// Empty when the case passed.
    pub failures: Vec<String>,
    pub stderr: String,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with every failure and rebuilder's output.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.passed(),
            "{}: {}\n{}\n--- rebuilder stderr:\n{}",
            self.name,
            self.failures.join("\n"),
            self.comparison,
            self.stderr
        );
    }
}

/// A size as rebuilder takes it (`2MiB`, `512KiB`, `1GiB`, bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The `--memory-budget` among `args` (the last one wins), else the default.
pub fn budget_of(args: &[String]) -> u64 {
    args.windows(2)
        .filter(|w| w[0] == "--memory-budget")
        .filter_map(|w| parse_size(&w[1]))
        .next_back()
        .unwrap_or(DEFAULT_BUDGET)
}

/// Peak RSS allowed for a budget, in KiB: the budget. (No floor: rebuilder refuses a budget
/// its own part and its capture's buffers do not fit in.)
pub fn rss_bound_kib(budget: u64) -> u64 {
    budget / 1024
}

/// The drops listed in rebuilder's summary (`    key    N` lines under `  dropped`).
pub fn summary_drops(stderr: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in stderr.lines() {
        if line.starts_with("  dropped") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(rest) = line.strip_prefix("    ") else {
            inside = false;
            continue;
        };
        let mut parts = rest.split_whitespace();
        if let (Some(k), Some(n)) = (parts.next(), parts.next().and_then(|n| n.parse().ok())) {
            out.insert(k.to_string(), n);
        }
    }
    out
}

/// A number from the summary's line `label   N ...`.
fn summary_value(stderr: &str, label: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(label)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// "Maximum resident set size (kbytes): N" from `time -v`'s report.
pub fn peak_rss_kib(report: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes):")?
            .trim()
            .parse()
            .ok()
    })
}

/// Writes the case's capture (pcap, Ethernet); returns its size in bytes.
pub fn write_capture(case: &HostileCase, path: &Path) -> Result<u64, HostileError> {
    let err = |source| HostileError::Capture {
        path: path.to_path_buf(),
        source,
    };
    let mut w =
        CaptureWriter::create(path, CaptureFormat::Pcap, LinkType::Ethernet).map_err(err)?;
    for f in &case.frames {
        w.write_frame(f).map_err(err)?;
    }
    w.finish().map_err(err)?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| HostileError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Runs `cmd` (GNU time wrapping rebuilder) to its end or the timeout; at the timeout the
/// whole tree is killed. Returns the exit code (None if killed) and stderr.
fn run_timed(mut cmd: Command, timeout: Duration) -> Result<(Option<i32>, String), HostileError> {
    let what = format!("{cmd:?}");
    let mut running = Running::spawn_cmd(&mut cmd).map_err(|source| HostileError::Spawn {
        what: what.clone(),
        source,
    })?;
    let deadline = Instant::now() + timeout;
    while running.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running.alive() {
        // GNU time's child first: killing time alone would orphan rebuilder.
        let pid = running.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a child of a process we started.
            unsafe {
                libc::kill(c, libc::SIGKILL);
            }
        }
    }
    let fin = running.wait(Duration::from_secs(5));
    Ok((fin.status.and_then(|s| s.code()), fin.stderr))
}

/// Replays the case and checks everything it says.
pub fn run_case(case: &HostileCase, cfg: &RunConfig) -> Result<CaseReport, HostileError> {
    let time = ensure_gnu_time()?;
    std::fs::create_dir_all(&cfg.dir).map_err(|source| HostileError::Read {
        path: cfg.dir.clone(),
        source,
    })?;
    let name = case.kind.name();
    let pcap = cfg.dir.join(format!("{name}.pcap"));
    let jsonl = cfg.dir.join(format!("{name}.jsonl"));
    let report = cfg.dir.join(format!("{name}.time"));
    let capture_bytes = write_capture(case, &pcap)?;
    let _ = std::fs::remove_file(&jsonl);

    let sink = Sink::start(SinkConfig {
        max_head: 4 << 20,
        ..SinkConfig::default()
    })
    .map_err(HostileError::Sink)?;
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--pcap".into(),
        pcap.display().to_string(),
        "--upstream".into(),
        sink.url(),
        "--jsonl".into(),
        jsonl.display().to_string(),
        "--workers".into(),
        cfg.workers.to_string(),
        "--no-progress".into(),
    ];
    args.extend(case.args.iter().cloned());
    args.extend(cfg.extra.iter().cloned());
    let mut cmd = Command::new(&time);
    cmd.arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(&cfg.bin)
        .args(&args);
    let started = Instant::now();
    let (exit, stderr) = run_timed(cmd, cfg.timeout)?;
    let elapsed = started.elapsed();
    let received = sink.take();
    let sink_errors = sink.errors();
    drop(sink);
    let time_report = std::fs::read_to_string(&report).unwrap_or_default();
    if !cfg.keep_capture {
        let _ = std::fs::remove_file(&pcap);
    }
    let jsonl_lines = std::fs::read_to_string(&jsonl)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&jsonl);
    let _ = std::fs::remove_file(&report);

    let mut failures = Vec::new();
    if exit != Some(0) {
        failures.push(format!("exit status {exit:?}, expected 0"));
    }
    if stderr.contains("panicked") {
        failures.push("rebuilder panicked".into());
    }
    let peak = peak_rss_kib(&time_report).unwrap_or(0);
    if peak == 0 {
        failures.push(format!("no peak RSS in GNU time's report: {time_report}"));
    }
    let bound = rss_bound_kib(budget_of(&args));
    if peak > bound {
        failures.push(format!("peak RSS {peak} KiB over the bound {bound} KiB"));
    }
    let drops = summary_drops(&stderr);
    for (key, want) in &case.drops {
        let got = drops.get(key).copied().unwrap_or(0);
        if !want.holds(got) {
            failures.push(format!("drop {key}: {got}, expected {want}"));
        }
    }
    for (key, got) in &drops {
        if !case.drops.iter().any(|(k, _)| k == key) {
            failures.push(format!("unexpected drop {key}: {got}"));
        }
    }
    if !sink_errors.is_empty() {
        failures.push(format!("the sink could not frame: {sink_errors:?}"));
    }
    let comparison = compare(case.expected(), received.iter().map(|r| r.raw.as_slice()));
    if !comparison.is_match() {
        failures.push("the requests at the sink differ from the expected ones".into());
    }
    let rebuilt = summary_value(&stderr, "requests rebuilt").unwrap_or(0);
    if jsonl_lines as u64 != rebuilt {
        failures.push(format!(
            "{jsonl_lines} JSON lines for {rebuilt} requests rebuilt"
        ));
    }
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for r in &received {
        *counts.entry(r.raw.as_slice()).or_default() += 1;
    }
    let once = |reqs: &[Vec<u8>]| {
        reqs.iter()
            .filter(|r| counts.get(r.as_slice()) == Some(&1))
            .count()
    };
    Ok(CaseReport {
        name: name.to_string(),
        about: case.about.clone(),
        packets: case.frames.len(),
        capture_bytes,
        elapsed,
        exit,
        peak_rss_kib: peak,
        rss_bound_kib: bound,
        drops,
        flows: summary_value(&stderr, "flows"),
        legit_total: case.legit.len(),
        legit_recovered: once(&case.legit),
        hostile_total: case.hostile_delivered.len(),
        hostile_recovered: once(&case.hostile_delivered),
        comparison,
        failures,
        stderr,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The runner's table: case, packets, peak RSS (and its bound), drops by reason, requests
/// recovered, result.
pub fn table(reports: &[CaseReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>10} {:>10} {:>7} {:>9} {:>11}  {:<6} drops by reason",
        "case", "packets", "peak RSS", "bound", "time", "legit", "hostile ok", "result"
    );
    for r in reports {
        let drops = if r.drops.is_empty() {
            "none".to_string()
        } else {
            r.drops
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>10} {:>10} {:>6.1}s {:>9} {:>11}  {:<6} {}",
            r.name,
            r.packets,
            mib(r.peak_rss_kib),
            mib(r.rss_bound_kib),
            r.elapsed.as_secs_f64(),
            format!("{}/{}", r.legit_recovered, r.legit_total),
            format!("{}/{}", r.hostile_recovered, r.hostile_total),
            if r.passed() { "ok" } else { "FAIL" },
            drops
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_time_reports_parse() {
        let stderr = "rebuilder pcap summary\n  flows            12\n  requests rebuilt 3 (1/s)\n  dropped\n    packet:inner_fragment          40\n    request:incomplete             2\n  read error       x\n";
        let d = summary_drops(stderr);
        assert_eq!(d.get("packet:inner_fragment"), Some(&40));
        assert_eq!(d.get("request:incomplete"), Some(&2));
        assert_eq!(d.len(), 2);
        assert_eq!(summary_value(stderr, "flows"), Some(12));
        assert!(summary_drops("  dropped          none\n").is_empty());
        let time = "\tCommand being timed: \"x\"\n\tMaximum resident set size (kbytes): 23456\n";
        assert_eq!(peak_rss_kib(time), Some(23456));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(
            budget_of(&["--memory-budget".into(), "16MiB".into()]),
            16 << 20
        );
        assert_eq!(budget_of(&[]), DEFAULT_BUDGET);
        assert_eq!(rss_bound_kib(DEFAULT_BUDGET), 256 << 10);
        assert_eq!(rss_bound_kib(48 << 20), 48 << 10);
    }
}
