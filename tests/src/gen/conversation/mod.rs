//! One HTTP/1.x-over-TCP conversation, planned packet by packet, with its ground truth.
//!
//! Planning is separate from encoding: a [`ConversationPlan`] holds the two byte streams and a
//! list of [`PlannedPacket`]s (ranges into those streams), and frames are encoded one at a time
//! when asked for. That keeps a million-packet capture cheap to stream.
//!
//! This module holds the types a plan is made of, the ground truth and [`ConversationPlan`];
//! `builder` holds [`Conversation`], the builder that plans the packets, and `impair` the
//! impairments applied to a planned packet list (loss, duplicates, reordering, truncation,
//! mid-stream start, a second mirror). Depends on the frame encoder and the HTTP builders of
//! this generator only.

mod builder;
mod impair;

pub use builder::Conversation;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use super::encode::{Encoder, Frame};
use crate::error::GenError;

/// TCP flag bits as in the header's flags byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// 2025-01-01T00:00:00Z, the default start of generated captures.
pub const DEFAULT_EPOCH: Duration = Duration::from_secs(1_735_689_600);
/// Largest MSS accepted: keeps every inner and outer IP datagram under 64 KiB.
pub const MAX_MSS: usize = 65_000;
/// Largest VNI VXLAN can carry.
pub const MAX_VNI: u32 = (1 << 24) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn other(self) -> Self {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// 0 for client→server, 1 for server→client.
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// One traffic mirror session as seen by the target: outer source (the mirrored ENI's primary
/// IP), outer destination (the target) and the session's VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorPath {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub vni: u32,
}

impl Default for MirrorPath {
    fn default() -> Self {
        Self {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 10)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
            vni: 0x00c0_ffee & MAX_VNI,
        }
    }
}

/// How an initial sequence number is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isn {
    /// Drawn from the conversation's seed.
    Seeded,
    Fixed(u32),
    /// Chosen so that the sequence number wraps past 2^32 after this many payload bytes: the
    /// byte at offset `n` of the stream has sequence number 0.
    WrapAfter(u32),
}

/// How the conversation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Client FIN, server FIN, client ACK.
    Fin,
    /// Client RST.
    Rst,
    /// No teardown: the connection is still open when the capture ends.
    Open,
}

/// Where a planned packet comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Original,
    /// A second copy of a data segment, sent later (a retransmission).
    Retransmission,
    /// A retransmission spanning the second half of one client segment and the first half of
    /// the next, with identical bytes.
    Overlap,
}

/// One packet of a conversation, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPacket {
    /// Arrival time in nanoseconds since the UNIX epoch.
    pub ts: u64,
    pub dir: Direction,
    pub seq: u32,
    pub ack: u32,
    /// [`flags`] bits.
    pub flags: u8,
    /// The payload, as a range of this direction's byte stream.
    pub payload: Range<usize>,
    /// Which mirror session delivers it (0, or 1 for the copy from the second ENI).
    pub path: usize,
    pub origin: Origin,
    pub ip_id: u16,
    pub tsval: u32,
    pub tsecr: u32,
}

/// The second mirror session when both ends of a connection are mirrored: every packet appears
/// again under this path, up to `max_skew` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondMirror {
    pub path: MirrorPath,
    pub max_skew: Duration,
}

/// What goes wrong on the way to the mirror target. All of it is deterministic from the
/// conversation's seed. Applied in this order: mid-stream start, drops and loss, overlapping
/// retransmissions, retransmissions, second mirror copy, reordering; truncation applies to
/// every packet delivered. So a dropped segment is missing from both mirror copies, and
/// retransmissions never fill a drop's hole (a retransmission of the mirror's loss does not
/// happen: the real receiver got the segment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairments {
    /// Each packet may arrive up to this many positions late (0: in order).
    pub reorder_window: usize,
    /// Probability that a data segment (either direction) is retransmitted (appears twice).
    pub duplicate_rate: f64,
    /// Client data segments (index among the conversation's client data segments, from 0) that
    /// never reach the target.
    pub drop_client_segments: Vec<usize>,
    /// Probability that any client data segment never reaches the target.
    pub loss_rate: f64,
    /// AWS PacketLength: at most this many bytes of each inner frame are delivered.
    pub packet_length: Option<usize>,
    /// Start the capture in the middle of the connection: no handshake, and the first client
    /// data segment delivered is the first one starting at or after this stream offset.
    pub start_mid_stream: Option<usize>,
    /// Both ENIs mirrored.
    pub mirror_twice: Option<SecondMirror>,
    /// How many overlapping retransmissions to add (fewer if the conversation has fewer pairs
    /// of adjacent client segments).
    pub overlapping_retransmits: usize,
}

/// A request and the response the server answers it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

/// A request as the client sent it, and whether a correct rebuilder can deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthRequest {
    pub bytes: Vec<u8>,
    /// False when any of its bytes reach the target only truncated or not at all.
    pub rebuildable: bool,
}

/// The ground truth of one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationTruth {
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// VNI of the primary mirror session.
    pub vni: u32,
    /// Every request the client sent, in order.
    pub requests: Vec<TruthRequest>,
}

impl ConversationTruth {
    /// The requests a correct rebuilder delivers, in order.
    pub fn rebuildable(&self) -> impl Iterator<Item = &[u8]> {
        self.requests
            .iter()
            .filter(|r| r.rebuildable)
            .map(|r| r.bytes.as_slice())
    }

    /// Indices of the requests a hole makes unrebuildable.
    pub fn affected(&self) -> Vec<usize> {
        self.requests
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.rebuildable)
            .map(|(i, _)| i)
            .collect()
    }
}

/// What the impairments actually did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImpairmentReport {
    /// Every client data segment as originally sent, by index (stream offsets).
    pub client_segments: Vec<Range<usize>>,
    /// Indices into `client_segments` of the ones dropped (explicitly or by `loss_rate`; not
    /// counting those before a mid-stream start).
    pub dropped_client_segments: Vec<usize>,
    /// Client stream ranges that never arrive whole (drops, truncation, mid-stream start).
    pub holes: Vec<Range<usize>>,
    pub retransmissions: usize,
    pub overlaps: usize,
    /// Packets (copies included) cut by `packet_length`.
    pub truncated_packets: usize,
    pub mirror_copies: usize,
}

/// A conversation with every packet planned, ready to encode.
#[derive(Clone, Debug)]
pub struct ConversationPlan {
    pub truth: ConversationTruth,
    pub report: ImpairmentReport,
    pub client_isn: u32,
    pub server_isn: u32,
    packets: Vec<PlannedPacket>,
    /// Client→server and server→client byte streams.
    streams: [Vec<u8>; 2],
    enc: Encoder,
    id: u64,
}

impl ConversationPlan {
    /// Packets in arrival order.
    pub fn packets(&self) -> &[PlannedPacket] {
        &self.packets
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Everything the client sent, concatenated.
    pub fn client_stream(&self) -> &[u8] {
        &self.streams[0]
    }

    /// Everything the server sent, concatenated.
    pub fn server_stream(&self) -> &[u8] {
        &self.streams[1]
    }

    /// Encodes packet `i` into `out`, returning its timestamp and the VXLAN header offset.
    pub fn encode_into(
        &self,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Duration, usize)>, GenError> {
        let Some(p) = self.packets.get(i) else {
            return Ok(None);
        };
        let stream = &self.streams[p.dir.index()];
        let payload = stream.get(p.payload.clone()).unwrap_or_default();
        let vxlan_offset = self.enc.encode(p, payload, out)?;
        Ok(Some((Duration::from_nanos(p.ts), vxlan_offset)))
    }

    pub fn frame(&self, i: usize) -> Result<Option<Frame>, GenError> {
        let mut data = Vec::new();
        Ok(self
            .encode_into(i, &mut data)?
            .map(|(ts, vxlan_offset)| Frame {
                ts,
                data,
                vxlan_offset,
                conversation: self.id,
            }))
    }

    /// All frames in arrival order.
    pub fn frames(&self) -> impl Iterator<Item = Result<Frame, GenError>> + '_ {
        (0..self.packets.len()).filter_map(|i| self.frame(i).transpose())
    }
}
