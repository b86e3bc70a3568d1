//! The AWS deployment (`deploy/`), checked without AWS and without terraform:
//!
//! - every Terraform module parses, and its references, module calls and `templatefile()` calls
//!   are consistent (`deploy/tf.rs`); each check is also shown to catch a broken copy;
//! - the user data, rendered as the module renders it, is clean shell (bash -n, shellcheck) and
//!   installs a real `cargo xtask dist` tarball into a scratch root: the files land where the
//!   unit expects them, the unit verifies, the written settings are accepted by the binary, and a
//!   corrupted tarball is refused;
//! - the systemd unit passes `systemd-analyze verify` and keeps its hardening;
//! - checkov finds nothing in `deploy/terraform` beyond the checks its config skips, each for a
//!   stated reason.
//!
//! Tools: bash, shellcheck, systemd-analyze and systemctl (Debian packages shellcheck, systemd),
//! and checkov, from PATH or `target/checkov-venv` (created with python3-venv when missing).

#[path = "deploy/eval.rs"]
mod eval;
#[path = "deploy/plan.rs"]
mod plan;
#[path = "deploy/render.rs"]
mod render;
#[path = "deploy/tf.rs"]
mod tf;

use rebuilder_tests::process::Scratch;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hcl::Value;
use rebuilder_tests::process::{rebuilder_bin, workspace_root};

fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

fn terraform() -> PathBuf {
    deploy().join("terraform")
}

/// Every directory under deploy/terraform holding .tf files: the modules and the examples.
/// `enis/` directories hold alternatives to a module's interfaces.tf, not modules: they are
/// checked in place of that file instead.
fn module_dirs() -> Vec<PathBuf> {
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

fn registry() -> BTreeMap<String, tf::Interface> {
    tf::load_registry(&deploy().join("tests/registry"))
}

/// The path of a tool, or a failure naming the package that brings it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is missing: install it with `apt-get install -y {package}`")
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_executable(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Terraform, statically.

#[test]
fn terraform_modules_are_consistent() {
    let registry = registry();
    let dirs = module_dirs();
    let relative: Vec<String> = dirs
        .iter()
        .map(|d| d.strip_prefix(terraform()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        relative,
        [
            "examples/vpc-mirror",
            "modules/mirror-sessions",
            "modules/rebuilder"
        ]
    );
    for dir in dirs {
        let module = tf::Module::load(&dir);
        assert!(
            module.file_names().contains(&"variables.tf"),
            "{}: {:?}",
            dir.display(),
            module.file_names()
        );
        let findings = module.check(&registry);
        assert!(
            findings.is_empty(),
            "{}:\n{}",
            dir.display(),
            findings
                .iter()
                .map(|f| format!("  {f}\n"))
                .collect::<String>()
        );
    }
}

#[test]
fn standard_module_files_are_there_and_documented() {
    for name in ["mirror-sessions", "rebuilder"] {
        let dir = terraform().join("modules").join(name);
        for file in [
            "main.tf",
            "variables.tf",
            "outputs.tf",
            "versions.tf",
            "README.md",
        ] {
            assert!(
                dir.join(file).is_file(),
                "{}/{file} is missing",
                dir.display()
            );
        }
        let module = tf::Module::load(&dir);
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let interface = module.interface();
        // Every input and output is in the README's tables, as `name`.
        for name in interface.variables.keys().chain(interface.outputs.iter()) {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{}/README.md does not document {name}",
                dir.display()
            );
        }
        // Every variable has a description, and so has every output.
        let vars = std::fs::read_to_string(dir.join("variables.tf")).unwrap();
        let body = hcl::parse(&vars).unwrap();
        for block in body.blocks().filter(|b| b.identifier() == "variable") {
            assert!(
                block.body().attributes().any(|a| a.key() == "description"),
                "{}: variable {:?} has no description",
                dir.display(),
                block.labels()
            );
        }
        let outputs =
            hcl::parse(&std::fs::read_to_string(dir.join("outputs.tf")).unwrap()).unwrap();
        for block in outputs.blocks().filter(|b| b.identifier() == "output") {
            assert!(
                block.body().attributes().any(|a| a.key() == "description"),
                "{}: output {:?} has no description",
                dir.display(),
                block.labels()
            );
        }
    }
}

/// Each file in enis/ can replace interfaces.tf: the example stays consistent with it, and it
/// defines what main.tf uses.
#[test]
fn eni_alternatives_replace_interfaces_tf() {
    let example = terraform().join("examples/vpc-mirror");
    let registry = registry();
    let mut alternatives: Vec<PathBuf> = std::fs::read_dir(example.join("enis"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    alternatives.sort();
    let names: Vec<String> = alternatives
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["by_asg.tf", "by_eks.tf", "by_elb.tf", "by_tags.tf"]);

    let base: Vec<(String, String)> = std::fs::read_dir(&example)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .filter(|p| !p.ends_with("interfaces.tf"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    for alternative in &alternatives {
        let mut sources = base.clone();
        sources.push((
            "interfaces.tf".into(),
            std::fs::read_to_string(alternative).unwrap(),
        ));
        let module = tf::Module::from_sources(&example, sources);
        assert!(
            module.declarations().locals.contains("mirror_eni_ids"),
            "{} does not define local.mirror_eni_ids",
            alternative.display()
        );
        let findings = module.check(&registry);
        assert!(
            findings.is_empty(),
            "with {} as interfaces.tf:\n{}",
            alternative.display(),
            findings
                .iter()
                .map(|f| format!("  {f}\n"))
                .collect::<String>()
        );
    }
}

/// Applies `edit` to one file of a module and returns the findings of the changed copy.
fn findings_after(dir: &Path, file: &str, edit: impl Fn(&str) -> String) -> Vec<String> {
    let mut sources = Vec::new();
    let mut edited = false;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "tf") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut content = std::fs::read_to_string(&path).unwrap();
        if name == file {
            let changed = edit(&content);
            assert_ne!(changed, content, "the edit of {file} changed nothing");
            content = changed;
            edited = true;
        }
        sources.push((name, content));
    }
    assert!(edited, "{file} not found in {}", dir.display());
    tf::Module::from_sources(dir, sources)
        .check(&registry())
        .into_iter()
        .map(|f| f.message)
        .collect()
}

fn assert_one_finding(findings: &[String], expected: &str) {
    assert!(
        findings.len() == 1 && findings[0].contains(expected),
        "expected one finding containing {expected:?}, got {findings:#?}"
    );
}

/// Every check catches the mistake it is for, on a broken copy of the real modules.
#[test]
fn the_checks_catch_broken_terraform() {
    let rebuilder = terraform().join("modules/rebuilder");
    let sessions = terraform().join("modules/mirror-sessions");
    let example = terraform().join("examples/vpc-mirror");

    // An undeclared variable.
    let f = findings_after(&rebuilder, "main.tf", |s| {
        s.replacen("var.instance_type", "var.instance_typ", 1)
    });
    assert_one_finding(&f, "undeclared variable \"instance_typ\"");

    // An output pointing at a resource that is not declared.
    let f = findings_after(&rebuilder, "outputs.tf", |s| {
        s.replacen("aws_lb.this.arn", "aws_lb.nlb.arn", 1)
    });
    assert_one_finding(&f, "undeclared resource aws_lb.nlb");

    // A data source that is not declared.
    let f = findings_after(&rebuilder, "main.tf", |s| {
        s.replacen(
            "data.aws_vpc.this.cidr_block_associations",
            "data.aws_vpcs.this.cidr_block_associations",
            1,
        )
    });
    assert_one_finding(&f, "undeclared data source aws_vpcs.this");

    // A local that is not declared.
    let f = findings_after(&sessions, "main.tf", |s| {
        s.replacen("local.rules", "local.rulez", 1)
    });
    assert_one_finding(&f, "undeclared local \"rulez\"");

    // A dynamic block's iterator is only bound inside its content.
    let f = findings_after(&sessions, "main.tf", |s| {
        s.replacen(
            "for_each = each.value.from_port == null ? [] : [each.value]",
            "for_each = destination_port_range.value == null ? [] : [each.value]",
            1,
        )
    });
    assert_one_finding(&f, "destination_port_range");

    // A local module source that does not exist.
    let f = findings_after(&example, "main.tf", |s| {
        s.replacen("../../modules/rebuilder", "../../modules/rebuild", 1)
    });
    assert_one_finding(&f, "../../modules/rebuild is not a directory");

    // A module call without a required variable, and one with an unknown argument.
    let f = findings_after(&example, "main.tf", |s| {
        s.replacen("  release_sha256 = var.release_sha256\n", "", 1)
    });
    assert_one_finding(&f, "required variable \"release_sha256\"");
    let f = findings_after(&example, "main.tf", |s| {
        s.replacen(
            "  vni                   = var.vni\n",
            "  vnid = var.vni\n",
            1,
        )
    });
    assert_one_finding(&f, "has no variable \"vnid\"");

    // The registry module's call is checked against its recorded interface.
    let f = findings_after(&example, "main.tf", |s| {
        s.replacen("  token         = var.wallarm_token\n", "", 1)
    });
    assert_one_finding(&f, "required variable \"token\" of wallarm/wallarm/aws");
    let f = findings_after(&example, "main.tf", |s| {
        s.replacen("version = \"1.1.7\"", "version = \"1.1.8\"", 1)
    });
    assert!(
        f.iter()
            .any(|m| m
                .contains("no recorded interface for registry module wallarm/wallarm/aws@1.1.8")),
        "{f:#?}"
    );

    // An output a module does not have.
    let f = findings_after(&example, "outputs.tf", |s| {
        s.replacen("module.rebuilder.asg_name", "module.rebuilder.asg", 1)
    });
    assert_one_finding(&f, "output \"asg\", which module.rebuilder does not have");

    // templatefile() without a variable the template uses, and with one it does not use.
    let f = findings_after(&rebuilder, "main.tf", |s| {
        s.replacen("    release_sha256    = var.release_sha256\n", "", 1)
    });
    assert_one_finding(&f, "does not pass \"release_sha256\"");
    let f = findings_after(&rebuilder, "main.tf", |s| {
        s.replacen(
            "    memory_budget     = var.memory_budget\n",
            "    memory_budget     = var.memory_budget\n    workers           = 4\n",
            1,
        )
    });
    assert_one_finding(&f, "passes \"workers\", which the template does not use");

    // A declaration made twice.
    let f = findings_after(&sessions, "outputs.tf", |s| {
        format!("{s}\noutput \"filter_id\" {{\n  value = 1\n}}\n")
    });
    assert_one_finding(&f, "output.filter_id is declared again");

    // A file that does not parse.
    let f = findings_after(&sessions, "outputs.tf", |s| {
        format!("{s}\noutput \"x\" {{\n")
    });
    assert!(f.iter().any(|m| m.contains("does not parse")), "{f:#?}");
}

// ---------------------------------------------------------------------------------------------
// Validations and preconditions, evaluated as `terraform plan` evaluates them.

fn refusals(dir: &str, given: &[(&str, Value)]) -> Vec<plan::Refusal> {
    plan::validate(&terraform().join(dir), given).unwrap_or_else(|e| panic!("{dir}: {e}"))
}

/// `given` passes every validation of `dir` (the other variables at their defaults).
fn accepted(dir: &str, given: &[(&str, Value)]) {
    let r = refusals(dir, given);
    assert!(r.is_empty(), "{dir} refuses {given:?}: {r:#?}");
}

/// `given` fails exactly one validation, of `var`, with a message containing `says`.
fn refused(dir: &str, given: &[(&str, Value)], var: &str, says: &str) {
    let r = refusals(dir, given);
    assert!(
        r.len() == 1 && r[0].at == format!("var.{var}") && r[0].message.contains(says),
        "{dir} with {given:?}: expected var.{var} refused saying {says:?}, got {r:#?}"
    );
}

fn n(x: f64) -> Value {
    Value::Number(hcl::Number::from_f64(x).unwrap())
}

fn field(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(o) => o.get(key).cloned().unwrap_or(Value::Null),
        other => panic!("{other:?} is not an object"),
    }
}

fn text_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("{v:?} is not a string"))
}

const REBUILDER: &str = "modules/rebuilder";
const SESSIONS: &str = "modules/mirror-sessions";
const EXAMPLE: &str = "examples/vpc-mirror";

fn rebuilder_required() -> Vec<(&'static str, Value)> {
    module_vars("generic", &Release::Url, ANY_SHA256, &[])
}

fn sessions_required() -> Vec<(&'static str, Value)> {
    vec![
        (
            "network_interface_ids",
            Value::Array(vec![render::string("eni-0123456789abcdef0")]),
        ),
        (
            "target_nlb_arn",
            render::string(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/rebuilder/0123456789abcdef",
            ),
        ),
    ]
}

fn example_required() -> Vec<(&'static str, Value)> {
    vec![
        ("region", render::string("eu-west-1")),
        ("vpc_id", render::string("vpc-0123456789abcdef0")),
        (
            "private_subnet_ids",
            Value::Array(vec![render::string("subnet-0123456789abcdef0")]),
        ),
        ("release_sha256", render::string(ANY_SHA256)),
        ("wallarm_token", render::string("token")),
        (
            "source_asg_names",
            Value::Array(vec![render::string("my-app")]),
        ),
    ]
}

fn with(
    base: Vec<(&'static str, Value)>,
    extra: &[(&'static str, Value)],
) -> Vec<(&'static str, Value)> {
    let mut v = base;
    for (k, x) in extra {
        v.retain(|(name, _)| name != k);
        v.push((k, x.clone()));
    }
    v
}

#[test]
fn validations_take_the_defaults_and_refuse_what_aws_would() {
    let s = render::string;
    accepted(REBUILDER, &rebuilder_required());
    accepted(SESSIONS, &sessions_required());
    accepted(EXAMPLE, &example_required());

    let r = |extra: &[(&'static str, Value)]| with(rebuilder_required(), extra);
    // NAME-vxlan, the target group, must fit in 32 characters.
    accepted(REBUILDER, &r(&[("name", s(&"a".repeat(26)))]));
    refused(
        REBUILDER,
        &r(&[("name", s(&"a".repeat(27)))]),
        "name",
        "1 to 26",
    );
    refused(
        REBUILDER,
        &r(&[("name", s("-rebuilder"))]),
        "name",
        "hyphen",
    );
    // Scaling.
    for metric in ["cpu", "network_packets_in", "none"] {
        accepted(REBUILDER, &r(&[("scaling_metric", s(metric))]));
    }
    refused(
        REBUILDER,
        &r(&[("scaling_metric", s("memory"))]),
        "scaling_metric",
        "cpu, network_packets_in or none",
    );
    refused(
        REBUILDER,
        &r(&[("scaling_target", n(0.0))]),
        "scaling_target",
        "above 0",
    );
    refused(
        REBUILDER,
        &r(&[("min_size", n(1.5))]),
        "min_size",
        "whole number",
    );
    refused(
        REBUILDER,
        &r(&[("max_size", n(0.0))]),
        "max_size",
        "1 or more",
    );
    refused(
        REBUILDER,
        &r(&[("scaling_warmup", n(-1.0))]),
        "scaling_warmup",
        "0 or more",
    );
    // Alarms and CloudWatch.
    accepted(
        REBUILDER,
        &r(&[(
            "alarm_actions",
            Value::Array(vec![s("arn:aws:sns:eu-west-1:123456789012:ops")]),
        )]),
    );
    refused(
        REBUILDER,
        &r(&[("alarm_actions", Value::Array(vec![s("ops")]))]),
        "alarm_actions",
        "ARN",
    );
    refused(
        REBUILDER,
        &r(&[("cloudwatch_namespace", s("AWS/EC2"))]),
        "cloudwatch_namespace",
        "AWS/",
    );
    refused(
        REBUILDER,
        &r(&[("log_retention_days", n(100.0))]),
        "log_retention_days",
        "365",
    );
    refused(
        REBUILDER,
        &r(&[("cloudwatch_metric_names", Value::Array(vec![s("up")]))]),
        "cloudwatch_metric_names",
        "rebuilder_",
    );
    refused(
        REBUILDER,
        &r(&[("architecture", s("aarch64"))]),
        "architecture",
        "x86_64 or arm64",
    );
    refused(
        REBUILDER,
        &r(&[("status_port", n(4789.0))]),
        "status_port",
        "other than 4789",
    );

    let m = |extra: &[(&'static str, Value)]| with(sessions_required(), extra);
    // null VNI and packet length are handled, not refused (Terraform evaluates only the branch
    // a conditional takes; floor(null) would be an error).
    accepted(
        SESSIONS,
        &m(&[("vni", Value::Null), ("packet_length", Value::Null)]),
    );
    accepted(
        SESSIONS,
        &m(&[("vni", n(16_777_215.0)), ("packet_length", n(8500.0))]),
    );
    refused(SESSIONS, &m(&[("vni", n(16_777_216.0))]), "vni", "24 bits");
    refused(
        SESSIONS,
        &m(&[("packet_length", n(8501.0))]),
        "packet_length",
        "1 to 8500",
    );
    refused(
        SESSIONS,
        &m(&[("packet_length", n(0.0))]),
        "packet_length",
        "1 to 8500",
    );
    let ranges = |k: usize| {
        Value::Array(
            (0..k)
                .map(|i| {
                    plan::object(&[("from", n(8000.0 + i as f64)), ("to", n(8000.0 + i as f64))])
                })
                .collect(),
        )
    };
    accepted(
        SESSIONS,
        &m(&[("ingress_destination_port_ranges", ranges(10))]),
    );
    refused(
        SESSIONS,
        &m(&[("ingress_destination_port_ranges", ranges(11))]),
        "ingress_destination_port_ranges",
        "10 rules in all",
    );

    let e = |extra: &[(&'static str, Value)]| with(example_required(), extra);
    // The WAF's ALB is NAME-waf-xxxxx: 22 characters of name leave it at 32.
    accepted(EXAMPLE, &e(&[("name", s(&"w".repeat(22)))]));
    refused(
        EXAMPLE,
        &e(&[("name", s(&"w".repeat(23)))]),
        "name",
        "1 to 22",
    );
    refused(
        EXAMPLE,
        &e(&[("name", s("internal-waf"))]),
        "name",
        "internal-",
    );
    accepted(EXAMPLE, &e(&[("vni", Value::Null)]));
    refused(EXAMPLE, &e(&[("vni", n(1.5))]), "vni", "0 to 16777215");
    refused(
        EXAMPLE,
        &e(&[("server_ports", Value::Array(vec![]))]),
        "server_ports",
        "1 to 10",
    );
    refused(
        EXAMPLE,
        &e(&[(
            "server_ports",
            Value::Array((1..=11).map(|p| n(p as f64)).collect()),
        )]),
        "server_ports",
        "1 to 10",
    );
    refused(
        EXAMPLE,
        &e(&[("xdp_mode", s("driver"))]),
        "xdp_mode",
        "generic, native or off",
    );
}

/// The names the example derives stay within AWS's 32 characters for the longest name its
/// validation takes: the WAF module's ALB (app_name plus "-" and 5 random letters, its
/// app_name.tf) and rebuilder's NLB and target group, each computed from the modules' own
/// expressions.
#[test]
fn the_example_names_fit_aws_limits() {
    let name = "w".repeat(22);
    let vars = with(example_required(), &[("name", render::string(&name))]);
    let example = plan::Source::load(&terraform().join(EXAMPLE));
    let mut scope = eval::Scope::new();
    let values: hcl::Map<String, Value> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    scope.set("var", Value::Object(values));
    let arg = |module: &str, key: &str| {
        let e = plan::attr(example.block("module", &[module]).body(), key)
            .unwrap()
            .clone();
        eval::eval(&e, &scope).unwrap_or_else(|err| panic!("module.{module}.{key}: {err}"))
    };
    let app_name = arg("waf", "app_name");
    let alb = format!("{}-{}", text_of(&app_name), "abcde");
    assert_eq!(alb.len(), 32, "{alb}");

    let rebuilder_name = arg("rebuilder", "name");
    let plan = rebuilder_plan(&module_vars(
        "generic",
        &Release::Url,
        ANY_SHA256,
        &[("name", rebuilder_name.clone())],
    ));
    for (kind, res) in [("aws_lb", "this"), ("aws_lb_target_group", "vxlan")] {
        let v = plan.resource_attr(kind, res, &["name"]);
        assert!(text_of(&v).len() <= 32, "{kind}.{res}: {v:?}");
    }
    assert_eq!(
        text_of(&plan.resource_attr("aws_lb_target_group", "vxlan", &["name"])).len(),
        28
    );
}

/// `vni = null` in the example: rebuilder gets no VNI filter (not `[null]`, which its
/// validation would refuse), and the sessions let AWS choose.
#[test]
fn the_example_handles_a_null_vni() {
    let example = plan::Source::load(&terraform().join(EXAMPLE));
    for (vni, expected) in [
        (Value::Null, Value::Array(vec![])),
        (n(7.0), Value::Array(vec![n(7.0)])),
    ] {
        let vars = with(example_required(), &[("vni", vni.clone())]);
        let mut scope = eval::Scope::new();
        scope.set(
            "var",
            Value::Object(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
        );
        let e = plan::attr(example.block("module", &["rebuilder"]).body(), "vnis").unwrap();
        let vnis = eval::eval(e, &scope).unwrap();
        assert_eq!(vnis, expected);
        accepted(
            REBUILDER,
            &module_vars("generic", &Release::Url, ANY_SHA256, &[("vnis", vnis)]),
        );
        let e = plan::attr(example.block("module", &["mirror_sessions"]).body(), "vni").unwrap();
        accepted(
            SESSIONS,
            &with(
                sessions_required(),
                &[("vni", eval::eval(e, &scope).unwrap())],
            ),
        );
    }
}

/// The mirror filter: accept rules only, at most 10 in all (both directions), and the
/// precondition refuses settings that need more.
#[test]
fn mirror_filter_rules_fit_the_per_filter_quota() {
    let dir = terraform().join(SESSIONS);
    let ranges = |k: usize| {
        Value::Array(
            (0..k)
                .map(|i| {
                    plan::object(&[("from", n(8000.0 + i as f64)), ("to", n(8000.0 + i as f64))])
                })
                .collect(),
        )
    };
    let planned = |extra: &[(&'static str, Value)]| {
        plan::plan(&dir, &with(sessions_required(), extra), &[]).unwrap_or_else(|e| panic!("{e}"))
    };
    // The default: one rule, TCP received on every port, no reject rule.
    let p = planned(&[]);
    let rules = p.local("rules");
    let Value::Object(rules) = rules else {
        panic!()
    };
    assert_eq!(rules.keys().collect::<Vec<_>>(), ["ingress-tcp-0-ipv4"]);
    assert!(rules
        .values()
        .all(|r| field(r, "action") == render::string("accept")));
    assert!(p.preconditions().is_empty());

    // 5 ranges, IPv4 and IPv6, one direction: exactly 10.
    let p = planned(&[
        ("ingress_destination_port_ranges", ranges(5)),
        ("mirror_ipv6", Value::Bool(true)),
    ]);
    assert_eq!(p.local("rule_total"), Value::from(10u64));
    assert!(p.preconditions().is_empty(), "{:?}", p.preconditions());

    // Ingress 5 + egress 6: 11 in the filter, although each direction alone has room.
    let p = planned(&[
        ("ingress_destination_port_ranges", ranges(5)),
        ("mirror_egress", Value::Bool(true)),
        ("egress_destination_port_ranges", ranges(6)),
    ]);
    let pre = p.preconditions();
    assert!(
        pre.len() == 1
            && pre[0].at == "aws_ec2_traffic_mirror_filter.this"
            && pre[0].message.contains("need 11 (5 ingress, 6 egress"),
        "{pre:#?}"
    );

    // DNS counts too: 9 ranges + DNS = 10 fits, 10 + DNS does not.
    let p = planned(&[
        ("ingress_destination_port_ranges", ranges(9)),
        ("mirror_dns", Value::Bool(true)),
    ]);
    assert!(p.preconditions().is_empty());
    let p = planned(&[
        ("ingress_destination_port_ranges", ranges(10)),
        ("mirror_dns", Value::Bool(true)),
    ]);
    assert_eq!(p.preconditions().len(), 1);
}

/// The NLB's health check is liveness, the scaling policy follows the chosen metric, and the
/// preconditions refuse a policy without room or a CPU target over 100.
#[test]
fn health_check_scaling_and_alarms_render_as_documented() {
    let s = render::string;
    let p = rebuilder_plan(&rebuilder_required());
    assert_eq!(
        p.resource_attr("aws_lb_target_group", "vxlan", &["health_check", "path"]),
        s("/livez")
    );
    assert_eq!(
        p.resource_attr("aws_lb_target_group", "vxlan", &["health_check", "port"]),
        s("9479")
    );
    assert!(p.preconditions().is_empty(), "{:?}", p.preconditions());
    // CPU target tracking by default, the group's size left to it.
    assert_eq!(p.count("aws_autoscaling_policy", "target_tracking"), 1);
    assert_eq!(
        p.resource_attr(
            "aws_autoscaling_policy",
            "target_tracking",
            &["target_tracking_configuration", "target_value"]
        ),
        n(60.0)
    );
    assert_eq!(
        p.resource_attr("aws_autoscaling_group", "this", &["desired_capacity"]),
        Value::Null
    );
    let block = p
        .source
        .block("resource", &["aws_autoscaling_policy", "target_tracking"]);
    let dynamic_for_each = |label: &str| {
        let config = block
            .body()
            .blocks()
            .find(|b| b.identifier() == "target_tracking_configuration")
            .unwrap();
        let d = config
            .body()
            .blocks()
            .find(|b| b.identifier() == "dynamic" && b.labels()[0].as_str() == label)
            .unwrap();
        p.eval(plan::attr(d.body(), "for_each").unwrap())
    };
    assert_eq!(
        dynamic_for_each("predefined_metric_specification"),
        Value::Array(vec![s("cpu")])
    );
    assert_eq!(
        dynamic_for_each("customized_metric_specification"),
        Value::Array(vec![])
    );
    // Two alarms, on the target group's AWS/NetworkELB metrics.
    for alarm in ["unhealthy_targets", "no_healthy_targets"] {
        assert_eq!(p.count("aws_cloudwatch_metric_alarm", alarm), 1);
        assert_eq!(
            p.resource_attr("aws_cloudwatch_metric_alarm", alarm, &["namespace"]),
            s("AWS/NetworkELB")
        );
        let dims = p.resource_attr("aws_cloudwatch_metric_alarm", alarm, &["dimensions"]);
        assert_eq!(
            field(&dims, "TargetGroup"),
            s("targetgroup/rebuilder-vxlan/0123456789abcdef"),
            "{dims:?}"
        );
        assert_eq!(
            field(&dims, "LoadBalancer"),
            s("net/rebuilder/0123456789abcdef"),
            "{dims:?}"
        );
    }
    // Without the agent, no log group, no extra permissions.
    assert_eq!(p.count("aws_cloudwatch_log_group", "this"), 0);
    assert_eq!(p.count("aws_iam_role_policy", "cloudwatch"), 0);

    let r = |extra: &[(&'static str, Value)]| rebuilder_plan(&with(rebuilder_required(), extra));
    let p = r(&[
        ("scaling_metric", s("network_packets_in")),
        ("scaling_target", n(250_000.0)),
    ]);
    let block = p
        .source
        .block("resource", &["aws_autoscaling_policy", "target_tracking"]);
    let config = block
        .body()
        .blocks()
        .find(|b| b.identifier() == "target_tracking_configuration")
        .unwrap();
    let custom = config
        .body()
        .blocks()
        .find(|b| {
            b.labels()
                .first()
                .is_some_and(|l| l.as_str() == "customized_metric_specification")
        })
        .unwrap();
    assert_eq!(
        p.eval(plan::attr(custom.body(), "for_each").unwrap()),
        Value::Array(vec![s("packets")])
    );
    assert!(p.preconditions().is_empty());

    let p = r(&[("scaling_metric", s("none")), ("desired_capacity", n(3.0))]);
    assert_eq!(p.count("aws_autoscaling_policy", "target_tracking"), 0);
    assert_eq!(
        p.resource_attr("aws_autoscaling_group", "this", &["desired_capacity"]),
        n(3.0)
    );

    let pre = r(&[("min_size", n(2.0)), ("max_size", n(2.0))]).preconditions();
    assert!(
        pre.len() == 1 && pre[0].message.contains("must be below max_size"),
        "{pre:#?}"
    );
    let pre = r(&[("scaling_target", n(150.0))]).preconditions();
    assert!(
        pre.len() == 1 && pre[0].message.contains("1 to 100, not 150"),
        "{pre:#?}"
    );
    let pre = r(&[("alarms", Value::Bool(false))]);
    assert_eq!(
        pre.count("aws_cloudwatch_metric_alarm", "unhealthy_targets"),
        0
    );
}

/// dist names releases x86_64 / aarch64, the module's architecture is x86_64 / arm64: a
/// release of dist's pattern for the other machine is refused at plan time.
#[test]
fn release_architecture_names_are_matched() {
    let s = render::string;
    let plan_with = |arch: &str, url: &str| {
        rebuilder_plan(&with(
            rebuilder_required(),
            &[("architecture", s(arch)), ("release_url", s(url))],
        ))
    };
    let arm = "https://releases.example.com/v1/rebuilder-0.1.0-aarch64-linux.tar.gz";
    let x86 = "https://releases.example.com/v1/rebuilder-0.1.0-x86_64-linux.tar.gz?token=x";
    assert_eq!(plan_with("arm64", arm).local("release_arch"), s("aarch64"));
    assert_eq!(
        plan_with("arm64", arm).local("release_file_arch"),
        s("aarch64")
    );
    assert!(plan_with("arm64", arm).preconditions().is_empty());
    assert!(plan_with("x86_64", x86).preconditions().is_empty());
    let pre = plan_with("x86_64", arm).preconditions();
    assert!(
        pre.len() == 1 && pre[0].message.contains("needs a x86_64 release"),
        "{pre:#?}"
    );
    let pre = plan_with("arm64", x86).preconditions();
    assert!(
        pre.len() == 1
            && pre[0]
                .message
                .contains("rebuilder-VERSION-aarch64-linux.tar.gz"),
        "{pre:#?}"
    );
    // A name of another pattern says nothing: the user data checks the unpacked directory.
    assert!(
        plan_with("arm64", "https://releases.example.com/latest.tgz")
            .preconditions()
            .is_empty()
    );
    let p = rebuilder_plan(&with(
        rebuilder_required(),
        &[
            ("release_url", s("")),
            (
                "release_s3_uri",
                s("s3://artifacts/rebuilder/rebuilder-0.2.0-aarch64-linux.tar.gz"),
            ),
        ],
    ));
    assert_eq!(p.local("release_file_arch"), s("aarch64"));
    assert_eq!(p.preconditions().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// User data, rendered as the module renders it.

/// Test values for the rebuilder module's variables that the templates read, for `xdp_mode`,
/// the release kind and checksum; `extra` adds or overrides variables.
fn module_vars(
    xdp_mode: &str,
    release: &Release,
    sha256: &str,
    extra: &[(&'static str, Value)],
) -> Vec<(&'static str, Value)> {
    let (s3, url) = match release {
        Release::S3 => ("s3://rebuilder-artifacts/releases/rebuilder.tar.gz", ""),
        Release::Url => ("", "https://releases.example.com/rebuilder.tar.gz"),
    };
    let mut vars: Vec<(&'static str, Value)> = vec![
        ("vpc_id", render::string("vpc-0123456789abcdef0")),
        (
            "subnet_ids",
            Value::Array(vec![render::string("subnet-0123456789abcdef0")]),
        ),
        ("log_format", render::string("json")),
        ("vnis", render::numbers(&[1377, 42])),
        ("server_ports", render::numbers(&[80, 8080])),
        ("memory_budget", render::string("512MiB")),
        // Nothing listens there: the binary's settings check must not depend on reaching it.
        ("upstream_url", render::string("http://127.0.0.1:9")),
        ("client_ip_header", render::string("X-Forwarded-For")),
        ("vni_header", render::string("X-Mirror-VNI")),
        ("status_port", Value::from(9479u64)),
        ("xdp_mode", render::string(xdp_mode)),
        ("capture_interface", render::string("ens5")),
        ("release_s3_uri", render::string(s3)),
        ("release_url", render::string(url)),
        ("release_sha256", render::string(sha256)),
        // The tests run the release dist builds here.
        (
            "architecture",
            render::string(match std::env::consts::ARCH {
                "aarch64" => "arm64",
                other => other,
            }),
        ),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v.clone()));
    }
    vars
}

#[derive(Clone, Copy, Debug)]
enum Release {
    S3,
    Url,
}

/// What AWS computes and the rebuilder module reads: stand-ins for its data sources and the
/// resources its locals and preconditions refer to.
fn rebuilder_stubs(architecture: &str) -> Vec<(&'static str, Value)> {
    use plan::object;
    let s = render::string;
    vec![
        (
            "data",
            object(&[
                (
                    "aws_partition",
                    object(&[("current", object(&[("partition", s("aws"))]))]),
                ),
                (
                    "aws_region",
                    object(&[("current", object(&[("name", s("eu-west-1"))]))]),
                ),
                (
                    "aws_vpc",
                    object(&[(
                        "this",
                        object(&[(
                            "cidr_block_associations",
                            Value::Array(vec![object(&[("cidr_block", s("10.0.0.0/16"))])]),
                        )]),
                    )]),
                ),
                (
                    "aws_ssm_parameter",
                    object(&[(
                        "al2023",
                        Value::Array(vec![object(&[("value", s("ami-0123456789abcdef0"))])]),
                    )]),
                ),
                (
                    "aws_ami",
                    object(&[(
                        "this",
                        object(&[
                            ("architecture", s(architecture)),
                            ("root_device_name", s("/dev/xvda")),
                        ]),
                    )]),
                ),
            ]),
        ),
        (
            "aws_autoscaling_group",
            object(&[("this", object(&[("name", s("rebuilder-20260101"))]))]),
        ),
        (
            "aws_lb",
            object(&[(
                "this",
                object(&[("arn_suffix", s("net/rebuilder/0123456789abcdef"))]),
            )]),
        ),
        (
            "aws_lb_target_group",
            object(&[(
                "vxlan",
                object(&[(
                    "arn_suffix",
                    s("targetgroup/rebuilder-vxlan/0123456789abcdef"),
                )]),
            )]),
        ),
    ]
}

/// The rebuilder module planned with `vars`.
fn rebuilder_plan(vars: &[(&str, Value)]) -> plan::Plan {
    let arch = vars
        .iter()
        .find(|(k, _)| *k == "architecture")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "x86_64".into());
    plan::plan(
        &terraform().join("modules/rebuilder"),
        vars,
        &rebuilder_stubs(&arch),
    )
    .unwrap_or_else(|e| panic!("planning the rebuilder module: {e}"))
}

/// A stand-in checksum for renderings that are not run.
const ANY_SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The settings and the user data the module renders for these variables.
fn render_user_data(xdp_mode: &str, release: &Release, sha256: &str) -> (String, String) {
    render_user_data_with(xdp_mode, release, sha256, &[])
}

fn render_user_data_with(
    xdp_mode: &str,
    release: &Release,
    sha256: &str,
    extra: &[(&'static str, Value)],
) -> (String, String) {
    let plan = rebuilder_plan(&module_vars(xdp_mode, release, sha256, extra));
    let text = |v: Value| match v {
        Value::String(s) => s,
        other => panic!("{other:?}"),
    };
    (text(plan.local("config")), text(plan.local("user_data")))
}

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

// ---------------------------------------------------------------------------------------------
// The user data against a scratch root, with a real release.

struct Dist {
    tarball: PathBuf,
    sha256: String,
}

/// `cargo xtask dist` with the profile these tests were built with, once per test run.
fn dist() -> &'static Dist {
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
fn shims(dir: &Path, release: &Path, log: &Path) {
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

struct Installed {
    root: PathBuf,
    log: String,
    output: Output,
    _scratch: Scratch,
}

/// Renders the user data and runs it with REBUILDER_ROOT set, against `release`.
fn run_user_data(name: &str, xdp_mode: &str, release_kind: Release, release: &Path) -> Installed {
    run_user_data_with(name, xdp_mode, release_kind, release, &[], &[])
}

/// [`run_user_data`] with more module variables and environment.
fn run_user_data_with(
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
fn empty_pcap(dir: &Path) -> PathBuf {
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
fn binary_has_xdp(bin: &Path) -> bool {
    let out = run(Command::new(bin).args(["run", "--help"]));
    text(&out.stdout).contains("--iface")
}

/// `rebuilder --config FILE replay` on an empty capture: the settings are read and validated
/// exactly as `run` reads them.
fn binary_accepts(bin: &Path, config: &Path, scratch: &Path) -> Result<(), String> {
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
fn unit_settings(unit: &str) -> BTreeMap<String, String> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Copies the host's system units into `root` so that `systemd-analyze verify --root` finds the
/// targets the unit refers to.
fn add_system_units(root: &Path) {
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

fn systemd_verify(root: &Path) {
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
fn check_install(installed: &Installed, xdp_mode: &str) {
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

// ---------------------------------------------------------------------------------------------
// The unit and the default settings on their own.

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

// ---------------------------------------------------------------------------------------------
// checkov.

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
