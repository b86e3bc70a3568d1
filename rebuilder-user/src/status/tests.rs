//! Tests of the status room: health verdicts, heartbeats shared between askers, and the HTTP
//! endpoints end to end on a loopback listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::*;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request on its own connection; returns (status code, headers+body text).
async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

async fn start(
    registry: Registry,
    health: Arc<Health>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_listener(
        listener,
        Arc::new(registry),
        health,
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

#[test]
fn check_reports_silence_stop_and_upstream() {
    let health = Health::new();
    assert_eq!(health.check(), Ok(()));
    let hb = health.component("worker-0", Duration::from_millis(50));
    let other = health.component("capture", Duration::from_secs(3600));
    hb.beat();
    assert_eq!(health.check(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    let err = health.check().unwrap_err();
    assert!(err.starts_with("worker-0 silent for "), "{err}");
    assert!(!err.contains("capture"), "{err}");
    hb.clone().beat();
    assert_eq!(health.check(), Ok(()));

    health.set_upstream(false, "connection refused");
    assert_eq!(
        health.check(),
        Err("upstream unreachable: connection refused".to_string())
    );
    assert!(health.upstream_unreachable());
    health.set_upstream(true, "");
    assert_eq!(health.check(), Ok(()));

    other.stopped();
    assert_eq!(health.check(), Err("capture stopped".to_string()));
}

#[test]
fn max_idle_fails_health_only_after_packets_stop() {
    let health = Health::with_max_idle(Some(Duration::from_millis(50)));
    let hb = health.component("udp capture 0", Duration::from_secs(3600));
    hb.beat();
    // No packet yet: a fresh node is not failed for idling.
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(health.check(), Ok(()));
    health.packets_captured();
    assert_eq!(health.check(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    let err = health.check().unwrap_err();
    assert!(err.starts_with("no packets for 0."), "{err}");
    assert!(err.ends_with(" s (max idle 0.1 s)"), "{err}");
    // Beating capture threads do not help; packets do.
    hb.beat();
    assert!(health.check().is_err());
    health.packets_captured();
    assert_eq!(health.check(), Ok(()));
    // Reasons add up.
    std::thread::sleep(Duration::from_millis(80));
    health.set_upstream(false, "refused");
    let err = health.check().unwrap_err();
    assert!(
        err.starts_with("no packets for ") && err.ends_with("; upstream unreachable: refused"),
        "{err}"
    );

    // Without max_idle, idling never fails.
    let health = Health::new();
    health.packets_captured();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(health.check(), Ok(()));
}

#[tokio::test]
async fn healthz_follows_heartbeats_and_upstream() {
    let health = Health::new();
    let hb = health.component("worker-1", Duration::from_millis(150));
    let (addr, _stop) = start(Registry::default(), Arc::clone(&health)).await;

    hb.beat();
    let (code, head, body) = get(addr, "GET", "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(head.contains("content-type: text/plain"), "{head}");

    tokio::time::sleep(Duration::from_millis(250)).await;
    let (code, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(code, 503);
    assert!(body.starts_with("worker-1 silent for "), "{body}");

    hb.beat();
    let (code, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    health.set_upstream(false, "connect: Connection refused");
    let (code, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "upstream unreachable: connect: Connection refused\n")
    );

    health.set_upstream(true, "");
    hb.beat();
    let (code, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[test]
fn liveness_ignores_the_upstream_and_idling_readiness_does_not() {
    let health = Health::with_max_idle(Some(Duration::from_millis(50)));
    let hb = health.component("worker 0", Duration::from_secs(3600));
    hb.beat();
    health.packets_captured();
    assert_eq!((health.live(), health.ready()), (Ok(()), Ok(())));

    // Upstream down: only readiness fails.
    health.set_upstream(false, "connection refused");
    assert_eq!(health.live(), Ok(()));
    assert_eq!(
        health.ready(),
        Err("upstream unreachable: connection refused".to_string())
    );
    health.set_upstream(true, "");

    // Idle: only readiness fails.
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(health.live(), Ok(()));
    let err = health.ready().unwrap_err();
    assert!(err.starts_with("no packets for "), "{err}");
    // /healthz means readiness.
    assert_eq!(health.check(), health.ready());
    assert_eq!(health.assess(), (true, false));
    health.packets_captured();
    assert_eq!(health.assess(), (true, true));
}

#[test]
fn silence_and_stop_fail_liveness_and_readiness() {
    let health = Health::new();
    let worker = health.component("worker 1", Duration::from_millis(50));
    let capture = health.component("udp capture 0", Duration::from_secs(3600));
    worker.beat();
    assert_eq!(health.live(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    let err = health.live().unwrap_err();
    assert!(err.starts_with("worker 1 silent for "), "{err}");
    let err = health.ready().unwrap_err();
    assert!(err.starts_with("worker 1 silent for "), "{err}");
    assert_eq!(health.assess(), (false, false));
    worker.beat();
    assert_eq!(health.live(), Ok(()));

    capture.stopped();
    assert_eq!(health.live(), Err("udp capture 0 stopped".to_string()));
    assert_eq!(health.ready(), Err("udp capture 0 stopped".to_string()));
    // Not live is never ready, whatever the upstream says.
    health.set_upstream(true, "");
    assert_eq!(health.assess(), (false, false));
}

#[test]
fn askers_do_not_consume_each_others_beats() {
    // One beat, consumed by the first asker: the others, within max_silence, still count it.
    let health = Health::new();
    let hb = health.component("worker 0", Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(150));
    hb.beat();
    assert_eq!(health.live(), Ok(()));
    // 250 ms since the component was registered, 100 since it beat: only the beat that
    // /livez consumed, remembered for everyone, keeps the others from calling it silent.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(health.ready(), Ok(()));
    assert_eq!(health.assess(), (true, true));
    assert_eq!(health.check(), Ok(()));

    // A component beating every 10 ms, with three askers polling as fast as they can: none
    // of them ever sees it silent.
    let health = Health::new();
    let hb = health.component("worker 0", Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    let beater = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                hb.beat();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let askers: Vec<_> = (0..3)
        .map(|i| {
            let health = Arc::clone(&health);
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_millis(400);
                let mut asked = 0u32;
                while Instant::now() < until {
                    let verdict = match i {
                        0 => health.live(),
                        1 => health.ready(),
                        _ => match health.assess() {
                            (true, true) => Ok(()),
                            other => Err(format!("{other:?}")),
                        },
                    };
                    assert_eq!(verdict, Ok(()), "asker {i} after {asked} asks");
                    asked += 1;
                }
                asked
            })
        })
        .collect();
    for a in askers {
        assert!(a.join().unwrap() > 10);
    }
    stop.store(true, Ordering::Relaxed);
    beater.join().unwrap();
    // Silence is still seen once it is real (a check later: the last beat may be unread).
    assert_eq!(health.live(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    assert!(health.live().is_err());
    assert!(health.ready().is_err());
}

/// The value of `rebuilder_{name}` in a scrape.
fn gauge(scrape: &str, name: &str) -> Option<i64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&format!("rebuilder_{name} "))?.parse().ok())
}

#[tokio::test]
async fn livez_readyz_healthz_and_gauges() {
    let health = Health::with_max_idle(Some(Duration::from_millis(300)));
    let hb = health.component("worker 1", Duration::from_millis(150));
    let mut registry = Registry::default();
    health.register(&mut registry);
    let (addr, _stop) = start(registry, Arc::clone(&health)).await;
    // Every endpoint and the gauges: (livez, readyz, healthz, live, ready), and the bodies.
    let ask = || async {
        let (l, _, lb) = get(addr, "GET", "/livez").await;
        let (r, _, rb) = get(addr, "GET", "/readyz").await;
        let (h, _, hb) = get(addr, "GET", "/healthz").await;
        let (m, _, scrape) = get(addr, "GET", "/metrics").await;
        assert_eq!(m, 200);
        assert!(
            scrape.contains("# TYPE rebuilder_live gauge\n")
                && scrape.contains("# TYPE rebuilder_ready gauge\n"),
            "{scrape}"
        );
        assert_eq!(rb, hb, "/healthz says what /readyz says");
        let gauges = (
            gauge(&scrape, "live").unwrap(),
            gauge(&scrape, "ready").unwrap(),
        );
        ((l, r, h), gauges, lb, rb)
    };

    hb.beat();
    let (codes, gauges, livez, readyz) = ask().await;
    assert_eq!((codes, gauges), ((200, 200, 200), (1, 1)));
    assert_eq!((livez.as_str(), readyz.as_str()), ("ok\n", "ok\n"));

    // Upstream down: live, not ready.
    health.set_upstream(false, "connect: Connection refused");
    hb.beat();
    let (codes, gauges, livez, readyz) = ask().await;
    assert_eq!((codes, gauges), ((200, 503, 503), (1, 0)));
    assert_eq!(livez, "ok\n");
    assert_eq!(
        readyz,
        "upstream unreachable: connect: Connection refused\n"
    );
    health.set_upstream(true, "");

    // Packets stopped: live, not ready.
    health.packets_captured();
    tokio::time::sleep(Duration::from_millis(400)).await;
    hb.beat();
    let (codes, gauges, _, readyz) = ask().await;
    assert_eq!((codes, gauges), ((200, 503, 503), (1, 0)));
    assert!(readyz.starts_with("no packets for "), "{readyz}");
    health.packets_captured();

    // A silent worker: neither.
    tokio::time::sleep(Duration::from_millis(250)).await;
    health.packets_captured();
    let (codes, gauges, livez, readyz) = ask().await;
    assert_eq!((codes, gauges), ((503, 503, 503), (0, 0)));
    assert!(livez.starts_with("worker 1 silent for "), "{livez}");
    assert_eq!(livez, readyz);

    hb.beat();
    assert_eq!(ask().await.0, (200, 200, 200));

    // A stopped one: neither, named.
    hb.stopped();
    let (codes, gauges, livez, _) = ask().await;
    assert_eq!((codes, gauges), ((503, 503, 503), (0, 0)));
    assert_eq!(livez, "worker 1 stopped\n");
    assert_eq!(get(addr, "HEAD", "/livez").await.0, 503);
}

#[tokio::test]
async fn metrics_and_not_found() {
    let mut registry = Registry::default();
    let c: Counter = Counter::default();
    c.inc_by(7);
    registry.register("rebuilder_test_things", "Things seen by the test", c);
    let (addr, stop) = start(registry, Health::new()).await;

    let (code, head, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        body.contains("# TYPE rebuilder_test_things counter\n"),
        "{body}"
    );
    assert!(body.contains("\nrebuilder_test_things_total 7\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    assert_eq!(get(addr, "GET", "/").await.0, 404);
    assert_eq!(get(addr, "GET", "/healthz/x").await.0, 404);
    assert_eq!(get(addr, "POST", "/healthz").await.0, 404);
    assert_eq!(get(addr, "GET", "/livez/").await.0, 404);
    // Without `Health::register`, no health gauges.
    assert!(!body.contains("rebuilder_live"), "{body}");

    // After shutdown the listener is gone.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = serve(
        addr,
        Arc::new(Registry::default()),
        Health::new(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StatusError::Bind { .. }));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
