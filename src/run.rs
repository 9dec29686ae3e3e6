//! `tradeloop run`: wires the configured venues' feeds, the engine thread, the strategy and
//! risk, starts the built-in simulated venue for `sim` venues, prints a periodic status, and
//! shuts everything down cleanly on Ctrl-C or after `--duration`.
//!
//! Execution: in `paper` mode (the default) orders go to the simulated matching engine
//! (`adapters::sim::matching`), fed by the same market data the strategy sees; acks and fills
//! come back on the HIGH lane like a venue's. In `live` mode they go to Binance (spot or USD-M)
//! through `adapters::binance::exec`, which reconciles with the venue before the engine starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tradeloop_adapters::binance::exec::gateway::{
    LiveGateway, LiveInstrument, LiveSettings, LiveVenue,
};
use tradeloop_adapters::binance::exec::rest::{Market, RestSettings};
use tradeloop_adapters::binance::exec::sign::Credentials;
use tradeloop_adapters::feed::VenueFeed;
use tradeloop_adapters::runner::{spawn_feed, FeedHandle, FeedSettings};
use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::sim::server::{ReplaySource, SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::api::{Books, Gateway, GatewayError, Strategy};
use tradeloop_engine::breakers::{BreakerKind, BreakerState};
use tradeloop_engine::clock::Clock;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::event::{Control, Event, EventKind, FeedState};
use tradeloop_engine::fixed::{Money, Price};
use tradeloop_engine::instrument::InstrumentRegistry;
use tradeloop_engine::lane::{Lane, Lanes};
use tradeloop_engine::metrics::Telemetry;
use tradeloop_engine::order::Order;

use crate::config::{sim_listen_addr, Config, Mode, VenueKind};
use crate::venues::{with_feed, Wire, WithFeed};

/// Options of a bot: how long it runs and where its histograms go.
#[derive(Clone, Debug, Default)]
struct RunOptions {
    /// Stop after this long (`None`: until the stop flag).
    duration: Option<Duration>,
    /// Save the run's latency histograms here (HdrHistogram interval log).
    histograms: Option<std::path::PathBuf>,
    /// Plain status lines even on a terminal.
    plain: bool,
}

/// A strategy's constructor, called once at start-up with the instruments as the run trades
/// them (in live mode with the venue's own tick and lot sizes).
type BuildStrategy<S> = Box<dyn FnOnce(&InstrumentRegistry) -> anyhow::Result<S> + Send>;

/// The trading bot, paper or live as `config.mode` says: the configured venues' feeds, the
/// engine thread with the strategy, risk, stops and breakers, persistence, `/metrics`, the
/// kill switch and the status display, until a stop flag is set. What the `run` command runs.
///
/// A bot has three phases, each a call: [`Bot::start`] starts every part and returns a
/// [`RunningBot`]; [`RunningBot::supervise`] watches it (kill switch, breakers, status) until
/// it should stop; [`RunningBot::shutdown`] stops it in order and returns the [`RunSummary`].
/// [`Bot::run_until`] does all three.
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use std::sync::Arc;
/// use tradeloop::config::Config;
/// use tradeloop::engine::strategies::{MaCross, MaCrossConfig};
/// use tradeloop::run::Bot;
///
/// # fn main() -> anyhow::Result<()> {
/// let config = Config::load("config.toml".as_ref(), &Default::default())?;
/// let stop = Arc::new(AtomicBool::new(false)); // set it (from a signal handler) to stop
/// let mut bot = Bot::from_config(&config)
///     .strategy_with(|instruments| {
///         let btc = instruments.by_symbol("BTCUSDT").expect("configured");
///         Ok(MaCross::new(&MaCrossConfig::default(), btc.index, btc.tick_size))
///     })
///     .duration(std::time::Duration::from_secs(30))
///     .start()?;
/// let ended = bot.supervise(&stop);
/// let summary = bot.shutdown()?;
/// eprintln!("{ended}");
/// eprint!("{summary}");
/// # Ok(())
/// # }
/// ```
///
/// # Allocation
/// At start-up and in the supervising thread; the engine thread allocates nothing per event.
pub struct Bot<S = ()> {
    config: Config,
    options: RunOptions,
    build: Option<BuildStrategy<S>>,
}

impl Bot<()> {
    /// A bot on `config` (validated by [`Config::load`]), with no strategy yet.
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            config: config.clone(),
            options: RunOptions::default(),
            build: None,
        }
    }

    /// The strategy to run; its instrument indices are those of `config.registry()`.
    #[must_use]
    pub fn strategy<S: Strategy + Send + 'static>(self, strategy: S) -> Bot<S> {
        self.strategy_with(move |_| Ok(strategy))
    }

    /// The strategy, built at start-up from the instruments as the run trades them.
    #[must_use]
    pub fn strategy_with<S: Strategy + Send + 'static>(
        self,
        build: impl FnOnce(&InstrumentRegistry) -> anyhow::Result<S> + Send + 'static,
    ) -> Bot<S> {
        Bot {
            config: self.config,
            options: self.options,
            build: Some(Box::new(build)),
        }
    }
}

impl<S> Bot<S> {
    /// Stops by itself after `duration`.
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.options.duration = Some(duration);
        self
    }

    /// Saves the engine's latency histograms (HdrHistogram interval log) here at the end.
    #[must_use]
    pub fn histograms(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.options.histograms = Some(path.into());
        self
    }

    /// Shows the status as plain lines even when stderr is a terminal (for terminal
    /// multiplexers' logs, `script`, screen readers).
    #[must_use]
    pub fn plain(mut self, on: bool) -> Self {
        self.options.plain = on;
        self
    }
}

impl<S: Strategy + Send + 'static> Bot<S> {
    /// Starts every part of the bot, in this order: live execution (which reconciles with the
    /// venue before anything else runs), the simulated venues and the feeds, persistence (and
    /// recovery from the store, printed on stderr), the strategy, the engine thread, the
    /// kill-switch signal handlers and the metrics listener.
    ///
    /// # Errors
    /// If a venue cannot start (port in use), a thread cannot be spawned, a signal handler
    /// cannot be installed, the strategy cannot be built, or live execution fails its
    /// start-up checks. What had started is stopped again.
    pub fn start(self) -> anyhow::Result<RunningBot> {
        let build = self.build.context("the bot has no strategy")?;
        start(&self.config, self.options, build)
    }

    /// Starts the bot, supervises it until `stop` is set (or the duration ends, or the engine
    /// stops), then shuts down cleanly and returns the summary. Prints nothing but the
    /// status display and the start-up lines; the caller prints the summary if it wants it.
    ///
    /// # Errors
    /// Those of [`Bot::start`] and [`RunningBot::shutdown`].
    pub fn run_until(self, stop: &AtomicBool) -> anyhow::Result<RunSummary> {
        let mut bot = self.start()?;
        let ended = bot.supervise(stop);
        tracing::info!(%ended, "the bot stops");
        bot.shutdown()
    }
}

/// Starts a venue's feed thread.
struct Spawn {
    settings: FeedSettings,
    lanes: Arc<Lanes>,
    clock: LiveClock,
}

impl WithFeed for Spawn {
    type Out = std::io::Result<FeedHandle>;
    fn with<F: VenueFeed>(self, feed: F) -> Self::Out {
        spawn_feed(self.settings, feed, self.lanes, self.clock)
    }
}

struct RunningFeed {
    name: String,
    handle: FeedHandle,
}

/// What the engine thread hands back when it ends.
type EngineOutput = (
    tradeloop_engine::event_loop::RunReport,
    Option<(tradeloop_adapters::sim::matching::ExecStats, u64)>,
    (
        tradeloop_engine::metrics::LoopHistograms,
        hdrhistogram::Histogram<u64>,
    ),
);

/// Why [`RunningBot::supervise`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The stop flag was set (Ctrl-C in the CLI).
    Stopped,
    /// The bot's [`Bot::duration`] passed.
    Duration,
    /// The engine thread ended by itself (its lanes closed, or it panicked: see
    /// [`RunningBot::shutdown`]).
    EngineStopped,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stop requested",
            Self::Duration => "duration reached",
            Self::EngineStopped => "the engine stopped by itself",
        })
    }
}

/// A started bot: its feeds, venues, engine thread, persistence and metrics listener are
/// running. Watch it with [`RunningBot::supervise`] (or drive [`RunningBot::poll`] from a loop
/// of your own), then stop it with [`RunningBot::shutdown`]. Dropping it without a shutdown
/// leaves the threads running until the process ends.
///
/// # Allocation
/// [`RunningBot::poll`] allocates only when a kill-switch trigger or a breaker change is
/// logged; the status texts allocate their `String`.
pub struct RunningBot {
    options: RunOptions,
    status_every: Duration,
    lanes: Arc<Lanes>,
    clock: LiveClock,
    live: Option<LiveVenue>,
    sims: Vec<SimVenue>,
    feeds: Vec<RunningFeed>,
    persistence: crate::persistence::Persistence,
    run_id: i64,
    instrument_names: Vec<String>,
    telemetry: Arc<Telemetry>,
    engine_stop: Arc<AtomicBool>,
    engine_thread: std::thread::JoinHandle<EngineOutput>,
    kill: KillSwitch,
    breakers_seen: BreakerLog,
    exporter: Option<crate::exporter::Exporter>,
    next_export: Instant,
    started: Instant,
    started_wall: std::time::SystemTime,
}

/// Starts every part of a bot (see [`Bot::start`]).
fn start<S, F>(config: &Config, options: RunOptions, build: F) -> anyhow::Result<RunningBot>
where
    S: Strategy + Send + 'static,
    F: FnOnce(&InstrumentRegistry) -> anyhow::Result<S>,
{
    tradeloop_adapters::install_tls_provider();
    let mut registry = config.registry()?;
    let lanes = Arc::new(Lanes::new(config.engine.lanes));
    let clock = LiveClock::new();
    // Live execution starts first: it reconciles with the venue (cancelling orphans, syncing
    // positions) before any market data or strategy runs, and a bad key stops the run here.
    let (live, gateway) = match config.mode {
        Mode::Live => {
            let (venue, gateway) = start_live(config, &registry, &lanes, &clock)?;
            adopt_venue_increments(&mut registry, &venue)?;
            (Some(venue), ExecGateway::Live(gateway))
        }
        Mode::Paper => (
            None,
            ExecGateway::Sim(
                SimGateway::new(config.exec_config(registry.len()), Arc::clone(&lanes))
                    .with_fees(config.fee_schedule())
                    .with_instruments(&registry)
                    .with_queue_model(config.execution.queue_model.model())
                    .with_latency_model(crate::backtest::latency_model(config)?),
            ),
        ),
    };
    // From here on a failure stops what has started (the venues' sockets, the feeds).
    let mut started = Started {
        live,
        sims: Vec::new(),
        feeds: Vec::new(),
    };
    let stop_guard = Arc::new(tradeloop_engine::stops::StopGuard::new(registry.len()));
    if let Err(e) = start_feeds(config, &registry, &lanes, &clock, &stop_guard, &mut started) {
        started.stop();
        return Err(e);
    }
    let started_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let (persistence, restored) =
        match crate::persistence::start(config, &registry, started_unix_ns, &lanes, &clock) {
            Ok(p) => p,
            Err(e) => {
                started.stop();
                return Err(e);
            }
        };
    report_recovery(&persistence.target, &restored, &registry);
    let strategy = match build(&registry) {
        Ok(s) => s,
        Err(e) => {
            started.stop();
            let _ = persistence.finish(&format!("failed: the strategy could not be built: {e:#}"));
            return Err(e);
        }
    };
    let instrument_names: Vec<String> = registry
        .iter()
        .map(|i| format!("{}:{}", i.venue, i.symbol))
        .collect();
    let main_clock = clock.clone();
    let mut engine = config
        .engine(
            Arc::clone(&lanes),
            registry,
            strategy,
            gateway,
            clock,
            Arc::clone(&stop_guard),
        )
        .with_outbox(persistence.outbox());
    if config.mode == Mode::Live && config.live.cancel_on_exit {
        engine = engine.with_cancel_on_stop(Duration::from_millis(config.live.exit_grace_ms));
    }
    engine.restore(&restored.positions, restored.next_sequence);
    let telemetry = engine.telemetry();
    let engine_stop = Arc::new(AtomicBool::new(false));
    let spawned = {
        let engine_stop = Arc::clone(&engine_stop);
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let mut engine = engine;
                let report = engine.run(&engine_stop);
                let histograms = (engine.histograms().clone(), engine.tick_to_trade().clone());
                let sim = match engine.gateway() {
                    ExecGateway::Sim(g) => Some((g.stats(), g.lost_reports)),
                    ExecGateway::Live(_) => None,
                };
                (report, sim, histograms)
            })
    };
    let engine_thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            started.stop();
            let _ = persistence.finish("failed: cannot spawn the engine thread");
            return Err(anyhow::Error::new(e).context("cannot spawn the engine thread"));
        }
    };
    let mut bot = RunningBot {
        options,
        status_every: Duration::from_millis(config.metrics.status_interval_ms),
        lanes,
        clock: main_clock,
        live: started.live.take(),
        sims: std::mem::take(&mut started.sims),
        feeds: std::mem::take(&mut started.feeds),
        persistence,
        run_id: restored.run_id,
        instrument_names,
        telemetry,
        engine_stop,
        engine_thread,
        // Replaced below once the handlers are installed.
        kill: KillSwitch {
            file: config.kill_switch.file.clone(),
            file_present: config.kill_switch.file.exists(),
            usr1: Arc::default(),
            usr2: Arc::default(),
            http: crate::exporter::ControlFlags::default(),
            flatten: config.kill_switch.flatten,
        },
        breakers_seen: BreakerLog::default(),
        exporter: None,
        next_export: Instant::now(),
        started: Instant::now(),
        started_wall: std::time::SystemTime::now(),
    };
    // A bot that cannot be stopped by its operator is not started: a failure here shuts the
    // parts down again.
    if let Err(e) = bot.install_controls(config) {
        let _ = bot.shutdown();
        return Err(e);
    }
    Ok(bot)
}

/// What has started so far, stopped again if a later part cannot start.
struct Started {
    live: Option<LiveVenue>,
    sims: Vec<SimVenue>,
    feeds: Vec<RunningFeed>,
}

impl Started {
    fn stop(self) {
        for f in self.feeds {
            let _ = f.handle.stop();
        }
        for sim in self.sims {
            sim.stop();
        }
        if let Some(venue) = self.live {
            venue.shutdown();
        }
    }
}

/// Starts the simulated venues (for `sim` venues) and a feed per venue that trades something.
fn start_feeds(
    config: &Config,
    registry: &InstrumentRegistry,
    lanes: &Arc<Lanes>,
    clock: &LiveClock,
    stop_guard: &Arc<tradeloop_engine::stops::StopGuard>,
    started: &mut Started,
) -> anyhow::Result<()> {
    for (n, venue) in config.venues.iter().enumerate() {
        let symbols = SymbolMap::for_venue(registry, &venue.name);
        if symbols.is_empty() {
            tracing::info!(venue = %venue.name, "no instruments on this venue; not connecting");
            continue;
        }
        let f = &config.feed;
        let wire = Wire::of(venue.kind, config.sim.protocol, &config.feed);
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
                protocol: wire.sim_protocol(f),
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
            started.sims.push(sim);
        }
        let settings = FeedSettings {
            stop_guard: config.stops.ingress_guard.then(|| Arc::clone(stop_guard)),
            feed_id: u16::try_from(n).unwrap_or(u16::MAX),
            name: venue.name.clone(),
            ws_url: venue.ws_url.clone(),
            rest_url: venue.rest_url.clone(),
            idle_timeout: Duration::from_millis(f.idle_timeout_ms),
            backoff_base: Duration::from_millis(f.backoff_base_ms),
            backoff_max: Duration::from_millis(f.backoff_max_ms),
            max_attempts: f.max_reconnect_attempts,
            down_critical_after: Duration::from_millis(f.down_critical_after_ms),
        };
        let spawn = Spawn {
            settings,
            lanes: Arc::clone(lanes),
            clock: clock.clone(),
        };
        let handle = with_feed(wire, symbols, registry, f, spawn)
            .with_context(|| format!("cannot start the feed of {:?}", venue.name))?;
        started.feeds.push(RunningFeed {
            name: venue.name.clone(),
            handle,
        });
    }
    Ok(())
}

impl RunningBot {
    /// Installs the kill switch's triggers (SIGUSR1/SIGUSR2, the kill file) and starts the
    /// metrics listener with its control endpoints.
    fn install_controls(&mut self, config: &Config) -> anyhow::Result<()> {
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&self.kill.usr1))
            .context("cannot install the SIGUSR1 (kill switch) handler")?;
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, Arc::clone(&self.kill.usr2))
            .context("cannot install the SIGUSR2 (operator resume) handler")?;
        if self.kill.file_present {
            tracing::warn!(file = %self.kill.file.display(), "the kill file exists at start: it trips the kill switch only when it appears again");
        }
        self.started = Instant::now();
        self.started_wall = std::time::SystemTime::now();
        if config.metrics.enabled {
            let var = &config.metrics.control_token_env;
            self.kill.http.token_env.clone_from(var);
            self.kill.http.token = crate::exporter::ControlToken::from_env(var)
                .context("metrics.control_token_env")?;
            let e = crate::exporter::Exporter::start(
                &config.metrics.listen,
                Some(self.kill.http.clone()),
            )?;
            if self.kill.http.token.is_some() {
                eprintln!(
                    "metrics: http://{0}/metrics; control: POST http://{0}/control/kill and /control/resume with Authorization: Bearer ${var}",
                    e.addr()
                );
            } else {
                eprintln!("metrics: http://{}/metrics", e.addr());
                tracing::warn!(
                    var = %var,
                    "the HTTP control endpoints are disabled: ${var} is not set (kill with SIGUSR1 or the kill file, resume with SIGUSR2)"
                );
            }
            self.exporter = Some(e);
            self.export();
        }
        Ok(())
    }

    /// Publishes the current figures to `/metrics`.
    fn export(&mut self) {
        let Some(e) = &self.exporter else { return };
        e.update(&crate::exporter::RunView {
            started: self.started,
            lanes: &self.lanes,
            telemetry: &self.telemetry,
            feeds: self
                .feeds
                .iter()
                .map(|f| (f.name.as_str(), &*f.handle.shared))
                .collect(),
            instruments: &self.instrument_names,
            persistence_pending: self.persistence.pending(),
            persistence_failures: self.persistence.failures(),
            live: self.live.as_ref().map(LiveVenue::stats),
        });
        self.next_export = Instant::now() + self.status_every;
    }

    /// One supervision turn: acts on the kill switch's triggers (a signal, the kill file,
    /// the control endpoints) by queueing the kill or the resume on CRITICAL, logs breaker
    /// transitions, and refreshes `/metrics` once per `metrics.status_interval_ms`. Cheap:
    /// call it every few tens of milliseconds if you supervise the bot yourself.
    pub fn poll(&mut self) {
        self.kill.poll(&self.lanes, &self.clock);
        self.breakers_seen
            .log_changes(&self.telemetry.snapshot().counters);
        if self.exporter.is_some() && Instant::now() >= self.next_export {
            self.export();
        }
    }

    /// Why the bot should stop now, if it should: `stop` is set, its duration has passed, or
    /// the engine thread has ended.
    #[must_use]
    pub fn should_stop(&self, stop: &AtomicBool) -> Option<Ended> {
        if stop.load(Ordering::Relaxed) {
            Some(Ended::Stopped)
        } else if self.engine_thread.is_finished() {
            Some(Ended::EngineStopped)
        } else if self
            .options
            .duration
            .is_some_and(|d| self.started.elapsed() >= d)
        {
            Some(Ended::Duration)
        } else {
            None
        }
    }

    /// Supervises the bot until it should stop ([`RunningBot::should_stop`]): polls every
    /// 20 ms and shows the status every `metrics.status_interval_ms` — a block redrawn in
    /// place when stderr is a terminal (the trading state on top, in colour unless
    /// `NO_COLOR` is set), else (or with [`Bot::plain`]) one line. Returns why it stopped; the bot is
    /// still running, [`RunningBot::shutdown`] stops it.
    pub fn supervise(&mut self, stop: &AtomicBool) -> Ended {
        let screen = if self.options.plain {
            None
        } else {
            crate::status::Screen::start()
        };
        let mut next_status = self.started + self.status_every;
        loop {
            if let Some(ended) = self.should_stop(stop) {
                return ended;
            }
            std::thread::sleep(Duration::from_millis(20));
            self.poll();
            if Instant::now() >= next_status {
                next_status += self.status_every;
                match &screen {
                    Some(screen) => screen.show(self.status_block()),
                    None => eprintln!("{}", self.status_line()),
                }
            }
        }
    }

    /// How long the bot has run.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The status as one line: feeds, books, positions, lanes, order flow, the store.
    #[must_use]
    pub fn status_line(&self) -> String {
        status_line(
            self.started,
            &self.feeds,
            &self.lanes,
            &self.telemetry,
            &self.instrument_names,
            (self.persistence.pending(), self.persistence.failures()),
        )
    }

    /// The status as a block of aligned lines (what a terminal shows).
    #[must_use]
    pub fn status_block(&self) -> String {
        status_block(
            self.started,
            &self.feeds,
            &self.lanes,
            &self.telemetry,
            &self.instrument_names,
            (self.persistence.pending(), self.persistence.failures()),
        )
    }

    /// Shuts the bot down in order: the metrics listener, then intake (the feeds), then the
    /// engine, which drains what is queued (and in live mode with `live.cancel_on_exit`
    /// cancels its working orders), then live execution and the simulated venues; saves the
    /// histograms if asked, lets the writer write what is queued, and returns what the run
    /// did.
    ///
    /// # Errors
    /// If the engine thread panicked or the store could not be finished.
    pub fn shutdown(self) -> anyhow::Result<RunSummary> {
        if let Some(e) = self.exporter {
            e.stop();
        }
        eprintln!("shutting down: stopping feeds, draining the engine");
        let feed_stats: Vec<_> = self
            .feeds
            .into_iter()
            .map(|f| (f.name, f.handle.stop()))
            .collect();
        self.engine_stop.store(true, Ordering::SeqCst);
        let joined = self.engine_thread.join();
        let live_stats = self.live.map(|venue| {
            let stats = venue.stats();
            venue.shutdown();
            stats
        });
        for sim in self.sims {
            sim.stop();
        }
        let Ok((report, sim_exec, (loop_histograms, tick_to_trade))) = joined else {
            // What the engine queued before it died is still written, and the run is closed
            // as failed.
            let flushed = self
                .persistence
                .finish("failed: the engine thread panicked");
            anyhow::bail!(
                "the engine thread panicked (persistence: {})",
                match flushed {
                    Ok(f) => format!("{} of {} records written", f.report.written, f.queued),
                    Err(e) => format!("{e:#}"),
                }
            );
        };
        if let Some(path) = &self.options.histograms {
            save_histograms(
                path,
                &loop_histograms,
                &tick_to_trade,
                self.started_wall,
                self.started.elapsed(),
            );
        }
        // The engine has shut down and flushed its spill: the writer writes what is queued.
        let persistence_target = self.persistence.target.clone();
        let flushed = self.persistence.finish("completed")?;
        if flushed.report.written != flushed.queued {
            tracing::error!(
                queued = flushed.queued,
                written = flushed.report.written,
                "records queued but not written"
            );
        }
        let telemetry = &self.telemetry;
        let marks = (0..self.instrument_names.len())
            .map(|i| {
                telemetry
                    .instrument(i)
                    .and_then(|x| x.best_bid.zip(x.best_ask))
                    .map(|(b, a)| Price((b.raw() + a.raw()) / 2))
            })
            .collect();
        Ok(RunSummary {
            elapsed: self.started.elapsed(),
            report,
            instruments: self.instrument_names,
            marks,
            sim: sim_exec,
            live: live_stats,
            persistence_target,
            run_id: self.run_id,
            flushed,
            feeds: feed_stats,
            lanes: Lane::ALL.map(|lane| (lane, self.lanes.stats(lane))),
        })
    }
}

/// What a run did: the engine's final counters and positions, and the venues', feeds',
/// lanes' and store's figures. the `run` command prints it
/// ([`Display`](std::fmt::Display)) when it ends.
#[derive(Debug)]
pub struct RunSummary {
    /// How long it ran.
    pub elapsed: Duration,
    /// The engine's final counters, positions and working orders.
    pub report: tradeloop_engine::event_loop::RunReport,
    /// `venue:symbol` by instrument index.
    pub instruments: Vec<String>,
    /// Last published mid per instrument, if the book had both sides.
    pub marks: Vec<Option<Price>>,
    /// The simulated venue's counters and reports lost (paper mode).
    pub sim: Option<(tradeloop_adapters::sim::matching::ExecStats, u64)>,
    /// The live venue's counters (live mode).
    pub live: Option<tradeloop_adapters::binance::exec::gateway::LiveStats>,
    /// Where records were persisted (secrets redacted).
    pub persistence_target: String,
    /// This run's id in the store.
    pub run_id: i64,
    /// What the persistence writer did.
    pub flushed: crate::persistence::Flushed,
    /// Each feed's final counters.
    pub feeds: Vec<(String, tradeloop_adapters::feed::FeedStats)>,
    /// Each lane's final counters.
    pub lanes: [(Lane, tradeloop_engine::lane::LaneStats); 4],
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = &self.report;
        let c = &report.counters;
        writeln!(
            f,
            "run ended after {:.1}s: events critical {} high {} normal {} low {}; orders sent {}, fills {}, rejects {}, denied {}, still working {}",
            self.elapsed.as_secs_f64(),
            c.events[0],
            c.events[1],
            c.events[2],
            c.events[3],
            c.orders_sent,
            c.fills,
            c.rejects,
            c.denials.iter().sum::<u64>(),
            report.working_orders,
        )?;
        if c.amends_sent + c.timers_fired > 0 {
            writeln!(
                f,
                "amends sent {}, timers fired {}",
                c.amends_sent, c.timers_fired
            )?;
        }
        if c.stops_fired + c.stops_failed > 0 {
            writeln!(
                f,
                "stops: {} fired (closing orders sent), {} refused",
                c.stops_fired, c.stops_failed
            )?;
        }
        for kind in BreakerKind::ALL {
            let k = kind as usize;
            if c.breaker_trips[k] > 0 {
                writeln!(
                    f,
                    "breaker {}: tripped {} times, recovered {} times, now {}",
                    kind.name(),
                    c.breaker_trips[k],
                    c.breaker_recoveries[k],
                    BreakerState::from_code(c.breaker_states[k]).name()
                )?;
            }
        }
        if c.kills > 0 {
            writeln!(
                f,
                "kill switch: tripped {} times, {} closing orders sent, {} positions left open (no reference price or refused); new orders stayed halted",
                c.kills, c.flatten_orders, c.flatten_failed
            )?;
        }
        if let Some((exec, lost_reports)) = self.sim {
            writeln!(
                f,
                "simulated venue: {} orders arrived, {} fills, {} rejected, {} cancelled/expired, {} amended, {} reports lost",
                exec.arrived, exec.fills, exec.rejected, exec.canceled, exec.amended, lost_reports
            )?;
        }
        if let Some(s) = self.live {
            writeln!(
                f,
                "live venue: {} orders sent, {} refused by exchange filters, {} rejected, {} cancels sent, {} amends sent ({} rejected), {} unknown outcomes resolved; {} reconciliations ({} orphans cancelled, {} foreign orders, {} positions checked); user stream {} connects, {} stale and {} unknown reports ignored, {} bad messages; REST {} requests, {} held back, {} 429, {} 418, {} dry-run",
                s.orders_sent,
                s.refused_by_filter,
                s.rejected,
                s.cancels_sent,
                s.amends_sent,
                s.amends_rejected,
                s.unknown_outcomes,
                s.reconciliations,
                s.orphans_cancelled,
                s.foreign_orders,
                s.positions_synced,
                s.stream_connects,
                s.stream_stale_reports,
                s.stream_unknown_orders,
                s.stream_bad_messages,
                s.rest_sent,
                s.held_back,
                s.http_429,
                s.http_418,
                s.dry_run,
            )?;
        }
        for ((name, p), mark) in self
            .instruments
            .iter()
            .zip(&report.positions)
            .zip(&self.marks)
        {
            if p.fills > 0 {
                let unrealized = mark.map_or(Money::ZERO, |m| p.unrealized(m));
                writeln!(
                    f,
                    "position {name}: qty {}, realised {}, unrealised {}, fees {}, net {} ({} fills)",
                    p.qty,
                    p.realized.to_decimal().round_dp(8),
                    unrealized.to_decimal().round_dp(8),
                    p.fees.to_decimal().round_dp(8),
                    (p.realized + unrealized - p.fees).to_decimal().round_dp(8),
                    p.fills
                )?;
            }
        }
        let w = &self.flushed;
        writeln!(
            f,
            "persistence ({}, run {}): queued {} records, wrote {} in {} batches, {} failed attempts, {} telemetry records dropped{}",
            self.persistence_target,
            self.run_id,
            w.queued,
            w.report.written,
            w.report.batches,
            w.report.failures,
            w.telemetry_dropped,
            if w.run_closed {
                ""
            } else {
                "; the run's end could not be recorded (the next start marks it crashed)"
            },
        )?;
        for (name, s) in &self.feeds {
            writeln!(
                f,
                "feed {name}: {} frames, {} trades, {} quotes, {} diffs, {} snapshots, {} gaps, {} refused",
                s.frames,
                s.trades,
                s.quotes,
                s.diffs_applied,
                s.snapshots,
                s.gaps,
                s.errors_total()
            )?;
        }
        for (lane, st) in &self.lanes {
            if st.dropped > 0 || st.refused > 0 {
                writeln!(
                    f,
                    "lane {}: {} dropped, {} refused",
                    lane.name(),
                    st.dropped,
                    st.refused
                )?;
            }
        }
        Ok(())
    }
}

/// Where orders go: the simulated matching engine (paper) or Binance (live).
#[allow(
    clippy::large_enum_variant,
    reason = "one per run, owned by the engine; boxing the sim would add a pointer chase to every paper order and market event"
)]
enum ExecGateway {
    Sim(SimGateway),
    Live(LiveGateway),
}

impl Gateway for ExecGateway {
    #[inline]
    fn submit(&mut self, order: &Order, now_ns: u64, books: &Books) -> Result<(), GatewayError> {
        match self {
            Self::Sim(g) => g.submit(order, now_ns, books),
            Self::Live(g) => g.submit(order, now_ns, books),
        }
    }

    #[inline]
    fn cancel(&mut self, order: &Order, now_ns: u64, books: &Books) -> Result<(), GatewayError> {
        match self {
            Self::Sim(g) => g.cancel(order, now_ns, books),
            Self::Live(g) => g.cancel(order, now_ns, books),
        }
    }

    fn amend(
        &mut self,
        order: &Order,
        price: Price,
        qty: tradeloop_engine::fixed::Qty,
        now_ns: u64,
        books: &Books,
    ) -> Result<(), GatewayError> {
        match self {
            Self::Sim(g) => g.amend(order, price, qty, now_ns, books),
            Self::Live(g) => g.amend(order, price, qty, now_ns, books),
        }
    }

    #[inline]
    fn on_market(&mut self, event: &Event, now_ns: u64, books: &Books) {
        if let Self::Sim(g) = self {
            g.on_market(event, now_ns, books);
        }
    }

    #[inline]
    fn poll(&mut self, now_ns: u64, books: &Books) {
        if let Self::Sim(g) = self {
            g.poll(now_ns, books);
        }
    }
}

/// Makes the live venue's tick and step sizes the instruments' (the venue wins), logging each
/// difference from the configuration, so risk checks and strategies round as the venue does.
fn adopt_venue_increments(
    registry: &mut tradeloop_engine::instrument::InstrumentRegistry,
    venue: &LiveVenue,
) -> anyhow::Result<()> {
    for (index, f) in venue.filters() {
        let i = registry.get(index);
        let tick = if f.tick_size.raw() > 0 {
            f.tick_size
        } else {
            i.tick_size
        };
        let lot = if f.step_size.raw() > 0 {
            f.step_size
        } else {
            i.lot_size
        };
        if (tick, lot) != (i.tick_size, i.lot_size) {
            tracing::warn!(
                symbol = %i.symbol,
                config_tick = %i.tick_size,
                venue_tick = %tick,
                config_lot = %i.lot_size,
                venue_lot = %lot,
                "the venue's tickSize/stepSize differ from config.toml: using the venue's"
            );
            registry.set_increments(index, tick, lot)?;
        }
    }
    Ok(())
}

/// Connects live execution to the configured Binance venue.
/// The live venue, its credentials from the environment, and its REST settings.
fn live_rest(
    config: &Config,
) -> anyhow::Result<(&crate::config::VenueConfig, Credentials, RestSettings)> {
    let venue = config
        .live_venue()
        .context("no live venue: live.venue must name a [[venues]] entry of kind binance or binance-usdm (or leave it empty with exactly one such venue)")?;
    let (Some(key_env), Some(secret_env)) = (&venue.api_key_env, &venue.api_secret_env) else {
        anyhow::bail!(
            "venue {:?} needs api_key_env and api_secret_env naming the environment variables with the credentials",
            venue.name
        );
    };
    let credentials = Credentials::from_env(key_env, secret_env)
        .with_context(|| format!("live trading on {:?}", venue.name))?;
    let l = &config.live;
    let market = if venue.kind == VenueKind::BinanceUsdm {
        Market::UsdM
    } else {
        Market::Spot
    };
    let rest = RestSettings {
        base_url: l.rest_url.clone().unwrap_or_else(|| venue.rest_url.clone()),
        market,
        recv_window_ms: l.recv_window_ms,
        dry_run: l.dry_run,
        timeout: Duration::from_millis(l.request_timeout_ms),
        limit_headroom_pct: l.limit_headroom_pct,
    };
    Ok((venue, credentials, rest))
}

fn start_live(
    config: &Config,
    registry: &tradeloop_engine::instrument::InstrumentRegistry,
    lanes: &Arc<Lanes>,
    clock: &LiveClock,
) -> anyhow::Result<(LiveVenue, LiveGateway)> {
    let (venue, credentials, rest) = live_rest(config)?;
    let l = &config.live;
    let instruments = registry
        .iter()
        .filter(|i| i.venue == venue.name)
        .map(|i| LiveInstrument {
            index: i.index,
            symbol: i.symbol.clone(),
        })
        .collect();
    let settings = LiveSettings {
        rest,
        ws_url: l
            .user_stream_url
            .clone()
            .unwrap_or_else(|| venue.ws_url.clone()),
        client_id_prefix: l.client_id_prefix.clone(),
        keepalive: Duration::from_secs(l.keepalive_secs),
        queue_capacity: l.queue_capacity,
        backoff_base: Duration::from_millis(config.feed.backoff_base_ms),
        backoff_max: Duration::from_millis(config.feed.backoff_max_ms),
        instruments,
        // Market-data feeds are numbered by venue; the user stream comes after them.
        feed_id: u16::try_from(config.venues.len()).ok(),
        reconcile_every: (l.reconcile_interval_secs > 0)
            .then(|| Duration::from_secs(l.reconcile_interval_secs)),
    };
    if l.dry_run {
        tracing::warn!(venue = %venue.name, "DRY RUN: orders are signed and logged, never sent; every order is reported rejected");
    } else {
        tracing::warn!(venue = %venue.name, base_url = %settings.rest.base_url, "LIVE TRADING: orders go to the venue");
    }
    LiveVenue::start(settings, credentials, Arc::clone(lanes), clock.clone())
        .with_context(|| format!("cannot start live execution on {:?}", venue.name))
}

/// `tradeloop live-check`: a read-only check of the live venue (keys, clock, symbols and
/// filters, rate limits, holdings, open orders, user stream). Sends no order.
///
/// # Errors
/// If the configuration names no live venue, a credential is missing, or a request fails.
pub fn live_check(config: &Config) -> anyhow::Result<()> {
    tradeloop_adapters::install_tls_provider();
    let (venue, credentials, mut rest) = live_rest(config)?;
    rest.dry_run = false; // reads only
    let registry = config.registry()?;
    let symbols: Vec<String> = registry
        .iter()
        .filter(|i| i.venue == venue.name)
        .map(|i| i.symbol.clone())
        .collect();
    let url = rest.base_url.clone();
    let p = tradeloop_adapters::binance::exec::preflight::preflight(
        rest,
        credentials,
        &symbols,
        &config.live.client_id_prefix,
    )
    .with_context(|| format!("live check of {:?} at {url}", venue.name))?;
    println!(
        "venue {} ({:?}) at {url}: keys accepted",
        venue.name, venue.kind
    );
    println!("server time offset: {} ms", p.offset_ms);
    let mut problems = 0;
    for (symbol, filters) in &p.symbols {
        let Some(f) = filters else {
            println!("symbol {symbol}: NOT LISTED");
            problems += 1;
            continue;
        };
        let i = registry.get(
            registry
                .find(&venue.name, symbol)
                .context("a configured symbol")?,
        );
        let differs = |a: String, b: String| {
            if a == b {
                String::new()
            } else {
                format!(" (config.toml: {b}; the venue's is used)")
            }
        };
        println!(
            "symbol {symbol}: {}, tickSize {}{}, stepSize {}{}, minQty {}, minNotional {}",
            if f.trading { "TRADING" } else { "NOT TRADING" },
            f.tick_size,
            differs(f.tick_size.to_string(), i.tick_size.to_string()),
            f.step_size,
            differs(f.step_size.to_string(), i.lot_size.to_string()),
            f.min_qty,
            f.min_notional.to_decimal().normalize(),
        );
        problems += usize::from(!f.trading);
    }
    for l in &p.rate_limits {
        println!("rate limit: {} per {:?} ({})", l.limit, l.window, l.header);
    }
    if p.holdings.is_empty() {
        println!("holdings: none");
    }
    for (name, a, b) in &p.holdings {
        if b.is_zero() {
            println!("holding {name}: {a}");
        } else {
            println!("holding {name}: {a} free, {b} locked");
        }
    }
    for (symbol, ours, others) in &p.open_orders {
        println!("open orders {symbol}: {ours} placed by tradeloop (prefix {:?}, cancelled at start), {others} by others (left alone)", config.live.client_id_prefix);
    }
    println!("user data stream: listen key created and closed");
    anyhow::ensure!(
        problems == 0,
        "{problems} symbol(s) not listed or not trading"
    );
    Ok(())
}

/// Writes the engine's histograms (per lane wait and service, tick-to-trade) as an interval
/// log. A failure is logged, not fatal: the run itself has ended cleanly.
fn save_histograms(
    path: &std::path::Path,
    loop_histograms: &tradeloop_engine::metrics::LoopHistograms,
    tick_to_trade: &hdrhistogram::Histogram<u64>,
    started: std::time::SystemTime,
    elapsed: Duration,
) {
    let tags: Vec<(String, &hdrhistogram::Histogram<u64>)> = Lane::ALL
        .iter()
        .flat_map(|&lane| {
            [
                (format!("{}_wait", lane.name()), loop_histograms.wait(lane)),
                (
                    format!("{}_service", lane.name()),
                    loop_histograms.service(lane),
                ),
            ]
        })
        .chain([("tick_to_trade".to_owned(), tick_to_trade)])
        .collect();
    let refs: Vec<(&str, &hdrhistogram::Histogram<u64>)> =
        tags.iter().map(|(t, h)| (t.as_str(), *h)).collect();
    match crate::hdrlog::write(
        path,
        &refs,
        started,
        elapsed,
        "tradeloop run: engine latency histograms",
    ) {
        Ok(()) => eprintln!(
            "latency histograms: {} (compare two runs: tradeloop latency-compare A.hlog B.hlog)",
            path.display()
        ),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot save the latency histograms"),
    }
}

/// The kill switch's triggers, polled by the main thread every 20 ms (off the hot path): a
/// SIGUSR1, the kill file appearing, or `POST /control/kill` on the metrics listener. A trip
/// pushes `Control::KillSwitch` on CRITICAL. SIGUSR2 or `POST /control/resume` is the
/// operator's resume: `Control::Resume` lifts the kill switch's halt and closes every circuit
/// breaker.
struct KillSwitch {
    file: std::path::PathBuf,
    file_present: bool,
    usr1: Arc<AtomicBool>,
    usr2: Arc<AtomicBool>,
    /// Raised by `POST /control/kill` and `/control/resume`.
    http: crate::exporter::ControlFlags,
    flatten: bool,
}

impl KillSwitch {
    fn poll(&mut self, lanes: &Lanes, clock: &LiveClock) {
        let by_signal = self.usr2.swap(false, Ordering::AcqRel);
        let by_http = self.http.resume.swap(false, Ordering::AcqRel);
        if by_signal || by_http {
            crate::status::say(&format!(
                "RESUME by {}: lifting the kill switch's halt and closing every circuit breaker",
                if by_signal {
                    "SIGUSR2"
                } else {
                    "POST /control/resume"
                }
            ));
            let event = Event::new(clock.now_ns(), 0, EventKind::Control(Control::Resume));
            if lanes.push_critical(event).is_err() {
                tracing::error!("the resume could not be queued (lanes closed)");
            }
        }
        let present = self.file.exists();
        let appeared = present && !self.file_present;
        self.file_present = present;
        let signalled = self.usr1.swap(false, Ordering::AcqRel);
        let requested = self.http.kill.swap(false, Ordering::AcqRel);
        if !(appeared || signalled || requested) {
            return;
        }
        let source = if signalled {
            "SIGUSR1".to_owned()
        } else if requested {
            "POST /control/kill".to_owned()
        } else {
            format!("file {}", self.file.display())
        };
        crate::status::say(&format!(
            "KILL SWITCH tripped by {source}: cancelling every order, halting new ones{}",
            if self.flatten {
                ", closing every position"
            } else {
                ""
            }
        ));
        let event = Event::new(clock.now_ns(), 0, EventKind::Control(Control::KillSwitch));
        if lanes.push_critical(event).is_err() {
            tracing::error!("the kill switch could not be queued (lanes closed)");
        }
    }
}

fn report_recovery(
    target: &str,
    restored: &crate::persistence::Restored,
    registry: &tradeloop_engine::instrument::InstrumentRegistry,
) {
    let mut positions = String::new();
    for (p, i) in restored.positions.iter().zip(registry.iter()) {
        if p.fills > 0 {
            positions.push_str(&format!(
                " {}:{} qty {} realised {} fees {} ({} fills);",
                i.venue,
                i.symbol,
                p.qty,
                p.realized.to_decimal().round_dp(8),
                p.fees.to_decimal().round_dp(8),
                p.fills
            ));
        }
    }
    eprintln!(
        "recovered from {target}: {} fills{}{positions} next order sequence {}; {} orders of earlier runs closed as cancelled;{} this is run {}",
        restored.fills,
        if restored.unknown_fills > 0 {
            format!(" ({} of instruments no longer configured, not applied)", restored.unknown_fills)
        } else {
            String::new()
        },
        restored.next_sequence,
        restored.orphaned_orders,
        if restored.crashed_runs > 0 {
            format!(
                " {} earlier run(s) never ended (process killed or crashed), marked crashed;",
                restored.crashed_runs
            )
        } else {
            String::new()
        },
        restored.run_id
    );
}

/// Logs circuit-breaker transitions seen in the published telemetry (the engine publishes at
/// once when a breaker changes state; every transition is also persisted with its time).
#[derive(Default)]
struct BreakerLog {
    states: [u8; BreakerKind::COUNT],
    trips: [u64; BreakerKind::COUNT],
    recoveries: [u64; BreakerKind::COUNT],
}

impl BreakerLog {
    fn log_changes(&mut self, c: &tradeloop_engine::metrics::EngineCounters) {
        for kind in BreakerKind::ALL {
            let k = kind as usize;
            if (
                c.breaker_states[k],
                c.breaker_trips[k],
                c.breaker_recoveries[k],
            ) == (self.states[k], self.trips[k], self.recoveries[k])
            {
                continue;
            }
            let state = BreakerState::from_code(c.breaker_states[k]);
            let (value, limit, unit) = (c.breaker_values[k], c.breaker_limits[k], kind.unit());
            match state {
                BreakerState::Open => tracing::error!(
                    breaker = kind.name(),
                    trips = c.breaker_trips[k],
                    value,
                    limit,
                    unit,
                    "circuit breaker tripped: trading restricted"
                ),
                BreakerState::HalfOpen => tracing::warn!(
                    breaker = kind.name(),
                    value,
                    limit,
                    unit,
                    "circuit breaker half-open: reducing only until its checks stay good"
                ),
                BreakerState::Closed => tracing::warn!(
                    breaker = kind.name(),
                    recoveries = c.breaker_recoveries[k],
                    "circuit breaker closed: trading resumed"
                ),
            }
            self.states[k] = c.breaker_states[k];
            self.trips[k] = c.breaker_trips[k];
            self.recoveries[k] = c.breaker_recoveries[k];
        }
    }
}

/// The trading state for the status display, and whether it is good (green), restricted
/// (yellow) or stopped (red).
fn trading_state(c: &tradeloop_engine::metrics::EngineCounters) -> (String, Severity) {
    let breakers: Vec<String> = BreakerKind::ALL
        .iter()
        .filter_map(|&k| {
            let state = BreakerState::from_code(c.breaker_states[k as usize]);
            (state != BreakerState::Closed).then(|| format!("{} ({})", k.name(), state.name()))
        })
        .collect();
    let by = if breakers.is_empty() {
        String::new()
    } else {
        format!(" by breaker {}", breakers.join(", "))
    };
    const HALTED: u8 = tradeloop_engine::api::TradingState::Halted as u8;
    const REDUCING: u8 = tradeloop_engine::api::TradingState::Reducing as u8;
    match (c.operator_state, c.trading_state) {
        (HALTED, _) if c.kills > 0 => (
            "KILLED: orders cancelled, new orders halted (resume: SIGUSR2 or POST /control/resume)"
                .to_owned(),
            Severity::Stopped,
        ),
        (HALTED, _) => ("HALTED by the operator".to_owned(), Severity::Stopped),
        (_, HALTED) => (format!("HALTED{by}"), Severity::Stopped),
        (REDUCING, _) => (
            "REDUCE-ONLY by the operator".to_owned(),
            Severity::Restricted,
        ),
        (_, REDUCING) => (format!("REDUCE-ONLY{by}"), Severity::Restricted),
        _ if !breakers.is_empty() => (
            format!("RUNNING (breaker {})", breakers.join(", ")),
            Severity::Restricted,
        ),
        _ => ("RUNNING".to_owned(), Severity::Good),
    }
}

/// How the trading state reads at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Good,
    Restricted,
    Stopped,
}

impl Severity {
    /// `text` in this severity's colour (ANSI), unless `NO_COLOR` is set.
    fn paint(self, text: &str) -> String {
        if std::env::var_os("NO_COLOR").is_some() {
            return text.to_owned();
        }
        let code = match self {
            Self::Good => "32",
            Self::Restricted => "33",
            Self::Stopped => "1;31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Denials by reason, the most frequent first (at most `n`).
fn denials_by_reason(c: &tradeloop_engine::metrics::EngineCounters, n: usize) -> String {
    let mut by: Vec<(u64, &str)> = c
        .denials
        .iter()
        .zip(tradeloop_engine::api::Deny::NAMES)
        .filter(|(v, _)| **v > 0)
        .map(|(v, name)| (*v, name))
        .collect();
    by.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    by.iter()
        .take(n)
        .map(|(v, name)| format!("{name} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status block of a terminal: the trading state, then one line per feed, instrument and
/// lane, then the order flow.
fn status_block(
    started: Instant,
    feeds: &[RunningFeed],
    lanes: &Lanes,
    telemetry: &Telemetry,
    instruments: &[String],
    (store_pending, store_failures): (usize, u64),
) -> String {
    use std::fmt::Write as _;
    let t = telemetry.snapshot();
    let c = &t.counters;
    let (state, severity) = trading_state(c);
    let mut s = format!(
        "── tradeloop run · {:.0}s · {} ──────────────────────────────\n",
        started.elapsed().as_secs_f64(),
        severity.paint(&state)
    );
    for f in feeds {
        let sh = &f.handle.shared;
        let _ = writeln!(
            s,
            "feed {:<12} {:<12} frames {:>10}  gaps {:>4}  reconnects {:>3}  refused {:>4}",
            f.name,
            sh.state().name(),
            sh.frames.load(Ordering::Relaxed),
            sh.gaps.load(Ordering::Relaxed),
            sh.reconnects.load(Ordering::Relaxed),
            sh.errors.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "{:<20} {:<8} {:>14} {:>14} {:>12} {:>14} {:>12} {:>14}",
        "instrument", "book", "bid", "ask", "position", "realised", "fees", "net"
    );
    for (i, name) in instruments.iter().enumerate() {
        if let Some(x) = telemetry.instrument(i) {
            let px = |p: Option<Price>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let money = |m: Money| m.to_decimal().round_dp(4).to_string();
            let _ = writeln!(
                s,
                "{name:<20} {:<8} {:>14} {:>14} {:>12} {:>14} {:>12} {:>14}",
                format!("{:?}", x.book_state),
                px(x.best_bid),
                px(x.best_ask),
                x.position.to_string(),
                money(x.realized),
                money(x.fees),
                money(x.net_realized)
            );
        }
    }
    let _ = writeln!(
        s,
        "{:<9} {:>7} {:>9} {:>12} {:>12} {:>12}",
        "lane", "queued", "dropped", "events", "wait p50", "wait p99"
    );
    for lane in Lane::ALL {
        let st = lanes.stats(lane);
        let w = t.wait[lane as usize];
        let _ = writeln!(
            s,
            "{:<9} {:>7} {:>9} {:>12} {:>10}ns {:>10}ns",
            lane.name(),
            st.depth,
            st.dropped,
            c.events[lane as usize],
            w.p50,
            w.p99
        );
    }
    let denied: u64 = c.denials.iter().sum();
    let _ = writeln!(
        s,
        "orders {}  fills {}  rejects {}  denied {denied}{}",
        c.orders_sent,
        c.fills,
        c.rejects,
        if denied > 0 {
            format!(" ({})", denials_by_reason(c, 4))
        } else {
            String::new()
        }
    );
    let _ = write!(
        s,
        "tick-to-trade p50/p99 {}/{}ns  store pending {store_pending} failures {store_failures}",
        t.tick_to_trade.p50, t.tick_to_trade.p99
    );
    s
}

fn status_line(
    started: Instant,
    feeds: &[RunningFeed],
    lanes: &Lanes,
    telemetry: &Telemetry,
    instruments: &[String],
    (store_pending, store_failures): (usize, u64),
) -> String {
    use std::fmt::Write as _;
    let t = telemetry.snapshot();
    let mut s = format!(
        "[{:>6.1}s] {} |",
        started.elapsed().as_secs_f64(),
        trading_state(&t.counters).0
    );
    for f in feeds {
        let sh = &f.handle.shared;
        let state = match sh.state() {
            FeedState::Down => "DOWN",
            other => other.name(),
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
                " {name} {:?} {}/{} pos={} realised={} fees={} |",
                x.book_state,
                px(x.best_bid),
                px(x.best_ask),
                x.position,
                x.realized.to_decimal().round_dp(4),
                x.fees.to_decimal().round_dp(4)
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
    let denied: u64 = t.counters.denials.iter().sum();
    let _ = write!(
        s,
        " | orders={} fills={} rejects={} denied={denied}{} | store pending={store_pending} failures={store_failures}",
        t.counters.orders_sent,
        t.counters.fills,
        t.counters.rejects,
        if denied > 0 {
            format!(" ({})", denials_by_reason(&t.counters, 3))
        } else {
            String::new()
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::metrics::EngineCounters;

    /// The status display's trading state for each combination that matters.
    #[test]
    fn the_trading_state_names_who_restricted_trading() {
        let open = |kind: BreakerKind, code: BreakerState| {
            let mut c = EngineCounters::default();
            c.breaker_states[kind as usize] = code as u8;
            c
        };
        let mut killed = EngineCounters {
            operator_state: 2,
            trading_state: 2,
            kills: 1,
            ..EngineCounters::default()
        };
        let mut halted_by_breaker = open(BreakerKind::Drawdown, BreakerState::Open);
        halted_by_breaker.trading_state = 2;
        let mut reducing = open(BreakerKind::RejectStorm, BreakerState::HalfOpen);
        reducing.trading_state = 1;
        let recovering = open(BreakerKind::FeedDown, BreakerState::HalfOpen);
        let cases: [(&str, EngineCounters, &str, Severity); 5] = [
            ("TC0", EngineCounters::default(), "RUNNING", Severity::Good),
            ("TC1", killed, "KILLED", Severity::Stopped),
            (
                "TC2",
                halted_by_breaker,
                "HALTED by breaker drawdown (open)",
                Severity::Stopped,
            ),
            (
                "TC3",
                reducing,
                "REDUCE-ONLY by breaker reject_storm (half_open)",
                Severity::Restricted,
            ),
            (
                "TC4 a half-open breaker that restricts nothing",
                recovering,
                "RUNNING (breaker feed_down (half_open))",
                Severity::Restricted,
            ),
        ];
        for (label, c, text, severity) in cases {
            let (got, sev) = trading_state(&c);
            assert!(got.starts_with(text), "{label}: {got}");
            assert_eq!(sev, severity, "{label}");
        }
        // A kill outranks a breaker, and the resume hint is on screen.
        killed.breaker_states[BreakerKind::Drawdown as usize] = BreakerState::Open as u8;
        let (got, _) = trading_state(&killed);
        assert!(got.contains("resume: SIGUSR2"), "TC5 {got}");
    }

    #[test]
    fn denials_are_listed_most_frequent_first() {
        let mut c = EngineCounters::default();
        c.denials[8] = 5;
        c.denials[9] = 40;
        c.denials[0] = 5;
        assert_eq!(
            denials_by_reason(&c, 2),
            "price_band 40, halted 5",
            "TC0 ties by name"
        );
    }
}
