//! The `rebuilder` binary: parses the command line, sets up logging, runs the pipeline.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use rebuilder::cli::{Cli, Command};
use rebuilder::config::{LogFormat, Settings};
use rebuilder::pipeline::{self, Input};

fn main() -> ExitCode {
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
            let summary = pipeline::run(&settings, Input::Udp, stop)?;
            summary
                .print(std::io::stderr())
                .context("writing the summary")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(_) => {
            anyhow::bail!("`rebuilder check` arrives with the XDP input")
        }
    }
}
