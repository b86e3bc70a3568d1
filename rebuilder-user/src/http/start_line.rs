//! Recognising a request line byte by byte, to find where requests start again after a hole, an
//! error or a pickup in the middle of a connection.
//!
//! Deliberately strict (uppercase method of at most 20 letters, single spaces, `HTTP/1.0` or
//! `HTTP/1.1`): a body that merely contains text must not be taken for a request. Each byte is
//! looked at once and the matcher keeps no bytes itself. The status-line matcher tells a
//! server's stream picked up by mistake. Pure state machines over bytes; the framer's resync
//! phase (`super::framer`) drives them.

/// Longest method accepted when resynchronising.
pub(crate) const MAX_METHOD: u8 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestLine {
    Method(u8),
    /// Target bytes seen: at least one before the space.
    Target(bool),
    /// Bytes of "HTTP/1." matched.
    Version(u8),
    Minor,
    Cr,
    Lf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    More,
    /// The byte ended a request line.
    Matched,
    /// This line is not a request line.
    Failed,
}

const VERSION: &[u8] = b"HTTP/1.";

impl RequestLine {
    pub(crate) fn new() -> Self {
        RequestLine::Method(0)
    }

    pub(crate) fn step(&mut self, b: u8) -> Step {
        let next = match *self {
            RequestLine::Method(n) => match b {
                b'A'..=b'Z' if n < MAX_METHOD => RequestLine::Method(n + 1),
                b' ' if n > 0 => RequestLine::Target(false),
                _ => return Step::Failed,
            },
            RequestLine::Target(any) => match b {
                b' ' if any => RequestLine::Version(0),
                // Visible ASCII and anything >= 0x80 (raw UTF-8 in paths is common enough).
                0x21..=0x7e | 0x80..=0xff => RequestLine::Target(true),
                _ => return Step::Failed,
            },
            RequestLine::Version(n) => {
                if VERSION.get(usize::from(n)) != Some(&b) {
                    return Step::Failed;
                }
                if usize::from(n) + 1 == VERSION.len() {
                    RequestLine::Minor
                } else {
                    RequestLine::Version(n + 1)
                }
            }
            RequestLine::Minor => match b {
                b'0' | b'1' => RequestLine::Cr,
                _ => return Step::Failed,
            },
            RequestLine::Cr => match b {
                b'\r' => RequestLine::Lf,
                b'\n' => return Step::Matched,
                _ => return Step::Failed,
            },
            RequestLine::Lf => match b {
                b'\n' => return Step::Matched,
                _ => return Step::Failed,
            },
        };
        *self = next;
        Step::More
    }
}

/// A response status line start, `HTTP/1.x DDD`: while a picked-up stream has shown no request
/// yet, finding one at a line start means this is the server's direction after all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatusLine(u8);

const STATUS_PATTERN: &[u8] = b"HTTP/1.x DDD";

impl StatusLine {
    pub(crate) fn new() -> Self {
        StatusLine(0)
    }

    /// `Some(true)` once the status code is complete, `None` when the line is not one.
    pub(crate) fn step(&mut self, b: u8) -> Option<bool> {
        let ok = match STATUS_PATTERN.get(usize::from(self.0))? {
            b'x' => b == b'0' || b == b'1',
            b'D' => b.is_ascii_digit(),
            &p => b == p,
        };
        if !ok {
            return None;
        }
        self.0 += 1;
        Some(usize::from(self.0) == STATUS_PATTERN.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &[u8]) -> Step {
        let mut m = RequestLine::new();
        for (i, &b) in line.iter().enumerate() {
            match m.step(b) {
                Step::More => {}
                s => {
                    assert!(
                        s == Step::Failed || i + 1 == line.len(),
                        "matched before the end"
                    );
                    return s;
                }
            }
        }
        Step::More
    }

    #[test]
    fn request_lines_match() {
        assert_eq!(run(b"GET / HTTP/1.1\r\n"), Step::Matched);
        assert_eq!(run(b"POST /a?b=%20 HTTP/1.0\n"), Step::Matched);
        assert_eq!(run(b"PROPFIND /\xc3\xa9 HTTP/1.1\r\n"), Step::Matched);
        assert_eq!(run(b"ABCDEFGHIJKLMNOPQRST * HTTP/1.1\r\n"), Step::Matched);
        assert_eq!(run(b"GET / HTTP/1.1"), Step::More);
    }

    fn status(line: &[u8]) -> Option<bool> {
        let mut m = StatusLine::new();
        let mut last = Some(false);
        for &b in line {
            last = m.step(b);
            if last != Some(false) {
                break;
            }
        }
        last
    }

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200"), Some(true));
        assert_eq!(status(b"HTTP/1.0 404 Not Found"), Some(true));
        assert_eq!(status(b"HTTP/1.1 20"), Some(false));
        assert_eq!(status(b"HTTP/1.2 200"), None);
        assert_eq!(status(b"HTTP/1.1 2x0"), None);
        assert_eq!(status(b"GET / HTTP/1.1"), None);
    }

    #[test]
    fn other_lines_fail() {
        for line in [
            &b"get / HTTP/1.1\r\n"[..],
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.2\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET /a b HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET / HTTP/1.1\rX",
            b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n",
            b" GET / HTTP/1.1\r\n",
            b"GET /\t HTTP/1.1\r\n",
            b"Host: example\r\n",
        ] {
            assert_eq!(
                run(line),
                Step::Failed,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
