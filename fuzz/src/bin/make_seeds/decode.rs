//! Seeds for `decode`: mirrored frames (Ethernet, and Linux cooked SLL2) carrying VXLAN around
//! an IPv4 or a VLAN-tagged IPv6 inner frame, a truncated one, and a bare VXLAN datagram.

use etherparse::PacketBuilder;
use rebuilder_fuzz::decode::wrap;

use super::{write, GET};

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

pub(super) fn decode_seeds() {
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
