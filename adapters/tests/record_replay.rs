//! Record two symbols from the simulated venue over a real WebSocket (and REST for Binance's
//! snapshots), speaking Binance, Bybit, Kraken, Coinbase and OKX, then replay the files through the same
//! venue's feed: every line parses, both books sync from the recorded snapshots (REST lines for
//! Binance, in-stream snapshots for the others) and stay in sync (Kraken: every checksum
//! verifies).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::bybit::feed::BybitFeed;
use tradeloop_adapters::bybit::parse::BybitCodec;
use tradeloop_adapters::coinbase::feed::CoinbaseFeed;
use tradeloop_adapters::coinbase::parse::CoinbaseCodec;
use tradeloop_adapters::feed::{FrameOutcome, MarketSink, VenueFeed};
use tradeloop_adapters::kraken::feed::{KrakenFeed, Precision};
use tradeloop_adapters::kraken::parse::KrakenCodec;
use tradeloop_adapters::okx::feed::OkxFeed;
use tradeloop_adapters::okx::parse::OkxCodec;
use tradeloop_adapters::record::{record, RecordSettings};
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::sim::market::WireProtocol;
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

fn symbols() -> SymbolMap {
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", InstrumentIndex(0));
    symbols.insert("ETHUSDT", InstrumentIndex(1));
    symbols
}

/// Records 1.5 s from a sim venue speaking `protocol` with `feed`'s subscriptions, replays the
/// files through `feed`, and returns the report and the feed after the replay.
fn record_and_replay<F: VenueFeed>(
    protocol: WireProtocol,
    feed: F,
    tag: &str,
) -> (tradeloop_adapters::record::RecordReport, F) {
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
        protocol,
        symbols: vec![sym("BTCUSDT", 60_000), sym("ETHUSDT", 3_000)],
        replay: None,
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("tradeloop-record-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = RecordSettings {
        ws_url: venue.ws_url(),
        rest_url: venue.rest_url(),
        out_dir: dir.clone(),
        prefix: "sim".into(),
        idle_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    let report = record(
        &settings,
        &feed,
        &LiveClock::new(),
        &AtomicBool::new(false),
        Some(Instant::now() + Duration::from_millis(1_500)),
    )
    .unwrap();
    assert!(report.frames > 1_000, "{report:?}");
    assert_eq!(report.connections, 1, "{report:?}");
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

    let mut feed = feed;
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
    assert_eq!(feed.stats().snapshots, 2, "one book snapshot per symbol");
    assert_eq!(feed.stats().gaps, 0);
    assert_eq!(sink.lost, 0);
    assert!(
        sink.books.iter().all(OrderBook::is_live),
        "both books synced from their own snapshot"
    );
    assert!(sink.books.iter().all(|b| !b.is_crossed()));
    assert!(sink.trades > 100);
    let _ = std::fs::remove_dir_all(&dir);
    (report, feed)
}

#[test]
fn recorded_binance_files_replay_into_synced_books() {
    let feed = BinanceFeed::new(BinanceCodec::new(symbols(), 1 << 20), Market::Spot, 10_000);
    let (report, _) = record_and_replay(WireProtocol::Binance, feed, "binance");
    assert_eq!(report.snapshots, 2, "one REST snapshot line per symbol");
}

#[test]
fn recorded_bybit_files_replay_into_synced_books() {
    let feed = BybitFeed::new(BybitCodec::new(symbols(), 1 << 20), 50);
    let (report, feed) = record_and_replay(WireProtocol::Bybit { depth: 50 }, feed, "bybit");
    assert_eq!(report.snapshots, 0, "snapshots arrive in-stream: no REST");
    assert!(feed.stats().diffs_applied > 20, "{:?}", feed.stats());
    assert!(feed.stats().quotes > 100, "{:?}", feed.stats());
}

#[test]
fn recorded_kraken_files_replay_into_synced_books() {
    let precision = Precision::of(Price::parse("0.01").unwrap(), Qty::parse("0.0001").unwrap());
    let feed = KrakenFeed::new(
        KrakenCodec::new(symbols(), 1 << 20),
        25,
        &[
            (InstrumentIndex(0), precision),
            (InstrumentIndex(1), precision),
        ],
    );
    let (report, feed) = record_and_replay(WireProtocol::Kraken { depth: 25 }, feed, "kraken");
    assert_eq!(report.snapshots, 0, "snapshots arrive in-stream: no REST");
    assert_eq!(feed.checksum_mismatches, 0);
    assert!(feed.stats().diffs_applied > 20, "{:?}", feed.stats());
    assert!(feed.stats().quotes > 100, "{:?}", feed.stats());
}

#[test]
fn recorded_coinbase_files_replay_into_synced_books() {
    let feed = CoinbaseFeed::new(CoinbaseCodec::new(symbols(), 1 << 20)).for_replay();
    let (report, feed) = record_and_replay(WireProtocol::Coinbase, feed, "coinbase");
    assert_eq!(report.snapshots, 0, "snapshots arrive in-stream: no REST");
    assert!(feed.stats().diffs_applied > 20, "{:?}", feed.stats());
    assert!(feed.stats().quotes > 100, "{:?}", feed.stats());
}

#[test]
fn recorded_okx_files_replay_into_synced_books() {
    let feed = OkxFeed::new(OkxCodec::new(symbols(), 1 << 20));
    let (report, feed) = record_and_replay(WireProtocol::Okx, feed, "okx");
    assert_eq!(report.snapshots, 0, "snapshots arrive in-stream: no REST");
    assert_eq!(feed.checksum_mismatches, 0);
    assert!(feed.stats().diffs_applied > 20, "{:?}", feed.stats());
    assert!(feed.stats().quotes > 100, "{:?}", feed.stats());
}
