//! L2 order book per instrument keyed by integer price. Hot path: one `apply` per book delta;
//! each side is a preallocated sorted array with the best level at the end, so updates near the
//! top of the book (almost all of them) move few bytes and nothing allocates.
//!
//! A side holds at most `levels` price levels (config `engine.book_levels`). A new level worse
//! than all held ones on a full side is not stored (counted in `truncated`); a better one
//! evicts the worst. Venues' own books are depth-limited the same way (Binance snapshots carry
//! at most 5,000 levels), so this loses nothing a venue would have sent.

use crate::event::{BookDelta, DeltaFlags, Side};
use crate::fixed::{Price, Qty};

/// One price level.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Total quantity at the price.
    pub qty: Qty,
}

/// One side of a book: levels sorted so that the best is last.
#[derive(Clone, Debug)]
struct BookSide {
    levels: Box<[Level]>,
    len: usize,
    /// `+1` for bids (ascending price, best = highest), `-1` for asks (descending, best = lowest).
    sign: i64,
}

impl BookSide {
    fn new(capacity: usize, side: Side) -> Self {
        Self {
            levels: vec![Level::default(); capacity].into_boxed_slice(),
            len: 0,
            sign: side.sign(),
        }
    }

    #[inline]
    fn key(&self, price: Price) -> i128 {
        i128::from(price.raw()) * i128::from(self.sign)
    }

    /// Sets a level to an absolute quantity; returns `false` if it was not stored (truncated).
    #[inline]
    fn set(&mut self, price: Price, qty: Qty) -> bool {
        let key = self.key(price);
        let held = &self.levels[..self.len];
        match held.binary_search_by(|l| self.key(l.price).cmp(&key)) {
            Ok(i) => {
                if qty.is_zero() {
                    self.levels.copy_within(i + 1..self.len, i);
                    self.len -= 1;
                } else {
                    self.levels[i].qty = qty;
                }
                true
            }
            Err(_) if qty.is_zero() => true,
            Err(i) => {
                if self.len == self.levels.len() {
                    if i == 0 {
                        return false;
                    }
                    // Full: drop the worst (index 0) and insert at i - 1.
                    self.levels.copy_within(1..i, 0);
                    self.levels[i - 1] = Level { price, qty };
                } else {
                    self.levels.copy_within(i..self.len, i + 1);
                    self.levels[i] = Level { price, qty };
                    self.len += 1;
                }
                true
            }
        }
    }

    #[inline]
    fn best(&self) -> Option<Level> {
        self.len.checked_sub(1).map(|i| self.levels[i])
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn iter_best_first(&self) -> impl Iterator<Item = Level> + '_ {
        self.levels[..self.len].iter().rev().copied()
    }
}

/// Whether the book can be traded on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BookState {
    /// No snapshot yet.
    Empty,
    /// A snapshot is being applied (between `SNAPSHOT_BEGIN` and `LAST_IN_MESSAGE`).
    Syncing,
    /// In sync.
    Live,
    /// A delta was lost: wait for a new snapshot; deltas are ignored until then.
    Stale,
}

/// What applying a delta did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Applied {
    /// Applied; the book is mid-message (more levels of the same message follow).
    Partial,
    /// Applied and the message is complete: strategies may look at the book.
    MessageComplete,
    /// Ignored because the book is stale or never synced.
    IgnoredNotSynced,
}

/// An L2 book for one instrument.
///
/// # Allocation
/// Allocates only in [`OrderBook::new`].
#[derive(Clone, Debug)]
pub struct OrderBook {
    bids: BookSide,
    asks: BookSide,
    state: BookState,
    last_update_id: u64,
    truncated: u64,
    crossed_messages: u64,
}

impl OrderBook {
    /// A book holding up to `levels` price levels per side.
    ///
    /// # Panics
    /// If `levels` is zero.
    #[must_use]
    pub fn new(levels: usize) -> Self {
        assert!(levels > 0, "book needs at least one level per side");
        Self {
            bids: BookSide::new(levels, Side::Buy),
            asks: BookSide::new(levels, Side::Sell),
            state: BookState::Empty,
            last_update_id: 0,
            truncated: 0,
            crossed_messages: 0,
        }
    }

    /// Applies one level delta (see [`DeltaFlags`]).
    #[inline]
    pub fn apply(&mut self, d: &BookDelta) -> Applied {
        if d.flags.has(DeltaFlags::SNAPSHOT_BEGIN) {
            self.bids.clear();
            self.asks.clear();
            self.state = BookState::Syncing;
        } else if matches!(self.state, BookState::Empty | BookState::Stale) {
            return Applied::IgnoredNotSynced;
        }
        let stored = match d.side {
            Side::Buy => self.bids.set(d.price, d.qty),
            Side::Sell => self.asks.set(d.price, d.qty),
        };
        if !stored {
            self.truncated += 1;
        }
        self.last_update_id = d.update_id;
        if d.flags.has(DeltaFlags::LAST_IN_MESSAGE) {
            self.state = BookState::Live;
            if self.is_crossed() {
                self.crossed_messages += 1;
            }
            Applied::MessageComplete
        } else {
            Applied::Partial
        }
    }

    /// Marks the book stale (a delta was lost); it ignores deltas until the next snapshot.
    pub fn mark_stale(&mut self) {
        self.state = BookState::Stale;
    }

    /// Current state.
    #[inline]
    #[must_use]
    pub const fn state(&self) -> BookState {
        self.state
    }

    /// `true` if the book is in sync and may be traded on.
    #[inline]
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.state == BookState::Live
    }

    /// Best bid.
    #[inline]
    #[must_use]
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.best()
    }

    /// Best ask.
    #[inline]
    #[must_use]
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.best()
    }

    /// Levels of one side, best first.
    pub fn depth(&self, side: Side) -> impl Iterator<Item = Level> + '_ {
        match side {
            Side::Buy => self.bids.iter_best_first(),
            Side::Sell => self.asks.iter_best_first(),
        }
    }

    /// Number of levels held on a side.
    #[must_use]
    pub fn len(&self, side: Side) -> usize {
        match side {
            Side::Buy => self.bids.len,
            Side::Sell => self.asks.len,
        }
    }

    /// `true` when both sides are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bids.len == 0 && self.asks.len == 0
    }

    /// `true` if best bid ≥ best ask (a crossed book: bad data or a missed update).
    #[inline]
    #[must_use]
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b.price >= a.price)
    }

    /// Update id of the last applied delta.
    #[must_use]
    pub const fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    /// Levels not stored because the side was full and they were the worst.
    #[must_use]
    pub const fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Messages after which the book was crossed.
    #[must_use]
    pub const fn crossed_messages(&self) -> u64 {
        self.crossed_messages
    }

    /// Mid price in raw units, rounded down (`None` unless both sides are present).
    #[must_use]
    pub fn mid(&self) -> Option<Price> {
        let (b, a) = (self.best_bid()?, self.best_ask()?);
        Some(Price(
            ((i128::from(b.price.raw()) + i128::from(a.price.raw())) / 2) as i64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::InstrumentIndex;
    use std::collections::BTreeMap;

    fn d(side: Side, price: i64, qty: i64, flags: u8) -> BookDelta {
        BookDelta {
            instrument: InstrumentIndex(0),
            side,
            flags: DeltaFlags(flags),
            price: Price::from_units(price),
            qty: Qty::from_units(qty),
            update_id: 1,
        }
    }
    const B: u8 = DeltaFlags::SNAPSHOT_BEGIN;
    const L: u8 = DeltaFlags::LAST_IN_MESSAGE;

    #[test]
    fn snapshot_then_deltas() {
        let mut book = OrderBook::new(8);
        assert_eq!(
            book.apply(&d(Side::Buy, 99, 1, 0)),
            Applied::IgnoredNotSynced,
            "TC0 no snapshot yet"
        );
        assert_eq!(book.apply(&d(Side::Buy, 99, 1, B)), Applied::Partial, "TC1");
        assert_eq!(book.state(), BookState::Syncing);
        book.apply(&d(Side::Buy, 98, 2, 0));
        book.apply(&d(Side::Sell, 101, 3, 0));
        assert_eq!(
            book.apply(&d(Side::Sell, 102, 4, L)),
            Applied::MessageComplete,
            "TC2"
        );
        assert!(book.is_live());
        assert_eq!(
            book.best_bid().map(|l| l.price),
            Some(Price::from_units(99)),
            "TC3"
        );
        assert_eq!(
            book.best_ask().map(|l| l.price),
            Some(Price::from_units(101)),
            "TC4"
        );
        assert_eq!(book.mid(), Some(Price::from_units(100)));
        book.apply(&d(Side::Buy, 99, 0, L));
        assert_eq!(
            book.best_bid().map(|l| l.price),
            Some(Price::from_units(98)),
            "TC5 delete best"
        );
        book.apply(&d(Side::Sell, 100, 5, L));
        assert_eq!(
            book.best_ask(),
            Some(Level {
                price: Price::from_units(100),
                qty: Qty::from_units(5)
            }),
            "TC6 new best"
        );
        let asks: Vec<i64> = book
            .depth(Side::Sell)
            .map(|l| l.price.raw() / 100_000_000)
            .collect();
        assert_eq!(asks, vec![100, 101, 102], "TC7 best first");
        book.apply(&d(Side::Buy, 100, 1, L));
        assert!(book.is_crossed(), "TC8 crossed detected");
        assert_eq!(book.crossed_messages(), 1);
        book.mark_stale();
        assert_eq!(
            book.apply(&d(Side::Buy, 97, 1, L)),
            Applied::IgnoredNotSynced,
            "TC9 stale ignores deltas"
        );
        book.apply(&d(Side::Buy, 90, 1, B | L));
        assert!(book.is_live(), "TC10 snapshot resyncs");
        assert_eq!(
            (book.len(Side::Buy), book.len(Side::Sell)),
            (1, 0),
            "TC11 snapshot cleared both sides"
        );
    }

    #[test]
    fn full_side_keeps_the_best_levels() {
        let mut book = OrderBook::new(3);
        book.apply(&d(Side::Buy, 10, 1, B));
        book.apply(&d(Side::Buy, 11, 1, 0));
        book.apply(&d(Side::Buy, 12, 1, L));
        book.apply(&d(Side::Buy, 9, 1, L));
        assert_eq!(
            book.truncated(),
            1,
            "worse than all on a full side is not stored"
        );
        book.apply(&d(Side::Buy, 13, 1, L));
        let bids: Vec<i64> = book
            .depth(Side::Buy)
            .map(|l| l.price.raw() / 100_000_000)
            .collect();
        assert_eq!(bids, vec![13, 12, 11], "the worst level was evicted");
    }

    proptest::proptest! {
        #[test]
        fn prop_book_matches_btreemap(ops in proptest::collection::vec((proptest::bool::ANY, 1i64..60, 0i64..4), 1..300)) {
            let mut book = OrderBook::new(64);
            let mut bids = BTreeMap::new();
            let mut asks = BTreeMap::new();
            book.apply(&d(Side::Buy, 1000, 0, B | L));
            for (buy, price, qty) in ops {
                let side = if buy { Side::Buy } else { Side::Sell };
                book.apply(&d(side, price, qty, L));
                let map = if buy { &mut bids } else { &mut asks };
                if qty == 0 { map.remove(&price); } else { map.insert(price, qty); }
            }
            let got_b: Vec<(i64, i64)> = book.depth(Side::Buy).map(|l| (l.price.raw() / 100_000_000, l.qty.raw() / 100_000_000)).collect();
            let want_b: Vec<(i64, i64)> = bids.iter().rev().map(|(p, q)| (*p, *q)).collect();
            proptest::prop_assert_eq!(got_b, want_b);
            let got_a: Vec<(i64, i64)> = book.depth(Side::Sell).map(|l| (l.price.raw() / 100_000_000, l.qty.raw() / 100_000_000)).collect();
            let want_a: Vec<(i64, i64)> = asks.iter().map(|(p, q)| (*p, *q)).collect();
            proptest::prop_assert_eq!(got_a, want_a);
        }
    }
}
