//! rebuilder-gen: writes a capture of mirrored keep-alive HTTP traffic (VXLAN over UDP/4789),
//! and optionally the requests it carries, for demos and benchmarks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use rebuilder_tests::gen::{
    outer_source_port, CaptureFormat, CaptureWriter, Impairments, LinkType, MirrorPath,
    SecondMirror, Traffic, TrafficConfig, UdpSendOptions, VxlanSender,
};
use rebuilder_tests::truth::TruthWriter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps.
    PcapNs,
    Pcapng,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Link {
    Ethernet,
    Sll,
    Sll2,
}

/// Generate mirrored HTTP traffic: a mix of keep-alive GETs and POSTs between many clients and
/// a few servers, as AWS VPC Traffic Mirroring delivers it.
#[derive(Debug, Parser)]
#[command(name = "rebuilder-gen", version)]
struct Args {
    /// Capture file to write.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "pcap")]
    format: Format,
    #[arg(long, value_enum, default_value = "ethernet")]
    link: Link,
    /// Connections open at once. Without --packets or --conversations, also the total.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Total connections (default: --connections, or as many as --packets needs).
    #[arg(long)]
    conversations: Option<u64>,
    #[arg(long, default_value_t = 10)]
    requests_per_connection: usize,
    /// Body size of the POSTs.
    #[arg(long, default_value_t = 1024)]
    post_bytes: usize,
    /// Share of POSTs among requests, in percent.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    post_percent: u8,
    /// Body size of the responses.
    #[arg(long, default_value_t = 256)]
    response_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep opening connections until at least this many packets are generated.
    #[arg(long)]
    packets: Option<u64>,
    /// Write the requests carried (JSON lines, raw bytes in base64) to this file.
    #[arg(long)]
    truth: Option<PathBuf>,
    #[arg(long, default_value_t = 1448)]
    mss: usize,
    /// Inner (mirrored) traffic over IPv6.
    #[arg(long)]
    ipv6: bool,
    /// Outer (VXLAN transport) over IPv6.
    #[arg(long)]
    ipv6_outer: bool,
    /// Inner VLAN tag (give twice for QinQ).
    #[arg(long = "vlan")]
    vlans: Vec<u16>,
    #[arg(long, default_value_t = 0)]
    reorder_window: usize,
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    loss_rate: f64,
    /// AWS PacketLength: truncate inner frames to this many bytes.
    #[arg(long)]
    packet_length: Option<usize>,
    /// Mirror both ends: every packet also arrives from a second ENI with another VNI.
    #[arg(long)]
    mirror_both: bool,
    /// Time between packets of one connection, in microseconds.
    #[arg(long, default_value_t = 50)]
    gap_us: u64,
    /// Also send the VXLAN datagrams to this loopback address (e.g. 127.0.0.1:4789).
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// Pace --udp at this many packets per second.
    #[arg(long)]
    pps: Option<u64>,
    /// Sending sockets for --udp (flows are spread over them by flow hash).
    #[arg(long, default_value_t = 1)]
    udp_sockets: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.out.is_none() && args.udp.is_none() {
        bail!("nothing to do: give --out FILE and/or --udp ADDR");
    }
    let second = args.mirror_both.then(|| SecondMirror {
        path: if args.ipv6_outer {
            MirrorPath {
                src: "fd00:e2::10"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                dst: "fd00:e0::200"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                vni: 0x00b0_0b1e,
            }
        } else {
            MirrorPath {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 3, 10)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
                vni: 0x00b0_0b1e,
            }
        },
        max_skew: Duration::from_micros(200),
    });
    let cfg = TrafficConfig {
        concurrency: args.connections,
        conversations: args.conversations,
        packets: args.packets,
        requests_per_connection: args.requests_per_connection,
        post_percent: args.post_percent,
        post_bytes: args.post_bytes,
        response_bytes: args.response_bytes,
        seed: args.seed,
        mss: args.mss,
        ipv6_inner: args.ipv6,
        ipv6_outer: args.ipv6_outer,
        vlans: args.vlans.clone(),
        gap: Duration::from_micros(args.gap_us),
        impairments: Impairments {
            reorder_window: args.reorder_window,
            duplicate_rate: args.duplicate_rate,
            loss_rate: args.loss_rate,
            packet_length: args.packet_length,
            mirror_twice: second,
            ..Impairments::default()
        },
        ..TrafficConfig::default()
    };
    let format = match args.format {
        Format::Pcap => CaptureFormat::Pcap,
        Format::PcapNs => CaptureFormat::PcapNanos,
        Format::Pcapng => CaptureFormat::PcapNg,
    };
    let link = match args.link {
        Link::Ethernet => LinkType::Ethernet,
        Link::Sll => LinkType::LinuxSll,
        Link::Sll2 => LinkType::LinuxSll2,
    };

    let started = Instant::now();
    let mut traffic = Traffic::new(cfg).context("traffic settings")?;
    let mut writer = match &args.out {
        Some(p) => Some(
            CaptureWriter::create(p, format, link)
                .with_context(|| format!("creating {}", p.display()))?,
        ),
        None => None,
    };
    let mut truth = match &args.truth {
        Some(p) => {
            Some(TruthWriter::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let mut sender = match args.udp {
        Some(target) => Some(VxlanSender::new(&UdpSendOptions {
            target,
            packets_per_second: args.pps,
            sockets: args.udp_sockets,
        })?),
        None => None,
    };

    let mut buf = Vec::with_capacity(16 * 1024);
    let mut packets = 0u64;
    let mut bytes = 0u64;
    while let Some(meta) = traffic.next_into(&mut buf) {
        let meta = meta?;
        if let Some(w) = writer.as_mut() {
            w.write_ethernet(meta.ts, &buf)?;
        }
        if let Some(s) = sender.as_mut() {
            let payload = buf.get(meta.vxlan_offset..).unwrap_or_default();
            s.send_payload(outer_source_port(&buf, meta.vxlan_offset), payload)?;
        }
        // Truth is drained every packet either way, so it never piles up in memory.
        let planned = traffic.drain_truth();
        if let Some(t) = truth.as_mut() {
            for c in &planned {
                t.write(c)?;
            }
        }
        packets += 1;
        bytes += buf.len() as u64;
    }
    let requests = truth.as_ref().map(TruthWriter::requests);
    if let Some(w) = writer {
        w.finish()?;
    }
    if let Some(t) = truth {
        t.finish()?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{packets} packets ({bytes} bytes, {} connections{}) in {secs:.2} s: {:.0} packets/s",
        traffic.conversations_started(),
        requests
            .map(|r| format!(", {r} requests"))
            .unwrap_or_default(),
        packets as f64 / secs.max(1e-9),
    );
    Ok(())
}
