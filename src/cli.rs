//! The command line: `run`, `backtest` (and `--sweep`), `convert`, `record`, `bench`,
//! `config check|print` and the rest, over a [`Registry`] of strategies. The `tradeloop`
//! binary is `cli::main::<Bundled>()`; a user's own binary passes its own registry and gets
//! the same commands for its strategies:
//!
//! ```no_run
//! tradeloop::strategies! {
//!     /// My strategies, by name.
//!     pub struct Mine { tradeloop::engine::strategies::MaCross }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     tradeloop::cli::main::<Mine>()
//! }
//! ```
//!
//! Off the hot path: it parses arguments, loads the configuration and starts the wiring.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, process_env, Config};
use crate::strategy::{Configurable, Registry, UseStrategy};
use crate::{backtest, bench, convert, hdrlog, hotpath, record, run, status, sweep};

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
        /// Save the engine's latency histograms (HdrHistogram interval log) here at the end
        /// (default results/run-<time>/latency.hlog).
        #[arg(long)]
        histograms: Option<PathBuf>,
        /// Do not save the latency histograms.
        #[arg(long, conflicts_with = "histograms")]
        no_histograms: bool,
        /// Live mode only: sign and log every order request instead of sending it (orders
        /// are reported rejected; account state is not read).
        #[arg(long)]
        dry_run: bool,
        /// Plain status lines on stderr even on a terminal (instead of the block redrawn in
        /// place).
        #[arg(long)]
        plain: bool,
    },
    /// Check the live venue without trading: keys, clock offset, symbols and filters, rate
    /// limits, balances or positions, open orders, user data stream. Sends no order.
    LiveCheck,
    /// Validate or print the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Replay recorded frames and/or Tardis CSV through the engine, strategy, risk and the
    /// simulated venue on a simulated clock; write summary.json, fills.csv and report.html.
    Backtest {
        /// Input files: `<recv_ns> <frame>` recordings (gz or plain) and Tardis trades /
        /// incremental_book_L2 CSV, merged in time order.
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
        /// Strategy to run, by registered name (default: `[strategy] name`); its parameters
        /// are `[strategy.NAME]`.
        #[arg(long)]
        strategy: Option<String>,
        /// Only events received at or after this time (ns since the epoch or RFC 3339 UTC).
        #[arg(long)]
        from: Option<String>,
        /// Only events received before this time.
        #[arg(long)]
        to: Option<String>,
        /// Output directory (default results/<run-id>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sweep a parameter: `key=v1,v2,...` (repeatable; every combination runs, one
        /// backtest per core at a time). A key without a dot is a strategy parameter
        /// (`fast=10,20,40`); others are dotted config keys (`risk.max_position=0.01,0.02`).
        #[arg(long)]
        sweep: Vec<String>,
        /// Sort the sweep's results by this metric.
        #[arg(long, value_enum, default_value = "net-pnl")]
        sort_by: sweep::SortBy,
        /// Replay the decodable part of a truncated or damaged recording instead of failing;
        /// summary.json then says `"partial": true`.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Convert recordings and Tardis CSV into one `.tle` file of normalized events (parsed
    /// and book-synced once), which `backtest --data FILE.tle` replays much faster.
    Convert {
        /// Input files: `<recv_ns> <frame>` recordings (gz or plain) and Tardis CSV.
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
        /// Output file (conventionally `*.tle`).
        #[arg(long)]
        out: PathBuf,
        /// Only input received at or after this time (ns since the epoch or RFC 3339 UTC).
        #[arg(long)]
        from: Option<String>,
        /// Only input received before this time.
        #[arg(long)]
        to: Option<String>,
        /// Compress chunks with zstd at this level (1..=19); smaller files, slower replay.
        #[arg(long)]
        zstd: Option<i32>,
        /// Convert the decodable part of a truncated or damaged recording instead of failing.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Record a venue's raw frames (`<recv_ns> <frame>` lines, gzip, one file per symbol per
    /// UTC day, with REST snapshot lines) for replay.
    Record {
        /// A configured venue name, or one of: sim, binance, binance-usdm.
        #[arg(long)]
        venue: String,
        /// Symbols, comma-separated (e.g. BTCUSDT,ETHUSDT).
        #[arg(long, value_delimiter = ',', required = true)]
        symbols: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Latency benchmark of the hot path (lane hop, dispatch through the loop).
    Bench {
        /// Measured events per figure (after 10,000 warm-up events).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Print one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Run only these groups of figures (comma-separated): core, parse, tick, stop,
        /// persist, live, backtest.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Compare two latency histogram logs (`run` saves one per run): per histogram, count and
    /// p50/p90/p99/p99.9/max of each, and B/A.
    LatencyCompare {
        /// The first log (A).
        a: PathBuf,
        /// The second log (B).
        b: PathBuf,
    },
    /// Deterministic single-threaded run of the whole hot path (frame → parse → lane → engine
    /// → strategy → risk → order → fill) on a simulated clock, for counting instructions
    /// (`.ci/instructions-gate.sh` runs it under callgrind); prints what it did as JSON.
    HotPath {
        /// Frames to handle (at most 60,000).
        #[arg(long, default_value_t = 20_000)]
        frames: usize,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Validate the merged configuration (file + TRADELOOP__ environment overrides).
    Check,
    /// Print the merged configuration with secrets redacted.
    Print,
}

/// Parses the command line and runs it with the strategies of `R`; prints an error (with its
/// causes) and returns a failure exit code when it fails.
#[must_use]
pub fn main<R: Registry>() -> ExitCode {
    match run::<R>(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `results/<prefix>-YYYYMMDD-HHMMSS` (UTC): a backtest without `--out` (`bt`), a run's
/// histograms (`run`).
fn default_results_dir(prefix: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let date =
        tradeloop_adapters::recorder::utc_date(now.as_nanos().try_into().unwrap_or(u64::MAX));
    let tod = secs % 86_400;
    PathBuf::from("results").join(format!(
        "{prefix}-{date}-{:02}{:02}{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    ))
}

/// `--from` / `--to` as ns since the epoch.
fn window(from: Option<&str>, to: Option<&str>) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    Ok((
        from.map(backtest::parse_time)
            .transpose()
            .context("--from")?,
        to.map(backtest::parse_time).transpose().context("--to")?,
    ))
}

fn parse_duration(seconds: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match seconds {
        Some(d) if d.is_finite() && d > 0.0 => Ok(Some(Duration::from_secs_f64(d))),
        Some(d) => anyhow::bail!("--duration must be a positive number of seconds, got {d}"),
        None => Ok(None),
    }
}

/// A flag that Ctrl-C (SIGINT) and SIGTERM set.
fn ctrl_c_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(status::StderrWriter)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run<R: Registry>(cli: Cli) -> anyhow::Result<()> {
    // Commands that need no configuration.
    if let Command::LatencyCompare { a, b } = &cli.command {
        let (ha, hb) = (hdrlog::read(a)?, hdrlog::read(b)?);
        print!(
            "{}",
            hdrlog::compare(&a.display().to_string(), &ha, &b.display().to_string(), &hb)
        );
        return Ok(());
    }
    let env = process_env();
    let config = Config::load(&cli.config, &env)
        .with_context(|| format!("invalid configuration {}", cli.config.display()))?;
    match cli.command {
        Command::Run {
            duration,
            log_format,
            histograms,
            no_histograms,
            dry_run,
            plain,
        } => {
            init_logging(log_format);
            let mut config = config;
            if dry_run {
                anyhow::ensure!(
                    config.mode == config::Mode::Live,
                    "--dry-run applies to mode = \"live\" only (paper trading never sends orders)"
                );
                config.live.dry_run = true;
            }
            let duration = parse_duration(duration)?;
            let stop = ctrl_c_flag()?;
            let histograms = (!no_histograms).then(|| {
                histograms.unwrap_or_else(|| default_results_dir("run").join("latency.hlog"))
            });
            let run_with = RunWith {
                config: &config,
                duration,
                histograms,
                plain,
                stop: &stop,
            };
            dispatch::<R, _, _>(&config, None, run_with)?;
        }
        Command::LatencyCompare { .. } => unreachable!("handled before the configuration"),
        Command::Record {
            venue,
            symbols,
            out,
            duration,
        } => {
            init_logging(LogFormat::Text);
            let duration = parse_duration(duration)?;
            let stop = ctrl_c_flag()?;
            record::run(&config, &venue, &symbols, out, duration, &stop)?;
        }
        Command::Backtest {
            data,
            strategy,
            from,
            to,
            out,
            sweep,
            sort_by,
            allow_partial,
        } => {
            let (from_ns, to_ns) = window(from.as_deref(), to.as_deref())?;
            let options = backtest::BacktestOptions {
                data,
                from_ns,
                to_ns,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                allow_partial,
            };
            let out = out.unwrap_or_else(|| default_results_dir("bt"));
            let name = strategy.as_deref().unwrap_or(&config.strategy.name);
            let params = sweep
                .iter()
                .map(|a| sweep::parse_param(a, name))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let job = BacktestWith {
                config: &config,
                config_path: &cli.config,
                env: &env,
                options: &options,
                sweep: &params,
                sort_by,
                out: &out,
            };
            let Some(bt) = dispatch::<R, _, _>(&config, strategy.as_deref(), job)? else {
                return Ok(());
            };
            let s = bt.write(&out)?;
            let secs = bt.wall.as_secs_f64().max(1e-9);
            eprintln!(
                "backtest: {} frames/rows, {} market events in {:.3} s ({:.0} frames/s, {:.0} events/s), {} refused; {} orders ({} denied{}), {} amends, {} cancels, {} fills",
                bt.events,
                bt.market_events,
                secs,
                bt.events as f64 / secs,
                bt.market_events as f64 / secs,
                bt.refused,
                bt.orders,
                bt.denied,
                if bt.denials.is_empty() {
                    String::new()
                } else {
                    let by: Vec<String> = bt.denials.iter().map(|(k, v)| format!("{v} {k}")).collect();
                    format!(": {}", by.join(", "))
                },
                bt.amends,
                bt.cancels,
                bt.fills.len()
            );
            eprintln!(
                "pnl: net {} = realised {} + unrealised {} - fees {}; max drawdown {}; turnover {}",
                s.net_pnl, s.realized, s.unrealized, s.fees, s.max_drawdown, s.turnover
            );
            let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
            eprintln!(
                "{}; {} round trips, win rate after fees {}, profit factor {}; exposure {:.1}%; pnl cross-check {}",
                match &s.ratios_note {
                    Some(note) => format!("sharpe/sortino n/a ({note})"),
                    None => format!(
                        "sharpe {} sortino {} over {} periods",
                        opt(s.sharpe),
                        opt(s.sortino),
                        s.periods
                    ),
                },
                s.round_trips,
                opt(s.win_rate),
                opt(s.profit_factor),
                s.exposure * 100.0,
                if s.pnl_check { "ok" } else { "MISMATCH" }
            );
            report_issues("backtest", &bt.input_issues);
            eprintln!("results in {}", out.display());
            anyhow::ensure!(
                s.pnl_check,
                "realised PnL disagrees with its recomputation from the fills"
            );
        }
        Command::Convert {
            data,
            out,
            from,
            to,
            zstd,
            allow_partial,
        } => {
            let (from_ns, to_ns) = window(from.as_deref(), to.as_deref())?;
            let options = convert::ConvertOptions {
                data,
                out,
                from_ns,
                to_ns,
                zstd_level: zstd,
                allow_partial,
            };
            let c = convert::convert(&config, &options)?;
            eprintln!(
                "convert: {} steps, {} events, {} refused frames, {} other refused input; {} bytes in {} ({:.3} s)",
                c.totals.steps,
                c.totals.records,
                c.refused_frames,
                c.totals.extra_refused,
                c.bytes,
                options.out.display(),
                c.wall.as_secs_f64()
            );
            report_issues("convert", &c.issues);
        }
        Command::LiveCheck => run::live_check(&config)?,
        Command::Config {
            action: ConfigAction::Check,
        } => {
            crate::strategy::validate::<R>(&config, None)
                .with_context(|| format!("invalid configuration {}", cli.config.display()))?;
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
        Command::Bench { events, json, only } => {
            anyhow::ensure!(events > 0, "--events must be at least 1");
            let report = bench::run(&config, &cli.config, events, &only)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("cannot encode the report")?
                );
            } else {
                print!("{}", bench::table(&report));
            }
        }
        Command::HotPath { frames } => {
            let report = hotpath::run(&config, frames)?;
            println!(
                "{}",
                serde_json::to_string(&report).context("cannot encode the report")?
            );
        }
    }
    Ok(())
}

/// Resolves the strategy `name` (default `[strategy] name`) in `R` — or, for
/// [`PORTFOLIO`](crate::strategy::PORTFOLIO), the members of `[strategy.portfolio]` — and
/// hands it to `job`.
fn dispatch<
    R: Registry,
    V: UseStrategy<Output = anyhow::Result<T>> + Job<Output = anyhow::Result<T>>,
    T,
>(
    config: &Config,
    name: Option<&str>,
    job: V,
) -> anyhow::Result<T> {
    let (key, name) = match name {
        Some(n) => ("--strategy", n),
        None => ("strategy.name", config.strategy.name.as_str()),
    };
    if name == crate::strategy::PORTFOLIO {
        return job.run(crate::strategy::build_portfolio::<R>);
    }
    R::dispatch(name, job).unwrap_or_else(|| Err(crate::strategy::unknown::<R>(key, name).into()))
}

/// Builds a strategy from a configuration and the instruments, with its label: a registered
/// strategy's [`crate::strategy::build`] or [`crate::strategy::build_portfolio`].
trait BuildWith<S>:
    Fn(
        &Config,
        &tradeloop_engine::instrument::InstrumentRegistry,
    ) -> Result<(S, backtest::StrategyLabel), config::ConfigError>
    + Send
    + Sync
    + Copy
    + 'static
{
}

impl<S, F> BuildWith<S> for F where
    F: Fn(
            &Config,
            &tradeloop_engine::instrument::InstrumentRegistry,
        ) -> Result<(S, backtest::StrategyLabel), config::ConfigError>
        + Send
        + Sync
        + Copy
        + 'static
{
}

/// A command's work with a strategy built by `build` (from the configuration it is given and
/// the instruments).
trait Job {
    type Output;
    fn run<S, B>(self, build: B) -> Self::Output
    where
        S: tradeloop_engine::api::Strategy + Send + 'static,
        B: BuildWith<S>;
}

/// `run` with the strategy a name resolved to.
struct RunWith<'a> {
    config: &'a Config,
    duration: Option<std::time::Duration>,
    histograms: Option<std::path::PathBuf>,
    plain: bool,
    stop: &'a Arc<AtomicBool>,
}

impl Job for RunWith<'_> {
    type Output = anyhow::Result<()>;
    fn run<S, B>(self, build: B) -> Self::Output
    where
        S: tradeloop_engine::api::Strategy + Send + 'static,
        B: BuildWith<S>,
    {
        let config = self.config.clone();
        let mut bot = run::Bot::from_config(self.config)
            .strategy_with(move |instruments| Ok(build(&config, instruments)?.0))
            .plain(self.plain);
        if let Some(d) = self.duration {
            bot = bot.duration(d);
        }
        if let Some(path) = self.histograms {
            bot = bot.histograms(path);
        }
        let mut bot = bot.start()?;
        bot.supervise(self.stop);
        let summary = bot.shutdown()?;
        eprint!("{summary}");
        Ok(())
    }
}

impl UseStrategy for RunWith<'_> {
    type Output = anyhow::Result<()>;
    fn with<S: Configurable>(self) -> Self::Output {
        Job::run(self, crate::strategy::build::<S>)
    }
}

/// One backtest of the strategy named `strategy` (default: `[strategy] name`) from `R`'s
/// registry, or `"portfolio"`: what `tradeloop backtest` runs, without writing anything (the
/// caller writes the [`backtest::Report`] if it wants the files). The Python package's
/// `tradeloop.backtest` is this call.
///
/// # Errors
/// An unknown strategy name, a bad `[strategy.NAME]` section (the key named), or the
/// backtest's own errors (unreadable or foreign input, no market events).
pub fn backtest_named<R: Registry>(
    config: &Config,
    strategy: Option<&str>,
    options: &backtest::BacktestOptions,
) -> anyhow::Result<backtest::Report> {
    let env = std::collections::BTreeMap::new();
    let job = BacktestWith {
        config,
        config_path: std::path::Path::new(""),
        env: &env,
        options,
        sweep: &[],
        sort_by: sweep::SortBy::NetPnl,
        out: std::path::Path::new(""),
    };
    dispatch::<R, _, _>(config, strategy, job)?
        .ok_or_else(|| anyhow::anyhow!("a single backtest returned no report"))
}

/// `backtest` (one, or a sweep: `None`) with the strategy a name resolved to.
struct BacktestWith<'a> {
    config: &'a Config,
    config_path: &'a std::path::Path,
    env: &'a std::collections::BTreeMap<String, String>,
    options: &'a backtest::BacktestOptions,
    sweep: &'a [sweep::Param],
    sort_by: sweep::SortBy,
    out: &'a std::path::Path,
}

impl Job for BacktestWith<'_> {
    type Output = anyhow::Result<Option<backtest::Report>>;
    fn run<S, B>(self, build: B) -> Self::Output
    where
        S: tradeloop_engine::api::Strategy + Send + 'static,
        B: BuildWith<S>,
    {
        let config = self.config;
        if !self.sweep.is_empty() {
            sweep::run(
                self.config_path,
                self.env,
                config,
                self.sweep,
                self.options,
                self.sort_by,
                self.out,
                move |c, instruments| Ok(build(c, instruments)?.0),
            )?;
            return Ok(None);
        }
        let bt = backtest::Backtest::from_config(config)?;
        let (strategy, label) = build(config, bt.instruments())?;
        let report = bt
            .strategy(strategy)
            .label(label.name, label.params)
            .members(label.members)
            .data(self.options.data.clone())
            .window(self.options.from_ns, self.options.to_ns)
            .progress(self.options.progress)
            .allow_partial(self.options.allow_partial)
            .run()?;
        Ok(Some(report))
    }
}

impl UseStrategy for BacktestWith<'_> {
    type Output = anyhow::Result<Option<backtest::Report>>;
    fn with<S: Configurable>(self) -> Self::Output {
        Job::run(self, crate::strategy::build::<S>)
    }
}

/// Prints what input a command did not use (see `InputIssues::report`).
fn report_issues(command: &str, issues: &backtest::InputIssues) {
    if let Some(report) = issues.report(command) {
        eprintln!("{report}");
    }
}
