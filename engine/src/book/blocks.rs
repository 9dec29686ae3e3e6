//! The sparse store of a book side: fixed-size blocks of sorted levels.

use super::NEVER_READ;

/// Levels per block.
pub(super) const BLOCK: usize = 64;
/// Levels per block after a repack.
pub(super) const REPACK_FILL: usize = BLOCK * 3 / 4;

/// The sparse store of one side. Keys order levels worst-first (see [`BookSide`]).
#[derive(Clone, Debug)]
pub(super) struct Blocks {
    /// Block storage: block `b` holds its keys in `keys[b * BLOCK..][..lens[b]]`, sorted, and
    /// their quantities at the same indices of `qtys` (a search reads only keys).
    pub(super) keys: Box<[i64]>,
    pub(super) qtys: Box<[i64]>,
    pub(super) lens: Box<[u16]>,
    /// Blocks in use, worst first, and each one's lowest key (`mins[i]` for `order[i]`).
    pub(super) order: Box<[u16]>,
    pub(super) mins: Box<[i64]>,
    pub(super) used: usize,
    /// Free block ids (a stack).
    pub(super) free: Box<[u16]>,
    pub(super) nfree: usize,
    /// Levels held.
    pub(super) len: usize,
    /// Room for every level of the side during a repack or a recentring.
    pub(super) scratch: Box<[(i64, i64)]>,
    pub(super) repacks: u64,
    /// Index into `order` of the block the last `find` used (a hint, checked before use).
    pub(super) finger: usize,
}

impl Blocks {
    pub(super) fn new(capacity: usize) -> Self {
        // After a repack `len / REPACK_FILL` blocks are in use, so at least one is free.
        let blocks = capacity.div_ceil(BLOCK / 2) + 2;
        assert!(blocks <= usize::from(u16::MAX), "book too deep");
        // Storage is filled with a non-zero pattern (never read before it is written): a zero
        // fill would come from lazily mapped zero pages and fault on the hot path.
        Self {
            keys: vec![NEVER_READ; blocks * BLOCK].into_boxed_slice(),
            qtys: vec![NEVER_READ; blocks * BLOCK].into_boxed_slice(),
            lens: vec![0; blocks].into_boxed_slice(),
            order: vec![0; blocks].into_boxed_slice(),
            mins: vec![0; blocks].into_boxed_slice(),
            used: 0,
            #[allow(clippy::cast_possible_truncation, reason = "blocks <= u16::MAX")]
            free: (0..blocks).rev().map(|b| b as u16).collect(),
            nfree: blocks,
            len: 0,
            scratch: vec![(NEVER_READ, NEVER_READ); capacity].into_boxed_slice(),
            repacks: 0,
            finger: 0,
        }
    }

    /// Index into `order` of the block that holds or would hold `key`.
    #[inline]
    pub(super) fn block_for(&self, key: i64) -> usize {
        match self.mins[..self.used].binary_search(&key) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// [`Self::block_for`], trying the block found last first: a depth message lists its
    /// levels in price order, so consecutive levels mostly share a block.
    #[inline]
    pub(super) fn block_for_near(&mut self, key: i64) -> usize {
        let f = self.finger;
        if f < self.used && self.mins[f] <= key && (f + 1 == self.used || key < self.mins[f + 1]) {
            return f;
        }
        let i = self.block_for(key);
        self.finger = i;
        i
    }

    #[inline]
    pub(super) fn block(&self, b: u16) -> (usize, usize) {
        let start = usize::from(b) * BLOCK;
        (start, start + usize::from(self.lens[usize::from(b)]))
    }

    /// Slot of `key` in the block at `keys[start..end]` (`Ok`), or where it would go (`Err`).
    #[inline]
    pub(super) fn find_in(&self, start: usize, end: usize, key: i64) -> Result<usize, usize> {
        self.keys[start..end].binary_search(&key)
    }

    /// `(index into order, slot)` of `key` (`Ok`), or where it would be inserted (`Err`).
    #[inline]
    pub(super) fn find(&mut self, key: i64) -> Result<(usize, usize), (usize, usize)> {
        if self.used == 0 {
            return Err((0, 0));
        }
        let i = self.block_for_near(key);
        let (start, end) = self.block(self.order[i]);
        self.find_in(start, end, key)
            .map(|j| (i, j))
            .map_err(|j| (i, j))
    }

    pub(super) fn get(&self, key: i64) -> Option<i64> {
        if self.used == 0 {
            return None;
        }
        let (start, end) = self.block(self.order[self.block_for(key)]);
        self.find_in(start, end, key)
            .ok()
            .map(|j| self.qtys[start + j])
    }

    #[inline]
    pub(super) fn set_qty(&mut self, i: usize, j: usize, qty: i64) {
        let start = usize::from(self.order[i]) * BLOCK;
        self.qtys[start + j] = qty;
    }

    /// Inserts a key known to be absent, finding its place.
    pub(super) fn insert(&mut self, key: i64, qty: i64) {
        match self.find(key) {
            Err((i, j)) => self.insert_at(i, j, key, qty),
            Ok(_) => debug_assert!(false, "insert of a held key"),
        }
    }

    /// Inserts at slot `j` of the block at `order[i]` (a new block when none is in use).
    #[inline]
    pub(super) fn insert_at(&mut self, mut i: usize, mut j: usize, key: i64, qty: i64) {
        if self.used == 0 {
            let b = self.take_block();
            self.order[0] = b;
            self.used = 1;
        }
        let mut b = self.order[i];
        if usize::from(self.lens[usize::from(b)]) == BLOCK {
            if self.nfree == 0 {
                self.repack();
                self.insert(key, qty);
                return;
            }
            // Split: the upper half moves to a new block placed right after this one.
            let nb = self.take_block();
            let (from, to) = (usize::from(b) * BLOCK, usize::from(nb) * BLOCK);
            let half = BLOCK / 2;
            self.keys.copy_within(from + half..from + BLOCK, to);
            self.qtys.copy_within(from + half..from + BLOCK, to);
            #[allow(clippy::cast_possible_truncation, reason = "BLOCK < u16::MAX")]
            {
                self.lens[usize::from(b)] = half as u16;
                self.lens[usize::from(nb)] = half as u16;
            }
            self.order.copy_within(i + 1..self.used, i + 2);
            self.mins.copy_within(i + 1..self.used, i + 2);
            self.order[i + 1] = nb;
            self.mins[i + 1] = self.keys[to];
            self.used += 1;
            if j > half {
                i += 1;
                j -= half;
                b = nb;
            }
        }
        let (start, end) = self.block(b);
        self.keys.copy_within(start + j..end, start + j + 1);
        self.qtys.copy_within(start + j..end, start + j + 1);
        self.keys[start + j] = key;
        self.qtys[start + j] = qty;
        self.lens[usize::from(b)] += 1;
        if j == 0 {
            self.mins[i] = key;
        }
        self.len += 1;
    }

    /// Removes slot `j` of the block at `order[i]`, freeing the block when it empties.
    #[inline]
    pub(super) fn remove_at(&mut self, i: usize, j: usize) {
        let b = self.order[i];
        let (start, end) = self.block(b);
        self.keys.copy_within(start + j + 1..end, start + j);
        self.qtys.copy_within(start + j + 1..end, start + j);
        self.lens[usize::from(b)] -= 1;
        self.len -= 1;
        if self.lens[usize::from(b)] == 0 {
            self.order.copy_within(i + 1..self.used, i);
            self.mins.copy_within(i + 1..self.used, i);
            self.used -= 1;
            self.free[self.nfree] = b;
            self.nfree += 1;
        } else if j == 0 {
            self.mins[i] = self.keys[start];
        }
    }

    pub(super) fn take_block(&mut self) -> u16 {
        self.nfree -= 1;
        let b = self.free[self.nfree];
        self.lens[usize::from(b)] = 0;
        b
    }

    /// Rewrites every block at `REPACK_FILL` levels, freeing the rest.
    #[cold]
    pub(super) fn repack(&mut self) {
        self.repacks += 1;
        let mut all = std::mem::take(&mut self.scratch);
        let mut n = 0;
        for (slot, level) in all.iter_mut().zip(self.iter_asc()) {
            *slot = level;
            n += 1;
        }
        self.load(&all[..n]);
        self.scratch = all;
    }

    /// Replaces the contents with `levels` (sorted by key, distinct, at most the capacity),
    /// `REPACK_FILL` to a block.
    pub(super) fn load(&mut self, levels: &[(i64, i64)]) {
        self.clear();
        for chunk in levels.chunks(REPACK_FILL) {
            let b = self.take_block();
            let start = usize::from(b) * BLOCK;
            for (k, &(key, qty)) in chunk.iter().enumerate() {
                self.keys[start + k] = key;
                self.qtys[start + k] = qty;
            }
            #[allow(clippy::cast_possible_truncation, reason = "REPACK_FILL < u16::MAX")]
            {
                self.lens[usize::from(b)] = chunk.len() as u16;
            }
            self.order[self.used] = b;
            self.mins[self.used] = chunk[0].0;
            self.used += 1;
        }
        self.len = levels.len();
    }

    /// Lowest key held.
    #[inline]
    pub(super) fn min_key(&self) -> Option<i64> {
        (self.used > 0).then(|| self.mins[0])
    }

    /// Highest `(key, qty)` held.
    #[inline]
    pub(super) fn max(&self) -> Option<(i64, i64)> {
        let b = *self.order[..self.used].last()?;
        let (_, end) = self.block(b);
        Some((self.keys[end - 1], self.qtys[end - 1]))
    }

    pub(super) fn clear(&mut self) {
        for i in 0..self.used {
            self.free[self.nfree] = self.order[i];
            self.nfree += 1;
        }
        self.used = 0;
        self.len = 0;
        self.finger = 0;
    }

    pub(super) fn iter_asc(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.order[..self.used].iter().flat_map(move |&b| {
            let (start, end) = self.block(b);
            (start..end).map(move |k| (self.keys[k], self.qtys[k]))
        })
    }

    pub(super) fn iter_desc(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.order[..self.used].iter().rev().flat_map(move |&b| {
            let (start, end) = self.block(b);
            (start..end)
                .rev()
                .map(move |k| (self.keys[k], self.qtys[k]))
        })
    }
}
