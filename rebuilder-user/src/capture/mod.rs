//! Where segments come from (DESIGN §3): `pcap` reads capture files, `udp` reads VXLAN datagrams
//! from sockets, and both decode with [`decode::Decoder`] into the same [`Segment`] the XDP path
//! yields. `xdp` reads the records of the kernel-side parser (`rebuilder-ebpf`) from its ring
//! buffer; `gather` decides how long a live capture thread holds segments before handing them
//! over; `iface` holds the interface facts and driver rules that decide its attach mode.
//!
//! [`Segment`]: crate::segment::Segment

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod decode;
pub mod decode_metrics;
pub mod gather;
pub mod iface;
pub mod nic;
pub mod pcap;
pub mod pool;
pub mod udp;
pub mod xdp;

pub use decode::{DecodeConfig, DecodeStats, Decoder, Drop, LinkType};
pub use pcap::{Frame, PcapSource, PcapStats};
pub use udp::{UdpConfig, UdpReceiver};

/// Why a capture input could not be opened or read. Every message names the file or the socket
/// address, because the operator has to act on it.
#[derive(thiserror::Error, Debug)]
pub enum CaptureError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: empty file, expected a pcap or pcapng capture", path.display())]
    Empty { path: PathBuf },

    #[error("{}: not a pcap or pcapng file (unknown magic number)", path.display())]
    NotPcap { path: PathBuf },

    #[error("{}: the file header is cut short or invalid: {detail}", path.display())]
    BadHeader { path: PathBuf, detail: &'static str },

    #[error(
        "{}: link type {} is not supported (Ethernet 1, Linux SLL 113, Linux SLL2 276, raw IP 101/228/229)",
        .0.display(),
        .1
    )]
    UnsupportedLinkType(PathBuf, u32),

    #[error("udp {addr}: cannot {op}: {source}")]
    Socket {
        addr: SocketAddr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}
