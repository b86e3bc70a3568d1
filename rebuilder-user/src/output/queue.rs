//! The bounded queue in front of each output, bounded both in requests and in bytes.
//!
//! Producers are the pipeline's worker threads (plain std threads); consumers are the output's
//! tasks or thread. In `Live` mode a full queue drops the newest request so capture never
//! waits (DESIGN §4: a blocked output must not back pressure into capture); in `Offline` mode
//! the producer waits for room.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::OutputMetrics;
use super::{DropReason, Mode};
use crate::request::RebuiltRequest;

pub(crate) type Item = Arc<RebuiltRequest>;

/// Safety net for the Offline wait on the byte budget: the wake-up protocol is exact, this only
/// bounds the cost of a mistake in it.
const ROOM_RECHECK: Duration = Duration::from_millis(100);

pub(crate) struct Queue {
    pub(crate) name: &'static str,
    mode: Mode,
    tx: Sender<Item>,
    rx: Receiver<Item>,
    max_bytes: usize,
    bytes: AtomicUsize,
    /// Offline producers wait here for the byte budget to make room.
    room: Mutex<()>,
    room_cv: Condvar,
    /// Producers inside `wait_for_room`: a release wakes them only when there are any, so the
    /// common path (room available) costs no lock and no futex call per request.
    waiting: AtomicUsize,
    closed: AtomicBool,
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
            max_bytes: max_bytes.max(1),
            bytes: AtomicUsize::new(0),
            room: Mutex::new(()),
            room_cv: Condvar::new(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
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
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of budget if they fit. A request larger than the whole budget is still
    /// admitted into an empty queue, so that it can pass at all (Offline would otherwise wait
    /// forever); memory stays bounded by the budget plus one request.
    fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.bytes.load(Ordering::Relaxed);
        loop {
            if cur != 0 && cur.saturating_add(n) > self.max_bytes {
                return false;
            }
            match self.bytes.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn release(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.depth_bytes.dec_by(to_i64(n));
        if self.mode == Mode::Offline && self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this wake-up after a waiter's check (see `wait_for_room`).
            let _g = self.room.lock().unwrap_or_else(|e| e.into_inner());
            self.room_cv.notify_all();
        }
    }

    fn wait_for_room(&self, n: usize) -> bool {
        if self.try_reserve(n) {
            return true;
        }
        let mut guard = self.room.lock().unwrap_or_else(|e| e.into_inner());
        // Registered under the lock and before the re-check: a release that frees room after
        // the check sees the waiter and takes the lock to notify, so no wake-up is lost.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let reserved = loop {
            if self.closed.load(Ordering::Acquire) {
                break false;
            }
            if self.try_reserve(n) {
                break true;
            }
            guard = match self.room_cv.wait_timeout(guard, ROOM_RECHECK) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        reserved
    }

    /// Enqueues `item`, or counts why not. Never blocks in Live mode; waits for room in
    /// Offline mode (and gives up, counted as `shutdown`, when the queue is closed).
    pub(crate) fn push(&self, item: Item) -> bool {
        if self.closed.load(Ordering::Acquire) {
            self.count_drop(DropReason::Shutdown);
            return false;
        }
        let n = cost(&item);
        let reserved = match self.mode {
            Mode::Live => self.try_reserve(n),
            Mode::Offline => self.wait_for_room(n),
        };
        if !reserved {
            let reason = if self.closed.load(Ordering::Acquire) {
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
                self.bytes.fetch_sub(n, Ordering::AcqRel);
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
        self.closed.load(Ordering::Acquire)
    }

    /// Stops accepting; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.tx.close();
        let _g = self.room.lock().unwrap_or_else(|e| e.into_inner());
        self.room_cv.notify_all();
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
