//! `tradeloop-load`: bounded load tests of the lanes and the engine.
//!
//! `priority` floods the NORMAL lane with trades at rising rates while a second producer pushes a
//! CRITICAL stop event every millisecond, with the engine on its own thread. For each rate it
//! reports the NORMAL rate achieved, NORMAL drops (CRITICAL and HIGH must be zero), the CRITICAL
//! latency from push to strategy callback, and the engine's NORMAL queue wait. In process.
//!
//! `flood` does the same end to end: the simulated venue streams Binance frames over a real
//! WebSocket on loopback at rising rates, the real feed client parses them and syncs books into
//! the NORMAL lane, and the engine handles them while CRITICAL stops arrive every millisecond.
//! It reports per rate the frames the venue sent and the feed received, gaps, NORMAL drops,
//! CRITICAL and HIGH losses (must be zero), CRITICAL latency and NORMAL queue wait, and the
//! highest rate sustained without a NORMAL drop.
//!
//! Every step is bounded in time and stops by itself; only loopback is used.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use tradeloop_engine::api::{Context, Deny, OrderUpdate, RiskContext, RiskGate, Strategy};
use tradeloop_engine::clock::{Clock, LiveClock};
use tradeloop_engine::event::{Event, EventKind, OrderReport, Side, StopTrigger, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::metrics::{latency_histogram, Percentiles};
use tradeloop_engine::order::OrderRequest;
use tradeloop_testkit::gateway::FakeGateway;

mod flood;
mod soak;

#[derive(Parser, Debug)]
#[command(
    name = "tradeloop-load",
    about = "Bounded in-process load tests of the tradeloop engine"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// In-process NORMAL flood with CRITICAL stops every millisecond.
    Priority(Args),
    /// Binance frames over a real loopback WebSocket from the simulated venue, through the
    /// feed client, lanes and engine, with CRITICAL stops every millisecond.
    Flood(FloodArgs),
    /// The real `tradeloop run` (sim venue, paper trading, SQLite) for a fixed time, watched
    /// from outside: resident memory flat after warm-up, no lane drops, every record written.
    Soak(soak::SoakArgs),
}

#[derive(clap::Args, Debug)]
struct FloodArgs {
    /// Venue step rates to step through (a step is a book ticker and often a trade: about 1.3
    /// frames).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,200000,500000,1000000"
    )]
    rates: Vec<u64>,
    /// Seconds per rate (at most 10).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// NORMAL lane capacity (power of two).
    #[arg(long, default_value_t = 65_536)]
    normal_slots: usize,
    /// Give the engine a core of its own: pin it to the last core (spinning when idle) and
    /// every other thread of the test to core 0, as a deployment isolating the engine would.
    #[arg(long)]
    isolate_engine: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
struct Args {
    /// NORMAL flood rates to step through, events per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,200000,500000,1000000,2000000"
    )]
    rates: Vec<u64>,
    /// Seconds per rate (at most 10).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// NORMAL lane capacity (power of two).
    #[arg(long, default_value_t = 65_536)]
    normal_slots: usize,
    /// Write the JSON report here.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
}

/// Records CRITICAL latency (push to callback) and fill latency (the venue thread's push on
/// HIGH to the strategy's `on_order`), counts trades, and sends a one-lot IOC on a trade at
/// most once per millisecond (buy and sell alternately) so fills flow on HIGH during the load.
struct Probe {
    critical: Histogram<u64>,
    fill_latency: Histogram<u64>,
    stops: Arc<AtomicU64>,
    trades: Arc<AtomicU64>,
    fills: Arc<AtomicU64>,
    next_order_ns: u64,
    buy: bool,
    orders_refused: u64,
}

const ORDER_EVERY_NS: u64 = 1_000_000;

impl Strategy for Probe {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        self.trades.fetch_add(1, Ordering::Relaxed);
        let now = ctx.now_ns();
        if now >= self.next_order_ns {
            self.next_order_ns = now + ORDER_EVERY_NS;
            let side = if self.buy { Side::Buy } else { Side::Sell };
            let lot = Qty(100_000);
            match ctx.submit(OrderRequest::ioc(t.instrument, side, t.price, lot)) {
                Ok(_) => self.buy = !self.buy,
                Err(_) => self.orders_refused += 1,
            }
        }
    }
    fn on_stop<C: Context>(&mut self, ctx: &mut C, _s: &StopTrigger) {
        self.critical
            .saturating_record(ctx.now_ns().saturating_sub(ctx.recv_ns()).max(1));
        self.stops.fetch_add(1, Ordering::Relaxed);
    }
    fn on_order<C: Context>(&mut self, ctx: &mut C, u: &OrderUpdate) {
        if matches!(u.report, OrderReport::Fill { .. }) {
            self.fill_latency
                .saturating_record(ctx.now_ns().saturating_sub(ctx.recv_ns()).max(1));
            self.fills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lets every order through (the load test measures lanes and the loop, not limits).
struct AllowAll;
impl RiskGate for AllowAll {
    fn check(&mut self, _: &OrderRequest, _: &RiskContext) -> Result<(), Deny> {
        Ok(())
    }
}

/// Fills as the rig saw them.
#[derive(Serialize, Debug, Clone, Copy)]
struct FillStats {
    /// Fills the venue thread pushed on HIGH.
    sent: u64,
    /// Fills the strategy saw.
    handled: u64,
    /// Venue push to `on_order`.
    latency_ns: Percentiles,
    /// Orders the engine refused (the venue link full, say).
    orders_refused: u64,
}

#[derive(Serialize, Debug)]
struct Step {
    target_rate: u64,
    achieved_rate: u64,
    normal_pushed: u64,
    normal_dropped: u64,
    normal_handled: u64,
    #[serde(flatten)]
    priority: Priority,
}

fn trade(recv_ns: u64, i: u64) -> Event {
    Event::new(
        recv_ns,
        recv_ns,
        EventKind::Trade(Trade {
            instrument: InstrumentIndex(0),
            aggressor: if i.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            price: Price(6_000_000_000_000 + (i % 1000) as i64 * 1_000_000),
            qty: Qty(100_000),
            trade_id: i,
        }),
    )
}

/// The engine on its own thread with the [`Probe`] strategy, and a producer pushing a CRITICAL
/// stop every millisecond: what both scenarios run against.
struct Rig {
    clock: LiveClock,
    lanes: Arc<Lanes>,
    stops: Arc<AtomicU64>,
    trades: Arc<AtomicU64>,
    telemetry: Arc<tradeloop_engine::metrics::Telemetry>,
    stop_engine: Arc<AtomicBool>,
    engine_thread: std::thread::JoinHandle<(Histogram<u64>, Histogram<u64>, u64)>,
    producing: Arc<AtomicBool>,
    critical_thread: Option<std::thread::JoinHandle<u64>>,
    venue_thread: Option<std::thread::JoinHandle<u64>>,
    fills: Arc<AtomicU64>,
}

/// What the higher lanes got while NORMAL was loaded: what a [`Rig`] reports once stopped.
#[derive(Serialize, Debug)]
struct Priority {
    critical_sent: u64,
    critical_handled: u64,
    /// CRITICAL events dropped or refused (must be 0).
    critical_lost: u64,
    /// HIGH events dropped or refused (must be 0).
    high_lost: u64,
    /// CRITICAL push to strategy callback.
    critical_latency_ns: Percentiles,
    /// NORMAL queue wait in the engine.
    normal_wait_ns: Percentiles,
    fills: FillStats,
}

/// The one instrument both scenarios trade: BTCUSDT on venue `venue`.
fn load_registry(venue: &str) -> anyhow::Result<InstrumentRegistry> {
    let mut registry = InstrumentRegistry::new();
    registry.add(
        venue,
        "BTCUSDT",
        Price::parse("0.01")?,
        Qty::parse("0.00001")?,
        ContractKind::Spot,
    )?;
    Ok(registry)
}

impl Rig {
    /// `engine_core`: pin the engine thread to this core and let it spin when idle.
    fn start(
        normal_slots: usize,
        registry: InstrumentRegistry,
        engine_core: Option<usize>,
    ) -> anyhow::Result<Self> {
        let clock = LiveClock::new();
        let lanes = Arc::new(Lanes::new(LaneConfig {
            normal_slots,
            ..LaneConfig::default()
        }));
        let (stops, trades) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let fills = Arc::new(AtomicU64::new(0));
        let probe = Probe {
            critical: latency_histogram(),
            fill_latency: latency_histogram(),
            stops: Arc::clone(&stops),
            trades: Arc::clone(&trades),
            fills: Arc::clone(&fills),
            next_order_ns: 0,
            buy: true,
            orders_refused: 0,
        };
        let orders = Arc::new(crossbeam_queue::ArrayQueue::new(4096));
        let config = LoopConfig {
            publish_interval_ms: 100,
            pin_core: engine_core,
            idle: if engine_core.is_some() {
                tradeloop_engine::event_loop::IdleStrategy::Spin
            } else {
                LoopConfig::default().idle
            },
            ..LoopConfig::default()
        };
        let engine = Engine::new(
            config,
            Arc::clone(&lanes),
            registry,
            probe,
            AllowAll,
            // Hands orders to the venue thread, which answers on HIGH as a venue's gateway
            // thread would.
            FakeGateway::forward(Arc::clone(&orders)),
            clock.clone(),
        );
        let telemetry = engine.telemetry();
        let stop_engine = Arc::new(AtomicBool::new(false));
        let engine_thread = {
            let stop = Arc::clone(&stop_engine);
            std::thread::Builder::new()
                .name("load-engine".into())
                .spawn(move || {
                    let mut e = engine;
                    e.run(&stop);
                    let p = e.strategy();
                    (p.critical.clone(), p.fill_latency.clone(), p.orders_refused)
                })?
        };
        let producing = Arc::new(AtomicBool::new(true));
        // The venue: answers each order with an ack and a full fill on HIGH, stamped as it
        // pushes them, until the load stops.
        let venue_thread = {
            let (lanes, clock, producing) =
                (Arc::clone(&lanes), clock.clone(), Arc::clone(&producing));
            std::thread::Builder::new()
                .name("load-venue".into())
                .spawn(move || {
                    let mut sent = 0u64;
                    while producing.load(Ordering::Relaxed) {
                        let Some(order) = orders.pop() else {
                            std::thread::sleep(Duration::from_micros(250));
                            continue;
                        };
                        let id = order.client_id;
                        let fill = OrderReport::Fill {
                            client_id: id,
                            price: order.request.price,
                            qty: order.request.qty,
                            fee: Qty::ZERO,
                            maker: false,
                        };
                        for report in [OrderReport::Accepted { client_id: id }, fill] {
                            let now = clock.now_ns();
                            if lanes
                                .push_high(Event::new(now, now, EventKind::Order(report)))
                                .is_err()
                            {
                                return sent;
                            }
                        }
                        sent += 1;
                    }
                    sent
                })?
        };
        Ok(Self {
            clock,
            lanes,
            stops,
            trades,
            telemetry,
            stop_engine,
            engine_thread,
            producing,
            critical_thread: None,
            venue_thread: Some(venue_thread),
            fills,
        })
    }

    /// Starts pushing a CRITICAL stop every millisecond.
    fn start_critical(&mut self) -> anyhow::Result<()> {
        let (lanes, clock, producing) = (
            Arc::clone(&self.lanes),
            self.clock.clone(),
            Arc::clone(&self.producing),
        );
        self.critical_thread = Some(
            std::thread::Builder::new()
                .name("load-critical".into())
                .spawn(move || {
                    let mut sent = 0u64;
                    while producing.load(Ordering::Relaxed) {
                        let now = clock.now_ns();
                        let ev = Event::new(
                            now,
                            now,
                            EventKind::StopTriggered(StopTrigger {
                                instrument: InstrumentIndex(0),
                                price: Price(1),
                                trigger: Price(1),
                                stop_id: 0,
                            }),
                        );
                        if lanes.push_critical(ev).is_ok() {
                            sent += 1;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    sent
                })?,
        );
        Ok(())
    }

    /// Stops the CRITICAL producer and the venue, lets the engine drain (at most 5 s), stops
    /// it.
    fn finish(mut self) -> anyhow::Result<Priority> {
        self.producing.store(false, Ordering::Relaxed);
        let critical_sent = match self.critical_thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("critical producer panicked"))?,
            None => 0,
        };
        let fills_sent = match self.venue_thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("venue thread panicked"))?,
            None => 0,
        };
        let drain_deadline = Instant::now() + Duration::from_secs(5);
        while Lane::ALL[..3].iter().any(|&l| self.lanes.depth(l) > 0)
            && Instant::now() < drain_deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop_engine.store(true, Ordering::SeqCst);
        let (critical, fill_latency, orders_refused) = self
            .engine_thread
            .join()
            .map_err(|_| anyhow::anyhow!("engine panicked"))?;
        let (c, h) = (
            self.lanes.stats(Lane::Critical),
            self.lanes.stats(Lane::High),
        );
        Ok(Priority {
            critical_sent,
            critical_handled: self.stops.load(Ordering::Relaxed),
            critical_lost: c.dropped + c.refused,
            high_lost: h.dropped + h.refused,
            critical_latency_ns: Percentiles::of(&critical),
            normal_wait_ns: self.telemetry.snapshot().wait[Lane::Normal as usize],
            fills: FillStats {
                sent: fills_sent,
                handled: self.fills.load(Ordering::Relaxed),
                latency_ns: Percentiles::of(&fill_latency),
                orders_refused,
            },
        })
    }
}

fn run_step(rate: u64, seconds: f64, normal_slots: usize) -> anyhow::Result<Step> {
    let mut rig = Rig::start(normal_slots, load_registry("load")?, None)?;
    let (lanes, clock) = (Arc::clone(&rig.lanes), rig.clock.clone());
    let trades = Arc::clone(&rig.trades);
    rig.start_critical()?;
    let duration = Duration::from_secs_f64(seconds);
    // Flood NORMAL at `rate`, paced in batches of 64 against the clock.
    let started = Instant::now();
    let mut pushed = 0u64;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if pushed >= due {
            std::hint::spin_loop();
            continue;
        }
        for _ in 0..64.min(due - pushed) {
            lanes.push_normal(trade(clock.now_ns(), pushed));
            pushed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let priority = rig.finish()?;
    let n = lanes.stats(Lane::Normal);
    Ok(Step {
        target_rate: rate,
        achieved_rate: (pushed as f64 / elapsed) as u64,
        normal_pushed: n.pushed,
        normal_dropped: n.dropped,
        normal_handled: trades.load(Ordering::Relaxed),
        priority,
    })
}

/// The header cells both scenarios' tables end with.
const PRIORITY_HEADER: &str = "CRITICAL sent/handled | CRITICAL p50 | p99 | max | fills sent/handled | fill p50 | p99 | NORMAL wait p50 | p99";

/// The cells both scenarios' tables end with: CRITICAL sent/handled and latency, fills on
/// HIGH and their latency, NORMAL wait.
fn priority_cells(p: &Priority) -> String {
    let (c, f, w) = (&p.critical_latency_ns, &p.fills, &p.normal_wait_ns);
    format!(
        "{}/{} | {} ns | {} ns | {} ns | {}/{} | {} ns | {} ns | {} ns | {} ns",
        p.critical_sent,
        p.critical_handled,
        c.p50,
        c.p99,
        c.max,
        f.sent,
        f.handled,
        f.latency_ns.p50,
        f.latency_ns.p99,
        w.p50,
        w.p99
    )
}

/// Fails a step that lost a CRITICAL or HIGH event, left a CRITICAL event or a fill unhandled,
/// or saw no fill at all.
fn check_priority(at: &str, p: &Priority, step: &dyn std::fmt::Debug) -> anyhow::Result<()> {
    anyhow::ensure!(
        p.critical_lost + p.high_lost == 0,
        "CRITICAL/HIGH lost events at {at}: {step:?}"
    );
    anyhow::ensure!(
        p.critical_handled == p.critical_sent,
        "CRITICAL events not all handled at {at}: {step:?}"
    );
    let f = &p.fills;
    anyhow::ensure!(
        f.sent > 0 && f.handled == f.sent && f.orders_refused == 0,
        "fills not all handled at {at}: {step:?}"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Priority(args) => priority(args),
        Scenario::Flood(args) => flood::run(&args),
        Scenario::Soak(args) => soak::run(&args),
    }
}

fn priority(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 10.0,
        "--seconds must be in (0, 10]"
    );
    anyhow::ensure!(
        args.normal_slots.is_power_of_two(),
        "--normal-slots must be a power of two"
    );
    let mut steps = Vec::new();
    println!("| target/s | achieved/s | NORMAL dropped | {PRIORITY_HEADER} |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        let s = run_step(rate, args.seconds, args.normal_slots)
            .with_context(|| format!("step at {rate}/s"))?;
        println!(
            "| {} | {} | {} | {} |",
            s.target_rate,
            s.achieved_rate,
            s.normal_dropped,
            priority_cells(&s.priority)
        );
        check_priority(&format!("{rate}/s"), &s.priority, &s)?;
        steps.push(s);
    }
    write_json(
        args.json_out.as_deref(),
        &serde_json::json!({ "scenario": "priority", "steps": steps }),
    )
}

/// Writes a scenario's report as pretty JSON to `path`, if one was asked for.
fn write_json(path: Option<&std::path::Path>, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short step loses no CRITICAL event and every pushed trade is accounted for.
    #[test]
    fn short_step_accounts_for_every_event() {
        let s = run_step(20_000, 0.2, 1024).unwrap();
        let p = &s.priority;
        assert!(p.critical_sent > 0);
        assert_eq!(p.critical_handled, p.critical_sent);
        assert_eq!(p.critical_lost + p.high_lost, 0);
        assert_eq!(
            s.normal_handled + s.normal_dropped,
            s.normal_pushed,
            "{s:?}"
        );
        assert_eq!(p.critical_latency_ns.count, p.critical_handled);
        assert!(p.fills.sent > 0, "{s:?}");
        assert_eq!(p.fills.handled, p.fills.sent, "{s:?}");
        assert_eq!(p.fills.latency_ns.count, p.fills.handled);
    }
}
