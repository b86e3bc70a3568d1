//! What the lab's clients send: fixed plans for the end-to-end tests, and [`Workload`], a
//! mixed, paced, long-running workload over persistent keep-alive connections whose every
//! request is entered in a [`Ledger`] before it is written.
//!
//! Every request of the mixed workload carries `X-Lab-Id: c<connection>-<n>` as its second
//! line, so whatever arrives at the sink can be matched to what was sent, and to the
//! connection (so the flow, so the node) it belongs to; the rest of each request is exactly
//! what the generator makes, hostile ones included.
//!
//! This module holds the runner ([`Workload`]: connection threads, the pause gate, the health
//! checker); `requests` what the requests are and how they are named (fixed plans, PROXY
//! headers, health checks, ids), and `mix` the mixed workload's choice of the next step.
//! Talks to the lab only through [`MirrorLab`]'s addresses and records in the [`Ledger`].

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ledger::{Ledger, RequestId};
use crate::http_client::KeepAlive;
use crate::netns::{MirrorLab, NetnsError, Result};
use crate::rng::SplitMix64;
use mix::step;

/// The `Host` the lab's clients ask for.
pub const HOST: &str = "shop.example.test";
/// The header naming each request of the mixed workload.
pub const ID_HEADER: &str = "X-Lab-Id";
/// Longest a single exchange (a multi-MB upload included) may take before the connection is
/// given up as broken.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a paused or sleeping connection thread looks at its flags.
const POLL: Duration = Duration::from_millis(20);
/// The connection number in the ids of health checks (`c999999-<n>`): each check is a
/// connection of its own, none a flow of the workload.
pub const HEALTH_CHECK_CONN: u32 = 999_999;
/// The header the lab's rebuilders add the client IP in when the clients send PROXY headers
/// (`--add-client-ip`).
pub const CLIENT_IP_HEADER: &str = "X-Forwarded-For";
/// The VPC endpoint id the lab's v2 headers carry.
pub const LAB_VPCE_ID: &str = "vpce-0lab0000000000001";

mod mix;
mod requests;
#[cfg(test)]
mod tests;

pub use mix::{Action, MixConfig};
pub use requests::{health_check, id_of, mirror_plans, spread_plans, with_id, ProxyKind};

#[derive(Default)]
struct GateState {
    paused: bool,
    stop: bool,
    /// Connection threads waiting at the gate (or finished).
    parked: usize,
}

/// Lets the runner hold every connection between two steps (to kill a node at a known point),
/// and stop them.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while paused; false once stopping.
    fn pass(&self) -> bool {
        let mut st = self.lock();
        if st.paused && !st.stop {
            st.parked += 1;
            self.changed.notify_all();
            while st.paused && !st.stop {
                st = self
                    .changed
                    .wait_timeout(st, POLL)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            st.parked -= 1;
        }
        !st.stop
    }

    /// A thread is done for good: it counts as parked from now on.
    fn leave(&self) {
        self.lock().parked += 1;
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.lock().stop
    }
}

/// A running mixed workload: one thread per connection, inside the lab's client namespace.
pub struct Workload {
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<Result<Result<()>>>>,
    connections: usize,
}

impl Workload {
    /// Opens every connection to the lab's origin and starts sending. Each connection steps at
    /// `rate / connections` per second, the first steps spread over one interval.
    pub fn start(lab: &MirrorLab, cfg: &MixConfig, ledger: Arc<Ledger>) -> Result<Workload> {
        if cfg.connections == 0 || !(cfg.rate > 0.0 && cfg.rate.is_finite()) {
            return Err(NetnsError::Config(format!(
                "a workload needs connections and a positive rate (got {} and {})",
                cfg.connections, cfg.rate
            )));
        }
        if !(cfg.health_checks >= 0.0 && cfg.health_checks.is_finite()) {
            return Err(NetnsError::Config(format!(
                "health checks per second must be 0 or more (got {})",
                cfg.health_checks
            )));
        }
        let interval = Duration::from_secs_f64(cfg.connections as f64 / cfg.rate);
        let gate = Arc::new(Gate::default());
        let origin = lab.origin_addr();
        let start = Instant::now();
        let mut threads = Vec::new();
        if cfg.health_checks > 0.0 {
            let checker = HealthChecker {
                origin,
                interval: Duration::from_secs_f64(1.0 / cfg.health_checks),
                proxy: cfg.proxy,
                ledger: Arc::clone(&ledger),
                gate: Arc::clone(&gate),
            };
            threads.push(lab.client_ns().spawn("lab-health", move || checker.run())?);
        }
        for c in 0..cfg.connections {
            let conn =
                u32::try_from(c).map_err(|_| NetnsError::Config("too many connections".into()))?;
            let first = start + interval.mul_f64(c as f64 / cfg.connections as f64);
            let ctx = ConnCtx {
                conn,
                origin,
                interval,
                first,
                max_body: cfg.max_body,
                rng: SplitMix64::new(cfg.seed ^ (u64::from(conn) << 32) ^ 0x1ab),
                proxy: cfg.proxy.header(conn, origin),
                ledger: Arc::clone(&ledger),
                gate: Arc::clone(&gate),
            };
            threads.push(
                lab.client_ns()
                    .spawn(&format!("lab-conn-{c}"), move || ctx.run())?,
            );
        }
        Ok(Workload {
            gate,
            connections: threads.len(),
            threads,
        })
    }

    /// Holds every connection before its next step; true once all of them wait (or ended),
    /// false if that took longer than `timeout` (they stay paused).
    pub fn pause(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.gate.lock();
        st.paused = true;
        while st.parked < self.connections {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .gate
                .changed
                .wait_timeout(st, left.min(POLL))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    pub fn resume(&self) {
        self.gate.lock().paused = false;
        self.gate.changed.notify_all();
    }

    /// Stops after each connection's current step and closes the connections. Returns the
    /// errors of connections that failed (they are in the ledger too).
    pub fn stop(self) -> Vec<String> {
        {
            let mut st = self.gate.lock();
            st.stop = true;
        }
        self.gate.changed.notify_all();
        let mut errors = Vec::new();
        for t in self.threads {
            match t.join() {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) | Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("a connection thread panicked".into()),
            }
        }
        errors
    }
}

struct ConnCtx {
    conn: u32,
    origin: SocketAddr,
    interval: Duration,
    first: Instant,
    max_body: usize,
    rng: SplitMix64,
    /// The PROXY header to start with and the client IP it carries.
    proxy: Option<(Vec<u8>, IpAddr)>,
    ledger: Arc<Ledger>,
    gate: Arc<Gate>,
}

impl ConnCtx {
    fn run(mut self) -> Result<()> {
        let r = self.steps();
        if let Err(e) = &r {
            self.ledger.connection_failed(self.conn, e.to_string());
        }
        self.gate.leave();
        r
    }

    fn steps(&mut self) -> Result<()> {
        let c = self.conn as usize;
        let stream = TcpStream::connect_timeout(&self.origin, Duration::from_secs(5))?;
        let mut ka = KeepAlive::new(stream, c)?;
        if let Some(a) = ka.local_addr() {
            self.ledger.connection_opened(self.conn, a);
        }
        if let Some((header, _)) = &self.proxy {
            ka.preamble(header, Instant::now() + EXCHANGE_TIMEOUT)?;
        }
        let mut next = self.first;
        let mut seq = 0u32;
        loop {
            // Sleep in slices so that a stop is noticed.
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if self.gate.stopping() {
                    ka.finish();
                    return Ok(());
                }
                std::thread::sleep(left.min(POLL));
            }
            if !self.gate.pass() {
                break;
            }
            let action = Action::pick(&mut self.rng);
            let conn = self.conn;
            let st = step(action, &mut self.rng, self.max_body, || {
                let id = RequestId { conn, seq };
                seq = seq.wrapping_add(1);
                id
            });
            // Entered before a byte is written: the sink may see it before write() returns.
            for raw in &st.batch {
                match &self.proxy {
                    Some((_, ip)) => self.ledger.sent_as(
                        raw,
                        crate::gen::proxy::with_client_ip(raw, CLIENT_IP_HEADER, *ip),
                    ),
                    None => self.ledger.sent(raw),
                }
            }
            let responses = ka.exchange(&st.batch, st.pieces, Instant::now() + EXCHANGE_TIMEOUT)?;
            if let Some(r) = responses.iter().find(|r| r.status != 200) {
                return Err(NetnsError::Config(format!(
                    "connection {c}: the origin answered {}",
                    r.status
                )));
            }
            next += self.interval;
            // Behind by more than a few steps (a long upload): carry on from now rather
            // than bursting to catch up.
            let now = Instant::now();
            if next + self.interval * 4 < now {
                next = now;
            }
        }
        ka.finish();
        Ok(())
    }
}

/// The thread sending health checks, one connection each, as a load balancer does.
struct HealthChecker {
    origin: SocketAddr,
    interval: Duration,
    proxy: ProxyKind,
    ledger: Arc<Ledger>,
    gate: Arc<Gate>,
}

impl HealthChecker {
    fn run(self) -> Result<()> {
        let r = self.checks();
        if let Err(e) = &r {
            self.ledger
                .connection_failed(HEALTH_CHECK_CONN, format!("health checks: {e}"));
        }
        self.gate.leave();
        r
    }

    fn checks(&self) -> Result<()> {
        let mut next = Instant::now() + self.interval / 2;
        for n in 0u32.. {
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if self.gate.stopping() {
                    return Ok(());
                }
                std::thread::sleep(left.min(POLL));
            }
            if !self.gate.pass() {
                break;
            }
            let (raw, local, from_checker) = health_check(n, self.origin, self.proxy);
            let source = from_checker.then_some(IpAddr::V4(crate::netns::HEALTH_CHECKER));
            let stream =
                crate::http_client::connect_from(source, self.origin, Duration::from_secs(5))?;
            let mut ka = KeepAlive::new(stream, HEALTH_CHECK_CONN as usize)?;
            let deadline = Instant::now() + EXCHANGE_TIMEOUT;
            if local {
                ka.preamble(&crate::gen::proxy::v2_local(), deadline)?;
            }
            self.ledger.sent_filtered(&raw);
            let responses = ka.exchange(std::slice::from_ref(&raw), None, deadline)?;
            ka.finish();
            if let Some(r) = responses.iter().find(|r| r.status != 200) {
                return Err(NetnsError::Config(format!(
                    "health check {n}: the origin answered {}",
                    r.status
                )));
            }
            next += self.interval;
        }
        Ok(())
    }
}
