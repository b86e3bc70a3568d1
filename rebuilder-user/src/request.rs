//! What the pipeline produces: one HTTP request, rebuilt from the client's byte stream.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::h2::H2Origin;
use crate::proxy::ProxyInfo;
use crate::segment::Timestamp;

/// What a request waiting in an output queue costs beside its bytes (which the queue charges):
/// the shared allocation holding it and the queue's slot for its pointer. The budget sets this
/// aside for every request the queues may hold (`config::MemorySplit::queue_overhead`).
pub const QUEUED_REQUEST_BYTES: usize = crate::memory::alloc_size(
    2 * std::mem::size_of::<usize>() + std::mem::size_of::<RebuiltRequest>(),
) + 2 * std::mem::size_of::<usize>();

/// One HTTP/1.x request exactly as the client sent it, or one HTTP/2 stream's request rendered
/// as HTTP/1.1 (then `h2` says so).
#[derive(Clone, PartialEq, Eq)]
pub struct RebuiltRequest {
    /// Capture time of the packet that carried the first byte of the request.
    pub first_ts: Timestamp,
    /// Capture time of the packet that carried the last byte.
    pub last_ts: Timestamp,
    pub vni: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The request's bytes as the client sent them: request line, headers, blank line, body
    /// (chunked framing and trailers included). When `flags.body_over_limit` is set, only the
    /// head is here, with its framing rewritten (see `http`); when `flags.gap` is set, the bytes
    /// that arrived before the hole.
    pub raw: Bytes,
    /// Length of the head: request line, headers and the terminating blank line.
    pub head_len: usize,
    /// Where the method, target and Host header value sit inside `raw`.
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub host: Option<Range<usize>>,
    /// Minor version of HTTP/1.x: 0 or 1.
    pub version_minor: u8,
    /// Body length as sent on the wire (bytes after the head, chunk framing included). When the
    /// body was over the limit this is the original length, not what `raw` holds.
    pub body_len: u64,
    pub flags: RequestFlags,
    /// The PROXY protocol header its connection started with, if any (shared by every request
    /// of the connection).
    pub proxy: Option<Arc<ProxyInfo>>,
    /// Set when the request came from an HTTP/2 stream (h2c, gRPC): `raw` is then its HTTP/1.1
    /// rendering (see `h2::render`), and this keeps what that rendering cannot say.
    pub h2: Option<Arc<H2Origin>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFlags {
    /// The body exceeded the configured limit: `raw` holds the head only, with a header stating
    /// the original length and framing made consistent.
    pub body_over_limit: bool,
    /// A hole in the stream (loss, truncation, eviction) cut the request: never replayed
    /// upstream, only recorded where the output says so.
    pub gap: bool,
    /// httparse rejected the head but a lenient reading could still frame it; the bytes are
    /// exactly what the client sent, which is what a WAF must see.
    pub malformed: bool,
}

impl RebuiltRequest {
    pub fn method_bytes(&self) -> &[u8] {
        &self.raw[self.method.clone()]
    }

    pub fn target_bytes(&self) -> &[u8] {
        &self.raw[self.target.clone()]
    }

    pub fn host_bytes(&self) -> Option<&[u8]> {
        self.host.clone().map(|r| &self.raw[r])
    }

    pub fn head(&self) -> &[u8] {
        &self.raw[..self.head_len.min(self.raw.len())]
    }

    /// The client's IP: the source a PROXY header carried, else the connection's own source.
    pub fn client_ip(&self) -> IpAddr {
        self.proxy
            .as_ref()
            .and_then(|p| p.source)
            .map_or(self.client.ip(), |s| s.ip())
    }

    /// Whether this request may be sent to an upstream as a whole request.
    pub fn is_replayable(&self) -> bool {
        !self.flags.gap
    }
}

impl std::fmt::Debug for RebuiltRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RebuiltRequest({} -> {} vni={} {} {} len={} body={} {:?})",
            self.client,
            self.server,
            self.vni,
            String::from_utf8_lossy(self.method_bytes()),
            String::from_utf8_lossy(&self.target_bytes()[..self.target.len().min(64)]),
            self.raw.len(),
            self.body_len,
            self.flags
        )
    }
}
