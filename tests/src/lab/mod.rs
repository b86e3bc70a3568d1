//! The lab behind `cargo xtask lab`: the whole DESIGN §8 picture ([`MirrorLab`]) with a
//! mixed workload driven through it for a while, a live progress line, and at the end a table
//! of what every node did and whether every request reached the WAF sink byte for byte,
//! exactly once.
//!
//! ```text
//! Lab::start(LabOptions)   build the namespaces, start the origin, the sink and N rebuilders
//!   .run(&interrupt, …)    drive the workload for the duration (optionally kill -9 a node
//!                          mid-run), wait for the sink, scrape every node → LabReport
//! ```
//!
//! The tests use the same pieces ([`Workload`], [`Ledger`], [`NodeFigures`]) to assert exact
//! figures.
//!
//! [`MirrorLab`]: crate::netns::MirrorLab
//! [`Workload`]: workload::Workload
//! [`Ledger`]: ledger::Ledger
//! [`NodeFigures`]: metrics::NodeFigures

pub mod h2;
pub mod ledger;
pub mod metrics;
mod report;
mod run;
pub mod workload;

pub use report::{LabReport, NodeRow, NodeState};
pub use run::{Kill, Lab, LabOptions, Progress};
