//! Loading, attaching and reading the program: [`load`] applies a [`Config`] and verifies the
//! program, [`attach`] attaches it through a bpf_link (so the attachment ends with the process
//! however it ends), and [`read_counters`] sums the per-CPU counters.
//!
//! The only module that talks to the kernel (through aya); it knows the ABI's map and
//! program names and nothing of what userspace does with the records.

use aya::maps::{Array, HashMap, MapError, PerCpuArray};
use aya::programs::links::{FdLink, LinkError};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::abi::*;
use crate::config::{port_bitmap, Config};
use crate::OBJECT;

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

/// The attach mode a measuring tool's command line names: `driver` (the default when absent)
/// or `generic`. Shared by `xdp-drop`, `ringbuf-rx` and the AF_XDP experiment.
pub fn xdp_mode_arg(arg: Option<&str>) -> Result<XdpMode, String> {
    match arg {
        None | Some("driver") => Ok(XdpMode::Driver),
        Some("generic") => Ok(XdpMode::Skb),
        Some(other) => Err(format!("unknown XDP mode {other:?} (driver or generic)")),
    }
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
pub(crate) fn holds_xdp_link(prog_id: u32) -> std::io::Result<bool> {
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
