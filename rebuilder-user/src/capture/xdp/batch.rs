//! The batch buffers ring records are copied into ([`RecordBatch`]): ring space is released
//! as soon as a record is taken, so its payload must be copied out, and one buffer of a small
//! pool (counted in the memory budget) serves a whole batch.
//!
//! No kernel here: it takes record bytes, so the copying and pooling are tested without one.

use bytes::{Bytes, BytesMut};
use rebuilder_ebpf::RecordHeader;

use super::record::{record_error_index, ReaderStats, RecordConverter, BAD_RECORD};
use crate::capture::decode::Drop;
use crate::segment::Segment;

/// Payload bytes one batch copies at most before handing its segments out.
pub const BATCH_BYTES: usize = 1 << 20;
/// What one batch buffer allocates: the batch and one more record's payload, taken before the
/// batch is known to be full.
const BATCH_BUFFER: usize = BATCH_BYTES + rebuilder_ebpf::PAYLOAD_MAX as usize;
/// Batch buffers the reader keeps: one being filled while the previous batch's segments are
/// still on their way to the workers.
pub use crate::capture::pool::POOL_BATCHES;
/// What the reader's pool of batch buffers holds, counted in the memory budget.
pub const POOL_BYTES: usize = POOL_BATCHES * crate::memory::alloc_size(BATCH_BUFFER);

/// Records taken from the ring, their payloads copied into one buffer: the ring space is
/// released record by record as they are taken, and one allocation serves the whole batch.
/// Buffers come from a pool of [`POOL_BATCHES`]: one whose segments are all gone is filled
/// again. The caller keeps the pool from running dry: when [`RecordBatch::has_spare`] says no
/// other buffer is free, it copies the batch's payloads out, which frees the buffer at once.
#[derive(Debug)]
pub struct RecordBatch {
    arena: BytesMut,
    /// The buffers of the last batches handed out, whole, most recent last.
    pool: crate::capture::pool::BufferPool,
    /// Header and payload range in `arena`, or `None` for a record that did not parse.
    pending: Vec<Option<(RecordHeader, usize, usize)>>,
    stats: ReaderStats,
}

impl Default for RecordBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatch {
    pub fn new() -> Self {
        Self {
            arena: BytesMut::new(),
            pool: crate::capture::pool::BufferPool::new(),
            pending: Vec::new(),
            stats: ReaderStats::default(),
        }
    }

    /// Enough payload copied: hand the batch out before taking more.
    pub fn is_full(&self) -> bool {
        self.arena.len() >= BATCH_BYTES
    }

    /// A buffer to copy payloads into: a free one of the pool, else a new one.
    fn start_buffer(&mut self) {
        if let Some(mut m) = self.pool.take_free() {
            m.clear();
            if m.capacity() >= BATCH_BUFFER {
                self.arena = m;
                return;
            }
        }
        self.arena = BytesMut::with_capacity(BATCH_BUFFER);
    }

    /// Whether the next batch has a free buffer besides the one the last batch is in.
    pub fn has_spare(&self) -> bool {
        self.pool.has_spare()
    }

    /// Parses one ring record and copies its payload; a record that does not parse is counted
    /// and handed out as [`BAD_RECORD`].
    pub fn take(&mut self, record: &[u8]) {
        if self.arena.capacity() == 0 {
            self.start_buffer();
        }
        self.stats.records += 1;
        match rebuilder_ebpf::parse_record(record) {
            Ok((h, payload)) => {
                let start = self.arena.len();
                self.arena.extend_from_slice(payload);
                self.pending.push(Some((h, start, payload.len())));
            }
            Err(e) => {
                if let Some(c) = self.stats.record_errors.get_mut(record_error_index(&e)) {
                    *c += 1;
                }
                tracing::debug!(error = %e, "unreadable XDP ring record skipped");
                self.pending.push(None);
            }
        }
    }

    /// Hands every record taken since the last call to `f`, in order, as a segment (its payload
    /// a slice of the batch's buffer) or the reason it was dropped.
    pub fn hand_out(&mut self, conv: &RecordConverter, mut f: impl FnMut(Result<Segment, Drop>)) {
        if self.pending.is_empty() {
            return;
        }
        let buf: Bytes = std::mem::take(&mut self.arena).freeze();
        for rec in self.pending.drain(..) {
            match rec {
                Some((h, start, len)) => f(conv.convert(&h, buf.slice(start..start + len))),
                None => f(Err(BAD_RECORD)),
            }
        }
        self.pool.keep(buf);
    }

    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }
}
