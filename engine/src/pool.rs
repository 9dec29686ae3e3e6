//! Preallocated order slots with a free list. Hot path: taking and returning a slot is O(1) and
//! never allocates; exhaustion is a typed error.
//!
//! Why a slab and not the `object-pool` crate: `object_pool::Pool` guards its stack with a lock
//! and hands out RAII guards that borrow the pool, which fits neither the single-owner engine
//! thread (no locks on the loop) nor orders that outlive a borrow scope and are found again by
//! id. The criterion bench `pool` measures both: see README.md for the figures.

use crate::event::ClientOrderId;
use crate::order::{Order, OrderRequest};

/// Index of a slot in the [`OrderPool`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct OrderSlot(pub u32);

/// Why the pool refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PoolError {
    /// Every slot holds a live order.
    #[error("order pool exhausted ({capacity} slots in use)")]
    Exhausted {
        /// Pool capacity.
        capacity: u32,
    },
    /// The slot is not in use (double release, or a stale id).
    #[error("order slot {0} is not in use")]
    NotInUse(u32),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    order: Order,
    in_use: bool,
}

/// Fixed-capacity storage for live orders, owned by the engine thread.
///
/// # Allocation
/// Allocates only in [`OrderPool::new`].
///
/// # Examples
/// An exhausted pool refuses with a typed error instead of growing:
/// ```
/// use tradeloop_engine::event::Side;
/// use tradeloop_engine::fixed::{Price, Qty};
/// use tradeloop_engine::instrument::InstrumentIndex;
/// use tradeloop_engine::order::OrderRequest;
/// use tradeloop_engine::pool::{OrderPool, PoolError};
/// let mut pool = OrderPool::new(1);
/// let req = OrderRequest::limit(InstrumentIndex(0), Side::Buy, Price::from_units(1), Qty::from_units(1));
/// let first = pool.take(req, 0).unwrap();
/// assert_eq!(pool.take(req, 0), Err(PoolError::Exhausted { capacity: 1 }));
/// pool.release(first).unwrap();
/// assert!(pool.take(req, 0).is_ok());
/// ```
#[derive(Debug)]
pub struct OrderPool {
    slots: Box<[Slot]>,
    free: Box<[u32]>,
    free_len: usize,
    next_sequence: u32,
}

impl OrderPool {
    /// A pool of `capacity` slots; client ids start at sequence 1.
    ///
    /// # Panics
    /// If `capacity` is zero or above `u32::MAX` (validate config first).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_start_sequence(capacity, 1)
    }

    /// A pool whose client ids continue after `next_sequence - 1` (recovery after restart).
    ///
    /// # Panics
    /// As [`Self::new`].
    #[must_use]
    pub fn with_start_sequence(capacity: usize, next_sequence: u32) -> Self {
        assert!(capacity > 0, "order pool capacity must be positive");
        let cap = u32::try_from(capacity).expect("order pool capacity fits u32");
        let blank = Slot {
            order: Order::new(
                ClientOrderId(0),
                OrderRequest::limit(
                    crate::instrument::InstrumentIndex(0),
                    crate::event::Side::Buy,
                    crate::fixed::Price::ZERO,
                    crate::fixed::Qty::ZERO,
                ),
                0,
            ),
            in_use: false,
        };
        Self {
            slots: vec![blank; capacity].into_boxed_slice(),
            // Pop from the end: lowest slots are handed out first (warm cache lines).
            free: (0..cap).rev().collect::<Vec<_>>().into_boxed_slice(),
            free_len: capacity,
            next_sequence,
        }
    }

    /// Takes a free slot for a new order in `PendingNew` and returns the order's id.
    ///
    /// # Errors
    /// [`PoolError::Exhausted`] when every slot is in use.
    #[inline]
    pub fn take(&mut self, request: OrderRequest, now_ns: u64) -> Result<ClientOrderId, PoolError> {
        if self.free_len == 0 {
            return Err(PoolError::Exhausted {
                capacity: self.capacity(),
            });
        }
        self.free_len -= 1;
        let slot = self.free[self.free_len];
        let id = ClientOrderId::new(self.next_sequence, slot);
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let s = &mut self.slots[slot as usize];
        debug_assert!(!s.in_use, "Invariant: a free-listed slot is not in use");
        s.order = Order::new(id, request, now_ns);
        s.in_use = true;
        Ok(id)
    }

    /// The slot the next [`Self::take`] will use (its last order, or the blank it started
    /// as), if any is free. Reading it brings that slot into cache ahead of an order that
    /// must not wait (the engine's stop rehearsal).
    #[inline]
    #[must_use]
    pub fn next_free(&self) -> Option<&Order> {
        let slot = *self.free.get(self.free_len.checked_sub(1)?)?;
        self.slots.get(slot as usize).map(|s| &s.order)
    }

    /// Returns a slot to the free list.
    ///
    /// # Errors
    /// [`PoolError::NotInUse`] on a double release; the pool is unchanged.
    #[inline]
    pub fn release(&mut self, id: ClientOrderId) -> Result<(), PoolError> {
        let slot = id.slot();
        match self.slots.get_mut(slot as usize) {
            Some(s) if s.in_use && s.order.client_id == id => {
                s.in_use = false;
                debug_assert!(
                    self.free_len < self.free.len(),
                    "Invariant: free list never overflows"
                );
                self.free[self.free_len] = slot;
                self.free_len += 1;
                Ok(())
            }
            _ => Err(PoolError::NotInUse(slot)),
        }
    }

    /// The live order with this id; `None` for an unknown or recycled id.
    #[inline]
    #[must_use]
    pub fn get(&self, id: ClientOrderId) -> Option<&Order> {
        match self.slots.get(id.slot() as usize) {
            Some(s) if s.in_use && s.order.client_id == id => Some(&s.order),
            _ => None,
        }
    }

    /// Mutable access to the live order with this id.
    #[inline]
    pub fn get_mut(&mut self, id: ClientOrderId) -> Option<&mut Order> {
        match self.slots.get_mut(id.slot() as usize) {
            Some(s) if s.in_use && s.order.client_id == id => Some(&mut s.order),
            _ => None,
        }
    }

    /// The live order in `slot`, if any (walk all slots without allocating).
    #[inline]
    #[must_use]
    pub fn live_at(&self, slot: u32) -> Option<&Order> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.in_use)
            .map(|s| &s.order)
    }

    /// Every live order (in slot order).
    pub fn live(&self) -> impl Iterator<Item = &Order> {
        self.slots.iter().filter(|s| s.in_use).map(|s| &s.order)
    }

    /// Slots in use.
    #[inline]
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free_len
    }

    /// Total slots.
    #[inline]
    #[must_use]
    pub fn capacity(&self) -> u32 {
        #[allow(clippy::cast_possible_truncation, reason = "checked in new")]
        let cap = self.slots.len() as u32;
        cap
    }

    /// The sequence the next order id will carry.
    #[must_use]
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Side;
    use crate::fixed::{Price, Qty};
    use crate::instrument::InstrumentIndex;

    fn req() -> OrderRequest {
        OrderRequest::limit(
            InstrumentIndex(0),
            Side::Buy,
            Price::from_units(1),
            Qty::from_units(1),
        )
    }

    #[test]
    fn ids_are_unique_and_stale_ids_are_refused() {
        let mut pool = OrderPool::new(2);
        let a = pool.take(req(), 0).unwrap();
        pool.release(a).unwrap();
        let b = pool.take(req(), 0).unwrap();
        assert_eq!(a.slot(), b.slot(), "TC0 slot reused");
        assert_ne!(a, b, "TC1 id is not reused");
        assert!(
            pool.get(a).is_none(),
            "TC2 stale id does not reach the new order"
        );
        assert_eq!(
            pool.release(a),
            Err(PoolError::NotInUse(a.slot())),
            "TC3 stale release refused"
        );
        assert_eq!(pool.get(b).map(|o| o.client_id), Some(b), "TC4");
        pool.release(b).unwrap();
        assert_eq!(
            pool.release(b),
            Err(PoolError::NotInUse(b.slot())),
            "TC5 double release refused"
        );
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn recovery_continues_the_sequence() {
        let mut pool = OrderPool::with_start_sequence(4, 500);
        assert_eq!(pool.take(req(), 0).unwrap().sequence(), 500);
        assert_eq!(pool.next_sequence(), 501);
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use crate::event::Side;
    use crate::fixed::{Price, Qty};
    use crate::instrument::InstrumentIndex;
    use proptest::prelude::*;
    use std::collections::HashSet;

    proptest! {
        #[test]
        fn prop_pool_never_hands_out_a_slot_twice(ops in proptest::collection::vec(any::<(bool, u8)>(), 0..300)) {
            let cap = 8;
            let mut pool = OrderPool::new(cap);
            let mut live: Vec<ClientOrderId> = Vec::new();
            let mut ever = HashSet::new();
            let req = OrderRequest::limit(InstrumentIndex(0), Side::Buy, Price::from_units(1), Qty::from_units(1));
            for (take, pick) in ops {
                if take {
                    let next = pool.next_free().map(core::ptr::from_ref);
                    match pool.take(req, 0) {
                        Ok(id) => {
                            prop_assert_eq!(next, pool.get(id).map(core::ptr::from_ref), "next_free named another slot");
                            prop_assert!(live.iter().all(|l| l.slot() != id.slot()), "slot handed out twice");
                            prop_assert!(ever.insert(id), "client id reused");
                            live.push(id);
                        }
                        Err(PoolError::Exhausted { .. }) => {
                            prop_assert_eq!(live.len(), cap);
                            prop_assert!(next.is_none());
                        }
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                } else if !live.is_empty() {
                    let id = live.swap_remove(pick as usize % live.len());
                    prop_assert_eq!(pool.release(id), Ok(()));
                }
                prop_assert_eq!(pool.in_use(), live.len());
            }
        }
    }
}
