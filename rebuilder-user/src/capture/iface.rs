//! Facts about a network interface that decide how XDP can attach to it: driver, MTU, channels
//! (DESIGN §2), read with the ioctls `ip` and `ethtool` use, and the rules drivers apply to
//! native XDP.
//!
//! The rules are pure functions of the facts, so they are tested without the hardware; only
//! [`probe`] talks to the kernel. Nothing here ever changes the interface: when a rule blocks
//! driver mode, it says what the operator would have to change.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;

/// ENA's largest MTU with an XDP program in driver mode: a page minus Ethernet header, FCS,
/// one VLAN tag, XDP headroom and `skb_shared_info` (ena_netdev.h, `ENA_XDP_MAX_MTU`).
pub const ENA_XDP_MAX_MTU: u32 = 3498;

/// The Linux driver name ENA reports (`ethtool -i`).
pub const ENA_DRIVER: &str = "ena";

/// What the driver reports about itself (`ethtool -i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    pub driver: String,
    pub version: String,
    pub fw_version: String,
    pub bus_info: String,
}

/// Queue counts (`ethtool -l`): current and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channels {
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx: u32,
    pub tx: u32,
    pub other: u32,
    pub combined: u32,
}

/// Everything [`probe`] learnt about an interface. Driver and channels are optional because
/// not every driver answers those ioctls (and the rules then have nothing to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceFacts {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    pub driver: Option<DriverInfo>,
    pub channels: Option<Channels>,
}

impl IfaceFacts {
    pub fn driver_name(&self) -> Option<&str> {
        self.driver.as_ref().map(|d| d.driver.as_str())
    }
}

/// Something that keeps a driver from running an XDP program natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeBlocker {
    /// ENA refuses driver-mode XDP above [`ENA_XDP_MAX_MTU`] (it has no XDP multi-buffer).
    EnaMtu { mtu: u32 },
    /// ENA needs half of its queues for XDP transmit: at most half of the maximum combined
    /// channels may be in use.
    EnaChannels { combined: u32, max_combined: u32 },
}

impl NativeBlocker {
    /// The command that would lift this blocker, for the operator to run (never run here).
    pub fn fix(&self, iface: &str) -> String {
        match self {
            NativeBlocker::EnaMtu { .. } => {
                format!("ip link set dev {iface} mtu {ENA_XDP_MAX_MTU}")
            }
            NativeBlocker::EnaChannels { max_combined, .. } => {
                let half = max_combined / 2;
                if half == 0 {
                    format!("none: {iface} has at most {max_combined} channel, ENA needs 2")
                } else {
                    format!("ethtool -L {iface} combined {half}")
                }
            }
        }
    }

    /// The blocker and its remedy in one sentence.
    pub fn explain(&self, iface: &str) -> String {
        format!("{self} (to change it: {})", self.fix(iface))
    }
}

impl fmt::Display for NativeBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeBlocker::EnaMtu { mtu } => write!(
                f,
                "ENA runs XDP in driver mode only up to MTU {ENA_XDP_MAX_MTU}, the MTU is {mtu}"
            ),
            NativeBlocker::EnaChannels {
                combined,
                max_combined,
            } => write!(
                f,
                "ENA runs XDP in driver mode only with at most half of its {max_combined} \
                 combined channels in use, {combined} are"
            ),
        }
    }
}

/// Why driver (native) mode cannot work on this interface, as far as the facts tell. Empty
/// means no known rule blocks it (the driver may still refuse: only an attach proves it).
pub fn native_blockers(facts: &IfaceFacts) -> Vec<NativeBlocker> {
    let mut out = Vec::new();
    if facts.driver_name() != Some(ENA_DRIVER) {
        return out;
    }
    if facts.mtu > ENA_XDP_MAX_MTU {
        out.push(NativeBlocker::EnaMtu { mtu: facts.mtu });
    }
    if let Some(ch) = facts.channels {
        // ena_xdp_legal_queue_count(): num_io_queues * 2 <= max_num_io_queues.
        if u64::from(ch.combined) * 2 > u64::from(ch.max_combined) {
            out.push(NativeBlocker::EnaChannels {
                combined: ch.combined,
                max_combined: ch.max_combined,
            });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("interface {0:?} is not a valid interface name")]
    BadName(String),
    #[error("no interface {0} in this network namespace")]
    NotFound(String),
    #[error("interface {iface}: {op}: {source}")]
    Io {
        iface: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

pub(super) const IFNAMSIZ: usize = 16;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

const IFREQ_LEN: usize = std::mem::size_of::<libc::ifreq>();
pub(super) const PTR_PAD: usize = IFREQ_LEN - IFNAMSIZ - std::mem::size_of::<*mut libc::c_void>();
const INT_PAD: usize = IFREQ_LEN - IFNAMSIZ - std::mem::size_of::<libc::c_int>();

/// `struct ifreq` with the union as `ifr_data` (a pointer). Spelt out rather than libc's
/// `ifreq`, whose union field names vary between libc versions.
#[repr(C)]
pub(super) struct IfreqPtr {
    pub(super) name: [u8; IFNAMSIZ],
    pub(super) data: *mut libc::c_void,
    pub(super) _pad: [u8; PTR_PAD],
}

/// `struct ifreq` with the union as `ifr_mtu` / `ifr_ifindex` (an int).
#[repr(C)]
struct IfreqInt {
    name: [u8; IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; INT_PAD],
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const _: () = assert!(std::mem::size_of::<EthtoolDrvinfo>() == 196);
const _: () = assert!(std::mem::size_of::<EthtoolChannels>() == 36);
const _: () = assert!(std::mem::size_of::<IfreqInt>() == IFREQ_LEN);
const _: () = assert!(std::mem::size_of::<IfreqPtr>() == IFREQ_LEN);

pub(super) fn name_bytes(name: &str) -> Result<[u8; IFNAMSIZ], IfaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(IfaceError::BadName(name.to_string()));
    }
    let mut out = [0u8; IFNAMSIZ];
    for (slot, b) in out.iter_mut().zip(bytes) {
        *slot = *b;
    }
    Ok(out)
}

pub(super) fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned()
}

/// Reads the facts of `name` in the calling thread's network namespace.
pub fn probe(name: &str) -> Result<IfaceFacts, IfaceError> {
    let ifname = name_bytes(name)?;
    let io_err = |op: &'static str| {
        move |source: io::Error| {
            if source.raw_os_error() == Some(libc::ENODEV) {
                IfaceError::NotFound(name.to_string())
            } else {
                IfaceError::Io {
                    iface: name.to_string(),
                    op,
                    source,
                }
            }
        }
    };
    // Any socket will do as the ioctls' handle; it lives in this thread's namespace, which is
    // the one the interface is looked up in.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .map_err(io_err("opening a socket for interface ioctls"))?;
    let fd = sock.as_raw_fd();

    let int_ioctl = |request: libc::c_ulong| -> io::Result<libc::c_int> {
        let mut req = IfreqInt {
            name: ifname,
            value: 0,
            _pad: [0; INT_PAD],
        };
        // SAFETY: `req` is a properly sized `struct ifreq` the kernel reads the name from and
        // writes one int into; it outlives the call.
        let rc = unsafe { libc::ioctl(fd, request as _, &mut req as *mut IfreqInt) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(req.value)
        }
    };
    let index = int_ioctl(libc::SIOCGIFINDEX).map_err(io_err("SIOCGIFINDEX"))?;
    let mtu = int_ioctl(libc::SIOCGIFMTU).map_err(io_err("SIOCGIFMTU"))?;

    let ethtool = |data: *mut libc::c_void| -> io::Result<()> {
        let mut req = IfreqPtr {
            name: ifname,
            data,
            _pad: [0; PTR_PAD],
        };
        // SAFETY: `req.data` points at an ethtool command structure whose size matches its
        // `cmd` (checked by the const assertions above), alive for the duration of the call;
        // the kernel copies it in and out.
        let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut req as *mut IfreqPtr) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };

    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // Drivers without ethtool support (some virtual ones) answer EOPNOTSUPP: no facts, no rule.
    let driver = ethtool((&mut info as *mut EthtoolDrvinfo).cast())
        .ok()
        .map(|()| DriverInfo {
            driver: c_string(&info.driver),
            version: c_string(&info.version),
            fw_version: c_string(&info.fw_version),
            bus_info: c_string(&info.bus_info),
        });
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    let channels = ethtool((&mut ch as *mut EthtoolChannels).cast())
        .ok()
        .map(|()| Channels {
            max_rx: ch.max_rx,
            max_tx: ch.max_tx,
            max_other: ch.max_other,
            max_combined: ch.max_combined,
            rx: ch.rx_count,
            tx: ch.tx_count,
            other: ch.other_count,
            combined: ch.combined_count,
        });
    Ok(IfaceFacts {
        name: name.to_string(),
        index: u32::try_from(index).unwrap_or(0),
        mtu: u32::try_from(mtu).unwrap_or(0),
        driver,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ena(mtu: u32, combined: u32, max_combined: u32) -> IfaceFacts {
        IfaceFacts {
            name: "eth0".into(),
            index: 2,
            mtu,
            driver: Some(DriverInfo {
                driver: ENA_DRIVER.into(),
                version: "2.13.0g".into(),
                fw_version: String::new(),
                bus_info: "0000:00:05.0".into(),
            }),
            channels: Some(Channels {
                max_combined,
                combined,
                ..Channels::default()
            }),
        }
    }

    #[test]
    fn ena_within_both_limits_allows_driver_mode() {
        assert_eq!(native_blockers(&ena(1500, 4, 8)), vec![]);
        assert_eq!(native_blockers(&ena(3498, 1, 2)), vec![]);
    }

    #[test]
    fn ena_mtu_one_over_the_limit_blocks() {
        let b = native_blockers(&ena(3499, 4, 8));
        assert_eq!(b, vec![NativeBlocker::EnaMtu { mtu: 3499 }]);
        assert_eq!(b[0].fix("eth0"), "ip link set dev eth0 mtu 3498");
    }

    #[test]
    fn ena_jumbo_mtu_and_all_channels_name_both_fixes() {
        // A c5n.large as launched: MTU 9001, every channel in use.
        let b = native_blockers(&ena(9001, 2, 2));
        assert_eq!(
            b,
            vec![
                NativeBlocker::EnaMtu { mtu: 9001 },
                NativeBlocker::EnaChannels {
                    combined: 2,
                    max_combined: 2
                }
            ]
        );
        assert_eq!(b[1].fix("eth0"), "ethtool -L eth0 combined 1");
        let text = b[1].explain("eth0");
        assert!(text.contains("half of its 2 combined channels"), "{text}");
        assert!(text.contains("ethtool -L eth0 combined 1"), "{text}");
        assert!(b[0].explain("eth0").contains("MTU 3498, the MTU is 9001"));
    }

    #[test]
    fn ena_channels_one_over_half_blocks() {
        assert_eq!(
            native_blockers(&ena(1500, 5, 8)),
            vec![NativeBlocker::EnaChannels {
                combined: 5,
                max_combined: 8
            }]
        );
        assert_eq!(native_blockers(&ena(1500, 4, 9)), vec![]);
        let one = NativeBlocker::EnaChannels {
            combined: 1,
            max_combined: 1,
        };
        assert!(one.fix("eth0").starts_with("none"), "{}", one.fix("eth0"));
    }

    #[test]
    fn other_drivers_and_unknown_facts_have_no_rule() {
        let mut f = ena(9000, 8, 8);
        f.driver.as_mut().unwrap().driver = "veth".into();
        assert_eq!(native_blockers(&f), vec![]);
        f.driver = None;
        assert_eq!(native_blockers(&f), vec![]);
        // ENA whose channels could not be read: only the MTU rule applies.
        let mut f = ena(1500, 8, 8);
        f.channels = None;
        assert_eq!(native_blockers(&f), vec![]);
    }

    #[test]
    fn names_are_checked_before_any_ioctl() {
        assert!(matches!(name_bytes(""), Err(IfaceError::BadName(_))));
        assert!(matches!(
            name_bytes("sixteen-chars-xx"),
            Err(IfaceError::BadName(_))
        ));
        assert!(matches!(name_bytes("a\0b"), Err(IfaceError::BadName(_))));
        assert_eq!(&name_bytes("lo").unwrap()[..3], b"lo\0");
    }

    #[test]
    fn loopback_is_probed_without_privileges() {
        let f = probe("lo").unwrap();
        assert_eq!(f.name, "lo");
        assert_eq!(f.index, 1, "lo is always index 1 in its namespace");
        assert_eq!(f.mtu, 65536);
        assert!(matches!(
            probe("rbnosuchif0"),
            Err(IfaceError::NotFound(n)) if n == "rbnosuchif0"
        ));
    }
}
