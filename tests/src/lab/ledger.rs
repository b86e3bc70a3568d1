//! The lab's account of every request: entered when a client is about to write it, matched
//! when the sink receives it (byte for byte, once), attributed to the node that replayed it.
//!
//! A request's bytes are kept only until its first arrival, so memory follows what is in
//! flight, not the length of the run. Each connection is one flow for its whole life, so the
//! node that replays any of its requests is the node its flow hashes to: that is how a lost
//! request is told to belong to a dead node or not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use super::workload::id_of;
use crate::compare::excerpt;
use crate::sink::ReceivedRequest;

/// Connection and position on it of a request of the mixed workload (`c3-17`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub conn: u32,
    pub seq: u32,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}-{}", self.conn, self.seq)
    }
}

impl std::str::FromStr for RequestId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (c, n) = s.strip_prefix('c').ok_or(())?.split_once('-').ok_or(())?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(c) || !digits(n) {
            return Err(());
        }
        Ok(RequestId {
            conn: c.parse().map_err(|_| ())?,
            seq: n.parse().map_err(|_| ())?,
        })
    }
}

/// A node's death: requests sent in `phase` or later on its flows cannot arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Death {
    pub node: usize,
    pub phase: u32,
}

struct Entry {
    phase: u32,
    len: usize,
    /// What the sink must receive, until the first arrival.
    bytes: Option<Vec<u8>>,
    arrivals: u32,
    exact: bool,
    /// A health check: the rebuilders must filter it, not replay it.
    filtered: bool,
}

#[derive(Default)]
struct Conn {
    addr: Option<SocketAddr>,
    /// Nodes that replayed its requests: one, unless the flow moved (it must not).
    nodes: BTreeSet<usize>,
    error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeTally {
    pub requests: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<RequestId, Entry>,
    conns: BTreeMap<u32, Conn>,
    phase: u32,
    sent: u64,
    sent_bytes: u64,
    /// Entries not arrived yet.
    outstanding: u64,
    received: u64,
    received_bytes: u64,
    per_node: Vec<NodeTally>,
    /// Arrivals from an address that is no node's.
    unknown_peer: u64,
    mismatched: u64,
    duplicated: u64,
    /// Requests sent to be filtered.
    filtered_sent: u64,
    /// Of those, arrivals at the sink.
    filtered_arrived: u64,
    /// Arrivals without an id of ours, or with one never sent.
    unidentified: u64,
    /// Sent requests without an id (never, with the lab's workload).
    untagged_sent: u64,
    examples: Vec<String>,
}

const EXAMPLES: usize = 10;

impl Inner {
    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }
}

/// Counts so far, for the progress line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub outstanding: u64,
    pub per_node: Vec<NodeTally>,
    pub problems: u64,
}

pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    pub fn new(nodes: usize) -> Ledger {
        Ledger {
            inner: Mutex::new(Inner {
                per_node: vec![NodeTally::default(); nodes],
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request about to be written (tagged by [`with_id`](super::workload::with_id)).
    pub fn sent(&self, raw: &[u8]) {
        self.sent_as(raw, raw.to_vec());
    }

    /// A request about to be written whose replay must be `expected` (with the client IP
    /// added, say).
    pub fn sent_as(&self, raw: &[u8], expected: Vec<u8>) {
        let mut st = self.lock();
        st.sent += 1;
        st.sent_bytes += raw.len() as u64;
        let Some(id) = id_of(raw) else {
            st.untagged_sent += 1;
            return;
        };
        let phase = st.phase;
        st.conns.entry(id.conn).or_default();
        let fresh = Entry {
            phase,
            len: raw.len(),
            bytes: Some(expected),
            arrivals: 0,
            exact: false,
            filtered: false,
        };
        if st.entries.insert(id, fresh).is_some() {
            st.example(format!("{id} was sent twice"));
            st.untagged_sent += 1;
        } else {
            st.outstanding += 1;
        }
    }

    /// A request about to be written that the rebuilders must not replay (a load balancer's
    /// health check): it counts as filtered, and as a fault if it reaches the sink.
    pub fn sent_filtered(&self, raw: &[u8]) {
        let mut st = self.lock();
        st.sent += 1;
        st.sent_bytes += raw.len() as u64;
        let Some(id) = id_of(raw) else {
            st.untagged_sent += 1;
            return;
        };
        let fresh = Entry {
            phase: st.phase,
            len: raw.len(),
            bytes: None,
            arrivals: 0,
            exact: false,
            filtered: true,
        };
        if st.entries.insert(id, fresh).is_some() {
            st.example(format!("{id} was sent twice"));
            st.untagged_sent += 1;
        } else {
            st.filtered_sent += 1;
        }
    }

    pub fn connection_opened(&self, conn: u32, local: SocketAddr) {
        self.lock().conns.entry(conn).or_default().addr = Some(local);
    }

    pub fn connection_failed(&self, conn: u32, error: String) {
        self.lock().conns.entry(conn).or_default().error = Some(error);
    }

    /// Requests sent from now on belong to `phase` (phases only grow).
    pub fn set_phase(&self, phase: u32) {
        let mut st = self.lock();
        st.phase = st.phase.max(phase);
    }

    pub fn phase(&self) -> u32 {
        self.lock().phase
    }

    /// Matches what the sink received; `node_of` tells the node from the sender's address.
    pub fn absorb(
        &self,
        received: Vec<ReceivedRequest>,
        node_of: impl Fn(IpAddr) -> Option<usize>,
    ) {
        let mut st = self.lock();
        for r in received {
            st.received += 1;
            st.received_bytes += r.raw.len() as u64;
            let node = node_of(r.peer.ip());
            match node.and_then(|n| st.per_node.get_mut(n)) {
                Some(t) => {
                    t.requests += 1;
                    t.bytes += r.raw.len() as u64;
                }
                None => st.unknown_peer += 1,
            }
            let Some(id) = id_of(&r.raw) else {
                st.unidentified += 1;
                let e = format!("unidentified request: {}", excerpt(&r.raw, 80));
                st.example(e);
                continue;
            };
            let Some(entry) = st.entries.get_mut(&id) else {
                st.unidentified += 1;
                st.example(format!("{id} arrived but was never sent"));
                continue;
            };
            entry.arrivals += 1;
            if entry.filtered {
                st.filtered_arrived += 1;
                st.example(format!("{id} is a health check, yet it reached the sink"));
                continue;
            }
            let problem = if entry.arrivals == 1 {
                let sent = entry.bytes.take().unwrap_or_default();
                entry.exact = sent == r.raw;
                (!entry.exact).then(|| {
                    let at = sent
                        .iter()
                        .zip(&r.raw)
                        .position(|(a, b)| a != b)
                        .unwrap_or(sent.len().min(r.raw.len()));
                    format!(
                        "{id} differs: sent {} bytes, received {}, first difference at byte {at}",
                        sent.len(),
                        r.raw.len()
                    )
                })
            } else {
                Some(format!("{id} arrived {} times", entry.arrivals))
            };
            let first = entry.arrivals == 1;
            let exact = entry.exact;
            if first {
                st.outstanding -= 1;
                if !exact {
                    st.mismatched += 1;
                }
            } else {
                st.duplicated += 1;
            }
            if let Some(p) = problem {
                st.example(p);
            }
            if let Some(n) = node {
                st.conns.entry(id.conn).or_default().nodes.insert(n);
            }
        }
    }

    pub fn tally(&self) -> Tally {
        let st = self.lock();
        Tally {
            sent: st.sent,
            sent_bytes: st.sent_bytes,
            received: st.received,
            received_bytes: st.received_bytes,
            outstanding: st.outstanding,
            per_node: st.per_node.clone(),
            problems: st.mismatched
                + st.duplicated
                + st.unidentified
                + st.untagged_sent
                + st.filtered_arrived,
        }
    }

    /// The node each connection's flow reached (None: none of its requests arrived; the
    /// first, when it reached several).
    pub fn connection_nodes(&self) -> BTreeMap<u32, Option<usize>> {
        self.lock()
            .conns
            .iter()
            .map(|(c, s)| (*c, s.nodes.iter().next().copied()))
            .collect()
    }

    /// Requests not arrived yet that can still arrive (those lost with `death` excluded).
    pub fn awaited(&self, death: Option<Death>) -> u64 {
        let st = self.lock();
        let Some(d) = death else {
            return st.outstanding;
        };
        st.entries
            .iter()
            .filter(|(id, e)| e.arrivals == 0 && !e.filtered && !lost_with(&st, **id, e, d))
            .count() as u64
    }

    /// The account of the run: what arrived, what is missing and why.
    pub fn verdict(&self, death: Option<Death>) -> Verdict {
        let st = self.lock();
        let mut v = Verdict {
            sent: st.sent,
            sent_bytes: st.sent_bytes,
            received: st.received,
            received_bytes: st.received_bytes,
            mismatched: st.mismatched,
            duplicated: st.duplicated,
            unidentified: st.unidentified + st.untagged_sent,
            unknown_peer: st.unknown_peer,
            filtered_arrived: st.filtered_arrived,
            per_node: st.per_node.clone(),
            connections: st.conns.len(),
            connections_per_node: vec![0; st.per_node.len()],
            examples: st.examples.clone(),
            ..Verdict::default()
        };
        for c in st.conns.values() {
            match c.nodes.iter().next() {
                Some(n) => {
                    if let Some(x) = v.connections_per_node.get_mut(*n) {
                        *x += 1;
                    }
                }
                None => v.connections_unplaced += 1,
            }
            if c.nodes.len() > 1 {
                v.split_connections += 1;
            }
            if let Some(e) = &c.error {
                v.client_errors.push(e.clone());
            }
        }
        let mut missing: Vec<RequestId> = Vec::new();
        for (id, e) in &st.entries {
            if e.filtered {
                if e.arrivals == 0 {
                    v.filtered += 1;
                }
                continue;
            }
            let expected_loss = death.is_some_and(|d| lost_with(&st, *id, e, d));
            match (e.arrivals, expected_loss) {
                (0, true) => v.lost_with_dead_node += 1,
                (0, false) => {
                    v.missing += 1;
                    missing.push(*id);
                }
                (_, true) => v.delivered_after_death += 1,
                (_, false) => {
                    if e.exact {
                        v.exact += 1;
                    }
                }
            }
            if e.arrivals == 0 {
                v.missing_bytes += e.len as u64;
            }
        }
        missing.sort_unstable();
        for id in missing.iter().take(EXAMPLES) {
            let node = st
                .conns
                .get(&id.conn)
                .and_then(|c| c.nodes.iter().next())
                .map_or("no node".to_owned(), |n| format!("node{n}"));
            v.examples
                .push(format!("{id} is missing (its flow: {node})"));
        }
        v
    }
}

/// Whether `e` was sent on a flow of the dead node after it died.
fn lost_with(st: &Inner, id: RequestId, e: &Entry, d: Death) -> bool {
    e.phase >= d.phase
        && st
            .conns
            .get(&id.conn)
            .is_some_and(|c| c.nodes.contains(&d.node))
}

/// What happened to every request of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub received_bytes: u64,
    /// Arrived exactly once, byte for byte.
    pub exact: u64,
    /// Never arrived, with no dead node to explain it.
    pub missing: u64,
    /// Bytes of every request that never arrived (explained or not).
    pub missing_bytes: u64,
    /// Never arrived: sent on a dead node's flow after it died (expected).
    pub lost_with_dead_node: u64,
    /// Arrived although sent on a dead node's flow after it died (impossible: a flow moved).
    pub delivered_after_death: u64,
    pub duplicated: u64,
    /// Arrived once, with different bytes.
    pub mismatched: u64,
    /// Arrived with no id of ours, or an id never sent.
    pub unidentified: u64,
    /// Arrived from an address that is no node's.
    pub unknown_peer: u64,
    /// Health checks sent that did not arrive, as they must not.
    pub filtered: u64,
    /// Health checks that reached the sink.
    pub filtered_arrived: u64,
    pub per_node: Vec<NodeTally>,
    pub connections: usize,
    pub connections_per_node: Vec<usize>,
    /// Connections none of whose requests arrived.
    pub connections_unplaced: usize,
    /// Connections whose requests came from two nodes.
    pub split_connections: usize,
    pub client_errors: Vec<String>,
    pub examples: Vec<String>,
}

impl Verdict {
    /// Every request arrived exactly once, byte for byte, except those a dead node explains.
    pub fn ok(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.mismatched == 0
            && self.unidentified == 0
            && self.unknown_peer == 0
            && self.delivered_after_death == 0
            && self.split_connections == 0
            && self.client_errors.is_empty()
            && self.filtered_arrived == 0
            && self.exact + self.lost_with_dead_node + self.filtered == self.sent
    }
}

#[cfg(test)]
mod tests {
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
}
