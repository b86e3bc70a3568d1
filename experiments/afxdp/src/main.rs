//! `afxdp-rx IFACE [driver|generic] [copy|zerocopy] [timer|wake]`: the AF_XDP side of the experiment of
//! issue 12, measured against rebuilder's ring-buffer path.
//!
//! Attaches `xsk.bpf.c` (UDP to port 4789 redirected into an `XSKMAP` by receive queue,
//! everything else passed) to IFACE, opens one AF_XDP socket per receive queue of IFACE on one
//! shared UMEM, binds them in copy or zero-copy mode, and receives until its standard input
//! closes. Then it prints `received N bytes B` (frames taken from the receive rings, TCP payload
//! bytes copied) and exits, detaching the program. Details go to standard error.
//!
//! Each frame gets the work rebuilder's XDP program does in the kernel plus what its reader
//! does after draining the ring, so that the two paths do the same job: the outer Ethernet
//! (VLAN), IPv4/IPv6 and UDP headers, VXLAN, the inner Ethernet (VLAN), IPv4/IPv6 (extension
//! headers) and TCP headers are parsed with the same checks; pure ACKs are dropped; a record
//! header is filled and the payload (capped at `PAYLOAD_MAX`) is copied into a 1 MiB batch
//! buffer with its header and range noted beside it, as `RecordBatch` does; then the frame goes
//! back to the fill ring. Differences: the timestamp is read once per batch of descriptors
//! rather than per packet, and there are no per-CPU counter map updates.
//!
//! Waiting, the optional fourth argument:
//! - `timer` (the default), like rebuilder's ring reader (woken by the kernel only once a
//!   sixteenth of the ring is used, else every `RING_POLL`, 2 ms): after a round that took less
//!   than a sixteenth of a receive ring, it sleeps 2 ms in `poll()` on standard input alone, so
//!   the kernel never has a sleeper to wake on the sockets;
//! - `wake`: `poll()` on the sockets and standard input (10 ms timeout) whenever every receive
//!   ring is empty: woken by the kernel at the end of each NAPI poll that delivered frames.
//!
//! Sockets are bound with `XDP_USE_NEED_WAKEUP`, so the fill ring is only kicked (`poll` with
//! the socket's wakeup, here `recvfrom` via xdpilone) when the kernel asks for it (with a
//! zero-copy driver; copy mode never asks). Busy polling (`SO_PREFER_BUSY_POLL`) is not used: on
//! a veth the receive NAPI runs in the sender's context, so there is nothing to poll for on the
//! receiver's CPU.
//!
//! Findings (issue 12; 2-core VM shared with builds, kernel 6.18, veth MTU 9000, the 460k-frame
//! burst by tcpreplay --topspeed, medians of 5 interleaved runs; `ringbuf-rx` is the ring-buffer
//! path doing the same job): per packet, AF_XDP copy mode (driver) took 156 ns in userspace and
//! 83 ns in its XDP program, against 108 ns and 475 ns for the ring buffer; but the redirect and
//! the copy of the whole frame into the UMEM happen after the program, outside its bpf_stats:
//! counted in the sender's CPU (the veth receive runs in its context) they add 258 ns over a bare
//! XDP_DROP against 303 ns for the ring buffer, so ~480 ns a packet each, a tie within this
//! machine's noise (perf agrees: `__xsk_rcv`'s copy alone ~170 ns). Waking the receiver on
//! every NAPI poll (`wake`) costs ~3.6 µs a packet. Zero-copy is refused on veth (EOPNOTSUPP).
//! The ring buffer stays: no faster here, it copies only kept payloads (pure ACKs, 46% of the
//! burst, never leave the kernel), needs no 2 KiB chunk per buffered frame, and takes jumbo
//! frames through `xdp.frags`.
//!
//! Modules: `socket` (the UMEM, the sockets and their rings), `parse` (a frame's headers),
//! `batch` (what a frame becomes: counts and a copied payload); here, the command line, the
//! program attachment and the wait loop.

use std::error::Error;
use std::io;
use std::os::fd::BorrowedFd;
use std::process::ExitCode;

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use rebuilder_ebpf::XSK_OBJECT;
use xdpilone::xdp::XdpDesc;

mod batch;
mod parse;
mod socket;

use batch::{handle, Batch, Tally};
use socket::{os_error, refill, rx_queue_count, Area, Queue, FRAMES_PER_QUEUE, FRAME_SIZE};

/// Descriptors taken from a receive ring at a time.
const RX_BATCH: u32 = 256;
/// Sockets the program's `XSKMAP` has room for.
const XSKS_MAX: u32 = 64;
/// `wake`: the longest sleep before standard input is looked at again.
const POLL_TIMEOUT_MS: libc::c_int = 10;
/// `timer`: the sleep between rounds that found little, as rebuilder's `RING_POLL`.
const TIMER_MS: libc::c_int = 2;
/// `timer`: a round that took this many frames from a queue goes on without sleeping.
const BUSY_FRAMES: u32 = FRAMES_PER_QUEUE / 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: afxdp-rx IFACE [driver|generic] [copy|zerocopy] [timer|wake]";
    let Some(iface) = args.first() else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let mode = match rebuilder_ebpf::xdp_mode_arg(args.get(1).map(String::as_str)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("afxdp-rx: {e}\n{usage}");
            return ExitCode::FAILURE;
        }
    };
    let zerocopy = match args.get(2).map(String::as_str) {
        None | Some("copy") => false,
        Some("zerocopy") => true,
        Some(other) => {
            eprintln!("afxdp-rx: unknown bind mode {other:?} (copy or zerocopy)\n{usage}");
            return ExitCode::FAILURE;
        }
    };
    let wake = match args.get(3).map(String::as_str) {
        None | Some("timer") => false,
        Some("wake") => true,
        Some(other) => {
            eprintln!("afxdp-rx: unknown wait mode {other:?} (timer or wake)\n{usage}");
            return ExitCode::FAILURE;
        }
    };
    if args.len() > 4 {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    }
    match run(iface, mode, zerocopy, wake) {
        Ok(t) => {
            println!("received {} bytes {}", t.frames, t.payload_bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("afxdp-rx: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(iface: &str, mode: XdpMode, zerocopy: bool, wake: bool) -> Result<Tally, Box<dyn Error>> {
    let queues = rx_queue_count(iface);
    if queues > XSKS_MAX {
        return Err(
            format!("{iface} has {queues} receive queues; the XSKMAP holds {XSKS_MAX}").into(),
        );
    }
    let per_queue = FRAMES_PER_QUEUE as usize * FRAME_SIZE as usize;
    // Declared first so that it is unmapped last, after the sockets and the UMEM.
    let area = Area::new(per_queue * queues as usize).map_err(|e| {
        format!(
            "mapping the UMEM ({} MiB): {e}",
            (per_queue * queues as usize) >> 20
        )
    })?;

    let mut ebpf = Ebpf::load(XSK_OBJECT)?;
    let program: &mut Xdp = ebpf
        .program_mut("xsk_redirect")
        .ok_or("no xsk_redirect program in the object")?
        .try_into()?;
    program.load()?;
    // Attached through the program's link list: detached when `ebpf` goes.
    program.attach(iface, mode)?;

    let mut sockets = socket::open(&area, iface, queues, zerocopy)?;
    let open = &mut sockets.queues;

    let mut xsks: XskMap<_> = XskMap::try_from(ebpf.map_mut("xsks").ok_or("no xsks map")?)?;
    for q in open.iter() {
        // SAFETY: the socket's descriptor stays open while `q` lives; the map keeps its own
        // reference to the socket.
        let fd = unsafe { BorrowedFd::borrow_raw(q.rx.as_raw_fd()) };
        xsks.set(q.id, fd, 0)?;
    }
    eprintln!(
        "afxdp-rx: {iface}: {} socket(s), {} mode, {} bind, need-wakeup, {} wait",
        open.len(),
        if matches!(mode, XdpMode::Skb) {
            "generic"
        } else {
            "driver"
        },
        if zerocopy { "zero-copy" } else { "copy" },
        if wake { "wake" } else { "timer" },
    );

    let tally = receive(&area, open, wake)?;
    for q in open.iter() {
        match q.user.statistics_v2() {
            Ok(s) => eprintln!(
                "afxdp-rx: queue {}: rx_dropped {} rx_invalid_descs {} rx_ring_full {} \
                 rx_fill_ring_empty_descs {}",
                q.id, s.rx_dropped, s.rx_invalid_descs, s.rx_ring_full, s.rx_fill_ring_empty_descs
            ),
            Err(e) => eprintln!("afxdp-rx: queue {}: {}", q.id, os_error("statistics", &e)),
        }
    }
    eprintln!(
        "afxdp-rx: records {} pure_acks {} not_vxlan {} outer_fragments {} malformed {} \
         not_tcp {} inner_fragments {} truncated {} bad_descs {} rx_batches {} polls {} wakeups {}",
        tally.records,
        tally.pure_acks,
        tally.not_vxlan,
        tally.outer_fragments,
        tally.malformed,
        tally.not_tcp,
        tally.inner_fragments,
        tally.truncated,
        tally.bad_descs,
        tally.batches,
        tally.polls,
        tally.wakeups,
    );
    Ok(tally)
}

/// Whether `fd` has input, or `fd` ended (EOF or error); without waiting.
fn stdin_closed(fds: &[libc::pollfd]) -> bool {
    fds.first()
        .is_some_and(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        && {
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            n <= 0
        }
}

fn receive(area: &Area, queues: &mut [Queue], wake: bool) -> Result<Tally, Box<dyn Error>> {
    let mut tally = Tally::default();
    let mut batch = Batch::new();
    // Standard input first; the sockets only when the kernel is to wake this process.
    let sockets = queues.iter().map(|q| q.rx.as_raw_fd()).filter(|_| wake);
    let mut fds: Vec<libc::pollfd> = std::iter::once(0)
        .chain(sockets)
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut busy_rounds = 0u32;
    loop {
        let mut most = 0;
        for q in queues.iter_mut() {
            most = most.max(drain(area, q, &mut batch, &mut tally));
            if q.device.needs_wakeup() {
                q.device.wake();
                tally.wakeups += 1;
            }
        }
        let busy = if wake { most > 0 } else { most >= BUSY_FRAMES };
        // While busy, look at standard input now and then without sleeping.
        let timeout = if busy {
            busy_rounds += 1;
            if busy_rounds < 1024 {
                continue;
            }
            0
        } else if wake {
            POLL_TIMEOUT_MS
        } else {
            TIMER_MS
        };
        busy_rounds = 0;
        tally.polls += 1;
        for f in &mut fds {
            f.revents = 0;
        }
        // SAFETY: `fds` is a live array of that many pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}").into());
        }
        if stdin_closed(&fds) {
            break;
        }
    }
    // What arrived while standard input closed.
    for q in queues.iter_mut() {
        while drain(area, q, &mut batch, &mut tally) > 0 {}
    }
    batch.hand_out();
    Ok(tally)
}

/// Takes what waits in one receive ring, a batch at a time, and recycles the chunks.
fn drain(area: &Area, q: &mut Queue, batch: &mut Batch, tally: &mut Tally) -> u32 {
    let mut taken = 0;
    loop {
        let mut rx = q.rx.receive(RX_BATCH);
        let n = rx.capacity();
        if n == 0 {
            break;
        }
        tally.batches += 1;
        let ts_ns = monotonic_ns();
        while let Some(XdpDesc { addr, len, .. }) = rx.read() {
            tally.frames += 1;
            match area.frame(addr, len) {
                Some(frame) => handle(frame, ts_ns, batch, tally),
                None => tally.bad_descs += 1,
            }
            // Aligned mode: the chunk is the address rounded down to the chunk size.
            q.recycle.push(addr & !u64::from(FRAME_SIZE - 1));
        }
        rx.release();
        drop(rx);
        refill(q);
        taken += n;
    }
    taken
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the given timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
