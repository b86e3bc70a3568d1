//! Headers the upstream output may add to a replayed request (client IP, VNI), inserted without
//! touching any other byte: the WAF must see the request as the client sent it.

use std::net::IpAddr;

use bytes::Bytes;

use super::OutputError;

pub const DEFAULT_CLIENT_IP_HEADER: &str = "X-Forwarded-For";
pub const DEFAULT_VNI_HEADER: &str = "X-Mirror-VNI";

/// Which headers to add, by name. Both off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderAdds {
    /// Appended the way proxies do: to the last existing occurrence, else as a new header.
    pub client_ip: Option<String>,
    /// Always a new header line, last in the head.
    pub vni: Option<String>,
}

impl HeaderAdds {
    pub fn is_empty(&self) -> bool {
        self.client_ip.is_none() && self.vni.is_none()
    }

    pub fn validate(&self) -> Result<(), OutputError> {
        for (what, name) in [("client IP", &self.client_ip), ("VNI", &self.vni)] {
            if let Some(name) = name {
                if !is_token(name.as_bytes()) {
                    return Err(OutputError::InvalidHeaderName {
                        what,
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The bytes to send for `raw`: `raw` itself (no copy) when nothing is to be added or the
    /// head has no recognisable end (a head the framer produced always has one).
    pub fn apply(&self, raw: &Bytes, head_len: usize, client: IpAddr, vni: u32) -> Bytes {
        if self.is_empty() {
            return raw.clone();
        }
        let ip = self
            .client_ip
            .as_ref()
            .map(|n| (n.as_str(), client.to_canonical().to_string()));
        let vni = self.vni.as_ref().map(|n| (n.as_str(), vni.to_string()));
        match insert_headers(
            raw,
            head_len,
            ip.as_ref().map(|(n, v)| (*n, v.as_str())),
            vni.as_ref().map(|(n, v)| (*n, v.as_str())),
        ) {
            Some(v) => Bytes::from(v),
            None => raw.clone(),
        }
    }
}

/// RFC 9110 token characters: what a header name may hold.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn is_ows(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Inserts the headers into the head of `raw` (its first `head_len` bytes).
///
/// - `append`: (name, value) appended to the last header of that name (case-insensitive) as
///   `, value` after its value (obs-fold continuation lines included), or `value` alone when
///   that value is empty; when there is no such header, a new line `name: value`.
/// - `line`: (name, value) always a new line, placed just before the blank line.
///
/// New lines use the request line's line ending (CRLF, or LF when it uses a bare LF). Returns
/// None when the head does not end with a blank line.
pub fn insert_headers(
    raw: &[u8],
    head_len: usize,
    append: Option<(&str, &str)>,
    line: Option<(&str, &str)>,
) -> Option<Vec<u8>> {
    let head = raw.get(..head_len)?;
    let first_nl = memchr::memchr(b'\n', head)?;
    let eol: &[u8] = if first_nl > 0 && head.get(first_nl - 1) == Some(&b'\r') {
        b"\r\n"
    } else {
        b"\n"
    };
    let blank = if head.ends_with(b"\n\r\n") {
        head_len - 2
    } else if head.ends_with(b"\n\n") {
        head_len - 1
    } else {
        return None;
    };
    // A head is at least a request line and the blank line.
    if blank <= first_nl
        || head
            .get(..first_nl)
            .is_none_or(|l| l.is_empty() || l == b"\r")
    {
        return None;
    }

    // Where to append to an existing header: the end of the last matching header's value.
    let mut append_at: Option<(usize, bool)> = None;
    if let Some((name, _)) = append {
        let mut in_match = false;
        let mut pos = first_nl + 1;
        while pos < blank {
            let nl = memchr::memchr(b'\n', head.get(pos..blank)?).map_or(blank, |i| pos + i);
            let mut end = nl;
            if end > pos && head.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
            let content = head.get(pos..end)?;
            if content.first().is_some_and(|&c| is_ows(c)) {
                // obs-fold: this line continues the previous header's value.
                if in_match {
                    if let Some(last) = content.iter().rposition(|&c| !is_ows(c)) {
                        append_at = Some((pos + last + 1, true));
                    }
                }
            } else {
                in_match = match memchr::memchr(b':', content) {
                    Some(colon)
                        if content
                            .get(..colon)
                            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())) =>
                    {
                        let value = content.get(colon + 1..)?;
                        append_at = Some(match value.iter().rposition(|&c| !is_ows(c)) {
                            Some(last) => (pos + colon + 1 + last + 1, true),
                            // Empty value: write the address after any whitespace.
                            None => (end, false),
                        });
                        true
                    }
                    _ => false,
                };
            }
            pos = nl + 1;
        }
    }

    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::with_capacity(2);
    if let Some((name, value)) = append {
        match append_at {
            Some((at, nonempty)) => {
                let mut v = Vec::with_capacity(value.len() + 2);
                if nonempty {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(value.as_bytes());
                inserts.push((at, v));
            }
            None => inserts.push((blank, header_line(name, value, eol))),
        }
    }
    if let Some((name, value)) = line {
        inserts.push((blank, header_line(name, value, eol)));
    }

    let added: usize = inserts.iter().map(|(_, v)| v.len()).sum();
    let mut out = Vec::with_capacity(raw.len() + added);
    let mut from = 0;
    // Insert points are non-decreasing by construction (append point < blank).
    for (at, bytes) in inserts {
        out.extend_from_slice(raw.get(from..at)?);
        out.extend_from_slice(&bytes);
        from = at;
    }
    out.extend_from_slice(raw.get(from..)?);
    Some(out)
}

fn header_line(name: &str, value: &str, eol: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + value.len() + 4);
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(b": ");
    v.extend_from_slice(value.as_bytes());
    v.extend_from_slice(eol);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const XFF: Option<(&str, &str)> = Some(("X-Forwarded-For", "10.0.0.7"));
    const VNI: Option<(&str, &str)> = Some(("X-Mirror-VNI", "4242"));

    fn ins(raw: &[u8], append: Option<(&str, &str)>, line: Option<(&str, &str)>) -> String {
        let head_len = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or_else(|| {
                raw.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| p + 2)
                    .unwrap()
            });
        String::from_utf8(insert_headers(raw, head_len, append, line).unwrap()).unwrap()
    }

    #[test]
    fn new_lines_go_before_the_blank_line_xff_first() {
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", XFF, VNI),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.7\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None, VNI),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
        // No headers at all.
        assert_eq!(
            ins(b"GET / HTTP/1.0\r\n\r\n", XFF, VNI),
            "GET / HTTP/1.0\r\nX-Forwarded-For: 10.0.0.7\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
    }

    #[test]
    fn body_is_untouched() {
        let raw = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxx";
        assert_eq!(
            ins(raw, XFF, VNI),
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nX-Forwarded-For: 10.0.0.7\r\nX-Mirror-VNI: 4242\r\n\r\nhello\r\n\r\nxx"
        );
    }

    #[test]
    fn appends_to_existing_header_any_case_last_occurrence() {
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nx-FORWARDED-for: 1.1.1.1\r\nHost: a\r\n\r\n", XFF, VNI),
            "GET / HTTP/1.1\r\nx-FORWARDED-for: 1.1.1.1, 10.0.0.7\r\nHost: a\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nZ: z\r\n\r\n", XFF, None),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3, 10.0.0.7\r\nZ: z\r\n\r\n"
        );
    }

    #[test]
    fn trailing_whitespace_and_empty_values() {
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1  \r\n\r\n",
                XFF,
                None
            ),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7  \r\n\r\n"
        );
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nX-Forwarded-For: \r\n\r\n", XFF, None),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.7\r\n\r\n"
        );
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nX-Forwarded-For:\r\n\r\n", XFF, None),
            "GET / HTTP/1.1\r\nX-Forwarded-For:10.0.0.7\r\n\r\n"
        );
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\r\nX-Forwarded-For:1.1.1.1\r\n\r\n",
                XFF,
                None
            ),
            "GET / HTTP/1.1\r\nX-Forwarded-For:1.1.1.1, 10.0.0.7\r\n\r\n"
        );
    }

    #[test]
    fn prefix_names_do_not_match() {
        // A header whose name is a prefix of ours, and one whose name has ours as a prefix.
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nX-Forwarded: a\r\nX-Forwarded-For-Real: b\r\nX-Forwarded-Fo: c\r\n\r\n", XFF, None),
            "GET / HTTP/1.1\r\nX-Forwarded: a\r\nX-Forwarded-For-Real: b\r\nX-Forwarded-Fo: c\r\nX-Forwarded-For: 10.0.0.7\r\n\r\n"
        );
        // Name with whitespace before the colon is not the same header (and invalid anyway).
        assert_eq!(
            ins(b"GET / HTTP/1.1\r\nX-Forwarded-For : a\r\n\r\n", XFF, None),
            "GET / HTTP/1.1\r\nX-Forwarded-For : a\r\nX-Forwarded-For: 10.0.0.7\r\n\r\n"
        );
        // Our name appearing inside another header's value is not a header.
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\r\nA: X-Forwarded-For: x\r\n\r\n",
                XFF,
                None
            ),
            "GET / HTTP/1.1\r\nA: X-Forwarded-For: x\r\nX-Forwarded-For: 10.0.0.7\r\n\r\n"
        );
    }

    #[test]
    fn bare_lf_heads_get_bare_lf_lines() {
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.1.1.1\n\n",
                XFF,
                VNI
            ),
            "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\nX-Mirror-VNI: 4242\n\n"
        );
        assert_eq!(
            ins(b"GET / HTTP/1.1\nHost: a\n\nbody", XFF, VNI),
            "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 10.0.0.7\nX-Mirror-VNI: 4242\n\nbody"
        );
    }

    #[test]
    fn mixed_line_endings_keep_their_own() {
        // Request line CRLF, a header with bare LF, blank line CRLF.
        let raw = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\nHost: a\r\n\r\n";
        assert_eq!(
            insert_headers(raw, raw.len(), XFF, VNI).map(String::from_utf8).unwrap().unwrap(),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\nHost: a\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
        // Request line CRLF, blank line bare LF.
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\n";
        assert_eq!(
            insert_headers(raw, raw.len(), None, VNI)
                .map(String::from_utf8)
                .unwrap()
                .unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Mirror-VNI: 4242\r\n\n"
        );
    }

    #[test]
    fn obs_fold_continuation_is_part_of_the_value() {
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1,\r\n 2.2.2.2\r\nHost: a\r\n\r\n",
                XFF,
                None
            ),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1,\r\n 2.2.2.2, 10.0.0.7\r\nHost: a\r\n\r\n"
        );
        // A fold after a different header does not attach to an earlier match.
        assert_eq!(
            ins(
                b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\n\tc\r\n\r\n",
                XFF,
                None
            ),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\nA: b\r\n\tc\r\n\r\n"
        );
    }

    #[test]
    fn header_without_colon_and_odd_bytes() {
        let raw = b"GET /\xff HTTP/1.1\r\nnocolon\r\nHost: \xfe\r\n\r\n";
        assert_eq!(
            insert_headers(raw, raw.len(), XFF, VNI).unwrap(),
            b"GET /\xff HTTP/1.1\r\nnocolon\r\nHost: \xfe\r\nX-Forwarded-For: 10.0.0.7\r\nX-Mirror-VNI: 4242\r\n\r\n"
        );
    }

    #[test]
    fn unrecognisable_heads_are_refused() {
        assert_eq!(
            insert_headers(b"GET / HTTP/1.1\r\nHost: a\r\n", 25, XFF, VNI),
            None
        );
        assert_eq!(
            insert_headers(b"GET / HTTP/1.1\r\n\r\n", 100, XFF, VNI),
            None
        );
        assert_eq!(insert_headers(b"", 0, XFF, VNI), None);
        assert_eq!(insert_headers(b"\r\n\r\n", 4, XFF, VNI), None);
        assert_eq!(insert_headers(b"\n\n", 2, XFF, VNI), None);
    }

    #[test]
    fn apply_uses_canonical_ip_and_shares_bytes_when_nothing_to_add() {
        let raw = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let none = HeaderAdds::default();
        let same = none.apply(&raw, raw.len(), "1.2.3.4".parse().unwrap(), 7);
        assert_eq!(same.as_ptr(), raw.as_ptr());

        let both = HeaderAdds {
            client_ip: Some(DEFAULT_CLIENT_IP_HEADER.to_string()),
            vni: Some(DEFAULT_VNI_HEADER.to_string()),
        };
        assert_eq!(
            both.apply(&raw, raw.len(), "::ffff:1.2.3.4".parse().unwrap(), 7),
            Bytes::from_static(
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Mirror-VNI: 7\r\n\r\n"
            )
        );
        assert_eq!(
            both.apply(&raw, raw.len(), "2001:db8::1".parse().unwrap(), 16_777_215),
            Bytes::from_static(
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 2001:db8::1\r\nX-Mirror-VNI: 16777215\r\n\r\n"
            )
        );
    }

    #[test]
    fn header_names_must_be_tokens() {
        let ok = HeaderAdds {
            client_ip: Some("X-Real-IP".into()),
            vni: Some("x_vni".into()),
        };
        assert!(ok.validate().is_ok());
        for bad in ["", "X Forwarded", "X-A:", "X-\r\nInjected", "é"] {
            let adds = HeaderAdds {
                client_ip: None,
                vni: Some(bad.into()),
            };
            assert!(
                matches!(
                    adds.validate(),
                    Err(OutputError::InvalidHeaderName { what: "VNI", .. })
                ),
                "{bad:?}"
            );
        }
    }

    proptest! {
        /// Whatever the head, only insertions happen: removing the inserted bytes gives back the
        /// input, and the body is the same suffix.
        #[test]
        fn only_inserts(
            headers in proptest::collection::vec(
                (
                    prop_oneof![Just("X-Forwarded-For".to_string()), Just("x-forwarded-FOR".to_string()), "[A-Za-z-]{1,20}"],
                    "[ a-z,;=:\t]{0,20}",
                ),
                0..8,
            ),
            lf in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let eol = if lf { "\n" } else { "\r\n" };
            let mut head = format!("GET / HTTP/1.1{eol}");
            for (n, v) in &headers {
                head.push_str(&format!("{n}: {v}{eol}"));
            }
            head.push_str(eol);
            let mut raw = head.clone().into_bytes();
            raw.extend_from_slice(&body);
            let out = insert_headers(&raw, head.len(), XFF, VNI).unwrap();
            prop_assert!(out.ends_with(&body));
            let vni_line = format!("X-Mirror-VNI: 4242{eol}{eol}");
            prop_assert!(out[..out.len() - body.len()].ends_with(vni_line.as_bytes()));
            // Removing what was inserted gives back the input.
            let s = String::from_utf8_lossy(&out[..out.len() - body.len()]).into_owned();
            let s = s.replacen(&format!("X-Mirror-VNI: 4242{eol}"), "", 1);
            let s = if s.contains(&format!("X-Forwarded-For: 10.0.0.7{eol}")) && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("X-Forwarded-For")) {
                s.replacen(&format!("X-Forwarded-For: 10.0.0.7{eol}"), "", 1)
            } else {
                let i = s.rfind("10.0.0.7").unwrap();
                let start = if s[..i].ends_with(", ") { i - 2 } else { i };
                format!("{}{}", &s[..start], &s[i + "10.0.0.7".len()..])
            };
            prop_assert_eq!(s, head);
        }
    }
}
