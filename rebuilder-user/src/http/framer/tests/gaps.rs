//! Holes and pickups: what a gap does to the request it cuts, and how framing finds the next
//! request (resynchronisation), including streams that turn out to be the server's.

use super::*;

#[test]
fn gap_in_head_drops_and_resyncs() {
    let mut run = Run::start();
    run.data(b"GET /cut HTTP/1.1\r\nHo", 1)
        .gap(10, 2)
        .data(b"st: x\r\n\r\n", 3)
        .data(NEXT, 4);
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.dropped_gap, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 9);
}

#[test]
fn gap_in_content_length_body_continues_after_the_body() {
    let head = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    let mut run = Run::start();
    run.data(&cat(&[head, b"01234"]), 1)
        .gap(3, 2)
        .data(&cat(&[b"89", NEXT]), 3);
    assert_eq!(run.raws(), vec![&cat(&[head, b"01234"])[..], NEXT]);
    let r = &run.out[0];
    assert!(r.flags.gap && !r.is_replayable());
    assert_eq!((r.body_len, r.last_ts), (5, 1));
    assert!(!run.out[1].flags.gap);
    assert_eq!(run.stats.dropped_gap, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 0);
}

#[test]
fn gap_past_the_end_of_a_content_length_body_resyncs() {
    let head = b"POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
    let mut run = Run::start();
    run.data(&cat(&[head, b"01"]), 1)
        .gap(7, 2)
        .data(b"et /lost HTTP/1.1\r\n\r\n", 3)
        .data(NEXT, 4);
    assert_eq!(run.out.len(), 2);
    assert!(run.out[0].flags.gap);
    assert_eq!(&run.out[1].raw[..], NEXT);
    assert_eq!(run.stats.resync_skipped_bytes, 21);
}

#[test]
fn gap_in_chunked_body_emits_what_arrived_and_resyncs() {
    let head = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut run = Run::start();
    run.data(&cat(&[head, b"5\r\nhel"]), 1)
        .gap(2, 2)
        .data(&cat(&[b"\r\n0\r\n\r\n", NEXT]), 3);
    assert_eq!(run.raws(), vec![&cat(&[head, b"5\r\nhel"])[..], NEXT]);
    assert!(run.out[0].flags.gap);
    assert_eq!(run.out[0].body_len, 6);
    assert_eq!(run.stats.dropped_gap, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 7);
}

#[test]
fn gap_while_idle_resyncs_without_a_drop() {
    let mut run = Run::start();
    run.data(GET, 1).gap(100, 2).data(NEXT, 3);
    assert_eq!(run.raws(), vec![GET, NEXT]);
    assert_eq!(run.stats.dropped_gap, 0);
    assert_eq!(run.stats.resync_skipped_bytes, 0);
}

#[test]
fn pickup_mid_stream_skips_to_the_next_request() {
    let junk = b"dy of an earlier request\r\nmore body, no newline at end: GET / HTTP/1.1 ";
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(junk, 1).data(b"\n", 2).data(GET, 3);
    assert_eq!(run.raws(), vec![GET]);
    assert_eq!(run.stats.resync_skipped_bytes, junk.len() as u64 + 1);
    assert_eq!(run.out[0].first_ts, 3);
}

#[test]
fn pickup_at_a_request_start_skips_nothing() {
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(&GET[..10], 1).data(&GET[10..], 2).data(POST, 3);
    assert_eq!(run.raws(), vec![GET, POST]);
    assert_eq!(run.stats.resync_skipped_bytes, 0);
    assert_eq!((run.out[0].first_ts, run.out[0].last_ts), (1, 2));
}

/// Found by the `http` fuzz target: while resynchronising, a line that could by then only
/// be a status line (`HTTP/1` fails as a method at the `/`) was still held in the buffer,
/// past `max_head_bytes`.
#[test]
fn status_line_candidate_is_not_held_past_the_head_limit() {
    let limits = HttpLimits {
        max_head_bytes: 4,
        ..Default::default()
    };
    let mut run = Run::new(limits, false);
    run.data(b"x\nHTTP/1", 1);
    assert!(
        run.framer.buffered_bytes() <= 4,
        "holds {}",
        run.framer.buffered_bytes()
    );
    run.data(b".1 200 OK\r\n", 2);
    assert_eq!(run.stats.response_streams, 1);
    assert_eq!(run.stats.resync_skipped_bytes, 2 + 12);
    assert!(run.framer.is_done());
}

#[test]
fn status_line_candidate_cut_by_a_gap_is_counted() {
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(b"HTTP/1.", 1).gap(5, 2).data(NEXT, 3);
    assert_eq!(run.raws(), vec![NEXT]);
    assert_eq!(run.stats.resync_skipped_bytes, 7);
    assert_eq!(run.stats.response_streams, 0);
}

#[test]
fn pickup_of_a_response_stream_gives_up() {
    let input = b"ent-Type: text/html\r\n\r\n<html>GET / HTTP/1.1</html>\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let status_at = memchr::memmem::find(input, b"HTTP/1.1 200").unwrap();
    for cut in 0..=input.len() {
        let mut run = Run::new(HttpLimits::default(), false);
        run.data(&input[..cut], 1)
            .data(&input[cut..], 2)
            .data(GET, 3);
        assert!(run.out.is_empty());
        assert_eq!(run.stats.response_streams, 1);
        assert_eq!(run.stats.resync_skipped_bytes, status_at as u64 + 12);
        assert!(run.framer.is_done());
    }
}

#[test]
fn status_lines_in_a_client_stream_do_not_end_it() {
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(GET, 1)
        .gap(5, 2)
        .data(b"HTTP/1.1 200 OK\r\n", 3)
        .data(NEXT, 4);
    assert_eq!(run.raws(), vec![GET, NEXT]);
    assert_eq!(run.stats.response_streams, 0);
    assert!(!run.framer.is_done());
}

#[test]
fn pickup_inside_a_body_resyncs_at_the_next_segment_start() {
    // Picked up in the tail of a POST body that does not end a line: the next request
    // starts a segment, not a line, and must still be found.
    let next = b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz".to_vec();
    let mut run = Run::new(HttpLimits::default(), false);
    run.data(b"tail of a body, no newline", 1);
    run.data(&next, 2);
    run.data(&next, 3);
    assert_eq!(run.raws(), vec![&next[..], &next[..]]);
    assert_eq!(run.stats.resync_skipped_bytes, 26);
    // Inside one segment, a request line after body bytes is not a candidate: a body that
    // merely contains such text is not taken for a request.
    let mut run = Run::new(HttpLimits::default(), false);
    let mut joined = b"body bytes ".to_vec();
    joined.extend_from_slice(&next);
    run.data(&joined, 1);
    assert!(run.out.is_empty());
}
