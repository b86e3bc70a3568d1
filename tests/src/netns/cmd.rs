//! Running `ip` and `tc`: output on success, a typed error carrying stderr on failure.

use std::io;
use std::process::{Command, Output};

use super::{NetnsError, Result};

fn describe(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn spawn_error(program: &'static str, e: io::Error) -> NetnsError {
    if e.kind() == io::ErrorKind::NotFound {
        NetnsError::MissingTool {
            tool: program,
            source: e,
        }
    } else {
        NetnsError::Io(e)
    }
}

fn check(program: &str, args: &[&str], out: Output) -> Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NetnsError::Command {
        command: describe(program, args),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Runs `program args` (one of the iproute2 tools) to completion.
pub(crate) fn run(program: &'static str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| spawn_error(program, e))?;
    check(program, args, out)
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// `tc ARGS`.
pub fn tc(args: &[&str]) -> Result<String> {
    run("tc", args)
}

/// Fails with [`NetnsError::MissingTool`] unless `program args` runs and succeeds.
pub(crate) fn probe_tool(program: &'static str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| spawn_error(program, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::MissingTool {
            tool: program,
            source: io::Error::other(format!(
                "`{}` exited with {}",
                describe(program, args),
                out.status
            )),
        })
    }
}
