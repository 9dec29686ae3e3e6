//! `tradeloop run`: wires the configured venues' feeds, the engine thread, the strategy and
//! risk, starts the built-in simulated venue for `sim` venues, prints a periodic status, and
//! shuts everything down cleanly on Ctrl-C or after `--duration`.
//!
//! Execution: until simulated matching exists, orders have no venue to go to. The gateway here
//! records each order as an *intent* (counted, and summarised in the status) and reports it as
//! not sent; nothing is faked as a fill.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_queue::ArrayQueue;
use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::runner::{spawn_binance_feed, FeedHandle, FeedSettings};
use tradeloop_adapters::sim::server::{ReplaySource, SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::api::{Gateway, GatewayError};
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::event::FeedState;
use tradeloop_engine::event_loop::Engine;
use tradeloop_engine::fixed::Price;
use tradeloop_engine::lane::{Lane, Lanes};
use tradeloop_engine::metrics::Telemetry;
use tradeloop_engine::order::{Order, OrderRequest};
use tradeloop_engine::strategies::MaCross;
use tradeloop_risk::PreTradeRisk;

use crate::config::{sim_listen_addr, Config, VenueKind};

/// Records orders as intents: there is no execution venue yet.
///
/// # Allocation
/// None per order: intents go to a bounded queue (the newest are dropped when it is full;
/// the counter still counts them).
pub struct IntentGateway {
    intents: Arc<ArrayQueue<OrderRequest>>,
    count: Arc<AtomicU64>,
}

impl Gateway for IntentGateway {
    fn submit(&mut self, order: &Order, _now_ns: u64) -> Result<(), GatewayError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self.intents.push(order.request);
        Err(GatewayError::NoExecutionVenue)
    }

    fn cancel(&mut self, _order: &Order, _now_ns: u64) -> Result<(), GatewayError> {
        Err(GatewayError::NoExecutionVenue)
    }
}

/// Options of `tradeloop run`.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
}

struct RunningFeed {
    name: String,
    handle: FeedHandle,
}

/// Runs the bot until Ctrl-C or the duration ends.
///
/// # Errors
/// If a venue cannot start (port in use), a thread cannot be spawned, or the config names a
/// strategy symbol that is not an instrument.
pub fn run(config: &Config, options: RunOptions, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    tradeloop_adapters::install_tls_provider();
    let registry = config.registry()?;
    let lanes = Arc::new(Lanes::new(config.engine.lanes));
    let clock = LiveClock::new();

    let mut sims = Vec::new();
    let mut feeds = Vec::new();
    for (n, venue) in config.venues.iter().enumerate() {
        let symbols = SymbolMap::for_venue(&registry, &venue.name);
        if symbols.is_empty() {
            tracing::info!(venue = %venue.name, "no instruments on this venue; not connecting");
            continue;
        }
        let market = match venue.kind {
            VenueKind::Sim | VenueKind::Binance => Market::Spot,
            VenueKind::BinanceUsdm => Market::UsdM,
        };
        if venue.kind == VenueKind::Sim {
            let ws_addr = sim_listen_addr(&venue.ws_url)
                .context("sim ws_url is a loopback address (checked by config)")?;
            let rest_addr = sim_listen_addr(&venue.rest_url)
                .context("sim rest_url is a loopback address (checked by config)")?;
            let sim_symbols = registry
                .iter()
                .filter(|i| i.venue == venue.name)
                .map(|i| SimSymbolConfig {
                    symbol: i.symbol.clone(),
                    start_price: config
                        .sim
                        .prices
                        .get(&i.symbol)
                        .copied()
                        .unwrap_or(Price::from_units(100)),
                    tick_size: i.tick_size,
                    lot_size: i.lot_size,
                })
                .collect();
            let sim = SimVenue::start(SimConfig {
                ws_addr,
                rest_addr,
                seed: config.sim.seed,
                steps_per_second: config.sim.steps_per_second,
                depth_interval: Duration::from_millis(config.sim.depth_interval_ms),
                depth_levels: config.sim.depth_levels,
                ping_interval: Duration::from_millis(config.sim.ping_interval_ms),
                symbols: sim_symbols,
                replay: (!config.sim.replay_files.is_empty()).then(|| ReplaySource {
                    files: config.sim.replay_files.clone(),
                    speed: config.sim.replay_speed,
                }),
            })
            .with_context(|| {
                format!(
                    "cannot start the sim venue {:?} on {ws_addr} / {rest_addr}",
                    venue.name
                )
            })?;
            tracing::info!(venue = %venue.name, ws = %sim.ws_url(), rest = %sim.rest_url(), "simulated venue listening");
            sims.push(sim);
        }
        let f = &config.feed;
        let settings = FeedSettings {
            feed_id: u16::try_from(n).unwrap_or(u16::MAX),
            name: venue.name.clone(),
            ws_url: venue.ws_url.clone(),
            rest_url: venue.rest_url.clone(),
            market,
            depth_stream: f.depth_stream.clone(),
            snapshot_limit: f.snapshot_limit,
            idle_timeout: Duration::from_millis(f.idle_timeout_ms),
            backoff_base: Duration::from_millis(f.backoff_base_ms),
            backoff_max: Duration::from_millis(f.backoff_max_ms),
            max_attempts: f.max_reconnect_attempts,
            down_critical_after: Duration::from_millis(f.down_critical_after_ms),
        };
        let feed = BinanceFeed::new(
            BinanceCodec::new(symbols, f.max_frame_bytes),
            market,
            f.max_buffered_diffs,
        );
        let handle = spawn_binance_feed(settings, feed, Arc::clone(&lanes), clock.clone())
            .with_context(|| format!("cannot start the feed of {:?}", venue.name))?;
        feeds.push(RunningFeed {
            name: venue.name.clone(),
            handle,
        });
    }

    let symbol = &config.strategy.ma_cross.symbol;
    let instrument = registry
        .iter()
        .find(|i| &i.symbol == symbol)
        .context("strategy symbol is an instrument (checked by config)")?
        .clone();
    let strategy = MaCross::new(
        &config.strategy.ma_cross,
        instrument.index,
        instrument.tick_size,
    );
    let intents = Arc::new(ArrayQueue::new(1024));
    let intent_count = Arc::new(AtomicU64::new(0));
    let gateway = IntentGateway {
        intents: Arc::clone(&intents),
        count: Arc::clone(&intent_count),
    };
    let instrument_names: Vec<String> = registry
        .iter()
        .map(|i| format!("{}:{}", i.venue, i.symbol))
        .collect();
    let engine = Engine::new(
        config.engine,
        Arc::clone(&lanes),
        registry,
        strategy,
        PreTradeRisk::new(config.risk.clone()),
        gateway,
        clock,
    );
    let telemetry = engine.telemetry();
    let engine_stop = Arc::new(AtomicBool::new(false));
    let engine_thread = {
        let engine_stop = Arc::clone(&engine_stop);
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let mut engine = engine;
                engine.run(&engine_stop)
            })?
    };

    let started = Instant::now();
    let status_every = Duration::from_millis(config.metrics.status_interval_ms);
    let mut next_status = started + status_every;
    let mut last_intent: Option<OrderRequest> = None;
    while !stop.load(Ordering::Relaxed)
        && options.duration.is_none_or(|d| started.elapsed() < d)
        && !engine_thread.is_finished()
    {
        std::thread::sleep(Duration::from_millis(20));
        while let Some(i) = intents.pop() {
            last_intent = Some(i);
        }
        if Instant::now() >= next_status {
            next_status += status_every;
            eprintln!(
                "{}",
                status_line(
                    started,
                    &feeds,
                    &lanes,
                    &telemetry,
                    &instrument_names,
                    intent_count.load(Ordering::Relaxed),
                    last_intent
                )
            );
        }
    }

    // Shutdown: stop intake first (feeds), then let the engine drain what is queued.
    eprintln!("shutting down: stopping feeds, draining the engine");
    let feed_stats: Vec<_> = feeds
        .into_iter()
        .map(|f| (f.name, f.handle.stop()))
        .collect();
    engine_stop.store(true, Ordering::SeqCst);
    let report = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    for sim in sims {
        sim.stop();
    }
    let c = &report.counters;
    eprintln!(
        "run ended after {:.1}s: events critical {} high {} normal {} low {}; order intents {} (no execution venue), denied {}",
        started.elapsed().as_secs_f64(),
        c.events[0],
        c.events[1],
        c.events[2],
        c.events[3],
        intent_count.load(Ordering::Relaxed),
        c.denials.iter().take(c.denials.len() - 1).sum::<u64>(),
    );
    for (name, s) in &feed_stats {
        eprintln!(
            "feed {name}: {} frames, {} trades, {} quotes, {} diffs, {} snapshots, {} gaps, {} refused",
            s.frames,
            s.trades,
            s.quotes,
            s.diffs_applied,
            s.snapshots,
            s.gaps,
            s.errors_total()
        );
    }
    for lane in Lane::ALL {
        let st = lanes.stats(lane);
        if st.dropped > 0 || st.refused > 0 {
            eprintln!(
                "lane {}: {} dropped, {} refused",
                lane.name(),
                st.dropped,
                st.refused
            );
        }
    }
    Ok(())
}

fn status_line(
    started: Instant,
    feeds: &[RunningFeed],
    lanes: &Lanes,
    telemetry: &Telemetry,
    instruments: &[String],
    intents: u64,
    last_intent: Option<OrderRequest>,
) -> String {
    use std::fmt::Write as _;
    let t = telemetry.snapshot();
    let mut s = format!("[{:>6.1}s]", started.elapsed().as_secs_f64());
    for f in feeds {
        let sh = &f.handle.shared;
        let state = match sh.state() {
            FeedState::Connecting => "connecting",
            FeedState::Live => "live",
            FeedState::Stale => "stale",
            FeedState::Reconnecting => "reconnecting",
            FeedState::Down => "DOWN",
        };
        let _ = write!(
            s,
            " feed {}: {state} frames={} gaps={} reconnects={} refused={} |",
            f.name,
            sh.frames.load(Ordering::Relaxed),
            sh.gaps.load(Ordering::Relaxed),
            sh.reconnects.load(Ordering::Relaxed),
            sh.errors.load(Ordering::Relaxed)
        );
    }
    for (i, name) in instruments.iter().enumerate() {
        if let Some(x) = telemetry.instrument(i) {
            let px = |p: Option<Price>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let _ = write!(
                s,
                " {name} {:?} {}/{} pos={} |",
                x.book_state,
                px(x.best_bid),
                px(x.best_ask),
                x.position
            );
        }
    }
    for lane in Lane::ALL {
        let st = lanes.stats(lane);
        let w = t.wait[lane as usize];
        let _ = write!(
            s,
            " {} q={} drop={} wait p50/p99={}/{}ns",
            lane.name(),
            st.depth,
            st.dropped,
            w.p50,
            w.p99
        );
    }
    let denied: u64 = t
        .counters
        .denials
        .iter()
        .take(t.counters.denials.len() - 1)
        .sum();
    let _ = write!(s, " | intents={intents} denied={denied}");
    if let Some(i) = last_intent {
        let _ = write!(s, " last={:?} {} @ {}", i.side, i.qty, i.price);
    }
    s
}
