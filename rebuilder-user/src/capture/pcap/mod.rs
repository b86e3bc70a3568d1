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
//!
//! One job per file: this one opens the input, tells the format by its magic number and hands
//! out [`Frame`]s; `chunked` is the chunked reader and its pool (bytes only, no format);
//! `classic` reads classic pcap records; `pcapng` reads pcapng blocks and resynchronises;
//! `interface` turns a pcapng interface description into a link type and timestamp units.
//! Nothing here decodes packets: a frame carries its [`LinkType`] to the decoder.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::decode::LinkType;
pub use super::CaptureError;
use crate::segment::Timestamp;

mod chunked;
mod classic;
mod interface;
mod pcapng;
#[cfg(test)]
mod tests;

use chunked::Chunked;
use classic::Classic;
use pcapng::{next_pcapng, NgState};

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
/// The largest classic pcap record accepted (libpcap's own ceiling for Ethernet captures).
pub const MAX_RECORD_BYTES: u32 = 256 * 1024;
/// The largest pcapng packet block accepted: a maximal record plus room for options.
pub const MAX_PACKET_BLOCK_BYTES: u32 = MAX_RECORD_BYTES + 64 * 1024;
/// The largest pcapng non-packet block accepted (name resolution, statistics, custom blocks).
pub const MAX_BLOCK_BYTES: u32 = 4 << 20;

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
    Pcap(Classic),
    PcapNg(NgState),
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
            m if classic::is_magic(m) => Format::Pcap(Classic::open(&mut input, &path)?),
            pcapng::SHB => Format::PcapNg(NgState::open(&mut input, &path)?),
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
            Format::Pcap(classic) => classic.next_frame(&mut self.input, &mut self.stats),
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

// The fixed-width fields of both formats, in the byte order the file header announced; `None`
// past the end of `b`, so a short block is a checked case rather than a panic.

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

/// An I/O error while opening, naming the input.
fn io_err(path: &Path, source: io::Error) -> CaptureError {
    CaptureError::Io {
        path: path.to_path_buf(),
        source,
    }
}
