//! `flood`: the simulated venue streams Binance frames over a real loopback WebSocket at rising
//! step rates; the real feed client (tokio-tungstenite, parser, book sync) pushes them into the
//! NORMAL lane and the engine handles them, while CRITICAL stops arrive every millisecond.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::runner::{spawn_feed, FeedSettings};
use tradeloop_adapters::sim::server::{SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::event::FeedState;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::lane::Lane;

use super::{check_priority, load_registry, priority_cells, FloodArgs, Rig};

/// One rate's results.
#[derive(Serialize, Debug)]
pub struct FloodStep {
    /// Venue steps per second asked for (a step is a book ticker and often a trade).
    pub target_steps_per_second: u64,
    /// Measured window, after the feed went live.
    pub seconds: f64,
    /// Frames the venue wrote to the WebSocket in the window.
    pub venue_frames_sent: u64,
    /// Frames the feed received in the window.
    pub feed_frames: u64,
    /// `feed_frames` per second.
    pub feed_frames_per_second: u64,
    /// Book sequence gaps (the venue drops frames for a client that falls behind).
    pub feed_gaps: u64,
    pub feed_refused: u64,
    pub feed_reconnects: u64,
    /// NORMAL lane over the whole step.
    pub normal_pushed: u64,
    pub normal_dropped: u64,
    /// Trades the strategy saw.
    pub trades_handled: u64,
    /// CRITICAL, HIGH and fills while NORMAL was loaded.
    #[serde(flatten)]
    pub priority: super::Priority,
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?)
}

/// Runs one rate for `seconds` after the feed is live.
///
/// # Errors
/// If the venue or the feed cannot start, or the feed does not go live within 10 s.
pub fn step(
    rate: u64,
    seconds: f64,
    normal_slots: usize,
    engine_core: Option<usize>,
) -> anyhow::Result<FloodStep> {
    if engine_core.is_some() {
        // Every thread started from here on (venue, feed, CRITICAL producer) inherits core 0;
        // the engine thread moves itself to its own core.
        tradeloop_engine::event_loop::pin_current_thread(0)
            .map_err(|e| anyhow::anyhow!("cannot pin the test to core 0: {e}"))?;
    }
    let venue = SimVenue::start(SimConfig {
        ws_addr: free_addr()?,
        rest_addr: free_addr()?,
        seed: 11,
        steps_per_second: u32::try_from(rate).context("rate above u32")?,
        depth_interval: Duration::from_millis(100),
        depth_levels: 50,
        ping_interval: Duration::from_secs(10),
        protocol: tradeloop_adapters::sim::market::WireProtocol::Binance,
        symbols: vec![SimSymbolConfig {
            symbol: "BTCUSDT".into(),
            start_price: Price::from_units(60_000),
            tick_size: Price::parse("0.01")?,
            lot_size: Qty::parse("0.00001")?,
        }],
        replay: None,
    })
    .context("cannot start the sim venue")?;
    let registry = load_registry("sim")?;
    let symbols = SymbolMap::for_venue(&registry, "sim");
    let mut rig = Rig::start(normal_slots, registry, engine_core)?;
    let settings = FeedSettings {
        feed_id: 0,
        name: "sim".into(),
        ws_url: venue.ws_url(),
        rest_url: venue.rest_url(),
        idle_timeout: Duration::from_secs(10),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        max_attempts: 20,
        down_critical_after: Duration::from_secs(30),
        stop_guard: None,
    };
    let feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 20), Market::Spot, 1000);
    let handle = spawn_feed(settings, feed, Arc::clone(&rig.lanes), rig.clock.clone())
        .context("cannot start the feed")?;
    let live_deadline = Instant::now() + Duration::from_secs(10);
    while handle.shared.state() != FeedState::Live {
        anyhow::ensure!(
            Instant::now() < live_deadline,
            "the feed did not go live within 10 s at {rate} steps/s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rig.start_critical()?;
    let r = Ordering::Relaxed;
    let shared = Arc::clone(&handle.shared);
    let (frames0, sent0, gaps0) = (
        shared.frames.load(r),
        venue.frames_sent(),
        shared.gaps.load(r),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let elapsed = started.elapsed().as_secs_f64();
    let (frames1, sent1, gaps1) = (
        shared.frames.load(r),
        venue.frames_sent(),
        shared.gaps.load(r),
    );
    let stats = handle.stop();
    venue.stop();
    let (trades, lanes) = (Arc::clone(&rig.trades), Arc::clone(&rig.lanes));
    let priority = rig.finish()?;
    let n = lanes.stats(Lane::Normal);
    let feed_frames = frames1 - frames0;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rate for the report"
    )]
    let feed_frames_per_second = (feed_frames as f64 / elapsed) as u64;
    Ok(FloodStep {
        target_steps_per_second: rate,
        seconds: elapsed,
        venue_frames_sent: sent1 - sent0,
        feed_frames,
        feed_frames_per_second,
        feed_gaps: gaps1 - gaps0,
        feed_refused: stats.errors_total(),
        feed_reconnects: shared.reconnects.load(r),
        normal_pushed: n.pushed,
        normal_dropped: n.dropped,
        trades_handled: trades.load(r),
        priority,
    })
}

/// Runs every rate, prints the markdown table, writes the JSON.
///
/// # Errors
/// On bad arguments, a step that cannot run, or CRITICAL/HIGH losses.
pub fn run(args: &FloodArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 10.0,
        "--seconds must be in (0, 10]"
    );
    anyhow::ensure!(
        args.normal_slots.is_power_of_two(),
        "--normal-slots must be a power of two"
    );
    let engine_core = if args.isolate_engine {
        let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
        anyhow::ensure!(
            cores >= 2,
            "--isolate-engine needs at least 2 cores, found {cores}"
        );
        Some(cores - 1)
    } else {
        None
    };
    println!(
        "| steps/s | venue frames/s | feed frames/s | gaps | NORMAL dropped | {} |",
        super::PRIORITY_HEADER
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut steps = Vec::new();
    for &rate in &args.rates {
        let s = step(rate, args.seconds, args.normal_slots, engine_core)
            .with_context(|| format!("flood step at {rate} steps/s"))?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rate for the report"
        )]
        let venue_rate = (s.venue_frames_sent as f64 / s.seconds) as u64;
        println!(
            "| {} | {venue_rate} | {} | {} | {} | {} |",
            s.target_steps_per_second,
            s.feed_frames_per_second,
            s.feed_gaps,
            s.normal_dropped,
            priority_cells(&s.priority)
        );
        check_priority(&format!("{rate} steps/s"), &s.priority, &s)?;
        steps.push(s);
    }
    let sustained = steps
        .iter()
        .filter(|s| s.normal_dropped == 0 && s.feed_gaps == 0)
        .map(|s| s.feed_frames_per_second)
        .max();
    match sustained {
        Some(r) => println!("\nsustained without NORMAL drops or gaps: {r} frames/s"),
        None => println!("\nevery rate dropped NORMAL events or saw gaps"),
    }
    super::write_json(
        args.json_out.as_deref(),
        &serde_json::json!({
            "scenario": "flood",
            "sustained_frames_per_second": sustained,
            "steps": steps,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short, slow flood over the real WebSocket: frames arrive, books stay in sequence,
    /// every CRITICAL stop is handled and every NORMAL event is accounted for.
    #[test]
    fn a_short_flood_arrives_whole() {
        let s = step(5_000, 0.5, 1 << 14, None).unwrap();
        assert!(s.feed_frames > 500, "{s:?}");
        assert!(s.venue_frames_sent >= s.feed_frames / 2, "{s:?}");
        assert_eq!(s.feed_gaps, 0, "{s:?}");
        assert_eq!(s.feed_refused, 0, "{s:?}");
        assert!(s.trades_handled > 0, "{s:?}");
        let p = &s.priority;
        assert!(p.critical_sent > 0);
        assert_eq!(p.critical_handled, p.critical_sent, "{s:?}");
        assert_eq!(p.critical_lost + p.high_lost, 0, "{s:?}");
        assert_eq!(s.normal_dropped, 0, "{s:?}");
        assert!(p.fills.sent > 0, "{s:?}");
        assert_eq!(p.fills.handled, p.fills.sent, "{s:?}");
    }
}
