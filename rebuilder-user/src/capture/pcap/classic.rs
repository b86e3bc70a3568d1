//! Classic pcap (libpcap's format): a 24-byte file header, then records of a 16-byte header and
//! the captured bytes. One link type and one timestamp resolution (micro- or nanoseconds, told
//! by the magic number) hold for the whole file.
//!
//! There is no trailer to resynchronise on, so a record whose captured length is impossible
//! ends the file (counted in `corrupt`) rather than guessing where the next one starts. It
//! reads through [`Chunked`] and counts in [`PcapStats`]; pcap-file's parser reads the headers.

use std::io;
use std::path::Path;

use pcap_file::pcap::PcapParser;
use pcap_file::{Endianness, TsResolution};

use super::chunked::Chunked;
use super::{io_err, rd32, CaptureError, Frame, PcapStats, MAX_RECORD_BYTES, NANOS_PER_SEC};
use crate::capture::decode::LinkType;

pub(super) const PCAP_HEADER_LEN: usize = 24;
pub(super) const PCAP_RECORD_HEADER_LEN: usize = 16;

/// The magic numbers of classic pcap: microseconds and nanoseconds, in either byte order.
pub(super) fn is_magic(magic: u32) -> bool {
    matches!(magic, 0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1)
}

/// What the file header says, for every record after it.
pub(super) struct Classic {
    parser: PcapParser,
    link: LinkType,
    big: bool,
    nanos: bool,
}

impl Classic {
    /// Reads the file header at the start of `input` (its magic number already seen).
    pub(super) fn open(input: &mut Chunked, path: &Path) -> Result<Self, CaptureError> {
        if !input.fill(PCAP_HEADER_LEN).map_err(|e| io_err(path, e))? {
            return Err(CaptureError::BadHeader {
                path: path.to_path_buf(),
                detail: "pcap file header cut short",
            });
        }
        let (_, parser) = PcapParser::new(input.avail()).map_err(|_| CaptureError::BadHeader {
            path: path.to_path_buf(),
            detail: "invalid pcap file header",
        })?;
        let header = parser.header();
        let linktype = u32::from(header.datalink);
        let link = LinkType::from_linktype(linktype)
            .ok_or_else(|| CaptureError::UnsupportedLinkType(path.to_path_buf(), linktype))?;
        input.consume(PCAP_HEADER_LEN);
        Ok(Self {
            parser,
            link,
            big: header.endianness == Endianness::Big,
            nanos: header.ts_resolution == TsResolution::NanoSecond,
        })
    }

    /// The next record as a frame, or `None` at the end of the file or at a record that ends it.
    pub(super) fn next_frame(
        &self,
        input: &mut Chunked,
        stats: &mut PcapStats,
    ) -> io::Result<Option<Frame>> {
        next_pcap(input, stats, &self.parser, self.link, self.big, self.nanos)
    }
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
