//! Sending VXLAN datagrams (what a socket bound to UDP/4789 receives) to a loopback address,
//! standing in for the NLB in front of `rebuilder run --udp`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::encode::Frame;
use crate::error::GenError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSendOptions {
    /// Where to send; must be a loopback address.
    pub target: SocketAddr,
    /// Average rate; `None` sends as fast as the socket takes them.
    pub packets_per_second: Option<u64>,
    /// Number of sending sockets (distinct source ports). A frame goes out of the socket chosen
    /// by its outer flow-hash port, so one inner flow always uses one source port (as through
    /// an NLB) and a receiver using SO_REUSEPORT spreads flows, not packets.
    pub sockets: usize,
}

impl UdpSendOptions {
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            packets_per_second: None,
            sockets: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpSendStats {
    pub packets: u64,
    pub bytes: u64,
}

pub struct VxlanSender {
    sockets: Vec<UdpSocket>,
    target: SocketAddr,
    interval: Option<Duration>,
    started: Option<Instant>,
    stats: UdpSendStats,
}

impl VxlanSender {
    pub fn new(opts: &UdpSendOptions) -> Result<Self, GenError> {
        if !opts.target.ip().is_loopback() {
            return Err(GenError::NotLoopback(opts.target));
        }
        if opts.sockets == 0 {
            return Err(GenError::Zero("sockets"));
        }
        let bind: IpAddr = match opts.target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let sockets = (0..opts.sockets)
            .map(|_| UdpSocket::bind(SocketAddr::new(bind, 0)))
            .collect::<io::Result<Vec<_>>>()?;
        let interval = match opts.packets_per_second {
            Some(0) => return Err(GenError::Zero("packets per second")),
            Some(pps) => Some(Duration::from_secs(1) / u32::try_from(pps).unwrap_or(u32::MAX)),
            None => None,
        };
        Ok(Self {
            sockets,
            target: opts.target,
            interval,
            started: None,
            stats: UdpSendStats::default(),
        })
    }

    /// The sending sockets' addresses.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(UdpSocket::local_addr).collect()
    }

    pub fn send(&mut self, frame: &Frame) -> Result<(), GenError> {
        self.send_payload(frame.outer_source_port(), frame.vxlan_payload())
    }

    /// Sends one VXLAN datagram; `flow_port` picks the socket.
    pub fn send_payload(&mut self, flow_port: u16, payload: &[u8]) -> Result<(), GenError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if let Some(interval) = self.interval {
            // Sleep only when more than a millisecond ahead: sleeping per packet would cap the
            // rate at the timer's resolution, while this keeps the average exact.
            let due = started
                + interval.saturating_mul(u32::try_from(self.stats.packets).unwrap_or(u32::MAX));
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                std::thread::sleep(due - now);
            }
        }
        let n = self.sockets.len();
        let socket = self
            .sockets
            .get(usize::from(flow_port) % n)
            .ok_or(GenError::Zero("sockets"))?;
        socket.send_to(payload, self.target)?;
        self.stats.packets += 1;
        self.stats.bytes += payload.len() as u64;
        Ok(())
    }

    pub fn stats(&self) -> UdpSendStats {
        self.stats
    }
}

/// Sends every frame's VXLAN payload; returns what was sent.
pub fn send_vxlan<I>(frames: I, opts: &UdpSendOptions) -> Result<UdpSendStats, GenError>
where
    I: IntoIterator<Item = Result<Frame, GenError>>,
{
    let mut sender = VxlanSender::new(opts)?;
    for f in frames {
        sender.send(&f?)?;
    }
    Ok(sender.stats())
}
