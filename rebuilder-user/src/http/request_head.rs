//! Reading a complete, delimited request head: strictly with httparse, or leniently when
//! httparse refuses it, and rewriting its framing when the body is not kept.
//!
//! Pure: bytes in, ranges into them out. Depends on httparse and the field syntax of
//! `crate::http1`; the framer (`super::framer`) decides what to do with the result.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::http1::fields::{list_items, parse_decimal};

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Conflicting or unparsable Content-Length, or a Transfer-Encoding whose final coding is not
    /// chunked: nobody can tell where the body ends.
    Invalid,
}

/// What the framer needs from a head. Ranges index the head buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeadInfo {
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub host: Option<Range<usize>>,
    pub version_minor: u8,
    pub framing: Framing,
    /// Value of every Content-Length header (trimmed), for the over-limit rewrite.
    pub content_length_values: Vec<Range<usize>>,
    /// Whole line (line ending included) of every Transfer-Encoding header.
    pub transfer_encoding_lines: Vec<Range<usize>>,
    pub expect_continue: bool,
    pub upgrade: bool,
    /// The upgrade asked for is `h2c` alone (RFC 7540 §3.2): the preface may follow.
    pub upgrade_h2c: bool,
    pub connect: bool,
    /// httparse refused the head; a line scan read it.
    pub malformed: bool,
    /// The request line ends with CRLF (else a bare LF).
    pub crlf: bool,
}

/// Why a head cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooManyHeaders,
    /// Neither httparse nor the lenient reading accepts it as a request.
    Invalid,
}

/// Headers parsed on the stack before falling back to the heap: covers almost every request
/// without allocating.
const STACK_HEADERS: usize = 64;

/// Reads a delimited head (request line to blank line, nothing after it).
pub(crate) fn read_head(
    cfg: &httparse::ParserConfig,
    head: &[u8],
    max_headers: usize,
) -> Result<HeadInfo, HeadError> {
    match parse_strict(cfg, head, max_headers) {
        Strict::Ok(info) => Ok(info),
        Strict::TooManyHeaders => Err(HeadError::TooManyHeaders),
        Strict::Invalid => parse_lenient(head, max_headers),
    }
}

enum Strict {
    Ok(HeadInfo),
    TooManyHeaders,
    Invalid,
}

fn parse_strict(cfg: &httparse::ParserConfig, head: &[u8], max_headers: usize) -> Strict {
    let mut stack: [MaybeUninit<httparse::Header<'_>>; STACK_HEADERS] =
        [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let first = max_headers.min(STACK_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let res = cfg.parse_request_with_uninit_headers(
        &mut req,
        head,
        stack.get_mut(..first).unwrap_or_default(),
    );
    match res {
        Ok(status) => strict_result(status, &req, head),
        Err(httparse::Error::TooManyHeaders) if max_headers > STACK_HEADERS => {
            let mut heap = vec![httparse::EMPTY_HEADER; max_headers];
            let mut req = httparse::Request::new(&mut heap);
            match cfg.parse_request(&mut req, head) {
                Ok(status) => strict_result(status, &req, head),
                Err(httparse::Error::TooManyHeaders) => Strict::TooManyHeaders,
                Err(_) => Strict::Invalid,
            }
        }
        Err(httparse::Error::TooManyHeaders) => Strict::TooManyHeaders,
        Err(_) => Strict::Invalid,
    }
}

fn strict_result(
    status: httparse::Status<usize>,
    req: &httparse::Request<'_, '_>,
    head: &[u8],
) -> Strict {
    // The caller found the blank line, so anything but a parse ending exactly there means
    // httparse and the delimiter scan disagree about this head: let the lenient path judge it.
    match status {
        httparse::Status::Complete(n) if n == head.len() => {}
        _ => return Strict::Invalid,
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Strict::Invalid;
    };
    let (Some(method), Some(target)) = (
        range_in(head, method.as_bytes()),
        range_in(head, path.as_bytes()),
    ) else {
        return Strict::Invalid;
    };
    let mut b = HeadBuilder::new(head, method, target, version);
    for h in req.headers.iter() {
        let (Some(name), Some(value)) =
            (range_in(head, h.name.as_bytes()), range_in(head, h.value))
        else {
            return Strict::Invalid;
        };
        let line_end = head
            .get(value.end..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
            .map_or(head.len(), |p| value.end + p + 1);
        b.header(name.clone(), value, name.start..line_end);
    }
    Strict::Ok(b.finish(false))
}

/// Where `part` (a sub-slice of `whole`) sits inside `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// A head httparse refused: accepted only if the request line still reads as
/// `TOKEN SP something SP HTTP/1.x`, so a hostile request reaches the WAF as it was sent.
/// Header lines are read as `name ":" value`; lines without a colon and folded continuation
/// lines are kept in the bytes but carry no meaning here.
fn parse_lenient(head: &[u8], max_headers: usize) -> Result<HeadInfo, HeadError> {
    let mut lines = Lines { head, pos: 0 };
    let (line, _) = lines.next().ok_or(HeadError::Invalid)?;
    let (method, target, version) = lenient_request_line(head, line).ok_or(HeadError::Invalid)?;
    let mut b = HeadBuilder::new(head, method, target, version);
    let mut count = 0usize;
    for (content, whole) in lines {
        let Some(text) = head.get(content.clone()) else {
            break;
        };
        if text.is_empty() {
            break;
        }
        if matches!(text.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', text) else {
            continue;
        };
        count += 1;
        if count > max_headers {
            return Err(HeadError::TooManyHeaders);
        }
        let name = trim(head, content.start..content.start + colon);
        let value = trim(head, content.start + colon + 1..content.end);
        b.header(name, value, whole);
    }
    Ok(b.finish(true))
}

/// Splits a head into lines: (content without line ending, whole line).
struct Lines<'a> {
    head: &'a [u8],
    pos: usize,
}

impl Iterator for Lines<'_> {
    type Item = (Range<usize>, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.head.get(self.pos..).filter(|r| !r.is_empty())?;
        let start = self.pos;
        let (content_end, end) = match memchr::memchr(b'\n', rest) {
            Some(p) => {
                let lf = start + p;
                let content_end = if lf > start && self.head.get(lf - 1) == Some(&b'\r') {
                    lf - 1
                } else {
                    lf
                };
                (content_end, lf + 1)
            }
            None => (self.head.len(), self.head.len()),
        };
        self.pos = end;
        Some((start..content_end, start..end))
    }
}

fn lenient_request_line(
    head: &[u8],
    line: Range<usize>,
) -> Option<(Range<usize>, Range<usize>, u8)> {
    let text = head.get(line.clone())?;
    let method_len = text.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == 0 || text.get(method_len) != Some(&b' ') {
        return None;
    }
    let version_at = text.len().checked_sub(8)?;
    let version = text.get(version_at..)?;
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => *d - b'0',
        _ => return None,
    };
    if version_at <= method_len || text.get(version_at - 1) != Some(&b' ') {
        return None;
    }
    let target = trim_spaces(head, line.start + method_len..line.start + version_at);
    if target.is_empty() {
        return None;
    }
    // Only 0 and 1 exist; anything newer is read with 1.1 semantics, and `raw` keeps the truth.
    Some((line.start..line.start + method_len, target, minor.min(1)))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_spaces(head: &[u8], r: Range<usize>) -> Range<usize> {
    let s = head.get(r.clone()).unwrap_or_default();
    let lead = s.iter().take_while(|&&b| b == b' ').count();
    let trail = s.iter().rev().take_while(|&&b| b == b' ').count();
    if lead == s.len() {
        return r.start..r.start;
    }
    r.start + lead..r.end - trail
}

/// Trims blanks (and a stray CR) around a header name or value.
fn trim(head: &[u8], r: Range<usize>) -> Range<usize> {
    let ws = |b: &&u8| matches!(**b, b' ' | b'\t' | b'\r');
    let s = head.get(r.clone()).unwrap_or_default();
    let lead = s.iter().take_while(ws).count();
    if lead == s.len() {
        return r.start + lead..r.start + lead;
    }
    let trail = s.iter().rev().take_while(ws).count();
    r.start + lead..r.end - trail
}

/// Collects what matters from header lines, whichever reader found them.
struct HeadBuilder<'a> {
    head: &'a [u8],
    info: HeadInfo,
    transfer_encoding: bool,
    last_coding_chunked: bool,
    upgrade_header: bool,
    connection_upgrade: bool,
}

impl<'a> HeadBuilder<'a> {
    fn new(head: &'a [u8], method: Range<usize>, target: Range<usize>, version_minor: u8) -> Self {
        let connect = head.get(method.clone()) == Some(b"CONNECT".as_slice());
        let lf = memchr::memchr(b'\n', head).unwrap_or(0);
        let crlf = lf > 0 && head.get(lf - 1) == Some(&b'\r');
        Self {
            head,
            info: HeadInfo {
                method,
                target,
                host: None,
                version_minor,
                framing: Framing::None,
                content_length_values: Vec::new(),
                transfer_encoding_lines: Vec::new(),
                expect_continue: false,
                upgrade: false,
                upgrade_h2c: false,
                connect,
                malformed: false,
                crlf,
            },
            transfer_encoding: false,
            last_coding_chunked: false,
            upgrade_header: false,
            connection_upgrade: false,
        }
    }

    fn header(&mut self, name: Range<usize>, value: Range<usize>, line: Range<usize>) {
        let n = self.head.get(name).unwrap_or_default();
        let v = self.head.get(value.clone()).unwrap_or_default();
        if n.eq_ignore_ascii_case(b"content-length") {
            self.info.content_length_values.push(value);
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            self.info.transfer_encoding_lines.push(line);
            // The final coding decides; an empty list element changes nothing.
            if let Some(last) = list_items(v).last() {
                self.last_coding_chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if n.eq_ignore_ascii_case(b"host") {
            if self.info.host.is_none() {
                self.info.host = Some(value);
            }
        } else if n.eq_ignore_ascii_case(b"expect") {
            self.info.expect_continue |= v.eq_ignore_ascii_case(b"100-continue");
        } else if n.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_header = true;
            // Only an upgrade to h2c alone: offered beside another protocol (websocket), the
            // server may pick that one, whose frames must not be framed as requests.
            let mut tokens = list_items(v).filter(|t| !t.is_empty()).peekable();
            let h2c_only =
                tokens.peek().is_some() && tokens.all(|t| t.eq_ignore_ascii_case(b"h2c"));
            self.info.upgrade_h2c |= h2c_only;
        } else if n.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= list_items(v).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        }
    }

    fn finish(mut self, malformed: bool) -> HeadInfo {
        self.info.malformed = malformed;
        self.info.upgrade = self.upgrade_header && self.connection_upgrade;
        self.info.upgrade_h2c &= self.info.upgrade;
        self.info.framing = if self.transfer_encoding {
            if self.last_coding_chunked {
                Framing::Chunked
            } else {
                Framing::Invalid
            }
        } else if self.info.content_length_values.is_empty() {
            Framing::None
        } else {
            content_length(self.head, &self.info.content_length_values)
        };
        self.info
    }
}

/// One length from every Content-Length value (lists such as `5, 5` included), or Invalid when
/// they disagree or one is not a plain decimal number.
fn content_length(head: &[u8], values: &[Range<usize>]) -> Framing {
    let mut found: Option<u64> = None;
    for r in values {
        let v = head.get(r.clone()).unwrap_or_default();
        let mut any = false;
        for item in v.split(|&b| b == b',').map(|t| t.trim_ascii()) {
            let Some(n) = parse_decimal(item) else {
                return Framing::Invalid;
            };
            if found.is_some_and(|f| f != n) {
                return Framing::Invalid;
            }
            found = Some(n);
            any = true;
        }
        if !any {
            return Framing::Invalid;
        }
    }
    found.map_or(Framing::Invalid, Framing::Length)
}

/// The head of a request whose body is not kept, with framing that says so: every byte is kept
/// except that Content-Length values become `0` and Transfer-Encoding lines go; before the
/// blank line come `Content-Length: 0` (only if the request had none) and
/// `<original_length_header>: <original length>`, with the request line's line ending.
/// Returns the new head and where the Host value moved to.
pub(crate) fn rewrite_without_body(
    head: &[u8],
    info: &HeadInfo,
    original_length_header: &str,
    original_length: u64,
) -> (Vec<u8>, Option<Range<usize>>) {
    let mut edits: Vec<(Range<usize>, &[u8])> = Vec::new();
    edits.extend(
        info.content_length_values
            .iter()
            .map(|r| (r.clone(), b"0".as_slice())),
    );
    edits.extend(
        info.transfer_encoding_lines
            .iter()
            .map(|r| (r.clone(), b"".as_slice())),
    );
    edits.sort_by_key(|(r, _)| r.start);

    // The blank line is "\r\n" or "\n" at the very end of a delimited head.
    let blank_len = if head.ends_with(b"\n\r\n") { 2 } else { 1 };
    let blank_at = head.len().saturating_sub(blank_len);
    let eol: &[u8] = if info.crlf { b"\r\n" } else { b"\n" };

    let mut out = Vec::with_capacity(head.len() + original_length_header.len() + 48);
    let mut host_shift = 0isize;
    let mut cursor = 0usize;
    for (r, replacement) in &edits {
        // Edits come from distinct header lines, before the blank line; anything else would be
        // a reader bug, and skipping it keeps the original bytes.
        if r.start < cursor || r.end > blank_at {
            continue;
        }
        out.extend_from_slice(head.get(cursor..r.start).unwrap_or_default());
        out.extend_from_slice(replacement);
        cursor = r.end;
        if info.host.as_ref().is_some_and(|h| h.start >= r.end) {
            host_shift += replacement.len() as isize - r.len() as isize;
        }
    }
    let host = info.host.as_ref().map(|h| {
        h.start.saturating_add_signed(host_shift)..h.end.saturating_add_signed(host_shift)
    });
    out.extend_from_slice(head.get(cursor..blank_at).unwrap_or_default());
    if info.framing == Framing::Chunked && info.content_length_values.is_empty() {
        out.extend_from_slice(b"Content-Length: 0");
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(original_length_header.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(original_length.to_string().as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(head.get(blank_at..).unwrap_or_default());
    (out, host)
}

#[cfg(test)]
mod tests;
