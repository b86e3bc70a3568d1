//! What a run did: the [`Summary`] every command returns, its list of losses and its printed
//! form.
//!
//! Plain data filled in by the capture arms and `run` at the end; it reads the stats types of
//! the rooms it reports on (capture, workers, outputs) and touches nothing live.

use std::io::Write;
use std::time::Duration;

use crate::capture::decode::DecodeStats;
use crate::capture::pcap::PcapStats;
use crate::capture::xdp::{Attached, ReaderStats};
use crate::output::OutputTotals;
use crate::worker::WorkerStats;

/// The XDP input's part of a [`Summary`].
#[derive(Debug)]
pub struct XdpSummary {
    pub attached: Attached,
    /// The program's counters at the end, by `rebuilder_ebpf::Counter::index`.
    pub kernel: [u64; rebuilder_ebpf::Counter::COUNT],
    pub reader: ReaderStats,
}

/// What a run did, printed at the end of `replay` (and at shutdown of `run`).
#[derive(Debug, Default)]
pub struct Summary {
    pub source: &'static str,
    pub elapsed: Duration,
    /// Frames read from the file, or datagrams received.
    pub packets: u64,
    pub decode: DecodeStats,
    pub pcap: Option<PcapStats>,
    pub udp_kernel_drops: u64,
    pub udp_truncated: u64,
    pub xdp: Option<XdpSummary>,
    pub segments_dropped_queue_full: u64,
    pub workers: WorkerStats,
    /// Requests kept from the outputs on purpose, by reason (only reasons that happened).
    pub filtered: Vec<(&'static str, u64)>,
    pub outputs: Vec<OutputTotals>,
    /// Requests the outputs still held when the drain deadline passed.
    pub abandoned: u64,
    /// Set when reading stopped early because of an error (the rest of the summary is still
    /// what was done up to there).
    pub read_error: Option<String>,
}

impl Summary {
    /// Every loss, with where it happened, for the summary and for tests.
    pub fn drops(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut push = |k: String, n: u64| {
            if n > 0 {
                out.push((k, n));
            }
        };
        for (d, n) in self.decode.drops() {
            push(format!("packet:{}", d.as_str()), n);
        }
        if let Some(p) = &self.pcap {
            push("record:corrupt".into(), p.corrupt);
            push("record:unsupported_link".into(), p.unsupported_link);
        }
        push("datagram:kernel_drop".into(), self.udp_kernel_drops);
        push("datagram:truncated".into(), self.udp_truncated);
        if let Some(x) = &self.xdp {
            use rebuilder_ebpf::Counter;
            for c in [Counter::RingFull, Counter::Malformed] {
                let n = x.kernel.get(c.index() as usize).copied().unwrap_or(0);
                push(format!("xdp:{}", c.name()), n);
            }
        }
        push(
            "segment:worker_queue_full".into(),
            self.segments_dropped_queue_full,
        );
        let s = &self.workers.stream;
        push("segment:out_of_window".into(), s.out_of_window_segments);
        // What spoofed segments tried and did not get (see reassembly/stream.rs): they change
        // nothing of the real stream, but an operator should see them.
        push("segment:pruned".into(), s.pruned_segments);
        push("segment:rst_ignored".into(), s.rst_ignored);
        push("segment:fin_ignored".into(), s.fin_ignored);
        push(
            "segment:second_connection".into(),
            self.workers.second_connections,
        );
        push("stream:rewound".into(), s.rewinds);
        // Bytes of later copies that differed from the first (first wins): not a loss of the
        // client's bytes, but what an attacker tried to slip in.
        push("bytes:conflict".into(), s.conflict_bytes);
        // Bytes on SYNs, dropped as a server without TCP Fast Open drops them.
        push("bytes:syn_data".into(), s.syn_data_bytes);
        push("flow:evicted".into(), self.workers.flows_evicted);
        let h = &self.workers.http;
        use crate::h2::StreamOutcome as O;
        let h2 = |o| h.h2.streams_of(o);
        push("request:gap".into(), h.dropped_gap + h2(O::Gap));
        push("request:head_too_large".into(), h.dropped_head_too_large);
        push(
            "request:too_many_headers".into(),
            h.dropped_too_many_headers,
        );
        push("request:invalid".into(), h.dropped_invalid);
        push(
            "request:incomplete".into(),
            h.dropped_incomplete + h2(O::Incomplete),
        );
        push("request:h2_undecodable".into(), h2(O::Undecodable));
        push("request:h2_malformed".into(), h2(O::Malformed));
        push("request:h2_refused".into(), h2(O::Refused));
        push("request:h2_head_too_large".into(), h2(O::HeadTooLarge));
        push("bytes:h2_unattached".into(), h.h2.unattached_data_bytes);
        push("request:evicted".into(), self.workers.requests_evicted);
        let p = &self.workers.proxy;
        push("proxy_header:malformed".into(), p.malformed);
        push("proxy_header:truncated".into(), p.truncated);
        for o in &self.outputs {
            for (reason, n) in &o.dropped {
                push(format!("{}:{reason}", o.output), *n);
            }
        }
        out
    }

    pub fn print(&self, mut w: impl Write) -> std::io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let w_ = &self.workers;
        writeln!(w, "rebuilder {} summary", self.source)?;
        writeln!(w, "  elapsed          {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(
            w,
            "  packets          {} ({:.0}/s)",
            self.packets,
            self.packets as f64 / secs
        )?;
        if let Some(x) = &self.xdp {
            let k =
                |c: rebuilder_ebpf::Counter| x.kernel.get(c.index() as usize).copied().unwrap_or(0);
            writeln!(
                w,
                "  xdp              {} ({} mode): {} packets seen, {} segments pushed",
                x.attached.iface,
                x.attached.mode,
                k(rebuilder_ebpf::Counter::Seen),
                k(rebuilder_ebpf::Counter::Pushed)
            )?;
        }
        writeln!(w, "  segments         {}", self.decode.segments())?;
        writeln!(w, "  flows            {}", w_.flows_created)?;
        writeln!(
            w,
            "  gaps             {} ({} bytes)",
            w_.stream.gaps.iter().sum::<u64>(),
            w_.stream.gap_bytes.iter().sum::<u64>()
        )?;
        writeln!(
            w,
            "  requests rebuilt {} ({:.0}/s)",
            w_.requests,
            w_.requests as f64 / secs
        )?;
        let filtered: u64 = self.filtered.iter().map(|(_, n)| n).sum();
        let reasons: Vec<String> = self
            .filtered
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if reasons.is_empty() {
            writeln!(w, "  filtered         0")?;
        } else {
            writeln!(w, "  filtered         {filtered} ({})", reasons.join(" "))?;
        }
        let p = &w_.proxy;
        if p.v1 + p.v2 + p.v2_local > 0 {
            writeln!(
                w,
                "  proxy headers    {} (v1 {}, v2 {}, v2 local {})",
                p.v1 + p.v2 + p.v2_local,
                p.v1,
                p.v2,
                p.v2_local
            )?;
        }
        for o in &self.outputs {
            let verb = if o.output == "upstream" {
                "replayed"
            } else {
                "written"
            };
            writeln!(w, "  {:<16} {} {verb}", o.output, o.delivered)?;
        }
        let drops = self.drops();
        if drops.is_empty() {
            writeln!(w, "  dropped          none")?;
        } else {
            writeln!(w, "  dropped")?;
            for (k, n) in drops {
                writeln!(w, "    {k:<30} {n}")?;
            }
        }
        if let Some(e) = &self.read_error {
            writeln!(w, "  read error       {e}")?;
        }
        Ok(())
    }
}
