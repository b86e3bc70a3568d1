//! What the kernel-mirroring end-to-end tests (`tests/tests/mirror_*.rs`) share: build a
//! lab, drive a workload, wait for every request at the sink, compare byte for byte, stop the
//! rebuilders, check the teardown. `mirror_udp.rs` and `mirror_xdp.rs` run the same workloads
//! through the two inputs.
//!
//! Uses [`netns`](crate::netns) (the lab), [`compare`](crate::compare) and
//! [`process`](crate::process); nothing in the library depends on it. It lives here rather than
//! in a `tests/tests/common` module so that every test helper is in one place, and so that each
//! test binary does not compile (and warn about) the parts it does not use.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::compare::compare;
use crate::http_client::{ConnectionOutcome, ConnectionPlan};
use crate::netns::{leftovers, Capture, LabConfig, MirrorLab};
use crate::process::Finished;

// The workloads the mirror tests drive, re-exported so that a test needs one import.
pub use crate::lab::workload::{mirror_plans, spread_plans};

/// Bounds for each phase; nothing here should come near them.
pub const SETUP: Duration = Duration::from_secs(20);
pub const TRAFFIC: Duration = Duration::from_secs(10);
pub const REPLAY: Duration = Duration::from_secs(10);

pub fn sent(outcomes: &[ConnectionOutcome]) -> Vec<Vec<u8>> {
    outcomes
        .iter()
        .flat_map(|o| o.sent.iter().map(|s| s.raw.clone()))
        .collect()
}

pub fn show(f: &[Finished]) -> String {
    f.iter()
        .map(|f| format!("--- {}\n{}", f.name, f.stderr))
        .collect::<Vec<_>>()
        .join("\n")
}

pub struct Run {
    pub expected: Vec<Vec<u8>>,
    pub finished: Vec<Finished>,
}

/// The flags every test rebuilder gets: one worker (and one socket), so the summaries are
/// simple to read.
pub fn rebuilder_args(capture: Capture) -> Vec<&'static str> {
    let mut args = vec!["--workers", "1"];
    if capture == Capture::Udp {
        args.extend(["--udp-sockets", "1"]);
    }
    args
}

/// Builds a lab, drives `plans`, waits for every request at the sink, compares, stops the
/// rebuilders and checks the teardown. `live` runs while the rebuilders still run (after the
/// comparison), with each node's kernel SNMP counters as they were once its rebuilder was
/// ready; `check` after they stopped.
pub fn mirror_and_compare(
    cfg: LabConfig,
    plans: &[ConnectionPlan],
    live: impl FnOnce(&MirrorLab, &[BTreeMap<String, u64>]),
    check: impl FnOnce(&MirrorLab, &Run),
) {
    let start = Instant::now();
    let capture = cfg.capture;
    let mut lab = MirrorLab::build(cfg).unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let created = lab.created();
    lab.start_rebuilders(&rebuilder_args(capture))
        .unwrap_or_else(|e| panic!("cannot start rebuilder: {e}"));
    lab.wait_ready(SETUP)
        .unwrap_or_else(|e| panic!("rebuilder not ready: {e}"));
    let ready_snmp: Vec<_> = lab
        .nodes()
        .iter()
        .map(|n| {
            n.ns()
                .snmp()
                .unwrap_or_else(|e| panic!("snmp counters: {e}"))
        })
        .collect();

    let outcomes = lab
        .drive(plans, TRAFFIC)
        .unwrap_or_else(|e| panic!("client: {e}"));
    let expected = sent(&outcomes);
    assert_eq!(
        lab.origin().served(),
        expected.len(),
        "origin: {:?}",
        lab.origin().errors()
    );
    assert!(
        lab.origin().errors().is_empty(),
        "{:?}",
        lab.origin().errors()
    );
    for o in &outcomes {
        assert!(
            o.responses.iter().all(|r| r.status == 200),
            "{:?}",
            o.responses
        );
    }

    let waited = lab.sink().wait_for(expected.len(), REPLAY);
    // Anything beyond the expected count (a duplicate) would show up now.
    lab.sink()
        .wait_quiet(Duration::from_millis(300), Duration::from_secs(3));
    let received = lab.sink().requests();
    for i in 0..lab.nodes().len() {
        let m = lab
            .metrics(i)
            .unwrap_or_else(|e| panic!("node {i} /metrics: {e}"));
        assert!(m.contains("rebuilder_requests_rebuilt"), "{m}");
    }
    if waited.is_ok() {
        live(&lab, &ready_snmp);
    }
    let finished = lab.stop_rebuilders(Duration::from_secs(10));
    if let Err(e) = waited {
        panic!(
            "{e}\n{}\n{}",
            compare(&expected, received.iter().map(|r| &r.raw)),
            show(&finished)
        );
    }
    let cmp = compare(&expected, received.iter().map(|r| &r.raw));
    assert!(cmp.is_match(), "{cmp}\n{}", show(&finished));
    assert!(lab.sink().errors().is_empty(), "{:?}", lab.sink().errors());
    for f in &finished {
        f.assert_success();
        assert_eq!(f.summary_value("gaps"), Some(0), "{}", f.stderr);
    }
    let run = Run { expected, finished };
    check(&lab, &run);

    drop(lab);
    let left = leftovers(&created).expect("listing namespaces and links");
    assert!(left.is_empty(), "left behind: {left:?}");
    eprintln!(
        "{} requests mirrored and replayed in {:?}",
        run.expected.len(),
        start.elapsed()
    );
}

/// Datagrams the node's kernel took in, and whether any arrived in fragments (an underlay
/// too small for the frames would fragment the outer packets, hiding the problem).
pub fn node_udp(lab: &MirrorLab, i: usize) -> (u64, u64) {
    let snmp = lab.nodes()[i]
        .ns()
        .snmp()
        .unwrap_or_else(|e| panic!("snmp counters: {e}"));
    let get = |k: &str| *snmp.get(k).unwrap_or_else(|| panic!("no counter {k}"));
    (get("Udp.InDatagrams"), get("Ip.ReasmReqds"))
}

pub fn client_bytes(run: &Run) -> u64 {
    run.expected.iter().map(|r| r.len() as u64).sum()
}

pub fn assert_one_node_did_everything(run: &Run) {
    let f = &run.finished[0];
    let n = Some(run.expected.len() as u64);
    assert_eq!(f.summary_value("requests rebuilt"), n, "{}", f.stderr);
    assert_eq!(f.summary_value("upstream"), n, "{}", f.stderr);
}

/// What each node replayed, by its summary; every node replayed something and together
/// everything, once.
pub fn assert_spread(run: &Run) {
    let replayed: Vec<u64> = run
        .finished
        .iter()
        .map(|f| {
            f.summary_value("upstream")
                .unwrap_or_else(|| panic!("{}", f.stderr))
        })
        .collect();
    assert_eq!(
        replayed.iter().sum::<u64>(),
        run.expected.len() as u64,
        "{replayed:?}"
    );
    // 16 connections all hashing to one node: about 3 in 100,000.
    assert!(
        replayed.iter().all(|n| *n > 0),
        "one node got nothing: {replayed:?}"
    );
}
