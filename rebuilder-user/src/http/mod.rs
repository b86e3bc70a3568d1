//! `http`: rebuilding the client's requests from one direction of a reassembled stream.
//!
//! A worker owns one [`RequestFramer`] per client-to-server stream and feeds it the stream's
//! events; complete requests come out as [`RebuiltRequest`](crate::request::RebuiltRequest)s
//! whose bytes are exactly what the client sent. HTTP/1.x is framed here; a stream that turns
//! out to be HTTP/2 is handed to `crate::h2`. The wire rules shared with response framing
//! (head end, chunked bodies, field syntax) are in `crate::http1`.
//!
//! - `framer`: the state machine, one child module per phase (head, body, resync).
//! - `request_head`: reading a delimited request head, and rewriting it when its body is not
//!   kept.
//! - `start_line`: recognising a request (or status) line byte by byte while resynchronising.
//!
//! Depends on `reassembly` (its events), `request` (its output), `h2` and `http1`; nothing
//! downstream (filter, outputs) and no metrics: counts go into [`HttpStats`], which the worker
//! publishes.

mod framer;
mod request_head;
mod start_line;

use std::net::SocketAddr;

use crate::h2::H2Stats;

pub use framer::RequestFramer;

/// Limits on what one request may hold. Defaults are sized for real traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus headers plus the blank line.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Body bytes as sent (chunk framing included).
    pub max_body_bytes: u64,
    /// Header added to a request whose body was over the limit, stating the original body
    /// length.
    pub original_length_header: String,
    /// HTTP/2: the largest HPACK dynamic table a client's size update may ask for (the
    /// server's SETTINGS_HEADER_TABLE_SIZE, 4096 unless it advertised more).
    pub h2_max_table_size: usize,
    /// HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS
    /// of common servers is 100 to 250); more are refused, counted.
    pub h2_max_streams: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            max_body_bytes: 16 * 1024 * 1024,
            original_length_header: "X-Rebuilder-Original-Body-Length".to_string(),
            h2_max_table_size: 4096,
            h2_max_streams: 256,
        }
    }
}

/// Who the stream belongs to, stamped on every request it yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowContext {
    pub vni: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Counts of everything the framer saw, dropped or skipped. Plain integers: the worker owns
/// one and publishes it to the metrics now and then, so the hot path touches no atomics.
///
/// `requests` counts every record pushed to `out`, flagged ones included; `malformed_replayed`,
/// `body_over_limit` and `dropped_gap` say how many of those (or, for `dropped_gap`, of requests
/// that had no complete head) were special. The other `dropped_*` counters count requests for
/// which no record was pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub requests: u64,
    pub malformed_replayed: u64,
    pub body_over_limit: u64,
    pub expect_continue: u64,
    pub dropped_gap: u64,
    pub dropped_head_too_large: u64,
    pub dropped_too_many_headers: u64,
    pub dropped_invalid: u64,
    pub dropped_incomplete: u64,
    pub resync_skipped_bytes: u64,
    pub h2_preface: u64,
    pub upgrades: u64,
    pub connects: u64,
    pub response_streams: u64,
    pub non_http_streams: u64,
    /// HTTP/2 connections, frames and streams (`h2`).
    pub h2: H2Stats,
}

/// Appends without letting the allocation outgrow `limit` (doubling would overshoot it by up to
/// twice): the per-stream memory bound is on the allocation, not just the bytes.
pub(crate) fn extend_bounded(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let target = buf.capacity().saturating_mul(2).min(limit).max(need);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}
