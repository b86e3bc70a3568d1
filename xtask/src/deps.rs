//! Debian packages the tasks need: checked, and installed when we are root on an apt system.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

/// A requirement: satisfied when any of `paths` exists (a binary or a header), else installed
/// from `package`.
pub struct Need {
    pub what: &'static str,
    pub paths: &'static [&'static str],
    pub package: &'static str,
}

/// What building the workspace needs: the XDP program is C, compiled by clang with libbpf's
/// headers.
pub const BUILD: &[Need] = &[
    Need {
        what: "clang (compiles the XDP program)",
        paths: &[
            "/usr/bin/clang-19",
            "/usr/bin/clang-18",
            "/usr/bin/clang-17",
            "/usr/bin/clang-16",
            "/usr/bin/clang-15",
            "/usr/bin/clang-14",
            "/usr/bin/clang",
        ],
        package: "clang-19",
    },
    Need {
        what: "libbpf headers (bpf/bpf_helpers.h)",
        paths: &["/usr/include/bpf/bpf_helpers.h"],
        package: "libbpf-dev",
    },
];

/// What `cargo xtask test` needs beyond the build: network namespaces, veth pairs and XDP
/// attachment are driven with iproute2.
pub const TEST: &[Need] = &[
    Need {
        what: "ip (iproute2)",
        paths: &["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"],
        package: "iproute2",
    },
    // The live HTTP/2 test calls the origin with curl --http2-prior-knowledge too.
    Need {
        what: "curl",
        paths: &["/usr/bin/curl"],
        package: "curl",
    },
    // The deployment tests: user data must be shellcheck-clean, the unit must verify, and
    // checkov runs from a virtualenv the test creates under target/ (python3-venv).
    Need {
        what: "shellcheck",
        paths: &["/usr/bin/shellcheck"],
        package: "shellcheck",
    },
    Need {
        what: "systemd-analyze",
        paths: &["/usr/bin/systemd-analyze"],
        package: "systemd",
    },
    Need {
        what: "python3",
        paths: &["/usr/bin/python3"],
        package: "python3",
    },
    Need {
        what: "python3's venv module",
        paths: &[
            "/usr/lib/python3.11/ensurepip/__init__.py",
            "/usr/lib/python3.12/ensurepip/__init__.py",
            "/usr/lib/python3.13/ensurepip/__init__.py",
        ],
        package: "python3-venv",
    },
    // The operations kit: promtool checks and unit-tests the alert rules, checks the dashboard's
    // queries and the Prometheus scrape configurations the deployment writes.
    Need {
        what: "promtool (Prometheus)",
        paths: &["/usr/bin/promtool"],
        package: "prometheus",
    },
    // The NIC statistics test compares rebuilder's ethtool reading with `ethtool -S`.
    Need {
        what: "ethtool",
        paths: &["/usr/sbin/ethtool", "/sbin/ethtool"],
        package: "ethtool",
    },
];

/// What the live part of `cargo xtask bench` needs beyond the rest.
pub const BENCH_LIVE: &[Need] = &[
    Need {
        what: "tcpreplay (top-speed sender)",
        paths: &["/usr/bin/tcpreplay"],
        package: "tcpreplay",
    },
    Need {
        what: "ip (iproute2)",
        paths: &["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"],
        package: "iproute2",
    },
    Need {
        what: "bpftool (the XDP program's run time per packet, from the kernel's bpf_stats)",
        paths: &["/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool"],
        package: "bpftool",
    },
];

/// What `cargo xtask lab` needs beyond the build: namespaces, links and routes with `ip`, the
/// mirror session with `tc`, both from iproute2.
pub const LAB: &[Need] = &[
    Need {
        what: "ip (iproute2)",
        paths: &["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"],
        package: "iproute2",
    },
    Need {
        what: "tc (iproute2)",
        paths: &["/usr/sbin/tc", "/sbin/tc", "/bin/tc", "/usr/bin/tc"],
        package: "iproute2",
    },
];

/// What `cargo xtask bench` needs.
pub const BENCH: &[Need] = &[
    Need {
        what: "tshark (reference parser)",
        paths: &["/usr/bin/tshark"],
        package: "tshark",
    },
    Need {
        what: "GNU time (peak RSS)",
        paths: &["/usr/bin/time"],
        package: "time",
    },
];

fn present(n: &Need) -> bool {
    n.paths.iter().any(|p| Path::new(p).exists())
}

/// The Debian packages providing what is missing of `needs`, each once.
pub fn missing_packages(needs: &[Need]) -> Vec<&'static str> {
    let mut p: Vec<&'static str> = needs
        .iter()
        .filter(|n| !present(n))
        .map(|n| n.package)
        .collect();
    p.dedup();
    p
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Installs what is missing (as root with apt-get), or fails naming it.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !present(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    // Two needs may come from one package (ip and tc from iproute2).
    packages.dedup();
    let list = missing
        .iter()
        .map(|n| format!("{} (package {})", n.what, n.package))
        .collect::<Vec<_>>()
        .join(", ");
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "missing: {list}. Install them with: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    println!("xtask: installing {}", packages.join(" "));
    let ok = Command::new("apt-get")
        .arg("update")
        .arg("-qq")
        .status()?
        .success()
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?
            .success();
    if !ok {
        bail!("apt-get could not install {}", packages.join(" "));
    }
    if let Some(n) = needs.iter().find(|n| !present(n)) {
        bail!("{} is still missing after installing {}", n.what, n.package);
    }
    Ok(())
}
