//! rebuilder's XDP program and the ABI it shares with userspace.
//!
//! The program itself is C (`src/rebuilder.bpf.c`, ABI in `src/rebuilder_abi.h`), compiled by
//! `build.rs` with clang and embedded here as [`OBJECT`]. It parses VXLAN-encapsulated TCP
//! segments in the kernel and writes one record per kept segment to a BPF ring buffer; the
//! layout of a record is [`RecordHeader`] followed by the payload, read back with
//! [`parse_record`].
//!
//! Loading: [`load`] applies a [`Config`] (read-only globals, ring size, filter maps) and
//! verifies the program; [`attach`] attaches it through a bpf_link, so that the attachment
//! ends with the process however it ends; [`read_counters`] sums the per-CPU counters.

mod abi;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, HashMap, MapError, PerCpuArray};
use aya::programs::links::{FdLink, LinkError};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};

pub use abi::*;

/// The compiled XDP object (ELF, BTF included), 8-byte aligned as aya's parser wants.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rebuilder.bpf.o"));

/// A bare program that counts (per-CPU array `drop_count`, one entry) and drops every packet:
/// the ceiling `cargo xtask bench` measures the real program against. Program name `drop_all`.
pub static DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drop.bpf.o"));

/// The AF_XDP experiment's program (`afxdp-rx`, in experiments/afxdp): program `xsk_redirect`
/// redirects UDP datagrams to port 4789 into the `xsks` map (`XSKMAP`, keyed by receive queue,
/// 64 entries) and passes everything else.
pub static XSK_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk.bpf.o"));

/// Why a ring-buffer record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of {len} bytes is shorter than its {RECORD_HEADER_LEN}-byte header")]
    Short { len: usize },
    #[error("record has unknown address family {0}")]
    Family(u8),
    #[error("record claims {captured} captured bytes but carries only {available}")]
    CapturedBeyondRecord { captured: u32, available: usize },
    #[error("record claims {captured} captured bytes, more than the maximum {PAYLOAD_MAX}")]
    CapturedBeyondMax { captured: u32 },
    #[error("record claims {captured} captured bytes of a {wire}-byte payload")]
    CapturedBeyondWire { captured: u32, wire: u32 },
}

/// Splits `N` bytes off the front of `buf`.
fn take<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

fn read_header(mut b: &[u8]) -> Option<RecordHeader> {
    let b = &mut b;
    Some(RecordHeader {
        ts_ns: u64::from_ne_bytes(take(b)?),
        vni: u32::from_ne_bytes(take(b)?),
        seq: u32::from_ne_bytes(take(b)?),
        ack: u32::from_ne_bytes(take(b)?),
        captured_len: u32::from_ne_bytes(take(b)?),
        wire_len: u32::from_ne_bytes(take(b)?),
        src_port: u16::from_ne_bytes(take(b)?),
        dst_port: u16::from_ne_bytes(take(b)?),
        family: u8::from_ne_bytes(take(b)?),
        tcp_flags: u8::from_ne_bytes(take(b)?),
        reserved0: u16::from_ne_bytes(take(b)?),
        src_addr: take(b)?,
        dst_addr: take(b)?,
        reserved1: u32::from_ne_bytes(take(b)?),
    })
}

impl RecordHeader {
    /// The header's bytes as the XDP program writes them (`struct rb_record`, integers in host
    /// byte order): what tests and fuzz seeds build ring records from. Each field is written at
    /// its offset in the layout the C side asserts, independently of the sequential reader
    /// above, so a round trip checks the one against the other.
    pub fn to_bytes(&self) -> [u8; RECORD_HEADER_LEN] {
        use std::mem::offset_of;
        let mut b = [0u8; RECORD_HEADER_LEN];
        let mut put = |at: usize, v: &[u8]| {
            if let Some(dst) = b.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        put(offset_of!(RecordHeader, ts_ns), &self.ts_ns.to_ne_bytes());
        put(offset_of!(RecordHeader, vni), &self.vni.to_ne_bytes());
        put(offset_of!(RecordHeader, seq), &self.seq.to_ne_bytes());
        put(offset_of!(RecordHeader, ack), &self.ack.to_ne_bytes());
        put(
            offset_of!(RecordHeader, captured_len),
            &self.captured_len.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, wire_len),
            &self.wire_len.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, src_port),
            &self.src_port.to_ne_bytes(),
        );
        put(
            offset_of!(RecordHeader, dst_port),
            &self.dst_port.to_ne_bytes(),
        );
        put(offset_of!(RecordHeader, family), &[self.family]);
        put(offset_of!(RecordHeader, tcp_flags), &[self.tcp_flags]);
        put(
            offset_of!(RecordHeader, reserved0),
            &self.reserved0.to_ne_bytes(),
        );
        put(offset_of!(RecordHeader, src_addr), &self.src_addr);
        put(offset_of!(RecordHeader, dst_addr), &self.dst_addr);
        put(
            offset_of!(RecordHeader, reserved1),
            &self.reserved1.to_ne_bytes(),
        );
        b
    }
}

/// Reads one ring-buffer record: its header and the captured payload.
///
/// `buf` is a whole ring-buffer sample, which is as long as the reservation (header plus size
/// class), so usually longer than the payload; only `captured_len` bytes are returned.
pub fn parse_record(buf: &[u8]) -> Result<(RecordHeader, &[u8]), RecordError> {
    let short = || RecordError::Short { len: buf.len() };
    let (head, rest) = buf.split_at_checked(RECORD_HEADER_LEN).ok_or_else(short)?;
    let header = read_header(head).ok_or_else(short)?;
    if header.family != FAMILY_IPV4 && header.family != FAMILY_IPV6 {
        return Err(RecordError::Family(header.family));
    }
    let captured = header.captured_len;
    if captured > PAYLOAD_MAX {
        return Err(RecordError::CapturedBeyondMax { captured });
    }
    if captured > header.wire_len {
        return Err(RecordError::CapturedBeyondWire {
            captured,
            wire: header.wire_len,
        });
    }
    // captured <= PAYLOAD_MAX, so the conversion is lossless on every target.
    let payload = rest
        .get(..captured as usize)
        .ok_or(RecordError::CapturedBeyondRecord {
            captured,
            available: rest.len(),
        })?;
    Ok((header, payload))
}

impl RecordHeader {
    fn addr(&self, bytes: [u8; 16]) -> IpAddr {
        if self.family == FAMILY_IPV4 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    }

    /// Inner source address (meaningful for records that passed [`parse_record`]).
    pub fn src_ip(&self) -> IpAddr {
        self.addr(self.src_addr)
    }

    /// Inner destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.addr(self.dst_addr)
    }

    /// Fewer payload bytes arrived than the segment had: the rest is a gap.
    pub fn is_truncated(&self) -> bool {
        self.captured_len < self.wire_len
    }
}

/// The payload size class a record with `captured` payload bytes reserves.
pub fn payload_class(captured: u32) -> u32 {
    PAYLOAD_CLASSES
        .iter()
        .copied()
        .find(|&class| captured <= class)
        .unwrap_or(PAYLOAD_MAX)
}

/// What the loader sets before the program is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UDP destination ports carrying VXLAN: 1 to [`VXLAN_PORTS_MAX`] non-zero ports.
    pub vxlan_ports: Vec<u16>,
    /// VNIs to keep; empty keeps all. At most [`VNI_ALLOW_MAX`], each below 2^24.
    pub vnis: Vec<u32>,
    /// Inner TCP ports to keep (a segment is kept when either port is listed); empty keeps all.
    pub inner_ports: Vec<u16>,
    /// Return `XDP_PASS` instead of `XDP_DROP` for consumed packets (debugging: the stack
    /// still sees them).
    pub pass_consumed: bool,
    /// Ring buffer size in bytes; aya rounds it up to a power-of-two number of pages.
    pub ring_size: u32,
    /// Wake the reader only when this many bytes wait in the ring (0: on every record). With
    /// a threshold the reader must poll on a timer for what stays below it.
    pub wakeup_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vxlan_ports: vec![VXLAN_PORT_DEFAULT],
            vnis: Vec::new(),
            inner_ports: Vec::new(),
            pass_consumed: false,
            ring_size: RECORDS_DEFAULT_SIZE,
            wakeup_bytes: 0,
        }
    }
}

/// Why [`load`] or a map access failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid XDP configuration: {0}")]
    Config(String),
    #[error("loading the XDP object: {0}")]
    Ebpf(#[from] EbpfError),
    #[error("XDP object has no map {0:?}")]
    MissingMap(&'static str),
    #[error("XDP object has no program {PROGRAM_NAME:?}")]
    MissingProgram,
    #[error("XDP map: {0}")]
    Map(#[from] MapError),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("XDP link: {0}")]
    Link(#[from] LinkError),
    #[error(
        "the kernel attached the XDP program to {iface} through netlink, not a bpf_link; \
         detached again, since it would outlive a crash (bpf_link needs Linux 5.9+)"
    )]
    NoBpfLink { iface: String },
    #[error("checking this process's bpf_links in /proc/self: {0}")]
    LinkCheck(#[source] std::io::Error),
}

impl Config {
    fn vxlan_ports_global(&self) -> Result<[u16; VXLAN_PORTS_MAX], LoadError> {
        if self.vxlan_ports.is_empty() || self.vxlan_ports.len() > VXLAN_PORTS_MAX {
            return Err(LoadError::Config(format!(
                "1 to {VXLAN_PORTS_MAX} VXLAN ports are needed, got {}",
                self.vxlan_ports.len()
            )));
        }
        if self.vxlan_ports.contains(&0) {
            return Err(LoadError::Config("VXLAN port 0".into()));
        }
        let mut ports = [0u16; VXLAN_PORTS_MAX];
        for (slot, port) in ports.iter_mut().zip(&self.vxlan_ports) {
            *slot = *port;
        }
        Ok(ports)
    }

    fn validate(&self) -> Result<[u16; VXLAN_PORTS_MAX], LoadError> {
        let ports = self.vxlan_ports_global()?;
        if self.vnis.len() > VNI_ALLOW_MAX as usize {
            return Err(LoadError::Config(format!(
                "{} VNIs listed, at most {VNI_ALLOW_MAX} fit",
                self.vnis.len()
            )));
        }
        if let Some(vni) = self.vnis.iter().find(|&&v| v >= 1 << 24) {
            return Err(LoadError::Config(format!(
                "VNI {vni} does not fit in 24 bits"
            )));
        }
        if self.ring_size == 0 {
            return Err(LoadError::Config("ring buffer size 0".into()));
        }
        Ok(ports)
    }
}

/// The inner-port bitmap as [`MAP_INNER_PORTS`] holds it: port `p` is bit `p % 64` of word
/// `p / 64`.
pub fn port_bitmap(ports: &[u16]) -> Vec<u64> {
    let mut words = vec![0u64; PORT_WORDS as usize];
    for &port in ports {
        if let Some(word) = words.get_mut(usize::from(port) / 64) {
            *word |= 1 << (port % 64);
        }
    }
    words
}

/// Creates the maps with `config` applied, verifies the program and fills the filter maps.
///
/// The program is loaded but not attached: see [`attach`].
pub fn load(config: &Config) -> Result<Ebpf, LoadError> {
    let ports = config.validate()?;
    let vni_filter = u8::from(!config.vnis.is_empty());
    let port_filter = u8::from(!config.inner_ports.is_empty());
    let pass_consumed = u8::from(config.pass_consumed);
    let mut ebpf = EbpfLoader::new()
        .override_global(GLOBAL_VXLAN_PORTS, &ports, true)
        .override_global(GLOBAL_VNI_FILTER, &vni_filter, true)
        .override_global(GLOBAL_PORT_FILTER, &port_filter, true)
        .override_global(GLOBAL_PASS_CONSUMED, &pass_consumed, true)
        .override_global(GLOBAL_WAKEUP_BYTES, &config.wakeup_bytes, true)
        .map_max_entries(MAP_RECORDS, config.ring_size)
        .load(OBJECT)?;

    if vni_filter == 1 {
        let map = ebpf
            .map_mut(MAP_VNI_ALLOW)
            .ok_or(LoadError::MissingMap(MAP_VNI_ALLOW))?;
        let mut allow: HashMap<_, u32, u8> = HashMap::try_from(map)?;
        for &vni in &config.vnis {
            allow.insert(vni, 1, 0)?;
        }
    }
    if port_filter == 1 {
        let map = ebpf
            .map_mut(MAP_INNER_PORTS)
            .ok_or(LoadError::MissingMap(MAP_INNER_PORTS))?;
        let mut bitmap: Array<_, u64> = Array::try_from(map)?;
        for (index, word) in (0u32..).zip(port_bitmap(&config.inner_ports)) {
            if word != 0 {
                bitmap.set(index, word, 0)?;
            }
        }
    }
    xdp_program(&mut ebpf)?.load()?;
    Ok(ebpf)
}

/// The XDP program of a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    let program = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(LoadError::MissingProgram)?;
    Ok(program.try_into()?)
}

/// Attaches the loaded program to `iface` through a bpf_link and hands the link over.
///
/// The attachment lasts while the returned [`FdLink`] (or a duplicate of its descriptor) is
/// open: dropping it detaches, and so does the process ending in any way, crash and SIGKILL
/// included, because the kernel closes the descriptor. aya's `Xdp::attach` falls back to the
/// legacy netlink attachment when `bpf_link_create` answers EINVAL; such an attachment would
/// outlive the process, so it is undone here and reported as [`LoadError::NoBpfLink`].
///
/// `mode`: [`XdpMode::Driver`] (native; needs driver support and, above a page-sized MTU,
/// multi-buffer support, which this `xdp.frags` program declares), [`XdpMode::Skb`] (generic,
/// works everywhere, slower) or [`XdpMode::Default`] (the kernel picks).
pub fn attach(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<FdLink, LoadError> {
    let program = xdp_program(ebpf)?;
    let prog_id = program.info()?.id();
    let id = program.attach(iface, mode)?;
    let via_link = match holds_xdp_link(prog_id) {
        Ok(found) => found,
        Err(e) => {
            program.detach(id)?;
            return Err(LoadError::LinkCheck(e));
        }
    };
    if !via_link {
        program.detach(id)?;
        return Err(LoadError::NoBpfLink {
            iface: iface.to_string(),
        });
    }
    let link = program.take_link(id)?;
    FdLink::try_from(link).map_err(LoadError::Link)
}

/// Whether this process holds a bpf_link of type xdp for program `prog_id`.
///
/// aya does not say which way `Xdp::attach` went, and enumerating the kernel's links needs
/// CAP_SYS_ADMIN, which the daemon does not have; the process's own descriptors tell without
/// any privilege.
fn holds_xdp_link(prog_id: u32) -> std::io::Result<bool> {
    let want = prog_id.to_string();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        // Descriptors close and open concurrently; one that vanished is not ours.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.as_os_str() != "anon_inode:bpf_link" {
            continue;
        }
        let fdinfo = std::path::Path::new("/proc/self/fdinfo").join(entry.file_name());
        let Ok(info) = std::fs::read_to_string(fdinfo) else {
            continue;
        };
        let field = |name: &str| {
            info.lines().find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim_start_matches(':').trim())
            })
        };
        if field("link_type") == Some("xdp") && field("prog_id") == Some(want.as_str()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The counters summed over all CPUs, indexed by [`Counter::index`].
pub fn read_counters(ebpf: &Ebpf) -> Result<[u64; Counter::COUNT], LoadError> {
    let map = ebpf
        .map(MAP_COUNTERS)
        .ok_or(LoadError::MissingMap(MAP_COUNTERS))?;
    let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
    let mut totals = [0u64; Counter::COUNT];
    for (index, total) in (0u32..).zip(totals.iter_mut()) {
        *total = counters
            .get(&index, 0)?
            .iter()
            .fold(0u64, |a, &v| a.wrapping_add(v));
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_bytes(h: &RecordHeader) -> Vec<u8> {
        h.to_bytes().to_vec()
    }

    fn sample() -> RecordHeader {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        RecordHeader {
            ts_ns: 123_456_789,
            vni: 0xabcdef,
            seq: 1000,
            ack: 2000,
            captured_len: 5,
            wire_len: 7,
            src_port: 40000,
            dst_port: 80,
            family: FAMILY_IPV4,
            tcp_flags: 0x18,
            reserved0: 0,
            src_addr: src,
            dst_addr: dst,
            reserved1: 0,
        }
    }

    #[test]
    fn header_serialisation_is_as_long_as_the_struct() {
        assert_eq!(
            header_bytes(&sample()).len(),
            std::mem::size_of::<RecordHeader>()
        );
        assert_eq!(RECORD_HEADER_LEN, std::mem::size_of::<RecordHeader>());
    }

    #[test]
    fn parses_a_record_with_class_padding() {
        let h = sample();
        let mut buf = header_bytes(&h);
        buf.extend_from_slice(b"hello");
        buf.resize(RECORD_HEADER_LEN + 256, 0xee);
        let (got, payload) = parse_record(&buf).unwrap();
        assert_eq!(got, h);
        assert_eq!(payload, b"hello");
        assert_eq!(got.src_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(got.dst_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(got.is_truncated());
    }

    #[test]
    fn ipv6_addresses() {
        let mut h = sample();
        h.family = FAMILY_IPV6;
        h.src_addr = Ipv6Addr::LOCALHOST.octets();
        h.captured_len = 0;
        h.wire_len = 0;
        let buf = header_bytes(&h);
        let (got, payload) = parse_record(&buf).unwrap();
        assert_eq!(got.src_ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(payload.is_empty());
        assert!(!got.is_truncated());
    }

    #[test]
    fn rejects_bad_records() {
        let h = sample();
        let mut buf = header_bytes(&h);
        buf.extend_from_slice(b"hell");
        assert_eq!(
            parse_record(&buf),
            Err(RecordError::CapturedBeyondRecord {
                captured: 5,
                available: 4
            })
        );
        assert_eq!(
            parse_record(&buf[..71]),
            Err(RecordError::Short { len: 71 })
        );
        assert_eq!(parse_record(&[]), Err(RecordError::Short { len: 0 }));

        let mut bad = h;
        bad.family = 5;
        assert_eq!(
            parse_record(&header_bytes(&bad)),
            Err(RecordError::Family(5))
        );

        let mut bad = h;
        bad.captured_len = 8;
        assert_eq!(
            parse_record(&header_bytes(&bad)),
            Err(RecordError::CapturedBeyondWire {
                captured: 8,
                wire: 7
            })
        );

        let mut bad = h;
        bad.captured_len = PAYLOAD_MAX + 1;
        bad.wire_len = u32::MAX;
        assert_eq!(
            parse_record(&header_bytes(&bad)),
            Err(RecordError::CapturedBeyondMax {
                captured: PAYLOAD_MAX + 1
            })
        );
    }

    #[test]
    fn classes() {
        assert_eq!(payload_class(0), 256);
        assert_eq!(payload_class(256), 256);
        assert_eq!(payload_class(257), 1500);
        assert_eq!(payload_class(1501), 4096);
        assert_eq!(payload_class(4097), 9216);
        assert_eq!(payload_class(9216), 9216);
        assert_eq!(payload_class(100_000), 9216);
    }

    #[test]
    fn port_bitmap_sets_exactly_the_listed_bits() {
        let words = port_bitmap(&[0, 63, 64, 80, 65535]);
        assert_eq!(words.len(), PORT_WORDS as usize);
        assert_eq!(words[0], 1 | 1 << 63);
        assert_eq!(words[1], 1 | 1 << 16);
        assert_eq!(words[1023], 1 << 63);
        assert_eq!(words.iter().map(|w| w.count_ones()).sum::<u32>(), 5);
    }

    #[test]
    fn config_validation() {
        let ok = Config::default();
        assert_eq!(ok.validate().unwrap(), [4789, 0, 0, 0]);
        let cases = [
            Config {
                vxlan_ports: vec![],
                ..Config::default()
            },
            Config {
                vxlan_ports: vec![1, 2, 3, 4, 5],
                ..Config::default()
            },
            Config {
                vxlan_ports: vec![4789, 0],
                ..Config::default()
            },
            Config {
                vnis: vec![1 << 24],
                ..Config::default()
            },
            Config {
                vnis: vec![1; VNI_ALLOW_MAX as usize + 1],
                ..Config::default()
            },
            Config {
                ring_size: 0,
                ..Config::default()
            },
        ];
        for case in cases {
            assert!(
                matches!(case.validate(), Err(LoadError::Config(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn counter_names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
    }

    #[test]
    fn no_xdp_link_is_found_for_a_program_this_process_never_attached() {
        assert!(!holds_xdp_link(u32::MAX).unwrap());
    }

    /// The build-time layout check (see build.rs) must cover every field and counter: a fact
    /// it does not assert is a divergence it cannot catch.
    #[test]
    fn layout_check_covers_the_whole_abi() {
        let check = include_str!(concat!(env!("OUT_DIR"), "/abi_layout_check.c"));
        for (field, offset, size) in RECORD_FIELDS {
            let at = format!("offsetof(struct rb_record, {field}) == {offset},");
            let width = format!("sizeof(((struct rb_record *)0)->{field}) == {size},");
            assert!(check.contains(&at), "missing: {at}");
            assert!(check.contains(&width), "missing: {width}");
        }
        let tiled: usize = RECORD_FIELDS.iter().map(|f| f.2).sum();
        assert_eq!(tiled, std::mem::size_of::<RecordHeader>());
        assert!(check.contains(&format!("{tiled} == sizeof(struct rb_record),")));
        for c in Counter::ALL {
            let fact = format!("RB_CNT_{} == {},", c.name().to_ascii_uppercase(), c.index());
            assert!(check.contains(&fact), "missing: {fact}");
        }
        assert!(check.contains(&format!("RB_CNT_MAX == {},", Counter::COUNT)));
    }

    proptest! {
        #[test]
        fn parse_record_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok((h, payload)) = parse_record(&buf) {
                prop_assert_eq!(payload.len(), h.captured_len as usize);
                prop_assert!(h.captured_len <= h.wire_len);
                prop_assert!(h.family == FAMILY_IPV4 || h.family == FAMILY_IPV6);
                prop_assert_eq!(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload.len()], payload);
            }
        }

        #[test]
        fn parse_record_round_trips(
            ts in any::<u64>(), vni in 0u32..1 << 24, seq in any::<u32>(), ack in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            extra_wire in 0u32..10_000, v6 in any::<bool>(), flags in any::<u8>(),
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), padding in 0usize..64,
        ) {
            let h = RecordHeader {
                ts_ns: ts, vni, seq, ack,
                captured_len: payload.len() as u32,
                wire_len: payload.len() as u32 + extra_wire,
                src_port: 1, dst_port: 2,
                family: if v6 { FAMILY_IPV6 } else { FAMILY_IPV4 },
                tcp_flags: flags, reserved0: 0, src_addr: src, dst_addr: dst, reserved1: 0,
            };
            let mut buf = header_bytes(&h);
            buf.extend_from_slice(&payload);
            buf.resize(buf.len() + padding, 0);
            let (got, got_payload) = parse_record(&buf).unwrap();
            prop_assert_eq!(got, h);
            prop_assert_eq!(got_payload, &payload[..]);
        }
    }
}
