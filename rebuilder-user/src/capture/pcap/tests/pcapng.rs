//! pcapng: interfaces and their timestamp units, packet block kinds, sections, and how
//! corrupt blocks are counted and skipped.

use std::borrow::Cow;
use std::io::Cursor;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
use pcap_file::pcapng::{PcapNgWriter, RawBlock};
use pcap_file::{DataLink, Endianness};

use super::super::interface::TsUnits;
use super::super::pcapng::{EPB, IDB};
use super::*;

#[test]
fn pcapng_interfaces_link_types_and_tsresol() {
    for e in [Endianness::Little, Endianness::Big] {
        for chunk in [DEFAULT_CHUNK_BYTES, 3000] {
            let want = frames(300, 1500);
            let (bytes, _, expected) = ng_file(&want, e);
            let file = TempFile::new("t.pcapng", &bytes);
            let mut src = PcapSource::open_with_chunk_size(&file.0, chunk).unwrap();
            let got = read_all(&mut src);
            assert_eq!(got, expected);
            assert_eq!(
                src.stats(),
                &PcapStats {
                    records: 240,
                    unsupported_link: 60,
                    bytes_read: bytes.len() as u64,
                    ..Default::default()
                }
            );
        }
    }
}

#[test]
fn pcapng_simple_packet_blocks_and_second_section() {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 4,
        options: vec![InterfaceDescriptionOption::IfTsResol(3)],
    })
    .unwrap();
    let epb = EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::from_nanos(5_000),
        original_len: 3,
        data: Cow::Borrowed(&[1, 2, 3]),
        options: vec![],
    };
    w.write_pcapng_block(epb).unwrap();
    // snaplen 4 cuts the simple packet; it inherits the previous timestamp.
    w.write_pcapng_block(SimplePacketBlock {
        original_len: 6,
        data: Cow::Borrowed(&[9, 8, 7, 6, 5, 4]),
    })
    .unwrap();
    let mut bytes = w.into_inner();
    // A second section, big-endian this time, with its own interface list.
    let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfTsResol(0x80 | 10),
            InterfaceDescriptionOption::IfTsOffset(100),
        ],
    })
    .unwrap();
    let epb = EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::from_nanos(1024 * 3 + 512),
        original_len: 1,
        data: Cow::Borrowed(&[0x45]),
        options: vec![],
    };
    w.write_pcapng_block(epb).unwrap();
    bytes.extend_from_slice(&w.into_inner());

    let mut src = PcapSource::from_reader(Cursor::new(bytes), "m", DEFAULT_CHUNK_BYTES).unwrap();
    let got = read_all(&mut src);
    let f = |link, ts, data: &[u8], orig_len| Frame {
        link,
        ts,
        data: Bytes::from(data.to_vec()),
        orig_len,
    };
    assert_eq!(
        got,
        vec![
            f(LinkType::Ethernet, 5_000_000_000, &[1, 2, 3], 3),
            f(LinkType::Ethernet, 5_000_000_000, &[9, 8, 7, 6], 6),
            // 3.5 s in 2^-10 s units, plus the 100 s offset.
            f(LinkType::RawIp, 103_500_000_000, &[0x45], 1),
        ]
    );
}

#[test]
fn interface_with_options_pcap_file_rejects_keeps_its_resolution() {
    let le32 = |v: u32| v.to_le_bytes();
    let mut bytes = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little)
        .unwrap()
        .into_inner();
    // IDB: Ethernet, snaplen 0, if_tsresol 9, if_tzone 0 (4 bytes, as the spec has it).
    let mut idb = vec![
        1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 10, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let idb_len = (12 + idb.len()) as u32;
    let mut block = le32(IDB).to_vec();
    block.extend_from_slice(&le32(idb_len));
    block.append(&mut idb);
    block.extend_from_slice(&le32(idb_len));
    let raw = RawBlock::from_slice::<byteorder::LittleEndian>(&block)
        .unwrap()
        .1;
    assert!(
        raw.try_into_block::<byteorder::LittleEndian>().is_err(),
        "pcap-file still rejects if_tzone"
    );
    bytes.extend_from_slice(&block);
    // EPB on interface 0 at 1.5 s (ns units), 3 bytes of data padded to 4.
    let epb_len = 12 + 20 + 4;
    for v in [EPB, epb_len, 0, 0, 1_500_000_000, 3, 3] {
        bytes.extend_from_slice(&le32(v));
    }
    bytes.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0]);
    bytes.extend_from_slice(&le32(epb_len));

    let mut src = PcapSource::from_reader(Cursor::new(bytes), "m", DEFAULT_CHUNK_BYTES).unwrap();
    let got = read_all(&mut src);
    let want = Frame {
        link: LinkType::Ethernet,
        ts: 1_500_000_000,
        data: Bytes::from_static(&[0xaa, 0xbb, 0xcc]),
        orig_len: 3,
    };
    assert_eq!(got, vec![want]);
    assert_eq!(src.stats().corrupt, 0);
}
#[test]
fn tsresol_units() {
    assert_eq!(TsUnits::from_tsresol(6).to_nanos(1_500_000), 1_500_000_000);
    assert_eq!(TsUnits::from_tsresol(9).to_nanos(42), 42);
    assert_eq!(TsUnits::from_tsresol(0).to_nanos(2), 2_000_000_000);
    assert_eq!(TsUnits::from_tsresol(12).to_nanos(5_000), 5);
    assert_eq!(TsUnits::from_tsresol(127).to_nanos(u64::MAX), 0);
    assert_eq!(TsUnits::from_tsresol(0x80 | 1).to_nanos(3), 1_500_000_000);
    assert_eq!(TsUnits::from_tsresol(0x80 | 127).to_nanos(u64::MAX), 0);
    assert_eq!(TsUnits::from_tsresol(0).to_nanos(u64::MAX), u64::MAX);
}

#[test]
fn pcapng_corrupt_block_lengths_are_counted_and_skipped() {
    let want = frames(40, 1000);
    let (bytes, offsets, expected) = ng_file(&want, Endianness::Little);
    // Packet 10 (interface 0) gets an absurd length; packet 20 (interface 0) a trailer
    // that does not repeat its length; packet 30 (interface 0) a caplen past its block.
    let mut bad = bytes.clone();
    bad[offsets[10] + 4..offsets[10] + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let len20 =
        u32::from_le_bytes(bad[offsets[20] + 4..offsets[20] + 8].try_into().unwrap()) as usize;
    bad[offsets[20] + len20 - 4] ^= 0x40;
    bad[offsets[30] + 20..offsets[30] + 24].copy_from_slice(&5000u32.to_le_bytes());
    let lost: Vec<_> = [10, 20, 30].iter().map(|&i| &want[i].1).collect();
    let expected: Vec<_> = expected
        .into_iter()
        .filter(|f| !lost.contains(&&f.data.to_vec()))
        .collect();

    for chunk in [DEFAULT_CHUNK_BYTES, 2048] {
        let file = TempFile::new("bad.pcapng", &bad);
        let mut src = PcapSource::open_with_chunk_size(&file.0, chunk).unwrap();
        let got = read_all(&mut src);
        assert_eq!(got, expected);
        let s = src.stats();
        assert_eq!((s.corrupt, s.records), (3, expected.len() as u64));
        // The two unframed blocks were scanned over; the third was skipped by its length.
        let len10 = 28 + want[10].1.len().div_ceil(4) * 4 + 4;
        assert_eq!(s.skipped_bytes, (len10 + len20) as u64);
    }
}
