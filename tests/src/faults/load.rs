//! The steady load the faults run under: numbered requests (so the sink can tell which came
//! out) on a fixed set of keep-alive flows, sent as VXLAN frames from a background thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{setup, FaultError};
use crate::gen::{Close, Conversation, Direction, Frame, UdpSendOptions, VxlanSender};

/// The request of connection `n`: unique, and its number is in the target.
pub fn fault_request(n: usize) -> Vec<u8> {
    format!("GET /fault/{n} HTTP/1.1\r\nHost: waf.test\r\nX-Request-Id: f-{n}\r\n\r\n").into_bytes()
}

pub(super) fn request_number(raw: &[u8]) -> Option<usize> {
    let rest = raw.strip_prefix(b"GET /fault/")?;
    let end = rest.iter().position(|b| *b == b' ')?;
    std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
}

/// The frames of connection `n` (handshake, the request, its response, FIN).
pub(super) fn connection_frames(n: usize) -> Result<Vec<Frame>, crate::GenError> {
    let client = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(
            10,
            3,
            (n / 250 % 250) as u8,
            (n % 250) as u8 + 1,
        )),
        10_000 + (n % 50_000) as u16,
    );
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 3, 255, 1)), 80);
    Conversation::new(client, server)
        .id(n as u64)
        .exchange(
            fault_request(n),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        )
        .build()?
        .frames()
        .collect()
}

/// Keep-alive connections the driver spreads its requests over: a fixed set of flows, so that
/// the flow table does not grow with time (closed connections are remembered for 30 s) and the
/// RSS shows what the outputs do.
pub(super) const DRIVER_CONNECTIONS: usize = 20;

/// For each of `connections` keep-alive connections, the frames of each of its requests in
/// order (the handshake goes with the first): request `n` is on connection `n % connections`.
pub(super) fn keepalive_groups(
    connections: usize,
    total: usize,
) -> Result<Vec<std::collections::VecDeque<Vec<Frame>>>, FaultError> {
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 3, 255, 1)), 80);
    let mut out = Vec::new();
    for c in 0..connections {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 3, 0, c as u8 + 1)),
            20_000 + c as u16,
        );
        let plan = Conversation::new(client, server)
            .id(c as u64)
            .close(Close::Open)
            .requests(
                (c..total).step_by(connections).map(fault_request),
                b"HTTP/1.1 204 No Content\r\n\r\n",
            )
            .build()?;
        let mut groups = std::collections::VecDeque::new();
        let mut group: Vec<Frame> = Vec::new();
        let mut has_data = false;
        for (p, f) in plan.packets().iter().zip(plan.frames()) {
            let data = p.dir == Direction::ClientToServer && !p.payload.is_empty();
            if data && has_data {
                groups.push_back(std::mem::take(&mut group));
                has_data = false;
            }
            has_data |= data;
            group.push(f?);
        }
        if has_data {
            groups.push_back(group);
        }
        out.push(groups);
    }
    Ok(out)
}

/// Sends one request every `1/rate` s over keep-alive connections until stopped (or out of
/// requests), noting when each was sent.
pub(super) struct Driver {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Instant>>>,
    thread: Option<JoinHandle<Result<(), FaultError>>>,
}

impl Driver {
    /// At most `capacity` requests.
    pub(super) fn start(
        target: SocketAddr,
        rate: u32,
        capacity: usize,
    ) -> Result<Self, FaultError> {
        let mut conns = keepalive_groups(DRIVER_CONNECTIONS, capacity)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || -> Result<(), FaultError> {
            let mut tx = VxlanSender::new(&UdpSendOptions::new(target))?;
            let every = Duration::from_secs(1) / rate.max(1);
            let t0 = Instant::now();
            let mut n = 0usize;
            while !s.load(Ordering::SeqCst) {
                let Some(group) = conns
                    .get_mut(n % DRIVER_CONNECTIONS)
                    .and_then(|c| c.pop_front())
                else {
                    break;
                };
                for f in &group {
                    tx.send(f)?;
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now());
                n += 1;
                let due = t0 + every * u32::try_from(n).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(())
        });
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    pub(super) fn count(&self) -> usize {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn finish(mut self) -> Result<Vec<Instant>, FaultError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| setup("the traffic driver panicked"))??;
        }
        Ok(std::mem::take(
            &mut *self.sent.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
