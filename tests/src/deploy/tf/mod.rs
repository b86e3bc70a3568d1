//! A static model of Terraform modules, parsed with hcl-rs, and the checks `terraform validate`
//! would make without providers: every reference names something declared, module calls match
//! the called module's variables, and `templatefile()` calls pass exactly what their template
//! uses. CI has no terraform binary and no registry access, so this is what stands in for them.
//!
//! This module holds the model (a module's files, declarations, interface, `templatefile()`
//! calls) and the registry of recorded interfaces; `check` the checks themselves; `refs` the
//! walk over bodies, expressions and templates that finds references and function calls.

mod check;
mod refs;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use hcl::template::{Element, Template};
use hcl::Body;

use refs::{collect_calls, walk_body, walk_template, Reference, Scope};

/// Arguments of a `module` block that are Terraform's, not the called module's variables.
const MODULE_META_ARGS: &[&str] = &[
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

/// Roots of references that need no declaration.
const BUILTIN_ROOTS: &[&str] = &["path", "terraform", "count", "each", "self"];

/// One problem found, with the file it is in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub file: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

#[derive(Debug)]
pub struct ModuleCall {
    pub file: String,
    pub source: String,
    pub version: Option<String>,
    pub args: BTreeSet<String>,
}

/// The interface of a module: its variables (name → required) and outputs.
#[derive(Debug, Default)]
pub struct Interface {
    pub variables: BTreeMap<String, bool>,
    pub outputs: BTreeSet<String>,
}

/// A module: the `.tf` files of one directory, parsed.
pub struct Module {
    pub dir: PathBuf,
    files: Vec<(String, Body)>,
    /// Parse errors count as findings.
    parse_errors: Vec<Finding>,
}

/// What a module declares.
#[derive(Debug, Default)]
pub struct Declarations {
    pub variables: BTreeMap<String, bool>,
    pub locals: BTreeSet<String>,
    pub resources: BTreeSet<(String, String)>,
    pub data: BTreeSet<(String, String)>,
    pub modules: BTreeMap<String, ModuleCall>,
    pub outputs: BTreeSet<String>,
    pub duplicates: Vec<Finding>,
}

/// A `templatefile(PATH, VARS)` call.
#[derive(Debug)]
pub struct TemplateCall {
    pub file: String,
    pub path: Result<PathBuf, String>,
    pub vars: Result<BTreeSet<String>, String>,
}

impl Module {
    /// Parses every `*.tf` file of `dir` (not its subdirectories).
    pub fn load(dir: &Path) -> Module {
        let mut sources = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tf") && p.is_file())
            .collect();
        names.sort();
        for path in names {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            sources.push((name, text));
        }
        Module::from_sources(dir, sources)
    }

    /// A module from in-memory files, resolved as if they were in `dir` (module sources and
    /// template paths are relative to it).
    pub fn from_sources(dir: &Path, sources: Vec<(String, String)>) -> Module {
        let mut files = Vec::new();
        let mut parse_errors = Vec::new();
        for (name, text) in sources {
            match hcl::parse(&text) {
                Ok(body) => files.push((name, body)),
                Err(e) => parse_errors.push(Finding {
                    file: name,
                    message: format!("does not parse: {e}"),
                }),
            }
        }
        Module {
            dir: dir.to_path_buf(),
            files,
            parse_errors,
        }
    }

    pub fn file_names(&self) -> Vec<&str> {
        self.files.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn at(&self, file: &str) -> String {
        format!("{}/{file}", self.dir.display())
    }

    pub fn declarations(&self) -> Declarations {
        let mut d = Declarations::default();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut declare = |d: &mut Declarations, key: String, file: &str| {
            if let Some(first) = seen.insert(key.clone(), file.to_string()) {
                d.duplicates.push(Finding {
                    file: self.at(file),
                    message: format!("{key} is declared again (first in {first})"),
                });
            }
        };
        for (file, body) in &self.files {
            for block in body.blocks() {
                let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
                match (block.identifier(), labels.as_slice()) {
                    ("variable", [name]) => {
                        declare(&mut d, format!("var.{name}"), file);
                        let required = !block.body().attributes().any(|a| a.key() == "default");
                        d.variables.insert(name.to_string(), required);
                    }
                    ("locals", []) => {
                        for a in block.body().attributes() {
                            declare(&mut d, format!("local.{}", a.key()), file);
                            d.locals.insert(a.key().to_string());
                        }
                    }
                    ("resource", [kind, name]) => {
                        declare(&mut d, format!("{kind}.{name}"), file);
                        d.resources.insert((kind.to_string(), name.to_string()));
                    }
                    ("data", [kind, name]) => {
                        declare(&mut d, format!("data.{kind}.{name}"), file);
                        d.data.insert((kind.to_string(), name.to_string()));
                    }
                    ("output", [name]) => {
                        declare(&mut d, format!("output.{name}"), file);
                        d.outputs.insert(name.to_string());
                    }
                    ("module", [name]) => {
                        declare(&mut d, format!("module.{name}"), file);
                        let attr = |key: &str| {
                            block
                                .body()
                                .attributes()
                                .find(|a| a.key() == key)
                                .and_then(|a| match a.expr() {
                                    Expression::String(s) => Some(s.clone()),
                                    _ => None,
                                })
                        };
                        d.modules.insert(
                            name.to_string(),
                            ModuleCall {
                                file: file.clone(),
                                source: attr("source").unwrap_or_default(),
                                version: attr("version"),
                                args: block
                                    .body()
                                    .attributes()
                                    .map(|a| a.key().to_string())
                                    .filter(|k| !MODULE_META_ARGS.contains(&k.as_str()))
                                    .collect(),
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        d
    }

    pub fn interface(&self) -> Interface {
        let d = self.declarations();
        Interface {
            variables: d.variables,
            outputs: d.outputs,
        }
    }

    /// Every reference in every expression, with the file it is in.
    fn references(&self) -> Vec<(String, Reference)> {
        let mut out = Vec::new();
        for (file, body) in &self.files {
            let mut refs = Vec::new();
            walk_body(body, &mut Scope::default(), &mut refs);
            out.extend(refs.into_iter().map(|r| (file.clone(), r)));
        }
        out
    }

    /// Every `templatefile()` call.
    pub fn template_calls(&self) -> Vec<TemplateCall> {
        let mut out = Vec::new();
        for (file, body) in &self.files {
            let mut calls = Vec::new();
            collect_calls(body, "templatefile", &mut calls);
            for args in calls {
                out.push(TemplateCall {
                    file: file.clone(),
                    path: match args.first() {
                        Some(e) => self.resolve_path(e),
                        None => Err("no path argument".into()),
                    },
                    vars: match args.get(1) {
                        Some(Expression::Object(o)) => o
                            .keys()
                            .map(|k| match k {
                                ObjectKey::Identifier(i) => Ok(i.as_str().to_string()),
                                ObjectKey::Expression(Expression::String(s)) => Ok(s.clone()),
                                other => Err(format!("key {other:?} is not a plain name")),
                            })
                            .collect(),
                        Some(other) => {
                            Err(format!("variables are not an object literal: {other:?}"))
                        }
                        None => Err("no variables argument".into()),
                    },
                });
            }
        }
        out
    }

    /// A path argument: a literal, or a template over `path.module` (the only forms used).
    fn resolve_path(&self, e: &Expression) -> Result<PathBuf, String> {
        let text = match e {
            Expression::String(s) => s.clone(),
            Expression::TemplateExpr(t) => {
                let template = Template::from_expr(t).map_err(|e| e.to_string())?;
                let mut s = String::new();
                for el in template.elements() {
                    match el {
                        Element::Literal(l) => s.push_str(l),
                        Element::Interpolation(i) if is_path_module(&i.expr) => {
                            s.push_str(&self.dir.to_string_lossy())
                        }
                        other => return Err(format!("cannot resolve {other:?}")),
                    }
                }
                s
            }
            other => return Err(format!("cannot resolve {other:?}")),
        };
        let p = PathBuf::from(text);
        Ok(if p.is_absolute() { p } else { self.dir.join(p) })
    }
}

fn is_path_module(e: &Expression) -> bool {
    match e {
        Expression::Traversal(t) => {
            matches!(&t.expr, Expression::Variable(v) if v.as_str() == "path")
                && matches!(t.operators.as_slice(), [TraversalOperator::GetAttr(a)] if a.as_str() == "module")
        }
        _ => false,
    }
}

/// The free variables of a template file: what `templatefile()` must be given.
pub fn template_variables(path: &Path) -> Result<BTreeSet<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("template {}: {e}", path.display()))?;
    let template: Template = text
        .parse()
        .map_err(|e| format!("template {} does not parse: {e}", path.display()))?;
    let mut refs = Vec::new();
    walk_template(&template, &mut Scope::default(), &mut refs);
    Ok(refs.into_iter().map(|r| r.root).collect())
}

/// Reads the recorded interfaces of registry modules: one file per `source@version`, with lines
/// `source SOURCE`, `version VERSION`, `required NAME...`, `optional NAME...`, `outputs NAME...`.
pub fn load_registry(dir: &Path) -> BTreeMap<String, Interface> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut source, mut version) = (String::new(), String::new());
        let mut interface = Interface::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            let rest: Vec<String> = words.map(str::to_string).collect();
            match key {
                "source" => source = rest.concat(),
                "version" => version = rest.concat(),
                "required" => interface
                    .variables
                    .extend(rest.into_iter().map(|v| (v, true))),
                "optional" => interface
                    .variables
                    .extend(rest.into_iter().map(|v| (v, false))),
                "outputs" => interface.outputs.extend(rest),
                other => panic!("{}: unknown line kind {other:?}", path.display()),
            }
        }
        assert!(
            !source.is_empty() && !version.is_empty(),
            "{}: needs source and version lines",
            path.display()
        );
        out.insert(format!("{source}@{version}"), interface);
    }
    out
}
