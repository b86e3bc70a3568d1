//! The line format, field by field, and the hand-written encoders against serde_json and std.

use super::*;
use crate::output::jsonl::tests::decode_raw;
use crate::request::RequestFlags;
use bytes::Bytes;

#[test]
fn timestamps() {
    assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339_nanos(1_700_000_000_123_456_789),
        "2023-11-14T22:13:20.123456789Z"
    );
    assert_eq!(
        rfc3339_nanos(1_709_164_800_000_000_001),
        "2024-02-29T00:00:00.000000001Z"
    );
    assert_eq!(
        rfc3339_nanos(951_782_400_999_999_999),
        "2000-02-29T00:00:00.999999999Z"
    );
    assert_eq!(
        rfc3339_nanos(4_102_444_800_000_000_000),
        "2100-01-01T00:00:00.000000000Z"
    );
    assert_eq!(rfc3339_nanos(u64::MAX), "2554-07-21T23:34:33.709551615Z");
}

#[test]
fn exact_line_for_a_request_with_host() {
    let raw = b"POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi";
    let req = RebuiltRequest {
        first_ts: 1_700_000_000_123_456_789,
        last_ts: 1_700_000_000_223_456_789,
        vni: 4242,
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "[2001:db8::2]:8080".parse().unwrap(),
        raw: Bytes::from_static(raw),
        head_len: raw.len() - 2,
        method: 0..4,
        target: 5..11,
        host: Some(28..39),
        version_minor: 1,
        body_len: 2,
        flags: RequestFlags {
            body_over_limit: false,
            gap: false,
            malformed: true,
        },
        proxy: None,
        h2: None,
    };
    let line = String::from_utf8(encode_line(&req)).unwrap();
    assert_eq!(
        line,
        concat!(
            r#"{"first_ts":"2023-11-14T22:13:20.123456789Z","last_ts":"2023-11-14T22:13:20.223456789Z","#,
            r#""vni":4242,"client":"10.0.0.1:40000","client_ip":"10.0.0.1","server":"[2001:db8::2]:8080","method":"POST","#,
            r#""target":"/a?b=c","host":"example.com","body_len":2,"#,
            r#""flags":{"body_over_limit":false,"gap":false,"malformed":true},"#,
            r#""raw":"UE9TVCAvYT9iPWMgSFRUUC8xLjENCkhvc3Q6IGV4YW1wbGUuY29tDQpDb250ZW50LUxlbmd0aDogMg0KDQpoaQ=="}"#,
            "\n"
        )
    );
    assert_eq!(decode_raw(&line), raw);
}

#[test]
fn no_host_gap_and_non_utf8() {
    let raw = b"G\xffT /\xfe\"q HTTP/1.0\r\n\r\n\x00\x01";
    let req = RebuiltRequest {
        first_ts: 5,
        last_ts: 6,
        vni: 0,
        client: "[::1]:1".parse().unwrap(),
        server: "127.0.0.1:80".parse().unwrap(),
        raw: Bytes::from_static(raw),
        head_len: 21,
        method: 0..3,
        target: 4..8,
        host: None,
        version_minor: 0,
        body_len: 100,
        flags: RequestFlags {
            body_over_limit: true,
            gap: true,
            malformed: false,
        },
        proxy: None,
        h2: None,
    };
    let line = String::from_utf8(encode_line(&req)).unwrap();
    assert_eq!(
        line,
        concat!(
            r#"{"first_ts":"1970-01-01T00:00:00.000000005Z","last_ts":"1970-01-01T00:00:00.000000006Z","#,
            r#""vni":0,"client":"[::1]:1","client_ip":"::1","server":"127.0.0.1:80","method":"G�T","target":"/�\"q","#,
            r#""host":null,"body_len":100,"flags":{"body_over_limit":true,"gap":true,"malformed":false},"#,
            r#""raw":"R/9UIC/+InEgSFRUUC8xLjANCg0KAAE="}"#,
            "\n"
        )
    );
    assert_eq!(decode_raw(&line), raw);
}

#[test]
fn a_proxy_header_gives_the_client_ip_and_its_own_object() {
    let raw = b"GET / HTTP/1.1\r\n\r\n";
    let mut req = RebuiltRequest {
        first_ts: 0,
        last_ts: 0,
        vni: 1,
        client: "10.0.0.9:5000".parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
        raw: Bytes::from_static(raw),
        head_len: raw.len(),
        method: 0..3,
        target: 4..5,
        host: None,
        version_minor: 1,
        body_len: 0,
        flags: RequestFlags::default(),
        proxy: Some(std::sync::Arc::new(crate::proxy::ProxyInfo {
            version: 2,
            local: false,
            source: Some("[2001:db8::7]:51000".parse().unwrap()),
            destination: Some("[2001:db8::5]:80".parse().unwrap()),
            authority: Some("shop.\"example\".com".into()),
            aws_vpce_id: Some("vpce-08d2bf15fac5001c9".into()),
            tlv_types: vec![234, 2],
            header_len: 100,
        })),
        h2: None,
    };
    let line = String::from_utf8(encode_line(&req)).unwrap();
    assert!(
        line.contains(r#""client":"10.0.0.9:5000","client_ip":"2001:db8::7","server""#),
        "{line}"
    );
    assert!(
        line.contains(concat!(
            r#""flags":{"body_over_limit":false,"gap":false,"malformed":false},"#,
            r#""proxy":{"version":2,"local":false,"source":"[2001:db8::7]:51000","#,
            r#""destination":"[2001:db8::5]:80","authority":"shop.\"example\".com","#,
            r#""aws_vpce_id":"vpce-08d2bf15fac5001c9","tlv_types":[234,2]},"raw":"#
        )),
        "{line}"
    );
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["proxy"]["authority"], "shop.\"example\".com");
    // LOCAL: no addresses; the client IP is the connection's own.
    req.proxy = Some(std::sync::Arc::new(crate::proxy::ProxyInfo {
        version: 2,
        local: true,
        ..Default::default()
    }));
    let v: serde_json::Value = serde_json::from_slice(&encode_line(&req)).unwrap();
    assert_eq!(v["client_ip"], "10.0.0.9");
    assert_eq!(v["proxy"]["source"], serde_json::Value::Null);
    assert_eq!(v["proxy"]["local"], true);
    assert_eq!(v["proxy"]["tlv_types"], serde_json::json!([]));
}

proptest::proptest! {
    /// The hand-written encoders write what serde_json and the standard library would.
    #[test]
    fn fields_encode_like_serde_and_std(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ascii in "[ -~]{0,64}",
        addr in proptest::prelude::any::<std::net::SocketAddr>(),
    ) {
        for b in [&bytes[..], ascii.as_bytes()] {
            let mut got = Vec::new();
            push_text(&mut got, b);
            let want = serde_json::to_string(&String::from_utf8_lossy(b)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), want);
        }
        let mut got = Vec::new();
        push_socket_addr(&mut got, addr);
        proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), addr.to_string());
        let mut got = Vec::new();
        push_ip(&mut got, addr.ip());
        proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), addr.ip().to_string());
    }
}

#[test]
fn out_of_range_fields_become_empty_not_a_panic() {
    let req = RebuiltRequest {
        first_ts: 0,
        last_ts: 0,
        vni: 1,
        client: "1.1.1.1:1".parse().unwrap(),
        server: "2.2.2.2:2".parse().unwrap(),
        raw: Bytes::from_static(b"GE"),
        head_len: 0,
        method: 0..3,
        target: 10..20,
        host: Some(std::ops::Range { start: 5, end: 1 }),
        version_minor: 1,
        body_len: 0,
        flags: RequestFlags::default(),
        proxy: None,
        h2: None,
    };
    let v: serde_json::Value = serde_json::from_slice(&encode_line(&req)).unwrap();
    assert_eq!(
        (
            v["method"].as_str(),
            v["target"].as_str(),
            v["host"].as_str()
        ),
        (Some(""), Some(""), Some(""))
    );
}
