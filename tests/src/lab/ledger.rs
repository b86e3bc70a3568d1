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
mod tests;
