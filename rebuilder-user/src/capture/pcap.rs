//! Offline input: frames from a pcap or pcapng capture file.
//!
//! The file is read in chunks (512 KiB by default) into `Bytes`, and every frame's data is a
//! zero-copy slice of its chunk; a record that straddles a chunk boundary is carried into the next
//! chunk (a copy of less than one record). When no frame of the previous chunk is still alive its
//! allocation is reused, so steady-state reading neither allocates nor zeroes memory. No
//! whole-file read, no mmap. With [`PcapSource::bound_chunks`] (as the pipeline reads) at most
//! that many chunks exist: reading waits for the caller's frames of an old chunk to go before
//! it reads on, so memory is the pool's, [`POOL_BYTES`], whatever the file size and however
//! far behind the workers are.
//!
//! pcap-file's slice parsers do the framing (`PcapParser`, pcapng `RawBlock`) and decode the
//! section and interface blocks. Packet blocks (EPB, SPB, PB) are read here from their fixed
//! fields, for two reasons: pcap-file hands EPB timestamps back in raw `if_tsresol` units labelled
//! as nanoseconds (the resolution is applied here, per interface, with `if_tsoffset`), and it
//! rejects a whole packet over a malformed option and allocates an options `Vec` per packet.
//!
//! Corruption policy, never a panic, a hang or an allocation sized by a corrupt field:
//! - pcapng: a block with an implausible length (not a multiple of 4, below 12, above
//!   [`MAX_PACKET_BLOCK_BYTES`] for a packet block or [`MAX_BLOCK_BYTES`] for any other), a
//!   trailer length that differs from the header, or a packet block whose fields contradict the
//!   block, is counted in `corrupt` and skipped. When the block's own length cannot be trusted the
//!   reader resynchronises: it scans forward in 4-byte steps for a known block type whose length
//!   is plausible and whose trailer repeats it, counting the bytes passed in `skipped_bytes`.
//! - classic pcap has no trailer to resynchronise on, and guessing record boundaries in packet
//!   data can turn garbage into packets. A record whose captured length exceeds
//!   [`MAX_RECORD_BYTES`] therefore ends the file: counted in `corrupt`, logged, and `next_frame`
//!   returns `None`. Captured lengths above the file's snaplen but within that bound are accepted,
//!   as libpcap does, because some writers record a wrong snaplen.
//! - A file that ends inside a record (a capture cut short) counts one `corrupt` record and ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, RawBlock};
use pcap_file::{Endianness, TsResolution};

use super::decode::LinkType;
pub use super::CaptureError;
use crate::segment::Timestamp;

/// Default read size: large enough that syscalls and carries are rare, small enough that a pool
/// of them is little against the memory budget.
pub const DEFAULT_CHUNK_BYTES: usize = 512 << 10;
/// Chunks the pipeline lets exist at once: one being read while the workers still hold frames
/// of the others.
pub const POOL_CHUNKS: usize = 4;
/// What the pipeline's chunks hold, counted in the memory budget. (A pcapng block other than a
/// packet that is larger than a chunk, up to [`MAX_BLOCK_BYTES`], is read into a chunk of its
/// size, which leaves the pool with its last frame.)
pub const POOL_BYTES: usize = POOL_CHUNKS * DEFAULT_CHUNK_BYTES;
/// How often a reader waiting for a chunk to free looks again.
const CHUNK_RECHECK: std::time::Duration = std::time::Duration::from_micros(200);
/// The largest classic pcap record accepted (libpcap's own ceiling for Ethernet captures).
pub const MAX_RECORD_BYTES: u32 = 256 * 1024;
/// The largest pcapng packet block accepted: a maximal record plus room for options.
pub const MAX_PACKET_BLOCK_BYTES: u32 = MAX_RECORD_BYTES + 64 * 1024;
/// The largest pcapng non-packet block accepted (name resolution, statistics, custom blocks).
pub const MAX_BLOCK_BYTES: u32 = 4 << 20;

const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;
const BLOCK_MIN_LEN: u32 = 12;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const PB: u32 = 0x0000_0002;
const SPB: u32 = 0x0000_0003;
const NRB: u32 = 0x0000_0004;
const ISB: u32 = 0x0000_0005;
const EPB: u32 = 0x0000_0006;
const SJE: u32 = 0x0000_0009;
const DSB: u32 = 0x0000_000A;
const CB_COPY: u32 = 0x0000_0BAD;
const CB_NO_COPY: u32 = 0x4000_0BAD;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub link: LinkType,
    /// Nanoseconds since the UNIX epoch.
    pub ts: Timestamp,
    /// The captured bytes: a zero-copy slice of the read chunk.
    pub data: Bytes,
    /// The frame's length on the wire; more than `data.len()` when the capture's snaplen cut it.
    pub orig_len: u32,
}

/// What reading the file met.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PcapStats {
    /// Packet records handed out as frames.
    pub records: u64,
    /// Corrupt records or blocks skipped (or, for classic pcap, the one that ended the file), and
    /// a record cut short by the end of the file.
    pub corrupt: u64,
    /// Packet records on an interface whose link type the decoder does not know.
    pub unsupported_link: u64,
    /// Bytes passed over while resynchronising after corruption (pcapng).
    pub skipped_bytes: u64,
    /// Bytes read from the file so far.
    pub bytes_read: u64,
}

/// Reads frames from a pcap or pcapng file, one at a time.
pub struct PcapSource {
    path: PathBuf,
    input: Chunked,
    format: Format,
    stats: PcapStats,
    total_bytes: Option<u64>,
    error: Option<CaptureError>,
    done: bool,
}

enum Format {
    Pcap {
        parser: PcapParser,
        link: LinkType,
        big: bool,
        nanos: bool,
    },
    PcapNg(NgState),
}

struct NgState {
    big: bool,
    ifaces: Vec<Iface>,
    resyncing: bool,
    /// Simple Packet Blocks carry no timestamp: they get the previous packet's.
    last_ts: Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    link: Option<LinkType>,
    snaplen: u32,
    units: TsUnits,
    offset_secs: i64,
}

/// `if_tsresol`: timestamps count 10^-n or 2^-n seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsUnits {
    Decimal(u8),
    Binary(u8),
}

impl TsUnits {
    fn from_tsresol(b: u8) -> Self {
        if b & 0x80 == 0 {
            Self::Decimal(b)
        } else {
            Self::Binary(b & 0x7f)
        }
    }

    fn to_nanos(self, raw: u64) -> u64 {
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
    fn timestamp(&self, raw: u64) -> Timestamp {
        let ns = self.units.to_nanos(raw);
        let offset = self.offset_secs.saturating_mul(NANOS_PER_SEC as i64);
        if offset >= 0 {
            ns.saturating_add(offset.unsigned_abs())
        } else {
            ns.saturating_sub(offset.unsigned_abs())
        }
    }
}

impl PcapSource {
    /// Opens a capture file, telling pcap (microsecond and nanosecond magic, either byte order)
    /// from pcapng by its magic number.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Self::open_with_chunk_size(path, DEFAULT_CHUNK_BYTES)
    }

    /// As `open`, reading `chunk_bytes` at a time (at least one record's worth is always read).
    pub fn open_with_chunk_size(path: &Path, chunk_bytes: usize) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => CaptureError::NotFound {
                path: path.to_path_buf(),
            },
            _ => CaptureError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let meta = file.metadata().map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Err(CaptureError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "is a directory"),
            });
        }
        let total = meta.is_file().then_some(meta.len());
        Self::start(Box::new(file), path.to_path_buf(), total, chunk_bytes)
    }

    /// Reads a capture from any byte stream (a pipe, memory); `name` stands for it in errors.
    pub fn from_reader<R: Read + Send + 'static>(
        reader: R,
        name: impl Into<PathBuf>,
        chunk_bytes: usize,
    ) -> Result<Self, CaptureError> {
        Self::start(Box::new(reader), name.into(), None, chunk_bytes)
    }

    fn start(
        src: Box<dyn Read + Send>,
        path: PathBuf,
        total_bytes: Option<u64>,
        chunk_bytes: usize,
    ) -> Result<Self, CaptureError> {
        let mut input = Chunked::new(src, chunk_bytes);
        let io_err = |path: &Path, source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !input.fill(4).map_err(|e| io_err(&path, e))? {
            return Err(if input.available() == 0 {
                CaptureError::Empty { path }
            } else {
                CaptureError::NotPcap { path }
            });
        }
        let head = input.avail();
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let format = match magic {
            0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => {
                if !input.fill(PCAP_HEADER_LEN).map_err(|e| io_err(&path, e))? {
                    return Err(CaptureError::BadHeader {
                        path,
                        detail: "pcap file header cut short",
                    });
                }
                let (_, parser) =
                    PcapParser::new(input.avail()).map_err(|_| CaptureError::BadHeader {
                        path: path.clone(),
                        detail: "invalid pcap file header",
                    })?;
                let header = parser.header();
                let linktype = u32::from(header.datalink);
                let link = LinkType::from_linktype(linktype)
                    .ok_or_else(|| CaptureError::UnsupportedLinkType(path.clone(), linktype))?;
                input.consume(PCAP_HEADER_LEN);
                Format::Pcap {
                    parser,
                    link,
                    big: header.endianness == Endianness::Big,
                    nanos: header.ts_resolution == TsResolution::NanoSecond,
                }
            }
            SHB => {
                let bad = |detail| CaptureError::BadHeader {
                    path: path.clone(),
                    detail,
                };
                if !input
                    .fill(BLOCK_MIN_LEN as usize)
                    .map_err(|e| io_err(&path, e))?
                {
                    return Err(bad("pcapng section header cut short"));
                }
                let (_, len, big) = block_header(input.avail(), false)
                    .ok_or_else(|| bad("pcapng section header"))?;
                if !plausible_block(SHB, len) {
                    return Err(bad("pcapng section header length"));
                }
                if !input.fill(len as usize).map_err(|e| io_err(&path, e))? {
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
                Format::PcapNg(NgState {
                    big,
                    ifaces: Vec::new(),
                    resyncing: false,
                    last_ts: 0,
                })
            }
            _ => return Err(CaptureError::NotPcap { path }),
        };
        Ok(Self {
            path,
            input,
            format,
            stats: PcapStats::default(),
            total_bytes,
            error: None,
            done: false,
        })
    }

    /// The next frame, or `None` at the end of the file (or after an I/O error: see `error`).
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.done {
            return None;
        }
        let r = match &mut self.format {
            Format::Pcap {
                parser,
                link,
                big,
                nanos,
            } => next_pcap(
                &mut self.input,
                &mut self.stats,
                parser,
                *link,
                *big,
                *nanos,
            ),
            Format::PcapNg(st) => next_pcapng(&mut self.input, &mut self.stats, st),
        };
        self.stats.bytes_read = self.input.bytes_read;
        match r {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(source) => {
                tracing::error!(path = %self.path.display(), error = %source, "reading the capture failed");
                self.error = Some(CaptureError::Io {
                    path: self.path.clone(),
                    source,
                });
                self.done = true;
                None
            }
        }
    }

    pub fn stats(&self) -> &PcapStats {
        &self.stats
    }

    /// Why reading stopped early, if it was not the end of the file.
    pub fn error(&self) -> Option<&CaptureError> {
        self.error.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes read from the file so far, for a progress line.
    pub fn bytes_read(&self) -> u64 {
        self.input.bytes_read
    }

    /// At most `chunks` chunks exist at once (at least 2): when every other one is still
    /// referred to by a frame, reading waits until one is not. The caller must let frames of
    /// old chunks go on their own: before handing a frame of a new chunk
    /// ([`PcapSource::chunk_generation`] changed) anywhere it may wait, it passes on the frames
    /// it holds, or a wait for their chunk never ends.
    pub fn bound_chunks(&mut self, chunks: usize) {
        self.input.limit = Some(chunks.max(2));
    }

    /// Changes each time reading moves to another chunk.
    pub fn chunk_generation(&self) -> u64 {
        self.input.generation
    }

    /// The file's size, when it is a regular file.
    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }
}

impl Iterator for PcapSource {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        self.next_frame()
    }
}

fn rd16(b: &[u8], off: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(off..off + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn rd32(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

fn rd64(b: &[u8], off: usize, big: bool) -> Option<u64> {
    let s: [u8; 8] = b.get(off..off + 8)?.try_into().ok()?;
    Some(if big {
        u64::from_be_bytes(s)
    } else {
        u64::from_le_bytes(s)
    })
}

fn next_pcap(
    input: &mut Chunked,
    stats: &mut PcapStats,
    parser: &PcapParser,
    link: LinkType,
    big: bool,
    nanos: bool,
) -> io::Result<Option<Frame>> {
    if !input.fill(PCAP_RECORD_HEADER_LEN)? {
        if input.available() > 0 {
            stats.corrupt += 1;
            tracing::warn!(
                bytes = input.available(),
                "capture ends inside a record header"
            );
        }
        return Ok(None);
    }
    let caplen = rd32(input.avail(), 8, big).unwrap_or(u32::MAX);
    if caplen > MAX_RECORD_BYTES {
        stats.corrupt += 1;
        tracing::warn!(
            caplen,
            offset = input.bytes_read - input.available() as u64,
            "corrupt pcap record (captured length beyond {MAX_RECORD_BYTES}): the rest of the file is skipped"
        );
        return Ok(None);
    }
    let len = PCAP_RECORD_HEADER_LEN + caplen as usize;
    if !input.fill(len)? {
        stats.corrupt += 1;
        tracing::warn!(caplen, "capture ends inside a record");
        return Ok(None);
    }
    let (ts_sec, ts_frac, orig_len) = match parser.next_raw_packet(input.avail()) {
        Ok((_, raw)) => (raw.ts_sec, raw.ts_frac, raw.orig_len),
        // The length was checked above, so the parser has everything it needs; anything else is
        // the same corruption the caplen check guards against.
        Err(_) => {
            stats.corrupt += 1;
            return Ok(None);
        }
    };
    let frac_ns = if nanos {
        u64::from(ts_frac)
    } else {
        u64::from(ts_frac) * 1000
    };
    let ts = u64::from(ts_sec) * NANOS_PER_SEC + frac_ns;
    let data = input.take(PCAP_RECORD_HEADER_LEN, caplen as usize);
    stats.records += 1;
    Ok(Some(Frame {
        link,
        ts,
        data,
        orig_len,
    }))
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

fn next_pcapng(
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

fn parse_idb(raw: RawBlock<'_>, big: bool) -> Iface {
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

/// A byte stream read in chunks, with the unread part of the current chunk at `buf[pos..]`.
struct Chunked {
    src: Box<dyn Read + Send>,
    buf: Bytes,
    pos: usize,
    eof: bool,
    chunk_bytes: usize,
    bytes_read: u64,
    /// Earlier chunks that frames still referred to when they were replaced, oldest first:
    /// once the workers drop those frames, a chunk is read into again. A fresh chunk costs the
    /// kernel a zeroed page per 4 KiB, a seventh of an offline replay's CPU before this pool.
    retired: VecDeque<Bytes>,
    /// Chunks allocated rather than reused (the tests watch the pool work).
    fresh_chunks: u64,
    /// At most this many chunks (current and retired) exist; `None`: older retired ones are let
    /// go, freed with their last frame.
    limit: Option<usize>,
    /// Incremented at each move to another chunk.
    generation: u64,
}

/// Retired chunks kept for reuse; older ones are let go (freed with their last frame).
const RETIRED_CHUNKS: usize = 4;

impl Chunked {
    fn new(src: Box<dyn Read + Send>, chunk_bytes: usize) -> Self {
        Self {
            src,
            buf: Bytes::new(),
            pos: 0,
            eof: false,
            chunk_bytes: chunk_bytes.max(1),
            bytes_read: 0,
            retired: VecDeque::with_capacity(RETIRED_CHUNKS),
            fresh_chunks: 0,
            limit: None,
            generation: 0,
        }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn avail(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// `len` bytes starting `skip` bytes ahead, as a zero-copy slice; consumes up to their end.
    /// The caller has checked with `fill` that they are there.
    fn take(&mut self, skip: usize, len: usize) -> Bytes {
        let start = (self.pos + skip).min(self.buf.len());
        let end = (start + len).min(self.buf.len());
        self.pos = end;
        self.buf.slice(start..end)
    }

    /// A retired chunk of at least `cap` bytes that no frame refers to any more.
    fn reusable(&mut self, cap: usize) -> Option<BytesMut> {
        for _ in 0..self.retired.len() {
            let chunk = self.retired.pop_front()?;
            match chunk.try_into_mut() {
                Ok(m) if m.capacity() >= cap => return Some(m),
                // Too small (a record larger than a chunk passed): freed here.
                Ok(_) => {}
                Err(still_used) => self.retired.push_back(still_used),
            }
        }
        None
    }

    /// Makes at least `need` unread bytes available unless the stream ends first; returns whether
    /// they are.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        let have = self.available();
        if have >= need {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        let cap = self.chunk_bytes.max(need);
        let old = std::mem::take(&mut self.buf);
        let pos = self.pos;
        self.pos = 0;
        self.generation += 1;
        // Reuse the previous chunk's memory when no frame refers to it any more: it is already
        // initialised, so nothing is zeroed; only the unread tail moves to the front.
        let mut next = match old.try_into_mut() {
            Ok(mut m) => {
                m.copy_within(pos.., 0);
                m
            }
            Err(old) => {
                let tail = old.get(pos..).unwrap_or_default();
                let need_cap = cap.max(tail.len());
                let mut reused = self.reusable(need_cap);
                if let Some(limit) = self.limit {
                    // Bounded: a new chunk only while the pool is not full (the old one and
                    // the retired count), else wait for the caller's frames to go.
                    while reused.is_none() && self.retired.len() + 1 >= limit {
                        std::thread::sleep(CHUNK_RECHECK);
                        reused = self.reusable(need_cap);
                    }
                }
                let m = match reused {
                    // Its bytes are initialised already: the tail is copied over the front and
                    // the rest is read over, so nothing is zeroed.
                    Some(mut m) => {
                        if m.len() < tail.len() {
                            m.resize(tail.len(), 0);
                        }
                        if let Some(front) = m.get_mut(..tail.len()) {
                            front.copy_from_slice(tail);
                        }
                        m
                    }
                    None => {
                        self.fresh_chunks += 1;
                        let mut m = BytesMut::with_capacity(cap);
                        m.extend_from_slice(tail);
                        m
                    }
                };
                if self.limit.is_none() && self.retired.len() == RETIRED_CHUNKS {
                    self.retired.pop_front();
                }
                // A chunk grown past the usual size (for one large block) is not kept.
                if old.len() <= self.chunk_bytes {
                    self.retired.push_back(old);
                }
                m
            }
        };
        if next.len() < cap {
            next.resize(cap, 0);
        }
        let mut filled = have;
        let result = loop {
            if filled >= next.len() {
                break Ok(());
            }
            let Some(room) = next.get_mut(filled..) else {
                break Ok(());
            };
            match self.src.read(room) {
                Ok(0) => {
                    self.eof = true;
                    break Ok(());
                }
                Ok(n) => {
                    filled += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        next.truncate(filled);
        self.buf = next.freeze();
        result.map(|()| filled >= need)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::io::Cursor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use proptest::prelude::*;

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

        let mut src =
            PcapSource::from_reader(Cursor::new(bytes), "m", DEFAULT_CHUNK_BYTES).unwrap();
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

        let mut src =
            PcapSource::from_reader(Cursor::new(bytes), "m", DEFAULT_CHUNK_BYTES).unwrap();
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
    fn sources_move_to_reader_threads() {
        fn send<T: Send>() {}
        send::<PcapSource>();
        send::<Frame>();
        send::<CaptureError>();
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
}
