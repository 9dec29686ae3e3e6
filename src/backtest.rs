//! `tradeloop backtest`: replays recorded frames (`<recv_ns> <frame>` files) and Tardis CSV
//! through the same venue parser, book sync, engine, strategy, risk and simulated venue as
//! `run`, single-threaded on a simulated clock, and writes `summary.json`, `fills.csv`,
//! `orders.csv`, `equity.csv` and `report.html` with its charts. Same inputs and config give byte-identical
//! files (wall-clock figures are kept apart, under `performance` in `summary.json`).

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tradeloop_adapters::binance::parse::Market;
use tradeloop_adapters::feed::{FrameOutcome, MarketSink};
pub use tradeloop_adapters::input::{InputIssues, Skip};
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_adapters::tardis::{is_tardis_csv, TardisReader};
use tradeloop_adapters::tle::{TleItem, TleReader};
use tradeloop_engine::api::{Context, Strategy};
use tradeloop_engine::breakers::BreakerEvent;
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{Event, EventKind, Side};
use tradeloop_engine::event_loop::Engine;
use tradeloop_engine::fixed::{Money, Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::persist::{Outbox, Record};
use tradeloop_engine::strategies::MaCross;
use tradeloop_risk::PreTradeRisk;

use crate::config::Config;
use crate::venues::Wire;

/// Equity is sampled this often in simulated time.
const EQUITY_SAMPLE_NS: u64 = 1_000_000_000;

/// What to replay.
#[derive(Clone, Debug)]
pub struct BacktestOptions {
    /// Input files (recorded frames and/or Tardis CSV).
    pub data: Vec<PathBuf>,
    /// Only events received at or after this time (ns since the epoch).
    pub from_ns: Option<u64>,
    /// Only events received before this time.
    pub to_ns: Option<u64>,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Replay the decodable part of a truncated or damaged file instead of failing; the
    /// report is then marked partial.
    pub allow_partial: bool,
}

/// One fill, as written to `fills.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillRow {
    /// Simulated time the engine applied it.
    pub ts_ns: u64,
    /// Client order id.
    pub client_id: u64,
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Side of the order.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Fee.
    pub fee: Qty,
    /// Resting (maker) fill.
    pub maker: bool,
    /// The strategy whose order filled (its portfolio member index; 0 for one strategy).
    pub strategy: tradeloop_engine::event::StrategyId,
}

/// The strategy's name and parameters as `summary.json` states them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StrategyLabel {
    /// Name (a registered strategy's name, or the type name of a user's own).
    pub name: String,
    /// Parameters (`null` when none were given).
    pub params: serde_json::Value,
    /// A portfolio's members' names, by [`StrategyId`](tradeloop_engine::event::StrategyId)
    /// (empty for a single strategy). With members, `fills.csv` has a `strategy` column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl StrategyLabel {
    /// A single strategy's label (no portfolio members).
    #[must_use]
    pub fn new(name: impl Into<String>, params: serde_json::Value) -> Self {
        Self {
            name: name.into(),
            params,
            members: Vec::new(),
        }
    }
}

/// What is attributed to one strategy of a backtest (one row of `by_strategy`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StrategyAttribution {
    /// Member index (`255`: the engine's own closing orders, a stop or a flatten).
    pub id: u8,
    /// Its name, if known.
    pub name: String,
    /// Fills of its orders.
    pub fills: u64,
    /// Realised PnL of its fills, at their prices (before fees).
    pub realized: Decimal,
    /// Fees of its fills.
    pub fees: Decimal,
    /// Unrealised PnL of what its fills leave open, at the final marks.
    pub unrealized: Decimal,
    /// realised + unrealised − fees.
    pub net_pnl: Decimal,
}

impl Report {
    /// Fills, PnL and fees attributed to each strategy that had a fill, by id: each
    /// strategy's fills booked on positions of its own. The engine's own closing orders (a
    /// fired stop, the kill switch) are their own row, `255`. Fees and total PnL (realised +
    /// unrealised) add up to the account's; realised alone need not, since members' positions
    /// net in the account (one member's sell against another's long realises there, while the
    /// seller's own book opens a short).
    #[must_use]
    pub fn by_strategy(&self) -> Vec<StrategyAttribution> {
        use std::collections::BTreeMap;
        let mut books: BTreeMap<u8, Vec<tradeloop_engine::position::Position>> = BTreeMap::new();
        for f in &self.fills {
            let positions = books.entry(f.strategy.0).or_insert_with(|| {
                self.positions
                    .iter()
                    .map(|p| tradeloop_engine::position::Position::new(p.instrument, p.kind))
                    .collect()
            });
            if let Some(p) = positions.get_mut(f.instrument.get()) {
                // The engine applied the same fill, so it cannot be refused here.
                let _ = p.apply_fill(f.side, f.price, f.qty, f.fee);
            }
        }
        books
            .into_iter()
            .map(|(id, positions)| {
                let (mut realized, mut fees, mut unrealized, mut fills) =
                    (Money::ZERO, Money::ZERO, Money::ZERO, 0u64);
                for (p, mark) in positions.iter().zip(&self.marks) {
                    realized += p.realized;
                    fees += p.fees;
                    unrealized += p.unrealized(*mark);
                    fills += p.fills;
                }
                let name = if id == tradeloop_engine::event::StrategyId::ENGINE.0 {
                    "engine".to_owned()
                } else {
                    self.strategy
                        .members
                        .get(usize::from(id))
                        .cloned()
                        .unwrap_or_else(|| self.strategy.name.clone())
                };
                StrategyAttribution {
                    id,
                    name,
                    fills,
                    realized: realized.to_decimal().round_dp(8),
                    fees: fees.to_decimal().round_dp(8),
                    unrealized: unrealized.to_decimal().round_dp(8),
                    net_pnl: (realized + unrealized - fees).to_decimal().round_dp(8),
                }
            })
            .collect()
    }
}

/// Everything a backtest produced: what `summary.json`, `fills.csv` and `report.html` hold
/// ([`Report::write`] writes them; [`Report::stats`] computes the summary statistics).
#[derive(Debug)]
pub struct Report {
    /// The strategy that ran.
    pub strategy: StrategyLabel,
    /// Input files.
    pub inputs: Vec<PathBuf>,
    /// Simulated-execution settings in force (fees and latencies).
    pub execution: serde_json::Value,
    /// Symbols by instrument index.
    pub symbols: Vec<String>,
    /// Every order the run sent, in the order they were sent, each in its last state.
    pub order_log: Vec<tradeloop_engine::order::Order>,
    /// Fills in order.
    pub fills: Vec<FillRow>,
    /// (time, equity) samples: realised + unrealised − fees, summed over instruments.
    pub equity: Vec<(u64, Money)>,
    /// (time, mark per instrument) at each equity sample: the mid, else the last trade
    /// (zero before the first).
    pub prices: Vec<(u64, Vec<Price>)>,
    /// Period of the equity changes Sharpe and Sortino are computed from (`[report]
    /// stats_period_s`), ns.
    pub stats_period_ns: u64,
    /// Samples during which some position was open.
    pub exposed_samples: u64,
    /// Final positions.
    pub positions: Vec<tradeloop_engine::position::Position>,
    /// Final marks (mid, else last trade).
    pub marks: Vec<Price>,
    /// Orders sent.
    pub orders: u64,
    /// Orders denied by risk or the engine.
    pub denied: u64,
    /// Steps replayed (frames and CSV rows).
    pub events: u64,
    /// Normalized market events handed to the engine (trades, quotes, book levels, marks,
    /// liquidations).
    pub market_events: u64,
    /// Frames or rows refused by the parsers.
    pub refused: u64,
    /// Input not used (skipped lines, refused frames, dropped rows) by reason, with the
    /// first few of each and their file and line.
    pub input_issues: InputIssues,
    /// First and last event time.
    pub span_ns: (u64, u64),
    /// Wall time of the replay itself.
    pub wall: Duration,
    /// Stops fired (closing order sent) and refused.
    pub stops: (u64, u64),
    /// Circuit-breaker transitions, with their clock time.
    pub breaker_events: Vec<(u64, BreakerEvent)>,
    /// Strategy timers that fired.
    pub timers_fired: u64,
    /// Amends sent.
    pub amends: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Orders (and amends) denied, by reason ([`Deny::NAMES`](tradeloop_engine::api::Deny::NAMES)),
    /// reasons with none left out.
    pub denials: Vec<(&'static str, u64)>,
}

/// Records last trade prices on the way to the lanes.
/// Hands each market-data event straight to the engine (one thread produces and consumes, so
/// the NORMAL lane would only add two atomic operations per event; see
/// `Engine::handle_market`). The sim venue's reports still travel on the HIGH lane.
struct Sink<S> {
    lanes: Arc<Lanes>,
    last_trade: Vec<Price>,
    engine: BtEngine<S>,
    handed: u64,
}

impl<S: Strategy> Sink<S> {
    /// Runs the engine until every lane is empty (a turn only when it has something to do:
    /// most steps leave nothing queued).
    #[inline]
    fn drain_engine(&mut self) {
        if !self.engine.is_idle() {
            while self.engine.poll() > 0 {}
        }
    }

    /// Fires the timers due before the next recorded event at `next_ns`, each at its own due
    /// time: the clock moves to it, the simulated venue releases what is due by then, and the
    /// engine runs. One load when no timer is pending.
    #[inline]
    fn fire_timers_before(&mut self, next_ns: u64, clock: &SimClock) {
        while let Some(due) = self.engine.next_timer_due().filter(|&d| d < next_ns) {
            let at = due.max(clock.now_ns());
            clock.set(at);
            self.engine.poll_gateway(at);
            self.drain_engine();
        }
    }
}

impl<S: Strategy> MarketSink for Sink<S> {
    fn push(&mut self, event: Event) {
        self.handed += 1;
        if let EventKind::Trade(t) = event.kind {
            if let Some(p) = self.last_trade.get_mut(t.instrument.get()) {
                *p = t.price;
            }
        }
        self.engine.handle_market(event);
    }
    fn book_lost(&mut self, instrument: InstrumentIndex) {
        self.lanes.mark_book_stale(instrument);
    }
}

/// The formats `--data` reads, for messages.
pub const FORMATS_READ: &str = "recordings (one `<recv_ns> <frame>` per line, gzip or plain, as \
`tradeloop record` and hftbacktest's collector write them), Tardis CSV (a `trades` or \
`incremental_book_L2` file, header `exchange,symbol,timestamp,local_timestamp,…`) and .tle \
files (`tradeloop convert`)";

/// The protocol of a frame file, from its first frames: Bybit topics (and their book depth),
/// OKX, Coinbase or Kraken channels, else Binance with the spot or USD-M rule from its first
/// depth diff.
///
/// # Errors
/// An unreadable file, an empty one, or one whose first lines are not recorded frames
/// (another CSV, random bytes): the message names the file and the formats read.
fn detect_protocol(path: &Path) -> anyhow::Result<Wire> {
    let mut reader = tradeloop_adapters::recorder::open_text(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut bybit = false;
    let mut framed = false;
    let mut first: Option<String> = None;
    let mut buf = Vec::new();
    for n in 1..=5_000 {
        buf.clear();
        let read = match reader.read_until(b'\n', &mut buf) {
            Ok(read) => read,
            // A file that breaks after its first frames is judged on those; the replay reports
            // where it breaks.
            Err(_) if framed => break,
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "{}: cannot decode line {n}: {e} (the file is truncated or damaged)",
                    path.display()
                ))
            }
        };
        if read == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if first.is_none() {
            first = Some(line.chars().take(80).collect());
        }
        let has_time = line
            .split_once(' ')
            .is_some_and(|(ts, _)| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()));
        if !has_time {
            continue;
        }
        framed = true;
        if let Some(at) = line.find("{\"topic\":\"orderbook.") {
            let rest = &line[at + "{\"topic\":\"orderbook.".len()..];
            let depth = rest.split('.').next().and_then(|d| d.parse::<u16>().ok());
            match depth {
                Some(d) if d > 1 => return Ok(Wire::Bybit(d)),
                _ => bybit = true,
            }
        } else if line.contains("{\"topic\":\"") {
            bybit = true;
        } else if line.contains("{\"arg\":{\"channel\":\"") {
            return Ok(Wire::Okx);
        } else if line.contains("{\"channel\":\"") {
            // Coinbase envelopes carry a sequence number; Kraken's do not.
            return Ok(if line.contains("\"sequence_num\":") {
                Wire::Coinbase
            } else {
                Wire::Kraken
            });
        } else if line.contains("depthUpdate") {
            return Ok(Wire::Binance(if line.contains("\"pu\":") {
                Market::UsdM
            } else {
                Market::Spot
            }));
        }
    }
    match first {
        None => anyhow::bail!(
            "{}: the file is empty; expected one of: {FORMATS_READ}",
            path.display()
        ),
        Some(first) if !framed => {
            let binary = first
                .chars()
                .any(|c| c == char::REPLACEMENT_CHARACTER || (c.is_control() && c != '\t'));
            let what = if binary {
                "binary data, not text".to_owned()
            } else if first.contains(',') && !first.contains('{') {
                format!("a CSV with an unknown header: {first:?}")
            } else {
                format!("no line starts with a receive time; the first is {first:?}")
            };
            anyhow::bail!(
                "{}: not a format tradeloop reads ({what}); expected one of: {FORMATS_READ}",
                path.display()
            )
        }
        Some(_) => Ok(if bybit {
            Wire::Bybit(50)
        } else {
            Wire::Binance(Market::Spot)
        }),
    }
}

/// A replay's input, one step (frame or CSV row) at a time.
pub trait Steps {
    /// Receive time of the next step, `None` at the end.
    ///
    /// # Errors
    /// I/O or a corrupt input.
    fn peek_ns(&mut self) -> anyhow::Result<Option<u64>>;
    /// Hands the next step's events to `sink`; `true` if its frame was refused.
    ///
    /// # Errors
    /// I/O or a corrupt input.
    fn feed(&mut self, sink: &mut impl MarketSink) -> anyhow::Result<bool>;
    /// Consumes the next step without handing it on.
    ///
    /// # Errors
    /// I/O or a corrupt input.
    fn skip(&mut self) -> anyhow::Result<()>;
    /// Input refused outside any step (malformed CSV rows, unknown symbols), so far.
    fn extra_refused(&self) -> u64;

    /// Input not used so far, by reason, with the first few of each (file and line).
    fn issues(&self) -> InputIssues {
        InputIssues::default()
    }

    /// Receive time of the next step inside `[from, to)`, skipping the steps before `from`;
    /// `None` at `to` or the end.
    ///
    /// # Errors
    /// I/O or a corrupt input.
    fn next_in(&mut self, from: Option<u64>, to: Option<u64>) -> anyhow::Result<Option<u64>> {
        while let Some(ns) = self.peek_ns()? {
            if to.is_some_and(|to| ns >= to) {
                return Ok(None);
            }
            if from.is_none_or(|from| ns >= from) {
                return Ok(Some(ns));
            }
            self.skip()?;
        }
        Ok(None)
    }
}

/// Recorded frames and Tardis CSV, merged in time order and parsed through the venue parser
/// and book sync. Frame files are grouped by the protocol and book-sync rule detected in each
/// (Binance spot, Binance USD-M, Bybit, Kraken, Coinbase, OKX) and by the venue named with
/// `VENUE=PATH`; each group has its own reader, feed and symbol map, so recordings of several
/// venues replay together — the spot and the USD-M BTCUSDT captures into two instruments, for
/// example. A group's symbols map to the instruments of its named venue, else of the
/// configured venues of its kind (`binance`, `binance-usdm`, …), else (no venue of that kind,
/// e.g. only `sim` venues) of every venue.
pub struct RawSteps {
    groups: Vec<FrameGroup>,
    tardis: TardisReader,
    /// Which input the next step comes from: a group index, or `None` for the CSV.
    next: Option<usize>,
}

/// The frame files of one protocol, with their feed.
struct FrameGroup {
    frames: FrameReader,
    feed: crate::venues::AnyFeed,
    recorded: Wire,
}

/// `VENUE=PATH` names the configured venue a recording is of; a plain path names none. A path
/// that is itself a file is never split (a file name may hold `=`).
#[must_use]
pub fn venue_binding(arg: &Path) -> (Option<&str>, &Path) {
    if arg.is_file() {
        return (None, arg);
    }
    match arg.to_str().and_then(|s| s.split_once('=')) {
        Some((venue, path)) if !venue.is_empty() && !venue.contains('/') => {
            (Some(venue), Path::new(path))
        }
        _ => (None, arg),
    }
}

impl RawSteps {
    /// Opens the files (frames and Tardis CSV, told apart by their first line).
    ///
    /// # Errors
    /// Unreadable files, or a file that is none of the formats read (the error names it and
    /// the formats).
    pub fn open(
        config: &Config,
        registry: &InstrumentRegistry,
        data: &[PathBuf],
    ) -> anyhow::Result<Self> {
        Self::open_with(config, registry, data, false)
    }

    /// [`Self::open`]; with `allow_partial` a recording that cannot be decoded to its end is
    /// replayed up to where it breaks.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_with(
        config: &Config,
        registry: &InstrumentRegistry,
        data: &[PathBuf],
        allow_partial: bool,
    ) -> anyhow::Result<Self> {
        let mut all = SymbolMap::default();
        for i in registry.iter() {
            if all.find(&i.symbol).is_none() {
                all.insert(&i.symbol, i.index);
            }
        }
        let mut tardis_files = Vec::new();
        // Frame files by (protocol, venue named with VENUE=PATH).
        let mut by_protocol: Vec<(Wire, Option<String>, Vec<PathBuf>)> = Vec::new();
        for arg in data {
            let (venue, f) = venue_binding(arg);
            if let Some(v) = venue {
                anyhow::ensure!(
                    config.venues.iter().any(|c| c.name == v),
                    "--data {}: no [[venues]] entry named {v:?} (configured: {})",
                    arg.display(),
                    config
                        .venues
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if is_tardis_csv(f) {
                tardis_files.push(f.to_path_buf());
                continue;
            }
            let recorded = detect_protocol(f)?;
            let venue = venue.map(str::to_owned);
            match by_protocol
                .iter_mut()
                .find(|(r, v, _)| *r == recorded && *v == venue)
            {
                Some((_, _, files)) => files.push(f.to_path_buf()),
                None => by_protocol.push((recorded, venue, vec![f.to_path_buf()])),
            }
        }
        let mut groups = Vec::with_capacity(by_protocol.len());
        for (recorded, bound, files) in by_protocol {
            let kind = recorded.kind();
            let venues: Vec<&str> = match &bound {
                Some(v) => vec![v.as_str()],
                None => config
                    .venues
                    .iter()
                    .filter(|v| v.kind == kind)
                    .map(|v| v.name.as_str())
                    .collect(),
            };
            let symbols = if venues.is_empty() {
                all.clone()
            } else {
                let mut m = SymbolMap::default();
                for i in registry
                    .iter()
                    .filter(|i| venues.contains(&i.venue.as_str()))
                {
                    if m.find(&i.symbol).is_none() {
                        m.insert(&i.symbol, i.index);
                    }
                }
                m
            };
            let feed = crate::venues::feed(
                recorded,
                symbols,
                registry,
                &config.feed,
                crate::venues::FeedUse::Replay,
            );
            groups.push(FrameGroup {
                frames: FrameReader::open_with(&files, allow_partial)?,
                feed,
                recorded,
            });
        }
        Ok(Self {
            groups,
            tardis: TardisReader::open(&tardis_files, all)?,
            next: None,
        })
    }

    /// The venue protocols and book sync rules in use, one per group of frame files (none for
    /// CSV alone).
    #[must_use]
    pub fn recorded(&self) -> Vec<Wire> {
        self.groups.iter().map(|g| g.recorded).collect()
    }
}

impl Steps for RawSteps {
    fn peek_ns(&mut self) -> anyhow::Result<Option<u64>> {
        // The earliest input; ties go to frames before CSV, and to the group listed first.
        let mut best: Option<(u64, Option<usize>)> = None;
        for (k, g) in self.groups.iter_mut().enumerate() {
            if let Some(ns) = g.frames.peek_ns()? {
                if best.is_none_or(|(b, _)| ns < b) {
                    best = Some((ns, Some(k)));
                }
            }
        }
        if let Some(ns) = self.tardis.peek_ns() {
            if best.is_none_or(|(b, _)| ns < b) {
                best = Some((ns, None));
            }
        }
        Ok(best.map(|(ns, next)| {
            self.next = next;
            ns
        }))
    }

    fn feed(&mut self, sink: &mut impl MarketSink) -> anyhow::Result<bool> {
        match self.next {
            Some(k) => {
                let g = &mut self.groups[k];
                let (ns, frame) = g.frames.next_frame()?.context("no frame left")?;
                let outcome = g.feed.on_frame(ns, frame, sink);
                if let FrameOutcome::Refused(e) = outcome {
                    g.frames.record_issue(Skip::refused(&e));
                    return Ok(true);
                }
                Ok(false)
            }
            None => {
                let event = self.tardis.next_event()?.context("no row left")?;
                sink.push(event);
                Ok(false)
            }
        }
    }

    fn skip(&mut self) -> anyhow::Result<()> {
        match self.next {
            Some(k) => {
                self.groups[k].frames.next_frame()?;
            }
            None => {
                self.tardis.next_event()?;
            }
        }
        Ok(())
    }

    fn extra_refused(&self) -> u64 {
        self.tardis.stats().malformed + self.tardis.stats().unknown_symbol
    }

    fn issues(&self) -> InputIssues {
        let mut all = InputIssues::default();
        for g in &self.groups {
            all.merge(g.frames.issues());
        }
        all.merge(self.tardis.issues());
        all
    }
}

/// A converted `.tle` file (see `tradeloop convert`).
pub struct TleSteps {
    reader: TleReader,
}

impl TleSteps {
    /// Reads a `.tle` file, its instruments mapped onto `registry` by symbol (instruments the
    /// configuration lacks are dropped, as the raw replay's parser drops them).
    #[must_use]
    pub fn new(mut reader: TleReader, registry: &InstrumentRegistry) -> Self {
        // By venue and symbol; by symbol alone for a file converted under other venue names.
        reader.map_instruments(|x| {
            registry
                .iter()
                .find(|i| i.venue == x.venue && i.symbol == x.symbol)
                .or_else(|| registry.iter().find(|i| i.symbol == x.symbol))
                .map(|i| i.index)
        });
        Self { reader }
    }
}

impl Steps for TleSteps {
    #[inline]
    fn peek_ns(&mut self) -> anyhow::Result<Option<u64>> {
        Ok(self.reader.peek_ns()?)
    }

    #[inline]
    fn feed(&mut self, sink: &mut impl MarketSink) -> anyhow::Result<bool> {
        let refused = self.reader.next_step(|item| match item {
            TleItem::Event(e) => sink.push(e),
            TleItem::BookLost(i) => sink.book_lost(i),
            TleItem::Nothing => {}
        })?;
        refused.context("step cut short")
    }

    fn skip(&mut self) -> anyhow::Result<()> {
        while !self
            .reader
            .next_record()?
            .context("step cut short")?
            .end_of_step
        {}
        Ok(())
    }

    fn extra_refused(&self) -> u64 {
        self.reader.totals().map_or(0, |t| t.extra_refused)
    }
}

/// The input of a backtest: a converted `.tle` file (or its bytes, shared between the
/// replays of a sweep), or recordings and CSV to parse.
#[derive(Clone, Debug)]
pub enum Input {
    /// One `.tle` file held in memory.
    Tle(Arc<[u8]>),
    /// One `.tle` file streamed from disk.
    TleFile(PathBuf),
    /// Recordings and Tardis CSV.
    Raw(Vec<PathBuf>),
}

impl Input {
    /// Classifies `--data`: a single `.tle` file, or any mix of recordings and CSV.
    ///
    /// # Errors
    /// A missing file, or a `.tle` file mixed with other inputs.
    pub fn from_paths(data: &[PathBuf]) -> anyhow::Result<Self> {
        for p in data {
            let (_, file) = venue_binding(p);
            anyhow::ensure!(
                file.is_file(),
                "--data {}: not a readable file",
                p.display()
            );
        }
        let tle: Vec<&PathBuf> = data.iter().filter(|p| TleReader::is_tle(p)).collect();
        match (tle.len(), data.len()) {
            (0, _) => Ok(Self::Raw(data.to_vec())),
            (1, 1) => Ok(Self::TleFile(tle[0].clone())),
            _ => anyhow::bail!(
                "--data: a .tle file ({}) must be the only input (convert the recordings into one file together)",
                tle[0].display()
            ),
        }
    }
}

/// A backtest to run: the configuration, the inputs, a time window and the strategy; built
/// step by step and run with [`Backtest::run`]. The replay is single-threaded on a simulated
/// clock and deterministic: the same inputs, configuration and strategy give the same
/// [`Report`] (its wall-clock figures aside).
///
/// ```no_run
/// use tradeloop::backtest::Backtest;
/// use tradeloop::config::Config;
/// use tradeloop::engine::strategies::MaCross;
///
/// # fn main() -> anyhow::Result<()> {
/// let config = Config::load("config.toml".as_ref(), &Default::default())?;
/// let report = Backtest::from_config(&config)?
///     .data(["binance_usdm_btcusdt_20240808.gz"])
///     .strategy_with(|instruments| {
///         let btc = instruments.by_symbol("BTCUSDT").expect("configured");
///         let params = tradeloop::engine::strategies::MaCrossConfig::default();
///         Ok(MaCross::new(&params, btc.index, btc.tick_size))
///     })?
///     .run()?;
/// println!("{} fills, net PnL {}", report.fills.len(), report.stats().net_pnl);
/// report.write("results/my-backtest".as_ref())?;
/// # Ok(())
/// # }
/// ```
///
/// # Allocation
/// Building and the start of [`Backtest::run`] allocate (books, pool, readers); the replay
/// loop allocates only to append fills and equity samples to the report.
pub struct Backtest<S = ()> {
    config: Config,
    registry: InstrumentRegistry,
    options: BacktestOptions,
    input: Option<Input>,
    strategy: S,
    label: StrategyLabel,
}

impl Backtest<()> {
    /// A backtest on `config`'s instruments, risk limits, stops, breakers and simulated
    /// execution, with no inputs and no strategy yet.
    ///
    /// # Errors
    /// A [`ConfigError`](crate::config::ConfigError) if the instruments cannot be registered.
    pub fn from_config(config: &Config) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            registry: config.registry()?,
            config: config.clone(),
            options: BacktestOptions {
                data: Vec::new(),
                from_ns: None,
                to_ns: None,
                progress: false,
                allow_partial: false,
            },
            input: None,
            strategy: (),
            label: StrategyLabel::new("", serde_json::Value::Null),
        })
    }

    /// The strategy to run. Its instrument indices are those of [`Self::instruments`].
    #[must_use]
    pub fn strategy<S: Strategy>(self, strategy: S) -> Backtest<S> {
        let name = std::any::type_name::<S>().to_owned();
        Backtest {
            config: self.config,
            registry: self.registry,
            options: self.options,
            input: self.input,
            strategy,
            label: StrategyLabel::new(name, serde_json::Value::Null),
        }
    }

    /// The strategy, built from the backtest's instruments (look a symbol up with
    /// [`InstrumentRegistry::by_symbol`]).
    ///
    /// # Errors
    /// What `build` returns.
    pub fn strategy_with<S: Strategy>(
        self,
        build: impl FnOnce(&InstrumentRegistry) -> anyhow::Result<S>,
    ) -> anyhow::Result<Backtest<S>> {
        let strategy = build(&self.registry)?;
        Ok(self.strategy(strategy))
    }
}

impl<S> Backtest<S> {
    /// The instruments, by index, as the strategy sees them.
    #[must_use]
    pub fn instruments(&self) -> &InstrumentRegistry {
        &self.registry
    }

    /// Input files: `<recv_ns> <frame>` recordings (gzip or plain) and Tardis CSV, merged in
    /// time order, or one converted `.tle` file.
    #[must_use]
    pub fn data<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.options.data = paths.into_iter().map(Into::into).collect();
        self.input = None;
        self
    }

    /// An already classified input (a sweep shares one in-memory `.tle` image between runs).
    #[must_use]
    pub fn input(mut self, input: Input) -> Self {
        self.input = Some(input);
        self
    }

    /// Only events received in `[from_ns, to_ns)` (ns since the epoch; `None`: unbounded).
    #[must_use]
    pub fn window(mut self, from_ns: Option<u64>, to_ns: Option<u64>) -> Self {
        self.options.from_ns = from_ns;
        self.options.to_ns = to_ns;
        self
    }

    /// Shows a progress spinner on stderr while it runs.
    #[must_use]
    pub fn progress(mut self, on: bool) -> Self {
        self.options.progress = on;
        self
    }

    /// Replays the decodable part of a truncated or damaged recording instead of failing
    /// (the report's [`Report::input_issues`] then counts it `truncated` and is partial).
    #[must_use]
    pub fn allow_partial(mut self, on: bool) -> Self {
        self.options.allow_partial = on;
        self
    }

    /// How `summary.json` names the strategy and its parameters (default: the type name and
    /// `null`).
    #[must_use]
    pub fn label(mut self, name: impl Into<String>, params: serde_json::Value) -> Self {
        self.label = StrategyLabel::new(name, params);
        self
    }

    /// Names a portfolio's members, by id (`summary.json`'s `by_strategy`, and a `strategy`
    /// column in `fills.csv`).
    #[must_use]
    pub fn members(mut self, names: Vec<String>) -> Self {
        self.label.members = names;
        self
    }
}

impl<S: Strategy> Backtest<S> {
    /// Runs the replay and returns the report.
    ///
    /// # Errors
    /// No input, unreadable or corrupt inputs.
    pub fn run(self) -> anyhow::Result<Report> {
        self.run_into_parts().map(|(report, _)| report)
    }

    /// Runs the replay and returns the report and the strategy as it ended (to read its own
    /// state).
    ///
    /// # Errors
    /// No input, unreadable or corrupt inputs.
    pub fn run_into_parts(self) -> anyhow::Result<(Report, S)> {
        let Self {
            config,
            registry,
            options,
            input,
            strategy,
            label,
        } = self;
        let input = match input {
            Some(input) => input,
            None => {
                anyhow::ensure!(!options.data.is_empty(), "a backtest needs input data");
                Input::from_paths(&options.data)?
            }
        };
        let (report, strategy) = match &input {
            Input::Raw(paths) => {
                let steps = RawSteps::open_with(&config, &registry, paths, options.allow_partial)?;
                drive(&config, &options, registry, steps, strategy, label)?
            }
            Input::TleFile(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let reader = TleReader::from_reader(Box::new(file))
                    .with_context(|| format!("{}", path.display()))?;
                let steps = TleSteps::new(reader, &registry);
                drive(&config, &options, registry, steps, strategy, label)?
            }
            Input::Tle(bytes) => {
                let steps = TleSteps::new(TleReader::from_memory(Arc::clone(bytes))?, &registry);
                drive(&config, &options, registry, steps, strategy, label)?
            }
        };
        Ok((report, strategy))
    }
}

/// The moving-average crossover from `[strategy.ma_cross]` (its defaults when the section is
/// absent) and its parameters: the strategy `bench` measures with, whatever strategy the
/// configuration runs.
///
/// # Errors
/// Bad `[strategy.ma_cross]` parameters, named.
pub fn ma_cross(
    config: &Config,
    registry: &InstrumentRegistry,
) -> anyhow::Result<(MaCross, tradeloop_engine::strategies::MaCrossConfig)> {
    use crate::strategy::Configurable as _;
    let params = if config.strategy.sections.contains_key(MaCross::NAME) {
        crate::strategy::params::<MaCross>(config)?
    } else {
        tradeloop_engine::strategies::MaCrossConfig::default()
    };
    let strategy = MaCross::build(&params, registry)
        .map_err(|e| anyhow::anyhow!("config key `strategy.ma_cross.{}`: {}", e.key, e.reason))?;
    Ok((strategy, params))
}

/// A backtest of [`ma_cross`], labelled as `summary.json` names it.
///
/// # Errors
/// Bad `[strategy.ma_cross]` parameters, named.
pub fn with_ma_cross(config: &Config) -> anyhow::Result<Backtest<MaCross>> {
    let bt = Backtest::from_config(config)?;
    let (strategy, params) = ma_cross(config, bt.instruments())?;
    Ok(bt
        .strategy(strategy)
        .label("ma_cross", serde_json::to_value(&params)?))
}

fn drive<St: Steps, S: Strategy>(
    config: &Config,
    options: &BacktestOptions,
    registry: InstrumentRegistry,
    mut steps: St,
    strategy: S,
    label: StrategyLabel,
) -> anyhow::Result<(Report, S)> {
    let n = registry.len();
    let names: Vec<String> = registry.iter().map(|i| i.symbol.clone()).collect();
    // Market data goes straight to the engine (see `Sink`); the NORMAL lane stays empty.
    let lanes = Arc::new(Lanes::new(LaneConfig {
        normal_slots: BACKTEST_NORMAL_SLOTS,
        ..config.engine.lanes
    }));
    let clock = SimClock::new(0);
    let x = &config.execution;
    let gateway = SimGateway::new(config.exec_config(n), Arc::clone(&lanes))
        .with_fees(config.fee_schedule())
        .with_instruments(&registry)
        .with_queue_model(config.execution.queue_model.model())
        .with_latency_model(latency_model(config)?);
    let outbox = Arc::new(Outbox::new(1 << 16));
    let guard = Arc::new(tradeloop_engine::stops::StopGuard::new(n));
    let engine = config
        .engine(
            Arc::clone(&lanes),
            registry,
            strategy,
            gateway,
            clock.clone(),
            guard,
        )
        .with_outbox(Arc::clone(&outbox))
        // The backtest reads fills and breaker transitions; orders, positions, denials and
        // lane metrics would only be copied and dropped.
        .with_record_kinds(Record::ORDER | Record::FILL | Record::BREAKER)
        .without_latency_histograms();
    let mut sink = Sink {
        lanes: Arc::clone(&lanes),
        last_trade: vec![Price::ZERO; n],
        engine,
        handed: 0,
    };
    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed} {pos} events {per_sec} {msg}",
            )
            .expect("constant template"),
        );
        bar
    });

    let mut fills = Vec::new();
    let mut order_log = OrderLog::default();
    let mut breaker_events = Vec::new();
    let mut records = Vec::with_capacity(1 << 16);
    let mut equity = Vec::new();
    let mut prices: Vec<(u64, Vec<Price>)> = Vec::new();
    let mut exposed = 0u64;
    let (mut events, mut refused) = (0u64, 0u64);
    let mut next_sample: Option<u64> = None;
    let mut span = (0u64, 0u64);
    let started = Instant::now();
    while let Some(ns) = steps.next_in(options.from_ns, options.to_ns)? {
        if events == 0 {
            clock.set(ns);
            sink.engine.start();
            sink.drain_engine();
        }
        sink.fire_timers_before(ns, &clock);
        clock.set(ns);
        refused += u64::from(steps.feed(&mut sink)?);
        events += 1;
        if span.0 == 0 {
            span.0 = ns;
        }
        span.1 = ns;
        sink.drain_engine();
        if !outbox.is_empty() {
            drain(
                &outbox,
                &mut records,
                &mut fills,
                &mut order_log,
                &mut breaker_events,
            );
        }
        let due = *next_sample.get_or_insert_with(|| ns - ns % EQUITY_SAMPLE_NS + EQUITY_SAMPLE_NS);
        if ns >= due {
            let (e, open) = equity_now(&sink.engine, &sink.last_trade);
            equity.push((due, e));
            prices.push((
                due,
                (0..n)
                    .map(|i| mark(&sink.engine, &sink.last_trade, i))
                    .collect(),
            ));
            exposed += u64::from(open);
            next_sample = Some(due + EQUITY_SAMPLE_NS * (1 + (ns - due) / EQUITY_SAMPLE_NS));
        }
        if let Some(bar) = &progress {
            if events % 65_536 == 0 {
                bar.set_position(events);
            }
        }
    }
    // Let reports still in flight arrive.
    let settle =
        clock.now_ns() + (x.entry_latency_us + x.response_latency_us + x.jitter_us) * 1_000 + 1;
    clock.set(settle);
    sink.engine.poll_gateway(settle);
    sink.drain_engine();
    drain(
        &outbox,
        &mut records,
        &mut fills,
        &mut order_log,
        &mut breaker_events,
    );
    let wall = started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let (e, open) = equity_now(&sink.engine, &sink.last_trade);
    equity.push((settle, e));
    exposed += u64::from(open);
    let marks = (0..n)
        .map(|i| mark(&sink.engine, &sink.last_trade, i))
        .collect();
    let report = sink.engine.shutdown();
    refused += steps.extra_refused();
    let input_issues = steps.issues();
    if sink.handed == 0 {
        return Err(no_events(
            &options.data,
            (options.from_ns, options.to_ns),
            events,
            &input_issues,
        ));
    }
    let strategy = sink.engine.into_strategy();
    let execution = serde_json::json!({
        "maker_fee_bps": x.maker_fee_bps, "taker_fee_bps": x.taker_fee_bps,
        "entry_latency_us": x.entry_latency_us, "response_latency_us": x.response_latency_us,
    });
    let report = Report {
        strategy: label,
        inputs: options.data.clone(),
        execution,
        symbols: names,
        order_log: order_log.orders,
        fills,
        equity,
        prices,
        stats_period_ns: config.report.stats_period_s.saturating_mul(1_000_000_000),
        exposed_samples: exposed,
        positions: report.positions,
        marks,
        orders: report.counters.orders_sent,
        denied: report.counters.denials.iter().sum::<u64>(),
        events,
        market_events: sink.handed,
        refused,
        input_issues,
        span_ns: span,
        wall,
        stops: (report.counters.stops_fired, report.counters.stops_failed),
        breaker_events,
        timers_fired: report.counters.timers_fired,
        amends: report.counters.amends_sent,
        cancels: report.counters.cancels_sent,
        denials: tradeloop_engine::api::Deny::NAMES
            .iter()
            .zip(report.counters.denials)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (*name, n))
            .collect(),
    };
    Ok((report, strategy))
}

/// The error of a replay that handed no market event to the engine: what was read, and why
/// nothing of it was used.
/// The simulated venue's latency model from `[execution] latency_model` (its file read).
///
/// # Errors
/// The key and why (a bad multiple; an unreadable, unsorted or malformed latency file, its
/// line named).
pub fn latency_model(
    config: &Config,
) -> Result<tradeloop_adapters::sim::matching::LatencyModel, crate::config::ConfigError> {
    config
        .execution
        .latency_model
        .model()
        .map_err(|(key, reason)| crate::config::ConfigError {
            key: format!("execution.{key}"),
            reason,
        })
}

pub(crate) fn no_events(
    data: &[PathBuf],
    (from_ns, to_ns): (Option<u64>, Option<u64>),
    steps: u64,
    issues: &InputIssues,
) -> anyhow::Error {
    let files = data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let window = match (from_ns, to_ns) {
        (None, None) => String::new(),
        (from, to) => format!(
            " in the window [{}, {})",
            from.map_or_else(|| "start".to_owned(), |n| n.to_string()),
            to.map_or_else(|| "end".to_owned(), |n| n.to_string())
        ),
    };
    let why = if issues.total() > 0 {
        format!(
            "; {} lines, frames or rows were not used:\n{}",
            issues.total(),
            issues.describe()
        )
    } else if steps == 0 {
        " (the input holds no frame or row with a receive time)".to_owned()
    } else {
        format!(" ({steps} frames or rows were read, none of them market data)")
    };
    anyhow::anyhow!(
        "no market events{window} in {files}: expected recordings (`<recv_ns> <frame>` per line), Tardis CSV or a .tle file{why}"
    )
}

/// The last state of every order, in the order they were sent.
#[derive(Default)]
struct OrderLog {
    orders: Vec<tradeloop_engine::order::Order>,
    index: std::collections::HashMap<u64, usize>,
}

impl OrderLog {
    fn update(&mut self, order: tradeloop_engine::order::Order) {
        match self.index.entry(order.client_id.0) {
            std::collections::hash_map::Entry::Occupied(e) => self.orders[*e.get()] = order,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.orders.len());
                self.orders.push(order);
            }
        }
    }
}

fn drain(
    outbox: &Outbox,
    records: &mut Vec<Record>,
    fills: &mut Vec<FillRow>,
    orders: &mut OrderLog,
    breakers: &mut Vec<(u64, BreakerEvent)>,
) {
    outbox.drain_into(records, usize::MAX);
    for r in records.drain(..) {
        if let Record::Order { order, .. } = r {
            orders.update(order);
            continue;
        }
        if let Record::Breaker { event, ts_ns } = r {
            breakers.push((ts_ns, event));
        }
        if let Record::Fill {
            client_id,
            instrument,
            side,
            price,
            qty,
            fee,
            maker,
            strategy,
            ts_ns,
        } = r
        {
            fills.push(FillRow {
                ts_ns,
                client_id: client_id.0,
                instrument,
                side,
                price,
                qty,
                fee,
                maker,
                strategy,
            });
        }
    }
}

/// NORMAL lane slots in a backtest, where market data bypasses the lane.
const BACKTEST_NORMAL_SLOTS: usize = 1024;

type BtEngine<S> = Engine<S, PreTradeRisk, SimGateway, SimClock>;

fn mark<S: Strategy>(engine: &BtEngine<S>, last_trade: &[Price], i: usize) -> Price {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "bounded by MAX_INSTRUMENTS"
    )]
    let index = InstrumentIndex(i as u16);
    engine
        .core()
        .book(index)
        .mid()
        .filter(|_| engine.core().book(index).is_live())
        .unwrap_or(last_trade[i])
}

fn equity_now<S: Strategy>(engine: &BtEngine<S>, last_trade: &[Price]) -> (Money, bool) {
    let mut total = Money::ZERO;
    let mut open = false;
    for i in 0..last_trade.len() {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "bounded by MAX_INSTRUMENTS"
        )]
        let p = engine.core().position(InstrumentIndex(i as u16));
        total += p.net_pnl(mark(engine, last_trade, i));
        open |= !p.qty.is_zero();
    }
    (total, open)
}

/// Summary statistics of a backtest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stats {
    /// Realised PnL (before fees), exact.
    pub realized: Decimal,
    /// Unrealised PnL at the final marks.
    pub unrealized: Decimal,
    /// Fees paid.
    pub fees: Decimal,
    /// realised + unrealised − fees.
    pub net_pnl: Decimal,
    /// Largest fall of equity from a previous peak.
    pub max_drawdown: Decimal,
    /// Σ |price × qty| of fills.
    pub turnover: Decimal,
    /// Round trips won after fees / round trips (`None` without a completed round trip).
    pub win_rate: Option<f64>,
    /// Completed round trips: a position opened from flat and brought back to flat (or
    /// through zero) on one instrument.
    pub round_trips: u64,
    /// Mean PnL after fees of the round trips won.
    pub avg_win: Option<Decimal>,
    /// Mean PnL after fees of the round trips lost (negative).
    pub avg_loss: Option<Decimal>,
    /// Gross PnL of the trips won / gross loss of the trips lost (`None` without a loss).
    pub profit_factor: Option<f64>,
    /// Mean PnL after fees per round trip.
    pub expectancy: Option<Decimal>,
    /// Longest run of round trips lost in a row.
    pub max_consecutive_losses: u64,
    /// Mean time from a round trip's first fill to its last, seconds.
    pub avg_holding_s: Option<f64>,
    /// Equity periods (`[report] stats_period_s`) in the span.
    pub periods: u64,
    /// Mean / std of equity changes per period (PnL, no capital base), × √(periods per year);
    /// `None` under 30 periods (see `ratios_note`).
    pub sharpe: Option<f64>,
    /// Mean / downside deviation of equity changes per period, × √(periods per year).
    pub sortino: Option<f64>,
    /// Why Sharpe and Sortino are left out, when they are.
    pub ratios_note: Option<String>,
    /// Share of equity samples with a position open.
    pub exposure: f64,
    /// Realised PnL recomputed slowly in `Decimal` from the fill log agrees with the engine's.
    pub pnl_check: bool,
}

/// Fewest equity periods Sharpe and Sortino are computed over.
pub const MIN_RATIO_PERIODS: u64 = 30;

/// Computes the statistics (and the slow `Decimal` PnL cross-check).
#[must_use]
pub fn stats(bt: &Report) -> Stats {
    let mut realized = Money::ZERO;
    let mut unrealized = Money::ZERO;
    let mut fees = Money::ZERO;
    let mut turnover = Money::ZERO;
    for (p, m) in bt.positions.iter().zip(&bt.marks) {
        realized += p.realized;
        unrealized += p.unrealized(*m);
        fees += p.fees;
        turnover += p.turnover;
    }
    // Average-cost recomputation from fills, per instrument, in Decimal.
    let n = bt.positions.len();
    let (mut qty, mut cost, mut slow_realized) = (
        vec![Decimal::ZERO; n],
        vec![Decimal::ZERO; n],
        Decimal::ZERO,
    );
    // The open round trip per instrument: its realised PnL and its fees so far, and when it
    // opened.
    let mut trip = vec![Decimal::ZERO; n];
    let mut opened = vec![0u64; n];
    // Completed trips: PnL after fees and holding time.
    let mut trips_done: Vec<(Decimal, u64)> = Vec::new();
    for f in &bt.fills {
        let i = f.instrument.get();
        if qty[i].is_zero() {
            opened[i] = f.ts_ns;
        }
        trip[i] -= f.fee.to_decimal();
        let mult = bt.positions[i].kind.multiplier().to_decimal();
        let inverse = bt.positions[i].kind.is_inverse();
        let value = |q: Decimal, p: Decimal| if inverse { q * mult / p } else { q * p * mult };
        let signed = if f.side == Side::Buy {
            f.qty.to_decimal()
        } else {
            -f.qty.to_decimal()
        };
        let p = f.price.to_decimal();
        let pnl = |close: Decimal, removed: Decimal| {
            if inverse {
                removed - value(close, p)
            } else {
                value(close, p) - removed
            }
        };
        if qty[i].is_zero() || qty[i].is_sign_positive() == signed.is_sign_positive() {
            cost[i] += value(signed, p);
            qty[i] += signed;
            continue;
        }
        let delta = if signed.abs() <= qty[i].abs() {
            let removed = cost[i] * (-signed) / qty[i];
            cost[i] -= removed;
            let d = pnl(-signed, removed);
            qty[i] += signed;
            d
        } else {
            let d = pnl(qty[i], cost[i]);
            qty[i] += signed;
            cost[i] = value(qty[i], p);
            d
        };
        slow_realized += delta;
        trip[i] += delta;
        if qty[i].is_zero() || qty[i].is_sign_positive() == signed.is_sign_positive() {
            // Back to flat, or through zero: the round trip ends (a flip opens the next
            // one, its fees from the next fill on).
            trips_done.push((trip[i], f.ts_ns.saturating_sub(opened[i])));
            trip[i] = Decimal::ZERO;
            opened[i] = f.ts_ns;
        }
    }
    let trips = trips_done.len() as u64;
    let won: Vec<Decimal> = trips_done
        .iter()
        .map(|t| t.0)
        .filter(|p| *p > Decimal::ZERO)
        .collect();
    let lost: Vec<Decimal> = trips_done
        .iter()
        .map(|t| t.0)
        .filter(|p| *p <= Decimal::ZERO)
        .collect();
    let wins = won.len() as u64;
    let mean = |v: &[Decimal]| {
        (!v.is_empty()).then(|| (v.iter().sum::<Decimal>() / Decimal::from(v.len())).round_dp(8))
    };
    let gross_loss: Decimal = lost.iter().map(|p| -*p).sum();
    let profit_factor = (gross_loss > Decimal::ZERO)
        .then(|| (won.iter().sum::<Decimal>() / gross_loss).to_f64())
        .flatten();
    let mut run = 0u64;
    let mut max_consecutive_losses = 0u64;
    for (p, _) in &trips_done {
        run = if *p <= Decimal::ZERO { run + 1 } else { 0 };
        max_consecutive_losses = max_consecutive_losses.max(run);
    }
    let all: Vec<Decimal> = trips_done.iter().map(|t| t.0).collect();
    let avg_holding_s = (!trips_done.is_empty()).then(|| {
        trips_done.iter().map(|t| t.1 as f64 / 1e9).sum::<f64>() / trips_done.len() as f64
    });
    let pnl_check = (slow_realized - realized.to_decimal()).abs() <= Decimal::new(1, 8);
    let mut peak = Money(i128::MIN);
    let mut max_dd = Money::ZERO;
    for (_, e) in &bt.equity {
        peak = peak.max(*e);
        max_dd = max_dd.max(peak - *e);
    }
    // Equity at each period boundary (the last sample at or before it), then its changes.
    let period = bt.stats_period_ns.max(1);
    let mut at_boundaries: Vec<Money> = Vec::new();
    if let Some(&(t0, first)) = bt.equity.first() {
        at_boundaries.push(first);
        let mut next = t0 + period;
        let mut last = first;
        for &(t, e) in &bt.equity {
            while t > next {
                at_boundaries.push(last);
                next += period;
            }
            last = e;
        }
        if bt.equity.last().is_some_and(|&(t, _)| t >= next) {
            at_boundaries.push(last);
        }
    }
    let changes: Vec<f64> = at_boundaries
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_decimal().to_f64())
        .collect();
    let periods = changes.len() as u64;
    let per_year = (365.0 * 86_400.0 * 1e9 / period as f64).sqrt();
    let ratios_note = (periods < MIN_RATIO_PERIODS).then(|| {
        format!(
            "the span holds {periods} periods of {} s; Sharpe and Sortino need at least {MIN_RATIO_PERIODS} (lower [report] stats_period_s, or backtest a longer span)",
            period / 1_000_000_000
        )
    });
    let (sharpe, sortino) = if ratios_note.is_none() {
        let mean = changes.iter().sum::<f64>() / changes.len() as f64;
        let var =
            changes.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (changes.len() - 1) as f64;
        let down = changes.iter().map(|c| c.min(0.0).powi(2)).sum::<f64>() / changes.len() as f64;
        let ratio = |d: f64| (d > 0.0).then(|| mean / d.sqrt() * per_year);
        (ratio(var), ratio(down))
    } else {
        (None, None)
    };
    Stats {
        realized: realized.to_decimal().round_dp(8),
        unrealized: unrealized.to_decimal().round_dp(8),
        fees: fees.to_decimal().round_dp(8),
        net_pnl: (realized + unrealized - fees).to_decimal().round_dp(8),
        max_drawdown: max_dd.to_decimal().round_dp(8),
        turnover: turnover.to_decimal().round_dp(8),
        win_rate: (trips > 0).then(|| wins as f64 / trips as f64),
        round_trips: trips,
        avg_win: mean(&won),
        avg_loss: mean(&lost),
        profit_factor,
        expectancy: mean(&all),
        max_consecutive_losses,
        avg_holding_s,
        periods,
        ratios_note,
        sharpe,
        sortino,
        exposure: if bt.equity.is_empty() {
            0.0
        } else {
            bt.exposed_samples as f64 / bt.equity.len() as f64
        },
        pnl_check,
    }
}

impl Report {
    /// The summary statistics (and the slow `Decimal` PnL cross-check).
    #[must_use]
    pub fn stats(&self) -> Stats {
        stats(self)
    }

    /// What `summary.json` holds: inputs, strategy, execution settings, counts, statistics,
    /// positions and (under `performance`) the wall-clock figures.
    #[must_use]
    pub fn summary(&self) -> serde_json::Value {
        summary_value(self, &stats(self))
    }

    /// Writes `summary.json`, `fills.csv`, `orders.csv`, `equity.csv`, `report.html` and its charts (`equity.svg` with
    /// the drawdown, `position.svg`, `price-SYMBOL.svg`) into `dir` (created if missing) and
    /// returns the stats.
    ///
    /// # Errors
    /// If the directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Stats> {
        write_outputs(self, dir)
    }
}

/// What `summary.json` holds (see [`Report::summary`]).
fn summary_value(bt: &Report, s: &Stats) -> serde_json::Value {
    let secs = bt.wall.as_secs_f64().max(1e-9);
    serde_json::json!({
        "inputs": bt.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "strategy": bt.strategy,
        "execution": bt.execution,
        "span_ns": [bt.span_ns.0, bt.span_ns.1],
        "events_processed": bt.events,
        "market_events": bt.market_events,
        "events_refused": bt.refused,
        "input": {
            "skipped": bt.input_issues.by_reason().map(|(k, n)| (k.name().to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "examples": bt.input_issues.examples().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "partial": bt.input_issues.partial(),
        },
        "orders": bt.orders,
        "orders_denied": bt.denied,
        "fills": bt.fills.len(),
        "stats": s,
        "stops": { "fired": bt.stops.0, "refused": bt.stops.1 },
        "timers_fired": bt.timers_fired,
        "amends": bt.amends,
        "cancels": bt.cancels,
        "orders_denied_by_reason": bt.denials.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "breaker_events": bt.breaker_events.iter().map(|(ts, e)| serde_json::json!({
            "ts_ns": ts, "breaker": e.kind.name(), "state": e.state.name(), "action": e.action.name(),
            "value": e.value, "limit": e.limit, "unit": e.kind.unit(),
        })).collect::<Vec<_>>(),
        "by_strategy": bt.by_strategy(),
        "positions": bt.positions.iter().zip(&bt.symbols).map(|(p, sym)| serde_json::json!({
            "symbol": sym, "qty": p.qty.to_string(), "realized": p.realized.to_decimal().round_dp(8), "fees": p.fees.to_decimal().round_dp(8), "fills": p.fills,
        })).collect::<Vec<_>>(),
        "performance": { "wall_seconds": secs, "events_per_second": (bt.events as f64 / secs).round(),
                         "market_events_per_second": (bt.market_events as f64 / secs).round() },
    })
}

fn write_outputs(bt: &Report, dir: &Path) -> anyhow::Result<Stats> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let s = stats(bt);
    let summary = summary_value(bt, &s);
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("fills.csv"))?);
    let portfolio = !bt.strategy.members.is_empty();
    writeln!(
        csv,
        "ts_ns,client_order_id,symbol,side,price,qty,fee,maker{}",
        if portfolio { ",strategy" } else { "" }
    )?;
    for f in &bt.fills {
        let side = if f.side == Side::Buy { "buy" } else { "sell" };
        write!(
            csv,
            "{},{},{},{side},{},{},{},{}",
            f.ts_ns,
            f.client_id,
            bt.symbols[f.instrument.get()],
            f.price,
            f.qty,
            f.fee,
            f.maker
        )?;
        if portfolio {
            let name = bt
                .strategy
                .members
                .get(f.strategy.get())
                .map_or("engine", String::as_str);
            write!(csv, ",{name}")?;
        }
        writeln!(csv)?;
    }
    csv.flush()?;
    write_equity_csv(bt, &dir.join("equity.csv"))?;
    write_orders_csv(bt, &dir.join("orders.csv"))?;
    crate::report::write(bt, &s, dir)?;
    Ok(s)
}

/// `orders.csv`: every order the run sent, in the order sent, in its last state.
fn write_orders_csv(bt: &Report, path: &Path) -> anyhow::Result<()> {
    use tradeloop_store::{kind_text, status_text, tif_text};
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let portfolio = !bt.strategy.members.is_empty();
    writeln!(
        csv,
        "client_order_id,symbol,side,kind,tif,price,trigger,qty,filled,status,post_only,reduce_only,created_ns,updated_ns{}",
        if portfolio { ",strategy" } else { "" }
    )?;
    for o in &bt.order_log {
        let r = &o.request;
        write!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            o.client_id.0,
            bt.symbols[r.instrument.get()],
            if r.side == Side::Buy { "buy" } else { "sell" },
            kind_text(r.kind),
            tif_text(r.tif),
            r.price,
            r.trigger,
            r.qty,
            o.filled,
            status_text(o.status),
            r.post_only,
            r.reduce_only,
            o.created_ns,
            o.updated_ns
        )?;
        if portfolio {
            let name = bt
                .strategy
                .members
                .get(r.strategy.get())
                .map_or("engine", String::as_str);
            write!(csv, ",{name}")?;
        }
        writeln!(csv)?;
    }
    csv.flush()?;
    Ok(())
}

/// `equity.csv`: one row per equity sample (each whole second, and the settlement at the end),
/// `ts_ns,equity,mark_SYMBOL...` — equity as realised + unrealised − fees over all instruments
/// (settlement currency), each mark the mid, else the last trade (0 before any).
fn write_equity_csv(bt: &Report, path: &Path) -> anyhow::Result<()> {
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    write!(csv, "ts_ns,equity")?;
    for sym in &bt.symbols {
        write!(csv, ",mark_{sym}")?;
    }
    writeln!(csv)?;
    for (k, (ts, equity)) in bt.equity.iter().enumerate() {
        write!(csv, "{ts},{}", equity.to_decimal().round_dp(8))?;
        let marks = bt
            .prices
            .get(k)
            .filter(|(t, _)| t == ts)
            .map_or(&bt.marks, |(_, m)| m);
        for m in marks {
            write!(csv, ",{m}")?;
        }
        writeln!(csv)?;
    }
    csv.flush()?;
    Ok(())
}

/// Parses `--from`/`--to`: nanoseconds since the epoch, or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(ns) = s.parse::<u64>() {
        return Ok(ns);
    }
    let err = || {
        anyhow::anyhow!("{s:?}: expected nanoseconds since the epoch or YYYY-MM-DDTHH:MM:SS[.fff]Z")
    };
    let s = s.strip_suffix('Z').ok_or_else(err)?;
    let (date, time) = s.split_once('T').ok_or_else(err)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| err())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<u64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| err())?;
    anyhow::ensure!(
        d.len() == 3
            && t.len() == 3
            && (1..=12).contains(&d[1])
            && (1..=31).contains(&d[2])
            && t[0] < 24
            && t[1] < 60
            && t[2] < 61,
        err()
    );
    // Days from civil (Hinnant).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).map_err(|_| err())?;
    let frac_ns = if frac.is_empty() {
        0
    } else {
        anyhow::ensure!(
            frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()),
            err()
        );
        frac.parse::<u64>().map_err(|_| err())?
            * 10u64.pow(9 - u32::try_from(frac.len()).map_err(|_| err())?)
    };
    Ok((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000 + frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of one spot instrument holding just `fills` (side, price, qty, fee), its
    /// position folded from them.
    fn report_of(fills: &[(Side, &str, &str, &str)]) -> Report {
        let mut position = tradeloop_engine::position::Position::new(
            InstrumentIndex(0),
            tradeloop_engine::instrument::ContractKind::Spot,
        );
        let rows: Vec<FillRow> = fills
            .iter()
            .enumerate()
            .map(|(k, &(side, price, qty, fee))| {
                let (price, qty, fee) = (
                    Price::parse(price).unwrap(),
                    Qty::parse(qty).unwrap(),
                    Qty::parse(fee).unwrap(),
                );
                position.apply_fill(side, price, qty, fee).unwrap();
                FillRow {
                    ts_ns: 1_000 + k as u64,
                    client_id: k as u64,
                    instrument: InstrumentIndex(0),
                    side,
                    price,
                    qty,
                    fee,
                    maker: false,
                    strategy: tradeloop_engine::event::StrategyId::default(),
                }
            })
            .collect();
        Report {
            strategy: StrategyLabel::new("test", serde_json::Value::Null),
            inputs: vec![],
            execution: serde_json::Value::Null,
            symbols: vec!["BTCUSDT".into()],
            order_log: vec![],
            fills: rows,
            equity: vec![],
            prices: vec![],
            stats_period_ns: 60_000_000_000,
            exposed_samples: 0,
            positions: vec![position],
            marks: vec![Price::from_units(100)],
            orders: 0,
            denied: 0,
            events: 0,
            market_events: 0,
            refused: 0,
            input_issues: InputIssues::default(),
            span_ns: (0, 0),
            wall: Duration::ZERO,
            stops: (0, 0),
            breaker_events: vec![],
            timers_fired: 0,
            amends: 0,
            cancels: 0,
            denials: vec![],
        }
    }

    /// Win rate is over round trips, net of each trip's fees.
    #[test]
    fn round_trips_and_their_win_rate_after_fees() {
        use Side::{Buy, Sell};
        type Fill = (Side, &'static str, &'static str, &'static str);
        let cases: [(&str, Vec<Fill>, u64, Option<f64>); 5] = [
            (
                "TC0 a trip won after fees",
                vec![(Buy, "100", "1", "0.1"), (Sell, "101", "1", "0.1")],
                1,
                Some(1.0),
            ),
            (
                "TC1 a trip won before fees is lost after them",
                vec![(Buy, "100", "1", "0.6"), (Sell, "101", "1", "0.6")],
                1,
                Some(0.0),
            ),
            (
                "TC2 through zero: the flip closes one trip and opens the next",
                vec![
                    (Buy, "100", "1", "0.1"),
                    (Sell, "99", "2", "0.1"),
                    (Buy, "97", "1", "0.1"),
                ],
                2,
                Some(0.5),
            ),
            (
                "TC3 a partial close completes no trip",
                vec![(Buy, "100", "1", "0.1"), (Sell, "102", "0.5", "0.1")],
                0,
                None,
            ),
            (
                "TC4 scaling in and out of one trip",
                vec![
                    (Sell, "100", "1", "0"),
                    (Sell, "102", "1", "0"),
                    (Buy, "101", "1", "0"),
                    (Buy, "103", "1", "0"),
                ],
                1,
                Some(0.0),
            ),
        ];
        for (label, fills, trips, rate) in cases {
            let s = report_of(&fills).stats();
            assert_eq!(s.round_trips, trips, "{label}");
            assert_eq!(s.win_rate, rate, "{label}");
            assert!(s.pnl_check, "{label}");
        }
    }

    /// Average win and loss, profit factor, expectancy, losing streak and holding time over
    /// round trips: +0.8, −0.2, −1.2, +1.9 after fees (fills one ns apart).
    #[test]
    fn round_trip_statistics() {
        use Side::{Buy, Sell};
        let s = report_of(&[
            (Buy, "100", "1", "0.1"),
            (Sell, "101", "1", "0.1"), // +0.8
            (Buy, "100", "1", "0.6"),
            (Sell, "101", "1", "0.6"), // −0.2
            (Buy, "100", "1", "0.1"),
            (Sell, "99", "2", "0.1"), // −1.2, and a short opens
            (Buy, "97", "1", "0.1"),  // +1.9
        ])
        .stats();
        let d = |v: &str| Some(v.parse::<Decimal>().unwrap());
        assert_eq!(s.round_trips, 4, "TC0");
        assert_eq!(s.avg_win, d("1.35"), "TC1");
        assert_eq!(s.avg_loss, d("-0.7"), "TC2");
        assert_eq!(s.expectancy, d("0.325"), "TC3");
        assert_eq!(s.max_consecutive_losses, 2, "TC4");
        let pf = s.profit_factor.unwrap();
        assert!((pf - 2.7 / 1.4).abs() < 1e-12, "TC5 {pf}");
        // Holding: 1 ns, 1 ns, 1 ns, and the short from the flip (fill 5) to fill 6: 1 ns.
        assert!(
            (s.avg_holding_s.unwrap() - 1e-9).abs() < 1e-15,
            "TC6 {:?}",
            s.avg_holding_s
        );
        let none = report_of(&[(Buy, "100", "1", "0.1"), (Sell, "101", "1", "0")]).stats();
        assert_eq!(none.profit_factor, None, "TC7 no loss, no profit factor");
        assert_eq!(none.avg_loss, None, "TC8");
    }

    /// Sharpe and Sortino come from equity changes per period, annualised by √(periods per
    /// year), and are left out, with the reason, under 30 periods.
    #[test]
    fn ratios_need_thirty_periods_and_use_the_stated_period() {
        let money = |units: i64| Money::from_fixed_raw(units * 100_000_000);
        // One sample a second; equity rises 1, 3, 1, 3, … per minute.
        let series = |minutes: u64| -> Vec<(u64, Money)> {
            let mut e = 0i64;
            (0..=minutes * 60)
                .map(|s| {
                    if s > 0 && s % 60 == 0 {
                        e += if (s / 60) % 2 == 1 { 1 } else { 3 };
                    }
                    (s * 1_000_000_000, money(e))
                })
                .collect()
        };
        let mut short = report_of(&[]);
        short.equity = series(10);
        let s = short.stats();
        assert_eq!(s.periods, 10, "TC0");
        assert_eq!((s.sharpe, s.sortino), (None, None), "TC1");
        assert!(
            s.ratios_note
                .as_deref()
                .is_some_and(|n| n.contains("10 periods of 60 s") && n.contains("at least 30")),
            "TC2 {:?}",
            s.ratios_note
        );
        let mut long = report_of(&[]);
        long.equity = series(40);
        let s = long.stats();
        assert_eq!(s.periods, 40, "TC3");
        // Changes alternate 1 and 3: mean 2, sample std 1.0127 (40 values); per year
        // √(525,600) periods of a minute.
        let std = (40.0f64 / 39.0).sqrt();
        let want = 2.0 / std * (365.0f64 * 24.0 * 60.0).sqrt();
        let got = s.sharpe.unwrap();
        assert!((got - want).abs() < 1e-6 * want, "TC4 {got} vs {want}");
        assert_eq!(
            s.sortino, None,
            "TC5 no losing period, no downside deviation"
        );
        assert!(s.ratios_note.is_none(), "TC6");
    }

    #[test]
    fn time_parsing_table() {
        let cases = [
            (
                "TC0 ns",
                "1723161253937085768",
                Some(1_723_161_253_937_085_768u64),
            ),
            (
                "TC1 rfc3339",
                "2024-08-08T23:54:13Z",
                Some(1_723_161_253_000_000_000),
            ),
            (
                "TC2 fraction",
                "2024-08-08T23:54:13.5Z",
                Some(1_723_161_253_500_000_000),
            ),
            ("TC3 epoch", "1970-01-01T00:00:00Z", Some(0)),
            (
                "TC4 leap day",
                "2024-02-29T00:00:00Z",
                Some(1_709_164_800_000_000_000),
            ),
            ("TC5 no zone", "2024-08-08T23:54:13", None),
            ("TC6 bad month", "2024-13-01T00:00:00Z", None),
            ("TC7 garbage", "yesterday", None),
        ];
        for (label, input, want) in cases {
            assert_eq!(parse_time(input).ok(), want, "{label}");
        }
    }
}
