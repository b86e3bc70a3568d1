//! The rebuilders of a built lab: start one per node (UDP or XDP capture), wait until each
//! serves, read its metrics, kill or stop them, and drive client traffic through the lab; plus
//! a one-shot HTTP GET from inside a namespace, for health checks and status pages.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use super::super::{Netns, NetnsError, Result};
use super::*;
use crate::http_client::{run_connection, ClientError, ConnectionOutcome, ConnectionPlan};
use crate::process::{rebuilder_bin, Finished, Running};

impl MirrorLab {
    /// Starts `rebuilder run CAPTURE --upstream URL --status 0.0.0.0:9479 EXTRA…` in every
    /// node's namespace not running one, where CAPTURE is `--udp 10.77.100.1:4789` or
    /// `--iface rbin0 --xdp-mode MODE` ([`LabConfig::capture`]).
    ///
    /// The processes are killed when the lab is dropped and, should this process die first,
    /// by the kernel (`PR_SET_PDEATHSIG`) when the thread calling this ends: call it from the
    /// thread that owns the lab.
    pub fn start_rebuilders(&mut self, extra: &[&str]) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_rebuilder(i, extra)?;
        }
        Ok(())
    }

    /// [`start_rebuilders`](Self::start_rebuilders) for node `i` alone (a no-op when it runs).
    pub fn start_rebuilder(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let bin = rebuilder_bin();
        let capture = self.cfg.capture.args(self.collector_addr());
        let status = STATUS_LISTEN.to_string();
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        if node.rebuilder.is_some() {
            return Ok(());
        }
        let mut cmd = node.ns.command(&bin);
        cmd.arg("run")
            .args(&capture)
            .args(["--upstream", &node.upstream])
            .args(["--status", &status])
            .args(extra);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe; a rebuilder must never outlive the test
        // that started it (it would hold its namespace alive).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        node.rebuilder = Some(Running::spawn_cmd(&mut cmd)?);
        Ok(())
    }

    /// `kill -9` of node `i`'s rebuilder: no drain, no summary, as a crashed instance. Returns
    /// what it wrote, once reaped (None when none ran).
    pub fn kill_rebuilder(&mut self, i: usize) -> Option<Finished> {
        let r = self.nodes.get_mut(i)?.rebuilder.take()?;
        r.signal(libc::SIGKILL);
        Some(r.wait(Duration::from_secs(10)))
    }

    /// Waits until every started rebuilder answers `/metrics` (its UDP socket is bound, or
    /// its XDP program attached, before its status server starts). Fails with the process's
    /// stderr if one exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        for node in &mut self.nodes {
            let Some(r) = node.rebuilder.as_mut() else {
                continue;
            };
            loop {
                if !r.alive() {
                    return Err(NetnsError::Process(format!(
                        "rebuilder in {} exited at start:\n{}",
                        node.ns.name(),
                        r.stderr_so_far()
                    )));
                }
                if matches!(
                    http_get(&node.ns, STATUS, "/metrics", Duration::from_millis(500)),
                    Ok((200, _))
                ) {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(NetnsError::Timeout {
                        what: format!("rebuilder status server in {}", node.ns.name()),
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `GET /metrics` from node `i`'s rebuilder.
    pub fn metrics(&self, i: usize) -> Result<String> {
        let node = self
            .nodes
            .get(i)
            .ok_or_else(|| NetnsError::Config(format!("no node {i}")))?;
        match http_get(&node.ns, STATUS, "/metrics", Duration::from_secs(2))? {
            (200, body) => Ok(body),
            (status, body) => Err(NetnsError::Config(format!(
                "/metrics in {} answered {status}: {body}",
                node.ns.name()
            ))),
        }
    }

    /// SIGTERMs every rebuilder and waits up to `timeout` for each (killing it after that);
    /// returns what each did, in node order (nodes never started are skipped).
    pub fn stop_rebuilders(&mut self, timeout: Duration) -> Vec<Finished> {
        for node in &self.nodes {
            if let Some(r) = &node.rebuilder {
                r.signal(libc::SIGTERM);
            }
        }
        self.nodes
            .iter_mut()
            .filter_map(|n| n.rebuilder.take())
            .map(|r| r.wait(timeout))
            .collect()
    }

    /// Runs every plan on its own connection from the client namespace to the origin, all at
    /// once, within `timeout`. Outcomes in plan order; the first failure is returned instead.
    pub fn drive(
        &self,
        plans: &[ConnectionPlan],
        timeout: Duration,
    ) -> Result<Vec<ConnectionOutcome>> {
        let deadline = Instant::now() + timeout;
        let to = self.origin_addr();
        let mut handles = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let plan = plan.clone();
            handles.push(self.client.spawn(&format!("client-{i}"), move || {
                let left = deadline.saturating_duration_since(Instant::now());
                let stream = crate::http_client::connect_from(
                    plan.source,
                    to,
                    left.max(Duration::from_millis(1)),
                )
                .map_err(|source| ClientError::Io {
                    connection: i,
                    source,
                })?;
                run_connection(stream, i, &plan, deadline)
            })?);
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for h in handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match r {
                Ok(Ok(o)) => out.push(o),
                Ok(Err(e)) => {
                    first_err.get_or_insert(NetnsError::Client(e));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// A one-shot `GET path` over HTTP/1.1 from inside `ns`; status and body.
pub fn http_get(
    ns: &Netns,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = ns.run(move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(raw)
    })??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            NetnsError::Config(format!("not an HTTP response from {addr}: {text:.80}"))
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
