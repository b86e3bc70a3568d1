//! Reassembly cost per segment: a stream fed in order (the common case, zero copy), a stream
//! whose segments arrive in swapped pairs (every other one buffered), and the whole flow table
//! (lookup, stream, framing) over many interleaved connections.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rebuilder::config::FlowKeyMode;
use rebuilder::http::HttpLimits;
use rebuilder::reassembly::{Stream, StreamConfig, StreamStats};
use rebuilder::segment::{FlowKey, Segment, TcpFlags};
use rebuilder::worker::{FlowTable, WorkerConfig};

const SEG: usize = 1448;
const N: usize = 1024;

fn key(port: u16) -> FlowKey {
    FlowKey {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, (port >> 8) as u8, port as u8)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)),
        src_port: port,
        dst_port: 80,
    }
}

fn segment(flow: FlowKey, seq: u32, payload: Bytes, ts: u64) -> Segment {
    let wire_len = payload.len() as u32;
    Segment {
        ts,
        vni: 1,
        flow,
        seq,
        ack: 1,
        flags: TcpFlags(TcpFlags::ACK),
        payload,
        wire_len,
    }
}

fn stream_benches(c: &mut Criterion) {
    let data = Bytes::from(vec![b'x'; SEG * N]);
    let segs: Vec<Segment> = (0..N)
        .map(|i| {
            segment(
                key(1),
                1 + (i * SEG) as u32,
                data.slice(i * SEG..(i + 1) * SEG),
                i as u64,
            )
        })
        .collect();
    let mut swapped = segs.clone();
    for pair in swapped.chunks_mut(2) {
        pair.reverse();
    }
    let syn = Segment {
        flags: TcpFlags(TcpFlags::SYN),
        payload: Bytes::new(),
        wire_len: 0,
        ..segs[0].clone()
    };
    let syn = Segment { seq: 0, ..syn };
    let cfg = StreamConfig::default();

    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Elements(N as u64));
    for (name, input) in [("in_order", &segs), ("swapped_pairs", &swapped)] {
        g.bench_function(name, |b| {
            let mut events = Vec::with_capacity(4);
            b.iter(|| {
                let mut s = Stream::new(&syn);
                let mut stats = StreamStats::default();
                for seg in input.iter() {
                    s.push(seg, &cfg, &mut events, &mut stats);
                    black_box(events.len());
                    events.clear();
                }
                black_box(stats.delivered_bytes)
            })
        });
    }
    g.finish();
}

fn table_bench(c: &mut Criterion) {
    // 256 keep-alive connections, each sending 4 GETs of ~300 bytes in one segment each,
    // interleaved: the worker's whole per-segment path including request framing.
    let req = b"GET /api/items/42?x=1 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nCookie: session=0123456789abcdef0123456789abcdef\r\n\r\n";
    let payload = Bytes::from_static(req);
    let mut segs = Vec::new();
    for round in 0..4u32 {
        for port in 0..256u16 {
            segs.push(segment(
                key(1000 + port),
                1 + round * req.len() as u32,
                payload.clone(),
                u64::from(round),
            ));
        }
    }
    let syns: Vec<Segment> = (0..256u16)
        .map(|p| Segment {
            seq: 0,
            flags: TcpFlags(TcpFlags::SYN),
            payload: Bytes::new(),
            wire_len: 0,
            ..segs[p as usize].clone()
        })
        .collect();
    let cfg = WorkerConfig {
        flow_key: FlowKeyMode::Inner,
        server_ports: Vec::new(),
        stream: StreamConfig::default(),
        http: Arc::new(HttpLimits::default()),
        idle_timeout_ns: 60_000_000_000,
        linger_ns: 30_000_000_000,
        budget: 256 << 20,
        proxy: rebuilder::proxy::ProxyPolicy::default(),
    };
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(segs.len() as u64));
    g.bench_function("get_per_segment_256_flows", |b| {
        b.iter(|| {
            let mut t = FlowTable::new(cfg.clone());
            let mut n = 0u64;
            for s in &syns {
                t.push(s, &mut |_| n += 1);
            }
            for s in &segs {
                t.push(s, &mut |r| {
                    black_box(&r);
                    n += 1
                });
            }
            assert_eq!(n, segs.len() as u64);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, stream_benches, table_bench);
criterion_main!(benches);
