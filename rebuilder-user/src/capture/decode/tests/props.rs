//! Property tests: arbitrary bytes, valid frames cut anywhere, and the owned and borrowed
//! decoders agreeing. None may panic, and a cut frame is a shorter payload or a counted drop.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), port in any::<u16>()) {
        let d = Decoder::new(&DecodeConfig { vxlan_ports: vec![port, VXLAN_PORT], ..Default::default() });
        let b = Bytes::from(data);
        for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp] {
            if let Ok(seg) = d.decode_frame(link, &b, TS) {
                prop_assert!(seg.payload.len() <= seg.wire_len as usize);
            }
        }
        let _ = d.decode_vxlan(&b, TS);
    }

    /// Random bytes behind valid headers reach the deeper parsers.
    #[test]
    fn arbitrary_bytes_after_valid_prefix_never_panic(
        cut in 0usize..120,
        tail in proptest::collection::vec(any::<u8>(), 0..120),
        v6 in any::<bool>(),
    ) {
        let full = if v6 { vxlan(5, &inner_v6(b"hello")) } else { vxlan(5, &inner_v4(b"hello")) };
        let mut data = full[..cut.min(full.len())].to_vec();
        data.extend_from_slice(&tail);
        let _ = decoder().decode_vxlan(&Bytes::from(data.clone()), TS);
        let _ = decode_eth(outer_v4(VXLAN_PORT, &data));
    }

    /// The owned decoders, which trim the buffer in place, give what the slicing ones give,
    /// on valid frames cut anywhere and followed by anything.
    #[test]
    fn owned_and_borrowed_decoding_agree(
        cut in 0usize..700,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        v6 in any::<bool>(),
    ) {
        let payload: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let dgram = if v6 { vxlan(5, &inner_v6(&payload)) } else { vxlan(5, &inner_v4(&payload)) };
        let mut frame = outer_v4(VXLAN_PORT, &dgram);
        frame.truncate(cut.max(1));
        frame.extend_from_slice(&tail);
        let d = decoder();
        let frame = Bytes::from(frame);
        prop_assert_eq!(
            d.decode_frame(LinkType::Ethernet, &frame, TS),
            d.decode_frame_owned(LinkType::Ethernet, frame.clone(), TS)
        );
        let mut dg = dgram.clone();
        dg.truncate(cut.max(1));
        dg.extend_from_slice(&tail);
        let dg = Bytes::from(dg);
        prop_assert_eq!(d.decode_vxlan(&dg, TS), d.decode_vxlan_owned(dg.clone(), TS));
    }

    /// Any cut of a valid frame is either the same segment with a shorter payload or a
    /// counted drop: never wrong data.
    #[test]
    fn any_cut_is_a_prefix_or_a_drop(keep in 0usize..700) {
        let payload: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let full = outer_v4(VXLAN_PORT, &vxlan(5, &inner_v4(&payload)));
        let keep = keep.min(full.len());
        match decode_eth(full[..keep].to_vec()) {
            Ok(seg) => {
                prop_assert_eq!(seg.wire_len, 500);
                prop_assert_eq!(&seg.payload[..], &payload[..seg.payload.len()]);
                prop_assert_eq!(keep, full.len() - 500 + seg.payload.len());
            }
            Err(d) => prop_assert!(matches!(d, Drop::HeadersTruncated | Drop::VxlanTooShort), "{:?}", d),
        }
    }
}
