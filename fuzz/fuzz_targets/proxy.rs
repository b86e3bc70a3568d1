//! libFuzzer entry for the `proxy` target: the checks live in `rebuilder_fuzz::proxy` (fuzz/src), so the
//! seeds' tests run the same code without libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::proxy::Input| {
    rebuilder_fuzz::proxy::check(&input);
});
