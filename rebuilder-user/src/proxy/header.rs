//! The PROXY protocol header itself: recognising its first bytes (v1 text, v2 signature) and
//! parsing a whole header, TLVs included (the AWS VPC endpoint id), into [`ProxyInfo`]. Knows
//! nothing of streams: the parent holds bytes until this says a header is whole or is not one.

use super::*;

pub const V1_SIGNATURE: &[u8] = b"PROXY ";
pub const V2_SIGNATURE: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
pub(super) const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
pub(super) const V2_FIXED: usize = 16;
/// PP2_TYPE_AWS and its VPC endpoint id subtype.
pub(super) const PP2_TYPE_AWS: u8 = 0xEA;
pub(super) const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Prefix {
    /// Too few bytes to tell.
    Undecided,
    Header,
    Other,
}

pub(super) fn prefix(b: &[u8]) -> Prefix {
    let maybe = |sig: &[u8]| {
        if b.len() >= sig.len() {
            if b.starts_with(sig) {
                Prefix::Header
            } else {
                Prefix::Other
            }
        } else if sig.starts_with(b) {
            Prefix::Undecided
        } else {
            Prefix::Other
        }
    };
    match (maybe(V1_SIGNATURE), maybe(V2_SIGNATURE)) {
        (Prefix::Header, _) | (_, Prefix::Header) => Prefix::Header,
        (Prefix::Undecided, _) | (_, Prefix::Undecided) => Prefix::Undecided,
        _ => Prefix::Other,
    }
}

pub(super) enum Parsed {
    Whole(ProxyInfo, bool),
    Incomplete,
    Malformed,
}

pub(super) fn parse(b: &[u8]) -> Parsed {
    let cfg = ParseConfig {
        include_tlvs: true,
        allow_v1: true,
        allow_v2: true,
    };
    match ProxyHeader::parse(b, cfg) {
        Ok((h, len)) => {
            let version = if b.starts_with(V2_SIGNATURE) { 2 } else { 1 };
            // The crate bounds a v1 line only while it has no CR yet: `PROXY UNKNOWN` followed
            // by any length up to a CR passes (found by the `proxy` fuzz target). A v1 header
            // is at most 107 bytes; a longer line would strip the client's own bytes.
            if version == 1 && len > V1_MAX {
                return Parsed::Malformed;
            }
            // The crate reports LOCAL as "no address"; v1 UNKNOWN and v2 AF_UNSPEC say the same
            // with the PROXY command, which only the command byte tells apart.
            let local = version == 2 && b.get(12).is_some_and(|c| c & 0x0F == 0);
            let mut info = ProxyInfo {
                version,
                local,
                source: h.proxied_address().map(|a| a.source),
                destination: h.proxied_address().map(|a| a.destination),
                header_len: len,
                ..ProxyInfo::default()
            };
            let mut bad_tlv = false;
            for tlv in h.tlvs() {
                match tlv {
                    Ok(t) => {
                        info.tlv_types.push(t.kind());
                        match t {
                            Tlv::Authority(a) => info.authority = Some(a.into_owned()),
                            Tlv::Custom(PP2_TYPE_AWS, v) => {
                                if let Some((&PP2_SUBTYPE_AWS_VPCE_ID, id)) = v.split_first() {
                                    info.aws_vpce_id = Some(String::from_utf8_lossy(id).into());
                                }
                            }
                            _ => {}
                        }
                    }
                    Err(_) => {
                        bad_tlv = true;
                        break;
                    }
                }
            }
            Parsed::Whole(info, bad_tlv)
        }
        Err(proxy_header::Error::BufferTooShort) => Parsed::Incomplete,
        Err(_) => Parsed::Malformed,
    }
}
