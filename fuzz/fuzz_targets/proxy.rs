#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::proxy::Input| {
    rebuilder_fuzz::proxy::check(&input);
});
