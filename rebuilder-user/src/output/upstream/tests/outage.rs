//! An upstream that is dead, hangs or goes away: bounded cost while it is, the backoff and
//! breaker, and how soon replay resumes once it is back.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_bounded_and_recovers() {
    // A port with nothing listening.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = cfg(addr, 4);
    c.queue_requests = 50;
    let rig = rig(c, Mode::Live);
    let req = request(b"GET /dead HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut submitted = 0.0;
    for _ in 0..40 {
        for _ in 0..50 {
            rig.outputs.submit(Arc::clone(&req));
            submitted += 1.0;
        }
        let depth = rig.outputs.queue_depths();
        assert!(
            depth[0].requests <= 50 && depth[0].bytes <= 50 * req.raw.len(),
            "{depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("the queue to run empty", || {
        rig.outputs.queue_depths()[0].requests == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let upstream_error = rig.dropped("upstream_error");
    assert_eq!(upstream_error + rig.dropped("queue_full"), submitted);
    assert_eq!(
        rig.errors("connect") + rig.errors("unreachable"),
        upstream_error
    );
    // Backoff: a handful of connect attempts over ~0.4 s (by the pool until the first
    // failure, then by the prober), not thousands.
    let attempts = rig.errors("connect") + rig.probes("failed");
    assert!((1.0..=20.0).contains(&attempts), "{attempts}");
    assert!(rig.probes("failed") >= 1.0);
    assert_eq!(
        rig.metric("rebuilder_upstream_connections_opened_total"),
        0.0
    );
    let health = rig.health.check().unwrap_err();
    assert!(
        health.starts_with("upstream unreachable: connect to 127.0.0.1:"),
        "{health}"
    );

    // The upstream comes back on the same port: replay resumes by itself.
    let sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
    let back = Instant::now();
    eventually("replay to resume", || {
        rig.outputs
            .submit(request(b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"));
        !sink.answered().is_empty()
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(1),
        "recovered after {:?}",
        back.elapsed()
    );
    eventually("health to recover", || rig.health.check().is_ok()).await;
    assert_eq!(
        sink.answered()[0].1,
        b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_recovers_without_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let rig = rig(cfg(addr, 2), Mode::Live);
    eventually("health to see the dead upstream", || {
        rig.health.check().is_err()
    })
    .await;
    let _sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
    eventually("health to recover by the idle probe", || {
        rig.health.check().is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_times_out_and_reconnects() {
    let sink = sink(Behaviour::Hang).await;
    let mut c = cfg(sink.addr, 1);
    c.response_timeout = Duration::from_millis(200);
    let rig = rig(c, Mode::Live);
    rig.outputs.submit(request(b"GET /1 HTTP/1.1\r\n\r\n"));
    rig.outputs.submit(request(b"GET /2 HTTP/1.1\r\n\r\n"));
    eventually("two timeouts", || rig.errors("response_timeout") == 2.0).await;
    assert_eq!(rig.dropped("upstream_error"), 2.0);
    assert_eq!(rig.replayed(), 0.0);
    // A timed-out connection is never reused.
    eventually("the second connection", || sink.accepted() == 2).await;
    // Connects worked: the upstream is reachable, only slow.
    assert_eq!(rig.health.check(), Ok(()));
}

#[test]
fn backoff_doubles_to_a_cap() {
    let mut b = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..6 {
        b = next_backoff(b);
        seen.push(b.as_millis());
    }
    assert_eq!(seen, [50, 100, 200, 250, 250, 250]);
}

#[test]
fn breaker_opens_on_a_failure_and_closes_on_a_success() {
    let br = Breaker::default();
    let g = br.admit().expect("closed: everyone may connect");
    assert_eq!(br.next_probe_in(), None, "no probing while closed");
    assert!(br.failed(g));
    assert!(br.is_open());
    assert_eq!(br.admit(), None, "open: the pool does not connect");
    assert!(br.failed(g), "more failures of the same outage");
    let spacing: Vec<u128> = (0..6)
        .map(|_| br.next_probe_in().unwrap().as_millis())
        .collect();
    assert_eq!(spacing, [50, 100, 200, 250, 250, 250]);
    br.succeeded();
    let g2 = br.admit().expect("closed again");
    assert_ne!(g, g2);
    // A connect that started during the outage (its SYN unanswered) and fails now says
    // nothing about the upstream: it must not reopen the breaker.
    assert!(!br.failed(g));
    assert!(br.admit().is_some());
    // A new outage starts its backoff from the beginning.
    assert!(br.failed(g2));
    assert_eq!(br.next_probe_in(), Some(BACKOFF_MIN));
}

/// Submits a request every 10 ms until the sink has answered one sent after `since`;
/// returns how long that took from `since`, and how many were submitted.
async fn time_to_resume(rig: &Rig, sink: &Sink, since: Instant) -> (Duration, usize) {
    let limit = since + Duration::from_secs(10);
    let mut submitted = 0;
    while Instant::now() < limit {
        rig.outputs
            .submit(request(b"GET /back HTTP/1.1\r\nHost: a\r\n\r\n"));
        submitted += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        if sink
            .answered()
            .iter()
            .any(|(_, r)| r.starts_with(b"GET /back "))
        {
            return (since.elapsed(), submitted);
        }
    }
    panic!("replay did not resume within 10 s");
}

/// Steady traffic to a dead upstream for `span`; how many requests.
async fn submit_for(rig: &Rig, span: Duration) -> usize {
    let until = Instant::now() + span;
    let mut submitted = 0;
    while Instant::now() < until {
        rig.outputs
            .submit(request(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n"));
        submitted += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    submitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumes_within_a_second_after_a_long_refusal() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let rig = rig(cfg(addr, 4), Mode::Live);
    // Long enough for the backoff to reach its cap (50 + 100 + 200 + 250 ms): from then on
    // a longer outage behaves the same, so this stands for a 5-minute one.
    let mut submitted = submit_for(&rig, Duration::from_millis(1200)).await;
    // The worst moment to come back: just after a probe failed.
    let probes = rig.probes("failed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.probes("failed") == probes {
        assert!(Instant::now() < deadline, "no probe for 5 s");
        rig.outputs
            .submit(request(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n"));
        submitted += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sink = sink_on(TcpListener::bind(addr).await.unwrap(), Behaviour::Answer).await;
    let (took, more) = time_to_resume(&rig, &sink, Instant::now()).await;
    submitted += more;
    eprintln!("resumed {took:?} after the upstream came back");
    assert!(took < Duration::from_secs(1), "resumed after {took:?}");
    // Every request is either replayed or dropped under a reason.
    let report = rig.outputs.drain(Duration::from_secs(5)).await;
    assert!(report.finished(), "{report:?}");
    assert_eq!(rig.replayed(), sink.answered().len() as f64);
    assert_eq!(
        rig.replayed() + rig.dropped("upstream_error") + rig.dropped("queue_full"),
        submitted as f64
    );
    assert_eq!(
        rig.errors("connect") + rig.errors("unreachable"),
        rig.dropped("upstream_error")
    );
    assert_eq!(rig.probes("connected"), 1.0);
}

/// A listener whose accept queue is full, so the kernel drops SYNs: what a WAF whose host
/// is gone looks like (connects time out rather than being refused).
fn blackhole() -> (std::net::TcpListener, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    // A backlog of 0 holds one connection; the next SYNs are dropped.
    sock.listen(0).unwrap();
    let listener: std::net::TcpListener = sock.into();
    let filler = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (listener, filler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumes_within_a_second_when_a_silent_upstream_returns() {
    let (listener, _filler) = blackhole();
    let addr = listener.local_addr().unwrap();
    // One pool task: were probes made by pool tasks, carrying requests, it would sit in a
    // connect for each probe's whole timeout while the queue filled behind it.
    let mut c = cfg(addr, 1);
    c.queue_requests = 1000;
    let rig = rig(c, Mode::Live);
    submit_for(&rig, Duration::from_millis(2500)).await;
    // Unknown for the first second (the pool's first connect times out), then the pool
    // drops requests at once, and the queue does not grow.
    assert!(
        rig.errors("unreachable") >= 50.0,
        "{}",
        rig.errors("unreachable")
    );
    assert!(
        rig.outputs.queue_depths()[0].requests < 10,
        "{:?}",
        rig.outputs.queue_depths()
    );
    assert_eq!(rig.dropped("queue_full"), 0.0);
    assert!(rig.probes("failed") >= 1.0);
    assert!(rig.health.check().is_err());
    // The upstream answers again: the accept queue drains, SYNs are answered.
    listener.set_nonblocking(true).unwrap();
    let since = Instant::now();
    let sink = sink_on(TcpListener::from_std(listener).unwrap(), Behaviour::Answer).await;
    let (took, _) = time_to_resume(&rig, &sink, since).await;
    eprintln!("resumed {took:?} after the silent upstream came back");
    assert!(took < Duration::from_secs(1), "resumed after {took:?}");
    eventually("health to recover", || rig.health.check().is_ok()).await;
}
