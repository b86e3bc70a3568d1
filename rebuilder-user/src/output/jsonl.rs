//! One JSON object per line per request: the forensic record. Requests cut by a gap are written
//! too (flagged), unlike upstream replay.
//!
//! Line format (keys in this order):
//! `{"first_ts":"2023-11-14T22:13:20.123456789Z","last_ts":"…","vni":7,"client":"10.0.0.1:40000",
//! "client_ip":"10.0.0.1","server":"10.0.0.2:80","method":"GET","target":"/","host":"example.com",
//! "body_len":0,"flags":{"body_over_limit":false,"gap":false,"malformed":false},"raw":"R0VUIC8…"}`
//! - `client`: the connection's source; `client_ip`: the client's IP, which is the source a
//!   PROXY protocol header carried when the connection began with one (the load balancer's
//!   address is `client` then), else `client`'s IP: what `--add-client-ip` sends;
//! - `proxy` (after `flags`, only when the connection began with a PROXY header):
//!   `{"version":2,"local":false,"source":"203.0.113.7:51000","destination":"10.0.0.5:80",
//!   "authority":"shop.example.com","aws_vpce_id":"vpce-…","tlv_types":[234,2]}`, with `null`
//!   for what the header did not carry (LOCAL and `UNKNOWN` headers have no addresses);
//! - timestamps: RFC 3339 in UTC with exactly nine fractional digits (nanoseconds), so they sort
//!   as strings and lose nothing;
//! - `client`/`server`: `ip:port`, IPv6 in brackets;
//! - `method`, `target`, `host`: lossy UTF-8; `host` null when the request has none;
//! - `raw`: the request's bytes, standard base64 with padding.
//!
//! Writing is blocking I/O, so it runs on its own thread, not on the runtime.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::metrics::JsonlMetrics;
use super::queue::Queue;
use super::{DropReason, OutputError, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_REQUESTS};
use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

const WRITE_BUFFER: usize = 256 * 1024;
/// The reused line buffer is kept up to this capacity (lines of ordinary requests fit).
const KEEP_LINE_CAPACITY: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonlConfig {
    /// File to append to, or `-` for standard output.
    pub path: PathBuf,
    pub queue_requests: usize,
    pub queue_bytes: usize,
}

impl JsonlConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_requests: DEFAULT_QUEUE_REQUESTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }

    pub fn is_stdout(&self) -> bool {
        self.path == Path::new("-")
    }

    pub(crate) fn validate(&self) -> Result<(), OutputError> {
        if self.queue_requests == 0 {
            return Err(OutputError::Zero {
                what: "jsonl queue_requests",
            });
        }
        if self.queue_bytes == 0 {
            return Err(OutputError::Zero {
                what: "jsonl queue_bytes",
            });
        }
        Ok(())
    }

    /// Opens the destination: appends to an existing file rather than truncating a record.
    pub(crate) fn open(&self) -> Result<Box<dyn Write + Send>, OutputError> {
        if self.is_stdout() {
            return Ok(Box::new(std::io::stdout()));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|source| OutputError::JsonlOpen {
                path: self.path.clone(),
                source,
            })?;
        Ok(Box::new(f))
    }
}

/// The JSON line (with its newline) for one request.
pub fn encode_line(req: &RebuiltRequest) -> Vec<u8> {
    let mut line = Vec::new();
    encode_line_into(&mut line, req);
    line
}

/// Appends the JSON line for one request to `line`. Written field by field in a fixed order
/// rather than through a serialised struct, and into a buffer the writer reuses: at hundreds of
/// thousands of requests per second the formatting machinery, a `String` per timestamp and a
/// fresh `Vec` per line were most of this thread's time (perf). `raw` is base64, which needs no
/// escaping, so it is encoded straight into the line rather than into a string that serde would
/// then scan byte by byte.
pub fn encode_line_into(line: &mut Vec<u8>, req: &RebuiltRequest) {
    let b64_len = base64_simd::STANDARD.encoded_length(req.raw.len());
    line.reserve(320 + req.head_len.min(4096) + b64_len);
    line.extend_from_slice(b"{\"first_ts\":\"");
    push_rfc3339_nanos(line, req.first_ts);
    line.extend_from_slice(b"\",\"last_ts\":\"");
    push_rfc3339_nanos(line, req.last_ts);
    line.extend_from_slice(b"\",\"vni\":");
    push_decimal(line, u64::from(req.vni));
    line.extend_from_slice(b",\"client\":\"");
    push_socket_addr(line, req.client);
    line.extend_from_slice(b"\",\"client_ip\":\"");
    push_ip(line, req.client_ip());
    line.extend_from_slice(b"\",\"server\":\"");
    push_socket_addr(line, req.server);
    line.extend_from_slice(b"\",\"method\":");
    push_text(line, req.raw.get(req.method.clone()).unwrap_or_default());
    line.extend_from_slice(b",\"target\":");
    push_text(line, req.raw.get(req.target.clone()).unwrap_or_default());
    line.extend_from_slice(b",\"host\":");
    match &req.host {
        Some(r) => push_text(line, req.raw.get(r.clone()).unwrap_or_default()),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"body_len\":");
    push_decimal(line, req.body_len);
    let f = req.flags;
    let flag = |b: bool| -> &'static [u8] {
        if b {
            b"true"
        } else {
            b"false"
        }
    };
    line.extend_from_slice(b",\"flags\":{\"body_over_limit\":");
    line.extend_from_slice(flag(f.body_over_limit));
    line.extend_from_slice(b",\"gap\":");
    line.extend_from_slice(flag(f.gap));
    line.extend_from_slice(b",\"malformed\":");
    line.extend_from_slice(flag(f.malformed));
    line.push(b'}');
    if let Some(p) = &req.proxy {
        push_proxy(line, p);
    }
    if let Some(h) = &req.h2 {
        // An HTTP/2 stream's request: `raw` is its HTTP/1.1 rendering; this says which stream
        // it was and what the rendering folded in.
        line.extend_from_slice(b",\"h2\":{\"stream\":");
        push_decimal(line, u64::from(h.stream_id));
        line.extend_from_slice(b",\"scheme\":");
        match &h.scheme {
            Some(s) => push_text(line, s),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"trailers\":");
        push_decimal(line, h.trailers.len() as u64);
        line.push(b'}');
    }
    line.extend_from_slice(b",\"raw\":\"");
    // SIMD base64: encoding every request's bytes was the largest single cost of this output
    // (a fifth of its thread with the scalar `base64` engine).
    let start = line.len();
    line.resize(start + b64_len, 0);
    let written = base64_simd::STANDARD
        .encode(
            &req.raw,
            base64_simd::Out::from_slice(line.get_mut(start..).unwrap_or_default()),
        )
        .len();
    line.truncate(start + written);
    line.extend_from_slice(b"\"}\n");
}

fn push_decimal(line: &mut Vec<u8>, v: u64) {
    line.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `v` in exactly `width` decimal digits (the caller keeps `v` below 10^width).
fn push_padded(line: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = line.len();
    line.resize(start + width, b'0');
    for d in line.get_mut(start..).unwrap_or_default().iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn push_ip(line: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v) => {
            for (i, o) in v.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push(b'.');
                }
                push_decimal(line, u64::from(o));
            }
        }
        std::net::IpAddr::V6(v) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(line, "{v}");
        }
    }
}

/// `,"proxy":{…}`: what the connection's PROXY header said.
fn push_proxy(line: &mut Vec<u8>, p: &crate::proxy::ProxyInfo) {
    line.extend_from_slice(b",\"proxy\":{\"version\":");
    push_decimal(line, u64::from(p.version));
    line.extend_from_slice(b",\"local\":");
    line.extend_from_slice(if p.local { b"true" } else { b"false" });
    for (key, addr) in [("source", p.source), ("destination", p.destination)] {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        match addr {
            Some(a) => {
                line.push(b'"');
                push_socket_addr(line, a);
                line.push(b'"');
            }
            None => line.extend_from_slice(b"null"),
        }
    }
    for (key, text) in [("authority", &p.authority), ("aws_vpce_id", &p.aws_vpce_id)] {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        match text {
            Some(t) => push_text(line, t.as_bytes()),
            None => line.extend_from_slice(b"null"),
        }
    }
    line.extend_from_slice(b",\"tlv_types\":[");
    for (i, t) in p.tlv_types.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        push_decimal(line, u64::from(*t));
    }
    line.extend_from_slice(b"]}");
}

fn push_socket_addr(line: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    line.push(b'.');
                }
                push_decimal(line, u64::from(o));
            }
        }
        // IPv6 text has compression rules and scope ids; the standard library gets them right.
        std::net::SocketAddr::V6(a) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(line, "{a}");
            return;
        }
    }
    line.push(b':');
    push_decimal(line, u64::from(addr.port()));
}

/// A JSON string of `bytes` read as lossy UTF-8. Printable ASCII without quotes or backslashes
/// (nearly every method, target and host) is copied as is; anything else goes through
/// serde_json's escaping.
fn push_text(line: &mut Vec<u8>, bytes: &[u8]) {
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push(b'"');
        line.extend_from_slice(bytes);
        line.push(b'"');
    } else {
        // Writing into a Vec cannot fail; serde_json only fails on non-string map keys.
        let _ = serde_json::to_writer(&mut *line, &String::from_utf8_lossy(bytes));
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for nanoseconds since the UNIX epoch (UTC).
pub fn rfc3339_nanos(ts: Timestamp) -> String {
    let mut s = Vec::with_capacity(30);
    push_rfc3339_nanos(&mut s, ts);
    String::from_utf8_lossy(&s).into_owned()
}

fn push_rfc3339_nanos(line: &mut Vec<u8>, ts: Timestamp) {
    let secs = ts / 1_000_000_000;
    let nanos = ts % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    push_padded(line, y, 4);
    line.push(b'-');
    push_padded(line, m, 2);
    line.push(b'-');
    push_padded(line, d, 2);
    line.push(b'T');
    push_padded(line, rem / 3600, 2);
    line.push(b':');
    push_padded(line, rem % 3600 / 60, 2);
    line.push(b':');
    push_padded(line, rem % 60, 2);
    line.push(b'.');
    push_padded(line, nanos, 9);
    line.push(b'Z');
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm, for
/// non-negative days only, which is all a u64 timestamp can give).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where the writer stands: lines are counted as written only once a flush has put them in the
/// destination, so a failing destination (disk full, closed pipe) counts exactly the lines it
/// lost.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Lines in the buffer, not yet flushed.
    pending: u64,
    queue: Arc<Queue>,
    metrics: JsonlMetrics,
    name: String,
    logged: bool,
}

impl Writer {
    fn write_line(&mut self, line: &[u8]) {
        // Flush before the buffer would spill by itself, so every flush is one we observe.
        if self.out.buffer().len() + line.len() > self.out.capacity() {
            self.flush();
        }
        self.pending += 1;
        if let Err(e) = self.out.write_all(line) {
            self.failed(e, "write");
        } else if line.len() >= self.out.capacity() {
            // Too large for the buffer: it went straight to the destination.
            self.flush();
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Ok(()) => {
                self.metrics.written.inc_by(self.pending);
                self.pending = 0;
            }
            Err(e) => self.failed(e, "flush"),
        }
    }

    /// The buffered lines are lost: count them and start over with an empty buffer, so a
    /// half-written buffer is not retried into the middle of a line forever.
    fn failed(&mut self, e: std::io::Error, what: &str) {
        self.metrics.write_errors.inc();
        self.queue.count_drops(DropReason::WriteError, self.pending);
        self.pending = 0;
        if !self.logged {
            self.logged = true;
            tracing::error!(output = %self.name, error = %e, "JSONL {what} failed; further errors are only counted");
        }
        let out = std::mem::replace(&mut self.out, BufWriter::new(Box::new(std::io::sink())));
        let (inner, _discarded) = out.into_parts();
        self.out = BufWriter::with_capacity(WRITE_BUFFER, inner);
    }
}

/// The writer thread: drains the queue into `out`, flushing whenever the queue runs empty (so
/// a reader following the file sees lines promptly while bursts still batch) and at the end.
/// When `abandon` is set (drain deadline passed) the rest is counted as dropped for shutdown.
/// Waits for the next request: polls every 500 µs for up to 50 ms, then blocks.
fn poll_then_block(queue: &Arc<Queue>) -> Option<crate::output::queue::Taken> {
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_micros(500));
        if let Some(t) = queue.try_pop() {
            return Some(t);
        }
        if queue.is_closed() {
            break;
        }
    }
    queue.pop_blocking()
}

pub(crate) fn run(
    queue: Arc<Queue>,
    out: Box<dyn Write + Send>,
    metrics: JsonlMetrics,
    abandon: Arc<AtomicBool>,
    name: String,
) {
    let mut w = Writer {
        out: BufWriter::with_capacity(WRITE_BUFFER, out),
        pending: 0,
        queue: Arc::clone(&queue),
        metrics,
        name,
        logged: false,
    };
    // One line buffer, reused: its capacity follows the requests seen, up to a bound.
    let mut line = Vec::new();
    loop {
        let taken = match queue.try_pop() {
            Some(t) => t,
            None => {
                w.flush();
                // Poll a little before blocking: a blocked consumer costs every producer a
                // futex wake-up per request, which at hundreds of thousands of requests per
                // second is most of the output's cost. A millisecond of latency is nothing here.
                match poll_then_block(&queue) {
                    Some(t) => t,
                    None => break,
                }
            }
        };
        if abandon.load(Ordering::Relaxed) {
            taken.drop_as(DropReason::Shutdown);
            continue;
        }
        line.clear();
        encode_line_into(&mut line, taken.request());
        w.write_line(&line);
        if line.capacity() > KEEP_LINE_CAPACITY {
            // A multi-megabyte request passed: give its buffer back rather than hold it.
            line = Vec::new();
        }
        // Counted by the writer from here on (written at flush, or dropped on failure).
        taken.done();
    }
    w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestFlags;
    use base64::Engine as _;
    use bytes::Bytes;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(1_709_164_800_000_000_001),
            "2024-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_999_999_999),
            "2000-02-29T00:00:00.999999999Z"
        );
        assert_eq!(
            rfc3339_nanos(4_102_444_800_000_000_000),
            "2100-01-01T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339_nanos(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    }

    fn decode_raw(line: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(v["raw"].as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn exact_line_for_a_request_with_host() {
        let raw = b"POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi";
        let req = RebuiltRequest {
            first_ts: 1_700_000_000_123_456_789,
            last_ts: 1_700_000_000_223_456_789,
            vni: 4242,
            client: "10.0.0.1:40000".parse().unwrap(),
            server: "[2001:db8::2]:8080".parse().unwrap(),
            raw: Bytes::from_static(raw),
            head_len: raw.len() - 2,
            method: 0..4,
            target: 5..11,
            host: Some(28..39),
            version_minor: 1,
            body_len: 2,
            flags: RequestFlags {
                body_over_limit: false,
                gap: false,
                malformed: true,
            },
            proxy: None,
            h2: None,
        };
        let line = String::from_utf8(encode_line(&req)).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"first_ts":"2023-11-14T22:13:20.123456789Z","last_ts":"2023-11-14T22:13:20.223456789Z","#,
                r#""vni":4242,"client":"10.0.0.1:40000","client_ip":"10.0.0.1","server":"[2001:db8::2]:8080","method":"POST","#,
                r#""target":"/a?b=c","host":"example.com","body_len":2,"#,
                r#""flags":{"body_over_limit":false,"gap":false,"malformed":true},"#,
                r#""raw":"UE9TVCAvYT9iPWMgSFRUUC8xLjENCkhvc3Q6IGV4YW1wbGUuY29tDQpDb250ZW50LUxlbmd0aDogMg0KDQpoaQ=="}"#,
                "\n"
            )
        );
        assert_eq!(decode_raw(&line), raw);
    }

    #[test]
    fn no_host_gap_and_non_utf8() {
        let raw = b"G\xffT /\xfe\"q HTTP/1.0\r\n\r\n\x00\x01";
        let req = RebuiltRequest {
            first_ts: 5,
            last_ts: 6,
            vni: 0,
            client: "[::1]:1".parse().unwrap(),
            server: "127.0.0.1:80".parse().unwrap(),
            raw: Bytes::from_static(raw),
            head_len: 21,
            method: 0..3,
            target: 4..8,
            host: None,
            version_minor: 0,
            body_len: 100,
            flags: RequestFlags {
                body_over_limit: true,
                gap: true,
                malformed: false,
            },
            proxy: None,
            h2: None,
        };
        let line = String::from_utf8(encode_line(&req)).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"first_ts":"1970-01-01T00:00:00.000000005Z","last_ts":"1970-01-01T00:00:00.000000006Z","#,
                r#""vni":0,"client":"[::1]:1","client_ip":"::1","server":"127.0.0.1:80","method":"G�T","target":"/�\"q","#,
                r#""host":null,"body_len":100,"flags":{"body_over_limit":true,"gap":true,"malformed":false},"#,
                r#""raw":"R/9UIC/+InEgSFRUUC8xLjANCg0KAAE="}"#,
                "\n"
            )
        );
        assert_eq!(decode_raw(&line), raw);
    }

    #[test]
    fn a_proxy_header_gives_the_client_ip_and_its_own_object() {
        let raw = b"GET / HTTP/1.1\r\n\r\n";
        let mut req = RebuiltRequest {
            first_ts: 0,
            last_ts: 0,
            vni: 1,
            client: "10.0.0.9:5000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            raw: Bytes::from_static(raw),
            head_len: raw.len(),
            method: 0..3,
            target: 4..5,
            host: None,
            version_minor: 1,
            body_len: 0,
            flags: RequestFlags::default(),
            proxy: Some(std::sync::Arc::new(crate::proxy::ProxyInfo {
                version: 2,
                local: false,
                source: Some("[2001:db8::7]:51000".parse().unwrap()),
                destination: Some("[2001:db8::5]:80".parse().unwrap()),
                authority: Some("shop.\"example\".com".into()),
                aws_vpce_id: Some("vpce-08d2bf15fac5001c9".into()),
                tlv_types: vec![234, 2],
                header_len: 100,
            })),
            h2: None,
        };
        let line = String::from_utf8(encode_line(&req)).unwrap();
        assert!(
            line.contains(r#""client":"10.0.0.9:5000","client_ip":"2001:db8::7","server""#),
            "{line}"
        );
        assert!(
            line.contains(concat!(
                r#""flags":{"body_over_limit":false,"gap":false,"malformed":false},"#,
                r#""proxy":{"version":2,"local":false,"source":"[2001:db8::7]:51000","#,
                r#""destination":"[2001:db8::5]:80","authority":"shop.\"example\".com","#,
                r#""aws_vpce_id":"vpce-08d2bf15fac5001c9","tlv_types":[234,2]},"raw":"#
            )),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["proxy"]["authority"], "shop.\"example\".com");
        // LOCAL: no addresses; the client IP is the connection's own.
        req.proxy = Some(std::sync::Arc::new(crate::proxy::ProxyInfo {
            version: 2,
            local: true,
            ..Default::default()
        }));
        let v: serde_json::Value = serde_json::from_slice(&encode_line(&req)).unwrap();
        assert_eq!(v["client_ip"], "10.0.0.9");
        assert_eq!(v["proxy"]["source"], serde_json::Value::Null);
        assert_eq!(v["proxy"]["local"], true);
        assert_eq!(v["proxy"]["tlv_types"], serde_json::json!([]));
    }

    proptest::proptest! {
        /// The hand-written encoders write what serde_json and the standard library would.
        #[test]
        fn fields_encode_like_serde_and_std(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            ascii in "[ -~]{0,64}",
            addr in proptest::prelude::any::<std::net::SocketAddr>(),
        ) {
            for b in [&bytes[..], ascii.as_bytes()] {
                let mut got = Vec::new();
                push_text(&mut got, b);
                let want = serde_json::to_string(&String::from_utf8_lossy(b)).unwrap();
                proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), want);
            }
            let mut got = Vec::new();
            push_socket_addr(&mut got, addr);
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), addr.to_string());
            let mut got = Vec::new();
            push_ip(&mut got, addr.ip());
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), addr.ip().to_string());
        }
    }

    #[test]
    fn out_of_range_fields_become_empty_not_a_panic() {
        let req = RebuiltRequest {
            first_ts: 0,
            last_ts: 0,
            vni: 1,
            client: "1.1.1.1:1".parse().unwrap(),
            server: "2.2.2.2:2".parse().unwrap(),
            raw: Bytes::from_static(b"GE"),
            head_len: 0,
            method: 0..3,
            target: 10..20,
            host: Some(std::ops::Range { start: 5, end: 1 }),
            version_minor: 1,
            body_len: 0,
            flags: RequestFlags::default(),
            proxy: None,
            h2: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&encode_line(&req)).unwrap();
        assert_eq!(
            (
                v["method"].as_str(),
                v["target"].as_str(),
                v["host"].as_str()
            ),
            (Some(""), Some(""), Some(""))
        );
    }

    mod through_outputs {
        use super::*;
        use crate::output::tests::request;
        use crate::output::{Mode, Outputs, OutputsConfig};
        use crate::status::Health;
        use prometheus_client::registry::Registry;
        use std::time::Duration;

        fn temp_path(tag: &str) -> PathBuf {
            let p = std::env::temp_dir().join(format!(
                "rebuilder-jsonl-{}-{tag}.jsonl",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&p);
            p
        }

        fn sample(registry: &Registry, name: &str) -> f64 {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .parse()
                .unwrap()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn writes_every_request_gaps_included_and_appends() {
            let path = temp_path("all");
            std::fs::write(&path, "earlier line\n").unwrap();
            let mut registry = Registry::default();
            let outputs = Outputs::start(
                &OutputsConfig {
                    upstream: None,
                    jsonl: Some(JsonlConfig::new(&path)),
                },
                Mode::Offline,
                &mut registry,
                Health::new(),
                &tokio::runtime::Handle::current(),
            )
            .unwrap();
            let mut gap =
                (*request(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\npart")).clone();
            gap.flags.gap = true;
            let reqs = vec![
                request(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"),
                Arc::new(gap),
                request(b"GET /3 HTTP/1.1\r\n\r\n"),
            ];
            for r in &reqs {
                outputs.submit(Arc::clone(r));
            }
            let report = outputs.drain(Duration::from_secs(5)).await;
            assert!(report.finished() && report.abandoned() == 0, "{report:?}");

            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("earlier line"));
            let written: Vec<&str> = lines.collect();
            let expected: Vec<String> = reqs
                .iter()
                .map(|r| {
                    String::from_utf8(encode_line(r))
                        .unwrap()
                        .trim_end()
                        .to_string()
                })
                .collect();
            assert_eq!(written, expected);
            for (line, req) in written.iter().zip(&reqs) {
                assert_eq!(decode_raw(line), req.raw.to_vec());
            }
            let v: serde_json::Value = serde_json::from_str(written[1]).unwrap();
            assert_eq!(v["flags"]["gap"], serde_json::Value::Bool(true));
            assert_eq!(sample(&registry, "rebuilder_jsonl_written_total"), 3.0);
            assert_eq!(
                sample(
                    &registry,
                    "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"gap\"}"
                ),
                0.0
            );
            let _ = std::fs::remove_file(&path);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dropping_the_last_handle_flushes_and_stops_the_writer() {
            let path = temp_path("drop");
            let mut registry = Registry::default();
            let outputs = Outputs::start(
                &OutputsConfig {
                    upstream: None,
                    jsonl: Some(JsonlConfig::new(&path)),
                },
                Mode::Live,
                &mut registry,
                Health::new(),
                &tokio::runtime::Handle::current(),
            )
            .unwrap();
            let clone = outputs.clone();
            clone.submit(request(b"GET /kept HTTP/1.1\r\n\r\n"));
            drop(outputs);
            drop(clone);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while sample(&registry, "rebuilder_jsonl_written_total") < 1.0 {
                assert!(std::time::Instant::now() < deadline, "writer never flushed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 1);
            assert!(text.contains(r#""target":"/kept""#), "{text}");
            let _ = std::fs::remove_file(&path);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn write_errors_are_counted_not_fatal() {
            let mut registry = Registry::default();
            let outputs = Outputs::start(
                &OutputsConfig {
                    upstream: None,
                    jsonl: Some(JsonlConfig::new("/dev/full")),
                },
                Mode::Live,
                &mut registry,
                Health::new(),
                &tokio::runtime::Handle::current(),
            )
            .unwrap();
            for _ in 0..5 {
                outputs.submit(request(b"GET / HTTP/1.1\r\n\r\n"));
            }
            let report = outputs.drain(Duration::from_secs(5)).await;
            assert!(report.finished(), "{report:?}");
            assert_eq!(sample(&registry, "rebuilder_jsonl_written_total"), 0.0);
            assert_eq!(
                sample(
                    &registry,
                    "rebuilder_output_dropped_total{output=\"jsonl\",reason=\"write_error\"}"
                ),
                5.0
            );
            assert!(sample(&registry, "rebuilder_jsonl_write_errors_total") >= 1.0);
        }
    }
}
