//! Test values for the Terraform modules' variables, stand-ins for what AWS would compute, and
//! the rebuilder module planned and rendered with them: what the plan and user-data tests feed
//! the evaluator ([`super::plan`], [`super::render`]). Values only; no assertions.

use hcl::Value;

use super::{plan, render, terraform};

pub fn n(x: f64) -> Value {
    Value::Number(hcl::Number::from_f64(x).unwrap())
}

pub fn field(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(o) => o.get(key).cloned().unwrap_or(Value::Null),
        other => panic!("{other:?} is not an object"),
    }
}

pub fn text_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("{v:?} is not a string"))
}

pub const REBUILDER: &str = "modules/rebuilder";
pub const SESSIONS: &str = "modules/mirror-sessions";
pub const EXAMPLE: &str = "examples/vpc-mirror";

pub fn rebuilder_required() -> Vec<(&'static str, Value)> {
    module_vars("generic", &Release::Url, ANY_SHA256, &[])
}

pub fn sessions_required() -> Vec<(&'static str, Value)> {
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

pub fn example_required() -> Vec<(&'static str, Value)> {
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

pub fn with(
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

/// Test values for the rebuilder module's variables that the templates read, for `xdp_mode`,
/// the release kind and checksum; `extra` adds or overrides variables.
pub fn module_vars(
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
pub enum Release {
    S3,
    Url,
}

/// What AWS computes and the rebuilder module reads: stand-ins for its data sources and the
/// resources its locals and preconditions refer to.
pub fn rebuilder_stubs(architecture: &str) -> Vec<(&'static str, Value)> {
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
pub fn rebuilder_plan(vars: &[(&str, Value)]) -> plan::Plan {
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
pub const ANY_SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The settings and the user data the module renders for these variables.
pub fn render_user_data(xdp_mode: &str, release: &Release, sha256: &str) -> (String, String) {
    render_user_data_with(xdp_mode, release, sha256, &[])
}

pub fn render_user_data_with(
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
