//! Reading the ring buffer's records back: [`parse_record`] checks a record against the ABI
//! ([`RecordHeader`], the payload size classes) and returns its header and captured payload.
//!
//! Pure byte parsing, no kernel: userspace and the fuzz targets use it on any bytes, so every
//! length it trusts is checked first ([`RecordError`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::abi::*;

/// Why a ring-buffer record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of {len} bytes is shorter than its {RECORD_HEADER_LEN}-byte header")]
    Short { len: usize },
    #[error("record has unknown address family {0}")]
    Family(u8),
    #[error("record claims {captured} captured bytes but carries only {available}")]
    CapturedBeyondRecord { captured: u32, available: usize },
    #[error("record claims {captured} captured bytes, more than the maximum {PAYLOAD_MAX}")]
    CapturedBeyondMax { captured: u32 },
    #[error("record claims {captured} captured bytes of a {wire}-byte payload")]
    CapturedBeyondWire { captured: u32, wire: u32 },
}

/// Splits `N` bytes off the front of `buf`.
fn take<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

fn read_header(mut b: &[u8]) -> Option<RecordHeader> {
    let b = &mut b;
    Some(RecordHeader {
        ts_ns: u64::from_ne_bytes(take(b)?),
        vni: u32::from_ne_bytes(take(b)?),
        seq: u32::from_ne_bytes(take(b)?),
        ack: u32::from_ne_bytes(take(b)?),
        captured_len: u32::from_ne_bytes(take(b)?),
        wire_len: u32::from_ne_bytes(take(b)?),
        src_port: u16::from_ne_bytes(take(b)?),
        dst_port: u16::from_ne_bytes(take(b)?),
        family: u8::from_ne_bytes(take(b)?),
        tcp_flags: u8::from_ne_bytes(take(b)?),
        reserved0: u16::from_ne_bytes(take(b)?),
        src_addr: take(b)?,
        dst_addr: take(b)?,
        reserved1: u32::from_ne_bytes(take(b)?),
    })
}

impl RecordHeader {
    /// The header's bytes as the XDP program writes them (`struct rb_record`, integers in host
    /// byte order): what tests and fuzz seeds build ring records from. Each field is written at
    /// its offset in the layout the C side asserts, independently of the sequential reader
    /// above, so a round trip checks the one against the other.
    pub fn to_bytes(&self) -> [u8; RECORD_HEADER_LEN] {
        use std::mem::offset_of;
        let mut b = [0u8; RECORD_HEADER_LEN];
        let mut put = |at: usize, v: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        put(offset_of!(RecordHeader, ts_ns), &self.ts_ns.to_ne_bytes());
        put(offset_of!(RecordHeader, vni), &self.vni.to_ne_bytes());
        put(offset_of!(RecordHeader, seq), &self.seq.to_ne_bytes());
        put(offset_of!(RecordHeader, ack), &self.ack.to_ne_bytes());
        put(
            offset_of!(RecordHeader, captured_len),
            &self.captured_len.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, wire_len),
            &self.wire_len.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, src_port),
            &self.src_port.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, dst_port),
            &self.dst_port.to_ne_bytes(),
        );
        put(offset_of!(RecordHeader, family), &[self.family]);
        put(offset_of!(RecordHeader, tcp_flags), &[self.tcp_flags]);
        put(
            offset_of!(RecordHeader, reserved0),
            &self.reserved0.to_ne_bytes(),
        );
        put(offset_of!(RecordHeader, src_addr), &self.src_addr);
        put(offset_of!(RecordHeader, dst_addr), &self.dst_addr);
        put(
            offset_of!(RecordHeader, reserved1),
            &self.reserved1.to_ne_bytes(),
        );
        b
    }
}

/// Reads one ring-buffer record: its header and the captured payload.
///
/// `buf` is a whole ring-buffer sample, which is as long as the reservation (header plus size
/// class), so usually longer than the payload; only `captured_len` bytes are returned.
pub fn parse_record(buf: &[u8]) -> Result<(RecordHeader, &[u8]), RecordError> {
    let short = || RecordError::Short { len: buf.len() };
    let (head, rest) = buf.split_at_checked(RECORD_HEADER_LEN).ok_or_else(short)?;
    let header = read_header(head).ok_or_else(short)?;
    if header.family != FAMILY_IPV4 && header.family != FAMILY_IPV6 {
        return Err(RecordError::Family(header.family));
    }
    let captured = header.captured_len;
    if captured > PAYLOAD_MAX {
        return Err(RecordError::CapturedBeyondMax { captured });
    }
    if captured > header.wire_len {
        return Err(RecordError::CapturedBeyondWire {
            captured,
            wire: header.wire_len,
        });
    }
    // captured <= PAYLOAD_MAX, so the conversion is lossless on every target.
    let payload = rest
        .get(..captured as usize)
        .ok_or(RecordError::CapturedBeyondRecord {
            captured,
            available: rest.len(),
        })?;
    Ok((header, payload))
}

impl RecordHeader {
    fn addr(&self, bytes: [u8; 16]) -> IpAddr {
        if self.family == FAMILY_IPV4 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    }

    /// Inner source address (meaningful for records that passed [`parse_record`]).
    pub fn src_ip(&self) -> IpAddr {
        self.addr(self.src_addr)
    }

    /// Inner destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.addr(self.dst_addr)
    }

    /// Fewer payload bytes arrived than the segment had: the rest is a gap.
    pub fn is_truncated(&self) -> bool {
        self.captured_len < self.wire_len
    }
}

/// The payload size class a record with `captured` payload bytes reserves.
pub fn payload_class(captured: u32) -> u32 {
    PAYLOAD_CLASSES
        .iter()
        .copied()
        .find(|&class| captured <= class)
        .unwrap_or(PAYLOAD_MAX)
}
