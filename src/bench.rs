//! `tradeloop bench`: end-to-end latency figures of the hot path, printed as a table and, with
//! `--json`, as one JSON object on stdout. Not on the hot path itself: it builds the real lanes
//! and engine, drives them with a synthetic market, and reads the clock around them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use tradeloop_engine::api::{Gateway, GatewayError};
use tradeloop_engine::clock::{Clock, LiveClock};
use tradeloop_engine::event::{Event, EventKind, OrderReport, Side, Trade};
use tradeloop_engine::event_loop::Engine;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lane, Lanes};
use tradeloop_engine::metrics::{latency_histogram, Percentiles};
use tradeloop_engine::order::Order;
use tradeloop_engine::strategies::MaCross;
use tradeloop_risk::PreTradeRisk;

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
    /// Where the input came from.
    pub input: &'static str,
}

/// A gateway for benchmarks: every order is acknowledged and filled at its limit price through
/// the real HIGH lane, as a venue's report would arrive.
pub struct InstantFillGateway {
    lanes: Arc<Lanes>,
    clock: LiveClock,
}

impl Gateway for InstantFillGateway {
    fn submit(&mut self, order: &Order, now_ns: u64) -> Result<(), GatewayError> {
        let id = order.client_id;
        let fill = OrderReport::Fill {
            client_id: id,
            price: order.request.price,
            qty: order.request.qty,
            fee: Qty::ZERO,
            maker: false,
        };
        for report in [OrderReport::Accepted { client_id: id }, fill] {
            self.lanes
                .push_high(Event::new(
                    self.clock.now_ns(),
                    now_ns,
                    EventKind::Order(report),
                ))
                .map_err(|_| GatewayError::Full)?;
        }
        Ok(())
    }

    fn cancel(&mut self, order: &Order, now_ns: u64) -> Result<(), GatewayError> {
        let ev = Event::new(
            self.clock.now_ns(),
            now_ns,
            EventKind::Order(OrderReport::Canceled {
                client_id: order.client_id,
            }),
        );
        self.lanes.push_high(ev).map_err(|_| GatewayError::Full)
    }
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
    let symbol = &config.strategy.ma_cross.symbol;
    let instrument = registry
        .iter()
        .find(|i| &i.symbol == symbol)
        .context("strategy symbol is configured")?
        .clone();
    let strategy = MaCross::new(
        &config.strategy.ma_cross,
        instrument.index,
        instrument.tick_size,
    );
    let gateway = InstantFillGateway {
        lanes: Arc::clone(&lanes),
        clock: clock.clone(),
    };
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
pub fn run(config: &Config, events: u64) -> anyhow::Result<Report> {
    let clock = LiveClock::new();
    let mut figures = BTreeMap::new();
    figures.insert("clock_overhead", clock_overhead(&clock, events));
    figures.insert("lane_hop", lane_hop(config, &clock, events)?);
    let (dispatch, orders) = dispatch(config, &clock, events)?;
    anyhow::ensure!(
        orders > 0,
        "the strategy sent no order during the dispatch bench"
    );
    figures.insert("dispatch", dispatch);
    Ok(Report {
        figures,
        machine: machine(),
        git_rev: git_rev(),
        input: "synthetic",
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
