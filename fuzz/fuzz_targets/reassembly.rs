//! libFuzzer entry for the `reassembly` target: the checks live in `rebuilder_fuzz::reassembly` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::reassembly::Input| {
    rebuilder_fuzz::reassembly::check(&input);
});
