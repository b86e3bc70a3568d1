//! Capture-layer costs: decoding one VXLAN-encapsulated TCP segment, and reading a pcap file.
//!
//! `cargo bench -p rebuilder --bench decode -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{PacketBuilder, TcpOptionElement};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::TsResolution;
use rebuilder::capture::decode::{DecodeConfig, DecodeStats, Decoder, LinkType};
use rebuilder::capture::pcap::PcapSource;

/// What AWS Traffic Mirroring delivers for one request segment: outer Ethernet/IPv4/UDP 4789,
/// VXLAN, inner Ethernet/IPv4/TCP with timestamps, 500 bytes of payload.
fn typical_frame(i: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..500u32).map(|j| (i + j) as u8).collect();
    let mut inner = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 1, 20], [10, 0, 2, 30], 64)
        .tcp(40000 + (i % 1000) as u16, 80, 1_000_000 + i * 500, 65535)
        .ack(77)
        .psh()
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(i, i),
        ])
        .expect("options fit")
        .write(&mut inner, &payload)
        .expect("inner frame");
    let mut datagram = vec![0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];
    datagram.extend_from_slice(&inner);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([172, 31, 0, 5], [172, 31, 0, 9], 64)
        .udp(50000, 4789)
        .write(&mut frame, &datagram)
        .expect("outer frame");
    frame
}

fn decode(c: &mut Criterion) {
    let decoder = Decoder::new(&DecodeConfig::default());
    let frame = Bytes::from(typical_frame(1));
    let datagram = frame.slice(14 + 20 + 8..);
    assert!(decoder.decode_frame(LinkType::Ethernet, &frame, 0).is_ok());

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_ethernet_vxlan_tcp_500B", |b| {
        let mut stats = DecodeStats::default();
        b.iter(|| {
            let r = decoder.decode_frame(LinkType::Ethernet, black_box(&frame), 1);
            stats.record(&r);
            black_box(r)
        })
    });
    g.bench_function("datagram_vxlan_tcp_500B", |b| {
        b.iter(|| black_box(decoder.decode_vxlan(black_box(&datagram), 1)))
    });
    g.finish();
}

fn pcap_read(c: &mut Criterion) {
    const N: u32 = 20_000;
    let header = PcapHeader {
        ts_resolution: TsResolution::NanoSecond,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
    for i in 0..N {
        let f = typical_frame(i);
        w.write_packet(&PcapPacket::new(
            Duration::from_nanos(u64::from(i) * 1000),
            f.len() as u32,
            &f,
        ))
        .expect("record");
    }
    let file = Bytes::from(w.into_writer());
    let decoder = Decoder::new(&DecodeConfig::default());

    let mut g = c.benchmark_group("pcap");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(20);
    g.bench_function("read_20k_frames", |b| {
        b.iter(|| {
            let src =
                PcapSource::from_reader(Cursor::new(file.clone()), "bench", 2 << 20).expect("pcap");
            black_box(src.map(|f| f.data.len()).sum::<usize>())
        })
    });
    g.bench_function("read_and_decode_20k_frames", |b| {
        b.iter(|| {
            let mut src =
                PcapSource::from_reader(Cursor::new(file.clone()), "bench", 2 << 20).expect("pcap");
            let mut stats = DecodeStats::default();
            while let Some(f) = src.next_frame() {
                stats.record(&decoder.decode_frame(f.link, &f.data, f.ts));
            }
            assert_eq!(stats.segments(), u64::from(N));
            stats.segments()
        })
    });
    g.finish();
}

criterion_group!(benches, decode, pcap_read);
criterion_main!(benches);
