//! Writes the hand-made seed corpora under `fuzz/seeds/<target>/`:
//! `cargo run --bin make-seeds` from `fuzz/` (the files are committed; rerun after changing an
//! input layout). Each seed is one small, meaningful case the fuzzer mutates from.

use std::fs;
use std::path::Path;

use etherparse::PacketBuilder;
use rebuilder_ebpf::{RecordHeader, FAMILY_IPV4, FAMILY_IPV6};
use rebuilder_fuzz::decode::wrap;
use rebuilder_fuzz::http::{self, Event};
use rebuilder_fuzz::known;
use rebuilder_fuzz::proxy;
use rebuilder_fuzz::reassembly::{self, Knobs, Op, SegSpec};
use rebuilder_fuzz::record::encode_header;

const GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH_ACK: u8 = 0x18;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("seed directory");
    fs::write(dir.join(name), bytes).expect("seed file");
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    v
}

fn inner_v4(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 1, 2, 3], [10, 9, 8, 7], 64)
        .tcp(40000, 80, 0xdead_beef, 1000)
        .ack(0x0102_0304)
        .psh()
        .write(&mut v, payload)
        .expect("inner frame");
    v
}

fn inner_vlan_v6(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(42).expect("vlan id"))
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .tcp(40001, 443, 0xffff_fff0, 1000)
        .ack(1)
        .write(&mut v, payload)
        .expect("inner frame");
    v
}

fn decode_seeds() {
    // Configuration 0 (defaults), whole frame.
    let outer = wrap(false, 4789, &vxlan(7, &inner_v4(GET))).expect("frame");
    write(
        "decode",
        "eth-ipv4-vxlan-ipv4-get",
        &[&[0, 255][..], &outer].concat(),
    );
    // Configuration 1 allows VNI 7 on port 8472 or 4789; outer IPv6, inner VLAN + IPv6.
    let outer = wrap(true, 8472, &vxlan(7, &inner_vlan_v6(GET))).expect("frame");
    write(
        "decode",
        "eth-ipv6-vxlan-vlan-ipv6",
        &[&[1, 255][..], &outer].concat(),
    );
    // Cut inside the payload: the inner IP length says more than arrived.
    let outer = wrap(false, 4789, &vxlan(9, &inner_v4(GET))).expect("frame");
    let cut = outer.len() - 20;
    write(
        "decode",
        "truncated",
        &[&[0, 240][..], &outer[..cut]].concat(),
    );
    // The bare datagram (socket path): VXLAN header first.
    write(
        "decode",
        "datagram",
        &[&[2, 128][..], &vxlan(0x00ab_cdef, &inner_v4(GET))].concat(),
    );
    // Linux cooked v2 capture of the outer IPv4 packet.
    let outer = wrap(false, 4789, &vxlan(7, &inner_v4(b"x"))).expect("frame");
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 5, 0, 0,
    ];
    sll2.extend_from_slice(&outer[14..]);
    write("decode", "sll2", &[&[3, 255][..], &sll2].concat());
}

fn knobs_roomy() -> Knobs {
    Knobs {
        budget: u16::MAX,
        max_buffered: u16::MAX,
        max_window: u16::MAX,
        reorder_ms: 100,
        idle_s: 60,
        linger_s: 30,
        max_head: 255,
        max_headers: 31,
        max_body: u16::MAX,
        flags: 0,
    }
}

fn seg(flow: u8, off: usize, len: usize, flags: u8, dt: i8) -> Op {
    Op::Seg(SegSpec {
        flow,
        off: off as u16,
        len: len as u16,
        cut: 0,
        flags,
        dt,
        vni: 0,
        mask: 0,
    })
}

fn reassembly_seeds() {
    let total = known::stream().len();
    let chunk = 300;
    let offsets: Vec<usize> = (0..total).step_by(chunk).collect();

    // A whole connection in order: SYN, the stream in 300-byte segments, FIN.
    let mut ops = vec![seg(0, 0, 0, SYN, 0)];
    ops.extend(offsets.iter().map(|&o| seg(0, o, chunk, PSH_ACK, 1)));
    ops.push(seg(0, total, 0, FIN | 0x10, 1));
    let input = reassembly::Input {
        knobs: knobs_roomy(),
        base: 0x1234_5678,
        ops,
    };
    write("reassembly", "in-order", &input.encode());

    // Picked up mid-stream, sequence numbers wrapping: reordered, duplicated, overlapping.
    let mut ops = Vec::new();
    for (i, &o) in offsets.iter().enumerate().skip(1) {
        let o = if i % 2 == 0 { o } else { offsets[i - 1] + 100 };
        ops.push(seg(0, o, chunk + 50, PSH_ACK, 1));
        ops.push(seg(0, o, chunk / 2, PSH_ACK, 0));
    }
    ops.reverse();
    let input = reassembly::Input {
        knobs: knobs_roomy(),
        base: u32::MAX - 700,
        ops,
    };
    write("reassembly", "reordered-wrap", &input.encode());

    // A truncated frame, a lost segment waited out, then an RST.
    let mut k = knobs_roomy();
    k.reorder_ms = 20;
    let mut ops = vec![seg(0, 0, 0, SYN, 0)];
    for &o in &offsets {
        if o == 600 {
            continue;
        }
        let mut op = seg(0, o, chunk, PSH_ACK, 1);
        if let Op::Seg(s) = &mut op {
            if o == 1200 {
                s.cut = 0x80 | 40;
            }
        }
        ops.push(op);
    }
    ops.push(Op::Tick { ms: 50 });
    ops.push(seg(0, total, 0, RST, 1));
    let input = reassembly::Input {
        knobs: k,
        base: 77,
        ops,
    };
    write("reassembly", "truncated-lost", &input.encode());

    // Tiny limits, four connections interleaved (one hostile, one reversed), idle expiry. The
    // budget (11 KiB) holds the table's smallest allocation (8 KiB of slots and an index) and a
    // flow or two.
    let k = Knobs {
        budget: 1400,
        max_buffered: 400,
        max_window: 100,
        reorder_ms: 5,
        idle_s: 2,
        linger_s: 1,
        max_head: 20,
        max_headers: 8,
        max_body: 64,
        flags: 2,
    };
    let mut ops = Vec::new();
    for (i, &o) in offsets.iter().enumerate() {
        for flow in [0u8, 1, 2, 3, 4] {
            let at = if flow == 1 { o + 150 } else { o };
            let mut op = seg(flow, at, chunk, PSH_ACK, 2);
            if let Op::Seg(s) = &mut op {
                s.mask = if flow == 3 { 0x20 } else { 0 };
                s.vni = flow;
            }
            ops.push(op);
        }
        if i == 5 {
            ops.push(Op::Tick { ms: 3000 });
        }
    }
    ops.push(Op::Finish);
    ops.push(seg(0, 0, 200, PSH_ACK, 1));
    let input = reassembly::Input {
        knobs: k,
        base: 0x8000_0000,
        ops,
    };
    write("reassembly", "tiny-limits-many-flows", &input.encode());
}

/// Sixteen connections (four ports, four VNIs, keyed by VNI), each waiting for 50 lost bytes
/// before the head of the known stream's large POST; one tick skips every hole at once, and
/// every framer takes on that body in the same sweep.
fn sweep_seed() {
    let head = memchr::memmem::find(known::stream(), b"POST /p13 ").expect("request 13");
    let k = Knobs {
        budget: 1000,
        max_buffered: 200,
        max_window: 1000,
        reorder_ms: 10,
        idle_s: 60,
        linger_s: 30,
        max_head: 30,
        max_headers: 16,
        max_body: 4000,
        flags: 1,
    };
    let mut ops = Vec::new();
    for flow in 0..4u8 {
        for vni in 0..4u8 {
            for (off, len, flags) in [(head - 50, 0, SYN), (head, 100, PSH_ACK)] {
                let mut op = seg(flow, off, len, flags, 0);
                if let Op::Seg(s) = &mut op {
                    s.vni = vni;
                    s.mask = 0;
                }
                ops.push(op);
            }
        }
    }
    ops.push(Op::Tick { ms: 1100 });
    let input = reassembly::Input {
        knobs: k,
        base: 5,
        ops,
    };
    write("reassembly", "sweep-many-holes", &input.encode());
}

fn http_seeds() {
    let post = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello=world";
    let chunked =
        b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=1\r\nWiki\r\n0\r\nT: 1\r\n\r\n";
    let input = http::Input {
        limits: 0xc0 | 16,
        max_body: 4096,
        mode: 1,
        events: vec![Event::Data(GET.to_vec()), Event::End],
    };
    write("http", "get", &input.encode());

    let all = [&post[..], chunked, GET].concat();
    let input = http::Input {
        limits: 0xc0 | 16,
        max_body: 4096,
        mode: 1,
        events: vec![
            Event::Data(all[..30].to_vec()),
            Event::Data(all[30..100].to_vec()),
            Event::Data(all[100..].to_vec()),
            Event::Data(post[..70].to_vec()),
            Event::Gap(3),
            Event::Data([&post[73..], GET].concat()),
            Event::End,
        ],
    };
    write("http", "pipelined-gap", &input.encode());

    let input = http::Input {
        limits: 0x80 | 8,
        max_body: 5,
        mode: 0,
        events: vec![
            Event::Data(b"dy of something\r\n".to_vec()),
            Event::Data(post.to_vec()),
            Event::Data(chunked.to_vec()),
        ],
    };
    write("http", "pickup-over-limit", &input.encode());

    let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 304 Not Modified\r\n\r\n";
    let input = http::Input {
        limits: 16,
        max_body: 0,
        mode: 2,
        events: resp.chunks(17).map(|c| Event::Data(c.to_vec())).collect(),
    };
    write("http", "responses", &input.encode());
}

fn record_seeds() {
    let mut h = RecordHeader {
        ts_ns: 123_456_789,
        vni: 7,
        seq: 0xdead_beef,
        ack: 1,
        captured_len: GET.len() as u32,
        wire_len: GET.len() as u32,
        src_port: 40000,
        dst_port: 80,
        family: FAMILY_IPV4,
        tcp_flags: 0x18,
        src_addr: [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_addr: [10, 9, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..RecordHeader::default()
    };
    let mut rec = encode_header(&h);
    rec.extend_from_slice(GET);
    rec.resize(72 + 256, 0);
    write("record", "ipv4", &rec);

    h.family = FAMILY_IPV6;
    h.src_addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    h.dst_addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    h.captured_len = 20;
    h.wire_len = 1400;
    let mut rec = encode_header(&h);
    rec.extend_from_slice(&GET[..20]);
    rec.resize(72 + 256, 0);
    write("record", "ipv6-truncated", &rec);
}

/// Seeds for `proxy`: the headers AWS load balancers send, whole and split, and the broken
/// ones a stream start must survive.
fn proxy_seeds() {
    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.5 51000 80\r\n";
    let mut tlvs = vec![0xEA, 0, 23, 0x01];
    tlvs.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    tlvs.extend_from_slice(&[0x02, 0, 16]);
    tlvs.extend_from_slice(b"shop.example.com");
    let v2 = |command: u8, addrs: bool, tlvs: &[u8]| {
        let mut h = rebuilder::proxy::V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        let mut body = Vec::new();
        if addrs {
            h.push(0x21);
            body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
            body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
            body.extend_from_slice(&51000u16.to_be_bytes());
            body.extend_from_slice(&80u16.to_be_bytes());
        } else {
            h.push(0x00);
        }
        body.extend_from_slice(tlvs);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(&body);
        h
    };
    let nlb = v2(1, true, &tlvs);
    let local = v2(0, false, &[]);
    let data = |parts: &[&[u8]]| {
        parts
            .iter()
            .map(|p| Event::Data(p.to_vec()))
            .collect::<Vec<_>>()
    };
    let seeds: Vec<(&str, u8, Vec<Event>)> = vec![
        (
            "v1-whole",
            0,
            [data(&[&[&v1[..], GET].concat()]), vec![Event::End]].concat(),
        ),
        (
            "v2-nlb-split",
            1,
            [
                data(&[&nlb[..5], &nlb[5..17], &[&nlb[17..], GET].concat()]),
                vec![Event::End],
            ]
            .concat(),
        ),
        (
            "v2-local",
            0,
            [data(&[&local, GET]), vec![Event::End]].concat(),
        ),
        (
            "v1-malformed",
            0,
            [
                data(&[b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", GET]),
                vec![Event::End],
            ]
            .concat(),
        ),
        (
            "v2-cut-by-gap",
            0,
            vec![
                Event::Data(nlb[..20].to_vec()),
                Event::Gap(40),
                Event::Data(GET.to_vec()),
                Event::End,
            ],
        ),
        (
            "forbid",
            2,
            [data(&[&[&v1[..], GET].concat()]), vec![Event::End]].concat(),
        ),
        (
            "require-missing",
            1,
            [data(&[b"G", &GET[1..]]), vec![Event::End]].concat(),
        ),
        // What the fuzzer found: `PROXY UNKNOWN` and a line past 107 bytes is no header.
        (
            "v1-unknown-over-107",
            0,
            [
                data(&[&[&b"PROXY UNKNOWN "[..], &[b'x'; 120], b"\r\n", GET].concat()]),
                vec![Event::End],
            ]
            .concat(),
        ),
        // A TLV whose length runs past the header: the addresses hold, the TLVs are counted bad.
        (
            "v2-bad-tlv",
            0,
            [
                data(&[&v2(1, true, &[0x02, 0, 50, b'a', b'b']), GET]),
                vec![Event::End],
            ]
            .concat(),
        ),
    ];
    for (name, mode, events) in seeds {
        write("proxy", name, &proxy::Input { mode, events }.encode());
    }
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut v = vec![l[1], l[2], l[3], kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An HPACK literal field with incremental indexing and a new name (RFC 7541 §6.2.1), short
/// strings without Huffman coding.
fn hpack_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x40, name.len() as u8];
    v.extend_from_slice(name);
    v.push(value.len() as u8);
    v.extend_from_slice(value);
    v
}

/// Seeds for `h2`: what h2c and gRPC clients send, and what goes wrong with it. Header blocks
/// use the static table (`:method GET` 0x82, `POST` 0x83, `:scheme http` 0x86, `:path /`
/// 0x84), literals that enter the dynamic table, and references back to them (0xbe: the newest
/// entry, index 62).
fn h2_seeds() {
    use rebuilder_fuzz::h2;
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const CONT: u8 = 9;
    const RST: u8 = 3;
    const SETTINGS: u8 = 4;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    const PADDED: u8 = 8;
    let settings = h2_frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
    let get = |stream: u32, path: &[u8]| {
        let mut b = vec![0x82, 0x86];
        b.extend(hpack_literal(b":authority", b"a.example"));
        b.extend(hpack_literal(b":path", path));
        b.extend(hpack_literal(b"x-trace", b"1"));
        h2_frame(HEADERS, END_HEADERS | END_STREAM, stream, &b)
    };
    // The second request refers to the first's entries.
    let again = h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x82, 0x86, 0xc0, 0xbf, 0xbe],
    );
    let mut post_block = vec![0x83, 0x86];
    post_block.extend(hpack_literal(b":authority", b"api.example"));
    post_block.extend(hpack_literal(b":path", b"/pkg.Svc/Call"));
    post_block.extend(hpack_literal(b"content-type", b"application/grpc"));
    post_block.extend(hpack_literal(b"te", b"trailers"));
    let post = h2_frame(HEADERS, END_HEADERS, 5, &post_block);
    let body = h2_frame(DATA, 0, 5, b"\x00\x00\x00\x00\x03abc");
    let padded = h2_frame(DATA, PADDED, 5, b"\x02xy\x00\x00");
    let trailers = h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        5,
        &hpack_literal(b"x-sum", b"9f"),
    );
    let data = |parts: Vec<Vec<u8>>| parts.into_iter().map(Event::Data).collect::<Vec<_>>();
    let whole = [
        settings.clone(),
        get(1, b"/a"),
        again.clone(),
        post.clone(),
        body.clone(),
        padded.clone(),
        trailers.clone(),
    ]
    .concat();
    let cont_block = [
        vec![0x82, 0x86],
        hpack_literal(b":authority", b"a.example"),
        hpack_literal(b":path", b"/long"),
    ]
    .concat();
    let (c1, c2) = cont_block.split_at(5);
    let seeds: Vec<(&str, u8, Vec<Event>)> = vec![
        (
            "prior-knowledge",
            0,
            [data(vec![whole.clone()]), vec![Event::End]].concat(),
        ),
        (
            "split-frames",
            0,
            data(whole.chunks(7).map(<[u8]>::to_vec).collect()),
        ),
        ("upgrade", 1, data(vec![settings.clone(), get(3, b"/up")])),
        (
            "continuation",
            0,
            data(vec![
                settings.clone(),
                h2_frame(HEADERS, END_STREAM, 1, c1),
                h2_frame(CONT, END_HEADERS, 1, c2),
            ]),
        ),
        (
            "reset-and-end",
            0,
            [
                data(vec![
                    settings.clone(),
                    post.clone(),
                    h2_frame(RST, 0, 5, &[0, 0, 0, 8]),
                    post_block_stream(7, &post_block),
                ]),
                vec![Event::End],
            ]
            .concat(),
        ),
        (
            "gap-in-data",
            0,
            vec![
                Event::Data([settings.clone(), post.clone(), body[..10].to_vec()].concat()),
                Event::Gap(3),
                Event::Data(body[13..].to_vec()),
                Event::Data([padded.clone(), trailers.clone(), get(7, b"/b")].concat()),
            ],
        ),
        (
            "gap-over-frames",
            0,
            vec![
                Event::Data([settings.clone(), get(1, b"/a")].concat()),
                Event::Gap(20),
                Event::Data(again.clone()),
            ],
        ),
        (
            "pickup",
            2,
            data(vec![again.clone(), [post.clone(), body.clone()].concat()]),
        ),
        (
            "hpack-error",
            0,
            data(vec![
                settings.clone(),
                h2_frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0x7f]),
                get(3, b"/c"),
            ]),
        ),
    ];
    for (name, mode, events) in seeds {
        let input = h2::Input {
            limits: 0x3f,
            max_body: 4096,
            table: 4096,
            mode,
            events,
        };
        write("h2", name, &input.encode());
    }
}

/// The POST's header block again, on another stream, with END_STREAM (no body).
fn post_block_stream(stream: u32, block: &[u8]) -> Vec<u8> {
    h2_frame(1, 4 | 1, stream, block)
}

fn main() {
    h2_seeds();
    proxy_seeds();
    decode_seeds();
    reassembly_seeds();
    sweep_seed();
    http_seeds();
    record_seeds();
}
