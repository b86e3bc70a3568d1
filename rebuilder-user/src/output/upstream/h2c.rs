//! `--upstream-protocol h2c`: requests rebuilt from HTTP/2 streams replayed over one HTTP/2
//! connection to the upstream (prior knowledge, hyper's client), multiplexed, for a WAF that
//! listens for HTTP/2.
//!
//! The request is read back from its HTTP/1.1 rendering with the headers the operator asked
//! for already added (`HeaderAdds`), so both protocols carry the same fields: the request line
//! gives `:method` and `:path`, the `host` field (which `:authority` became, or the client's
//! own) gives `:authority` again, every other field goes as it is, in order, but the rendered
//! `x-rebuilder-trailer` fields, which go back to being trailers. Answers are read frame by
//! frame and dropped, behind small flow-control windows. What cannot be carried this way (a
//! path that is not UTF-8, which HTTP/1.1 servers often take and WAFs should see) goes over
//! HTTP/1.1 instead, as the rendering it is. The connection is opened through the HTTP/1.1
//! pool's `open` (the same breaker, reachability and metrics) and opened again after it broke.
//!
//! May touch: the pool's shared state and `Failure` (`super`), and `crate::h2` for what an
//! HTTP/2 request carried; hyper's HTTP/2 client is used nowhere else.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Failure, Shared};
use crate::h2::H2Origin;
use crate::request::RebuiltRequest;

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// The HTTP/2 connection, opened on first use and again after it broke.
#[derive(Default)]
pub(super) struct H2cClient {
    sender: tokio::sync::Mutex<Option<SendRequest<Body>>>,
}

/// CONNECT has no path to replay over HTTP/2 this way; it keeps to HTTP/1.1.
pub(super) fn is_connect(req: &RebuiltRequest) -> bool {
    req.method_bytes() == b"CONNECT"
}

/// Windows that bound what the upstream's answers may make this side hold (they are read and
/// dropped frame by frame): about what an HTTP/1.1 pool connection's response buffer takes,
/// the figure the memory budget sets aside per upstream connection.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 128 * 1024;
const MAX_RESPONSE_HEADERS: u32 = 64 * 1024;

impl H2cClient {
    async fn sender(&self, shared: &Shared) -> Result<SendRequest<Body>, Failure> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        *slot = None;
        let conn = shared.open().await?;
        let (sender, driver) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_RESPONSE_HEADERS)
            .handshake(TokioIo::new(conn.stream))
            .await
            .map_err(|e| Failure::Invalid(format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Drops the connection once it is closed (a stream's own error leaves it to the others).
    async fn forget_if_closed(&self) {
        let mut slot = self.sender.lock().await;
        if slot.as_ref().is_some_and(|s| s.is_closed()) {
            *slot = None;
        }
    }

    /// Sends the request and reads the answer to its end, dropping its bytes; the status. A
    /// request the connection took no part of (it was closing: GOAWAY, an idle close) is sent
    /// once more on a new connection, as the HTTP/1.1 pool resends on a stale one.
    pub(super) async fn replay(
        &self,
        shared: &Shared,
        request: Request<Body>,
    ) -> Result<u16, Failure> {
        let started = Instant::now();
        let exchange = async {
            let mut request = request;
            let mut retried = false;
            loop {
                let mut sender = self.sender(shared).await?;
                let _ = sender.ready().await;
                match sender.try_send_request(request).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let mut body = resp.into_body();
                        while let Some(frame) = body.frame().await {
                            frame.map_err(|e| reset(e.to_string()))?;
                        }
                        return Ok::<_, Failure>(status);
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if !retried => {
                            tracing::debug!(error = %e.error(), "HTTP/2 connection not ready; resending on a new one");
                            shared.metrics.stale_retries.inc();
                            self.forget_if_closed().await;
                            *self.sender.lock().await = None;
                            request = unsent;
                            retried = true;
                        }
                        _ => return Err(reset(e.into_error().to_string())),
                    },
                }
            }
        };
        let result = match tokio::time::timeout(shared.response_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::ResponseTimeout(shared.response_timeout)),
        };
        match &result {
            Ok(_) => shared
                .metrics
                .latency
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => self.forget_if_closed().await,
        }
        result
    }
}

fn reset(what: String) -> Failure {
    Failure::Reset {
        got_bytes: true,
        source: Some(std::io::Error::other(what)),
    }
}

/// What HTTP/2 (or hyper) cannot carry of a rendering: such a request goes over HTTP/1.1.
#[derive(Debug)]
pub(super) struct NotRepresentable(pub String);

/// The HTTP/2 request a rendering (`payload`: with the added headers) stands for.
pub(super) fn build(
    payload: &[u8],
    origin: &H2Origin,
    upstream: &str,
) -> Result<Request<Body>, NotRepresentable> {
    use hyper::http::uri::{Authority, PathAndQuery, Scheme};
    let invalid = |what: &str| NotRepresentable(what.to_owned());
    let mut fields = [httparse::EMPTY_HEADER; 512];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(invalid("its rendering does not parse")),
    };
    let method = parsed.method.ok_or_else(|| invalid("no method"))?;
    let path = parsed.path.ok_or_else(|| invalid("no path"))?;
    // The rendered trailers are the last `x-rebuilder-trailer` fields (the client may have
    // sent fields of that name itself: those stay fields).
    let trailer_lines = parsed
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(crate::h2::TRAILER_FIELD))
        .count();
    let own_trailer_lines = trailer_lines.saturating_sub(origin.trailers.len());
    let mut seen_trailer_lines = 0;
    let mut authority: Option<&[u8]> = None;
    let mut headers = HeaderMap::new();
    for f in parsed.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        // `:authority` again, from the host field it became (or that the client sent).
        if name == "host" && authority.is_none() {
            authority = Some(f.value);
            continue;
        }
        if name == crate::h2::TRAILER_FIELD {
            seen_trailer_lines += 1;
            if seen_trailer_lines > own_trailer_lines {
                continue;
            }
        }
        let n = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("a field name"))?;
        let v = hyper::header::HeaderValue::from_bytes(f.value)
            .map_err(|_| invalid("a field value"))?;
        headers.append(n, v);
    }
    // Each part parsed on its own and required to read back as it was: joined into one string
    // and parsed again, a `#` or `?` in the authority, or a `#` in the path, would move what
    // the WAF reads as the path.
    let scheme = origin
        .scheme
        .as_ref()
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("http");
    let scheme = Scheme::try_from(scheme).map_err(|_| invalid("the scheme"))?;
    let authority_text = match authority {
        Some(a) => std::str::from_utf8(a).map_err(|_| invalid("the authority"))?,
        None => upstream,
    };
    let authority = Authority::try_from(authority_text).map_err(|_| invalid("the authority"))?;
    if authority.as_str() != authority_text {
        return Err(invalid("the authority"));
    }
    let path_and_query = PathAndQuery::try_from(path).map_err(|_| invalid("the path"))?;
    if path_and_query.as_str() != path {
        return Err(invalid("the path"));
    }
    let uri = hyper::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| invalid(&e.to_string()))?;
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let body = Bytes::copy_from_slice(payload.get(head_len..).unwrap_or_default());
    let body: Body = if origin.trailers.is_empty() {
        Full::new(body).boxed()
    } else {
        let mut trailers = HeaderMap::new();
        for (n, v) in &origin.trailers {
            let n =
                hyper::header::HeaderName::from_bytes(n).map_err(|_| invalid("a trailer name"))?;
            let v = hyper::header::HeaderValue::from_bytes(v)
                .map_err(|_| invalid("a trailer value"))?;
            trailers.append(n, v);
        }
        Full::new(body)
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed()
    };
    builder.body(body).map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(trailers: Vec<(Bytes, Bytes)>) -> H2Origin {
        H2Origin {
            stream_id: 1,
            scheme: Some(Bytes::from_static(b"http")),
            host_from_authority: true,
            trailers,
        }
    }

    #[test]
    fn a_rendering_becomes_the_http2_request_it_stands_for() {
        let payload = b"POST /S/M HTTP/1.1\r\nhost: api.example:50051\r\ncontent-type: application/grpc\r\nx-rebuilder-trailer: x-sum: 9f\r\ncontent-length: 3\r\nX-Forwarded-For: 10.0.0.7\r\n\r\nabc";
        let t = vec![(Bytes::from_static(b"x-sum"), Bytes::from_static(b"9f"))];
        let r = build(payload, &origin(t), "waf:80").expect("representable");
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri().to_string(), "http://api.example:50051/S/M");
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "content-length", "x-forwarded-for"]);
    }

    #[test]
    fn a_path_that_would_read_otherwise_joined_is_left_to_http1() {
        // Found in review: joined and parsed again, `#` would cut the path the WAF reads.
        let payload = b"GET /public#/../admin?x=1 HTTP/1.1\r\nhost: a\r\n\r\n";
        assert!(build(payload, &origin(Vec::new()), "waf:80").is_err());
        let payload = b"GET /x HTTP/1.1\r\nhost: good.example#\r\n\r\n";
        assert!(build(payload, &origin(Vec::new()), "waf:80").is_err());
    }

    #[test]
    fn what_http2_cannot_carry_is_left_to_http1() {
        // A path that is not UTF-8 (the client's bytes, kept in the rendering).
        let payload = b"GET /caf\xe9 HTTP/1.1\r\nhost: a\r\n\r\n";
        assert!(build(payload, &origin(Vec::new()), "waf:80").is_err());
    }
}
