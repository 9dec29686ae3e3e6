//! The dense store of a book side: a tick-indexed window around the best.

use super::{touched_zeros, MAX_WINDOW};
use crate::fixed::Price;

/// Division by a side's fixed tick `d`, for the multiples of `d` only: with `d = 2^t · o`
/// (`o` odd) and `inv` the inverse of `o` modulo 2^64, `n · inv` rotated right by `t` is
/// `n / d` when `d` divides `n`, and above `(2^64 − 1) / d` when it does not (Granlund and
/// Montgomery's exact division; Hacker's Delight §10-16). One multiply, one rotate and one
/// compare find a price's slot and check that it is on the grid; a hardware 64-bit division
/// costs tens of cycles.
#[derive(Clone, Copy, Debug)]
pub(super) struct TickDiv {
    pub(super) d: u64,
    pub(super) inv: u64,
    pub(super) t: u32,
}

impl TickDiv {
    /// `None` when `d` or `slots` is 0 or `slots · d` exceeds 2^62 (the window's span must
    /// fit an `i64` with room to spare).
    pub(super) fn new(d: u64, slots: u64) -> Option<Self> {
        if d == 0 || slots == 0 || slots.checked_mul(d)? > 1 << 62 {
            return None;
        }
        let t = d.trailing_zeros();
        let o = d >> t;
        // Newton's iteration doubles the correct low bits: 3 (any odd o is its own inverse
        // modulo 8), then 6, 12, 24, 48, 96.
        let mut inv = o;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(o.wrapping_mul(inv)));
        }
        Some(Self { d, inv, t })
    }

    /// `n / d` when `d` divides `n`; otherwise a value above `(2^64 − 1) / d`, so above any
    /// slot index.
    #[inline(always)]
    pub(super) const fn quotient(self, n: u64) -> u64 {
        n.wrapping_mul(self.inv).rotate_right(self.t)
    }
}

/// The dense store of one side: slot `i` is the key `lo + i·d`.
#[derive(Clone, Debug)]
pub(super) struct Window {
    /// Key of slot 0; `lo + span - 1` never overflows, so slot order is key order.
    pub(super) lo: i64,
    /// Steps by `div.d` (the window is off when it has no slots).
    pub(super) div: TickDiv,
    /// Key of price 0 on this side: a key is on the tick grid when it is this plus a
    /// multiple of `d`.
    pub(super) phase: i64,
    /// The configured tick; `div.d` is a multiple of it (see [`BookSide::learn_grid`]).
    pub(super) tick: u64,
    /// A new best at or above this slot moves the window.
    pub(super) upper: usize,
    /// Quantity per slot; 0: no level.
    pub(super) qtys: Box<[i64]>,
    /// Bit `i` set: slot `i` holds a level.
    pub(super) bits: Box<[u64]>,
    /// Bit `w` set: `bits[w]` is not zero.
    pub(super) summary: Box<[u64]>,
    pub(super) len: usize,
    /// Highest held slot (meaningful when `len > 0`).
    pub(super) top: usize,
}

impl Window {
    pub(super) fn new(slots: usize, tick: Price, phase: i64) -> Self {
        let div = u64::try_from(tick.raw())
            .ok()
            .filter(|_| slots >= 64 && slots.is_power_of_two() && slots <= MAX_WINDOW)
            .and_then(|d| TickDiv::new(d, slots as u64));
        let slots = if div.is_some() { slots } else { 0 };
        let words = slots / 64;
        Self {
            lo: 0,
            div: div.unwrap_or(TickDiv { d: 1, inv: 1, t: 0 }),
            phase,
            tick: div.map_or(1, |v| v.d),
            upper: slots - slots / 8,
            qtys: touched_zeros(slots),
            bits: touched_zeros(words),
            summary: touched_zeros(words.div_ceil(64)),
            len: 0,
            top: 0,
        }
    }

    #[inline]
    pub(super) const fn is_on(&self) -> bool {
        !self.qtys.is_empty()
    }

    /// `slots · d`, the key range the window covers; 0 when it is off.
    #[inline]
    pub(super) const fn span(&self) -> u64 {
        self.div.d * self.qtys.len() as u64
    }

    /// Slot of `key`, if the window covers it and it is on the tick grid.
    #[inline(always)]
    pub(super) fn slot(&self, key: i64) -> Option<usize> {
        #[allow(
            clippy::cast_sign_loss,
            reason = "a negative offset is out of the window"
        )]
        let off = key.checked_sub(self.lo)? as u64;
        // A negative offset is at least 2^63 here: its quotient is at least 2^63 / d, above
        // every slot since `slots · d <= 2^62`.
        let i = self.div.quotient(off);
        #[allow(clippy::cast_possible_truncation, reason = "i < slots")]
        (i < self.qtys.len() as u64).then_some(i as usize)
    }

    #[inline]
    pub(super) fn key(&self, i: usize) -> i64 {
        #[allow(clippy::cast_possible_wrap, reason = "i·d < span <= 2^62")]
        let off = (i as u64 * self.div.d) as i64;
        self.lo + off
    }

    /// `key` is on the window's grid (steps of `div.d`).
    pub(super) fn on_grid(&self, key: i64) -> bool {
        self.on_steps_of(key, self.div.d)
    }

    /// `key` is a multiple of `step` away from price 0.
    pub(super) fn on_steps_of(&self, key: i64, step: u64) -> bool {
        #[allow(clippy::cast_possible_wrap, reason = "step <= 2^56")]
        let d = step as i64;
        key.checked_sub(self.phase)
            .is_some_and(|k| k.rem_euclid(d) == 0)
    }

    /// The window stepped by a learned grid (see [`BookSide::learn_grid`]) and `key`, on the
    /// configured tick's grid and within its span, falls between two of its steps.
    pub(super) fn between_learned_steps(&self, key: i64) -> bool {
        self.div.d != self.tick
            && key
                .checked_sub(self.lo)
                .is_some_and(|off| off >= 0 && off.unsigned_abs() < self.span())
            && self.on_steps_of(key, self.tick)
    }

    /// The quantity held in slot `i`, 0 when it holds no level (a level whose quantity
    /// becomes 0 is removed, so 0 never means a held level): the update path reads only the
    /// slot it writes.
    #[inline(always)]
    pub(super) fn held(&self, i: usize) -> i64 {
        self.qtys[i]
    }

    #[inline]
    pub(super) fn insert(&mut self, i: usize, qty: i64) {
        let w = i >> 6;
        if self.bits[w] == 0 {
            self.summary[w >> 6] |= 1 << (w & 63);
        }
        self.bits[w] |= 1 << (i & 63);
        self.qtys[i] = qty;
        if self.len == 0 || i > self.top {
            self.top = i;
        }
        self.len += 1;
    }

    #[inline]
    pub(super) fn remove(&mut self, i: usize) {
        let w = i >> 6;
        self.qtys[i] = 0;
        self.bits[w] &= !(1 << (i & 63));
        if self.bits[w] == 0 {
            self.summary[w >> 6] &= !(1 << (w & 63));
        }
        self.len -= 1;
        if i == self.top {
            if let Some(t) = self.highest_upto(i) {
                self.top = t;
            }
        }
    }

    /// Highest held slot at or below `i`.
    #[inline]
    pub(super) fn highest_upto(&self, i: usize) -> Option<usize> {
        let w = i >> 6;
        let m = self.bits[w] & (u64::MAX >> (63 - (i & 63)));
        if m != 0 {
            return Some(w << 6 | (63 - m.leading_zeros() as usize));
        }
        let w = w.checked_sub(1)?;
        let mut s = w >> 6;
        let mut m = self.summary[s] & (u64::MAX >> (63 - (w & 63)));
        loop {
            if m != 0 {
                let w = s << 6 | (63 - m.leading_zeros() as usize);
                return Some(w << 6 | (63 - self.bits[w].leading_zeros() as usize));
            }
            s = s.checked_sub(1)?;
            m = self.summary[s];
        }
    }

    /// Lowest held slot.
    pub(super) fn lowest(&self) -> Option<usize> {
        let (s, m) = self.summary.iter().enumerate().find(|(_, m)| **m != 0)?;
        let w = s << 6 | m.trailing_zeros() as usize;
        Some(w << 6 | self.bits[w].trailing_zeros() as usize)
    }

    pub(super) fn clear(&mut self) {
        for s in 0..self.summary.len() {
            let mut m = self.summary[s];
            while m != 0 {
                let w = s << 6 | m.trailing_zeros() as usize;
                let mut b = self.bits[w];
                while b != 0 {
                    self.qtys[w << 6 | b.trailing_zeros() as usize] = 0;
                    b &= b - 1;
                }
                self.bits[w] = 0;
                m &= m - 1;
            }
            self.summary[s] = 0;
        }
        self.len = 0;
    }

    /// Puts the (empty) window's three-quarter mark at `around`, on the tick grid.
    pub(super) fn place(&mut self, around: i64) {
        debug_assert_eq!(self.len, 0);
        let d = i128::from(self.div.d);
        let slots = i128::from(self.span());
        let a = i128::from(around);
        let aligned = a - (a - i128::from(self.phase)).rem_euclid(d);
        // `slots` is a multiple of 4 ticks.
        let mut lo = aligned - slots / 4 * 3;
        let (min, max) = (i128::from(i64::MIN), i128::from(i64::MAX));
        if lo < min {
            lo += (min - lo + d - 1) / d * d;
        }
        if lo + slots - 1 > max {
            lo -= (lo + slots - 1 - max + d - 1) / d * d;
        }
        #[allow(clippy::cast_possible_truncation, reason = "clamped to i64 above")]
        {
            self.lo = lo as i64;
        }
    }

    /// Held levels `(key, qty)`, best (highest key) first.
    pub(super) fn iter_desc(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let mut next = (self.len > 0).then_some(self.top);
        std::iter::from_fn(move || {
            let i = next?;
            next = i.checked_sub(1).and_then(|j| self.highest_upto(j));
            Some((self.key(i), self.qtys[i]))
        })
    }

    /// Held levels `(key, qty)`, lowest key first.
    pub(super) fn iter_asc(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.bits.iter().enumerate().flat_map(move |(w, &b)| {
            let mut b = b;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let i = w << 6 | b.trailing_zeros() as usize;
                b &= b - 1;
                Some((self.key(i), self.qtys[i]))
            })
        })
    }
}
