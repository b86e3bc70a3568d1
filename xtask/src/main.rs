//! Developer and CI tasks: `cargo xtask <task>`.
//!
//! Each task installs the Debian packages it needs when it runs as root on an apt system
//! (printing what it installs), and otherwise names what is missing, so the README's commands
//! work on a fresh machine.

mod deps;
mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  lab [ARGS]       as root: mirror live HTTP traffic through the kernel (VXLAN, network namespaces)
                   into N rebuilder nodes (XDP) and a WAF sink; report whether every request
                   arrived byte for byte, once (`cargo xtask lab --help` for the options)
  run [-- ARGS]    build the workspace (release) and run target/release/rebuilder ARGS, as root
                   (directly, or through sudo), e.g. `cargo xtask run -- run --iface eth0`
  demo             generate a small mirrored-traffic capture and replay it, printing the requests
  test [ARGS]      install what the tests need, then run every test of the workspace
  bench [ARGS]     whole-process benchmark: replay a generated capture of 1M packets, compare with tshark
  hostile [ARGS]   replay hostile traffic (floods, endless bodies, broken VXLAN, ...) with legitimate
                   requests interleaved; peak RSS, drops by reason, requests recovered; upstream
                   faults; `--outage 5m` adds a 5-minute WAF outage under steady traffic
                   (`cargo xtask hostile --help` for the options)
  dist [ARGS]      release tarball for the deployment: target/dist/rebuilder-VERSION-ARCH-linux.tar.gz
                   and its .sha256 (fails if the binary needs a glibc newer than 2.34)
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("lab") => lab::lab(&rest),
        Some("run") => run_rebuilder(&rest),
        Some("demo") => demo(),
        Some("test") => test(&rest),
        Some("bench") => bench::bench(&rest),
        Some("hostile") => hostile::hostile(&rest),
        Some("dist") => dist::dist(&rest),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

mod bench;
mod dist;
mod hostile;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Release-mode binary path inside the workspace's target directory.
pub fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("release").join(name)
}

/// A generated capture of a few keep-alive connections, replayed offline, every rebuilt request
/// printed as a JSON line: the quickest look, no root needed.
fn demo() -> Result<()> {
    deps::ensure(deps::BUILD)?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "rebuilder",
        "-p",
        "rebuilder-tests",
        "--bins",
    ]))?;
    let dir = root().join("target").join("demo");
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("demo.pcap");
    run(Command::new(release_bin("rebuilder-gen")).args([
        "--out",
        path_str(&pcap)?,
        "--connections",
        "3",
        "--requests-per-connection",
        "2",
        "--post-bytes",
        "64",
        "--seed",
        "1",
    ]))?;
    println!(
        "replaying {} (requests as JSON lines; `raw` is the exact bytes, base64):",
        pcap.display()
    );
    run(Command::new(release_bin("rebuilder")).args([
        "replay",
        "--pcap",
        path_str(&pcap)?,
        "--jsonl",
        "-",
    ]))
}

/// Builds everything in release mode and runs the daemon with `args`. XDP needs root (or
/// CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): as root the binary runs directly, otherwise through
/// sudo. The process is replaced, so signals and the exit status are rebuilder's own.
fn run_rebuilder(args: &[String]) -> Result<()> {
    // `cargo xtask run -- ARGS`: the alias already ends in `--`, so cargo passes this one on.
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let bin = release_bin("rebuilder");
    // Decided before the build, so a machine where it cannot run says so at once.
    let mut cmd = if deps::is_root() {
        Command::new(&bin)
    } else if let Some(sudo) = find_in_path("sudo") {
        eprintln!("xtask: not root, will run {} through sudo", bin.display());
        let mut c = Command::new(sudo);
        c.arg("--").arg(&bin);
        c
    } else {
        bail!(
            "rebuilder needs root for XDP capture (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON), \
             this is not root and there is no sudo in PATH; build with \
             `cargo build --release --workspace --bins` and run as root: {} {}\n\
             (`run --udp` and `replay` need no privileges: run the binary directly)",
            bin.display(),
            args.join(" ")
        );
    };
    deps::ensure(deps::BUILD)?;
    run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    cmd.args(args);
    // Only returns on failure to start.
    let e = std::os::unix::process::CommandExt::exec(&mut cmd);
    Err(anyhow::anyhow!("cannot start {}: {e}", bin.display()))
}

/// The first executable `name` in PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// Everything the test suite needs, then `cargo test` over the whole workspace.
fn test(args: &[String]) -> Result<()> {
    deps::ensure(deps::BUILD)?;
    deps::ensure(deps::TEST)?;
    // The fuzz crate (outside the workspace, built --locked by fuzz/run-ci.sh) has its own lock
    // file, which drifts whenever the library gains a dependency: say so here, in seconds,
    // rather than after the whole suite.
    let fuzz = root().join("fuzz").join("Cargo.toml");
    let fuzz_lock = cargo()
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&fuzz)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running cargo metadata on the fuzz crate")?;
    if !fuzz_lock.success() {
        bail!(
            "fuzz/Cargo.lock is out of date with the library's dependencies: run \
             `cargo metadata --offline --format-version 1 --manifest-path fuzz/Cargo.toml \
             >/dev/null` and commit fuzz/Cargo.lock"
        );
    }
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(cargo()
        .args(["test", "--workspace", "--all-targets"])
        .args(args))?;
    // Doc tests are not part of --all-targets.
    run(cargo().args(["test", "--workspace", "--doc"]))
}
