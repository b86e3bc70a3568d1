//! A pcapng interface, as its Interface Description Block describes it: its link type (which
//! of the decoder's [`LinkType`]s its packets start with, if any), its snaplen, and the units
//! and offset of its timestamps (`if_tsresol`, `if_tsoffset`), applied here because pcap-file
//! hands raw units back labelled as nanoseconds.
//!
//! Pure functions of the block's bytes: it reads no input and counts nothing, so the pcapng
//! reader decides what a bad interface costs.

use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, RawBlock};

use super::{rd16, rd32, rd64, NANOS_PER_SEC};
use crate::capture::decode::LinkType;
use crate::segment::Timestamp;

#[derive(Debug, Clone, Copy)]
pub(super) struct Iface {
    pub(super) link: Option<LinkType>,
    pub(super) snaplen: u32,
    units: TsUnits,
    offset_secs: i64,
}

/// `if_tsresol`: timestamps count 10^-n or 2^-n seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TsUnits {
    Decimal(u8),
    Binary(u8),
}

impl TsUnits {
    pub(super) fn from_tsresol(b: u8) -> Self {
        if b & 0x80 == 0 {
            Self::Decimal(b)
        } else {
            Self::Binary(b & 0x7f)
        }
    }

    pub(super) fn to_nanos(self, raw: u64) -> u64 {
        match self {
            Self::Decimal(e) if e <= 9 => raw.saturating_mul(10u64.pow(u32::from(9 - e))),
            Self::Decimal(e) => 10u64.checked_pow(u32::from(e - 9)).map_or(0, |d| raw / d),
            Self::Binary(n) => {
                let ns = (u128::from(raw) * u128::from(NANOS_PER_SEC)) >> n;
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
        }
    }
}

impl Iface {
    pub(super) fn timestamp(&self, raw: u64) -> Timestamp {
        let ns = self.units.to_nanos(raw);
        let offset = self.offset_secs.saturating_mul(NANOS_PER_SEC as i64);
        if offset >= 0 {
            ns.saturating_add(offset.unsigned_abs())
        } else {
            ns.saturating_sub(offset.unsigned_abs())
        }
    }
}

pub(super) fn parse_idb(raw: RawBlock<'_>, big: bool) -> Iface {
    let body: &[u8] = match &raw.body {
        std::borrow::Cow::Borrowed(b) => b,
        std::borrow::Cow::Owned(v) => v,
    };
    let lax = parse_idb_lax(body, big);
    let block = if big {
        raw.try_into_block::<byteorder::BigEndian>()
    } else {
        raw.try_into_block::<byteorder::LittleEndian>()
    };
    match block {
        Ok(Block::InterfaceDescription(idb)) => {
            let mut iface = Iface {
                link: LinkType::from_linktype(u32::from(idb.linktype)),
                snaplen: idb.snaplen,
                units: TsUnits::Decimal(6),
                offset_secs: 0,
            };
            for opt in &idb.options {
                match opt {
                    InterfaceDescriptionOption::IfTsResol(r) => {
                        iface.units = TsUnits::from_tsresol(*r)
                    }
                    InterfaceDescriptionOption::IfTsOffset(o) => iface.offset_secs = *o as i64,
                    _ => {}
                }
            }
            iface
        }
        // pcap-file rejects some valid options (it reads a 4-byte if_tzone only from a 1-byte
        // option): keep the interface, so later packets still find theirs by index, from the
        // fixed fields and a walk of the options done here.
        _ => lax,
    }
}

fn parse_idb_lax(body: &[u8], big: bool) -> Iface {
    let mut iface = Iface {
        link: rd16(body, 0, big).and_then(|l| LinkType::from_linktype(u32::from(l))),
        snaplen: rd32(body, 4, big).unwrap_or(0),
        units: TsUnits::Decimal(6),
        offset_secs: 0,
    };
    let mut off = 8;
    while let (Some(code), Some(len)) = (rd16(body, off, big), rd16(body, off + 2, big)) {
        let len = usize::from(len);
        let value = off + 4;
        match (code, len) {
            (0, _) => break,
            (9, 1) => {
                if let Some(&r) = body.get(value) {
                    iface.units = TsUnits::from_tsresol(r);
                }
            }
            (14, 8) => {
                if let Some(o) = rd64(body, value, big) {
                    iface.offset_secs = o as i64;
                }
            }
            _ => {}
        }
        off = value + len.div_ceil(4) * 4;
    }
    iface
}
