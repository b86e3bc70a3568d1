//! The NIC driver's own statistics (`ethtool -S`), read with the ioctls ethtool uses
//! (ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS, ETHTOOL_GSTATS), for the loss a driver counts before
//! an XDP program ever sees a packet.
//!
//! In driver mode ENA drops a frame that does not fit one receive buffer (it has no XDP
//! multi-buffer) and counts it in its per-queue `xdp_drop` statistic, the counter of the
//! program's own `XDP_DROP` verdicts too (Linux `ena_xdp_handle_buff`). So the driver's count
//! of packets that entered its XDP path, minus the packets the program saw, is what never
//! reached the program: [`UnseenDrops`] keeps that difference as a counter. Reads are ordered
//! so that the estimate can only fall short, never report loss that did not happen.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;

use super::iface::{c_string, name_bytes, IfaceError, IfreqPtr, PTR_PAD};

// The command buffers below are built as native-endian words laid out as the kernel's structs.
const _: () = assert!(cfg!(target_endian = "little"));

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// The kernel fills as many entries as the driver has *now*, whatever length was asked for,
/// so the buffers leave room for a driver whose queue count grew between two calls.
fn with_headroom(n: usize) -> usize {
    n * 4 + 256
}

fn ethtool(sock: &socket2::Socket, iface: &str, data: *mut libc::c_void) -> io::Result<()> {
    let name = name_bytes(iface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut req = IfreqPtr {
        name,
        data,
        _pad: [0; PTR_PAD],
    };
    // SAFETY: `data` points at an ethtool command buffer sized for what the kernel writes
    // (see `with_headroom`), alive for the call; the kernel copies it in and out.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL as _,
            &mut req as *mut IfreqPtr,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Every statistic the driver of `iface` reports (`ethtool -S`), in its order. A driver
/// without statistics (loopback) gives an empty list.
pub fn read_stats(iface: &str) -> Result<Vec<(String, u64)>, IfaceError> {
    let io_err = |op: &'static str| {
        move |source: io::Error| {
            if source.raw_os_error() == Some(libc::ENODEV) {
                IfaceError::NotFound(iface.to_string())
            } else {
                IfaceError::Io {
                    iface: iface.to_string(),
                    op,
                    source,
                }
            }
        }
    };
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .map_err(io_err("opening a socket for ethtool"))?;

    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }
    let mut info = [0u64; 3];
    info[0] = u64::from(ETHTOOL_GSSET_INFO);
    info[1] = 1 << ETH_SS_STATS;
    match ethtool(&sock, iface, info.as_mut_ptr().cast()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(io_err("ETHTOOL_GSSET_INFO")(e)),
    }
    if info[1] & (1 << ETH_SS_STATS) == 0 {
        return Ok(Vec::new());
    }
    let count = (info[2] & 0xffff_ffff) as usize;
    if count == 0 {
        return Ok(Vec::new());
    }
    let room = with_headroom(count);

    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
    let mut strings = vec![0u8; 12 + room * ETH_GSTRING_LEN];
    strings[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool(&sock, iface, strings.as_mut_ptr().cast()).map_err(io_err("ETHTOOL_GSTRINGS"))?;
    let n_strings = u32::from_ne_bytes([strings[8], strings[9], strings[10], strings[11]]) as usize;

    // struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[]; }
    let mut stats = vec![0u64; 1 + room];
    stats[0] = u64::from(ETHTOOL_GSTATS) | ((count as u64) << 32);
    ethtool(&sock, iface, stats.as_mut_ptr().cast()).map_err(io_err("ETHTOOL_GSTATS"))?;
    let n_stats = (stats[0] >> 32) as usize;

    if n_strings != n_stats || n_stats > room {
        return Err(IfaceError::Io {
            iface: iface.to_string(),
            op: "ETHTOOL_GSTATS",
            source: io::Error::other(format!(
                "the driver changed its statistics while they were read ({n_strings} names, \
                 {n_stats} values)"
            )),
        });
    }
    Ok((0..n_stats)
        .map(|i| {
            let name = strings
                .get(12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN)
                .map(c_string)
                .unwrap_or_default();
            (name, stats[1 + i])
        })
        .collect())
}

/// A per-queue statistic's name without its queue: ENA's `queue_3_rx_xdp_drop` and veth's
/// `rx_queue_0_xdp_drops` become `xdp_drop` and `xdp_drops`; transmit ones keep `tx_`.
/// Names of no queue are unchanged.
pub fn without_queue(name: &str) -> String {
    let (mut dir, mut rest) = match name.split_once('_') {
        Some((d @ ("rx" | "tx"), r)) if r.starts_with("queue_") => (d, r),
        _ => ("", name),
    };
    let Some(after) = rest.strip_prefix("queue_") else {
        return name.to_string();
    };
    let digits = after.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 || after.as_bytes().get(digits) != Some(&b'_') {
        return name.to_string();
    }
    rest = &after[digits + 1..];
    if dir.is_empty() {
        if let Some((d @ ("rx" | "tx"), r)) = rest.split_once('_') {
            dir = d;
            rest = r;
        }
    }
    if dir == "tx" {
        format!("tx_{rest}")
    } else {
        rest.to_string()
    }
}

/// The driver's XDP statistics, summed over queues, by [`without_queue`] name.
pub fn xdp_counters(stats: &[(String, u64)]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (name, value) in stats {
        if name.contains("xdp") {
            *out.entry(without_queue(name)).or_insert(0u64) += value;
        }
    }
    out
}

/// Which of a driver's XDP counters add up to every packet that entered its XDP path, known
/// for the drivers whose code says so.
fn entered_xdp(driver: &str) -> Option<&'static [&'static str]> {
    match driver {
        // ena_xdp_execute() counts each verdict; ena_xdp_handle_buff() counts the multi-buffer
        // frames it drops unseen in xdp_drop.
        "ena" => Some(&[
            "xdp_aborted",
            "xdp_drop",
            "xdp_pass",
            "xdp_tx",
            "xdp_invalid",
            "xdp_redirect",
        ]),
        // veth_xdp_rcv() counts every frame it takes from its ring before running the program.
        "veth" => Some(&["xdp_packets"]),
        _ => None,
    }
}

/// Packets that entered `driver`'s XDP path, from its counters; `None` for a driver whose
/// counters do not say.
pub fn packets_entered(driver: &str, xdp: &BTreeMap<String, u64>) -> Option<u64> {
    entered_xdp(driver).map(|names| names.iter().filter_map(|n| xdp.get(*n)).sum())
}

/// The packets a driver took into its XDP path that the program never saw, as a counter.
///
/// Samples are ordered: the baseline reads the program's count first and the driver's after;
/// every later sample reads the driver's first and the program's after. Since the program
/// counts a packet before the driver counts its verdict, both orders can only make the
/// estimate fall short (by packets in flight), never exceed the real loss.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnseenDrops {
    baseline: Option<(u64, u64)>,
    /// Counted since the baseline.
    since: u64,
    /// Counted in all, across baselines.
    total: u64,
}

impl UnseenDrops {
    /// Sets the starting point: the program's `seen` count, then the driver's.
    pub fn start(&mut self, program_seen: u64, driver_entered: u64) {
        self.baseline = Some((program_seen, driver_entered));
        self.since = 0;
    }

    /// A later sample (the driver's count read before the program's): how much the counter
    /// grows. A driver counter that went back (the interface was reset) starts a new baseline.
    pub fn update(&mut self, driver_entered: u64, program_seen: u64) -> u64 {
        let Some((seen0, entered0)) = self.baseline else {
            self.start(program_seen, driver_entered);
            return 0;
        };
        if driver_entered < entered0 || program_seen < seen0 {
            self.start(program_seen, driver_entered);
            return 0;
        }
        let unseen = (driver_entered - entered0).saturating_sub(program_seen - seen0);
        let grow = unseen.saturating_sub(self.since);
        self.since += grow;
        self.total += grow;
        grow
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_prefixes_are_removed_as_drivers_write_them() {
        assert_eq!(without_queue("queue_3_rx_xdp_drop"), "xdp_drop");
        assert_eq!(without_queue("queue_0_tx_xdp_xmit"), "tx_xdp_xmit");
        assert_eq!(without_queue("rx_queue_0_xdp_drops"), "xdp_drops");
        assert_eq!(without_queue("tx_queue_12_xdp_xmit"), "tx_xdp_xmit");
        assert_eq!(
            without_queue("bw_in_allowance_exceeded"),
            "bw_in_allowance_exceeded"
        );
        assert_eq!(without_queue("queue_x_rx_cnt"), "queue_x_rx_cnt");
        assert_eq!(without_queue("peer_ifindex"), "peer_ifindex");
    }

    fn ena_stats(drop: [u64; 2], pass: [u64; 2]) -> Vec<(String, u64)> {
        let mut v = vec![("tx_timeout".to_string(), 0)];
        for q in 0..2 {
            v.push((format!("queue_{q}_rx_cnt"), 1000));
            v.push((format!("queue_{q}_rx_xdp_drop"), drop[q]));
            v.push((format!("queue_{q}_rx_xdp_pass"), pass[q]));
            v.push((format!("queue_{q}_rx_xdp_tx"), 0));
        }
        v
    }

    #[test]
    fn xdp_counters_sum_over_queues() {
        let c = xdp_counters(&ena_stats([10, 20], [1, 2]));
        assert_eq!(c.get("xdp_drop"), Some(&30));
        assert_eq!(c.get("xdp_pass"), Some(&3));
        assert_eq!(c.get("xdp_tx"), Some(&0));
        assert!(!c.contains_key("rx_cnt"));
        assert_eq!(packets_entered("ena", &c), Some(33));
        assert_eq!(packets_entered("mlx5_core", &c), None);
    }

    #[test]
    fn unseen_drops_are_the_driver_count_beyond_the_program() {
        let mut u = UnseenDrops::default();
        // Attach: the program has seen nothing, the driver counted 500 before (another
        // program, earlier): only what comes after counts.
        u.start(0, 500);
        // 100 packets, all seen by the program: nothing unseen.
        assert_eq!(u.update(600, 100), 0);
        // 50 jumbo frames dropped by the driver, unseen, and 10 seen.
        assert_eq!(u.update(660, 110), 50);
        // A sample whose program count ran ahead (read later) never lowers the counter.
        assert_eq!(u.update(660, 115), 0);
        assert_eq!(u.update(700, 150), 0);
        assert_eq!(u.total(), 50);
        // The driver's counters reset (ethtool -L): a new baseline, nothing counted twice.
        assert_eq!(u.update(5, 151), 0);
        assert_eq!(u.update(25, 160), 11);
        assert_eq!(u.total(), 61);
    }

    #[test]
    fn loopback_has_no_driver_statistics() {
        assert_eq!(read_stats("lo").unwrap(), vec![]);
        assert!(matches!(
            read_stats("rbnosuchif0"),
            Err(IfaceError::NotFound(_)) | Err(IfaceError::Io { .. })
        ));
    }
}
