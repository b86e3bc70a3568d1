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

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use proxy_header::{ParseConfig, ProxyHeader, Tlv};

use crate::reassembly::{GapReason, StreamEvent};
use crate::segment::Timestamp;

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

pub const V1_SIGNATURE: &[u8] = b"PROXY ";
pub const V2_SIGNATURE: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// PP2_TYPE_AWS and its VPC endpoint id subtype.
const PP2_TYPE_AWS: u8 = 0xEA;
const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    /// Too few bytes to tell.
    Undecided,
    Header,
    Other,
}

fn prefix(b: &[u8]) -> Prefix {
    let maybe = |sig: &[u8]| {
        if b.len() >= sig.len() {
            if b.starts_with(sig) {
                Prefix::Header
            } else {
                Prefix::Other
            }
        } else if sig.starts_with(b) {
            Prefix::Undecided
        } else {
            Prefix::Other
        }
    };
    match (maybe(V1_SIGNATURE), maybe(V2_SIGNATURE)) {
        (Prefix::Header, _) | (_, Prefix::Header) => Prefix::Header,
        (Prefix::Undecided, _) | (_, Prefix::Undecided) => Prefix::Undecided,
        _ => Prefix::Other,
    }
}

enum Parsed {
    Whole(ProxyInfo, bool),
    Incomplete,
    Malformed,
}

fn parse(b: &[u8]) -> Parsed {
    let cfg = ParseConfig {
        include_tlvs: true,
        allow_v1: true,
        allow_v2: true,
    };
    match ProxyHeader::parse(b, cfg) {
        Ok((h, len)) => {
            let version = if b.starts_with(V2_SIGNATURE) { 2 } else { 1 };
            // The crate bounds a v1 line only while it has no CR yet: `PROXY UNKNOWN` followed
            // by any length up to a CR passes (found by the `proxy` fuzz target). A v1 header
            // is at most 107 bytes; a longer line would strip the client's own bytes.
            if version == 1 && len > V1_MAX {
                return Parsed::Malformed;
            }
            // The crate reports LOCAL as "no address"; v1 UNKNOWN and v2 AF_UNSPEC say the same
            // with the PROXY command, which only the command byte tells apart.
            let local = version == 2 && b.get(12).is_some_and(|c| c & 0x0F == 0);
            let mut info = ProxyInfo {
                version,
                local,
                source: h.proxied_address().map(|a| a.source),
                destination: h.proxied_address().map(|a| a.destination),
                header_len: len,
                ..ProxyInfo::default()
            };
            let mut bad_tlv = false;
            for tlv in h.tlvs() {
                match tlv {
                    Ok(t) => {
                        info.tlv_types.push(t.kind());
                        match t {
                            Tlv::Authority(a) => info.authority = Some(a.into_owned()),
                            Tlv::Custom(PP2_TYPE_AWS, v) => {
                                if let Some((&PP2_SUBTYPE_AWS_VPCE_ID, id)) = v.split_first() {
                                    info.aws_vpce_id = Some(String::from_utf8_lossy(id).into());
                                }
                            }
                            _ => {}
                        }
                    }
                    Err(_) => {
                        bad_tlv = true;
                        break;
                    }
                }
            }
            Parsed::Whole(info, bad_tlv)
        }
        Err(proxy_header::Error::BufferTooShort) => Parsed::Incomplete,
        Err(_) => Parsed::Malformed,
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
mod tests {
    use super::*;
    use crate::reassembly::EndReason;
    use proptest::prelude::*;

    /// Hand-made headers (independent of the parser): v1, and v2 with addresses and TLVs.
    fn v1(src: &str, dst: &str, sp: u16, dp: u16) -> Vec<u8> {
        let fam = if src.contains(':') { "TCP6" } else { "TCP4" };
        format!("PROXY {fam} {src} {dst} {sp} {dp}\r\n").into_bytes()
    }

    fn v2(command: u8, addrs: Option<([u8; 4], [u8; 4], u16, u16)>, tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        let mut body = Vec::new();
        match addrs {
            Some((s, d, sp, dp)) => {
                h.push(0x11);
                body.extend_from_slice(&s);
                body.extend_from_slice(&d);
                body.extend_from_slice(&sp.to_be_bytes());
                body.extend_from_slice(&dp.to_be_bytes());
            }
            None => h.push(0x00),
        }
        body.extend_from_slice(tlvs);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(&body);
        h
    }

    fn aws_tlvs() -> Vec<u8> {
        let mut t = vec![PP2_TYPE_AWS, 0, 23, PP2_SUBTYPE_AWS_VPCE_ID];
        t.extend_from_slice(b"vpce-08d2bf15fac5001c9");
        t.extend_from_slice(&[0x02, 0, 16]);
        t.extend_from_slice(b"shop.example.com");
        t
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

    /// Feeds `pieces` as data events, then an end; returns what the framer saw (data joined,
    /// and each non-data event as a marker), the info and the counts.
    fn run(
        mode: ProxyMode,
        pieces: &[&[u8]],
    ) -> (Vec<u8>, Vec<String>, Option<ProxyInfo>, ProxyStats) {
        let mut s = StreamStart::new(mode);
        let mut stats = ProxyStats::default();
        let mut data = Vec::new();
        let mut marks = Vec::new();
        let mut max_held = 0;
        let mut fwd = |ev: StreamEvent| match ev {
            StreamEvent::Data { bytes, .. } => {
                marks.push(format!("data{}", bytes.len()));
                data.extend_from_slice(&bytes);
            }
            StreamEvent::Gap { len, .. } => marks.push(format!("gap{len}")),
            StreamEvent::Rewind { back, .. } => marks.push(format!("rewind{back}")),
            StreamEvent::End { .. } => marks.push("end".into()),
        };
        for (i, p) in pieces.iter().enumerate() {
            s.on_event(
                StreamEvent::Data {
                    bytes: Bytes::copy_from_slice(p),
                    ts: i as u64,
                },
                &mut stats,
                &mut fwd,
            );
            max_held = max_held.max(s.buffered_bytes());
        }
        s.on_event(
            StreamEvent::End {
                ts: 99,
                reason: EndReason::Fin,
            },
            &mut stats,
            &mut fwd,
        );
        assert_eq!(s.buffered_bytes(), 0, "nothing held once decided");
        assert!(max_held <= V2_FIXED + 65535);
        (data, marks, s.info().map(|i| (**i).clone()), stats)
    }

    #[test]
    fn a_v1_header_is_stripped_and_its_source_kept() {
        let h = v1("203.0.113.7", "10.0.0.5", 51000, 80);
        let (data, _, info, stats) = run(ProxyMode::Auto, &[&[&h[..], GET].concat()]);
        assert_eq!(data, GET);
        let info = info.unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.source, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(info.destination, Some("10.0.0.5:80".parse().unwrap()));
        assert_eq!(info.header_len, h.len());
        assert_eq!((stats.v1, stats.malformed), (1, 0));
        let h6 = v1("2001:db8::1", "2001:db8::2", 1, 443);
        let (data, _, info, _) = run(ProxyMode::Require, &[&h6, GET]);
        assert_eq!(data, GET);
        assert_eq!(
            info.unwrap().source,
            Some("[2001:db8::1]:1".parse().unwrap())
        );
    }

    #[test]
    fn a_v2_header_with_aws_tlvs_is_stripped_and_read() {
        let h = v2(
            1,
            Some(([198, 51, 100, 9], [10, 0, 0, 5], 40000, 80)),
            &aws_tlvs(),
        );
        let (data, marks, info, stats) = run(ProxyMode::Auto, &[&[&h[..], GET].concat()]);
        assert_eq!(data, GET);
        assert_eq!(marks, vec![format!("data{}", GET.len()), "end".into()]);
        let info = info.unwrap();
        assert_eq!((info.version, info.local), (2, false));
        assert_eq!(info.source, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(info.aws_vpce_id.as_deref(), Some("vpce-08d2bf15fac5001c9"));
        assert_eq!(info.authority.as_deref(), Some("shop.example.com"));
        assert_eq!(info.tlv_types, vec![0xEA, 0x02]);
        assert_eq!((stats.v2, stats.bad_tlv), (1, 0));
    }

    #[test]
    fn a_v2_local_header_has_no_address() {
        let h = v2(0, None, &[]);
        let (data, _, info, stats) = run(ProxyMode::Auto, &[&h, GET]);
        assert_eq!(data, GET);
        let info = info.unwrap();
        assert!(info.local && info.source.is_none());
        assert_eq!(stats.v2_local, 1);
    }

    #[test]
    fn without_a_header_every_byte_passes_in_order() {
        let (data, marks, info, stats) = run(ProxyMode::Auto, &[GET]);
        assert_eq!((data.as_slice(), info), (GET, None));
        assert_eq!(marks, vec![format!("data{}", GET.len()), "end".into()]);
        assert_eq!(stats, ProxyStats::default());
        // `P`, `PR` …: undecided until a byte differs from both signatures.
        let req = b"PUT /x HTTP/1.1\r\n\r\n";
        let (data, _, _, stats) = run(ProxyMode::Require, &[&req[..1], &req[1..3], &req[3..]]);
        assert_eq!(data, req);
        assert_eq!(stats.missing, 1);
        // A lone CR (a v2 prefix) then an ordinary request line.
        let (data, _, _, _) = run(ProxyMode::Auto, &[b"\r", b"\nGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(data, b"\r\nGET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_forbidden_header_is_the_clients_own_bytes() {
        let h = v1("1.2.3.4", "5.6.7.8", 1, 2);
        let all = [&h[..], GET].concat();
        let (data, _, info, stats) = run(ProxyMode::Forbid, &[&all]);
        assert_eq!((data, info), (all, None));
        assert_eq!(stats.forbidden, 1);
    }

    #[test]
    fn a_malformed_header_is_counted_and_the_stream_picked_up() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..],
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2 3 4 5 6 7 8 9\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00",
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04abcd",
        ] {
            let all = [bad, GET].concat();
            let (data, marks, info, stats) = run(ProxyMode::Auto, &[&all]);
            assert_eq!(data, all, "the framer gets the bytes to resynchronise on");
            assert_eq!(marks[0], "gap0", "{:?}", String::from_utf8_lossy(bad));
            assert_eq!((info, stats.malformed), (None, 1));
        }
        // A v1 line longer than 107 bytes is no header, even with its CRLF in the same segment.
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 120], b"\r\n"].concat();
        let all = [&long[..], GET].concat();
        let (data, _, info, stats) = run(ProxyMode::Auto, &[&all]);
        assert_eq!((data, info, stats.malformed), (all.clone(), None, 1));
        let ok = [&b"PROXY UNKNOWN "[..], &[b'x'; 107 - 16], b"\r\n"].concat();
        assert_eq!(ok.len(), 107);
        let (data, _, info, _) = run(ProxyMode::Auto, &[&[&ok[..], GET].concat()]);
        assert_eq!(
            (data.as_slice(), info.map(|i| i.header_len)),
            (GET, Some(107))
        );
        // A v1 line that never ends: given up at 107 bytes, not held forever.
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
        let (_, _, _, stats) = run(ProxyMode::Auto, &[&long]);
        assert_eq!(stats.malformed, 1);
    }

    #[test]
    fn a_header_cut_by_the_end_or_a_hole_is_truncated() {
        let h = v2(1, Some(([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), &aws_tlvs());
        let (data, marks, info, stats) = run(ProxyMode::Auto, &[&h[..20]]);
        assert!(data.is_empty() && info.is_none());
        assert_eq!((marks, stats.truncated), (vec!["end".to_owned()], 1));

        let mut s = StreamStart::new(ProxyMode::Auto);
        let mut stats = ProxyStats::default();
        let mut seen = Vec::new();
        let mut fwd = |ev| seen.push(ev);
        s.on_event(
            StreamEvent::Data {
                bytes: Bytes::copy_from_slice(&h[..30]),
                ts: 1,
            },
            &mut stats,
            &mut fwd,
        );
        assert!(s.buffered_bytes() >= h.len(), "charged for what it holds");
        s.on_event(
            StreamEvent::Gap {
                len: 100,
                ts: 2,
                reason: GapReason::Lost,
            },
            &mut stats,
            &mut fwd,
        );
        assert_eq!(stats.truncated, 1);
        assert!(matches!(
            seen.as_slice(),
            [StreamEvent::Gap { len: 100, .. }]
        ));
        assert!(s.is_done());
    }

    proptest! {
        /// Any split of header + requests gives the framer exactly the requests' bytes, and
        /// the same header.
        #[test]
        fn any_split_strips_the_same_header(
            kind in 0usize..4,
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let header = match kind {
                0 => v1("203.0.113.7", "10.0.0.5", 51000, 80),
                1 => v1("2001:db8::7", "2001:db8::5", 51000, 8080),
                2 => v2(1, Some(([198, 51, 100, 9], [10, 0, 0, 5], 40000, 80)), &aws_tlvs()),
                _ => v2(0, None, &aws_tlvs()),
            };
            let body = [GET, b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"].concat();
            let all = [&header[..], &body].concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (all.len() + 1)).collect();
            cuts.push(0);
            cuts.push(all.len());
            cuts.sort_unstable();
            cuts.dedup();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &all[w[0]..w[1]]).collect();
            let (data, marks, info, stats) = run(ProxyMode::Auto, &pieces);
            prop_assert_eq!(data, body);
            prop_assert!(marks.iter().all(|m| m.starts_with("data") || m == "end"));
            let info = info.expect("a header");
            prop_assert_eq!(info.header_len, header.len());
            prop_assert_eq!(stats.malformed + stats.truncated, 0);
        }
    }
}
