//! The XDP input (DESIGN §5): loads `rebuilder-ebpf`'s program, attaches it to the interface
//! receiving the mirrored traffic, and turns the records it writes into the BPF ring buffer
//! into [`Segment`](crate::segment::Segment)s.
//!
//! - Attaching (`attach`): [`plan_attach`] decides which modes to try from the setting and
//!   the interface's facts ([`super::iface`]); [`run_plan`] tries them in order. Both are pure,
//!   so the fallback logic is tested without a kernel. `auto` tries driver (native) mode and
//!   falls back to generic mode, saying why; a busy interface (another XDP program) is an error
//!   in every mode, never a reason to fall back.
//! - Reading (`reader`): [`XdpCapture::open`] loads and attaches on the caller's thread, so
//!   errors come before anything starts; [`XdpCapture::into_reader`] registers the ring buffer
//!   with the tokio runtime of the capture thread. [`XdpReader::drain`] copies a batch of
//!   records into one buffer (`batch`, of a pool of two, counted in the memory budget) and
//!   hands out slices of it, because ring memory is released as soon as a record is consumed;
//!   `record` turns each record into a segment.
//! - The attachment is a bpf_link ([`rebuilder_ebpf::attach`]) held by the reader: it ends when
//!   the reader is dropped or the process dies, however it dies.
//! - `config` is what the input is opened with, `metrics` what it publishes, and `check`
//!   the `check-xdp` report.

mod attach;
mod batch;
mod check;
mod config;
mod metrics;
mod reader;
mod record;

pub use attach::{
    errno_of, error_chain, is_busy, plan_attach, run_plan, AttachMode, AttachPlan, Attached,
    AttemptError, XdpError,
};
pub use batch::{RecordBatch, BATCH_BYTES, POOL_BATCHES, POOL_BYTES};
pub use check::{check, CheckReport};
pub use config::XdpConfig;
pub use metrics::{AttachLabels, DriverLabels, ErrorLabel, IfaceLabel, XdpMetrics};
pub use reader::{Drained, XdpCapture, XdpReader, RING_POLL};
pub use record::{
    monotonic_ns, EpochClock, ReaderStats, RecordConverter, BAD_RECORD, RECORD_ERRORS,
};

#[cfg(test)]
mod tests;
