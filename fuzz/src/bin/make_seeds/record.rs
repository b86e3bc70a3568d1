//! Seeds for `record`: XDP ring records (header and payload): an IPv4 one and a truncated IPv6
//! one.

use rebuilder_ebpf::{RecordHeader, FAMILY_IPV4, FAMILY_IPV6};
use rebuilder_fuzz::record::encode_header;

use super::{write, GET};

pub(super) fn record_seeds() {
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
