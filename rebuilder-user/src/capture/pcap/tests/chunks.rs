//! The chunk pool seen from outside: frames are slices of a chunk, and chunks are reused or
//! waited for rather than allocated.

use std::io::Cursor;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::{Endianness, TsResolution};

use super::super::classic::PCAP_RECORD_HEADER_LEN;
use super::*;

#[test]
fn chunk_memory_is_reused_when_frames_are_dropped() {
    let want = frames(400, 1500);
    let bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    let mut src = PcapSource::from_reader(Cursor::new(bytes), "memory", 3000).unwrap();
    let mut bases = std::collections::HashSet::new();
    for (ts, data) in &want {
        // Each frame is dropped before the next is read, so every refill may reuse the chunk.
        let f = src.next_frame().unwrap();
        assert_eq!((f.ts, &f.data[..]), (*ts, &data[..]));
        bases.insert(src.input.buf.as_ptr() as usize);
    }
    assert!(src.next_frame().is_none());
    assert!(bases.len() <= 3, "chunks reallocated {} times", bases.len());
}

#[test]
fn retired_chunks_are_reused_once_free_and_never_while_held() {
    let want = frames(2000, 1500);
    let bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    let mut src = PcapSource::from_reader(Cursor::new(bytes), "memory", 8000).unwrap();
    // Like workers: the last 12 frames are in flight (so the chunk being replaced is always
    // still referred to), and every 97th frame is kept to the end (pinning its chunk).
    let mut in_flight = std::collections::VecDeque::new();
    let mut kept = Vec::new();
    for (i, (ts, data)) in want.iter().enumerate() {
        let f = src.next_frame().unwrap();
        assert_eq!((f.ts, &f.data[..]), (*ts, &data[..]));
        if i % 97 == 0 {
            kept.push((i, f.data.clone()));
        }
        in_flight.push_back(f);
        if in_flight.len() > 12 {
            in_flight.pop_front();
        }
    }
    assert!(src.next_frame().is_none());
    for (i, data) in kept {
        assert_eq!(&data[..], &want[i].1[..], "frame {i} was overwritten");
    }
    // About 2000 * 780 / 8000 = 195 refills: most must have reused a retired chunk.
    let fresh = src.input.fresh_chunks;
    assert!(fresh < 60, "{fresh} chunks allocated");
}

#[test]
fn bounded_chunks_wait_for_frames_to_go_rather_than_allocate() {
    let want = frames(3000, 1500);
    let bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    let mut src = PcapSource::from_reader(Cursor::new(bytes), "memory", 8000).unwrap();
    src.bound_chunks(3);
    // Like the pipeline: frames of the current chunk wait (a batch filling); at each new
    // chunk they go to a "worker" thread that holds them a while before dropping them.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Frame>>();
    let worker = std::thread::spawn(move || {
        let mut held = 0usize;
        for batch in rx {
            std::thread::sleep(Duration::from_millis(1));
            held += batch.len();
        }
        held
    });
    let mut pending = Vec::new();
    let mut chunk = src.chunk_generation();
    let mut bases = std::collections::HashSet::new();
    for (ts, data) in &want {
        let f = src.next_frame().unwrap();
        assert_eq!((f.ts, &f.data[..]), (*ts, &data[..]));
        if src.chunk_generation() != chunk {
            chunk = src.chunk_generation();
            tx.send(std::mem::take(&mut pending)).unwrap();
        }
        // The chunk's start: frames are slices of it.
        bases.insert(src.input.buf.as_ptr() as usize);
        pending.push(f);
    }
    assert!(src.next_frame().is_none());
    tx.send(pending).unwrap();
    drop(tx);
    assert_eq!(worker.join().unwrap(), want.len());
    // Three chunks at most were ever allocated, however many refills there were.
    assert!(src.input.fresh_chunks <= 3, "{}", src.input.fresh_chunks);
    assert!(bases.len() <= 3, "{bases:?}");
    assert!(src.chunk_generation() > 100);
}

#[test]
fn frames_are_slices_of_one_chunk() {
    let want = frames(3, 200);
    let bytes = pcap_bytes(
        &want,
        TsResolution::NanoSecond,
        Endianness::Little,
        DataLink::ETHERNET,
    );
    let mut src =
        PcapSource::from_reader(Cursor::new(bytes), "memory", DEFAULT_CHUNK_BYTES).unwrap();
    let got = read_all(&mut src);
    // Consecutive records sit 16 header bytes apart in the same buffer.
    let p0 = got[0].data.as_ptr() as usize;
    let p1 = got[1].data.as_ptr() as usize;
    assert_eq!(p1, p0 + got[0].data.len() + PCAP_RECORD_HEADER_LEN);
    assert_eq!(src.total_bytes(), None);
}
