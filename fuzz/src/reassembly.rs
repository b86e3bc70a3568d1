//! `reassembly`: segments cut from [`known::stream`] at arbitrary offsets around an arbitrary
//! base sequence number (wrap included), with arbitrary flags, truncation, reordering and
//! capture times, pushed through a `FlowTable` with small limits, and the segments of one flow
//! also through a bare `Stream` whose every event is checked against the known bytes.
//!
//! Invariants:
//! - nothing panics (overflow checks are on in fuzz builds, so accounting that goes below zero
//!   panics too);
//! - the table never holds more than its budget plus one flow's worth, and its `buffered`
//!   figure is exact: it is 0 once every flow is gone;
//! - every request rebuilt from a well-behaved flow is a substring of the known stream (a
//!   request whose body went over the limit: its request line), so no hole was ever delivered
//!   as data; a request without a gap holds its whole head and body;
//! - the bare stream's events walk the known stream forward: each `Data` is exactly the next
//!   bytes, each `Gap` skips forward, nothing follows `End`, and the out-of-order buffer stays
//!   within its cap.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use rebuilder::config::FlowKeyMode;
use rebuilder::http::HttpLimits;
use rebuilder::reassembly::{EndReason, Stream, StreamConfig, StreamEvent, StreamStats};
use rebuilder::request::RebuiltRequest;
use rebuilder::segment::{FlowKey, Segment, TcpFlags, Timestamp};
use rebuilder::worker::{FlowTable, WorkerConfig, WorkerStats};

use crate::known;
use crate::Take;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// Capture time of the first segment.
pub const T0: Timestamp = 1_700_000_000 * SEC;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT_PORT: u16 = 40000;
pub const SERVER_PORT: u16 = 8080;
/// Flow index (low two bits) whose segments may carry bytes that contradict the known stream:
/// overlaps that differ. Only memory and panics are checked for it.
pub const HOSTILE: u8 = 3;
/// What one flow may hold beyond its stream buffer and framer buffer (its boxed state, and the
/// table's smallest allocation: a chunk of 8 KiB of slots and an index, charged even when the
/// budget is smaller): a generous figure, since the worker's own is private.
const FLOW_ALLOWANCE: usize = 16 << 10;
/// Longest segment payload drawn.
const MAX_SEGMENT: usize = 1600;

/// The table's and the streams' limits, all small so that every cap is reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Worker budget in units of 8 bytes.
    pub budget: u16,
    pub max_buffered: u16,
    /// Window in units of 16 bytes, plus one.
    pub max_window: u16,
    pub reorder_ms: u8,
    pub idle_s: u8,
    pub linger_s: u8,
    /// Head limit: 16 bytes plus this many times 4.
    pub max_head: u8,
    pub max_headers: u8,
    pub max_body: u16,
    /// Bit 0: flows are keyed by VNI too. Bit 1: 8080 is a configured server port.
    pub flags: u8,
}

/// One segment: `len` bytes of the known stream from offset `off`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegSpec {
    /// Low two bits: which connection (client port 40000 + n); bit 2: the reverse direction.
    pub flow: u8,
    pub off: u16,
    pub len: u16,
    /// Bit 7 set: only `len * (cut & 0x7f) / 128` bytes arrived (truncated frame).
    pub cut: u8,
    /// The TCP flags byte.
    pub flags: u8,
    /// Capture time step from the previous segment, in units of 8 ms (may go back).
    pub dt: i8,
    /// VNI 100 + (vni & 3).
    pub vni: u8,
    /// XORed into the payload of the hostile flow.
    pub mask: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Seg(SegSpec),
    /// Time passes without segments.
    Tick {
        ms: u16,
    },
    /// The input ends (every flow closed); later segments start again.
    Finish,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    pub knobs: Knobs,
    /// Sequence number of the known stream's first byte.
    pub base: u32,
    pub ops: Vec<Op>,
}

const OP_SEG: u8 = 0;
const OP_TICK: u8 = 6;
const OP_FINISH: u8 = 7;

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let knobs = Knobs {
            budget: u.u16()?,
            max_buffered: u.u16()?,
            max_window: u.u16()?,
            reorder_ms: u.u8()?,
            idle_s: u.u8()?,
            linger_s: u.u8()?,
            max_head: u.u8()?,
            max_headers: u.u8()?,
            max_body: u.u16()?,
            flags: u.u8()?,
        };
        let base = u.u32()?;
        let mut ops = Vec::new();
        while !u.is_empty() {
            // Segments are six of eight tags: they are what the target is about.
            ops.push(match u.u8()? % 8 {
                OP_TICK => Op::Tick { ms: u.u16()? },
                OP_FINISH => Op::Finish,
                _ => Op::Seg(SegSpec {
                    flow: u.u8()?,
                    off: u.u16()?,
                    len: u.u16()?,
                    cut: u.u8()?,
                    flags: u.u8()?,
                    dt: u.u8()? as i8,
                    vni: u.u8()?,
                    mask: u.u8()?,
                }),
            });
        }
        Ok(Input { knobs, base, ops })
    }
}

impl Input {
    /// The bytes `arbitrary` reads back as this input.
    pub fn encode(&self) -> Vec<u8> {
        let k = &self.knobs;
        let mut v = Vec::new();
        v.extend_from_slice(&k.budget.to_le_bytes());
        v.extend_from_slice(&k.max_buffered.to_le_bytes());
        v.extend_from_slice(&k.max_window.to_le_bytes());
        v.extend_from_slice(&[
            k.reorder_ms,
            k.idle_s,
            k.linger_s,
            k.max_head,
            k.max_headers,
        ]);
        v.extend_from_slice(&k.max_body.to_le_bytes());
        v.push(k.flags);
        v.extend_from_slice(&self.base.to_le_bytes());
        for op in &self.ops {
            match op {
                Op::Seg(s) => {
                    v.push(OP_SEG);
                    v.push(s.flow);
                    v.extend_from_slice(&s.off.to_le_bytes());
                    v.extend_from_slice(&s.len.to_le_bytes());
                    v.extend_from_slice(&[s.cut, s.flags, s.dt as u8, s.vni, s.mask]);
                }
                Op::Tick { ms } => {
                    v.push(OP_TICK);
                    v.extend_from_slice(&ms.to_le_bytes());
                }
                Op::Finish => v.push(OP_FINISH),
            }
        }
        v
    }
}

impl Knobs {
    pub fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            reorder_timeout_ns: u64::from(self.reorder_ms) * MS,
            max_buffered: usize::from(self.max_buffered),
            max_window: u64::from(self.max_window) * 16 + 1,
            ..StreamConfig::default()
        }
    }

    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_head_bytes: 16 + usize::from(self.max_head) * 4,
            max_headers: usize::from(self.max_headers % 32),
            max_body_bytes: u64::from(self.max_body),
            ..HttpLimits::default()
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            flow_key: if self.flags & 1 != 0 {
                FlowKeyMode::Vni
            } else {
                FlowKeyMode::Inner
            },
            server_ports: if self.flags & 2 != 0 {
                vec![SERVER_PORT]
            } else {
                Vec::new()
            },
            stream: self.stream_config(),
            http: Arc::new(self.http_limits()),
            idle_timeout_ns: u64::from(self.idle_s) * SEC,
            linger_ns: u64::from(self.linger_s) * SEC,
            budget: usize::from(self.budget) * 8,
            proxy: rebuilder::proxy::ProxyPolicy::default(),
        }
    }

    /// The most one flow may hold: stream buffer, framer buffer, bookkeeping.
    fn one_flow(&self) -> usize {
        let l = self.http_limits();
        usize::from(self.max_buffered)
            + l.max_head_bytes
            + usize::try_from(l.max_body_bytes).unwrap_or(usize::MAX)
            + FLOW_ALLOWANCE
    }
}

/// The segment a spec describes, and the known-stream offset of its first data byte.
pub fn segment(spec: &SegSpec, base: u32, ts: Timestamp) -> (Segment, usize) {
    let t = known::stream();
    let off = usize::from(spec.off) % t.len();
    let len = (usize::from(spec.len) % MAX_SEGMENT).min(t.len() - off);
    let cap = if spec.cut & 0x80 != 0 {
        len * usize::from(spec.cut & 0x7f) / 128
    } else {
        len
    };
    let mut payload = t[off..off + cap].to_vec();
    if spec.flow & 3 == HOSTILE {
        payload.iter_mut().for_each(|b| *b ^= spec.mask);
    }
    let flags = TcpFlags(spec.flags);
    // The SYN takes the sequence number before the first data byte.
    let seq = base
        .wrapping_add(off as u32)
        .wrapping_sub(u32::from(flags.syn()));
    let flow = FlowKey {
        src: IpAddr::V4(CLIENT),
        dst: IpAddr::V4(SERVER),
        src_port: CLIENT_PORT + u16::from(spec.flow & 3),
        dst_port: SERVER_PORT,
    };
    let seg = Segment {
        ts,
        vni: 100 + u32::from(spec.vni & 3),
        flow: if spec.flow & 4 != 0 {
            flow.reversed()
        } else {
            flow
        },
        seq,
        ack: 1,
        flags,
        payload: Bytes::from(payload),
        wire_len: len as u32,
    };
    (seg, off)
}

/// A bare stream fed the segments of connection 0, client side, checked event by event
/// against the known stream.
struct Model {
    cfg: StreamConfig,
    stream: Option<Stream>,
    /// Known-stream offset of the next byte the stream will report.
    pos: usize,
    ended: bool,
    events: Vec<StreamEvent>,
    stats: StreamStats,
}

impl Model {
    fn push(&mut self, seg: &Segment, off: usize) {
        if self.ended || self.stream.is_none() {
            // A stream starts at its first segment's first data byte (after a SYN).
            self.stream = Some(Stream::new(seg));
            self.pos = off;
            self.ended = false;
        }
        if let Some(s) = self.stream.as_mut() {
            s.push(seg, &self.cfg, &mut self.events, &mut self.stats);
        }
        self.check();
    }

    fn tick(&mut self, now: Timestamp) {
        if let Some(s) = self.stream.as_mut() {
            s.tick(now, &self.cfg, &mut self.events, &mut self.stats);
        }
        self.check();
    }

    fn close(&mut self, now: Timestamp) {
        if let Some(s) = self.stream.as_mut() {
            s.close(now, EndReason::Shutdown, &mut self.events, &mut self.stats);
            assert!(s.ended().is_some(), "close must end the stream");
            self.check();
            assert!(self.ended, "close must report End");
        }
        self.stream = None;
    }

    fn check(&mut self) {
        let t = known::stream();
        for ev in self.events.drain(..) {
            assert!(!self.ended, "event after End: {ev:?}");
            match ev {
                StreamEvent::Data { bytes, .. } => {
                    assert!(!bytes.is_empty(), "empty Data event");
                    let want = t.get(self.pos..self.pos + bytes.len());
                    assert_eq!(
                        want,
                        Some(&bytes[..]),
                        "Data at known offset {} is not the known bytes",
                        self.pos
                    );
                    self.pos += bytes.len();
                }
                StreamEvent::Gap { len, .. } => {
                    assert!(len > 0, "empty Gap event");
                    self.pos += usize::try_from(len).expect("gap length");
                    assert!(
                        self.pos <= t.len(),
                        "gap past the end of every segment: {}",
                        self.pos
                    );
                }
                StreamEvent::Rewind { back, .. } => {
                    // A skip proved wrong: the stream goes back over what it delivered.
                    let back = usize::try_from(back).expect("rewind length");
                    assert!(
                        back > 0 && back <= self.pos,
                        "rewind by {back} from {}",
                        self.pos
                    );
                    self.pos -= back;
                }
                StreamEvent::End { .. } => self.ended = true,
            }
        }
        if let Some(s) = &self.stream {
            // Out-of-order data within the cap, plus the truncated ranges it remembers.
            let bound = self.cfg.max_buffered + rebuilder::reassembly::MAX_METADATA_BYTES;
            assert!(
                s.buffered() <= bound,
                "stream holds {} > {bound}",
                s.buffered(),
            );
        }
    }
}

fn check_request(r: &RebuiltRequest) {
    let raw = &r.raw[..];
    assert!(r.head_len <= raw.len(), "head beyond raw: {r:?}");
    assert!(r.method.end <= r.head_len && !r.method.is_empty(), "{r:?}");
    assert!(r.target.end <= r.head_len, "{r:?}");
    if let Some(h) = &r.host {
        assert!(h.end <= r.head_len, "{r:?}");
    }
    let hostile = r.client.port() == CLIENT_PORT + u16::from(HOSTILE)
        || r.server.port() == CLIENT_PORT + u16::from(HOSTILE);
    if hostile {
        return;
    }
    let t = known::stream();
    if r.flags.body_over_limit {
        assert_eq!(r.head_len, raw.len(), "{r:?}");
        let line_end = memchr::memchr(b'\n', raw).map_or(raw.len(), |p| p + 1);
        assert!(
            memchr::memmem::find(t, &raw[..line_end]).is_some(),
            "request line not in the known stream: {:?}",
            String::from_utf8_lossy(&raw[..line_end])
        );
    } else {
        assert_eq!(
            raw.len() as u64,
            r.head_len as u64 + r.body_len,
            "raw is not head plus body: {r:?}"
        );
        assert!(
            memchr::memmem::find(t, raw).is_some(),
            "request not in the known stream (a hole delivered as data?): {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

/// What a run produced, for tests of the seeds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests the table emitted, from every flow.
    pub requests: u64,
    /// Bytes the bare stream of connection 0 delivered as data, and skipped as gaps.
    pub model_data: u64,
    pub model_gaps: u64,
    /// The table's counters at the end.
    pub table: WorkerStats,
}

pub fn check(input: &Input) -> Summary {
    let knobs = &input.knobs;
    let cfg = knobs.worker_config();
    let bound = cfg.budget + knobs.one_flow();
    let mut table = FlowTable::new(cfg);
    let mut model = Model {
        cfg: knobs.stream_config(),
        stream: None,
        pos: 0,
        ended: false,
        events: Vec::new(),
        stats: StreamStats::default(),
    };
    let mut out: Vec<RebuiltRequest> = Vec::new();
    let mut ts = T0;
    let mut emitted = 0u64;

    let mut after =
        |table: &mut FlowTable, out: &mut Vec<RebuiltRequest>, what: &dyn Fn() -> String| {
            for r in out.drain(..) {
                check_request(&r);
                emitted += 1;
            }
            let held = table.buffered();
            assert!(
                held <= bound,
                "table holds {held} > {bound} after {}",
                what()
            );
            let stats = table.stats();
            assert_eq!(stats.buffered_bytes, held as u64);
            assert_eq!(stats.requests, emitted, "requests counted vs emitted");
        };

    for (i, op) in input.ops.iter().enumerate() {
        match op {
            Op::Seg(spec) => {
                ts = ts.saturating_add_signed(i64::from(spec.dt) * 8 * MS as i64);
                let (seg, off) = segment(spec, input.base, ts);
                table.push(&seg, &mut |r| out.push(r));
                if spec.flow & 7 == 0 {
                    model.push(&seg, off);
                }
            }
            Op::Tick { ms } => {
                ts = ts.saturating_add(u64::from(*ms) * MS);
                table.tick(ts, &mut |r| out.push(r));
                model.tick(ts);
            }
            Op::Finish => {
                table.finish(&mut |r| out.push(r));
                assert_eq!(table.flows(), 0);
                assert_eq!(table.buffered(), 0, "accounting drifted: nothing is left");
                model.close(ts);
            }
        }
        after(&mut table, &mut out, &|| format!("op {i}: {op:?}"));
    }
    table.finish(&mut |r| out.push(r));
    after(&mut table, &mut out, &|| "finish".to_string());
    assert_eq!(table.flows(), 0);
    assert_eq!(table.buffered(), 0, "accounting drifted: nothing is left");
    model.close(ts);
    let gaps = &model.stats.gap_bytes;
    Summary {
        requests: emitted,
        model_data: model.stats.delivered_bytes,
        model_gaps: gaps.iter().sum(),
        table: table.stats().clone(),
    }
}
