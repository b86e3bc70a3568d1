//! A request's JSON line, written by hand: field by field in a fixed order into a reused
//! buffer, with base64 and JSON escaping done in place (why: see [`encode_line_into`]). Pure:
//! request in, bytes out.
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

use crate::request::RebuiltRequest;
use crate::segment::Timestamp;

#[cfg(test)]
mod tests;

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
