//! HTTP/1.x request and response bytes for conversations.
//!
//! Everything here is plain bytes, built by hand: the point is to send exactly what a client
//! (benign or hostile) would, including things a normalising HTTP library would refuse to emit.
//! Bodies are deterministic functions of a seed so the ground truth can be regenerated.

use crate::rng::SplitMix64;

/// What a browser-ish keep-alive client sends on every request.
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/124.0.0.0 Safari/537.36";

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request assembled from parts, byte for byte as given (no validation, no normalisation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBuilder {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RequestBuilder {
    pub fn new(method: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        Self {
            method: method.as_ref().to_vec(),
            target: target.as_ref().to_vec(),
            version: b"HTTP/1.1".to_vec(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn version(mut self, version: impl AsRef<[u8]>) -> Self {
        self.version = version.as_ref().to_vec();
        self
    }

    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body only; add `Content-Length` or framing yourself (that is the point).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.target.len()
                + self.body.len()
                + self
                    .headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>(),
        );
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(&self.version);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn browser_get(host: &str, path: &str) -> RequestBuilder {
    RequestBuilder::new("GET", path)
        .header("Host", host)
        .header("User-Agent", UA)
        .header(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("Accept-Encoding", "gzip, deflate, br")
        .header("Accept-Language", "en-US,en;q=0.9")
        .header("Connection", "keep-alive")
}

/// A keep-alive GET with the headers a browser sends.
pub fn get(host: &str, path: &str) -> Vec<u8> {
    browser_get(host, path).build()
}

/// A keep-alive GET carrying `X-Request-Id: id`, so that otherwise identical requests differ
/// and a duplicate is told apart from a second request.
pub fn get_with_id(host: &str, path: &str, id: &str) -> Vec<u8> {
    browser_get(host, path).header("X-Request-Id", id).build()
}

/// `len` bytes of printable, deterministic content (a form-ish alphabet, no CR/LF), so bodies
/// are easy to read in a diff and never look like a request line.
pub fn body_bytes(len: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=&_-.";
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut word = rng.next_u64();
        for _ in 0..8 {
            if out.len() == len {
                break;
            }
            let i = (word & 0x3f) as usize % ALPHABET.len();
            out.push(ALPHABET.get(i).copied().unwrap_or(b'x'));
            word >>= 8;
        }
    }
    out
}

/// A keep-alive POST with a `Content-Length` body of `body_len` deterministic bytes.
pub fn post(host: &str, path: &str, body_len: usize, seed: u64) -> Vec<u8> {
    post_with_id(host, path, body_len, seed, None)
}

/// [`post`] with an optional `X-Request-Id`.
pub fn post_with_id(
    host: &str,
    path: &str,
    body_len: usize,
    seed: u64,
    id: Option<&str>,
) -> Vec<u8> {
    let mut b = RequestBuilder::new("POST", path)
        .header("Host", host)
        .header("User-Agent", UA)
        .header("Accept", "*/*")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Content-Length", body_len.to_string())
        .header("Connection", "keep-alive");
    if let Some(id) = id {
        b = b.header("X-Request-Id", id);
    }
    b.body(body_bytes(body_len, seed)).build()
}

/// A chunked POST: one chunk per entry of `chunk_sizes` (zero sizes are skipped, since a zero
/// chunk ends the body), every other chunk with a chunk extension (one of them quoted), then
/// the last chunk with an extension and two trailer fields.
pub fn chunked_post(host: &str, path: &str, chunk_sizes: &[usize], seed: u64) -> Vec<u8> {
    let mut out = RequestBuilder::new("POST", path)
        .header("Host", host)
        .header("User-Agent", UA)
        .header("Content-Type", "application/octet-stream")
        .header("Transfer-Encoding", "chunked")
        .header("Trailer", "X-Checksum, X-Trace")
        .build();
    let mut sum: u32 = 0;
    for (i, &size) in chunk_sizes.iter().filter(|s| **s > 0).enumerate() {
        let data = body_bytes(size, seed.wrapping_add(i as u64));
        sum = data.iter().fold(sum, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(u32::from(*b))
        });
        out.extend_from_slice(format!("{size:x}").as_bytes());
        match i % 4 {
            1 => out.extend_from_slice(b";ext=1"),
            3 => out.extend_from_slice(b";name=\"quoted; value\""),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0;final\r\n");
    out.extend_from_slice(format!("X-Checksum: {sum:08x}\r\n").as_bytes());
    out.extend_from_slice(b"X-Trace: gen\r\n\r\n");
    out
}

/// `n` small GETs meant to be sent back to back (pipelined), ids `prefix-0` ….
pub fn pipelined_gets(host: &str, n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| get_with_id(host, &format!("/pipelined/{i}"), &format!("{prefix}-{i}")))
        .collect()
}

/// An HTTP/1.0 GET as old tools send it: no keep-alive, no `Accept-Encoding`.
pub fn http10_get(host: &str, path: &str) -> Vec<u8> {
    RequestBuilder::new("GET", path)
        .version("HTTP/1.0")
        .header("Host", host)
        .header("User-Agent", "Wget/1.12 (linux-gnu)")
        .header("Accept", "*/*")
        .build()
}

/// A POST that waits for `100 Continue` before its body. A [`Conversation`] seeing this sends
/// the head, the server's `100 Continue`, then the body.
///
/// [`Conversation`]: super::Conversation
pub fn expect_continue_post(host: &str, path: &str, body_len: usize, seed: u64) -> Vec<u8> {
    RequestBuilder::new("POST", path)
        .header("Host", host)
        .header("User-Agent", "curl/8.5.0")
        .header("Accept", "*/*")
        .header("Content-Type", "application/json")
        .header("Content-Length", body_len.to_string())
        .header("Expect", "100-continue")
        .body(body_bytes(body_len, seed))
        .build()
}

/// `HTTP/1.1 200 OK` with a `Content-Length` body of `body_len` bytes.
pub fn ok_response(body_len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {body_len}\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes();
    out.extend(std::iter::repeat_n(b'.', body_len));
    out
}

/// Where the head of `request` ends, if it asks for `100 Continue` before a non-empty body:
/// that is where a real client pauses.
pub fn expect_continue_split(request: &[u8]) -> Option<usize> {
    let head_end = find(request, b"\r\n\r\n")? + 4;
    let head = request.get(..head_end)?;
    let expects = head.split(|b| *b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"expect")
            && value
                .get(1..)
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    });
    (expects && head_end < request.len()).then_some(head_end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Requests a WAF must see exactly as sent. [`hostile::parseable`] ones are valid enough for a
/// lenient parser (httparse accepts bytes >= 0x80 in header values, and in targets when they
/// form UTF-8);
/// [`hostile::malformed`] ones contain control bytes a strict parser rejects.
pub mod hostile {
    use super::{body_bytes, RequestBuilder};

    pub fn sql_injection_get(host: &str) -> Vec<u8> {
        RequestBuilder::new(
            "GET",
            "/products?id=1%27%20OR%20%271%27%3D%271%27--&sort=name%20UNION%20SELECT%20username,password%20FROM%20users--",
        )
        .header("Host", host)
        .header("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")
        .header("Accept", "*/*")
        .build()
    }

    pub fn sql_injection_post(host: &str) -> Vec<u8> {
        let body = b"username=admin'--&password=' OR 1=1; DROP TABLE users; --".to_vec();
        RequestBuilder::new("POST", "/login")
            .header("Host", host)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Content-Length", body.len().to_string())
            .body(body)
            .build()
    }

    /// Header names in odd case (`hOsT`, `cOnTeNt-LeNgTh`): framing must be case-insensitive and
    /// the replay must keep the case.
    pub fn odd_header_case(host: &str) -> Vec<u8> {
        let body = body_bytes(37, 0x0dd);
        RequestBuilder::new("POST", "/odd")
            .header("hOsT", host)
            .header("uSeR-aGeNt", "ScRiPt/1.0")
            .header("cOnTeNt-LeNgTh", body.len().to_string())
            .header("X-lower-UPPER", "MiXeD")
            .body(body)
            .build()
    }

    /// A GET whose request line is `len` bytes of target (at least the `/?q=` prefix).
    pub fn long_url(host: &str, len: usize) -> Vec<u8> {
        let mut target = b"/search?q=".to_vec();
        let fill = body_bytes(len.saturating_sub(target.len()), 0x10a6);
        target.extend_from_slice(&fill);
        RequestBuilder::new("GET", target)
            .header("Host", host)
            .header("Accept", "*/*")
            .build()
    }

    /// Raw bytes >= 0x80: UTF-8 in the target, not UTF-8 in header values.
    pub fn high_bytes(host: &str) -> Vec<u8> {
        RequestBuilder::new("GET", b"/caf\xc3\xa9/?name=\xe2\x82\xac")
            .header("Host", host)
            .header("X-Latin1", b"r\xe9sum\xe9")
            .header("Cookie", b"session=\x80\x81\xfe\xff; theme=dark")
            .build()
    }

    pub fn path_traversal_xss(host: &str) -> Vec<u8> {
        RequestBuilder::new(
            "GET",
            "/static/../../../../etc/passwd?x=<script>alert(document.cookie)</script>",
        )
        .header("Host", host)
        .header("Referer", "javascript:alert(1)")
        .header("X-Forwarded-For", "127.0.0.1, ' OR 1=1 --")
        .build()
    }

    /// Bytes >= 0x80 that are not UTF-8 in the target. Valid for RFC 9112's grammar only as
    /// obs-text nowhere, yet servers see them; httparse rejects the request (it wants the target
    /// as `&str`).
    pub fn non_utf8_target(host: &str) -> Vec<u8> {
        RequestBuilder::new("GET", b"/\xff\xfe\x80/caf\xe9?q=\xc3\x28")
            .header("Host", host)
            .header("Accept", "*/*")
            .build()
    }

    /// Control bytes (0x01, 0x7f) in the target and a header value: invalid HTTP.
    pub fn control_bytes(host: &str) -> Vec<u8> {
        RequestBuilder::new("GET", b"/ctl\x01\x7fpath")
            .header("Host", host)
            .header("X-Ctl", b"a\x01b\x7fc")
            .build()
    }

    /// Hostile requests a lenient parser (httparse) accepts.
    pub fn parseable(host: &str) -> Vec<Vec<u8>> {
        vec![
            sql_injection_get(host),
            sql_injection_post(host),
            odd_header_case(host),
            long_url(host, 8192),
            high_bytes(host),
            path_traversal_xss(host),
        ]
    }

    /// Hostile requests with bytes strict parsers (httparse included) reject.
    pub fn malformed(host: &str) -> Vec<Vec<u8>> {
        vec![non_utf8_target(host), control_bytes(host)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(req: &[u8]) -> Result<httparse::Status<usize>, httparse::Error> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        httparse::Request::new(&mut headers).parse(req)
    }

    #[test]
    fn get_is_exact() {
        let r = get_with_id("example.com", "/a?b=c", "7-1");
        let expected = format!(
            "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: {UA}\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
             Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\
             Connection: keep-alive\r\nX-Request-Id: 7-1\r\n\r\n"
        );
        assert_eq!(r, expected.as_bytes());
    }

    #[test]
    fn post_body_is_deterministic_and_sized() {
        let a = post("h", "/p", 1000, 5);
        let b = post("h", "/p", 1000, 5);
        let c = post("h", "/p", 1000, 6);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let head_end = find(&a, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(a.len() - head_end, 1000);
        assert!(find(&a, b"Content-Length: 1000\r\n").is_some());
        assert!(a[head_end..].iter().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn chunked_post_layout() {
        let r = chunked_post("h", "/c", &[3, 0, 16, 5], 1);
        let text = String::from_utf8(r.clone()).unwrap();
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let d0 = String::from_utf8(body_bytes(3, 1)).unwrap();
        let d1 = String::from_utf8(body_bytes(16, 2)).unwrap();
        let d2 = String::from_utf8(body_bytes(5, 3)).unwrap();
        assert!(body.starts_with(&format!(
            "3\r\n{d0}\r\n10;ext=1\r\n{d1}\r\n5\r\n{d2}\r\n0;final\r\nX-Checksum: "
        )));
        assert!(body.ends_with("\r\nX-Trace: gen\r\n\r\n"));
        assert!(matches!(parses(&r), Ok(httparse::Status::Complete(_))));
    }

    #[test]
    fn expect_continue_split_finds_head_end() {
        let r = expect_continue_post("h", "/u", 10, 1);
        let at = expect_continue_split(&r).unwrap();
        assert_eq!(r.len() - at, 10);
        assert!(r[..at].ends_with(b"Expect: 100-continue\r\n\r\n"));
        assert_eq!(expect_continue_split(&post("h", "/", 10, 1)), None);
        // Odd case and no body.
        assert!(
            expect_continue_split(b"POST / HTTP/1.1\r\neXpEcT:  100-Continue \r\n\r\nx").is_some()
        );
        assert_eq!(
            expect_continue_split(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"),
            None
        );
    }

    #[test]
    fn hostile_classification_matches_httparse() {
        for r in hostile::parseable("h") {
            assert!(
                matches!(parses(&r), Ok(httparse::Status::Complete(_))),
                "{:?}",
                String::from_utf8_lossy(&r)
            );
        }
        for r in hostile::malformed("h") {
            assert!(parses(&r).is_err(), "{:?}", String::from_utf8_lossy(&r));
        }
        let long = hostile::long_url("h", 8192);
        assert_eq!(long.split(|b| *b == b' ').nth(1).unwrap().len(), 8192);
        assert!(find(&hostile::odd_header_case("h"), b"\r\nhOsT: h\r\n").is_some());
    }

    #[test]
    fn ok_response_is_exact() {
        assert_eq!(
            ok_response(3),
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n...".to_vec()
        );
    }
}
