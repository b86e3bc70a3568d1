//! The sink's own HTTP/1.x request framer: where does the request at the start of a buffer end?
//!
//! Deliberately separate from rebuilder's parser (and from httparse) so the sink judges what
//! it receives instead of sharing its bugs. It only finds boundaries; it never rewrites bytes.
//! Lenient where framing allows (bare LF line ends, leading empty lines, any bytes in the
//! request line and header values), strict where framing depends on it (Content-Length,
//! Transfer-Encoding, chunk sizes).

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    #[error("body exceeds {0} bytes")]
    BodyTooLarge(usize),
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("Transfer-Encoding {0:?} does not end in chunked")]
    UnsupportedTransferEncoding(String),
    #[error("invalid chunk size line {0:?}")]
    BadChunkSize(String),
    #[error("chunk data not followed by CRLF")]
    BadChunkEnd,
}

/// What the head of a request says about its body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Bytes up to and including the empty line.
    pub len: usize,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub expect_continue: bool,
}

/// The line starting at `pos`: its content (without the line end) and where the next starts.
fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let line = &rest[..nl];
    Some((line.strip_suffix(b"\r").unwrap_or(line), pos + nl + 1))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

fn show(v: &[u8]) -> String {
    String::from_utf8_lossy(v.get(..64).unwrap_or(v)).into_owned()
}

/// Parses the head at the start of `buf`; `Ok(None)` if it is not complete yet.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<Head>, FramingError> {
    let mut pos = 0;
    // RFC 9112 §2.2: empty lines before the request line are tolerated (kept, not stripped).
    loop {
        match line_at(buf, pos) {
            Some((b"", next)) => pos = next,
            Some(_) => break,
            None => return incomplete(buf, max_head),
        }
    }
    let Some((_, mut pos)) = line_at(buf, pos) else {
        return incomplete(buf, max_head);
    };
    let mut head = Head::default();
    let mut te: Option<Vec<u8>> = None;
    loop {
        let Some((line, next)) = line_at(buf, pos) else {
            return incomplete(buf, max_head);
        };
        pos = next;
        if pos > max_head {
            return Err(FramingError::HeadTooLarge(max_head));
        }
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim_ows(&line[..colon]);
        let value = trim_ows(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            // A list of identical values ("5, 5") is one length (RFC 9110 §8.6).
            for v in value.split(|b| *b == b',') {
                let v = trim_ows(v);
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) || v.len() > 18 {
                    return Err(FramingError::BadContentLength(show(value)));
                }
                let n: u64 = v.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0'));
                match head.content_length {
                    Some(prev) if prev != n => return Err(FramingError::ConflictingContentLength),
                    _ => head.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let all = te.get_or_insert_with(Vec::new);
            if !all.is_empty() {
                all.push(b',');
            }
            all.extend_from_slice(value);
        } else if name.eq_ignore_ascii_case(b"expect")
            && value.eq_ignore_ascii_case(b"100-continue")
        {
            head.expect_continue = true;
        }
    }
    if let Some(te) = te {
        let last = te
            .rsplit(|b| *b == b',')
            .next()
            .map(trim_ows)
            .unwrap_or_default();
        if !last.eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::UnsupportedTransferEncoding(show(&te)));
        }
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
        head.chunked = true;
        head.content_length = None;
    }
    head.len = pos;
    Ok(Some(head))
}

fn incomplete<T>(buf: &[u8], max_head: usize) -> Result<Option<T>, FramingError> {
    if buf.len() > max_head {
        Err(FramingError::HeadTooLarge(max_head))
    } else {
        Ok(None)
    }
}

/// Length of the complete request at the start of `buf`, `Ok(None)` if more bytes are needed.
pub fn frame_request(
    buf: &[u8],
    max_head: usize,
    max_body: u64,
) -> Result<Option<usize>, FramingError> {
    let Some(head) = parse_head(buf, max_head)? else {
        return Ok(None);
    };
    if head.chunked {
        return chunked_end(buf, head.len, max_body);
    }
    match head.content_length {
        Some(n) if n > max_body => Err(FramingError::BodyTooLarge(max_body as usize)),
        Some(n) => {
            let end = head.len + n as usize;
            Ok((buf.len() >= end).then_some(end))
        }
        None => Ok(Some(head.len)),
    }
}

fn chunked_end(buf: &[u8], mut pos: usize, max_body: u64) -> Result<Option<usize>, FramingError> {
    let mut total: u64 = 0;
    loop {
        let Some((line, next)) = line_at(buf, pos) else {
            // A size line has no business being long; do not wait forever for its end.
            return if buf.len().saturating_sub(pos) > 4096 {
                Err(FramingError::BadChunkSize(show(
                    buf.get(pos..).unwrap_or_default(),
                )))
            } else {
                Ok(None)
            };
        };
        let digits = trim_ows(line.split(|b| *b == b';').next().unwrap_or_default());
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(FramingError::BadChunkSize(show(line)));
        }
        let size = digits.iter().fold(0u64, |acc, d| {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                _ => d - b'A' + 10,
            };
            acc * 16 + u64::from(v)
        });
        pos = next;
        if size == 0 {
            // Trailer section, up to the empty line.
            loop {
                let Some((line, next)) = line_at(buf, pos) else {
                    return Ok(None);
                };
                pos = next;
                if line.is_empty() {
                    return Ok(Some(pos));
                }
            }
        }
        total += size;
        if total > max_body {
            return Err(FramingError::BodyTooLarge(max_body as usize));
        }
        let data_end = pos + size as usize;
        match buf.get(data_end..data_end + 2) {
            Some(b"\r\n") => pos = data_end + 2,
            Some([b'\n', _]) => pos = data_end + 1,
            Some(_) => return Err(FramingError::BadChunkEnd),
            None => match buf.get(data_end) {
                None | Some(b'\r') => return Ok(None),
                Some(b'\n') => pos = data_end + 1,
                Some(_) => return Err(FramingError::BadChunkEnd),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 16;

    fn frame(b: &[u8]) -> Result<Option<usize>, FramingError> {
        frame_request(b, MAX, 1 << 20)
    }

    #[test]
    fn get_without_body_ends_at_empty_line() {
        let r = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        assert_eq!(frame(r), Ok(Some(27)));
        assert_eq!(frame(&r[..26]), Ok(None));
        assert_eq!(frame(b"GET / HTTP/1.0\n\nrest"), Ok(Some(16)));
        assert_eq!(frame(b"\r\nGET / HTTP/1.1\r\n\r\n"), Ok(Some(20)));
    }

    #[test]
    fn content_length_any_case_and_lists() {
        let r = b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:  5 \r\n\r\nhelloGET";
        assert_eq!(frame(r), Ok(Some(r.len() - 3)));
        assert_eq!(frame(&r[..r.len() - 4]), Ok(None));
        assert_eq!(
            frame(b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nab"),
            Ok(Some(43))
        );
        assert_eq!(
            frame(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab"),
            Err(FramingError::ConflictingContentLength)
        );
        assert!(matches!(
            frame(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(FramingError::BadContentLength(_))
        ));
        assert!(matches!(
            frame_request(b"POST / HTTP/1.1\r\nContent-Length: 99\r\n\r\n", MAX, 10),
            Err(FramingError::BodyTooLarge(10))
        ));
    }

    #[test]
    fn chunked_with_extensions_and_trailers_at_every_split() {
        let r =
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n\
                  4;a=b\r\nwiki\r\n5 ; q=\"x;y\"\r\npedia\r\n0;last\r\nX-T: 1\r\nY: 2\r\n\r\n";
        for cut in 0..r.len() {
            assert_eq!(frame(&r[..cut]), Ok(None), "cut at {cut}");
        }
        let mut more = r.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(frame(&more), Ok(Some(r.len())));
    }

    #[test]
    fn chunked_errors() {
        assert!(matches!(
            frame(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(FramingError::BadChunkSize(_))
        ));
        assert_eq!(
            frame(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n"),
            Err(FramingError::BadChunkEnd)
        );
        assert!(matches!(
            frame(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(FramingError::UnsupportedTransferEncoding(_))
        ));
    }

    #[test]
    fn head_limit() {
        let mut r = b"GET / HTTP/1.1\r\nX: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(
            frame_request(&r, 100, 0),
            Err(FramingError::HeadTooLarge(100))
        );
        r.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            frame_request(&r, 100, 0),
            Err(FramingError::HeadTooLarge(100))
        );
        assert_eq!(frame_request(&r, 1000, 0), Ok(Some(r.len())));
    }

    #[test]
    fn expect_continue_detected() {
        let h = parse_head(
            b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
            MAX,
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue);
        assert_eq!(h.content_length, Some(1));
    }
}
