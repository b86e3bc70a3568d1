//! The byte stream under both formats: the file read in chunks of `Bytes`, with records handed
//! out as zero-copy slices of their chunk, and the pool that reuses (or, when bounded, waits for)
//! chunks no frame refers to any more.
//!
//! It knows nothing of pcap: the formats ask it for "at least n bytes" (`fill`), look at them
//! (`avail`), and take or pass over them (`take`, `consume`). It touches only the reader it was
//! given and the clock (to wait for chunks when bounded).

use std::collections::VecDeque;
use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

/// How often a reader waiting for a chunk to free looks again.
const CHUNK_RECHECK: std::time::Duration = std::time::Duration::from_micros(200);

/// A byte stream read in chunks, with the unread part of the current chunk at `buf[pos..]`.
pub(super) struct Chunked {
    src: Box<dyn Read + Send>,
    pub(super) buf: Bytes,
    pos: usize,
    eof: bool,
    chunk_bytes: usize,
    pub(super) bytes_read: u64,
    /// Earlier chunks that frames still referred to when they were replaced, oldest first:
    /// once the workers drop those frames, a chunk is read into again. A fresh chunk costs the
    /// kernel a zeroed page per 4 KiB, a seventh of an offline replay's CPU before this pool.
    retired: VecDeque<Bytes>,
    /// Chunks allocated rather than reused (the tests watch the pool work).
    pub(super) fresh_chunks: u64,
    /// At most this many chunks (current and retired) exist; `None`: older retired ones are let
    /// go, freed with their last frame.
    pub(super) limit: Option<usize>,
    /// Incremented at each move to another chunk.
    pub(super) generation: u64,
}

/// Retired chunks kept for reuse; older ones are let go (freed with their last frame).
const RETIRED_CHUNKS: usize = 4;

impl Chunked {
    pub(super) fn new(src: Box<dyn Read + Send>, chunk_bytes: usize) -> Self {
        Self {
            src,
            buf: Bytes::new(),
            pos: 0,
            eof: false,
            chunk_bytes: chunk_bytes.max(1),
            bytes_read: 0,
            retired: VecDeque::with_capacity(RETIRED_CHUNKS),
            fresh_chunks: 0,
            limit: None,
            generation: 0,
        }
    }

    pub(super) fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn avail(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// `len` bytes starting `skip` bytes ahead, as a zero-copy slice; consumes up to their end.
    /// The caller has checked with `fill` that they are there.
    pub(super) fn take(&mut self, skip: usize, len: usize) -> Bytes {
        let start = (self.pos + skip).min(self.buf.len());
        let end = (start + len).min(self.buf.len());
        self.pos = end;
        self.buf.slice(start..end)
    }

    /// A retired chunk of at least `cap` bytes that no frame refers to any more.
    fn reusable(&mut self, cap: usize) -> Option<BytesMut> {
        for _ in 0..self.retired.len() {
            let chunk = self.retired.pop_front()?;
            match chunk.try_into_mut() {
                Ok(m) if m.capacity() >= cap => return Some(m),
                // Too small (a record larger than a chunk passed): freed here.
                Ok(_) => {}
                Err(still_used) => self.retired.push_back(still_used),
            }
        }
        None
    }

    /// Makes at least `need` unread bytes available unless the stream ends first; returns whether
    /// they are.
    pub(super) fn fill(&mut self, need: usize) -> io::Result<bool> {
        let have = self.available();
        if have >= need {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        let cap = self.chunk_bytes.max(need);
        let old = std::mem::take(&mut self.buf);
        let pos = self.pos;
        self.pos = 0;
        self.generation += 1;
        // Reuse the previous chunk's memory when no frame refers to it any more: it is already
        // initialised, so nothing is zeroed; only the unread tail moves to the front.
        let mut next = match old.try_into_mut() {
            Ok(mut m) => {
                m.copy_within(pos.., 0);
                m
            }
            Err(old) => {
                let tail = old.get(pos..).unwrap_or_default();
                let need_cap = cap.max(tail.len());
                let mut reused = self.reusable(need_cap);
                if let Some(limit) = self.limit {
                    // Bounded: a new chunk only while the pool is not full (the old one and
                    // the retired count), else wait for the caller's frames to go.
                    while reused.is_none() && self.retired.len() + 1 >= limit {
                        std::thread::sleep(CHUNK_RECHECK);
                        reused = self.reusable(need_cap);
                    }
                }
                let m = match reused {
                    // Its bytes are initialised already: the tail is copied over the front and
                    // the rest is read over, so nothing is zeroed.
                    Some(mut m) => {
                        if m.len() < tail.len() {
                            m.resize(tail.len(), 0);
                        }
                        if let Some(front) = m.get_mut(..tail.len()) {
                            front.copy_from_slice(tail);
                        }
                        m
                    }
                    None => {
                        self.fresh_chunks += 1;
                        let mut m = BytesMut::with_capacity(cap);
                        m.extend_from_slice(tail);
                        m
                    }
                };
                if self.limit.is_none() && self.retired.len() == RETIRED_CHUNKS {
                    self.retired.pop_front();
                }
                // A chunk grown past the usual size (for one large block) is not kept.
                if old.len() <= self.chunk_bytes {
                    self.retired.push_back(old);
                }
                m
            }
        };
        if next.len() < cap {
            next.resize(cap, 0);
        }
        let mut filled = have;
        let result = loop {
            if filled >= next.len() {
                break Ok(());
            }
            let Some(room) = next.get_mut(filled..) else {
                break Ok(());
            };
            match self.src.read(room) {
                Ok(0) => {
                    self.eof = true;
                    break Ok(());
                }
                Ok(n) => {
                    filled += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        next.truncate(filled);
        self.buf = next.freeze();
        result.map(|()| filled >= need)
    }
}
