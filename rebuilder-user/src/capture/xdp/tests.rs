//! Unit tests of the XDP input that need no kernel: attach planning and its errors, record
//! conversion, batching, the config and the metrics.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::registry::Registry;
use rebuilder_ebpf::{Counter, RecordHeader, FAMILY_IPV4, FAMILY_IPV6, RECORD_HEADER_LEN};

use super::*;
use crate::capture::decode::Drop;
use crate::capture::iface::NativeBlocker;
use crate::config::{Settings, XdpModeSetting};
use crate::segment::{FlowKey, TcpFlags};

/// A ring record as the kernel writes it: header (host order), payload, then the slack of the
/// size class.
fn record(h: &RecordHeader, payload: &[u8], slack: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER_LEN + payload.len() + slack);
    v.extend_from_slice(&h.to_bytes());
    v.extend_from_slice(payload);
    v.resize(v.len() + slack, 0xAA);
    v
}

fn v4_header(payload: &[u8]) -> RecordHeader {
    let mut src_addr = [0u8; 16];
    src_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
    let mut dst_addr = [0u8; 16];
    dst_addr[..4].copy_from_slice(&[192, 168, 7, 9]);
    RecordHeader {
        ts_ns: 5_000_000_000,
        vni: 77,
        seq: 0xFFFF_FFF0,
        ack: 12345,
        captured_len: payload.len() as u32,
        wire_len: payload.len() as u32,
        src_port: 51000,
        dst_port: 80,
        family: FAMILY_IPV4,
        tcp_flags: TcpFlags::PSH | TcpFlags::ACK,
        reserved0: 0,
        src_addr,
        dst_addr,
        reserved1: 0,
    }
}

fn converter(allow: &[u32], deny: &[u32]) -> RecordConverter {
    RecordConverter::new(
        allow,
        deny,
        EpochClock::from_offset(1_700_000_000_000_000_000),
    )
}

#[test]
fn ipv4_record_becomes_the_same_segment() {
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    let h = v4_header(payload);
    let seg = converter(&[], &[])
        .convert(&h, Bytes::from_static(payload))
        .unwrap();
    assert_eq!(seg.ts, 1_700_000_005_000_000_000);
    assert_eq!(seg.vni, 77);
    assert_eq!(
        seg.flow,
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 168, 7, 9)),
            src_port: 51000,
            dst_port: 80,
        }
    );
    assert_eq!(seg.seq, 0xFFFF_FFF0);
    assert_eq!(seg.ack, 12345);
    assert!(seg.flags.psh() && seg.flags.ack());
    assert!(!seg.flags.syn() && !seg.flags.fin() && !seg.flags.rst());
    assert_eq!(&seg.payload[..], payload);
    assert_eq!(seg.wire_len, payload.len() as u32);
    assert!(!seg.is_truncated());
}

#[test]
fn ipv6_syn_record_keeps_addresses_and_flags() {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:ffff::80".parse().unwrap();
    let h = RecordHeader {
        family: FAMILY_IPV6,
        src_addr: src.octets(),
        dst_addr: dst.octets(),
        tcp_flags: TcpFlags::SYN,
        captured_len: 0,
        wire_len: 0,
        ..v4_header(b"")
    };
    let seg = converter(&[], &[]).convert(&h, Bytes::new()).unwrap();
    assert_eq!(seg.flow.src, IpAddr::V6(src));
    assert_eq!(seg.flow.dst, IpAddr::V6(dst));
    assert!(seg.flags.syn() && !seg.flags.ack());
    assert_eq!(seg.seq_len(), 1, "a SYN occupies one sequence number");
}

#[test]
fn truncated_record_keeps_the_wire_length() {
    // AWS PacketLength cut a 1448-byte segment to 100 bytes.
    let payload = vec![b'x'; 100];
    let h = RecordHeader {
        wire_len: 1448,
        ..v4_header(&payload)
    };
    let seg = converter(&[], &[])
        .convert(&h, Bytes::from(payload))
        .unwrap();
    assert!(seg.is_truncated());
    assert_eq!(seg.payload.len(), 100);
    assert_eq!(seg.wire_len, 1448);
    assert_eq!(seg.seq_len(), 1448);
}

#[test]
fn vni_deny_wins_and_allow_is_applied_again() {
    let h = v4_header(b"x");
    let conv = converter(&[], &[5, 77]);
    assert_eq!(
        conv.convert(&h, Bytes::from_static(b"x")),
        Err(Drop::VniDenied)
    );
    let conv = converter(&[77], &[77]);
    assert_eq!(
        conv.convert(&h, Bytes::from_static(b"x")),
        Err(Drop::VniDenied)
    );
    let conv = converter(&[1, 2], &[]);
    assert_eq!(
        conv.convert(&h, Bytes::from_static(b"x")),
        Err(Drop::VniDenied)
    );
    let conv = converter(&[77, 2], &[3]);
    assert_eq!(conv.convert(&h, Bytes::from_static(b"x")).unwrap().vni, 77);
}

#[test]
fn a_batch_shares_one_buffer_and_skips_bad_records() {
    let (p1, p2) = (
        &b"POST /a HTTP/1.1\r\n"[..],
        &b"Content-Length: 0\r\n\r\n"[..],
    );
    let h1 = v4_header(p1);
    let h2 = RecordHeader {
        seq: h1.seq.wrapping_add(p1.len() as u32),
        ..v4_header(p2)
    };
    let mut bad = v4_header(b"");
    bad.family = 9;
    let mut batch = RecordBatch::new();
    batch.take(&record(&h1, p1, 256 - p1.len()));
    batch.take(&record(&bad, b"", 0));
    batch.take(&[1, 2, 3]);
    batch.take(&record(&h2, p2, 7));
    let mut out = Vec::new();
    batch.hand_out(&converter(&[], &[]), |r| out.push(r));
    assert_eq!(out.len(), 4);
    assert_eq!(out[1], Err(BAD_RECORD));
    assert_eq!(out[2], Err(BAD_RECORD));
    let (s1, s2) = match (&out[0], &out[3]) {
        (Ok(a), Ok(b)) => (a, b),
        other => panic!("expected two segments, got {other:?}"),
    };
    assert_eq!(&s1.payload[..], p1);
    assert_eq!(&s2.payload[..], p2);
    assert_eq!(s2.seq, 0xFFFF_FFF0u32.wrapping_add(p1.len() as u32));
    // One copy for the batch: the second payload follows the first in the same buffer.
    assert_eq!(
        s1.payload.as_ptr().wrapping_add(p1.len()),
        s2.payload.as_ptr()
    );
    let stats = batch.stats();
    assert_eq!(stats.records, 4);
    assert_eq!(stats.record_errors, [1, 1, 0, 0, 0]);
    assert_eq!(stats.bad_records(), 2);

    // The next batch starts empty: nothing is handed out twice.
    let mut again = Vec::new();
    batch.hand_out(&converter(&[], &[]), |r| again.push(r));
    assert!(again.is_empty());
}

#[test]
fn a_batch_fills_at_its_byte_limit() {
    let payload = vec![7u8; 9000];
    let h = v4_header(&payload);
    let rec = record(&h, &payload, 216);
    let mut batch = RecordBatch::new();
    let mut n = 0;
    while !batch.is_full() {
        batch.take(&rec);
        n += 1;
        assert!(n < 1000, "never full");
    }
    assert_eq!(n, BATCH_BYTES.div_ceil(9000));
    let mut got = 0;
    batch.hand_out(&converter(&[], &[]), |r| {
        assert_eq!(r.unwrap().payload.len(), 9000);
        got += 1;
    });
    assert_eq!(got, n);
    assert!(!batch.is_full());
}

#[test]
fn batch_buffers_come_from_a_pool_of_two() {
    let payload = vec![5u8; 1000];
    let rec = record(&v4_header(&payload), &payload, 0);
    let conv = converter(&[], &[]);
    let mut batch = RecordBatch::new();
    let fill = |batch: &mut RecordBatch| {
        batch.take(&rec);
        let mut out = Vec::new();
        batch.hand_out(&conv, |r| out.push(r.unwrap()));
        out.pop().unwrap()
    };
    let a = fill(&mut batch);
    assert!(batch.has_spare(), "one buffer made, room for another");
    let b = fill(&mut batch);
    assert!(!batch.has_spare(), "both held by segments");
    assert_ne!(a.payload.as_ptr(), b.payload.as_ptr());
    let pa = a.payload.as_ptr();
    drop(a);
    assert!(batch.has_spare());
    // The freed buffer is filled again, not a new one.
    let c = fill(&mut batch);
    assert_eq!(c.payload.as_ptr(), pa);
    assert_eq!(
        &b.payload[..],
        &payload[..],
        "a held batch is never written over"
    );
    assert_eq!(
        POOL_BYTES,
        2 * crate::memory::alloc_size((1 << 20) + rebuilder_ebpf::PAYLOAD_MAX as usize)
    );
}

#[test]
fn epoch_clock_adds_the_offset_and_clamps() {
    let c = EpochClock::from_offset(1_000);
    assert_eq!(c.to_epoch(5), 1_005);
    assert_eq!(c.to_epoch(u64::MAX), u64::MAX);
    let c = EpochClock::from_offset(-1_000);
    assert_eq!(c.to_epoch(5_000), 4_000);
    assert_eq!(c.to_epoch(5), 0);
}

#[test]
fn sampled_epoch_clock_maps_monotonic_now_to_wall_clock_now() {
    let c = EpochClock::sample();
    let mono = monotonic_ns();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let mapped = i128::from(c.to_epoch(mono));
    // Both clocks are read within microseconds; a second is room for a loaded machine.
    assert!(
        (mapped - wall).abs() < 1_000_000_000,
        "mapped {mapped}, wall {wall}"
    );
    assert!(monotonic_ns() >= mono, "CLOCK_MONOTONIC went back");
}

fn ena_blockers() -> Vec<NativeBlocker> {
    vec![NativeBlocker::EnaMtu { mtu: 9001 }]
}

#[test]
fn plans_per_setting() {
    let auto = plan_attach(XdpModeSetting::Auto, "eth0", &[]);
    assert_eq!(auto.modes, vec![AttachMode::Driver, AttachMode::Generic]);
    assert_eq!(auto.driver_skipped, None);

    let blocked = plan_attach(XdpModeSetting::Auto, "eth0", &ena_blockers());
    assert_eq!(blocked.modes, vec![AttachMode::Generic]);
    let why = blocked.driver_skipped.unwrap();
    assert!(why.contains("MTU 3498, the MTU is 9001"), "{why}");
    assert!(why.contains("ip link set dev eth0 mtu 3498"), "{why}");

    let forced = plan_attach(XdpModeSetting::Driver, "eth0", &ena_blockers());
    assert_eq!(forced.modes, vec![AttachMode::Driver]);
    let generic = plan_attach(XdpModeSetting::Generic, "eth0", &[]);
    assert_eq!(generic.modes, vec![AttachMode::Generic]);
}

fn fail(errno: i32, message: &str) -> AttemptError {
    AttemptError {
        errno: Some(errno),
        message: message.into(),
    }
}

#[test]
fn auto_uses_driver_mode_when_it_attaches() {
    let plan = plan_attach(XdpModeSetting::Auto, "veth0", &[]);
    let mut tried = Vec::new();
    let (v, a) = run_plan(&plan, XdpModeSetting::Auto, "veth0", &[], |m| {
        tried.push(m);
        Ok::<_, AttemptError>(42)
    })
    .unwrap();
    assert_eq!(v, 42);
    assert_eq!(tried, vec![AttachMode::Driver]);
    assert_eq!(
        a,
        Attached {
            iface: "veth0".into(),
            mode: AttachMode::Driver,
            requested: XdpModeSetting::Auto,
            fallback: None,
        }
    );
}

#[test]
fn auto_falls_back_to_generic_with_the_driver_error() {
    let plan = plan_attach(XdpModeSetting::Auto, "eth0", &[]);
    let mut tried = Vec::new();
    let ((), a) = run_plan(&plan, XdpModeSetting::Auto, "eth0", &[], |m| {
        tried.push(m);
        match m {
            AttachMode::Driver => Err(fail(libc::EOPNOTSUPP, "driver says no")),
            AttachMode::Generic => Ok(()),
        }
    })
    .unwrap();
    assert_eq!(tried, vec![AttachMode::Driver, AttachMode::Generic]);
    assert_eq!(a.mode, AttachMode::Generic);
    assert_eq!(
        a.fallback.as_deref(),
        Some("driver mode failed: driver says no")
    );
}

#[test]
fn auto_with_a_blocker_never_tries_driver_mode_and_says_why() {
    let b = ena_blockers();
    let plan = plan_attach(XdpModeSetting::Auto, "eth0", &b);
    let mut tried = Vec::new();
    let ((), a) = run_plan(&plan, XdpModeSetting::Auto, "eth0", &b, |m| {
        tried.push(m);
        Ok(())
    })
    .unwrap();
    assert_eq!(tried, vec![AttachMode::Generic]);
    assert!(a
        .fallback
        .unwrap()
        .contains("ip link set dev eth0 mtu 3498"));
}

#[test]
fn a_busy_interface_is_an_error_without_fallback() {
    for errno in [libc::EBUSY, libc::EEXIST] {
        let plan = plan_attach(XdpModeSetting::Auto, "veth0", &[]);
        let mut tried = Vec::new();
        let e = run_plan(&plan, XdpModeSetting::Auto, "veth0", &[], |m| {
            tried.push(m);
            Err::<(), _>(fail(errno, "link create: busy"))
        })
        .unwrap_err();
        assert_eq!(
            tried,
            vec![AttachMode::Driver],
            "no fallback after errno {errno}"
        );
        let text = e.to_string();
        assert!(matches!(e, XdpError::Busy { .. }), "{e:?}");
        assert!(text.contains("already attached to veth0"), "{text}");
        assert!(text.contains("link create: busy"), "{text}");
    }
}

#[test]
fn forced_driver_mode_fails_clearly_with_the_blockers() {
    let b = vec![NativeBlocker::EnaChannels {
        combined: 8,
        max_combined: 8,
    }];
    let plan = plan_attach(XdpModeSetting::Driver, "eth0", &b);
    let e = run_plan(&plan, XdpModeSetting::Driver, "eth0", &b, |_| {
        Err::<(), _>(fail(libc::EINVAL, "netlink error: Invalid argument"))
    })
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("cannot attach the XDP program to eth0 in driver mode: netlink error"),
        "{text}"
    );
    assert!(text.contains("ethtool -L eth0 combined 4"), "{text}");
}

#[test]
fn forced_generic_failure_names_privileges_on_eperm() {
    let plan = plan_attach(XdpModeSetting::Generic, "eth0", &[]);
    let e = run_plan(&plan, XdpModeSetting::Generic, "eth0", &[], |_| {
        Err::<(), _>(fail(libc::EPERM, "Operation not permitted"))
    })
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("generic mode"), "{text}");
    assert!(text.contains("CAP_BPF"), "{text}");
}

#[test]
fn errno_is_found_through_the_source_chain() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);
    let e = Outer(io::Error::from_raw_os_error(libc::EBUSY));
    assert_eq!(errno_of(&e), Some(libc::EBUSY));
    let chain = error_chain(&e);
    assert!(chain.starts_with("outer: "), "{chain}");
    assert!(is_busy(Some(libc::EEXIST)));
    assert!(!is_busy(Some(libc::EINVAL)));
    assert!(!is_busy(None));
}

#[test]
fn config_maps_settings_to_the_program() {
    let mut s = Settings::default();
    s.capture.vxlan_ports = vec![8472, 4789, 4789];
    s.capture.vni_allow = vec![9, 3, 9];
    s.capture.vni_deny = vec![4];
    s.xdp.ports = vec![80, 443];
    s.xdp.pass_consumed = true;
    s.xdp.ring_size = Some(crate::config::ByteSize(1 << 20));
    let c = XdpConfig::from_settings(&s, "eth1");
    assert_eq!(c.iface, "eth1");
    assert_eq!(c.vni_deny, vec![4]);
    let p = c.program_config();
    assert_eq!(p.vxlan_ports, vec![4789, 8472]);
    assert_eq!(p.vnis, vec![3, 9]);
    assert_eq!(p.inner_ports, vec![80, 443]);
    assert!(p.pass_consumed);
    assert_eq!(p.ring_size, 1 << 20);
}

#[test]
fn kernel_counter_deltas_land_in_their_metrics() {
    let mut reg = Registry::default();
    let m = XdpMetrics::register(&mut reg);
    let mut before = [0u64; Counter::COUNT];
    let mut now = [0u64; Counter::COUNT];
    now[Counter::Seen.index() as usize] = 10;
    now[Counter::Pushed.index() as usize] = 7;
    now[Counter::FilteredPureAck.index() as usize] = 3;
    now[Counter::PushedBytes.index() as usize] = 700;
    m.publish_kernel(&now, &before);
    before = now;
    now[Counter::Seen.index() as usize] = 11;
    now[Counter::RingFull.index() as usize] = 1;
    m.publish_kernel(&now, &before);
    m.set_attached(&Attached {
        iface: "veth0".into(),
        mode: AttachMode::Generic,
        requested: XdpModeSetting::Auto,
        fallback: Some("driver mode failed: x".into()),
    });
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for line in [
        "rebuilder_xdp_packets_total{outcome=\"pushed\"} 7",
        "rebuilder_xdp_packets_total{outcome=\"filtered_pure_ack\"} 3",
        "rebuilder_xdp_packets_total{outcome=\"ring_full\"} 1",
        "rebuilder_xdp_packets_total{outcome=\"malformed\"} 0",
        "rebuilder_xdp_seen_packets_total 11",
        "rebuilder_xdp_pushed_bytes_total 700",
        "rebuilder_xdp_attached{iface=\"veth0\",mode=\"generic\",requested=\"auto\",reason=\"driver mode failed: x\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("outcome=\"seen\""), "seen is not an outcome");
}
