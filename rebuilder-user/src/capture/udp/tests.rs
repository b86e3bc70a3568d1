//! Unit tests of the UDP input: real loopback sockets, so they check what the kernel does with
//! SO_REUSEPORT, MSG_TRUNC and the receive buffer, not a mock of it.

use std::net::UdpSocket;
use std::time::Instant;

use super::*;

fn loopback(sockets: usize, recv_buffer_bytes: usize, batch: usize) -> Vec<UdpReceiver> {
    bind(&UdpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        sockets,
        recv_buffer_bytes,
        batch,
    })
    .unwrap()
}

fn payload(i: usize) -> Vec<u8> {
    // Sizes up to a jumbo VXLAN payload; the index leads so every datagram is distinct.
    let len = 8 + (i * 997) % 8960;
    let mut v = (i as u64).to_be_bytes().to_vec();
    v.extend((0..len - 8).map(|j| (i + j) as u8));
    v
}

/// Reads from every receiver until `n` datagrams arrived or a generous deadline passed.
fn drain(rx: &mut [UdpReceiver], n: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
    let mut got = Vec::new();
    let mut per_socket = vec![0; rx.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        for (k, r) in rx.iter_mut().enumerate() {
            let c = r
                .recv_batch(Duration::from_millis(20), |b, _| got.push(b.to_vec()))
                .unwrap();
            per_socket[k] += c;
        }
    }
    (got, per_socket)
}

#[test]
fn reuseport_group_receives_every_datagram_exactly() {
    let mut rx = loopback(2, 8 << 20, 16);
    let addr = rx[0].local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(
        rx[1].local_addr(),
        addr,
        "the second socket joins the first one's port"
    );

    // The kernel spreads by 4-tuple, so many source ports reach both sockets.
    let senders: Vec<UdpSocket> = (0..32)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let n = 320;
    let mut want = Vec::new();
    for i in 0..n {
        let p = payload(i);
        senders[i % senders.len()].send_to(&p, addr).unwrap();
        want.push(p);
    }
    let (mut got, per_socket) = drain(&mut rx, n);
    assert_eq!(got.len(), n);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(
        per_socket.iter().all(|&c| c > 0),
        "both sockets of the group received: {per_socket:?}"
    );
    assert_eq!(
        rx.iter_mut()
            .map(|r| r.kernel_drops() + r.truncated_datagrams())
            .sum::<u64>(),
        0
    );
}

#[test]
fn batch_payloads_are_slices_of_one_buffer_with_receive_times() {
    let mut rx = loopback(1, 1 << 20, 8);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = now_nanos();
    for i in 0..5u8 {
        tx.send_to(&[i; 100], rx[0].local_addr()).unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 5 && Instant::now() < deadline {
        rx[0]
            .recv_batch(Duration::from_millis(50), |b, ts| got.push((b, ts)))
            .unwrap();
    }
    let after = now_nanos();
    assert_eq!(got.len(), 5);
    for (i, (b, ts)) in got.iter().enumerate() {
        assert_eq!(&b[..], &[i as u8; 100]);
        assert!((before..=after).contains(ts), "{before} <= {ts} <= {after}");
    }
    // Slots of one recvmmsg call sit SLOT_BYTES apart in one buffer.
    let (a, b) = (got[0].0.as_ptr() as usize, got[1].0.as_ptr() as usize);
    assert_eq!((b - a) % SLOT_BYTES, 0);
}

#[test]
fn receive_buffers_come_from_a_pool_and_a_held_one_is_not_received_into() {
    let mut rx = loopback(1, 1 << 20, 4);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let recv_one = |rx: &mut UdpReceiver, tag: u8| {
        tx.send_to(&[tag; 64], rx.local_addr()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.is_empty() && Instant::now() < deadline {
            rx.recv_batch(Duration::from_millis(50), |b, _| got.push(b))
                .unwrap();
        }
        got.pop().unwrap()
    };
    // Held slices keep their buffers: the next receives go elsewhere, and once the pool's
    // other buffer is held too, there is no spare.
    let a = recv_one(&mut rx[0], 1);
    assert!(rx[0].has_spare(), "the pool is not full yet");
    let b = recv_one(&mut rx[0], 2);
    assert!(!rx[0].has_spare(), "the other buffer is held");
    assert_eq!((&a[..], &b[..]), (&[1u8; 64][..], &[2u8; 64][..]));
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    assert_ne!(pa, pb);
    // Dropping the older one frees its buffer, which the next receive reuses.
    drop(a);
    assert!(rx[0].has_spare());
    let c = recv_one(&mut rx[0], 3);
    assert_eq!(c.as_ptr(), pa);
    assert_eq!(&b[..], &[2u8; 64][..], "a held batch is never written over");
    drop((b, c));
    let d = recv_one(&mut rx[0], 4);
    assert!(
        [pa, pb].contains(&d.as_ptr()),
        "no new buffer while the pool has free ones"
    );
    assert_eq!(pool_bytes(4), 2 * crate::memory::alloc_size(4 * SLOT_BYTES));
}

#[test]
fn oversized_datagrams_are_counted_not_delivered() {
    let mut rx = loopback(1, 1 << 20, 4);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&vec![7u8; SLOT_BYTES + 1], rx[0].local_addr())
        .unwrap();
    tx.send_to(&vec![8u8; SLOT_BYTES], rx[0].local_addr())
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.is_empty() && Instant::now() < deadline {
        rx[0]
            .recv_batch(Duration::from_millis(50), |b, _| got.push(b))
            .unwrap();
    }
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..], &vec![8u8; SLOT_BYTES][..]);
    assert_eq!(rx[0].truncated_datagrams(), 1);
    // Loopback queues both within send_to, so one receive took both off the socket.
    assert_eq!(rx[0].last_read(), 2, "the truncated one was read too");
}

#[test]
fn timeouts_return_empty_batches() {
    let mut rx = loopback(1, 1 << 20, 4);
    let mut calls = 0;
    assert_eq!(
        rx[0].recv_batch(Duration::ZERO, |_, _| calls += 1).unwrap(),
        0
    );
    assert_eq!(
        rx[0]
            .recv_batch(Duration::from_millis(30), |_, _| calls += 1)
            .unwrap(),
        0
    );
    assert_eq!(
        rx[0]
            .recv_batch(Duration::from_nanos(1), |_, _| calls += 1)
            .unwrap(),
        0
    );
    assert_eq!(calls, 0);
    assert_eq!(rx[0].last_read(), 0);
}

#[test]
fn receive_buffer_is_raised() {
    let rx = loopback(1, 1 << 20, 4);
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SO_RCVBUFFORCE grants the request; plain SO_RCVBUF at least up to rmem_max.
    assert!(
        rx[0].effective_recv_buffer() / 2 >= (1 << 20).min(rmem_max),
        "{}",
        rx[0].effective_recv_buffer()
    );
}

#[test]
fn kernel_drops_are_reported() {
    // A receive buffer this small overflows at once.
    let mut rx = loopback(1, 4096, 64);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 2000;
    for i in 0..sent {
        tx.send_to(&[i as u8; 200], rx[0].local_addr()).unwrap();
    }
    let mut delivered = 0;
    while rx[0]
        .recv_batch(Duration::from_millis(50), |_, _| delivered += 1)
        .unwrap()
        > 0
    {}
    // Read from the socket, not carried by a later datagram: drops at the very end of a burst
    // count too. On loopback nothing else loses datagrams, so the two add up exactly.
    let drops = rx[0].kernel_drops();
    assert!(delivered < sent, "the buffer must have overflowed");
    assert_eq!(delivered as u64 + drops, sent as u64);
    // Cumulative: a second read adds nothing new.
    assert_eq!(rx[0].kernel_drops(), drops);
}

#[test]
fn receivers_move_to_reader_threads() {
    fn send<T: Send>() {}
    send::<UdpReceiver>();
}

#[test]
fn bind_errors_name_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A socket without SO_REUSEPORT holds the port, so the group cannot join it.
    let addr = taken.local_addr().unwrap();
    let e = bind(&UdpConfig {
        addr,
        ..UdpConfig::default()
    })
    .err()
    .unwrap();
    assert!(matches!(e, CaptureError::Socket { op: "bind", .. }), "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
