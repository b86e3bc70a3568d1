//! Abuse at the HTTP layer: chunked bodies that never end, 1 MB header lines and targets,
//! requests trickled a byte at a time, endless pipelines, and PROXY protocol headers that never
//! complete. What they test: the HTTP framing's limits, counted under their reasons.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::super::http;
use super::builder::{attacker, epoch_ns, human, span_ns, ts_ns, Builder};
use super::{Expect, MSS, VICTIM, VICTIM_HOST};
use crate::error::GenError;

impl Builder<'_> {
    pub(super) fn endless_chunked(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let total = self.scale.chunked_bytes;
        for i in 0..n {
            let ts = self.at(i, n * 2);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = format!(
                "POST /endless/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            if i == 0 {
                // One chunk announced as 2^44 bytes.
                stream.extend_from_slice(b"100000000000\r\n");
                stream.extend(http::body_bytes(total, i as u64));
            } else {
                let chunk = http::body_bytes(1024, i as u64);
                while stream.len() < total {
                    stream.extend_from_slice(b"400\r\n");
                    stream.extend_from_slice(&chunk);
                    stream.extend_from_slice(b"\r\n");
                }
            }
            let gap = span_ns(self.scale.span) / 2 / (stream.len() / MSS + 1) as u64;
            self.frames
                .extend(c.stream(ts + 1000, gap.max(1), &stream)?);
        }
        if let Some(max) = self.scale.max_body {
            self.args.extend(["--max-body-bytes".into(), max.into()]);
        }
        self.expect("request:incomplete", Expect::Exactly(n as u64));
        self.about = format!(
            "{n} chunked bodies of {} that never end",
            human(self.scale.chunked_bytes)
        );
        Ok(())
    }

    pub(super) fn huge_header(&mut self) -> Result<(), GenError> {
        let n = self.scale.attackers;
        let line = vec![b'a'; self.scale.huge_line];
        for i in 0..n {
            let ts = self.at(i, n);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = Vec::new();
            if i % 2 == 0 {
                stream.extend_from_slice(
                    format!("GET /huge-header/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\nX-Huge: ")
                        .as_bytes(),
                );
                stream.extend_from_slice(&line);
                stream.extend_from_slice(b"\r\n\r\n");
            } else {
                stream.extend_from_slice(b"GET /");
                stream.extend_from_slice(&line);
                stream.extend_from_slice(
                    format!(" HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n").as_bytes(),
                );
            }
            // The connection goes on: the next request must be found and replayed.
            let after =
                http::get_with_id(VICTIM_HOST, &format!("/after-huge/{i}"), &format!("h-{i}"));
            stream.extend_from_slice(&after);
            self.hostile_delivered.push(after);
            self.frames.extend(c.stream(ts + 1000, 2000, &stream)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        self.expect("request:head_too_large", Expect::Exactly(n as u64));
        self.about = format!(
            "{n} requests with a {} header line or target, each followed by a good one",
            human(self.scale.huge_line)
        );
        Ok(())
    }

    pub(super) fn trickle(&mut self) -> Result<(), GenError> {
        let n = self.scale.trickle;
        let slow = self.scale.attackers;
        let span = span_ns(self.scale.span);
        for i in 0..n + slow {
            let ts = self.at(i, n + slow) / 2 + epoch_ns() / 2;
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let bytes = if i < n {
                let req =
                    http::get_with_id(VICTIM_HOST, &format!("/trickle/{i}"), &format!("t-{i}"));
                self.hostile_delivered.push(req.clone());
                req
            } else {
                // Slowloris: header after header, never the blank line.
                let mut b =
                    format!("GET /slowloris/{i} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n").into_bytes();
                let mut k = 0;
                while b.len() < 2000 {
                    b.extend_from_slice(format!("X-Slow-{k}: {k}\r\n").as_bytes());
                    k += 1;
                }
                b
            };
            let gap = span / 2 / bytes.len() as u64;
            for (k, byte) in bytes.iter().enumerate() {
                self.frames
                    .push(c.send(ts + 1000 + gap * k as u64, std::slice::from_ref(byte))?);
            }
            if i < n {
                self.frames
                    .push(c.fin(ts + 2000 + gap * bytes.len() as u64)?);
            }
        }
        self.expect("request:incomplete", Expect::Exactly(slow as u64));
        self.about =
            format!("{n} requests sent a byte per segment, {slow} slowloris heads never finished");
        Ok(())
    }

    pub(super) fn endless_pipeline(&mut self) -> Result<(), GenError> {
        let conns = 2usize;
        let per = self.scale.pipeline / conns;
        for i in 0..conns {
            let ts = self.at(i, conns * 4);
            let mut c = self.conn(attacker(i), 7);
            self.frames.push(c.syn(ts)?);
            let mut stream = Vec::new();
            for k in 0..per {
                let req = format!("GET /pipe/{i}/{k} HTTP/1.1\r\nHost: {VICTIM_HOST}\r\n\r\n")
                    .into_bytes();
                stream.extend_from_slice(&req);
                self.hostile_delivered.push(req);
            }
            // The capture ends in the middle of the next one.
            stream.extend_from_slice(format!("GET /pipe/{i}/{per} HTTP/1.1\r\nHo").as_bytes());
            let gap = span_ns(self.scale.span) / 2 / (stream.len() / MSS + 1) as u64;
            self.frames
                .extend(c.stream(ts + 1000, gap.max(1), &stream)?);
        }
        self.expect("request:incomplete", Expect::Exactly(conns as u64));
        self.about = format!(
            "{conns} connections pipelining {per} requests each without pause, never closed"
        );
        Ok(())
    }
}

impl Builder<'_> {
    pub(super) fn proxy_headers(&mut self) -> Result<(), GenError> {
        use crate::gen::proxy;
        let n = self.scale.attackers;
        let held = n * 4;
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 4444);
        let mut k = 0;
        let mut next = |b: &mut Self| {
            k += 1;
            (k, b.conn(attacker(k), 7))
        };
        // v2 headers declaring the largest length and sending half of it: held (and charged)
        // until the capture ends, then counted as truncated.
        for i in 0..held {
            let (_, mut c) = next(self);
            let ts = self.at(i, held);
            self.frames.push(c.syn(ts)?);
            let full = proxy::v2(src, VICTIM, &proxy::tlv(0xE0, &vec![b'p'; 65_535 - 12 - 3]));
            self.frames
                .extend(c.stream(ts + 1000, 2000, &full[..full.len() / 2])?);
        }
        // Malformed headers, then a request: counted, the stream resynchronises, the request
        // arrives (without a client IP of its own).
        let bad: [&[u8]; 3] = [
            b"PROXY TCP4 300.1.1.1 10.9.0.1 1 80\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x91\x11\x00\x0c000000000000",
            b"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
        ];
        for i in 0..n {
            let (k, mut c) = next(self);
            let ts = self.at(i, n) + 500;
            self.frames.push(c.syn(ts)?);
            let req = http::get_with_id(
                VICTIM_HOST,
                &format!("/after-bad-proxy/{k}"),
                &format!("pb-{k}"),
            );
            self.hostile_delivered.push(req.clone());
            // In a segment of its own, as a load balancer sends a header: the framer takes a
            // segment's start for a line start, so the request after it is found even when the
            // broken header is binary (glued to it in one segment, it would be skipped with
            // the header, as in any pickup).
            self.frames.push(c.send(ts + 1000, bad[i % bad.len()])?);
            self.frames.extend(c.stream(ts + 2000, 2000, &req)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        // A whole header a byte per segment, then a request: stripped, the request arrives.
        for i in 0..n {
            let (k, mut c) = next(self);
            let ts = self.at(i, n) + 700;
            self.frames.push(c.syn(ts)?);
            let header = proxy::v2(src, VICTIM, &proxy::aws_tlvs("vpce-0bad", VICTIM_HOST));
            for (j, byte) in header.iter().enumerate() {
                self.frames
                    .push(c.send(ts + 1000 + 100 * j as u64, std::slice::from_ref(byte))?);
            }
            let req = http::get_with_id(
                VICTIM_HOST,
                &format!("/after-slow-proxy/{k}"),
                &format!("ps-{k}"),
            );
            self.hostile_delivered.push(req.clone());
            self.frames.extend(c.stream(ts + 100_000_000, 2000, &req)?);
            let end = self.frames.last().map_or(ts, |f| ts_ns(f.ts));
            self.frames.push(c.fin(end + 1000)?);
        }
        self.expect("proxy_header:truncated", Expect::Exactly(held as u64));
        self.expect("proxy_header:malformed", Expect::Exactly(n as u64));
        self.about = format!(
            "{held} v2 PROXY headers declaring 64 KiB cut at half, {n} malformed ones and {n} \
             trickled a byte per segment, each of the last two followed by a request"
        );
        Ok(())
    }
}
