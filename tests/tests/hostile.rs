//! Hostile traffic end to end: each attack of `rebuilder_tests::gen::hostile_traffic`, at CI
//! scale, with legitimate connections interleaved, replayed by the real `rebuilder` under GNU
//! time to a sink. Each must end with exit 0, no panic, peak RSS under the budget's bound, every
//! drop counted under its reason (and no other), and every legitimate request replayed
//! byte-exact exactly once (`rebuilder_tests::hostile::run_case` checks all of it).
//!
//! `cargo xtask hostile` runs the same cases at full size and prints the table.

use std::path::PathBuf;

use rebuilder_tests::gen::hostile_traffic::{build, HostileKind, HostileScale};
use rebuilder_tests::hostile::{run_case, RunConfig};
use rebuilder_tests::process::rebuilder_bin;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rebuilder-hostile-{name}-{}", std::process::id()))
}

fn check(kind: HostileKind) {
    let case = build(kind, &HostileScale::ci(), 42).expect("generate the capture");
    let dir = scratch(kind.name());
    let report = run_case(&case, &RunConfig::new(rebuilder_bin(), dir.clone()))
        .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{}: {} packets, peak RSS {} KiB, {} legitimate requests recovered of {}, drops {:?}",
        report.name,
        report.packets,
        report.peak_rss_kib,
        report.legit_recovered,
        report.legit_total,
        report.drops
    );
    report.assert_passed();
    assert_eq!(report.legit_recovered, report.legit_total);
    assert!(report.legit_total > 0);
}

#[test]
fn syn_flood() {
    check(HostileKind::SynFlood);
}

#[test]
fn half_open_flows() {
    check(HostileKind::HalfOpen);
}

#[test]
fn sequence_numbers_far_outside_the_window() {
    check(HostileKind::OutOfWindow);
}

#[test]
fn overlapping_segments_with_conflicting_bytes_first_wins() {
    check(HostileKind::ConflictingOverlap);
}

#[test]
fn never_ending_chunked_bodies() {
    check(HostileKind::EndlessChunked);
}

#[test]
fn one_megabyte_header_lines() {
    check(HostileKind::HugeHeader);
}

#[test]
fn requests_trickled_a_byte_at_a_time() {
    check(HostileKind::Trickle);
}

#[test]
fn endless_pipelines() {
    check(HostileKind::EndlessPipeline);
}

#[test]
fn garbage_after_the_vxlan_header() {
    check(HostileKind::VxlanGarbage);
}

#[test]
fn vxlan_without_the_i_flag() {
    check(HostileKind::VxlanNoIFlag);
}

#[test]
fn inner_ip_fragments() {
    check(HostileKind::InnerFragments);
}

#[test]
fn zero_window_probes() {
    check(HostileKind::ZeroWindowProbes);
}

#[test]
fn out_of_order_data_behind_holes_over_the_budget() {
    check(HostileKind::OutOfOrderHoles);
}

#[test]
fn proxy_headers_cut_short_malformed_and_trickled() {
    check(HostileKind::ProxyHeaders);
}

#[test]
fn spoofed_segments_parked_ahead_of_live_streams() {
    check(HostileKind::SpoofedAhead);
}

#[test]
fn spoofed_syns_with_new_isns_on_live_connections() {
    check(HostileKind::SpoofedSyn);
}

#[test]
fn spoofed_rsts_and_fins_off_the_streams_position() {
    check(HostileKind::SpoofedClose);
}

#[test]
fn one_segment_before_a_connection_does_not_hide_it() {
    check(HostileKind::SpoofedFirst);
}
