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

use std::error::Error;
use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::process::ExitCode;
use std::ptr::NonNull;

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use rebuilder_ebpf::{RecordHeader, FAMILY_IPV4, FAMILY_IPV6, PAYLOAD_MAX, XSK_OBJECT};
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, Errno, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

/// UMEM chunk size: the smallest the kernel takes. A frame must fit in it less the kernel's
/// 256-byte XDP headroom (1792 bytes; the burst's frames are at most 1564). Jumbo frames
/// (AWS mirroring with a 9001 MTU) would need `XDP_USE_SG` or 16 KiB unaligned chunks.
const FRAME_SIZE: u32 = 2048;
/// Chunks per queue, all handed to the fill ring at start; also the size of every ring. 64 MiB
/// of UMEM, as much memory as `rebuilder run`'s default ring buffer: with 4096 chunks, a
/// receiver kept off the CPU for ~20 ms by the other work of this 2-core machine let the fill
/// ring run dry and lost frames (`rx_fill_ring_empty_descs`), where the ring buffer never did.
const FRAMES_PER_QUEUE: u32 = 32768;
/// Descriptors taken from a receive ring at a time.
const RX_BATCH: u32 = 256;
/// Sockets the program's `XSKMAP` has room for.
const XSKS_MAX: u32 = 64;
/// Like rebuilder's `BATCH_BYTES`: the batch is handed on once this much payload is copied.
const BATCH_BYTES: usize = 1 << 20;
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
    let mode = match args.get(1).map(String::as_str) {
        None | Some("driver") => XdpMode::Driver,
        Some("generic") => XdpMode::Skb,
        Some(other) => {
            eprintln!("afxdp-rx: unknown XDP mode {other:?} (driver or generic)\n{usage}");
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

fn os_error(what: &str, e: &Errno) -> io::Error {
    let raw = io::Error::from_raw_os_error(e.get_raw().abs());
    io::Error::new(raw.kind(), format!("{what}: {raw}"))
}

/// An anonymous, page-aligned, populated mapping: the UMEM. Unmapped on drop, so it must outlive
/// the `Umem` and the sockets (declared before them).
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { ptr, len })
    }

    fn as_nonnull_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// `len` bytes at `addr`, if they lie inside the area.
    ///
    /// The kernel writes a chunk only while it sits in the fill ring; one taken from the
    /// receive ring is the process's until it goes back, so reading it here does not race.
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds of the live mapping (checked above); see above for the aliasing.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One receive queue's socket: its fill/completion rings and its receive ring.
struct Queue {
    id: u32,
    device: DeviceQueue,
    user: User,
    rx: RingRx,
    /// Chunks taken from the receive ring and not yet back in the fill ring.
    recycle: Vec<u64>,
}

/// What came through.
#[derive(Default)]
struct Tally {
    frames: u64,
    payload_bytes: u64,
    records: u64,
    pure_acks: u64,
    not_vxlan: u64,
    outer_fragments: u64,
    malformed: u64,
    not_tcp: u64,
    inner_fragments: u64,
    truncated: u64,
    bad_descs: u64,
    batches: u64,
    polls: u64,
    wakeups: u64,
}

/// The userspace equivalent of rebuilder's `RecordBatch`: payloads copied into one buffer, the
/// header and range of each noted beside it; handed on (here: cleared) when full.
struct Batch {
    arena: Vec<u8>,
    pending: Vec<(RecordHeader, usize, usize)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            arena: Vec::with_capacity(BATCH_BYTES + PAYLOAD_MAX as usize),
            pending: Vec::with_capacity(BATCH_BYTES / 64),
        }
    }

    fn take(&mut self, h: RecordHeader, payload: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.pending.push((h, start, payload.len()));
        if self.arena.len() >= BATCH_BYTES {
            self.hand_out();
        }
    }

    fn hand_out(&mut self) {
        // Keep the compiler from dropping the copies as dead stores.
        std::hint::black_box((&self.arena, &self.pending));
        self.arena.clear();
        self.pending.clear();
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

    let config = UmemConfig {
        fill_size: FRAMES_PER_QUEUE,
        complete_size: FRAMES_PER_QUEUE,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: `area` is page aligned (mmap), valid for its length, and outlives `umem`.
    let umem = unsafe { Umem::new(config, area.as_nonnull_slice()) }
        .map_err(|e| os_error("registering the UMEM", &e))?;
    let name = CString::new(iface).map_err(|_| "interface name contains a NUL byte")?;

    let mut open = Vec::new();
    for q in 0..queues {
        let mut info = IfInfo::invalid();
        info.from_name(&name)
            .map_err(|e| os_error(&format!("looking up {iface}"), &e))?;
        info.set_queue(q);
        // The first socket is the UMEM's own; the others share it and inherit its bind mode
        // (the kernel refuses copy/zero-copy/need-wakeup flags on a shared bind).
        let sock = if q == 0 {
            Socket::with_shared(&info, &umem)
        } else {
            Socket::new(&info)
        }
        .map_err(|e| os_error("creating an AF_XDP socket", &e))?;
        let device = umem
            .fq_cq(&sock)
            .map_err(|e| os_error("setting up the fill and completion rings", &e))?;
        let bind_flags = if q == 0 {
            let copy = if zerocopy {
                SocketConfig::XDP_BIND_ZEROCOPY
            } else {
                SocketConfig::XDP_BIND_COPY
            };
            copy | SocketConfig::XDP_BIND_NEED_WAKEUP
        } else {
            0
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES_PER_QUEUE),
                    tx_size: None,
                    bind_flags,
                },
            )
            .map_err(|e| os_error("setting up the receive ring", &e))?;
        let rx = user
            .map_rx()
            .map_err(|e| os_error("mapping the receive ring", &e))?;
        if let Err(e) = umem.bind(&user) {
            let how = if zerocopy { "XDP_ZEROCOPY" } else { "XDP_COPY" };
            let hint = if zerocopy && e.get_raw().abs() == libc::EOPNOTSUPP {
                " (the driver has no zero-copy AF_XDP support; try copy)"
            } else {
                ""
            };
            return Err(os_error(
                &format!("binding to {iface} queue {q} with {how}{hint}"),
                &e,
            )
            .into());
        }
        let mut queue = Queue {
            id: q,
            device,
            user,
            rx,
            recycle: Vec::with_capacity(FRAMES_PER_QUEUE as usize),
        };
        // Every chunk of this queue's share of the UMEM starts in its fill ring.
        let base = u64::from(q) * per_queue as u64;
        queue
            .recycle
            .extend((0..u64::from(FRAMES_PER_QUEUE)).map(|i| base + i * u64::from(FRAME_SIZE)));
        refill(&mut queue);
        open.push(queue);
    }

    let mut xsks: XskMap<_> = XskMap::try_from(ebpf.map_mut("xsks").ok_or("no xsks map")?)?;
    for q in &open {
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

    let tally = receive(&area, &mut open, wake)?;
    for q in &open {
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

/// Receive queues of `iface` per sysfs (`ip netns exec` mounts the namespace's own), at least 1.
fn rx_queue_count(iface: &str) -> u32 {
    let dir = format!("/sys/class/net/{iface}/queues");
    let n = std::fs::read_dir(&dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count()
    });
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// Gives the queue's recycled chunks back to its fill ring, as many as fit.
fn refill(q: &mut Queue) {
    if q.recycle.is_empty() {
        return;
    }
    let want = u32::try_from(q.recycle.len()).unwrap_or(u32::MAX);
    let mut fill = q.device.fill(want);
    // Exactly as many items as reserved: `insert` takes one item too many otherwise.
    let n = (fill.capacity() as usize).min(q.recycle.len());
    let put = fill.insert(q.recycle[..n].iter().copied()) as usize;
    fill.commit();
    drop(fill);
    q.recycle.drain(..put);
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

/// One frame, as rebuilder's program and reader together treat it.
fn handle(frame: &[u8], ts_ns: u64, batch: &mut Batch, tally: &mut Tally) {
    match parse(frame, ts_ns) {
        Parsed::Record(h, payload) => {
            tally.records += 1;
            tally.payload_bytes += payload.len() as u64;
            if h.captured_len < h.wire_len {
                tally.truncated += 1;
            }
            batch.take(h, payload);
        }
        Parsed::NotVxlan => tally.not_vxlan += 1,
        Parsed::OuterFragment => tally.outer_fragments += 1,
        Parsed::Malformed => tally.malformed += 1,
        Parsed::NotTcp => tally.not_tcp += 1,
        Parsed::InnerFragment => tally.inner_fragments += 1,
        Parsed::PureAck => tally.pure_acks += 1,
    }
}

enum Parsed<'a> {
    Record(RecordHeader, &'a [u8]),
    NotVxlan,
    OuterFragment,
    Malformed,
    NotTcp,
    InnerFragment,
    PureAck,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const VXLAN_PORT: u16 = 4789;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Frag {
    None,
    First,
    Later,
}

struct L3 {
    l4_off: usize,
    l4_len: usize,
    proto: u8,
    frag: Frag,
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(off..)?.first_chunk::<2>()?))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(off..)?.first_chunk::<4>()?))
}

/// Ethernet and up to two VLAN tags in `b[off..]`: the ethertype and where the header ends.
fn parse_eth(b: &[u8], mut off: usize) -> Option<(u16, usize)> {
    let mut proto = be16(b, off + 12)?;
    off += 14;
    for _ in 0..2 {
        if !matches!(proto, 0x8100 | 0x88A8 | 0x9100) {
            break;
        }
        proto = be16(b, off + 2)?;
        off += 4;
    }
    Some((proto, off))
}

/// `Err(true)`: too short; `Err(false)`: present but invalid.
fn parse_ip(b: &[u8], proto: u16, off: usize) -> Result<L3, bool> {
    let hdr = |len: usize| b.get(off..off + len).ok_or(true);
    if proto == ETH_P_IP {
        let ip = hdr(20)?;
        if ip[0] >> 4 != 4 || ip[0] & 0xF < 5 {
            return Err(false);
        }
        let hlen = usize::from(ip[0] & 0xF) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if tot < hlen {
            return Err(false);
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
        Ok(L3 {
            l4_off: off + hlen,
            l4_len: tot - hlen,
            proto: ip[9],
            frag: if frag & 0x1FFF != 0 {
                Frag::Later
            } else if frag & 0x2000 != 0 {
                Frag::First
            } else {
                Frag::None
            },
            family: FAMILY_IPV4,
            src,
            dst,
        })
    } else {
        let ip = hdr(40)?;
        if ip[0] >> 4 != 6 {
            return Err(false);
        }
        let mut len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let mut next = ip[6];
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        let mut at = off + 40;
        let mut frag = Frag::None;
        // Hop-by-hop, routing, destination options, fragment: at most four, as in the kernel.
        for _ in 0..4 {
            if !matches!(next, 0 | 43 | 60 | 44) {
                break;
            }
            let ext = b.get(at..at + 8).ok_or(true)?;
            let hlen = if next == 44 {
                let fo = u16::from_be_bytes([ext[2], ext[3]]);
                if fo & 0xFFF8 != 0 {
                    frag = Frag::Later;
                } else if fo & 1 != 0 {
                    frag = Frag::First;
                }
                8
            } else {
                (usize::from(ext[1]) + 1) * 8
            };
            if len < hlen {
                return Err(false);
            }
            len -= hlen;
            at += hlen;
            next = ext[0];
        }
        Ok(L3 {
            l4_off: at,
            l4_len: len,
            proto: next,
            frag,
            family: FAMILY_IPV6,
            src,
            dst,
        })
    }
}

fn parse(frame: &[u8], ts_ns: u64) -> Parsed<'_> {
    // Outer headers: anything unexpected is "not ours" (the program already chose, but the
    // reader cannot trust that the map and program agree).
    let Some((proto, off)) = parse_eth(frame, 0) else {
        return Parsed::NotVxlan;
    };
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return Parsed::NotVxlan;
    }
    let Ok(outer) = parse_ip(frame, proto, off) else {
        return Parsed::NotVxlan;
    };
    if outer.proto != IPPROTO_UDP || outer.frag == Frag::Later {
        return Parsed::NotVxlan;
    }
    let (Some(dport), Some(udp_len)) =
        (be16(frame, outer.l4_off + 2), be16(frame, outer.l4_off + 4))
    else {
        return Parsed::NotVxlan;
    };
    if dport != VXLAN_PORT {
        return Parsed::NotVxlan;
    }
    if outer.frag == Frag::First {
        return Parsed::OuterFragment;
    }
    let udp_len = usize::from(udp_len);
    let ip_end = outer.l4_off + outer.l4_len;
    let udp_end = outer.l4_off + udp_len;
    if udp_len < 8 + 8 || udp_end > ip_end || ip_end > frame.len() {
        return Parsed::Malformed;
    }
    // From here on only the VXLAN payload counts (Ethernet padding may follow).
    let b = &frame[..udp_end];
    let vx = outer.l4_off + 8;
    let Some(vxlan) = b.get(vx..vx + 8) else {
        return Parsed::Malformed;
    };
    if vxlan[0] & 0x08 == 0 {
        return Parsed::Malformed;
    }
    let vni = u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]);

    let Some((proto, off)) = parse_eth(b, vx + 8) else {
        return Parsed::Malformed;
    };
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return Parsed::NotTcp;
    }
    let Ok(inner) = parse_ip(b, proto, off) else {
        return Parsed::Malformed;
    };
    if inner.frag != Frag::None {
        return Parsed::InnerFragment;
    }
    if inner.proto != IPPROTO_TCP {
        return Parsed::NotTcp;
    }
    let t = inner.l4_off;
    let Some(tcp) = b.get(t..t + 20) else {
        return Parsed::Malformed;
    };
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || inner.l4_len < doff {
        return Parsed::Malformed;
    }
    let flags = tcp[13];
    let payload_off = t + doff;
    let wire = inner.l4_len - doff;
    if wire == 0 && flags & (0x01 | 0x02 | 0x04) == 0 {
        return Parsed::PureAck;
    }
    // A truncated frame holds less than the inner IP header says.
    let avail = b.len().saturating_sub(payload_off);
    let cap = wire.min(avail).min(PAYLOAD_MAX as usize);
    let (Some(seq), Some(ack), Some(payload)) = (
        be32(tcp, 4),
        be32(tcp, 8),
        b.get(payload_off..payload_off + cap),
    ) else {
        return Parsed::Malformed;
    };
    let h = RecordHeader {
        ts_ns,
        vni,
        seq,
        ack,
        captured_len: cap as u32,
        wire_len: u32::try_from(wire).unwrap_or(u32::MAX),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        family: inner.family,
        tcp_flags: flags,
        reserved0: 0,
        src_addr: inner.src,
        dst_addr: inner.dst,
        reserved1: 0,
    };
    Parsed::Record(h, payload)
}
