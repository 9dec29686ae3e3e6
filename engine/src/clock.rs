//! The only place time is read. Hot path: `now_ns` is called per event by feed threads (to
//! stamp `recv_ns`) and by the loop (queue wait, service time); it makes no syscall.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A source of nanosecond timestamps since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Nanoseconds since the Unix epoch. Monotonic non-decreasing within one clock.
    fn now_ns(&self) -> u64;
}

/// Live time from the CPU's time-stamp counter (via `quanta`), calibrated once against the
/// system clock so stamps are epoch nanoseconds comparable with venue times. Reading it is a
/// `rdtsc` plus a multiply-shift: no syscall.
///
/// Clones share the calibration, so every thread's stamps are on the same time base.
#[derive(Clone, Debug)]
pub struct LiveClock {
    clock: quanta::Clock,
    base_raw: u64,
    base_epoch_ns: u64,
}

impl LiveClock {
    /// Calibrates the TSC (takes a few milliseconds; call once at start-up).
    ///
    /// # Panics
    /// If the system clock is before the Unix epoch.
    #[must_use]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let base_raw = clock.raw();
        #[allow(
            clippy::disallowed_methods,
            reason = "the one calibration read of wall time"
        )]
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("system clock is after 1970");
        let base_epoch_ns =
            u64::try_from(since_epoch.as_nanos()).expect("epoch ns fits u64 until 2554");
        Self {
            clock,
            base_raw,
            base_epoch_ns,
        }
    }
}

impl Default for LiveClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for LiveClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.base_epoch_ns + self.clock.delta_as_nanos(self.base_raw, self.clock.raw())
    }
}

/// Simulated time for replay and tests: it moves only when told to. Clones share the time.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    now: Arc<AtomicU64>,
}

impl SimClock {
    /// A simulated clock starting at `start_ns`.
    #[must_use]
    pub fn new(start_ns: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ns)),
        }
    }

    /// Sets the time; never moves it backwards (a replayed event older than the clock leaves
    /// it where it is, so time stays monotonic).
    ///
    /// One thread at a time moves the clock (the replay that drives it; any thread may read
    /// it), so this is a load and a store, not a locked read-modify-write: a replay sets the
    /// time once per step.
    #[inline]
    pub fn set(&self, ns: u64) {
        if ns > self.now.load(Ordering::Relaxed) {
            self.now.store(ns, Ordering::Relaxed);
        }
    }

    /// Moves time forward by `ns`.
    #[inline]
    pub fn advance(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_clock_is_monotonic_and_shared() {
        let c = SimClock::new(100);
        let d = c.clone();
        c.set(50);
        assert_eq!(d.now_ns(), 100, "TC0 never backwards");
        c.set(150);
        d.advance(5);
        assert_eq!(c.now_ns(), 155, "TC1 clones share time");
    }

    #[test]
    fn live_clock_is_epoch_based_and_monotonic() {
        let c = LiveClock::new();
        let a = c.now_ns();
        // 2024-01-01 in epoch ns: any live stamp must be later.
        assert!(a > 1_704_067_200_000_000_000, "epoch-based: {a}");
        let mut last = a;
        for _ in 0..10_000 {
            let now = c.now_ns();
            assert!(now >= last, "monotonic on one thread");
            last = now;
        }
        let shared = c.clone();
        assert!(shared.now_ns() >= last, "clones share the base");
    }
}
