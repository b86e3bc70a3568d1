//! Upstream faults and overload against a live `rebuilder run`, measured:
//!
//! - [`run_fault`]: `rebuilder run --udp` on loopback with a steady stream of mirrored requests,
//!   replaying to a [`Sink`]; the upstream is healthy, then refuses, resets, hangs, answers
//!   slowly or answers garbage for a while, then heals. Measured: drops by reason and error
//!   kind, the queue's depth against its bounds, the process's RSS while the upstream is down,
//!   how long replay takes to recover once it heals (at most [`MAX_RECOVERY`]), and that every
//!   request is accounted for. `cargo test` runs each for seconds; `cargo xtask hostile
//!   --outage 5m` runs one for minutes.
//! - [`run_sigterm_under_load`]: SIGTERM while the queue is full behind a slow upstream: the
//!   process drains within `--drain-timeout`, exits 0, and counts what it abandoned.
//! - [`run_xdp_ring_full`] (root): a tiny XDP ring buffer and a burst into a veth: the full
//!   ring is counted, and requests sent afterwards are still rebuilt.
//! - [`run_live_flood`]: a flood of mirrored frames as fast as loopback takes them: the peak
//!   RSS of a live rebuilder.
//!
//! One module per fault kind (`upstream`, `sigterm`, `xdp_ring`, `live_flood`), over the
//! shared steady load (`load`) and the probes of a running rebuilder (`probe`: its status
//! server, metrics, summary, RSS). Drives the `rebuilder` binary from outside, as an operator
//! would; depends on the generator, the sink and the namespaces of this crate, never on
//! rebuilder's own code.

mod live_flood;
mod load;
mod probe;
mod sigterm;
mod upstream;
mod xdp_ring;

pub use live_flood::{run_live_flood, LiveFloodReport};
pub use load::fault_request;
pub use probe::{metric, peak_rss_kib, rss_kib, status_get};
pub use sigterm::{run_sigterm_under_load, SigtermReport};
pub use upstream::{run_fault, Fault, FaultConfig, FaultReport, RssTrace, MAX_RECOVERY};
pub use xdp_ring::{run_xdp_ring_full, RingFullReport};

use crate::netns;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Gen(#[from] crate::GenError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
}

fn setup(what: impl Into<String>) -> FaultError {
    FaultError::Setup(what.into())
}
