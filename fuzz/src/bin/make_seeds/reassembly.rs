//! Seeds for `reassembly`: a connection in order, one picked up mid-stream with wrapping
//! sequence numbers (reordered, duplicated, overlapping), a truncated frame and a lost segment
//! then an RST, tiny limits with many flows, and the sweep in which one tick skips every hole.

use rebuilder_fuzz::known;
use rebuilder_fuzz::reassembly::{self, Knobs, Op, SegSpec};

use super::{write, FIN, PSH_ACK, RST, SYN};

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

pub(super) fn reassembly_seeds() {
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
pub(super) fn sweep_seed() {
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
