//! `rebuilder check`: what this kernel and an interface support, in human-readable lines.
//!
//! Facts are proved where they can be: the program is loaded (so the verifier, the ring
//! buffer map and `bpf_xdp_load_bytes` are exercised for real), and the interface gets a real
//! attach in driver mode, detached at once, unless the caller asks not to.

use std::io::{self, Write};
use std::path::Path;

use super::{plan_attach, run_plan, AttachMode, AttemptError, XdpError};
use crate::capture::iface::{self, native_blockers};
use crate::config::XdpModeSetting;

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// `BPF_MAP_TYPE_RINGBUF` appeared in 5.8.
const RINGBUF_SINCE: (u32, u32) = (5, 8);
/// `bpf_xdp_load_bytes` and `bpf_xdp_get_buff_len` appeared in 5.18 (with XDP multi-buffer).
const LOAD_BYTES_SINCE: (u32, u32) = (5, 18);
/// bpf_link for XDP appeared in 5.9: without it, detach on crash cannot be guaranteed.
const XDP_LINK_SINCE: (u32, u32) = (5, 9);

/// The report: labelled lines, and the problems that make XDP capture impossible here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub lines: Vec<(String, String)>,
    pub problems: Vec<String>,
}

impl CheckReport {
    /// XDP capture can work here.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn line(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.lines.push((label.into(), value.into()));
    }

    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    pub fn print(&self, mut w: impl Write) -> io::Result<()> {
        let width = self.lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        for (label, value) in &self.lines {
            writeln!(w, "{:<width$} {value}", format!("{label}:"))?;
        }
        if self.problems.is_empty() {
            writeln!(w, "result: XDP capture can work here")?;
        } else {
            writeln!(w, "result: XDP capture cannot work here:")?;
            for p in &self.problems {
                writeln!(w, "  - {p}")?;
            }
        }
        Ok(())
    }
}

/// `major.minor` of a kernel release string such as `6.1.0-18-cloud-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

fn since(version: Option<(u32, u32)>, need: (u32, u32)) -> Option<bool> {
    version.map(|v| v >= need)
}

/// Checks the kernel, loads the program with `program`, and (with `iface`) checks the
/// interface. With `attach_test`, attaches in the mode `auto` would choose and detaches at
/// once (a real attach: on some drivers, ENA among them, that briefly restarts the queues).
pub fn check(
    program: &rebuilder_ebpf::Config,
    iface: Option<&str>,
    attach_test: bool,
) -> CheckReport {
    let mut r = CheckReport::default();
    let release = std::fs::read_to_string(OSRELEASE).unwrap_or_default();
    let version = kernel_version(&release);
    r.line(
        "kernel",
        match version {
            Some((a, b)) => format!("{} ({a}.{b})", release.trim()),
            None => format!("{:?} (version not understood)", release.trim()),
        },
    );
    if Path::new(BTF_PATH).exists() {
        r.line("BTF", format!("yes ({BTF_PATH})"));
    } else {
        r.line(
            "BTF",
            format!("no ({BTF_PATH} missing; the program does not need it)"),
        );
    }
    if since(version, XDP_LINK_SINCE) == Some(false) {
        r.problem(format!(
            "kernel older than {}.{}: no bpf_link for XDP, so detach on a crash cannot be guaranteed",
            XDP_LINK_SINCE.0, XDP_LINK_SINCE.1
        ));
    }

    let loaded = rebuilder_ebpf::load(program);
    let feature = |name: &str, need: (u32, u32), proved: bool| -> String {
        let by_version = match since(version, need) {
            Some(true) => format!("kernel >= {}.{}", need.0, need.1),
            Some(false) => format!("kernel older than {}.{}", need.0, need.1),
            None => "kernel version unknown".into(),
        };
        if proved {
            format!("yes ({by_version}; proved: {name})")
        } else if since(version, need) == Some(false) {
            format!("no ({by_version})")
        } else {
            format!("unknown ({by_version}; the program did not load)")
        }
    };
    let ok = loaded.is_ok();
    r.line(
        "BPF ring buffer",
        feature(
            "the program's ring buffer map was created",
            RINGBUF_SINCE,
            ok,
        ),
    );
    r.line(
        "bpf_xdp_load_bytes",
        feature("the program that calls it verified", LOAD_BYTES_SINCE, ok),
    );
    let mut ebpf = match loaded {
        Ok(ebpf) => {
            r.line(
                "XDP program",
                format!(
                    "loads and verifies ({}, section {}, ring buffer {})",
                    rebuilder_ebpf::PROGRAM_NAME,
                    rebuilder_ebpf::PROGRAM_SECTION,
                    crate::config::ByteSize(u64::from(program.ring_size))
                ),
            );
            Some(ebpf)
        }
        Err(e) => {
            let err = XdpError::load(&e);
            r.line("XDP program", format!("does not load: {err}"));
            r.problem(err.to_string());
            None
        }
    };

    let Some(name) = iface else {
        r.line("interface", "none given (--iface IFACE checks one)");
        return r;
    };
    let facts = match iface::probe(name) {
        Ok(f) => f,
        Err(e) => {
            r.line("interface", format!("{name}: {e}"));
            r.problem(e.to_string());
            return r;
        }
    };
    r.line("interface", format!("{name} (index {})", facts.index));
    r.line(
        "  driver",
        match &facts.driver {
            Some(d) => format!(
                "{} {} (bus {})",
                d.driver,
                if d.version.is_empty() {
                    "-"
                } else {
                    &d.version
                },
                if d.bus_info.is_empty() {
                    "-"
                } else {
                    &d.bus_info
                }
            ),
            None => "unknown (the driver does not answer ETHTOOL_GDRVINFO)".into(),
        },
    );
    r.line("  MTU", facts.mtu.to_string());
    r.line(
        "  channels",
        match facts.channels {
            Some(c) => format!(
                "combined {}/{}, rx {}/{}, tx {}/{} (in use/max)",
                c.combined, c.max_combined, c.rx, c.max_rx, c.tx, c.max_tx
            ),
            None => "unknown (the driver does not answer ETHTOOL_GCHANNELS)".into(),
        },
    );
    r.line("  driver XDP counters", driver_counters_line(name));
    let blockers = native_blockers(&facts);
    let driver = facts.driver_name().unwrap_or("unknown");
    if driver == iface::ENA_DRIVER {
        r.line("  driver mode drops", ENA_DROPS_NOTE);
    }
    if blockers.is_empty() {
        r.line(
            "  driver mode rule",
            if driver == iface::ENA_DRIVER {
                format!(
                    "met (ENA: MTU <= {}, at most half the combined channels in use)",
                    iface::ENA_XDP_MAX_MTU
                )
            } else {
                format!("no known restriction for driver {driver}")
            },
        );
    } else {
        for b in &blockers {
            r.line("  driver mode blocked", b.explain(name));
        }
    }

    let Some(ebpf) = ebpf.as_mut() else {
        r.line("  auto mode uses", "unknown (the program did not load)");
        return r;
    };
    if !attach_test {
        r.line(
            "  auto mode uses",
            if blockers.is_empty() {
                "driver mode if the driver accepts it, else generic (attach test skipped)"
            } else {
                "generic mode (driver mode blocked, see above; attach test skipped)"
            },
        );
        return r;
    }
    let plan = plan_attach(XdpModeSetting::Auto, name, &blockers);
    let mut tried = Vec::new();
    let result = run_plan(&plan, XdpModeSetting::Auto, name, &blockers, |mode| {
        let attempt = rebuilder_ebpf::attach(ebpf, name, mode.xdp_mode());
        tried.push((
            mode,
            attempt
                .as_ref()
                .err()
                .map(|e| AttemptError::from_error(e).message),
        ));
        // Dropping the link detaches at once.
        attempt.map(drop).map_err(|e| AttemptError::from_error(&e))
    });
    for (mode, outcome) in tried {
        r.line(
            format!("  attach test ({mode})"),
            match outcome {
                None => "attached and detached at once".to_string(),
                Some(e) => format!("failed: {e}"),
            },
        );
    }
    match result {
        Ok(((), attached)) => {
            let why = match &attached.fallback {
                Some(f) => format!(" (not driver mode: {f})"),
                None => String::new(),
            };
            r.line("  auto mode uses", format!("{}{why}", attached.mode));
            if attached.mode == AttachMode::Generic && driver == iface::ENA_DRIVER {
                r.line(
                    "  note",
                    "generic mode carries everything an NLB delivers (source frames up to its \
                     8500 bytes); driver mode is faster but only frames up to 3462 bytes fit \
                     (MTU 3498 less 36 bytes of VXLAN headers)",
                );
            }
        }
        Err(e) => {
            r.line("  auto mode uses", "nothing: no mode attached");
            r.problem(e.to_string());
        }
    }
    r
}

const ENA_DROPS_NOTE: &str = "ENA has no XDP multi-buffer: in driver mode a frame that does \
     not fit one receive buffer (a VXLAN packet over MTU 3498) is dropped before the program \
     sees it and counted in queue_N_rx_xdp_drop together with the program's own drops; \
     rebuilder exports the difference as rebuilder_xdp_driver_dropped_packets_total and the \
     driver's counters as rebuilder_xdp_driver_packets_total";

/// The driver's XDP statistics now (`ethtool -S`, summed over queues), in one line.
fn driver_counters_line(iface: &str) -> String {
    match crate::capture::nic::read_stats(iface) {
        Ok(stats) => {
            let xdp = crate::capture::nic::xdp_counters(&stats);
            if xdp.is_empty() {
                format!(
                    "none ({} statistics, none about XDP: loss before the program is not \
                     visible here)",
                    stats.len()
                )
            } else {
                let list: Vec<String> = xdp.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} (ethtool -S, summed over queues)", list.join(", "))
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657\n"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("6.1.0-18-cloud-amd64"), Some((6, 1)));
        assert_eq!(
            kernel_version("5.10.215-203.850.amzn2.x86_64"),
            Some((5, 10))
        );
        assert_eq!(kernel_version("6.9-rc1"), Some((6, 9)));
        assert_eq!(kernel_version("6.19+"), Some((6, 19)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_version(""), None);
        assert!(Some((5, 18)) >= Some(LOAD_BYTES_SINCE));
        assert_eq!(since(Some((5, 17)), LOAD_BYTES_SINCE), Some(false));
        assert_eq!(since(Some((6, 0)), LOAD_BYTES_SINCE), Some(true));
        assert_eq!(since(None, LOAD_BYTES_SINCE), None);
    }

    #[test]
    fn report_prints_aligned_lines_and_the_verdict() {
        let mut r = CheckReport::default();
        r.line("kernel", "6.1");
        r.line("  MTU", "1500");
        let mut out = Vec::new();
        r.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kernel: 6.1\n  MTU:  1500\nresult: XDP capture can work here\n"
        );
        r.problem("no mode attached");
        let mut out = Vec::new();
        r.print(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("result: XDP capture cannot work here:\n  - no mode attached\n"),
            "{text}"
        );
        assert!(!r.ok());
    }
}
