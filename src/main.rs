//! The `tradeloop` binary: command line, config loading, wiring. The only crate that uses
//! anyhow; mimalloc is the global allocator.

#![forbid(unsafe_code)]

mod bench;
mod config;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the trading bot: connect the configured feeds (the offline simulated venue by
    /// default), run the strategy and risk, print a periodic status; Ctrl-C stops it cleanly.
    Run {
        /// Stop cleanly after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Log format (RUST_LOG sets the level; default info).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = process_env();
    let config = Config::load(&cli.config, &env)
        .with_context(|| format!("invalid configuration {}", cli.config.display()))?;
    match cli.command {
        Command::Run {
            duration,
            log_format,
        } => {
            init_logging(log_format);
            let duration = match duration {
                Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
                Some(d) => {
                    anyhow::bail!("--duration must be a positive number of seconds, got {d}")
                }
                None => None,
            };
            let stop = Arc::new(AtomicBool::new(false));
            {
                let stop = Arc::clone(&stop);
                ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
                    .context("cannot install the Ctrl-C handler")?;
            }
            run::run(&config, run::RunOptions { duration }, &stop)?;
        }
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
