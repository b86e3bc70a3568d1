//! How far a `reassembly` corpus reaches: runs every input through the checks and prints the
//! table's counters summed (evictions, expiries, gaps by reason, conflicts, ...), so a run that
//! never reached a path shows as a zero.
//!
//!   cargo run --example corpus_stats -- corpus/reassembly

use std::{env, fs, process};

use arbitrary::{Arbitrary, Unstructured};
use rebuilder::worker::WorkerStats;
use rebuilder_fuzz::reassembly::{check, Input};

fn main() {
    let Some(dir) = env::args().nth(1) else {
        eprintln!("usage: corpus_stats <corpus directory>");
        process::exit(2);
    };
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        eprintln!("{dir}: {e}");
        process::exit(1);
    });
    let mut total = WorkerStats::default();
    let mut inputs = 0;
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path()) else {
            continue;
        };
        let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        total.add(&check(&input).table);
        inputs += 1;
    }
    println!("{inputs} inputs\n{total:#?}");
}
