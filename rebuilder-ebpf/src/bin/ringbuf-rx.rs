//! `ringbuf-rx IFACE [driver|generic]`: rebuilder's ring-buffer capture path and nothing else,
//! the baseline `afxdp-rx` (experiments/afxdp) is compared with (issue 12).
//!
//! Loads rebuilder's XDP program as `rebuilder run` configures it by default (VXLAN port 4789,
//! no filters, the 64 MiB ring of the default memory split, the reader woken past a sixteenth
//! of the ring), attaches it to
//! IFACE and drains the ring until standard input closes: each record is parsed and its payload
//! copied into a 1 MiB batch buffer with its header and range noted beside it, as rebuilder's
//! `RecordBatch` does, and the batch is then dropped rather than handed to reassembly. The
//! reader waits as rebuilder's does: `poll()` on the ring and standard input with a 2 ms timeout
//! (`RING_POLL`). At the end it prints `received N bytes B` (packets the program saw, payload
//! bytes copied); details go to standard error.

use std::error::Error;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use aya::maps::RingBuf;
use aya::programs::XdpMode;
use rebuilder_ebpf::{Config, Counter, RecordHeader, MAP_RECORDS, PAYLOAD_MAX};

const BATCH_BYTES: usize = 1 << 20;
/// What `rebuilder run` gets from its default memory budget (`Settings::xdp_ring_bytes`).
const RING_BYTES: u32 = 64 << 20;
const RING_POLL_MS: libc::c_int = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ringbuf-rx IFACE [driver|generic]";
    let Some(iface) = args.first() else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let mode = match rebuilder_ebpf::xdp_mode_arg(args.get(1).map(String::as_str)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("ringbuf-rx: {e}\n{usage}");
            return ExitCode::FAILURE;
        }
    };
    if args.len() > 2 {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    }
    match run(iface, mode) {
        Ok((n, b)) => {
            println!("received {n} bytes {b}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringbuf-rx: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(iface: &str, mode: XdpMode) -> Result<(u64, u64), Box<dyn Error>> {
    let config = Config {
        ring_size: RING_BYTES,
        wakeup_bytes: RING_BYTES / 16,
        ..Config::default()
    };
    let mut ebpf = rebuilder_ebpf::load(&config)?;
    let _link = rebuilder_ebpf::attach(&mut ebpf, iface, mode)?;
    let mut ring = RingBuf::try_from(ebpf.take_map(MAP_RECORDS).ok_or("no records map")?)?;
    eprintln!("ringbuf-rx: attached to {iface}");

    let mut arena: Vec<u8> = Vec::with_capacity(BATCH_BYTES + PAYLOAD_MAX as usize);
    let mut pending: Vec<(RecordHeader, usize, usize)> = Vec::with_capacity(BATCH_BYTES / 64);
    let (mut records, mut bytes, mut bad, mut polls) = (0u64, 0u64, 0u64, 0u64);
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut closing = false;
    loop {
        while let Some(item) = ring.next() {
            records += 1;
            match rebuilder_ebpf::parse_record(&item) {
                Ok((h, payload)) => {
                    let start = arena.len();
                    arena.extend_from_slice(payload);
                    pending.push((h, start, payload.len()));
                    bytes += payload.len() as u64;
                }
                Err(_) => bad += 1,
            }
            drop(item);
            if arena.len() >= BATCH_BYTES {
                std::hint::black_box((&arena, &pending));
                arena.clear();
                pending.clear();
            }
        }
        if closing {
            break;
        }
        polls += 1;
        for f in &mut fds {
            f.revents = 0;
        }
        // SAFETY: `fds` is a live array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, RING_POLL_MS) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}").into());
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            // One more drain for what arrived meanwhile, then out.
            closing = n <= 0;
        }
    }
    std::hint::black_box((&arena, &pending));
    let counters = rebuilder_ebpf::read_counters(&ebpf)?;
    let count = |c: Counter| counters.get(c.index() as usize).copied().unwrap_or(0);
    eprintln!(
        "ringbuf-rx: records {records} bad_records {bad} polls {polls} ring_full {} pure_acks {}",
        count(Counter::RingFull),
        count(Counter::FilteredPureAck),
    );
    Ok((count(Counter::Seen), bytes))
}
