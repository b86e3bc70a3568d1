//! The rendered user data run for real against a scratch root (`REBUILDER_ROOT`), with a real
//! `cargo xtask dist` release and stand-ins for the commands that would reach outside it; the
//! checks every install must pass; and the binary's own check of a settings file.
//!
//! Runs bash, cargo, tar, sha256sum, systemd-analyze and the built `rebuilder`; writes only
//! under `target/` and scratch directories.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hcl::Value;

use super::vars::{render_user_data, render_user_data_with, Release, ANY_SHA256};
use super::{deploy, run, text, tool, write_executable};
use crate::process::{workspace_root, Scratch};

pub struct Dist {
    pub tarball: PathBuf,
    pub sha256: String,
}

/// `cargo xtask dist` with the profile these tests were built with, once per test run.
pub fn dist() -> &'static Dist {
    static DIST: OnceLock<Dist> = OnceLock::new();
    DIST.get_or_init(|| {
        let out_dir = workspace_root().join("target/deploy-tests/dist");
        let _ = std::fs::remove_dir_all(&out_dir);
        let profile = if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = run(Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "run",
                "--quiet",
                "-p",
                "xtask",
                "--",
                "dist",
                "--profile",
                profile,
                "--out-dir",
            ])
            .arg(&out_dir));
        assert!(
            out.status.success(),
            "cargo xtask dist failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains("newest glibc symbol version: "), "{stdout}");
        let mut tarballs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .collect();
        assert_eq!(tarballs.len(), 1, "{tarballs:?}");
        let tarball = tarballs.remove(0);
        let name = tarball.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            name,
            format!(
                "rebuilder-{}-{}-linux.tar.gz",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            )
        );
        let sums = std::fs::read_to_string(out_dir.join(format!("{name}.sha256"))).unwrap();
        let (sha256, file) = sums.trim_end().split_once("  ").unwrap();
        assert_eq!(file, name);
        // The .sha256 file is what sha256sum -c takes.
        let check = run(Command::new("sha256sum")
            .current_dir(&out_dir)
            .args(["-c", &format!("{name}.sha256")]));
        assert!(check.status.success(), "{}", text(&check.stdout));
        Dist {
            tarball,
            sha256: sha256.to_string(),
        }
    })
}

/// Stand-ins for the commands the user data calls that reach outside the scratch root: `curl`
/// and `aws` hand out `release` (a copy of the dist tarball), `ip`, `ethtool` and `dnf` only
/// record their arguments, `ethtool -l` answering like an ENA device with 8 channels.
pub fn shims(dir: &Path, release: &Path, log: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let release = release.display();
    let log = log.display();
    write_executable(
        &dir.join("curl"),
        &format!(
            "#!/bin/sh\necho \"curl $*\" >>'{log}'\nout=\nwhile [ $# -gt 0 ]; do\n  \
             case \"$1\" in --output) out=$2; shift ;; esac\n  shift\ndone\n\
             cp '{release}' \"$out\"\n"
        ),
    );
    write_executable(
        &dir.join("aws"),
        &format!("#!/bin/sh\necho \"aws $*\" >>'{log}'\neval \"out=\\${{$#}}\"\ncp '{release}' \"$out\"\n"),
    );
    for name in ["ip", "dnf"] {
        write_executable(
            &dir.join(name),
            &format!("#!/bin/sh\necho \"{name} $*\" >>'{log}'\n"),
        );
    }
    write_executable(
        &dir.join("ethtool"),
        &format!(
            "#!/bin/sh\necho \"ethtool $*\" >>'{log}'\nif [ \"$1\" = -l ]; then\n\
             printf 'Channel parameters for %s:\\nPre-set maximums:\\nRX:\\t\\tn/a\\nTX:\\t\\tn/a\\n\
             Other:\\t\\tn/a\\nCombined:\\t8\\nCurrent hardware settings:\\nRX:\\t\\tn/a\\n\
             TX:\\t\\tn/a\\nOther:\\t\\tn/a\\nCombined:\\t8\\n' \"$2\"\nfi\n"
        ),
    );
}

pub struct Installed {
    pub root: PathBuf,
    pub log: String,
    pub output: Output,
    pub _scratch: Scratch,
}

/// Renders the user data and runs it with REBUILDER_ROOT set, against `release`.
pub fn run_user_data(
    name: &str,
    xdp_mode: &str,
    release_kind: Release,
    release: &Path,
) -> Installed {
    run_user_data_with(name, xdp_mode, release_kind, release, &[], &[])
}

/// [`run_user_data`] with more module variables and environment.
pub fn run_user_data_with(
    name: &str,
    xdp_mode: &str,
    release_kind: Release,
    release: &Path,
    vars: &[(&'static str, Value)],
    env: &[(&str, &str)],
) -> Installed {
    let scratch = Scratch::new(&format!("deploy-{name}"));
    let root = scratch.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let log = scratch.0.join("commands.log");
    std::fs::write(&log, "").unwrap();
    shims(&scratch.0.join("bin"), release, &log);
    tool("systemctl", "systemd");
    let (_, user_data) = render_user_data_with(xdp_mode, &release_kind, &dist().sha256, vars);
    let script = scratch.0.join("user-data.sh");
    write_executable(&script, &user_data);
    let path = format!(
        "{}:{}",
        scratch.0.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = run(Command::new("bash")
        .arg(&script)
        .env("REBUILDER_ROOT", &root)
        .env("PATH", path)
        .env("TMPDIR", &scratch.0)
        .envs(env.iter().copied()));
    let log = std::fs::read_to_string(&log).unwrap();
    Installed {
        root,
        log,
        output,
        _scratch: scratch,
    }
}

/// A pcap file with no packets: `replay` on it reads the settings and checks them, then exits.
pub fn empty_pcap(dir: &Path) -> PathBuf {
    let path = dir.join("empty.pcap");
    let mut header = Vec::new();
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, header).unwrap();
    path
}

/// Whether this build of rebuilder has the `[xdp]` settings (the XDP input).
pub fn binary_has_xdp(bin: &Path) -> bool {
    let out = run(Command::new(bin).args(["run", "--help"]));
    text(&out.stdout).contains("--iface")
}

/// `rebuilder --config FILE replay` on an empty capture: the settings are read and validated
/// exactly as `run` reads them.
pub fn binary_accepts(bin: &Path, config: &Path, scratch: &Path) -> Result<(), String> {
    let pcap = empty_pcap(scratch);
    let out = run(Command::new(bin)
        .arg("--config")
        .arg(config)
        .args([
            "replay",
            "--no-progress",
            "--jsonl",
            "/dev/null",
            "--status",
            "127.0.0.1:0",
            "--pcap",
        ])
        .arg(&pcap));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// The unit file's `KEY=value` settings (last one wins), ignoring comments.
pub fn unit_settings(unit: &str) -> BTreeMap<String, String> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Copies the host's system units into `root` so that `systemd-analyze verify --root` finds the
/// targets the unit refers to.
pub fn add_system_units(root: &Path) {
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .expect("no systemd units on this machine: apt-get install -y systemd");
    let target = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&target).unwrap();
    let out = run(Command::new("cp").arg("-a").arg(units).arg(&target));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

pub fn systemd_verify(root: &Path) {
    let analyze = tool("systemd-analyze", "systemd");
    add_system_units(root);
    let out = run(Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("rebuilder.service"));
    // verify only warns about unknown keys and bad values: any output is a failure.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// What every successful install must leave, whatever the mode.
pub fn check_install(installed: &Installed, xdp_mode: &str) {
    let root = &installed.root;
    assert!(
        installed.output.status.success(),
        "user data failed: {}\n{}",
        installed.output.status,
        text(&installed.output.stderr)
    );
    let stderr = text(&installed.output.stderr);
    assert!(
        stderr.contains(&format!("checksum verified: {}", dist().sha256)),
        "{stderr}"
    );

    // The unit is the repository's, and what it starts is where it says.
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/rebuilder.service")).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(deploy().join("systemd/rebuilder.service")).unwrap()
    );
    let exec = unit_settings(&unit)["ExecStart"].clone();
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "/usr/local/bin/rebuilder",
            "--config",
            "/etc/rebuilder/rebuilder.toml",
            "run"
        ]
    );
    let bin = root.join(words[0].trim_start_matches('/'));
    let config = root.join(words[2].trim_start_matches('/'));
    let mode = std::fs::metadata(&bin).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "{}", bin.display());
    let packed = run(Command::new("tar")
        .arg("-xOzf")
        .arg(&dist().tarball)
        .arg(format!(
            "{}/bin/rebuilder",
            dist()
                .tarball
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".tar.gz")
        )));
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    assert!(
        std::fs::read(&bin).unwrap() == packed.stdout,
        "the installed binary is not the one dist packed"
    );

    // The settings are the rendered ones, and the binary takes them.
    let (rendered, _) = render_user_data(xdp_mode, &Release::Url, ANY_SHA256);
    let written = std::fs::read_to_string(&config).unwrap();
    assert_eq!(written, rendered);
    let scratch = root.parent().unwrap();
    if xdp_mode == "off" || binary_has_xdp(&bin) {
        binary_accepts(&bin, &config, scratch).unwrap_or_else(|e| {
            panic!("rebuilder refuses the written settings ({xdp_mode}):\n{e}")
        });
    } else {
        // This build predates the XDP input: everything but the [xdp] section must be accepted,
        // and that section must be the only objection.
        let err = binary_accepts(&bin, &config, scratch).unwrap_err();
        assert!(err.contains("unknown field `xdp`"), "{err}");
        let without = scratch.join("without-xdp.toml");
        let cut = written.find("\n[xdp]\n").expect("an [xdp] section");
        std::fs::write(&without, &written[..=cut]).unwrap();
        binary_accepts(&bin, &without, scratch).unwrap_or_else(|e| {
            panic!("rebuilder refuses the written settings ({xdp_mode}):\n{e}")
        });
        eprintln!(
            "note: {} has no XDP input yet; the [xdp] section was checked by the module's \
             own rendering test only",
            bin.display()
        );
    }

    // Enabled for boot.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/rebuilder.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/etc/systemd/system/rebuilder.service")
    );
}
