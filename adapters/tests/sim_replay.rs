//! The simulated venue replaying the real Binance spot capture from ../shared/data over real
//! WebSocket and REST into the real feed client: every frame arrives, the book syncs from the
//! recorded snapshot and never gaps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::runner::{spawn_feed, FeedSettings};
use tradeloop_adapters::shared_data_dir;
use tradeloop_adapters::sim::server::{ReplaySource, SimConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{LaneConfig, Lanes};

#[test]
fn replays_the_real_spot_capture_through_the_feed() {
    let file = shared_data_dir().join("binance_spot_btcusdt_20240808.gz");
    if !file.exists() {
        eprintln!("skipped: {} is absent", file.display());
        return;
    }
    let venue = SimVenue::start(SimConfig {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        rest_addr: "127.0.0.1:0".parse().unwrap(),
        seed: 1,
        steps_per_second: 1,
        depth_interval: Duration::from_millis(100),
        depth_levels: 10,
        ping_interval: Duration::from_secs(5),
        protocol: tradeloop_adapters::sim::market::WireProtocol::Binance,
        symbols: Vec::new(),
        replay: Some(ReplaySource {
            files: vec![file],
            speed: 0.0,
        }),
    })
    .unwrap();
    let lanes = Arc::new(Lanes::new(LaneConfig {
        normal_slots: 1 << 20,
        ..LaneConfig::default()
    }));
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", InstrumentIndex(0));
    let settings = FeedSettings {
        feed_id: 0,
        name: "replay".into(),
        ws_url: venue.ws_url(),
        rest_url: venue.rest_url(),
        idle_timeout: Duration::from_secs(30),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        max_attempts: 0,
        down_critical_after: Duration::from_secs(30),
        stop_guard: None,
    };
    let feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 20), Market::Spot, 10_000);
    let handle = spawn_feed(settings, feed, Arc::clone(&lanes), LiveClock::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(venue.replay_done()
        && handle
            .shared
            .frames
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 41_249)
    {
        assert!(
            Instant::now() < deadline,
            "replay did not finish; frames {}",
            handle
                .shared
                .frames
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = handle.stop();
    assert_eq!(venue.connections(), 1);
    assert_eq!((stats.trades, stats.quotes), (9_757, 28_040), "{stats:?}");
    assert_eq!(stats.errors_total(), 0);
    assert_eq!(stats.gaps, 0);
    assert_eq!(
        stats.snapshots + stats.snapshots_ignored,
        2,
        "REST snapshot applied, in-stream copy ignored, or the reverse: {stats:?}"
    );
    assert_eq!(stats.diffs_applied + stats.dropped_old, 3_451, "{stats:?}");
}
