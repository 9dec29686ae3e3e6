//! `tradeloop record`: capture a venue's raw frames for replay (see `adapters::record`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tradeloop_adapters::feed::VenueFeed;
use tradeloop_adapters::record::{record, RecordReport, RecordSettings};
use tradeloop_adapters::sim::server::{SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::config::{Config, VenueKind};
use crate::venues::{with_feed, Wire, WithFeed};

/// Records with whichever feed the venue needs.
struct Record<'a> {
    settings: &'a RecordSettings,
    stop: &'a AtomicBool,
    deadline: Option<Instant>,
}

impl WithFeed for Record<'_> {
    type Out = std::io::Result<RecordReport>;
    fn with<F: VenueFeed>(self, feed: F) -> Self::Out {
        record(
            self.settings,
            &feed,
            &LiveClock::new(),
            self.stop,
            self.deadline,
        )
    }
}

/// Runs a recording.
///
/// # Errors
/// Unknown venue, no symbols, or an output directory that cannot be written.
pub fn run(
    config: &Config,
    venue: &str,
    symbols: &[String],
    out: PathBuf,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    tradeloop_adapters::install_tls_provider();
    anyhow::ensure!(!symbols.is_empty(), "--symbols needs at least one symbol");
    let configured = config.venues.iter().find(|v| v.name == venue);
    let kind = match configured {
        Some(v) => v.kind,
        None => VenueKind::from_name(venue).with_context(|| {
            format!(
                "--venue {venue:?}: not a configured venue and not one of {}",
                VenueKind::ALL.map(VenueKind::name).join(", ")
            )
        })?,
    };
    let wire = Wire::of(kind, config.sim.protocol, &config.feed);
    let mut sim = None;
    let (ws_url, rest_url) = match (configured, kind.public_endpoints()) {
        (Some(v), _) if kind != VenueKind::Sim => (v.ws_url.clone(), v.rest_url.clone()),
        (None, Some((ws, rest))) => (ws.to_owned(), rest.to_owned()),
        _ => {
            // kind == Sim: a private simulated venue on free loopback ports, with the configured market.
            let registry = config.registry()?;
            let symbols = symbols
                .iter()
                .map(|s| {
                    let known = registry.iter().find(|i| i.symbol.eq_ignore_ascii_case(s));
                    SimSymbolConfig {
                        symbol: s.to_ascii_uppercase(),
                        start_price: config
                            .sim
                            .prices
                            .get(&s.to_ascii_uppercase())
                            .copied()
                            .unwrap_or(Price::from_units(100)),
                        tick_size: known.map_or(Price(1_000_000), |i| i.tick_size),
                        lot_size: known.map_or(Qty(1_000), |i| i.lot_size),
                    }
                })
                .collect();
            let v = SimVenue::start(SimConfig {
                ws_addr: "127.0.0.1:0".parse().expect("constant"),
                rest_addr: "127.0.0.1:0".parse().expect("constant"),
                seed: config.sim.seed,
                steps_per_second: config.sim.steps_per_second,
                depth_interval: Duration::from_millis(config.sim.depth_interval_ms),
                depth_levels: config.sim.depth_levels,
                ping_interval: Duration::from_millis(config.sim.ping_interval_ms),
                protocol: wire.sim_protocol(&config.feed),
                symbols,
                replay: None,
            })
            .context("cannot start the simulated venue")?;
            let urls = (v.ws_url(), v.rest_url());
            sim = Some(v);
            urls
        }
    };
    let mut map = SymbolMap::default();
    for (n, s) in symbols.iter().enumerate() {
        map.insert(
            s,
            InstrumentIndex(u16::try_from(n).context("too many symbols")?),
        );
    }
    let names: Vec<&str> = map.iter().map(|(s, _)| s).collect();
    eprintln!(
        "recording {} from {ws_url} into {}",
        names.join(","),
        out.display()
    );
    let settings = RecordSettings {
        ws_url,
        rest_url,
        out_dir: out.clone(),
        prefix: venue.to_owned(),
        idle_timeout: Duration::from_millis(config.feed.idle_timeout_ms),
        backoff_base: Duration::from_millis(config.feed.backoff_base_ms),
        backoff_max: Duration::from_millis(config.feed.backoff_max_ms),
    };
    let recording = Record {
        settings: &settings,
        stop,
        deadline: duration.map(|d| Instant::now() + d),
    };
    let registry = config.registry()?;
    let report = with_feed(wire, map, &registry, &config.feed, recording)
        .with_context(|| format!("cannot record into {}", out.display()))?;
    if let Some(v) = sim {
        v.stop();
    }
    eprintln!(
        "recorded {} frames and {} snapshots over {} connection(s):",
        report.frames, report.snapshots, report.connections
    );
    for f in &report.files {
        eprintln!("  {}", f.display());
    }
    Ok(())
}
