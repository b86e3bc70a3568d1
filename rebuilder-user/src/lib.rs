//! rebuilder: turns AWS VPC Traffic Mirroring packets (VXLAN) back into the HTTP requests they
//! carry and replays them, byte for byte.
//!
//! Data flows one way (DESIGN §3):
//! `capture` → `dispatch` → workers (`reassembly` → `proxy` → `http`) → `filter` → `output`.

pub mod capture;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod filter;
pub mod h2;
pub mod http;
pub mod http1;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod proxy;
pub mod reassembly;
pub mod request;
pub mod room;
pub mod segment;
pub mod status;
pub mod worker;
