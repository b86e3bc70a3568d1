//! The walk over HCL bodies, expressions and templates: the references they make (roots bound
//! by `for` expressions and `dynamic` blocks excluded) and the calls of a named function.

use hcl::expr::{Expression, ObjectKey, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body, Structure};

/// A reference: `root.attr.attr...` (indexes end the chain).
#[derive(Debug)]
pub(super) struct Reference {
    pub(super) root: String,
    pub(super) attrs: Vec<String>,
    pub(super) text: String,
}

/// Names bound by enclosing `for` expressions and `dynamic` blocks.
#[derive(Default)]
pub(super) struct Scope {
    bound: Vec<String>,
}

impl Scope {
    pub(super) fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }
}

pub(super) fn walk_body(body: &Body, scope: &mut Scope, out: &mut Vec<Reference>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => walk_expr(a.expr(), scope, out),
            Structure::Block(b) => walk_block(b, scope, out),
        }
    }
}

pub(super) fn walk_block(block: &Block, scope: &mut Scope, out: &mut Vec<Reference>) {
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

pub(super) fn walk_expr(e: &Expression, scope: &mut Scope, out: &mut Vec<Reference>) {
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

pub(super) fn walk_template_expr(t: &TemplateExpr, scope: &mut Scope, out: &mut Vec<Reference>) {
    // hcl::parse already parsed the template of a file that loaded, so this succeeds.
    if let Ok(template) = Template::from_expr(t) {
        walk_template(&template, scope, out);
    }
}

pub(super) fn walk_template(template: &Template, scope: &mut Scope, out: &mut Vec<Reference>) {
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
pub(super) fn collect_calls(body: &Body, name: &str, out: &mut Vec<Vec<Expression>>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => collect_calls_expr(a.expr(), name, out),
            Structure::Block(b) => collect_calls(b.body(), name, out),
        }
    }
}

pub(super) fn collect_calls_expr(e: &Expression, name: &str, out: &mut Vec<Vec<Expression>>) {
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
