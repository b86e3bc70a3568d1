//! Field-value syntax both directions read the same way: comma-separated lists (RFC 9110 §5.6.1)
//! and the plain decimal numbers of Content-Length. Pure functions on bytes, no state.

/// Non-empty, trimmed elements of a comma-separated header list.
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// A plain decimal number (digits only, no sign or blanks), or None if it is not one or
/// does not fit in a u64.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}
