//! The generator checked against an independent reading of what it wrote (`readback`).
//!
//! This module holds what the checks share (a temporary file, the default endpoints and
//! conversation, reading a plan back); the checks are one file per subject: the shape of a
//! clean conversation, each impairment, the capture formats and settings, and the traffic
//! mixer with the UDP sender.

mod formats;
mod impairments;
mod shape;
mod traffic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::error::GenError;
use crate::readback::{decode_vxlan, read_capture, visit_raw, DecodedFrame};

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        Self(
            std::env::temp_dir().join(format!("rebuilder-tests-{}-{n}-{name}", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const HOST: &str = "example.com";

fn client() -> SocketAddr {
    "10.1.0.5:41000".parse().unwrap()
}

fn server() -> SocketAddr {
    "10.2.0.9:80".parse().unwrap()
}

fn conv() -> Conversation {
    Conversation::new(client(), server()).seed(42)
}

fn write_read(plan: &ConversationPlan, format: CaptureFormat, link: LinkType) -> Vec<DecodedFrame> {
    let f = TempFile::new("c.pcap");
    let n = write_capture(&f.0, format, link, plan.frames()).unwrap();
    assert_eq!(n as usize, plan.len());
    read_capture(&f.0).unwrap()
}

fn decode(plan: &ConversationPlan) -> Vec<DecodedFrame> {
    write_read(plan, CaptureFormat::PcapNanos, LinkType::Ethernet)
}

fn from(d: &DecodedFrame, who: SocketAddr) -> bool {
    d.inner.src == who.ip()
        && d.inner
            .tcp
            .as_ref()
            .is_some_and(|t| t.src_port == who.port())
}

/// Data segments sent by `who`, in arrival order: (seq, payload).
fn data(frames: &[DecodedFrame], who: SocketAddr) -> Vec<(u32, Vec<u8>)> {
    frames
        .iter()
        .filter(|d| from(d, who))
        .filter_map(|d| d.inner.tcp.as_ref())
        .filter(|t| !t.payload.is_empty())
        .map(|t| (t.seq, t.payload.clone()))
        .collect()
}

/// Asserts the segments from `who` follow each other without gap or overlap from `isn + 1`
/// and returns their concatenation.
fn contiguous_stream(frames: &[DecodedFrame], who: SocketAddr, isn: u32) -> Vec<u8> {
    let mut next = isn.wrapping_add(1);
    let mut out = Vec::new();
    for (seq, p) in data(frames, who) {
        assert_eq!(
            seq,
            next,
            "segment at offset {} is not contiguous",
            out.len()
        );
        next = next.wrapping_add(p.len() as u32);
        out.extend_from_slice(&p);
    }
    out
}

fn requests_concat(plan: &ConversationPlan) -> Vec<u8> {
    plan.truth
        .requests
        .iter()
        .flat_map(|r| r.bytes.clone())
        .collect()
}

fn tcp_flags(d: &DecodedFrame) -> u8 {
    d.inner.tcp.as_ref().map_or(0, |t| t.flags)
}
