//! The variables' validations and the resources' preconditions of the Terraform modules,
//! evaluated as `terraform plan` evaluates them (no AWS, no terraform): the defaults pass,
//! what AWS would refuse is refused, the example's names fit AWS's limits, and the derived
//! settings (mirror filter, health check, scaling, alarms, release architecture) render as
//! documented.

use hcl::Value;

use rebuilder_tests::deploy::vars::{
    example_required, field, module_vars, n, rebuilder_plan, rebuilder_required, sessions_required,
    text_of, with, Release, ANY_SHA256, EXAMPLE, REBUILDER, SESSIONS,
};
use rebuilder_tests::deploy::{eval, plan, render, terraform};

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
