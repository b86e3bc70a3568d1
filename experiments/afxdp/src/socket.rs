//! The UMEM, the AF_XDP sockets and their rings: the mapping the frames land in, one socket
//! per receive queue bound in copy or zero-copy mode, and the fill ring kept stocked.

use std::error::Error;
use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;

use xdpilone::{DeviceQueue, Errno, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

/// UMEM chunk size: the smallest the kernel takes. A frame must fit in it less the kernel's
/// 256-byte XDP headroom (1792 bytes; the burst's frames are at most 1564). Jumbo frames
/// (AWS mirroring with a 9001 MTU) would need `XDP_USE_SG` or 16 KiB unaligned chunks.
pub const FRAME_SIZE: u32 = 2048;
/// Chunks per queue, all handed to the fill ring at start; also the size of every ring. 64 MiB
/// of UMEM, as much memory as `rebuilder run`'s default ring buffer: with 4096 chunks, a
/// receiver kept off the CPU for ~20 ms by the other work of this 2-core machine let the fill
/// ring run dry and lost frames (`rx_fill_ring_empty_descs`), where the ring buffer never did.
pub const FRAMES_PER_QUEUE: u32 = 32768;

/// An anonymous, page-aligned, populated mapping: the UMEM. Unmapped on drop, so it must outlive
/// the `Umem` and the sockets (declared before them).
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    pub fn new(len: usize) -> io::Result<Self> {
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

    pub fn as_nonnull_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// `len` bytes at `addr`, if they lie inside the area.
    ///
    /// The kernel writes a chunk only while it sits in the fill ring; one taken from the
    /// receive ring is the process's until it goes back, so reading it here does not race.
    pub fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
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
pub struct Queue {
    pub id: u32,
    pub device: DeviceQueue,
    pub user: User,
    pub rx: RingRx,
    /// Chunks taken from the receive ring and not yet back in the fill ring.
    pub recycle: Vec<u64>,
}

/// The open sockets and the UMEM they share. The queues are dropped before the UMEM (field
/// order), as they were when both were locals of `run`.
pub struct Sockets {
    pub queues: Vec<Queue>,
    _umem: Umem,
}

/// Registers `area` as the UMEM and opens, binds and fills one socket per receive queue of
/// `iface` (`queues` of them, each with its own `FRAMES_PER_QUEUE` chunks of `area`).
pub fn open(
    area: &Area,
    iface: &str,
    queues: u32,
    zerocopy: bool,
) -> Result<Sockets, Box<dyn Error>> {
    let config = UmemConfig {
        fill_size: FRAMES_PER_QUEUE,
        complete_size: FRAMES_PER_QUEUE,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: `area` is page aligned (mmap), valid for its length, and outlives `umem` (the
    // caller declares it before the `Sockets` this returns, so it is unmapped after them).
    let umem = unsafe { Umem::new(config, area.as_nonnull_slice()) }
        .map_err(|e| os_error("registering the UMEM", &e))?;
    let name = CString::new(iface).map_err(|_| "interface name contains a NUL byte")?;

    let per_queue = FRAMES_PER_QUEUE as usize * FRAME_SIZE as usize;
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
    Ok(Sockets {
        queues: open,
        _umem: umem,
    })
}

/// Receive queues of `iface` per sysfs (`ip netns exec` mounts the namespace's own), at least 1.
pub fn rx_queue_count(iface: &str) -> u32 {
    let dir = format!("/sys/class/net/{iface}/queues");
    let n = std::fs::read_dir(&dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count()
    });
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// Gives the queue's recycled chunks back to its fill ring, as many as fit.
pub fn refill(q: &mut Queue) {
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

pub fn os_error(what: &str, e: &Errno) -> io::Error {
    let raw = io::Error::from_raw_os_error(e.get_raw().abs());
    io::Error::new(raw.kind(), format!("{what}: {raw}"))
}
