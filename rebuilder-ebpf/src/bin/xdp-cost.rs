//! `xdp-cost PCAP [FRAMES] [REPEAT]`: the XDP program's own cost per packet, repeatable.
//!
//! Runs the first FRAMES frames (default 2000) of a classic Ethernet pcap (such as the
//! benchmark's burst) through the kernel's `BPF_PROG_TEST_RUN`, each REPEAT times (default
//! 200), for rebuilder's program (configured as `rebuilder run` configures it under the default
//! memory budget: a 64 MiB ring, wake-ups past a sixteenth of it) and for the bare counting XDP_DROP, and prints the mean nanoseconds
//! per packet of each. The live burst's `bpf_stats` figure includes the cache misses of real
//! traffic; this one isolates the program's instructions and helper calls, so a change to the
//! C source can be compared in seconds. Used by `cargo xtask bench`. Needs root (or
//! CAP_BPF + CAP_NET_ADMIN).

use std::process::ExitCode;

use aya::maps::RingBuf;
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(pcap) = args.first() else {
        eprintln!("usage: xdp-cost PCAP [FRAMES] [REPEAT]");
        return ExitCode::FAILURE;
    };
    let num = |i: usize, default: usize| {
        args.get(i)
            .map_or(Ok(default), |v| v.parse::<usize>())
            .map_err(|e| format!("argument {i}: {e}"))
    };
    let run = || -> Result<(), Error> {
        let frames = read_frames(pcap, num(1, 2000)?)?;
        let repeat = u32::try_from(num(2, 200)?)?.max(1);
        let ours = cost_rebuilder(&frames, repeat)?;
        let bare = cost_drop(&frames, repeat)?;
        println!(
            "frames {} repeat {repeat}: rebuilder {ours:.1} ns/packet, bare XDP_DROP {bare:.1} ns/packet",
            frames.len()
        );
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdp-cost: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first `max` frames of a classic Ethernet pcap file.
fn read_frames(path: &str, max: usize) -> Result<Vec<Vec<u8>>, Error> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut reader = PcapReader::new(file).map_err(|e| format!("{path}: {e}"))?;
    if reader.header().datalink != DataLink::ETHERNET {
        return Err(format!("{path}: link type is not Ethernet").into());
    }
    let mut frames = Vec::new();
    while frames.len() < max {
        match reader.next_packet() {
            Some(packet) => frames.push(
                packet
                    .map_err(|e| format!("{path}: {e}"))?
                    .data
                    .into_owned(),
            ),
            None => break,
        }
    }
    if frames.is_empty() {
        return Err(format!("{path}: no frames").into());
    }
    Ok(frames)
}

/// Mean ns per run over every frame, `repeat` runs each; `between` runs after each frame.
fn cost(
    program: &mut Xdp,
    frames: &[Vec<u8>],
    repeat: u32,
    mut between: impl FnMut(),
) -> Result<f64, ProgramError> {
    let mut total = 0f64;
    for frame in frames {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        };
        // The kernel reports the mean duration of the repeated runs.
        total += program.test_run(opts)?.duration.as_nanos() as f64;
        between();
    }
    Ok(total / frames.len() as f64)
}

fn cost_rebuilder(frames: &[Vec<u8>], repeat: u32) -> Result<f64, Error> {
    // What `rebuilder run` gives the ring under the default memory budget.
    let ring_size = 64 << 20;
    let config = rebuilder_ebpf::Config {
        ring_size,
        wakeup_bytes: ring_size / 16,
        ..rebuilder_ebpf::Config::default()
    };
    let mut ebpf = rebuilder_ebpf::load(&config)?;
    let map = ebpf
        .take_map(rebuilder_ebpf::MAP_RECORDS)
        .ok_or("the object has no records map")?;
    let mut ring = RingBuf::try_from(map)?;
    let program = rebuilder_ebpf::xdp_program(&mut ebpf)?;
    // Drained after every frame, so every run finds room (a full ring is the cheap path).
    Ok(cost(program, frames, repeat, || {
        while ring.next().is_some() {}
    })?)
}

fn cost_drop(frames: &[Vec<u8>], repeat: u32) -> Result<f64, Error> {
    let mut ebpf = Ebpf::load(rebuilder_ebpf::DROP_OBJECT)?;
    let program: &mut Xdp = ebpf
        .program_mut("drop_all")
        .ok_or("no drop_all program in the object")?
        .try_into()?;
    program.load()?;
    Ok(cost(program, frames, repeat, || {})?)
}
