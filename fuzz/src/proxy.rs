//! `proxy`: arbitrary bytes cut into stream events (data, gaps, end) through a `StreamStart`
//! (PROXY protocol at stream start, in one of its three modes), and what it forwards through a
//! `RequestFramer`, as the worker chains them.
//!
//! Invariants: nothing panics; what is held stays within a v2 header's largest size (16 +
//! 65535, its allocation included); at most one outcome is counted per stream; the data
//! forwarded before the first gap or end is exactly the input's data before it, less the
//! header when one was parsed (and then the header is what the format says: `PROXY ` up to
//! its CRLF, or 16 bytes plus its declared length), or nothing at all when a header was cut
//! short; a `forbid` stream never strips; once decided, every event passes through as it came;
//! the framer's records are the forwarded bytes in order.

use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use rebuilder::http::{FlowContext, HttpLimits, HttpStats, RequestFramer};
use rebuilder::proxy::{ProxyMode, ProxyStats, StreamStart, V1_SIGNATURE, V2_SIGNATURE};
use rebuilder::reassembly::{EndReason, GapReason, StreamEvent};

use crate::http::{read_events, write_events, Event};
use crate::{find_in_order, Take};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Low two bits: 0 auto, 1 require, 2 forbid (3: auto).
    pub mode: u8,
    pub events: Vec<Event>,
}

/// The most a stream start may hold: a whole v2 header.
const MAX_HELD: usize = 16 + 65535;

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mode = u.u8()?;
        let events = read_events(u)?;
        Ok(Input { mode, events })
    }
}

impl Input {
    /// The bytes `arbitrary` reads back as this input.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.mode];
        write_events(&self.events, &mut v);
        v
    }

    pub fn proxy_mode(&self) -> ProxyMode {
        match self.mode & 3 {
            1 => ProxyMode::Require,
            2 => ProxyMode::Forbid,
            _ => ProxyMode::Auto,
        }
    }
}

/// What one run found, for the seeds' tests.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stats: ProxyStats,
    pub header_len: Option<usize>,
    pub source: Option<std::net::SocketAddr>,
    pub requests: usize,
}

pub fn check(input: &Input) -> Outcome {
    let mode = input.proxy_mode();
    let mut start = StreamStart::new(mode);
    let mut stats = ProxyStats::default();
    let ctx = FlowContext {
        vni: 1,
        client: "10.0.0.1:40000".parse().expect("address"),
        server: "10.0.0.2:80".parse().expect("address"),
    };
    let mut framer = RequestFramer::new(ctx, Arc::new(HttpLimits::default()), true);
    let mut hstats = HttpStats::default();
    let mut records = Vec::new();

    // The input's data up to its first gap or end, and what was forwarded up to then.
    let mut before_cut: Vec<u8> = Vec::new();
    let mut forwarded: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut forwarded_cut = false;
    // Forwarded data in gap-free runs, for the framer's records.
    let mut runs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut zero_gaps = 0;

    for (ts, ev) in (1..).zip(&input.events) {
        let was_done = start.is_done();
        let ev = match ev {
            // Reassembly never delivers empty data.
            Event::Data(d) if d.is_empty() => continue,
            Event::Data(d) => {
                if !cut {
                    before_cut.extend_from_slice(d);
                }
                StreamEvent::Data {
                    bytes: Bytes::copy_from_slice(d),
                    ts,
                }
            }
            Event::Gap(n) => {
                cut = true;
                // Reassembly never makes an empty gap; one here would pass for the pickup.
                StreamEvent::Gap {
                    len: u64::from(*n).max(1),
                    ts,
                    reason: GapReason::Lost,
                }
            }
            Event::End => {
                cut = true;
                StreamEvent::End {
                    ts,
                    reason: EndReason::Fin,
                }
            }
        };
        let sent = ev.clone();
        let mut out = Vec::new();
        start.on_event(ev, &mut stats, &mut |e| out.push(e));
        if was_done {
            assert_eq!(
                out,
                vec![sent],
                "a decided start passes events as they came"
            );
        }
        for e in out {
            match &e {
                StreamEvent::Data { bytes, .. } => {
                    assert!(!bytes.is_empty(), "empty data forwarded");
                    if !forwarded_cut {
                        forwarded.extend_from_slice(bytes);
                    }
                    if let Some(r) = runs.last_mut() {
                        r.extend_from_slice(bytes);
                    }
                }
                StreamEvent::Gap { len: 0, .. } if !forwarded_cut => {
                    zero_gaps += 1;
                    runs.push(Vec::new());
                }
                StreamEvent::Gap { .. } | StreamEvent::Rewind { .. } | StreamEvent::End { .. } => {
                    forwarded_cut = true;
                    runs.push(Vec::new());
                }
            }
            framer.on_event(e, &mut records, &mut hstats);
        }
        assert!(
            start.buffered_bytes() <= MAX_HELD,
            "holds {} bytes",
            start.buffered_bytes()
        );
        if start.is_done() {
            assert_eq!(start.buffered_bytes(), 0, "nothing held once decided");
        }
    }

    let s = &stats;
    let outcomes = s.v1 + s.v2 + s.v2_local + s.malformed + s.truncated + s.forbidden;
    assert!(outcomes <= 1, "more than one outcome: {s:?}");
    assert!(s.missing <= 1 && s.bad_tlv <= 1, "{s:?}");
    assert!(zero_gaps <= 1, "more than one pickup");
    assert_eq!(
        zero_gaps, s.malformed,
        "a malformed header is a pickup, nothing else"
    );
    if mode == ProxyMode::Forbid {
        assert_eq!(
            s.v1 + s.v2 + s.v2_local + s.malformed + s.truncated,
            0,
            "{s:?}"
        );
    }
    if mode != ProxyMode::Require {
        assert_eq!(s.missing, 0);
    }
    let info = start.info().cloned();
    assert_eq!(
        info.is_some(),
        s.v1 + s.v2 + s.v2_local == 1,
        "a header is found exactly when counted: {s:?}"
    );
    let header_len = info.as_ref().map(|i| i.header_len);
    match &info {
        Some(i) => {
            let h = before_cut
                .get(..i.header_len)
                .expect("the header is in the input");
            if i.version == 1 {
                assert!(h.starts_with(V1_SIGNATURE) && h.ends_with(b"\r\n"), "{h:?}");
                assert!(h.len() <= 107);
            } else {
                assert!(h.starts_with(V2_SIGNATURE));
                let declared = u16::from_be_bytes([h[14], h[15]]);
                assert_eq!(h.len(), 16 + usize::from(declared));
                assert_eq!(i.local, h[12] & 0x0F == 0);
            }
            if i.local {
                assert!(i.source.is_none() && i.destination.is_none());
            }
            assert_eq!(
                forwarded,
                before_cut[i.header_len..],
                "exactly the bytes after the header"
            );
        }
        None if s.truncated == 1 => {
            assert!(
                forwarded.is_empty(),
                "a header cut short forwards none of its bytes"
            );
        }
        None => {
            if start.is_done() {
                assert_eq!(forwarded, before_cut, "no header: every byte, in order");
            } else {
                assert!(forwarded.is_empty(), "undecided: nothing forwarded yet");
                assert!(before_cut.len() < 16 + 65535);
            }
        }
    }

    let mut cursor = (0, 0);
    for r in records.iter().filter(|r| r.h2.is_none()) {
        cursor = find_in_order(&runs, cursor, &r.raw).unwrap_or_else(|| {
            panic!("record is not the forwarded bytes in order: {r:?}");
        });
    }
    Outcome {
        stats,
        header_len,
        source: info.and_then(|i| i.source),
        requests: records.len(),
    }
}
