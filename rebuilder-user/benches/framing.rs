//! Request framing cost per request: one Data event carrying one whole request, on a keep-alive
//! stream (the framer is reused, as a worker reuses it for the connection's life).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rebuilder::http::{FlowContext, HttpLimits, HttpStats, RequestFramer};
use rebuilder::reassembly::StreamEvent;

/// A browser-like GET of about 400 bytes.
fn get() -> Vec<u8> {
    let req = "GET /api/v1/products/12345/reviews?page=2&sort=recent&lang=en HTTP/1.1\r\n\
        Host: shop.example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
        Accept: application/json, text/plain, */*\r\n\
        Accept-Language: en-US,en;q=0.5\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Referer: https://shop.example.com/products/12345\r\n\
        Cookie: session=4f9a1c2e7b3d4e5f6a7b8c9d0e1f2a3b; theme=dark\r\n\
        Connection: keep-alive\r\n\r\n";
    req.as_bytes().to_vec()
}

fn post() -> Vec<u8> {
    let body = vec![b'x'; 4096];
    let mut req = format!(
        "POST /api/v1/upload HTTP/1.1\r\nHost: shop.example.com\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// 4 KiB in four 1 KiB chunks, with an extension and a trailer.
fn chunked() -> Vec<u8> {
    let mut req = b"POST /api/v1/stream HTTP/1.1\r\nHost: shop.example.com\r\n\
        Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        .to_vec();
    for i in 0..4 {
        req.extend_from_slice(format!("400;part={i}\r\n").as_bytes());
        req.extend_from_slice(&[b'y'; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Checksum: 0123abcd\r\n\r\n");
    req
}

fn framing(c: &mut Criterion) {
    let ctx = FlowContext {
        vni: 1,
        client: "10.0.0.1:40000".parse().expect("address"),
        server: "10.0.0.2:80".parse().expect("address"),
    };
    let limits = Arc::new(HttpLimits::default());
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(1));
    for (name, req) in [
        ("get_400b", get()),
        ("post_4k", post()),
        ("chunked_post_4k", chunked()),
    ] {
        let bytes = Bytes::from(req);
        group.bench_function(name, |b| {
            let mut framer = RequestFramer::new(ctx, limits.clone(), true);
            let mut out = Vec::with_capacity(1);
            let mut stats = HttpStats::default();
            b.iter(|| {
                let ev = StreamEvent::Data {
                    bytes: bytes.clone(),
                    ts: 1,
                };
                framer.on_event(ev, &mut out, &mut stats);
                black_box(out.pop().expect("one request per event"));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
