//! The real feed client against the simulated venue on loopback, speaking Binance (books
//! resynced over REST) and Bybit v5 (books resynced by resubscribing): normal streaming, a
//! dropped connection, an injected sequence gap, garbage frames, a stalled server, Bybit's
//! application ping, and a subscription the venue refuses. Every run is bounded in time and
//! talks to 127.0.0.1 only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::bybit::feed::BybitFeed;
use tradeloop_adapters::bybit::parse::BybitCodec;
use tradeloop_adapters::coinbase::feed::CoinbaseFeed;
use tradeloop_adapters::coinbase::parse::CoinbaseCodec;
use tradeloop_adapters::kraken::feed::{KrakenFeed, Precision};
use tradeloop_adapters::kraken::parse::KrakenCodec;
use tradeloop_adapters::okx::feed::OkxFeed;
use tradeloop_adapters::okx::parse::OkxCodec;
use tradeloop_adapters::runner::{spawn_feed, FeedHandle, FeedSettings};
use tradeloop_adapters::sim::market::WireProtocol;
use tradeloop_adapters::sim::server::{SimConfig, SimSymbolConfig, SimVenue};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::book::OrderBook;
use tradeloop_engine::clock::LiveClock;
use tradeloop_engine::event::{EventKind, FeedState};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};

const BTC: InstrumentIndex = InstrumentIndex(0);

/// Every test runs against every wire protocol.
const PROTOCOLS: [WireProtocol; 5] = [
    WireProtocol::Binance,
    WireProtocol::Bybit { depth: 50 },
    WireProtocol::Kraken { depth: 25 },
    WireProtocol::Coinbase,
    WireProtocol::Okx,
];

fn venue(protocol: WireProtocol) -> SimVenue {
    SimVenue::start(SimConfig {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        rest_addr: "127.0.0.1:0".parse().unwrap(),
        seed: 11,
        steps_per_second: 5_000,
        depth_interval: Duration::from_millis(20),
        depth_levels: 50,
        ping_interval: Duration::from_millis(200),
        protocol,
        symbols: vec![SimSymbolConfig {
            symbol: "BTCUSDT".into(),
            start_price: Price::from_units(60_000),
            tick_size: Price::parse("0.01").unwrap(),
            lot_size: Qty::parse("0.00001").unwrap(),
        }],
        replay: None,
    })
    .expect("sim venue starts on loopback")
}

fn feed(
    venue: &SimVenue,
    lanes: &Arc<Lanes>,
    idle: Duration,
    protocol: WireProtocol,
) -> FeedHandle {
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", BTC);
    let settings = FeedSettings {
        feed_id: 0,
        name: "sim".into(),
        ws_url: venue.ws_url(),
        rest_url: venue.rest_url(),
        idle_timeout: idle,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_attempts: 0,
        down_critical_after: Duration::from_secs(30),
        stop_guard: None,
    };
    let lanes = Arc::clone(lanes);
    match protocol {
        WireProtocol::Binance => {
            let codec = BinanceCodec::new(symbols, 1 << 20);
            let feed = BinanceFeed::new(codec, Market::Spot, 10_000);
            spawn_feed(settings, feed, lanes, LiveClock::new())
        }
        WireProtocol::Bybit { depth } => {
            let feed = BybitFeed::new(BybitCodec::new(symbols, 1 << 20), depth)
                .with_ping_interval(Duration::from_millis(50));
            spawn_feed(settings, feed, lanes, LiveClock::new())
        }
        WireProtocol::Coinbase => {
            let feed = CoinbaseFeed::new(CoinbaseCodec::new(symbols, 1 << 20));
            spawn_feed(settings, feed, lanes, LiveClock::new())
        }
        WireProtocol::Okx => {
            let feed = OkxFeed::new(OkxCodec::new(symbols, 1 << 20))
                .with_ping_interval(Duration::from_millis(50));
            spawn_feed(settings, feed, lanes, LiveClock::new())
        }
        WireProtocol::Kraken { depth } => {
            let precision = Precision::of(
                Price::parse("0.01").unwrap(),
                Qty::parse("0.00001").unwrap(),
            );
            let feed = KrakenFeed::new(
                KrakenCodec::new(symbols, 1 << 20),
                depth,
                &[(BTC, precision)],
            )
            .with_ping_interval(Duration::from_millis(50));
            spawn_feed(settings, feed, lanes, LiveClock::new())
        }
    }
    .unwrap()
}

/// The engine's side of the lanes, reduced to what these tests look at.
struct Consumer {
    lanes: Arc<Lanes>,
    book: OrderBook,
    trades: u64,
    states: Vec<FeedState>,
    stale_marks: u64,
}

impl Consumer {
    fn new(lanes: &Arc<Lanes>) -> Self {
        Self {
            lanes: Arc::clone(lanes),
            book: OrderBook::new(4096),
            trades: 0,
            states: Vec::new(),
            stale_marks: 0,
        }
    }

    fn drain(&mut self) {
        let Self {
            lanes,
            book,
            stale_marks,
            ..
        } = self;
        lanes.take_stale_books(|_| {
            book.mark_stale();
            *stale_marks += 1;
        });
        for lane in [Lane::Critical, Lane::Normal, Lane::Low] {
            while let Some(e) = self.lanes.pop(lane) {
                match e.kind {
                    EventKind::BookDelta(d) => {
                        self.book.apply(&d);
                    }
                    EventKind::Trade(_) => self.trades += 1,
                    EventKind::FeedStatus { state, .. } => self.states.push(state),
                    _ => {}
                }
            }
        }
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            self.drain();
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "timed out waiting for {what}; trades {}, states {:?}, book {:?}",
            self.trades,
            self.states,
            self.book.state()
        );
    }
}

fn live(c: &Consumer, f: &FeedHandle) -> bool {
    f.shared.state() == FeedState::Live && c.book.is_live()
}

#[test]
fn streams_and_builds_a_live_book() {
    for protocol in PROTOCOLS {
        tradeloop_adapters::install_tls_provider();
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_secs(5), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("live book and 500 trades", |c| {
            live(c, &f) && c.trades >= 500
        });
        assert!(!c.book.is_crossed());
        assert_eq!(
            f.shared.errors.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(v.snapshots_served(), 1);
        assert_eq!(
            &c.states[..3],
            &[FeedState::Connecting, FeedState::Stale, FeedState::Live],
            "{:?}",
            c.states
        );
        let stats = f.stop();
        assert!(stats.diffs_applied > 0 && stats.gaps == 0, "{stats:?}");
    }
}

#[test]
fn dropped_connection_reconnects_resubscribes_and_resyncs() {
    for protocol in PROTOCOLS {
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_secs(5), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("first sync", |c| live(c, &f));
        v.drop_connections();
        c.wait_until("reconnect", |_| v.connections() >= 2);
        let trades_before = c.trades;
        c.wait_until("resynced book and fresh trades", |c| {
            live(c, &f) && v.snapshots_served() >= 2 && c.trades > trades_before + 100
        });
        assert!(
            c.states.contains(&FeedState::Reconnecting),
            "{:?}",
            c.states
        );
        assert!(c.stale_marks >= 1, "the engine was told the book was lost");
        assert!(
            f.shared
                .reconnects
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
    }
}

#[test]
fn injected_gap_is_detected_and_resynced() {
    for protocol in PROTOCOLS {
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_secs(5), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("first sync", |c| live(c, &f));
        v.inject_gap();
        c.wait_until("gap seen and resynced", |c| {
            f.shared.gaps.load(std::sync::atomic::Ordering::Relaxed) >= 1
                && v.snapshots_served() >= 2
                && live(c, &f)
        });
        assert_eq!(
            v.connections(),
            1,
            "a gap resyncs the book without reconnecting"
        );
        let resubscribes = f
            .shared
            .resubscribes
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            f.shared
                .snapshots
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2,
            "{protocol:?}: the first sync and the resync are counted"
        );
        match protocol {
            WireProtocol::Binance => assert_eq!(resubscribes, 0, "Binance resyncs over REST"),
            _ => assert!(resubscribes >= 1, "{protocol:?} resubscribes"),
        }
        assert!(c.stale_marks >= 1);
        assert!(!c.book.is_crossed());
    }
}

#[test]
fn garbage_frames_are_counted_and_the_feed_survives() {
    for protocol in PROTOCOLS {
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_secs(5), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("first sync", |c| live(c, &f));
        v.inject_garbage(10);
        c.wait_until("garbage counted", |_| {
            f.shared.errors.load(std::sync::atomic::Ordering::Relaxed) >= 10
        });
        let trades_before = c.trades;
        c.wait_until("still streaming", |c| {
            c.trades > trades_before + 100 && live(c, &f)
        });
        assert_eq!(v.connections(), 1, "garbage does not cost the connection");
        let stats = f.stop();
        let by_kind: BTreeMap<&str, u64> = tradeloop_adapters::wire::ParseError::NAMES
            .iter()
            .copied()
            .zip(stats.errors)
            .collect();
        assert_eq!(
            by_kind["malformed"] + by_kind["invalid_number"],
            10,
            "{by_kind:?}"
        );
    }
}

#[test]
fn stalled_server_trips_the_idle_watchdog() {
    for protocol in PROTOCOLS {
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_millis(300), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("first sync", |c| live(c, &f));
        v.stall(Duration::from_millis(1_200));
        c.wait_until("watchdog", |_| {
            f.shared
                .watchdog_fired
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        });
        c.wait_until("back after the stall", |c| {
            live(c, &f) && v.connections() >= 2
        });
        assert!(c.states.contains(&FeedState::Stale));
    }
}

#[test]
fn bybit_application_pings_are_answered() {
    let v = venue(WireProtocol::Bybit { depth: 50 });
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let f = feed(
        &v,
        &lanes,
        Duration::from_secs(5),
        WireProtocol::Bybit { depth: 50 },
    );
    let mut c = Consumer::new(&lanes);
    c.wait_until("first sync", |c| live(c, &f));
    std::thread::sleep(Duration::from_millis(600));
    let stats = f.stop();
    // One subscribe reply, then a pong every 50 ms.
    assert!(stats.control >= 6, "{stats:?}");
    assert_eq!(stats.errors_total(), 0, "{stats:?}");
}

#[test]
fn a_refused_bybit_subscription_is_counted_as_a_venue_error() {
    // The venue serves depth 50; the client asks for orderbook.200: Bybit refuses the request.
    let v = venue(WireProtocol::Bybit { depth: 50 });
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let f = feed(
        &v,
        &lanes,
        Duration::from_secs(5),
        WireProtocol::Bybit { depth: 200 },
    );
    let mut c = Consumer::new(&lanes);
    c.wait_until("the refusal", |_| {
        f.shared.errors.load(std::sync::atomic::Ordering::Relaxed) >= 1
    });
    let stats = f.stop();
    let venue_errors = stats.errors[tradeloop_adapters::wire::ParseError::VenueError.index()];
    assert!(venue_errors >= 1, "{stats:?}");
    assert!(!c.book.is_live(), "no book without its subscription");
}

/// For the venues with an application ping and a checked book (Kraken's checksum, OKX's
/// sequence and checksum): over 2,000+ trades every ping is answered and no book message fails
/// its check, so nothing is resubscribed.
#[test]
fn application_pings_are_answered_and_book_checks_hold() {
    for protocol in [WireProtocol::Kraken { depth: 25 }, WireProtocol::Okx] {
        let v = venue(protocol);
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let f = feed(&v, &lanes, Duration::from_secs(5), protocol);
        let mut c = Consumer::new(&lanes);
        c.wait_until("first sync", |c| live(c, &f));
        let trades = c.trades;
        c.wait_until("a second of trading", |c| c.trades > trades + 2_000);
        assert_eq!(v.snapshots_served(), 1, "{protocol:?}: no resubscription");
        let stats = f.stop();
        // Subscribe replies, then a pong every 50 ms.
        assert!(stats.control >= 10, "{protocol:?}: {stats:?}");
        assert!(stats.diffs_applied >= 5, "{protocol:?}: {stats:?}");
        assert_eq!(stats.gaps, 0, "{protocol:?}: {stats:?}");
        assert_eq!(stats.errors_total(), 0, "{protocol:?}: {stats:?}");
    }
}

#[test]
fn coinbase_heartbeats_keep_the_sequence_without_gaps() {
    let v = venue(WireProtocol::Coinbase);
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let f = feed(&v, &lanes, Duration::from_secs(5), WireProtocol::Coinbase);
    let mut c = Consumer::new(&lanes);
    c.wait_until("first sync", |c| live(c, &f));
    std::thread::sleep(Duration::from_millis(2_300));
    let stats = f.stop();
    // The subscriptions replies, then a heartbeat a second.
    assert!(stats.control >= 6, "{stats:?}");
    assert_eq!((stats.gaps, stats.dropped_old), (0, 0), "{stats:?}");
    assert_eq!(stats.errors_total(), 0, "{stats:?}");
    assert_eq!(v.snapshots_served(), 1);
}
