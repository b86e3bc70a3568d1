//! The keep-alive client checked against local servers: response framing, HEAD, pipelining,
//! and the errors it reports.

use super::*;
use std::net::TcpListener;

#[test]
fn frames_responses_by_length_chunks_and_status() {
    let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
    assert_eq!(
        frame_response(cl, false),
        Ok(Framed::Whole {
            len: 41,
            status: 200
        })
    );
    assert_eq!(
        frame_response(cl, true),
        Ok(Framed::Whole {
            len: 38,
            status: 200
        })
    );
    assert_eq!(frame_response(&cl[..40], false), Ok(Framed::Partial));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(
        frame_response(chunked, false),
        Ok(Framed::Whole {
            len: chunked.len(),
            status: 200
        })
    );
    assert_eq!(
        frame_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP", false),
        Ok(Framed::Whole {
            len: 25,
            status: 100
        })
    );
    assert_eq!(
        frame_response(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            false
        ),
        Ok(Framed::Whole {
            len: 46,
            status: 204
        })
    );
    assert_eq!(
        frame_response(b"HTTP/1.0 200 OK\r\n\r\nbody", false),
        Ok(Framed::ToClose)
    );
    assert!(frame_response(b"SSH-2.0-x\r\n\r\n", false).is_err());
    assert!(frame_response(b"HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
}

#[test]
fn head_requests_are_recognised_after_leading_empty_lines() {
    assert!(is_head(b"HEAD / HTTP/1.1\r\n\r\n"));
    assert!(is_head(b"\r\nHEAD / HTTP/1.1\r\n\r\n"));
    assert!(!is_head(b"HEADER / HTTP/1.1\r\n\r\n"));
    assert!(!is_head(b"GET / HTTP/1.1\r\n\r\n"));
}

/// Over loopback: pipelining, pieces and Expect: 100-continue against a tiny server that
/// records what it got.
#[test]
fn sends_exact_bytes_and_reads_every_response() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(n) = framer::frame_request(&buf, 1 << 20, 1 << 20).unwrap() {
                got.push(buf.drain(..n).collect::<Vec<u8>>());
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                )
                .unwrap();
            }
            if let Ok(Some(h)) = framer::parse_head(&buf, 1 << 20) {
                if h.expect_continue && buf.len() == h.len {
                    s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                }
            }
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                return got;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    });
    let requests = [
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /d HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
            .to_vec(),
    ];
    let plan = ConnectionPlan::new(requests[..3].to_vec())
        .pipelined(2)
        .in_pieces(7, Duration::from_millis(1));
    let stream = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = run_connection(stream.try_clone().unwrap(), 3, &plan, deadline).unwrap();
    assert_eq!(out.responses.len(), 3);
    assert!(out.responses.iter().all(|r| r.status == 200 && r.len == 59));
    assert_eq!(
        out.sent
            .iter()
            .map(|s| (s.connection, s.index))
            .collect::<Vec<_>>(),
        vec![(3, 0), (3, 1), (3, 2)]
    );
    drop(stream);
    let got = server.join().unwrap();
    assert_eq!(got, requests[..3].to_vec());

    // Expect: 100-continue, alone in flight.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = vec![0u8; 256];
        let n = s.read(&mut head).unwrap();
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let mut body = [0u8; 2];
        s.read_exact(&mut body).unwrap();
        s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        (n, body)
    });
    let plan = ConnectionPlan::new(vec![requests[3].clone()]);
    let out = run_connection(TcpStream::connect(addr).unwrap(), 0, &plan, deadline).unwrap();
    assert_eq!(
        out.responses,
        vec![Response {
            status: 201,
            len: 43
        }]
    );
    let (head_len, body) = server.join().unwrap();
    assert_eq!(
        head_len,
        requests[3].len() - 2,
        "the body waited for 100 Continue"
    );
    assert_eq!(&body, b"hi");
}

#[test]
fn a_server_that_goes_silent_is_a_timeout_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    let (_held, _) = listener.accept().unwrap();
    let plan = ConnectionPlan::new(vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]);
    let t = Instant::now();
    let err = run_connection(
        stream,
        0,
        &plan,
        Instant::now() + Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { connection: 0, .. }),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_early_close_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
    });
    let plan = ConnectionPlan::new(vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]);
    let err = run_connection(
        TcpStream::connect(addr).unwrap(),
        1,
        &plan,
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(
            err,
            ClientError::ClosedEarly {
                connection: 1,
                responses: 0
            }
        ),
        "{err}"
    );
}
