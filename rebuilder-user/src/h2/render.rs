//! An HTTP/2 request rendered as the HTTP/1.1 request that carries the same thing, so that a
//! WAF behind an HTTP/1.1 listener (and the byte-exact upstream, and the JSON lines) take it
//! like any other.
//!
//! The rendering, documented in the README:
//! - `METHOD PATH HTTP/1.1` (`CONNECT AUTHORITY HTTP/1.1` for CONNECT), then `host: AUTHORITY`
//!   when the client sent `:authority` and no `host` field of its own;
//! - every other field in the order it was sent, names as sent (lowercase in HTTP/2), `cookie`
//!   crumbs joined with `; ` where the first one was (RFC 9113 §8.2.3);
//! - trailers (gRPC and others) as `x-rebuilder-trailer: NAME: VALUE` fields, one per trailer
//!   field, after the others: HTTP/1.1 carries trailers only in a chunked body, which WAFs
//!   mostly do not inspect, and a field they do;
//! - `content-length` when the body is not empty and the client sent none;
//! - a body over `max_body_bytes` as for HTTP/1.x: `content-length: 0` and the original length
//!   in `HttpLimits::original_length_header`.
//!
//! What cannot be rendered without changing how the request is framed is malformed and never
//! replayed (a server must reject it too, RFC 9113 §8.1.1, §8.2.1, §8.2.2, §8.3.1): a control
//! character (but HTAB) in a field value, a field name or method that is not a token, a space
//! or control character in the target, an authority that is not a host and port (or differs
//! from a `host` field), connection-specific fields
//! (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, `te` other
//! than `trailers`), a `content-length` that is not the body's length, missing or repeated
//! pseudo-header fields, or a pseudo-header after a regular field.

use std::sync::Arc;

use bytes::Bytes;

use crate::http::{FlowContext, HttpLimits};
use crate::request::{RebuiltRequest, RequestFlags};
use crate::segment::Timestamp;

/// What a request rebuilt from an HTTP/2 stream keeps of its origin, beside the HTTP/1.1
/// rendering in `raw`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H2Origin {
    pub stream_id: u32,
    /// `:scheme` (`None` for CONNECT).
    pub scheme: Option<Bytes>,
    /// Whether the rendering's `host` field came from `:authority`.
    pub host_from_authority: bool,
    /// The trailer fields, also rendered into `raw` as `x-rebuilder-trailer` fields.
    pub trailers: Vec<(Bytes, Bytes)>,
}

/// The name under which trailers are rendered.
pub const TRAILER_FIELD: &str = "x-rebuilder-trailer";

pub struct Parts {
    pub stream_id: u32,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub body_len: u64,
    pub over_limit: bool,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

#[derive(Default)]
struct Pseudo {
    method: Option<Vec<u8>>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    protocol: Option<Vec<u8>>,
}

fn set(slot: &mut Option<Vec<u8>>, v: Vec<u8>) -> Result<(), Malformed> {
    if slot.is_some() {
        return Err(Malformed);
    }
    *slot = Some(v);
    Ok(())
}

/// A field value HTTP/1.1 (and every HTTP/2 server) refuses: control characters but HTAB
/// (RFC 9110 §5.5; CR, LF and NUL would also split or end the head).
fn bad_value(v: &[u8]) -> bool {
    v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// RFC 9110 token characters: what a field name and a method may hold.
fn is_token(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn bad_name(n: &[u8]) -> bool {
    !is_token(n)
}

/// An `:authority` that names a host and port and nothing else (RFC 9113 §8.3.1: no userinfo;
/// RFC 3986 host characters): a `/`, `?`, `#` or `@` in it would move what the WAF reads as the
/// path or host.
fn bad_authority(v: &[u8]) -> bool {
    v.is_empty()
        || !v
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&c))
}

/// A request target with no whitespace or control character, which would split the request
/// line or be refused.
fn bad_target(v: &[u8]) -> bool {
    v.is_empty() || v.iter().any(|&b| b <= 0x20 || b == 0x7f)
}

const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

pub fn render(
    ctx: &FlowContext,
    limits: &HttpLimits,
    parts: Parts,
) -> Result<RebuiltRequest, Malformed> {
    let mut pseudo = Pseudo::default();
    let mut regular: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(parts.fields.len());
    for (name, value) in parts.fields {
        if let Some(p) = name.strip_prefix(b":") {
            if !regular.is_empty() {
                return Err(Malformed);
            }
            match p {
                b"method" => set(&mut pseudo.method, value)?,
                b"scheme" => set(&mut pseudo.scheme, value)?,
                b"authority" => set(&mut pseudo.authority, value)?,
                b"path" => set(&mut pseudo.path, value)?,
                b"protocol" => set(&mut pseudo.protocol, value)?,
                _ => return Err(Malformed),
            }
            continue;
        }
        if bad_name(&name) || bad_value(&value) {
            return Err(Malformed);
        }
        let lower = name.to_ascii_lowercase();
        if CONNECTION_SPECIFIC.contains(&lower.as_slice())
            || (lower == b"te" && !value.eq_ignore_ascii_case(b"trailers"))
        {
            return Err(Malformed);
        }
        regular.push((name, value));
    }
    for (name, value) in &parts.trailers {
        if name.starts_with(b":") || bad_name(name) || bad_value(value) {
            return Err(Malformed);
        }
    }
    let method = pseudo.method.ok_or(Malformed)?;
    if !is_token(&method) {
        return Err(Malformed);
    }
    let connect = method == b"CONNECT" && pseudo.protocol.is_none();
    let target = if connect {
        if pseudo.scheme.is_some() || pseudo.path.is_some() {
            return Err(Malformed);
        }
        pseudo.authority.clone().ok_or(Malformed)?
    } else {
        if pseudo.scheme.is_none() {
            return Err(Malformed);
        }
        pseudo.path.ok_or(Malformed)?
    };
    if bad_target(&target) || pseudo.authority.as_deref().is_some_and(bad_authority) {
        return Err(Malformed);
    }

    // The body's framing is ours to state: a content-length that is not the body's length
    // would make the WAF read the next request into this one.
    let mut declared = None;
    for (name, value) in &regular {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Malformed)?;
            if declared.is_some_and(|d| d != n) || n != parts.body_len {
                return Err(Malformed);
            }
            declared = Some(n);
        }
    }
    let host = regular
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .map(|(_, v)| v.as_slice());
    let has_host = host.is_some();
    // Both, naming different hosts: servers route by `:authority`, the WAF would read `host`
    // (RFC 9113 §8.3.1 makes such a request malformed).
    if let (Some(h), Some(a)) = (host, pseudo.authority.as_deref()) {
        if !h.eq_ignore_ascii_case(a) {
            return Err(Malformed);
        }
    }

    let mut raw = Vec::with_capacity(256 + parts.body.len());
    raw.extend_from_slice(&method);
    let method_range = 0..raw.len();
    raw.push(b' ');
    let target_start = raw.len();
    raw.extend_from_slice(&target);
    let target_range = target_start..raw.len();
    raw.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host_range = None;
    let host_from_authority = !has_host && pseudo.authority.is_some();
    if let (true, Some(a)) = (host_from_authority, &pseudo.authority) {
        raw.extend_from_slice(b"host: ");
        let at = raw.len();
        raw.extend_from_slice(a);
        host_range = Some(at..raw.len());
        raw.extend_from_slice(b"\r\n");
    }
    let mut cookies_done = false;
    for (name, value) in &regular {
        let is_cookie = name.eq_ignore_ascii_case(b"cookie");
        if is_cookie && cookies_done {
            continue;
        }
        if parts.over_limit && name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        raw.extend_from_slice(name);
        raw.extend_from_slice(b": ");
        let at = raw.len();
        if is_cookie {
            cookies_done = true;
            let crumbs = regular
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
                .map(|(_, v)| v.as_slice());
            for (i, crumb) in crumbs.enumerate() {
                if i > 0 {
                    raw.extend_from_slice(b"; ");
                }
                raw.extend_from_slice(crumb);
            }
        } else {
            raw.extend_from_slice(value);
        }
        if name.eq_ignore_ascii_case(b"host") && host_range.is_none() {
            host_range = Some(at..raw.len());
        }
        raw.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.trailers {
        raw.extend_from_slice(TRAILER_FIELD.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(name);
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    if parts.over_limit {
        raw.extend_from_slice(limits.original_length_header.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(itoa::Buffer::new().format(parts.body_len).as_bytes());
        raw.extend_from_slice(b"\r\ncontent-length: 0\r\n");
    } else if declared.is_none() && parts.body_len > 0 {
        raw.extend_from_slice(b"content-length: ");
        raw.extend_from_slice(itoa::Buffer::new().format(parts.body_len).as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let head_len = raw.len();
    if !parts.over_limit {
        raw.extend_from_slice(&parts.body);
    }
    Ok(RebuiltRequest {
        first_ts: parts.first_ts,
        last_ts: parts.last_ts,
        vni: ctx.vni,
        client: ctx.client,
        server: ctx.server,
        raw: Bytes::from(raw),
        head_len,
        method: method_range,
        target: target_range,
        host: host_range,
        version_minor: 1,
        body_len: parts.body_len,
        flags: RequestFlags {
            body_over_limit: parts.over_limit,
            gap: false,
            malformed: false,
        },
        proxy: None,
        h2: Some(Arc::new(H2Origin {
            stream_id: parts.stream_id,
            scheme: (!connect).then(|| Bytes::from(pseudo.scheme.unwrap_or_default())),
            host_from_authority,
            trailers: parts
                .trailers
                .into_iter()
                .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
                .collect(),
        })),
    })
}
