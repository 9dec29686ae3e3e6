//! Record two symbols from the simulated venue over real WebSocket and REST, then replay the
//! files through the Binance feed: every line parses, both books sync from the recorded
//! snapshot lines and stay in sync.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::feed::{FrameOutcome, MarketSink};
use tradeloop_adapters::record::{record, RecordSettings};
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::sim::server::{SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::book::OrderBook;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

struct Books {
    books: Vec<OrderBook>,
    lost: u64,
    trades: u64,
}

impl MarketSink for Books {
    fn push(&mut self, e: Event) {
        match e.kind {
            EventKind::BookDelta(d) => {
                self.books[d.instrument.get()].apply(&d);
            }
            EventKind::Trade(_) => self.trades += 1,
            _ => {}
        }
    }
    fn book_lost(&mut self, i: InstrumentIndex) {
        self.lost += 1;
        self.books[i.get()].mark_stale();
    }
}

#[test]
fn recorded_files_replay_into_synced_books() {
    let sym = |s: &str, p: i64| SimSymbolConfig {
        symbol: s.into(),
        start_price: Price::from_units(p),
        tick_size: Price::parse("0.01").unwrap(),
        lot_size: Qty::parse("0.0001").unwrap(),
    };
    let venue = SimVenue::start(SimConfig {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        rest_addr: "127.0.0.1:0".parse().unwrap(),
        seed: 3,
        steps_per_second: 4_000,
        depth_interval: Duration::from_millis(50),
        depth_levels: 40,
        ping_interval: Duration::from_secs(1),
        symbols: vec![sym("BTCUSDT", 60_000), sym("ETHUSDT", 3_000)],
        replay: None,
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("tradeloop-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = RecordSettings {
        ws_url: venue.ws_url(),
        rest_url: venue.rest_url(),
        market: Market::Spot,
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        depth_stream: "depth@100ms".into(),
        snapshot_limit: 1000,
        out_dir: dir.clone(),
        prefix: "sim".into(),
        idle_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    let report = record(
        &settings,
        &LiveClock::new(),
        &AtomicBool::new(false),
        Some(Instant::now() + Duration::from_millis(1_500)),
    )
    .unwrap();
    assert_eq!(report.snapshots, 2, "one snapshot line per symbol");
    assert!(report.frames > 1_000, "{report:?}");
    assert_eq!(
        report.files.len(),
        2,
        "one file per symbol: {:?}",
        report.files
    );
    assert!(report.files.iter().any(|f| f
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("sim_btcusdt_")));

    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", InstrumentIndex(0));
    symbols.insert("ETHUSDT", InstrumentIndex(1));
    let mut feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 20), Market::Spot, 10_000);
    let mut sink = Books {
        books: vec![OrderBook::new(4096), OrderBook::new(4096)],
        lost: 0,
        trades: 0,
    };
    let mut reader = FrameReader::open(&report.files).unwrap();
    let mut lines = 0;
    while let Some((ns, frame)) = reader.next_frame().unwrap() {
        lines += 1;
        if let FrameOutcome::Refused(e) = feed.on_frame(ns, frame, &mut sink) {
            panic!("line {lines}: {e}: {frame}");
        }
    }
    assert_eq!(lines, report.frames + report.snapshots);
    assert_eq!(feed.stats().snapshots, 2);
    assert_eq!(feed.stats().gaps, 0);
    assert_eq!(sink.lost, 0);
    assert!(
        sink.books.iter().all(OrderBook::is_live),
        "both books synced from their own snapshot"
    );
    assert!(sink.books.iter().all(|b| !b.is_crossed()));
    assert!(sink.trades > 100);
    let _ = std::fs::remove_dir_all(&dir);
}
