//! `tradeloop bench`: end-to-end latency figures of the hot path, printed as a table and, with
//! `--json`, as one JSON object on stdout. Not on the hot path itself: it builds the real lanes
//! and engine, drives them with a synthetic market, and reads the clock around them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::Market;
use tradeloop_adapters::bybit::parse::BybitCodec;
use tradeloop_adapters::coinbase::parse::CoinbaseCodec;
use tradeloop_adapters::feed::FrameOutcome;
use tradeloop_adapters::kraken::parse::KrakenCodec;
use tradeloop_adapters::okx::parse::OkxCodec;
use tradeloop_adapters::runner::LaneSink;
use tradeloop_adapters::sim::market::WireProtocol;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::api::Gateway;
use tradeloop_engine::clock::{Clock, LiveClock};
use tradeloop_engine::event::{Event, EventKind, OrderReport, Side, Trade};
use tradeloop_engine::event_loop::Engine;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lane, Lanes};
use tradeloop_engine::metrics::{latency_histogram, Percentiles};
use tradeloop_engine::order::Order;
use tradeloop_engine::persist::{run_writer, Outbox, Record, Store, WriterConfig};
use tradeloop_risk::PreTradeRisk;
use tradeloop_store::postgres::PgStore;
use tradeloop_store::sqlite::SqliteStore;
use tradeloop_testkit::fixtures::{bench_registry, btc_codec, sim_btc_frames};
use tradeloop_testkit::gateway::FakeGateway;

use crate::config::Config;

/// One figure of the report.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figure {
    /// Unit of the values.
    pub unit: &'static str,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl From<Percentiles> for Figure {
    fn from(p: Percentiles) -> Self {
        Self {
            unit: "ns",
            count: p.count,
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
            p999: p.p999,
            max: p.max,
        }
    }
}

/// The machine the figures were taken on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
}

/// The whole report (`--json` prints exactly this).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Figures by name.
    pub figures: BTreeMap<&'static str, Figure>,
    /// Machine.
    pub machine: Machine,
    /// Git revision of the build (or "unknown").
    pub git_rev: String,
    /// Where the frames of `parse_*` and `tick_to_strategy` came from (`lane_hop` and
    /// `dispatch` use synthetic events).
    pub input: String,
}

/// A deterministic synthetic trade stream: a trending random walk in ticks (xorshift, seeded).
pub struct SyntheticTrades {
    instrument: InstrumentIndex,
    price_ticks: i64,
    tick: Price,
    lot: Qty,
    rng: u64,
    n: u64,
}

impl SyntheticTrades {
    /// A stream starting at `start` on `instrument`.
    #[must_use]
    pub fn new(
        instrument: InstrumentIndex,
        start: Price,
        tick: Price,
        lot: Qty,
        seed: u64,
    ) -> Self {
        Self {
            instrument,
            price_ticks: start.raw() / tick.raw().max(1),
            tick,
            lot,
            rng: seed | 1,
            n: 0,
        }
    }

    /// The next trade, stamped `recv_ns`.
    pub fn next_event(&mut self, recv_ns: u64) -> Event {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let r = self.rng;
        let drift = if (self.n / 5_000).is_multiple_of(2) {
            1
        } else {
            -1
        };
        self.price_ticks = (self.price_ticks + drift * (r % 3) as i64 - (r % 2) as i64).max(1);
        self.n += 1;
        Event::new(
            recv_ns,
            recv_ns,
            EventKind::Trade(Trade {
                instrument: self.instrument,
                aggressor: if r & 1 == 0 { Side::Buy } else { Side::Sell },
                price: Price(self.price_ticks * self.tick.raw()),
                qty: Qty(self.lot.raw() * (1 + (r >> 8) as i64 % 100)),
                trade_id: self.n,
            }),
        )
    }
}

const WARMUP: u64 = 10_000;

/// One lane hop thread to thread: a producer stamps `recv_ns` and pushes to NORMAL; the
/// consumer (this thread) pops and records `now − recv_ns`. The producer sends the next event
/// only after the previous one was taken, so the figure is the hop, not queueing.
fn lane_hop(config: &Config, clock: &LiveClock, events: u64) -> anyhow::Result<Figure> {
    let lanes = Arc::new(Lanes::new(config.engine.lanes));
    let taken = Arc::new(AtomicU64::new(0));
    let total = events + WARMUP;
    let producer = {
        let (lanes, taken, clock) = (Arc::clone(&lanes), Arc::clone(&taken), clock.clone());
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                let mut market = SyntheticTrades::new(
                    InstrumentIndex(0),
                    Price::from_units(60_000),
                    Price::parse("0.01").expect("constant"),
                    Qty(1_000),
                    7,
                );
                for i in 0..total {
                    let ev = market.next_event(clock.now_ns());
                    lanes.push_normal(ev);
                    while taken.load(Ordering::Acquire) <= i {
                        core::hint::spin_loop();
                    }
                }
            })?
    };
    let mut hist = latency_histogram();
    let mut n = 0;
    while n < total {
        if let Some(e) = lanes.pop(Lane::Normal) {
            let now = clock.now_ns();
            if n >= WARMUP {
                hist.saturating_record(now.saturating_sub(e.recv_ns).max(1));
            }
            n += 1;
            taken.store(n, Ordering::Release);
        } else {
            core::hint::spin_loop();
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("bench producer panicked"))?;
    Ok(Percentiles::of(&hist).into())
}

/// Dispatch of one market-data event through the loop to the strategy: push a trade to NORMAL,
/// then time one `poll` (pop, book-keeping, strategy callback, and any order it sends through
/// risk and the gateway with the resulting ack and fill handled from HIGH).
fn dispatch(config: &Config, clock: &LiveClock, events: u64) -> anyhow::Result<(Figure, u64)> {
    let lanes = Arc::new(Lanes::new(config.engine.lanes));
    let registry = config.registry()?;
    let (strategy, params) = crate::backtest::ma_cross(config, &registry)?;
    let instrument = registry
        .by_symbol(&params.symbol)
        .context("strategy symbol is configured")?
        .clone();
    let gateway = FakeGateway::instant_fill(Arc::clone(&lanes), clock.clone());
    let mut engine = Engine::new(
        config.engine,
        Arc::clone(&lanes),
        registry,
        strategy,
        PreTradeRisk::new(config.risk.clone()),
        gateway,
        clock.clone(),
    );
    let mut market = SyntheticTrades::new(
        instrument.index,
        Price::from_units(60_000),
        instrument.tick_size,
        instrument.lot_size,
        11,
    );
    let mut hist = latency_histogram();
    for i in 0..events + WARMUP {
        lanes.push_normal(market.next_event(clock.now_ns()));
        let t0 = clock.now_ns();
        engine.poll();
        let t1 = clock.now_ns();
        if i >= WARMUP {
            hist.saturating_record(t1.saturating_sub(t0).max(1));
        }
    }
    let report = engine.shutdown();
    Ok((Percentiles::of(&hist).into(), report.counters.orders_sent))
}

/// Stream frames generated when the real capture is absent.
const SYNTHETIC_FRAMES: usize = 270_000;

/// Frames to parse: the real Binance USD-M capture in `../shared/data` when present, else
/// frames from the simulated venue's synthetic market.
struct Frames {
    trades: Vec<String>,
    depths: Vec<String>,
    source: &'static str,
}

fn load_frames() -> anyhow::Result<Frames> {
    let path = tradeloop_adapters::shared_data_dir().join("binance_usdm_btcusdt_20240808.gz");
    if path.exists() {
        let mut reader = tradeloop_adapters::recorder::FrameReader::open(&[path])?;
        let (mut trades, mut depths) = (Vec::new(), Vec::new());
        while let Some((_, f)) = reader.next_frame()? {
            if f.contains("@trade\"") {
                trades.push(f.to_owned());
            } else if f.contains("@depth") {
                depths.push(f.to_owned());
            }
        }
        if !trades.is_empty() && !depths.is_empty() {
            return Ok(Frames {
                trades,
                depths,
                source: "shared-data:binance_usdm_btcusdt_20240808.gz",
            });
        }
    }
    let (_, frames) = sim_btc_frames(5, SYNTHETIC_FRAMES, WireProtocol::Binance);
    let (mut trades, mut depths) = (Vec::new(), Vec::new());
    for f in frames {
        if f.contains("@trade\"") {
            trades.push(f);
        } else if f.contains("@depth") {
            depths.push(f);
        }
    }
    Ok(Frames {
        trades,
        depths,
        source: "synthetic",
    })
}

/// Nanoseconds to parse one frame (cycling through `frames`) with `parse`, after checking every
/// frame parses.
fn parse_figure<E: std::fmt::Display, T>(
    frames: &[String],
    events: u64,
    mut parse: impl FnMut(&str) -> Result<T, E>,
) -> anyhow::Result<Figure> {
    anyhow::ensure!(!frames.is_empty(), "no bench input frames");
    for f in frames {
        parse(f).map_err(|e| {
            anyhow::anyhow!(
                "bench input does not parse: {e}: {}",
                &f[..f.len().min(120)]
            )
        })?;
    }
    let clock = LiveClock::new();
    let mut hist = latency_histogram();
    for i in 0..events {
        let f = &frames[(i % frames.len() as u64) as usize];
        let t0 = clock.now_ns();
        let parsed = parse(f);
        let t1 = clock.now_ns();
        std::hint::black_box(&parsed.is_ok());
        hist.saturating_record(t1.saturating_sub(t0).max(1));
    }
    Ok(Percentiles::of(&hist).into())
}

/// A venue's trade and book parse figures, one parser for both.
fn parse_pair<E: std::fmt::Display, T>(
    figures: &mut BTreeMap<&'static str, Figure>,
    names: [&'static str; 2],
    frames: [&[String]; 2],
    events: u64,
    mut parse: impl FnMut(&str) -> Result<T, E>,
) -> anyhow::Result<()> {
    for (name, frames) in names.into_iter().zip(frames) {
        figures.insert(name, parse_figure(frames, events, &mut parse)?);
    }
    Ok(())
}

/// Bybit v5 frames to parse: `publicTrade` frames from the simulated venue speaking Bybit (no
/// real Bybit trade capture is available), and the deltas of the real `orderbook.500.XRPUSDT`
/// capture in `../shared/data` (the simulated venue's `orderbook.50` deltas when it is absent).
/// Returns (trades, books, source).
fn bybit_frames() -> anyhow::Result<(Vec<String>, Vec<String>, &'static str)> {
    let (_, frames) = sim_btc_frames(9, 20_000, WireProtocol::Bybit { depth: 50 });
    let (trades, sim_books): (Vec<String>, Vec<String>) = frames
        .into_iter()
        .filter(|f| !f.starts_with("{\"topic\":\"orderbook.1."))
        .partition(|f| f.starts_with("{\"topic\":\"publicTrade."));
    let path = tradeloop_adapters::shared_data_dir().join("bybit_xrpusdt-ob500.data.zip");
    if let Ok(zip) = std::fs::read(&path) {
        let text = String::from_utf8(tradeloop_adapters::recorder::unzip_first(&zip)?)?;
        let deltas: Vec<String> = text
            .lines()
            .filter(|l| l.contains("\"type\":\"delta\""))
            .map(str::to_owned)
            .collect();
        if !deltas.is_empty() {
            return Ok((trades, deltas, "bybit: trades synthetic (sim venue), book shared-data:bybit_xrpusdt-ob500.data.zip deltas"));
        }
    }
    Ok((trades, sim_books, "bybit: synthetic (sim venue)"))
}

/// Frames to parse from the simulated venue speaking `protocol` (no real Kraken or Coinbase
/// WebSocket capture is available): (trade frames, book frames), told apart by their prefixes;
/// Coinbase frames numbered in order as a connection would.
fn sim_frames(protocol: WireProtocol, trade: &str, book: &str) -> (Vec<String>, Vec<String>) {
    let (_, frames) = sim_btc_frames(11, 40_000, protocol);
    let frames = frames
        .iter()
        .enumerate()
        .map(|(n, f)| tradeloop_adapters::sim::market::stamp_sequence(f, n as u64));
    let (mut trades, mut books) = (Vec::new(), Vec::new());
    for f in frames {
        if f.starts_with(trade) {
            trades.push(f);
        } else if f.starts_with(book) {
            books.push(f);
        }
    }
    (trades, books)
}

/// Records `now − recv_ns` of every trade after the first `skip`: wire to strategy callback.
/// With `send_orders` it first sends an IOC order of one lot on every trade (buy, sell,
/// alternately, so the position stays within one lot) and records the time once the order has
/// passed the engine's gates and the risk checks and the gateway has taken it: wire to order.
struct TickProbe {
    hist: hdrhistogram::Histogram<u64>,
    seen: Arc<AtomicU64>,
    skip: u64,
    send_orders: bool,
    buy: bool,
    refused: u64,
}

impl tradeloop_engine::api::Strategy for TickProbe {
    fn on_trade<C: tradeloop_engine::api::Context>(&mut self, ctx: &mut C, trade: &Trade) {
        if self.send_orders {
            let side = if self.buy { Side::Buy } else { Side::Sell };
            let lot = Qty(100_000);
            let req = tradeloop_engine::order::OrderRequest::ioc(
                trade.instrument,
                side,
                trade.price,
                lot,
            );
            if ctx.submit(req).is_ok() {
                self.buy = !self.buy;
            } else {
                self.refused += 1;
                self.seen.fetch_add(1, Ordering::Release);
                return;
            }
        }
        let latency = ctx.now_ns().saturating_sub(ctx.recv_ns()).max(1);
        if self.seen.load(Ordering::Relaxed) >= self.skip {
            self.hist.saturating_record(latency);
        }
        self.seen.fetch_add(1, Ordering::Release);
    }
}

/// Frame bytes handed to the feed on this (I/O) thread, stamped `recv_ns` → parsed → NORMAL
/// lane → engine thread → strategy callback. One frame in flight at a time, so the figure is
/// the path, not queueing.
fn tick_to_strategy(
    config: &Config,
    frames: &[String],
    events: u64,
    writer_load: Option<u64>,
) -> anyhow::Result<Figure> {
    tick_figure(config, frames, events, writer_load, false)
}

/// `tick_to_trade`: as [`tick_to_strategy`], but the strategy sends an order on every trade
/// and the figure ends when the gateway has taken it (engine gates, pre-trade risk with the
/// rate limits lifted, order pool, gateway submit). Fills come back on HIGH as usual.
fn tick_to_trade(config: &Config, frames: &[String], events: u64) -> anyhow::Result<Figure> {
    tick_figure(config, frames, events, None, true)
}

fn tick_figure(
    config: &Config,
    frames: &[String],
    events: u64,
    writer_load: Option<u64>,
    send_orders: bool,
) -> anyhow::Result<Figure> {
    let background = writer_load
        .map(|rate| BusyWriter::start(config, rate))
        .transpose()?;
    let clock = LiveClock::new();
    let lanes = Arc::new(Lanes::new(config.engine.lanes));
    let registry = bench_registry()?;
    let seen = Arc::new(AtomicU64::new(0));
    let probe = TickProbe {
        hist: latency_histogram(),
        seen: Arc::clone(&seen),
        skip: WARMUP,
        send_orders,
        buy: true,
        refused: 0,
    };
    let limits = if send_orders {
        tradeloop_risk::RiskLimits {
            orders_per_second: 1_000_000,
            orders_per_second_per_instrument: 1_000_000,
            ..config.risk.clone()
        }
    } else {
        config.risk.clone()
    };
    let gateway = FakeGateway::instant_fill(Arc::clone(&lanes), clock.clone());
    let engine = Engine::new(
        config.engine,
        Arc::clone(&lanes),
        registry,
        probe,
        PreTradeRisk::new(limits),
        gateway,
        clock.clone(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine_thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("bench-engine".into())
            .spawn(move || {
                let mut engine = engine;
                engine.run(&stop);
                (engine.strategy().hist.clone(), engine.strategy().refused)
            })?
    };
    let mut feed = BinanceFeed::new(btc_codec(), Market::UsdM, 1000);
    let mut sink = LaneSink::new(Arc::clone(&lanes));
    for i in 0..events + WARMUP {
        let f = &frames[(i % frames.len() as u64) as usize];
        let recv_ns = clock.now_ns();
        if !matches!(feed.on_frame(recv_ns, f, &mut sink), FrameOutcome::Handled) {
            stop.store(true, Ordering::SeqCst);
            anyhow::bail!("bench trade frame refused");
        }
        while seen.load(Ordering::Acquire) <= i {
            core::hint::spin_loop();
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (hist, refused) = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("bench engine panicked"))?;
    // Every order must have gone out: a refused one would measure a shorter path.
    anyhow::ensure!(
        refused == 0,
        "tick_to_trade: {refused} orders refused by the engine or risk"
    );
    if let Some(b) = background {
        let written = b.stop()?;
        anyhow::ensure!(written > 0, "the background writer wrote nothing");
    }
    Ok(Percentiles::of(&hist).into())
}

/// Buys one unit whenever a trade carries [`OPEN_TRADE_ID`] (the bench's "open a position"
/// signal); counts its fills.
struct StopProbe {
    fills: Arc<AtomicU64>,
}

const OPEN_TRADE_ID: u64 = u64::MAX - 1;

impl tradeloop_engine::api::Strategy for StopProbe {
    fn on_trade<C: tradeloop_engine::api::Context>(&mut self, ctx: &mut C, t: &Trade) {
        if t.trade_id == OPEN_TRADE_ID {
            let _ = ctx.submit(tradeloop_engine::order::OrderRequest::ioc(
                t.instrument,
                Side::Buy,
                t.price,
                Qty::parse("0.001").expect("c"),
            ));
        }
    }
    fn on_order<C: tradeloop_engine::api::Context>(
        &mut self,
        _: &mut C,
        u: &tradeloop_engine::api::OrderUpdate,
    ) {
        if matches!(u.report, OrderReport::Fill { .. }) {
            self.fills.fetch_add(1, Ordering::Release);
        }
    }
}

/// A stop-crossing trade frame arrives behind a NORMAL backlog of `backlog` trades: time from
/// the frame's arrival (stamped before parsing, on the feed thread) to the stop's closing
/// order reaching the gateway (engine thread). With the ingress guard the feed raises the
/// trigger on CRITICAL; without it the engine finds the crossing only when it reaches the
/// trade behind the backlog. Also returns the fewest NORMAL events still queued when a
/// crossing frame arrived (the engine drains while the backlog is pushed).
fn stop_under_backlog(
    config: &Config,
    guard_on: bool,
    backlog: u64,
    iterations: u64,
) -> anyhow::Result<(Figure, u64)> {
    let clock = LiveClock::new();
    let lanes = Arc::new(Lanes::new(tradeloop_engine::lane::LaneConfig {
        normal_slots: (backlog as usize * 2).next_power_of_two(),
        ..config.engine.lanes
    }));
    let registry = bench_registry()?;
    let guard = Arc::new(tradeloop_engine::stops::StopGuard::new(1));
    let fills = Arc::new(AtomicU64::new(0));
    let closed_at = Arc::new(AtomicU64::new(0));
    let engine = Engine::new(
        config.engine,
        Arc::clone(&lanes),
        registry,
        StopProbe {
            fills: Arc::clone(&fills),
        },
        PreTradeRisk::new(tradeloop_risk::RiskLimits {
            orders_per_second: 1_000_000,
            orders_per_second_per_instrument: 1_000_000,
            ..config.risk.clone()
        }),
        FakeGateway::instant_fill(Arc::clone(&lanes), clock.clone())
            .stamp_reduce_only(Arc::clone(&closed_at)),
        clock.clone(),
    )
    .with_stops(
        tradeloop_engine::stops::StopParams {
            stop_loss_bps: 100,
            ..tradeloop_engine::stops::StopParams::default()
        },
        Arc::clone(&guard),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine_thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("bench-engine".into())
            .spawn(move || {
                let mut engine = engine;
                engine.run(&stop);
            })?
    };
    let mut feed = BinanceFeed::new(btc_codec(), Market::UsdM, 1000);
    let mut sink = LaneSink::new(Arc::clone(&lanes));
    if guard_on {
        sink = sink.with_stop_guard(Arc::clone(&guard), 1);
    }
    let trade_at = |id: u64, price: &str| {
        format!(
            "{{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":{id},\"p\":\"{price}\",\"q\":\"0.001\",\"T\":1,\"m\":false}}"
        )
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "stop bench: {what} timed out"
            );
            // Sleep, not spin: a live feed thread waits in the kernel for its socket, leaving
            // its core to whatever else must run instead of that preempting the engine.
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        Ok(())
    };
    let mut hist = latency_histogram();
    let mut queued_min = u64::MAX;
    // Built once: the pusher must outpace the engine's draining (parsing the numbers on
    // every push made the two race, and the backlog sometimes never reached its size).
    let (backlog_price, backlog_qty) = (Price::parse("60050")?, Qty::parse("0.001")?);
    let backlog_event = |k: u64, now_ns: u64| {
        Event::new(
            now_ns,
            0,
            EventKind::Trade(Trade {
                instrument: InstrumentIndex(0),
                aggressor: Side::Buy,
                price: backlog_price,
                qty: backlog_qty,
                trade_id: k,
            }),
        )
    };
    let mut pushes_max = 0u64;
    for it in 0..iterations {
        // Open: the strategy buys at 60,000; the stop arms at 59,400.
        let before = fills.load(Ordering::Acquire);
        let open = trade_at(OPEN_TRADE_ID, "60000.00");
        feed.on_frame(clock.now_ns(), &open, &mut sink);
        wait("open fill", &|| fills.load(Ordering::Acquire) > before)?;
        let opened = fills.load(Ordering::Acquire);
        closed_at.store(0, Ordering::Release);
        // The engine drains while the backlog is pushed: push until `backlog` events are
        // queued at once (bounded: pushing outpaces draining several times over).
        let mut k = 0u64;
        while (lanes.depth(Lane::Normal) as u64) < backlog {
            anyhow::ensure!(
                k < backlog * 20,
                "stop bench: the NORMAL backlog never reached {backlog}"
            );
            // The depth is read once per 64 pushes: it reads the consumer's index, a cache
            // line the engine keeps writing.
            let now_ns = clock.now_ns();
            for _ in 0..64 {
                lanes.push_normal(backlog_event(k, now_ns));
                k += 1;
            }
        }
        pushes_max = pushes_max.max(k);
        // A live feed thread parses frame after frame: the one before the crossing trade
        // (above the stop) leaves its parser and the guard in cache, as they would be.
        let warm = trade_at(2_000_000 + it, "60050.00");
        feed.on_frame(clock.now_ns(), &warm, &mut sink);
        queued_min = queued_min.min(lanes.depth(Lane::Normal) as u64);
        let frame = trade_at(1_000_000 + it, "59000.00");
        let recv_ns = clock.now_ns();
        feed.on_frame(recv_ns, &frame, &mut sink);
        wait("stop order", &|| closed_at.load(Ordering::Acquire) != 0)?;
        hist.saturating_record(
            closed_at
                .load(Ordering::Acquire)
                .saturating_sub(recv_ns)
                .max(1),
        );
        wait("backlog drained", &|| lanes.depth(Lane::Normal) == 0)?;
        // Let the close fill so the next open starts flat.
        wait("close fill", &|| fills.load(Ordering::Acquire) > opened)?;
    }
    stop.store(true, Ordering::SeqCst);
    engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("bench engine panicked"))?;
    tracing::info!(
        guard_on,
        pushes_max,
        backlog,
        "stop_under_backlog: most pushes one iteration needed to queue the backlog"
    );
    Ok((Percentiles::of(&hist).into(), queued_min))
}

/// Records standing in for a busy run: per order its creation, its filled state, the fill and
/// the position.
fn persist_records(n: u64) -> Vec<Record> {
    use tradeloop_engine::event::ClientOrderId;
    use tradeloop_engine::order::OrderRequest;
    use tradeloop_engine::position::Position;
    let inst = InstrumentIndex(0);
    let mut pos = Position::new(inst, tradeloop_engine::instrument::ContractKind::Spot);
    let mut out = Vec::with_capacity(n as usize);
    let mut k = 0u32;
    while (out.len() as u64) < n {
        k += 1;
        let side = if k.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = Price::from_units(60_000 + i64::from(k % 50));
        let qty = Qty(100_000);
        let mut order = Order::new(
            ClientOrderId::new(k, k % 4096),
            OrderRequest::limit(inst, side, price, qty),
            u64::from(k),
        );
        // As the engine records them: created, then filled (with its fill and position).
        out.push(Record::Order {
            order,
            ts_ns: u64::from(k),
        });
        order.status = tradeloop_engine::order::OrderStatus::Filled;
        let _ = pos.apply_fill(side, price, qty, Qty(1_000));
        out.push(Record::Order {
            order,
            ts_ns: u64::from(k),
        });
        out.push(Record::Fill {
            client_id: order.client_id,
            instrument: inst,
            side,
            price,
            qty,
            fee: Qty(1_000),
            maker: k.is_multiple_of(3),
            strategy: tradeloop_engine::event::StrategyId::default(),
            ts_ns: u64::from(k),
        });
        out.push(Record::Position {
            position: pos,
            ts_ns: u64::from(k),
        });
    }
    out.truncate(n as usize);
    out
}

/// Sustained write rate into a store with the configured batch settings: all records queued,
/// then the writer runs until it has written them. Unit `records/s`; three runs (p50 the
/// median, max the best, the tails the worst).
fn persist_rate<S: Store>(
    config: &Config,
    records: &[Record],
    mut open: impl FnMut(usize) -> anyhow::Result<S>,
) -> anyhow::Result<Figure> {
    let mut rates = Vec::new();
    for run in 0..3 {
        let mut store = open(run)?;
        let outbox = Outbox::new(records.len().next_power_of_two());
        for r in records {
            outbox
                .try_push(*r)
                .map_err(|_| anyhow::anyhow!("bench outbox full"))?;
        }
        let started = std::time::Instant::now();
        let report = run_writer(
            &outbox,
            &mut store,
            writer_config(config),
            || true,
            |e| {
                tracing::error!(error = %e, "bench write failed");
            },
        );
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        anyhow::ensure!(
            report.written == records.len() as u64,
            "bench writer wrote {} of {}",
            report.written,
            records.len()
        );
        rates.push((report.written as f64 / secs) as u64);
    }
    rates.sort_unstable();
    Ok(Figure {
        unit: "records/s",
        count: records.len() as u64,
        p50: rates[1],
        p90: rates[0],
        p99: rates[0],
        p999: rates[0],
        max: rates[2],
    })
}

fn writer_config(config: &Config) -> WriterConfig {
    WriterConfig {
        batch_size: config.persistence.batch_size as usize,
        flush_interval: std::time::Duration::from_millis(config.persistence.flush_interval_ms),
        retry_base: std::time::Duration::from_millis(10),
        retry_max: std::time::Duration::from_secs(1),
    }
}

fn bench_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tradeloop-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A writer thread persisting a steady stream of records into a temporary SQLite file while
/// another figure is measured (the "writer busy" condition).
struct BusyWriter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    pusher: std::thread::JoinHandle<()>,
    writer: std::thread::JoinHandle<anyhow::Result<u64>>,
    dir: std::path::PathBuf,
}

impl BusyWriter {
    /// Pushes `rate` records per second (in 1 ms steps) and writes them.
    fn start(config: &Config, rate: u64) -> anyhow::Result<Self> {
        let dir = bench_dir("busy")?;
        let mut store = SqliteStore::open(&dir.join("busy.db"), vec!["BTCUSDT".into()])?;
        store.begin_run(0, "bench", "")?;
        let outbox = Arc::new(Outbox::new(config.persistence.queue_slots));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let per_ms = (rate / 1000).max(1) as usize;
        let records = persist_records(per_ms as u64 * 1000);
        let pusher = {
            let (outbox, stop) = (Arc::clone(&outbox), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bench-pusher".into())
                .spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..per_ms {
                            let _ = outbox.try_push(records[i % records.len()]);
                            i += 1;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                })?
        };
        let writer = {
            let (outbox, stop) = (Arc::clone(&outbox), Arc::clone(&stop));
            let cfg = writer_config(config);
            std::thread::Builder::new()
                .name("bench-writer".into())
                .spawn(move || {
                    let report = run_writer(
                        &outbox,
                        &mut store,
                        cfg,
                        || stop.load(Ordering::Acquire),
                        |e| {
                            tracing::error!(error = %e, "bench write failed");
                        },
                    );
                    Ok(report.written)
                })?
        };
        Ok(Self {
            stop,
            pusher,
            writer,
            dir,
        })
    }

    fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.pusher.join();
        let written = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("bench writer panicked"))??;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(written)
    }
}

/// NORMAL events pushed ahead of the stop-crossing frame, and repetitions.
const STOP_BACKLOG: u64 = 100_000;
const STOP_ITERATIONS: u64 = 100;

/// Records per `persist_*` run (a third each orders, fills and positions).
const PERSIST_RECORDS: u64 = 150_000;
/// Records per second the background writer persists in `tick_to_strategy_writer_busy`.
const WRITER_BUSY_RATE: u64 = 50_000;

/// Backtest replay throughput: five replays of a recording through the whole backtest path
/// (reader thread, parser, book sync, engine, strategy, risk, simulated venue). Unit
/// `frames/s`: `p50` is the median run, `max` the best, `p90`..`p999` the worst (a
/// throughput's tail is low).
/// The recording the replay figures use: the USD-M capture when present, else a synthetic
/// recording of the simulated market's frames in a temporary directory (returned for removal).
fn backtest_recording(
    frames: &Frames,
) -> anyhow::Result<(std::path::PathBuf, Option<std::path::PathBuf>)> {
    let path = tradeloop_adapters::shared_data_dir().join("binance_usdm_btcusdt_20240808.gz");
    Ok(if path.exists() {
        (path, None)
    } else {
        // No capture: a synthetic recording from the simulated market's frames.
        let dir = std::env::temp_dir().join(format!("tradeloop-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("synthetic.txt");
        let mut text = String::new();
        for (n, f) in frames.depths.iter().chain(&frames.trades).enumerate() {
            text.push_str(&format!(
                "{} {f}\n",
                1_700_000_000_000_000_000u64 + n as u64 * 1_000
            ));
        }
        std::fs::write(&file, text)?;
        (file, Some(dir))
    })
}

fn backtest_replay(config: &Config, file: &std::path::Path) -> anyhow::Result<Figure> {
    let mut rates = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let bt = crate::backtest::with_ma_cross(config)?.data([file]).run()?;
        count = bt.events;
        rates.push((bt.events as f64 / bt.wall.as_secs_f64().max(1e-9)) as u64);
    }
    Ok(rate_figure("frames/s", count, rates))
}

/// A throughput figure from several runs' rates: `p50` the median run, `max` the best,
/// `p90`..`p999` the worst (a throughput's tail is low).
fn rate_figure(unit: &'static str, count: u64, mut rates: Vec<u64>) -> Figure {
    rates.sort_unstable();
    Figure {
        unit,
        count,
        p50: rates[rates.len() / 2],
        p90: rates[0],
        p99: rates[0],
        p999: rates[0],
        max: rates[rates.len() - 1],
    }
}

/// Events in the converted-replay figures (the "1,000,000 events").
const BINARY_EVENTS: u64 = 1_000_000;

/// A `.tle` image of at least `min_events` market events: `bytes` (a converted recording)
/// repeated end to end, each copy shifted in time past the one before; with `trades_only`,
/// only its trades (one step each). Every copy begins with the recording's own snapshot, so
/// the book is re-synced at each seam exactly as in the recording.
fn repeat_tle(bytes: &[u8], min_events: u64, trades_only: bool) -> anyhow::Result<Vec<u8>> {
    use tradeloop_adapters::tle::{TleItem, TleReader, TleWriter};
    let image: Arc<[u8]> = Arc::from(bytes);
    let meta = TleReader::from_memory(Arc::clone(&image))?.meta().clone();
    let mut w = TleWriter::new(Vec::new(), &meta, None)?;
    let (mut events, mut shift, mut last_ns) = (0u64, 0u64, 0u64);
    while events < min_events {
        let mut r = TleReader::from_memory(Arc::clone(&image))?;
        let (mut first_ns, mut copied) = (None, 0u64);
        while let Some(rec) = r.next_record()? {
            let ns = rec.recv_ns + shift;
            first_ns.get_or_insert(rec.recv_ns);
            last_ns = ns;
            match rec.item {
                TleItem::Event(mut e) => {
                    let trade = matches!(e.kind, EventKind::Trade(_));
                    if trades_only && !trade {
                        continue;
                    }
                    e.recv_ns += shift;
                    if e.exch_ns != 0 {
                        e.exch_ns += shift;
                    }
                    w.begin_step(ns);
                    w.write_event(&e)?;
                    events += 1;
                    copied += 1;
                    if trades_only {
                        w.end_step(ns, false)?;
                        if events >= min_events {
                            break;
                        }
                        continue;
                    }
                }
                TleItem::BookLost(i) if !trades_only => {
                    w.begin_step(ns);
                    w.write_book_lost(i);
                }
                TleItem::BookLost(_) | TleItem::Nothing => {}
            }
            if rec.end_of_step && !trades_only {
                w.end_step(ns, rec.refused)?;
                if events >= min_events {
                    break;
                }
            }
        }
        anyhow::ensure!(copied > 0, "the recording has no events to repeat");
        shift = last_ns + 1_000_000_000 - first_ns.unwrap_or(0);
    }
    Ok(w.finish(0)?.1)
}

/// Converted-file replay, in process: five replays of a `.tle` image held in memory (no
/// parsing; engine, strategy, risk, stops, breakers and the simulated venue as in any
/// backtest). Unit `events/s` (market events handed to the engine); `p50` is the median run,
/// `max` the best, `p90`..`p999` the worst.
fn binary_rate(config: &Config, image: &Arc<[u8]>) -> anyhow::Result<Figure> {
    let input = crate::backtest::Input::Tle(Arc::clone(image));
    let mut rates = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let bt = crate::backtest::with_ma_cross(config)?
            .input(input.clone())
            .run()?;
        count = bt.market_events;
        rates.push((bt.market_events as f64 / bt.wall.as_secs_f64().max(1e-9)) as u64);
    }
    Ok(rate_figure("events/s", count, rates))
}

/// The whole `tradeloop backtest` process on a `.tle` file (start-up, config, replay,
/// outputs), three runs. Unit `ms`; `p50` the median, `max` the slowest, `p90`.. the fastest
/// is not shown (a wall time's tail is high).
fn binary_process(config_path: &std::path::Path, image: &[u8]) -> anyhow::Result<Figure> {
    let dir = bench_dir("tle")?;
    let file = dir.join("bench.tle");
    std::fs::write(&file, image)?;
    let exe = std::env::current_exe().context("cannot find the tradeloop executable")?;
    let mut walls = Vec::new();
    for run in 0..3 {
        let t0 = std::time::Instant::now();
        let out = std::process::Command::new(&exe)
            .arg("-c")
            .arg(config_path)
            .args(["backtest", "--data"])
            .arg(&file)
            .arg("--out")
            .arg(dir.join(format!("out{run}")))
            .output()
            .context("cannot start tradeloop backtest")?;
        let ms = t0.elapsed().as_millis() as u64;
        anyhow::ensure!(
            out.status.success(),
            "tradeloop backtest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        walls.push(ms);
    }
    let _ = std::fs::remove_dir_all(&dir);
    walls.sort_unstable();
    Ok(Figure {
        unit: "ms",
        count: BINARY_EVENTS,
        p50: walls[1],
        p90: walls[2],
        p99: walls[2],
        p999: walls[2],
        max: walls[2],
    })
}

/// Live execution over loopback: an order handed to `LiveGateway::submit` (on this thread, as
/// the engine would) until its `Accepted` report is on HIGH — filter check, queue, execution
/// thread, HMAC signing, HTTP to the Binance mock (which checks the signature and answers)
/// and back. One order at a time; the mock's work is included, the network is loopback.
fn live_order_ack(clock: &LiveClock, orders: u64) -> anyhow::Result<Figure> {
    use std::time::{Duration, Instant};
    use tradeloop_adapters::binance::exec::gateway::{LiveInstrument, LiveSettings, LiveVenue};
    use tradeloop_adapters::binance::exec::rest::{Market, RestSettings};
    use tradeloop_adapters::binance::exec::sign::Credentials;
    use tradeloop_engine::event::{ClientOrderId, OrderReport, Side};
    use tradeloop_engine::lane::LaneConfig;
    use tradeloop_engine::order::OrderRequest;
    use tradeloop_testkit::binance_mock::{MockBinance, MockConfig, MockSymbol};

    let (key, secret) = ("bench-key", "bench-secret");
    let mock = MockBinance::start(MockConfig {
        market: Market::Spot,
        api_key: key.into(),
        secret: secret.into(),
        symbols: vec![MockSymbol::usdt("BTCUSDT", "BTC", "60000")],
        skew_ms: 0,
        balances: vec![],
        weight_limit: u32::MAX,
        orders_10s_limit: u32::MAX,
        check_balances: false,
    })?;
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let (venue, mut gateway) = LiveVenue::start(
        LiveSettings {
            rest: RestSettings {
                base_url: mock.rest_url(),
                market: Market::Spot,
                recv_window_ms: 5000,
                dry_run: false,
                timeout: Duration::from_secs(5),
                limit_headroom_pct: 100,
            },
            ws_url: mock.ws_url(),
            client_id_prefix: "tl-".into(),
            keepalive: Duration::from_secs(1800),
            queue_capacity: 64,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            instruments: vec![LiveInstrument {
                index: InstrumentIndex(0),
                symbol: "BTCUSDT".into(),
            }],
            reconcile_every: None,
            feed_id: None,
        },
        Credentials::new(key, secret),
        Arc::clone(&lanes),
        clock.clone(),
    )?;
    let mut hist = latency_histogram();
    let request = OrderRequest::limit(
        InstrumentIndex(0),
        Side::Buy,
        Price::from_units(50_000),
        "0.001".parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let warm_up = 50;
    for n in 0..orders + warm_up {
        let id = ClientOrderId::new(1, u32::try_from(n).unwrap_or(u32::MAX));
        let t0 = clock.now_ns();
        gateway
            .submit(&Order::new(id, request, t0), t0, &[])
            .map_err(|e| anyhow::anyhow!("live submit: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match lanes.pop(Lane::High) {
                Some(e) if e.kind == EventKind::Order(OrderReport::Accepted { client_id: id }) => {
                    if n >= warm_up {
                        hist.saturating_record(clock.now_ns().saturating_sub(t0).max(1));
                    }
                    break;
                }
                Some(_) => {}
                None => {
                    anyhow::ensure!(Instant::now() < deadline, "no ack from the mock within 5 s");
                    std::hint::spin_loop();
                }
            }
        }
    }
    venue.shutdown();
    Ok(Percentiles::of(&hist).into())
}

/// Orders measured by `live_order_ack`.
const LIVE_ORDERS: u64 = 2_000;

/// Harness overhead: two consecutive clock reads, the bracket every other figure pays.
fn clock_overhead(clock: &LiveClock, events: u64) -> Figure {
    let mut hist = latency_histogram();
    for _ in 0..events {
        let t0 = clock.now_ns();
        let t1 = clock.now_ns();
        hist.saturating_record(t1.saturating_sub(t0).max(1));
    }
    Percentiles::of(&hist).into()
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    }
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// Runs every figure and returns the report.
///
/// # Errors
/// If the configured strategy symbol is missing or a bench thread fails.
/// Groups of figures `bench --only` selects, in the order they run.
pub const GROUPS: [&str; 7] = [
    "core", "parse", "tick", "stop", "persist", "live", "backtest",
];

/// Runs the figures of every group in `only` (all of them when it is empty; see [`GROUPS`]).
///
/// # Errors
/// A group not in [`GROUPS`], or a figure that cannot be measured.
pub fn run(
    config: &Config,
    config_path: &std::path::Path,
    events: u64,
    only: &[String],
) -> anyhow::Result<Report> {
    for g in only {
        anyhow::ensure!(
            GROUPS.contains(&g.as_str()),
            "--only {g}: no such group of figures (groups: {})",
            GROUPS.join(", ")
        );
    }
    let want = |group: &str| only.is_empty() || only.iter().any(|g| g == group);
    let clock = LiveClock::new();
    let mut figures = BTreeMap::new();
    if want("core") {
        figures.insert("clock_overhead", clock_overhead(&clock, events));
        figures.insert("lane_hop", lane_hop(config, &clock, events)?);
        let (dispatch, orders) = dispatch(config, &clock, events)?;
        anyhow::ensure!(
            orders > 0,
            "the strategy sent no order during the dispatch bench"
        );
        figures.insert("dispatch", dispatch);
    }
    let frames = load_frames()?;
    let (bybit_trades, bybit_books, bybit_source) = bybit_frames()?;
    if want("parse") {
        let mut codec = btc_codec();
        figures.insert(
            "parse_trade",
            parse_figure(&frames.trades, events, |f| codec.parse(f))?,
        );
        figures.insert(
            "parse_depth",
            parse_figure(&frames.depths, events, |f| codec.parse(f))?,
        );
        let mut symbols = SymbolMap::default();
        symbols.insert("BTCUSDT", InstrumentIndex(0));
        symbols.insert("XRPUSDT", InstrumentIndex(1));
        let mut bybit = BybitCodec::new(symbols.clone(), 1 << 22);
        parse_pair(
            &mut figures,
            ["parse_bybit_trade", "parse_bybit_book"],
            [&bybit_trades, &bybit_books],
            events,
            |f| bybit.parse(f),
        )?;
        let (trades, books) = sim_frames(
            WireProtocol::Kraken { depth: 25 },
            "{\"channel\":\"trade\"",
            "{\"channel\":\"book\"",
        );
        let mut kraken = KrakenCodec::new(symbols.clone(), 1 << 22);
        parse_pair(
            &mut figures,
            ["parse_kraken_trade", "parse_kraken_book"],
            [&trades, &books],
            events,
            |f| kraken.parse(f),
        )?;
        let (trades, books) = sim_frames(
            WireProtocol::Coinbase,
            "{\"channel\":\"market_trades\"",
            "{\"channel\":\"l2_data\"",
        );
        let mut coinbase = CoinbaseCodec::new(symbols.clone(), 1 << 22);
        parse_pair(
            &mut figures,
            ["parse_coinbase_trade", "parse_coinbase_book"],
            [&trades, &books],
            events,
            |f| coinbase.parse(f),
        )?;
        let (trades, books) = sim_frames(
            WireProtocol::Okx,
            "{\"arg\":{\"channel\":\"trades\"",
            "{\"arg\":{\"channel\":\"books\"",
        );
        let mut okx = OkxCodec::new(symbols, 1 << 22);
        parse_pair(
            &mut figures,
            ["parse_okx_trade", "parse_okx_book"],
            [&trades, &books],
            events,
            |f| okx.parse(f),
        )?;
    }
    if want("tick") {
        figures.insert(
            "tick_to_strategy",
            tick_to_strategy(config, &frames.trades, events, None)?,
        );
        figures.insert(
            "tick_to_trade",
            tick_to_trade(config, &frames.trades, events)?,
        );
        figures.insert(
            "tick_to_strategy_writer_busy",
            tick_to_strategy(config, &frames.trades, events, Some(WRITER_BUSY_RATE))?,
        );
    }
    if want("stop") {
        let (guarded, queued) = stop_under_backlog(config, true, STOP_BACKLOG, STOP_ITERATIONS)?;
        tracing::info!(
            queued,
            "stop_under_backlog: fewest NORMAL events queued ahead of the stop"
        );
        figures.insert("stop_under_backlog", guarded);
        let (unguarded, _) = stop_under_backlog(config, false, STOP_BACKLOG, STOP_ITERATIONS)?;
        figures.insert("stop_under_backlog_no_guard", unguarded);
    }
    if want("persist") {
        let records = persist_records(PERSIST_RECORDS);
        let dir = bench_dir("sqlite")?;
        figures.insert(
            "persist_sqlite",
            persist_rate(config, &records, |run| {
                let mut s =
                    SqliteStore::open(&dir.join(format!("run{run}.db")), vec!["BTCUSDT".into()])?;
                s.begin_run(0, "bench", "")?;
                Ok(s)
            })?,
        );
        let _ = std::fs::remove_dir_all(&dir);
        let pg_var = &config.persistence.postgres_url_env;
        match std::env::var(pg_var) {
            Ok(url) => {
                let url = tradeloop_store::postgres::reset_schema(&url, "tradeloop_bench")?;
                figures.insert(
                    "persist_postgres",
                    persist_rate(config, &records, |_| {
                        let mut s = PgStore::connect(&url, vec!["BTCUSDT".into()])?;
                        s.begin_run(0, "bench", "")?;
                        Ok(s)
                    })?,
                );
            }
            Err(_) => tracing::info!("persist_postgres skipped: ${pg_var} is not set"),
        }
    }
    if want("live") {
        figures.insert("live_order_ack", live_order_ack(&clock, LIVE_ORDERS)?);
    }
    if want("backtest") {
        let recording = backtest_recording(&frames)?;
        figures.insert("backtest_replay", backtest_replay(config, &recording.0)?);
        let (_, _, converted) = crate::convert::write_tle(
            config,
            std::slice::from_ref(&recording.0),
            (None, None),
            None,
            Vec::new(),
        )?;
        if let Some(dir) = recording.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
        let full: Arc<[u8]> = Arc::from(repeat_tle(&converted, BINARY_EVENTS, false)?);
        figures.insert("backtest_binary", binary_rate(config, &full)?);
        figures.insert(
            "backtest_binary_process",
            binary_process(config_path, &full)?,
        );
        let trades: Arc<[u8]> = Arc::from(repeat_tle(&converted, BINARY_EVENTS, true)?);
        figures.insert("backtest_binary_trades", binary_rate(config, &trades)?);
    }
    Ok(Report {
        figures,
        machine: machine(),
        git_rev: git_rev(),
        input: format!(
            "binance: {}; {bybit_source}; kraken, coinbase, okx: synthetic (sim venue)",
            frames.source
        ),
    })
}

/// The report as a fixed-width table.
#[must_use]
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<14} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
        "figure", "unit", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, f) in &report.figures {
        out.push_str(&format!(
            "{:<14} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
            name, f.unit, f.count, f.p50, f.p90, f.p99, f.p999, f.max
        ));
    }
    out.push_str(&format!(
        "machine: {} ({} cores), rev {}, input {}\n",
        report.machine.cpu, report.machine.cores, report.git_rev, report.input
    ));
    out
}
