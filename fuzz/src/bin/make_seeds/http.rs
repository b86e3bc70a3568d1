//! Seeds for `http`: HTTP/1 fed to the framers as stream events: a GET, pipelined requests
//! across a gap, a pickup over the head limit, and upstream responses.

use rebuilder_fuzz::http::{self, Event};

use super::{write, GET};

pub(super) fn http_seeds() {
    let post = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello=world";
    let chunked =
        b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=1\r\nWiki\r\n0\r\nT: 1\r\n\r\n";
    let input = http::Input {
        limits: 0xc0 | 16,
        max_body: 4096,
        mode: 1,
        events: vec![Event::Data(GET.to_vec()), Event::End],
    };
    write("http", "get", &input.encode());

    let all = [&post[..], chunked, GET].concat();
    let input = http::Input {
        limits: 0xc0 | 16,
        max_body: 4096,
        mode: 1,
        events: vec![
            Event::Data(all[..30].to_vec()),
            Event::Data(all[30..100].to_vec()),
            Event::Data(all[100..].to_vec()),
            Event::Data(post[..70].to_vec()),
            Event::Gap(3),
            Event::Data([&post[73..], GET].concat()),
            Event::End,
        ],
    };
    write("http", "pipelined-gap", &input.encode());

    let input = http::Input {
        limits: 0x80 | 8,
        max_body: 5,
        mode: 0,
        events: vec![
            Event::Data(b"dy of something\r\n".to_vec()),
            Event::Data(post.to_vec()),
            Event::Data(chunked.to_vec()),
        ],
    };
    write("http", "pickup-over-limit", &input.encode());

    let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 304 Not Modified\r\n\r\n";
    let input = http::Input {
        limits: 16,
        max_body: 0,
        mode: 2,
        events: resp.chunks(17).map(|c| Event::Data(c.to_vec())).collect(),
    };
    write("http", "responses", &input.encode());
}
