//! Where a message head ends: the blank line after the start line and fields, found
//! incrementally. Requests and responses end their heads the same way, so both framers use this
//! one scanner; it only looks at bytes and keeps none (the caller owns the buffer).

/// Finds the blank line that ends a head, looking at each byte once however the head is split:
/// only the new bytes are searched (memchr for LF), and the state carries what the previous
/// bytes ended with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeadEnd {
    state: HeadEndState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum HeadEndState {
    #[default]
    InLine,
    /// Just after LF: a CRLF or LF here is the blank line.
    LineStart,
    /// LF then CR.
    LineStartCr,
}

impl HeadEnd {
    /// The scan of a head whose bytes so far end with a complete line.
    pub(crate) fn at_line_start() -> Self {
        Self {
            state: HeadEndState::LineStart,
        }
    }

    /// Scans the next bytes of a head; `Some(n)`: the head ends after `s[..n]`.
    pub(crate) fn scan(&mut self, s: &[u8]) -> Option<usize> {
        let mut i = 0;
        loop {
            match self.state {
                HeadEndState::InLine => {
                    let p = memchr::memchr(b'\n', s.get(i..)?)?;
                    i += p + 1;
                    self.state = HeadEndState::LineStart;
                }
                HeadEndState::LineStart => {
                    let b = *s.get(i)?;
                    i += 1;
                    match b {
                        b'\n' => return Some(i),
                        b'\r' => self.state = HeadEndState::LineStartCr,
                        _ => self.state = HeadEndState::InLine,
                    }
                }
                HeadEndState::LineStartCr => {
                    let b = *s.get(i)?;
                    i += 1;
                    match b {
                        b'\n' => return Some(i),
                        _ => self.state = HeadEndState::InLine,
                    }
                }
            }
        }
    }

    /// The bytes scanned so far end with LF.
    pub(crate) fn ends_line(&self) -> bool {
        self.state == HeadEndState::LineStart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_found_across_any_split() {
        // (input, bytes after the head)
        let cases: [(&[u8], usize); 4] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", 4),
            (b"GET / HTTP/1.1\nHost: a\n\nBODY", 4),
            (b"GET / HTTP/1.1\nA: \r\r\n\r\nX", 1),
            (b"GET / HTTP/1.1\r\nA: b\r\n\rX\r\n\r\n", 0),
        ];
        for (input, after) in cases {
            let end = input.len() - after;
            assert_eq!(HeadEnd::default().scan(input), Some(end));
            for cut in 0..input.len() {
                let mut h = HeadEnd::default();
                let found = match h.scan(&input[..cut]) {
                    Some(n) => Some(n),
                    None => h.scan(&input[cut..]).map(|n| n + cut),
                };
                assert_eq!(found, Some(end), "cut at {cut}");
            }
        }
        assert_eq!(HeadEnd::default().scan(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(HeadEnd::at_line_start().scan(b"\r\n"), Some(2));
    }
}
