//! `decode`: arbitrary bytes as a captured frame of every link type and as a VXLAN datagram,
//! under a few decoder configurations.
//!
//! Input: one byte choosing the configuration, one byte choosing a snaplen, then the bytes.
//!
//! Invariants: nothing panics; a segment's payload is a slice of the input, `wire_len >=
//! payload.len()`, and a truncated payload runs to the end of the datagram; its VNI passes the
//! configuration; decoding is deterministic; every drop has a label. Differential: the bytes
//! as a datagram wrapped in a well-formed outer Ethernet/IPv4 or IPv6/UDP frame decode exactly
//! as the bare datagram does, and that frame cut short (a snaplen) decodes only to a prefix of
//! the same segment.

use bytes::Bytes;
use rebuilder::capture::{DecodeConfig, DecodeStats, Decoder, Drop, LinkType};
use rebuilder::segment::{Segment, Timestamp};

const TS: Timestamp = 1_700_000_000_000_000_000;
const LINKS: [LinkType; 4] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
];
pub const CONFIGS: usize = 4;

pub fn config(selector: u8) -> DecodeConfig {
    match selector as usize % CONFIGS {
        0 => DecodeConfig::default(),
        1 => DecodeConfig {
            vxlan_ports: vec![8472, 4789],
            vni_allow: vec![7, 1, 0x00ab_cdef],
            vni_deny: Vec::new(),
        },
        2 => DecodeConfig {
            vxlan_ports: vec![4789],
            vni_allow: Vec::new(),
            vni_deny: vec![0, 7],
        },
        _ => DecodeConfig {
            // Deny wins over allow.
            vxlan_ports: vec![4790, 4789, 4789],
            vni_allow: vec![7, 8, 9],
            vni_deny: vec![8],
        },
    }
}

fn allowed(cfg: &DecodeConfig, vni: u32) -> bool {
    (cfg.vni_allow.is_empty() || cfg.vni_allow.contains(&vni)) && !cfg.vni_deny.contains(&vni)
}

/// `whole_datagram`: the input ends where the VXLAN datagram does (no trailer after it), so
/// a truncated payload must reach its end.
fn check_one(r: &Result<Segment, Drop>, input: &Bytes, cfg: &DecodeConfig, whole_datagram: bool) {
    match r {
        Ok(seg) => {
            let lo = input.as_ptr() as usize;
            let hi = lo + input.len();
            let p = seg.payload.as_ptr() as usize;
            assert!(
                seg.payload.is_empty() || (lo <= p && p + seg.payload.len() <= hi),
                "payload is not a slice of the input"
            );
            assert!(seg.wire_len as usize >= seg.payload.len(), "{seg:?}");
            if whole_datagram && seg.is_truncated() && !seg.payload.is_empty() {
                assert_eq!(
                    p + seg.payload.len(),
                    hi,
                    "a truncated payload must run to the end of what arrived: {seg:?}"
                );
            }
            assert!(allowed(cfg, seg.vni), "vni {} passed {cfg:?}", seg.vni);
            assert_eq!(seg.ts, TS);
        }
        Err(d) => {
            assert!(d.index() < Drop::COUNT);
            assert_eq!(Drop::ALL[d.index()].as_str(), d.as_str());
            assert!(!d.to_string().is_empty());
        }
    }
}

/// A well-formed outer frame: Ethernet, IPv4 or IPv6, UDP to `port`, carrying `datagram`.
pub fn wrap(v6: bool, port: u16, datagram: &[u8]) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(8 + datagram.len()).ok()?;
    let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 5];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
    } else {
        let total = udp_len.checked_add(20)?;
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 172, 31, 0, 5, 172, 31, 0, 9]);
    }
    f.extend_from_slice(&51234u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(datagram);
    Some(f)
}

pub fn check(data: &[u8]) {
    let [selector, snap, rest @ ..] = data else {
        return;
    };
    let cfg = config(*selector);
    let dec = Decoder::new(&cfg);
    let input = Bytes::copy_from_slice(rest);
    let mut stats = DecodeStats::default();

    for link in LINKS {
        let r = dec.decode_frame(link, &input, TS);
        check_one(&r, &input, &cfg, false);
        assert_eq!(r, dec.decode_frame(link, &input, TS), "not deterministic");
        stats.record(&r);
    }
    let bare = dec.decode_vxlan(&input, TS);
    check_one(&bare, &input, &cfg, true);
    stats.record(&bare);
    assert_eq!(stats.segments() + stats.dropped(), 5);

    let port = cfg.vxlan_ports[0];
    for v6 in [false, true] {
        let Some(frame) = wrap(v6, port, rest) else {
            continue;
        };
        let frame = Bytes::from(frame);
        let whole = dec.decode_frame(LinkType::Ethernet, &frame, TS);
        check_one(&whole, &frame, &cfg, true);
        assert_eq!(
            whole, bare,
            "the outer frame changed the decoding (v6: {v6})"
        );

        let cut_len = frame.len() * usize::from(*snap) / 255;
        let cut = frame.slice(..cut_len);
        let r = dec.decode_frame(LinkType::Ethernet, &cut, TS);
        check_one(&r, &cut, &cfg, true);
        if let Ok(seg) = r {
            let full = bare
                .as_ref()
                .expect("a frame cut short decodes only if the whole frame does");
            assert_eq!(
                (seg.vni, seg.flow, seg.seq, seg.ack, seg.flags, seg.wire_len),
                (
                    full.vni,
                    full.flow,
                    full.seq,
                    full.ack,
                    full.flags,
                    full.wire_len
                )
            );
            assert!(
                full.payload.starts_with(&seg.payload),
                "cut payload is not a prefix"
            );
        }
    }
}
