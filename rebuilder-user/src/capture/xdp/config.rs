//! What the XDP input is opened with ([`XdpConfig`]), from `[xdp]` and `[capture]`, and the
//! program configuration derived from it.
//!
//! Settings in, plain values out: nothing here touches the kernel.

use crate::config::{Settings, XdpModeSetting};

/// Everything the XDP input needs, from `[xdp]` and `[capture]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    pub iface: String,
    pub mode: XdpModeSetting,
    pub ring_size: u32,
    pub pass_consumed: bool,
    pub inner_ports: Vec<u16>,
    pub vxlan_ports: Vec<u16>,
    pub vni_allow: Vec<u32>,
    pub vni_deny: Vec<u32>,
}

impl XdpConfig {
    pub fn from_settings(s: &Settings, iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            mode: s.xdp.mode,
            // Validated (or derived) to a power of two of at most 1 GiB.
            ring_size: u32::try_from(s.xdp_ring_bytes()).unwrap_or(u32::MAX),
            pass_consumed: s.xdp.pass_consumed,
            inner_ports: s.xdp.ports.clone(),
            vxlan_ports: s.capture.vxlan_ports.clone(),
            vni_allow: s.capture.vni_allow.clone(),
            vni_deny: s.capture.vni_deny.clone(),
        }
    }

    /// What the program is loaded with. The kernel filters by the allow list; the deny list
    /// is applied in userspace ([`RecordConverter`](super::RecordConverter)), which applies both lists.
    pub fn program_config(&self) -> rebuilder_ebpf::Config {
        let mut ports = self.vxlan_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let mut vnis = self.vni_allow.clone();
        vnis.sort_unstable();
        vnis.dedup();
        rebuilder_ebpf::Config {
            vxlan_ports: ports,
            vnis,
            inner_ports: self.inner_ports.clone(),
            pass_consumed: self.pass_consumed,
            ring_size: self.ring_size,
            // A sixteenth of the ring: the reader is woken early enough never to let it fill,
            // and otherwise finds the records on its poll (`RING_POLL`).
            wakeup_bytes: self.ring_size / 16,
        }
    }
}
