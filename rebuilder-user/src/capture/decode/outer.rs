//! The outer path of a mirrored frame: link layer → outer IPv4/IPv6 → UDP to one of the
//! configured VXLAN ports. It checks the outer lengths against each other and hands the
//! datagram's bounds to the VXLAN step (`inner`); the socket path, which receives the datagram
//! itself, starts there and skips this file.

use std::ops::Range;

use etherparse::UdpHeaderSlice;

use super::ip::{ip_layer, IPPROTO_UDP};
use super::link::{link_layer, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{Decoder, Drop, LinkType};
use crate::segment::{Segment, Timestamp};

const UDP_HEADER_LEN: usize = 8;

impl Decoder {
    /// The segment of a frame, with an empty payload, and where the payload lies in the frame.
    pub(super) fn frame_segment(
        &self,
        link: LinkType,
        d: &[u8],
        ts: Timestamp,
    ) -> Result<(Segment, Range<usize>), Drop> {
        let (ethertype, net) = link_layer(link, d)?;
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err(Drop::NotIp);
        }
        let ip = ip_layer(d, net, ethertype)?;
        if ip.fragment {
            return Err(Drop::OuterFragment);
        }
        if ip.proto != IPPROTO_UDP {
            return Err(Drop::NotUdp);
        }
        let udp_end = ip.l4 + UDP_HEADER_LEN;
        if udp_end > ip.end {
            return Err(Drop::Malformed("outer udp header beyond the ip packet"));
        }
        let udp = d.get(ip.l4..udp_end).ok_or(Drop::HeadersTruncated)?;
        let udp = UdpHeaderSlice::from_slice(udp).map_err(|_| Drop::HeadersTruncated)?;
        if !self.vxlan_ports.contains(&udp.destination_port()) {
            return Err(Drop::NotVxlanPort);
        }
        let udp_len = usize::from(udp.length());
        if udp_len < UDP_HEADER_LEN {
            return Err(Drop::Malformed("outer udp length below its header"));
        }
        let datagram_end = ip.l4 + udp_len;
        if datagram_end > ip.end {
            return Err(Drop::Malformed("outer udp length beyond the ip packet"));
        }
        // A snaplen may have cut the outer packet: the inner IP header then tells how much.
        self.decode_vxlan_at(d, udp_end, datagram_end.min(d.len()), ts)
    }
}
