//! A static model of Terraform modules, parsed with hcl-rs, and the checks `terraform validate`
//! would make without providers: every reference names something declared, module calls match
//! the called module's variables, and `templatefile()` calls pass exactly what their template
//! uses. CI has no terraform binary and no registry access, so this is what stands in for them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use hcl::expr::{Expression, ObjectKey, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body, Structure};

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

/// A reference: `root.attr.attr...` (indexes end the chain).
#[derive(Debug)]
struct Reference {
    root: String,
    attrs: Vec<String>,
    text: String,
}

/// Names bound by enclosing `for` expressions and `dynamic` blocks.
#[derive(Default)]
struct Scope {
    bound: Vec<String>,
}

impl Scope {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }
}

fn walk_body(body: &Body, scope: &mut Scope, out: &mut Vec<Reference>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => walk_expr(a.expr(), scope, out),
            Structure::Block(b) => walk_block(b, scope, out),
        }
    }
}

fn walk_block(block: &Block, scope: &mut Scope, out: &mut Vec<Reference>) {
    match block.identifier() {
        // Attribute names, not references.
        "lifecycle" => {
            for structure in block.body().iter() {
                match structure {
                    Structure::Attribute(a) if a.key() == "ignore_changes" => {}
                    Structure::Attribute(a) => walk_expr(a.expr(), scope, out),
                    Structure::Block(b) => walk_block(b, scope, out),
                }
            }
        }
        // Provider requirements are strings and objects, never references.
        "terraform" => {}
        // A type constraint (`list(object({ from = number }))`) names types, not values.
        "variable" => {
            for structure in block.body().iter() {
                match structure {
                    Structure::Attribute(a) if a.key() == "type" => {}
                    Structure::Attribute(a) => walk_expr(a.expr(), scope, out),
                    Structure::Block(b) => walk_block(b, scope, out),
                }
            }
        }
        "dynamic" => {
            let label = block
                .labels()
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            let iterator = block
                .body()
                .attributes()
                .find(|a| a.key() == "iterator")
                .and_then(|a| match a.expr() {
                    Expression::Variable(v) => Some(v.as_str().to_string()),
                    _ => None,
                })
                .unwrap_or(label);
            for structure in block.body().iter() {
                match structure {
                    Structure::Attribute(a) if a.key() == "iterator" => {}
                    Structure::Attribute(a) => walk_expr(a.expr(), scope, out),
                    Structure::Block(b) if b.identifier() == "content" => {
                        scope.bound.push(iterator.clone());
                        walk_body(b.body(), scope, out);
                        scope.bound.pop();
                    }
                    Structure::Block(b) => walk_block(b, scope, out),
                }
            }
        }
        _ => walk_body(block.body(), scope, out),
    }
}

fn walk_expr(e: &Expression, scope: &mut Scope, out: &mut Vec<Reference>) {
    match e {
        Expression::Variable(v) if !scope.is_bound(v.as_str()) => {
            out.push(Reference {
                root: v.as_str().to_string(),
                attrs: Vec::new(),
                text: v.as_str().to_string(),
            });
        }
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                if !scope.is_bound(v.as_str()) {
                    let attrs: Vec<String> = t
                        .operators
                        .iter()
                        .map_while(|op| match op {
                            TraversalOperator::GetAttr(a) => Some(a.as_str().to_string()),
                            _ => None,
                        })
                        .collect();
                    let text = std::iter::once(v.as_str().to_string())
                        .chain(attrs.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(".");
                    out.push(Reference {
                        root: v.as_str().to_string(),
                        attrs,
                        text,
                    });
                }
            } else {
                walk_expr(&t.expr, scope, out);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(i) = op {
                    walk_expr(i, scope, out);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|i| walk_expr(i, scope, out)),
        Expression::Object(o) => {
            for (k, v) in o {
                if let ObjectKey::Expression(k) = k {
                    // A bare name as a key is a literal key, not a reference.
                    if !matches!(k, Expression::Variable(_)) {
                        walk_expr(k, scope, out);
                    }
                }
                walk_expr(v, scope, out);
            }
        }
        Expression::TemplateExpr(t) => walk_template_expr(t, scope, out),
        Expression::FuncCall(f) => f.args.iter().for_each(|a| walk_expr(a, scope, out)),
        Expression::Parenthesis(p) => walk_expr(p, scope, out),
        Expression::Conditional(c) => {
            walk_expr(&c.cond_expr, scope, out);
            walk_expr(&c.true_expr, scope, out);
            walk_expr(&c.false_expr, scope, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => walk_expr(&u.expr, scope, out),
            hcl::expr::Operation::Binary(b) => {
                walk_expr(&b.lhs_expr, scope, out);
                walk_expr(&b.rhs_expr, scope, out);
            }
        },
        Expression::ForExpr(f) => {
            walk_expr(&f.collection_expr, scope, out);
            let n = scope.bound.len();
            scope
                .bound
                .extend(f.key_var.iter().map(|k| k.as_str().to_string()));
            scope.bound.push(f.value_var.as_str().to_string());
            if let Some(k) = &f.key_expr {
                walk_expr(k, scope, out);
            }
            walk_expr(&f.value_expr, scope, out);
            if let Some(c) = &f.cond_expr {
                walk_expr(c, scope, out);
            }
            scope.bound.truncate(n);
        }
        _ => {}
    }
}

fn walk_template_expr(t: &TemplateExpr, scope: &mut Scope, out: &mut Vec<Reference>) {
    // hcl::parse already parsed the template of a file that loaded, so this succeeds.
    if let Ok(template) = Template::from_expr(t) {
        walk_template(&template, scope, out);
    }
}

fn walk_template(template: &Template, scope: &mut Scope, out: &mut Vec<Reference>) {
    for element in template.elements() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk_expr(&i.expr, scope, out),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(d) => {
                    walk_expr(&d.cond_expr, scope, out);
                    walk_template(&d.true_template, scope, out);
                    if let Some(f) = &d.false_template {
                        walk_template(f, scope, out);
                    }
                }
                Directive::For(d) => {
                    walk_expr(&d.collection_expr, scope, out);
                    let n = scope.bound.len();
                    scope
                        .bound
                        .extend(d.key_var.iter().map(|k| k.as_str().to_string()));
                    scope.bound.push(d.value_var.as_str().to_string());
                    walk_template(&d.template, scope, out);
                    scope.bound.truncate(n);
                }
            },
        }
    }
}

/// The arguments of every call to `name`, anywhere in `body`.
fn collect_calls(body: &Body, name: &str, out: &mut Vec<Vec<Expression>>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => collect_calls_expr(a.expr(), name, out),
            Structure::Block(b) => collect_calls(b.body(), name, out),
        }
    }
}

fn collect_calls_expr(e: &Expression, name: &str, out: &mut Vec<Vec<Expression>>) {
    match e {
        Expression::FuncCall(f) => {
            if f.name.name.as_str() == name && f.name.namespace.is_empty() {
                out.push(f.args.clone());
            }
            f.args.iter().for_each(|a| collect_calls_expr(a, name, out));
        }
        Expression::Array(items) => items.iter().for_each(|i| collect_calls_expr(i, name, out)),
        Expression::Object(o) => o.values().for_each(|v| collect_calls_expr(v, name, out)),
        Expression::Parenthesis(p) => collect_calls_expr(p, name, out),
        Expression::Conditional(c) => {
            collect_calls_expr(&c.cond_expr, name, out);
            collect_calls_expr(&c.true_expr, name, out);
            collect_calls_expr(&c.false_expr, name, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => collect_calls_expr(&u.expr, name, out),
            hcl::expr::Operation::Binary(b) => {
                collect_calls_expr(&b.lhs_expr, name, out);
                collect_calls_expr(&b.rhs_expr, name, out);
            }
        },
        Expression::ForExpr(f) => {
            collect_calls_expr(&f.collection_expr, name, out);
            collect_calls_expr(&f.value_expr, name, out);
        }
        Expression::Traversal(t) => collect_calls_expr(&t.expr, name, out),
        Expression::TemplateExpr(t) => {
            if let Ok(template) = Template::from_expr(t) {
                for el in template.elements() {
                    if let Element::Interpolation(i) = el {
                        collect_calls_expr(&i.expr, name, out);
                    }
                }
            }
        }
        _ => {}
    }
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
