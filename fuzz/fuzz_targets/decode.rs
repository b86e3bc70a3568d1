#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rebuilder_fuzz::decode::check(data));
