#![no_main]

libfuzzer_sys::fuzz_target!(|input: rebuilder_fuzz::reassembly::Input| {
    rebuilder_fuzz::reassembly::check(&input);
});
