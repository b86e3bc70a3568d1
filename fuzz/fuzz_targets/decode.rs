//! libFuzzer entry for the `decode` target: the checks live in `rebuilder_fuzz::decode` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rebuilder_fuzz::decode::check(data));
