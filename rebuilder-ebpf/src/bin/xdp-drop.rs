//! `xdp-drop IFACE [driver|generic]`: attaches the bare counting XDP_DROP program (the
//! benchmark's ceiling) to IFACE until its standard input closes, then prints
//! `dropped N` and exits, detaching the program. Used by `cargo xtask bench`.

use std::io::Read;
use std::process::ExitCode;

use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(iface) = args.first() else {
        eprintln!("usage: xdp-drop IFACE [driver|generic]");
        return ExitCode::FAILURE;
    };
    let mode = match rebuilder_ebpf::xdp_mode_arg(args.get(1).map(String::as_str)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("xdp-drop: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(iface, mode) {
        Ok(n) => {
            println!("dropped {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdp-drop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(iface: &str, mode: XdpMode) -> Result<u64, Box<dyn std::error::Error>> {
    let mut ebpf = Ebpf::load(rebuilder_ebpf::DROP_OBJECT)?;
    let program: &mut Xdp = ebpf
        .program_mut("drop_all")
        .ok_or("no drop_all program in the object")?
        .try_into()?;
    program.load()?;
    // Attached through the program's link list: dropped (detached) when `ebpf` goes.
    program.attach(iface, mode)?;
    eprintln!("xdp-drop: attached to {iface}");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    let counts: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("drop_count").ok_or("no drop_count map")?)?;
    Ok(counts.get(&0, 0)?.iter().sum())
}
