//! libFuzzer entry for the `http` target: the checks live in `rebuilder_fuzz::http` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::http::Input| {
    rebuilder_fuzz::http::check(&input);
});
