//! The real Bybit capture in ../shared/data (`orderbook.500.XRPUSDT`: 1 snapshot + 49 deltas)
//! goes through the Bybit feed into the engine's order book: every delta applies, and the final
//! book equals an independent rebuild of the same messages (serde_json + rust_decimal, level by
//! level, both sides). A skipped delta is a gap that asks for a resubscription; a `u = 1`
//! message overwrites the book.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tradeloop_adapters::bybit::feed::BybitFeed;
use tradeloop_adapters::bybit::parse::BybitCodec;
use tradeloop_adapters::feed::{FrameOutcome, MarketSink, VenueFeed as _};
use tradeloop_adapters::shared_data_dir;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::book::OrderBook;
use tradeloop_engine::event::{Event, EventKind, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

fn capture() -> Option<Vec<String>> {
    let path = shared_data_dir().join("bybit_xrpusdt-ob500.data.zip");
    if !path.exists() {
        eprintln!(
            "skipped: {} is absent (../shared/data not beside the repository)",
            path.display()
        );
        return None;
    }
    let bytes = tradeloop_adapters::recorder::unzip_first(&std::fs::read(path).unwrap()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    Some(text.lines().map(str::to_owned).collect())
}

struct BookSink {
    book: OrderBook,
    lost: u64,
}

impl MarketSink for BookSink {
    fn push(&mut self, e: Event) {
        if let EventKind::BookDelta(d) = e.kind {
            let _ = self.book.apply(&d);
        }
    }
    fn book_lost(&mut self, _: InstrumentIndex) {
        self.lost += 1;
        self.book.mark_stale();
    }
}

fn feed() -> BybitFeed {
    let mut symbols = SymbolMap::default();
    symbols.insert("XRPUSDT", InstrumentIndex(0));
    BybitFeed::new(BybitCodec::new(symbols, 1 << 22), 500)
}

fn sink() -> BookSink {
    BookSink {
        book: OrderBook::new(4096),
        lost: 0,
    }
}

type Side2 = (BTreeMap<Decimal, Decimal>, BTreeMap<Decimal, Decimal>);

/// The book the messages describe, rebuilt without any tradeloop code.
fn independent_rebuild(lines: &[String]) -> Side2 {
    let (mut bids, mut asks) = (BTreeMap::new(), BTreeMap::new());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "snapshot" || v["data"]["u"] == 1 {
            bids.clear();
            asks.clear();
        }
        for (key, side) in [("b", &mut bids), ("a", &mut asks)] {
            for level in v["data"][key].as_array().unwrap() {
                let p: Decimal = level[0].as_str().unwrap().parse().unwrap();
                let q: Decimal = level[1].as_str().unwrap().parse().unwrap();
                if q.is_zero() {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
    }
    (bids, asks)
}

fn engine_side(book: &OrderBook, side: Side) -> Vec<(Price, Qty)> {
    book.depth(side).map(|l| (l.price, l.qty)).collect()
}

fn fixed_side<'a>(levels: impl Iterator<Item = (&'a Decimal, &'a Decimal)>) -> Vec<(Price, Qty)> {
    levels
        .map(|(p, q)| {
            (
                Price::parse(&p.to_string()).unwrap(),
                Qty::parse(&q.to_string()).unwrap(),
            )
        })
        .collect()
}

fn assert_books_equal(book: &OrderBook, want: &Side2) {
    let bids = fixed_side(want.0.iter().rev());
    let asks = fixed_side(want.1.iter());
    assert!(!bids.is_empty() && !asks.is_empty());
    assert_eq!(engine_side(book, Side::Buy), bids, "bids");
    assert_eq!(engine_side(book, Side::Sell), asks, "asks");
}

#[test]
fn every_delta_applies_and_the_book_matches_an_independent_rebuild() {
    let Some(lines) = capture() else { return };
    assert_eq!(lines.len(), 50, "1 snapshot + 49 deltas");
    let mut f = feed();
    let mut s = sink();
    for (n, line) in lines.iter().enumerate() {
        let ns = u64::try_from(n).unwrap();
        assert_eq!(
            f.on_frame(ns, line, &mut s),
            FrameOutcome::Handled,
            "line {n}"
        );
        assert!(s.book.is_live(), "line {n}");
    }
    let st = f.stats();
    assert_eq!((st.snapshots, st.diffs_applied), (1, 49));
    assert_eq!((st.gaps, st.dropped_old, st.before_snapshot), (0, 0, 0));
    assert_eq!(st.errors_total(), 0);
    assert_eq!(s.lost, 0);
    assert!(!s.book.is_crossed());
    assert_books_equal(&s.book, &independent_rebuild(&lines));
    // The snapshot alone has 500 levels a side; the deltas changed it.
    assert_ne!(
        engine_side(&s.book, Side::Buy),
        fixed_side(independent_rebuild(&lines[..1]).0.iter().rev())
    );
}

#[test]
fn a_skipped_delta_is_a_gap_and_a_u_of_one_overwrites_the_book() {
    let Some(lines) = capture() else { return };
    // Delta 10 never arrives: delta 11 is a gap.
    let mut f = feed();
    let mut s = sink();
    for line in &lines[..10] {
        assert_eq!(f.on_frame(0, line, &mut s), FrameOutcome::Handled);
    }
    assert_eq!(
        f.on_frame(0, &lines[11], &mut s),
        FrameOutcome::Resubscribe(InstrumentIndex(0))
    );
    assert_eq!((f.stats().gaps, s.lost), (1, 1));
    assert!(!s.book.is_live());
    // Later deltas are ignored until a snapshot: the resubscription's snapshot (the first
    // line stands in for it) resyncs.
    assert_eq!(f.on_frame(0, &lines[12], &mut s), FrameOutcome::Handled);
    assert_eq!(f.stats().before_snapshot, 1);

    // A venue restart: a delta numbered u = 1 overwrites the book, then 2, 3… continue.
    let mut f = feed();
    let mut s = sink();
    for line in &lines[..20] {
        f.on_frame(0, line, &mut s);
    }
    let restarted: Vec<String> = lines[20..23]
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["data"]["u"] = serde_json::json!(k + 1);
            v.to_string()
        })
        .collect();
    for line in &restarted {
        assert_eq!(f.on_frame(0, line, &mut s), FrameOutcome::Handled);
    }
    assert_eq!(f.stats().gaps, 0, "u = 1 is a restart, not a gap");
    assert_eq!(f.stats().snapshots, 2);
    assert_books_equal(&s.book, &independent_rebuild(&restarted));
}
