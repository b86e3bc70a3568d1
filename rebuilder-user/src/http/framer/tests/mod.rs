//! Tests of the request framer, driven through its public interface with stream events.
//! Shared helpers live here; each file below is one area of behaviour.

mod gaps;
mod props;
mod protocols;
mod requests;

use super::*;
use crate::reassembly::{EndReason, GapReason};
use proptest::prelude::*;

fn ctx() -> FlowContext {
    FlowContext {
        vni: 7,
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
    }
}

struct Run {
    framer: RequestFramer,
    out: Vec<RebuiltRequest>,
    stats: HttpStats,
}

impl Run {
    fn new(limits: HttpLimits, at_start: bool) -> Self {
        Self {
            framer: RequestFramer::new(ctx(), Arc::new(limits), at_start),
            out: Vec::new(),
            stats: HttpStats::default(),
        }
    }

    fn start() -> Self {
        Self::new(HttpLimits::default(), true)
    }

    fn data(&mut self, b: &[u8], ts: Timestamp) -> &mut Self {
        let ev = StreamEvent::Data {
            bytes: Bytes::copy_from_slice(b),
            ts,
        };
        self.framer.on_event(ev, &mut self.out, &mut self.stats);
        self
    }

    fn gap(&mut self, len: u64, ts: Timestamp) -> &mut Self {
        let ev = StreamEvent::Gap {
            len,
            ts,
            reason: GapReason::Lost,
        };
        self.framer.on_event(ev, &mut self.out, &mut self.stats);
        self
    }

    fn end(&mut self) -> &mut Self {
        let ev = StreamEvent::End {
            ts: 999,
            reason: EndReason::Fin,
        };
        self.framer.on_event(ev, &mut self.out, &mut self.stats);
        self
    }

    fn raws(&self) -> Vec<&[u8]> {
        self.out.iter().map(|r| &r.raw[..]).collect()
    }
}

fn one_event(input: &[u8]) -> Run {
    let mut run = Run::start();
    run.data(input, 1);
    run
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const GET: &[u8] =
    b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n";
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n";
const POST: &[u8] =
    b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello=world";
const CHUNKED: &[u8] = b"POST /up HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n0A\r\n0123456789\r\n0;last=yes\r\nTrailer-A: x\r\nTrailer-B: y\r\n\r\n";
const GET10: &[u8] = b"GET /old HTTP/1.0\r\n\r\n";

fn small_body_limits() -> HttpLimits {
    HttpLimits {
        max_body_bytes: 10,
        ..Default::default()
    }
}

fn every_split(input: &[u8], check: impl Fn(&Run)) {
    for cut in 0..=input.len() {
        let mut run = Run::start();
        run.data(&input[..cut], 1).data(&input[cut..], 2);
        check(&run);
    }
}
