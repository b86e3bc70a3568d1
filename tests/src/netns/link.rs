//! Interfaces, addresses, routes and MTUs inside namespaces, each a guard.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use super::{feature, Netns, NetnsError, Result};

/// What VXLAN over IPv4 adds in front of an inner IP packet: outer IPv4 (20), UDP (8), VXLAN
/// (8) and the inner Ethernet header (14). The underlay's MTU must be the inner MTU plus this
/// for inner frames to travel whole.
pub const VXLAN_OVERHEAD_V4: u32 = 50;

/// An interface inside a namespace (a handle, not a guard).
#[derive(Clone, Debug)]
pub struct Link {
    ns: Netns,
    name: String,
}

impl Link {
    pub fn new(ns: &Netns, name: &str) -> Link {
        Link {
            ns: ns.clone(),
            name: name.to_owned(),
        }
    }

    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn up(&self) -> Result<()> {
        self.ns.ip(&["link", "set", "dev", &self.name, "up"])?;
        Ok(())
    }

    /// Adds `cidr` (`10.0.0.1/24`); the guard removes it.
    pub fn add_addr(&self, cidr: &str) -> Result<Addr> {
        let mut args = vec!["addr", "add", cidr, "dev", &self.name];
        if cidr.contains(':') {
            // Duplicate address detection would leave an IPv6 address unusable for a second.
            args.push("nodad");
        }
        self.ns.ip(&args)?;
        Ok(Addr {
            link: self.clone(),
            cidr: cidr.to_owned(),
            armed: true,
        })
    }

    pub fn mtu(&self) -> Result<u32> {
        let out = self.ns.ip(&["-o", "link", "show", "dev", &self.name])?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "mtu" {
                if let Some(v) = words.next().and_then(|v| v.parse().ok()) {
                    return Ok(v);
                }
            }
        }
        Err(NetnsError::Command {
            command: format!("ip -n {} link show dev {}", self.ns.name(), self.name),
            status: "ok".into(),
            stderr: format!("no mtu in {out:?}"),
        })
    }

    /// Sets the MTU; the guard puts the old one back.
    pub fn set_mtu(&self, mtu: u32) -> Result<Mtu> {
        let old = self.mtu()?;
        self.ns
            .ip(&["link", "set", "dev", &self.name, "mtu", &mtu.to_string()])?;
        Ok(Mtu {
            link: self.clone(),
            old,
            armed: true,
        })
    }

    /// Turns off transmit checksum and segmentation offloads, so the kernel finishes
    /// checksums and cuts GSO super-packets into wire-sized frames before the device sees
    /// them. On a mirror target this is what makes the copies look like a NIC's: without it
    /// one mirrored "packet" can be a 64 KiB TCP super-packet with a partial checksum.
    ///
    /// Uses the legacy ethtool ioctls so no `ethtool` binary is needed.
    pub fn disable_offloads(&self) -> Result<()> {
        let ifname = ifname(&self.name)?;
        let (ns, dev) = (self.ns.name().to_owned(), self.name.clone());
        self.ns.run(move || {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
            // Checksum first: the kernel drops TSO by itself without it, and GSO after.
            for (what, cmd) in [
                ("ETHTOOL_STXCSUM", ETHTOOL_STXCSUM),
                ("ETHTOOL_STSO", ETHTOOL_STSO),
                ("ETHTOOL_SGSO", ETHTOOL_SGSO),
            ] {
                ethtool_set(&sock, &ifname, cmd, 0).map_err(|source| NetnsError::Ethtool {
                    ns: ns.clone(),
                    dev: dev.clone(),
                    what,
                    source,
                })?;
            }
            for (what, cmd) in [
                ("ETHTOOL_GTSO", ETHTOOL_GTSO),
                ("ETHTOOL_GGSO", ETHTOOL_GGSO),
            ] {
                let on =
                    ethtool_get(&sock, &ifname, cmd).map_err(|source| NetnsError::Ethtool {
                        ns: ns.clone(),
                        dev: dev.clone(),
                        what,
                        source,
                    })?;
                if on != 0 {
                    return Err(NetnsError::Ethtool {
                        ns: ns.clone(),
                        dev: dev.clone(),
                        what,
                        source: io::Error::other("offload still on after turning it off"),
                    });
                }
            }
            Ok(())
        })?
    }
}

// linux/sockios.h and linux/ethtool.h.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union; padded to the union's 24 bytes.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

fn ifname(name: &str) -> Result<[u8; libc::IFNAMSIZ]> {
    let mut out = [0u8; libc::IFNAMSIZ];
    // The kernel wants a NUL inside the 16 bytes.
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(NetnsError::Config(format!("bad interface name {name:?}")));
    }
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b;
    }
    Ok(out)
}

fn ethtool(
    sock: &std::net::UdpSocket,
    name: &[u8; libc::IFNAMSIZ],
    v: &mut EthtoolValue,
) -> io::Result<()> {
    let mut req = IfreqData {
        name: *name,
        data: v,
        _pad: [0; 16],
    };
    // SAFETY: SIOCETHTOOL reads an ifreq whose ifr_data points at a struct matching `cmd`
    // (ethtool_value for the legacy get/set commands used here); both live on this stack
    // frame for the call's duration and the socket is open.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            SIOCETHTOOL as _,
            &mut req as *mut IfreqData,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn ethtool_set(
    sock: &std::net::UdpSocket,
    name: &[u8; libc::IFNAMSIZ],
    cmd: u32,
    data: u32,
) -> io::Result<()> {
    ethtool(sock, name, &mut EthtoolValue { cmd, data })
}

fn ethtool_get(
    sock: &std::net::UdpSocket,
    name: &[u8; libc::IFNAMSIZ],
    cmd: u32,
) -> io::Result<u32> {
    let mut v = EthtoolValue { cmd, data: 0 };
    ethtool(sock, name, &mut v)?;
    Ok(v.data)
}

/// A veth pair, each end created directly inside its namespace (so its name never exists in
/// the caller's). Dropping it deletes both ends.
#[derive(Debug)]
pub struct Veth {
    pub a: Link,
    pub b: Link,
}

impl Veth {
    pub fn new(a_ns: &Netns, a_name: &str, b_ns: &Netns, b_name: &str) -> Result<Veth> {
        a_ns.ip(&[
            "link",
            "add",
            a_name,
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            b_ns.name(),
        ])
        .map_err(feature("veth pairs (CONFIG_VETH)"))?;
        let v = Veth {
            a: Link::new(a_ns, a_name),
            b: Link::new(b_ns, b_name),
        };
        v.a.up()?;
        v.b.up()?;
        Ok(v)
    }

    /// Sets both ends' MTU (the guards restore them; pointless once the pair is gone, but
    /// cheap and right when the pair outlives them).
    pub fn set_mtu(&self, mtu: u32) -> Result<[Mtu; 2]> {
        Ok([self.a.set_mtu(mtu)?, self.b.set_mtu(mtu)?])
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = self.a.ns.ip(&["link", "del", "dev", &self.a.name]);
    }
}

/// Settings of a kernel VXLAN device.
#[derive(Clone, Debug)]
pub struct VxlanConfig {
    pub vni: u32,
    /// Outer source address (on `underlay`).
    pub local: IpAddr,
    /// Where every frame goes (no learning, no multicast).
    pub remote: IpAddr,
    pub dstport: u16,
    /// The device the encapsulated packets leave by.
    pub underlay: String,
    pub mtu: Option<u32>,
}

/// A kernel VXLAN device; dropping it deletes it.
///
/// The device also binds UDP `dstport` in its namespace to receive: never create one in a
/// namespace where something else must receive VXLAN on that port.
#[derive(Debug)]
pub struct Vxlan {
    link: Link,
}

impl Vxlan {
    pub fn new(ns: &Netns, name: &str, cfg: &VxlanConfig) -> Result<Vxlan> {
        if cfg.vni >= 1 << 24 {
            return Err(NetnsError::Config(format!(
                "VNI {} does not fit in 24 bits",
                cfg.vni
            )));
        }
        let (vni, local, remote, port) = (
            cfg.vni.to_string(),
            cfg.local.to_string(),
            cfg.remote.to_string(),
            cfg.dstport.to_string(),
        );
        ns.ip(&[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "remote",
            &remote,
            "dstport",
            &port,
            "dev",
            &cfg.underlay,
            "nolearning",
        ])
        .map_err(feature("VXLAN devices (CONFIG_VXLAN)"))?;
        let v = Vxlan {
            link: Link::new(ns, name),
        };
        if let Some(mtu) = cfg.mtu {
            // Deleted with the device: no guard needed.
            ns.ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
        }
        v.link.up()?;
        Ok(v)
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn name(&self) -> &str {
        &self.link.name
    }
}

impl Drop for Vxlan {
    fn drop(&mut self) {
        let _ = self.link.ns.ip(&["link", "del", "dev", &self.link.name]);
    }
}

/// An address on an interface; dropping it removes it.
#[derive(Debug)]
pub struct Addr {
    link: Link,
    cidr: String,
    armed: bool,
}

impl Addr {
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// Leaves the address in place; it goes when its interface or namespace does.
    pub fn persist(mut self) {
        self.armed = false;
    }
}

impl Drop for Addr {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self
            .link
            .ns
            .ip(&["addr", "del", &self.cidr, "dev", &self.link.name]);
    }
}

/// The MTU an interface had before [`Link::set_mtu`]; dropping it restores that.
#[derive(Debug)]
pub struct Mtu {
    link: Link,
    old: u32,
    armed: bool,
}

impl Mtu {
    /// Keeps the new MTU for the interface's lifetime.
    pub fn persist(mut self) {
        self.armed = false;
    }
}

impl Drop for Mtu {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self.link.ns.ip(&[
            "link",
            "set",
            "dev",
            &self.link.name,
            "mtu",
            &self.old.to_string(),
        ]);
    }
}

/// A route; dropping it deletes it.
#[derive(Debug)]
pub struct Route {
    ns: Netns,
    dest: String,
    armed: bool,
}

impl Route {
    /// `ip route add DEST SPEC…`, e.g. `via 10.0.0.1 dev eth0`.
    pub fn add(ns: &Netns, dest: &str, spec: &[&str]) -> Result<Route> {
        let mut args = vec!["route", "add", dest];
        args.extend_from_slice(spec);
        ns.ip(&args)?;
        Ok(Route {
            ns: ns.clone(),
            dest: dest.to_owned(),
            armed: true,
        })
    }

    /// `DEST via GW dev DEV`.
    pub fn via(ns: &Netns, dest: &str, gw: IpAddr, dev: &str) -> Result<Route> {
        Self::add(ns, dest, &["via", &gw.to_string(), "dev", dev])
    }

    /// One route with a next hop per `(gateway, device)`, equal weights: the kernel picks one
    /// per flow by hash (`net.ipv4.fib_multipath_hash_policy` says which fields).
    pub fn multipath(ns: &Netns, dest: &str, hops: &[(IpAddr, String)]) -> Result<Route> {
        if hops.is_empty() {
            return Err(NetnsError::Config(format!(
                "multipath route to {dest} needs a next hop"
            )));
        }
        let gws: Vec<String> = hops.iter().map(|(gw, _)| gw.to_string()).collect();
        let mut spec: Vec<&str> = Vec::new();
        for ((_, dev), gw) in hops.iter().zip(&gws) {
            spec.extend_from_slice(&["nexthop", "via", gw, "dev", dev, "weight", "1"]);
        }
        Self::add(ns, dest, &spec).map_err(feature("multipath routes (CONFIG_IP_ROUTE_MULTIPATH)"))
    }

    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// Leaves the route in place; it goes when its namespace does.
    pub fn persist(mut self) {
        self.armed = false;
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self.ns.ip(&["route", "del", &self.dest]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernels_buffer() {
        assert_eq!(&ifname("vx0").unwrap()[..4], b"vx0\0");
        assert!(ifname("0123456789abcde").is_ok());
        assert!(ifname("0123456789abcdef").is_err());
        assert!(ifname("").is_err());
        assert!(ifname("a\0b").is_err());
    }

    #[test]
    fn ifreq_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
        assert_eq!(std::mem::offset_of!(IfreqData, data), 16);
    }
}
