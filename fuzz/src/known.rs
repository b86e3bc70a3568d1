//! The one client byte stream every well-behaved segment of the `reassembly` target is cut
//! from: pipelined requests of every framing (plain, Content-Length, chunked with trailers,
//! HTTP/1.0), each carrying its own number, so that no two pieces of it are alike. A request
//! rebuilt from a splice of two non-adjacent pieces (a hole delivered as if it were not there)
//! is then, in practice, not a substring of it.

use std::fmt::Write;
use std::sync::OnceLock;

/// Requests in the stream.
const REQUESTS: usize = 24;

pub fn stream() -> &'static [u8] {
    static STREAM: OnceLock<Vec<u8>> = OnceLock::new();
    STREAM.get_or_init(build)
}

fn build() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..REQUESTS {
        match i % 4 {
            0 => {
                let _ = write!(
                    s,
                    "GET /r{i}?q={} HTTP/1.1\r\nHost: h{i}.example\r\nX-Id: {i}\r\n\r\n",
                    i * 7
                );
            }
            1 => {
                // One body of a few KiB, so that a framer taking it on is felt by the budget.
                let tokens = if i == 13 { 500 } else { (i % 7) * 6 + 3 };
                let body: String = (0..tokens).map(|k| format!("b{i}.{k};")).collect();
                let _ = write!(
                    s,
                    "POST /p{i} HTTP/1.1\r\nHost: h{i}\r\nContent-Length: {}\r\nX-Id: {i}\r\n\r\n{body}",
                    body.len()
                );
            }
            2 => {
                let _ = write!(
                    s,
                    "PUT /c{i} HTTP/1.1\r\nHost: h{i}\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                for k in 0..3 {
                    let chunk: String = (0..k * 4 + 2).map(|j| format!("c{i}.{k}.{j},")).collect();
                    let _ = write!(s, "{:x};n={k}\r\n{chunk}\r\n", chunk.len());
                }
                let _ = write!(s, "0\r\nX-Trailer: t{i}\r\n\r\n");
            }
            _ => {
                let _ = write!(
                    s,
                    "DELETE /d{i} HTTP/1.0\r\nX-Id: {i}\r\nX-Pad: {}\r\n\r\n",
                    (0..i * 2).map(|k| format!("{k}:")).collect::<String>()
                );
            }
        }
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_a_body_of_a_few_kib() {
        let s = super::stream();
        let at = memchr::memmem::find(s, b"POST /p13 ").expect("request 13");
        let cl = memchr::memmem::find(&s[at..], b"Content-Length: ").expect("length") + at + 16;
        let end = memchr::memchr(b'\r', &s[cl..]).expect("line end") + cl;
        let n: usize = std::str::from_utf8(&s[cl..end]).unwrap().parse().unwrap();
        assert!(n > 3000, "{n}");
    }
}
