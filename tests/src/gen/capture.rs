//! Writing generated frames to capture files (classic pcap in µs or ns, pcapng), as Ethernet or
//! as Linux cooked captures (SLL, SLL2), streaming.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

use super::encode::Frame;
use crate::error::GenError;

/// Large enough for any frame the generator makes (and what tcpdump uses).
pub const SNAPLEN: u32 = 262_144;
/// The interface index SLL2 records carry.
pub const SLL2_IFINDEX: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps (magic 0xa1b23c4d).
    PcapNanos,
    /// pcapng, one interface, nanosecond timestamps (`if_tsresol` = 9).
    PcapNg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// DLT_EN10MB (1): the outer Ethernet frame as is.
    Ethernet,
    /// DLT_LINUX_SLL (113): the outer Ethernet header replaced by a 16-byte cooked header.
    LinuxSll,
    /// DLT_LINUX_SLL2 (276): the outer Ethernet header replaced by a 20-byte cooked header.
    LinuxSll2,
}

impl LinkType {
    pub fn data_link(self) -> DataLink {
        match self {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::LinuxSll => DataLink::LINUX_SLL,
            LinkType::LinuxSll2 => DataLink::LINUX_SLL2,
        }
    }
}

enum Sink<W: Write> {
    Pcap(PcapWriter<W>),
    PcapNg(PcapNgWriter<W>),
}

/// A capture file being written, one frame at a time.
pub struct CaptureWriter<W: Write> {
    sink: Sink<W>,
    link: LinkType,
    scratch: Vec<u8>,
    packets: u64,
}

impl CaptureWriter<BufWriter<File>> {
    pub fn create(
        path: impl AsRef<Path>,
        format: CaptureFormat,
        link: LinkType,
    ) -> Result<Self, GenError> {
        let file = File::create(path)?;
        Self::new(BufWriter::with_capacity(1 << 20, file), format, link)
    }
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(writer: W, format: CaptureFormat, link: LinkType) -> Result<Self, GenError> {
        let sink = match format {
            CaptureFormat::Pcap | CaptureFormat::PcapNanos => {
                let header = PcapHeader {
                    snaplen: SNAPLEN,
                    datalink: link.data_link(),
                    ts_resolution: if format == CaptureFormat::Pcap {
                        TsResolution::MicroSecond
                    } else {
                        TsResolution::NanoSecond
                    },
                    endianness: Endianness::native(),
                    ..Default::default()
                };
                Sink::Pcap(PcapWriter::with_header(writer, header)?)
            }
            CaptureFormat::PcapNg => {
                let mut w = PcapNgWriter::with_endianness(writer, Endianness::native())?;
                // pcap-file always writes EPB timestamps in nanoseconds; saying so keeps other
                // readers (libpcap, Wireshark), which default to µs, in agreement.
                w.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: link.data_link(),
                    snaplen: SNAPLEN,
                    options: vec![InterfaceDescriptionOption::IfTsResol(9)],
                })?;
                Sink::PcapNg(w)
            }
        };
        Ok(Self {
            sink,
            link,
            scratch: Vec::new(),
            packets: 0,
        })
    }

    pub fn write_frame(&mut self, frame: &Frame) -> Result<(), GenError> {
        self.write_ethernet(frame.ts, &frame.data)
    }

    /// Writes one Ethernet frame (rewritten to the link type) captured at `ts`.
    pub fn write_ethernet(&mut self, ts: Duration, frame: &[u8]) -> Result<(), GenError> {
        let data: &[u8] = match self.link {
            LinkType::Ethernet => frame,
            LinkType::LinuxSll | LinkType::LinuxSll2 => {
                to_cooked(self.link, frame, &mut self.scratch)?;
                &self.scratch
            }
        };
        let len = u32::try_from(data.len())
            .ok()
            .filter(|l| *l <= SNAPLEN)
            .ok_or_else(|| {
                GenError::Capture(format!("frame of {} bytes exceeds the snaplen", data.len()))
            })?;
        match &mut self.sink {
            Sink::Pcap(w) => {
                w.write_packet(&PcapPacket::new(ts, len, data))?;
            }
            Sink::PcapNg(w) => {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: ts,
                    original_len: len,
                    data: Cow::Borrowed(data),
                    options: vec![],
                })?;
            }
        }
        self.packets += 1;
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, GenError> {
        let mut w = match self.sink {
            Sink::Pcap(w) => w.into_writer(),
            Sink::PcapNg(w) => w.into_inner(),
        };
        w.flush()?;
        Ok(w)
    }
}

/// Replaces the 14-byte Ethernet header of `frame` with a Linux cooked header, as a capture on
/// the `any` interface would record the packet (incoming, to this host).
fn to_cooked(link: LinkType, frame: &[u8], out: &mut Vec<u8>) -> Result<(), GenError> {
    let (Some(src), Some(proto), Some(payload)) =
        (frame.get(6..12), frame.get(12..14), frame.get(14..))
    else {
        return Err(GenError::Capture(format!(
            "{}-byte frame has no Ethernet header",
            frame.len()
        )));
    };
    out.clear();
    const PACKET_HOST: u8 = 0;
    const ARPHRD_ETHER: u16 = 1;
    match link {
        LinkType::LinuxSll2 => {
            out.extend_from_slice(proto);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&SLL2_IFINDEX.to_be_bytes());
            out.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
            out.push(PACKET_HOST);
            out.push(6);
            out.extend_from_slice(src);
            out.extend_from_slice(&[0, 0]);
        }
        _ => {
            out.extend_from_slice(&u16::from(PACKET_HOST).to_be_bytes());
            out.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
            out.extend_from_slice(&6u16.to_be_bytes());
            out.extend_from_slice(src);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(proto);
        }
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes every frame to a new capture file; returns how many were written.
pub fn write_capture<I>(
    path: impl AsRef<Path>,
    format: CaptureFormat,
    link: LinkType,
    frames: I,
) -> Result<u64, GenError>
where
    I: IntoIterator<Item = Result<Frame, GenError>>,
{
    let mut w = CaptureWriter::create(path, format, link)?;
    for f in frames {
        w.write_frame(&f?)?;
    }
    let n = w.packets();
    w.finish()?;
    Ok(n)
}
