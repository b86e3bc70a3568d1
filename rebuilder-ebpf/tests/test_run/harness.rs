//! The harness of the XDP tests: a fresh copy of the program (own maps) per test, one
//! `BPF_PROG_TEST_RUN` per frame, and what came out (verdict, frame, ring-buffer records,
//! exact counter deltas), with the assertions every test makes on them. Needs root; a missing
//! prerequisite fails with its name, never a skip.

use aya::maps::{MapData, RingBuf};
use aya::programs::{TestRun, TestRunOptions};
use aya::Ebpf;
use rebuilder_ebpf::{
    load, parse_record, payload_class, read_counters, xdp_program, Config, Counter, RecordHeader,
    MAP_RECORDS, RECORD_HEADER_LEN,
};

use super::frames::Inner;

pub(crate) const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;

pub(crate) fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|e| panic!("prerequisite missing: cannot read /proc/self/status: {e}"));
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("prerequisite missing: no Uid line in /proc/self/status"));
    assert_eq!(
        euid, "0",
        "prerequisite missing: these tests load an XDP program and need root \
         (CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON); run them as root"
    );
}

/// CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns()` reads.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap()
}

pub(crate) struct Harness {
    pub(crate) ebpf: Ebpf,
    pub(crate) ring: RingBuf<MapData>,
}

#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) header: RecordHeader,
    pub(crate) payload: Vec<u8>,
    /// Length of the ring-buffer sample: header plus size class.
    pub(crate) sample_len: usize,
}

pub(crate) struct Run {
    pub(crate) verdict: u32,
    /// The frame as the program left it.
    pub(crate) out: Vec<u8>,
    pub(crate) records: Vec<Record>,
    /// Counter deltas over the run, by counter index.
    pub(crate) delta: [u64; Counter::COUNT],
    /// CLOCK_MONOTONIC just before and just after the run.
    pub(crate) window: (u64, u64),
}

impl Harness {
    pub(crate) fn new(config: Config) -> Self {
        require_root();
        let mut ebpf = load(&config).unwrap_or_else(|e| {
            panic!(
                "prerequisite missing: the kernel refused the XDP program (BPF, BTF, \
                 BPF_F_XDP_HAS_FRAGS and bpf_xdp_load_bytes need Linux 5.18+): {e}\n{e:?}"
            )
        });
        let map = ebpf
            .take_map(MAP_RECORDS)
            .expect("object has the records map");
        let ring = RingBuf::try_from(map).expect("records is a ring buffer");
        Harness { ebpf, ring }
    }

    pub(crate) fn default() -> Self {
        Self::new(Config::default())
    }

    pub(crate) fn drain(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some(item) = self.ring.next() {
            let (header, payload) = parse_record(&item)
                .unwrap_or_else(|e| panic!("kernel wrote a record parse_record rejects: {e}"));
            records.push(Record {
                header,
                payload: payload.to_vec(),
                sample_len: item.len(),
            });
        }
        records
    }

    pub(crate) fn run(&mut self, frame: &[u8]) -> Run {
        assert!(
            self.drain().is_empty(),
            "ring buffer not empty before the run"
        );
        let before = read_counters(&self.ebpf).expect("read counters");
        let mut out = vec![0u8; frame.len()];
        let start = monotonic_ns();
        let result = {
            let program = xdp_program(&mut self.ebpf).expect("program");
            let opts = TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            };
            // BPF_PROG_TEST_RUN. For an xdp.frags program the kernel puts what exceeds one
            // page (minus headroom and skb_shared_info) into fragments, as a multi-buffer NIC
            // or veth would.
            program.test_run(opts).unwrap_or_else(|e| {
                panic!(
                    "BPF_PROG_TEST_RUN failed for a {}-byte frame: {e} ({e:?})",
                    frame.len()
                )
            })
        };
        let end = monotonic_ns();
        let after = read_counters(&self.ebpf).expect("read counters");
        let mut delta = [0u64; Counter::COUNT];
        for (i, d) in delta.iter_mut().enumerate() {
            *d = after[i] - before[i];
        }
        out.truncate(result.data_size_out as usize);
        Run {
            verdict: result.return_value,
            out,
            records: self.drain(),
            delta,
            window: (start, end),
        }
    }
}

/// The exact counter deltas of one packet with `outcome` (plus extras such as bytes).
pub(crate) fn deltas(outcome: Counter, extra: &[(Counter, u64)]) -> [u64; Counter::COUNT] {
    let mut d = [0u64; Counter::COUNT];
    d[Counter::Seen.index() as usize] = 1;
    d[outcome.index() as usize] = 1;
    for &(c, n) in extra {
        d[c.index() as usize] += n;
    }
    d
}

pub(crate) fn named(d: &[u64; Counter::COUNT]) -> Vec<(&'static str, u64)> {
    Counter::ALL
        .iter()
        .map(|c| (c.name(), d[c.index() as usize]))
        .filter(|(_, n)| *n != 0)
        .collect()
}

/// Asserts that `run` pushed exactly `inner`'s record under `vni` and counted it.
pub(crate) fn assert_pushed(run: &Run, inner: &Inner, vni: u32, verdict: u32) {
    let (mut want, payload) = inner.expected(vni);
    assert_eq!(run.verdict, verdict, "verdict");
    assert_eq!(run.records.len(), 1, "records: {:?}", run.records);
    let got = &run.records[0];
    assert!(
        run.window.0 <= got.header.ts_ns && got.header.ts_ns <= run.window.1,
        "timestamp {} outside the CLOCK_MONOTONIC window {:?}",
        got.header.ts_ns,
        run.window
    );
    want.ts_ns = got.header.ts_ns;
    assert_eq!(got.header, want);
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload == payload, "payload bytes differ");
    assert_eq!(
        got.sample_len,
        RECORD_HEADER_LEN + payload_class(want.captured_len) as usize
    );
    let mut extra = vec![];
    if want.captured_len > 0 {
        extra.push((Counter::PushedBytes, u64::from(want.captured_len)));
    }
    if want.captured_len < want.wire_len {
        extra.push((Counter::Truncated, 1));
    }
    assert_eq!(named(&run.delta), named(&deltas(Counter::Pushed, &extra)));
}

/// Asserts that `run` produced no record, the verdict, and exactly one `outcome`.
pub(crate) fn assert_outcome(run: &Run, frame: &[u8], outcome: Counter, verdict: u32) {
    assert_eq!(run.verdict, verdict, "verdict for {outcome:?}");
    assert!(
        run.records.is_empty(),
        "unexpected records: {:?}",
        run.records
    );
    assert_eq!(named(&run.delta), named(&deltas(outcome, &[])));
    assert!(run.out == frame, "the program modified the frame");
}
