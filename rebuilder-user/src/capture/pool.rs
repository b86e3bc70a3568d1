//! The few batch buffers a capture reader cycles through (UDP receives, XDP ring copies),
//! counted in the memory budget: a buffer whose slices (segments) are all gone is used again,
//! so a steady state allocates nothing.
//!
//! The caller keeps the pool from running dry: when [`BufferPool::has_spare`] says no, it
//! copies the last batch's payloads out so that buffer frees. If it did not, the pool grows:
//! the oldest buffer leaves it (and is freed with the last slice of it).

use bytes::{Bytes, BytesMut};

/// Buffers a pool holds.
pub const POOL_BATCHES: usize = 2;

#[derive(Debug, Default)]
pub struct BufferPool {
    bufs: Vec<Bytes>,
}

impl BufferPool {
    pub fn new() -> Self {
        Self {
            bufs: Vec::with_capacity(POOL_BATCHES),
        }
    }

    /// A buffer nobody holds a slice of, taken out of the pool (its bytes as they were), if
    /// there is one.
    pub fn take_free(&mut self) -> Option<BytesMut> {
        let i = self.bufs.iter().position(Bytes::is_unique)?;
        self.bufs.remove(i).try_into_mut().ok()
    }

    /// Puts the buffer of the batch just handed out into the pool.
    pub fn keep(&mut self, buf: Bytes) {
        if self.bufs.len() == POOL_BATCHES {
            self.bufs.remove(0);
        }
        self.bufs.push(buf);
    }

    /// Whether the next batch has a free buffer besides the one the last batch is in.
    pub fn has_spare(&self) -> bool {
        self.bufs.len() < POOL_BATCHES
            || self
                .bufs
                .iter()
                .take(self.bufs.len() - 1)
                .any(Bytes::is_unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_buffers_come_back_held_ones_do_not() {
        let mut p = BufferPool::new();
        assert!(p.has_spare() && p.take_free().is_none());
        let a = Bytes::from(vec![1u8; 8]);
        let held = a.slice(0..2);
        p.keep(a);
        assert!(p.has_spare(), "room for a second");
        assert!(p.take_free().is_none(), "a slice of it is held");
        p.keep(Bytes::from(vec![2u8; 8]));
        assert!(!p.has_spare(), "the other one is held");
        drop(held);
        assert!(p.has_spare());
        assert_eq!(p.take_free().map(|m| m[0]), Some(1));
        // Over-full: the oldest leaves.
        p.keep(Bytes::from(vec![3u8; 8]));
        p.keep(Bytes::from(vec![4u8; 8]));
        assert_eq!(p.take_free().map(|m| m[0]), Some(3));
    }
}
