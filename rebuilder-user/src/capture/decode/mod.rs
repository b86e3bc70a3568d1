//! From a captured packet to a [`Segment`]: outer link layer → outer IPv4/IPv6 → UDP to a VXLAN
//! port → VXLAN (RFC 7348) → inner Ethernet (up to two VLAN tags) → IPv4/IPv6 → TCP.
//!
//! This runs once per mirrored packet, well above a million times a second, so the happy path
//! neither allocates nor hashes: offsets are computed on the borrowed bytes, etherparse's header
//! slices read the fields, and the payload is a `Bytes::slice` of the input (a reference count,
//! no copy).
//!
//! Lengths are trusted in one direction only. A frame that ends before the length the inner IP
//! header announces is a *truncated* segment (AWS PacketLength, MTU, snaplen): it is delivered
//! with `wire_len > payload.len()` so reassembly records a gap. Lengths that contradict each other
//! (an IP total length shorter than its own header, a UDP length past the IP packet) are
//! `Malformed`. Checksums are not verified: mirrored copies of locally sent packets may carry
//! offloaded, not-yet-filled checksums, and the outer path was already checked by the kernel
//! that received it.
//!
//! One job per file: this one holds the public face ([`Decoder`], its [`DecodeConfig`], the
//! [`DecodeStats`] it feeds) and the zero-copy payload handling; `link` finds the network layer
//! under each link type and VLAN tags; `ip` reads IPv4/IPv6 headers and spots fragments; `outer`
//! follows the outer IP and UDP to a VXLAN port; `inner` reads VXLAN, the inner frame and TCP;
//! `drop` names every reason a packet yields no segment. It depends only on `segment` (what it
//! produces) and etherparse: no I/O, no metrics registry, no allocation on the happy path.

use std::ops::Range;

use bytes::{Buf, Bytes};

use crate::segment::{Segment, Timestamp};

mod drop;
mod inner;
mod ip;
mod link;
mod outer;
#[cfg(test)]
mod tests;

pub use drop::Drop;
pub use link::LinkType;

/// The IANA port for VXLAN, which AWS Traffic Mirroring uses.
pub const VXLAN_PORT: u16 = 4789;

/// What the decoder accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeConfig {
    /// UDP destination ports that carry VXLAN (outer frames only; the socket path has already
    /// chosen its port by binding it).
    pub vxlan_ports: Vec<u16>,
    /// VNIs (mirror sessions) to keep; empty keeps all.
    pub vni_allow: Vec<u32>,
    /// VNIs to drop; wins over `vni_allow`.
    pub vni_deny: Vec<u32>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            vxlan_ports: vec![VXLAN_PORT],
            vni_allow: Vec::new(),
            vni_deny: Vec::new(),
        }
    }
}

/// A count per decode outcome: segments, then each [`Drop`] label. Kept per capture thread and
/// summed with `add`, so counting costs an array increment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeStats {
    counts: [u64; Drop::COUNT + 1],
}

impl DecodeStats {
    pub fn record(&mut self, r: &Result<Segment, Drop>) {
        let i = match r {
            Ok(_) => 0,
            Err(d) => 1 + d.index(),
        };
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    pub fn segments(&self) -> u64 {
        self.counts[0]
    }

    /// Packets dropped with this label.
    pub fn drop_count(&self, d: Drop) -> u64 {
        self.counts.get(1 + d.index()).copied().unwrap_or(0)
    }

    /// Every label with its count, zeros included (so a metric exists before the first drop).
    pub fn drops(&self) -> impl Iterator<Item = (Drop, u64)> + '_ {
        Drop::ALL.into_iter().map(|d| (d, self.drop_count(d)))
    }

    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.counts[1..].iter().sum()
    }

    pub fn add(&mut self, other: &DecodeStats) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

/// Decodes mirrored packets into segments. Cheap to share across threads by reference.
#[derive(Debug, Clone)]
pub struct Decoder {
    vxlan_ports: Vec<u16>,
    /// Sorted and deduplicated so a lookup is a binary search over a few entries.
    vni_allow: Vec<u32>,
    vni_deny: Vec<u32>,
}

impl Decoder {
    pub fn new(cfg: &DecodeConfig) -> Self {
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut ports = cfg.vxlan_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Self {
            vxlan_ports: ports,
            vni_allow: sorted(&cfg.vni_allow),
            vni_deny: sorted(&cfg.vni_deny),
        }
    }

    /// A whole outer frame (link layer first): outer IPv4/IPv6 → UDP to one of `vxlan_ports` →
    /// VXLAN.
    pub fn decode_frame(
        &self,
        link: LinkType,
        frame: &Bytes,
        ts: Timestamp,
    ) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.frame_segment(link, frame, ts)?;
        seg.payload = frame.slice(payload);
        Ok(seg)
    }

    /// As [`Decoder::decode_frame`], taking the frame: the payload is the frame itself trimmed
    /// in place, with no reference count touched. The pcap reader hands every frame over this
    /// way; each clone and drop of a slice is an atomic operation on the chunk's count, which
    /// the workers' drops keep pulling to the other core (a sixth of the replay's CPU time).
    pub fn decode_frame_owned(
        &self,
        link: LinkType,
        frame: Bytes,
        ts: Timestamp,
    ) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.frame_segment(link, &frame, ts)?;
        seg.payload = trim_into(frame, payload);
        Ok(seg)
    }

    /// The UDP payload of a VXLAN datagram (socket path): VXLAN header first.
    pub fn decode_vxlan(&self, datagram: &Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        let (mut seg, payload) = self.decode_vxlan_at(datagram, 0, datagram.len(), ts)?;
        seg.payload = datagram.slice(payload);
        Ok(seg)
    }

    /// As [`Decoder::decode_vxlan`], taking the datagram and trimming it in place into the
    /// payload (see [`Decoder::decode_frame_owned`] for why).
    pub fn decode_vxlan_owned(&self, datagram: Bytes, ts: Timestamp) -> Result<Segment, Drop> {
        let (seg, payload) = self.decode_vxlan_at(&datagram, 0, datagram.len(), ts)?;
        Ok(Segment {
            payload: trim_into(datagram, payload),
            ..seg
        })
    }
}

/// `buf[range]` without touching the reference count. An empty payload (SYNs, FINs, pure ACKs)
/// lets go of the buffer instead: an empty slice still holding it would pin a whole receive
/// batch or read chunk for as long as the segment waits in a queue.
fn trim_into(mut buf: Bytes, range: Range<usize>) -> Bytes {
    if range.is_empty() {
        return Bytes::new();
    }
    buf.truncate(range.end);
    buf.advance(range.start);
    buf
}
