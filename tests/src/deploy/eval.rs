//! Terraform's expression language, evaluated without terraform: enough of it to run the
//! modules' `validation` conditions, `precondition`s and `locals` on given variables, as
//! `terraform plan` would. hcl-rs parses; this evaluates, because Terraform's `can()` and
//! `try()` catch the errors of their argument, which an evaluator of evaluated arguments (such
//! as hcl-rs's own) cannot express.
//!
//! Where Terraform's behaviour differs between versions, this takes the strict side, so that a
//! condition passing here passes on every Terraform the modules allow (>= 1.5): `&&` and `||`
//! evaluate both operands (short-circuiting came later), and functions refuse `null`.
//! Conditionals evaluate only the branch taken, as Terraform always has.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use hcl::eval::{Context, Evaluate};
use hcl::expr::{
    BinaryOperator, Expression, ObjectKey, TemplateExpr, TraversalOperator, UnaryOperator,
};
use hcl::template::Template;
use hcl::{Map, Number, Value};

/// The names an expression can see: `var`, `local`, resources, `data`, `path`, loop variables.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    names: BTreeMap<String, Value>,
}

impl Scope {
    pub fn new() -> Scope {
        Scope::default()
    }

    pub fn set(&mut self, name: &str, value: Value) -> &mut Scope {
        self.names.insert(name.to_string(), value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.names.get(name)
    }

    fn with(&self, name: &str, value: Value) -> Scope {
        let mut s = self.clone();
        s.set(name, value);
        s
    }

    /// An hcl-rs context holding the same names, for template expressions.
    fn context(&self) -> Context<'_> {
        let mut ctx = Context::new();
        for (k, v) in &self.names {
            ctx.declare_var(k.as_str(), v.clone());
        }
        super::render::declare_functions(&mut ctx);
        ctx
    }
}

pub type Result<T> = std::result::Result<T, String>;

fn num(v: &Value, what: &str) -> Result<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{what}: {n} is not finite")),
        // Terraform converts numeric strings where a number is wanted.
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("{what}: a number is required, got {s:?}")),
        other => Err(format!("{what}: a number is required, got {other:?}")),
    }
}

fn number(f: f64) -> Result<Value> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Ok(Value::Number(Number::from(f as i64)))
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} is not a number"))
    }
}

fn boolean(v: &Value, what: &str) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(format!("{what}: a bool is required, got {other:?}")),
    }
}

fn string(v: &Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{what}: a string is required, got {other:?}")),
    }
}

fn list(v: &Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        other => Err(format!("{what}: a list is required, got {other:?}")),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Evaluates `e` in `scope`.
pub fn eval(e: &Expression, scope: &Scope) -> Result<Value> {
    match e {
        Expression::Null => Ok(Value::Null),
        Expression::Bool(b) => Ok(Value::Bool(*b)),
        Expression::Number(n) => Ok(Value::Number(*n)),
        Expression::String(s) => Ok(Value::String(s.clone())),
        Expression::Array(items) => items
            .iter()
            .map(|i| eval(i, scope))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        Expression::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let key = match k {
                    ObjectKey::Identifier(i) => i.as_str().to_string(),
                    ObjectKey::Expression(Expression::Variable(v)) => v.as_str().to_string(),
                    ObjectKey::Expression(k) => string(&eval(k, scope)?, "object key")?,
                    other => return Err(format!("object key {other:?}")),
                };
                out.insert(key, eval(v, scope)?);
            }
            Ok(Value::Object(out))
        }
        Expression::TemplateExpr(t) => template(t, scope),
        Expression::Variable(v) => scope
            .get(v.as_str())
            .cloned()
            .ok_or_else(|| format!("unknown name {}", v.as_str())),
        Expression::Traversal(t) => {
            let base = eval(&t.expr, scope)?;
            traverse(base, &t.operators, scope)
        }
        Expression::FuncCall(f) => call(f.name.name.as_str(), &f.args, scope),
        Expression::Parenthesis(p) => eval(p, scope),
        Expression::Conditional(c) => {
            if boolean(&eval(&c.cond_expr, scope)?, "condition")? {
                eval(&c.true_expr, scope)
            } else {
                eval(&c.false_expr, scope)
            }
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => {
                let v = eval(&u.expr, scope)?;
                match u.operator {
                    UnaryOperator::Not => Ok(Value::Bool(!boolean(&v, "!")?)),
                    UnaryOperator::Neg => number(-num(&v, "-")?),
                }
            }
            hcl::expr::Operation::Binary(b) => {
                // Both operands, always (see the module comment).
                let l = eval(&b.lhs_expr, scope)?;
                let r = eval(&b.rhs_expr, scope)?;
                binary(b.operator, &l, &r)
            }
        },
        Expression::ForExpr(f) => {
            if f.grouping {
                return Err("grouping for expressions are not supported here".into());
            }
            let items: Vec<(Value, Value)> = match eval(&f.collection_expr, scope)? {
                Value::Array(a) => a
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (Value::from(i as u64), v))
                    .collect(),
                Value::Object(o) => o.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
                other => return Err(format!("for over {other:?}")),
            };
            let mut array = Vec::new();
            let mut object = Map::new();
            for (k, v) in items {
                let mut s = scope.with(f.value_var.as_str(), v);
                if let Some(kv) = &f.key_var {
                    s = s.with(kv.as_str(), k);
                }
                if let Some(c) = &f.cond_expr {
                    if !boolean(&eval(c, &s)?, "for condition")? {
                        continue;
                    }
                }
                let value = eval(&f.value_expr, &s)?;
                match &f.key_expr {
                    Some(ke) => {
                        let key = string(&eval(ke, &s)?, "for key")?;
                        if object.insert(key.clone(), value).is_some() {
                            return Err(format!("duplicate key {key:?} in a for expression"));
                        }
                    }
                    None => array.push(value),
                }
            }
            Ok(if f.key_expr.is_some() {
                Value::Object(object)
            } else {
                Value::Array(array)
            })
        }
        other => Err(format!("expression {other:?} is not supported here")),
    }
}

fn template(t: &TemplateExpr, scope: &Scope) -> Result<Value> {
    let template = Template::from_expr(t).map_err(|e| e.to_string())?;
    template
        .evaluate(&scope.context())
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn traverse(mut v: Value, ops: &[TraversalOperator], scope: &Scope) -> Result<Value> {
    for (i, op) in ops.iter().enumerate() {
        v = match op {
            TraversalOperator::GetAttr(a) => match v {
                Value::Object(o) => o
                    .get(a.as_str())
                    .cloned()
                    .ok_or_else(|| format!("no attribute {:?}", a.as_str()))?,
                other => return Err(format!("attribute {:?} of {other:?}", a.as_str())),
            },
            TraversalOperator::Index(ix) => {
                let ix = eval(ix, scope)?;
                match v {
                    Value::Array(a) => {
                        let n = num(&ix, "index")?;
                        if n < 0.0 || n.fract() != 0.0 {
                            return Err(format!("index {n}"));
                        }
                        a.get(n as usize)
                            .cloned()
                            .ok_or_else(|| format!("index {n} out of range"))?
                    }
                    Value::Object(o) => {
                        let k = string(&ix, "key")?;
                        o.get(&k).cloned().ok_or_else(|| format!("no key {k:?}"))?
                    }
                    other => return Err(format!("index into {other:?}")),
                }
            }
            TraversalOperator::LegacyIndex(n) => match v {
                Value::Array(a) => a
                    .get(*n as usize)
                    .cloned()
                    .ok_or_else(|| format!("index {n} out of range"))?,
                other => return Err(format!("index into {other:?}")),
            },
            TraversalOperator::FullSplat | TraversalOperator::AttrSplat => {
                let items = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a,
                    single => vec![single],
                };
                let rest = &ops[i + 1..];
                return items
                    .into_iter()
                    .map(|item| traverse(item, rest, scope))
                    .collect::<Result<Vec<_>>>()
                    .map(Value::Array);
            }
        };
    }
    Ok(v)
}

fn binary(op: BinaryOperator, l: &Value, r: &Value) -> Result<Value> {
    use BinaryOperator::*;
    Ok(match op {
        Eq => Value::Bool(equal(l, r)),
        NotEq => Value::Bool(!equal(l, r)),
        And => Value::Bool(boolean(l, "&&")? & boolean(r, "&&")?),
        Or => Value::Bool(boolean(l, "||")? | boolean(r, "||")?),
        Less => Value::Bool(num(l, "<")? < num(r, "<")?),
        LessEq => Value::Bool(num(l, "<=")? <= num(r, "<=")?),
        Greater => Value::Bool(num(l, ">")? > num(r, ">")?),
        GreaterEq => Value::Bool(num(l, ">=")? >= num(r, ">=")?),
        Plus => number(num(l, "+")? + num(r, "+")?)?,
        Minus => number(num(l, "-")? - num(r, "-")?)?,
        Mul => number(num(l, "*")? * num(r, "*")?)?,
        Div => {
            let d = num(r, "/")?;
            if d == 0.0 {
                return Err("division by zero".into());
            }
            number(num(l, "/")? / d)?
        }
        Mod => {
            let d = num(r, "%")?;
            if d == 0.0 {
                return Err("modulo by zero".into());
            }
            number(num(l, "%")? % d)?
        }
    })
}

fn no_null(name: &str, args: &[Value]) -> Result<()> {
    if args.iter().any(|a| matches!(a, Value::Null)) {
        Err(format!("{name}() refuses a null argument"))
    } else {
        Ok(())
    }
}

/// Terraform's `regex(pattern, string)`: the match, the list of its groups, or the object of
/// its named groups; no match is an error (which `can()` turns into false).
fn regex_match(pattern: &str, s: &str) -> Result<Value> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("regex {pattern:?}: {e}"))?;
    let caps = re
        .captures(s)
        .ok_or_else(|| format!("regex {pattern:?} does not match {s:?}"))?;
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    if names.is_empty() {
        return Ok(Value::String(caps[0].to_string()));
    }
    if names.iter().all(|n| n.is_some()) {
        let mut o = Map::new();
        for n in names.into_iter().flatten() {
            o.insert(
                n.to_string(),
                caps.name(n)
                    .map_or(Value::Null, |m| Value::String(m.as_str().into())),
            );
        }
        return Ok(Value::Object(o));
    }
    Ok(Value::Array(
        (1..caps.len())
            .map(|i| {
                caps.get(i)
                    .map_or(Value::Null, |m| Value::String(m.as_str().into()))
            })
            .collect(),
    ))
}

fn cidrhost(prefix: &str, host: f64) -> Result<Value> {
    let (addr, bits) = prefix
        .split_once('/')
        .ok_or_else(|| format!("{prefix:?} is not a CIDR block"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{prefix:?} is not a CIDR block"))?;
    let bits: u32 = bits
        .parse()
        .map_err(|_| format!("{prefix:?} is not a CIDR block"))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    if bits > width || host < 0.0 || host.fract() != 0.0 {
        return Err(format!("cidrhost({prefix:?}, {host})"));
    }
    let host_bits = width - bits;
    if host_bits < 64 && host >= 2f64.powi(host_bits as i32) {
        return Err(format!("prefix {prefix} has no host {host}"));
    }
    Ok(Value::String(addr.to_string()))
}

/// `values()`, `keys()` and sets list object keys in lexical order, as Terraform does.
fn call(name: &str, args: &[Expression], scope: &Scope) -> Result<Value> {
    match name {
        "can" => {
            let [arg] = args else {
                return Err("can() takes one argument".into());
            };
            return Ok(Value::Bool(eval(arg, scope).is_ok()));
        }
        "try" => {
            let mut last = String::from("try() needs arguments");
            for a in args {
                match eval(a, scope) {
                    Ok(v) => return Ok(v),
                    Err(e) => last = e,
                }
            }
            return Err(format!("no argument of try() succeeded: {last}"));
        }
        _ => {}
    }
    let a: Vec<Value> = args.iter().map(|e| eval(e, scope)).collect::<Result<_>>()?;
    let arg = |i: usize| {
        a.get(i)
            .ok_or_else(|| format!("{name}() needs argument {}", i + 1))
    };
    match name {
        // Functions that take null as a value.
        "one" => {
            let l = list(arg(0)?, "one")?;
            return match l.len() {
                0 => Ok(Value::Null),
                1 => Ok(l[0].clone()),
                n => Err(format!("one() of {n} elements")),
            };
        }
        "tonumber" if matches!(arg(0)?, Value::Null) => return Ok(Value::Null),
        "nonsensitive" => return Ok(arg(0)?.clone()),
        "jsonencode" | "yamlencode" => {
            // JSON is YAML too: a YAML reader takes yamlencode's output either way.
            return serde_json::to_string(arg(0)?)
                .map(Value::String)
                .map_err(|e| e.to_string());
        }
        "merge" => {
            let mut out = Map::new();
            for v in &a {
                match v {
                    Value::Null => {}
                    Value::Object(o) => out.extend(o.clone()),
                    other => return Err(format!("merge() of {other:?}")),
                }
            }
            return Ok(Value::Object(out));
        }
        _ => no_null(name, &a)?,
    }
    match name {
        "length" => Ok(Value::from(match arg(0)? {
            Value::String(s) => s.chars().count() as u64,
            Value::Array(x) => x.len() as u64,
            Value::Object(o) => o.len() as u64,
            other => return Err(format!("length() of {other:?}")),
        })),
        "floor" => number(num(arg(0)?, "floor")?.floor()),
        "abs" => number(num(arg(0)?, "abs")?.abs()),
        "min" | "max" => {
            let ns = a.iter().map(|v| num(v, name)).collect::<Result<Vec<_>>>()?;
            let pick = if name == "min" {
                ns.iter().cloned().fold(f64::INFINITY, f64::min)
            } else {
                ns.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            };
            number(pick)
        }
        "alltrue" | "anytrue" => {
            let bs = list(arg(0)?, name)?
                .iter()
                .map(|v| boolean(v, name))
                .collect::<Result<Vec<_>>>()?;
            Ok(Value::Bool(if name == "alltrue" {
                bs.iter().all(|b| *b)
            } else {
                bs.iter().any(|b| *b)
            }))
        }
        "contains" => {
            let l = list(arg(0)?, "contains")?;
            let x = arg(1)?;
            Ok(Value::Bool(l.iter().any(|v| equal(v, x))))
        }
        "regex" => regex_match(&string(arg(0)?, "regex")?, &string(arg(1)?, "regex")?),
        "cidrhost" => cidrhost(&string(arg(0)?, "cidrhost")?, num(arg(1)?, "cidrhost")?),
        "lower" => Ok(Value::String(string(arg(0)?, "lower")?.to_lowercase())),
        "startswith" => Ok(Value::Bool(
            string(arg(0)?, name)?.starts_with(&string(arg(1)?, name)?),
        )),
        "endswith" => Ok(Value::Bool(
            string(arg(0)?, name)?.ends_with(&string(arg(1)?, name)?),
        )),
        "tostring" => Ok(Value::String(string(arg(0)?, "tostring")?)),
        "tonumber" => number(num(arg(0)?, "tonumber")?),
        "replace" => {
            let (s, from, to) = (
                string(arg(0)?, name)?,
                string(arg(1)?, name)?,
                string(arg(2)?, name)?,
            );
            match from
                .strip_prefix('/')
                .and_then(|f| f.strip_suffix('/'))
                .filter(|f| !f.is_empty())
            {
                Some(re) => {
                    let re =
                        regex::Regex::new(re).map_err(|e| format!("replace regex {re:?}: {e}"))?;
                    Ok(Value::String(re.replace_all(&s, to.as_str()).into_owned()))
                }
                None => Ok(Value::String(s.replace(&from, &to))),
            }
        }
        "concat" => {
            let mut out = Vec::new();
            for v in &a {
                out.extend(list(v, "concat")?);
            }
            Ok(Value::Array(out))
        }
        "flatten" => {
            fn flat(v: &Value, out: &mut Vec<Value>) {
                match v {
                    Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
                    other => out.push(other.clone()),
                }
            }
            let mut out = Vec::new();
            flat(arg(0)?, &mut out);
            Ok(Value::Array(out))
        }
        "values" | "keys" => match arg(0)? {
            Value::Object(o) => {
                let mut entries: Vec<(&String, &Value)> = o.iter().collect();
                entries.sort_by(|x, y| x.0.cmp(y.0));
                Ok(Value::Array(
                    entries
                        .into_iter()
                        .map(|(k, v)| {
                            if name == "keys" {
                                Value::String(k.clone())
                            } else {
                                v.clone()
                            }
                        })
                        .collect(),
                ))
            }
            other => Err(format!("{name}() of {other:?}")),
        },
        "toset" | "distinct" | "sort" => {
            let mut l = list(arg(0)?, name)?;
            let mut out: Vec<Value> = Vec::new();
            for v in l.drain(..) {
                if !out.iter().any(|w| equal(&v, w)) {
                    out.push(v);
                }
            }
            if name != "distinct" {
                // Sets of strings (and sort()) are in lexical order.
                let mut strings = out
                    .iter()
                    .map(|v| string(v, name))
                    .collect::<Result<Vec<_>>>()?;
                strings.sort();
                if name == "sort" || out.iter().all(|v| matches!(v, Value::String(_))) {
                    return Ok(Value::Array(
                        strings.into_iter().map(Value::String).collect(),
                    ));
                }
            }
            Ok(Value::Array(out))
        }
        other => Err(format!("function {other}() is not known to this evaluator")),
    }
}

/// `templatefile(path, vars)` for a module in `dir`: the path's `${path.module}` is `dir`.
pub fn declare_templatefile(scope: &mut Scope, dir: &Path) {
    let mut path = Map::new();
    path.insert(
        "module".to_string(),
        Value::String(dir.display().to_string()),
    );
    scope.set("path", Value::Object(path));
}

/// Evaluates a `templatefile()` call: path and variables from `args`, rendered by
/// [`super::render::render`].
pub fn templatefile(args: &[Expression], scope: &Scope) -> Result<Value> {
    let [path, vars] = args else {
        return Err("templatefile() takes two arguments".into());
    };
    let path = string(&eval(path, scope)?, "templatefile path")?;
    let Value::Object(vars) = eval(vars, scope)? else {
        return Err("templatefile() variables must be an object".into());
    };
    let vars: Vec<(&str, Value)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    super::render::render(Path::new(&path), &vars).map(Value::String)
}

/// Evaluates an expression where `templatefile()` may appear at the top of a conditional
/// branch (the only places the modules use it).
pub fn eval_with_templates(e: &Expression, scope: &Scope) -> Result<Value> {
    match e {
        Expression::FuncCall(f) if f.name.name.as_str() == "templatefile" => {
            templatefile(&f.args, scope)
        }
        Expression::Conditional(c) => {
            if boolean(&eval(&c.cond_expr, scope)?, "condition")? {
                eval_with_templates(&c.true_expr, scope)
            } else {
                eval_with_templates(&c.false_expr, scope)
            }
        }
        other => eval(other, scope),
    }
}
