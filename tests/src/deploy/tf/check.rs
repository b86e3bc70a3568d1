//! The checks `terraform validate` would make on a module, without providers: every reference
//! names something declared, module calls match the called module's variables (local ones
//! loaded from disk, registry ones from their recorded interface), and `templatefile()` calls
//! pass exactly what their template uses.

use std::collections::BTreeMap;

use super::*;

impl Module {
    /// Runs every check; `registry` maps `source@version` of registry modules to their recorded
    /// interface. Child modules with local sources are loaded from disk.
    pub fn check(&self, registry: &BTreeMap<String, Interface>) -> Vec<Finding> {
        let mut findings = self.parse_errors.clone();
        let d = self.declarations();
        findings.extend(d.duplicates.iter().cloned());

        // Module calls: the source exists; the arguments are the callee's variables, the
        // required ones all given.
        let mut callees: BTreeMap<String, Interface> = BTreeMap::new();
        for (name, call) in &d.modules {
            let at = self.at(&call.file);
            let interface = if call.source.starts_with("./") || call.source.starts_with("../") {
                let dir = self.dir.join(&call.source);
                let has_tf = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .any(|e| e.path().extension().is_some_and(|x| x == "tf"))
                    })
                    .unwrap_or(false);
                if !has_tf {
                    findings.push(Finding {
                        file: at,
                        message: format!(
                            "module.{name}: source {} is not a directory with .tf files",
                            call.source
                        ),
                    });
                    continue;
                }
                Module::load(&dir).interface()
            } else {
                let key = format!(
                    "{}@{}",
                    call.source,
                    call.version.as_deref().unwrap_or("(no version)")
                );
                match registry.get(&key) {
                    Some(i) => Interface {
                        variables: i.variables.clone(),
                        outputs: i.outputs.clone(),
                    },
                    None => {
                        findings.push(Finding {
                            file: at,
                            message: format!(
                                "module.{name}: no recorded interface for registry module {key} \
                                 (pin a version and record it under deploy/tests/registry/)"
                            ),
                        });
                        continue;
                    }
                }
            };
            for arg in &call.args {
                if !interface.variables.contains_key(arg) {
                    findings.push(Finding {
                        file: at.clone(),
                        message: format!("module.{name}: {} has no variable {arg:?}", call.source),
                    });
                }
            }
            for (var, required) in &interface.variables {
                if *required && !call.args.contains(var) {
                    findings.push(Finding {
                        file: at.clone(),
                        message: format!(
                            "module.{name}: required variable {var:?} of {} is not given",
                            call.source
                        ),
                    });
                }
            }
            callees.insert(name.clone(), interface);
        }

        // References.
        for (file, r) in self.references() {
            let at = self.at(&file);
            let mut miss = |what: String| {
                findings.push(Finding {
                    file: at.clone(),
                    message: format!("{} refers to {what}", r.text),
                })
            };
            let attr = |i: usize| r.attrs.get(i).map(String::as_str);
            match r.root.as_str() {
                "var" => match attr(0) {
                    Some(v) if d.variables.contains_key(v) => {}
                    Some(v) => miss(format!("undeclared variable {v:?}")),
                    None => miss("var without a name".into()),
                },
                "local" => match attr(0) {
                    Some(v) if d.locals.contains(v) => {}
                    Some(v) => miss(format!("undeclared local {v:?}")),
                    None => miss("local without a name".into()),
                },
                "data" => match (attr(0), attr(1)) {
                    (Some(k), Some(n)) if d.data.contains(&(k.into(), n.into())) => {}
                    (Some(k), Some(n)) => miss(format!("undeclared data source {k}.{n}")),
                    _ => miss("an incomplete data source".into()),
                },
                "module" => match attr(0) {
                    Some(m) if d.modules.contains_key(m) => {
                        if let (Some(out), Some(callee)) = (attr(1), callees.get(m)) {
                            if !callee.outputs.contains(out) {
                                miss(format!("output {out:?}, which module.{m} does not have"));
                            }
                        }
                    }
                    Some(m) => miss(format!("undeclared module {m:?}")),
                    None => miss("module without a name".into()),
                },
                root if BUILTIN_ROOTS.contains(&root) => {}
                kind => match attr(0) {
                    Some(n) if d.resources.contains(&(kind.into(), n.into())) => {}
                    Some(n) => miss(format!("undeclared resource {kind}.{n}")),
                    None => miss(format!("unknown name {kind:?}")),
                },
            }
        }

        // templatefile(): the template exists, and the call passes exactly its variables.
        for call in self.template_calls() {
            let at = self.at(&call.file);
            let path = match &call.path {
                Ok(p) => p,
                Err(e) => {
                    findings.push(Finding {
                        file: at,
                        message: format!("templatefile path: {e}"),
                    });
                    continue;
                }
            };
            let used = match template_variables(path) {
                Ok(v) => v,
                Err(e) => {
                    findings.push(Finding {
                        file: at,
                        message: e,
                    });
                    continue;
                }
            };
            match &call.vars {
                Ok(passed) => {
                    for v in used.difference(passed) {
                        findings.push(Finding {
                            file: at.clone(),
                            message: format!(
                                "templatefile({}) does not pass {v:?}, which the template uses",
                                path.display()
                            ),
                        });
                    }
                    for v in passed.difference(&used) {
                        findings.push(Finding {
                            file: at.clone(),
                            message: format!(
                                "templatefile({}) passes {v:?}, which the template does not use",
                                path.display()
                            ),
                        });
                    }
                }
                Err(e) => findings.push(Finding {
                    file: at,
                    message: format!("templatefile variables: {e}"),
                }),
            }
        }
        findings.sort();
        findings.dedup();
        findings
    }
}
