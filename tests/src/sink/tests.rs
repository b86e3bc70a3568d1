//! The sink over real loopback connections.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::compare::{compare, compare_with_truth};
use crate::gen::{http, Conversation};

const T: Duration = Duration::from_secs(10);

fn connect(sink: &Sink) -> TcpStream {
    let s = TcpStream::connect(sink.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Writes `bytes` in pieces cut at `cuts`, pausing so the pieces arrive separately.
fn write_split(s: &mut TcpStream, bytes: &[u8], cuts: &[usize]) {
    let mut at = 0;
    for &c in cuts.iter().chain([bytes.len()].iter()) {
        s.write_all(&bytes[at..c]).unwrap();
        s.flush().unwrap();
        thread::sleep(Duration::from_millis(3));
        at = c;
    }
}

#[test]
fn records_exact_bytes_whatever_the_split() {
    let sink = Sink::start_default().unwrap();
    let mut s = connect(&sink);
    let get = http::get_with_id("h", "/split", "1");
    let post = http::post("h", "/p", 3000, 1);
    let chunked = http::chunked_post("h", "/c", &[10, 300], 2);
    let head = chunked.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    write_split(&mut s, &get, &[1, 7, 13, get.len() - 1]);
    write_split(&mut s, &post, &[post.len() - 3001, post.len() - 1500]);
    // In the chunk-size line, inside a chunk, inside the trailers.
    write_split(
        &mut s,
        &chunked,
        &[head + 1, head + 20, chunked.len() - 10, chunked.len() - 1],
    );
    assert_eq!(read_n(&mut s, 3 * OK_RESPONSE.len()), OK_RESPONSE.repeat(3));
    sink.wait_for(3, T).unwrap();
    let got = sink.take();
    assert_eq!(
        got.iter().map(|r| r.raw.clone()).collect::<Vec<_>>(),
        vec![get, post, chunked]
    );
    assert_eq!(
        got.iter()
            .map(|r| (r.connection, r.index))
            .collect::<Vec<_>>(),
        vec![(0, 0), (0, 1), (0, 2)]
    );
    assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(sink.take().is_empty());
    assert_eq!(sink.received(), 3);
    assert_eq!(sink.errors(), vec![]);
}

#[test]
fn pipelined_and_hostile_requests_are_recorded_as_sent() {
    let sink = Sink::start_default().unwrap();
    let mut s = connect(&sink);
    let mut reqs = http::pipelined_gets("h", 3, "x");
    reqs.extend(http::hostile::parseable("h"));
    reqs.extend(http::hostile::malformed("h"));
    reqs.push(http::http10_get("h", "/"));
    reqs.push(b"\r\nGET /after-empty-line HTTP/1.1\nHost: lf-only\n\n".to_vec());
    s.write_all(&reqs.concat()).unwrap();
    assert_eq!(
        read_n(&mut s, reqs.len() * OK_RESPONSE.len()),
        OK_RESPONSE.repeat(reqs.len())
    );
    sink.wait_for(reqs.len(), T).unwrap();
    let got: Vec<Vec<u8>> = sink.take().into_iter().map(|r| r.raw).collect();
    assert_eq!(got, reqs);
}

#[test]
fn many_keep_alive_connections() {
    let sink = Sink::start_default().unwrap();
    let addr = sink.addr();
    let expected: Vec<Vec<u8>> = (0..8)
        .flat_map(|c| {
            (0..10)
                .map(move |i| http::post_with_id("h", "/m", 100 * i, c, Some(&format!("{c}-{i}"))))
        })
        .collect();
    let handles: Vec<_> = (0..8u64)
        .map(|c| {
            let mine: Vec<Vec<u8>> = expected[c as usize * 10..(c as usize + 1) * 10].to_vec();
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(T)).unwrap();
                for r in mine {
                    s.write_all(&r).unwrap();
                    let mut resp = vec![0u8; OK_RESPONSE.len()];
                    s.read_exact(&mut resp).unwrap();
                    assert_eq!(resp, OK_RESPONSE);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    sink.wait_for(80, T).unwrap();
    let got = sink.take();
    assert_eq!(sink.connections(), 8);
    compare(&expected, got.iter().map(|r| &r.raw)).assert_match();
    for c in 0..8 {
        let idx: Vec<usize> = got
            .iter()
            .filter(|r| r.connection == c)
            .map(|r| r.index)
            .collect();
        assert_eq!(idx, (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn close_after_n_requests_announces_and_closes() {
    let sink = Sink::start(SinkConfig {
        close_after: Some(2),
        ..SinkConfig::default()
    })
    .unwrap();
    let mut s = connect(&sink);
    let reqs = http::pipelined_gets("h", 3, "c");
    s.write_all(&reqs.concat()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, [OK_RESPONSE, OK_CLOSE_RESPONSE].concat());
    sink.wait_for(2, T).unwrap();
    assert_eq!(
        sink.take().into_iter().map(|r| r.raw).collect::<Vec<_>>(),
        reqs[..2].to_vec()
    );

    sink.set_close_after(None);
    let mut s = connect(&sink);
    s.write_all(&reqs.concat()).unwrap();
    assert_eq!(read_n(&mut s, 3 * OK_RESPONSE.len()), OK_RESPONSE.repeat(3));
}

#[test]
fn refusing_resets_connections_until_told_otherwise() {
    let sink = Sink::start(SinkConfig {
        refuse: true,
        ..SinkConfig::default()
    })
    .unwrap();
    let mut s = connect(&sink);
    let _ = s.write_all(&http::get("h", "/"));
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("refused connection answered {n} bytes"),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
    }
    assert_eq!(sink.refused(), 1);
    assert_eq!(sink.received(), 0);
    sink.set_refusing(false);
    let mut s = connect(&sink);
    s.write_all(&http::get("h", "/")).unwrap();
    assert_eq!(read_n(&mut s, OK_RESPONSE.len()), OK_RESPONSE);
    assert_eq!(sink.connections(), 2);

    let nobody = unused_local_addr().unwrap();
    assert_eq!(
        TcpStream::connect(nobody).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn reset_connections_resets_the_open_ones_and_only_those() {
    let sink = Sink::start_default().unwrap();
    let mut old = connect(&sink);
    old.write_all(&http::get("h", "/before")).unwrap();
    assert_eq!(read_n(&mut old, OK_RESPONSE.len()), OK_RESPONSE);
    sink.reset_connections();
    let mut buf = [0u8; 16];
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = old.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    // A connection made afterwards is served as usual.
    let mut new = connect(&sink);
    new.write_all(&http::get("h", "/after")).unwrap();
    assert_eq!(read_n(&mut new, OK_RESPONSE.len()), OK_RESPONSE);
    assert_eq!(sink.received(), 2);
    assert!(sink.errors().is_empty(), "{:?}", sink.errors());
}

#[test]
fn slow_answers_wait_before_responding() {
    let sink = Sink::start(SinkConfig {
        response_delay: Duration::from_millis(150),
        ..SinkConfig::default()
    })
    .unwrap();
    let mut s = connect(&sink);
    let start = Instant::now();
    s.write_all(&http::get("h", "/slow")).unwrap();
    assert_eq!(read_n(&mut s, OK_RESPONSE.len()), OK_RESPONSE);
    assert!(start.elapsed() >= Duration::from_millis(150));
    // The request is recorded on arrival, before the answer.
    assert_eq!(sink.received(), 1);
}

#[test]
fn hanging_and_garbage_answers_until_told_otherwise() {
    let sink = Sink::start(SinkConfig {
        answer: Answer::Hang,
        ..SinkConfig::default()
    })
    .unwrap();
    let mut s = connect(&sink);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(&http::get("h", "/hang")).unwrap();
    let mut b = [0u8; 1];
    let e = s.read(&mut b).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(sink.received(), 1, "recorded, not answered");
    sink.set_answer(Answer::Garbage);
    s.write_all(&http::get("h", "/garbage")).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    assert_eq!(read_n(&mut s, GARBAGE_RESPONSE.len()), GARBAGE_RESPONSE);
    sink.set_answer(Answer::Ok);
    s.write_all(&http::get("h", "/ok")).unwrap();
    assert_eq!(read_n(&mut s, OK_RESPONSE.len()), OK_RESPONSE);
    assert_eq!(sink.received(), 3);
    assert!(sink.errors().is_empty(), "{:?}", sink.errors());
}

#[test]
fn expect_continue_gets_an_interim_answer_when_enabled() {
    let sink = Sink::start(SinkConfig {
        send_continue: true,
        ..SinkConfig::default()
    })
    .unwrap();
    let mut s = connect(&sink);
    let req = http::expect_continue_post("h", "/e", 40, 1);
    let head = http::expect_continue_split(&req).unwrap();
    s.write_all(&req[..head]).unwrap();
    assert_eq!(read_n(&mut s, 25), b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(&req[head..]).unwrap();
    assert_eq!(read_n(&mut s, OK_RESPONSE.len()), OK_RESPONSE);
    sink.wait_for(1, T).unwrap();
    assert_eq!(sink.take()[0].raw, req);

    // Without the option, nothing is sent until the request is whole.
    let quiet = Sink::start_default().unwrap();
    let mut s = connect(&quiet);
    s.write_all(&req).unwrap();
    assert_eq!(read_n(&mut s, OK_RESPONSE.len()), OK_RESPONSE);
}

#[test]
fn unframeable_and_incomplete_requests_are_reported() {
    let sink = Sink::start_default().unwrap();
    let mut s = connect(&sink);
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let mut s = connect(&sink);
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    drop(s);
    let deadline = Instant::now() + T;
    while sink.errors().len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let mut errors = sink.errors();
    errors.sort_by_key(|e| e.connection);
    assert_eq!(
        errors
            .iter()
            .map(|e| (e.connection, e.kind.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                0,
                ConnectionErrorKind::Framing(FramingError::BadContentLength("abc".into()))
            ),
            (1, ConnectionErrorKind::Incomplete { bytes: 42 }),
        ]
    );
    assert_eq!(
        errors[1].excerpt,
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    );
    assert_eq!(sink.received(), 0);
}

#[test]
fn wait_for_times_out_with_counts() {
    let sink = Sink::start_default().unwrap();
    let err = sink.wait_for(2, Duration::from_millis(30)).unwrap_err();
    assert_eq!((err.expected, err.received), (2, 0));
    assert!(err.waited >= Duration::from_millis(30));
    let mut s = connect(&sink);
    s.write_all(&http::get("h", "/")).unwrap();
    read_n(&mut s, OK_RESPONSE.len());
    assert_eq!(sink.wait_quiet(Duration::from_millis(30), T), 1);
    sink.shutdown();
}

#[test]
fn comparison_with_generator_truth_over_two_connections() {
    let reqs: Vec<Vec<u8>> = (0..6)
        .map(|i| http::post_with_id("h", "/t", 2000, i, Some(&i.to_string())))
        .collect();
    // A hole in request 2: it must not arrive.
    let plan = Conversation::new(
        "10.0.0.1:1000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    )
    .requests(reqs.clone(), &http::ok_response(0))
    .drop_client_segment(4)
    .build()
    .unwrap();
    assert_eq!(plan.truth.affected(), vec![2]);
    let truths = vec![plan.truth.clone()];

    let sink = Sink::start_default().unwrap();
    let mut a = connect(&sink);
    let mut b = connect(&sink);
    a.write_all(&[reqs[5].clone(), reqs[0].clone(), reqs[3].clone()].concat())
        .unwrap();
    b.write_all(&[reqs[4].clone(), reqs[1].clone()].concat())
        .unwrap();
    read_n(&mut a, 3 * OK_RESPONSE.len());
    read_n(&mut b, 2 * OK_RESPONSE.len());
    sink.wait_for(5, T).unwrap();
    compare_with_truth(&truths, &sink.requests()).assert_match();

    // A duplicate, a missing one and a damaged one are each named.
    let mut damaged = reqs[2].clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x20;
    b.write_all(&[reqs[1].clone(), damaged].concat()).unwrap();
    read_n(&mut b, 2 * OK_RESPONSE.len());
    sink.wait_for(7, T).unwrap();
    let mut got = sink.requests();
    got.retain(|r| r.raw != reqs[4]);
    let c = compare_with_truth(&truths, &got);
    assert_eq!(
        c.missing
            .iter()
            .map(|d| d.bytes.clone())
            .collect::<Vec<_>>(),
        vec![reqs[4].clone()]
    );
    assert_eq!(
        c.duplicated
            .iter()
            .map(|d| (d.bytes.clone(), d.count))
            .collect::<Vec<_>>(),
        vec![(reqs[1].clone(), 1)]
    );
    assert_eq!(c.unexpected.len(), 1);
    let text = c.to_string();
    assert!(
        text.starts_with("expected 5 requests, received 6: 1 missing, 1 unexpected, 1 duplicated"),
        "{text}"
    );
}
