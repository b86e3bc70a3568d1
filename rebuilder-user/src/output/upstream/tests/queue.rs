//! The queue in front of the pool: live mode drops the newest, offline mode waits, a drain
//! finishes then refuses, and requests fan out to upstream and JSONL alike.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_drops_newest_and_never_blocks() {
    let sink = sink(Behaviour::Hang).await;
    let mut c = cfg(sink.addr, 1);
    c.queue_requests = 2;
    c.response_timeout = Duration::from_secs(60);
    let rig = rig(c, Mode::Live);
    rig.outputs.submit(request(b"GET /first HTTP/1.1\r\n\r\n"));
    eventually("the first request in flight", || {
        !sink.state.received.lock().unwrap().concat().is_empty()
    })
    .await;
    let outputs = rig.outputs.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..1000 {
            outputs.submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("submit blocked in Live mode");
    assert_eq!(rig.dropped("queue_full"), 998.0);
    let depth = rig.outputs.queue_depths();
    assert_eq!(depth[0].requests, 2);
    // The oldest were kept: /0 and /1 wait in the queue.
    let report = rig.outputs.drain(Duration::from_millis(100)).await;
    assert_eq!(
        report.outputs,
        vec![crate::output::OutputDrain {
            output: "upstream",
            finished: false,
            abandoned: 3
        }]
    );
    assert_eq!(rig.dropped("shutdown"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_mode_waits_and_drops_nothing() {
    let sink = sink(Behaviour::Slow(Duration::from_millis(5))).await;
    let mut c = cfg(sink.addr, 1);
    c.queue_requests = 1;
    let rig = rig(c, Mode::Offline);
    let outputs = rig.outputs.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..50 {
            outputs.submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
        }
    });
    // The producer cannot be done before most requests were answered: it had to wait.
    eventually("the producer", || producer.is_finished()).await;
    assert!(sink.answered().len() >= 48, "{}", sink.answered().len());
    let report = rig.outputs.drain(Duration::from_secs(10)).await;
    assert!(report.finished() && report.abandoned() == 0, "{report:?}");
    let targets: Vec<Vec<u8>> = sink.answered().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        targets,
        (0..50)
            .map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(rig.dropped("queue_full"), 0.0);
    assert_eq!(rig.replayed(), 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_the_queue_then_refuses() {
    let sink = sink(Behaviour::Slow(Duration::from_millis(20))).await;
    let rig = rig(cfg(sink.addr, 2), Mode::Live);
    for i in 0..10 {
        rig.outputs
            .submit(request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
    }
    let report = rig.outputs.drain(Duration::from_secs(10)).await;
    assert!(report.finished() && report.abandoned() == 0, "{report:?}");
    assert_eq!(sink.answered().len(), 10);
    rig.outputs.submit(request(b"GET /late HTTP/1.1\r\n\r\n"));
    assert_eq!(rig.dropped("shutdown"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_to_upstream_and_jsonl() {
    let sink = sink(Behaviour::Answer).await;
    let path = std::env::temp_dir().join(format!("rebuilder-fanout-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut registry = Registry::default();
    let outputs = Outputs::start(
        &OutputsConfig {
            upstream: Some(cfg(sink.addr, 2)),
            jsonl: Some(crate::output::JsonlConfig::new(&path)),
        },
        Mode::Live,
        &mut registry,
        Health::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let mut gap = (*request(b"GET /gap HTTP/1.1\r\n\r\n")).clone();
    gap.flags.gap = true;
    outputs.submit(Arc::new(gap));
    outputs.submit(request(b"GET /whole HTTP/1.1\r\n\r\n"));
    let report = outputs.drain(Duration::from_secs(5)).await;
    assert_eq!(
        report
            .outputs
            .iter()
            .map(|o| (o.output, o.finished, o.abandoned))
            .collect::<Vec<_>>(),
        [("upstream", true, 0), ("jsonl", true, 0)]
    );
    assert_eq!(
        sink.state.received.lock().unwrap().concat(),
        b"GET /whole HTTP/1.1\r\n\r\n"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let targets: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(targets, ["/gap", "/whole"]);
    let _ = std::fs::remove_file(&path);
}
