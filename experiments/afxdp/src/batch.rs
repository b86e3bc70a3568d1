//! What each received frame becomes: parsed (`parse`), counted in the `Tally`, and its payload
//! copied with its record header into a `Batch`, as rebuilder's `RecordBatch` does.

use rebuilder_ebpf::{RecordHeader, PAYLOAD_MAX};

use crate::parse::{parse, Parsed};

/// Like rebuilder's `BATCH_BYTES`: the batch is handed on once this much payload is copied.
const BATCH_BYTES: usize = 1 << 20;

/// What came through.
#[derive(Default)]
pub struct Tally {
    pub frames: u64,
    pub payload_bytes: u64,
    pub records: u64,
    pub pure_acks: u64,
    pub not_vxlan: u64,
    pub outer_fragments: u64,
    pub malformed: u64,
    pub not_tcp: u64,
    pub inner_fragments: u64,
    pub truncated: u64,
    pub bad_descs: u64,
    pub batches: u64,
    pub polls: u64,
    pub wakeups: u64,
}

/// The userspace equivalent of rebuilder's `RecordBatch`: payloads copied into one buffer, the
/// header and range of each noted beside it; handed on (here: cleared) when full.
pub struct Batch {
    arena: Vec<u8>,
    pending: Vec<(RecordHeader, usize, usize)>,
}

impl Batch {
    pub fn new() -> Self {
        Self {
            arena: Vec::with_capacity(BATCH_BYTES + PAYLOAD_MAX as usize),
            pending: Vec::with_capacity(BATCH_BYTES / 64),
        }
    }

    pub fn take(&mut self, h: RecordHeader, payload: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.pending.push((h, start, payload.len()));
        if self.arena.len() >= BATCH_BYTES {
            self.hand_out();
        }
    }

    pub fn hand_out(&mut self) {
        // Keep the compiler from dropping the copies as dead stores.
        std::hint::black_box((&self.arena, &self.pending));
        self.arena.clear();
        self.pending.clear();
    }
}

/// One frame, as rebuilder's program and reader together treat it.
pub fn handle(frame: &[u8], ts_ns: u64, batch: &mut Batch, tally: &mut Tally) {
    match parse(frame, ts_ns) {
        Parsed::Record(h, payload) => {
            tally.records += 1;
            tally.payload_bytes += payload.len() as u64;
            if h.captured_len < h.wire_len {
                tally.truncated += 1;
            }
            batch.take(h, payload);
        }
        Parsed::NotVxlan => tally.not_vxlan += 1,
        Parsed::OuterFragment => tally.outer_fragments += 1,
        Parsed::Malformed => tally.malformed += 1,
        Parsed::NotTcp => tally.not_tcp += 1,
        Parsed::InnerFragment => tally.inner_fragments += 1,
        Parsed::PureAck => tally.pure_acks += 1,
    }
}
