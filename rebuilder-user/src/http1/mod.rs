//! HTTP/1.x message framing shared by both directions: where a head ends, how a chunked body
//! ends, the field syntax framing reads, and the framer of the upstream's responses.
//!
//! Two rooms frame HTTP/1.x messages: `http` rebuilds the client's requests from captured
//! streams, and `output::upstream` reads the WAF's responses to reuse its connections. The
//! wire rules they share live here, so neither imports the other and a fix to, say, chunked
//! framing reaches both. Framing only: nothing here copies a body, knows about captures,
//! streams or outputs, or counts anything; it depends on httparse and memchr alone.
//!
//! - `head_end`: the blank line that ends a head, searched incrementally.
//! - `chunked`: where a chunked body ends (RFC 9112 §7.1), without decoding it.
//! - `fields`: comma-separated lists and Content-Length numbers.
//! - [`response`]: [`ResponseFramer`], where each response on a keep-alive connection ends.

pub(crate) mod chunked;
pub(crate) mod fields;
pub(crate) mod head_end;
pub mod response;

pub use response::{Progress, ResponseError, ResponseFramer};
