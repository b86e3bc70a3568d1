//! The AWS deployment (`deploy/`) as the `deploy_*` tests see it, without AWS and without
//! terraform: where its files are, the tools the checks run, and an evaluator of the Terraform
//! modules good enough to stand in for `terraform validate` and `terraform plan`.
//!
//! - [`tf`]: a static model of the modules and the checks `terraform validate` would make;
//! - [`eval`], [`plan`]: Terraform's expression language and what `plan` checks before AWS;
//! - [`render`]: `templatefile()` for the module's templates;
//! - [`vars`]: test values for the modules' variables and stand-ins for what AWS computes;
//! - [`install`]: the user data run against a scratch root with a real `cargo xtask dist`
//!   release, and the checks every install must pass.
//!
//! Reads the repository's `deploy/` directory and runs local tools (bash, systemd-analyze,
//! the built `rebuilder`); it never reaches the network (checkov's own installation aside,
//! which lives in the checkov test). Nothing else in this library depends on it.

pub mod eval;
pub mod install;
pub mod plan;
pub mod render;
pub mod tf;
pub mod vars;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::process::workspace_root;

pub fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

pub fn terraform() -> PathBuf {
    deploy().join("terraform")
}

/// Every directory under deploy/terraform holding .tf files: the modules and the examples.
/// `enis/` directories hold alternatives to a module's interfaces.tf, not modules: they are
/// checked in place of that file instead.
pub fn module_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut has_tf = false;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() && !path.ends_with("enis") {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "tf") {
                has_tf = true;
            }
        }
        if has_tf {
            out.push(dir.to_path_buf());
        }
    }
    let mut out = Vec::new();
    walk(&terraform(), &mut out);
    out.sort();
    out
}

pub fn registry() -> BTreeMap<String, tf::Interface> {
    tf::load_registry(&deploy().join("tests/registry"))
}

/// The path of a tool, or a failure naming the package that brings it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is missing: install it with `apt-get install -y {package}`")
        })
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn write_executable(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
