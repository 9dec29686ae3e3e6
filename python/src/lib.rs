//! `tradeloop._tradeloop`: the native half of the Python package (see `python/README.md`). The
//! backtest runs on the Rust engine with a registered Rust strategy — no Python on the
//! per-event path — with the GIL released; its fills and equity curve leave as Arrow streams
//! (the Arrow PyCapsule interface, `__arrow_c_stream__`), which `pyarrow.table()` imports
//! without copying.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{
    ArrayRef, BooleanArray, Decimal128Array, Int64Array, RecordBatch, RecordBatchIterator,
    StringArray, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use tradeloop::backtest::{BacktestOptions, Report};
use tradeloop::config::Config;
use tradeloop::engine::event::Side;
use tradeloop::engine::fixed::Money;
use tradeloop::strategy::Bundled;

create_exception!(
    _tradeloop,
    TradeloopError,
    PyException,
    "A tradeloop error (the CLI's message)."
);
create_exception!(
    _tradeloop,
    ConfigError,
    TradeloopError,
    "A configuration error: the message names the key and the reason."
);

/// Decimal places of every price, quantity and amount in the Arrow tables (the engine's
/// fixed point).
const SCALE: i8 = 8;

fn decimal() -> DataType {
    DataType::Decimal128(38, SCALE)
}

fn to_py(e: &anyhow::Error) -> PyErr {
    let message = format!("{e:#}");
    if e.chain().any(|c| c.is::<tradeloop::config::ConfigError>()) {
        ConfigError::new_err(message)
    } else {
        TradeloopError::new_err(message)
    }
}

/// Loads `config` (default: the built-in offline configuration, `config.toml` of the
/// repository) with `overrides`, dotted keys to TOML literals (`"execution.queue_model"` →
/// `"\"log\""`), applied as `TRADELOOP__…` environment overrides are.
fn load_config(config: Option<&str>, overrides: &[(String, String)]) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| {
            (
                format!("TRADELOOP__{}", k.replace('.', "__").to_ascii_uppercase()),
                v.clone(),
            )
        })
        .collect();
    let path = config.map_or_else(|| PathBuf::from("config.toml"), PathBuf::from);
    Ok(Config::load(&path, &env)?)
}

/// Checks a configuration as `tradeloop config check` does; returns the strategy's name.
#[pyfunction]
#[pyo3(signature = (config=None, overrides=Vec::new()))]
fn check_config(config: Option<&str>, overrides: Vec<(String, String)>) -> PyResult<String> {
    let c = load_config(config, &overrides).map_err(|e| to_py(&e))?;
    Ok(c.strategy.name.clone())
}

/// One backtest's result (wrapped by `tradeloop.Result`).
#[pyclass(frozen)]
struct BacktestResult {
    report: Arc<Report>,
    summary_json: String,
}

#[pymethods]
impl BacktestResult {
    /// `summary.json`'s contents, as a JSON string.
    #[getter]
    fn summary_json(&self) -> &str {
        &self.summary_json
    }

    /// Wall time of the replay, seconds.
    #[getter]
    fn wall_seconds(&self) -> f64 {
        self.report.wall.as_secs_f64()
    }

    /// Writes `summary.json`, `fills.csv`, `equity.csv` and `report.html` into `dir`, as the
    /// CLI does.
    fn write(&self, py: Python<'_>, dir: PathBuf) -> PyResult<()> {
        let report = Arc::clone(&self.report);
        py.allow_threads(move || report.write(&dir).map(drop))
            .map_err(|e| to_py(&e))
    }

    /// The fills as an Arrow stream (PyCapsule `arrow_array_stream`).
    fn fills_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        stream(py, fills_batch(&self.report))
    }

    /// The orders, each in its last state, as an Arrow stream.
    fn orders_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        stream(py, orders_batch(&self.report))
    }

    /// The equity curve as an Arrow stream.
    fn equity_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        stream(py, equity_batch(&self.report))
    }
}

fn stream(
    py: Python<'_>,
    batch: Result<RecordBatch, ArrowError>,
) -> PyResult<Bound<'_, PyCapsule>> {
    let batch = batch.map_err(|e| TradeloopError::new_err(e.to_string()))?;
    let schema = batch.schema();
    let reader = RecordBatchIterator::new([Ok(batch)], schema);
    let ffi = FFI_ArrowArrayStream::new(Box::new(reader));
    let name = CString::new("arrow_array_stream").expect("no NUL");
    PyCapsule::new(py, ffi, Some(name))
}

/// An amount at 8 decimals, rounded as `equity.csv` rounds it.
fn money(m: Money) -> i128 {
    let d = m.to_decimal().round_dp(8);
    d.mantissa() * 10i128.pow(8 - d.scale().min(8))
}

fn fills_batch(r: &Report) -> Result<RecordBatch, ArrowError> {
    let portfolio = !r.strategy.members.is_empty();
    let mut fields = vec![
        Field::new("ts_ns", DataType::Int64, false),
        Field::new("client_order_id", DataType::UInt64, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("price", decimal(), false),
        Field::new("qty", decimal(), false),
        Field::new("fee", decimal(), false),
        Field::new("maker", DataType::Boolean, false),
    ];
    let f = &r.fills;
    let ts = i64s(f.iter().map(|x| x.ts_ns));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ts)),
        Arc::new(UInt64Array::from_iter_values(f.iter().map(|x| x.client_id))),
        Arc::new(StringArray::from_iter_values(
            f.iter().map(|x| r.symbols[x.instrument.get()].as_str()),
        )),
        Arc::new(StringArray::from_iter_values(f.iter().map(|x| {
            if x.side == Side::Buy {
                "buy"
            } else {
                "sell"
            }
        }))),
        Arc::new(dec(f.iter().map(|x| i128::from(x.price.raw())))?),
        Arc::new(dec(f.iter().map(|x| i128::from(x.qty.raw())))?),
        Arc::new(dec(f.iter().map(|x| i128::from(x.fee.raw())))?),
        Arc::new(BooleanArray::from_iter(f.iter().map(|x| Some(x.maker)))),
    ];
    if portfolio {
        fields.push(Field::new("strategy", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(f.iter().map(|x| {
            r.strategy
                .members
                .get(x.strategy.get())
                .map_or("engine", String::as_str)
        }))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn orders_batch(r: &Report) -> Result<RecordBatch, ArrowError> {
    use tradeloop::store::{kind_text, status_text, tif_text};
    let o = &r.order_log;
    let portfolio = !r.strategy.members.is_empty();
    let mut fields = vec![
        Field::new("client_order_id", DataType::UInt64, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("tif", DataType::Utf8, false),
        Field::new("price", decimal(), false),
        Field::new("trigger", decimal(), false),
        Field::new("qty", decimal(), false),
        Field::new("filled", decimal(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("post_only", DataType::Boolean, false),
        Field::new("reduce_only", DataType::Boolean, false),
        Field::new("created_ns", DataType::Int64, false),
        Field::new("updated_ns", DataType::Int64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            o.iter().map(|x| x.client_id.0),
        )),
        Arc::new(StringArray::from_iter_values(
            o.iter()
                .map(|x| r.symbols[x.request.instrument.get()].as_str()),
        )),
        Arc::new(StringArray::from_iter_values(o.iter().map(|x| {
            if x.request.side == Side::Buy {
                "buy"
            } else {
                "sell"
            }
        }))),
        Arc::new(StringArray::from_iter_values(
            o.iter().map(|x| kind_text(x.request.kind)),
        )),
        Arc::new(StringArray::from_iter_values(
            o.iter().map(|x| tif_text(x.request.tif)),
        )),
        Arc::new(dec(o.iter().map(|x| i128::from(x.request.price.raw())))?),
        Arc::new(dec(o.iter().map(|x| i128::from(x.request.trigger.raw())))?),
        Arc::new(dec(o.iter().map(|x| i128::from(x.request.qty.raw())))?),
        Arc::new(dec(o.iter().map(|x| i128::from(x.filled.raw())))?),
        Arc::new(StringArray::from_iter_values(
            o.iter().map(|x| status_text(x.status)),
        )),
        Arc::new(BooleanArray::from_iter(
            o.iter().map(|x| Some(x.request.post_only)),
        )),
        Arc::new(BooleanArray::from_iter(
            o.iter().map(|x| Some(x.request.reduce_only)),
        )),
        Arc::new(Int64Array::from(i64s(o.iter().map(|x| x.created_ns)))),
        Arc::new(Int64Array::from(i64s(o.iter().map(|x| x.updated_ns)))),
    ];
    if portfolio {
        fields.push(Field::new("strategy", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(o.iter().map(|x| {
            r.strategy
                .members
                .get(x.request.strategy.get())
                .map_or("engine", String::as_str)
        }))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn equity_batch(r: &Report) -> Result<RecordBatch, ArrowError> {
    let mut fields = vec![
        Field::new("ts_ns", DataType::Int64, false),
        Field::new("equity", decimal(), false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(i64s(r.equity.iter().map(|(t, _)| *t)))),
        Arc::new(dec(r.equity.iter().map(|(_, e)| money(*e)))?),
    ];
    for (i, sym) in r.symbols.iter().enumerate() {
        fields.push(Field::new(format!("mark_{sym}"), decimal(), false));
        let marks = r.equity.iter().enumerate().map(|(k, (t, _))| {
            let m = r
                .prices
                .get(k)
                .filter(|(pt, _)| pt == t)
                .map_or(&r.marks, |(_, m)| m);
            i128::from(m[i].raw())
        });
        columns.push(Arc::new(dec(marks)?));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn i64s(v: impl Iterator<Item = u64>) -> Vec<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX)).collect()
}

fn dec(v: impl Iterator<Item = i128>) -> Result<Decimal128Array, ArrowError> {
    Decimal128Array::from_iter_values(v).with_precision_and_scale(38, SCALE)
}

/// One backtest of the registered strategy `strategy` on `data`, the GIL released.
fn run(
    py: Python<'_>,
    config: &Config,
    strategy: Option<&str>,
    data: Vec<PathBuf>,
    (from_ns, to_ns): (Option<u64>, Option<u64>),
    allow_partial: bool,
) -> PyResult<Report> {
    let options = BacktestOptions {
        data,
        from_ns,
        to_ns,
        progress: false,
        allow_partial,
    };
    let strategy = strategy.map(str::to_owned);
    py.allow_threads(|| {
        tradeloop::cli::backtest_named::<Bundled>(config, strategy.as_deref(), &options)
    })
    .map_err(|e| to_py(&e))
}

/// Runs one backtest with a strategy registered in the `tradeloop` binary (by name, default
/// `[strategy] name`), on `data` (recordings, Tardis CSV or one `.tle` file).
#[pyfunction]
#[pyo3(signature = (data, config=None, strategy=None, overrides=Vec::new(), from_ns=None, to_ns=None, allow_partial=false))]
#[allow(
    clippy::too_many_arguments,
    reason = "keyword arguments of the Python call"
)]
fn backtest(
    py: Python<'_>,
    data: Vec<PathBuf>,
    config: Option<&str>,
    strategy: Option<&str>,
    overrides: Vec<(String, String)>,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
    allow_partial: bool,
) -> PyResult<BacktestResult> {
    let config = load_config(config, &overrides).map_err(|e| to_py(&e))?;
    let report = run(py, &config, strategy, data, (from_ns, to_ns), allow_partial)?;
    let summary_json = summary(&report).map_err(|e| to_py(&e))?;
    Ok(BacktestResult {
        report: Arc::new(report),
        summary_json,
    })
}

fn summary(report: &Report) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&report.summary())? + "\n")
}

/// A sweep's combinations in the CLI's order: `params` as `--sweep` takes them
/// (`"key=v1,v2"`, a key without a dot being the strategy's); each item is the combination's
/// `(key, value)` pairs and the `TRADELOOP__` overrides that make its configuration.
#[pyfunction]
#[pyo3(signature = (config, params, strategy=None))]
#[allow(clippy::type_complexity, reason = "plain lists for Python")]
fn sweep_plan(
    config: &str,
    params: Vec<String>,
    strategy: Option<&str>,
) -> PyResult<Vec<(Vec<(String, String)>, Vec<(String, String)>)>> {
    let plan = || -> anyhow::Result<_> {
        let base = Config::load(config.as_ref(), &BTreeMap::new())?;
        let name = strategy.unwrap_or(&base.strategy.name).to_owned();
        let params = params
            .iter()
            .map(|a| tradeloop::sweep::parse_param(a, &name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let planned = tradeloop::sweep::plan(config.as_ref(), &BTreeMap::new(), &params)?;
        Ok(planned
            .into_iter()
            .map(|p| (p.combo, p.env.into_iter().collect()))
            .collect())
    };
    plan().map_err(|e| to_py(&e))
}

/// Runs one sweep combination (its overrides from [`sweep_plan`]) and returns its row:
/// `sweep.csv`'s result columns as written, and the exact ratios for sorting.
#[pyfunction]
#[pyo3(signature = (config, data, env, strategy=None, from_ns=None, to_ns=None, allow_partial=false))]
#[allow(
    clippy::too_many_arguments,
    reason = "keyword arguments of the Python call"
)]
#[allow(clippy::type_complexity, reason = "a plain tuple for Python")]
fn sweep_run(
    py: Python<'_>,
    config: &str,
    data: Vec<PathBuf>,
    env: Vec<(String, String)>,
    strategy: Option<&str>,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
    allow_partial: bool,
) -> PyResult<(Vec<String>, Option<f64>, Option<f64>, Option<f64>)> {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let config = Config::load(config.as_ref(), &env).map_err(|e| to_py(&e.into()))?;
    let report = run(py, &config, strategy, data, (from_ns, to_ns), allow_partial)?;
    let row = tradeloop::sweep::Row::of(Vec::new(), &report);
    Ok((
        row.result_fields().to_vec(),
        row.stats.sharpe,
        row.stats.sortino,
        row.stats.win_rate,
    ))
}

/// Converts recordings (and Tardis CSV) to one `.tle` file, as `tradeloop convert` does;
/// returns the records (events) written.
#[pyfunction]
#[pyo3(signature = (data, out, config=None, from_ns=None, to_ns=None, zstd_level=None, allow_partial=false))]
#[allow(
    clippy::too_many_arguments,
    reason = "keyword arguments of the Python call"
)]
fn convert(
    py: Python<'_>,
    data: Vec<PathBuf>,
    out: PathBuf,
    config: Option<&str>,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
    zstd_level: Option<i32>,
    allow_partial: bool,
) -> PyResult<u64> {
    let config = load_config(config, &[]).map_err(|e| to_py(&e))?;
    let options = tradeloop::convert::ConvertOptions {
        data,
        out,
        from_ns,
        to_ns,
        zstd_level,
        allow_partial,
    };
    let done = py
        .allow_threads(|| tradeloop::convert::convert(&config, &options))
        .map_err(|e| to_py(&e))?;
    Ok(done.totals.records)
}

/// A `.tle` file's records as an Arrow stream: one row per record, in file order (see the
/// package README for the columns).
#[pyfunction]
fn load_tle<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyCapsule>> {
    let batch = py
        .allow_threads(|| tle_batch(&path))
        .map_err(|e| to_py(&e))?;
    stream(py, Ok(batch))
}

/// Nullable columns of [`load_tle`], filled record by record.
#[derive(Default)]
struct TleColumns {
    recv_ns: Vec<i64>,
    exch_ns: Vec<Option<i64>>,
    kind: Vec<&'static str>,
    symbol: Vec<Option<String>>,
    side: Vec<Option<&'static str>>,
    price: Vec<Option<i128>>,
    qty: Vec<Option<i128>>,
    bid_price: Vec<Option<i128>>,
    bid_qty: Vec<Option<i128>>,
    ask_price: Vec<Option<i128>>,
    ask_qty: Vec<Option<i128>>,
    index_price: Vec<Option<i128>>,
    funding_rate: Vec<Option<i128>>,
    id: Vec<Option<u64>>,
    flags: Vec<Option<u8>>,
    end_of_step: Vec<bool>,
}

/// One record's values of the nullable columns.
#[derive(Default)]
struct TleRow {
    kind: &'static str,
    side: Option<&'static str>,
    price: Option<i128>,
    qty: Option<i128>,
    bid_price: Option<i128>,
    bid_qty: Option<i128>,
    ask_price: Option<i128>,
    ask_qty: Option<i128>,
    index_price: Option<i128>,
    funding_rate: Option<i128>,
    id: Option<u64>,
    flags: Option<u8>,
}

fn tle_batch(path: &std::path::Path) -> anyhow::Result<RecordBatch> {
    use tradeloop::adapters::tle::{TleItem, TleReader};
    use tradeloop::engine::event::EventKind;

    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut reader = TleReader::from_reader(Box::new(std::io::BufReader::new(file)))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let symbols: Vec<String> = reader
        .meta()
        .instruments
        .iter()
        .map(|i| i.symbol.clone())
        .collect();
    let side = |s: Side| Some(if s == Side::Buy { "buy" } else { "sell" });
    let px = |p: tradeloop::engine::fixed::Price| Some(i128::from(p.raw()));
    let q = |p: tradeloop::engine::fixed::Qty| Some(i128::from(p.raw()));
    let mut c = TleColumns::default();
    while let Some(rec) = reader
        .next_record()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        c.recv_ns
            .push(i64::try_from(rec.recv_ns).unwrap_or(i64::MAX));
        c.end_of_step.push(rec.end_of_step);
        let mut row = TleRow {
            kind: "nothing",
            ..TleRow::default()
        };
        let (mut exch, mut instrument) = (None, None);
        match rec.item {
            TleItem::Nothing => {}
            TleItem::BookLost(i) => {
                row.kind = "book_lost";
                instrument = Some(i);
            }
            TleItem::Event(e) => {
                exch = Some(i64::try_from(e.exch_ns).unwrap_or(i64::MAX));
                instrument = e.instrument();
                row = match e.kind {
                    EventKind::Trade(t) => TleRow {
                        kind: "trade",
                        side: side(t.aggressor),
                        price: px(t.price),
                        qty: q(t.qty),
                        id: Some(t.trade_id),
                        ..TleRow::default()
                    },
                    EventKind::Quote(x) => TleRow {
                        kind: "quote",
                        bid_price: px(x.bid_price),
                        bid_qty: q(x.bid_qty),
                        ask_price: px(x.ask_price),
                        ask_qty: q(x.ask_qty),
                        id: Some(x.update_id),
                        ..TleRow::default()
                    },
                    EventKind::BookDelta(d) => TleRow {
                        kind: "book_delta",
                        side: side(d.side),
                        price: px(d.price),
                        qty: q(d.qty),
                        id: Some(d.update_id),
                        flags: Some(d.flags.0),
                        ..TleRow::default()
                    },
                    EventKind::MarkPrice(m) => TleRow {
                        kind: "mark_price",
                        price: px(m.mark_price),
                        index_price: px(m.index_price),
                        funding_rate: px(m.funding_rate),
                        id: Some(m.next_funding_ns),
                        ..TleRow::default()
                    },
                    EventKind::Liquidation(l) => TleRow {
                        kind: "liquidation",
                        side: side(l.side),
                        price: px(l.price),
                        qty: q(l.filled_qty),
                        ..TleRow::default()
                    },
                    _ => TleRow {
                        kind: "other",
                        ..TleRow::default()
                    },
                };
            }
        }
        c.exch_ns.push(exch);
        c.symbol
            .push(instrument.and_then(|i| symbols.get(i.get()).cloned()));
        c.kind.push(row.kind);
        c.side.push(row.side);
        c.price.push(row.price);
        c.qty.push(row.qty);
        c.bid_price.push(row.bid_price);
        c.bid_qty.push(row.bid_qty);
        c.ask_price.push(row.ask_price);
        c.ask_qty.push(row.ask_qty);
        c.index_price.push(row.index_price);
        c.funding_rate.push(row.funding_rate);
        c.id.push(row.id);
        c.flags.push(row.flags);
    }
    let dec_col = |v: Vec<Option<i128>>| -> Result<ArrayRef, ArrowError> {
        Ok(Arc::new(
            Decimal128Array::from(v).with_precision_and_scale(38, SCALE)?,
        ))
    };
    let fields = vec![
        Field::new("recv_ns", DataType::Int64, false),
        Field::new("exch_ns", DataType::Int64, true),
        Field::new("kind", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, true),
        Field::new("side", DataType::Utf8, true),
        Field::new("price", decimal(), true),
        Field::new("qty", decimal(), true),
        Field::new("bid_price", decimal(), true),
        Field::new("bid_qty", decimal(), true),
        Field::new("ask_price", decimal(), true),
        Field::new("ask_qty", decimal(), true),
        Field::new("index_price", decimal(), true),
        Field::new("funding_rate", decimal(), true),
        Field::new("id", DataType::UInt64, true),
        Field::new("flags", DataType::UInt8, true),
        Field::new("end_of_step", DataType::Boolean, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(c.recv_ns)),
        Arc::new(Int64Array::from(c.exch_ns)),
        Arc::new(StringArray::from(c.kind)),
        Arc::new(StringArray::from(c.symbol)),
        Arc::new(StringArray::from(c.side)),
        dec_col(c.price)?,
        dec_col(c.qty)?,
        dec_col(c.bid_price)?,
        dec_col(c.bid_qty)?,
        dec_col(c.ask_price)?,
        dec_col(c.ask_qty)?,
        dec_col(c.index_price)?,
        dec_col(c.funding_rate)?,
        Arc::new(UInt64Array::from(c.id)),
        Arc::new(arrow_array::UInt8Array::from(c.flags)),
        Arc::new(BooleanArray::from(c.end_of_step)),
    ];
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// `sweep.csv`'s result column names.
#[pyfunction]
fn sweep_columns() -> Vec<&'static str> {
    tradeloop::sweep::RESULT_COLUMNS.to_vec()
}

/// The native module.
#[pymodule]
fn _tradeloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(backtest, m)?)?;
    m.add_function(wrap_pyfunction!(check_config, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_plan, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_run, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_columns, m)?)?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(load_tle, m)?)?;
    m.add_class::<BacktestResult>()?;
    m.add("TradeloopError", m.py().get_type::<TradeloopError>())?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    Ok(())
}
