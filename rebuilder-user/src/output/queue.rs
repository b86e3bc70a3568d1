//! The bounded queue in front of each output, bounded both in requests and in bytes.
//!
//! Producers are the pipeline's worker threads (plain std threads); consumers are the output's
//! tasks or thread. In `Live` mode a full queue drops the newest request so capture never
//! waits (DESIGN §4: a blocked output must not back pressure into capture); in `Offline` mode
//! the producer waits for room.

use std::sync::Arc;

use async_channel::{Receiver, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::OutputMetrics;
use super::{DropReason, Mode};
use crate::request::RebuiltRequest;
use crate::room::ByteRoom;

pub(crate) type Item = Arc<RebuiltRequest>;

pub(crate) struct Queue {
    pub(crate) name: &'static str,
    mode: Mode,
    tx: Sender<Item>,
    rx: Receiver<Item>,
    /// The byte budget: Offline producers wait on it, Live ones only try. Closed with the
    /// queue.
    room: ByteRoom,
    depth_requests: Gauge,
    depth_bytes: Gauge,
    drops: [Counter; DropReason::ALL.len()],
}

fn cost(item: &Item) -> usize {
    item.raw.len()
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Queue {
    pub(crate) fn new(
        name: &'static str,
        mode: Mode,
        max_requests: usize,
        max_bytes: usize,
        metrics: &OutputMetrics,
    ) -> Arc<Self> {
        // Callers validate; a zero capacity would make async-channel panic.
        let (tx, rx) = async_channel::bounded(max_requests.max(1));
        Arc::new(Self {
            name,
            mode,
            tx,
            rx,
            room: ByteRoom::new(max_bytes),
            depth_requests: metrics.queue_requests(name),
            depth_bytes: metrics.queue_bytes(name),
            drops: DropReason::ALL.map(|r| metrics.dropped(name, r)),
        })
    }

    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    pub(crate) fn count_drops(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].inc_by(n);
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Requests waiting in the queue.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Bytes held by the requests waiting in the queue.
    pub(crate) fn bytes(&self) -> usize {
        self.room.bytes()
    }

    fn release(&self, n: usize) {
        self.room.release(n);
        self.depth_bytes.dec_by(to_i64(n));
    }

    /// Enqueues `item`, or counts why not. Never blocks in Live mode; waits for room in
    /// Offline mode (and gives up, counted as `shutdown`, when the queue is closed).
    pub(crate) fn push(&self, item: Item) -> bool {
        if self.is_closed() {
            self.count_drop(DropReason::Shutdown);
            return false;
        }
        let n = cost(&item);
        let reserved = match self.mode {
            Mode::Live => self.room.try_reserve(n),
            Mode::Offline => self.room.reserve_blocking(n),
        };
        if !reserved {
            let reason = if self.is_closed() {
                DropReason::Shutdown
            } else {
                DropReason::QueueFull
            };
            self.count_drop(reason);
            return false;
        }
        let sent = match self.mode {
            Mode::Live => match self.tx.try_send(item) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(DropReason::QueueFull),
                Err(TrySendError::Closed(_)) => Err(DropReason::Shutdown),
            },
            Mode::Offline => self
                .tx
                .send_blocking(item)
                .map_err(|_| DropReason::Shutdown),
        };
        match sent {
            Ok(()) => {
                self.depth_requests.inc();
                self.depth_bytes.inc_by(to_i64(n));
                true
            }
            Err(reason) => {
                // Undo the reservation without touching the gauge, which never saw it.
                self.room.release(n);
                self.count_drop(reason);
                false
            }
        }
    }

    fn taken(self: &Arc<Self>, item: Item) -> Taken {
        self.depth_requests.dec();
        self.release(cost(&item));
        Taken {
            queue: Arc::clone(self),
            item,
            settled: false,
        }
    }

    /// Next request, or None once the queue is closed and empty.
    pub(crate) async fn pop(self: &Arc<Self>) -> Option<Taken> {
        self.rx.recv().await.ok().map(|item| self.taken(item))
    }

    pub(crate) fn pop_blocking(self: &Arc<Self>) -> Option<Taken> {
        self.rx.recv_blocking().ok().map(|item| self.taken(item))
    }

    pub(crate) fn try_pop(self: &Arc<Self>) -> Option<Taken> {
        self.rx.try_recv().ok().map(|item| self.taken(item))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.room.is_closed()
    }

    /// Stops accepting; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.room.close();
        self.tx.close();
    }
}

/// A request taken off the queue. Whoever holds it must say how it ended ([`Taken::done`] or
/// [`Taken::drop_as`]); if it is dropped unsettled (its task was aborted at the drain deadline)
/// it is counted as dropped for `shutdown`, so no request ever disappears uncounted.
pub(crate) struct Taken {
    queue: Arc<Queue>,
    item: Item,
    settled: bool,
}

impl Taken {
    pub(crate) fn request(&self) -> &RebuiltRequest {
        &self.item
    }

    /// Handled: its success or failure metric has been counted by the output.
    pub(crate) fn done(mut self) {
        self.settled = true;
    }

    pub(crate) fn drop_as(mut self, reason: DropReason) {
        self.settled = true;
        self.queue.count_drop(reason);
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.settled {
            self.queue.count_drop(DropReason::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::output::tests::request;
    use prometheus_client::registry::Registry;

    fn queue(mode: Mode, reqs: usize, bytes: usize) -> Arc<Queue> {
        let metrics = OutputMetrics::register(&mut Registry::default());
        Queue::new("test", mode, reqs, bytes, &metrics)
    }

    #[test]
    fn live_drops_newest_on_request_or_byte_limit() {
        let q = queue(Mode::Live, 2, 1000);
        assert!(q.push(request(b"GET /a HTTP/1.1\r\n\r\n")));
        assert!(q.push(request(b"GET /b HTTP/1.1\r\n\r\n")));
        assert!(!q.push(request(b"GET /c HTTP/1.1\r\n\r\n")));
        assert_eq!(q.dropped(DropReason::QueueFull), 1);
        assert_eq!((q.len(), q.bytes()), (2, 38));
        // The oldest stay queued: FIFO order a, b.
        let a = q.try_pop().unwrap();
        assert_eq!(a.request().target_bytes(), b"/a");
        a.done();
        assert_eq!(q.bytes(), 19);

        let q = queue(Mode::Live, 100, 50);
        assert!(q.push(request(b"GET /a HTTP/1.1\r\n\r\n")));
        assert!(q.push(request(b"GET /b HTTP/1.1\r\n\r\n")));
        assert!(
            !q.push(request(b"GET /c HTTP/1.1\r\n\r\n")),
            "57 bytes > 50"
        );
        assert_eq!(q.dropped(DropReason::QueueFull), 1);
        q.try_pop().unwrap().done();
        assert!(q.push(request(b"GET /c HTTP/1.1\r\n\r\n")));
    }

    #[test]
    fn oversized_request_passes_an_empty_queue_only() {
        let q = queue(Mode::Live, 10, 10);
        assert!(q.push(request(b"GET /big HTTP/1.1\r\n\r\n")));
        assert!(!q.push(request(b"GET / HTTP/1.1\r\n\r\n")));
        q.try_pop().unwrap().done();
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn unsettled_taken_counts_as_shutdown_and_closed_queue_refuses() {
        let q = queue(Mode::Live, 10, 1000);
        assert!(q.push(request(b"GET / HTTP/1.1\r\n\r\n")));
        assert!(q.push(request(b"GET / HTTP/1.1\r\n\r\n")));
        drop(q.try_pop().unwrap());
        assert_eq!(q.dropped(DropReason::Shutdown), 1);
        q.close();
        assert!(!q.push(request(b"GET / HTTP/1.1\r\n\r\n")));
        assert_eq!(q.dropped(DropReason::Shutdown), 2);
        // Still drainable after close.
        q.try_pop().unwrap().drop_as(DropReason::Gap);
        assert_eq!(q.dropped(DropReason::Gap), 1);
        assert!(q.try_pop().is_none());
    }

    #[test]
    fn offline_producer_waits_for_room_and_close_releases_it() {
        let q = queue(Mode::Offline, 1, 1000);
        assert!(q.push(request(b"GET /1 HTTP/1.1\r\n\r\n")));
        let q2 = Arc::clone(&q);
        let producer = std::thread::spawn(move || q2.push(request(b"GET /2 HTTP/1.1\r\n\r\n")));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!producer.is_finished(), "must wait while the queue is full");
        q.try_pop().unwrap().done();
        assert!(producer.join().unwrap());
        assert_eq!(q.try_pop().unwrap().request().target_bytes(), b"/2");

        // Byte budget wait, released by close.
        let q = queue(Mode::Offline, 10, 25);
        assert!(q.push(request(b"GET /1 HTTP/1.1\r\n\r\n")));
        let q2 = Arc::clone(&q);
        let producer = std::thread::spawn(move || q2.push(request(b"GET /2 HTTP/1.1\r\n\r\n")));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!producer.is_finished());
        q.close();
        assert!(!producer.join().unwrap());
        assert_eq!(q.dropped(DropReason::Shutdown), 1);
        assert_eq!(q.dropped(DropReason::QueueFull), 0);
    }
}
