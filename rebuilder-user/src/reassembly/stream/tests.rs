//! Unit tests of a stream, by example: ordering, wrapping, overlaps, holes and skips,
//! truncation, RST and FIN, the window and the buffer's bound; the property tests are in
//! `props`. The helpers here (`seg`, `Harness`, `collect`) serve both.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::segment::{FlowKey, TcpFlags};

mod props;

const MS: u64 = 1_000_000;

fn key() -> FlowKey {
    FlowKey {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        src_port: 40000,
        dst_port: 80,
    }
}

fn seg(seq: u32, flags: u8, payload: &[u8], ts: u64) -> Segment {
    Segment {
        ts,
        vni: 7,
        flow: key(),
        seq,
        ack: 0,
        flags: TcpFlags(flags),
        payload: Bytes::copy_from_slice(payload),
        wire_len: payload.len() as u32,
    }
}

fn syn(isn: u32) -> Segment {
    seg(isn, TcpFlags::SYN, b"", 0)
}

/// What a consumer would reconstruct: data at its offsets, gaps as zero runs; after a rewind,
/// later data overwrites what was delivered at the same offsets.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    data: Vec<u8>,
    /// (offset, len, reason) of each gap.
    gaps: Vec<(u64, u64, GapReason)>,
    /// Offset the stream went back to, for each rewind.
    rewinds: Vec<u64>,
    end: Option<EndReason>,
}

fn put(data: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let pos = pos as usize;
    if data.len() < pos + bytes.len() {
        data.resize(pos + bytes.len(), 0);
    }
    data[pos..pos + bytes.len()].copy_from_slice(bytes);
}

fn collect(events: &[StreamEvent]) -> Outcome {
    let mut o = Outcome::default();
    let mut pos = 0u64;
    for ev in events {
        assert!(o.end.is_none(), "event after End: {ev:?}");
        match ev {
            StreamEvent::Data { bytes, .. } => {
                assert!(!bytes.is_empty(), "empty Data event");
                put(&mut o.data, pos, bytes);
                pos += bytes.len() as u64;
            }
            StreamEvent::Gap { len, reason, .. } => {
                assert!(*len > 0, "empty Gap event");
                o.gaps.push((pos, *len, *reason));
                put(&mut o.data, pos, &vec![0u8; *len as usize]);
                pos += len;
            }
            StreamEvent::Rewind { back, .. } => {
                assert!(*back > 0 && *back <= pos, "rewind by {back} from {pos}");
                pos -= back;
                o.rewinds.push(pos);
            }
            StreamEvent::End { reason, .. } => o.end = Some(*reason),
        }
    }
    o
}

struct Harness {
    stream: Stream,
    cfg: StreamConfig,
    events: Vec<StreamEvent>,
    stats: StreamStats,
}

impl Harness {
    fn new(first: &Segment, cfg: StreamConfig) -> Self {
        let mut h = Self {
            stream: Stream::new(first),
            cfg,
            events: Vec::new(),
            stats: StreamStats::default(),
        };
        h.push(first);
        h
    }
    fn push(&mut self, s: &Segment) {
        self.stream
            .push(s, &self.cfg, &mut self.events, &mut self.stats);
    }
    fn close(&mut self, ts: u64) {
        self.stream
            .close(ts, EndReason::Shutdown, &mut self.events, &mut self.stats);
    }
    fn outcome(&self) -> Outcome {
        collect(&self.events)
    }
}

fn big_cfg() -> StreamConfig {
    StreamConfig {
        reorder_timeout_ns: u64::MAX / 4,
        max_buffered: 64 << 20,
        max_window: 64 << 20,
        syn_data: false,
    }
}

#[test]
fn in_order_stream_is_delivered_without_copies() {
    let mut h = Harness::new(&syn(100), big_cfg());
    let s = seg(
        101,
        TcpFlags::ACK | TcpFlags::PSH,
        b"GET / HTTP/1.1\r\n\r\n",
        1,
    );
    h.push(&s);
    match &h.events[0] {
        StreamEvent::Data { bytes, ts } => {
            assert_eq!(
                bytes.as_ptr(),
                s.payload.as_ptr(),
                "in-order data must be a slice, not a copy"
            );
            assert_eq!(*ts, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    h.push(&seg(119, TcpFlags::FIN | TcpFlags::ACK, b"", 2));
    let o = h.outcome();
    assert_eq!(o.data, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(o.end, Some(EndReason::Fin));
    assert!(o.gaps.is_empty());
    assert_eq!(h.stream.buffered(), 0);
}

#[test]
fn sequence_numbers_wrap() {
    let isn = u32::MAX - 5;
    let mut h = Harness::new(&syn(isn), big_cfg());
    h.push(&seg(isn.wrapping_add(6), TcpFlags::ACK, b"world", 2));
    h.push(&seg(isn.wrapping_add(1), TcpFlags::ACK, b"hello", 1));
    h.push(&seg(
        isn.wrapping_add(11),
        TcpFlags::ACK | TcpFlags::FIN,
        b"!",
        3,
    ));
    let o = h.outcome();
    assert_eq!(o.data, b"helloworld!");
    assert_eq!(o.end, Some(EndReason::Fin));
    assert_eq!(h.stats.out_of_order_segments, 1);
}

#[test]
fn pickup_mid_stream_starts_at_first_segment_and_counts_earlier_bytes() {
    let first = seg(5000, TcpFlags::ACK, b"POST /x HTTP/1.1\r\n", 1);
    let mut h = Harness::new(&first, big_cfg());
    assert!(!h.stream.started_with_syn());
    // A segment from before the pickup point, arriving late.
    h.push(&seg(4990, TcpFlags::ACK, b"0123456789", 2));
    // Overlaps the pickup point: 4 bytes before, 4 after (already delivered).
    h.push(&seg(4996, TcpFlags::ACK, b"6789POST", 3));
    let o = h.outcome();
    assert_eq!(o.data, b"POST /x HTTP/1.1\r\n");
    assert_eq!(h.stats.before_start_bytes, 14);
    assert_eq!(h.stats.duplicate_bytes, 4);
}

#[test]
fn first_copy_wins_and_conflicts_are_counted() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(6, TcpFlags::ACK, b"WORLD", 1)); // buffered out of order
    h.push(&seg(4, TcpFlags::ACK, b"xxwOrLDyy", 2)); // overlaps it with different bytes
    h.push(&seg(1, TcpFlags::ACK, b"abc", 3));
    let o = h.outcome();
    assert_eq!(o.data, b"abcxxWORLDyy");
    assert_eq!(h.stats.conflict_bytes, 2, "w/W and r/R differ, O/L/D agree");
    assert_eq!(h.stats.duplicate_bytes, 5);
}

#[test]
fn hole_is_skipped_after_reorder_timeout_in_capture_time() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 500 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"aaaa", MS));
    h.push(&seg(9, TcpFlags::ACK, b"cccc", 2 * MS)); // bytes 4..8 lost
    h.push(&seg(13, TcpFlags::ACK, b"dddd", 400 * MS));
    assert_eq!(
        h.outcome().data,
        b"aaaa",
        "still waiting within the timeout"
    );
    assert!(h.stream.has_hole());
    // Time passes without segments (a live tick).
    let (mut ev, mut st) = (Vec::new(), StreamStats::default());
    h.stream.tick(503 * MS, &h.cfg, &mut ev, &mut st);
    h.events.extend(ev);
    let o = h.outcome();
    assert_eq!(o.gaps, vec![(4, 4, GapReason::Lost)]);
    assert_eq!(&o.data[8..], b"ccccdddd");
    assert_eq!(st.gaps[0], 1);
    assert_eq!(st.gap_bytes[0], 4);
    assert!(!h.stream.has_hole());
}

#[test]
fn full_buffer_skips_the_hole_and_counts_it() {
    let cfg = StreamConfig {
        max_buffered: 3 * ooo_entry_cost(100),
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    let chunk = [b'z'; 100];
    // Byte 1..101 lost; then 4 chunks out of order overflow a 3-chunk buffer.
    for i in 1..=4u32 {
        h.push(&seg(1 + i * 100, TcpFlags::ACK, &chunk, u64::from(i)));
    }
    let o = h.outcome();
    assert_eq!(o.gaps, vec![(0, 100, GapReason::Lost)]);
    assert_eq!(o.data.len(), 500);
    assert_eq!(h.stats.buffer_full_skips, 1);
    assert_eq!(h.stream.buffered(), 0);
}

#[test]
fn truncated_frame_is_a_gap_at_once_never_data() {
    let mut h = Harness::new(&syn(0), big_cfg());
    let mut s = seg(1, TcpFlags::ACK, b"head", 1);
    s.wire_len = 10; // 6 bytes cut off
    h.push(&s);
    h.push(&seg(11, TcpFlags::ACK, b"next", 2));
    let o = h.outcome();
    assert_eq!(o.gaps, vec![(4, 6, GapReason::Truncated)]);
    assert_eq!(&o.data[..4], b"head");
    assert_eq!(&o.data[10..], b"next");
    assert!(!h.stream.has_hole(), "no waiting for a truncated tail");
}

#[test]
fn truncated_frame_out_of_order_is_skipped_when_reached() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(21, TcpFlags::ACK, b"tail", 2));
    let mut s = seg(11, TcpFlags::ACK, b"mid", 1);
    s.wire_len = 10;
    h.push(&s);
    h.push(&seg(1, TcpFlags::ACK, b"0123456789", 3));
    let o = h.outcome();
    assert_eq!(o.gaps, vec![(13, 7, GapReason::Truncated)]);
    assert_eq!(&o.data[..13], b"0123456789mid");
    assert_eq!(&o.data[20..], b"tail");
}

#[test]
fn rst_flushes_buffered_data_with_a_gap_then_ends() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(1, TcpFlags::ACK, b"ab", 1));
    h.push(&seg(5, TcpFlags::ACK, b"ef", 2));
    h.push(&seg(3, TcpFlags::RST, b"", 3)); // at the next byte
    let o = h.outcome();
    assert_eq!(o.gaps, vec![(2, 2, GapReason::Closed)]);
    assert_eq!(o.end, Some(EndReason::Rst));
    h.push(&seg(3, TcpFlags::ACK, b"cd", 4));
    assert_eq!(h.stats.after_end_segments, 1);
}

#[test]
fn rst_acts_only_at_the_streams_position() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(1, TcpFlags::ACK, b"abcd", 1));
    // Within the window but not where the stream is (RFC 5961): ignored.
    for (i, seq) in [3u32, 100, 70_000, 0].into_iter().enumerate() {
        h.push(&seg(seq, TcpFlags::RST, b"", 2 + i as u64));
    }
    h.push(&seg(5, TcpFlags::ACK, b"efgh", 10));
    assert_eq!(h.outcome().end, None);
    assert_eq!(h.stats.rst_ignored, 4);
    // At the next byte: the stream ends.
    h.push(&seg(9, TcpFlags::RST | TcpFlags::ACK, b"", 11));
    let o = h.outcome();
    assert_eq!(o.data, b"abcdefgh");
    assert_eq!(o.end, Some(EndReason::Rst));
}

#[test]
fn a_rst_past_the_highest_byte_seen_is_ignored_too() {
    // Where the sender's own RST lands when the mirror missed data, but also where an attacker
    // who planted a byte ahead would put one: only the stream's next byte counts.
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(1, TcpFlags::ACK, b"ab", 1));
    h.push(&seg(5, TcpFlags::ACK, b"ef", 2)); // bytes 2..4 missing
    h.push(&seg(5, TcpFlags::RST, b"", 3));
    h.push(&seg(7, TcpFlags::RST, b"", 4));
    assert_eq!(h.outcome().end, None);
    assert_eq!(h.stats.rst_ignored, 2);
}

#[test]
fn a_fin_reached_by_skipping_a_hole_is_forgotten() {
    // A byte and a FIN planted ahead during a pause: after the reordering timeout the hole is
    // skipped, but the FIN reached that way does not end the stream.
    let cfg = StreamConfig {
        reorder_timeout_ns: 100 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"GET / HTTP/1.1\r\n\r\n", MS));
    h.push(&seg(10_001, TcpFlags::ACK | TcpFlags::FIN, b"x", 2 * MS));
    let (mut ev, mut st) = (Vec::new(), StreamStats::default());
    h.stream.tick(500 * MS, &h.cfg, &mut ev, &mut st);
    h.events.extend(ev);
    assert_eq!(h.outcome().end, None);
    assert_eq!(st.fin_ignored, 1);
    // The real stream resumes where it was: rewound, and it goes on.
    h.push(&seg(
        19,
        TcpFlags::ACK,
        b"GET /2 HTTP/1.1\r\n\r\n",
        600 * MS,
    ));
    assert_eq!(h.outcome().rewinds, vec![18]);
    assert_eq!(h.outcome().end, None);
}

#[test]
fn skips_with_nothing_in_order_between_them_are_rewound_as_one() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 100 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"abc", MS));
    // Two plants, each waited out and skipped, during one pause.
    h.push(&seg(1_001, TcpFlags::ACK, b"junk", 2 * MS));
    h.push(&seg(1_005, TcpFlags::ACK, b"more", 200 * MS));
    h.push(&seg(5_001, TcpFlags::ACK, b"junk", 300 * MS));
    h.push(&seg(5_005, TcpFlags::ACK, b"more", 500 * MS));
    assert_eq!(h.outcome().gaps.len(), 2);
    // The real stream resumes where it was, before both.
    h.push(&seg(4, TcpFlags::ACK, b"def", 600 * MS));
    assert_eq!(h.outcome().rewinds, vec![3]);
}

#[test]
fn in_order_data_wins_over_bytes_parked_ahead() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(1, TcpFlags::ACK, b"GET /", 1));
    // Forged bytes planted ahead of the stream, before the real ones arrive.
    h.push(&seg(8, TcpFlags::ACK, b"EVIL", 2));
    h.push(&seg(6, TcpFlags::ACK, b"real HTTP", 3));
    let o = h.outcome();
    assert_eq!(o.data, b"GET /real HTTP");
    assert_eq!(h.stats.conflict_bytes, 4);
    assert_eq!(h.stats.duplicate_bytes, 4);
    assert_eq!(h.stream.buffered(), 0);
    // A buffered entry reaching beyond the in-order segment keeps its tail.
    h.push(&seg(21, TcpFlags::ACK, b"XYZ+tail", 4));
    h.push(&seg(15, TcpFlags::ACK, b"/1.1\r\nab", 5));
    assert_eq!(h.outcome().data, b"GET /real HTTP/1.1\r\nabZ+tail");
    assert_eq!(h.stats.conflict_bytes, 4 + 2, "a/X and b/Y differ");
}

#[test]
fn a_hole_behind_which_the_stream_advances_is_not_skipped() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 100 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    // Bytes planted 1 MiB ahead; the real stream goes on in order for 10 s.
    h.push(&seg(1 + (1 << 20), TcpFlags::ACK, b"planted", MS));
    let mut seq = 1u32;
    for i in 0..100u64 {
        h.push(&seg(
            seq,
            TcpFlags::ACK,
            b"0123456789",
            2 * MS + i * 100 * MS,
        ));
        seq += 10;
    }
    let o = h.outcome();
    assert!(o.gaps.is_empty(), "{:?}", o.gaps);
    assert_eq!(o.data.len(), 1000);
    // Once the stream stops moving, the hole is waited for and skipped as usual.
    let (mut ev, mut st) = (Vec::new(), StreamStats::default());
    h.stream.tick(10_200 * MS, &h.cfg, &mut ev, &mut st);
    h.events.extend(ev);
    assert_eq!(h.outcome().gaps.len(), 1);
}

#[test]
fn a_skip_over_bytes_parked_ahead_is_undone_when_the_stream_resumes() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 100 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"GET /1 HTTP/1.1\r\n\r\n", MS));
    // During the pause between two requests: bytes 64 KiB ahead, and time passes.
    h.push(&seg(1 + 65_536, TcpFlags::ACK, b"junk", 2 * MS));
    h.push(&seg(1 + 65_540, TcpFlags::ACK, b"more", 500 * MS));
    let o = h.outcome();
    assert_eq!(o.gaps.len(), 1, "the pause looked like loss");
    // The real next request arrives where the stream was: the skip was wrong.
    let second = b"GET /2 HTTP/1.1\r\n\r\n";
    h.push(&seg(20, TcpFlags::ACK, second, 2_000 * MS));
    let o = h.outcome();
    assert_eq!(o.rewinds, vec![19]);
    assert_eq!(&o.data[19..19 + second.len()], second);
    assert_eq!(h.stats.rewinds, 1);
    // Only once per skip: a copy of the same bytes later is a duplicate.
    h.push(&seg(20, TcpFlags::ACK, second, 2_001 * MS));
    assert_eq!(h.stats.rewinds, 1);
}

#[test]
fn a_full_buffer_drops_its_farthest_bytes_while_the_stream_advances() {
    let cfg = StreamConfig {
        max_buffered: 3 * ooo_entry_cost(100),
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"abc", 1));
    let chunk = [b'z'; 100];
    // Parked ahead, then the stream moves: from then on a flood of parked bytes cannot make it
    // skip its hole.
    h.push(&seg(10_001, TcpFlags::ACK, &chunk, 2));
    h.push(&seg(4, TcpFlags::ACK, b"def", 3));
    for i in 1..=5u32 {
        h.push(&seg(
            10_001 + i * 100,
            TcpFlags::ACK,
            &chunk,
            3 + u64::from(i),
        ));
    }
    h.push(&seg(7, TcpFlags::ACK, b"ghi", 10));
    let o = h.outcome();
    assert!(o.gaps.is_empty(), "{:?}", o.gaps);
    assert_eq!(o.data, b"abcdefghi");
    assert_eq!(h.stats.pruned_segments, 3);
    assert_eq!(h.stats.buffer_full_skips, 0);
}

#[test]
fn a_fin_ahead_of_the_stream_that_the_stream_runs_past_was_not_the_senders() {
    let mut h = Harness::new(&syn(0), big_cfg());
    h.push(&seg(1, TcpFlags::ACK, b"GET /", 1));
    h.push(&seg(9, TcpFlags::FIN | TcpFlags::ACK, b"", 2));
    h.push(&seg(6, TcpFlags::ACK, b"a HTTP/1.1", 3));
    let o = h.outcome();
    assert_eq!(o.end, None);
    assert_eq!(o.data, b"GET /a HTTP/1.1");
    assert_eq!(h.stats.fin_ignored, 1);
    // The real FIN still ends it.
    h.push(&seg(16, TcpFlags::FIN | TcpFlags::ACK, b"", 4));
    assert_eq!(h.outcome().end, Some(EndReason::Fin));
}

#[test]
fn fin_waits_for_missing_data_then_ends() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 10 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(5, TcpFlags::ACK | TcpFlags::FIN, b"tail", MS));
    assert_eq!(h.outcome().end, None);
    h.push(&seg(1, TcpFlags::ACK, b"head", 2 * MS));
    let o = h.outcome();
    assert_eq!(o.data, b"headtail");
    assert_eq!(o.end, Some(EndReason::Fin));
}

#[test]
fn a_fin_whose_missing_bytes_never_come_is_forgotten_not_skipped_to() {
    let cfg = StreamConfig {
        reorder_timeout_ns: 10 * MS,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg);
    h.push(&seg(1, TcpFlags::ACK, b"ab", MS));
    h.push(&seg(5, TcpFlags::ACK | TcpFlags::FIN, b"", 2 * MS)); // bytes 2..4 never come
    assert!(h.stream.has_hole());
    h.push(&seg(5, TcpFlags::ACK | TcpFlags::FIN, b"", 20 * MS)); // FIN retransmitted later
    let o = h.outcome();
    assert!(o.gaps.is_empty());
    assert_eq!(
        o.end, None,
        "one FIN's word is not enough to end the stream"
    );
    assert_eq!(h.stats.fin_ignored, 1);
    // The stream goes on where it was (a FIN planted ahead during a pause changes nothing).
    h.push(&seg(3, TcpFlags::ACK, b"cdef", 30 * MS));
    assert_eq!(h.outcome().data, b"abcdef");
    // A real end shows as idleness: closing then delivers what there is.
    h.close(60_000 * MS);
    assert_eq!(h.outcome().end, Some(EndReason::Shutdown));
}

#[test]
fn segments_far_outside_the_window_are_dropped() {
    let cfg = StreamConfig {
        max_window: 1 << 20,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(1000), cfg);
    h.push(&seg(1001 + (2 << 20), TcpFlags::ACK, b"far ahead", 1));
    h.push(&seg(
        1001u32.wrapping_sub(3 << 20),
        TcpFlags::ACK,
        b"far behind",
        2,
    ));
    // A spoofed RST far away does not kill the stream.
    h.push(&seg(1001 + (5 << 20), TcpFlags::RST, b"", 3));
    h.push(&seg(1001, TcpFlags::ACK, b"ok", 4));
    let o = h.outcome();
    assert_eq!(o.data, b"ok");
    assert_eq!(o.end, None);
    assert_eq!(h.stats.out_of_window_segments, 3);
    assert_eq!(h.stream.buffered(), 0);
}

#[test]
fn data_in_the_syn_is_delivered_when_the_servers_take_it() {
    // TCP Fast Open: the SYN's bytes are the stream's first, the next segment follows them.
    let mut first = seg(41, TcpFlags::SYN, b"GET", 0);
    first.wire_len = 3;
    let cfg = StreamConfig {
        syn_data: true,
        ..big_cfg()
    };
    let mut h = Harness::new(&first, cfg);
    h.push(&seg(45, TcpFlags::ACK, b" /", 1));
    assert_eq!(h.outcome().data, b"GET /");
    assert_eq!(h.stats.syn_data_bytes, 0);
}

#[test]
fn data_in_the_syn_is_dropped_and_counted_by_default() {
    // A server without Fast Open drops the SYN's bytes; the client sends them again after the
    // handshake, from the byte after the SYN.
    let mut first = seg(41, TcpFlags::SYN, b"XYZ", 0);
    first.wire_len = 3;
    let mut h = Harness::new(&first, big_cfg());
    h.push(&seg(42, TcpFlags::ACK, b"GET /", 1));
    assert_eq!(h.outcome().data, b"GET /");
    assert_eq!(h.stats.syn_data_bytes, 3);
}

#[test]
fn many_tiny_segments_are_bounded_by_entry_overhead() {
    let cfg = StreamConfig {
        max_buffered: 1000 * ooo_entry_cost(1),
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg.clone());
    // Every other byte, out of order: a hostile pattern that never fills the hole.
    for i in 0..5000u32 {
        h.push(&seg(3 + 2 * i, TcpFlags::ACK, b"x", u64::from(i)));
        assert!(h.stream.buffered() <= cfg.max_buffered + MAX_METADATA_BYTES);
    }
    assert!(h.stats.buffer_full_skips > 0);
}

/// Found by the `reassembly` fuzz target once truncated ranges were charged: a stream whose
/// out-of-order buffer sits at its cap also remembers truncated ranges, so what it holds is
/// bounded by the cap plus that metadata, not by the cap alone.
#[test]
fn truncated_ranges_and_a_full_buffer_stay_within_the_documented_bound() {
    let cfg = StreamConfig {
        max_buffered: 400,
        ..big_cfg()
    };
    let mut h = Harness::new(&syn(0), cfg.clone());
    // Many truncated segments beyond a hole (each leaves a range to remember), then data.
    for i in 0..100u32 {
        let mut s = seg(1001 + i * 20, TcpFlags::ACK, b"xx", u64::from(i));
        s.wire_len = 20;
        h.push(&s);
        assert!(
            h.stream.buffered() <= cfg.max_buffered + MAX_METADATA_BYTES,
            "holds {} after segment {i}",
            h.stream.buffered()
        );
    }
}
