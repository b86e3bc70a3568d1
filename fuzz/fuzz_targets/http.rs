#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::http::Input| {
    rebuilder_fuzz::http::check(&input);
});
