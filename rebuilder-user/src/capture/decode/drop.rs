//! Why a packet yields no segment: one [`Drop`] per reason, each a metric label, so no packet is
//! lost silently. A plain value type: it depends on nothing, and `DecodeStats` counts by its
//! `index`.

use std::fmt;

/// Why a packet yields no segment. Each variant is a metric label (`as_str`), so no drop is
/// silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The outer link layer carries something other than IPv4/IPv6 (ARP, LLDP, ...).
    NotIp,
    /// The outer IP packet is a fragment, so the VXLAN datagram is not whole in it.
    OuterFragment,
    /// The outer IP packet is not UDP.
    NotUdp,
    /// UDP, but not to one of the configured VXLAN ports.
    NotVxlanPort,
    /// Fewer than the 8 bytes of a VXLAN header after the UDP header.
    VxlanTooShort,
    /// VXLAN header without the I flag: the VNI field is not valid (RFC 7348 §5).
    VxlanNoIFlag,
    /// The VNI is not allowed by the configuration.
    VniDenied,
    /// The encapsulated frame is not IPv4/IPv6 (ARP, more than two VLAN tags, garbage).
    InnerNotIp,
    /// The inner IP packet is a fragment (IPv4 MF/offset, IPv6 Fragment header).
    InnerFragment,
    /// The inner IP packet carries something other than TCP (UDP, ICMP, ESP, ...).
    InnerNotTcp,
    /// The frame ends before the inner TCP header does (truncation reached the headers), so
    /// there is no sequence number to place the bytes with.
    HeadersTruncated,
    /// Lengths or fields that contradict each other; the detail names which.
    Malformed(&'static str),
}

impl Drop {
    /// Number of distinct outcomes (labels).
    pub const COUNT: usize = 12;

    /// Every label once (`Malformed` with an empty detail), in `index` order.
    pub const ALL: [Drop; Drop::COUNT] = [
        Drop::NotIp,
        Drop::OuterFragment,
        Drop::NotUdp,
        Drop::NotVxlanPort,
        Drop::VxlanTooShort,
        Drop::VxlanNoIFlag,
        Drop::VniDenied,
        Drop::InnerNotIp,
        Drop::InnerFragment,
        Drop::InnerNotTcp,
        Drop::HeadersTruncated,
        Drop::Malformed(""),
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::NotIp => "not_ip",
            Drop::OuterFragment => "outer_fragment",
            Drop::NotUdp => "not_udp",
            Drop::NotVxlanPort => "not_vxlan_port",
            Drop::VxlanTooShort => "vxlan_too_short",
            Drop::VxlanNoIFlag => "vxlan_no_i_flag",
            Drop::VniDenied => "vni_denied",
            Drop::InnerNotIp => "inner_not_ip",
            Drop::InnerFragment => "inner_fragment",
            Drop::InnerNotTcp => "inner_not_tcp",
            Drop::HeadersTruncated => "headers_truncated",
            Drop::Malformed(_) => "malformed",
        }
    }

    /// Position in [`Drop::ALL`]: a stable array index for counters.
    pub fn index(self) -> usize {
        match self {
            Drop::NotIp => 0,
            Drop::OuterFragment => 1,
            Drop::NotUdp => 2,
            Drop::NotVxlanPort => 3,
            Drop::VxlanTooShort => 4,
            Drop::VxlanNoIFlag => 5,
            Drop::VniDenied => 6,
            Drop::InnerNotIp => 7,
            Drop::InnerFragment => 8,
            Drop::InnerNotTcp => 9,
            Drop::HeadersTruncated => 10,
            Drop::Malformed(_) => 11,
        }
    }

    /// What was inconsistent, for `Malformed`.
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Drop::Malformed(d) if !d.is_empty() => Some(d),
            _ => None,
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(d) => write!(f, "{}: {d}", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}
