//! Every frame of the real Binance captures in ../shared/data parses, the book follows
//! Binance's sync procedure through the whole file, and at every book ticker whose update id
//! the rebuilt book has reached, their best bid and ask agree. Books with a tick-indexed
//! window (a small one that moves often, and one on a coarser tick than the spot prices, so
//! part of the levels go to the blocks) hold exactly what the plain book holds throughout.

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::feed::{FrameOutcome, MarketSink};
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::shared_data_dir;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::book::{Applied, OrderBook};
use tradeloop_engine::event::{Event, EventKind, Side};
use tradeloop_engine::fixed::Price;
use tradeloop_engine::instrument::InstrumentIndex;

#[derive(Default)]
struct Check {
    compared: u64,
    agreed: u64,
    disagreements: Vec<String>,
    book_lost: u64,
    trades: u64,
}

struct BookSink {
    book: OrderBook,
    windowed: [OrderBook; 2],
    messages: u64,
    check: Check,
}

impl BookSink {
    fn new() -> Self {
        let tick = |t| Price::parse(t).unwrap();
        Self {
            book: OrderBook::new(8192),
            windowed: [
                OrderBook::with_window(8192, tick("0.01"), 1024),
                OrderBook::with_window(8192, tick("0.1"), 32_768),
            ],
            messages: 0,
            check: Check::default(),
        }
    }

    /// The windowed books against the plain one: top of book and sizes after every message,
    /// every level every 500 messages and at the end.
    fn compare_windowed(&self, every_level: bool) {
        for w in &self.windowed {
            assert!(w.has_window());
            assert_eq!(
                (w.best_bid(), w.best_ask(), w.state()),
                (
                    self.book.best_bid(),
                    self.book.best_ask(),
                    self.book.state()
                ),
                "message {}",
                self.messages
            );
            for side in [Side::Buy, Side::Sell] {
                assert_eq!(
                    w.len(side),
                    self.book.len(side),
                    "message {}",
                    self.messages
                );
                if every_level {
                    assert!(
                        w.depth(side).eq(self.book.depth(side)),
                        "{side:?} depth at message {}",
                        self.messages
                    );
                }
            }
            assert_eq!(w.truncated(), self.book.truncated());
        }
    }
}

impl MarketSink for BookSink {
    fn push(&mut self, e: Event) {
        match e.kind {
            EventKind::BookDelta(d) => {
                let applied = self.book.apply(&d);
                for w in &mut self.windowed {
                    assert_eq!(w.apply(&d), applied);
                }
                if applied == Applied::MessageComplete {
                    self.messages += 1;
                    self.compare_windowed(self.messages.is_multiple_of(500));
                }
            }
            EventKind::Quote(q)
                if self.book.is_live() && self.book.last_update_id() == q.update_id =>
            {
                self.check.compared += 1;
                let (b, a) = (self.book.best_bid().unwrap(), self.book.best_ask().unwrap());
                let (bp, bq, ap, aq) = (q.bid_price, q.bid_qty, q.ask_price, q.ask_qty);
                if (b.price, b.qty, a.price, a.qty) == (bp, bq, ap, aq) {
                    self.check.agreed += 1;
                } else if self.check.disagreements.len() < 5 {
                    self.check.disagreements.push({
                        let u = q.update_id;
                        format!("u={u}: book {b:?}/{a:?} vs ticker {bp}@{bq} / {ap}@{aq}")
                    });
                }
            }
            EventKind::Trade(_) => self.check.trades += 1,
            _ => {}
        }
    }
    fn book_lost(&mut self, _: InstrumentIndex) {
        self.check.book_lost += 1;
        self.book.mark_stale();
        for w in &mut self.windowed {
            w.mark_stale();
        }
    }
}

fn replay(file: &str, market: Market) -> Option<(BinanceFeed, BookSink, u64)> {
    let path = shared_data_dir().join(file);
    if !path.exists() {
        eprintln!(
            "skipped: {} is absent (../shared/data not beside the repository)",
            path.display()
        );
        return None;
    }
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", InstrumentIndex(0));
    let mut feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 20), market, 10_000);
    let mut sink = BookSink::new();
    let mut reader = FrameReader::open(&[path]).unwrap();
    let mut lines = 0;
    while let Some((ns, frame)) = reader.next_frame().unwrap() {
        lines += 1;
        if let FrameOutcome::Refused(e) = feed.on_frame(ns, frame, &mut sink) {
            panic!("line {lines}: {e}: {}", &frame[..frame.len().min(200)]);
        }
    }
    assert_eq!(reader.stats().bad_lines, 0);
    sink.compare_windowed(true);
    assert!(sink.messages > 1000, "messages {}", sink.messages);
    assert!(
        sink.windowed[0].recenters() > 0,
        "the small window moved with the market"
    );
    Some((feed, sink, lines))
}

#[test]
fn spot_capture_parses_and_stays_in_sync() {
    let Some((feed, sink, lines)) = replay("binance_spot_btcusdt_20240808.gz", Market::Spot) else {
        return;
    };
    let s = feed.stats();
    eprintln!(
        "spot: {lines} lines, {s:?}, compared {} agreed {}",
        sink.check.compared, sink.check.agreed
    );
    assert_eq!(
        lines, 41_249,
        "28,040 tickers + 9,757 trades + 3,451 diffs + 1 snapshot"
    );
    assert_eq!(s.errors_total(), 0);
    assert_eq!((s.trades, s.quotes), (9_757, 28_040));
    assert_eq!(s.snapshots, 1);
    // The capture has one snapshot, taken after the first diff arrived: the diffs before it
    // are buffered and then dropped as older than lastUpdateId, as the procedure says.
    assert_eq!(s.gaps, 0, "no continuity gap in the capture");
    assert_eq!(sink.check.book_lost, 0);
    assert_eq!(s.diffs_applied + s.dropped_old, 3_451);
    assert!(sink.book.is_live());
    assert!(!sink.book.is_crossed());
    // Spot diffs are 100 ms aggregates: a book ticker's update id is never exactly the last id
    // of a diff in this capture, so the exact comparison runs on USD-M (0 ms diffs) instead.
    // Here: whatever was comparable agreed, and the book never crossed after a message.
    assert_eq!(
        sink.check.compared, sink.check.agreed,
        "{:#?}",
        sink.check.disagreements
    );
    assert_eq!(
        sink.book.crossed_messages(),
        0,
        "the rebuilt book never crossed"
    );
}

#[test]
fn usdm_capture_parses_and_stays_in_sync() {
    let Some((feed, sink, lines)) = replay("binance_usdm_btcusdt_20240808.gz", Market::UsdM) else {
        return;
    };
    let s = feed.stats();
    eprintln!(
        "usdm: {lines} lines, {s:?}, compared {} agreed {}",
        sink.check.compared, sink.check.agreed
    );
    assert_eq!(
        lines, 93_954,
        "66,089 tickers + 21,313 trades + 6,551 diffs + 1 snapshot"
    );
    assert_eq!(s.errors_total(), 0);
    assert_eq!((s.trades, s.quotes), (21_313, 66_089));
    assert_eq!(s.snapshots, 1);
    assert_eq!(s.gaps, 0, "pu continuity holds through the capture");
    assert_eq!(s.diffs_applied + s.dropped_old, 6_551);
    assert!(sink.book.is_live());
    assert!(!sink.book.is_crossed());
    assert!(
        sink.check.compared > 100,
        "compared {}",
        sink.check.compared
    );
    assert_eq!(
        sink.book.crossed_messages(),
        0,
        "the rebuilt book never crossed"
    );
    assert!(
        sink.check.disagreements.is_empty(),
        "{:#?}",
        sink.check.disagreements
    );
}
