//! `cargo xtask lab`: the README's first command. Builds everything in release mode, then runs
//! `rebuilder-lab` (from `tests/`) as root: network namespaces where the kernel mirrors live
//! HTTP traffic through VXLAN into N rebuilder nodes (XDP by default) and a WAF sink, a mixed
//! workload for the duration, and a table saying whether every request arrived byte for byte,
//! exactly once. Its exit status is the lab's.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, deps, release_bin, run};

/// Passes `args` on to `rebuilder-lab` (`--help` lists them).
pub fn lab(args: &[String]) -> Result<()> {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let help = args.iter().any(|a| a == "-h" || a == "--help");
    if !help && !deps::is_root() {
        let missing = deps::missing_packages(deps::LAB);
        let install = if missing.is_empty() {
            String::new()
        } else {
            format!(
                "\nIt also needs {0} (as root it installs it; or: sudo apt-get install -y {0}).",
                missing.join(" ")
            )
        };
        bail!(
            "the lab needs root: it creates network namespaces, veth and VXLAN devices, tc \
             mirror filters and attaches XDP programs. Run it as root, e.g.\n  \
             sudo -E env \"PATH=$PATH\" cargo xtask lab {}{install}",
            args.join(" ")
        );
    }
    deps::ensure(deps::BUILD)?;
    if !help {
        deps::ensure(deps::LAB)?;
    }
    run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    let mut cmd = Command::new(release_bin("rebuilder-lab"));
    cmd.env("REBUILDER_BIN", release_bin("rebuilder"))
        .args(args);
    // Replaces this process: Ctrl-C reaches the lab (which tears down), and its exit status
    // (0 all delivered, 1 something missing, duplicated or altered, 2 no lab) is ours.
    let e = std::os::unix::process::CommandExt::exec(&mut cmd);
    bail!(
        "cannot start {}: {e}",
        release_bin("rebuilder-lab").display()
    )
}
