//! The Terraform under `deploy/terraform`, statically: every module parses, and its references,
//! module calls and `templatefile()` calls are consistent; the standard module files are there
//! and documented; the `enis/` alternatives can replace `interfaces.tf`; and each check is
//! shown to catch a broken copy. No terraform binary and no registry access: the model in
//! [`rebuilder_tests::deploy::tf`] stands in for `terraform validate`.

use std::path::{Path, PathBuf};

use rebuilder_tests::deploy::{module_dirs, registry, terraform, tf};

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
