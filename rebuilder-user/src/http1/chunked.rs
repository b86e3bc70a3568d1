//! Incremental framing of a chunked body (RFC 9112 §7.1): where it ends, not what it decodes to.
//!
//! Both framers only need to know which bytes belong to the body (the request framer copies them
//! as sent, the response framer discards them), so the decoder never copies anything. Its state
//! is a few integers: constant memory whatever the body, and every byte is looked at at most once
//! (chunk data is skipped in one step).

/// Longest chunk-size line (size, extensions and line ending) accepted. Real clients send a few
/// bytes; the bound only stops a sender from streaming an endless extension.
pub(crate) const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer line accepted, for the same reason.
pub(crate) const MAX_TRAILER_LINE: usize = 8192;

/// The chunked framing is broken at input offset `at` (the offending byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidChunk {
    pub at: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size {
        value: u64,
        digits: bool,
    },
    /// After the digits: only blanks, `;` or the line ending may follow.
    SizeBlank {
        value: u64,
    },
    /// Inside chunk extensions: anything up to the line ending.
    Ext {
        value: u64,
    },
    /// Saw CR ending the size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// Chunk data done: its CRLF (or bare LF) must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the blank line that ends the body.
    TrailerStart,
    TrailerLine,
    /// Saw CR at the start of a line: the body ends with the LF.
    FinalLf,
    Done,
}

/// Where a chunked body ends.
#[derive(Clone, Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size or trailer line so far, for the line bounds.
    line_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: false,
            },
            line_len: 0,
        }
    }

    /// The last chunk, the trailers and the final blank line have all passed.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes body bytes from the front of `input` and returns how many belong to the body.
    /// Fewer than `input.len()` only once the body is complete: the rest follows the body.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<usize, InvalidChunk> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data { remaining } => {
                    let avail = (input.len() - i) as u64;
                    let take = remaining.min(avail);
                    // `take <= avail`, which came from a usize.
                    i += take as usize;
                    self.state = if take == remaining {
                        State::DataCr
                    } else {
                        State::Data {
                            remaining: remaining - take,
                        }
                    };
                    continue;
                }
                State::TrailerLine => {
                    let rest = input.get(i..).unwrap_or_default();
                    let (len, ends) =
                        memchr::memchr(b'\n', rest).map_or((rest.len(), false), |p| (p + 1, true));
                    self.grow_line(len, MAX_TRAILER_LINE, i)?;
                    i += len;
                    if ends {
                        self.state = State::TrailerStart;
                    }
                    continue;
                }
                State::Ext { value } => {
                    let rest = input.get(i..).unwrap_or_default();
                    let p = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.grow_line(p, MAX_SIZE_LINE, i)?;
                    i += p;
                    if p < rest.len() {
                        // The line ending itself is handled by the byte step below.
                        self.state = State::SizeBlank { value };
                    }
                    continue;
                }
                _ => {}
            }
            let Some(&b) = input.get(i) else { break };
            self.step(b).map_err(|()| InvalidChunk { at: i })?;
            i += 1;
        }
        Ok(i)
    }

    /// Adds `len` bytes starting at input offset `at` to the current line; the error names the
    /// first byte past `max`, the same one a byte-by-byte feed would.
    fn grow_line(&mut self, len: usize, max: usize, at: usize) -> Result<(), InvalidChunk> {
        if self.line_len + len > max {
            return Err(InvalidChunk {
                at: at + max.saturating_sub(self.line_len),
            });
        }
        self.line_len += len;
        Ok(())
    }

    /// One byte of a size line, a line ending or the start of a trailer line.
    fn step(&mut self, b: u8) -> Result<(), ()> {
        self.state = match self.state {
            State::Size { value, digits } => {
                self.count_size_line()?;
                match hex_digit(b) {
                    Some(d) => {
                        // Leading zeros keep the value at 0, so only significant digits count
                        // towards the overflow.
                        if value > (u64::MAX >> 4) {
                            return Err(());
                        }
                        State::Size {
                            value: (value << 4) | u64::from(d),
                            digits: true,
                        }
                    }
                    None if !digits => return Err(()),
                    None => return self.after_size(value, b),
                }
            }
            State::SizeBlank { value } => {
                self.count_size_line()?;
                return self.after_size(value, b);
            }
            State::SizeLf { value } => {
                if b != b'\n' {
                    return Err(());
                }
                self.end_size_line(value)
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => self.start_size_line(),
                _ => return Err(()),
            },
            State::DataLf => {
                if b != b'\n' {
                    return Err(());
                }
                self.start_size_line()
            }
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => State::Done,
                _ => {
                    self.line_len = 1;
                    State::TrailerLine
                }
            },
            State::FinalLf => {
                if b != b'\n' {
                    return Err(());
                }
                State::Done
            }
            // Handled in bulk by `feed`.
            State::Data { .. } | State::Ext { .. } | State::TrailerLine | State::Done => {
                return Err(())
            }
        };
        Ok(())
    }

    /// A byte after the size digits (or after blanks following them).
    fn after_size(&mut self, value: u64, b: u8) -> Result<(), ()> {
        self.state = match b {
            b' ' | b'\t' => State::SizeBlank { value },
            b';' => State::Ext { value },
            b'\r' => State::SizeLf { value },
            b'\n' => self.end_size_line(value),
            _ => return Err(()),
        };
        Ok(())
    }

    fn count_size_line(&mut self) -> Result<(), ()> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(());
        }
        Ok(())
    }

    fn start_size_line(&mut self) -> State {
        self.line_len = 0;
        State::Size {
            value: 0,
            digits: false,
        }
    }

    fn end_size_line(&mut self, value: u64) -> State {
        self.line_len = 0;
        if value == 0 {
            State::TrailerStart
        } else {
            State::Data { remaining: value }
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole and then byte by byte; both must agree.
    fn frame(input: &[u8]) -> Result<usize, InvalidChunk> {
        let mut whole = ChunkedDecoder::new();
        let a = whole.feed(input);
        let mut dec = ChunkedDecoder::new();
        let mut b = Ok(0);
        for (i, byte) in input.iter().enumerate() {
            match dec.feed(std::slice::from_ref(byte)) {
                Ok(1) => b = Ok(i + 1),
                Ok(_) => break,
                Err(e) => {
                    b = Err(InvalidChunk { at: i + e.at });
                    break;
                }
            }
        }
        assert_eq!(
            a,
            b,
            "whole and byte-wise framing differ for {:?}",
            String::from_utf8_lossy(input)
        );
        if let Ok(n) = a {
            assert_eq!(whole.is_done(), dec.is_done());
            if whole.is_done() {
                return Ok(n);
            }
            return Err(InvalidChunk { at: usize::MAX });
        }
        a
    }

    #[test]
    fn simple_body_ends_after_final_crlf() {
        let body = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nGET";
        assert_eq!(frame(body), Ok(body.len() - 3));
    }

    #[test]
    fn extensions_and_trailers() {
        let body = b"4;name=value;q=\"a b\"\r\nWiki\r\n0;last\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n";
        assert_eq!(frame(body), Ok(body.len()));
    }

    #[test]
    fn zero_length_last_chunk_with_trailers_only() {
        let body = b"0\r\nExpires: never\r\n\r\nrest";
        assert_eq!(frame(body), Ok(body.len() - 4));
    }

    #[test]
    fn uppercase_hex_and_leading_zeros() {
        let mut body = b"000A\r\n0123456789\r\n1f\r\n".to_vec();
        body.extend_from_slice(&[b'x'; 31]);
        body.extend_from_slice(b"\r\n0000\r\n\r\n");
        assert_eq!(frame(&body), Ok(body.len()));
        // Many leading zeros do not overflow.
        let mut zeros = vec![b'0'; 100];
        zeros.extend_from_slice(b"1\r\nZ\r\n0\r\n\r\n");
        assert_eq!(frame(&zeros), Ok(zeros.len()));
    }

    #[test]
    fn bare_lf_line_endings_and_blank_before_ext() {
        let body = b"3 ;x\nabc\n0\n\n";
        assert_eq!(frame(body), Ok(body.len()));
    }

    #[test]
    fn invalid_sizes_are_rejected_at_the_offending_byte() {
        assert_eq!(frame(b"g\r\n"), Err(InvalidChunk { at: 0 }));
        assert_eq!(frame(b"\r\n"), Err(InvalidChunk { at: 0 }));
        assert_eq!(frame(b"5x\r\n"), Err(InvalidChunk { at: 1 }));
        assert_eq!(frame(b"5 x\r\n"), Err(InvalidChunk { at: 2 }));
        assert_eq!(frame(b"5\rx"), Err(InvalidChunk { at: 2 }));
        // 17 significant hex digits overflow u64.
        assert_eq!(
            frame(b"10000000000000000\r\n"),
            Err(InvalidChunk { at: 16 })
        );
        // Data not followed by its line ending.
        assert_eq!(frame(b"2\r\nabc"), Err(InvalidChunk { at: 5 }));
        // Lone CR where the final blank line should be.
        assert_eq!(frame(b"0\r\n\rx"), Err(InvalidChunk { at: 4 }));
    }

    #[test]
    fn largest_chunk_size_is_accepted() {
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.feed(b"ffffffffffffffff\r\nab"), Ok(20));
        assert!(!dec.is_done());
    }

    #[test]
    fn line_bounds() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'e', MAX_SIZE_LINE));
        long_ext.extend_from_slice(b"\r\n");
        assert!(frame(&long_ext).is_err());
        let mut ok_ext = b"1;".to_vec();
        ok_ext.extend(std::iter::repeat_n(b'e', MAX_SIZE_LINE - 10));
        ok_ext.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
        assert_eq!(frame(&ok_ext), Ok(ok_ext.len()));
        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.extend(std::iter::repeat_n(b't', MAX_TRAILER_LINE));
        long_trailer.extend_from_slice(b"\r\n\r\n");
        assert!(frame(&long_trailer).is_err());
    }

    #[test]
    fn incomplete_body_is_not_done() {
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.feed(b"5\r\nab"), Ok(5));
        assert!(!dec.is_done());
        assert_eq!(dec.feed(b"cde\r\n0\r\n"), Ok(8));
        assert!(!dec.is_done());
        assert_eq!(dec.feed(b"\r\nNEXT"), Ok(2));
        assert!(dec.is_done());
        assert_eq!(dec.feed(b"NEXT"), Ok(0));
    }
}
