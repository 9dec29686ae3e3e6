//! `tradeloop backtest --sweep key=a,b,c ...`: one deterministic backtest per combination of
//! parameter values, spread over every core (one engine per thread), all reading one shared
//! read-only copy of the converted events. Results go to `sweep.csv` and a table on stderr,
//! sorted by a chosen metric.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use rust_decimal::Decimal;

use tradeloop_engine::api::Strategy;
use tradeloop_engine::instrument::InstrumentRegistry;

use crate::backtest::{self, Backtest, BacktestOptions, Input};
use crate::config::{Config, ENV_PREFIX};

/// Most combinations one sweep may run.
pub const MAX_COMBINATIONS: usize = 10_000;

/// Sections a sweep may not vary: they decide how the input is parsed (which is done once,
/// before the sweep) or are not part of a backtest.
const FIXED_SECTIONS: [&str; 7] = [
    "instruments",
    "feed",
    "sim",
    "venues",
    "persistence",
    "metrics",
    "mode",
];

/// A metric to sort by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Net PnL, highest first.
    NetPnl,
    /// Maximum drawdown, smallest first.
    MaxDrawdown,
    /// Sharpe ratio, highest first (runs without one last).
    Sharpe,
    /// Sortino ratio, highest first.
    Sortino,
    /// Number of fills, most first.
    Fills,
    /// Win rate, highest first.
    WinRate,
}

/// One swept parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Dotted config key (`strategy.ma_cross.fast`).
    pub key: String,
    /// Values as written on the command line.
    pub values: Vec<String>,
}

/// Parses `key=a,b,c`. A key without a dot names a parameter of the configured strategy
/// (`fast` is `strategy.ma_cross.fast`).
///
/// # Errors
/// A malformed argument, an empty value, or a key in a section a sweep may not vary.
pub fn parse_param(arg: &str, strategy: &str) -> anyhow::Result<Param> {
    let (key, values) = arg
        .split_once('=')
        .with_context(|| format!("--sweep {arg:?}: expected key=value1,value2,..."))?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "--sweep {arg:?}: empty key");
    let key = if key.contains('.') {
        key.to_owned()
    } else {
        format!("strategy.{strategy}.{key}")
    };
    let section = key.split('.').next().unwrap_or_default();
    anyhow::ensure!(
        !FIXED_SECTIONS.contains(&section),
        "--sweep {key}: `{section}` cannot be swept (the input is parsed once for all runs; sweep strategy, risk, execution, stops, breakers or engine keys)"
    );
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
    anyhow::ensure!(
        values.iter().all(|v| !v.is_empty()),
        "--sweep {key}: empty value in {values:?}"
    );
    Ok(Param { key, values })
}

/// Every combination, in odometer order (the last parameter varies fastest).
fn combinations(params: &[Param]) -> Vec<Vec<(String, String)>> {
    let mut out = vec![Vec::new()];
    for p in params {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                p.values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((p.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// The override for `key = raw`: quoted when the file holds a string there (prices and
/// quantities are strings in config.toml), so `target_qty=0.02` means `"0.02"`.
fn override_value(file: &toml::Value, key: &str, raw: &str) -> String {
    let mut node = Some(file);
    for seg in key.split('.') {
        node = node.and_then(|n| n.get(seg));
    }
    match node {
        Some(toml::Value::String(_)) if !raw.starts_with('"') => format!("\"{raw}\""),
        _ => raw.to_owned(),
    }
}

/// One run's results.
#[derive(Clone, Debug)]
pub struct Row {
    /// Parameter values.
    pub combo: Vec<(String, String)>,
    /// Statistics.
    pub stats: backtest::Stats,
    /// Fills.
    pub fills: usize,
    /// Orders sent.
    pub orders: u64,
}

impl Row {
    /// The row of one combination's backtest.
    #[must_use]
    pub fn of(combo: Vec<(String, String)>, report: &backtest::Report) -> Self {
        Self {
            combo,
            stats: report.stats(),
            fills: report.fills.len(),
            orders: report.orders,
        }
    }

    /// `sweep.csv`'s result columns as written: net_pnl, realized, unrealized, fees,
    /// max_drawdown, sharpe, sortino, win_rate (4 decimals, empty when there is none),
    /// fills, orders.
    #[must_use]
    pub fn result_fields(&self) -> [String; 10] {
        [
            self.stats.net_pnl.to_string(),
            self.stats.realized.to_string(),
            self.stats.unrealized.to_string(),
            self.stats.fees.to_string(),
            self.stats.max_drawdown.to_string(),
            opt(self.stats.sharpe),
            opt(self.stats.sortino),
            opt(self.stats.win_rate),
            self.fills.to_string(),
            self.orders.to_string(),
        ]
    }
}

/// The names of [`Row::result_fields`].
pub const RESULT_COLUMNS: [&str; 10] = [
    "net_pnl",
    "realized",
    "unrealized",
    "fees",
    "max_drawdown",
    "sharpe",
    "sortino",
    "win_rate",
    "fills",
    "orders",
];

fn metric_key(row: &Row, by: SortBy) -> (bool, Decimal, f64) {
    // (missing, decimal metric, float metric) ordered so that smaller sorts first.
    match by {
        SortBy::NetPnl => (false, -row.stats.net_pnl, 0.0),
        SortBy::MaxDrawdown => (false, row.stats.max_drawdown, 0.0),
        SortBy::Fills => (false, -Decimal::from(row.fills), 0.0),
        SortBy::Sharpe => (
            row.stats.sharpe.is_none(),
            Decimal::ZERO,
            -row.stats.sharpe.unwrap_or(0.0),
        ),
        SortBy::Sortino => (
            row.stats.sortino.is_none(),
            Decimal::ZERO,
            -row.stats.sortino.unwrap_or(0.0),
        ),
        SortBy::WinRate => (
            row.stats.win_rate.is_none(),
            Decimal::ZERO,
            -row.stats.win_rate.unwrap_or(0.0),
        ),
    }
}

/// Sorts rows by `by`, ties in combination order (stable).
pub fn sort_rows(rows: &mut [Row], by: SortBy) {
    rows.sort_by(|a, b| {
        let (ka, kb) = (metric_key(a, by), metric_key(b, by));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
    });
}

/// One combination of a sweep: its `(key, value)` pairs as given, the environment overrides
/// that make its configuration (a value quoted where the configuration file holds a string
/// there), and that configuration, checked.
#[derive(Clone, Debug)]
pub struct Planned {
    /// `(dotted key, value)` as given.
    pub combo: Vec<(String, String)>,
    /// `TRADELOOP__…` overrides on top of `env`.
    pub env: BTreeMap<String, String>,
    /// The configuration of this combination.
    pub config: Config,
}

/// Every combination of `params`, in the CLI's order (the last parameter varies fastest),
/// each with its checked configuration: what [`run`] runs, for callers that run the
/// combinations elsewhere (the Python package's `tradeloop.sweep`, on Ray or a thread pool).
///
/// # Errors
/// More than the allowed combinations, an unreadable configuration file, or a combination
/// whose configuration is bad (named).
pub fn plan(
    config_path: &Path,
    env: &BTreeMap<String, String>,
    params: &[Param],
) -> anyhow::Result<Vec<Planned>> {
    let combos = combinations(params);
    anyhow::ensure!(
        combos.len() <= MAX_COMBINATIONS,
        "--sweep: {} combinations, at most {MAX_COMBINATIONS}",
        combos.len()
    );
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let file: toml::Value = toml::from_str(&text).context("config.toml")?;
    // Every combination's config, checked before anything runs.
    let mut planned = Vec::with_capacity(combos.len());
    for combo in combos {
        let mut e = env.clone();
        for (key, raw) in &combo {
            let name = format!(
                "{ENV_PREFIX}{}",
                key.replace('.', "__").to_ascii_uppercase()
            );
            e.insert(name, override_value(&file, key, raw));
        }
        let config = Config::from_toml(&text, &e).with_context(|| {
            let desc: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("--sweep {}", desc.join(" "))
        })?;
        config.registry()?;
        planned.push(Planned {
            combo,
            env: e,
            config,
        });
    }
    Ok(planned)
}

/// Runs the sweep and writes `sweep.csv` into `out`. Every combination's strategy comes from
/// `factory`, called with that combination's configuration and the instruments (on the
/// thread that runs it); the CLI passes [`crate::strategy::build`] of the strategy it runs.
///
/// # Errors
/// A bad parameter or value (named), unreadable inputs, or a failed run.
#[allow(
    clippy::too_many_arguments,
    reason = "the CLI's options, passed through"
)]
pub fn run<S, F>(
    config_path: &Path,
    env: &BTreeMap<String, String>,
    base: &Config,
    params: &[Param],
    options: &BacktestOptions,
    sort_by: SortBy,
    out: &Path,
    factory: F,
) -> anyhow::Result<Vec<Row>>
where
    S: Strategy,
    F: Fn(&Config, &InstrumentRegistry) -> anyhow::Result<S> + Sync,
{
    let planned = plan(config_path, env, params)?;
    let combos: Vec<Vec<(String, String)>> = planned.iter().map(|p| p.combo.clone()).collect();
    let configs: Vec<Config> = planned.into_iter().map(|p| p.config).collect();
    // The events, parsed once and shared read-only.
    let started = Instant::now();
    let image: Arc<[u8]> = match Input::from_paths(&options.data)? {
        Input::TleFile(p) => {
            Arc::from(std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?)
        }
        Input::Tle(bytes) => bytes,
        Input::Raw(paths) => {
            let (_, _, issues, bytes) = crate::convert::write_tle_with(
                base,
                &paths,
                (options.from_ns, options.to_ns),
                None,
                options.allow_partial,
                Vec::new(),
            )?;
            // Every run replays this same input: report what it left out once.
            if let Some(report) = issues.report("sweep") {
                eprintln!("{report}");
            }
            Arc::from(bytes)
        }
    };
    let prepared = started.elapsed();
    let input = Input::Tle(image);
    let run_options = BacktestOptions {
        progress: false,
        ..options.clone()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(configs.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<Row>>>> =
        Mutex::new((0..configs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(config) = configs.get(k) else { break };
                let row = Backtest::from_config(config)
                    .map_err(anyhow::Error::from)
                    .and_then(|bt| bt.strategy_with(|registry| factory(config, registry)))
                    .and_then(|bt| {
                        bt.input(input.clone())
                            .window(run_options.from_ns, run_options.to_ns)
                            .run()
                    })
                    .map(|bt| Row::of(combos[k].clone(), &bt));
                results.lock().expect("no panics while held")[k] = Some(row);
            });
        }
    });
    let mut rows = Vec::with_capacity(configs.len());
    for (k, r) in results
        .into_inner()
        .expect("no panics while held")
        .into_iter()
        .enumerate()
    {
        let r = r.context("a sweep run did not finish")?;
        rows.push(r.with_context(|| format!("--sweep combination {}", k + 1))?);
    }
    sort_rows(&mut rows, sort_by);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_csv(&out.join("sweep.csv"), params, &rows)?;
    eprint!("{}", table(params, &rows));
    eprintln!(
        "sweep: {} runs on {threads} threads in {:.2} s (input prepared in {:.2} s); sorted by {sort_by:?}; {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        prepared.as_secs_f64(),
        out.join("sweep.csv").display()
    );
    Ok(rows)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.4}"))
}

fn write_csv(path: &Path, params: &[Param], rows: &[Row]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let names: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
    writeln!(f, "rank,{},{}", names.join(","), RESULT_COLUMNS.join(","))?;
    for (rank, r) in rows.iter().enumerate() {
        let values: Vec<&str> = r.combo.iter().map(|(_, v)| v.as_str()).collect();
        writeln!(
            f,
            "{},{},{}",
            rank + 1,
            values.join(","),
            r.result_fields().join(",")
        )?;
    }
    f.flush()?;
    Ok(())
}

/// The results as a fixed-width table.
#[must_use]
pub fn table(params: &[Param], rows: &[Row]) -> String {
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_owned();
    let mut head = vec!["rank".to_owned()];
    head.extend(params.iter().map(|p| short(&p.key)));
    head.extend(
        ["net_pnl", "max_drawdown", "sharpe", "fills"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let mut lines = vec![head];
    for (rank, r) in rows.iter().enumerate() {
        let mut l = vec![(rank + 1).to_string()];
        l.extend(r.combo.iter().map(|(_, v)| v.clone()));
        l.push(r.stats.net_pnl.round_dp(4).to_string());
        l.push(r.stats.max_drawdown.round_dp(4).to_string());
        l.push(
            r.stats
                .sharpe
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}")),
        );
        l.push(r.fills.to_string());
        lines.push(l);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:>w$}"))
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_with_strategy_shorthand_and_refuse_fixed_sections() {
        let p = parse_param("fast=5, 10,20", "ma_cross").unwrap();
        assert_eq!(p.key, "strategy.ma_cross.fast");
        assert_eq!(p.values, ["5", "10", "20"]);
        let p = parse_param("risk.max_position=0.01,0.02", "ma_cross").unwrap();
        assert_eq!(p.key, "risk.max_position");
        let cases = [
            ("fast", "expected key=value"),
            ("=1,2", "empty key"),
            ("fast=1,,2", "empty value"),
            ("feed.max_frame_bytes=1,2", "`feed` cannot be swept"),
            ("instruments.0.tick_size=1", "`instruments` cannot be swept"),
        ];
        for (arg, want) in cases {
            let e = parse_param(arg, "ma_cross").unwrap_err().to_string();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn combinations_cover_the_product_in_odometer_order() {
        let params = [
            Param {
                key: "a".into(),
                values: vec!["1".into(), "2".into()],
            },
            Param {
                key: "b".into(),
                values: vec!["x".into(), "y".into(), "z".into()],
            },
        ];
        let c = combinations(&params);
        assert_eq!(c.len(), 6);
        let flat: Vec<String> = c
            .iter()
            .map(|c| c.iter().map(|(_, v)| v.as_str()).collect::<String>())
            .collect();
        assert_eq!(flat, ["1x", "1y", "1z", "2x", "2y", "2z"]);
    }

    #[test]
    fn string_keys_are_quoted_and_numbers_are_not() {
        let file: toml::Value =
            toml::from_str("[strategy.ma_cross]\nfast = 20\ntarget_qty = \"0.01\"\n").unwrap();
        let cases = [
            ("strategy.ma_cross.fast", "5", "5"),
            ("strategy.ma_cross.target_qty", "0.02", "\"0.02\""),
            ("strategy.ma_cross.target_qty", "\"0.02\"", "\"0.02\""),
            ("strategy.ma_cross.absent", "7", "7"),
        ];
        for (key, raw, want) in cases {
            assert_eq!(override_value(&file, key, raw), want, "{key}={raw}");
        }
    }
}
