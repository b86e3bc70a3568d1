//! The systemd unit (`deploy/systemd/rebuilder.service`) passes `systemd-analyze verify` and
//! keeps its hardening, and the default settings (`deploy/rebuilder.toml`) are accepted by the
//! binary, which does refuse a typo.
//!
//! Tools: systemd-analyze (Debian package systemd).

use std::process::Command;

use rebuilder_tests::deploy::install::{binary_accepts, systemd_verify, unit_settings};
use rebuilder_tests::deploy::{deploy, run, text, tool};
use rebuilder_tests::process::{rebuilder_bin, Scratch};

#[test]
fn systemd_unit_verifies_and_keeps_its_hardening() {
    let unit = std::fs::read_to_string(deploy().join("systemd/rebuilder.service")).unwrap();
    let s = unit_settings(&unit);
    let caps = |k: &str| {
        let mut v: Vec<&str> = s[k].split_whitespace().collect();
        v.sort();
        v
    };
    assert_eq!(
        caps("AmbientCapabilities"),
        ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
    );
    assert_eq!(
        caps("CapabilityBoundingSet"),
        ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
    );
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "always"),
        (
            "ExecStart",
            "/usr/local/bin/rebuilder --config /etc/rebuilder/rebuilder.toml run",
        ),
    ] {
        assert_eq!(s.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(s.contains_key("MemoryMax"));

    let scratch = Scratch::new("deploy-unit");
    let root = &scratch.0;
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    std::fs::copy(rebuilder_bin(), root.join("usr/local/bin/rebuilder")).unwrap();
    std::fs::write(root.join("etc/systemd/system/rebuilder.service"), &unit).unwrap();
    systemd_verify(root);

    // systemd's own exposure score (0 safest, 10 unprotected): the unit stays "OK" or better.
    let out = run(Command::new(tool("systemd-analyze", "systemd"))
        .args(["security", "--offline=true"])
        .arg(format!("--root={}", root.display()))
        .arg("rebuilder.service"));
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for rebuilder.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}{}", text(&out.stderr)));
    assert!(score <= 4.0, "exposure {score}:\n{report}");

    // Without the binary, verify fails: the check is real.
    std::fs::remove_file(root.join("usr/local/bin/rebuilder")).unwrap();
    let out = run(Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("rebuilder.service"));
    assert!(!out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn default_settings_are_accepted_by_the_binary() {
    let scratch = Scratch::new("deploy-default-config");
    binary_accepts(
        &rebuilder_bin(),
        &deploy().join("rebuilder.toml"),
        &scratch.0,
    )
    .unwrap_or_else(|e| panic!("deploy/rebuilder.toml is refused:\n{e}"));
    // And the check is real: a typo in a key is refused.
    let typo = scratch.0.join("typo.toml");
    let text = std::fs::read_to_string(deploy().join("rebuilder.toml")).unwrap();
    std::fs::write(&typo, text.replacen("memory_budget", "memory_budgit", 1)).unwrap();
    let err = binary_accepts(&rebuilder_bin(), &typo, &scratch.0).unwrap_err();
    assert!(err.contains("memory_budgit"), "{err}");
}
