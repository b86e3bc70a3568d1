//! What reaches the upstream and on which connection: exact bytes, added headers, a pool's
//! concurrency, keep-alive reuse and its races, invalid responses, gap requests.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_byte_exact_on_one_reused_connection() {
    let sink = sink(Behaviour::Answer).await;
    let rig = rig(cfg(sink.addr, 1), Mode::Live);
    let reqs = varied_requests();
    for r in &reqs {
        // One at a time so that order on the single connection is the submission order.
        let before = sink.answered().len();
        rig.outputs.submit(Arc::clone(r));
        eventually("the answer", || sink.answered().len() == before + 1).await;
    }
    let expected: Vec<u8> = reqs.iter().flat_map(|r| r.raw.to_vec()).collect();
    assert_eq!(sink.state.received.lock().unwrap().concat(), expected);
    assert_eq!(
        sink.answered()
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>(),
        reqs.iter().map(|r| r.raw.to_vec()).collect::<Vec<_>>()
    );
    assert_eq!(
        sink.accepted(),
        1,
        "one keep-alive connection for everything"
    );
    eventually("metrics", || rig.replayed() == reqs.len() as f64).await;
    assert_eq!(
        rig.metric("rebuilder_upstream_responses_total{class=\"2xx\"}"),
        reqs.len() as f64
    );
    assert_eq!(
        rig.metric("rebuilder_upstream_connections_opened_total"),
        1.0
    );
    assert_eq!(
        rig.metric("rebuilder_upstream_latency_seconds_count"),
        reqs.len() as f64
    );
    assert_eq!(rig.health.check(), Ok(()));
    let report = rig.outputs.drain(Duration::from_secs(5)).await;
    assert_eq!(
        report.outputs,
        vec![crate::output::OutputDrain {
            output: "upstream",
            finished: true,
            abandoned: 0
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_headers_arrive_and_body_is_untouched() {
    let sink = sink(Behaviour::Answer).await;
    let mut c = cfg(sink.addr, 1);
    c.client_ip_header = Some(crate::output::DEFAULT_CLIENT_IP_HEADER.into());
    c.vni_header = Some(crate::output::DEFAULT_VNI_HEADER.into());
    let rig = rig(c, Mode::Live);
    rig.outputs.submit(request_from(
        b"POST /p HTTP/1.1\r\nHost: orig\r\nx-forwarded-for: 1.1.1.1\r\nContent-Length: 4\r\n\r\nbody",
        "[2001:db8::5]:5555",
        99,
    ));
    eventually("the answer", || sink.answered().len() == 1).await;
    assert_eq!(
        String::from_utf8(sink.answered()[0].1.clone()).unwrap(),
        "POST /p HTTP/1.1\r\nHost: orig\r\nx-forwarded-for: 1.1.1.1, 2001:db8::5\r\nContent-Length: 4\r\nX-Mirror-VNI: 99\r\n\r\nbody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_runs_requests_concurrently() {
    let sink = sink(Behaviour::Slow(Duration::from_millis(200))).await;
    let rig = rig(cfg(sink.addr, 4), Mode::Live);
    for i in 0..8 {
        rig.outputs.submit(request(
            format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        ));
    }
    eventually("8 answers", || sink.answered().len() == 8).await;
    assert_eq!(sink.state.max_active.load(Ordering::SeqCst), 4);
    assert_eq!(sink.accepted(), 4);
    let mut targets: Vec<String> = sink
        .answered()
        .iter()
        .map(|(_, r)| {
            String::from_utf8_lossy(r)
                .split(' ')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, (0..8).map(|i| format!("/{i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_keep_alive_loses_nothing() {
    // The close races the request: the retry path proper.
    let sink = sink(Behaviour::CloseOnSecond).await;
    let rig = rig(cfg(sink.addr, 1), Mode::Live);
    for i in 0..5 {
        let before = sink.answered().len();
        rig.outputs.submit(request(
            format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        ));
        eventually("the answer", || sink.answered().len() == before + 1).await;
    }
    let answered = sink.answered();
    assert_eq!(answered.len(), 5);
    // Each request after the first went out on a reused connection that was closed under
    // it, and was resent on a fresh one.
    assert_eq!(
        answered.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    eventually("metrics", || rig.replayed() == 5.0).await;
    assert_eq!(rig.metric("rebuilder_upstream_stale_retries_total"), 4.0);
    assert_eq!(rig.dropped("upstream_error"), 0.0);

    // The close happens while idle, well before the next request.
    let sink = self::sink(Behaviour::CloseIdle(Duration::from_millis(20))).await;
    let rig = self::rig(cfg(sink.addr, 1), Mode::Live);
    for i in 0..4 {
        let before = sink.answered().len();
        rig.outputs.submit(request(
            format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        ));
        eventually("the answer", || sink.answered().len() == before + 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sink.answered().len(), 4);
    assert_eq!(sink.accepted(), 4);
    eventually("metrics", || rig.replayed() == 4.0).await;
    assert_eq!(rig.dropped("upstream_error"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_response_is_an_error_and_reconnects() {
    let sink = sink(Behaviour::Garbage).await;
    let rig = rig(cfg(sink.addr, 1), Mode::Live);
    rig.outputs.submit(request(b"GET /1 HTTP/1.1\r\n\r\n"));
    eventually("first error", || rig.errors("invalid_response") == 1.0).await;
    rig.outputs.submit(request(b"GET /2 HTTP/1.1\r\n\r\n"));
    eventually("second error", || rig.errors("invalid_response") == 2.0).await;
    assert_eq!(sink.accepted(), 2);
    assert_eq!(rig.dropped("upstream_error"), 2.0);
    assert_eq!(
        sink.state.received.lock().unwrap().concat(),
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_requests_are_never_sent() {
    let sink = sink(Behaviour::Answer).await;
    let rig = rig(cfg(sink.addr, 1), Mode::Live);
    let mut gap = (*request(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial")).clone();
    gap.flags.gap = true;
    rig.outputs.submit(Arc::new(gap));
    rig.outputs.submit(request(b"GET /whole HTTP/1.1\r\n\r\n"));
    let report = rig.outputs.drain(Duration::from_secs(5)).await;
    assert!(report.finished(), "{report:?}");
    assert_eq!(
        sink.state.received.lock().unwrap().concat(),
        b"GET /whole HTTP/1.1\r\n\r\n"
    );
    assert_eq!(rig.dropped("gap"), 1.0);
    assert_eq!(rig.replayed(), 1.0);
}
