//! The unit every capture path produces: one TCP segment of a mirrored connection.
//!
//! `xdp`, `udp` and `pcap` all yield exactly this, so everything after capture is the same code
//! whatever the packets came from (DESIGN §3).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

/// Nanoseconds since the UNIX epoch. Capture time, not processing time: offline runs use the
/// capture's own timestamps so that timers (reordering, idle expiry) behave the same on every
/// run over the same file.
pub type Timestamp = u64;

/// One direction of a TCP connection, as seen inside the VXLAN encapsulation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        Self {
            src: src.ip(),
            dst: dst.ip(),
            src_port: src.port(),
            dst_port: dst.port(),
        }
    }

    pub fn src_addr(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.src_port)
    }

    pub fn dst_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dst_port)
    }

    /// The other direction of the same connection.
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// The same value for both directions of a connection, so that a dispatcher hashing it
    /// sends both directions to one worker (where responses could later be paired).
    pub fn canonical(&self) -> Self {
        let rev = self.reversed();
        if rev < *self {
            rev
        } else {
            *self
        }
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src_addr(), self.dst_addr())
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// TCP header flags, bit-compatible with the TCP header's flags byte (and with the XDP record).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, char); 8] = [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::ACK, '.'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
        ];
        f.write_str("[")?;
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        f.write_str("]")
    }
}

/// One TCP segment of the mirrored traffic.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// When the packet was captured.
    pub ts: Timestamp,
    /// VXLAN network identifier: the mirror session's virtual network id.
    pub vni: u32,
    pub flow: FlowKey,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The TCP payload bytes that arrived. May be shorter than `wire_len` (truncation).
    pub payload: Bytes,
    /// The TCP payload length the original packet had on the wire, from the inner IP header's
    /// length. `wire_len > payload.len()` marks a truncated frame (AWS PacketLength, MTU): the
    /// missing tail is a gap, never data.
    pub wire_len: u32,
}

impl Segment {
    pub fn is_truncated(&self) -> bool {
        self.wire_len as usize > self.payload.len()
    }

    /// Sequence space the segment occupies: payload bytes plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.wire_len + u32::from(self.flags.syn()) + u32::from(self.flags.fin())
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Segment(vni={} {:?} {:?} seq={} ack={} len={}/{})",
            self.vni,
            self.flow,
            self.flags,
            self.seq,
            self.ack,
            self.payload.len(),
            self.wire_len
        )
    }
}
