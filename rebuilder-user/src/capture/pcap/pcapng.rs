//! pcapng: a stream of blocks, each framed by its type, its length and a trailer repeating the
//! length. Sections (SHB) set the byte order and start a new list of interfaces (IDB, read in
//! `interface`); packets come in Enhanced, Simple or obsolete Packet Blocks and are read here
//! from their fixed fields, other blocks are passed over by their length.
//!
//! Corruption is handled block by block: a well-framed block whose fields contradict it is
//! skipped, and a block whose framing cannot be trusted makes the reader resynchronise on the
//! next believable block (counting the bytes passed). It reads through [`Chunked`] and counts
//! in [`PcapStats`]; pcap-file only checks the section header and parses interface blocks.

use std::io;
use std::path::Path;

use pcap_file::pcapng::{Block, RawBlock};

use super::chunked::Chunked;
use super::interface::{parse_idb, Iface};
use super::{
    io_err, rd16, rd32, CaptureError, Frame, PcapStats, MAX_BLOCK_BYTES, MAX_PACKET_BLOCK_BYTES,
};
use crate::segment::Timestamp;

pub(super) const BLOCK_MIN_LEN: u32 = 12;

pub(super) const SHB: u32 = 0x0A0D_0D0A;
pub(super) const IDB: u32 = 0x0000_0001;
const PB: u32 = 0x0000_0002;
const SPB: u32 = 0x0000_0003;
const NRB: u32 = 0x0000_0004;
const ISB: u32 = 0x0000_0005;
pub(super) const EPB: u32 = 0x0000_0006;
const SJE: u32 = 0x0000_0009;
const DSB: u32 = 0x0000_000A;
const CB_COPY: u32 = 0x0000_0BAD;
const CB_NO_COPY: u32 = 0x4000_0BAD;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

pub(super) struct NgState {
    big: bool,
    ifaces: Vec<Iface>,
    resyncing: bool,
    /// Simple Packet Blocks carry no timestamp: they get the previous packet's.
    last_ts: Timestamp,
}

impl NgState {
    /// Reads the first Section Header Block at the start of `input` (its type already seen).
    pub(super) fn open(input: &mut Chunked, path: &Path) -> Result<Self, CaptureError> {
        let bad = |detail| CaptureError::BadHeader {
            path: path.to_path_buf(),
            detail,
        };
        if !input
            .fill(BLOCK_MIN_LEN as usize)
            .map_err(|e| io_err(path, e))?
        {
            return Err(bad("pcapng section header cut short"));
        }
        let (_, len, big) =
            block_header(input.avail(), false).ok_or_else(|| bad("pcapng section header"))?;
        if !plausible_block(SHB, len) {
            return Err(bad("pcapng section header length"));
        }
        if !input.fill(len as usize).map_err(|e| io_err(path, e))? {
            return Err(bad("pcapng section header cut short"));
        }
        let block = input
            .avail()
            .get(..len as usize)
            .ok_or_else(|| bad("pcapng section header"))?;
        let ok = matches!(
            RawBlock::from_slice::<byteorder::BigEndian>(block)
                .and_then(|(_, raw)| raw.try_into_block::<byteorder::BigEndian>()),
            Ok(Block::SectionHeader(_))
        );
        if !ok {
            return Err(bad("invalid pcapng section header block"));
        }
        input.consume(len as usize);
        Ok(NgState {
            big,
            ifaces: Vec::new(),
            resyncing: false,
            last_ts: 0,
        })
    }
}

/// The type, total length and byte order of the block at the start of `b`. A section header
/// announces its own byte order, which then also applies to its length.
fn block_header(b: &[u8], big: bool) -> Option<(u32, u32, bool)> {
    let type_ = rd32(b, 0, big)?;
    let big = if type_ == SHB {
        match rd32(b, 8, true)? {
            BYTE_ORDER_MAGIC => true,
            m if m == BYTE_ORDER_MAGIC.swap_bytes() => false,
            _ => return None,
        }
    } else {
        big
    };
    Some((type_, rd32(b, 4, big)?, big))
}

fn plausible_block(type_: u32, len: u32) -> bool {
    let max = match type_ {
        EPB | SPB | PB => MAX_PACKET_BLOCK_BYTES,
        _ => MAX_BLOCK_BYTES,
    };
    len >= BLOCK_MIN_LEN && len.is_multiple_of(4) && len <= max
}

fn known_block(type_: u32) -> bool {
    matches!(
        type_,
        SHB | IDB | PB | SPB | NRB | ISB | EPB | SJE | DSB | CB_COPY | CB_NO_COPY
    )
}

/// The outcome of one block.
enum NgStep {
    Frame(Frame),
    Skipped,
    /// The framing is wrong here: resynchronise.
    Corrupt,
    /// A well-framed block whose content is wrong: skipped by its length.
    BadBlock,
    End,
}

pub(super) fn next_pcapng(
    input: &mut Chunked,
    stats: &mut PcapStats,
    st: &mut NgState,
) -> io::Result<Option<Frame>> {
    loop {
        if st.resyncing && !resync(input, stats, st)? {
            return Ok(None);
        }
        match ng_step(input, stats, st)? {
            NgStep::Frame(f) => return Ok(Some(f)),
            NgStep::Skipped => {}
            NgStep::BadBlock => {
                stats.corrupt += 1;
                tracing::warn!(
                    offset = input.bytes_read - input.available() as u64,
                    "corrupt pcapng block skipped"
                );
            }
            NgStep::Corrupt => {
                stats.corrupt += 1;
                st.resyncing = true;
                tracing::warn!(
                    offset = input.bytes_read - input.available() as u64,
                    "corrupt pcapng block: resynchronising"
                );
            }
            NgStep::End => return Ok(None),
        }
    }
}

fn ng_step(input: &mut Chunked, stats: &mut PcapStats, st: &mut NgState) -> io::Result<NgStep> {
    if !input.fill(BLOCK_MIN_LEN as usize)? {
        if input.available() > 0 {
            stats.corrupt += 1;
            tracing::warn!(
                bytes = input.available(),
                "capture ends inside a block header"
            );
        }
        return Ok(NgStep::End);
    }
    let Some((type_, len, len_big)) = block_header(input.avail(), st.big) else {
        return Ok(NgStep::Corrupt);
    };
    if !plausible_block(type_, len) {
        return Ok(NgStep::Corrupt);
    }
    let len = len as usize;
    if !input.fill(len)? {
        // Either the capture was cut short or the length is wrong; scanning what is left tells.
        return Ok(NgStep::Corrupt);
    }
    let action = match input.avail().get(..len) {
        Some(block) => classify_block(block, type_, len_big, st.big),
        None => BlockAction::Corrupt,
    };
    let (iface, raw_ts, data_off, caplen, orig_len) = match action {
        BlockAction::Corrupt => return Ok(NgStep::Corrupt),
        BlockAction::BadContent => {
            input.consume(len);
            return Ok(NgStep::BadBlock);
        }
        BlockAction::Skip => {
            input.consume(len);
            return Ok(NgStep::Skipped);
        }
        BlockAction::Section { big } => {
            st.big = big;
            st.ifaces.clear();
            input.consume(len);
            return Ok(NgStep::Skipped);
        }
        BlockAction::Interface(iface) => {
            st.ifaces.push(iface);
            input.consume(len);
            return Ok(NgStep::Skipped);
        }
        BlockAction::Packet {
            iface,
            raw_ts,
            data_off,
            caplen,
            orig_len,
        } => (iface, raw_ts, data_off, caplen, orig_len),
    };
    let Some(i) = st.ifaces.get(iface as usize).copied() else {
        input.consume(len);
        return Ok(NgStep::BadBlock);
    };
    let Some(link) = i.link else {
        stats.unsupported_link += 1;
        input.consume(len);
        return Ok(NgStep::Skipped);
    };
    let (ts, caplen) = match raw_ts {
        Some(raw) => {
            st.last_ts = i.timestamp(raw);
            (st.last_ts, caplen)
        }
        // A Simple Packet Block has no captured length: it is the original length, cut by the
        // interface's snaplen and by the block (which also holds padding).
        None if i.snaplen != 0 => (st.last_ts, caplen.min(i.snaplen as usize)),
        None => (st.last_ts, caplen),
    };
    let data = input.take(data_off, caplen);
    // `take` consumed up to the end of the packet data; options and padding follow.
    input.consume(len - data_off - caplen);
    stats.records += 1;
    Ok(NgStep::Frame(Frame {
        link,
        ts,
        data,
        orig_len,
    }))
}

/// What a well-framed block means, computed without holding on to the input.
enum BlockAction {
    Skip,
    /// The framing (trailer length) is wrong.
    Corrupt,
    /// Framed well, but the fields contradict the block.
    BadContent,
    Section {
        big: bool,
    },
    Interface(Iface),
    /// Offsets are from the start of the block; `raw_ts` is `None` for a Simple Packet Block.
    Packet {
        iface: u32,
        raw_ts: Option<u64>,
        data_off: usize,
        caplen: usize,
        orig_len: u32,
    },
}

fn classify_block(block: &[u8], type_: u32, len_big: bool, big: bool) -> BlockAction {
    let raw = if len_big {
        RawBlock::from_slice::<byteorder::BigEndian>(block)
    } else {
        RawBlock::from_slice::<byteorder::LittleEndian>(block)
    };
    let Ok((_, raw)) = raw else {
        return BlockAction::Corrupt;
    };
    let body: &[u8] = match raw.body {
        std::borrow::Cow::Borrowed(b) => b,
        std::borrow::Cow::Owned(_) => return BlockAction::BadContent,
    };
    // The body follows the block type and length.
    const BODY: usize = 8;
    const PACKET_FIELDS: usize = 20;
    match type_ {
        SHB => BlockAction::Section { big: len_big },
        IDB => BlockAction::Interface(parse_idb(
            RawBlock {
                body: std::borrow::Cow::Borrowed(body),
                ..raw
            },
            big,
        )),
        EPB | PB => {
            let iface = if type_ == EPB {
                rd32(body, 0, big)
            } else {
                rd16(body, 0, big).map(u32::from)
            };
            let ts_high = rd32(body, 4, big);
            let ts_low = rd32(body, 8, big);
            let caplen = rd32(body, 12, big);
            let orig_len = rd32(body, 16, big);
            match (iface, ts_high, ts_low, caplen, orig_len) {
                (Some(iface), Some(hi), Some(lo), Some(caplen), Some(orig_len))
                    if caplen as usize <= body.len().saturating_sub(PACKET_FIELDS) =>
                {
                    BlockAction::Packet {
                        iface,
                        raw_ts: Some((u64::from(hi) << 32) | u64::from(lo)),
                        data_off: BODY + PACKET_FIELDS,
                        caplen: caplen as usize,
                        orig_len,
                    }
                }
                _ => BlockAction::BadContent,
            }
        }
        SPB => match rd32(body, 0, big) {
            Some(orig_len) => BlockAction::Packet {
                iface: 0,
                raw_ts: None,
                data_off: BODY + 4,
                caplen: (orig_len as usize).min(body.len().saturating_sub(4)),
                orig_len,
            },
            None => BlockAction::BadContent,
        },
        _ => BlockAction::Skip,
    }
}

/// Scans forward in 4-byte steps for the start of a believable block. Returns false at the end
/// of the file.
fn resync(input: &mut Chunked, stats: &mut PcapStats, st: &mut NgState) -> io::Result<bool> {
    // The corrupt block's own start is not a candidate.
    skip(input, stats, 4);
    loop {
        if !input.fill(BLOCK_MIN_LEN as usize)? {
            stats.skipped_bytes += input.available() as u64;
            input.consume(input.available());
            return Ok(false);
        }
        if let Some((type_, len, big)) = block_header(input.avail(), st.big) {
            if known_block(type_)
                && plausible_block(type_, len)
                && input.fill(len as usize)?
                && rd32(input.avail(), len as usize - 4, big) == Some(len)
            {
                st.resyncing = false;
                return Ok(true);
            }
        }
        skip(input, stats, 4);
    }
}

fn skip(input: &mut Chunked, stats: &mut PcapStats, n: usize) {
    let n = n.min(input.available());
    input.consume(n);
    stats.skipped_bytes += n as u64;
}
