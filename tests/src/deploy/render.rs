//! Terraform's `templatefile()` for the module's templates: hcl-rs evaluates the template
//! language (`${...}`, `%{ if }`, `%{ for }`, strip markers, `$${` escapes); the two functions
//! the templates call are defined here as Terraform defines them.

use std::collections::BTreeSet;
use std::path::Path;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::template::Template;
use hcl::Value;

/// `jsonencode(value)`: JSON with no insignificant whitespace (TOML reads such arrays as is).
fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    let value = args.first().ok_or("jsonencode needs an argument")?;
    serde_json::to_string(value)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

/// `chomp(string)`: the string without its trailing newlines.
fn chomp(args: FuncArgs) -> Result<Value, String> {
    match args.first() {
        Some(Value::String(s)) => Ok(Value::String(s.trim_end_matches(['\n', '\r']).to_string())),
        other => Err(format!("chomp needs a string, got {other:?}")),
    }
}

/// Renders the template at `path` with exactly `vars`: a variable the template uses and `vars`
/// lacks fails the evaluation; one `vars` has and the template does not use is an error too,
/// as the checks of the module's `templatefile()` calls make it one.
pub fn render(path: &Path, vars: &[(&str, Value)]) -> Result<String, String> {
    let used = super::tf::template_variables(path)?;
    let given: BTreeSet<String> = vars.iter().map(|(k, _)| k.to_string()).collect();
    if used != given {
        return Err(format!(
            "{}: uses {used:?}, given {given:?}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let template: Template = text.parse().map_err(|e| format!("{e}"))?;
    let mut ctx = Context::new();
    for (name, value) in vars {
        ctx.declare_var(*name, value.clone());
    }
    declare_functions(&mut ctx);
    template
        .evaluate(&ctx)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The functions templates (and the modules' string templates) call.
pub fn declare_functions(ctx: &mut Context) {
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(ParamType::Any).build(jsonencode),
    );
    ctx.declare_func(
        "chomp",
        FuncDef::builder().param(ParamType::String).build(chomp),
    );
}

pub fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

pub fn numbers(items: &[u64]) -> Value {
    Value::Array(items.iter().map(|n| Value::from(*n)).collect())
}
