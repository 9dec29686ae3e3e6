//! Strategy timers: a bounded min-heap of `(due_ns, sequence, id)`, owned by the engine
//! thread. Hot path: scheduling, cancelling and firing never allocate (the heap's storage is
//! reserved in [`Timers::new`]) and never lock; a schedule or cancel scans the pending timers
//! for the id, so it costs O(pending), a handful for a typical strategy.
//!
//! A timer is named by the strategy's own `u32` id: scheduling an id that is pending replaces
//! it (one alarm per id), cancelling removes it. Timers due at the same instant fire in the
//! order they were scheduled.
//!
//! The engine fires due timers in LOW's place in each loop turn — after CRITICAL and HIGH, so
//! a stop or a fill never waits behind a timer — with at most `low_budget` timers a turn. They
//! do not travel through the LOW ring: the engine would only be queueing to itself, a full LOW
//! lane could then drop or delay them, and a cancel could not take back a timer already
//! queued. On a simulated clock (backtests) a timer fires at its own due time between the
//! recorded events.

/// Why a timer could not be scheduled.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TimerError {
    /// Every timer slot is in use (`engine.timer_slots`).
    #[error("{capacity} timers pending, no slot left (engine.timer_slots)")]
    Full {
        /// Slots configured.
        capacity: usize,
    },
    /// A portfolio member's timer id above the range it may use.
    #[error("timer id {id} above {max} (a portfolio member's ids are 24 bits)")]
    IdOutOfRange {
        /// Requested id.
        id: u32,
        /// Largest allowed.
        max: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    due_ns: u64,
    seq: u64,
    id: u32,
}

impl Entry {
    #[inline]
    fn before(&self, other: &Self) -> bool {
        (self.due_ns, self.seq) < (other.due_ns, other.seq)
    }
}

/// Pending timers of one engine.
///
/// ```
/// use tradeloop_engine::timers::{TimerError, Timers};
///
/// let mut t = Timers::new(2);
/// t.schedule(300, 7).unwrap();
/// t.schedule(100, 8).unwrap();
/// t.schedule(200, 7).unwrap(); // replaces id 7's alarm at 300
/// assert_eq!(t.len(), 2);
/// assert_eq!(t.schedule(50, 9), Err(TimerError::Full { capacity: 2 }));
/// assert_eq!(t.pop_due(150), Some((100, 8)));
/// assert_eq!(t.pop_due(150), None); // id 7 is due at 200
/// assert!(t.cancel(7));
/// assert!(t.is_empty());
/// ```
///
/// # Allocation
/// Only in [`Timers::new`].
#[derive(Clone, Debug)]
pub struct Timers {
    heap: Vec<Entry>,
    capacity: usize,
    next_seq: u64,
}

impl Timers {
    /// Room for `capacity` pending timers.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            heap: Vec::with_capacity(capacity),
            capacity,
            next_seq: 0,
        }
    }

    /// Pending timers.
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// `true` if no timer is pending.
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Slots configured.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Due time of the earliest timer; `u64::MAX` when none is pending.
    #[inline]
    #[must_use]
    pub fn next_due(&self) -> u64 {
        self.heap.first().map_or(u64::MAX, |e| e.due_ns)
    }

    /// Schedules timer `id` at `due_ns`, replacing a pending timer with the same id.
    ///
    /// # Errors
    /// [`TimerError::Full`] when `capacity` other timers are pending (nothing changes).
    pub fn schedule(&mut self, due_ns: u64, id: u32) -> Result<(), TimerError> {
        let replaced = self.cancel(id);
        if !replaced && self.heap.len() >= self.capacity {
            return Err(TimerError::Full {
                capacity: self.capacity,
            });
        }
        let entry = Entry {
            due_ns,
            seq: self.next_seq,
            id,
        };
        self.next_seq += 1;
        self.heap.push(entry);
        self.sift_up(self.heap.len() - 1);
        Ok(())
    }

    /// Cancels timer `id`; `true` if it was pending.
    pub fn cancel(&mut self, id: u32) -> bool {
        let Some(at) = self.heap.iter().position(|e| e.id == id) else {
            return false;
        };
        self.remove_at(at);
        true
    }

    /// Takes the earliest timer if it is due at `now_ns`: `(due_ns, id)`.
    #[inline]
    pub fn pop_due(&mut self, now_ns: u64) -> Option<(u64, u32)> {
        let first = *self.heap.first()?;
        if first.due_ns > now_ns {
            return None;
        }
        self.remove_at(0);
        Some((first.due_ns, first.id))
    }

    /// When timer `id` is due, if it is pending.
    #[must_use]
    pub fn due_of(&self, id: u32) -> Option<u64> {
        self.heap.iter().find(|e| e.id == id).map(|e| e.due_ns)
    }

    fn remove_at(&mut self, at: usize) {
        let last = self.heap.len() - 1;
        self.heap.swap(at, last);
        self.heap.pop();
        if at < self.heap.len() {
            self.sift_down(at);
            self.sift_up(at);
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.heap[at].before(&self.heap[parent]) {
                break;
            }
            self.heap.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if l < n && self.heap[l].before(&self.heap[least]) {
                least = l;
            }
            if r < n && self.heap[r].before(&self.heap[least]) {
                least = r;
            }
            if least == at {
                break;
            }
            self.heap.swap(at, least);
            at = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_cancel_replace_table() {
        // (label, operations, expected firing order at t = u64::MAX)
        #[derive(Clone, Copy)]
        enum Op {
            At(u64, u32),
            Cancel(u32, bool),
        }
        type Case<'a> = (&'a str, &'a [Op], &'a [(u64, u32)]);
        let cases: [Case; 5] = [
            (
                "TC0 time order",
                &[Op::At(30, 1), Op::At(10, 2), Op::At(20, 3)],
                &[(10, 2), (20, 3), (30, 1)],
            ),
            (
                "TC1 same instant keeps schedule order",
                &[Op::At(5, 9), Op::At(5, 1), Op::At(5, 4)],
                &[(5, 9), (5, 1), (5, 4)],
            ),
            (
                "TC2 replace moves the alarm",
                &[Op::At(10, 1), Op::At(20, 2), Op::At(30, 1)],
                &[(20, 2), (30, 1)],
            ),
            (
                "TC3 cancel of a pending and an unknown id",
                &[
                    Op::At(10, 1),
                    Op::At(20, 2),
                    Op::Cancel(1, true),
                    Op::Cancel(7, false),
                ],
                &[(20, 2)],
            ),
            (
                "TC4 replace earlier",
                &[Op::At(50, 1), Op::At(20, 2), Op::At(10, 1)],
                &[(10, 1), (20, 2)],
            ),
        ];
        for (label, ops, want) in cases {
            let mut t = Timers::new(8);
            for op in ops {
                match *op {
                    Op::At(due, id) => t.schedule(due, id).expect(label),
                    Op::Cancel(id, was) => assert_eq!(t.cancel(id), was, "{label}"),
                }
            }
            let mut got = Vec::new();
            while let Some(x) = t.pop_due(u64::MAX) {
                got.push(x);
            }
            assert_eq!(got, want, "{label}");
        }
    }

    #[test]
    fn full_refuses_a_new_id_but_replaces_a_pending_one() {
        let mut t = Timers::new(2);
        t.schedule(10, 1).unwrap();
        t.schedule(20, 2).unwrap();
        assert_eq!(
            t.schedule(5, 3),
            Err(TimerError::Full { capacity: 2 }),
            "TC0"
        );
        assert_eq!(t.len(), 2, "TC1 nothing changed");
        t.schedule(5, 2).unwrap();
        assert_eq!(t.pop_due(5), Some((5, 2)), "TC2 replaced while full");
        assert_eq!(t.next_due(), 10, "TC3");
        assert_eq!(t.pop_due(9), None, "TC4 not yet due");
    }

    proptest::proptest! {
        /// Against a sorted-list model: whatever the schedules, replaces and cancels, timers
        /// come out in (due, schedule order), one per id, none lost, and the heap's storage
        /// never grows.
        #[test]
        fn prop_heap_matches_a_sorted_model(
            ops in proptest::collection::vec((0u8..4, 0u64..50, 0u32..12), 1..300),
        ) {
            let cap = 8;
            let mut t = Timers::new(cap);
            let reserved = t.heap.capacity();
            let mut model: Vec<(u64, u64, u32)> = Vec::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            for (kind, x, id) in ops {
                match kind {
                    0 | 1 => {
                        let had = model.iter().any(|e| e.2 == id);
                        let r = t.schedule(x + now, id);
                        if !had && model.len() >= cap {
                            proptest::prop_assert!(r.is_err());
                        } else {
                            proptest::prop_assert!(r.is_ok());
                            model.retain(|e| e.2 != id);
                            model.push((x + now, seq, id));
                            seq += 1;
                        }
                    }
                    2 => {
                        let had = model.iter().any(|e| e.2 == id);
                        proptest::prop_assert_eq!(t.cancel(id), had);
                        model.retain(|e| e.2 != id);
                    }
                    _ => {
                        now += x;
                        model.sort_unstable();
                        let due: Vec<(u64, u32)> =
                            model.iter().filter(|e| e.0 <= now).map(|e| (e.0, e.2)).collect();
                        model.retain(|e| e.0 > now);
                        let mut got = Vec::new();
                        while let Some(d) = t.pop_due(now) {
                            got.push(d);
                        }
                        proptest::prop_assert_eq!(got, due);
                    }
                }
                proptest::prop_assert_eq!(t.len(), model.len());
                proptest::prop_assert_eq!(
                    t.next_due(),
                    model.iter().map(|e| e.0).min().unwrap_or(u64::MAX)
                );
                proptest::prop_assert_eq!(t.heap.capacity(), reserved);
            }
        }
    }
}
