//! `record`: `parse_record` on arbitrary bytes, and a round trip of a record encoded by hand.
//!
//! Invariants: nothing panics; a parsed record's header is exactly its first 72 bytes, its
//! payload is the `captured_len` bytes right after them, and `captured_len <= wire_len` and
//! `<= PAYLOAD_MAX` with a known family; each error says what is true of the bytes. Round
//! trip: any valid header and payload, written field by field in the ABI's order and followed
//! by arbitrary padding (the rest of the size class), parse back to the same values.

use arbitrary::{Result, Unstructured};
use rebuilder_ebpf::{
    parse_record, payload_class, RecordError, RecordHeader, FAMILY_IPV4, FAMILY_IPV6,
    PAYLOAD_CLASSES, PAYLOAD_MAX, RECORD_HEADER_LEN,
};

use crate::Take;

/// `struct rb_record` as the XDP program writes it ([`RecordHeader::to_bytes`]).
pub fn encode_header(h: &RecordHeader) -> Vec<u8> {
    h.to_bytes().to_vec()
}

/// Offsets into `struct rb_record` the error checks read.
const CAPTURED_AT: usize = 20;
const WIRE_AT: usize = 24;
const FAMILY_AT: usize = 32;

fn ne32(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

fn check_parse(data: &[u8]) {
    match parse_record(data) {
        Ok((h, payload)) => {
            assert!(data.len() >= RECORD_HEADER_LEN);
            assert_eq!(&encode_header(&h)[..], &data[..RECORD_HEADER_LEN]);
            assert_eq!(payload.len(), h.captured_len as usize);
            assert_eq!(payload.as_ptr(), data[RECORD_HEADER_LEN..].as_ptr());
            assert!(h.captured_len <= h.wire_len && h.captured_len <= PAYLOAD_MAX);
            assert!(h.family == FAMILY_IPV4 || h.family == FAMILY_IPV6);
            assert_eq!(h.src_ip().is_ipv4(), h.family == FAMILY_IPV4);
            assert_eq!(h.dst_ip().is_ipv4(), h.family == FAMILY_IPV4);
            assert_eq!(h.is_truncated(), h.captured_len < h.wire_len);
            let class = payload_class(h.captured_len);
            assert!(class >= h.captured_len && PAYLOAD_CLASSES.contains(&class));
        }
        Err(RecordError::Short { len }) => {
            assert_eq!(len, data.len());
            assert!(len < RECORD_HEADER_LEN);
        }
        Err(RecordError::Family(f)) => {
            assert_eq!(f, data[FAMILY_AT]);
            assert!(f != FAMILY_IPV4 && f != FAMILY_IPV6);
        }
        Err(RecordError::CapturedBeyondMax { captured }) => {
            assert_eq!(captured, ne32(data, CAPTURED_AT));
            assert!(captured > PAYLOAD_MAX);
        }
        Err(RecordError::CapturedBeyondWire { captured, wire }) => {
            assert_eq!(
                (captured, wire),
                (ne32(data, CAPTURED_AT), ne32(data, WIRE_AT))
            );
            assert!(captured > wire);
        }
        Err(RecordError::CapturedBeyondRecord {
            captured,
            available,
        }) => {
            assert_eq!(captured, ne32(data, CAPTURED_AT));
            assert_eq!(available, data.len() - RECORD_HEADER_LEN);
            assert!(captured as usize > available);
        }
    }
}

fn arbitrary_record(mut u: Unstructured<'_>) -> Result<(RecordHeader, Vec<u8>, usize)> {
    let u = &mut u;
    let mut h = RecordHeader {
        ts_ns: u64::from(u.u32()?) << 32 | u64::from(u.u32()?),
        vni: u.u32()? & 0x00ff_ffff,
        seq: u.u32()?,
        ack: u.u32()?,
        captured_len: 0,
        wire_len: u.u32()?,
        src_port: u.u16()?,
        dst_port: u.u16()?,
        family: if u.u8()? & 1 == 0 {
            FAMILY_IPV4
        } else {
            FAMILY_IPV6
        },
        tcp_flags: u.u8()?,
        reserved0: 0,
        src_addr: [0; 16],
        dst_addr: [0; 16],
        reserved1: 0,
    };
    let addr_len = if h.family == FAMILY_IPV4 { 4 } else { 16 };
    for b in h.src_addr.iter_mut().take(addr_len) {
        *b = u.u8()?;
    }
    for b in h.dst_addr.iter_mut().take(addr_len) {
        *b = u.u8()?;
    }
    let most = h.wire_len.min(PAYLOAD_MAX);
    h.captured_len = (u32::from(u.u16()?) % (most + 1)).min(most);
    let padding = usize::from(u.u8()?);
    // Payload bytes: whatever input is left, repeated.
    let rest = std::mem::replace(u, Unstructured::new(&[])).take_rest();
    let payload = (0..h.captured_len as usize)
        .map(|i| rest.get(i % rest.len().max(1)).copied().unwrap_or(0x5a))
        .collect();
    Ok((h, payload, padding))
}

fn check_round_trip(data: &[u8]) {
    let Ok((h, payload, padding)) = arbitrary_record(Unstructured::new(data)) else {
        return;
    };
    let mut buf = encode_header(&h);
    buf.extend_from_slice(&payload);
    buf.extend(std::iter::repeat_n(0xee, padding));
    let (got, got_payload) = parse_record(&buf).expect("a valid record parses");
    assert_eq!(got, h);
    assert_eq!(got_payload, &payload[..]);
    assert_eq!(got.src_ip().is_ipv4(), h.family == FAMILY_IPV4);
}

pub fn check(data: &[u8]) {
    check_parse(data);
    check_round_trip(data);
}
