#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::h2::Input| {
    rebuilder_fuzz::h2::check(&input);
});
