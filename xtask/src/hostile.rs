//! `cargo xtask hostile`: the hostile-traffic runner at full size.
//!
//! Builds rebuilder and the runner in release mode, makes sure GNU time is there (it reports
//! the peak RSS), and runs `rebuilder-hostile`: every attack (1M SYNs, 100k half-open flows,
//! endless bodies, 1 MB header lines, broken VXLAN, ...) with legitimate connections
//! interleaved, replayed to a recording sink; then peak RSS at 10k and 100k concurrent flows;
//! then the upstream faults (each down for 10 s), SIGTERM under load, a full XDP ring (as root)
//! and a live flood. `--outage 5m` adds the long upstream outage (5 minutes of steady traffic
//! with the WAF down: flat memory, drops by reason, replay back within 1 s); it is off by
//! default so that the default run stays a few minutes. Arguments go to the runner (`cargo
//! xtask hostile --help`, `--scale ci`, `--case NAME`, `--outage 5m --no-cases --no-faults
//! --flows 0` for the outage alone).

use std::process::Command;

use anyhow::Result;

use crate::deps::{self, Need};
use crate::{cargo, release_bin, run};

const TIME: &[Need] = &[Need {
    what: "GNU time (peak RSS)",
    paths: &["/usr/bin/time"],
    package: "time",
}];

pub fn hostile(args: &[String]) -> Result<()> {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    deps::ensure(deps::BUILD)?;
    deps::ensure(TIME)?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "rebuilder",
        "-p",
        "rebuilder-tests",
        "--bins",
    ]))?;
    run(Command::new(release_bin("rebuilder-hostile"))
        .arg("--rebuilder")
        .arg(release_bin("rebuilder"))
        .args(args))
}
