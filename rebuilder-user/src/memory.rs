//! What things really cost: the allocator's size classes and a hash table's allocation. The
//! memory budget (`config::MemorySplit`) is only as honest as the charges made against it, and a
//! charge that counts the bytes asked for rather than the bytes the allocator hands out, or a
//! table's entries rather than its buckets, lets the process grow past its budget while every
//! account says it is within it (a SYN flood held 1.5 times what its flows were charged).

use std::ffi::{c_int, c_long};

// The binary's global allocator (main.rs): linked here as well, so that its options are set
// from here and tested.
use mimalloc as _;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// `mi_option_purge_delay` and `mi_option_page_full_retain` in mimalloc 3's `mi_option_t` (the
/// test below checks they are those options by their defaults).
const MI_OPTION_PURGE_DELAY: c_int = 15;
const MI_OPTION_PAGE_FULL_RETAIN: c_int = 36;
/// Full pages a thread keeps looking into for blocks other threads freed (mimalloc's default 2).
const PAGE_FULL_RETAIN: c_long = 8;

/// Sets the allocator up for a process that must stay within its memory budget; call it first
/// thing, before any thread starts (a thread reads some options when it starts).
///
/// - Freed memory goes back to the system at once rather than a second later (mimalloc's purge
///   delay): a large buffer freed as it grows (a body doubling its allocation) or a table replaced
///   by a smaller one otherwise stays resident for that second, and under a flood that is most
///   of the time. With it, an endless-body attack's peak RSS went from 141 to 65 MiB, a SYN
///   flood's from 177 to 143 MiB (`cargo xtask hostile`).
/// - Each thread keeps 8 full pages, not 2, in the queues it searches for blocks that other
///   threads freed. Requests are allocated by a worker and freed by an output thread: with 2, a
///   page emptied that way was given back and faulted in again, 34,000 page faults and a sixth
///   more time for an offline replay of a million packets once freed memory was returned at
///   once; with 8, 4,800 and no slower than before, at the same RSS.
pub fn configure_allocator() {
    // SAFETY: mimalloc's documented option setter, safe to call at any time from any thread;
    // the options exist in the mimalloc version linked (tested below).
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        mi_option_set(MI_OPTION_PAGE_FULL_RETAIN, PAGE_FULL_RETAIN);
    }
}

/// Largest request served from a size class: mimalloc's large objects go up to 512 KiB.
const LARGEST_CLASS: usize = 512 << 10;
/// Granularity of the allocations above it (mimalloc's arena slices).
const HUGE_GRANULE: usize = 64 << 10;

/// Bytes the allocator hands out for a request of `n` bytes. mimalloc rounds a request up to its
/// size class: exact words up to 64 bytes, then four classes per power of two (so up to a
/// quarter more), and whole 64 KiB slices above 512 KiB. glibc's malloc rounds less, so the
/// figure is an upper bound either way.
pub const fn alloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let words = n.div_ceil(8);
    if words <= 8 {
        return words * 8;
    }
    if n > LARGEST_CLASS {
        return n.div_ceil(HUGE_GRANULE) * HUGE_GRANULE;
    }
    // The bin of mimalloc's `mi_bin`: the top three bits of `words - 1` pick one of four
    // classes between two powers of two.
    let w = words - 1;
    let b = usize::BITS - 1 - w.leading_zeros();
    let shift = b - 2;
    (((w >> shift) + 1) << shift) * 8
}

/// Buckets of a hashbrown table (`std::collections::HashMap` is one) built for `capacity`
/// entries: at least 4, else a power of two of which 7/8 may be used.
pub const fn table_buckets(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity * 8 / 7).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(1), 8);
        assert_eq!(alloc_size(64), 64);
        // 41 words are served from the 48-word class (mimalloc's bin for 328 bytes).
        assert_eq!(alloc_size(328), 384);
        assert_eq!(alloc_size(384), 384);
        assert_eq!(alloc_size(385), 448);
        assert_eq!(alloc_size(8948), 10240);
        assert_eq!(alloc_size(512 << 10), 512 << 10);
        assert_eq!(alloc_size((512 << 10) + 1), (512 << 10) + (64 << 10));
        for n in 1..200_000 {
            let a = alloc_size(n);
            assert!(a >= n, "{n} -> {a}");
            assert!(a <= n + n / 4 + 8, "{n} -> {a}");
        }
    }

    #[test]
    fn the_allocator_options_set_are_the_ones_meant() {
        // SAFETY: reading and setting mimalloc options; nothing else in the tests touches them.
        let read = |o| unsafe { mi_option_get(o) };
        assert_eq!(
            (
                read(MI_OPTION_PURGE_DELAY),
                read(MI_OPTION_PAGE_FULL_RETAIN)
            ),
            (1000, 2),
            "mimalloc 3's defaults: a purge delay of 1000 ms, 2 full pages retained"
        );
        configure_allocator();
        assert_eq!(
            (
                read(MI_OPTION_PURGE_DELAY),
                read(MI_OPTION_PAGE_FULL_RETAIN)
            ),
            (0, PAGE_FULL_RETAIN)
        );
    }

    #[test]
    fn table_buckets_follow_hashbrown() {
        // The capacity a table reports after growing maps back to the buckets it allocated,
        // twice as many as before, and a table built for `n` has the buckets predicted.
        let hash = |v: &u32| u64::from(*v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut t: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
        for i in 0..100_000u32 {
            let before = t.capacity();
            t.insert_unique(hash(&i), i, hash);
            let after = t.capacity();
            if after != before {
                assert_eq!(t.num_buckets(), table_buckets(after), "{before} -> {after}");
                assert_eq!(t.num_buckets(), table_buckets(before + 1), "{before}");
            }
        }
        for n in [1, 3, 4, 7, 8, 14, 15, 1000, 50_000] {
            let t: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(n);
            assert_eq!(t.num_buckets(), table_buckets(n), "{n}");
        }
    }
}
