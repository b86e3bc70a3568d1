//! Comparing what the sink received with what the generator says was sent, as multisets of
//! byte strings (requests arrive over several connections in any order).

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use crate::gen::ConversationTruth;
use crate::sink::ReceivedRequest;

/// A request that is missing, unexpected or duplicated, and how many times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub bytes: Vec<u8>,
    /// Missing: copies that did not arrive; unexpected: copies that arrived; duplicated:
    /// copies beyond the expected count.
    pub count: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub expected: usize,
    pub received: usize,
    pub missing: Vec<Difference>,
    pub unexpected: Vec<Difference>,
    pub duplicated: Vec<Difference>,
}

/// Compares two multisets of requests. Output lists follow the order of first appearance
/// (expected order for missing ones, arrival order for the others).
pub fn compare<E, A>(expected: E, received: A) -> Comparison
where
    E: IntoIterator,
    E::Item: AsRef<[u8]>,
    A: IntoIterator,
    A::Item: AsRef<[u8]>,
{
    let expected: Vec<E::Item> = expected.into_iter().collect();
    let received: Vec<A::Item> = received.into_iter().collect();
    let mut counts: HashMap<&[u8], (usize, usize)> = HashMap::new();
    let mut order: Vec<&[u8]> = Vec::new();
    for e in &expected {
        let c = counts.entry(e.as_ref()).or_insert_with(|| {
            order.push(e.as_ref());
            (0, 0)
        });
        c.0 += 1;
    }
    for r in &received {
        let c = counts.entry(r.as_ref()).or_insert_with(|| {
            order.push(r.as_ref());
            (0, 0)
        });
        c.1 += 1;
    }
    let mut out = Comparison {
        expected: expected.len(),
        received: received.len(),
        ..Default::default()
    };
    for key in order {
        let (e, r) = counts.get(key).copied().unwrap_or_default();
        let diff = |count| Difference {
            bytes: key.to_vec(),
            count,
        };
        if r < e {
            out.missing.push(diff(e - r));
        } else if e == 0 {
            out.unexpected.push(diff(r));
        } else if r > e {
            out.duplicated.push(diff(r - e));
        }
    }
    out
}

/// Compares the rebuildable requests of `truths` with what the sink received.
pub fn compare_with_truth(
    truths: &[ConversationTruth],
    received: &[ReceivedRequest],
) -> Comparison {
    compare(
        truths.iter().flat_map(|t| t.rebuildable()),
        received.iter().map(|r| r.raw.as_slice()),
    )
}

impl Comparison {
    pub fn is_match(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.duplicated.is_empty()
    }

    /// Panics with the full report unless the multisets are equal.
    #[track_caller]
    pub fn assert_match(&self) {
        assert!(self.is_match(), "{self}");
    }
}

/// How many differences each list shows before summarising the rest.
const SHOW: usize = 10;
const EXCERPT: usize = 100;

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = |v: &[Difference]| v.iter().map(|d| d.count).sum::<usize>();
        writeln!(
            f,
            "expected {} requests, received {}: {} missing, {} unexpected, {} duplicated",
            self.expected,
            self.received,
            total(&self.missing),
            total(&self.unexpected),
            total(&self.duplicated)
        )?;
        for (title, list) in [
            ("missing", &self.missing),
            ("unexpected", &self.unexpected),
            ("duplicated", &self.duplicated),
        ] {
            if list.is_empty() {
                continue;
            }
            writeln!(f, "{title}:")?;
            for d in list.iter().take(SHOW) {
                let times = if d.count > 1 {
                    format!(" x{}", d.count)
                } else {
                    String::new()
                };
                writeln!(
                    f,
                    "  - {} bytes{times}: {}",
                    d.bytes.len(),
                    excerpt(&d.bytes, EXCERPT)
                )?;
                if title == "missing" {
                    if let Some(hint) = closest(&d.bytes, &self.unexpected) {
                        writeln!(f, "    {hint}")?;
                    }
                }
            }
            if list.len() > SHOW {
                writeln!(f, "  … and {} more", list.len() - SHOW)?;
            }
        }
        Ok(())
    }
}

/// Describes the unexpected request sharing the longest prefix with a missing one: usually the
/// same request, damaged, and the first differing byte says how.
fn closest(missing: &[u8], unexpected: &[Difference]) -> Option<String> {
    let (lcp, cand) = unexpected
        .iter()
        .take(1000)
        .map(|u| {
            (
                missing
                    .iter()
                    .zip(&u.bytes)
                    .take_while(|(a, b)| a == b)
                    .count(),
                &u.bytes,
            )
        })
        .max_by_key(|(n, _)| *n)?;
    // Sharing less than the method and a bit of the target says nothing.
    if lcp < 8 {
        return None;
    }
    let from = lcp.saturating_sub(16);
    Some(format!(
        "closest unexpected ({} bytes) differs at byte {lcp}: expected …{} got …{}",
        cand.len(),
        excerpt(missing.get(from..).unwrap_or_default(), 40),
        excerpt(cand.get(from..).unwrap_or_default(), 40)
    ))
}

/// A short, printable rendering: `\r`, `\n`, `\t`, `\\`, `"` escaped, other non-printable
/// bytes as `\xNN`, cut after `max` bytes.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(max + 16);
    s.push('"');
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_multisets_in_any_order_match() {
        let c = compare([&b"a"[..], b"b", b"b"], [&b"b"[..], b"a", b"b"]);
        assert!(c.is_match());
        assert_eq!((c.expected, c.received), (3, 3));
        c.assert_match();
    }

    #[test]
    fn reports_missing_unexpected_duplicated_with_counts() {
        let c = compare(
            [
                &b"GET /1 HTTP/1.1\r\n\r\n"[..],
                b"GET /2 HTTP/1.1\r\n\r\n",
                b"GET /2 HTTP/1.1\r\n\r\n",
                b"GET /3 HTTP/1.1\r\n\r\n",
            ],
            [
                &b"GET /3 HTTP/1.1\r\n\r\n"[..],
                b"GET /3 HTTP/1.1\r\n\r\n",
                b"GET /3 HTTP/1.1\r\n\r\n",
                b"POST /x",
            ],
        );
        assert!(!c.is_match());
        assert_eq!(
            c.missing,
            vec![
                Difference {
                    bytes: b"GET /1 HTTP/1.1\r\n\r\n".to_vec(),
                    count: 1
                },
                Difference {
                    bytes: b"GET /2 HTTP/1.1\r\n\r\n".to_vec(),
                    count: 2
                },
            ]
        );
        assert_eq!(
            c.unexpected,
            vec![Difference {
                bytes: b"POST /x".to_vec(),
                count: 1
            }]
        );
        assert_eq!(
            c.duplicated,
            vec![Difference {
                bytes: b"GET /3 HTTP/1.1\r\n\r\n".to_vec(),
                count: 2
            }]
        );
        let text = c.to_string();
        assert!(
            text.starts_with(
                "expected 4 requests, received 4: 3 missing, 1 unexpected, 2 duplicated\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  - 19 bytes x2: \"GET /2 HTTP/1.1\\r\\n\\r\\n\"\n"),
            "{text}"
        );
    }

    #[test]
    fn hint_points_at_first_differing_byte() {
        let sent = b"POST /upload HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
        let mut got = sent.clone();
        got[50] = b'X';
        let c = compare([&sent], [&got]);
        let text = c.to_string();
        assert!(
            text.contains("closest unexpected (55 bytes) differs at byte 50"),
            "{text}"
        );
    }

    #[test]
    fn excerpt_escapes_and_cuts() {
        assert_eq!(
            excerpt(b"a\r\n\x00\xff\"\\", 100),
            "\"a\\r\\n\\x00\\xff\\\"\\\\\""
        );
        assert_eq!(excerpt(b"abcdef", 3), "\"abc\"…");
    }

    #[test]
    #[should_panic(expected = "1 missing")]
    fn assert_match_panics_with_report() {
        compare([b"x"], Vec::<&[u8]>::new()).assert_match();
    }
}
