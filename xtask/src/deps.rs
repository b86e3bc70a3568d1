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

/// What `cargo xtask test` needs.
pub const TEST: &[Need] = &[];

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
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
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
