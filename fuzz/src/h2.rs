//! `h2`: HTTP/2 client streams through the `RequestFramer` (which hands them to `h2::H2Conn`):
//! the connection preface (or an `Upgrade: h2c` request before it, or neither: a pickup)
//! followed by arbitrary bytes cut into data, gap and end events, with small limits.
//!
//! Invariants: nothing panics; the memory charged stays within what the limits allow (the
//! HPACK table's charge, a header block and a frame of at most `max_head_bytes` each, each
//! open stream's fields, trailers and body); every record rebuilt from a stream is a well-formed
//! HTTP/1.1 request that frames exactly as it says (httparse reads its head to `head_len`, the
//! method and target ranges are the request line's, no field that changes framing or the
//! connection, a `content-length` equal to the body it carries, or 0 over the limit), so
//! replaying it can never smuggle a second request to the WAF; the stream counts match the
//! records; without gaps, cutting the same bytes differently rebuilds the same records.

use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use rebuilder::h2::StreamOutcome;
use rebuilder::http::{FlowContext, HttpLimits, HttpStats, RequestFramer};
use rebuilder::reassembly::{EndReason, GapReason, StreamEvent};
use rebuilder::request::RebuiltRequest;

use crate::http::{read_events, write_events, Event};
use crate::Take;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Low four bits: head limit 64 + 64 × n. High four: streams 1 + n.
    pub limits: u8,
    pub max_body: u16,
    /// HPACK table limit (the protocol's default is 4096).
    pub table: u16,
    /// 0: preface at the start; 1: an `Upgrade: h2c` request, then the preface; 2: neither,
    /// a stream picked up mid-way; 3: like 0.
    pub mode: u8,
    pub events: Vec<Event>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let limits = u.u8()?;
        let max_body = u.u16()?;
        let table = u.u16()?;
        let mode = u.u8()?;
        let events = read_events(u)?;
        Ok(Input {
            limits,
            max_body,
            table,
            mode,
            events,
        })
    }
}

impl Input {
    /// The bytes `arbitrary` reads back as this input.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.limits];
        v.extend_from_slice(&self.max_body.to_le_bytes());
        v.extend_from_slice(&self.table.to_le_bytes());
        v.push(self.mode);
        write_events(&self.events, &mut v);
        v
    }

    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_head_bytes: 64 + usize::from(self.limits & 0x0f) * 64,
            max_body_bytes: u64::from(self.max_body),
            h2_max_table_size: usize::from(self.table),
            h2_max_streams: 1 + usize::from(self.limits >> 4),
            ..HttpLimits::default()
        }
    }

    /// The events as the framer gets them: the preface (and upgrade request) first.
    fn stream_events(&self) -> Vec<Event> {
        let mut v = Vec::new();
        match self.mode & 3 {
            1 => {
                v.push(Event::Data(UPGRADE.to_vec()));
                v.push(Event::Data(PREFACE.to_vec()));
            }
            2 => {}
            _ => v.push(Event::Data(PREFACE.to_vec())),
        }
        v.extend(self.events.iter().cloned());
        v
    }
}

/// What a run rebuilt, for the seeds' tests.
#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<RebuiltRequest>,
    pub stats: HttpStats,
}

fn run(limits: &HttpLimits, at_start: bool, events: &[Event]) -> Outcome {
    let ctx = FlowContext {
        vni: 1,
        client: "10.0.0.1:40000".parse().expect("address"),
        server: "10.0.0.2:80".parse().expect("address"),
    };
    let mut framer = RequestFramer::new(ctx, Arc::new(limits.clone()), at_start);
    let mut stats = HttpStats::default();
    let mut records = Vec::new();
    // Fields and trailers: at most `max_head_bytes` each by RFC size, charged at what their
    // allocations take (about four times that for tiny fields); the body; the entry.
    let per_stream = limits.max_head_bytes * 8 + limits.max_body_bytes as usize + 512;
    let bound = 3 * limits.h2_max_table_size
        + 3 * limits.max_head_bytes
        + limits.h2_max_streams * per_stream;
    for (ts, ev) in (1..).zip(events) {
        let ev = match ev {
            Event::Data(d) if d.is_empty() => continue,
            Event::Data(d) => StreamEvent::Data {
                bytes: Bytes::copy_from_slice(d),
                ts,
            },
            Event::Gap(n) => StreamEvent::Gap {
                len: u64::from(*n).max(1),
                ts,
                reason: GapReason::Lost,
            },
            Event::End => StreamEvent::End {
                ts,
                reason: EndReason::Fin,
            },
        };
        framer.on_event(ev, &mut records, &mut stats);
        assert!(
            framer.buffered_bytes() <= bound,
            "holds {} > {bound}",
            framer.buffered_bytes()
        );
    }
    Outcome { records, stats }
}

pub fn check(input: &Input) -> Outcome {
    let limits = input.http_limits();
    let events = input.stream_events();
    let at_start = input.mode & 3 != 2;
    let out = run(&limits, at_start, &events);
    let h2: Vec<&RebuiltRequest> = out.records.iter().filter(|r| r.h2.is_some()).collect();
    for r in &h2 {
        check_rendering(r);
    }
    assert_eq!(
        out.stats.h2.streams_of(StreamOutcome::Rebuilt),
        h2.len() as u64,
        "{:?}",
        out.stats.h2
    );
    // Without holes, how the bytes were cut does not matter once the stream is HTTP/2 from its
    // start. (Where HTTP/1.x framing had to resynchronise first, segment starts are where it
    // looks for a request line or for frames, by design: a head over the limit before the
    // preface, or a pickup.)
    let s = &out.stats;
    let from_start = s.h2.connections[0] + s.h2.connections[1] == 1
        && s.resync_skipped_bytes
            + s.dropped_head_too_large
            + s.dropped_too_many_headers
            + s.dropped_invalid
            == 0;
    if at_start && from_start && !events.iter().any(|e| matches!(e, Event::Gap(_))) {
        let mut whole: Vec<u8> = Vec::new();
        let mut end = false;
        for e in &events {
            match e {
                Event::Data(d) if !end => whole.extend_from_slice(d),
                Event::End => end = true,
                _ => {}
            }
        }
        let mut once = vec![Event::Data(whole)];
        if end {
            once.push(Event::End);
        }
        let again = run(&limits, at_start, &once);
        let a: Vec<&[u8]> = out.records.iter().map(|r| &r.raw[..]).collect();
        let b: Vec<&[u8]> = again.records.iter().map(|r| &r.raw[..]).collect();
        assert_eq!(a, b, "the same bytes cut differently rebuild differently");
    }
    out
}

/// A rendering replays as exactly one well-framed HTTP/1.1 request.
fn check_rendering(r: &RebuiltRequest) {
    let raw = &r.raw[..];
    // Bytes beyond ASCII in the target are the client's (a WAF should see them, many servers
    // take them); httparse does not, so they are masked for its reading of the framing.
    let mut masked = raw.to_vec();
    if let Some(t) = masked.get_mut(r.target.clone()) {
        for b in t.iter_mut().filter(|b| **b >= 0x80) {
            *b = b'x';
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 1024];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(&masked).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(parsed, httparse::Status::Complete(r.head_len), "{r:?}");
    assert_eq!(req.version, Some(1));
    assert_eq!(req.method.map(str::as_bytes), Some(r.method_bytes()));
    assert_eq!(req.path.map(str::len), Some(r.target.len()));
    let mut lengths = Vec::new();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        assert!(
            !matches!(
                name.as_str(),
                "transfer-encoding" | "connection" | "upgrade" | "keep-alive" | "proxy-connection"
            ),
            "{name} in {r:?}"
        );
        if name == "content-length" {
            lengths.push(
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("content-length {:?}", h.value)),
            );
        }
    }
    let body = (raw.len() - r.head_len) as u64;
    if r.flags.body_over_limit {
        assert_eq!(body, 0);
        assert_eq!(lengths, vec![0], "{r:?}");
    } else {
        assert_eq!(body, r.body_len);
        assert!(
            lengths.iter().all(|l| *l == body),
            "{lengths:?} for {body}: {r:?}"
        );
        assert!(
            body == 0 || !lengths.is_empty(),
            "a body without a length: {r:?}"
        );
    }
}
