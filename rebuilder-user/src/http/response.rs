//! Framing of the upstream's responses: the upstream output reads and discards each response,
//! but must know exactly where it ends to reuse the connection.
//!
//! INTERFACE STUB: the signatures below are the contract; bodies are being written.

/// Why a response could not be framed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("invalid response head: {0}")]
    InvalidHead(String),
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid chunked encoding in response body")]
    InvalidChunked,
    #[error("connection closed before the response was complete")]
    Incomplete,
}

/// How far one call to [`ResponseFramer::feed`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input consumed (the caller discards them).
    pub consumed: usize,
    /// The final (non-1xx) response is complete; bytes after `consumed` belong to the next one.
    pub complete: bool,
    /// Status of the final response, once its head has been read.
    pub status: Option<u16>,
    /// Whether the connection may carry another request after this response (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with keep-alive, body not delimited by close).
    pub keep_alive: bool,
}

/// Incremental framer for one response: 1xx interim responses are skipped, the body is found by
/// the request method (HEAD has none), the status (1xx, 204, 304 have none), chunked encoding,
/// Content-Length, or the connection's close.
pub struct ResponseFramer {
    _request_was_head: bool,
    _max_head_bytes: usize,
}

impl ResponseFramer {
    pub fn new(request_was_head: bool, max_head_bytes: usize) -> Self {
        Self {
            _request_was_head: request_was_head,
            _max_head_bytes: max_head_bytes,
        }
    }

    /// Feeds buffered bytes. Call again with the unconsumed rest plus new bytes until
    /// `complete`.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Progress, ResponseError> {
        let _ = buf;
        todo!("response framer")
    }

    /// The peer closed the connection. Ok(status) when that completes a close-delimited body.
    pub fn on_eof(&mut self) -> Result<u16, ResponseError> {
        todo!("response framer eof")
    }
}
