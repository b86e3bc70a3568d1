//! PROXY protocol headers as AWS load balancers send them (classic ELB: v1 text; NLB: v2
//! binary, with the AWS VPC endpoint TLV through PrivateLink), written here from the
//! specification, independently of the parser the rebuilder uses; the length-only reading
//! an origin needs to skip one; and the bytes a WAF should receive for a request replayed
//! with the header's source as the client IP.

use std::net::{IpAddr, SocketAddr};

pub const V2_SIGNATURE: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_AWS: u8 = 0xEA;
pub const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

/// `PROXY TCP4|TCP6 src dst sport dport\r\n`.
pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// One TLV: type, 16-bit length, value.
pub fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&(value.len() as u16).to_be_bytes());
    t.extend_from_slice(value);
    t
}

/// The TLVs an NLB adds for a connection through a VPC endpoint: PP2_TYPE_AWS with the
/// endpoint id, and (as other proxies do) the authority the client asked for.
pub fn aws_tlvs(vpce_id: &str, authority: &str) -> Vec<u8> {
    let mut aws = vec![PP2_SUBTYPE_AWS_VPCE_ID];
    aws.extend_from_slice(vpce_id.as_bytes());
    [
        tlv(PP2_TYPE_AWS, &aws),
        tlv(PP2_TYPE_AUTHORITY, authority.as_bytes()),
    ]
    .concat()
}

/// A v2 header with the PROXY command (TCP over IPv4 or IPv6, by the source's family; the
/// destination must be of the same family) and `tlvs` after the addresses.
pub fn v2(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            body.extend_from_slice(&six(s).octets());
            body.extend_from_slice(&six(d).octets());
            0x21
        }
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    v2_raw(0x21, family, &body)
}

/// A v2 header with the LOCAL command (the balancer's own connection, e.g. a health check):
/// no addresses.
pub fn v2_local() -> Vec<u8> {
    v2_raw(0x20, 0x00, &[])
}

fn v2_raw(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(version_command);
    h.push(family);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// How long the PROXY header at the start of `buf` is: `Some(Some(n))` when one is whole,
/// `Some(None)` when `buf` is still a header's start, `None` when `buf` does not start with one.
/// Reads only the lengths, as a server that accepts a header but has no use for it does.
pub fn header_len(buf: &[u8]) -> Option<Option<usize>> {
    const V1: &[u8] = b"PROXY ";
    let is_prefix = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf.get(..n) == sig.get(..n)
    };
    if is_prefix(V1) {
        if buf.len() < V1.len() {
            return Some(None);
        }
        return Some(buf.windows(2).position(|w| w == b"\r\n").map(|p| p + 2));
    }
    if is_prefix(V2_SIGNATURE) {
        let Some(len) = buf.get(14..16) else {
            return Some(None);
        };
        let n = 16 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        return Some((buf.len() >= n).then_some(n));
    }
    None
}

/// `request` as a WAF receives it replayed with `header: ip` added the way the rebuilder adds
/// a client IP (and proxies add X-Forwarded-For): appended as `, ip` to the last header of that
/// name when there is one, else a new line before the blank line, in the head's own line
/// ending.
pub fn with_client_ip(request: &[u8], header: &str, ip: IpAddr) -> Vec<u8> {
    let ip = ip.to_string();
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(request.len());
    let head = &request[..head_end];
    // Start and end (before its CRLF) of every header line.
    let mut last = None;
    let mut pos = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(head.len(), |p| p + 2);
    while pos < head.len() {
        let end = head[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |p| pos + p);
        let line = &head[pos..end];
        let named = line
            .iter()
            .position(|&c| c == b':')
            .is_some_and(|c| line[..c].eq_ignore_ascii_case(header.as_bytes()));
        if named {
            let value_end = pos
                + line
                    .iter()
                    .rposition(|c| !b" \t".contains(c))
                    .map_or(0, |p| p + 1);
            // An empty value gets the address alone, after whatever whitespace it has.
            last = Some(if value_end > pos + header.len() + 1 {
                (value_end, true)
            } else {
                (end, false)
            });
        }
        pos = end + 2;
    }
    let mut out = Vec::with_capacity(request.len() + header.len() + ip.len() + 4);
    match last {
        Some((at, nonempty)) => {
            out.extend_from_slice(&request[..at]);
            if nonempty {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(ip.as_bytes());
            out.extend_from_slice(&request[at..]);
        }
        None => {
            out.extend_from_slice(&request[..head_end]);
            out.extend_from_slice(format!("{header}: {ip}\r\n").as_bytes());
            out.extend_from_slice(&request[head_end..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_what_the_specification_says() {
        let s: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let d: SocketAddr = "10.0.0.5:80".parse().unwrap();
        assert_eq!(v1(s, d), b"PROXY TCP4 203.0.113.7 10.0.0.5 51000 80\r\n");
        let h = v2(s, d, &aws_tlvs("vpce-1", "a.test"));
        assert_eq!(&h[..16], b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x1f");
        assert_eq!(
            &h[16..28],
            &[203, 0, 113, 7, 10, 0, 0, 5, 0xc7, 0x38, 0, 80]
        );
        assert_eq!(&h[28..], b"\xea\x00\x07\x01vpce-1\x02\x00\x06a.test");
        assert_eq!(v2_local(), b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00");
        let h6 = v2(
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
            &[],
        );
        assert_eq!((h6[13], h6.len()), (0x21, 16 + 36));
        for h in [v1(s, d), h.clone(), v2_local(), h6] {
            assert_eq!(header_len(&h), Some(Some(h.len())));
            assert_eq!(
                header_len(&[&h[..], b"GET /"].concat()),
                Some(Some(h.len()))
            );
            assert_eq!(header_len(&h[..h.len() - 1]), Some(None));
        }
        assert_eq!(header_len(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(header_len(b"PRO"), Some(None));
    }

    #[test]
    fn the_client_ip_is_appended_or_added() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            with_client_ip(
                b"GET / HTTP/1.1\r\nHost: h\r\n\r\nbody",
                "X-Forwarded-For",
                ip
            ),
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.7\r\n\r\nbody"
        );
        assert_eq!(
            with_client_ip(
                b"GET / HTTP/1.1\r\nx-forwarded-for: 1.1.1.1 \r\nA: b\r\n\r\n",
                "X-Forwarded-For",
                ip
            ),
            b"GET / HTTP/1.1\r\nx-forwarded-for: 1.1.1.1, 198.51.100.7 \r\nA: b\r\n\r\n"
        );
    }
}
