//! A byte budget between producers and a consumer: producers reserve before they hand
//! something over, the consumer releases once it is done with it. Producers that must not lose
//! anything (offline) wait for room; live producers only try, and drop what does not fit.
//!
//! Used by the dispatcher in front of each worker (segments in flight) and by the queue in
//! front of each output (requests waiting).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How often a waiting producer looks again: a safety net, since releases wake it.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct ByteRoom {
    bytes: AtomicUsize,
    limit: usize,
    /// Producers waiting for room: a release takes the lock to wake them only when there are
    /// any, so the common path (room available) costs no lock and no futex call.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// The consumer is gone or the producer side is shut: waiting stops.
    closed: AtomicBool,
}

impl ByteRoom {
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            limit: limit.max(1),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Bytes reserved and not yet released.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if they fit. Something larger than the whole limit still passes when
    /// nothing else is held, so that it can pass at all (a waiting producer would otherwise
    /// wait forever); memory stays bounded by the limit plus one item.
    pub fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.bytes.load(Ordering::Relaxed);
        loop {
            if cur != 0 && cur.saturating_add(n) > self.limit {
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

    /// Waits until `n` bytes fit; false once the room is closed.
    pub fn reserve_blocking(&self, n: usize) -> bool {
        if self.try_reserve(n) {
            return true;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Registered under the lock and before the re-check, so a release after the check
        // sees the waiter and takes the lock to notify: no wake-up is lost.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let reserved = loop {
            if self.is_closed() {
                break false;
            }
            if self.try_reserve(n) {
                break true;
            }
            guard = match self.cv.wait_timeout(guard, RECHECK) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        reserved
    }

    /// The consumer is done with `n` bytes (or a producer takes back a reservation it could
    /// not use).
    pub fn release(&self, n: usize) {
        self.bytes.fetch_sub(n.min(self.bytes()), Ordering::AcqRel);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this wake-up after a waiter's check.
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waiting producers give up, and so does any that comes later.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_one_oversized_item_alone() {
        let r = ByteRoom::new(100);
        assert!(r.try_reserve(60));
        assert!(!r.try_reserve(50));
        assert!(r.try_reserve(40));
        r.release(100);
        assert_eq!(r.bytes(), 0);
        assert!(r.try_reserve(500), "an empty room admits anything once");
        assert!(!r.try_reserve(1));
        // Releasing more than is held cannot wrap the count.
        r.release(1000);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn a_waiting_producer_is_woken_by_a_release_and_gives_up_on_close() {
        let r = Arc::new(ByteRoom::new(10));
        assert!(r.try_reserve(10));
        let waiter = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let start = Instant::now();
                (r.reserve_blocking(5), start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        r.release(10);
        let (reserved, _) = waiter.join().unwrap();
        assert!(reserved);
        assert_eq!(r.bytes(), 5);

        assert!(r.try_reserve(5));
        let waiter = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || r.reserve_blocking(5))
        };
        std::thread::sleep(Duration::from_millis(20));
        r.close();
        assert!(!waiter.join().unwrap());
        assert!(!r.reserve_blocking(5), "closed and full: no wait");
    }
}
