//! What the program is loaded with ([`Config`]): the VXLAN ports, VNIs and inner ports it
//! keeps, the ring's size and wake-up threshold, checked against the ABI's limits before any
//! map is created.
//!
//! Plain values and their validation; applying them to a loaded object is `load`'s job.

use crate::abi::*;
use crate::load::LoadError;

/// What the loader sets before the program is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UDP destination ports carrying VXLAN: 1 to [`VXLAN_PORTS_MAX`] non-zero ports.
    pub vxlan_ports: Vec<u16>,
    /// VNIs to keep; empty keeps all. At most [`VNI_ALLOW_MAX`], each below 2^24.
    pub vnis: Vec<u32>,
    /// Inner TCP ports to keep (a segment is kept when either port is listed); empty keeps all.
    pub inner_ports: Vec<u16>,
    /// Return `XDP_PASS` instead of `XDP_DROP` for consumed packets (debugging: the stack
    /// still sees them).
    pub pass_consumed: bool,
    /// Ring buffer size in bytes; aya rounds it up to a power-of-two number of pages.
    pub ring_size: u32,
    /// Wake the reader only when this many bytes wait in the ring (0: on every record). With
    /// a threshold the reader must poll on a timer for what stays below it.
    pub wakeup_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vxlan_ports: vec![VXLAN_PORT_DEFAULT],
            vnis: Vec::new(),
            inner_ports: Vec::new(),
            pass_consumed: false,
            ring_size: RECORDS_DEFAULT_SIZE,
            wakeup_bytes: 0,
        }
    }
}

impl Config {
    fn vxlan_ports_global(&self) -> Result<[u16; VXLAN_PORTS_MAX], LoadError> {
        if self.vxlan_ports.is_empty() || self.vxlan_ports.len() > VXLAN_PORTS_MAX {
            return Err(LoadError::Config(format!(
                "1 to {VXLAN_PORTS_MAX} VXLAN ports are needed, got {}",
                self.vxlan_ports.len()
            )));
        }
        if self.vxlan_ports.contains(&0) {
            return Err(LoadError::Config("VXLAN port 0".into()));
        }
        let mut ports = [0u16; VXLAN_PORTS_MAX];
        for (slot, port) in ports.iter_mut().zip(&self.vxlan_ports) {
            *slot = *port;
        }
        Ok(ports)
    }

    pub(crate) fn validate(&self) -> Result<[u16; VXLAN_PORTS_MAX], LoadError> {
        let ports = self.vxlan_ports_global()?;
        if self.vnis.len() > VNI_ALLOW_MAX as usize {
            return Err(LoadError::Config(format!(
                "{} VNIs listed, at most {VNI_ALLOW_MAX} fit",
                self.vnis.len()
            )));
        }
        if let Some(vni) = self.vnis.iter().find(|&&v| v >= 1 << 24) {
            return Err(LoadError::Config(format!(
                "VNI {vni} does not fit in 24 bits"
            )));
        }
        if self.ring_size == 0 {
            return Err(LoadError::Config("ring buffer size 0".into()));
        }
        Ok(ports)
    }
}

/// The inner-port bitmap as [`MAP_INNER_PORTS`] holds it: port `p` is bit `p % 64` of word
/// `p / 64`.
pub fn port_bitmap(ports: &[u16]) -> Vec<u64> {
    let mut words = vec![0u64; PORT_WORDS as usize];
    for &port in ports {
        if let Some(word) = words.get_mut(usize::from(port) / 64) {
            *word |= 1 << (port % 64);
        }
    }
    words
}
