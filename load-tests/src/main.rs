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
use tradeloop_engine::api::{
    Context, Deny, Gateway, GatewayError, RiskContext, RiskGate, Strategy,
};
use tradeloop_engine::clock::{Clock, LiveClock};
use tradeloop_engine::event::{Event, EventKind, Side, StopTrigger, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::metrics::{latency_histogram, Percentiles};
use tradeloop_engine::order::{Order, OrderRequest};

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

/// Records CRITICAL latency (push to callback) and counts trades.
struct Probe {
    critical: Histogram<u64>,
    stops: Arc<AtomicU64>,
    trades: Arc<AtomicU64>,
}

impl Strategy for Probe {
    fn on_trade<C: Context>(&mut self, _ctx: &mut C, _t: &Trade) {
        self.trades.fetch_add(1, Ordering::Relaxed);
    }
    fn on_stop<C: Context>(&mut self, ctx: &mut C, _s: &StopTrigger) {
        self.critical
            .saturating_record(ctx.now_ns().saturating_sub(ctx.recv_ns()).max(1));
        self.stops.fetch_add(1, Ordering::Relaxed);
    }
}

struct NoOrders;
impl RiskGate for NoOrders {
    fn check(&mut self, _: &OrderRequest, _: &RiskContext) -> Result<(), Deny> {
        Err(Deny::Halted)
    }
}
impl Gateway for NoOrders {
    fn submit(&mut self, _: &Order, _: u64) -> Result<(), GatewayError> {
        Err(GatewayError::NoExecutionVenue)
    }
    fn cancel(&mut self, _: &Order, _: u64) -> Result<(), GatewayError> {
        Err(GatewayError::NoExecutionVenue)
    }
}

#[derive(Serialize, Debug)]
struct Step {
    target_rate: u64,
    achieved_rate: u64,
    normal_pushed: u64,
    normal_dropped: u64,
    normal_handled: u64,
    critical_sent: u64,
    critical_handled: u64,
    critical_dropped_or_refused: u64,
    high_dropped_or_refused: u64,
    critical_latency_ns: Percentiles,
    normal_wait_ns: Percentiles,
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
    engine_thread: std::thread::JoinHandle<Histogram<u64>>,
    producing: Arc<AtomicBool>,
    critical_thread: Option<std::thread::JoinHandle<u64>>,
}

/// What a [`Rig`] saw, once stopped.
struct RigReport {
    critical_sent: u64,
    critical: Histogram<u64>,
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
        let probe = Probe {
            critical: latency_histogram(),
            stops: Arc::clone(&stops),
            trades: Arc::clone(&trades),
        };
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
            NoOrders,
            NoOrders,
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
                    e.strategy().critical.clone()
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
            producing: Arc::new(AtomicBool::new(false)),
            critical_thread: None,
        })
    }

    /// Starts pushing a CRITICAL stop every millisecond.
    fn start_critical(&mut self) -> anyhow::Result<()> {
        self.producing.store(true, Ordering::Relaxed);
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

    /// Stops the CRITICAL producer, lets the engine drain (at most 5 s), stops it.
    fn finish(mut self) -> anyhow::Result<RigReport> {
        self.producing.store(false, Ordering::Relaxed);
        let critical_sent = match self.critical_thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("critical producer panicked"))?,
            None => 0,
        };
        let drain_deadline = Instant::now() + Duration::from_secs(5);
        while (self.lanes.depth(Lane::Normal) > 0 || self.lanes.depth(Lane::Critical) > 0)
            && Instant::now() < drain_deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop_engine.store(true, Ordering::SeqCst);
        let critical = self
            .engine_thread
            .join()
            .map_err(|_| anyhow::anyhow!("engine panicked"))?;
        Ok(RigReport {
            critical_sent,
            critical,
        })
    }
}

fn run_step(rate: u64, seconds: f64, normal_slots: usize) -> anyhow::Result<Step> {
    let mut rig = Rig::start(normal_slots, load_registry("load")?, None)?;
    let (lanes, clock) = (Arc::clone(&rig.lanes), rig.clock.clone());
    let (stops, trades, telemetry) = (
        Arc::clone(&rig.stops),
        Arc::clone(&rig.trades),
        Arc::clone(&rig.telemetry),
    );
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
    let RigReport {
        critical_sent,
        critical,
    } = rig.finish()?;
    let t = telemetry.snapshot();
    let (n, c, h) = (
        lanes.stats(Lane::Normal),
        lanes.stats(Lane::Critical),
        lanes.stats(Lane::High),
    );
    Ok(Step {
        target_rate: rate,
        achieved_rate: (pushed as f64 / elapsed) as u64,
        normal_pushed: n.pushed,
        normal_dropped: n.dropped,
        normal_handled: trades.load(Ordering::Relaxed),
        critical_sent,
        critical_handled: stops.load(Ordering::Relaxed),
        critical_dropped_or_refused: c.dropped + c.refused,
        high_dropped_or_refused: h.dropped + h.refused,
        critical_latency_ns: Percentiles::of(&critical),
        normal_wait_ns: t.wait[Lane::Normal as usize],
    })
}

/// The cells both scenarios' tables end with: CRITICAL sent/handled and latency, NORMAL wait.
fn priority_cells(sent: u64, handled: u64, critical: &Percentiles, wait: &Percentiles) -> String {
    format!(
        "{sent}/{handled} | {} ns | {} ns | {} ns | {} ns | {} ns",
        critical.p50, critical.p99, critical.max, wait.p50, wait.p99
    )
}

/// Fails a step that lost a CRITICAL or HIGH event or left a CRITICAL one unhandled.
fn check_priority(
    at: &str,
    lost: u64,
    sent: u64,
    handled: u64,
    step: &dyn std::fmt::Debug,
) -> anyhow::Result<()> {
    anyhow::ensure!(lost == 0, "CRITICAL/HIGH lost events at {at}: {step:?}");
    anyhow::ensure!(
        handled == sent,
        "CRITICAL events not all handled at {at}: {step:?}"
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
    println!("| target/s | achieved/s | NORMAL dropped | CRITICAL sent/handled | CRITICAL p50 | p99 | max | NORMAL wait p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        let s = run_step(rate, args.seconds, args.normal_slots)
            .with_context(|| format!("step at {rate}/s"))?;
        println!(
            "| {} | {} | {} | {} |",
            s.target_rate,
            s.achieved_rate,
            s.normal_dropped,
            priority_cells(
                s.critical_sent,
                s.critical_handled,
                &s.critical_latency_ns,
                &s.normal_wait_ns
            )
        );
        check_priority(
            &format!("{rate}/s"),
            s.critical_dropped_or_refused + s.high_dropped_or_refused,
            s.critical_sent,
            s.critical_handled,
            &s,
        )?;
        steps.push(s);
    }
    if let Some(path) = args.json_out {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(
                &serde_json::json!({ "scenario": "priority", "steps": steps }),
            )?,
        )
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
        assert!(s.critical_sent > 0);
        assert_eq!(s.critical_handled, s.critical_sent);
        assert_eq!(s.critical_dropped_or_refused + s.high_dropped_or_refused, 0);
        assert_eq!(
            s.normal_handled + s.normal_dropped,
            s.normal_pushed,
            "{s:?}"
        );
        assert_eq!(s.critical_latency_ns.count, s.critical_handled);
    }
}
