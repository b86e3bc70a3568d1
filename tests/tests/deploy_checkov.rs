//! checkov finds nothing in `deploy/terraform` beyond the checks its config skips, each for a
//! stated reason, and each skip is still needed.
//!
//! checkov comes from PATH or `target/checkov-venv` (created with python3-venv when missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use rebuilder_tests::deploy::{run, terraform, text};
use rebuilder_tests::process::{workspace_root, Scratch};

/// checkov from PATH, else from `target/checkov-venv` (created with the version below when
/// missing, which needs python3-venv and PyPI).
fn checkov() -> PathBuf {
    const VERSION: &str = "3.3.30";
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("checkov"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let venv = workspace_root().join("target/checkov-venv");
    let bin = venv.join("bin/checkov");
    if bin.is_file() {
        return bin;
    }
    let how = format!(
        "python3 -m venv {} && {}/bin/pip install checkov=={VERSION}",
        venv.display(),
        venv.display()
    );
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &format!("checkov=={VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok && bin.is_file(),
        "checkov is missing and could not be installed; run: {how}"
    );
    bin
}

/// The config's skipped checks, each with the reason written in the comment above it.
fn skipped_checks(config: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_skip = false;
    let mut reason = String::new();
    for line in config.lines() {
        let t = line.trim();
        if !line.starts_with(' ') && !line.starts_with('-') && !t.starts_with('#') && !t.is_empty()
        {
            in_skip = t == "skip-check:";
            reason.clear();
            continue;
        }
        if !in_skip {
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            reason.push_str(c.trim());
            reason.push(' ');
        } else if let Some(id) = t.strip_prefix("- ") {
            out.push((id.trim().to_string(), reason.trim().to_string()));
            reason.clear();
        }
    }
    out
}

/// Runs checkov over `dir` with `args`, returning its JSON report.
fn checkov_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(Command::new(checkov())
        .current_dir(dir)
        .args(["--directory", ".", "--output", "json", "--skip-download"])
        .args(args));
    let stdout = text(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov output is not JSON ({e}):\n{stdout}\n{}",
            text(&out.stderr)
        )
    })
}

fn failed_ids(report: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["check_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn checkov_finds_nothing_beyond_the_listed_skips() {
    let config_path = terraform().join(".checkov.yaml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let skips = skipped_checks(&config);
    assert!(!skips.is_empty(), "{config}");
    for (id, reason) in &skips {
        assert!(
            reason.split_whitespace().count() >= 5,
            "skip of {id} needs a reason in the comment above it"
        );
    }

    let report = checkov_json(
        &terraform(),
        &["--config-file", config_path.to_str().unwrap()],
    );
    let summary = &report["summary"];
    assert_eq!(
        summary["failed"], 0,
        "{:#}",
        report["results"]["failed_checks"]
    );
    assert_eq!(summary["parsing_errors"], 0, "{summary:#}");
    assert!(summary["passed"].as_u64().unwrap_or(0) > 40, "{summary:#}");

    // Each skip is still needed: without the config, exactly the skipped checks fail. checkov
    // reads a .checkov.yaml in the directory it scans by itself, so scan a copy without it.
    let scratch = Scratch::new("deploy-checkov");
    let copy = scratch.0.join("terraform");
    let out = run(Command::new("cp").arg("-a").arg(terraform()).arg(&copy));
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(copy.join(".checkov.yaml")).unwrap();
    let ids: Vec<&str> = skips.iter().map(|(id, _)| id.as_str()).collect();
    let unskipped = checkov_json(
        &copy,
        &["--framework", "terraform", "--check", &ids.join(",")],
    );
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(failed_ids(&unskipped), expected);
}
