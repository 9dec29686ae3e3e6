//! The four bounded inbound lanes and each lane's overflow policy. Hot path: producers (feed and
//! gateway threads) push, the engine thread pops; nothing here allocates after [`Lanes::new`],
//! takes a lock or makes a syscall (a producer that must wait spins, then yields its time slice).
//!
//! | lane | carries | when full |
//! |---|---|---|
//! | [`Lane::Critical`] | stop triggers, breaker trips, kill switch, feed down | never dropped: the producer retries (counted as an alarm) and gets the event back only after `retry_limit` attempts; sized never to fill |
//! | [`Lane::High`] | order acks, fills, rejects, cancels, signals | never dropped: back-pressure as above; while a producer stays blocked past `halt_after_retries`, [`Lanes::high_backpressure`] is raised and the engine sends no new orders |
//! | [`Lane::Normal`] | trades, quotes, book deltas | drop the oldest and count it; a dropped book delta marks that instrument's book stale (the engine pauses trading on it) and requests a resync from its feed |
//! | [`Lane::Low`] | analytics, monitoring, timers | drop the newest and count it |
//!
//! The queues are bounded lock-free rings (`ring`: Vyukov's MPMC design) whose `pop` never
//! waits for a producer that has claimed a slot but not yet written it — with crossbeam's
//! `ArrayQueue`, used before, a feed thread preempted mid-push held the engine, and every
//! CRITICAL event behind it, for a scheduler time slice.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

#[allow(unsafe_code, reason = "the lanes' ring buffer; see its module docs")]
pub(crate) mod ring;
use ring::Ring;

use crate::event::{Event, EventKind};
use crate::instrument::{InstrumentIndex, MAX_INSTRUMENTS};

/// One of the four inbound lanes, in priority order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Lane {
    /// Stop triggers, breaker trips, kill switch, feed down. Never dropped.
    Critical = 0,
    /// Order acks, fills, rejects, cancels, signals. Never dropped; back-pressure.
    High = 1,
    /// Market data. Drop oldest; a lost book delta marks the book stale.
    Normal = 2,
    /// Analytics, monitoring, timers. Drop newest.
    Low = 3,
}

impl Lane {
    /// All lanes in priority order.
    pub const ALL: [Self; 4] = [Self::Critical, Self::High, Self::Normal, Self::Low];

    /// Lower-case name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

/// Capacities and retry bounds of the lanes (from `[engine.lanes]` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// CRITICAL capacity (power of two).
    pub critical_slots: usize,
    /// HIGH capacity (power of two).
    pub high_slots: usize,
    /// NORMAL capacity (power of two).
    pub normal_slots: usize,
    /// LOW capacity (power of two).
    pub low_slots: usize,
    /// Attempts a CRITICAL or HIGH producer makes before it gets the event back.
    pub retry_limit: u32,
    /// Failed attempts on HIGH after which new orders halt until HIGH drains.
    pub halt_after_retries: u32,
}

impl Default for LaneConfig {
    fn default() -> Self {
        Self {
            critical_slots: 1024,
            high_slots: 8192,
            normal_slots: 65_536,
            low_slots: 4096,
            retry_limit: 10_000_000,
            halt_after_retries: 10_000,
        }
    }
}

impl LaneConfig {
    /// Checks every capacity is a non-zero power of two and the retry bounds are coherent.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `engine.lanes`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("critical_slots", self.critical_slots),
            ("high_slots", self.high_slots),
            ("normal_slots", self.normal_slots),
            ("low_slots", self.low_slots),
        ] {
            if v < 2 || !v.is_power_of_two() || v > 1 << 24 {
                return Err((
                    key,
                    format!("must be a power of two in 2..=16777216, got {v}"),
                ));
            }
        }
        if self.retry_limit == 0 {
            return Err(("retry_limit", "must be at least 1".into()));
        }
        if self.halt_after_retries == 0 || self.halt_after_retries > self.retry_limit {
            return Err((
                "halt_after_retries",
                format!(
                    "must be in 1..=retry_limit ({}), got {}",
                    self.retry_limit, self.halt_after_retries
                ),
            ));
        }
        Ok(())
    }
}

/// A push that could not complete: the caller gets its event back and still owns it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("lane full")]
pub struct Full<T>(pub T);

/// What a NORMAL push did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NormalPush {
    /// Queued with nothing dropped.
    Pushed,
    /// Queued after dropping `dropped` oldest events; `lost_book` names an instrument whose
    /// book lost a delta (it is now stale and a resync is requested).
    DroppedOldest {
        /// How many events were dropped to make room (almost always 1).
        dropped: u32,
        /// The instrument of the last dropped book delta, if any was a book delta.
        lost_book: Option<InstrumentIndex>,
    },
}

/// Per-lane counters, updated by producers and the consumer (relaxed atomics, one cache line).
#[derive(Default, Debug)]
struct LaneCounters {
    dropped: AtomicU64,
    /// CRITICAL/HIGH: pushes that found the lane full at least once.
    alarms: AtomicU64,
    /// CRITICAL/HIGH: pushes that gave up after `retry_limit` attempts.
    refused: AtomicU64,
}

/// A point-in-time copy of one lane's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Events accepted.
    pub pushed: u64,
    /// Events dropped by policy (NORMAL: oldest; LOW: newest).
    pub dropped: u64,
    /// CRITICAL/HIGH pushes that found the lane full and had to retry.
    pub alarms: u64,
    /// CRITICAL/HIGH pushes handed back after `retry_limit` attempts.
    pub refused: u64,
    /// Events queued right now.
    pub depth: usize,
    /// Capacity.
    pub capacity: usize,
}

const STALE_WORDS: usize = MAX_INSTRUMENTS.div_ceil(64);

/// A per-instrument bit set that producers set and one consumer takes (lock-free).
#[derive(Debug)]
struct InstrumentBits {
    pending: AtomicBool,
    words: [AtomicU64; STALE_WORDS],
}

impl InstrumentBits {
    fn new() -> Self {
        Self {
            pending: AtomicBool::new(false),
            words: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn set(&self, i: InstrumentIndex) {
        let (w, b) = (i.get() / 64, i.get() % 64);
        if let Some(word) = self.words.get(w) {
            word.fetch_or(1 << b, Ordering::Release);
            self.pending.store(true, Ordering::Release);
        }
    }

    fn take_one(&self, i: InstrumentIndex) -> bool {
        let (w, b) = (i.get() / 64, i.get() % 64);
        self.words
            .get(w)
            .is_some_and(|word| word.fetch_and(!(1 << b), Ordering::AcqRel) & (1 << b) != 0)
    }

    fn any(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn take_all(&self, mut f: impl FnMut(InstrumentIndex)) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        self.pending.store(false, Ordering::Release);
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "bounded by MAX_INSTRUMENTS"
                )]
                f(InstrumentIndex((w * 64 + b) as u16));
            }
        }
    }
}

/// The four inbound lanes, shared (via `Arc`) by every producer and the engine thread.
///
/// # Allocation
/// Allocates only in [`Lanes::new`].
///
/// # Examples
/// A full LOW lane drops the newest event and counts it:
/// ```
/// use tradeloop_engine::event::{Event, EventKind};
/// use tradeloop_engine::lane::{Full, Lane, LaneConfig, Lanes};
/// let lanes = Lanes::new(LaneConfig { low_slots: 2, ..LaneConfig::default() });
/// let tick = |id| Event::new(0, 0, EventKind::Timer { id });
/// assert!(lanes.push_low(tick(1)).is_ok());
/// assert!(lanes.push_low(tick(2)).is_ok());
/// assert_eq!(lanes.push_low(tick(3)), Err(Full(tick(3))));
/// assert_eq!(lanes.stats(Lane::Low).dropped, 1);
/// assert_eq!(lanes.pop(Lane::Low), Some(tick(1)));
/// ```
#[derive(Debug)]
pub struct Lanes {
    queues: [Ring<Event>; 4],
    counters: [CachePadded<LaneCounters>; 4],
    retry_limit: u32,
    halt_after_retries: u32,
    high_backpressure: CachePadded<AtomicBool>,
    stale_books: CachePadded<InstrumentBits>,
    resync_requests: CachePadded<InstrumentBits>,
    closed: AtomicBool,
}

impl Lanes {
    /// Creates the lanes with the configured capacities.
    ///
    /// # Panics
    /// If a capacity is not a power of two of at least 2 (validate the config first with
    /// [`LaneConfig::validate`]).
    #[must_use]
    pub fn new(config: LaneConfig) -> Self {
        Self {
            queues: [
                Ring::new(config.critical_slots),
                Ring::new(config.high_slots),
                Ring::new(config.normal_slots),
                Ring::new(config.low_slots),
            ],
            counters: Default::default(),
            retry_limit: config.retry_limit.max(1),
            halt_after_retries: config.halt_after_retries.max(1),
            high_backpressure: CachePadded::new(AtomicBool::new(false)),
            stale_books: CachePadded::new(InstrumentBits::new()),
            resync_requests: CachePadded::new(InstrumentBits::new()),
            closed: AtomicBool::new(false),
        }
    }

    #[inline]
    fn queue(&self, lane: Lane) -> &Ring<Event> {
        &self.queues[lane as usize]
    }

    #[inline]
    fn counters(&self, lane: Lane) -> &LaneCounters {
        &self.counters[lane as usize]
    }

    /// Pushes to CRITICAL. Never drops: a full lane is retried (spin, then yield) and counted
    /// as an alarm.
    ///
    /// # Errors
    /// Returns the event in [`Full`] only after `retry_limit` attempts, or at once if the lanes
    /// are closed; the caller still owns it.
    #[inline]
    pub fn push_critical(&self, event: Event) -> Result<(), Full<Event>> {
        self.push_with_retry(Lane::Critical, event)
    }

    /// Pushes to HIGH. Never drops: back-pressure as for CRITICAL; while the lane stays full
    /// past `halt_after_retries` attempts, [`Self::high_backpressure`] is raised (the engine
    /// halts new orders) until this push lands.
    ///
    /// # Errors
    /// As [`Self::push_critical`].
    #[inline]
    pub fn push_high(&self, event: Event) -> Result<(), Full<Event>> {
        self.push_with_retry(Lane::High, event)
    }

    /// Pushes to CRITICAL once, without retrying: for the engine thread itself (breaker
    /// transitions), which must never wait on a lane it drains. Counts an alarm when full.
    ///
    /// # Errors
    /// [`Full`] with the event, at once if the lanes are closed.
    #[inline]
    pub fn try_push_critical(&self, event: Event) -> Result<(), Full<Event>> {
        if self.is_closed() {
            return Err(Full(event));
        }
        self.push_once(Lane::Critical, event)
    }

    /// Pushes to HIGH once, without retrying: for a producer on the engine thread itself (a
    /// simulated venue), which must never wait on the lane it drains. Counts an alarm when full.
    ///
    /// # Errors
    /// [`Full`] with the event; the caller keeps it and tries again later.
    #[inline]
    pub fn try_push_high(&self, event: Event) -> Result<(), Full<Event>> {
        self.push_once(Lane::High, event)
    }

    /// One push attempt: counted as pushed, or as an alarm with the event handed back.
    #[inline]
    fn push_once(&self, lane: Lane, event: Event) -> Result<(), Full<Event>> {
        let counters = self.counters(lane);
        match self.queue(lane).push(event) {
            Ok(()) => Ok(()),
            Err(back) => {
                counters.alarms.fetch_add(1, Ordering::Relaxed);
                Err(Full(back))
            }
        }
    }

    fn push_with_retry(&self, lane: Lane, mut event: Event) -> Result<(), Full<Event>> {
        let queue = self.queue(lane);
        let counters = self.counters(lane);
        match queue.push(event) {
            Ok(()) => {
                return Ok(());
            }
            Err(back) => event = back,
        }
        counters.alarms.fetch_add(1, Ordering::Relaxed);
        let backoff = Backoff::new();
        let mut halted = false;
        for attempt in 1..self.retry_limit {
            if self.is_closed() {
                break;
            }
            if lane == Lane::High && !halted && attempt >= self.halt_after_retries {
                self.high_backpressure.store(true, Ordering::Release);
                halted = true;
            }
            if backoff.is_completed() {
                std::thread::yield_now();
            } else {
                backoff.snooze();
            }
            match queue.push(event) {
                Ok(()) => {
                    if halted {
                        self.high_backpressure.store(false, Ordering::Release);
                    }
                    return Ok(());
                }
                Err(back) => event = back,
            }
        }
        counters.refused.fetch_add(1, Ordering::Relaxed);
        Err(Full(event))
    }

    /// Pushes market data to NORMAL. When full, the oldest queued event is dropped and counted;
    /// if that was a book delta, its instrument is marked stale *before* the new event becomes
    /// visible, so the engine never applies a delta on top of a gap.
    #[inline]
    pub fn push_normal(&self, event: Event) -> NormalPush {
        let queue = self.queue(Lane::Normal);
        let counters = self.counters(Lane::Normal);
        let mut event = event;
        let mut dropped = 0u32;
        let mut lost_book = None;
        loop {
            match queue.push(event) {
                Ok(()) => {
                    return if dropped == 0 {
                        NormalPush::Pushed
                    } else {
                        NormalPush::DroppedOldest { dropped, lost_book }
                    };
                }
                Err(back) => {
                    event = back;
                    // Another thread may pop first; then the retry simply succeeds.
                    if let Some(old) = queue.pop() {
                        dropped += 1;
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        if let EventKind::BookDelta(d) = old.kind {
                            self.mark_book_stale(d.instrument);
                            lost_book = Some(d.instrument);
                        }
                    }
                }
            }
        }
    }

    /// Pushes to LOW. When full, the new event is dropped and counted.
    ///
    /// # Errors
    /// [`Full`] with the dropped event.
    #[inline]
    pub fn push_low(&self, event: Event) -> Result<(), Full<Event>> {
        let counters = self.counters(Lane::Low);
        match self.queue(Lane::Low).push(event) {
            Ok(()) => Ok(()),
            Err(back) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                Err(Full(back))
            }
        }
    }

    /// Pops the oldest event of one lane (engine thread). Never waits: an event whose producer
    /// has not finished writing it is taken on a later call, and nothing behind it is handed
    /// out first.
    #[inline]
    pub fn pop(&self, lane: Lane) -> Option<Event> {
        self.queue(lane).pop()
    }

    /// `true` if the lane holds no event.
    #[inline]
    #[must_use]
    pub fn is_empty(&self, lane: Lane) -> bool {
        self.queue(lane).is_empty()
    }

    /// Reads the cache lines the next CRITICAL push will write (the tail and the slot at
    /// it), so that they are in this thread's cache when a stop must go out. A feed thread with
    /// the stop guard calls this with every event it pushes; it changes nothing.
    #[inline]
    pub fn warm_critical(&self) {
        self.queue(Lane::Critical).warm();
    }

    /// Events queued in one lane right now.
    #[inline]
    #[must_use]
    pub fn depth(&self, lane: Lane) -> usize {
        self.queue(lane).len()
    }

    /// `true` while a HIGH producer has been blocked past `halt_after_retries`: new orders halt.
    #[inline]
    #[must_use]
    pub fn high_backpressure(&self) -> bool {
        self.high_backpressure.load(Ordering::Acquire)
    }

    /// Marks an instrument's book stale (engine pauses trading on it) and asks its feed to resync.
    pub fn mark_book_stale(&self, instrument: InstrumentIndex) {
        self.resync_requests.set(instrument);
        self.stale_books.set(instrument);
    }

    /// `true` if a book was marked stale since the engine last took the marks.
    #[inline]
    #[must_use]
    pub fn stale_books_pending(&self) -> bool {
        self.stale_books.any()
    }

    /// Engine side: calls `f` for every instrument marked stale since the last call.
    #[inline]
    pub fn take_stale_books(&self, f: impl FnMut(InstrumentIndex)) {
        self.stale_books.take_all(f);
    }

    /// Feed side: `true` (once) if a resync of this instrument's book was requested.
    #[inline]
    #[must_use]
    pub fn take_resync_request(&self, instrument: InstrumentIndex) -> bool {
        self.resync_requests.take_one(instrument)
    }

    /// Stops intake: blocked CRITICAL/HIGH producers give up and get their event back.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// `true` after [`Self::close`].
    #[inline]
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A copy of one lane's counters and depth.
    #[must_use]
    pub fn stats(&self, lane: Lane) -> LaneStats {
        let c = self.counters(lane);
        LaneStats {
            pushed: self.queue(lane).pushed(),
            dropped: c.dropped.load(Ordering::Relaxed),
            alarms: c.alarms.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            depth: self.depth(lane),
            capacity: self.queue(lane).capacity(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BookDelta, DeltaFlags, Side, Trade};
    use crate::fixed::{Price, Qty};
    use std::sync::Arc;

    fn small() -> LaneConfig {
        LaneConfig {
            critical_slots: 2,
            high_slots: 2,
            normal_slots: 4,
            low_slots: 2,
            retry_limit: 200,
            halt_after_retries: 50,
        }
    }

    fn trade(id: u64) -> Event {
        Event::new(
            id,
            0,
            EventKind::Trade(Trade {
                instrument: InstrumentIndex(0),
                aggressor: Side::Buy,
                price: Price::from_units(1),
                qty: Qty::from_units(1),
                trade_id: id,
            }),
        )
    }

    fn delta(instrument: u16, id: u64) -> Event {
        Event::new(
            id,
            0,
            EventKind::BookDelta(BookDelta {
                instrument: InstrumentIndex(instrument),
                side: Side::Buy,
                flags: DeltaFlags(DeltaFlags::LAST_IN_MESSAGE),
                price: Price::from_units(1),
                qty: Qty::from_units(1),
                update_id: id,
            }),
        )
    }

    #[test]
    fn normal_drops_oldest_and_counts() {
        let lanes = Lanes::new(small());
        for i in 0..4 {
            assert_eq!(lanes.push_normal(trade(i)), NormalPush::Pushed, "TC{i}");
        }
        assert_eq!(
            lanes.push_normal(trade(4)),
            NormalPush::DroppedOldest {
                dropped: 1,
                lost_book: None
            }
        );
        let s = lanes.stats(Lane::Normal);
        assert_eq!((s.pushed, s.dropped, s.depth), (5, 1, 4));
        let got: Vec<u64> = core::iter::from_fn(|| lanes.pop(Lane::Normal))
            .map(|e| e.recv_ns)
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4], "oldest (0) was dropped, order kept");
        let mut stale = Vec::new();
        lanes.take_stale_books(|i| stale.push(i));
        assert!(stale.is_empty(), "dropping trades does not stale a book");
    }

    #[test]
    fn normal_lost_delta_marks_book_stale_and_requests_resync() {
        let lanes = Lanes::new(small());
        lanes.push_normal(delta(7, 0));
        for i in 1..4 {
            lanes.push_normal(trade(i));
        }
        let out = lanes.push_normal(trade(4));
        assert_eq!(
            out,
            NormalPush::DroppedOldest {
                dropped: 1,
                lost_book: Some(InstrumentIndex(7))
            }
        );
        let mut stale = Vec::new();
        lanes.take_stale_books(|i| stale.push(i));
        assert_eq!(stale, vec![InstrumentIndex(7)]);
        let mut again = Vec::new();
        lanes.take_stale_books(|i| again.push(i));
        assert!(again.is_empty(), "taken once");
        assert!(lanes.take_resync_request(InstrumentIndex(7)));
        assert!(
            !lanes.take_resync_request(InstrumentIndex(7)),
            "resync request taken once"
        );
        assert!(!lanes.take_resync_request(InstrumentIndex(8)));
    }

    #[test]
    fn low_drops_newest() {
        let lanes = Lanes::new(small());
        let t = |id| Event::new(id, 0, EventKind::Timer { id: id as u32 });
        lanes.push_low(t(1)).unwrap();
        lanes.push_low(t(2)).unwrap();
        assert_eq!(lanes.push_low(t(3)), Err(Full(t(3))));
        assert_eq!(lanes.stats(Lane::Low).dropped, 1);
        assert_eq!(lanes.pop(Lane::Low), Some(t(1)));
        assert_eq!(lanes.pop(Lane::Low), Some(t(2)));
        assert_eq!(lanes.pop(Lane::Low), None);
    }

    #[test]
    fn critical_full_retries_then_hands_event_back_never_drops() {
        let lanes = Lanes::new(small());
        lanes.push_critical(trade(1)).unwrap();
        lanes.push_critical(trade(2)).unwrap();
        assert_eq!(lanes.push_critical(trade(3)), Err(Full(trade(3))));
        let s = lanes.stats(Lane::Critical);
        assert_eq!((s.pushed, s.alarms, s.refused, s.dropped), (2, 1, 1, 0));
        assert_eq!(
            lanes.pop(Lane::Critical),
            Some(trade(1)),
            "nothing queued was dropped"
        );
    }

    #[test]
    fn critical_blocked_producer_lands_once_consumer_drains() {
        let lanes = Arc::new(Lanes::new(LaneConfig {
            retry_limit: u32::MAX,
            ..small()
        }));
        lanes.push_critical(trade(1)).unwrap();
        lanes.push_critical(trade(2)).unwrap();
        let producer = {
            let lanes = Arc::clone(&lanes);
            std::thread::spawn(move || lanes.push_critical(trade(3)))
        };
        while lanes.stats(Lane::Critical).alarms == 0 {
            std::thread::yield_now();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            if let Some(e) = lanes.pop(Lane::Critical) {
                got.push(e.recv_ns);
            }
        }
        assert_eq!(producer.join().unwrap(), Ok(()));
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn high_backpressure_raises_halt_and_clears_when_it_lands() {
        let lanes = Arc::new(Lanes::new(LaneConfig {
            retry_limit: u32::MAX,
            halt_after_retries: 10,
            ..small()
        }));
        lanes.push_high(trade(1)).unwrap();
        lanes.push_high(trade(2)).unwrap();
        assert!(!lanes.high_backpressure());
        let producer = {
            let lanes = Arc::clone(&lanes);
            std::thread::spawn(move || lanes.push_high(trade(3)))
        };
        while !lanes.high_backpressure() {
            std::thread::yield_now();
        }
        assert_eq!(lanes.pop(Lane::High).map(|e| e.recv_ns), Some(1));
        assert_eq!(producer.join().unwrap(), Ok(()));
        assert!(
            !lanes.high_backpressure(),
            "halt lifts once the blocked push lands"
        );
        assert_eq!(lanes.stats(Lane::High).dropped, 0);
    }

    #[test]
    fn closing_releases_blocked_producers_with_their_event() {
        let lanes = Arc::new(Lanes::new(LaneConfig {
            retry_limit: u32::MAX,
            ..small()
        }));
        lanes.push_high(trade(1)).unwrap();
        lanes.push_high(trade(2)).unwrap();
        let producer = {
            let lanes = Arc::clone(&lanes);
            std::thread::spawn(move || lanes.push_high(trade(3)))
        };
        while lanes.stats(Lane::High).alarms == 0 {
            std::thread::yield_now();
        }
        lanes.close();
        assert_eq!(producer.join().unwrap(), Err(Full(trade(3))));
    }

    #[test]
    fn config_validation_names_the_key() {
        let cases = [
            (
                "TC0",
                LaneConfig {
                    normal_slots: 1000,
                    ..LaneConfig::default()
                },
                Some("normal_slots"),
            ),
            (
                "TC1",
                LaneConfig {
                    critical_slots: 0,
                    ..LaneConfig::default()
                },
                Some("critical_slots"),
            ),
            (
                "TC2",
                LaneConfig {
                    retry_limit: 0,
                    ..LaneConfig::default()
                },
                Some("retry_limit"),
            ),
            (
                "TC3",
                LaneConfig {
                    halt_after_retries: 20_000_000,
                    ..LaneConfig::default()
                },
                Some("halt_after_retries"),
            ),
            ("TC4", LaneConfig::default(), None),
        ];
        for (label, cfg, want) in cases {
            assert_eq!(cfg.validate().err().map(|e| e.0), want, "{label}");
        }
    }

    #[test]
    fn concurrent_producers_lose_nothing_on_high() {
        let lanes = Arc::new(Lanes::new(LaneConfig {
            retry_limit: u32::MAX,
            ..small()
        }));
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let lanes = Arc::clone(&lanes);
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        lanes.push_high(trade(p * 1_000_000 + i)).unwrap();
                    }
                })
            })
            .collect();
        let mut seen = [0u64; 2];
        let mut last = [None::<u64>; 2];
        while seen.iter().sum::<u64>() < 10_000 {
            if let Some(e) = lanes.pop(Lane::High) {
                let p = (e.recv_ns / 1_000_000) as usize;
                let i = e.recv_ns % 1_000_000;
                assert!(last[p].is_none_or(|l| l < i), "per-producer FIFO order");
                last[p] = Some(i);
                seen[p] += 1;
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(seen, [5_000, 5_000]);
    }
}
