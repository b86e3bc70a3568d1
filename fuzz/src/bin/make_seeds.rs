//! Writes the hand-made seed corpora under `fuzz/seeds/<target>/`:
//! `cargo run --bin make-seeds` from `fuzz/` (the files are committed; rerun after changing an
//! input layout). Each seed is one small, meaningful case the fuzzer mutates from.
//!
//! One module per fuzz target, each writing that target's seeds; the helpers they share (the
//! file writer, a GET request, TCP flags) are here.

#[path = "make_seeds/decode.rs"]
mod decode;
#[path = "make_seeds/h2.rs"]
mod h2;
#[path = "make_seeds/http.rs"]
mod http;
#[path = "make_seeds/proxy.rs"]
mod proxy;
#[path = "make_seeds/reassembly.rs"]
mod reassembly;
#[path = "make_seeds/record.rs"]
mod record;

use std::fs;
use std::path::Path;

const GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH_ACK: u8 = 0x18;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("seed directory");
    fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    h2::h2_seeds();
    proxy::proxy_seeds();
    decode::decode_seeds();
    reassembly::reassembly_seeds();
    reassembly::sweep_seed();
    http::http_seeds();
    record::record_seeds();
}
