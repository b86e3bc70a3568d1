//! The Rust mirror of `rebuilder_abi.h`.
//!
//! This file is also compiled into `build.rs` (via `#[path]`), which turns every constant,
//! field offset and counter index below into a `_Static_assert` against the C header, compiled
//! for the BPF target: if the two disagree, the crate does not build. So it must stay plain
//! Rust with no dependencies.

/// Bumped with the C header's `RB_ABI_VERSION` whenever the ABI changes.
pub const ABI_VERSION: u32 = 1;

/// `RecordHeader::family` for an IPv4 inner packet.
pub const FAMILY_IPV4: u8 = 4;
/// `RecordHeader::family` for an IPv6 inner packet.
pub const FAMILY_IPV6: u8 = 6;

/// Ring-buffer payload size classes: a record reserves the header plus the smallest class that
/// holds its captured payload.
pub const PAYLOAD_CLASSES: [u32; 4] = [256, 1500, 4096, 9216];
/// The largest payload a record carries; longer payloads are truncated to this.
pub const PAYLOAD_MAX: u32 = 9216;

/// Size of [`RecordHeader`], where the payload starts in a record.
pub const RECORD_HEADER_LEN: usize = 72;

/// Name of the program in the object.
pub const PROGRAM_NAME: &str = "rebuilder_xdp";
/// ELF section of the program: multi-buffer XDP (`BPF_F_XDP_HAS_FRAGS`).
pub const PROGRAM_SECTION: &str = "xdp.frags";

/// Ring buffer of records (`BPF_MAP_TYPE_RINGBUF`); its byte size is set with
/// `EbpfLoader::set_max_entries`.
pub const MAP_RECORDS: &str = "records";
/// Per-CPU counters (`BPF_MAP_TYPE_PERCPU_ARRAY`, [`Counter::COUNT`] `u64` entries).
pub const MAP_COUNTERS: &str = "counters";
/// VNI allow list (`BPF_MAP_TYPE_HASH`, key `u32` VNI, value `u8`), used when
/// [`GLOBAL_VNI_FILTER`] is 1.
pub const MAP_VNI_ALLOW: &str = "vni_allow";
/// Inner TCP port bitmap (`BPF_MAP_TYPE_ARRAY`, [`PORT_WORDS`] `u64` entries; port `p` is bit
/// `p % 64` of entry `p / 64`), used when [`GLOBAL_PORT_FILTER`] is 1.
pub const MAP_INNER_PORTS: &str = "inner_ports";

/// Capacity of [`MAP_VNI_ALLOW`].
pub const VNI_ALLOW_MAX: u32 = 4096;
/// Entries of [`MAP_INNER_PORTS`]: 65536 bits.
pub const PORT_WORDS: u32 = 1024;
/// Ring buffer size in the object when the loader sets none.
pub const RECORDS_DEFAULT_SIZE: u32 = 4 << 20;

/// Global `__u16[VXLAN_PORTS_MAX]`: UDP destination ports that carry VXLAN, host order, 0 for
/// an unused slot.
pub const GLOBAL_VXLAN_PORTS: &str = "vxlan_ports";
/// Global `__u8`: 1 keeps only VNIs present in [`MAP_VNI_ALLOW`].
pub const GLOBAL_VNI_FILTER: &str = "vni_filter";
/// Global `__u8`: 1 keeps only segments whose source or destination port is in
/// [`MAP_INNER_PORTS`].
pub const GLOBAL_PORT_FILTER: &str = "port_filter";
/// Global `__u8`: 1 returns `XDP_PASS` instead of `XDP_DROP` for consumed packets.
pub const GLOBAL_PASS_CONSUMED: &str = "pass_consumed";
/// Global `__u32`: wake the ring's reader only when at least this many bytes wait (0: on
/// every record); the reader must then poll on a timer.
pub const GLOBAL_WAKEUP_BYTES: &str = "wakeup_bytes";
/// Slots in [`GLOBAL_VXLAN_PORTS`].
pub const VXLAN_PORTS_MAX: usize = 4;
/// The IANA VXLAN port, which AWS Traffic Mirroring uses.
pub const VXLAN_PORT_DEFAULT: u16 = 4789;

/// The fixed header of a ring-buffer record (`struct rb_record`), followed by
/// `captured_len` payload bytes.
///
/// Integers are in host byte order; addresses are in network order (an IPv4 address fills
/// the first 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds, not wall-clock time.
    pub ts_ns: u64,
    pub vni: u32,
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes present in the record.
    pub captured_len: u32,
    /// TCP payload length according to the inner IP header.
    pub wire_len: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// The TCP header's flags byte.
    pub tcp_flags: u8,
    pub reserved0: u16,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub reserved1: u32,
}

/// Size of a field, named by a projection (`|h| &h.seq`), in a constant.
const fn size_of_field<F>(_project: fn(&RecordHeader) -> &F) -> usize {
    std::mem::size_of::<F>()
}

macro_rules! record_fields {
    ($($field:ident),* $(,)?) => {
        [$((
            stringify!($field),
            std::mem::offset_of!(RecordHeader, $field),
            size_of_field(|h: &RecordHeader| &h.$field),
        )),*]
    };
}

/// Every field of [`RecordHeader`] as (name, offset, size), as `struct rb_record` must have it.
pub const RECORD_FIELDS: [(&str, usize, usize); 14] = record_fields!(
    ts_ns,
    vni,
    seq,
    ack,
    captured_len,
    wire_len,
    src_port,
    dst_port,
    family,
    tcp_flags,
    reserved0,
    src_addr,
    dst_addr,
    reserved1,
);

/// Indices into the per-CPU `counters` map (`enum rb_counter`).
///
/// Every packet increments [`Counter::Seen`] and exactly one outcome: the `Passed*`,
/// `Filtered*`, [`Counter::Malformed`], [`Counter::Pushed`] or [`Counter::RingFull`] counters.
/// [`Counter::Truncated`] is a subset of `Pushed`; [`Counter::PushedBytes`] counts bytes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Seen = 0,
    PassedNotVxlan = 1,
    PassedOuterFragment = 2,
    FilteredVni = 3,
    FilteredPort = 4,
    FilteredPureAck = 5,
    FilteredNotTcp = 6,
    FilteredFragment = 7,
    Malformed = 8,
    Pushed = 9,
    RingFull = 10,
    Truncated = 11,
    PushedBytes = 12,
}

impl Counter {
    /// Number of counters (`RB_CNT_MAX`).
    pub const COUNT: usize = 13;

    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::Seen,
        Counter::PassedNotVxlan,
        Counter::PassedOuterFragment,
        Counter::FilteredVni,
        Counter::FilteredPort,
        Counter::FilteredPureAck,
        Counter::FilteredNotTcp,
        Counter::FilteredFragment,
        Counter::Malformed,
        Counter::Pushed,
        Counter::RingFull,
        Counter::Truncated,
        Counter::PushedBytes,
    ];

    /// Index in the `counters` map.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// Snake-case name, for metric labels; the C name is `RB_CNT_` and this in upper case.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::PassedNotVxlan => "passed_not_vxlan",
            Counter::PassedOuterFragment => "passed_outer_fragment",
            Counter::FilteredVni => "filtered_vni",
            Counter::FilteredPort => "filtered_port",
            Counter::FilteredPureAck => "filtered_pure_ack",
            Counter::FilteredNotTcp => "filtered_not_tcp",
            Counter::FilteredFragment => "filtered_fragment",
            Counter::Malformed => "malformed",
            Counter::Pushed => "pushed",
            Counter::RingFull => "ring_full",
            Counter::Truncated => "truncated",
            Counter::PushedBytes => "pushed_bytes",
        }
    }

    /// One-line description, for metric help texts.
    pub const fn help(self) -> &'static str {
        match self {
            Counter::Seen => "packets the XDP program saw",
            Counter::PassedNotVxlan => "packets passed to the stack: not UDP to a VXLAN port",
            Counter::PassedOuterFragment => {
                "first outer IP fragments to a VXLAN port, passed to the stack"
            }
            Counter::FilteredVni => "VXLAN packets dropped: VNI not allowed",
            Counter::FilteredPort => "VXLAN packets dropped: no inner TCP port selected",
            Counter::FilteredPureAck => "VXLAN packets dropped: pure TCP ACK",
            Counter::FilteredNotTcp => "VXLAN packets dropped: inner packet not TCP",
            Counter::FilteredFragment => "VXLAN packets dropped: inner IP fragment",
            Counter::Malformed => "VXLAN packets dropped: malformed headers or lengths",
            Counter::Pushed => "segments written to the ring buffer",
            Counter::RingFull => "segments lost: ring buffer full",
            Counter::Truncated => "segments pushed with fewer payload bytes than on the wire",
            Counter::PushedBytes => "payload bytes written to the ring buffer",
        }
    }

    /// Whether this counts a packet outcome (each packet increments exactly one of these).
    pub const fn is_outcome(self) -> bool {
        !matches!(
            self,
            Counter::Seen | Counter::Truncated | Counter::PushedBytes
        )
    }
}
