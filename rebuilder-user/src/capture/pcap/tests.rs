//! Tests of the capture reader through its public face, [`PcapSource`]: classic pcap here,
//! the chunk pool in `chunks`, pcapng in `pcapng`. The helpers that write capture files (with
//! pcap-file's writers, so the bytes are what other tools write) live here for all three.

mod chunks;
mod pcapng;

use std::borrow::Cow;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use pcap_file::{Endianness, TsResolution};
use proptest::prelude::*;

use super::classic::PCAP_HEADER_LEN;
use super::*;

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "rebuilder-capture-{}-{n}-{name}",
            std::process::id()
        ));
        std::fs::write(&p, contents).unwrap();
        Self(p)
    }
}

impl std::ops::Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Distinct frames of varied sizes with nanosecond timestamps.
fn frames(n: usize, max: usize) -> Vec<(u64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let len = 40 + (i * 7919) % (max - 40);
            let data = (0..len).map(|j| (i * 31 + j) as u8).collect();
            (
                1_700_000_000_000_000_000 + i as u64 * 1_234_567_891 + 789,
                data,
            )
        })
        .collect()
}

fn pcap_bytes(
    frames: &[(u64, Vec<u8>)],
    res: TsResolution,
    endianness: Endianness,
    datalink: DataLink,
) -> Vec<u8> {
    let header = PcapHeader {
        ts_resolution: res,
        endianness,
        datalink,
        snaplen: 65535,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, data) in frames {
        w.write_packet(&PcapPacket::new(
            Duration::from_nanos(*ts),
            data.len() as u32 + 4,
            data,
        ))
        .unwrap();
    }
    w.into_writer()
}

fn read_all(src: &mut PcapSource) -> Vec<Frame> {
    std::iter::from_fn(|| src.next_frame()).collect()
}

fn check_pcap(res: TsResolution, endianness: Endianness, chunk: usize, n: usize) {
    let want = frames(n, 1500);
    let file = TempFile::new(
        "t.pcap",
        &pcap_bytes(&want, res, endianness, DataLink::ETHERNET),
    );
    let mut src = PcapSource::open_with_chunk_size(&file.0, chunk).unwrap();
    let got = read_all(&mut src);
    assert_eq!(got.len(), want.len());
    for ((ts, data), f) in want.iter().zip(&got) {
        let ts = if res == TsResolution::MicroSecond {
            ts / 1000 * 1000
        } else {
            *ts
        };
        assert_eq!(f.ts, ts);
        assert_eq!(&f.data[..], &data[..]);
        assert_eq!(f.orig_len as usize, data.len() + 4);
        assert_eq!(f.link, LinkType::Ethernet);
    }
    let size = std::fs::metadata(&file.0).unwrap().len();
    assert_eq!(
        src.stats(),
        &PcapStats {
            records: n as u64,
            bytes_read: size,
            ..Default::default()
        }
    );
    assert_eq!((src.bytes_read(), src.total_bytes()), (size, Some(size)));
    assert!(src.error().is_none());
    assert!(src.next_frame().is_none(), "stays at the end");
}

#[test]
fn pcap_micro_and_nano_both_byte_orders() {
    for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
        for e in [Endianness::Little, Endianness::Big] {
            check_pcap(res, e, DEFAULT_CHUNK_BYTES, 50);
        }
    }
}

#[test]
fn pcap_records_straddling_small_chunks() {
    // 4 KiB chunks under frames up to 1.5 KB: most chunk boundaries cut a record.
    check_pcap(TsResolution::NanoSecond, Endianness::Little, 4096, 500);
    // A chunk smaller than one record grows to hold it.
    check_pcap(TsResolution::MicroSecond, Endianness::Big, 100, 50);
}

#[test]
fn pcap_larger_than_the_default_chunk() {
    check_pcap(
        TsResolution::NanoSecond,
        Endianness::Little,
        DEFAULT_CHUNK_BYTES,
        4000,
    );
}

#[test]
fn pcap_other_link_types() {
    let want = frames(3, 200);
    for (dl, link) in [
        (DataLink::LINUX_SLL, LinkType::LinuxSll),
        (DataLink::LINUX_SLL2, LinkType::LinuxSll2),
        (DataLink::RAW, LinkType::RawIp),
    ] {
        let file = TempFile::new(
            "l.pcap",
            &pcap_bytes(&want, TsResolution::NanoSecond, Endianness::Little, dl),
        );
        let got = read_all(&mut PcapSource::open(&file.0).unwrap());
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|f| f.link == link));
    }
    let file = TempFile::new(
        "wifi.pcap",
        &pcap_bytes(
            &want,
            TsResolution::NanoSecond,
            Endianness::Little,
            DataLink::IEEE802_11,
        ),
    );
    match PcapSource::open(&file.0) {
        Err(CaptureError::UnsupportedLinkType(p, 105)) => assert_eq!(p, file.0),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn pcap_impossible_caplen_ends_the_file_counted() {
    let want = frames(10, 300);
    let mut bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    // The 6th record's caplen field.
    let off = PCAP_HEADER_LEN + want[..5].iter().map(|(_, d)| 16 + d.len()).sum::<usize>() + 8;
    bytes[off..off + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let file = TempFile::new("c.pcap", &bytes);
    let mut src = PcapSource::open(&file.0).unwrap();
    let got = read_all(&mut src);
    assert_eq!(got.len(), 5);
    assert_eq!(&got[4].data[..], &want[4].1[..]);
    assert_eq!((src.stats().records, src.stats().corrupt), (5, 1));
    assert!(src.error().is_none());
}

#[test]
fn capture_cut_short_counts_one_corrupt_record() {
    let want = frames(10, 300);
    let bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    let file = TempFile::new("cut.pcap", &bytes[..bytes.len() - 10]);
    let mut src = PcapSource::open(&file.0).unwrap();
    assert_eq!(read_all(&mut src).len(), 9);
    assert_eq!(src.stats().corrupt, 1);
    let ng = ng_file(&frames(4, 300), Endianness::Little).0;
    let mut src =
        PcapSource::from_reader(Cursor::new(ng[..ng.len() - 3].to_vec()), "m", 1024).unwrap();
    assert_eq!(read_all(&mut src).len(), 3);
    assert_eq!(src.stats().corrupt, 1);
}
/// A pcapng file: interface 0 Ethernet at ns resolution, interface 1 SLL2 at the default µs
/// resolution, interface 2 Wi-Fi (unsupported); packets alternate 0, 1, 0, 1 ... with every
/// fifth on interface 2. Returns the bytes, the offset of each packet block, and the frames
/// expected (unsupported ones left out).
fn ng_file(want: &[(u64, Vec<u8>)], e: Endianness) -> (Vec<u8>, Vec<usize>, Vec<Frame>) {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), e).unwrap();
    let idb = |linktype, options| InterfaceDescriptionBlock {
        linktype,
        snaplen: 0,
        options,
    };
    w.write_pcapng_block(idb(
        DataLink::ETHERNET,
        vec![InterfaceDescriptionOption::IfTsResol(9)],
    ))
    .unwrap();
    w.write_pcapng_block(idb(DataLink::LINUX_SLL2, vec![]))
        .unwrap();
    w.write_pcapng_block(idb(DataLink::IEEE802_11, vec![]))
        .unwrap();
    let mut offsets = Vec::new();
    let mut expected = Vec::new();
    for (i, (ts, data)) in want.iter().enumerate() {
        offsets.push(w.get_ref().len());
        let iface = if i % 5 == 4 { 2 } else { (i % 2) as u32 };
        // pcap-file writes the Duration's nanoseconds as the raw count of if_tsresol units.
        let (raw, ts) = if iface == 0 {
            (*ts, *ts)
        } else {
            (ts / 1000, ts / 1000 * 1000)
        };
        let epb = EnhancedPacketBlock {
            interface_id: iface,
            timestamp: Duration::from_nanos(raw),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        let link = if iface == 0 {
            LinkType::Ethernet
        } else {
            LinkType::LinuxSll2
        };
        if iface != 2 {
            expected.push(Frame {
                link,
                ts,
                data: Bytes::from(data.clone()),
                orig_len: data.len() as u32,
            });
        }
    }
    (w.into_inner(), offsets, expected)
}
#[test]
fn sources_move_to_reader_threads() {
    fn send<T: Send>() {}
    send::<PcapSource>();
    send::<Frame>();
    send::<CaptureError>();
}
#[test]
fn open_errors_name_the_problem() {
    let missing = std::env::temp_dir().join("rebuilder-capture-definitely-missing.pcap");
    assert!(
        matches!(PcapSource::open(&missing), Err(CaptureError::NotFound { path }) if path == missing)
    );
    let empty = TempFile::new("empty.pcap", b"");
    assert!(matches!(
        PcapSource::open(&empty.0),
        Err(CaptureError::Empty { .. })
    ));
    let text = TempFile::new("text.pcap", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let e = PcapSource::open(&text.0).err().unwrap();
    assert!(matches!(e, CaptureError::NotPcap { .. }));
    assert!(e.to_string().contains(&*text.0.to_string_lossy()), "{e}");
    let tiny = TempFile::new("tiny.pcap", b"ab");
    assert!(matches!(
        PcapSource::open(&tiny.0),
        Err(CaptureError::NotPcap { .. })
    ));
    let cut = TempFile::new("cut.pcap", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    assert!(matches!(
        PcapSource::open(&cut.0),
        Err(CaptureError::BadHeader { .. })
    ));
    let ng_cut = TempFile::new(
        "cut.pcapng",
        &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a],
    );
    assert!(matches!(
        PcapSource::open(&ng_cut.0),
        Err(CaptureError::BadHeader { .. })
    ));
    assert!(matches!(
        PcapSource::open(&std::env::temp_dir()),
        Err(CaptureError::Io { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Arbitrary damage to a valid file: no panic, no hang, and every frame consumed bytes
    /// of the file.
    #[test]
    fn damaged_files_never_panic(
        ng in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..20),
        chunk in 64usize..5000,
    ) {
        let want = frames(30, 400);
        let (mut bytes, originals) = if ng {
            let (b, _, exp) = ng_file(&want, Endianness::Big);
            (b, exp.into_iter().map(|f| f.data.to_vec()).collect::<Vec<_>>())
        } else {
            (pcap_bytes(&want, TsResolution::NanoSecond, Endianness::Little, DataLink::ETHERNET), want.iter().map(|(_, d)| d.clone()).collect())
        };
        // Leave the file header alone so the damage is to records.
        let header = if ng { 28 } else { PCAP_HEADER_LEN };
        for (i, v) in flips {
            let at = header + i.index(bytes.len() - header);
            bytes[at] = v;
        }
        let size = bytes.len();
        if let Ok(mut src) = PcapSource::from_reader(Cursor::new(bytes), "m", chunk) {
            let mut n = 0;
            let mut intact = 0;
            while let Some(f) = src.next_frame() {
                n += 1;
                // Every record costs at least a 16-byte header (pcap) or 12-byte block.
                prop_assert!(n * 12 <= size);
                prop_assert!(f.data.len() <= MAX_RECORD_BYTES as usize);
                intact += usize::from(originals.contains(&f.data.to_vec()));
            }
            prop_assert!(intact <= originals.len());
            // pcapng resynchronises to the end; classic pcap may stop at a corrupt record.
            if ng {
                prop_assert_eq!(src.stats().bytes_read, size as u64);
            } else {
                prop_assert!(src.stats().bytes_read <= size as u64);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(ng in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut bytes = if ng {
            ng_file(&[], Endianness::Little).0
        } else {
            pcap_bytes(&[], TsResolution::MicroSecond, Endianness::Big, DataLink::ETHERNET)
        };
        bytes.extend_from_slice(&tail);
        let mut src = PcapSource::from_reader(Cursor::new(bytes), "m", 512).unwrap();
        let mut n = 0;
        while src.next_frame().is_some() {
            n += 1;
            prop_assert!(n < 3000);
        }
    }
}
