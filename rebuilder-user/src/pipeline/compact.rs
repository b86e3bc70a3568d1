//! Copying a sparse capture batch out of the reader's buffer before its segments are queued,
//! so a few queued bytes never pin a whole buffer the budget counts as the capture's.
//!
//! Used by the UDP and XDP capture loops; it needs only the dispatcher (to know which worker
//! each segment goes to).

use crate::dispatch::Dispatcher;

/// Copies a capture batch's payloads out of the reader's buffer, into one allocation per worker,
/// when the batch is sparse (its payloads fill less than half of the buffer: a queued segment
/// would keep a whole buffer alive for a few bytes) or when `force`d (no other buffer of the
/// reader's pool is free, and the reader needs this one back). Dense batches stay zero-copy:
/// their buffer is one of the reader's pool, counted in the budget as the capture's. One
/// allocation per worker, because each worker releases its segments' in-flight charge when it
/// is done with them: an allocation shared between workers would stay alive, no longer charged,
/// while another worker still held a segment of it.
pub(super) fn compact(
    segments: &mut [crate::segment::Segment],
    buffer_bytes: usize,
    force: bool,
    disp: &Dispatcher,
) {
    let total: usize = segments.iter().map(|s| s.payload.len()).sum();
    if total == 0 || (!force && total.saturating_mul(2) >= buffer_bytes) {
        return;
    }
    let owners: Vec<usize> = segments.iter().map(|s| disp.worker_of(s)).collect();
    let mut sizes = vec![0usize; disp.workers()];
    for (s, &w) in segments.iter().zip(&owners) {
        if let Some(n) = sizes.get_mut(w) {
            *n += s.payload.len();
        }
    }
    let mut arenas: Vec<bytes::BytesMut> = sizes
        .iter()
        .map(|&n| bytes::BytesMut::with_capacity(n))
        .collect();
    for (s, &w) in segments.iter().zip(&owners) {
        if let Some(a) = arenas.get_mut(w) {
            a.extend_from_slice(&s.payload);
        }
    }
    let mut frozen: Vec<bytes::Bytes> = arenas.into_iter().map(bytes::BytesMut::freeze).collect();
    for (s, &w) in segments.iter_mut().zip(&owners) {
        if let Some(b) = frozen.get_mut(w) {
            s.payload = b.split_to(s.payload.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::capture::udp;
    use crate::dispatch;
    use crate::segment::{FlowKey, Segment, TcpFlags};

    fn seg(payload: Bytes) -> Segment {
        Segment {
            ts: 0,
            vni: 1,
            flow: FlowKey {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                src_port: 1,
                dst_port: 80,
            },
            seq: 0,
            ack: 0,
            flags: TcpFlags(0),
            wire_len: payload.len() as u32,
            payload,
        }
    }

    #[test]
    fn sparse_or_forced_batches_are_copied_out_per_worker_and_dense_ones_are_not() {
        let (senders, _queues) = dispatch::queues(2, 1 << 20);
        let disp = Dispatcher::new(senders, true, crate::config::FlowKeyMode::Inner, 7);
        // Ports whose flows the dispatcher sends to worker 0 and to worker 1.
        let port_of = |w: usize| {
            (1..1000u16)
                .find(|&p| {
                    let mut s = seg(Bytes::new());
                    s.flow.src_port = p;
                    disp.worker_of(&s) == w
                })
                .unwrap()
        };
        let (p0, p1) = (port_of(0), port_of(1));
        let on = |port: u16, payload: Bytes| {
            let mut s = seg(payload);
            s.flow.src_port = port;
            s
        };
        // A 64-slot batch buffer holding four small datagrams, of both workers.
        let buffer = Bytes::from(vec![7u8; 64 * udp::SLOT_BYTES]);
        let mut segs = vec![
            on(p0, buffer.slice(100..150)),
            on(p1, buffer.slice(200..260)),
            on(p0, Bytes::new()),
            on(p0, buffer.slice(udp::SLOT_BYTES..udp::SLOT_BYTES + 1400)),
        ];
        let before: Vec<Vec<u8>> = segs.iter().map(|s| s.payload.to_vec()).collect();
        compact(&mut segs, buffer.len(), false, &disp);
        let after: Vec<Vec<u8>> = segs.iter().map(|s| s.payload.to_vec()).collect();
        assert_eq!(before, after, "the same bytes");
        assert!(
            buffer.is_unique(),
            "no segment refers to the batch buffer any more: the receiver may reuse it"
        );
        // Worker 0's payloads sit one after the other in one allocation, worker 1's apart.
        assert_eq!(
            segs[0].payload.as_ptr().wrapping_add(50),
            segs[3].payload.as_ptr()
        );
        let w0 = segs[0].payload.as_ptr() as usize;
        let w1 = segs[1].payload.as_ptr() as usize;
        assert!(
            w1 < w0 || w1 >= w0 + 1450,
            "worker 1's bytes are not in worker 0's allocation"
        );
        drop(segs);

        // More than half full: left as slices of the buffer, unless the reader needs it back.
        let dense = Bytes::from(vec![1u8; 4 * 1000]);
        let make = || -> Vec<Segment> {
            (0..4)
                .map(|i| on(p0 + i as u16 % 2, dense.slice(i * 1000..i * 1000 + 900)))
                .collect()
        };
        let mut segs = make();
        compact(&mut segs, dense.len(), false, &disp);
        assert_eq!(segs[1].payload.as_ptr(), dense.slice(1000..1001).as_ptr());
        drop(segs);
        let mut segs = make();
        compact(&mut segs, dense.len(), true, &disp);
        assert!(dense.is_unique());
        assert!(segs
            .iter()
            .all(|s| s.payload.len() == 900 && s.payload[0] == 1));
    }
}
