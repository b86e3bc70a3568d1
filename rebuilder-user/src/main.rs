//! The `rebuilder` binary: parses the command line, sets up logging, runs the pipeline.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use rebuilder::capture::xdp::{self, XdpConfig};
use rebuilder::cli::{Cli, Command};
use rebuilder::config::{LogFormat, Settings};
use rebuilder::pipeline::{self, Input};

// mimalloc rather than glibc's malloc: every request is allocated by a worker thread and freed
// by an output thread, and glibc's arenas serialise those cross-thread frees on a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the system at once, since the memory
    // budget is the process's RSS.
    rebuilder::memory::configure_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rebuilder: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(s: &Settings) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&s.log.level))
        .with_context(|| format!("invalid log filter {:?}", s.log.level))?;
    // Logs go to stderr: stdout may carry the JSON lines output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match s.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    let settings = cli.settings()?;
    init_logging(&settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    match cli.command {
        Command::Replay(args) => {
            let input = Input::Pcap {
                path: args.pcap.clone(),
                pace: args.pace.map(|p| p.0),
                progress: !args.no_progress,
            };
            let summary = pipeline::run(&settings, input, stop)
                .with_context(|| format!("replaying {}", args.pcap.display()))?;
            summary
                .print(std::io::stderr())
                .context("writing the summary")?;
            if let Some(e) = &summary.read_error {
                anyhow::bail!("reading {} stopped early: {e}", args.pcap.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(_) => {
            let (input, what) = match &settings.xdp.iface {
                Some(iface) => (Input::Xdp, format!("capturing through XDP on {iface}")),
                None => (
                    Input::Udp,
                    format!("capturing VXLAN on UDP {}", settings.udp.listen),
                ),
            };
            let summary = pipeline::run(&settings, input, stop).context(what.clone())?;
            summary
                .print(std::io::stderr())
                .context("writing the summary")?;
            if let Some(e) = &summary.read_error {
                anyhow::bail!("{what} stopped: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let iface = settings.xdp.iface.as_deref();
            let program = XdpConfig::from_settings(&settings, iface.unwrap_or_default());
            let report = xdp::check(&program.program_config(), iface, !args.no_attach_test);
            report
                .print(std::io::stdout().lock())
                .context("writing the report")?;
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
