//! Link layers: the first header of a captured frame ([`LinkType`]: Ethernet, Linux cooked
//! capture v1/v2, raw IP), how to find the network layer under it, and the 802.1Q/802.1ad tags
//! that may sit in between (on the outer frame and on the inner one VXLAN carries).
//!
//! Offsets only, on borrowed bytes: it allocates nothing and knows nothing of IP or VXLAN; an
//! unexpected header is a [`Drop`] the caller chose or `HeadersTruncated`.

use super::Drop;

pub(super) const ETHERNET_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// 802.1Q/802.1ad allow stacking; AWS and ordinary trunks use at most two.
const MAX_VLAN_TAGS: usize = 2;

/// The first header of a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// DLT_EN10MB (1).
    Ethernet,
    /// Linux "cooked" capture v1, DLT_LINUX_SLL (113): what `tcpdump -i any` wrote before 4.99.
    LinuxSll,
    /// Linux "cooked" capture v2, DLT_LINUX_SLL2 (276): `tcpdump -i any` today.
    LinuxSll2,
    /// No link header: the frame starts with an IPv4 or IPv6 header (DLT_RAW 101 and 12,
    /// LINKTYPE_IPV4 228, LINKTYPE_IPV6 229).
    RawIp,
}

impl LinkType {
    /// Maps a pcap LINKTYPE_ value to the link types the decoder understands.
    pub fn from_linktype(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            // 12 is DLT_RAW on OpenBSD-derived writers; 101 is LINKTYPE_RAW everywhere.
            12 | 101 | 228 | 229 => Some(Self::RawIp),
            _ => None,
        }
    }

    /// The pcap LINKTYPE_ value a writer would use for this link type.
    pub fn linktype(self) -> u32 {
        match self {
            Self::Ethernet => 1,
            Self::LinuxSll => 113,
            Self::LinuxSll2 => 276,
            Self::RawIp => 101,
        }
    }
}

pub(super) fn be16(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Returns the ethertype of the network layer and where it starts.
pub(super) fn link_layer(link: LinkType, d: &[u8]) -> Result<(u16, usize), Drop> {
    match link {
        LinkType::Ethernet => {
            let ethertype = be16(d, 12).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, ETHERNET_HEADER_LEN, Drop::NotIp)
        }
        LinkType::LinuxSll => {
            // The protocol field is an ethertype for ARPHRD_ETHER-like devices; VLAN tags, when
            // libpcap leaves them in, follow it exactly as on Ethernet.
            if d.len() < SLL_HEADER_LEN {
                return Err(Drop::HeadersTruncated);
            }
            let ethertype = be16(d, 14).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, SLL_HEADER_LEN, Drop::NotIp)
        }
        LinkType::LinuxSll2 => {
            if d.len() < SLL2_HEADER_LEN {
                return Err(Drop::HeadersTruncated);
            }
            let ethertype = be16(d, 0).ok_or(Drop::HeadersTruncated)?;
            skip_vlan_tags(d, ethertype, SLL2_HEADER_LEN, Drop::NotIp)
        }
        LinkType::RawIp => match d.first().map(|b| b >> 4) {
            Some(4) => Ok((ETHERTYPE_IPV4, 0)),
            Some(6) => Ok((ETHERTYPE_IPV6, 0)),
            Some(_) => Err(Drop::NotIp),
            None => Err(Drop::HeadersTruncated),
        },
    }
}

/// Follows up to two 802.1Q/802.1ad tags; `ethertype` is the type field just before `off`.
pub(super) fn skip_vlan_tags(
    d: &[u8],
    mut ethertype: u16,
    mut off: usize,
    too_deep: Drop,
) -> Result<(u16, usize), Drop> {
    let mut tags = 0;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        if tags == MAX_VLAN_TAGS {
            return Err(too_deep);
        }
        ethertype = be16(d, off + 2).ok_or(Drop::HeadersTruncated)?;
        off += VLAN_TAG_LEN;
        tags += 1;
    }
    Ok((ethertype, off))
}
