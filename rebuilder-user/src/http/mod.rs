//! HTTP/1.x framing of a client's byte stream into requests (and, for the upstream output,
//! of a server's response stream so that keep-alive connections can be reused).
//!
//! INTERFACE STUB: the signatures below are the contract; bodies are being written.

pub mod response;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::reassembly::StreamEvent;
use crate::request::RebuiltRequest;

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
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            max_body_bytes: 16 * 1024 * 1024,
            original_length_header: "X-Rebuilder-Original-Body-Length".to_string(),
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
}

/// Frames one client-to-server stream into requests.
pub struct RequestFramer {
    _ctx: FlowContext,
    _limits: Arc<HttpLimits>,
}

impl RequestFramer {
    /// `at_stream_start` is true when the stream began with a SYN, so its first byte is the
    /// first byte of a request; otherwise (pickup mid-stream) the framer looks for the next
    /// request line first.
    pub fn new(ctx: FlowContext, limits: Arc<HttpLimits>, at_stream_start: bool) -> Self {
        let _ = at_stream_start;
        Self {
            _ctx: ctx,
            _limits: limits,
        }
    }

    /// Consumes one stream event; complete requests (and requests cut by a gap, flagged) are
    /// pushed to `out`.
    pub fn on_event(
        &mut self,
        ev: StreamEvent,
        out: &mut Vec<RebuiltRequest>,
        stats: &mut HttpStats,
    ) {
        let _ = (ev, out, stats);
        todo!("http framer")
    }

    /// Bytes held for a request not yet complete: counted against the memory budget.
    pub fn buffered_bytes(&self) -> usize {
        0
    }

    /// True once the stream no longer carries HTTP/1.x requests to frame (upgrade, CONNECT,
    /// HTTP/2 preface, a response stream, another protocol): the caller may stop buffering it.
    pub fn is_done(&self) -> bool {
        false
    }
}
