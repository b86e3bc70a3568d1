//! The `rebuilder-gen` binary, run as a user would.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rebuilder_tests::readback::{decode_vxlan, read_capture};
use rebuilder_tests::truth::read_truth;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rebuilder-gen-cli-{}-{name}", std::process::id()))
}

fn gen(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rebuilder-gen"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn capture_and_truth_agree() {
    let (cap, truth) = (temp("a.pcapng"), temp("a.jsonl"));
    let (ok, stderr) = gen(&[
        "--out",
        cap.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--format",
        "pcapng",
        "--link",
        "sll",
        "--connections",
        "5",
        "--requests-per-connection",
        "4",
        "--post-bytes",
        "4000",
        "--post-percent",
        "50",
        "--seed",
        "3",
    ]);
    assert!(ok, "{stderr}");
    let frames = read_capture(&cap).unwrap();
    let records = read_truth(&truth).unwrap();
    let _ = std::fs::remove_file(&cap);
    let _ = std::fs::remove_file(&truth);
    assert!(
        stderr.starts_with(&format!("{} packets", frames.len())),
        "{stderr}"
    );
    assert_eq!(records.len(), 20);
    assert!(records.iter().all(|r| r.rebuildable));

    // Each connection's client payloads, in arrival order, are its requests back to back.
    let mut streams: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    for d in &frames {
        let t = d.inner.tcp.as_ref().unwrap();
        streams
            .entry(SocketAddr::new(d.inner.src, t.src_port))
            .or_default()
            .extend_from_slice(&t.payload);
    }
    let mut expected: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    for r in &records {
        expected
            .entry(r.client)
            .or_default()
            .extend_from_slice(&r.raw);
    }
    assert_eq!(expected.len(), 5);
    for (client, bytes) in &expected {
        assert_eq!(streams.get(client), Some(bytes), "{client}");
    }
}

#[test]
fn packet_target_and_udp_sending() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Room for every datagram even if this thread is descheduled on a loaded machine.
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let addr = rx.local_addr().unwrap().to_string();
    // Received while the generator runs (and paced), only copied here: decoding (slow in a
    // debug build) happens after, so the receiver never falls behind.
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while let Ok((len, _)) = rx.recv_from(&mut buf) {
            got.push(buf[..len].to_vec());
        }
        got
    });
    let (ok, stderr) = gen(&[
        "--udp",
        &addr,
        "--pps",
        "20000",
        "--packets",
        "300",
        "--connections",
        "4",
    ]);
    assert!(ok, "{stderr}");
    let sent: usize = stderr.split(' ').next().unwrap().parse().unwrap();
    assert!(sent >= 300, "{stderr}");
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), sent);
    for d in &got {
        let (flags, reserved_zero, _, inner) = decode_vxlan(d).unwrap();
        assert_eq!((flags, reserved_zero), (0x08, true));
        assert_eq!(inner.tcp.unwrap().checksum_ok, Some(true));
    }
}

#[test]
fn bad_invocations_fail() {
    assert!(!gen(&[]).0);
    assert!(!gen(&["--out", "/nonexistent-dir/x.pcap"]).0);
    assert!(
        !gen(&[
            "--out",
            temp("b.pcap").to_str().unwrap(),
            "--vlan",
            "1",
            "--vlan",
            "2",
            "--vlan",
            "3"
        ])
        .0
    );
    assert!(!gen(&["--udp", "192.0.2.1:4789"]).0);
}
