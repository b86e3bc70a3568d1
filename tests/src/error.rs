//! The one error type of this crate's library side.

use std::io;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("client {client} and server {server} are not of the same address family")]
    MixedInnerFamilies { client: IpAddr, server: IpAddr },
    #[error("outer source {src} and destination {dst} are not of the same address family")]
    MixedOuterFamilies { src: IpAddr, dst: IpAddr },
    #[error("VNI {0} does not fit in the 24 bits VXLAN has for it")]
    VniTooLarge(u32),
    #[error("at most 2 VLAN tags (802.1Q, QinQ) are supported, got {0}")]
    TooManyVlans(usize),
    #[error("VLAN id {0} does not fit in 12 bits")]
    VlanIdTooLarge(u16),
    #[error("MSS must be in 1..={max}, got {mss}")]
    BadMss { mss: usize, max: usize },
    #[error("{what} must be a probability in 0..=1, got {value}")]
    BadRate { what: &'static str, value: f64 },
    #[error("packet length (truncation) must be at least 1 byte")]
    BadPacketLength,
    #[error("pipelining batch size must be at least 1")]
    BadBatch,
    #[error("request {0} is empty; a conversation carries only non-empty requests")]
    EmptyRequest(usize),
    #[error("cannot drop client data segment {index}: the conversation has {count}")]
    NoSuchSegment { index: usize, count: usize },
    #[error("{0} is not a loopback address; test traffic stays on this host")]
    NotLoopback(std::net::SocketAddr),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("packet too large to encode: {0}")]
    TooLarge(String),
    #[error("truth file: {0}")]
    Truth(String),
    #[error("capture: {0}")]
    Capture(String),
    #[error(transparent)]
    Pcap(#[from] pcap_file::PcapError),
    #[error(transparent)]
    Io(#[from] io::Error),
}
