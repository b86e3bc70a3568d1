//! One request on one connection: write its bytes as they are, then read the response to its
//! end with `crate::http1::ResponseFramer` (bytes discarded as they pass), so the connection
//! can carry the next request. Knows nothing of pools, retries or metrics.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::failure::Failure;
use super::pool::Conn;
use crate::http1::{ResponseError, ResponseFramer};

/// Largest response head the framer accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Unconsumed response bytes beyond this mean the framer is not making progress.
const MAX_RESPONSE_BUFFER: usize = MAX_RESPONSE_HEAD + READ_CHUNK;

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) keep_alive: bool,
}

/// Writes `payload` and reads its response to the end.
pub(super) async fn exchange(
    conn: &mut Conn,
    payload: &[u8],
    is_head: bool,
) -> Result<Answer, Failure> {
    conn.stream
        .write_all(payload)
        .await
        .map_err(Failure::Write)?;
    let mut framer = ResponseFramer::new(is_head, MAX_RESPONSE_HEAD);
    conn.buf.clear();
    let mut got_bytes = false;
    loop {
        if conn.buf.len() >= MAX_RESPONSE_BUFFER {
            return Err(Failure::Invalid(format!(
                "framer made no progress on {} bytes",
                conn.buf.len()
            )));
        }
        conn.buf.reserve(READ_CHUNK);
        let n = conn
            .stream
            .read_buf(&mut conn.buf)
            .await
            .map_err(|e| Failure::Reset {
                got_bytes,
                source: Some(e),
            })?;
        if n == 0 {
            if !got_bytes {
                return Err(Failure::Reset {
                    got_bytes,
                    source: None,
                });
            }
            return match framer.on_eof() {
                Ok(status) => Ok(Answer {
                    status,
                    keep_alive: false,
                }),
                Err(ResponseError::Incomplete) => Err(Failure::Reset {
                    got_bytes,
                    source: None,
                }),
                Err(e) => Err(Failure::Invalid(e.to_string())),
            };
        }
        got_bytes = true;
        // Feed until the framer stops consuming: one read may hold an interim 1xx response and
        // the final one.
        loop {
            let p = framer
                .feed(&conn.buf)
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            let consumed = p.consumed.min(conn.buf.len());
            conn.buf.drain(..consumed);
            if p.complete {
                // Bytes after the response were not asked for: the connection is out of step.
                let keep_alive = p.keep_alive && conn.buf.is_empty();
                return Ok(Answer {
                    status: p.status.unwrap_or(0),
                    keep_alive,
                });
            }
            if consumed == 0 || conn.buf.is_empty() {
                break;
            }
        }
    }
}
