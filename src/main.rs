//! The `tradeloop` binary: command line, config loading, wiring. The only crate that uses
//! anyhow; mimalloc is the global allocator.

#![forbid(unsafe_code)]

mod bench;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{process_env, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Low-latency in-process trading-loop engine.
#[derive(Parser, Debug)]
#[command(name = "tradeloop", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate or print the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Latency benchmark of the hot path (lane hop, dispatch through the loop).
    Bench {
        /// Measured events per figure (after 10,000 warm-up events).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Print one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Validate the merged configuration (file + TRADELOOP__ environment overrides).
    Check,
    /// Print the merged configuration with secrets redacted.
    Print,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = process_env();
    let config = Config::load(&cli.config, &env)
        .with_context(|| format!("invalid configuration {}", cli.config.display()))?;
    match cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => {
            println!(
                "{}: ok ({} mode, {} instrument(s), {} venue(s), strategy {:?}, persistence {:?})",
                cli.config.display(),
                match config.mode {
                    config::Mode::Paper => "paper",
                    config::Mode::Live => "live",
                },
                config.instruments.len(),
                config.venues.len(),
                config.strategy.name,
                config.persistence.backend,
            );
        }
        Command::Config {
            action: ConfigAction::Print,
        } => {
            print!(
                "{}",
                config
                    .to_redacted_toml(&env)
                    .context("cannot print the configuration")?
            );
        }
        Command::Bench { events, json } => {
            anyhow::ensure!(events > 0, "--events must be at least 1");
            let report = bench::run(&config, events)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("cannot encode the report")?
                );
            } else {
                print!("{}", bench::table(&report));
            }
        }
    }
    Ok(())
}
