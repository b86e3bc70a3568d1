//! Settings tests: value syntax, whole files, validation messages that name their keys, and
//! the memory budget's split.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, Path::new("test.toml"))
}

#[test]
fn sizes_and_durations_parse_with_units() {
    assert_eq!("64MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
    assert_eq!("512 KiB".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
    assert_eq!("1g".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
    assert_eq!("100".parse::<ByteSize>(), Ok(ByteSize(100)));
    assert!("12 parsecs".parse::<ByteSize>().is_err());
    assert!("99999999999999999999G".parse::<ByteSize>().is_err());
    assert_eq!(
        "500ms".parse::<Span>(),
        Ok(Span(Duration::from_millis(500)))
    );
    assert_eq!("2m".parse::<Span>(), Ok(Span(Duration::from_secs(120))));
    assert_eq!("3".parse::<Span>(), Ok(Span(Duration::from_secs(3))));
    assert!("1 fortnight".parse::<Span>().is_err());
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(parse("").unwrap(), Settings::default());
}

#[test]
fn a_full_file_parses() {
    let s = parse(
        r#"
            drain_timeout = "5s"
            memory_budget = "512MiB"
            [log]
            format = "json"
            [capture]
            vxlan_ports = [4789, 8472]
            vni_allow = [7, 8]
            server_ports = [80, 8080]
            flow_key = "vni"
            [udp]
            listen = "127.0.0.1:4789"
            recv_buffer = "16MiB"
            [reassembly]
            workers = 2
            reorder_timeout = "250ms"
            [http]
            max_body_bytes = "1MiB"
            [upstream]
            url = "http://10.0.0.5:8080"
            client_ip_header = "X-Forwarded-For"
            vni_header = "X-Mirror-VNI"
            [jsonl]
            path = "-"
            [status]
            listen = "0.0.0.0:9479"
            "#,
    )
    .unwrap();
    assert_eq!(s.capture.vxlan_ports, vec![4789, 8472]);
    assert_eq!(s.capture.flow_key, FlowKeyMode::Vni);
    assert_eq!(s.udp.recv_buffer, Some(ByteSize(16 << 20)));
    assert_eq!(
        s.reassembly.reorder_timeout,
        Span(Duration::from_millis(250))
    );
    assert_eq!(s.http.max_body_bytes, ByteSize(1 << 20));
    assert_eq!(s.upstream.url.as_deref(), Some("http://10.0.0.5:8080"));
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.drain_timeout, Span(Duration::from_secs(5)));
    assert_eq!(s.memory_budget, ByteSize(512 << 20));
}

#[test]
fn the_memory_budget_is_split_between_the_process_capture_queues_and_flows() {
    const MIB: u64 = 1 << 20;
    let settings = |text: &str| {
        let mut s = parse(text).unwrap();
        // Fixed, so that the figures do not depend on the machine's cores.
        s.reassembly.workers = 2;
        s.udp.sockets = 2;
        s
    };
    let threads = |capture: u64| 2 + capture + OTHER_THREADS;
    let process = |capture: u64| PROCESS_BASE + PROCESS_PER_THREAD * threads(capture);
    assert_eq!(Settings::default().memory_budget, ByteSize(256 * MIB));

    // Replay, no output: the process, the file's chunks, then the working memory: an eighth
    // in flight, the rest to flows.
    let s = settings("");
    let split = s.memory_split(CaptureKind::Pcap).unwrap();
    let working = 256 * MIB - process(1) - crate::capture::pcap::POOL_BYTES as u64;
    assert_eq!(
        split,
        MemorySplit {
            process: process(1),
            capture: crate::capture::pcap::POOL_BYTES as u64,
            recv_buffer: 0,
            xdp_ring: 0,
            queue_overhead: 0,
            upstream_queue: 0,
            jsonl_queue: 0,
            in_flight: working / 8,
            flows: working - working / 8,
        }
    );
    assert_eq!(split.total(), 256 * MIB);

    // UDP with an upstream: the sockets' kernel buffers (a quarter of the budget, doubled
    // by the kernel) and batch buffers; the queue gets a quarter of the working memory,
    // beside the headers of its 10000 requests and the rounding of its bytes.
    let s = settings("[upstream]\nurl = \"http://127.0.0.1:1\"\n");
    let split = s.memory_split(s.run_capture()).unwrap();
    assert_eq!(split.recv_buffer, 16 * MIB, "64 MiB over 2 sockets, halved");
    let capture = 2 * (2 * 16 * MIB + crate::capture::udp::pool_bytes(64) as u64);
    assert_eq!(split.capture, capture);
    let headers = 10_000 * crate::request::QUEUED_REQUEST_BYTES as u64;
    let working = 256 * MIB - process(2) - 16 * UPSTREAM_CONNECTION_BYTES - capture - headers;
    assert_eq!(split.upstream_queue, working / 4);
    assert_eq!(split.queue_overhead, headers + working / 4 / 4);
    assert_eq!(split.in_flight, working / 8);
    assert_eq!(
        split.flows,
        working - working / 4 - working / 4 / 4 - working / 8
    );
    assert_eq!(split.total(), 256 * MIB);
    assert!(split.flows > 256 * MIB / 3, "{split:?}");

    // XDP: the 64 MiB ring by default, and the reader's batch buffers.
    let s = settings("[xdp]\niface = \"eth1\"\n");
    let split = s.memory_split(s.run_capture()).unwrap();
    assert_eq!(split.xdp_ring, 64 * MIB);
    assert_eq!(
        split.capture,
        64 * MIB + crate::capture::xdp::POOL_BYTES as u64
    );
    assert_eq!(split.total(), 256 * MIB);
    // A smaller budget derives a smaller ring, a power of two.
    let s = settings("memory_budget = \"100MiB\"\n[xdp]\niface = \"eth1\"\n");
    assert_eq!(s.memory_split(s.run_capture()).unwrap().xdp_ring, 16 * MIB);

    // Two outputs share the quarter; the budget key scales everything.
    let s = settings(
        "memory_budget = \"1GiB\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[jsonl]\npath = \"-\"\n",
    );
    let split = s.memory_split(CaptureKind::Pcap).unwrap();
    assert_eq!(split.upstream_queue, split.jsonl_queue);
    let headers = 2 * 10_000 * crate::request::QUEUED_REQUEST_BYTES as u64;
    let working = 1024 * MIB - split.process - split.capture - headers;
    assert_eq!(split.upstream_queue, working / 8);
    assert_eq!(split.total(), 1024 * MIB);

    // An explicit value is used as given; the others keep their derived share.
    let s = settings(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\nqueue_bytes = \"60MiB\"\n[jsonl]\npath = \"-\"\n",
    );
    let split = s.memory_split(CaptureKind::Pcap).unwrap();
    assert_eq!(split.upstream_queue, 60 * MIB);
    assert_eq!(split.total(), 256 * MIB);

    // Explicit queues that do not leave half of the working memory are refused, naming
    // the keys.
    let e = parse(
        "memory_budget = \"64MiB\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\nqueue_bytes = \"30MiB\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("upstream.queue_bytes") && e.contains("memory_budget"),
        "{e}"
    );
    // An unconfigured output's explicit size takes nothing.
    let s = settings("memory_budget = \"64MiB\"\n[jsonl]\nqueue_bytes = \"40MiB\"\n");
    assert_eq!(s.memory_split(CaptureKind::Pcap).unwrap().jsonl_queue, 0);
    let e = parse("[jsonl]\npath = \"-\"\nqueue_bytes = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("jsonl.queue_bytes"), "{e}");
    let e = parse("memory_budget = \"16MiB\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("memory_budget") && e.contains(&ByteSize(MIN_MEMORY_BUDGET).to_string()),
        "{e}"
    );
    // The old place of the key is refused by name (nothing was released with it).
    let e = parse("[reassembly]\nmemory_budget = \"1GiB\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("memory_budget"), "{e}");
}

#[test]
fn the_shipped_example_fits_its_budget_on_any_instance() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rebuilder.toml");
    let mut s = Settings::from_file(&path).unwrap();
    s.upstream.url = Some("http://waf.internal:80".into());
    for cores in [1, 2, 4, 8, 16] {
        s.reassembly.workers = cores.max(2) - 1;
        s.udp.sockets = cores;
        for capture in [s.run_capture(), CaptureKind::Xdp, CaptureKind::Pcap] {
            let split = s.memory_split(capture).unwrap();
            assert_eq!(
                split.total(),
                s.memory_budget.bytes(),
                "{cores} cores {capture:?}"
            );
        }
    }
}

#[test]
fn explicit_capture_buffers_that_do_not_fit_the_budget_are_refused_by_name() {
    const MIB: u64 = 1 << 20;
    let settings = |text: &str| {
        let mut s = parse(text).unwrap();
        s.reassembly.workers = 2;
        s.udp.sockets = 2;
        s
    };
    // The shipped example's old 64 MiB per socket: 256 MiB of kernel buffers on two
    // sockets, more than the whole default budget.
    let s = settings("[udp]\nrecv_buffer = \"64MiB\"\n");
    let e = s.memory_split(s.run_capture()).unwrap_err().to_string();
    for key in ["udp.recv_buffer", "udp.sockets", "memory_budget"] {
        assert!(e.contains(key), "{key}: {e}");
    }
    assert!(e.contains("256MiB"), "{e}");
    // Replay does not hold the sockets' buffers: the same file replays.
    assert!(s.memory_split(CaptureKind::Pcap).is_ok());
    // A ring of half the budget leaves less than a quarter once the rest is counted.
    let s = settings("memory_budget = \"64MiB\"\n[xdp]\niface = \"eth1\"\nring_size = \"32MiB\"\n");
    let e = s.memory_split(s.run_capture()).unwrap_err().to_string();
    assert!(
        e.contains("xdp.ring_size") && e.contains("memory_budget"),
        "{e}"
    );
    let s =
        settings("memory_budget = \"128MiB\"\n[xdp]\niface = \"eth1\"\nring_size = \"32MiB\"\n");
    let split = s.memory_split(s.run_capture()).unwrap();
    assert_eq!(split.xdp_ring, 32 * MIB);
    assert_eq!(split.total(), 128 * MIB);
    // Derived sizes always fit the smallest budget with a worker and a socket (a debug
    // build's code takes 8 MiB more), and with two outputs (and their 20000 requests'
    // headers) a budget half as large again.
    for (budget, text) in [
        (MIN_MEMORY_BUDGET, ""),
        (MIN_MEMORY_BUDGET, "[xdp]\niface = \"eth1\"\n"),
        (
            MIN_MEMORY_BUDGET / 2 * 3,
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[jsonl]\npath = \"-\"\n",
        ),
    ] {
        let mut s = settings(&format!("memory_budget = \"{}\"\n{text}", ByteSize(budget)));
        s.reassembly.workers = 1;
        s.udp.sockets = 1;
        for capture in [CaptureKind::Pcap, s.run_capture()] {
            let split = s.memory_split(capture).unwrap();
            assert_eq!(split.total(), budget, "{text}: {split:?}");
            assert!(split.flows >= 4 * MIB, "{text}: {split:?}");
        }
    }
    let e = parse("[udp]\nrecv_buffer = 0\n").unwrap_err().to_string();
    assert!(e.contains("udp.recv_buffer"), "{e}");
}

#[test]
fn the_xdp_section_parses_and_is_validated() {
    let s = parse(
        "[xdp]\niface = \"eth1\"\nmode = \"generic\"\nring_size = \"16MiB\"\n\
         pass_consumed = true\nports = [80, 443]\n",
    )
    .unwrap();
    assert_eq!(
        s.xdp,
        XdpSettings {
            iface: Some("eth1".into()),
            mode: XdpModeSetting::Generic,
            ring_size: Some(ByteSize(16 << 20)),
            pass_consumed: true,
            ports: vec![80, 443],
        }
    );
    assert_eq!(Settings::default().xdp.ring_size, None);
    assert_eq!(Settings::default().xdp_ring_bytes(), 64 << 20);
    assert_eq!(Settings::default().xdp.mode, XdpModeSetting::Auto);
    for (text, key) in [
        ("[xdp]\nring_size = 5000\n", "xdp.ring_size"),
        ("[xdp]\nring_size = \"2KiB\"\n", "xdp.ring_size"),
        ("[xdp]\nring_size = \"2GiB\"\n", "xdp.ring_size"),
        ("[xdp]\niface = \"\"\n", "xdp.iface"),
        ("[xdp]\niface = \"much-too-long-name\"\n", "xdp.iface"),
        ("[xdp]\nmode = \"native\"\n", "xdp.mode"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn max_idle_is_off_unless_set_and_never_zero() {
    assert_eq!(Settings::default().status.max_idle, None);
    let s = parse("[status]\nmax_idle = \"30s\"\n").unwrap();
    assert_eq!(s.status.max_idle, Some(Span(Duration::from_secs(30))));
    assert_eq!(
        parse("[status]\nmax_idle = 2\n").unwrap().status.max_idle,
        Some(Span(Duration::from_secs(2)))
    );
    let e = parse("[status]\nmax_idle = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("status.max_idle"), "{e}");
}

#[test]
fn proxy_health_check_and_filter_sections_parse_and_are_validated() {
    let s = parse(
        r#"
            [proxy_protocol]
            mode = "forbid"
            require_ports = [8080, 80]
            [health_checks]
            keep = true
            user_agents = ["ELB-HealthChecker/", "kube-probe/"]
            source_cidrs = ["10.0.0.0/16", "2001:db8::/32", "10.9.9.9"]
            [filter]
            allow_hosts = ["*.example.com"]
            deny_methods = ["OPTIONS"]
            deny_paths = ["/static/"]
            allow_path_regex = ["^/api/"]
            sample = 0.1
            sample_seed = 7
            rate_limit = 250.5
            rate_limit_burst = 50
            "#,
    )
    .unwrap();
    let p = s.proxy_policy();
    assert_eq!(p.require, vec![80, 8080]);
    assert_eq!(p.mode_for(80), crate::proxy::ProxyMode::Require);
    assert_eq!(p.mode_for(443), crate::proxy::ProxyMode::Forbid);
    assert!(s.health_checks.keep);
    assert_eq!(s.health_checks.source_cidrs.len(), 3);
    let f = s.filter_config();
    assert_eq!((f.sample, f.sample_seed), (0.1, 7));
    assert_eq!((f.rate_limit, f.rate_limit_burst), (Some(250.5), Some(50)));
    let d = Settings::default();
    assert_eq!(d.proxy_policy().mode_for(80), crate::proxy::ProxyMode::Auto);
    assert_eq!(d.health_checks.user_agents, vec!["ELB-HealthChecker/"]);
    assert!(!d.health_checks.keep);
    assert_eq!((d.filter.sample, d.filter.rate_limit), (1.0, None));
    for (text, key) in [
        (
            "[proxy_protocol]\nmode = \"maybe\"\n",
            "proxy_protocol.mode",
        ),
        (
            "[proxy_protocol]\nrequire_ports = [80]\nforbid_ports = [80]\n",
            "proxy_protocol.require_ports",
        ),
        (
            "[health_checks]\nsource_cidrs = [\"10.0.0.0/40\"]\n",
            "health_checks.source_cidrs",
        ),
        (
            "[health_checks]\nuser_agents = [\"\"]\n",
            "health_checks.user_agents",
        ),
        ("[filter]\nsample = 1.5\n", "filter.sample"),
        ("[filter]\nrate_limit = -1\n", "filter.rate_limit"),
        (
            "[filter]\nrate_limit = 5\nrate_limit_burst = 0\n",
            "filter.rate_limit_burst",
        ),
        (
            "[filter]\ndeny_path_regex = [\"(\"]\n",
            "filter.deny_path_regex[0]",
        ),
        (
            "[filter]\nallow_methods = [\"GE T\"]\n",
            "filter.allow_methods",
        ),
        ("[filter]\nbogus = 1\n", "bogus"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn unknown_keys_are_named() {
    let e = parse("[upstream]\nurll = \"http://x:1\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("upstream") && e.contains("urll"), "{e}");
    let e = parse("bogus = 1\n").unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = parse("[reassembly]\nidle_timeout = \"5 parsecs\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reassembly.idle_timeout") && e.contains("parsecs"),
        "{e}"
    );
    let e = parse("[udp]\nlisten = \"nowhere\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("udp.listen"), "{e}");
    let e = parse("[capture]\nvni_allow = [16777216]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vni_allow") && e.contains("16777216"), "{e}");
    let e = parse("[upstream]\nvni_header = \"X Bad\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("upstream.vni_header"), "{e}");
    let e = parse("[upstream]\nurl = \"https://waf:443\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("upstream.url"), "{e}");
    let e = parse("[capture\n").unwrap_err().to_string();
    assert!(e.contains("test.toml"), "{e}");
}
