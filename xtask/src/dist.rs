//! `cargo xtask dist`: the release tarball the Terraform module's user data installs.
//!
//! `target/dist/rebuilder-<version>-<arch>-linux.tar.gz` holds one directory of the same name
//! with `bin/rebuilder` (the XDP object is embedded in it), `rebuilder.service`,
//! `rebuilder.toml` (the default settings) and a README; `<tarball>.sha256` beside it is in
//! `sha256sum -c` format. The archive is reproducible: sorted entries, root-owned, one mtime
//! (`SOURCE_DATE_EPOCH`, else the last commit's time), gzip without a timestamp.
//!
//! The binary is linked against the build machine's glibc, and runs only where that glibc is at
//! least as new as the newest symbol version it references. The nodes run Amazon Linux 2023
//! (glibc 2.34), so the dist fails when the binary needs anything newer, naming what it found.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::Endianness;

/// Amazon Linux 2023 ships glibc 2.34; Ubuntu 22.04 has 2.35.
pub const MAX_GLIBC: GlibcVersion = GlibcVersion(2, 34);

const USAGE: &str = "\
usage: cargo xtask dist [--profile NAME] [--out-dir DIR]

  --profile NAME   cargo profile to build with (default: release)
  --out-dir DIR    where the tarball and its .sha256 go (default: target/dist)
";

/// A `GLIBC_x.y[.z]` symbol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32);

impl GlibcVersion {
    /// `GLIBC_2.34` → 2.34; a third component (`GLIBC_2.2.5`) does not matter for the bound.
    /// Other names (`GLIBC_PRIVATE`, `GCC_3.0`) are not glibc releases: `None`.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("GLIBC_")?;
        let mut parts = rest.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(GlibcVersion(major, minor))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a dynamically linked ELF executable asks of the system that runs it.
#[derive(Debug, PartialEq, Eq)]
pub struct ElfNeeds {
    /// `x86_64` or `aarch64`, the name used in the tarball's.
    pub arch: &'static str,
    /// DT_NEEDED: the shared libraries, in link order.
    pub libraries: Vec<String>,
    /// Every `GLIBC_*` version referenced, ascending, without duplicates.
    pub glibc: Vec<GlibcVersion>,
}

impl ElfNeeds {
    pub fn max_glibc(&self) -> Option<GlibcVersion> {
        self.glibc.last().copied()
    }
}

/// Reads the architecture, the needed libraries and the glibc symbol versions of a 64-bit ELF.
pub fn elf_needs(data: &[u8]) -> Result<ElfNeeds> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let arch = match file.elf_header().e_machine(endian) {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        other => bail!("unsupported ELF machine {other}"),
    };
    let sections = file.elf_section_table();

    let mut libraries = Vec::new();
    if let Some((entries, link)) = sections.dynamic(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        for entry in entries {
            if entry.tag32(endian) == Some(elf::DT_NEEDED as i32) {
                let name = entry.string(endian, strings)?;
                libraries.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }

    let mut glibc = Vec::new();
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_need, mut aux)) = needs.next()? {
            while let Some(entry) = aux.next()? {
                let name = String::from_utf8_lossy(entry.name(endian, strings)?).into_owned();
                glibc.extend(GlibcVersion::parse(&name));
            }
        }
    }
    glibc.sort();
    glibc.dedup();
    Ok(ElfNeeds {
        arch,
        libraries,
        glibc,
    })
}

/// Fails, saying what was found, when `needs` asks for a glibc newer than `max`.
pub fn check_glibc(needs: &ElfNeeds, max: GlibcVersion) -> Result<()> {
    match needs.max_glibc() {
        Some(found) if found > max => {
            let too_new: Vec<String> = needs
                .glibc
                .iter()
                .filter(|v| **v > max)
                .map(|v| format!("GLIBC_{v}"))
                .collect();
            bail!(
                "the binary needs glibc {found} (symbol versions {}), newer than {max} \
                 (Amazon Linux 2023): build on a system with glibc {max} or older",
                too_new.join(", ")
            )
        }
        _ => Ok(()),
    }
}

struct Options {
    profile: String,
    out_dir: PathBuf,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        profile: "release".into(),
        out_dir: crate::root().join("target").join("dist"),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--profile" => {
                options.profile = args.next().context("--profile needs a value")?.clone();
            }
            "--out-dir" => {
                options.out_dir = PathBuf::from(args.next().context("--out-dir needs a value")?);
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(options)
}

/// Where cargo puts a profile's artifacts: `dev` and `test` build into `debug`.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

pub fn dist(args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    crate::deps::ensure(crate::deps::BUILD)?;
    crate::run(crate::cargo().args([
        "build",
        "--profile",
        &options.profile,
        "-p",
        "rebuilder",
        "--bin",
        "rebuilder",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"));
    let binary = target.join(profile_dir(&options.profile)).join("rebuilder");

    let data = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let needs = elf_needs(&data).with_context(|| format!("inspecting {}", binary.display()))?;
    let newest = needs
        .max_glibc()
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    println!(
        "dist: {} is {}, needs {}; newest glibc symbol version: {newest} (limit {MAX_GLIBC})",
        binary.display(),
        needs.arch,
        needs.libraries.join(", "),
    );
    check_glibc(&needs, MAX_GLIBC)?;

    let version = binary_version(&binary)?;
    let name = format!("rebuilder-{version}-{}-linux", needs.arch);
    let (tarball, sha256) = package(&options.out_dir, &name, &binary, &needs)?;
    println!("dist: {}", tarball.display());
    println!(
        "dist: sha256 {sha256} (also in {}.sha256)",
        tarball.display()
    );
    Ok(())
}

/// `rebuilder --version` prints `rebuilder X.Y.Z`; running it also proves the binary starts here.
fn binary_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    if !out.status.success() {
        bail!("{} --version failed: {}", binary.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("unexpected --version output {text:?}"))?;
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
    {
        bail!("unexpected version {version:?}");
    }
    Ok(version.to_string())
}

/// Stages the release directory and packs it; returns the tarball and its SHA-256.
fn package(
    out_dir: &Path,
    name: &str,
    binary: &Path,
    needs: &ElfNeeds,
) -> Result<(PathBuf, String)> {
    let root = crate::root();
    let stage = out_dir.join(name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("removing the old {}", stage.display()))?;
    }
    std::fs::create_dir_all(stage.join("bin"))?;
    copy(binary, &stage.join("bin").join("rebuilder"), 0o755)?;
    copy(
        &root.join("deploy/systemd/rebuilder.service"),
        &stage.join("rebuilder.service"),
        0o644,
    )?;
    copy(
        &root.join("deploy/rebuilder.toml"),
        &stage.join("rebuilder.toml"),
        0o644,
    )?;
    write(&stage.join("README.md"), &readme(name, needs), 0o644)?;

    let tarball = out_dir.join(format!("{name}.tar.gz"));
    let mtime = source_date_epoch();
    crate::run(
        Command::new("tar")
            .current_dir(out_dir)
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=go-w",
                &format!("--mtime=@{mtime}"),
                "--use-compress-program=gzip -n -9",
                "-cf",
            ])
            .arg(&tarball)
            .arg(name),
    )?;
    std::fs::remove_dir_all(&stage).ok();

    let out = Command::new("sha256sum")
        .arg(&tarball)
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed: {}", tarball.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sha256 = text
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64)
        .with_context(|| format!("unexpected sha256sum output {text:?}"))?
        .to_string();
    let file_name = format!("{name}.tar.gz");
    write(
        &out_dir.join(format!("{file_name}.sha256")),
        &format!("{sha256}  {file_name}\n"),
        0o644,
    )?;
    Ok((tarball, sha256))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Reproducible timestamps: the caller's SOURCE_DATE_EPOCH, else the last commit's time.
fn source_date_epoch() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return t;
    }
    Command::new("git")
        .current_dir(crate::root())
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

fn readme(name: &str, needs: &ElfNeeds) -> String {
    let glibc = needs.max_glibc().map_or_else(
        || "no versioned glibc symbols".to_string(),
        |v| format!("glibc {v} or newer"),
    );
    format!(
        "# {name}\n\
         \n\
         rebuilder rebuilds the HTTP requests carried by AWS VPC Traffic Mirroring (VXLAN) and\n\
         replays them, byte for byte, to a WAF. Built by `cargo xtask dist`.\n\
         \n\
         - `bin/rebuilder`: the daemon, with its XDP program embedded. Linux {arch}, needs\n\
         \x20 {glibc} (Amazon Linux 2023, Ubuntu 22.04 and later) and {libraries}.\n\
         - `rebuilder.service`: the systemd unit (dynamic user, CAP_BPF, CAP_NET_ADMIN and\n\
         \x20 CAP_PERFMON only).\n\
         - `rebuilder.toml`: default settings; `rebuilder --help` documents every key's flag.\n\
         \n\
         Install by hand (the Terraform module's user data does the same):\n\
         \n\
         ```sh\n\
         sudo install -D -m 0755 bin/rebuilder /usr/local/bin/rebuilder\n\
         sudo install -D -m 0644 rebuilder.service /etc/systemd/system/rebuilder.service\n\
         sudo install -D -m 0644 rebuilder.toml /etc/rebuilder/rebuilder.toml\n\
         sudoedit /etc/rebuilder/rebuilder.toml    # [upstream] url, [xdp] iface\n\
         sudo systemctl daemon-reload && sudo systemctl enable --now rebuilder\n\
         ```\n\
         \n\
         License: Apache-2.0 (https://www.apache.org/licenses/LICENSE-2.0), the XDP program\n\
         included. The binary also contains crates from crates.io under their own licenses\n\
         (MIT, Apache-2.0 and compatible).\n",
        arch = needs.arch,
        libraries = needs.libraries.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(GlibcVersion::parse("GLIBC_2.34"), Some(GlibcVersion(2, 34)));
        assert_eq!(GlibcVersion::parse("GLIBC_2.2.5"), Some(GlibcVersion(2, 2)));
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GCC_3.0"), None);
        assert!(GlibcVersion(2, 35) > GlibcVersion(2, 34));
        assert!(
            GlibcVersion(2, 4) < GlibcVersion(2, 34),
            "numeric, not lexical"
        );
    }

    #[test]
    fn a_newer_glibc_fails_naming_it() {
        let needs = ElfNeeds {
            arch: "x86_64",
            libraries: vec!["libc.so.6".into()],
            glibc: vec![
                GlibcVersion(2, 17),
                GlibcVersion(2, 34),
                GlibcVersion(2, 38),
            ],
        };
        let e = check_glibc(&needs, MAX_GLIBC).unwrap_err().to_string();
        assert!(e.contains("glibc 2.38") && e.contains("GLIBC_2.38"), "{e}");
        assert!(
            !e.contains("GLIBC_2.34"),
            "only the versions over the limit: {e}"
        );
        let ok = ElfNeeds {
            glibc: vec![GlibcVersion(2, 34)],
            ..needs
        };
        check_glibc(&ok, MAX_GLIBC).unwrap();
    }

    /// The test binary itself is linked like rebuilder: it must parse, and it references at
    /// least the glibc version of `__libc_start_main`.
    #[test]
    fn reads_a_real_executable() {
        let exe = std::env::current_exe().unwrap();
        let needs = elf_needs(&std::fs::read(exe).unwrap()).unwrap();
        assert_eq!(needs.arch, std::env::consts::ARCH);
        assert!(
            needs.libraries.iter().any(|l| l.starts_with("libc.so")),
            "{needs:?}"
        );
        assert!(needs.max_glibc().is_some(), "{needs:?}");
        let mut sorted = needs.glibc.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, needs.glibc);
    }

    #[test]
    fn not_an_elf_is_an_error() {
        assert!(elf_needs(b"#!/bin/sh\n").is_err());
    }
}
