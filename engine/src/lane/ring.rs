//! A bounded multi-producer multi-consumer ring of `Copy` values (Dmitry Vyukov's bounded MPMC
//! queue: one sequence number per slot, one position counter per side).
//!
//! Why not crossbeam's `ArrayQueue`, which the lanes used before: its `pop` *waits* when the
//! slot at the head has been claimed by a producer that has not finished writing it. A feed
//! thread preempted in the middle of a NORMAL push (a few nanoseconds of work, but a whole
//! scheduler time slice on a busy core) then held the engine inside `pop` for a millisecond,
//! with a CRITICAL stop trigger queued behind nothing: a priority inversion measured by the
//! `flood` load test (CRITICAL p99 ≈ 1.07 ms, exactly one producer period). Here `pop` never
//! waits: a slot still being written reads as "nothing yet", the engine serves the other lanes
//! and takes the value on a later turn. Order is still FIFO: nothing behind an unfinished slot
//! is handed out before it.
//!
//! Push fails when full (the lane applies its own overflow policy); neither side allocates,
//! locks or makes a syscall.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

struct Slot<T> {
    /// `pos` when free for the push at `pos`; `pos + 1` when it holds the value pushed at
    /// `pos`; `pos + capacity` once that value has been popped (free for the next lap).
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The ring. Capacity is a power of two.
pub(crate) struct Ring<T: Copy> {
    slots: Box<[Slot<T>]>,
    mask: usize,
    /// Next position to push.
    tail: CachePadded<AtomicUsize>,
    /// Next position to pop.
    head: CachePadded<AtomicUsize>,
}

// SAFETY: values move between threads by copy; every slot's value is accessed only by the one
// thread that won its position by compare-exchange, ordered by the slot's `seq` (release by
// the writer, acquire by the reader).
unsafe impl<T: Copy + Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns plain `Copy` values and atomics.
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T: Copy> core::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// `seq − expected` as a signed distance: 0 when the slot is in the state the caller needs,
/// negative when it is a lap behind, positive when another thread has moved past `expected`.
#[inline]
#[allow(
    clippy::cast_possible_wrap,
    reason = "the difference of two positions is small; wrapping is intended"
)]
fn lag(seq: usize, expected: usize) -> isize {
    seq.wrapping_sub(expected) as isize
}

impl<T: Copy> Ring<T> {
    /// A ring of `capacity` slots.
    ///
    /// # Panics
    /// If `capacity` is not a power of two of at least 2 (lane capacities are validated as
    /// such; with one slot, "free for the next push" and "holds a value" have the same
    /// sequence number).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(
            capacity >= 2 && capacity.is_power_of_two(),
            "ring capacity must be a power of two of at least 2, got {capacity}"
        );
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Self {
            slots,
            mask: capacity - 1,
            tail: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    #[inline]
    fn slot(&self, pos: usize) -> &Slot<T> {
        let i = pos & self.mask;
        debug_assert!(i < self.slots.len());
        &self.slots[i]
    }

    /// Pushes `value`, or gives it back if every slot is taken.
    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos);
            let diff = lag(slot.seq.load(Ordering::Acquire), pos);
            if diff == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the compare-exchange on `tail` at `pos`, with the
                        // slot's seq == pos, gives this thread sole access to the slot until
                        // it publishes seq = pos + 1 below.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // The slot still holds the value of the previous lap: full.
                return Err(value);
            } else {
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest value. `None` when empty, or when the oldest slot has been claimed by a
    /// producer that has not finished writing it: the caller never waits for a producer.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos);
            let diff = lag(slot.seq.load(Ordering::Acquire), pos.wrapping_add(1));
            if diff == 0 {
                match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: seq == pos + 1 (acquired) means the producer at `pos` wrote
                        // the value and released it; winning `head` at `pos` makes this thread
                        // its only reader until seq is moved to the next lap below.
                        let value = unsafe { (*slot.value.get()).assume_init() };
                        slot.seq
                            .store(pos.wrapping_add(self.mask + 1), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // Empty, or the producer of this slot has not finished: nothing yet.
                return None;
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Values pushed and not yet popped (including any still being written).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return tail.wrapping_sub(head).min(self.mask + 1);
            }
        }
    }

    /// `true` when no value is queued (two loads; a value being pushed right now may or may
    /// not be seen).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Acquire)
    }

    /// Values pushed since the ring was made: the tail position, which only a successful
    /// push moves (so the lanes keep no separate count to update on every push).
    #[inline]
    pub(crate) fn pushed(&self) -> u64 {
        self.tail.load(Ordering::Relaxed) as u64
    }

    /// Reads what the next push reads first: the tail and the sequence of the slot at it.
    #[inline]
    pub(crate) fn warm(&self) {
        let pos = self.tail.load(Ordering::Relaxed);
        core::hint::black_box(self.slot(pos).seq.load(Ordering::Relaxed));
    }

    /// Slots.
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_empty() {
        let r = Ring::new(4);
        assert_eq!(r.pop(), None);
        assert!(r.is_empty());
        for i in 0..4u64 {
            assert_eq!(r.push(i), Ok(()));
        }
        assert_eq!(r.push(9), Err(9));
        assert_eq!(r.len(), 4);
        assert_eq!(r.pop(), Some(0));
        assert_eq!(r.push(4), Ok(()));
        for i in 1..=4 {
            assert_eq!(r.pop(), Some(i));
        }
        assert_eq!(r.pop(), None);
        assert_eq!(r.len(), 0);
        // Many laps around a small ring.
        for i in 0..10_000u64 {
            assert_eq!(r.push(i), Ok(()));
            assert_eq!(r.pop(), Some(i));
        }
        // 5 pushes above (the refused one does not count), then 10,000.
        assert_eq!(r.pushed(), 10_005);
    }

    #[test]
    fn warming_changes_nothing() {
        let r = Ring::new(4);
        for i in 0..3u64 {
            r.warm();
            assert_eq!(r.push(i), Ok(()));
        }
        r.warm();
        assert_eq!((r.len(), r.pushed()), (3, 3));
        for i in 0..3u64 {
            r.warm();
            assert_eq!(r.pop(), Some(i));
        }
        assert!(r.is_empty());
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn capacity_must_be_a_power_of_two() {
        let _ = Ring::<u8>::new(6);
    }

    #[test]
    #[should_panic(expected = "at least 2")]
    fn one_slot_is_refused() {
        let _ = Ring::<u8>::new(1);
    }

    #[test]
    fn two_slots_fill_and_drain() {
        let r = Ring::new(2);
        for lap in 0..5u8 {
            assert_eq!(r.push(lap), Ok(()));
            assert_eq!(r.push(lap + 100), Ok(()));
            assert_eq!(r.push(0), Err(0), "lap {lap}: full");
            assert_eq!(r.pop(), Some(lap));
            assert_eq!(r.pop(), Some(lap + 100));
            assert_eq!(r.pop(), None);
        }
    }

    /// A claimed but unwritten slot (a producer preempted mid-push) makes `pop` return at once
    /// instead of waiting, and hides nothing behind it once written.
    #[test]
    fn pop_does_not_wait_for_an_unfinished_push() {
        let r = Ring::<u64>::new(8);
        // Claim position 0 the way a producer does, without writing it yet.
        r.tail.store(1, Ordering::Relaxed);
        assert_eq!(r.pop(), None);
        assert_eq!(r.len(), 1);
        assert_eq!(r.push(7), Ok(())); // position 1
        assert_eq!(r.pop(), None, "FIFO: position 1 waits behind position 0");
        // The producer finishes position 0.
        // SAFETY: this test is the only thread; position 0 is claimed and unwritten.
        unsafe { (*r.slots[0].value.get()).write(5) };
        r.slots[0].seq.store(1, Ordering::Release);
        assert_eq!(r.pop(), Some(5));
        assert_eq!(r.pop(), Some(7));
        assert_eq!(r.pop(), None);
    }

    /// Four producers and two consumers (one of them a producer-side "drop oldest"): every
    /// value is taken exactly once, and each producer's values come out in order.
    #[test]
    fn many_producers_and_consumers_lose_and_duplicate_nothing() {
        const PER: u64 = 200_000;
        const PRODUCERS: u64 = 4;
        let r = Arc::new(Ring::<u64>::new(64));
        let done = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let v = (p << 32) | i;
                        while r.push(v).is_err() {
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (r, done) = (Arc::clone(&r), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut last = [None::<u64>; PRODUCERS as usize];
                    let mut seen = Vec::new();
                    loop {
                        match r.pop() {
                            Some(v) => {
                                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                                assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
                                last[p] = Some(i);
                                seen.push(v);
                            }
                            None if done.load(Ordering::Acquire) && r.is_empty() => break,
                            None => std::hint::spin_loop(),
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert_eq!(all.len() as u64, PER * PRODUCERS);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, PER * PRODUCERS, "a value was taken twice");
    }
}
