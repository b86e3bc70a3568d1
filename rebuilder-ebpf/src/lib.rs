//! rebuilder's XDP program and the ABI it shares with userspace.
//!
//! The program itself is C (`src/rebuilder.bpf.c`, ABI in `src/rebuilder_abi.h`), compiled by
//! `build.rs` with clang and embedded here as [`OBJECT`]. It parses VXLAN-encapsulated TCP
//! segments in the kernel and writes one record per kept segment to a BPF ring buffer; the
//! layout of a record is [`RecordHeader`] followed by the payload, read back with
//! [`parse_record`].
//!
//! Loading: [`load`] applies a [`Config`] (read-only globals, ring size, filter maps) and
//! verifies the program; [`attach`] attaches it through a bpf_link, so that the attachment
//! ends with the process however it ends; [`read_counters`] sums the per-CPU counters.
//!
//! Layout: `abi` is the record and counter layout shared with the C program, `record` parses
//! records back, `config` is what the program is loaded with, `load` loads, attaches and reads
//! the counters (the only part that needs a kernel).

mod abi;
mod config;
mod load;
mod record;

pub use abi::*;
pub use config::{port_bitmap, Config};
pub use load::{attach, load, read_counters, xdp_mode_arg, xdp_program, LoadError};
pub use record::{parse_record, payload_class, RecordError};

/// The compiled XDP object (ELF, BTF included), 8-byte aligned as aya's parser wants.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rebuilder.bpf.o"));

/// A bare program that counts (per-CPU array `drop_count`, one entry) and drops every packet:
/// the ceiling `cargo xtask bench` measures the real program against. Program name `drop_all`.
pub static DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drop.bpf.o"));

/// The AF_XDP experiment's program (`afxdp-rx`, in experiments/afxdp): program `xsk_redirect`
/// redirects UDP datagrams to port 4789 into the `xsks` map (`XSKMAP`, keyed by receive queue,
/// 64 entries) and passes everything else.
pub static XSK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk.bpf.o"));

#[cfg(test)]
mod tests;
