//! The hostile cases build deterministically at CI scale, and the frame surgery keeps the outer
//! headers consistent.

use super::*;

#[test]
fn every_case_builds_at_ci_scale_deterministically() {
    let scale = HostileScale::ci();
    for kind in HostileKind::ALL {
        let a = build(kind, &scale, 1).unwrap();
        let b = build(kind, &scale, 1).unwrap();
        assert_eq!(a.frames, b.frames, "{kind:?}");
        assert!(!a.frames.is_empty() && !a.drops.is_empty(), "{kind:?}");
        let victims = match kind {
            HostileKind::SpoofedAhead
            | HostileKind::SpoofedSyn
            | HostileKind::SpoofedClose
            | HostileKind::SpoofedFirst => scale.spoof_victims * 4,
            _ => 0,
        };
        assert_eq!(
            a.legit.len(),
            scale.legit_connections * 3 + victims,
            "{kind:?}"
        );
        assert!(
            a.frames.windows(2).all(|w| w[0].ts <= w[1].ts),
            "{kind:?} in arrival order"
        );
        assert_eq!(HostileKind::from_name(kind.name()), Some(kind));
    }
}

#[test]
fn garbage_and_fragments_keep_outer_lengths_consistent() {
    let scale = HostileScale::ci();
    for kind in [HostileKind::VxlanGarbage, HostileKind::InnerFragments] {
        let case = build(kind, &scale, 2).unwrap();
        for f in &case.frames {
            let total = u16::from_be_bytes([f.data[16], f.data[17]]) as usize;
            assert_eq!(total + 14, f.data.len(), "{kind:?}: outer IPv4 length");
            let udp = f.vxlan_offset - 8;
            let udp_len = u16::from_be_bytes([f.data[udp + 4], f.data[udp + 5]]) as usize;
            assert_eq!(udp + udp_len, f.data.len(), "{kind:?}: UDP length");
        }
    }
}
