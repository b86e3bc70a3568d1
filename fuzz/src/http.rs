//! `http`: arbitrary bytes cut into arbitrary stream events (data, gaps, end) through a
//! `RequestFramer` with small limits; or, in response mode, the same data pieces through a
//! `ResponseFramer` driven the way the upstream output drives it.
//!
//! Request invariants: nothing panics; `buffered_bytes()` never exceeds `max_head_bytes +
//! max_body_bytes`; every record without `body_over_limit` is a substring of one gap-free run
//! of the input, records appear in input order and none spans a gap; a record over the body
//! limit is its head alone and its request line is from the input; records are well formed
//! (ranges inside the head, raw = head + body); the stats count exactly the records pushed.
//!
//! Response invariants: nothing panics; `consumed` never exceeds what was fed; the caller never
//! has to keep more than `max_head_bytes` unconsumed; an error is sticky; a complete response
//! has a status; `on_eof` reports a status only when one was read.

use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use rebuilder::http1::ResponseFramer;
use rebuilder::http::{FlowContext, HttpLimits, HttpStats, RequestFramer};
use rebuilder::reassembly::{EndReason, GapReason, StreamEvent};
use rebuilder::request::RebuiltRequest;

use crate::{find_in_order, Take};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Data(Vec<u8>),
    Gap(u32),
    End,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Low six bits: head limit 4 + 16 × n. High two: header limit 0, 1, 4 or 64.
    pub limits: u8,
    pub max_body: u16,
    /// Bit 0: the stream began with a SYN. Bit 1: response mode. Bit 2: (responses) the
    /// request was HEAD.
    pub mode: u8,
    pub events: Vec<Event>,
}

const EV_GAP: u8 = 2;
const EV_END: u8 = 3;

/// The rest of the input as stream events: a tag byte (data for 0 and 1, 2 a gap, 3 the end),
/// then a little-endian u16 length and the bytes, or a u32 gap length. Shared by every target
/// that feeds a stream's events (`http`, `proxy`, `h2`).
pub(crate) fn read_events(u: &mut Unstructured<'_>) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    while !u.is_empty() {
        events.push(match u.u8()? % 4 {
            EV_GAP => Event::Gap(u.u32()?),
            EV_END => Event::End,
            // Data is two tags of four.
            _ => {
                let len = usize::from(u.u16()?).min(u.len());
                Event::Data(u.bytes(len)?.to_vec())
            }
        });
    }
    Ok(events)
}

/// The bytes [`read_events`] reads back as `events`.
pub(crate) fn write_events(events: &[Event], v: &mut Vec<u8>) {
    for ev in events {
        match ev {
            Event::Data(d) => {
                v.push(0);
                v.extend_from_slice(&(d.len() as u16).to_le_bytes());
                v.extend_from_slice(d);
            }
            Event::Gap(n) => {
                v.push(EV_GAP);
                v.extend_from_slice(&n.to_le_bytes());
            }
            Event::End => v.push(EV_END),
        }
    }
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let limits = u.u8()?;
        let max_body = u.u16()?;
        let mode = u.u8()?;
        let events = read_events(u)?;
        Ok(Input {
            limits,
            max_body,
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
        v.push(self.mode);
        write_events(&self.events, &mut v);
        v
    }

    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_head_bytes: 4 + usize::from(self.limits & 0x3f) * 16,
            max_headers: [0, 1, 4, 64][usize::from(self.limits >> 6)],
            max_body_bytes: u64::from(self.max_body),
            ..HttpLimits::default()
        }
    }
}

/// Requests framed, or responses completed; for tests of the seeds.
pub fn check(input: &Input) -> usize {
    if input.mode & 2 != 0 {
        check_responses(input)
    } else {
        check_requests(input)
    }
}

fn check_requests(input: &Input) -> usize {
    let limits = input.http_limits();
    let bound = limits.max_head_bytes + usize::from(input.max_body);
    let ctx = FlowContext {
        vni: 1,
        client: "10.0.0.1:40000".parse().expect("address"),
        server: "10.0.0.2:80".parse().expect("address"),
    };
    let mut framer = RequestFramer::new(ctx, Arc::new(limits), input.mode & 1 != 0);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    // The input's data, cut at its gaps: a record must lie within one run.
    let mut runs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut ended = false;
    for (ts, ev) in (1..).zip(&input.events) {
        let done_before = framer.is_done();
        let before = out.len();
        let ev = match ev {
            Event::Data(d) => {
                if !ended {
                    if let Some(run) = runs.last_mut() {
                        run.extend_from_slice(d);
                    }
                }
                StreamEvent::Data {
                    bytes: Bytes::copy_from_slice(d),
                    ts,
                }
            }
            Event::Gap(n) => {
                runs.push(Vec::new());
                StreamEvent::Gap {
                    len: u64::from(*n),
                    ts,
                    reason: GapReason::Lost,
                }
            }
            Event::End => {
                ended = true;
                StreamEvent::End {
                    ts,
                    reason: EndReason::Fin,
                }
            }
        };
        framer.on_event(ev, &mut out, &mut stats);
        assert!(
            framer.buffered_bytes() <= bound,
            "framer holds {} > {bound}",
            framer.buffered_bytes()
        );
        if done_before {
            assert_eq!(out.len(), before, "a done framer pushed a record");
            assert_eq!(framer.buffered_bytes(), 0);
        }
        if ended {
            assert!(framer.is_done(), "End must finish the framer");
        }
    }

    let mut cursor = (0, 0);
    for r in &out {
        check_record(r);
        // An HTTP/2 stream's request is rendered, not cut from the input (target `h2`).
        if r.h2.is_some() {
            continue;
        }
        let needle = if r.flags.body_over_limit {
            let line_end = memchr::memchr(b'\n', &r.raw).map_or(r.raw.len(), |p| p + 1);
            &r.raw[..line_end]
        } else {
            &r.raw[..]
        };
        cursor = find_in_order(&runs, cursor, needle).unwrap_or_else(|| {
            panic!(
                "record is not the input's bytes in order within one gap-free run: {r:?} {:?}",
                String::from_utf8_lossy(needle)
            )
        });
        assert!(r.first_ts <= r.last_ts, "{r:?}");
    }
    let h1 = out.iter().filter(|r| r.h2.is_none()).count();
    assert_eq!(stats.requests, h1 as u64);
    let count = |f: fn(&RebuiltRequest) -> bool| out.iter().filter(|r| f(r)).count() as u64;
    assert_eq!(stats.body_over_limit, count(|r| r.flags.body_over_limit));
    assert_eq!(stats.malformed_replayed, count(|r| r.flags.malformed));
    out.len()
}

fn check_record(r: &RebuiltRequest) {
    let raw = &r.raw[..];
    assert!(r.head_len <= raw.len(), "{r:?}");
    assert!(!r.method.is_empty() && r.method.end <= r.head_len, "{r:?}");
    assert!(r.target.end <= r.head_len, "{r:?}");
    if let Some(h) = &r.host {
        assert!(h.end <= r.head_len, "{r:?}");
    }
    assert!(r.version_minor <= 1, "{r:?}");
    if r.flags.body_over_limit {
        assert_eq!(
            r.head_len,
            raw.len(),
            "over-limit record keeps the head only: {r:?}"
        );
    } else {
        assert_eq!(raw.len() as u64, r.head_len as u64 + r.body_len, "{r:?}");
    }
}

fn check_responses(input: &Input) -> usize {
    let max_head = input.http_limits().max_head_bytes;
    let head_request = input.mode & 4 != 0;
    let mut framer = ResponseFramer::new(head_request, max_head);
    let mut buf: Vec<u8> = Vec::new();
    let mut failed = None;
    let mut status = None;
    let mut complete = 0;
    for ev in &input.events {
        let Event::Data(d) = ev else { continue };
        buf.extend_from_slice(d);
        // Keep-alive: a complete response leaves its successor's bytes, framed at once.
        loop {
            let r = framer.feed(&buf);
            if let Some(e) = &failed {
                assert_eq!(r.as_ref().err(), Some(e), "errors are sticky");
                break;
            }
            let p = match r {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            assert!(
                p.consumed <= buf.len(),
                "consumed {} of {}",
                p.consumed,
                buf.len()
            );
            buf.drain(..p.consumed);
            if p.status.is_some() {
                status = p.status;
            }
            if !p.complete {
                assert!(
                    buf.len() < max_head,
                    "caller keeps {} unconsumed bytes, head limit {max_head}",
                    buf.len()
                );
                break;
            }
            assert!(p.status.is_some(), "complete without a status");
            complete += 1;
            framer = ResponseFramer::new(head_request, max_head);
            status = None;
            if buf.is_empty() {
                break;
            }
        }
        if failed.is_some() {
            break;
        }
    }
    match framer.on_eof() {
        Ok(code) => {
            assert!(failed.is_none(), "eof after an error reads a status");
            assert_eq!(Some(code), status);
        }
        Err(e) => {
            if let Some(f) = failed {
                assert_eq!(e, f, "errors are sticky");
            }
        }
    }
    complete
}
