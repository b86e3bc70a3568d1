//! The flow table's storage: flows in fixed chunks of slots, found through a hash table of slot
//! numbers.
//!
//! A `HashMap<TableKey, Flow>` kept 89-byte buckets: doubled when full, never shrunk, and under
//! the churn of a flood (flows evicted, new ones inserted) its tombstones made it double again
//! at half load, so a flow cost 2.3 to 4.6 buckets, up to 400 bytes, where 176 were charged.
//! Here a flow takes one 88-byte slot, slots grow 8 KiB at a time and freed ones are reused
//! first, and the hash table holds 4-byte slot numbers, so its doublings cost little. Everything
//! is charged for what is allocated ([`FlowMap::bytes`]), not for the entries in it: the slots
//! of evicted flows stay allocated for the next ones until [`FlowMap::compact`] gives them back.

use std::hash::BuildHasher;
use std::mem::size_of;

use hashbrown::HashTable;

use super::{Flow, TableKey};
use crate::memory::alloc_size;

struct Entry {
    key: TableKey,
    flow: Flow,
}

type Slot = Option<Entry>;

/// Slots per chunk: as many as fill one 8 KiB size class exactly, so that a small table stays
/// small and a large one wastes nothing to rounding.
const CHUNK: usize = 8192 / size_of::<Slot>();
/// What one chunk of slots allocates.
pub(super) const CHUNK_BYTES: usize = alloc_size(CHUNK * size_of::<Slot>());
/// What adding a chunk allocates: the chunk, and room for its slots in the free list.
pub(super) const GROWTH_BYTES: usize = CHUNK_BYTES + alloc_size(CHUNK * size_of::<u32>());
/// What one flow's place costs: its slot and its share of a half-full index (kept at three
/// times its size, see [`FlowMap::bytes`]).
pub(super) const SLOT_BYTES: usize = size_of::<Slot>() + 3 * 2 * (size_of::<u32>() + 1);

pub(super) struct FlowMap {
    index: HashTable<u32>,
    chunks: Vec<Box<[Slot]>>,
    /// Slots freed and not yet reused, most recent last.
    free: Vec<u32>,
    len: usize,
    hasher: foldhash::fast::RandomState,
}

fn slot(chunks: &[Box<[Slot]>], i: u32) -> Option<&Entry> {
    let i = i as usize;
    chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
}

fn slot_mut(chunks: &mut [Box<[Slot]>], i: u32) -> Option<&mut Slot> {
    let i = i as usize;
    chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
}

fn hash_at(hasher: &foldhash::fast::RandomState, chunks: &[Box<[Slot]>], i: u32) -> u64 {
    // Every index entry names an occupied slot; an empty one (never) hashes anywhere.
    slot(chunks, i).map_or(0, |e| hasher.hash_one(e.key))
}

impl Default for FlowMap {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl FlowMap {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn find(&self, key: &TableKey) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        self.index
            .find(h, |&i| slot(chunks, i).is_some_and(|e| e.key == *key))
            .copied()
    }

    pub(super) fn get(&self, key: &TableKey) -> Option<&Flow> {
        let i = self.find(key)?;
        slot(&self.chunks, i).map(|e| &e.flow)
    }

    pub(super) fn get_mut(&mut self, key: &TableKey) -> Option<&mut Flow> {
        let i = self.find(key)?;
        slot_mut(&mut self.chunks, i)?.as_mut().map(|e| &mut e.flow)
    }

    pub(super) fn contains_key(&self, key: &TableKey) -> bool {
        self.find(key).is_some()
    }

    /// Inserts or replaces; returns the flow replaced.
    pub(super) fn insert(&mut self, key: TableKey, flow: Flow) -> Option<Flow> {
        if let Some(i) = self.find(&key) {
            let e = slot_mut(&mut self.chunks, i)?.as_mut()?;
            return Some(std::mem::replace(&mut e.flow, flow));
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = (self.chunks.len() * CHUNK) as u32;
                self.chunks
                    .push((0..CHUNK).map(|_| None).collect::<Box<[Slot]>>());
                // The rest of the new chunk, lowest last so that it is used first.
                self.free.extend((i + 1..i + CHUNK as u32).rev());
                i
            }
        };
        if let Some(s) = slot_mut(&mut self.chunks, i) {
            *s = Some(Entry { key, flow });
        }
        let h = self.hasher.hash_one(key);
        let Self {
            index,
            chunks,
            hasher,
            ..
        } = self;
        index.insert_unique(h, i, |&j| hash_at(hasher, chunks, j));
        self.len += 1;
        None
    }

    pub(super) fn remove(&mut self, key: &TableKey) -> Option<Flow> {
        let h = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        let entry = self
            .index
            .find_entry(h, |&i| slot(chunks, i).is_some_and(|e| e.key == *key))
            .ok()?;
        let (i, _) = entry.remove();
        self.take(i)
    }

    fn take(&mut self, i: u32) -> Option<Flow> {
        let e = slot_mut(&mut self.chunks, i)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(e.flow)
    }

    /// Every flow, in slot order (which, unlike a hash map's order, is the same every run).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TableKey, &Flow)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|s| s.as_ref().map(|e| (&e.key, &e.flow)))
    }

    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = &TableKey> {
        self.iter().map(|(k, _)| k)
    }

    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &Flow> {
        self.iter().map(|(_, f)| f)
    }

    /// Keeps the flows for which `keep` is true; the others are removed and handed to `gone`,
    /// in slot order.
    pub(super) fn retain(
        &mut self,
        mut keep: impl FnMut(&TableKey, &mut Flow) -> bool,
        mut gone: impl FnMut(TableKey, Flow),
    ) {
        for i in 0..(self.chunks.len() * CHUNK) as u32 {
            let Some(Some(e)) = slot_mut(&mut self.chunks, i) else {
                continue;
            };
            if keep(&e.key, &mut e.flow) {
                continue;
            }
            let key = e.key;
            let h = self.hasher.hash_one(key);
            if let Ok(entry) = self.index.find_entry(h, |&j| j == i) {
                entry.remove();
            }
            if let Some(flow) = self.take(i) {
                gone(key, flow);
            }
        }
    }

    /// Takes every flow out, leaving the map empty and its memory released.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = (TableKey, Flow)> {
        let hasher = self.hasher.clone();
        let all = std::mem::take(self);
        self.hasher = hasher;
        all.chunks
            .into_iter()
            .flat_map(|c| c.into_vec().into_iter())
            .flatten()
            .map(|e| (e.key, e.flow))
    }

    /// Gives back memory a flood left behind: once no more than a quarter of the slots are in
    /// use, the flows move into a map just big enough for them. While they move both exist:
    /// [`FlowMap::compact_cost`] says how much that is, for the caller to check first.
    pub(super) fn compact(&mut self) {
        if self.len == 0 {
            let hasher = self.hasher.clone();
            *self = Self::default();
            self.hasher = hasher;
            return;
        }
        let mut fresh = Self {
            hasher: self.hasher.clone(),
            ..Self::default()
        };
        for (key, flow) in self.take_all() {
            fresh.insert(key, flow);
        }
        *self = fresh;
    }

    /// Whether [`FlowMap::compact`] would give back much: three quarters of the slots or more
    /// are free, and there are more than a few chunks of them.
    pub(super) fn worth_compacting(&self) -> bool {
        let slots = self.chunks.len() * CHUNK;
        slots > 4 * CHUNK && self.len <= slots / 4
    }

    /// Whether inserting a new key allocates a chunk (no slot is free).
    pub(super) fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// What the map would allocate, holding what it holds now, once compacted.
    pub(super) fn compact_cost(&self) -> usize {
        let chunks = self.len.div_ceil(CHUNK);
        chunks * CHUNK_BYTES
            + 3 * alloc_size(hashbrown_bytes(self.len))
            + alloc_size(chunks * CHUNK * size_of::<u32>())
            + alloc_size(chunks * size_of::<Box<[Slot]>>())
    }

    /// Bytes the map holds from the allocator: its chunks of slots, the free list, and the
    /// index at three times its size, because a growing index allocates its doubled successor
    /// while it still exists.
    pub(super) fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES
            + alloc_size(self.chunks.capacity() * size_of::<Box<[Slot]>>())
            + alloc_size(self.free.capacity() * size_of::<u32>())
            + 3 * self.index.allocation_size()
    }
}

/// What a hash table of `n` slot numbers allocates when built for exactly `n`.
fn hashbrown_bytes(n: usize) -> usize {
    let buckets = crate::memory::table_buckets(n);
    if buckets == 0 {
        0
    } else {
        buckets * (size_of::<u32>() + 1) + 16
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::segment::FlowKey;
    use crate::worker::FlowState;

    fn key(port: u16) -> TableKey {
        TableKey {
            scope: 0,
            flow: FlowKey {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                src_port: port,
                dst_port: 80,
            },
        }
    }

    fn flow(serial: u64) -> Flow {
        Flow {
            state: FlowState::Closed { isn: None },
            last_seen: 0,
            cost: 0,
            serial,
        }
    }

    #[test]
    fn inserts_finds_replaces_and_removes() {
        let mut m = FlowMap::default();
        for p in 0..3000u16 {
            assert!(m.insert(key(p), flow(u64::from(p))).is_none());
        }
        assert_eq!(m.len(), 3000);
        assert_eq!(m.get(&key(1234)).map(|f| f.serial), Some(1234));
        assert_eq!(m.insert(key(7), flow(70)).map(|f| f.serial), Some(7));
        assert_eq!(m.get(&key(7)).map(|f| f.serial), Some(70));
        for p in (0..3000u16).step_by(2) {
            assert_eq!(
                m.remove(&key(p)).map(|f| f.serial % 10_000),
                Some(if p == 7 { 70 } else { u64::from(p) })
            );
        }
        assert_eq!(m.len(), 1500);
        assert!(m.get(&key(2)).is_none() && m.remove(&key(2)).is_none());
        // Freed slots are reused before any chunk is added.
        let chunks = m.chunks.len();
        for p in 10_000..11_500u16 {
            m.insert(key(p), flow(0));
        }
        assert_eq!(m.chunks.len(), chunks);
        assert_eq!(m.iter().count(), 3000);
        assert!(m.contains_key(&key(10_000)) && m.contains_key(&key(2999)));
    }

    #[test]
    fn retain_removes_in_slot_order_and_take_all_releases_everything() {
        let mut m = FlowMap::default();
        for p in 0..100u16 {
            m.insert(key(p), flow(u64::from(p)));
        }
        let mut gone = Vec::new();
        m.retain(|_, f| f.serial % 3 != 0, |k, _| gone.push(k.flow.src_port));
        assert_eq!(gone, (0..100).step_by(3).collect::<Vec<u16>>());
        assert_eq!(m.len(), 100 - gone.len());
        assert!(m.get(&key(3)).is_none() && m.get(&key(4)).is_some());
        let all: Vec<u16> = m.take_all().map(|(k, _)| k.flow.src_port).collect();
        assert_eq!(all.len(), 100 - gone.len());
        assert_eq!((m.len(), m.bytes()), (0, 0));
        assert!(m.get(&key(4)).is_none());
    }

    #[test]
    fn memory_is_charged_for_what_is_allocated_and_given_back_by_compacting() {
        let mut m = FlowMap::default();
        assert_eq!(m.bytes(), 0);
        m.insert(key(1), flow(1));
        let one = m.bytes();
        assert!(one >= CHUNK_BYTES, "{one}");
        for p in 0..20_000u16 {
            m.insert(key(p), flow(0));
        }
        let full = m.bytes();
        // About one slot and a little index per flow.
        assert!(full >= 20_000 * size_of::<Slot>(), "{full}");
        assert!(full <= 20_000 * (size_of::<Slot>() + 48), "{full}");
        for p in 0..19_000u16 {
            m.remove(&key(p));
        }
        assert!(m.bytes() >= full, "removing flows keeps their slots");
        assert!(m.worth_compacting());
        let cost = m.compact_cost();
        m.compact();
        assert_eq!(m.len(), 1000);
        assert!(m.bytes() <= cost, "{} > {cost}", m.bytes());
        assert!(m.bytes() < full / 8);
        assert!(m.get(&key(19_500)).is_some() && m.get(&key(5)).is_none());
        assert!(!m.worth_compacting());
    }
}
