//! HTTP/2 client byte streams for tests: the connection preface, frames, header blocks encoded
//! with HPACK (dynamic table and all, as real clients do), and what each request must look like
//! once rebuilder renders it as HTTP/1.1 (README, *HTTP/2 and gRPC*), written here from that
//! description independently of rebuilder's renderer.

/// The connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut v = vec![len[1], len[2], len[3], kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A DATA frame, padded with `pad` zero bytes when given.
pub fn data(stream: u32, bytes: &[u8], end_stream: bool, pad: Option<u8>) -> Vec<u8> {
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    let payload = match pad {
        Some(p) => {
            flags |= flag::PADDED;
            let mut v = vec![p];
            v.extend_from_slice(bytes);
            v.extend(std::iter::repeat_n(0u8, usize::from(p)));
            v
        }
        None => bytes.to_vec(),
    };
    frame(kind::DATA, flags, stream, &payload)
}

/// An empty SETTINGS frame and a WINDOW_UPDATE, what clients send after the preface.
pub fn client_start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    // SETTINGS_ENABLE_PUSH = 0, SETTINGS_INITIAL_WINDOW_SIZE = 1 MiB.
    let mut settings = Vec::new();
    settings.extend_from_slice(&2u16.to_be_bytes());
    settings.extend_from_slice(&0u32.to_be_bytes());
    settings.extend_from_slice(&4u16.to_be_bytes());
    settings.extend_from_slice(&(1u32 << 20).to_be_bytes());
    v.extend(frame(kind::SETTINGS, 0, 0, &settings));
    v.extend(frame(
        kind::WINDOW_UPDATE,
        0,
        0,
        &(1u32 << 24).to_be_bytes(),
    ));
    v
}

/// One request an HTTP/2 client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H2Request {
    pub method: String,
    pub scheme: String,
    pub authority: Option<String>,
    pub path: String,
    /// Regular fields in order (lowercase names).
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl H2Request {
    pub fn get(authority: &str, path: &str) -> Self {
        Self {
            method: "GET".into(),
            scheme: "http".into(),
            authority: Some(authority.into()),
            path: path.into(),
            fields: vec![
                ("user-agent".into(), "rebuilder-test/1".into()),
                ("accept".into(), "*/*".into()),
            ],
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    pub fn post(authority: &str, path: &str, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            fields: vec![
                ("content-type".into(), content_type.into()),
                ("user-agent".into(), "rebuilder-test/1".into()),
            ],
            body,
            ..Self::get(authority, path)
        }
    }

    /// A gRPC call: `messages` each length-prefixed (uncompressed), `te: trailers`.
    pub fn grpc(authority: &str, method_path: &str, messages: &[&[u8]]) -> Self {
        let mut body = Vec::new();
        for m in messages {
            body.push(0);
            body.extend_from_slice(&(m.len() as u32).to_be_bytes());
            body.extend_from_slice(m);
        }
        Self {
            method: "POST".into(),
            fields: vec![
                ("content-type".into(), "application/grpc".into()),
                ("te".into(), "trailers".into()),
                ("grpc-timeout".into(), "5S".into()),
                ("user-agent".into(), "grpc-rust-test/1".into()),
            ],
            body,
            ..Self::get(authority, method_path)
        }
    }

    /// The field list as a client encodes it: pseudo-headers first.
    pub fn header_list(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v = vec![
            (b":method".to_vec(), self.method.clone().into_bytes()),
            (b":scheme".to_vec(), self.scheme.clone().into_bytes()),
        ];
        if let Some(a) = &self.authority {
            v.push((b":authority".to_vec(), a.clone().into_bytes()));
        }
        v.push((b":path".to_vec(), self.path.clone().into_bytes()));
        v.extend(
            self.fields
                .iter()
                .map(|(n, val)| (n.clone().into_bytes(), val.clone().into_bytes())),
        );
        v
    }

    /// What rebuilder must replay for it over HTTP/1.1: request line, `host` from
    /// `:authority`, the fields in order (cookie crumbs joined with `; ` where the first was),
    /// trailers as `x-rebuilder-trailer: NAME: VALUE`, `content-length` when there is a body
    /// and the client sent none, a blank line, the body.
    pub fn http1(&self) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let has_host = self.fields.iter().any(|(n, _)| n == "host");
        if let (false, Some(a)) = (has_host, &self.authority) {
            s.push_str(&format!("host: {a}\r\n"));
        }
        let cookies: Vec<&str> = self
            .fields
            .iter()
            .filter(|(n, _)| n == "cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        let mut cookie_done = false;
        for (n, v) in &self.fields {
            if n == "cookie" {
                if !cookie_done {
                    s.push_str(&format!("cookie: {}\r\n", cookies.join("; ")));
                    cookie_done = true;
                }
                continue;
            }
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        for (n, v) in &self.trailers {
            s.push_str(&format!("x-rebuilder-trailer: {n}: {v}\r\n"));
        }
        if !self.body.is_empty() && !self.fields.iter().any(|(n, _)| n == "content-length") {
            s.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        s.push_str("\r\n");
        let mut v = s.into_bytes();
        v.extend_from_slice(&self.body);
        v
    }
}

/// An HTTP/2 client's encoder: one HPACK context for the connection.
pub struct H2Encoder {
    hpack: loona_hpack::Encoder<'static>,
    /// Largest frame payload (SETTINGS_MAX_FRAME_SIZE of the peer).
    pub max_frame: usize,
}

impl Default for H2Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl H2Encoder {
    pub fn new() -> Self {
        Self {
            hpack: loona_hpack::Encoder::new(),
            max_frame: 16_384,
        }
    }

    /// A header block, as HEADERS then CONTINUATION frames of at most `max_frame` bytes.
    pub fn headers(
        &mut self,
        stream: u32,
        fields: &[(Vec<u8>, Vec<u8>)],
        end_stream: bool,
    ) -> Vec<u8> {
        let block = self
            .hpack
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = if block.is_empty() {
            vec![&[][..]]
        } else {
            block.chunks(self.max_frame).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut flags = if last { flag::END_HEADERS } else { 0 };
            if i == 0 {
                if end_stream {
                    flags |= flag::END_STREAM;
                }
                out.extend(frame(kind::HEADERS, flags, stream, chunk));
            } else {
                out.extend(frame(kind::CONTINUATION, flags, stream, chunk));
            }
        }
        out
    }

    /// A whole request on `stream`: HEADERS, the body in DATA frames of `chunk` bytes, then
    /// trailers if any.
    pub fn request(&mut self, stream: u32, req: &H2Request, chunk: usize) -> Vec<u8> {
        let no_body = req.body.is_empty() && req.trailers.is_empty();
        let mut out = self.headers(stream, &req.header_list(), no_body);
        let pieces: Vec<&[u8]> = req.body.chunks(chunk.max(1)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len() && req.trailers.is_empty();
            out.extend(data(stream, piece, last, None));
        }
        if !req.trailers.is_empty() {
            let t: Vec<(Vec<u8>, Vec<u8>)> = req
                .trailers
                .iter()
                .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
                .collect();
            out.extend(self.headers(stream, &t, true));
        }
        out
    }
}
