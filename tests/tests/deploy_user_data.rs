//! The user data of the rebuilder module, rendered as the module renders it, is clean shell
//! (bash -n, shellcheck) and installs a real `cargo xtask dist` tarball into a scratch root:
//! the files land where the unit expects them, the unit verifies, the written settings are
//! accepted by the binary, the CloudWatch agent and Prometheus scrape configurations are
//! valid, and a release for another machine or a corrupted one is refused.
//!
//! Tools: bash, shellcheck, systemd-analyze and systemctl (Debian packages shellcheck,
//! systemd), promtool (prometheus).

use std::path::{Path, PathBuf};
use std::process::Command;

use hcl::Value;

use rebuilder_tests::deploy::install::{
    check_install, dist, run_user_data, run_user_data_with, systemd_verify,
};
use rebuilder_tests::deploy::vars::{
    module_vars, rebuilder_plan, rebuilder_required, render_user_data, render_user_data_with,
    text_of, Release, ANY_SHA256,
};
use rebuilder_tests::deploy::{render, run, text, tool};
use rebuilder_tests::process::Scratch;

#[test]
fn settings_render_as_expected() {
    let (config, _) = render_user_data("native", &Release::Url, ANY_SHA256);
    let expected_tail = "\
[upstream]
url = \"http://127.0.0.1:9\"
client_ip_header = \"X-Forwarded-For\"
vni_header = \"X-Mirror-VNI\"

[status]
listen = \"0.0.0.0:9479\"

[xdp]
iface = \"ens5\"
mode = \"driver\"
";
    assert!(config.ends_with(expected_tail), "{config}");
    assert!(
        config.contains("vni_allow = [1377,42]\nserver_ports = [80,8080]\n"),
        "{config}"
    );
    assert!(config.contains("memory_budget = \"512MiB\"\n"), "{config}");

    let (generic, _) = render_user_data("generic", &Release::Url, ANY_SHA256);
    assert!(
        generic.ends_with("[xdp]\niface = \"ens5\"\nmode = \"generic\"\n"),
        "{generic}"
    );
    let (off, _) = render_user_data("off", &Release::Url, ANY_SHA256);
    assert!(!off.contains("[xdp]"), "{off}");
    assert!(off.ends_with("listen = \"0.0.0.0:9479\"\n"), "{off}");
}

#[test]
fn user_data_is_clean_shell() {
    let shellcheck = tool("shellcheck", "shellcheck");
    let scratch = Scratch::new("deploy-shell");
    for mode in ["generic", "native", "off"] {
        for release in [Release::S3, Release::Url] {
            let (_, user_data) = render_user_data(mode, &release, ANY_SHA256);
            assert!(user_data.starts_with("#!/bin/bash\n"));
            assert!(
                !user_data.contains("${") || user_data.contains("${REBUILDER_ROOT:-}"),
                "unrendered interpolation left"
            );
            let path = scratch.0.join(format!("user-data-{mode}-{release:?}.sh"));
            std::fs::write(&path, &user_data).unwrap();
            let out = run(Command::new("bash").arg("-n").arg(&path));
            assert!(
                out.status.success(),
                "bash -n {mode} {release:?}: {}",
                text(&out.stderr)
            );
            let out = run(Command::new(&shellcheck).arg(&path));
            assert!(
                out.status.success(),
                "shellcheck {mode} {release:?}:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn user_data_installs_a_release_from_a_url() {
    let installed = run_user_data("url", "generic", Release::Url, &dist().tarball);
    check_install(&installed, "generic");
    let fetch: Vec<&str> = installed.log.lines().collect();
    // Generic mode touches no interface: the fetch is the only outside command.
    assert_eq!(fetch.len(), 1, "{fetch:?}");
    assert!(
        fetch[0].starts_with("curl --fail --silent --show-error --location --output ")
            && fetch[0].ends_with("/release.tar.gz https://releases.example.com/rebuilder.tar.gz"),
        "{fetch:?}"
    );
    assert!(!installed
        .root
        .join("etc/systemd/system/rebuilder.service.d")
        .exists());
    systemd_verify(&installed.root);
}

#[test]
fn user_data_installs_a_release_from_s3_in_udp_mode() {
    let installed = run_user_data("s3", "off", Release::S3, &dist().tarball);
    check_install(&installed, "off");
    let log: Vec<&str> = installed.log.lines().collect();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with(
            "aws s3 cp --only-show-errors s3://rebuilder-artifacts/releases/rebuilder.tar.gz "
        ) && log[0].ends_with("/release.tar.gz"),
        "{log:?}"
    );
}

#[test]
fn user_data_prepares_ena_for_native_mode() {
    let installed = run_user_data("native", "native", Release::Url, &dist().tarball);
    check_install(&installed, "native");
    let calls: Vec<&str> = installed
        .log
        .lines()
        .filter(|l| !l.starts_with("curl "))
        .collect();
    // Half of the 8 channels the ethtool stand-in reports, MTU 3498; ethtool is there, so no dnf.
    assert_eq!(
        calls,
        [
            "ethtool -l ens5",
            "ethtool -l ens5",
            "ip link set dev ens5 mtu 3498",
            "ethtool -L ens5 combined 4",
        ]
    );
    let dropin = std::fs::read_to_string(
        installed
            .root
            .join("etc/systemd/system/rebuilder.service.d/10-xdp-native.conf"),
    )
    .unwrap();
    assert_eq!(
        dropin,
        "[Service]\nExecStartPre=+/usr/local/libexec/rebuilder-prepare-nic ens5\n"
    );
    let prepare = installed
        .root
        .join("usr/local/libexec/rebuilder-prepare-nic");
    let shellcheck = tool("shellcheck", "shellcheck");
    let out = run(Command::new(shellcheck).arg(&prepare));
    assert!(out.status.success(), "{}", text(&out.stdout));
    // The drop-in's program exists: verify checks ExecStartPre too.
    systemd_verify(&installed.root);
}

/// `promtool check config` on a Prometheus configuration file.
fn promtool_check_config(path: &Path) {
    let out = run(Command::new(tool("promtool", "prometheus"))
        .args(["check", "config", "--syntax-only"])
        .arg(path));
    assert!(
        out.status.success(),
        "promtool check config {}:\n{}{}",
        path.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn user_data_sets_up_the_cloudwatch_agent_and_log_shipping() {
    let vars = [
        ("cloudwatch_metrics", Value::Bool(true)),
        ("ship_logs", Value::Bool(true)),
        ("name", render::string("mirror-prod")),
    ];
    let (_, user_data) = render_user_data_with("generic", &Release::Url, ANY_SHA256, &vars);
    let scratch = Scratch::new("deploy-cloudwatch-shell");
    let path = scratch.0.join("user-data.sh");
    std::fs::write(&path, &user_data).unwrap();
    let out = run(Command::new(tool("shellcheck", "shellcheck")).arg(&path));
    assert!(out.status.success(), "{}", text(&out.stdout));

    let installed = run_user_data_with(
        "cloudwatch",
        "generic",
        Release::Url,
        &dist().tarball,
        &vars,
        &[("REBUILDER_INSTANCE_ID", "i-0123456789abcdef0")],
    );
    assert!(
        installed.output.status.success(),
        "{}",
        text(&installed.output.stderr)
    );
    let etc = installed.root.join("opt/aws/amazon-cloudwatch-agent/etc");
    let agent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(etc.join("rebuilder.json")).unwrap())
            .unwrap();
    let file = &agent["logs"]["logs_collected"]["files"]["collect_list"][0];
    assert_eq!(file["file_path"], "/var/log/rebuilder/rebuilder.log");
    assert_eq!(file["log_group_name"], "/rebuilder/mirror-prod");
    assert_eq!(file["retention_in_days"], 365);
    let prom = &agent["logs"]["metrics_collected"]["prometheus"];
    assert_eq!(
        prom["prometheus_config_path"],
        "/opt/aws/amazon-cloudwatch-agent/etc/rebuilder-prometheus.yaml"
    );
    let emf = &prom["emf_processor"];
    assert_eq!(emf["metric_namespace"], "Rebuilder");
    let selectors: Vec<&str> = emf["metric_declaration"][0]["metric_selectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(selectors.contains(&"^rebuilder_ready$"), "{selectors:?}");
    assert!(
        selectors.contains(&"^rebuilder_requests_lost_total$"),
        "{selectors:?}"
    );

    // The agent's scrape configuration is a Prometheus one, this instance's id filled in.
    let scrape = etc.join("rebuilder-prometheus.yaml");
    let yaml = std::fs::read_to_string(&scrape).unwrap();
    assert!(
        yaml.contains("InstanceId: \"i-0123456789abcdef0\""),
        "{yaml}"
    );
    assert!(yaml.contains("Group: \"mirror-prod\""), "{yaml}");
    assert!(yaml.contains("127.0.0.1:9479"), "{yaml}");
    promtool_check_config(&scrape);

    // rsyslog copies the unit's lines, message only; logrotate bounds the file.
    let rsyslog =
        std::fs::read_to_string(installed.root.join("etc/rsyslog.d/30-rebuilder.conf")).unwrap();
    assert!(
        rsyslog.contains("if $programname == 'rebuilder' then"),
        "{rsyslog}"
    );
    assert!(
        rsyslog.contains("file=\"/var/log/rebuilder/rebuilder.log\""),
        "{rsyslog}"
    );
    let rotate = std::fs::read_to_string(installed.root.join("etc/logrotate.d/rebuilder")).unwrap();
    assert!(
        rotate.starts_with("/var/log/rebuilder/rebuilder.log {"),
        "{rotate}"
    );

    // The role may write that log group and that namespace only.
    let p = rebuilder_plan(&module_vars("generic", &Release::Url, ANY_SHA256, &vars));
    assert_eq!(p.count("aws_cloudwatch_log_group", "this"), 1);
    assert_eq!(
        p.resource_attr("aws_cloudwatch_log_group", "this", &["name"]),
        render::string("/rebuilder/mirror-prod")
    );
    assert_eq!(p.count("aws_iam_role_policy", "cloudwatch"), 1);
}

#[test]
fn prometheus_scrape_config_output_is_valid() {
    let p = rebuilder_plan(&rebuilder_required());
    let job: serde_json::Value =
        serde_json::from_str(text_of(&p.local("prometheus_scrape_config"))).unwrap();
    assert_eq!(job["ec2_sd_configs"][0]["port"], 9479);
    assert_eq!(job["ec2_sd_configs"][0]["region"], "eu-west-1");
    assert_eq!(
        job["ec2_sd_configs"][0]["filters"][0]["values"][0],
        "rebuilder-20260101"
    );
    let scratch = Scratch::new("deploy-scrape-output");
    let path = scratch.0.join("prometheus.yml");
    std::fs::write(
        &path,
        serde_json::json!({ "scrape_configs": [job] }).to_string(),
    )
    .unwrap();
    promtool_check_config(&path);
}

#[test]
fn user_data_refuses_a_release_for_another_machine() {
    let other = if std::env::consts::ARCH == "aarch64" {
        ("x86_64", "x86_64")
    } else {
        ("arm64", "aarch64")
    };
    // The module says arm64 (the release must be aarch64); the tarball dist made here is not.
    let installed = run_user_data_with(
        "other-arch",
        "generic",
        Release::Url,
        &dist().tarball,
        &[("architecture", render::string(other.0))],
        &[],
    );
    assert_eq!(installed.output.status.code(), Some(1));
    let stderr = text(&installed.output.stderr);
    assert!(
        stderr.contains(&format!("is not built for {}; nothing installed", other.1)),
        "{stderr}"
    );
    assert!(!installed.root.join("usr/local/bin/rebuilder").exists());

    // The right release on the wrong machine.
    let installed = run_user_data_with(
        "other-machine",
        "generic",
        Release::Url,
        &dist().tarball,
        &[],
        &[("REBUILDER_MACHINE", other.1)],
    );
    assert_eq!(installed.output.status.code(), Some(1));
    let stderr = text(&installed.output.stderr);
    assert!(
        stderr.contains(&format!("this machine is {}", other.1)),
        "{stderr}"
    );
}

#[test]
fn user_data_refuses_a_corrupted_release() {
    let scratch = Scratch::new("deploy-corrupt");
    let mut bytes = std::fs::read(&dist().tarball).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let corrupted = scratch.0.join("corrupted.tar.gz");
    std::fs::write(&corrupted, bytes).unwrap();

    let installed = run_user_data("corrupt-run", "generic", Release::Url, &corrupted);
    assert_eq!(installed.output.status.code(), Some(1));
    let stderr = text(&installed.output.stderr);
    assert!(
        stderr.contains("checksum mismatch")
            && stderr.contains(&format!("expected {}", dist().sha256)),
        "{stderr}"
    );
    // Nothing was installed.
    let left: Vec<PathBuf> = std::fs::read_dir(&installed.root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
