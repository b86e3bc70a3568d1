//! Which XDP mode attaches, end to end, with the real `rebuilder` binary in a network namespace
//! this test creates: `auto` falls back to generic mode on a device without native XDP and says
//! why, a forced driver mode fails clearly, and `check --iface` reports the facts and the
//! attach tests.
//!
//! Needs root and `ip` (iproute2); a missing prerequisite fails the test and names it.
//! Everything is bounded in time and torn down in `Drop`. The bench is `xdp/bench.rs`, shared
//! with `xdp.rs`.

// Shared with xdp.rs, whose frame sending this file does not use.
#[allow(dead_code)]
#[path = "xdp/bench.rs"]
mod bench;

use std::path::Path;
use std::time::Duration;

use bench::*;

/// The value of the `check` report line labelled `label` (labels are padded to one width).
fn report_value(out: &str, label: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{out}"))
        .get(label.len()..)
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn auto_falls_back_to_generic_mode_with_the_reason_and_forced_driver_mode_fails() {
    let ns = Bench::new(1500);
    let br = ns.add_bridge();
    let mut reb = ns.spawn(&[
        "run",
        "--iface",
        &br,
        "--jsonl",
        "/dev/null",
        "--status",
        STATUS,
    ]);
    let prefix = format!(
        "rebuilder_xdp_attached{{iface=\"{br}\",mode=\"generic\",requested=\"auto\",reason=\""
    );
    let line = wait_for(
        Duration::from_secs(30),
        "the attach metric",
        &mut reb,
        || {
            let text = ns.http_get("/metrics")?;
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .map(str::to_string)
        },
    );
    assert!(
        line.contains("driver mode failed") && line.contains("Operation not supported"),
        "{line}"
    );
    assert!(line.ends_with("\"} 1"), "{line}");
    let err = reb.stderr_so_far();
    assert!(
        err.contains("XDP program attached in generic mode, not driver mode: driver mode failed"),
        "one log line says which mode and why: {err}"
    );
    reb.signal(libc::SIGTERM);
    let (status, fin) = wait_exit(reb, Duration::from_secs(20));
    assert!(status.success(), "{}", fin.stderr);

    let forced = ns.spawn(&[
        "run",
        "--iface",
        &br,
        "--xdp-mode",
        "driver",
        "--jsonl",
        "/dev/null",
        "--status",
        STATUS,
    ]);
    let (status, fin) = wait_exit(forced, Duration::from_secs(30));
    let err = &fin.stderr;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot attach the XDP program to {br} in driver mode"
        )),
        "{err}"
    );
    assert!(
        !err.contains("generic"),
        "a forced mode never falls back: {err}"
    );

    let check = ns.spawn(&["check", "--iface", &br]);
    let (status, fin) = wait_exit(check, Duration::from_secs(60));
    assert!(status.success(), "{}", fin.stderr);
    let out = stdout(&fin);
    assert!(
        report_value(&out, "  attach test (driver):").starts_with("failed: "),
        "{out}"
    );
    assert_eq!(
        report_value(&out, "  attach test (generic):"),
        "attached and detached at once"
    );
    assert!(
        report_value(&out, "  auto mode uses:")
            .starts_with("generic (not driver mode: driver mode failed"),
        "{out}"
    );
}

#[test]
fn check_reports_the_facts_of_a_veth() {
    let ns = Bench::new(9000);
    let check = ns.spawn(&["check", "--iface", &ns.rx]);
    let (status, fin) = wait_exit(check, Duration::from_secs(60));
    let out = stdout(&fin);
    assert!(status.success(), "{status}\n{out}\n{}", fin.stderr);
    let line = |label: &str| report_value(&out, label);
    assert!(line("kernel:").contains('.'), "{out}");
    let btf = if Path::new("/sys/kernel/btf/vmlinux").exists() {
        "yes"
    } else {
        "no"
    };
    assert!(line("BTF:").starts_with(btf), "{out}");
    assert!(line("BPF ring buffer:").starts_with("yes"), "{out}");
    assert!(line("bpf_xdp_load_bytes:").starts_with("yes"), "{out}");
    assert!(
        line("XDP program:").starts_with("loads and verifies"),
        "{out}"
    );
    assert!(line("interface:").starts_with(&ns.rx), "{out}");
    assert!(line("  driver:").starts_with("veth"), "{out}");
    assert_eq!(line("  MTU:"), "9000", "{out}");
    assert!(line("  channels:").contains("rx 1/"), "{out}");
    assert_eq!(
        line("  driver mode rule:"),
        "no known restriction for driver veth"
    );
    assert_eq!(
        line("  attach test (driver):"),
        "attached and detached at once",
        "{out}"
    );
    assert_eq!(line("  auto mode uses:"), "driver", "{out}");
    assert!(
        out.ends_with("result: XDP capture can work here\n"),
        "{out}"
    );
    assert_eq!(ns.xdp_shown(), None, "check left a program attached");

    let missing = ns.spawn(&["check", "--iface", "rbnosuch0"]);
    let (status, fin) = wait_exit(missing, Duration::from_secs(60));
    let out = stdout(&fin);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("no interface rbnosuch0 in this network namespace"),
        "{out}"
    );
    assert!(
        out.contains("result: XDP capture cannot work here"),
        "{out}"
    );
}
