//! Network-namespace topologies with the real kernel doing the mirroring (DESIGN §8).
//!
//! Building blocks, each a guard whose `Drop` removes what it made:
//! - [`Netns`]: a named namespace (`rb-<purpose>-<pid>-<n>`, so parallel tests and processes
//!   never collide), with `ip`/`tc` inside it and Rust closures run on a thread that entered it
//!   (so a `std::net` socket, a [`Sink`](crate::sink::Sink) or an [`Origin`] lives there);
//! - [`Veth`], [`Vxlan`], [`Addr`], [`Route`], [`Mtu`], [`Sysctl`] and [`Clsact`] (with
//!   `mirred egress mirror` filters, AWS-style: both directions of an interface's traffic);
//! - [`MirrorLab`]: the whole §8 picture, client ↔ origin, the origin's traffic mirrored into a
//!   kernel VXLAN device, an `nlb` namespace spreading VXLAN flows over N rebuilder namespaces
//!   by 5-tuple hash, and a `waf` namespace whose sink records what the rebuilders replay.
//!
//! Interfaces are created directly inside their namespaces (never in the caller's), addresses
//! are private, and no namespace has a link to the outside: nothing built here can reach
//! anything but itself.
//!
//! Everything needs root and iproute2. Missing pieces are errors naming what is missing, never
//! a silent skip: see [`preflight`].

mod cmd;
mod lab;
mod link;
mod ns;
mod origin;
mod tc;

use std::io;
use std::time::Duration;

pub use cmd::{ip, tc};
pub use lab::{
    http_get, Capture, Created, LabConfig, MirrorLab, Node, XdpMode, HEALTH_CHECKER, LAB_VNI,
    NODE_IFACE, NODE_WAF_IFACE,
};
pub use link::{Addr, Link, Mtu, Route, Veth, Vxlan, VxlanConfig, VXLAN_OVERHEAD_V4};
pub use ns::{Netns, Sysctl};
pub use origin::Origin;
pub use tc::{Clsact, Direction};

/// What can go wrong building or using a topology.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); running as uid {0}"
    )]
    NotRoot(u32),
    #[error("`{tool}` is missing or cannot run ({source}); it comes with iproute2")]
    MissingTool {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot set up {feature}; does this kernel have it? {source}")]
    Feature {
        feature: &'static str,
        #[source]
        source: Box<NetnsError>,
    },
    #[error("cannot enter network namespace {ns}: {source}")]
    Enter {
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key} in {ns}: {source}")]
    Sysctl {
        ns: String,
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("ethtool ioctl {what} on {dev} in {ns}: {source}")]
    Ethtool {
        ns: String,
        dev: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("a thread inside namespace {0} panicked")]
    ThreadPanicked(String),
    #[error("{what} did not happen within {waited:?}")]
    Timeout { what: String, waited: Duration },
    #[error("{0}")]
    Process(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("client: {0}")]
    Client(#[from] crate::http_client::ClientError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub type Result<T, E = NetnsError> = std::result::Result<T, E>;

/// Wraps a failed command as a missing kernel feature, naming it; other errors pass through.
fn feature(name: &'static str) -> impl FnOnce(NetnsError) -> NetnsError {
    move |e| match e {
        NetnsError::Command { .. } => NetnsError::Feature {
            feature: name,
            source: Box::new(e),
        },
        other => other,
    }
}

/// Checks what every topology needs before building one: root, `ip` and `tc`.
/// Kernel features (veth, vxlan, clsact, u32, mirred, multipath) are checked where they are
/// used, and a failure names the feature.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(NetnsError::NotRoot(uid));
    }
    cmd::probe_tool("ip", &["-V"])?;
    cmd::probe_tool("tc", &["-V"])?;
    Ok(())
}

/// Of what a lab created, what is still there: namespaces by name and interfaces (by name) in
/// the caller's own namespace, where none of them should ever have been. Empty means clean.
pub fn leftovers(created: &Created) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let present = ns::list()?;
    for n in &created.namespaces {
        if present.iter().any(|p| p == n) {
            out.push(format!("namespace {n}"));
        }
    }
    let links = ip(&["-o", "link", "show"])?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    for i in &created.interfaces {
        if names.contains(&i.as_str()) {
            out.push(format!("interface {i} in the caller's namespace"));
        }
    }
    Ok(out)
}
