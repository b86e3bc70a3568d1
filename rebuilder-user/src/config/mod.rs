//! Settings: one structure, filled from defaults, then the TOML file (`--config`), then flags.
//!
//! Every key of the file has a flag of the same meaning; unknown keys and bad values are errors
//! that name the key (`reassembly.idle_timeout: invalid duration "5 parsecs"`).
//!
//! One job per file: `schema` is the structure and its defaults, `units` the size and duration
//! syntax, `load` the file, `validate` the checks across keys, `budget` the memory budget's
//! arithmetic, `derived` what other rooms take from the settings. This file holds the error type
//! and re-exports the lot, so callers write `config::Settings`, `config::ByteSize` and so on.
//! The settings depend on the types of the rooms they configure (to build their configs and
//! check with their own rules), never on a running pipeline.

use std::path::PathBuf;

mod budget;
mod derived;
mod load;
mod schema;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use budget::{
    CaptureKind, MemorySplit, CAPTURE_SHARE_DIVISOR, FLOW_SHARE_MIN_DIVISOR,
    IN_FLIGHT_SHARE_DIVISOR, MAX_DERIVED_CAPTURE_BUFFER, MIN_DERIVED_RECV_BUFFER,
    MIN_MEMORY_BUDGET, OTHER_THREADS, PROCESS_BASE, PROCESS_PER_THREAD, QUEUE_SHARE_DIVISOR,
    UPSTREAM_CONNECTION_BYTES, WORKING_MIN_DIVISOR,
};
pub use derived::{cores, default_workers};
pub use schema::{
    CaptureSettings, FilterSettings, FlowKeyMode, HealthCheckSettings, HttpSettings, JsonlSettings,
    LogFormat, LogSettings, ProxyProtocolSettings, ReassemblySettings, Settings, StatusSettings,
    UdpSettings, UpstreamSettings, XdpModeSetting, XdpSettings, DEFAULT_MEMORY_BUDGET,
    DEFAULT_STATUS_ADDR, XDP_RING_MAX, XDP_RING_MIN,
};
pub use units::{ByteSize, Span};

/// Why settings were refused. Every message names the file, the key or both, because the operator
/// has to find the line to fix; the CLI prints it as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}
