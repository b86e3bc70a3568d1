//! Liveness and readiness: components' heartbeats, the upstream's reachability, packets
//! arriving, and the verdicts `/livez`, `/readyz` and the `rebuilder_live`/`rebuilder_ready`
//! gauges give from them (see the parent module for who asks what).
//!
//! Depends on nothing of the pipeline: components hold a [`Heartbeat`], the outputs report the
//! upstream, the capture threads report packets; this module only keeps and judges what they
//! report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

struct Component {
    name: String,
    max_silence: Duration,
    /// Set by `beat()`, cleared by `check()`.
    beaten: AtomicBool,
    stopped: AtomicBool,
    /// Nanoseconds since `Health::epoch` when `check()` last saw a beat (or the component was
    /// registered).
    last_seen: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum UpstreamState {
    /// No upstream configured, or nothing tried yet.
    Unknown,
    Reachable,
    Unreachable(String),
}

/// Whether the pipeline is healthy: every registered component beats, none has stopped, and
/// the upstream (if one reported) is reachable.
pub struct Health {
    epoch: Instant,
    components: Mutex<Vec<Arc<Component>>>,
    upstream: Mutex<UpstreamState>,
    /// Fail when no packet was captured for longer than this (once one was).
    max_idle: Option<Duration>,
    /// Nanoseconds since `epoch` of the last batch holding packets; `NEVER` before the first.
    last_packet: AtomicU64,
}

const NEVER: u64 = u64::MAX;

/// A component's handle on its own liveness. Cheap to clone; every clone beats for the same
/// component.
#[derive(Clone)]
pub struct Heartbeat {
    component: Arc<Component>,
}

impl Heartbeat {
    /// The component made progress. One relaxed store: fine to call per packet.
    #[inline]
    pub fn beat(&self) {
        self.component.beaten.store(true, Ordering::Relaxed);
    }

    /// The component is gone for good (thread ended); health fails from now on.
    pub fn stopped(&self) {
        self.component.stopped.store(true, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.component.name
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data that is still meaningful.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    pub fn new() -> Arc<Self> {
        Self::with_max_idle(None)
    }

    /// With `max_idle`, `/healthz` also fails once no packet has been captured for that long
    /// (counted from the last packet; nothing is said before the first one).
    pub fn with_max_idle(max_idle: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            components: Mutex::new(Vec::new()),
            upstream: Mutex::new(UpstreamState::Unknown),
            max_idle,
            last_packet: AtomicU64::new(NEVER),
        })
    }

    /// A capture thread got packets in its last batch. A clock read and one relaxed store: call
    /// it per batch, not per packet.
    #[inline]
    pub fn packets_captured(&self) {
        self.last_packet.store(self.now_ns(), Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A pipeline component (capture thread, worker) that must beat at least every
    /// `max_silence`.
    pub fn component(&self, name: &str, max_silence: Duration) -> Heartbeat {
        let component = Arc::new(Component {
            name: name.to_string(),
            max_silence,
            beaten: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            last_seen: AtomicU64::new(self.now_ns()),
        });
        lock(&self.components).push(Arc::clone(&component));
        Heartbeat { component }
    }

    pub fn set_upstream(&self, reachable: bool, reason: &str) {
        let state = if reachable {
            UpstreamState::Reachable
        } else {
            UpstreamState::Unreachable(reason.to_string())
        };
        let mut cur = lock(&self.upstream);
        if *cur != state {
            match &state {
                UpstreamState::Unreachable(r) => {
                    tracing::warn!(reason = %r, "upstream unreachable")
                }
                _ => tracing::info!("upstream reachable"),
            }
            *cur = state;
        }
    }

    /// Whether the upstream was last seen unreachable (false while unknown).
    pub fn upstream_unreachable(&self) -> bool {
        matches!(*lock(&self.upstream), UpstreamState::Unreachable(_))
    }

    /// Liveness (`/livez`): Ok while every component beats and none has stopped, else the
    /// reasons (silent components by name, stopped ones). Says nothing about the upstream or
    /// about traffic.
    pub fn live(&self) -> Result<(), String> {
        verdict(self.component_reasons(self.now_ns()))
    }

    /// Readiness (`/readyz`): live, and the upstream (if one reported) reachable, and no
    /// longer than `max_idle` without packets. The reasons in that order.
    pub fn ready(&self) -> Result<(), String> {
        let now = self.now_ns();
        let mut reasons = self.component_reasons(now);
        reasons.extend(self.readiness_reasons(now));
        verdict(reasons)
    }

    /// `/healthz`: readiness. The endpoint predates the split and has always meant components,
    /// upstream and idle, so it keeps that meaning.
    pub fn check(&self) -> Result<(), String> {
        self.ready()
    }

    /// Both verdicts from one sweep of the components (for the gauges).
    pub(super) fn assess(&self) -> (bool, bool) {
        let now = self.now_ns();
        let live = self.component_reasons(now).is_empty();
        (live, live && self.readiness_reasons(now).is_empty())
    }

    /// Why a component is not alive. Consumes the beat flags, so it runs under the components
    /// lock: a caller that consumes a beat records it in `last_seen` before any other caller
    /// can look, and every caller (`/livez`, `/readyz`, `/healthz`, a scrape) judges silence
    /// from that shared record. Without the lock, one caller could clear a flag and another
    /// read the old `last_seen` in between and report a beating component as silent.
    fn component_reasons(&self, now: u64) -> Vec<String> {
        let mut reasons = Vec::new();
        let components = lock(&self.components);
        for c in components.iter() {
            if c.stopped.load(Ordering::Relaxed) {
                reasons.push(format!("{} stopped", c.name));
                continue;
            }
            if c.beaten.swap(false, Ordering::Relaxed) {
                c.last_seen.store(now, Ordering::Relaxed);
                continue;
            }
            let silent =
                Duration::from_nanos(now.saturating_sub(c.last_seen.load(Ordering::Relaxed)));
            if silent > c.max_silence {
                reasons.push(format!(
                    "{} silent for {:.1}s (max {:.1}s)",
                    c.name,
                    silent.as_secs_f64(),
                    c.max_silence.as_secs_f64()
                ));
            }
        }
        reasons
    }

    /// What readiness needs beyond liveness: packets within `max_idle`, a reachable upstream.
    fn readiness_reasons(&self, now: u64) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(max) = self.max_idle {
            let last = self.last_packet.load(Ordering::Relaxed);
            if last != NEVER {
                let idle = Duration::from_nanos(now.saturating_sub(last));
                if idle > max {
                    reasons.push(format!(
                        "no packets for {:.1} s (max idle {:.1} s)",
                        idle.as_secs_f64(),
                        max.as_secs_f64()
                    ));
                }
            }
        }
        if let UpstreamState::Unreachable(r) = &*lock(&self.upstream) {
            reasons.push(format!("upstream unreachable: {r}"));
        }
        reasons
    }

    /// Registers `rebuilder_live` and `rebuilder_ready` in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(HealthCollector(Arc::clone(self))));
    }
}

fn verdict(reasons: Vec<String>) -> Result<(), String> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// `rebuilder_live` and `rebuilder_ready`, 0 or 1, assessed at each scrape.
///
/// Why at scrape time rather than set by a periodic task: the gauges then say exactly what
/// `/livez` and `/readyz` would have answered at the moment Prometheus looked, never a value one
/// period old, and no timer has to run (or be stopped) beside the pipeline. Reading them
/// consumes heartbeats like any endpoint does, which is harmless: see the module doc.
struct HealthCollector(Arc<Health>);

impl std::fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthCollector")
    }
}

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (live, ready) = self.0.assess();
        for (name, help, value) in [
            (
                "rebuilder_live",
                "1 while /livez answers 200: every capture thread and reassembly worker beats",
                live,
            ),
            (
                "rebuilder_ready",
                "1 while /readyz (and /healthz) answers 200: live, the upstream (if any) reachable, packets arriving (with --max-idle)",
                ready,
            ),
        ] {
            let gauge = ConstGauge::new(i64::from(value));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
