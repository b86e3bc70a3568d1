//! Seeds for `proxy`: PROXY protocol headers as load balancers send them, and broken ones.

use rebuilder_fuzz::http::Event;
use rebuilder_fuzz::proxy;

use super::{write, GET};

/// Seeds for `proxy`: the headers AWS load balancers send, whole and split, and the broken
/// ones a stream start must survive.
pub(super) fn proxy_seeds() {
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
