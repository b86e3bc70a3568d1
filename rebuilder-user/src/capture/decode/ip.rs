//! The IP layer, outer or inner alike: IPv4 (options skipped) and IPv6 (extension headers
//! walked, up to a bound), giving addresses, the transport protocol, where it starts and where
//! the header says the packet ends. Fragments are recognised here (IPv4 MF/offset, the IPv6
//! Fragment header) and flagged; the caller chooses the outer or inner drop label.
//!
//! It reads header fields through etherparse's slices and returns offsets: no allocation, no
//! checksum (the decoder's module comment says why), and nothing past the IP header is read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use super::link::ETHERTYPE_IPV4;
use super::Drop;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPV6_EXT_HOP_BY_HOP: u8 = 0;
const IPV6_EXT_ROUTING: u8 = 43;
pub(super) const IPV6_EXT_FRAGMENT: u8 = 44;
const IPV6_EXT_AUTH: u8 = 51;
pub(super) const IPV6_EXT_DEST_OPTS: u8 = 60;
const IPV6_EXT_MOBILITY: u8 = 135;
const IPV6_EXT_HIP: u8 = 139;
const IPV6_EXT_SHIM6: u8 = 140;
/// A bound on the extension-header walk so a crafted chain cannot make it long; real packets
/// carry zero to three.
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Where the IP header put things, as offsets into the frame. `end` is what the header claims
/// and may lie beyond the bytes that arrived.
pub(super) struct IpInfo {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: u8,
    pub(super) l4: usize,
    pub(super) end: usize,
    pub(super) fragment: bool,
}

pub(super) fn ip_layer(d: &[u8], off: usize, ethertype: u16) -> Result<IpInfo, Drop> {
    let h = d.get(off..).ok_or(Drop::HeadersTruncated)?;
    if ethertype == ETHERTYPE_IPV4 {
        ipv4(h, off)
    } else {
        ipv6(h, off)
    }
}

fn ipv4(h: &[u8], off: usize) -> Result<IpInfo, Drop> {
    let first = *h.first().ok_or(Drop::HeadersTruncated)?;
    if first >> 4 != 4 {
        return Err(Drop::Malformed("ip version does not match the ethertype"));
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(Drop::Malformed("ipv4 header length below 20"));
    }
    if h.len() < header_len {
        return Err(Drop::HeadersTruncated);
    }
    let ip = Ipv4HeaderSlice::from_slice(h).map_err(|_| Drop::Malformed("ipv4 header"))?;
    let total_len = usize::from(ip.total_len());
    if total_len < header_len {
        return Err(Drop::Malformed("ipv4 total length below its header"));
    }
    Ok(IpInfo {
        src: IpAddr::V4(Ipv4Addr::from(ip.source())),
        dst: IpAddr::V4(Ipv4Addr::from(ip.destination())),
        proto: ip.protocol().0,
        l4: off + header_len,
        end: off + total_len,
        fragment: ip.more_fragments() || ip.fragments_offset().value() != 0,
    })
}

fn ipv6(h: &[u8], off: usize) -> Result<IpInfo, Drop> {
    let first = *h.first().ok_or(Drop::HeadersTruncated)?;
    if first >> 4 != 6 {
        return Err(Drop::Malformed("ip version does not match the ethertype"));
    }
    let ip = Ipv6HeaderSlice::from_slice(h).map_err(|_| Drop::HeadersTruncated)?;
    let end = IPV6_HEADER_LEN + usize::from(ip.payload_length());
    let mut next = ip.next_header().0;
    let mut pos = IPV6_HEADER_LEN;
    let mut fragment = false;
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        let ext_len = match next {
            IPV6_EXT_HOP_BY_HOP | IPV6_EXT_ROUTING | IPV6_EXT_DEST_OPTS | IPV6_EXT_MOBILITY
            | IPV6_EXT_HIP | IPV6_EXT_SHIM6 => h.get(pos + 1).map(|&l| (usize::from(l) + 1) * 8),
            IPV6_EXT_AUTH => h.get(pos + 1).map(|&l| (usize::from(l) + 2) * 4),
            IPV6_EXT_FRAGMENT => {
                fragment = true;
                break;
            }
            _ => {
                return Ok(IpInfo {
                    src: IpAddr::V6(Ipv6Addr::from(ip.source())),
                    dst: IpAddr::V6(Ipv6Addr::from(ip.destination())),
                    proto: next,
                    l4: off + pos,
                    end: off + end,
                    fragment,
                })
            }
        };
        // Lengths first against the header's own claim (contradiction), then against what
        // arrived (truncation).
        if pos + 2 > end {
            return Err(Drop::Malformed(
                "ipv6 extension header beyond the payload length",
            ));
        }
        let ext_len = ext_len.ok_or(Drop::HeadersTruncated)?;
        if pos + ext_len > end {
            return Err(Drop::Malformed(
                "ipv6 extension header beyond the payload length",
            ));
        }
        if pos + ext_len > h.len() {
            return Err(Drop::HeadersTruncated);
        }
        next = *h.get(pos).ok_or(Drop::HeadersTruncated)?;
        pos += ext_len;
    }
    if fragment {
        // The caller maps this to the outer or inner fragment label; nothing after the
        // Fragment header is read.
        return Ok(IpInfo {
            src: IpAddr::V6(Ipv6Addr::from(ip.source())),
            dst: IpAddr::V6(Ipv6Addr::from(ip.destination())),
            proto: IPV6_EXT_FRAGMENT,
            l4: off + pos,
            end: off + end,
            fragment,
        });
    }
    Err(Drop::Malformed("too many ipv6 extension headers"))
}
