//! What `terraform plan` checks before it talks to AWS, for one module and given variables:
//! every `validation` of every variable, the `locals`, and the `precondition`s of the resources
//! that would exist (`count` not 0). Resources and data sources are stand-ins given by the test
//! (AWS would compute them); everything else is the module's own expressions, evaluated by
//! [`super::eval`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::expr::Expression;
use hcl::{Block, Body, Map, Value};

use super::eval::{self, Scope};

/// A variable's declaration: its default (if any) and its validations.
pub struct Variable {
    pub default: Option<Expression>,
    pub validations: Vec<(Expression, Expression)>,
}

/// The parsed `.tf` files of a module.
pub struct Source {
    pub dir: PathBuf,
    pub bodies: Vec<(String, Body)>,
}

impl Source {
    pub fn load(dir: &Path) -> Source {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "tf"))
            .collect();
        names.sort();
        let bodies = names
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", p.display()));
                (p.file_name().unwrap().to_string_lossy().into_owned(), body)
            })
            .collect();
        Source {
            dir: dir.to_path_buf(),
            bodies,
        }
    }

    fn blocks<'a>(&'a self, identifier: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.bodies
            .iter()
            .flat_map(|(_, b)| b.blocks())
            .filter(move |b| b.identifier() == identifier)
    }

    pub fn variables(&self) -> BTreeMap<String, Variable> {
        self.blocks("variable")
            .map(|b| {
                let name = b.labels()[0].as_str().to_string();
                let default = attr(b.body(), "default").cloned();
                let validations = b
                    .body()
                    .blocks()
                    .filter(|v| v.identifier() == "validation")
                    .map(|v| {
                        (
                            attr(v.body(), "condition").unwrap().clone(),
                            attr(v.body(), "error_message").unwrap().clone(),
                        )
                    })
                    .collect();
                (
                    name,
                    Variable {
                        default,
                        validations,
                    },
                )
            })
            .collect()
    }

    /// The block `resource "KIND" "NAME"` (or `data`, `module`: then `kind` is the only label).
    pub fn block<'a>(&'a self, identifier: &'a str, labels: &[&str]) -> &'a Block {
        self.blocks(identifier)
            .find(|b| {
                b.labels()
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
            })
            .unwrap_or_else(|| panic!("no {identifier} {labels:?} in {}", self.dir.display()))
    }
}

pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// The expression at `path` inside `block`: attribute names, nested block names in between.
pub fn nested<'a>(block: &'a Block, path: &[&str]) -> &'a Expression {
    let (last, blocks) = path.split_last().unwrap();
    let mut body = block.body();
    for b in blocks {
        body = body
            .blocks()
            .find(|x| x.identifier() == *b)
            .unwrap_or_else(|| panic!("no block {b} in {:?}", block.labels()))
            .body();
    }
    attr(body, last).unwrap_or_else(|| panic!("no attribute {last} in {path:?}"))
}

/// A failed validation or precondition: where, and its message as Terraform would print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub at: String,
    pub message: String,
}

/// A module planned with some variables.
pub struct Plan {
    pub source: Source,
    pub scope: Scope,
    /// Locals that could not be evaluated, with the reason.
    pub unevaluated: BTreeMap<String, String>,
}

/// The variables' values: defaults, overridden by `given`. A required variable not given is an
/// error, as is a given one the module does not declare.
fn variable_values(source: &Source, given: &[(&str, Value)]) -> Result<Map<String, Value>, String> {
    let decls = source.variables();
    let mut out = Map::new();
    for (name, v) in &decls {
        if let Some(d) = &v.default {
            out.insert(name.clone(), eval::eval(d, &Scope::new())?);
        }
    }
    for (k, v) in given {
        if !decls.contains_key(*k) {
            return Err(format!("{} has no variable {k}", source.dir.display()));
        }
        out.insert(k.to_string(), v.clone());
    }
    for name in decls.keys() {
        if !out.contains_key(name) {
            return Err(format!("required variable {name} is not given"));
        }
    }
    Ok(out)
}

/// Runs every variable validation; the refusals, with Terraform's messages.
pub fn validate(dir: &Path, given: &[(&str, Value)]) -> Result<Vec<Refusal>, String> {
    let source = Source::load(dir);
    let values = variable_values(&source, given)?;
    let mut scope = Scope::new();
    scope.set("var", Value::Object(values));
    let mut out = Vec::new();
    for (name, v) in source.variables() {
        for (condition, message) in &v.validations {
            // An error evaluating the condition is a refusal too ("Invalid value for variable").
            let ok = eval::eval(condition, &scope)
                .map_err(|e| format!("the condition fails to evaluate: {e}"))
                .and_then(|c| match c {
                    Value::Bool(b) => Ok(b),
                    other => Err(format!("the condition is {other:?}, not a bool")),
                });
            match ok {
                Ok(true) => {}
                Ok(false) => out.push(Refusal {
                    at: format!("var.{name}"),
                    message: eval::eval(message, &scope).map_or_else(
                        |e| format!("(message fails: {e})"),
                        |m| match m {
                            Value::String(s) => s,
                            other => format!("{other:?}"),
                        },
                    ),
                }),
                Err(e) => out.push(Refusal {
                    at: format!("var.{name}"),
                    message: e,
                }),
            }
        }
    }
    Ok(out)
}

/// Validates, then evaluates the locals (in whatever order their references allow), with
/// `stubs` standing in for resources and data sources (`data` is one of them).
pub fn plan(dir: &Path, given: &[(&str, Value)], stubs: &[(&str, Value)]) -> Result<Plan, String> {
    let refusals = validate(dir, given)?;
    if !refusals.is_empty() {
        return Err(format!("validation fails: {refusals:?}"));
    }
    let source = Source::load(dir);
    let mut scope = Scope::new();
    scope.set("var", Value::Object(variable_values(&source, given)?));
    eval::declare_templatefile(&mut scope, dir);
    for (k, v) in stubs {
        scope.set(k, v.clone());
    }
    let locals: Vec<(String, Expression)> = source
        .blocks("locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (a.key().to_string(), a.expr().clone()))
        .collect();
    let mut done = Map::new();
    let mut unevaluated = BTreeMap::new();
    loop {
        let mut progress = false;
        unevaluated.clear();
        for (name, e) in &locals {
            if done.contains_key(name) {
                continue;
            }
            scope.set("local", Value::Object(done.clone()));
            match eval::eval_with_templates(e, &scope) {
                Ok(v) => {
                    done.insert(name.clone(), v);
                    progress = true;
                }
                Err(err) => {
                    unevaluated.insert(name.clone(), err);
                }
            }
        }
        if !progress {
            break;
        }
    }
    scope.set("local", Value::Object(done));
    Ok(Plan {
        source,
        scope,
        unevaluated,
    })
}

impl Plan {
    pub fn local(&self, name: &str) -> Value {
        match self.scope.get("local") {
            Some(Value::Object(o)) if o.contains_key(name) => o[name].clone(),
            _ => panic!(
                "local.{name} not evaluated: {}",
                self.unevaluated
                    .get(name)
                    .map_or("not declared", String::as_str)
            ),
        }
    }

    pub fn eval(&self, e: &Expression) -> Value {
        eval::eval(e, &self.scope).unwrap_or_else(|err| panic!("{e:?}: {err}"))
    }

    /// `count` of a resource (1 without one).
    pub fn count(&self, kind: &str, name: &str) -> u64 {
        let block = self.source.block("resource", &[kind, name]);
        match attr(block.body(), "count") {
            None => 1,
            Some(e) => match self.eval(e) {
                Value::Number(n) => n.as_u64().unwrap(),
                other => panic!("count of {kind}.{name} is {other:?}"),
            },
        }
    }

    /// The expression at `path` in resource `kind.name`, evaluated.
    pub fn resource_attr(&self, kind: &str, name: &str, path: &[&str]) -> Value {
        self.eval(nested(self.source.block("resource", &[kind, name]), path))
    }

    /// The failing preconditions of every resource that would exist.
    pub fn preconditions(&self) -> Vec<Refusal> {
        let mut out = Vec::new();
        for block in self.source.blocks("resource") {
            let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
            if self.count(labels[0], labels[1]) == 0 {
                continue;
            }
            for lifecycle in block
                .body()
                .blocks()
                .filter(|b| b.identifier() == "lifecycle")
            {
                for pre in lifecycle
                    .body()
                    .blocks()
                    .filter(|b| b.identifier() == "precondition")
                {
                    let condition = attr(pre.body(), "condition").unwrap();
                    if self.eval(condition) != Value::Bool(true) {
                        let message = match self.eval(attr(pre.body(), "error_message").unwrap()) {
                            Value::String(s) => s,
                            other => format!("{other:?}"),
                        };
                        out.push(Refusal {
                            at: labels.join("."),
                            message,
                        });
                    }
                }
            }
        }
        out
    }
}

/// An object from `(key, value)` pairs, for stand-ins.
pub fn object(pairs: &[(&str, Value)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}
