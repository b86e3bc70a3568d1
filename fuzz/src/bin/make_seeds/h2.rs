//! Seeds for `h2`: HTTP/2 frames and HPACK header blocks as h2c and gRPC clients send them,
//! and what goes wrong with them.

use rebuilder_fuzz::http::Event;

use super::write;

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut v = vec![l[1], l[2], l[3], kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An HPACK literal field with incremental indexing and a new name (RFC 7541 §6.2.1), short
/// strings without Huffman coding.
fn hpack_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x40, name.len() as u8];
    v.extend_from_slice(name);
    v.push(value.len() as u8);
    v.extend_from_slice(value);
    v
}

/// Seeds for `h2`: what h2c and gRPC clients send, and what goes wrong with it. Header blocks
/// use the static table (`:method GET` 0x82, `POST` 0x83, `:scheme http` 0x86, `:path /`
/// 0x84), literals that enter the dynamic table, and references back to them (0xbe: the newest
/// entry, index 62).
pub(super) fn h2_seeds() {
    use rebuilder_fuzz::h2;
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const CONT: u8 = 9;
    const RST: u8 = 3;
    const SETTINGS: u8 = 4;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    const PADDED: u8 = 8;
    let settings = h2_frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
    let get = |stream: u32, path: &[u8]| {
        let mut b = vec![0x82, 0x86];
        b.extend(hpack_literal(b":authority", b"a.example"));
        b.extend(hpack_literal(b":path", path));
        b.extend(hpack_literal(b"x-trace", b"1"));
        h2_frame(HEADERS, END_HEADERS | END_STREAM, stream, &b)
    };
    // The second request refers to the first's entries.
    let again = h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x82, 0x86, 0xc0, 0xbf, 0xbe],
    );
    let mut post_block = vec![0x83, 0x86];
    post_block.extend(hpack_literal(b":authority", b"api.example"));
    post_block.extend(hpack_literal(b":path", b"/pkg.Svc/Call"));
    post_block.extend(hpack_literal(b"content-type", b"application/grpc"));
    post_block.extend(hpack_literal(b"te", b"trailers"));
    let post = h2_frame(HEADERS, END_HEADERS, 5, &post_block);
    let body = h2_frame(DATA, 0, 5, b"\x00\x00\x00\x00\x03abc");
    let padded = h2_frame(DATA, PADDED, 5, b"\x02xy\x00\x00");
    let trailers = h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        5,
        &hpack_literal(b"x-sum", b"9f"),
    );
    let data = |parts: Vec<Vec<u8>>| parts.into_iter().map(Event::Data).collect::<Vec<_>>();
    let whole = [
        settings.clone(),
        get(1, b"/a"),
        again.clone(),
        post.clone(),
        body.clone(),
        padded.clone(),
        trailers.clone(),
    ]
    .concat();
    let cont_block = [
        vec![0x82, 0x86],
        hpack_literal(b":authority", b"a.example"),
        hpack_literal(b":path", b"/long"),
    ]
    .concat();
    let (c1, c2) = cont_block.split_at(5);
    let seeds: Vec<(&str, u8, Vec<Event>)> = vec![
        (
            "prior-knowledge",
            0,
            [data(vec![whole.clone()]), vec![Event::End]].concat(),
        ),
        (
            "split-frames",
            0,
            data(whole.chunks(7).map(<[u8]>::to_vec).collect()),
        ),
        ("upgrade", 1, data(vec![settings.clone(), get(3, b"/up")])),
        (
            "continuation",
            0,
            data(vec![
                settings.clone(),
                h2_frame(HEADERS, END_STREAM, 1, c1),
                h2_frame(CONT, END_HEADERS, 1, c2),
            ]),
        ),
        (
            "reset-and-end",
            0,
            [
                data(vec![
                    settings.clone(),
                    post.clone(),
                    h2_frame(RST, 0, 5, &[0, 0, 0, 8]),
                    post_block_stream(7, &post_block),
                ]),
                vec![Event::End],
            ]
            .concat(),
        ),
        (
            "gap-in-data",
            0,
            vec![
                Event::Data([settings.clone(), post.clone(), body[..10].to_vec()].concat()),
                Event::Gap(3),
                Event::Data(body[13..].to_vec()),
                Event::Data([padded.clone(), trailers.clone(), get(7, b"/b")].concat()),
            ],
        ),
        (
            "gap-over-frames",
            0,
            vec![
                Event::Data([settings.clone(), get(1, b"/a")].concat()),
                Event::Gap(20),
                Event::Data(again.clone()),
            ],
        ),
        (
            "pickup",
            2,
            data(vec![again.clone(), [post.clone(), body.clone()].concat()]),
        ),
        (
            "hpack-error",
            0,
            data(vec![
                settings.clone(),
                h2_frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0x7f]),
                get(3, b"/c"),
            ]),
        ),
    ];
    for (name, mode, events) in seeds {
        let input = h2::Input {
            limits: 0x3f,
            max_body: 4096,
            table: 4096,
            mode,
            events,
        };
        write("h2", name, &input.encode());
    }
}

/// The POST's header block again, on another stream, with END_STREAM (no body).
fn post_block_stream(stream: u32, block: &[u8]) -> Vec<u8> {
    h2_frame(1, 4 | 1, stream, block)
}
