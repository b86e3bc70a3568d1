//! The VXLAN datagram and what it carries: the VXLAN header (RFC 7348: the I flag, the VNI and
//! the configured allow/deny lists) → inner Ethernet (up to two VLAN tags) → inner IPv4/IPv6 →
//! TCP, ending in the [`Segment`] and where its payload lies. Both entry points (whole frames
//! through `outer`, datagrams from sockets) meet here.
//!
//! It is where truncation becomes a short segment rather than a drop: the inner IP header's
//! length is the wire's truth, what arrived may be less.

use std::ops::Range;

use bytes::Bytes;
use etherparse::TcpHeaderSlice;

use super::ip::{ip_layer, IPPROTO_TCP};
use super::link::{be16, skip_vlan_tags, ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{Decoder, Drop};
use crate::segment::{FlowKey, Segment, TcpFlags, Timestamp};

pub(super) const VXLAN_HEADER_LEN: usize = 8;
pub(super) const VXLAN_FLAG_I: u8 = 0x08;
const TCP_MIN_HEADER_LEN: usize = 20;

impl Decoder {
    pub(super) fn vni_allowed(&self, vni: u32) -> bool {
        (self.vni_allow.is_empty() || self.vni_allow.binary_search(&vni).is_ok())
            && (self.vni_deny.is_empty() || self.vni_deny.binary_search(&vni).is_err())
    }

    /// Decodes the VXLAN datagram that occupies `frame[start..end]` (`end <= frame.len()`):
    /// the segment, with an empty payload, and where the payload lies in `frame`.
    pub(super) fn decode_vxlan_at(
        &self,
        frame: &[u8],
        start: usize,
        end: usize,
        ts: Timestamp,
    ) -> Result<(Segment, Range<usize>), Drop> {
        // Everything past the datagram (Ethernet padding, trailers) is not ours.
        let d = frame
            .get(..end)
            .ok_or(Drop::Malformed("datagram beyond the frame"))?;
        let vx = d
            .get(start..start + VXLAN_HEADER_LEN)
            .ok_or(Drop::VxlanTooShort)?;
        if vx[0] & VXLAN_FLAG_I == 0 {
            return Err(Drop::VxlanNoIFlag);
        }
        let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
        if !self.vni_allowed(vni) {
            return Err(Drop::VniDenied);
        }

        let eth = start + VXLAN_HEADER_LEN;
        let ethertype = be16(d, eth + 12).ok_or(Drop::HeadersTruncated)?;
        let (ethertype, net) =
            skip_vlan_tags(d, ethertype, eth + ETHERNET_HEADER_LEN, Drop::InnerNotIp)?;
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err(Drop::InnerNotIp);
        }
        let ip = ip_layer(d, net, ethertype)?;
        if ip.fragment {
            return Err(Drop::InnerFragment);
        }
        if ip.proto != IPPROTO_TCP {
            return Err(Drop::InnerNotTcp);
        }

        let t = ip.l4;
        if t + TCP_MIN_HEADER_LEN > ip.end {
            return Err(Drop::Malformed("inner tcp header beyond the ip packet"));
        }
        let offset_byte = *d.get(t + 12).ok_or(Drop::HeadersTruncated)?;
        let tcp_len = usize::from(offset_byte >> 4) * 4;
        if tcp_len < TCP_MIN_HEADER_LEN {
            return Err(Drop::Malformed("inner tcp data offset below 5"));
        }
        let payload_start = t + tcp_len;
        if payload_start > ip.end {
            return Err(Drop::Malformed("inner tcp options beyond the ip packet"));
        }
        let tcp = d.get(t..payload_start).ok_or(Drop::HeadersTruncated)?;
        let tcp = TcpHeaderSlice::from_slice(tcp).map_err(|_| Drop::HeadersTruncated)?;

        // The IP header's length is the truth about the wire; what arrived may be less.
        let arrived_end = ip.end.min(d.len());
        let wire_len = u32::try_from(ip.end - payload_start)
            .map_err(|_| Drop::Malformed("inner ip length"))?;
        Ok((
            Segment {
                ts,
                vni,
                flow: FlowKey {
                    src: ip.src,
                    dst: ip.dst,
                    src_port: tcp.source_port(),
                    dst_port: tcp.destination_port(),
                },
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: TcpFlags(tcp.slice()[13]),
                payload: Bytes::new(),
                wire_len,
            },
            payload_start..arrived_end,
        ))
    }
}
