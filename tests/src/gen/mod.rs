//! The traffic generator: HTTP/1.x conversations over TCP as AWS VPC Traffic Mirroring
//! delivers them (VXLAN over UDP/4789), with impairments and the ground truth.
//!
//! - [`Conversation`] plans one connection ([`ConversationPlan`]: packets + truth);
//! - [`Traffic`] streams many interleaved conversations for captures and benchmarks;
//! - [`CaptureWriter`] writes pcap/pcapng, [`VxlanSender`] sends VXLAN datagrams to loopback;
//! - [`http`] builds the requests and responses; [`proxy`] the PROXY protocol headers a load
//!   balancer puts before them;
//! - [`hostile_traffic`] builds attacks with legitimate traffic interleaved, and what must come
//!   of them.

pub mod capture;
pub mod conversation;
pub mod encode;
pub mod h2;
pub mod hostile_traffic;
pub mod http;
pub mod proxy;
pub mod traffic;
pub mod udp;

pub use capture::{write_capture, CaptureFormat, CaptureWriter, LinkType};
pub use conversation::{
    flags, Close, Conversation, ConversationPlan, ConversationTruth, Direction, Exchange,
    ImpairmentReport, Impairments, Isn, MirrorPath, Origin, PlannedPacket, SecondMirror,
    TruthRequest, DEFAULT_EPOCH, MAX_MSS, MAX_VNI,
};
pub use encode::{outer_source_port, vxlan_source_port, Frame, VXLAN_PORT};
pub use traffic::{interleave, FrameMeta, Interleave, Traffic, TrafficConfig};
pub use udp::{send_vxlan, UdpSendOptions, UdpSendStats, VxlanSender};

#[cfg(test)]
mod tests;
