//! The offline replay harness of the `replay*` tests: conversations planned by the generator,
//! written as a capture, replayed by the built binary (`rebuilder replay --pcap`) to a fresh
//! sink and a JSON lines file; and the mixed workload every request of which must come out
//! byte-exact.
//!
//! Uses the generator ([`crate::gen`]), the sink and [`crate::process`] to run the binary;
//! nothing else in this library depends on it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::gen::http::{self, hostile};
use crate::gen::{
    interleave, write_capture, CaptureFormat, Conversation, ConversationPlan, Isn, LinkType,
    MirrorPath, DEFAULT_EPOCH,
};
use crate::process::{run_rebuilder, Finished, Scratch};
use crate::sink::{ReceivedRequest, Sink};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn v4(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, a, b)), port)
}

pub fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xc1, 0, 0, 0, 0, 0, last)),
        port,
    )
}

pub fn build(convs: &[Conversation]) -> Vec<ConversationPlan> {
    convs
        .iter()
        .map(|c| c.build().expect("generator"))
        .collect()
}

pub fn write(plans: &[ConversationPlan], path: &Path, format: CaptureFormat, link: LinkType) {
    write_capture(path, format, link, interleave(plans)).expect("write capture");
}

pub fn expected(plans: &[ConversationPlan]) -> Vec<Vec<u8>> {
    plans
        .iter()
        .flat_map(|p| {
            p.truth
                .rebuildable()
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn unrebuildable(plans: &[ConversationPlan]) -> usize {
    plans.iter().map(|p| p.truth.affected().len()).sum()
}

/// Replays `pcap` to a fresh sink (and to a JSON lines file); returns the run, what the sink
/// received, and the JSON lines.
pub fn replay(
    pcap: &Path,
    scratch: &Scratch,
    extra: &[&str],
) -> (Finished, Vec<ReceivedRequest>, Vec<serde_json::Value>) {
    let sink = Sink::start_default().expect("sink");
    let jsonl = scratch.path("out.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--pcap".into(),
        pcap.display().to_string(),
        "--upstream".into(),
        sink.url(),
        "--jsonl".into(),
        jsonl.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = run_rebuilder(&args, TIMEOUT);
    run.assert_success();
    let received = sink.take();
    let lines = std::fs::read_to_string(&jsonl)
        .expect("jsonl output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (run, received, lines)
}

pub fn raw_of(line: &serde_json::Value) -> Vec<u8> {
    let b64 = line["raw"].as_str().expect("raw is a string");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("raw is base64")
}

/// The mixed workload the issue lists, every request of which must arrive byte-exact.
pub fn mixed_workload() -> Vec<Conversation> {
    let resp = http::ok_response(64);
    let mut convs = Vec::new();
    let host = "shop.example";
    // Keep-alive GETs.
    convs.push(Conversation::new(v4(0, 1, 40001), v4(9, 1, 80)).requests(
        (0..20).map(|i| http::get_with_id(host, &format!("/item/{i}"), &format!("ka-{i}"))),
        &resp,
    ));
    // POST bodies up to several MB.
    convs.push(
        Conversation::new(v4(0, 2, 40002), v4(9, 1, 80))
            .exchange(http::post(host, "/upload/small", 100_000, 1), resp.clone())
            .exchange(http::post(host, "/upload/big", 3 << 20, 2), resp.clone()),
    );
    // Chunked bodies with extensions and trailers.
    convs.push(
        Conversation::new(v4(0, 3, 40003), v4(9, 1, 80))
            .exchange(
                http::chunked_post(host, "/chunked/a", &[10, 4096, 1, 70_000], 3),
                resp.clone(),
            )
            .exchange(
                http::chunked_post(host, "/chunked/b", &[1; 50], 4),
                resp.clone(),
            ),
    );
    // Pipelined requests sharing segments.
    convs.push(
        Conversation::new(v4(0, 4, 40004), v4(9, 1, 80))
            .requests(http::pipelined_gets(host, 6, "pipe"), &resp)
            .pipelined(6, true),
    );
    // HTTP/1.0 and Expect: 100-continue.
    convs.push(
        Conversation::new(v4(0, 5, 40005), v4(9, 1, 80))
            .exchange(http::http10_get(host, "/old"), resp.clone())
            .exchange(
                http::expect_continue_post(host, "/expect", 20_000, 5),
                resp.clone(),
            ),
    );
    // Hostile-looking requests a WAF must see unchanged.
    convs.push(
        Conversation::new(v4(0, 6, 40006), v4(9, 1, 80)).requests(hostile::parseable(host), &resp),
    );
    convs.push(
        Conversation::new(v4(0, 7, 40007), v4(9, 1, 80)).requests(hostile::malformed(host), &resp),
    );
    // IPv6 inside and outside.
    convs.push(
        Conversation::new(v6(1, 40008), v6(0x99, 443))
            .mirror(MirrorPath {
                src: IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 10)),
                dst: IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 200)),
                vni: 4242,
            })
            .requests(
                (0..5).map(|i| http::post(host, &format!("/v6/{i}"), 3000, i)),
                &resp,
            ),
    );
    // VLAN tags (QinQ) on the inner frame.
    convs.push(
        Conversation::new(v4(0, 9, 40009), v4(9, 1, 8080))
            .vlans(&[100, 200])
            .requests(
                (0..5).map(|i| http::get(host, &format!("/vlan/{i}"))),
                &resp,
            ),
    );
    // Jumbo frames: 9000-byte inner frames.
    convs.push(
        Conversation::new(v4(0, 10, 40010), v4(9, 1, 80))
            .mss(8948)
            .exchange(http::post(host, "/jumbo", 1 << 20, 10), resp.clone())
            .exchange(http::get(host, "/after-jumbo"), resp.clone()),
    );
    // Sequence numbers wrapping past 2^32 mid-request.
    convs.push(
        Conversation::new(v4(0, 11, 40011), v4(9, 1, 80))
            .client_isn(Isn::WrapAfter(5000))
            .requests(
                (0..4).map(|i| http::post(host, &format!("/wrap/{i}"), 4000, i)),
                &resp,
            ),
    );
    // Reordering, retransmissions and overlapping retransmissions.
    convs.push(
        Conversation::new(v4(0, 12, 40012), v4(9, 1, 80))
            .reorder(6)
            .duplicate(0.2)
            .overlapping_retransmits(5)
            .seed(12)
            .requests(
                (0..10).map(|i| http::post(host, &format!("/messy/{i}"), 5000, i)),
                &resp,
            ),
    );
    convs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            c.id(i as u64 + 1)
                .start(DEFAULT_EPOCH + Duration::from_micros(i as u64 * 37))
        })
        .collect()
}

pub fn scratch_pcap(scratch: &Scratch, plans: &[ConversationPlan]) -> PathBuf {
    let pcap = scratch.path("c.pcap");
    write(plans, &pcap, CaptureFormat::Pcap, LinkType::Ethernet);
    pcap
}
