//! libFuzzer entry for the `record` target: the checks live in `rebuilder_fuzz::record` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rebuilder_fuzz::record::check(data));
