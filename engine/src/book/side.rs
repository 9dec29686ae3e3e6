//! One side of a book: the window and the blocks together.

use super::blocks::Blocks;
use super::window::{TickDiv, Window};
use super::{gcd, Level};
use crate::event::Side;
use crate::fixed::{Price, Qty};

/// One side of a book. Keys order levels worst-first: a bid's key is its raw price, an ask's
/// is the bitwise complement of it (order-reversing and total over `i64`), so the best level is
/// always the highest key. A key is in the window or in the blocks, never both.
#[derive(Clone, Debug)]
pub(super) struct BookSide {
    pub(super) window: Window,
    pub(super) blocks: Blocks,
    /// Most levels held.
    pub(super) cap: usize,
    pub(super) ask: bool,
    pub(super) recenters: u64,
}

impl BookSide {
    pub(super) fn new(capacity: usize, side: Side, tick: Price, window: usize) -> Self {
        let ask = side == Side::Sell;
        Self {
            window: Window::new(window, tick, if ask { !0 } else { 0 }),
            blocks: Blocks::new(capacity),
            cap: capacity,
            ask,
            recenters: 0,
        }
    }

    #[inline]
    pub(super) const fn key(&self, price: Price) -> i64 {
        if self.ask {
            !price.raw()
        } else {
            price.raw()
        }
    }

    #[inline]
    pub(super) const fn price(&self, key: i64) -> Price {
        Price(if self.ask { !key } else { key })
    }

    #[inline]
    pub(super) const fn len(&self) -> usize {
        self.window.len + self.blocks.len
    }

    /// Sets a level to an absolute quantity; returns `false` if it was not stored (truncated).
    #[inline(always)]
    pub(super) fn set(&mut self, price: Price, qty: Qty) -> bool {
        self.put(self.key(price), qty.raw(), true)
    }

    /// [`Self::set`] by key; `may_move`: the window may be moved first (the cold paths
    /// that just moved it pass `false`, and are never inlined, so this does not recurse
    /// inline).
    #[inline(always)]
    pub(super) fn put(&mut self, key: i64, qty: i64, may_move: bool) -> bool {
        match self.window.slot(key) {
            Some(i) => self.put_in_window(i, key, qty, may_move),
            None => self.put_outside(key, qty, may_move),
        }
    }

    /// [`Self::put`] for a key in window slot `i`; `may_move`: the window may be moved first.
    #[inline(always)]
    pub(super) fn put_in_window(&mut self, i: usize, key: i64, qty: i64, may_move: bool) -> bool {
        if self.window.held(i) != 0 {
            if qty == 0 {
                self.window.remove(i);
            } else {
                self.window.qtys[i] = qty;
            }
            return true;
        }
        if qty == 0 {
            return true;
        }
        if may_move && i >= self.window.upper && (self.window.len == 0 || i > self.window.top) {
            return self.put_recentred(key, key, qty);
        }
        if self.len() >= self.cap && !self.make_room(key) {
            return false;
        }
        self.window.insert(i, qty);
        true
    }

    /// [`Self::put`] for a key outside the window.
    #[inline(never)]
    pub(super) fn put_outside(&mut self, key: i64, qty: i64, may_move: bool) -> bool {
        match self.blocks.find(key) {
            Ok((i, j)) => {
                if qty == 0 {
                    self.blocks.remove_at(i, j);
                } else {
                    self.blocks.set_qty(i, j, qty);
                }
                true
            }
            Err(_) if qty == 0 => true,
            Err((i, j)) => {
                if may_move && self.window.is_on() {
                    if self.window.between_learned_steps(key) {
                        return self.put_unlearned(key, qty);
                    }
                    if self.window.on_grid(key) {
                        if let Some(around) = self.recenter_target(key) {
                            return self.put_recentred(around, key, qty);
                        }
                    }
                }
                if self.len() < self.cap {
                    self.blocks.insert_at(i, j, key, qty);
                } else if self.make_room(key) {
                    self.blocks.insert(key, qty);
                } else {
                    return false;
                }
                true
            }
        }
    }

    /// Moves the window to `around`, then puts the level.
    #[cold]
    #[inline(never)]
    pub(super) fn put_recentred(&mut self, around: i64, key: i64, qty: i64) -> bool {
        self.recenter(around);
        self.put(key, qty, false)
    }

    /// A new level between the steps of a learned grid: the snapshot's levels shared a
    /// coarser grid than the venue quotes, so the window goes back to the configured tick
    /// (until the next snapshot), then the level is put.
    #[cold]
    #[inline(never)]
    pub(super) fn put_unlearned(&mut self, key: i64, qty: i64) -> bool {
        if let Some(div) = TickDiv::new(self.window.tick, self.window.qtys.len() as u64) {
            self.recenters += 1;
            let around = self.best_key().unwrap_or(key);
            self.rebuild(around, div);
        }
        self.put(key, qty, false)
    }

    /// Where to move the window for a new level at `key` outside it: around `key` when it
    /// is the new best, around the best when `key` is within a quarter-window below it
    /// (the best has sunk to the window's bottom quarter or below); otherwise `None`.
    pub(super) fn recenter_target(&self, key: i64) -> Option<i64> {
        let Some(best) = self.best_key() else {
            return Some(key);
        };
        if key > best {
            return Some(key);
        }
        (i128::from(key) + i128::from(self.window.span() / 4) >= i128::from(best)).then_some(best)
    }

    /// Rebuilds the side with the window's three-quarter mark at `around`.
    pub(super) fn recenter(&mut self, around: i64) {
        self.recenters += 1;
        self.rebuild(around, self.window.div);
    }

    /// Rebuilds the side with a window stepping by `div.d` and its three-quarter mark at
    /// `around`.
    pub(super) fn rebuild(&mut self, around: i64, div: TickDiv) {
        let mut all = std::mem::take(&mut self.blocks.scratch);
        let mut n = 0;
        for (slot, level) in all
            .iter_mut()
            .zip(self.blocks.iter_asc().chain(self.window.iter_asc()))
        {
            *slot = level;
            n += 1;
        }
        self.window.clear();
        self.window.div = div;
        self.window.place(around);
        let mut rest = 0;
        for t in 0..n {
            let (key, qty) = all[t];
            if let Some(i) = self.window.slot(key) {
                self.window.insert(i, qty);
            } else {
                all[rest] = (key, qty);
                rest += 1;
            }
        }
        all[..rest].sort_unstable_by_key(|l| l.0);
        self.blocks.load(&all[..rest]);
        self.blocks.scratch = all;
    }

    /// After a snapshot: when every level held (at least 32) lies on a grid coarser than the
    /// configured tick and a multiple of it, the window steps by that grid instead, so it
    /// covers that many times the price range (a configured tick of 0.01 on a venue quoting
    /// in 0.1 steps would otherwise leave nine slots in ten unused). Otherwise it steps by
    /// the configured tick. Levels that later fall between the grid's steps go to the
    /// blocks, as off-tick prices do, until the next snapshot.
    #[cold]
    pub(super) fn learn_grid(&mut self) {
        const EVIDENCE: usize = 32;
        if !self.window.is_on() || self.len() < EVIDENCE {
            return;
        }
        let phase = i128::from(self.window.phase);
        let mut g = 0u64;
        for (key, _) in self.blocks.iter_asc().chain(self.window.iter_asc()) {
            #[allow(clippy::cast_possible_truncation, reason = "|i64 - i64| < 2^64")]
            let v = (i128::from(key) - phase).unsigned_abs() as u64;
            g = gcd(g, v);
            if g == self.window.tick {
                break;
            }
        }
        let tick = self.window.tick;
        let step = if g != 0 && g.is_multiple_of(tick) {
            g
        } else {
            tick
        };
        if step == self.window.div.d {
            return;
        }
        let Some(div) = TickDiv::new(step, self.window.qtys.len() as u64) else {
            return;
        };
        let around = self.best_key().unwrap_or(0);
        self.rebuild(around, div);
    }

    /// The window's step in raw price units (0 without a window).
    pub(super) const fn grid(&self) -> u64 {
        if self.window.is_on() {
            self.window.div.d
        } else {
            0
        }
    }

    /// Frees room for a new level at `key` on a full side by evicting the worst level;
    /// `false` (nothing evicted) when `key` is worse than every level held.
    #[inline(never)]
    pub(super) fn make_room(&mut self, key: i64) -> bool {
        let in_blocks = self.blocks.min_key();
        let in_window = if self.window.len == 0 || in_blocks.is_some_and(|k| k < self.window.lo) {
            None
        } else {
            self.window.lowest()
        };
        match (in_blocks, in_window) {
            (Some(k), w) if w.is_none_or(|w| k < self.window.key(w)) => {
                if key < k {
                    return false;
                }
                self.blocks.remove_at(0, 0);
            }
            (_, Some(w)) => {
                if key < self.window.key(w) {
                    return false;
                }
                self.window.remove(w);
            }
            _ => return false,
        }
        true
    }

    #[inline]
    pub(super) fn best_key(&self) -> Option<i64> {
        let w = (self.window.len > 0).then(|| self.window.key(self.window.top));
        match (w, self.blocks.max()) {
            (Some(w), Some((b, _))) => Some(w.max(b)),
            (w, b) => w.or(b.map(|b| b.0)),
        }
    }

    #[inline]
    pub(super) fn best(&self) -> Option<Level> {
        let w = (self.window.len > 0).then(|| {
            let t = self.window.top;
            (self.window.key(t), self.window.qtys[t])
        });
        let (key, qty) = match (w, self.blocks.max()) {
            (Some(w), Some(b)) => {
                if w.0 > b.0 {
                    w
                } else {
                    b
                }
            }
            (w, b) => w.or(b)?,
        };
        Some(Level {
            price: self.price(key),
            qty: Qty(qty),
        })
    }

    pub(super) fn qty_at(&self, price: Price) -> Qty {
        let key = self.key(price);
        let raw = match self.window.slot(key) {
            Some(i) => self.window.held(i),
            None => self.blocks.get(key).unwrap_or(0),
        };
        Qty(raw)
    }

    pub(super) fn clear(&mut self) {
        self.window.clear();
        self.blocks.clear();
    }

    pub(super) fn iter_best_first(&self) -> impl Iterator<Item = Level> + '_ {
        let mut w = self.window.iter_desc().peekable();
        let mut b = self.blocks.iter_desc().peekable();
        std::iter::from_fn(move || {
            let from_window = match (w.peek(), b.peek()) {
                (Some(x), Some(y)) => x.0 > y.0,
                (x, _) => x.is_some(),
            };
            let (key, qty) = if from_window { w.next() } else { b.next() }?;
            Some(Level {
                price: self.price(key),
                qty: Qty(qty),
            })
        })
    }
}
