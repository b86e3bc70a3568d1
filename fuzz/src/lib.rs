//! What the fuzz targets check, kept out of `fuzz_targets/` so that the inputs can be built by
//! hand (`make-seeds`), round-trip tested, and replayed by `cargo test` without libFuzzer.
//!
//! Every target is a `check(input)` function that panics when an invariant breaks; the targets
//! in `fuzz_targets/` only call them. Structured inputs read fixed-width little-endian fields
//! through `arbitrary::Unstructured` (never its length-prefixed collections), so a seed is a
//! byte layout written by `encode` that a person can follow.

pub mod decode;
pub mod h2;
pub mod http;
pub mod known;
pub mod proxy;
pub mod reassembly;
pub mod record;

use arbitrary::{Result, Unstructured};

/// Little-endian fixed-width reads; past the end of the input they read zeros (arbitrary's own
/// behaviour), so every input decodes to something.
pub(crate) trait Take {
    fn u8(&mut self) -> Result<u8>;
    fn u16(&mut self) -> Result<u16>;
    fn u32(&mut self) -> Result<u32>;
}

impl Take for Unstructured<'_> {
    fn u8(&mut self) -> Result<u8> {
        self.arbitrary()
    }
    fn u16(&mut self) -> Result<u16> {
        self.arbitrary()
    }
    fn u32(&mut self) -> Result<u32> {
        self.arbitrary()
    }
}

/// Finds `needle` in `runs` (each a gap-free piece of the input) at or after `cursor` (run,
/// offset), without crossing from one run into the next; returns the position just past it.
///
/// Greedy is exact here: the earliest match ends no later than the true one, so every later
/// needle that truly follows is still found after it.
pub fn find_in_order(
    runs: &[Vec<u8>],
    cursor: (usize, usize),
    needle: &[u8],
) -> Option<(usize, usize)> {
    let (mut run, mut off) = cursor;
    while let Some(hay) = runs.get(run) {
        if let Some(p) = hay.get(off..).and_then(|h| memchr::memmem::find(h, needle)) {
            return Some((run, off + p + needle.len()));
        }
        run += 1;
        off = 0;
    }
    None
}
