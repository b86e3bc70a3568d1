//! The ledger checked without a lab: ids, deliveries, duplicates, losses explained by a node's
//! death, and the verdict.

use super::*;
use crate::lab::workload::with_id;
use std::time::Duration;

fn req(conn: u32, seq: u32) -> Vec<u8> {
    with_id(
        format!("GET /{conn}/{seq} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        RequestId { conn, seq },
    )
}

fn arrived(raw: Vec<u8>, node: u8) -> ReceivedRequest {
    ReceivedRequest {
        connection: 0,
        index: 0,
        at: Duration::ZERO,
        peer: SocketAddr::from(([10, 79, node, 2], 40000)),
        raw,
    }
}

fn node_of(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(v) if v.octets()[..2] == [10, 79] => Some(usize::from(v.octets()[2])),
        _ => None,
    }
}

#[test]
fn ids_print_and_parse() {
    let id = RequestId { conn: 3, seq: 17 };
    assert_eq!(id.to_string(), "c3-17");
    assert_eq!("c3-17".parse(), Ok(id));
    for bad in [
        "3-17",
        "c3",
        "c-1",
        "c3-",
        "c3-1x",
        "c+3-1",
        "c99999999999-1",
    ] {
        assert_eq!(bad.parse::<RequestId>(), Err(()), "{bad}");
    }
}

#[test]
fn exact_once_is_ok_and_every_fault_is_counted() {
    let l = Ledger::new(2);
    for s in 0..3 {
        l.sent(&req(0, s));
        l.sent(&req(1, s));
    }
    assert_eq!(l.tally().outstanding, 6);
    l.absorb(
        (0..3)
            .map(|s| arrived(req(0, s), 0))
            .chain((0..3).map(|s| arrived(req(1, s), 1)))
            .collect(),
        node_of,
    );
    let v = l.verdict(None);
    assert!(v.ok(), "{v:?}");
    assert_eq!(
        (v.exact, v.per_node[0].requests, v.per_node[1].requests),
        (6, 3, 3)
    );
    assert_eq!(v.connections_per_node, vec![1, 1]);

    // A duplicate, a changed byte, a stranger and a missing request.
    l.sent(&req(0, 3));
    l.sent(&req(0, 4));
    let mut changed = req(0, 3);
    *changed.last_mut().unwrap() = b'!';
    l.absorb(
        vec![
            arrived(req(0, 1), 0),
            arrived(changed, 0),
            arrived(b"GET / HTTP/1.1\r\n\r\n".to_vec(), 0),
            arrived(req(1, 0), 9),
        ],
        node_of,
    );
    let v = l.verdict(None);
    assert!(!v.ok());
    assert_eq!(
        (
            v.duplicated,
            v.mismatched,
            v.unidentified,
            v.missing,
            v.unknown_peer
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(v.exact, 6);
    assert!(v
        .examples
        .iter()
        .any(|e| e == "c0-4 is missing (its flow: node0)"));
    let len = req(0, 3).len();
    let differs = format!(
        "c0-3 differs: sent {len} bytes, received {len}, first difference at byte {}",
        len - 1
    );
    assert!(v.examples.contains(&differs), "{:?}", v.examples);
}

#[test]
fn health_checks_count_as_filtered_and_arriving_is_a_fault() {
    let l = Ledger::new(1);
    l.sent(&req(0, 0));
    l.sent_filtered(&req(9, 0));
    l.sent_filtered(&req(9, 1));
    // Sent with the client IP expected in the replay.
    let raw = req(0, 1);
    let mut expected = raw.clone();
    expected.splice(
        raw.len() - 2..raw.len() - 2,
        b"X-Forwarded-For: 1.2.3.4\r\n".to_vec(),
    );
    l.sent_as(&raw, expected.clone());
    assert_eq!(l.awaited(None), 2, "a health check is not awaited");
    l.absorb(vec![arrived(req(0, 0), 0), arrived(expected, 0)], node_of);
    let v = l.verdict(None);
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.exact, v.filtered, v.sent), (2, 2, 4));
    assert_eq!(
        v.connections, 1,
        "health checks are no flow of the workload"
    );
    l.absorb(vec![arrived(req(9, 1), 0)], node_of);
    let v = l.verdict(None);
    assert!(!v.ok());
    assert_eq!((v.filtered, v.filtered_arrived), (1, 1));
    // The replay without the client IP is not byte-exact.
    let l = Ledger::new(1);
    let raw = req(0, 0);
    l.sent_as(
        &raw,
        with_id(
            b"GET /other HTTP/1.1\r\n\r\n",
            RequestId { conn: 0, seq: 0 },
        ),
    );
    l.absorb(vec![arrived(raw, 0)], node_of);
    assert_eq!(l.verdict(None).mismatched, 1);
}

#[test]
fn a_dead_node_explains_exactly_the_requests_of_its_flows_after_it_died() {
    let l = Ledger::new(2);
    l.sent(&req(0, 0));
    l.sent(&req(1, 0));
    l.absorb(vec![arrived(req(0, 0), 0), arrived(req(1, 0), 1)], node_of);
    l.set_phase(1);
    let death = Death { node: 1, phase: 1 };
    l.sent(&req(0, 1));
    l.sent(&req(1, 1));
    l.sent(&req(1, 2));
    assert_eq!(l.awaited(Some(death)), 1);
    assert_eq!(l.awaited(None), 3);
    l.absorb(vec![arrived(req(0, 1), 0)], node_of);
    assert_eq!(l.awaited(Some(death)), 0);
    let v = l.verdict(Some(death));
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.exact, v.lost_with_dead_node, v.missing), (3, 2, 0));
    // Without the death, the same run is two requests short.
    assert_eq!(l.verdict(None).missing, 2);
    // Something arriving from a flow of the dead node after its death contradicts it.
    l.absorb(vec![arrived(req(1, 2), 1)], node_of);
    let v = l.verdict(Some(death));
    assert_eq!(v.delivered_after_death, 1);
    assert!(!v.ok());
}
