//! Upstream faults, overload and a full XDP ring, against the real `rebuilder run`
//! (`rebuilder_tests::faults` does the work and the checks): the queue stays bounded, drops are
//! counted by reason, memory stays flat while the upstream is down, the node stays live (and,
//! with the upstream unreachable, not ready), replay recovers within 1 s once it heals, every
//! request is accounted for; SIGTERM under full load drains within the deadline and exits 0; a
//! full ring buffer is counted and later requests are still rebuilt.
//!
//! Each outage lasts 3 s here, long enough for the reconnect backoff to reach its cap, after
//! which a longer one behaves the same; `cargo xtask hostile --outage 5m` runs one for minutes.
//! The figures (recovery time, RSS) are printed; `cargo test -p rebuilder-tests --test faults
//! -- --nocapture` shows them.

use rebuilder_tests::faults::{
    run_fault, run_sigterm_under_load, run_xdp_ring_full, Fault, FaultConfig,
};
use rebuilder_tests::process::rebuilder_bin;

fn check(fault: Fault) {
    let r = run_fault(fault, &FaultConfig::ci(rebuilder_bin()))
        .unwrap_or_else(|e| panic!("{}: {e}", fault.name()));
    eprintln!(
        "{}: {} sent ({} while down), {} replayed, drops {:?}, errors {:?}, queue max {} requests / {} B, RSS while down {}..{} KiB (+{}, second half +{}), /livez {} /readyz {} while down, recovered in {:?}, exit in {:?}",
        fault.name(),
        r.sent,
        r.sent_while_down,
        r.replayed,
        r.drops,
        r.errors,
        r.max_queue_requests,
        r.max_queue_bytes,
        r.rss_down.first(),
        r.rss_down.max(),
        r.rss_down.growth(),
        r.rss_down.late_growth(),
        r.probes_down.0,
        r.probes_down.1,
        r.recovery,
        r.shutdown
    );
    r.assert_passed();
}

#[test]
fn upstream_refusing() {
    check(Fault::Refused);
}

#[test]
fn upstream_silent() {
    check(Fault::Silent);
}

#[test]
fn upstream_resetting() {
    check(Fault::Reset);
}

#[test]
fn upstream_hanging() {
    check(Fault::Hang);
}

#[test]
fn upstream_answering_slowly() {
    check(Fault::Slow);
}

#[test]
fn upstream_answering_garbage() {
    check(Fault::Garbage);
}

#[test]
fn sigterm_under_full_load_drains_within_the_deadline() {
    let r = run_sigterm_under_load(&rebuilder_bin()).expect("run");
    eprintln!(
        "sigterm: {} sent, {} queued at the signal, {} rebuilt, {} replayed, drops {:?}, exited in {:?} (deadline {:?})",
        r.sent, r.queued, r.rebuilt, r.replayed, r.drops, r.shutdown, r.drain_timeout
    );
    assert!(
        r.failures.is_empty(),
        "{}\n{}",
        r.failures.join("\n"),
        r.stderr
    );
}

#[test]
fn a_full_xdp_ring_is_counted_and_capture_goes_on() {
    let r = run_xdp_ring_full(&rebuilder_bin(), 3000).expect("run");
    eprintln!(
        "xdp ring full: burst {}, ring_full {}, pushed {}, {} of {} later requests rebuilt",
        r.burst, r.ring_full, r.pushed, r.after_rebuilt, r.after_sent
    );
    assert!(
        r.failures.is_empty(),
        "{}\n{}",
        r.failures.join("\n"),
        r.stderr
    );
}
