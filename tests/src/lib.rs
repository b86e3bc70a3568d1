//! Test support for rebuilder, independent of the `rebuilder` crate so that it can judge it:
//!
//! - [`gen`]: a generator of mirrored HTTP traffic (VXLAN-encapsulated TCP conversations) with
//!   impairments and ground truth, capture writers and a UDP sender;
//! - [`sink`]: a TCP server standing in for the WAF, recording the exact bytes of every request;
//! - [`compare`]: what the sink received against the ground truth, as multisets;
//! - [`truth`]: the ground truth as a file;
//! - [`deploy`]: the AWS deployment's files, a Terraform evaluator and the user data's install,
//!   for the `deploy_*` tests;
//! - [`netns`]: network-namespace topologies where the kernel mirrors real traffic, and
//!   [`http_client`], the keep-alive client that drives them;
//! - [`lab`]: the mixed workload, its ledger and the report of `cargo xtask lab`;
//! - [`mirror`]: the shared run of the kernel-mirroring end-to-end tests (`tests/mirror_*.rs`);
//! - [`replay`]: the offline replay harness (`rebuilder replay --pcap` to a sink) and its mixed
//!   workload;
//! - [`readback`]: an independent decoder of generated captures, for checking the generator;
//! - [`hostile`]: replaying hostile captures under GNU time and judging what came out;
//! - [`faults`]: upstream faults, SIGTERM under load and a full XDP ring against a live rebuilder.
//!
//! This is the one place for test helpers: each file in `tests/tests/` is one feature, named
//! after it, holding its tests and at most a few helpers no other test uses.

pub mod compare;
pub mod deploy;
pub mod error;
pub mod faults;
pub mod gen;
pub mod h2_peer;
pub mod hostile;
pub mod http_client;
pub mod lab;
pub mod mirror;
pub mod netns;
pub mod process;
pub mod readback;
pub mod replay;
pub mod rng;
pub mod sink;
pub mod truth;

pub use error::GenError;
