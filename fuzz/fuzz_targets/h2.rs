//! libFuzzer entry for the `h2` target: the checks live in `rebuilder_fuzz::h2` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::h2::Input| {
    rebuilder_fuzz::h2::check(&input);
});
