//! One client connection's streams in a worker: starting one (SYN or pickup), feeding its
//! reassembled events through the PROXY protocol start and the HTTP framer, handing over to a
//! second connection on the same 4-tuple, and closing it.
//!
//! Part of the flow table (`super`): it works on the table's flow types and counts into the
//! worker's stats; it never looks at the table itself.

use super::*;

/// A client connection starting at `seg` (its SYN, or the first segment of a pickup).
pub(super) fn new_active(
    key: &TableKey,
    seg: &Segment,
    now: Timestamp,
    proxy: &ProxyPolicy,
    http: &Arc<HttpLimits>,
) -> Active {
    let ctx = FlowContext {
        vni: seg.vni,
        client: key.flow.src_addr(),
        server: key.flow.dst_addr(),
    };
    let stream = Stream::new(seg);
    let framer = RequestFramer::new(ctx, http.clone(), stream.started_with_syn());
    // Only a stream seen from its SYN can show its first bytes; a pickup never looks.
    let start = stream
        .started_with_syn()
        .then(|| Box::new(StreamStart::new(proxy.mode_for(key.flow.dst_port))));
    Active {
        stream,
        framer,
        start,
        proxy: None,
        last_seen: now,
        second: None,
        took_over: false,
    }
}

/// Closes a flow that is leaving the table: its connections' streams end for `reason`, and what
/// they held is delivered (or counted).
pub(super) fn close_flow(
    flow: &mut Flow,
    reason: EndReason,
    now: Timestamp,
    events: &mut Vec<StreamEvent>,
    stats: &mut WorkerStats,
    emit: &mut impl FnMut(RebuiltRequest),
) {
    if let FlowState::Active(a) = &mut flow.state {
        a.stream.close(now, reason, events, &mut stats.stream);
        feed(a, events, stats, emit);
        if let Some(b) = a.second.as_deref_mut() {
            b.stream.close(now, reason, events, &mut stats.stream);
            feed(b, events, stats, emit);
        }
    }
}

/// What a flow becomes when its first connection is over: the second connection if there is
/// one, else closed (remembering the ISN, so late duplicates are absorbed) or, when the framer
/// gave up on a live stream (a response stream whose side was guessed wrong, an upgrade,
/// HTTP/2), ignored.
pub(super) fn after_first(a: &mut Box<Active>, client: bool, stats: &mut WorkerStats) -> FlowState {
    let ended = a.stream.ended().is_some();
    if ended {
        stats.flows_closed += 1;
    }
    if let Some(second) = a.second.take().filter(|b| b.stream.ended().is_none()) {
        return FlowState::Active(second);
    }
    // Only a stream that began with its SYN remembers it. A picked-up one does not: its first
    // segment may have been a bait sent ahead of the real SYN (an upgrade, a FIN), and the real
    // SYN must then start the connection rather than be absorbed as this one's. The price, in
    // the legitimate case of a first segment that overtook its SYN and ended the stream, is
    // that a later copy of that segment is replayed again.
    let isn = a.stream.started_with_syn().then(|| a.stream.isn());
    if ended {
        FlowState::Closed { isn }
    } else {
        FlowState::Ignored { client, isn }
    }
}

/// Runs a stream's pending events through its start (PROXY protocol) and its framer.
pub(super) fn feed(
    active: &mut Active,
    events: &mut Vec<StreamEvent>,
    stats: &mut WorkerStats,
    emit: &mut impl FnMut(RebuiltRequest),
) {
    if events.is_empty() {
        return;
    }
    let Active {
        framer,
        start,
        proxy,
        ..
    } = active;
    // Allocates only when a request comes out; requests go on as soon as their event is framed.
    let mut out = Vec::new();
    for ev in events.drain(..) {
        let mut frame = |ev: StreamEvent| {
            framer.on_event(ev, &mut out, &mut stats.http);
        };
        match start {
            Some(s) => {
                s.on_event(ev, &mut stats.proxy, &mut frame);
                if s.is_done() {
                    *proxy = s.take_info();
                    *start = None;
                }
            }
            None => frame(ev),
        }
        stats.requests += out.len() as u64;
        for mut req in out.drain(..) {
            req.proxy.clone_from(proxy);
            emit(req);
        }
    }
}
