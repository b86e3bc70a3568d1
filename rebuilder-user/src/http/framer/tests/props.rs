//! Properties over generated streams: any split into events frames the same requests, and
//! hostile streams (with or without gaps) stay within the memory bounds.

use super::*;

/// One generated request: its bytes and what the framer must report about it.
#[derive(Clone, Debug)]
struct Expected {
    raw: Vec<u8>,
    method: &'static str,
    target: String,
    host: String,
    head_len: usize,
    version_minor: u8,
}

fn arb_target() -> impl Strategy<Value = String> {
    "/[a-zA-Z0-9_.~%=&?/-]{0,40}"
}

fn arb_host() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{1,20}"
}

fn arb_chunk() -> impl Strategy<Value = (Vec<u8>, u8)> {
    (prop::collection::vec(any::<u8>(), 1..40), 0u8..4)
}

fn arb_request() -> impl Strategy<Value = Expected> {
    prop_oneof![
        (arb_target(), arb_host(), any::<bool>()).prop_map(|(target, host, v10)| {
            let minor = u8::from(!v10);
            let head =
                format!("GET {target} HTTP/1.{minor}\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
            Expected {
                head_len: head.len(),
                raw: head.into_bytes(),
                method: "GET",
                target,
                host,
                version_minor: minor,
            }
        }),
        (
            arb_target(),
            arb_host(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(target, host, body)| {
                let head = format!(
                    "POST {target} HTTP/1.1\r\nhost: {host}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let head_len = head.len();
                let mut raw = head.into_bytes();
                raw.extend_from_slice(&body);
                Expected {
                    raw,
                    method: "POST",
                    target,
                    host,
                    head_len,
                    version_minor: 1,
                }
            }),
        (
            arb_target(),
            arb_host(),
            prop::collection::vec(arb_chunk(), 0..5),
            prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3)
        )
            .prop_map(|(target, host, chunks, trailers)| {
                let head = format!(
                    "PUT {target} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: {host}\r\n\r\n"
                );
                let head_len = head.len();
                let mut raw = head.into_bytes();
                for (data, style) in &chunks {
                    let size = match style {
                        0 => format!("{:x}\r\n", data.len()),
                        1 => format!("000{:X}\r\n", data.len()),
                        2 => format!("{:x};name=value;flag\r\n", data.len()),
                        _ => format!("{:x} ;q=\"quoted;str\"\r\n", data.len()),
                    };
                    raw.extend_from_slice(size.as_bytes());
                    raw.extend_from_slice(data);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0;end\r\n");
                for t in &trailers {
                    raw.extend_from_slice(t.as_bytes());
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"\r\n");
                Expected {
                    raw,
                    method: "PUT",
                    target,
                    host,
                    head_len,
                    version_minor: 1,
                }
            }),
    ]
}

/// Cuts `input` at the given points into events with timestamps 1, 2, ...; returns the
/// events and each event's byte range.
fn split(input: &[u8], cuts: &[prop::sample::Index]) -> Vec<(std::ops::Range<usize>, u64)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[0]..w[1], i as u64 + 1))
        .collect()
}

fn ts_of(events: &[(std::ops::Range<usize>, u64)], offset: usize) -> u64 {
    events
        .iter()
        .find(|(r, _)| r.contains(&offset))
        .map(|(_, ts)| *ts)
        .unwrap()
}

/// Pieces of hostile or broken streams: valid requests, cut requests, heads httparse
/// refuses, bad chunk sizes, lone line endings, other protocols' openings, random bytes.
fn arb_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_request().prop_map(|r| r.raw),
        (arb_request(), any::<prop::sample::Index>()).prop_map(|(r, i)| {
            let cut = i.index(r.raw.len());
            r.raw[..cut].to_vec()
        }),
        Just(b"GET /a b HTTP/1.1\r\nX: \x00\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec()),
        Just(b"GET /u HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        Just(vec![0x16, 0x03, 0x01]),
        prop::collection::vec(any::<u8>(), 0..64),
        "[A-Z]{1,6} /[ -~]{0,20} HTTP/1\\.[01]\r?\n([A-Za-z-]{1,12}: [ -~]{0,20}\r?\n){0,6}\r?\n"
            .prop_map(String::into_bytes),
    ]
}

fn tight_limits() -> HttpLimits {
    HttpLimits {
        max_head_bytes: 160,
        max_headers: 4,
        max_body_bytes: 64,
        h2_max_table_size: 16,
        h2_max_streams: 1,
        ..Default::default()
    }
}

/// What a stream that turned HTTP/2 (the preface is among the pieces) may hold beyond an
/// HTTP/1.x one under `tight_limits`: the HPACK table's charge, a header block and the frame
/// being read (each at most `max_head_bytes`), one open stream (fields and trailers, each at
/// most `max_head_bytes` by RFC size and about four times that in allocations, its body, and
/// its table entry).
const H2_TIGHT_EXTRA: usize = 3 * 16 + 160 + 160 + 8 * 160 + 64 + 256;

type Range = std::ops::Range<usize>;
type Shape = (Bytes, usize, Range, Range, Option<Range>, u64, RequestFlags);

/// What must not depend on how the stream was cut into events.
fn shape(r: &RebuiltRequest) -> Shape {
    let (m, t, h) = (r.method.clone(), r.target.clone(), r.host.clone());
    (r.raw.clone(), r.head_len, m, t, h, r.body_len, r.flags)
}

fn check_record(r: &RebuiltRequest, input: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(r.head_len <= r.raw.len());
    prop_assert!(r.method.end <= r.head_len && r.target.end <= r.head_len);
    prop_assert!(r.host.as_ref().is_none_or(|h| h.end <= r.head_len));
    prop_assert!(!r.method.is_empty() && !r.target.is_empty());
    if !r.flags.body_over_limit {
        // Exactly bytes the client sent, in one piece.
        prop_assert!(memchr::memmem::find(input, &r.raw).is_some());
        prop_assert_eq!(r.body_len, (r.raw.len() - r.head_len) as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_frames_the_same_requests(
        reqs in prop::collection::vec(arb_request(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| r.raw.iter().copied()).collect();
        let events = split(&input, &cuts);
        let mut run = Run::start();
        for (range, ts) in &events {
            run.data(&input[range.clone()], *ts);
        }
        prop_assert_eq!(run.out.len(), reqs.len());
        let mut offset = 0;
        for (got, want) in run.out.iter().zip(&reqs) {
            prop_assert_eq!(&got.raw[..], &want.raw[..]);
            prop_assert_eq!(got.method_bytes(), want.method.as_bytes());
            prop_assert_eq!(got.target_bytes(), want.target.as_bytes());
            prop_assert_eq!(got.host_bytes(), Some(want.host.as_bytes()));
            prop_assert_eq!(got.head_len, want.head_len);
            prop_assert_eq!(got.body_len, (want.raw.len() - want.head_len) as u64);
            prop_assert_eq!(got.version_minor, want.version_minor);
            prop_assert_eq!(got.flags, RequestFlags::default());
            prop_assert_eq!(got.first_ts, ts_of(&events, offset));
            prop_assert_eq!(got.last_ts, ts_of(&events, offset + want.raw.len() - 1));
            offset += want.raw.len();
        }
        prop_assert_eq!(run.stats.requests, reqs.len() as u64);
        prop_assert_eq!(run.framer.buffered_bytes(), 0);
    }

    #[test]
    fn pickup_after_any_junk_and_split_finds_the_requests(
        junk in prop::collection::vec("[a-z ]{0,30}", 1..5),
        reqs in prop::collection::vec(arb_request(), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut input: Vec<u8> = junk.join("\r\n").into_bytes();
        input.extend_from_slice(b"\r\n");
        let junk_len = input.len();
        input.extend(reqs.iter().flat_map(|r| r.raw.iter().copied()));
        let mut run = Run::new(HttpLimits::default(), false);
        for (range, ts) in split(&input, &cuts) {
            run.data(&input[range], ts);
        }
        let raws: Vec<&[u8]> = reqs.iter().map(|r| &r.raw[..]).collect();
        prop_assert_eq!(run.raws(), raws);
        prop_assert_eq!(run.stats.resync_skipped_bytes, junk_len as u64);
    }

    #[test]
    fn hostile_streams_frame_the_same_at_any_split_within_bounds(
        pieces in prop::collection::vec(arb_piece(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        at_start in any::<bool>(),
    ) {
        let input = pieces.concat();
        let mut whole = Run::new(tight_limits(), at_start);
        whole.data(&input, 1);
        let mut run = Run::new(tight_limits(), at_start);
        let bound = 160 + 64 + H2_TIGHT_EXTRA;
        // A segment boundary is a request-start candidate by design (resync), so only a cut
        // that cannot start a method token or a status line (uppercase) leaves the framing
        // unchanged; those are the cuts this property varies.
        let cuts: Vec<_> = cuts
            .into_iter()
            .filter(|c| !input.get(c.index(input.len() + 1)).is_some_and(u8::is_ascii_uppercase))
            .collect();
        for (range, ts) in split(&input, &cuts) {
            run.data(&input[range], ts);
            prop_assert!(run.framer.buffered_bytes() <= bound);
        }
        let a: Vec<_> = whole.out.iter().map(shape).collect();
        let b: Vec<_> = run.out.iter().map(shape).collect();
        prop_assert_eq!(a, b);
        prop_assert_eq!(&whole.stats, &run.stats);
        for r in &run.out {
            check_record(r, &input)?;
        }
    }

    #[test]
    fn hostile_streams_with_gaps_stay_sane(
        pieces in prop::collection::vec(arb_piece(), 1..8),
        events in prop::collection::vec((any::<prop::sample::Index>(), 0u64..40, any::<bool>()), 0..16),
    ) {
        let input = pieces.concat();
        let mut run = Run::new(tight_limits(), true);
        let mut points: Vec<(usize, u64, bool)> = events.iter().map(|(i, len, gap)| (i.index(input.len() + 1), *len, *gap)).collect();
        points.sort_unstable();
        let mut at = 0;
        for (ts, (p, len, gap)) in points.into_iter().enumerate() {
            run.data(&input[at..p], ts as u64);
            at = p;
            if gap {
                run.gap(len, ts as u64);
            }
            prop_assert!(run.framer.buffered_bytes() <= 160 + 64 + H2_TIGHT_EXTRA);
        }
        run.data(&input[at..], 99);
        run.end();
        prop_assert!(run.framer.is_done());
        prop_assert_eq!(run.framer.buffered_bytes(), 0);
        for r in &run.out {
            check_record(r, &input)?;
        }
    }
}
