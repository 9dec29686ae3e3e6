//! L2 order book per instrument keyed by integer price. Hot path: one `apply` per book delta;
//! nothing allocates after [`OrderBook::new`] / [`OrderBook::with_window`], which also write
//! every page they allocate so the first deltas do not take page faults.
//!
//! Each side (`side.rs`) keeps its levels in two stores:
//!
//! - **The window** (`window.rs`): `window` consecutive ticks around the best, as a
//!   tick-indexed array of quantities with a bitmap of the held levels (and a summary bitmap
//!   over the bitmap). A
//!   delta there costs a slot computed by one multiply, a bit test and a store, and the best
//!   level is cached. The window follows the market: a new best in its top eighth, or a new
//!   level near a best that has sunk to its bottom quarter, rebuilds the side around the best
//!   (O(levels), counted in `recenters`). After each snapshot the window steps by the
//!   coarsest grid all the snapshot's levels lie on when that is a multiple of the configured
//!   tick (a tick of 0.01 configured for a venue quoting in 0.1 steps would leave nine slots
//!   in ten unused); the first new level between those steps sets it back to the tick.
//! - **The blocks** (`blocks.rs`): every other level (far from the best, or off the
//!   instrument's tick grid) in a list of fixed-size blocks of sorted levels (a one-level B-tree): a delta finds its
//!   block by binary search over the blocks' lowest keys, then its slot inside the block, and
//!   moves at most one block's worth of levels. Keys and quantities are kept in separate
//!   arrays, so the searches touch half the cache lines. A full block splits in two; when no
//!   block is free the blocks are repacked at three-quarter fill (O(levels), amortised over at
//!   least a quarter-block of inserts per block). With the window off (`window = 0`, or a
//!   tick the window cannot index) the blocks hold everything.
//!
//! On Binance USD-M BTCUSDT (~3,500 levels a side, most diffs 25 to 100 USD from the best)
//! the blocks alone took 39 ns per captured delta; see the README's performance section for
//! the window's figures.
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

/// Fill for unused slots.
const NEVER_READ: i64 = i64::MIN;
/// Largest window, in ticks per side.
pub const MAX_WINDOW: usize = 1 << 20;

/// A zeroed vector whose pages are already written (a plain zeroed allocation can come from
/// lazily mapped zero pages, which would fault on the hot path).
fn touched_zeros<T: Copy + From<u8>>(n: usize) -> Box<[T]> {
    let mut v = vec![T::from(1); n];
    std::hint::black_box(&mut v);
    v.fill(T::from(0));
    v.into_boxed_slice()
}

/// Greatest common divisor (binary).
const fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

mod blocks;
mod side;
mod window;

use side::BookSide;

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

impl BookState {
    /// Every state.
    pub const ALL: [Self; 4] = [Self::Empty, Self::Syncing, Self::Live, Self::Stale];

    /// Stable lower-case name (metrics labels).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Syncing => "syncing",
            Self::Live => "live",
            Self::Stale => "stale",
        }
    }
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
    /// A book holding up to `levels` price levels per side, all of them in the blocks (no
    /// window).
    ///
    /// # Panics
    /// If `levels` is zero.
    #[must_use]
    pub fn new(levels: usize) -> Self {
        Self::with_window(levels, Price::ZERO, 0)
    }

    /// A book holding up to `levels` price levels per side, with a window of `window` ticks
    /// of `tick` per side (config `engine.book_window`). The window is off when `window` is
    /// 0, not a power of two in 64..=[`MAX_WINDOW`], or the tick is not positive or above
    /// about 10^13 raw units; the book then keeps every level in its blocks. A tick that does
    /// not match the venue's prices costs only speed: off-grid prices are kept in the blocks.
    ///
    /// # Panics
    /// If `levels` is zero.
    #[must_use]
    pub fn with_window(levels: usize, tick: Price, window: usize) -> Self {
        assert!(levels > 0, "book needs at least one level per side");
        Self {
            bids: BookSide::new(levels, Side::Buy, tick, window),
            asks: BookSide::new(levels, Side::Sell, tick, window),
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
            if self.state == BookState::Syncing {
                self.bids.learn_grid();
                self.asks.learn_grid();
            }
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

    /// Quantity held at a price on a side (zero when the level is absent).
    #[must_use]
    pub fn qty_at(&self, side: Side, price: Price) -> Qty {
        match side {
            Side::Buy => self.bids.qty_at(price),
            Side::Sell => self.asks.qty_at(price),
        }
    }

    /// Number of levels held on a side.
    #[must_use]
    pub fn len(&self, side: Side) -> usize {
        match side {
            Side::Buy => self.bids.len(),
            Side::Sell => self.asks.len(),
        }
    }

    /// `true` when both sides are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bids.len() == 0 && self.asks.len() == 0
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

    /// Times a side was repacked because its blocks were fragmented (each costs O(levels)).
    #[must_use]
    pub const fn repacks(&self) -> u64 {
        self.bids.blocks.repacks + self.asks.blocks.repacks
    }

    /// Times a side's window was moved to follow the best (each costs O(levels)).
    #[must_use]
    pub const fn recenters(&self) -> u64 {
        self.bids.recenters + self.asks.recenters
    }

    /// The step of the bid and ask windows in raw price units: the configured tick, or the
    /// coarser grid the last snapshot's levels all lay on (0 without a window).
    #[must_use]
    pub const fn window_grid(&self) -> (u64, u64) {
        (self.bids.grid(), self.asks.grid())
    }

    /// `true` if the sides have a window (see [`Self::with_window`]).
    #[must_use]
    pub const fn has_window(&self) -> bool {
        self.bids.window.is_on()
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
    use super::window::TickDiv;
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
    /// The model of one side holding at most `cap` levels: sets `price` to `qty`; `false` when
    /// the level was not stored (a full side, and worse than every level held).
    fn model_set(
        map: &mut BTreeMap<i64, i64>,
        bid: bool,
        cap: usize,
        price: i64,
        qty: i64,
    ) -> bool {
        // Worst = lowest bid / highest ask.
        let worst = if bid {
            map.keys().next().copied()
        } else {
            map.keys().next_back().copied()
        };
        if qty == 0 {
            map.remove(&price);
        } else if map.contains_key(&price) || map.len() < cap {
            map.insert(price, qty);
        } else if worst.is_some_and(|w| if bid { price < w } else { price > w }) {
            return false;
        } else {
            map.remove(&worst.expect("full map"));
            map.insert(price, qty);
        }
        true
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

    /// Splits until every block is in use, then one more split: the side repacks and still
    /// matches a `BTreeMap` model.
    #[test]
    fn fragmented_side_repacks_and_keeps_every_level() {
        let cap = 256;
        let mut book = OrderBook::new(cap);
        let mut model = BTreeMap::new();
        let set = |book: &mut OrderBook, model: &mut BTreeMap<i64, i64>, price: i64, qty: i64| {
            book.apply(&d(Side::Buy, price, qty, L));
            if qty == 0 {
                model.remove(&price);
            } else {
                model.insert(price, qty);
            }
        };
        book.apply(&d(Side::Buy, 1, 0, B | L));
        // Ascending appends leave eight blocks of 32.
        for k in 1..=256 {
            set(&mut book, &mut model, 100 * k, k);
        }
        // Seven blocks: six of 32 levels and [193, 256] of 64. Thin everything above 96 to
        // one or two levels per block: still seven blocks, 101 levels.
        for k in 97..=256 {
            if k % 32 != 1 {
                set(&mut book, &mut model, 100 * k, 0);
            }
        }
        // 33 inserts inside a 32-level block split it: blocks 0, 1 and 2 use the last three
        // free blocks (10 = 256 / 32 + 2), then the lower half of block 0 fills again and
        // finds none free: the side repacks.
        for base in [2, 34, 66, 1] {
            for extra in 1..=33 {
                set(&mut book, &mut model, 100 * base + extra, 7);
            }
        }
        assert_eq!(book.repacks(), 1, "TC1 the side repacked once");
        assert_eq!(book.truncated(), 0);
        let got: Vec<(i64, i64)> = book
            .depth(Side::Buy)
            .map(|l| (l.price.raw() / 100_000_000, l.qty.raw() / 100_000_000))
            .collect();
        let want: Vec<(i64, i64)> = model.iter().rev().map(|(p, q)| (*p, *q)).collect();
        assert_eq!(got, want, "TC2 every level survives the repack in order");
        set(&mut book, &mut model, 100 * 300, 1);
        set(&mut book, &mut model, 101, 0);
        assert_eq!(
            book.best_bid().map(|l| l.price),
            Some(Price::from_units(30_000))
        );
        assert_eq!(
            book.qty_at(Side::Buy, Price::from_units(100 * 34 + 5)),
            Qty::from_units(7)
        );
    }

    proptest::proptest! {
        #[test]
        fn prop_book_matches_btreemap(
            window in proptest::sample::select(vec![0usize, 64, 4096]),
            ops in proptest::collection::vec((proptest::bool::ANY, 1i64..60, 0i64..4), 1..300),
        ) {
            let mut book = OrderBook::with_window(64, Price::from_units(1), window);
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

        /// Deep books: splits, frees, repacks and the depth limit against a `BTreeMap` model
        /// that keeps the best `cap` levels.
        #[test]
        fn prop_deep_book_matches_model(
            cap in proptest::sample::select(vec![64usize, 100, 256, 512]),
            window in proptest::sample::select(vec![0usize, 64, 256]),
            tick in 1i64..4,
            ops in proptest::collection::vec((proptest::bool::ANY, 1i64..3000, 0i64..3), 1..4000),
        ) {
            // With ticks of 2 or 3 units, off-grid prices inside the window's range go to the
            // blocks.
            let mut book = OrderBook::with_window(cap, Price::from_units(tick), window);
            let mut model: [BTreeMap<i64, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
            let mut truncated = 0u64;
            book.apply(&d(Side::Buy, 1, 0, B | L));
            for (buy, price, qty) in ops {
                let side = if buy { Side::Buy } else { Side::Sell };
                book.apply(&d(side, price, qty, L));
                truncated += u64::from(!model_set(&mut model[usize::from(buy)], buy, cap, price, qty));
            }
            let got_b: Vec<(i64, i64)> = book.depth(Side::Buy).map(|l| (l.price.raw() / 100_000_000, l.qty.raw() / 100_000_000)).collect();
            let want_b: Vec<(i64, i64)> = model[1].iter().rev().map(|(p, q)| (*p, *q)).collect();
            proptest::prop_assert_eq!(got_b, want_b);
            let got_a: Vec<(i64, i64)> = book.depth(Side::Sell).map(|l| (l.price.raw() / 100_000_000, l.qty.raw() / 100_000_000)).collect();
            let want_a: Vec<(i64, i64)> = model[0].iter().map(|(p, q)| (*p, *q)).collect();
            proptest::prop_assert_eq!(got_a, want_a);
            proptest::prop_assert_eq!(book.truncated(), truncated);
            for price in [1i64, 7, 500, 1499, 2999] {
                let want = model[1].get(&price).copied().unwrap_or(0);
                proptest::prop_assert_eq!(book.qty_at(Side::Buy, Price::from_units(price)).raw() / 100_000_000, want);
            }
            proptest::prop_assert_eq!(book.best_bid().map(|l| l.price.raw() / 100_000_000), model[1].keys().next_back().copied());
            proptest::prop_assert_eq!(book.best_ask().map(|l| l.price.raw() / 100_000_000), model[0].keys().next().copied());
        }

        /// Raw prices anywhere in `i64` (near both ends too), ticks of 1 to 1,000 raw units,
        /// small windows that move often, snapshots that clear the book, and a depth limit:
        /// the book against a `BTreeMap` model, checked after every step.
        #[test]
        fn prop_windowed_book_matches_model(
            base in proptest::sample::select(vec![i64::MIN, i64::MIN / 2, -50_000, 0, 6_000_000_000_000, i64::MAX - 200_000]),
            tick in proptest::sample::select(vec![1i64, 3, 10, 1000]),
            window in proptest::sample::select(vec![64usize, 128]),
            cap in proptest::sample::select(vec![16usize, 64, 1024]),
            ops in proptest::collection::vec((0u8..20, 0i64..400, 0i64..3, proptest::bool::ANY), 1..600),
        ) {
            let mut book = OrderBook::with_window(cap, Price(tick), window);
            proptest::prop_assert!(book.has_window());
            // model[0]: asks, model[1]: bids; raw price -> raw qty.
            let mut model: [BTreeMap<i64, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
            let mut truncated = 0u64;
            let mut drift = 0i64;
            book.apply(&BookDelta { instrument: InstrumentIndex(0), side: Side::Buy, flags: DeltaFlags(B | L), price: Price(base.saturating_add(1)), qty: Qty(0), update_id: 1 });
            for (op, off, qty, buy) in ops {
                if op == 0 {
                    // A snapshot of 40 levels a side on a grid four ticks coarse (when `base`
                    // is on it): the window may learn that grid, and the fine-grained deltas
                    // after it fall between its steps.
                    model = [BTreeMap::new(), BTreeMap::new()];
                    let coarse = tick * 4;
                    let center = base.saturating_add((drift + off).saturating_mul(tick));
                    let center = center.saturating_sub(center.wrapping_sub(base).rem_euclid(coarse));
                    for k in 0..80i64 {
                        let buy = k < 40;
                        let price = if buy {
                            center.saturating_sub(coarse * k)
                        } else {
                            center.saturating_add(coarse * (k - 39))
                        };
                        let flags = if k == 0 { B } else if k == 79 { L } else { 0 };
                        let side = if buy { Side::Buy } else { Side::Sell };
                        book.apply(&BookDelta { instrument: InstrumentIndex(0), side, flags: DeltaFlags(flags), price: Price(price), qty: Qty(k + 1), update_id: 1 });
                        truncated += u64::from(!model_set(&mut model[usize::from(buy)], buy, cap, price, k + 1));
                    }
                    continue;
                }
                // Mostly on the grid, around a price that wanders by whole windows.
                if op == 1 { drift += 37; }
                if op == 2 { drift -= 41; }
                let ticks = drift + off;
                let price = if op == 3 {
                    base.saturating_add(ticks.saturating_mul(tick)).saturating_add(1)
                } else {
                    base.saturating_add(ticks.saturating_mul(tick))
                };
                let side = if buy { Side::Buy } else { Side::Sell };
                book.apply(&BookDelta { instrument: InstrumentIndex(0), side, flags: DeltaFlags(L), price: Price(price), qty: Qty(qty), update_id: 1 });
                truncated += u64::from(!model_set(&mut model[usize::from(buy)], buy, cap, price, qty));
                let got_b: Vec<(i64, i64)> = book.depth(Side::Buy).map(|l| (l.price.raw(), l.qty.raw())).collect();
                let want_b: Vec<(i64, i64)> = model[1].iter().rev().map(|(p, q)| (*p, *q)).collect();
                proptest::prop_assert_eq!(got_b, want_b);
                let got_a: Vec<(i64, i64)> = book.depth(Side::Sell).map(|l| (l.price.raw(), l.qty.raw())).collect();
                let want_a: Vec<(i64, i64)> = model[0].iter().map(|(p, q)| (*p, *q)).collect();
                proptest::prop_assert_eq!(got_a, want_a);
                proptest::prop_assert_eq!(book.best_bid().map(|l| (l.price.raw(), l.qty.raw())), model[1].iter().next_back().map(|(p, q)| (*p, *q)));
                proptest::prop_assert_eq!(book.best_ask().map(|l| (l.price.raw(), l.qty.raw())), model[0].iter().next().map(|(p, q)| (*p, *q)));
                proptest::prop_assert_eq!((book.len(Side::Buy), book.len(Side::Sell)), (model[1].len(), model[0].len()));
                proptest::prop_assert_eq!(book.qty_at(side, Price(price)).raw(), model[usize::from(buy)].get(&price).copied().unwrap_or(0));
            }
            proptest::prop_assert_eq!(book.truncated(), truncated);
        }
    }

    #[test]
    fn tick_division_table() {
        for d in [
            1u64,
            2,
            3,
            7,
            10,
            64,
            1_000_000,
            10_000_000,
            123_456_789,
            1 << 40,
            (1 << 46) + 1,
        ] {
            for slots in [64u64, 32_768, 1 << 16] {
                let Some(div) = TickDiv::new(d, slots) else {
                    assert!(slots * d > 1 << 62, "d {d} slots {slots} refused");
                    continue;
                };
                let span = slots * d;
                for n in [
                    0,
                    1,
                    d - 1,
                    d,
                    d + 1,
                    span / 2,
                    span - d - 1,
                    span - d,
                    span - 1,
                    span,
                    span + d,
                    1 << 63,
                    u64::MAX - d + 1,
                    u64::MAX,
                ] {
                    let want = (n % d == 0 && n / d < slots).then_some(n / d);
                    let got = Some(div.quotient(n)).filter(|&q| q < slots);
                    assert_eq!(got, want, "d {d} slots {slots} n {n}");
                }
            }
        }
        assert!(TickDiv::new(0, 64).is_none());
        assert!(TickDiv::new(1 << 57, 64).is_none());
    }

    proptest::proptest! {
        /// The exact division against the hardware's: a slot exactly for the multiples of
        /// the tick below the span, and then the right one.
        #[test]
        fn prop_tick_division_matches_hardware(
            d in proptest::prop_oneof![1u64..(1 << 40), proptest::strategy::Strategy::prop_map(0u32..40, |k| 1u64 << k), proptest::strategy::Strategy::prop_map(1u64..1000, |k| k * 10_000_000)],
            slots_log in 6u32..21,
            n in proptest::prop_oneof![proptest::num::u64::ANY, proptest::strategy::Strategy::prop_map(0u64..(1 << 20), |k| k.wrapping_mul(10_000_000))],
            multiple in 0u64..(1 << 21),
        ) {
            let slots = 1u64 << slots_log;
            if let Some(div) = TickDiv::new(d, slots) {
                for n in [n, multiple.wrapping_mul(d), multiple.wrapping_mul(d).wrapping_add(1)] {
                    let want = (n % d == 0 && n / d < slots).then_some(n / d);
                    proptest::prop_assert_eq!(Some(div.quotient(n)).filter(|&q| q < slots), want);
                }
            }
        }
    }

    /// The window follows a market that walks far in both directions, and holds what the
    /// blocks would: the same levels as a book without a window, after every message.
    #[test]
    fn window_follows_the_market_both_ways() {
        let tick = Price::parse("0.1").unwrap();
        let mut windowed = OrderBook::with_window(512, tick, 256);
        let mut plain = OrderBook::new(512);
        let mut both = |side, price: i64, qty, flags| {
            let d = BookDelta {
                instrument: InstrumentIndex(0),
                side,
                flags: DeltaFlags(flags),
                price: Price(price * 10_000_000),
                qty: Qty(qty),
                update_id: 1,
            };
            assert_eq!(windowed.apply(&d), plain.apply(&d));
        };
        // Bids mid-19..=mid, asks mid+1..=mid+20.
        let mut mid = 600_000;
        both(Side::Buy, mid, 5, B);
        for k in 1..20 {
            both(Side::Buy, mid - k, 5, 0);
        }
        for k in 1..=20 {
            both(Side::Sell, mid + k, 5, if k == 20 { L } else { 0 });
        }
        // Up 3,000 ticks, then down 6,000, a tick per message.
        for up in std::iter::repeat_n(true, 3000).chain(std::iter::repeat_n(false, 6000)) {
            if up {
                both(Side::Buy, mid + 1, 5, 0);
                both(Side::Buy, mid - 19, 0, 0);
                both(Side::Sell, mid + 21, 5, 0);
                both(Side::Sell, mid + 1, 0, L);
                mid += 1;
            } else {
                both(Side::Buy, mid, 0, 0);
                both(Side::Buy, mid - 20, 5, 0);
                both(Side::Sell, mid + 20, 0, 0);
                both(Side::Sell, mid, 5, L);
                mid -= 1;
            }
        }
        for side in [Side::Buy, Side::Sell] {
            let w: Vec<Level> = windowed.depth(side).collect();
            let p: Vec<Level> = plain.depth(side).collect();
            assert_eq!(w, p, "{side:?} depth");
            assert_eq!(w.len(), 20, "{side:?} keeps 20 levels");
        }
        assert_eq!(mid, 597_000);
        assert_eq!(
            windowed.best_bid().map(|l| l.price),
            Some(Price(mid * 10_000_000))
        );
        assert_eq!(
            windowed.best_ask().map(|l| l.price),
            Some(Price((mid + 1) * 10_000_000))
        );
        assert!(
            windowed.recenters() > 10,
            "the window moved: {}",
            windowed.recenters()
        );
        assert!(
            windowed.recenters() < 400,
            "but not on every tick: {}",
            windowed.recenters()
        );
        assert_eq!(plain.recenters(), 0);
    }

    /// A snapshot whose levels all lie on 0.1 steps teaches a 0.01-tick window to step by
    /// 0.1; prices between those steps still land in the right place; a snapshot on 0.01
    /// steps (or too small to tell) sets it back.
    #[test]
    fn window_learns_the_grid_of_the_snapshot() {
        let cent = 1_000_000; // 0.01 in raw units
        let mut windowed = OrderBook::with_window(4096, Price(cent), 1024);
        let mut plain = OrderBook::new(4096);
        // Applies a delta to both books; returns the windowed book's grids and whether the
        // two books hold the same levels.
        let mut both = |side, cents: i64, qty, flags| {
            let d = BookDelta {
                instrument: InstrumentIndex(0),
                side,
                flags: DeltaFlags(flags),
                price: Price(cents * cent),
                qty: Qty(qty),
                update_id: 1,
            };
            assert_eq!(windowed.apply(&d), plain.apply(&d));
            let same = [Side::Buy, Side::Sell].into_iter().all(|s| {
                windowed.depth(s).eq(plain.depth(s))
                    && windowed.len(s) == plain.len(s)
                    && windowed.qty_at(s, d.price) == plain.qty_at(s, d.price)
            }) && (windowed.best_bid(), windowed.best_ask())
                == (plain.best_bid(), plain.best_ask());
            (windowed.window_grid(), same)
        };
        // A snapshot of `n` levels a side `step` cents apart; returns the grids after it.
        let snapshot =
            |both: &mut dyn FnMut(Side, i64, i64, u8) -> ((u64, u64), bool), step: i64, n: i64| {
                for k in 0..n {
                    assert!(
                        both(
                            Side::Buy,
                            6_000_000 - step * k,
                            k + 1,
                            if k == 0 { B } else { 0 }
                        )
                        .1
                    );
                }
                for k in 0..n - 1 {
                    assert!(both(Side::Sell, 6_000_010 + step * k, k + 1, 0).1);
                }
                let (grid, same) = both(Side::Sell, 6_000_010 + step * (n - 1), n, L);
                assert!(same, "after the snapshot");
                grid
            };
        let c = cent as u64;
        assert_eq!(
            both(Side::Buy, 1, 0, 0),
            ((c, c), true),
            "TC0 configured tick"
        );
        assert_eq!(
            snapshot(&mut both, 10, 40),
            (10 * c, 10 * c),
            "TC1 learned 0.1"
        );
        // A new level between the learned steps sets that side back to the tick.
        assert_eq!(
            both(Side::Buy, 5_999_995, 3, L),
            ((c, 10 * c), true),
            "TC2 bids"
        );
        assert_eq!(
            both(Side::Sell, 6_000_015, 3, L),
            ((c, c), true),
            "TC2 asks"
        );
        for cents in [6_000_001, 5_999_001] {
            assert!(both(Side::Buy, cents, 3, L).1, "TC3 {cents}");
        }
        assert!(both(Side::Buy, 6_000_001, 0, L).1, "TC3");
        assert_eq!(snapshot(&mut both, 5, 40).0, 5 * c, "TC4 learned 0.05");
        assert_eq!(snapshot(&mut both, 1, 40).0, c, "TC5 back to the tick");
        // Too few levels to tell (10 a side on 0.2 steps): the grid stays as it is.
        assert_eq!(snapshot(&mut both, 10, 40).0, 10 * c);
        assert_eq!(
            snapshot(&mut both, 20, 10).0,
            10 * c,
            "TC6 10 levels a side"
        );
        // Off the learned steps but beyond the window's span: kept in the blocks, grid kept.
        let far = 6_000_000 - 10 * 1024 * 10 - 3;
        assert_eq!(both(Side::Buy, far, 3, L), ((10 * c, 10 * c), true), "TC7");
        for cents in [5_999_995, 6_000_001, 5_999_001, 6_000_015] {
            let side = if cents < 6_000_010 {
                Side::Buy
            } else {
                Side::Sell
            };
            assert!(both(side, cents, 3, L).1, "TC8 {cents}");
        }
        assert_eq!(both(Side::Buy, 1, 0, 0).0, (c, c), "TC8 back to the tick");
    }

    #[test]
    fn gcd_table() {
        for (a, b, g) in [
            (0, 0, 0),
            (0, 7, 7),
            (12, 0, 12),
            (12, 18, 6),
            (10_000_000, 61_496_500_000_000, 10_000_000),
            (1 << 40, 3 << 20, 1 << 20),
            (17, 5, 1),
        ] {
            assert_eq!(gcd(a, b), g, "gcd({a}, {b})");
            assert_eq!(gcd(b, a), g);
        }
    }
}
