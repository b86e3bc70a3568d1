//! PROXY protocol (v1 text, v2 binary) at the start of a client stream: what a Network Load
//! Balancer with proxy protocol v2 (or a classic ELB with v1) puts in front of the bytes the
//! client sent, carrying the client's real address.
//!
//! [`StreamStart`] sits between reassembly and HTTP framing, for streams that began with their
//! SYN only: a header can only be the first bytes of a connection, and a stream picked up
//! mid-stream never looks for one. It holds the first bytes while they may still be a header,
//! parses the header, and hands the framer exactly the bytes after it (the WAF gets what the
//! client sent). Once decided it passes every event through untouched, whatever the framer
//! does with them (HTTP/1.x, or HTTP/2 cleartext behind NLB with proxy protocol).
//!
//! - Detection: the first bytes are `PROXY ` (v1) or the 12-byte v2 signature. Anything else is
//!   the stream's own content. Per server port, `auto` (the default) detects, `require` counts a
//!   stream without a header (`missing`), `forbid` never strips one: bytes that look like a
//!   header are the client's own (counted `forbidden`), since on a port without proxy protocol
//!   only the client can have written them, and believing them would let it choose its IP.
//! - A header split across segments is held until it is whole (v1: at most 107 bytes, v2: 16
//!   plus its declared length, at most 65535). What is held is charged to the flow's memory
//!   ([`StreamStart::buffered_bytes`]).
//! - A malformed header is counted and the stream is handled as a mid-stream pickup: the framer
//!   gets a zero-length gap, then the bytes, and resynchronises at the next request line. A
//!   stream that ends, or has a hole, before its header is whole counts `truncated`; the held
//!   header bytes are dropped (they are not the client's request).
//! - The parsing itself is the `proxy-header` crate (0.1.3, MSRV 1.66, no dependencies,
//!   zero-copy, v1 and v2 with TLVs). `ppp` (2.3.0) was compared: split at every byte, a v1 header
//!   cut right after the space before its destination port is reported as a terminal error by
//!   `ppp` instead of incomplete, and a header split across segments is exactly the case here;
//!   `proxy-header` answered "incomplete" at every cut and parsed every whole header. Its
//!   `parse` returns the bytes consumed, which is what stripping needs.
//!
//! Here: the policy, the stats and [`StreamStart`] (holding, stripping, passing events on);
//! `header` recognises and parses the header bytes. Depends on reassembly's events only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use proxy_header::{ParseConfig, ProxyHeader, Tlv};

use crate::reassembly::{GapReason, StreamEvent};
use crate::segment::Timestamp;

mod header;

use header::{parse, prefix, Parsed, Prefix, V2_FIXED};
pub use header::{V1_SIGNATURE, V2_SIGNATURE};

/// What a server port expects at the start of its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// A header is recognised and stripped when the stream starts with one.
    #[default]
    Auto,
    /// The load balancer always sends one: a stream that starts without one is counted
    /// (`missing`) and framed as it is.
    Require,
    /// No proxy in front: bytes that look like a header are the client's own and replayed.
    Forbid,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Auto => "auto",
            ProxyMode::Require => "require",
            ProxyMode::Forbid => "forbid",
        }
    }
}

/// Which mode each server port has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// For ports in neither list.
    pub default: ProxyMode,
    /// Sorted.
    pub require: Vec<u16>,
    /// Sorted.
    pub forbid: Vec<u16>,
}

impl ProxyPolicy {
    pub fn mode_for(&self, server_port: u16) -> ProxyMode {
        if self.require.binary_search(&server_port).is_ok() {
            ProxyMode::Require
        } else if self.forbid.binary_search(&server_port).is_ok() {
            ProxyMode::Forbid
        } else {
            self.default
        }
    }
}

/// What a PROXY header said, shared by every request of its connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyInfo {
    /// 1 or 2.
    pub version: u8,
    /// v2 LOCAL command: the proxy opened the connection itself (a health check); no addresses.
    pub local: bool,
    /// The client's address as the proxy saw it; None for LOCAL, v1 `UNKNOWN`, AF_UNSPEC/UNIX.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the load balancer's listener).
    pub destination: Option<SocketAddr>,
    /// PP2_TYPE_AUTHORITY (0x02): the host name the client asked for (TLS SNI).
    pub authority: Option<String>,
    /// PP2_TYPE_AWS (0xEA) subtype PP2_SUBTYPE_AWS_VPCE_ID (0x01): the VPC endpoint the
    /// connection came through (PrivateLink).
    pub aws_vpce_id: Option<String>,
    /// The type of every TLV, in order (those above included).
    pub tlv_types: Vec<u8>,
    /// Bytes of the header, stripped from the stream.
    pub header_len: usize,
}

/// Counts of what stream starts carried, published as `rebuilder_proxy_headers_total{outcome}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub v1: u64,
    /// v2 with the PROXY command.
    pub v2: u64,
    /// v2 with the LOCAL command.
    pub v2_local: u64,
    /// Started like a header but is not one: the stream was picked up as mid-stream.
    pub malformed: u64,
    /// The stream ended or had a hole before its header was whole.
    pub truncated: u64,
    /// A `require` port's stream without a header.
    pub missing: u64,
    /// A `forbid` port's stream that started like a header: replayed as data.
    pub forbidden: u64,
    /// A valid header whose TLV area could not be read to its end (the addresses are kept).
    pub bad_tlv: u64,
}

impl ProxyStats {
    pub fn add(&mut self, o: &ProxyStats) {
        self.v1 += o.v1;
        self.v2 += o.v2;
        self.v2_local += o.v2_local;
        self.malformed += o.malformed;
        self.truncated += o.truncated;
        self.missing += o.missing;
        self.forbidden += o.forbidden;
        self.bad_tlv += o.bad_tlv;
    }

    /// (outcome label, count), for the metrics.
    pub fn outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("v1", self.v1),
            ("v2", self.v2),
            ("v2_local", self.v2_local),
            ("malformed", self.malformed),
            ("truncated", self.truncated),
            ("missing", self.missing),
            ("forbidden", self.forbidden),
            ("bad_tlv", self.bad_tlv),
        ]
    }
}

/// The `held` bytes that came before this segment's, as their own piece.
fn held_part(joined: &[u8], held: usize) -> Option<Bytes> {
    (held > 0).then(|| Bytes::copy_from_slice(joined.get(..held).unwrap_or_default()))
}

/// The start of one client stream, until it is known whether a PROXY header leads it.
pub struct StreamStart {
    mode: ProxyMode,
    /// The first bytes, while undecided (a prefix of a signature, or a header not yet whole).
    held: Vec<u8>,
    held_ts: Timestamp,
    /// The held bytes begin with a signature.
    candidate: bool,
    done: bool,
    info: Option<Arc<ProxyInfo>>,
}

impl StreamStart {
    /// For a stream that began with its SYN (its first byte is the connection's first byte).
    pub fn new(mode: ProxyMode) -> Self {
        Self {
            mode,
            held: Vec::new(),
            held_ts: 0,
            candidate: false,
            done: false,
            info: None,
        }
    }

    /// Decided: from now on every event passes through.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The header found, once decided.
    pub fn info(&self) -> Option<&Arc<ProxyInfo>> {
        self.info.as_ref()
    }

    pub fn take_info(&mut self) -> Option<Arc<ProxyInfo>> {
        self.info.take()
    }

    /// Bytes held while undecided: charged to the flow's memory.
    pub fn buffered_bytes(&self) -> usize {
        self.held.capacity()
    }

    /// Consumes one stream event; what the framer must see goes to `forward`, in order.
    pub fn on_event(
        &mut self,
        ev: StreamEvent,
        stats: &mut ProxyStats,
        forward: &mut impl FnMut(StreamEvent),
    ) {
        if self.done {
            forward(ev);
            return;
        }
        match ev {
            StreamEvent::Data { bytes, ts } => self.on_data(bytes, ts, stats, forward),
            ev @ (StreamEvent::Gap { .. }
            | StreamEvent::Rewind { .. }
            | StreamEvent::End { .. }) => {
                if self.candidate {
                    // The header never became whole; its bytes are not the client's request.
                    stats.truncated += 1;
                    self.held = Vec::new();
                } else {
                    self.release(stats, forward);
                }
                self.finish();
                forward(ev);
            }
        }
    }

    fn on_data(
        &mut self,
        bytes: Bytes,
        ts: Timestamp,
        stats: &mut ProxyStats,
        forward: &mut impl FnMut(StreamEvent),
    ) {
        if bytes.is_empty() {
            return;
        }
        // The usual case, a header (or none) whole in the first segment, needs no copy.
        let held = self.held.len();
        let joined: std::borrow::Cow<'_, [u8]> = if held == 0 {
            std::borrow::Cow::Borrowed(&bytes[..])
        } else {
            let mut v = std::mem::take(&mut self.held);
            v.extend_from_slice(&bytes);
            std::borrow::Cow::Owned(v)
        };
        match prefix(&joined) {
            Prefix::Undecided => {
                self.hold(&joined, held, ts);
                return;
            }
            Prefix::Other => {
                if self.mode == ProxyMode::Require {
                    stats.missing += 1;
                }
                let first = held_part(&joined, held);
                self.pass(first, bytes, ts, forward);
                return;
            }
            Prefix::Header => {}
        }
        if self.mode == ProxyMode::Forbid {
            stats.forbidden += 1;
            let first = held_part(&joined, held);
            self.pass(first, bytes, ts, forward);
            return;
        }
        match parse(&joined) {
            Parsed::Incomplete => {
                self.candidate = true;
                self.hold(&joined, held, ts);
            }
            Parsed::Whole(info, bad_tlv) => {
                if info.version == 1 {
                    stats.v1 += 1;
                } else if info.local {
                    stats.v2_local += 1;
                } else {
                    stats.v2 += 1;
                }
                stats.bad_tlv += u64::from(bad_tlv);
                // Nothing held can follow the header: it would have been parsed whole when
                // those bytes arrived. So the rest is a suffix of this segment.
                let rest = info.header_len.saturating_sub(held);
                self.info = Some(Arc::new(info));
                self.finish();
                if rest < bytes.len() {
                    forward(StreamEvent::Data {
                        bytes: bytes.slice(rest..),
                        ts,
                    });
                }
            }
            Parsed::Malformed => {
                stats.malformed += 1;
                // As a pickup: the framer resynchronises at the next request line.
                forward(StreamEvent::Gap {
                    len: 0,
                    ts,
                    reason: GapReason::Lost,
                });
                let first = held_part(&joined, held);
                self.pass(first, bytes, ts, forward);
            }
        }
    }

    /// Keeps `joined` (of which `held` bytes were held before) until more arrives.
    fn hold(&mut self, joined: &[u8], held: usize, ts: Timestamp) {
        if held == 0 {
            self.held_ts = ts;
        }
        let want = if joined.starts_with(V2_SIGNATURE) && joined.len() >= V2_FIXED {
            V2_FIXED + usize::from(u16::from_be_bytes([joined[14], joined[15]]))
        } else {
            joined.len()
        };
        let mut v = Vec::with_capacity(want.max(joined.len()));
        v.extend_from_slice(joined);
        self.held = v;
    }

    /// The held bytes and this segment's go to the framer as they came.
    fn pass(
        &mut self,
        first: Option<Bytes>,
        bytes: Bytes,
        ts: Timestamp,
        forward: &mut impl FnMut(StreamEvent),
    ) {
        if let Some(first) = first {
            forward(StreamEvent::Data {
                bytes: first,
                ts: self.held_ts,
            });
        }
        self.finish();
        forward(StreamEvent::Data { bytes, ts });
    }

    /// Held bytes that were never a header go on as data.
    fn release(&mut self, stats: &mut ProxyStats, forward: &mut impl FnMut(StreamEvent)) {
        if self.held.is_empty() {
            return;
        }
        if self.mode == ProxyMode::Require {
            stats.missing += 1;
        }
        let held = std::mem::take(&mut self.held);
        forward(StreamEvent::Data {
            bytes: Bytes::from(held),
            ts: self.held_ts,
        });
    }

    fn finish(&mut self) {
        self.done = true;
        self.held = Vec::new();
        self.candidate = false;
    }
}

#[cfg(test)]
mod tests;
