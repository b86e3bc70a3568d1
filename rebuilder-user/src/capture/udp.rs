//! Live input: VXLAN datagrams from UDP sockets (the unprivileged path, DESIGN §3).
//!
//! Several sockets share one address with SO_REUSEPORT, so the kernel spreads datagrams over
//! them by 4-tuple (one mirrored direction of a connection always reaches the same socket) and
//! each can be read by its own thread. Every receive is one `recvmmsg` call for a whole batch.
//!
//! The incumbent lost jumbo tails in 1526-byte buffers and could not see its drops (DESIGN §4):
//! here each slot holds [`SLOT_BYTES`] (more than a VXLAN payload under a 9001-byte MTU), a
//! datagram that still did not fit (MSG_TRUNC) is counted and never decoded as if whole, the
//! receive buffer is raised (SO_RCVBUFFORCE, then SO_RCVBUF, warning when the kernel capped it),
//! and the kernel's own drop counter is read from the socket (SO_MEMINFO) whenever the pipeline
//! publishes, rather than attached to every datagram (SO_RXQ_OVFL): a control message per
//! datagram cost receive time on every packet, and a count that travels with datagrams never
//! arrives for drops at the end of a burst.
//!
//! Zero copy: a batch is received into one buffer, and each datagram handed out is a `Bytes`
//! slice of it. Each socket keeps a pool of [`POOL_BATCHES`] such buffers, counted in the memory
//! budget ([`pool_bytes`]): a buffer nobody holds a slice of any more is received into again, so
//! a steady state allocates nothing. The caller keeps the pool from running dry: when
//! [`UdpReceiver::has_spare`] says no other buffer is free, it copies the batch's payloads out
//! (the pipeline does, per worker), which frees the buffer at once.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};

pub use super::CaptureError;
use crate::segment::Timestamp;

/// Room for one datagram: a VXLAN payload under a 9001-byte MTU is at most 8973 bytes.
pub const SLOT_BYTES: usize = 9216;
/// The most datagrams one `recv_batch` asks for (its headers live on the stack).
pub const MAX_BATCH: usize = 256;
/// Receive buffers per socket: one being received into while the previous batch's segments are
/// still on their way to the workers.
pub use super::pool::POOL_BATCHES;

/// What one socket's pool of receive buffers holds with `batch` datagrams per receive.
pub const fn pool_bytes(batch: usize) -> usize {
    let batch = if batch == 0 {
        1
    } else if batch > MAX_BATCH {
        MAX_BATCH
    } else {
        batch
    };
    POOL_BATCHES * crate::memory::alloc_size(batch * SLOT_BYTES)
}

/// Control-message room per datagram, in 8-byte words (so the buffer is aligned for
/// `cmsghdr`): SCM_TIMESTAMPNS (a timespec) needs 32 bytes.
const CMSG_WORDS: usize = 4;

/// Where and how to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    pub addr: SocketAddr,
    /// Sockets sharing `addr` through SO_REUSEPORT, one reader thread each.
    pub sockets: usize,
    /// Receive buffer to ask for, per socket.
    pub recv_buffer_bytes: usize,
    /// Datagrams per `recvmmsg` call (at most [`MAX_BATCH`]).
    pub batch: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, super::decode::VXLAN_PORT)),
            sockets: 1,
            recv_buffer_bytes: 64 << 20,
            batch: 64,
        }
    }
}

/// Binds `cfg.sockets` sockets with SO_REUSEPORT on `cfg.addr`. With port 0 the first socket's
/// port is used for the others, so they form one group.
pub fn bind(cfg: &UdpConfig) -> Result<Vec<UdpReceiver>, CaptureError> {
    let mut addr = cfg.addr;
    let mut out = Vec::with_capacity(cfg.sockets.max(1));
    for _ in 0..cfg.sockets.max(1) {
        let r = UdpReceiver::open(addr, cfg)?;
        addr = r.local_addr;
        out.push(r);
    }
    Ok(out)
}

/// One socket of the group, read by one thread.
pub struct UdpReceiver {
    socket: Socket,
    local_addr: SocketAddr,
    batch: usize,
    effective_recv_buffer: usize,
    /// The buffers of the last batches received, most recent last, each reclaimed once no
    /// datagram of it is alive any more.
    pool: super::pool::BufferPool,
    cmsg: Vec<u64>,
    timeout: Option<Duration>,
    /// The last SO_MEMINFO drop count read: the kernel's cumulative count, a wrapping u32.
    drops_seen: u32,
    /// SO_MEMINFO failed once and said so: the warning is not repeated at every publication.
    drops_unreadable: bool,
    kernel_drops: u64,
    truncated: u64,
    /// Datagrams the last `recv_batch` took off the socket, truncated ones included.
    last_read: usize,
}

/// `getsockopt(SOL_SOCKET, SO_MEMINFO)`: the socket's memory counters, `SK_MEMINFO_DROPS`
/// among them. Not in the libc crate; 55 on every architecture this daemon is built for
/// (asm-generic; only alpha, mips, parisc and sparc differ).
const SO_MEMINFO: libc::c_int = 55;
/// Counters SO_MEMINFO returns (SK_MEMINFO_VARS in Linux 6.x; an older kernel fills fewer, a
/// newer one truncates to what is asked).
const SK_MEMINFO_WORDS: usize = 9;

fn sock_err(addr: SocketAddr, op: &'static str) -> impl FnOnce(io::Error) -> CaptureError {
    move |source| CaptureError::Socket { addr, op, source }
}

/// `setsockopt` with an int value, for the options socket2 does not wrap.
fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is owned by `socket` and open; the value pointer and the length passed
    // describe a c_int that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl UdpReceiver {
    fn open(addr: SocketAddr, cfg: &UdpConfig) -> Result<Self, CaptureError> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(sock_err(addr, "create a socket"))?;
        socket
            .set_reuse_port(true)
            .map_err(sock_err(addr, "set SO_REUSEPORT"))?;

        let wanted = cfg.recv_buffer_bytes;
        let as_int = libc::c_int::try_from(wanted).unwrap_or(libc::c_int::MAX);
        // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it SO_RCVBUF
        // is capped at rmem_max.
        if set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, as_int).is_err() {
            if let Err(e) = socket.set_recv_buffer_size(wanted) {
                tracing::warn!(%addr, error = %e, "cannot set the UDP receive buffer size");
            }
        }
        // The kernel reports twice what it grants (the other half is its bookkeeping).
        let effective = socket
            .recv_buffer_size()
            .map_err(sock_err(addr, "read SO_RCVBUF"))?;
        if effective / 2 < wanted {
            tracing::warn!(
                %addr,
                requested = wanted,
                obtained = effective / 2,
                "the kernel capped the UDP receive buffer: raise net.core.rmem_max (sysctl -w net.core.rmem_max={wanted}) or run with CAP_NET_ADMIN, or bursts will be dropped"
            );
        }
        if let Err(e) = set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1) {
            tracing::debug!(%addr, error = %e, "SO_TIMESTAMPNS unavailable: batches are stamped on return");
        }
        socket.bind(&addr.into()).map_err(sock_err(addr, "bind"))?;
        let local_addr = socket
            .local_addr()
            .map_err(sock_err(addr, "read the bound address"))?
            .as_socket()
            .ok_or_else(|| {
                sock_err(addr, "read the bound address")(io::Error::other("not an inet address"))
            })?;

        let batch = cfg.batch.clamp(1, MAX_BATCH);
        Ok(Self {
            socket,
            local_addr,
            batch,
            effective_recv_buffer: effective,
            pool: super::pool::BufferPool::new(),
            cmsg: vec![0; batch * CMSG_WORDS],
            timeout: None,
            drops_seen: 0,
            drops_unreadable: false,
            kernel_drops: 0,
            truncated: 0,
            last_read: 0,
        })
    }

    /// Receives one batch with recvmmsg, waiting at most `timeout` for the first datagram (zero:
    /// not at all), then taking what is already queued. Calls `f` for each datagram with its
    /// payload (a zero-copy slice of the batch buffer) and receive timestamp. Returns the number
    /// of datagrams passed to `f`; truncated ones are counted (`truncated_datagrams`) instead.
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(Bytes, Timestamp),
    ) -> Result<usize, CaptureError> {
        // Zero until a receive succeeds: an error path reads nothing.
        self.last_read = 0;
        let nonblocking = timeout.is_zero();
        if !nonblocking && self.timeout != Some(timeout) {
            // A zero SO_RCVTIMEO would mean "forever": anything shorter than the kernel's
            // microsecond resolution becomes one microsecond.
            let t = timeout.max(Duration::from_micros(1));
            self.socket
                .set_read_timeout(Some(t))
                .map_err(sock_err(self.local_addr, "set SO_RCVTIMEO"))?;
            self.timeout = Some(timeout);
        }

        let n = self.batch;
        let mut buf = self.take_buffer(n * SLOT_BYTES);
        // Only the `n` (`batch`, 64 by default) headers this call asks for are written: zeroing
        // all MAX_BATCH headers and iovecs (16 + 4 KiB) before every call was 3% of the reader
        // thread in perf.
        let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
        let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
        let cmsg_bytes = CMSG_WORDS * size_of::<u64>();
        // How many headers are written: the kernel is told this many, never more.
        let mut ready = 0usize;
        for (((slot, ctrl), v), h) in buf
            .chunks_mut(SLOT_BYTES)
            .zip(self.cmsg.chunks_mut(CMSG_WORDS))
            .zip(iov.iter_mut())
            .zip(hdrs.iter_mut())
        {
            let v = v.write(libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            });
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value (null
            // pointers, zero lengths); its private padding fields on some libcs rule out a
            // literal.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = cmsg_bytes as _;
            h.write(m);
            ready += 1;
        }
        let flags = libc::MSG_WAITFORONE | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `hdrs[..ready]` were written above and point at as many iovecs of `iov` and
        // control buffers, each describing memory of `buf` / `self.cmsg`; `iov`, `buf` and
        // `self.cmsg` are neither touched nor moved until the call returns. The kernel writes
        // at most the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
                ready as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            self.keep(buf.freeze());
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(CaptureError::Socket {
                    addr: self.local_addr,
                    op: "receive",
                    source: e,
                }),
            };
        }
        let got = usize::try_from(got).unwrap_or(0).min(ready);
        let batch_now = now_nanos();
        let batch = buf.freeze();
        let mut delivered = 0;
        // SAFETY: the first `ready` headers were written before the call and `got <= ready`;
        // the kernel only filled in their lengths, flags and control lengths.
        let hdrs =
            unsafe { std::slice::from_raw_parts(hdrs.as_ptr().cast::<libc::mmsghdr>(), got) };
        for (i, h) in hdrs.iter().enumerate() {
            let ts = read_timestamp(&h.msg_hdr).unwrap_or(batch_now);
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
                continue;
            }
            let start = i * SLOT_BYTES;
            let len = (h.msg_len as usize).min(SLOT_BYTES);
            f(batch.slice(start..start + len), ts);
            delivered += 1;
        }
        self.keep(batch);
        self.last_read = got;
        Ok(delivered)
    }

    /// A buffer of exactly `len` initialised bytes: one of the pool's that nobody holds a slice
    /// of, else a new one.
    fn take_buffer(&mut self, len: usize) -> BytesMut {
        if let Some(mut m) = self.pool.take_free() {
            if m.len() != len {
                m.resize(len, 0);
            }
            return m;
        }
        BytesMut::zeroed(len)
    }

    fn keep(&mut self, buf: Bytes) {
        self.pool.keep(buf);
    }

    /// Whether the next receive has a free buffer besides the one the last batch is in: when
    /// not, the caller copies the last batch's payloads out so that its buffer frees.
    pub fn has_spare(&self) -> bool {
        self.pool.has_spare()
    }

    /// Datagrams the kernel dropped on this socket (its `sk_drops`: mostly a full receive
    /// buffer, also bad checksums), cumulative, as of this call: one `getsockopt(SO_MEMINFO)`.
    /// When the kernel does not answer, the last count read (and one warning).
    pub fn kernel_drops(&mut self) -> u64 {
        let mut info = [0u32; SK_MEMINFO_WORDS];
        let mut len = size_of_val(&info) as libc::socklen_t;
        // SAFETY: the fd is owned by `self.socket` and open; `info` and `len` describe a buffer
        // that outlives the call, and the kernel writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let drops_at = libc::SK_MEMINFO_DROPS as usize;
        let failure = if r != 0 {
            Some(io::Error::last_os_error())
        } else if (len as usize) < (drops_at + 1) * size_of::<u32>() {
            Some(io::Error::other(format!(
                "the kernel returned {len} bytes, without the drop count"
            )))
        } else {
            None
        };
        if let Some(e) = failure {
            if !self.drops_unreadable {
                self.drops_unreadable = true;
                tracing::warn!(addr = %self.local_addr, error = %e, "SO_MEMINFO unavailable: kernel drops on this socket cannot be read");
            }
            return self.kernel_drops;
        }
        let now = info[drops_at];
        self.kernel_drops += u64::from(now.wrapping_sub(self.drops_seen));
        self.drops_seen = now;
        self.kernel_drops
    }

    /// Datagrams larger than [`SLOT_BYTES`], counted and not delivered.
    /// Datagrams the last `recv_batch` took off the socket: those it delivered and those it
    /// counted as truncated. Fewer than [`Self::batch`] means the socket had no more queued.
    pub fn last_read(&self) -> usize {
        self.last_read
    }

    pub fn truncated_datagrams(&self) -> u64 {
        self.truncated
    }

    /// Datagrams one receive asks for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The receive buffer as the kernel reports it (SO_RCVBUF: twice the usable payload room).
    pub fn effective_recv_buffer(&self) -> usize {
        self.effective_recv_buffer
    }
}

fn now_nanos() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The SCM_TIMESTAMPNS time, when the kernel attached it.
fn read_timestamp(msg: &libc::msghdr) -> Option<Timestamp> {
    let mut ts = None;
    // SAFETY: `msg` was filled by recvmmsg; its control pointer and the length the kernel wrote
    // describe the receiver's control buffer, which is alive and not otherwise accessed here,
    // and CMSG_FIRSTHDR/CMSG_NXTHDR stay within msg_controllen. Payloads are read unaligned
    // because nothing promises more.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if ((*c).cmsg_level, (*c).cmsg_type) == (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) {
                let t = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                if let (Ok(s), Ok(ns)) = (u64::try_from(t.tv_sec), u64::try_from(t.tv_nsec)) {
                    ts = Some(s.saturating_mul(1_000_000_000).saturating_add(ns));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    ts
}

#[cfg(test)]
mod tests;
