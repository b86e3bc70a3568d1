//! Tests of the command line: clap's definition, and what flags make of the settings.

use super::*;
use clap::CommandFactory;

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn flags_override_the_config_file() {
    let dir = std::env::temp_dir().join(format!("rebuilder-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[upstream]\nurl = \"http://127.0.0.1:1\"\npool_size = 3\n[reassembly]\nworkers = 5\n",
    )
    .unwrap();
    let cli = Cli::try_parse_from([
        "rebuilder",
        "--config",
        path.to_str().unwrap(),
        "replay",
        "--pcap",
        "x.pcap",
        "--pool-size",
        "7",
        "--add-client-ip",
        "--vni-allow",
        "1,2",
    ])
    .unwrap();
    let s = cli.settings().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        s.upstream.url.as_deref(),
        Some("http://127.0.0.1:1"),
        "file value kept"
    );
    assert_eq!(s.upstream.pool_size, 7, "flag overrides file");
    assert_eq!(s.reassembly.workers, 5);
    assert_eq!(
        s.upstream.client_ip_header.as_deref(),
        Some("X-Forwarded-For")
    );
    assert_eq!(s.capture.vni_allow, vec![1, 2]);
    assert_eq!(
        s.status.listen, None,
        "replay serves status only when asked"
    );
}

#[test]
fn run_defaults_to_udp_4789_and_a_status_server() {
    let cli = Cli::try_parse_from(["rebuilder", "run", "--udp"]).unwrap();
    let s = cli.settings().unwrap();
    assert_eq!(s.udp.listen, "0.0.0.0:4789".parse().unwrap());
    assert_eq!(s.status.listen, Some("0.0.0.0:9479".parse().unwrap()));
    assert_eq!(s.status.max_idle, None);
}

#[test]
fn max_idle_flag_sets_the_status_setting() {
    let s = Cli::try_parse_from(["rebuilder", "run", "--max-idle", "1500ms"])
        .unwrap()
        .settings()
        .unwrap();
    assert_eq!(
        s.status.max_idle,
        Some(Span(std::time::Duration::from_millis(1500)))
    );
    let e = Cli::try_parse_from(["rebuilder", "run", "--max-idle", "0s"])
        .unwrap()
        .settings()
        .unwrap_err()
        .to_string();
    assert!(e.contains("status.max_idle"), "{e}");
    assert!(
        Cli::try_parse_from(["rebuilder", "replay", "--pcap", "x", "--max-idle", "1s"]).is_err()
    );
}

#[test]
fn iface_flags_fill_the_xdp_settings() {
    let cli = Cli::try_parse_from([
        "rebuilder",
        "run",
        "--iface",
        "eth1",
        "--xdp-mode",
        "generic",
        "--xdp-pass",
        "--xdp-ring-size",
        "8MiB",
        "--xdp-port",
        "80,8080",
    ])
    .unwrap();
    let s = cli.settings().unwrap();
    assert_eq!(s.xdp.iface.as_deref(), Some("eth1"));
    assert_eq!(s.xdp.mode, XdpModeSetting::Generic);
    assert!(s.xdp.pass_consumed);
    assert_eq!(s.xdp.ring_size, Some(ByteSize(8 << 20)));
    assert_eq!(s.xdp.ports, vec![80, 8080]);
}

#[test]
fn iface_and_udp_exclude_each_other() {
    let e = Cli::try_parse_from(["rebuilder", "run", "--iface", "eth1", "--udp"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--iface") && e.contains("--udp"), "{e}");
}

#[test]
fn udp_flag_overrides_an_iface_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("rebuilder-cli-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "[xdp]\niface = \"eth9\"\nmode = \"driver\"\n").unwrap();
    let p = path.to_str().unwrap();
    let from_file = Cli::try_parse_from(["rebuilder", "--config", p, "run"])
        .unwrap()
        .settings()
        .unwrap();
    let with_udp = Cli::try_parse_from(["rebuilder", "--config", p, "run", "--udp"])
        .unwrap()
        .settings()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(from_file.xdp.iface.as_deref(), Some("eth9"));
    assert_eq!(from_file.xdp.mode, XdpModeSetting::Driver);
    assert_eq!(with_udp.xdp.iface, None);
}

#[test]
fn bad_xdp_values_are_refused() {
    let e = Cli::try_parse_from([
        "rebuilder",
        "run",
        "--iface",
        "eth1",
        "--xdp-ring-size",
        "3MiB",
    ])
    .unwrap()
    .settings()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("xdp.ring_size") && e.contains("power of two"),
        "{e}"
    );
    let e = Cli::try_parse_from(["rebuilder", "run", "--iface", "a/b"])
        .unwrap()
        .settings()
        .unwrap_err()
        .to_string();
    assert!(e.contains("xdp.iface"), "{e}");
}

#[test]
fn memory_flags_set_the_budget_and_the_queue() {
    let s = Cli::try_parse_from([
        "rebuilder",
        "replay",
        "--pcap",
        "x",
        "--upstream",
        "http://127.0.0.1:1",
        "--memory-budget",
        "64MiB",
    ])
    .unwrap()
    .settings()
    .unwrap();
    assert_eq!(s.memory_budget, ByteSize(64 << 20));
    let split = s.memory_split(crate::config::CaptureKind::Pcap).unwrap();
    assert_eq!(split.total(), 64 << 20);
    // A quarter of what the process, the file's chunks and the queue's request headers
    // leave.
    let headers = 10_000 * crate::request::QUEUED_REQUEST_BYTES as u64;
    assert_eq!(
        split.upstream_queue,
        ((64 << 20) - split.process - split.capture - headers) / 4
    );
    let s = Cli::try_parse_from([
        "rebuilder",
        "replay",
        "--pcap",
        "x",
        "--upstream",
        "http://127.0.0.1:1",
        "--queue-bytes",
        "8MiB",
    ])
    .unwrap()
    .settings()
    .unwrap();
    assert_eq!(s.upstream.queue_bytes, Some(ByteSize(8 << 20)));
    let e = Cli::try_parse_from([
        "rebuilder",
        "replay",
        "--pcap",
        "x",
        "--upstream",
        "http://127.0.0.1:1",
        "--memory-budget",
        "48MiB",
        "--queue-bytes",
        "24MiB",
    ])
    .unwrap()
    .settings()
    .unwrap_err()
    .to_string();
    assert!(e.contains("upstream.queue_bytes"), "{e}");
}

#[test]
fn proxy_health_check_and_filter_flags_fill_their_keys() {
    let s = Cli::try_parse_from([
        "rebuilder",
        "run",
        "--proxy-protocol",
        "forbid",
        "--proxy-protocol-require-port",
        "80,8080",
        "--keep-health-checks",
        "--health-check-cidr",
        "10.0.0.0/24,10.1.0.7",
        "--allow-host",
        "a.test,*.b.test",
        "--deny-method",
        "OPTIONS",
        "--deny-path",
        "/static/",
        "--allow-path-regex",
        "^/(a|b),c",
        "--sample",
        "0.5",
        "--sample-seed",
        "9",
        "--rate-limit",
        "100",
        "--rate-limit-burst",
        "20",
    ])
    .unwrap()
    .settings()
    .unwrap();
    assert_eq!(s.proxy_protocol.mode, crate::proxy::ProxyMode::Forbid);
    assert_eq!(s.proxy_protocol.require_ports, vec![80, 8080]);
    assert!(s.health_checks.keep);
    assert_eq!(s.health_checks.source_cidrs.len(), 2);
    assert_eq!(s.filter.allow_hosts, vec!["a.test", "*.b.test"]);
    assert_eq!(
        s.filter.allow_path_regex,
        vec!["^/(a|b),c"],
        "regexes are not split"
    );
    assert_eq!((s.filter.sample, s.filter.sample_seed), (0.5, 9));
    assert_eq!(
        (s.filter.rate_limit, s.filter.rate_limit_burst),
        (Some(100.0), Some(20))
    );
    for (flag, value, key) in [
        ("--sample", "2", "filter.sample"),
        ("--rate-limit", "0", "filter.rate_limit"),
        ("--deny-path-regex", "[", "filter.deny_path_regex[0]"),
    ] {
        let e = Cli::try_parse_from(["rebuilder", "run", flag, value])
            .unwrap()
            .settings()
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{flag} {value}: {e}");
    }
    assert!(Cli::try_parse_from(["rebuilder", "run", "--health-check-cidr", "x/9"]).is_err());
}

#[test]
fn pace_parses() {
    assert_eq!("realtime".parse::<Pace>(), Ok(Pace(1.0)));
    assert_eq!("2x".parse::<Pace>(), Ok(Pace(2.0)));
    assert!("0".parse::<Pace>().is_err());
    assert!("fast".parse::<Pace>().is_err());
}
