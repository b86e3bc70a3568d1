//! HTTP/2 frame headers (RFC 9113 §4.1) and the padding and priority fields that some frames
//! put before their content (§6.1, §6.2).
//!
//! Written here rather than taken from a crate: the format is nine fixed bytes, and the crates
//! that parse it do not expose it on its own (`h2` keeps its frame loading crate-private, even
//! `Data::load` under its `unstable` feature; `loona-h2` parses into its own io_uring buffer
//! type). HPACK, where getting it wrong silently corrupts every later request, comes from a
//! crate (`loona-hpack`, see `h2/mod.rs`).

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;

/// Frame types a client sends (and those it must not), by their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// Types this side ignores (extensions must be ignored, RFC 9113 §5.5).
    Unknown(u8),
}

impl Kind {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Headers => "headers",
            Kind::Priority => "priority",
            Kind::RstStream => "rst_stream",
            Kind::Settings => "settings",
            Kind::PushPromise => "push_promise",
            Kind::Ping => "ping",
            Kind::GoAway => "goaway",
            Kind::WindowUpdate => "window_update",
            Kind::Continuation => "continuation",
            Kind::Unknown(_) => "unknown",
        }
    }

    /// Index into per-kind counters (`KINDS`).
    pub fn index(self) -> usize {
        match self {
            Kind::Data => 0,
            Kind::Headers => 1,
            Kind::Priority => 2,
            Kind::RstStream => 3,
            Kind::Settings => 4,
            Kind::PushPromise => 5,
            Kind::Ping => 6,
            Kind::GoAway => 7,
            Kind::WindowUpdate => 8,
            Kind::Continuation => 9,
            Kind::Unknown(_) => 10,
        }
    }
}

/// Every kind once, in `index` order (for metrics).
pub const KINDS: [Kind; 11] = [
    Kind::Data,
    Kind::Headers,
    Kind::Priority,
    Kind::RstStream,
    Kind::Settings,
    Kind::PushPromise,
    Kind::Ping,
    Kind::GoAway,
    Kind::WindowUpdate,
    Kind::Continuation,
    Kind::Unknown(0xff),
];

pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    /// The reserved bit is dropped (RFC 9113 §4.1: ignored on receipt).
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: Kind::from_code(b[3]),
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The header's bytes (tests, seeds).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let l = self.len.to_be_bytes();
        let s = self.stream.to_be_bytes();
        let code = match self.kind {
            Kind::Unknown(c) => c,
            k => k.index() as u8,
        };
        [l[1], l[2], l[3], code, self.flags, s[0], s[1], s[2], s[3]]
    }

    /// Whether this header could open a frame a client sends: a known type on a stream id that
    /// type allows. What a mid-stream pickup checks at segment starts to tell HTTP/2 from
    /// anything else.
    pub fn plausible_from_client(&self, max_len: u32) -> bool {
        if self.len > max_len {
            return false;
        }
        let connection_level = self.stream == 0;
        match self.kind {
            Kind::Data | Kind::Headers | Kind::Continuation | Kind::RstStream => {
                !connection_level && !self.stream.is_multiple_of(2)
            }
            Kind::Priority => !connection_level && self.len == 5,
            Kind::Settings => connection_level && self.len.is_multiple_of(6),
            Kind::Ping => connection_level && self.len == 8,
            Kind::GoAway => connection_level && self.len >= 8,
            Kind::WindowUpdate => self.len == 4,
            Kind::PushPromise | Kind::Unknown(_) => false,
        }
    }
}

/// What the padding and priority fields of a HEADERS frame leave: the header block fragment's
/// range within the payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Fields {
    Ok(std::ops::Range<usize>),
    /// The pad length or priority fields do not fit the payload (RFC 9113 §6.2: a connection
    /// error).
    Malformed,
}

/// Strips a HEADERS payload's pad length, priority fields and padding.
pub fn headers_fragment(head: &Head, payload: &[u8]) -> Fields {
    let mut start = 0usize;
    let mut pad = 0usize;
    if head.has(flags::PADDED) {
        let Some(&p) = payload.first() else {
            return Fields::Malformed;
        };
        pad = usize::from(p);
        start = 1;
    }
    if head.has(flags::PRIORITY) {
        start += 5;
    }
    match payload.len().checked_sub(pad) {
        Some(end) if end >= start => Fields::Ok(start..end),
        _ => Fields::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_drop_the_reserved_bit() {
        let h = Head {
            len: 0x01_02_03,
            kind: Kind::Headers,
            flags: flags::END_HEADERS | flags::END_STREAM,
            stream: 0x7fff_fffd,
        };
        let mut b = h.to_bytes();
        assert_eq!(Head::parse(&b), h);
        b[5] |= 0x80;
        assert_eq!(Head::parse(&b), h);
        b[3] = 0x42;
        assert_eq!(Head::parse(&b).kind, Kind::Unknown(0x42));
    }

    #[test]
    fn headers_fragment_strips_padding_and_priority() {
        let head = |f| Head {
            len: 0,
            kind: Kind::Headers,
            flags: f,
            stream: 1,
        };
        let p = b"\x02\x00\x00\x00\x00\x10BLOCK\x00\x00";
        assert_eq!(
            headers_fragment(&head(flags::PADDED | flags::PRIORITY), p),
            Fields::Ok(6..11)
        );
        assert_eq!(headers_fragment(&head(0), b"BLOCK"), Fields::Ok(0..5));
        assert_eq!(
            headers_fragment(&head(flags::PADDED), b""),
            Fields::Malformed
        );
        assert_eq!(
            headers_fragment(&head(flags::PADDED), b"\x09abc"),
            Fields::Malformed
        );
        assert_eq!(
            headers_fragment(&head(flags::PRIORITY), b"\x00\x00"),
            Fields::Malformed
        );
    }

    #[test]
    fn plausible_heads_follow_the_stream_rules() {
        let h = |kind, stream, len| Head {
            len,
            kind,
            flags: 0,
            stream,
        };
        assert!(h(Kind::Headers, 1, 100).plausible_from_client(16_384));
        assert!(!h(Kind::Headers, 2, 100).plausible_from_client(16_384));
        assert!(!h(Kind::Data, 0, 100).plausible_from_client(16_384));
        assert!(!h(Kind::Data, 1, 20_000).plausible_from_client(16_384));
        assert!(h(Kind::Settings, 0, 12).plausible_from_client(16_384));
        assert!(!h(Kind::Settings, 0, 13).plausible_from_client(16_384));
        assert!(!h(Kind::Unknown(0x47), 1, 0).plausible_from_client(16_384));
    }
}
