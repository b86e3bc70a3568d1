//! Running a lab: build it, drive the workload, report.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ledger::{Death, Ledger, Tally};
use super::metrics::NodeFigures;
use super::report::{LabReport, NodeRow, NodeState};
use super::workload::{MixConfig, Workload};
use crate::netns::{Capture, LabConfig, MirrorLab, NetnsError, Result, XdpMode, LAB_VNI};

/// How long the rebuilders may take to come up.
const READY: Duration = Duration::from_secs(30);
/// How long the sink may take, after the clients stop, to receive what is still in flight.
const DRAIN: Duration = Duration::from_secs(30);
/// No arrival for this long after the drain: nothing more (no duplicate) is coming.
const QUIET: Duration = Duration::from_millis(500);
/// How long connections may take to finish their current step when paused.
const PAUSE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(100);

/// `kill -9` node `node`'s rebuilder `after` this long into the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kill {
    pub node: usize,
    pub after: Duration,
}

/// How the progress is shown while the workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// One line rewritten in place (a terminal).
    Line,
    /// A line every so often (a log).
    Lines(Duration),
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub nodes: usize,
    pub duration: Duration,
    pub vni: u32,
    pub capture: Capture,
    /// MTU of the mirrored client–origin link.
    pub mtu: u32,
    /// The workload; `connections == 0` means eight per node.
    pub mix: MixConfig,
    /// `--max-idle` for every rebuilder.
    pub max_idle: Option<Duration>,
    pub kill: Option<Kill>,
    pub progress: Progress,
    /// More `rebuilder run` flags.
    pub rebuilder_args: Vec<String>,
    /// HTTP/2 cleartext and gRPC client connections beside the HTTP/1.x workload (`lab::h2`).
    pub h2_connections: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            nodes: 2,
            duration: Duration::from_secs(20),
            vni: LAB_VNI,
            capture: Capture::Xdp(XdpMode::Driver),
            mtu: 1500,
            mix: MixConfig {
                connections: 0,
                ..MixConfig::default()
            },
            max_idle: None,
            kill: None,
            progress: Progress::Off,
            rebuilder_args: Vec::new(),
            h2_connections: 0,
        }
    }
}

impl LabOptions {
    /// Connections the workload opens.
    pub fn connections(&self) -> usize {
        if self.mix.connections == 0 {
            8 * self.nodes
        } else {
            self.mix.connections
        }
    }
}

/// A built lab with its rebuilders running.
pub struct Lab {
    mirror: MirrorLab,
    opts: LabOptions,
    ledger: Arc<Ledger>,
    /// The origin's HTTP/2 server, when HTTP/2 clients run.
    h2_origin: Option<crate::h2_peer::H2Server>,
}

impl Lab {
    /// Builds the topology and starts a rebuilder in every node; returns once they all serve
    /// their status.
    pub fn start(opts: LabOptions) -> Result<Lab> {
        if let Some(k) = opts.kill {
            if k.node >= opts.nodes {
                return Err(NetnsError::Config(format!(
                    "cannot kill node {}: there are {} nodes (node0 … node{})",
                    k.node,
                    opts.nodes,
                    opts.nodes.saturating_sub(1)
                )));
            }
        }
        if opts.vni > 0xFF_FFFF {
            return Err(NetnsError::Config(format!(
                "VNI {} is over 16777215 (24 bits)",
                opts.vni
            )));
        }
        let mut mirror = MirrorLab::build(LabConfig {
            mtu: opts.mtu,
            nodes: opts.nodes,
            vni: opts.vni,
            capture: opts.capture,
            ..LabConfig::default()
        })?;
        let mut args: Vec<String> = Vec::new();
        // Every request behind a PROXY header must reach the WAF with the header's source.
        if opts.mix.proxy != super::workload::ProxyKind::Off {
            args.push(format!(
                "--add-client-ip={}",
                super::workload::CLIENT_IP_HEADER
            ));
        }
        if opts.mix.health_checks > 0.0 {
            args.extend([
                "--health-check-cidr".into(),
                format!("{}/32", crate::netns::HEALTH_CHECKER),
            ]);
        }
        if let Some(idle) = opts.max_idle {
            args.extend(["--max-idle".into(), format!("{}ms", idle.as_millis())]);
        }
        args.extend(opts.rebuilder_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mirror.start_rebuilders(&args)?;
        mirror.wait_ready(READY)?;
        let h2_origin = if opts.h2_connections > 0 {
            let at = std::net::SocketAddr::new(mirror.origin_addr().ip(), super::h2::H2_PORT);
            Some(
                crate::h2_peer::H2Server::start(mirror.origin_ns(), at)
                    .map_err(|e| NetnsError::Config(format!("the HTTP/2 origin: {e}")))?,
            )
        } else {
            None
        };
        Ok(Lab {
            ledger: Arc::new(Ledger::new(opts.nodes)),
            mirror,
            opts,
            h2_origin,
        })
    }

    pub fn mirror(&self) -> &MirrorLab {
        &self.mirror
    }

    pub fn mirror_mut(&mut self) -> &mut MirrorLab {
        &mut self.mirror
    }

    pub fn options(&self) -> &LabOptions {
        &self.opts
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Moves what the sink received so far into the ledger.
    pub fn absorb(&self) {
        let got = self.mirror.sink().take();
        if !got.is_empty() {
            self.ledger.absorb(got, |ip| self.mirror.node_of_peer(ip));
        }
    }

    /// Starts the workload of the options on a fresh ledger entry stream.
    pub fn start_workload(&self) -> Result<Workload> {
        let mix = MixConfig {
            connections: self.opts.connections(),
            ..self.opts.mix.clone()
        };
        Workload::start(&self.mirror, &mix, Arc::clone(&self.ledger))
    }

    /// Node `i`'s figures from its `/metrics`.
    pub fn figures(&self, i: usize) -> Result<NodeFigures> {
        Ok(NodeFigures::from_text(&self.mirror.metrics(i)?))
    }

    /// Node `i`'s figures once its rebuilt and replayed counters have caught up with what the
    /// sink got from it (counters are published a few times a second), or as they are after
    /// `wait`.
    fn settled_figures(&self, i: usize, wait: Duration) -> Option<NodeFigures> {
        let deadline = Instant::now() + wait;
        loop {
            self.absorb();
            let at_sink = self
                .ledger
                .tally()
                .per_node
                .get(i)
                .map_or(0, |t| t.requests);
            let f = self.figures(i).ok();
            // Workers and outputs publish their counters separately, a few times a second.
            let done = f
                .as_ref()
                .is_some_and(|f| f.replayed >= at_sink && f.rebuilt >= at_sink);
            if done || Instant::now() >= deadline {
                return f;
            }
            std::thread::sleep(TICK);
        }
    }

    /// Waits until every request sent so far (but those lost with `death`) is at the sink.
    fn wait_sink(&self, death: Option<Death>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.absorb();
            if self.ledger.awaited(death) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(TICK);
        }
    }

    /// Drives the workload for the duration (killing a node on the way if asked), waits for
    /// the sink, scrapes every node and reports. Stops early when `interrupt` is set.
    pub fn run(&mut self, interrupt: &AtomicBool, progress: &mut dyn Write) -> Result<LabReport> {
        let n = self.opts.nodes;
        let started = Instant::now();
        let workload = self.start_workload()?;
        let h2 = match &self.h2_origin {
            Some(origin) => Some(super::h2::H2Workload::start(
                &self.mirror,
                origin.addr(),
                self.opts.h2_connections,
                20.0,
                self.opts.mix.seed,
                Arc::clone(&self.ledger),
                (self.opts.mix.proxy != super::workload::ProxyKind::Off)
                    .then_some(super::workload::CLIENT_IP_HEADER),
            )?),
            None => None,
        };
        let mut death: Option<Death> = None;
        let mut state = vec![NodeState::Up; n];
        let mut last_figures: Vec<Option<NodeFigures>> = vec![None; n];
        let mut meter = Meter::new(self.opts.progress, n);
        let mut interrupted = false;
        let mut failure: Option<String> = None;
        loop {
            std::thread::sleep(TICK);
            self.absorb();
            let elapsed = started.elapsed();
            if interrupt.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            if let Some(k) = self.opts.kill {
                if death.is_none() && elapsed >= k.after {
                    match self.kill(&workload, h2.as_ref(), k.node) {
                        Ok(f) => {
                            last_figures[k.node] = f;
                            state[k.node] = NodeState::Killed {
                                at: started.elapsed(),
                            };
                            death = Some(Death {
                                node: k.node,
                                phase: self.ledger.phase(),
                            });
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
            if elapsed >= self.opts.duration {
                break;
            }
            meter.show(
                progress,
                elapsed,
                self.opts.duration,
                &self.ledger.tally(),
                &state,
            );
        }
        let traffic = started.elapsed();
        let mut client_errors = workload.stop();
        let h2_counts = h2.map(|h| {
            let (counts, errors) = h.stop();
            client_errors.extend(errors);
            counts
        });
        meter.finish(progress);

        let drained = self.wait_sink(death, DRAIN);
        // Anything beyond (a duplicate) shows up now.
        let _ = self.mirror.sink().wait_quiet(QUIET, Duration::from_secs(5));
        self.absorb();

        let mut rows = Vec::new();
        for (i, node_state) in state.iter().enumerate() {
            let figures = match node_state {
                NodeState::Up => self.settled_figures(i, Duration::from_secs(3)),
                NodeState::Killed { .. } => last_figures.get(i).cloned().flatten(),
            };
            let health = match node_state {
                NodeState::Up => Some(
                    self.mirror
                        .health(i)
                        .map_err(|e| e.to_string())
                        .map(|(code, body)| (code, body.trim().to_owned())),
                ),
                NodeState::Killed { .. } => None,
            };
            rows.push(NodeRow {
                name: format!("node{i}"),
                state: *node_state,
                figures,
                health,
            });
        }
        let mut verdict = self.ledger.verdict(death);
        verdict.client_errors.extend(client_errors);
        verdict.client_errors.sort();
        verdict.client_errors.dedup();
        Ok(LabReport {
            h2: h2_counts,
            proxy: self.opts.mix.proxy,
            health_checks: self.opts.mix.health_checks > 0.0,
            nodes: n,
            capture: self.opts.capture,
            vni: self.opts.vni,
            mtu: self.opts.mtu,
            connections: self.opts.connections(),
            traffic,
            rows,
            verdict,
            death,
            drained,
            interrupted,
            failure,
        })
    }

    /// Pauses every connection, waits until the sink has everything sent so far, reads the
    /// node's figures, starts a new ledger phase and kills the node: every request of its
    /// flows from then on is lost, and no other.
    fn kill(
        &mut self,
        workload: &Workload,
        h2: Option<&super::h2::H2Workload>,
        node: usize,
    ) -> std::result::Result<Option<NodeFigures>, String> {
        let resume = || {
            workload.resume();
            if let Some(h) = h2 {
                h.resume();
            }
        };
        if !workload.pause(PAUSE) || !h2.is_none_or(|h| h.pause(PAUSE)) {
            resume();
            return Err(format!(
                "the connections did not pause within {PAUSE:?} to kill node{node}"
            ));
        }
        if !self.wait_sink(None, DRAIN) {
            resume();
            return Err(format!(
                "before killing node{node}, {} requests sent had not reached the sink within {DRAIN:?}",
                self.ledger.awaited(None)
            ));
        }
        let figures = self.settled_figures(node, Duration::from_secs(3));
        self.ledger.set_phase(self.ledger.phase() + 1);
        let killed = self.mirror.kill_rebuilder(node);
        resume();
        match killed {
            Some(_) => Ok(figures),
            None => Err(format!("node{node} had no rebuilder to kill")),
        }
    }

    /// How to look at a kept lab, and how to remove it.
    pub fn look_around(&self) -> String {
        let m = &self.mirror;
        let node0 = m.nodes().first().map_or("?", |n| n.ns().name());
        let status = m.status_addr();
        let mut out = String::new();
        out.push_str("The lab is still up. Look around (as root):\n");
        out.push_str("  ip netns list | grep '^rb-'\n");
        out.push_str(&format!(
            "  ip netns exec {node0} curl -s {status}/metrics | grep -E '^rebuilder_(requests|upstream|xdp_packets)'\n"
        ));
        out.push_str(&format!(
            "  ip netns exec {} curl -s http://{}:{}/livez        # the NLB's health check (/readyz: also the WAF)\n",
            m.nlb_ns().name(),
            m.nodes()
                .first()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| n.addr()),
            status.port()
        ));
        out.push_str(&format!(
            "  ip netns exec {} curl -s -d hello http://{}/      # more mirrored traffic\n",
            m.client_ns().name(),
            m.origin_addr()
        ));
        out.push_str(&format!(
            "  ip -n {node0} -d link show {}                   # the XDP program\n",
            crate::netns::NODE_IFACE
        ));
        out.push_str(&format!(
            "  tc -n {} -s filter show dev rborg0 ingress         # the mirror session\n",
            m.origin_ns().name()
        ));
        out.push_str(
            "Press Ctrl-C to tear everything down. Should this process be killed instead, \
             `cargo xtask lab --clean` removes what it left.\n",
        );
        out
    }
}

/// The progress line: counts so far and per-node rates over the last second or so.
struct Meter {
    mode: Progress,
    last_shown: Option<Instant>,
    prev: Option<(Instant, Vec<u64>)>,
    rates: Vec<f64>,
    shown_any: bool,
}

impl Meter {
    fn new(mode: Progress, nodes: usize) -> Meter {
        Meter {
            mode,
            last_shown: None,
            prev: None,
            rates: vec![0.0; nodes],
            shown_any: false,
        }
    }

    fn show(
        &mut self,
        out: &mut dyn Write,
        elapsed: Duration,
        total: Duration,
        t: &Tally,
        state: &[NodeState],
    ) {
        let every = match self.mode {
            Progress::Off => return,
            Progress::Line => Duration::from_millis(500),
            Progress::Lines(d) => d,
        };
        let now = Instant::now();
        if self
            .last_shown
            .is_some_and(|l| now.duration_since(l) < every)
        {
            return;
        }
        let counts: Vec<u64> = t.per_node.iter().map(|n| n.requests).collect();
        if let Some((at, before)) = &self.prev {
            let dt = now.duration_since(*at).as_secs_f64().max(1e-3);
            for ((r, a), b) in self.rates.iter_mut().zip(&counts).zip(before) {
                *r = a.saturating_sub(*b) as f64 / dt;
            }
        }
        self.prev = Some((now, counts));
        self.last_shown = Some(now);
        let nodes: Vec<String> = self
            .rates
            .iter()
            .zip(state)
            .enumerate()
            .map(|(i, (r, s))| match s {
                NodeState::Up => format!("node{i} {r:.0}/s"),
                NodeState::Killed { .. } => format!("node{i} killed"),
            })
            .collect();
        let line = format!(
            "{:5.1}/{:.0} s  sent {} ({})  at the sink {}  {}",
            elapsed.as_secs_f64(),
            total.as_secs_f64(),
            t.sent,
            super::report::bytes(t.sent_bytes),
            t.received,
            nodes.join("  ")
        );
        let _ = match self.mode {
            Progress::Line => write!(out, "\r{line}\x1b[K"),
            _ => writeln!(out, "{line}"),
        };
        let _ = out.flush();
        self.shown_any = true;
    }

    fn finish(&mut self, out: &mut dyn Write) {
        if self.mode == Progress::Line && self.shown_any {
            let _ = writeln!(out);
        }
    }
}
