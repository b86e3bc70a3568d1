//! Framing of the upstream's responses: the upstream output reads and discards each response,
//! but must know exactly where it ends to reuse the connection. Built from the same head-end
//! scanner, chunked decoder and field syntax as request framing (siblings in `http1`).
//!
//! The caller keeps the unconsumed bytes and feeds them again with whatever arrived since; the
//! framer remembers how far it already searched a partial head, so a trickled head is searched
//! once, and body bytes are reported consumed as they pass, so the caller never holds more than
//! one head (bounded by `max_head_bytes`) plus one read.

use std::mem::MaybeUninit;

use super::chunked::ChunkedDecoder;
use super::fields::{list_items, parse_decimal};
use super::head_end::HeadEnd;

/// Why a response could not be framed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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

/// Headers parsed on the stack before falling back to the heap.
const STACK_HEADERS: usize = 64;
/// More headers than this in one response is treated as an invalid head.
const MAX_RESPONSE_HEADERS: usize = 1024;

/// Incremental framer for one response: 1xx interim responses are skipped, the body is found by
/// the request method (HEAD has none), the status (1xx, 204, 304 have none), chunked encoding,
/// Content-Length, or the connection's close.
///
/// `101 Switching Protocols` is final, not interim: the connection then speaks another protocol,
/// so the response completes there with `keep_alive` false.
pub struct ResponseFramer {
    request_was_head: bool,
    max_head_bytes: usize,
    state: State,
    /// Bytes of the current head (at the front of the caller's buffer) already searched.
    scanned: usize,
    head_end: HeadEnd,
    status: Option<u16>,
    keep_alive: bool,
}

enum State {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Complete,
    Failed(ResponseError),
}

/// What a final response head says about the body and the connection.
struct HeadFacts {
    code: u16,
    version_minor: u8,
    close: bool,
    keep_alive: bool,
    transfer_encoding: bool,
    chunked: bool,
    content_length: Option<u64>,
}

impl ResponseFramer {
    pub fn new(request_was_head: bool, max_head_bytes: usize) -> Self {
        Self {
            request_was_head,
            max_head_bytes,
            state: State::Head,
            scanned: 0,
            head_end: HeadEnd::default(),
            status: None,
            keep_alive: false,
        }
    }

    /// Feeds buffered bytes. Call again with the unconsumed rest plus new bytes until
    /// `complete`. `keep_alive` is meaningful once `status` is set. After an error, every call
    /// returns the same error.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Progress, ResponseError> {
        let mut consumed = 0;
        loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Complete => break,
                State::Head => match self.read_head(rest) {
                    Ok(Some(n)) => consumed += n,
                    Ok(None) => break,
                    Err(e) => {
                        self.state = State::Failed(e.clone());
                        return Err(e);
                    }
                },
                State::Length(remaining) => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    consumed += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        break;
                    }
                    self.state = State::Complete;
                }
                State::Chunked(dec) => match dec.feed(rest) {
                    Ok(n) => {
                        consumed += n;
                        if !dec.is_done() {
                            break;
                        }
                        self.state = State::Complete;
                    }
                    Err(_) => {
                        self.state = State::Failed(ResponseError::InvalidChunked);
                        return Err(ResponseError::InvalidChunked);
                    }
                },
                State::UntilClose => {
                    consumed += rest.len();
                    break;
                }
            }
        }
        Ok(Progress {
            consumed,
            complete: matches!(self.state, State::Complete),
            status: self.status,
            keep_alive: self.keep_alive,
        })
    }

    /// The peer closed the connection. Ok(status) when that completes a close-delimited body
    /// (or the response was already complete).
    pub fn on_eof(&mut self) -> Result<u16, ResponseError> {
        match self.state {
            State::UntilClose | State::Complete => {
                self.state = State::Complete;
                self.status.ok_or(ResponseError::Incomplete)
            }
            State::Failed(ref e) => Err(e.clone()),
            _ => Err(ResponseError::Incomplete),
        }
    }

    /// Looks for the end of the head at the front of `rest`; Some(head length) once it is read.
    fn read_head(&mut self, rest: &[u8]) -> Result<Option<usize>, ResponseError> {
        if rest.len() < self.scanned {
            // The caller gave back less than it was asked to keep: search again from the start.
            self.scanned = 0;
            self.head_end = HeadEnd::default();
        }
        let window_end = rest.len().min(self.max_head_bytes);
        let new = rest.get(self.scanned..window_end).unwrap_or_default();
        let Some(e) = self.head_end.scan(new) else {
            self.scanned = window_end;
            if rest.len() >= self.max_head_bytes {
                return Err(ResponseError::HeadTooLarge(self.max_head_bytes));
            }
            return Ok(None);
        };
        let head_len = self.scanned + e;
        self.scanned = 0;
        self.head_end = HeadEnd::default();
        let facts = parse_head(rest.get(..head_len).unwrap_or_default())?;
        self.apply(facts)?;
        Ok(Some(head_len))
    }

    fn apply(&mut self, f: HeadFacts) -> Result<(), ResponseError> {
        if (100..200).contains(&f.code) && f.code != 101 {
            // Interim: the final response follows on the same connection.
            return Ok(());
        }
        self.status = Some(f.code);
        self.keep_alive = !f.close && (f.version_minor >= 1 || f.keep_alive);
        self.state = if f.code == 101 {
            self.keep_alive = false;
            State::Complete
        } else if self.request_was_head || f.code == 204 || f.code == 304 {
            State::Complete
        } else if f.transfer_encoding {
            if f.chunked {
                State::Chunked(ChunkedDecoder::new())
            } else {
                // RFC 9112 §6.3: a response whose final coding is not chunked ends at close.
                self.keep_alive = false;
                State::UntilClose
            }
        } else {
            match f.content_length {
                Some(0) => State::Complete,
                Some(n) => State::Length(n),
                None => {
                    self.keep_alive = false;
                    State::UntilClose
                }
            }
        };
        Ok(())
    }
}

fn parse_head(head: &[u8]) -> Result<HeadFacts, ResponseError> {
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    let mut stack: [MaybeUninit<httparse::Header<'_>>; STACK_HEADERS] =
        [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match cfg.parse_response_with_uninit_headers(&mut resp, head, &mut stack) {
        Ok(status) => facts(status, &resp, head.len()),
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap = vec![httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut resp = httparse::Response::new(&mut heap);
            match cfg.parse_response(&mut resp, head) {
                Ok(status) => facts(status, &resp, head.len()),
                Err(e) => Err(ResponseError::InvalidHead(e.to_string())),
            }
        }
        Err(e) => Err(ResponseError::InvalidHead(e.to_string())),
    }
}

fn facts(
    status: httparse::Status<usize>,
    resp: &httparse::Response<'_, '_>,
    head_len: usize,
) -> Result<HeadFacts, ResponseError> {
    if status != httparse::Status::Complete(head_len) {
        return Err(ResponseError::InvalidHead(
            "head does not end at its blank line".into(),
        ));
    }
    let (Some(code), Some(version_minor)) = (resp.code, resp.version) else {
        return Err(ResponseError::InvalidHead("no status line".into()));
    };
    let mut f = HeadFacts {
        code,
        version_minor,
        close: false,
        keep_alive: false,
        transfer_encoding: false,
        chunked: false,
        content_length: None,
    };
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for t in list_items(h.value) {
                f.close |= t.eq_ignore_ascii_case(b"close");
                f.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.transfer_encoding = true;
            if let Some(last) = list_items(h.value).last() {
                f.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for item in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                let n = parse_decimal(item)
                    .ok_or_else(|| ResponseError::InvalidHead("invalid Content-Length".into()))?;
                if f.content_length.is_some_and(|m| m != n) {
                    return Err(ResponseError::InvalidHead(
                        "conflicting Content-Length".into(),
                    ));
                }
                f.content_length = Some(n);
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

    /// Plays the caller: keeps unconsumed bytes, appends `pieces` one at a time, feeds. Returns
    /// the last progress, the total consumed and the most bytes the caller ever had to keep.
    fn drive(
        f: &mut ResponseFramer,
        pieces: &[&[u8]],
    ) -> Result<(Progress, usize, usize), ResponseError> {
        let mut buf = Vec::new();
        let mut total = 0;
        let mut kept = 0;
        let mut last = None;
        for piece in pieces {
            buf.extend_from_slice(piece);
            let p = f.feed(&buf)?;
            buf.drain(..p.consumed);
            total += p.consumed;
            kept = kept.max(buf.len());
            last = Some(p);
            if p.complete {
                break;
            }
        }
        Ok((last.expect("at least one piece"), total, kept))
    }

    /// Frames `input` (one response followed by NEXT) cut at every byte, and whole.
    fn at_every_split(head_request: bool, input: &[u8], check: impl Fn(Progress, usize)) {
        let full = [input, NEXT].concat();
        for cut in 0..=full.len() {
            let mut f = ResponseFramer::new(head_request, 8192);
            let (p, total, _) = drive(&mut f, &[&full[..cut], &full[cut..]]).unwrap();
            check(p, total);
        }
    }

    #[test]
    fn continue_then_final_response() {
        let input =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        at_every_split(false, input, |p, total| {
            assert!(p.complete);
            assert_eq!(total, input.len());
            assert_eq!((p.status, p.keep_alive), (Some(200), true));
        });
        // After the interim response alone, no final status yet.
        let mut f = ResponseFramer::new(false, 8192);
        let p = f.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2").unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 25,
                complete: false,
                status: None,
                keep_alive: false
            }
        );
    }

    #[test]
    fn head_request_has_no_body() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n";
        at_every_split(true, input, |p, total| {
            assert!(p.complete && p.keep_alive);
            assert_eq!(total, input.len());
        });
    }

    #[test]
    fn no_body_statuses() {
        for input in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
        ] {
            at_every_split(false, input, |p, total| {
                assert!(p.complete && p.keep_alive);
                assert_eq!(total, input.len());
            });
        }
    }

    #[test]
    fn chunked_body_with_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        at_every_split(false, input, |p, total| {
            assert!(p.complete && p.keep_alive);
            assert_eq!(total, input.len());
            assert_eq!(p.status, Some(200));
        });
    }

    #[test]
    fn content_length_body() {
        let input = b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found";
        at_every_split(false, input, |p, total| {
            assert!(p.complete && p.keep_alive);
            assert_eq!((total, p.status), (input.len(), Some(404)));
        });
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        let mut f = ResponseFramer::new(false, 8192);
        let (p, total, _) = drive(&mut f, &[head, b"some", b" body"]).unwrap();
        assert!(!p.complete && !p.keep_alive);
        assert_eq!(total, head.len() + 9);
        assert_eq!(f.on_eof(), Ok(200));
        let p = f.feed(b"").unwrap();
        assert!(p.complete);
        // Not chunked as the final coding: also until close.
        let mut f = ResponseFramer::new(false, 8192);
        let p = f
            .feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef")
            .unwrap();
        assert!(!p.complete && !p.keep_alive);
        assert_eq!(f.on_eof(), Ok(200));
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |input: &[u8]| {
            let mut f = ResponseFramer::new(false, 8192);
            let p = f.feed(input).unwrap();
            assert!(p.complete);
            p.keep_alive
        };
        assert!(ka(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        // 101 is final: the connection is no longer HTTP.
        assert!(!ka(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
    }

    #[test]
    fn large_body_passes_through_bounded_buffer() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
        let body = vec![b'z'; 1_000_000];
        let mut pieces: Vec<&[u8]> = vec![head];
        pieces.extend(body.chunks(1500));
        pieces.push(NEXT);
        let mut f = ResponseFramer::new(false, 8192);
        let (p, total, kept) = drive(&mut f, &pieces).unwrap();
        assert!(p.complete);
        assert_eq!(total, head.len() + body.len());
        assert_eq!(kept, 0);
    }

    #[test]
    fn trickled_head_is_searched_once() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            head.extend_from_slice(format!("X-H{i}: value\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut f = ResponseFramer::new(false, 8192);
        let pieces: Vec<&[u8]> = head.chunks(1).collect();
        let (p, total, kept) = drive(&mut f, &pieces).unwrap();
        assert!(p.complete);
        assert_eq!(total, head.len());
        assert_eq!(kept, head.len() - 1);
    }

    #[test]
    fn errors() {
        let mut f = ResponseFramer::new(false, 8192);
        assert!(matches!(
            f.feed(b"HTTX/1.1 200 OK\r\n\r\n"),
            Err(ResponseError::InvalidHead(_))
        ));
        assert!(matches!(
            f.feed(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ResponseError::InvalidHead(_))
        ));

        let mut f = ResponseFramer::new(false, 32);
        assert_eq!(
            f.feed(b"HTTP/1.1 200 OK\r\nX-Long: 0123456789"),
            Err(ResponseError::HeadTooLarge(32))
        );

        let mut f = ResponseFramer::new(false, 8192);
        let bad_len = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            f.feed(bad_len),
            Err(ResponseError::InvalidHead(_))
        ));

        let mut f = ResponseFramer::new(false, 8192);
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n";
        assert_eq!(f.feed(bad_chunk), Err(ResponseError::InvalidChunked));

        let mut f = ResponseFramer::new(false, 8192);
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let p = f.feed(partial).unwrap();
        assert_eq!((p.consumed, p.complete), (partial.len(), false));
        assert_eq!(f.on_eof(), Err(ResponseError::Incomplete));
        let mut f = ResponseFramer::new(false, 8192);
        assert_eq!(f.on_eof(), Err(ResponseError::Incomplete));
    }
}
