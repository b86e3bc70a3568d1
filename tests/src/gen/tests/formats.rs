//! Every capture format and link type reads back the same, and invalid settings are typed
//! errors.

use super::*;

#[test]
fn every_format_and_link_type_reads_back_the_same() {
    let plan = conv()
        .vlans(&[5])
        .requests(
            (0..2).map(|i| http::post(HOST, "/f", 2000, i)),
            &http::ok_response(20),
        )
        .build()
        .unwrap();
    let reference = decode(&plan);
    for format in [
        CaptureFormat::Pcap,
        CaptureFormat::PcapNanos,
        CaptureFormat::PcapNg,
    ] {
        for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2] {
            assert_eq!(
                write_read(&plan, format, link),
                reference,
                "{format:?} {link:?}"
            );
        }
    }

    let outer_mac = {
        let f = plan.frame(0).unwrap().unwrap();
        f.data[6..12].to_vec()
    };
    let raw_first = |format, link| {
        let f = TempFile::new("raw.pcap");
        write_capture(&f.0, format, link, plan.frames()).unwrap();
        let magic = std::fs::read(&f.0).unwrap()[..4].to_vec();
        let mut first = None;
        visit_raw(&f.0, |_, _, d| {
            first.get_or_insert_with(|| d.to_vec());
        })
        .unwrap();
        (magic, first.unwrap())
    };
    let (magic, sll) = raw_first(CaptureFormat::Pcap, LinkType::LinuxSll);
    assert_eq!(magic, 0xa1b2_c3d4u32.to_ne_bytes());
    assert_eq!(sll[..6], [0, 0, 0, 1, 0, 6]);
    assert_eq!(sll[6..12], outer_mac[..]);
    assert_eq!(sll[12..16], [0, 0, 0x08, 0x00]);
    let (magic, sll2) = raw_first(CaptureFormat::PcapNanos, LinkType::LinuxSll2);
    assert_eq!(magic, 0xa1b2_3c4du32.to_ne_bytes());
    assert_eq!(sll2[..12], [0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
    assert_eq!(sll2[12..18], outer_mac[..]);
    assert_eq!(sll2[18..20], [0, 0]);
    let (magic, _) = raw_first(CaptureFormat::PcapNg, LinkType::Ethernet);
    assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a]);

    // pcapng says its timestamps are in nanoseconds.
    let f = TempFile::new("ng.pcapng");
    write_capture(
        &f.0,
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        plan.frames(),
    )
    .unwrap();
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(&f.0).unwrap()).unwrap();
    let _ = r.next_block().unwrap().unwrap();
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    assert_eq!(
        r.interfaces()[0].options,
        vec![InterfaceDescriptionOption::IfTsResol(9)]
    );
}

#[test]
fn invalid_settings_are_typed_errors() {
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    assert!(matches!(
        Conversation::new(client(), v6).build(),
        Err(GenError::MixedInnerFamilies { .. })
    ));
    let bad_path = MirrorPath {
        src: "::1".parse().unwrap(),
        ..MirrorPath::default()
    };
    assert!(matches!(
        conv().mirror(bad_path).build(),
        Err(GenError::MixedOuterFamilies { .. })
    ));
    assert!(matches!(
        conv().vni(1 << 24).build(),
        Err(GenError::VniTooLarge(16_777_216))
    ));
    assert!(matches!(
        conv().vlans(&[1, 2, 3]).build(),
        Err(GenError::TooManyVlans(3))
    ));
    assert!(matches!(
        conv().vlans(&[4096]).build(),
        Err(GenError::VlanIdTooLarge(4096))
    ));
    assert!(matches!(
        conv().mss(0).build(),
        Err(GenError::BadMss { mss: 0, .. })
    ));
    assert!(matches!(
        conv().mss(MAX_MSS + 1).build(),
        Err(GenError::BadMss { .. })
    ));
    assert!(matches!(
        conv().loss(1.5).build(),
        Err(GenError::BadRate {
            what: "loss rate",
            ..
        })
    ));
    assert!(matches!(
        conv().duplicate(f64::NAN).build(),
        Err(GenError::BadRate { .. })
    ));
    assert!(matches!(
        conv().packet_length(0).build(),
        Err(GenError::BadPacketLength)
    ));
    assert!(matches!(
        conv().pipelined(0, false).build(),
        Err(GenError::BadBatch)
    ));
    assert!(matches!(
        conv().exchange(vec![], vec![]).build(),
        Err(GenError::EmptyRequest(0))
    ));
    // The largest MSS still encodes.
    let big = conv()
        .mss(MAX_MSS)
        .exchange(http::post(HOST, "/", MAX_MSS, 1), vec![])
        .build()
        .unwrap();
    assert!(big.frames().all(|f| f.is_ok()));
}
