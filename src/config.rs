//! Loading and validating config.toml: unknown keys rejected, environment overrides
//! (`TRADELOOP__SECTION__KEY=value`), every error naming the key and the reason, secrets only
//! from environment variables. Off the hot path: read once at start-up.
//!
//! Each piece's section is declared and validated beside the piece and re-exported here:
//! `[engine]` ([`LoopConfig`]), `[stops]` and `[breakers]` in the engine crate, `[risk]` in
//! the risk crate, `[feed]`, `[execution]`, `[sim]` and `[live]` in the adapters crate. This
//! module assembles them into [`Config`], applies the environment overrides, prefixes each
//! piece's error with its section, and checks what spans sections (instruments against
//! venues, the live venue, PnL breakers against inverse contracts).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tradeloop_engine::event_loop::LoopConfig;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentRegistry};
use tradeloop_risk::RiskLimits;

pub use tradeloop_adapters::binance::exec::config::LiveSection;
pub use tradeloop_adapters::runner::config::FeedSection;
pub use tradeloop_adapters::sim::config::{
    ExecutionSection, FeeTierSection, LatencyModelSection, QueueModelSection, SimProtocol,
    SimSection,
};
pub use tradeloop_engine::breakers::config::{
    BreakersSection, DurationBreakerSection, LatencyBreakerSection, MoneyBreakerSection,
    RejectBreakerSection,
};
pub use tradeloop_engine::stops::StopsSection;

/// Prefix of environment overrides; path segments are separated by `__`.
pub const ENV_PREFIX: &str = "TRADELOOP__";

/// A configuration error that names the key and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `engine.lanes.normal_slots` (or the environment variable).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Maps a section's `(key, reason)` to a [`ConfigError`] whose key is below `section`.
fn at<K: fmt::Display>(section: &'static str) -> impl Fn((K, String)) -> ConfigError {
    move |(k, r)| err(format!("{section}.{k}"), r)
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One `[[instruments]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Venue name (must match a `[[venues]]` name).
    pub venue: String,
    /// Venue symbol.
    pub symbol: String,
    /// Price increment.
    pub tick_size: Price,
    /// Quantity increment.
    pub lot_size: Qty,
    /// Contract kind: `{ kind = "spot" }`, `{ kind = "linear", multiplier = "1" }` or
    /// `{ kind = "inverse", multiplier = "100" }`.
    pub contract: ContractKind,
    /// This instrument's own maker rate in the simulated venue, basis points (negative =
    /// rebate); with `taker_fee_bps`, it replaces `[execution]`'s rates and tiers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maker_fee_bps: Option<i64>,
    /// This instrument's own taker rate, basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_fee_bps: Option<i64>,
}

/// `[strategy]`: which strategy runs (`name`) and every strategy's parameters in its own
/// `[strategy.NAME]` table. The tables are kept as TOML here and deserialised by the strategy
/// that runs ([`crate::strategy::params`]), so a binary's own strategies need no change to
/// this type; a table for a strategy that is not registered is refused by
/// [`crate::strategy::validate`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct StrategySection {
    /// Which strategy runs (a registered name, e.g. `ma_cross`).
    pub name: String,
    /// `[strategy.NAME]` tables by name.
    #[serde(flatten)]
    pub sections: BTreeMap<String, toml::Value>,
}

/// Storage backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded SQLite file (default).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// `[persistence]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceSection {
    /// Backend.
    pub backend: Backend,
    /// SQLite database file.
    pub sqlite_path: PathBuf,
    /// Name of the environment variable holding the PostgreSQL URL (with its password).
    pub postgres_url_env: String,
    /// Records per transaction at most.
    pub batch_size: u32,
    /// Longest time a record waits before its batch is written.
    pub flush_interval_ms: u64,
    /// Capacity of the engine → writer queue (power of two).
    pub queue_slots: usize,
}

/// `[kill_switch]`: SIGUSR1 or the appearance of `file` trips it; a kill cancels every working
/// order, halts new ones, and with `flatten` closes every position.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchSection {
    /// A file whose appearance trips the kill switch (relative to the working directory).
    pub file: PathBuf,
    /// Also close every position with reduce-only market orders.
    pub flatten: bool,
}

/// `[report]`: how backtest statistics are computed (optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Period of the equity returns Sharpe and Sortino are computed from, seconds; they are
    /// annualised by √(periods per year) and left out (`null`, with the reason) when the
    /// backtest spans fewer than 30 periods.
    pub stats_period_s: u64,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self { stats_period_s: 60 }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve Prometheus metrics during `run`.
    pub enabled: bool,
    /// Listen address of the metrics endpoint.
    pub listen: String,
    /// Status line refresh interval during `run`.
    pub status_interval_ms: u64,
    /// Environment variable holding the bearer token of `POST /control/kill` and
    /// `/control/resume` (at least 16 characters). Unset or empty: the endpoints are disabled.
    #[serde(default = "default_control_token_env")]
    pub control_token_env: String,
}

fn default_control_token_env() -> String {
    "TRADELOOP_CONTROL_TOKEN".to_owned()
}

/// Venue protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VenueKind {
    /// The built-in offline exchange simulator on loopback (wire format: `[sim].protocol`).
    Sim,
    /// Binance spot.
    Binance,
    /// Binance USD-M futures.
    BinanceUsdm,
    /// Bybit v5 public market data; `ws_url` is the category's endpoint, e.g.
    /// `wss://stream.bybit.com/v5/public/linear` or `…/spot`.
    Bybit,
    /// Kraken spot WebSocket v2 public market data (`wss://ws.kraken.com/v2`); instrument
    /// symbols as Kraken writes them (`BTC/USD`), tick and lot size at the pair's precision.
    Kraken,
    /// Coinbase Advanced Trade public market data (`wss://advanced-trade-ws.coinbase.com`);
    /// instrument symbols are product ids (`BTC-USD`).
    Coinbase,
    /// OKX v5 public market data (`wss://ws.okx.com:8443/ws/v5/public`); instrument symbols
    /// are `instId`s (`BTC-USDT`, `BTC-USDT-SWAP`).
    Okx,
}

impl VenueKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [Self; 7] = [
        Self::Sim,
        Self::Binance,
        Self::BinanceUsdm,
        Self::Bybit,
        Self::Kraken,
        Self::Coinbase,
        Self::Okx,
    ];

    /// The name config.toml and `--venue` spell it with.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Binance => "binance",
            Self::BinanceUsdm => "binance-usdm",
            Self::Bybit => "bybit",
            Self::Kraken => "kraken",
            Self::Coinbase => "coinbase",
            Self::Okx => "okx",
        }
    }

    /// The kind named `name` ([`Self::name`]).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The venue's official public market-data endpoints `(ws_url, rest_url)` (`None` for the
    /// simulator, which runs on loopback); Bybit's is the linear (USDT perpetual) category.
    #[must_use]
    pub const fn public_endpoints(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Sim => None,
            Self::Binance => Some(("wss://stream.binance.com:9443", "https://api.binance.com")),
            Self::BinanceUsdm => Some(("wss://fstream.binance.com", "https://fapi.binance.com")),
            Self::Bybit => Some((
                "wss://stream.bybit.com/v5/public/linear",
                "https://api.bybit.com",
            )),
            Self::Kraken => Some(("wss://ws.kraken.com/v2", "https://api.kraken.com")),
            Self::Coinbase => Some((
                "wss://advanced-trade-ws.coinbase.com",
                "https://api.coinbase.com",
            )),
            Self::Okx => Some(("wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com")),
        }
    }
}

/// One `[[venues]]` entry. Credentials are never written here: only the names of the
/// environment variables that hold them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    /// Name instruments refer to.
    pub name: String,
    /// Protocol.
    pub kind: VenueKind,
    /// Market-data WebSocket base URL.
    pub ws_url: String,
    /// REST base URL (depth snapshots, orders).
    pub rest_url: String,
    /// Environment variable holding the API key (live trading only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Environment variable holding the API secret (live trading only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret_env: Option<String>,
}

/// Trading mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Simulated execution (default).
    Paper,
    /// Real orders on a venue.
    Live,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Paper or live.
    pub mode: Mode,
    /// Engine loop and lanes.
    pub engine: LoopConfig,
    /// Instruments traded.
    pub instruments: Vec<InstrumentConfig>,
    /// Strategy.
    pub strategy: StrategySection,
    /// Pre-trade risk limits.
    pub risk: RiskLimits,
    /// Per-position stops and the ingress stop guard.
    pub stops: StopsSection,
    /// Kill switch.
    pub kill_switch: KillSwitchSection,
    /// Circuit breakers (optional: absent = every breaker off).
    #[serde(default)]
    pub breakers: BreakersSection,
    /// Backtest statistics (optional).
    #[serde(default)]
    pub report: ReportSection,
    /// Persistence.
    pub persistence: PersistenceSection,
    /// Metrics and status.
    pub metrics: MetricsSection,
    /// Simulated execution (paper trading).
    pub execution: ExecutionSection,
    /// Market-data runner.
    pub feed: FeedSection,
    /// Simulated venue.
    pub sim: SimSection,
    /// Live execution (mode = "live").
    #[serde(default)]
    pub live: LiveSection,
    /// Venues.
    pub venues: Vec<VenueConfig>,
}

impl Config {
    /// Reads `path`, applies `TRADELOOP__…` overrides from `env`, deserializes and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key (or file, or environment variable) and the reason.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::from_toml(&text, env)
    }

    /// Parses TOML text with overrides (see [`Self::load`]).
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            let key = e.span().map_or_else(
                || "(file)".to_owned(),
                |s| format!("(file, byte {})", s.start),
            );
            err(key, e.message().to_owned())
        })?;
        let applied = apply_env_overrides(&mut value, env)?;
        let config: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".to_owned()
            } else {
                key
            };
            blame_env(err(key, e.into_inner().to_string()), &applied)
        })?;
        config.validate().map_err(|e| blame_env(e, &applied))?;
        Ok(config)
    }

    /// Cross-field checks; each error names its key.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate().map_err(at("engine"))?;
        self.engine.lanes.validate().map_err(at("engine.lanes"))?;
        self.risk.validate().map_err(at("risk"))?;
        if self.instruments.is_empty() {
            return Err(err("instruments", "at least one instrument is required"));
        }
        for (i, inst) in self.instruments.iter().enumerate() {
            for (key, v) in [
                ("maker_fee_bps", inst.maker_fee_bps),
                ("taker_fee_bps", inst.taker_fee_bps),
            ] {
                if let Some(v) = v.filter(|v| !(-100..=1000).contains(v)) {
                    return Err(err(
                        format!("instruments[{i}].{key}"),
                        format!("must be within -100..=1000 basis points, got {v}"),
                    ));
                }
            }
            if !self.venues.iter().any(|v| v.name == inst.venue) {
                return Err(err(
                    format!("instruments[{i}].venue"),
                    format!("no venue named {:?} in [[venues]]", inst.venue),
                ));
            }
        }
        self.registry()?;
        if self.strategy.name.is_empty() {
            return Err(err("strategy.name", "must name the strategy to run"));
        }
        for (name, section) in &self.strategy.sections {
            if !section.is_table() {
                return Err(err(
                    format!("strategy.{name}"),
                    "must be a table of the strategy's parameters ([strategy.NAME])",
                ));
            }
        }
        let p = &self.persistence;
        if p.batch_size == 0 {
            return Err(err("persistence.batch_size", "must be at least 1"));
        }
        if p.flush_interval_ms == 0 {
            return Err(err("persistence.flush_interval_ms", "must be at least 1"));
        }
        if !p.queue_slots.is_power_of_two() || p.queue_slots < 2 {
            return Err(err(
                "persistence.queue_slots",
                format!("must be a power of two ≥ 2, got {}", p.queue_slots),
            ));
        }
        self.stops.validate().map_err(at("stops"))?;
        let contracts: Vec<ContractKind> = self.instruments.iter().map(|i| i.contract).collect();
        self.breakers.validate(&contracts).map_err(at("breakers"))?;
        if self.kill_switch.file.as_os_str().is_empty() {
            return Err(err(
                "kill_switch.file",
                "must name a file whose appearance trips the kill switch",
            ));
        }
        if p.backend == Backend::Sqlite && p.sqlite_path.as_os_str().is_empty() {
            return Err(err("persistence.sqlite_path", "must not be empty"));
        }
        if p.postgres_url_env.is_empty() {
            return Err(err(
                "persistence.postgres_url_env",
                "must name an environment variable",
            ));
        }
        if self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(err(
                "metrics.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.metrics.listen
                ),
            ));
        }
        let var = &self.metrics.control_token_env;
        if var.is_empty()
            || !var
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(err(
                "metrics.control_token_env",
                format!("{var:?} is not an environment variable name (A-Z, 0-9 and _)"),
            ));
        }
        if self.report.stats_period_s == 0 {
            return Err(err("report.stats_period_s", "must be at least 1"));
        }
        if self.metrics.status_interval_ms == 0 {
            return Err(err("metrics.status_interval_ms", "must be at least 1"));
        }
        self.execution.validate().map_err(at("execution"))?;
        self.feed.validate().map_err(at("feed"))?;
        self.sim.validate().map_err(at("sim"))?;
        let mut names = std::collections::BTreeSet::new();
        for (i, v) in self.venues.iter().enumerate() {
            if !names.insert(&v.name) {
                return Err(err(
                    format!("venues[{i}].name"),
                    format!("{:?} is defined twice", v.name),
                ));
            }
            for (key, url, schemes) in [
                ("ws_url", &v.ws_url, ["ws://", "wss://"]),
                ("rest_url", &v.rest_url, ["http://", "https://"]),
            ] {
                if !schemes.iter().any(|s| url.starts_with(s)) {
                    return Err(err(
                        format!("venues[{i}].{key}"),
                        format!("{url:?} must start with {} or {}", schemes[0], schemes[1]),
                    ));
                }
            }
            if v.kind == VenueKind::Sim {
                for (key, url) in [("ws_url", &v.ws_url), ("rest_url", &v.rest_url)] {
                    if sim_listen_addr(url).is_none() {
                        return Err(err(
                            format!("venues[{i}].{key}"),
                            format!("{url:?}: the sim venue listens on loopback, e.g. ws://127.0.0.1:18080"),
                        ));
                    }
                }
            }
            let is_live = self.mode == Mode::Live
                && self.live_venue().is_some_and(|live| live.name == v.name);
            if is_live && (v.api_key_env.is_none() || v.api_secret_env.is_none()) {
                return Err(err(
                    format!("venues[{i}].api_key_env"),
                    "live mode needs api_key_env and api_secret_env naming the environment variables with the credentials",
                ));
            }
        }
        if self.mode == Mode::Live {
            self.validate_live()?;
        }
        Ok(())
    }

    /// The venue live orders go to: `live.venue`, or the only Binance venue.
    #[must_use]
    pub fn live_venue(&self) -> Option<&VenueConfig> {
        let binance =
            |v: &&VenueConfig| matches!(v.kind, VenueKind::Binance | VenueKind::BinanceUsdm);
        if self.live.venue.is_empty() {
            let mut candidates = self.venues.iter().filter(binance);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        } else {
            self.venues
                .iter()
                .filter(binance)
                .find(|v| v.name == self.live.venue)
        }
    }

    fn validate_live(&self) -> Result<(), ConfigError> {
        let l = &self.live;
        let Some(venue) = self.live_venue() else {
            let reason = if l.venue.is_empty() {
                "live mode needs exactly one venue of kind binance or binance-usdm, or live.venue naming one".to_owned()
            } else {
                format!("{:?} is not a [[venues]] entry of kind binance or binance-usdm (live execution supports Binance spot and USD-M)", l.venue)
            };
            return Err(err("live.venue", reason));
        };
        l.validate(&venue.rest_url, &venue.ws_url)
            .map_err(at("live"))
    }

    /// The engine as this configuration makes it, for `run` and backtests alike: the loop and
    /// lane settings, pre-trade risk, per-position stops publishing their levels to `guard`,
    /// the circuit breakers and the kill switch's flatten. The caller adds what differs by use
    /// (outbox, record kinds, cancel on stop, latency histograms).
    #[must_use]
    pub fn engine<S, G, C>(
        &self,
        lanes: std::sync::Arc<tradeloop_engine::lane::Lanes>,
        registry: InstrumentRegistry,
        strategy: S,
        gateway: G,
        clock: C,
        guard: std::sync::Arc<tradeloop_engine::stops::StopGuard>,
    ) -> tradeloop_engine::event_loop::Engine<S, tradeloop_risk::PreTradeRisk, G, C>
    where
        S: tradeloop_engine::api::Strategy,
        G: tradeloop_engine::api::Gateway,
        C: tradeloop_engine::clock::Clock,
    {
        tradeloop_engine::event_loop::Engine::new(
            self.engine,
            lanes,
            registry,
            strategy,
            tradeloop_risk::PreTradeRisk::new(self.risk.clone()),
            gateway,
            clock,
        )
        .with_kill_flatten(self.kill_switch.flatten)
        .with_stops(self.stops.params(), guard)
        .with_breakers(self.breakers.settings())
    }

    /// The simulated venue's fees beyond `[execution]`'s two rates: each instrument's own
    /// rates and the volume tiers.
    #[must_use]
    pub fn fee_schedule(&self) -> tradeloop_adapters::sim::matching::FeeSchedule {
        tradeloop_adapters::sim::matching::FeeSchedule {
            per_instrument: self
                .instruments
                .iter()
                .map(|i| match (i.maker_fee_bps, i.taker_fee_bps) {
                    (None, None) => None,
                    (m, t) => Some((
                        m.unwrap_or(self.execution.maker_fee_bps),
                        t.unwrap_or(self.execution.taker_fee_bps),
                    )),
                })
                .collect(),
            tiers: self.execution.fee_tiers(),
        }
    }

    /// Settings of the simulated venue (paper trading, backtests) for `instruments` instruments.
    #[must_use]
    pub fn exec_config(&self, instruments: usize) -> tradeloop_adapters::sim::matching::ExecConfig {
        self.execution.exec_config(
            self.engine.order_slots,
            instruments,
            self.engine.book_levels,
        )
    }

    /// Interns the configured instruments.
    ///
    /// # Errors
    /// [`ConfigError`] naming the instrument entry.
    pub fn registry(&self) -> Result<InstrumentRegistry, ConfigError> {
        let mut r = InstrumentRegistry::new();
        for (i, inst) in self.instruments.iter().enumerate() {
            r.add(
                &inst.venue,
                &inst.symbol,
                inst.tick_size,
                inst.lot_size,
                inst.contract,
            )
            .map_err(|e| err(format!("instruments[{i}]"), e.to_string()))?;
        }
        Ok(r)
    }

    /// The merged configuration as TOML with secrets redacted: credentials appear only as the
    /// names of their environment variables and whether those are set; a PostgreSQL URL's
    /// password is never printed.
    ///
    /// # Errors
    /// If serialization fails (a bug).
    pub fn to_redacted_toml(
        &self,
        env: &BTreeMap<String, String>,
    ) -> Result<String, toml::ser::Error> {
        let mut out = toml::to_string_pretty(self)?;
        let mut notes = String::new();
        for v in &self.venues {
            for var in [&v.api_key_env, &v.api_secret_env].into_iter().flatten() {
                let state = if env.contains_key(var) {
                    "set (value redacted)"
                } else {
                    "not set"
                };
                notes.push_str(&format!("# venue {}: ${var} is {state}\n", v.name));
            }
        }
        let pg = &self.persistence.postgres_url_env;
        let state = env.get(pg).map_or_else(
            || "not set".to_owned(),
            |url| format!("set: {}", redact_url(url)),
        );
        notes.push_str(&format!("# persistence: ${pg} is {state}\n"));
        let token = &self.metrics.control_token_env;
        let state = if env.get(token).is_some_and(|t| !t.is_empty()) {
            "set (value redacted): the control endpoints are on"
        } else {
            "not set: the control endpoints are off"
        };
        notes.push_str(&format!("# metrics: ${token} is {state}\n"));
        out.push('\n');
        out.push_str(&notes);
        Ok(out)
    }
}

/// The loopback `host:port` a sim venue URL points at (`None` if not loopback with a port).
#[must_use]
pub fn sim_listen_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    let addr: SocketAddr = hostport.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

/// Replaces the password of a `scheme://user:password@host/...` URL with `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "***".to_owned();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    let creds = &rest[..at];
    let user = creds.split(':').next().unwrap_or("");
    format!("{}{}:***{}", &url[..scheme_end], user, &rest[at..])
}

/// Applies `TRADELOOP__A__B__C=value` overrides to the parsed file: the path is lower-cased,
/// numeric segments index arrays (`TRADELOOP__INSTRUMENTS__0__TICK_SIZE`), and the value is read
/// as a TOML literal when it is one (`42`, `true`, `"0.01"`, `[1, 2]`), else as a string.
/// Applies the `TRADELOOP__…` overrides; returns each overridden key (as
/// `serde_path_to_error` spells it, `venues[0].ws_url`) with its variable.
fn apply_env_overrides(
    root: &mut toml::Value,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut applied = Vec::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(err(
                name.clone(),
                "empty path segment (use single names joined by __)",
            ));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut node = &mut *root;
        let mut key = String::new();
        for (depth, seg) in segments.iter().enumerate() {
            let last = depth + 1 == segments.len();
            let dotted = segments[..=depth].join(".");
            if matches!(node, toml::Value::Array(_)) {
                key.push_str(&format!("[{seg}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(seg);
            }
            node = match node {
                toml::Value::Table(t) => {
                    if last {
                        t.insert(seg.clone(), value.clone());
                        break;
                    }
                    t.entry(seg.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                }
                toml::Value::Array(a) => {
                    let idx: usize = seg.parse().map_err(|_| {
                        err(
                            name.clone(),
                            format!("`{dotted}`: {seg:?} is not an array index"),
                        )
                    })?;
                    let len = a.len();
                    let slot = a.get_mut(idx).ok_or_else(|| {
                        err(
                            name.clone(),
                            format!("`{dotted}`: index {idx} out of range (len {len})"),
                        )
                    })?;
                    if last {
                        *slot = value.clone();
                        break;
                    }
                    slot
                }
                _ => {
                    return Err(err(
                        name.clone(),
                        format!("`{}` is not a table", segments[..depth].join(".")),
                    ))
                }
            };
        }
        applied.push((key, name.clone()));
    }
    Ok(applied)
}

/// Names the environment variable in `e` when it set the key (or a table above it) the
/// error is about, so the user looks there and not in the file.
fn blame_env(mut e: ConfigError, applied: &[(String, String)]) -> ConfigError {
    let hit = applied.iter().find(|(key, _)| {
        e.key == *key
            || e.key
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    });
    if let Some((_, var)) = hit {
        e.key = format!("{} (set by the environment variable {var})", e.key);
    }
    e
}

/// The process environment as a sorted map (secrets are read from here only).
#[must_use]
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::breakers::{BreakerAction, BreakerSettings};
    use tradeloop_engine::fixed::Money;

    const DEFAULT: &str = include_str!("../config.toml");

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_err(text: &str, e: &[(&str, &str)]) -> ConfigError {
        Config::from_toml(text, &env(e)).expect_err("must fail")
    }

    #[test]
    fn every_venue_kind_is_named_as_config_spells_it() {
        for kind in VenueKind::ALL {
            let spelled = toml::Value::try_from(kind).unwrap();
            assert_eq!(spelled.as_str(), Some(kind.name()), "{kind:?}");
            assert_eq!(VenueKind::from_name(kind.name()), Some(kind));
            assert_eq!(
                kind.public_endpoints().is_none(),
                kind == VenueKind::Sim,
                "{kind:?}: only the simulator has no public endpoints"
            );
        }
        assert_eq!(VenueKind::from_name("binance_usdm"), None);
    }

    #[test]
    fn shipped_config_is_valid_and_offline() {
        let c = Config::from_toml(DEFAULT, &env(&[])).unwrap();
        assert_eq!(c.mode, Mode::Paper);
        assert_eq!(c.persistence.backend, Backend::Sqlite);
        assert!(
            c.venues.iter().all(|v| v.kind == VenueKind::Sim),
            "default venue is the simulator"
        );
        assert!(
            c.venues
                .iter()
                .all(|v| v.ws_url.starts_with("ws://127.0.0.1")),
            "loopback only"
        );
    }

    #[test]
    fn errors_name_the_key_and_reason() {
        // (label, file text, environment, expected key prefix, expected reason fragment)
        type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (
                "TC0 unknown key",
                DEFAULT.replace("[engine.lanes]", "[engine.lanes]\nnormal_slot = 5"),
                &[],
                "engine.lanes",
                "unknown field `normal_slot`",
            ),
            (
                "TC1 not a power of two",
                DEFAULT.replace("normal_slots = 65536", "normal_slots = 1000"),
                &[],
                "engine.lanes.normal_slots",
                "power of two",
            ),
            (
                "TC1b book window not a power of two",
                DEFAULT.replace("book_window = 32768", "book_window = 5000"),
                &[],
                "engine.book_window",
                "power of two in 64..=1048576",
            ),
            (
                "TC2 wrong type",
                DEFAULT.replace("high_budget = 256", "high_budget = \"lots\""),
                &[],
                "engine.high_budget",
                "invalid type",
            ),
            (
                "TC3 float price refused",
                DEFAULT.replace("tick_size = \"0.01\"", "tick_size = 0.01"),
                &[],
                "instruments[0].tick_size",
                "float",
            ),
            (
                "TC4 env override wins and is checked",
                DEFAULT.to_owned(),
                &[("TRADELOOP__RISK__PRICE_BAND_BPS", "0")],
                "risk.price_band_bps",
                "at least 1",
            ),
            (
                "TC4b a bad value from the environment names the variable",
                DEFAULT.to_owned(),
                &[("TRADELOOP__RISK__MAX_POSITION", "abc")],
                "risk.max_position (set by the environment variable TRADELOOP__RISK__MAX_POSITION)",
                "",
            ),
            (
                "TC4c an array element from the environment",
                DEFAULT.to_owned(),
                &[("TRADELOOP__VENUES__0__WS_URL", "\"ftp://x\"")],
                "venues[0].ws_url (set by the environment variable TRADELOOP__VENUES__0__WS_URL)",
                "must start with ws://",
            ),
            (
                "TC5 env override of an unknown key",
                DEFAULT.to_owned(),
                &[("TRADELOOP__ENGINE__TYPO", "1")],
                "engine.typo (set by the environment variable TRADELOOP__ENGINE__TYPO)",
                "unknown field `typo`",
            ),
            (
                "TC6 env array index out of range",
                DEFAULT.to_owned(),
                &[("TRADELOOP__INSTRUMENTS__9__SYMBOL", "X")],
                "TRADELOOP__INSTRUMENTS__9__SYMBOL",
                "out of range",
            ),
            (
                "TC7 instrument on unknown venue",
                DEFAULT.replacen("venue = \"sim\"", "venue = \"nowhere\"", 1),
                &[],
                "instruments[0].venue",
                "no venue named",
            ),
            (
                "TC8 bad metrics address",
                DEFAULT.replace("listen = \"127.0.0.1:9464\"", "listen = \"localhost\""),
                &[],
                "metrics.listen",
                "not an address",
            ),
            (
                "TC8c fee tiers out of order",
                DEFAULT.replace(
                    "[sim]",
                    "[[execution.fee_tiers]]\nmin_volume = \"1000\"\nmaker_fee_bps = 8\ntaker_fee_bps = 9\n\n[[execution.fee_tiers]]\nmin_volume = \"500\"\nmaker_fee_bps = 6\ntaker_fee_bps = 7\n\n[sim]",
                ),
                &[],
                "execution.fee_tiers[1].min_volume",
                "ascending",
            ),
            (
                "TC8e a queue model with a bad exponent",
                DEFAULT.replace("seed = 7\n", "seed = 7\nqueue_model = { power = -1.0 }\n"),
                &[],
                "execution.queue_model.power",
                "positive exponent",
            ),
            (
                "TC8g a latency file that does not exist",
                DEFAULT.replace(
                    "seed = 7\n",
                    "seed = 7\nlatency_model = { file = \"/nonexistent/latency.csv\" }\n",
                ),
                &[],
                "execution.latency_model.file",
                "cannot read /nonexistent/latency.csv",
            ),
            (
                "TC8h a latency multiple out of range",
                DEFAULT.replace("seed = 7\n", "seed = 7\nlatency_model = { feed = { multiple = 0.0 } }\n"),
                &[],
                "execution.latency_model.feed.multiple",
                "(0, 1000]",
            ),
            (
                "TC8f an unknown queue model",
                DEFAULT.replace("seed = 7\n", "seed = 7\nqueue_model = \"optimistic\"\n"),
                &[],
                "execution.queue_model",
                "unknown variant",
            ),
            (
                "TC8d an instrument's own fee out of range",
                DEFAULT.replacen(
                    "contract = { kind = \"spot\" }",
                    "contract = { kind = \"spot\" }\ntaker_fee_bps = 5000",
                    1,
                ),
                &[],
                "instruments[0].taker_fee_bps",
                "-100..=1000",
            ),
            (
                "TC8b control token variable not a variable name",
                DEFAULT.replace(
                    "control_token_env = \"TRADELOOP_CONTROL_TOKEN\"",
                    "control_token_env = \"my token\"",
                ),
                &[],
                "metrics.control_token_env",
                "not an environment variable name",
            ),
            (
                "TC9 strategy section not a table",
                DEFAULT.replace("[strategy.ma_cross]", "ma_cross = 3\n[strategy.other]"),
                &[],
                "strategy.ma_cross",
                "must be a table",
            ),
            (
                "TC10 secret in file refused",
                DEFAULT.replace(
                    "rest_url = \"http://127.0.0.1:18081\"",
                    "rest_url = \"http://127.0.0.1:18081\"\napi_secret = \"hunter2\"",
                ),
                &[],
                "venues[0]",
                "unknown field `api_secret`",
            ),
            (
                "TC11 syntax error",
                "engine = [".to_owned(),
                &[],
                "(file",
                "",
            ),
            (
                "TC12 unknown idle strategy",
                DEFAULT.replace("idle = \"spin_yield\"", "idle = \"nap\""),
                &[],
                "engine.idle",
                "unknown variant `nap`",
            ),
            (
                "TC13 live needs credentials env names",
                DEFAULT
                    .replace("mode = \"paper\"", "mode = \"live\"")
                    .replace("kind = \"sim\"", "kind = \"binance\""),
                &[],
                "venues[0].api_key_env",
                "live mode needs",
            ),
            (
                "TC13b live needs a Binance venue",
                DEFAULT.replace("mode = \"paper\"", "mode = \"live\""),
                &[],
                "live.venue",
                "exactly one venue of kind binance",
            ),
            (
                "TC13c live recvWindow within Binance's maximum",
                DEFAULT
                    .replace("mode = \"paper\"", "mode = \"live\"")
                    .replace("kind = \"sim\"", "kind = \"binance\""),
                &[
                    ("TRADELOOP__VENUES__0__API_KEY_ENV", "\"K\""),
                    ("TRADELOOP__VENUES__0__API_SECRET_ENV", "\"S\""),
                    ("TRADELOOP__LIVE__RECV_WINDOW_MS", "70000"),
                ],
                "live.recv_window_ms",
                "60000",
            ),
            (
                "TC13d live client id prefix characters",
                DEFAULT
                    .replace("mode = \"paper\"", "mode = \"live\"")
                    .replace("kind = \"sim\"", "kind = \"binance\""),
                &[
                    ("TRADELOOP__VENUES__0__API_KEY_ENV", "\"K\""),
                    ("TRADELOOP__VENUES__0__API_SECRET_ENV", "\"S\""),
                    ("TRADELOOP__LIVE__CLIENT_ID_PREFIX", "\"tl bot\""),
                ],
                "live.client_id_prefix",
                "1 to 16",
            ),
            (
                "TC13e live venue must be Binance",
                DEFAULT
                    .replace("mode = \"paper\"", "mode = \"live\"")
                    .replace("kind = \"sim\"", "kind = \"kraken\""),
                &[("TRADELOOP__LIVE__VENUE", "\"sim\"")],
                "live.venue",
                "Binance spot and USD-M",
            ),
            (
                "TC14 sim venue must be loopback",
                DEFAULT.replace("ws://127.0.0.1:18080", "ws://10.0.0.5:18080"),
                &[],
                "venues[0].ws_url",
                "loopback",
            ),
            (
                "TC15 fee out of range",
                DEFAULT.to_owned(),
                &[("TRADELOOP__EXECUTION__TAKER_FEE_BPS", "5000")],
                "execution.taker_fee_bps",
                "within",
            ),
            (
                "TC15b market-data latency above response latency",
                DEFAULT.to_owned(),
                &[("TRADELOOP__EXECUTION__MD_LATENCY_US", "500")],
                "execution.md_latency_us",
                "exceeds response_latency_us",
            ),
            (
                "TC16 backoff max below base",
                DEFAULT.to_owned(),
                &[("TRADELOOP__FEED__BACKOFF_MAX_MS", "10")],
                "feed.backoff_max_ms",
                "at least backoff_base_ms",
            ),
            (
                "TC16b bybit depth not offered by the venue",
                DEFAULT.to_owned(),
                &[("TRADELOOP__FEED__BYBIT_DEPTH", "25")],
                "feed.bybit_depth",
                "not a Bybit order book depth",
            ),
            (
                "TC16d kraken depth not offered by the venue",
                DEFAULT.to_owned(),
                &[("TRADELOOP__FEED__KRAKEN_DEPTH", "50")],
                "feed.kraken_depth",
                "not a Kraken book depth",
            ),
            (
                "TC16c sim protocol misspelt",
                DEFAULT.to_owned(),
                &[("TRADELOOP__SIM__PROTOCOL", "\"ftx\"")],
                "sim.protocol",
                "unknown variant `ftx`",
            ),
            (
                "TC17 negative replay speed",
                DEFAULT.to_owned(),
                &[("TRADELOOP__SIM__REPLAY_SPEED", "-1.0")],
                "sim.replay_speed",
                "positive factor",
            ),
            (
                "TC18 missing replay file",
                DEFAULT.to_owned(),
                &[("TRADELOOP__SIM__REPLAY_FILES", "[\"/nonexistent/file.gz\"]")],
                "sim.replay_files[0]",
                "not a readable file",
            ),
            (
                "TC19 breaker action misspelt",
                DEFAULT.to_owned(),
                &[("TRADELOOP__BREAKERS__REJECT_STORM__ACTION", "\"stop\"")],
                "breakers.reject_storm.action",
                "unknown variant `stop`",
            ),
            (
                "TC20 drawdown limit not positive",
                DEFAULT.to_owned(),
                &[("TRADELOOP__BREAKERS__DRAWDOWN__MAX", "\"0\"")],
                "breakers.drawdown.max",
                "positive amount",
            ),
            (
                "TC21 half-open needs a good check",
                DEFAULT.to_owned(),
                &[("TRADELOOP__BREAKERS__FEED_DOWN__HALF_OPEN_CHECKS", "0")],
                "breakers.feed_down.half_open_checks",
                "at least 1",
            ),
            (
                "TC22 reject window empty",
                DEFAULT.to_owned(),
                &[("TRADELOOP__BREAKERS__REJECT_STORM__MAX_REJECTS", "0")],
                "breakers.reject_storm.max_rejects",
                "must be in 1..=",
            ),
            (
                "TC23 PnL breaker over mixed settlement currencies",
                DEFAULT.replacen(
                    "contract = { kind = \"spot\" }",
                    "contract = { kind = \"inverse\", multiplier = \"100\" }",
                    1,
                ),
                &[],
                "breakers.drawdown",
                "settlement currency",
            ),
        ];
        for (label, text, e, key, reason) in cases {
            let got = load_err(text, e);
            assert!(
                got.key.starts_with(key),
                "{label}: key {:?} (reason {:?})",
                got.key,
                got.reason
            );
            assert!(
                got.reason.contains(reason),
                "{label}: reason {:?}",
                got.reason
            );
        }
    }

    #[test]
    fn breakers_section_converts_units_and_may_be_left_out() {
        let c = Config::from_toml(DEFAULT, &env(&[])).unwrap();
        let b = c.breakers.settings();
        assert_eq!(b.check_interval_ns, 100_000_000);
        let (max, trip) = b.drawdown.unwrap();
        assert_eq!(max, Money::from_fixed_raw(250 * 100_000_000));
        assert_eq!(trip.action, BreakerAction::Flatten);
        assert_eq!(trip.cooldown_ns, 60_000_000_000);
        assert_eq!(b.reject_storm.unwrap().0, (20, 10_000_000_000));
        assert_eq!(b.lane_latency.unwrap().0, (2_000_000, 100));
        // Without the section every breaker is off.
        let i = DEFAULT.find("[breakers]").unwrap();
        let j = DEFAULT.find("[persistence]").unwrap();
        let without = format!("{}{}", &DEFAULT[..i], &DEFAULT[j..]);
        let c = Config::from_toml(&without, &env(&[])).unwrap();
        assert_eq!(c.breakers.settings(), BreakerSettings::default());
    }

    #[test]
    fn env_overrides_apply_typed_values() {
        let c = Config::from_toml(
            DEFAULT,
            &env(&[
                ("TRADELOOP__ENGINE__LANES__NORMAL_SLOTS", "1024"),
                ("TRADELOOP__ENGINE__IDLE", "park"),
                ("TRADELOOP__RISK__MAX_POSITION", "\"2.5\""),
                ("TRADELOOP__INSTRUMENTS__0__TICK_SIZE", "\"0.1\""),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.engine.lanes.normal_slots, 1024);
        assert_eq!(
            c.engine.idle,
            tradeloop_engine::event_loop::IdleStrategy::Park
        );
        assert_eq!(c.risk.max_position, Qty::parse("2.5").unwrap());
        assert_eq!(c.instruments[0].tick_size, Price::parse("0.1").unwrap());
    }

    #[test]
    fn printed_config_redacts_secrets_and_round_trips() {
        let text = DEFAULT.replace("rest_url = \"http://127.0.0.1:18081\"", "rest_url = \"http://127.0.0.1:18081\"\napi_key_env = \"SIM_KEY\"\napi_secret_env = \"SIM_SECRET\"");
        let e = env(&[
            ("SIM_KEY", "AKIAVERYSECRETKEY"),
            ("SIM_SECRET", "s3cr3t-value"),
            (
                "TRADELOOP_PG_URL",
                "postgres://trader:pa55word@127.0.0.1:5432/tl",
            ),
            ("TRADELOOP_CONTROL_TOKEN", "control-token-0123456789"),
        ]);
        let c = Config::from_toml(&text, &e).unwrap();
        let printed = c.to_redacted_toml(&e).unwrap();
        assert!(
            printed.contains("$TRADELOOP_CONTROL_TOKEN is set (value redacted)"),
            "{printed}"
        );
        for secret in [
            "AKIAVERYSECRETKEY",
            "s3cr3t-value",
            "pa55word",
            "control-token-0123456789",
        ] {
            assert!(
                !printed.contains(secret),
                "secret {secret} leaked:\n{printed}"
            );
        }
        assert!(
            printed.contains("$SIM_KEY is set (value redacted)"),
            "{printed}"
        );
        assert!(
            printed.contains("postgres://trader:***@127.0.0.1:5432/tl"),
            "{printed}"
        );
        let again = Config::from_toml(&printed, &env(&[])).unwrap();
        assert_eq!(again, c, "printed config parses back to the same config");
    }

    #[test]
    fn url_redaction_table() {
        let cases = [
            ("TC0", "postgres://u:p@h/db", "postgres://u:***@h/db"),
            ("TC1", "postgres://h/db", "postgres://h/db"),
            ("TC2", "garbage", "***"),
        ];
        for (label, input, want) in cases {
            assert_eq!(redact_url(input), want, "{label}");
        }
    }
}
