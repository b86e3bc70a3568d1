//! Copying a capture batch out of the reader's buffer before its segments are queued, when the
//! reader needs that buffer back.
//!
//! Used by the UDP and XDP capture loops; it needs only the dispatcher (to know which worker
//! each segment goes to).

use crate::dispatch::Dispatcher;

/// Copies a capture batch's payloads out of the reader's buffer, into one allocation per
/// worker, when `force`d: no other buffer of the reader's small pool is free, so the reader
/// needs this one back. Otherwise the batch stays zero-copy, its segments slices of a pool
/// buffer the budget already counts as the capture's. That bounds the capture's buffers at
/// the pool however long workers hold segments: a stalled worker pins at most the pool, and
/// what is copied out is charged in flight like any queued segment.
///
/// (Batches less than half full were once copied out too, from before the pool existed, when
/// every batch had a buffer of its own; with the pool that copy only doubled the capture's
/// memory traffic: at a moderate rate every XDP drain and UDP read is "sparse", and the copy
/// was a sixth of the XDP capture thread's time.)
///
/// One allocation per worker, because each worker releases its segments' in-flight charge when
/// it is done with them: an allocation shared between workers would stay alive, no longer
/// charged, while another worker still held a segment of it.
pub(super) fn compact(segments: &mut [crate::segment::Segment], force: bool, disp: &Dispatcher) {
    // Checked first: the common case, on every capture batch, does no work at all.
    if !force || segments.iter().all(|s| s.payload.is_empty()) {
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
    fn forced_batches_are_copied_out_per_worker_and_others_are_not() {
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
        let make = || {
            vec![
                on(p0, buffer.slice(100..150)),
                on(p1, buffer.slice(200..260)),
                on(p0, Bytes::new()),
                on(p0, buffer.slice(udp::SLOT_BYTES..udp::SLOT_BYTES + 1400)),
            ]
        };
        // Not forced: however sparse, the segments stay slices of the reader's buffer.
        let mut segs = make();
        compact(&mut segs, false, &disp);
        assert_eq!(segs[1].payload.as_ptr(), buffer.slice(200..201).as_ptr());
        assert_eq!(
            segs[3].payload.as_ptr(),
            buffer.slice(udp::SLOT_BYTES..udp::SLOT_BYTES + 1).as_ptr()
        );
        drop(segs);

        // Forced: copied out, so the reader may receive into its buffer again.
        let mut segs = make();
        let before: Vec<Vec<u8>> = segs.iter().map(|s| s.payload.to_vec()).collect();
        compact(&mut segs, true, &disp);
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
    }
}
