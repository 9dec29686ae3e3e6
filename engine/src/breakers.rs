//! Circuit breakers: conditions that take the engine out of normal trading by themselves, and
//! bring it back only after a cool-down and a run of good checks.
//!
//! | breaker | measured | trips when |
//! |---|---|---|
//! | `drawdown` | equity (realised + unrealised − fees over all instruments) below its peak | the drop reaches `max` |
//! | `daily_loss` | equity below its value at the start of the UTC day | the loss reaches `max` |
//! | `reject_storm` | venue and gateway rejects | `max_rejects` fall within `window_ms` |
//! | `feed_down` | time a feed has been out of `Live` (down, reconnecting, stale) | it reaches `max_ms` |
//! | `lane_latency` | CRITICAL and HIGH queue waits in one check interval | their p99 exceeds `p99_us` |
//! | `high_backpressure` | the HIGH lane's back-pressure flag | it stays raised `max_ms` |
//!
//! Each breaker is a small state machine:
//!
//! ```text
//!   Closed ──bad check──▶ Open ──cool-down over──▶ HalfOpen ──N good checks──▶ Closed
//!                          ▲                          │
//!                          └────────bad check─────────┘
//! ```
//!
//! While `Open` the breaker imposes its action — `reduce` (only orders that reduce a position),
//! `halt` (no new orders) or `flatten` (cancel every working order, close every position, then
//! halt). While `HalfOpen` it imposes `reducing`, so a strategy can only take risk off until the
//! condition has been good for `half_open_checks` consecutive checks. The engine's trading state
//! is the most restrictive of the operator's (kill switch / resume) and every breaker's.
//!
//! PnL and reject breakers are checked as their inputs change (every fill, every price of an
//! instrument with an open position, every reject), so they trip on the event that breaches
//! them; every breaker is also checked each `check_interval_ms` of clock time, which is what
//! drives cool-downs and half-open recovery. A drawdown never heals by itself once flat — it
//! stays open until the operator resumes (`Control::Resume` re-bases the peak and the day's
//! start at the current equity and closes every breaker).
//!
//! Hot path: integer arithmetic on preallocated state; nothing allocates after construction.

pub mod config;

use crate::event::FeedState;
use crate::fixed::{Money, FIXED_SCALE, MONEY_SCALE};
use crate::types::TradingState;

pub use crate::types::{BreakerAction, BreakerEvent, BreakerKind, BreakerState};

/// How a breaker trips and recovers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Trip {
    /// Action while open.
    pub action: BreakerAction,
    /// Time open before half-open, ns.
    pub cooldown_ns: u64,
    /// Consecutive good checks in half-open before closing (at least 1).
    pub half_open_checks: u32,
}

/// Limits of every breaker (`None` = that breaker is off).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakerSettings {
    /// Periodic check interval, ns (at least 1 ms).
    pub check_interval_ns: u64,
    /// Max drop of equity from its peak.
    pub drawdown: Option<(Money, Trip)>,
    /// Max loss since the start of the UTC day.
    pub daily_loss: Option<(Money, Trip)>,
    /// `(max_rejects, window_ns)`.
    pub reject_storm: Option<((u32, u64), Trip)>,
    /// Max time a feed may be out of `Live`, ns.
    pub feed_down: Option<(u64, Trip)>,
    /// `(p99_ns, min_samples)`: queue-wait p99 limit of CRITICAL and HIGH per interval, judged
    /// only on intervals with at least `min_samples` events.
    pub lane_latency: Option<((u64, u32), Trip)>,
    /// Max time HIGH back-pressure may stay raised, ns.
    pub high_backpressure: Option<(u64, Trip)>,
}

impl Default for BreakerSettings {
    /// Every breaker off.
    fn default() -> Self {
        Self {
            check_interval_ns: 100_000_000,
            drawdown: None,
            daily_loss: None,
            reject_storm: None,
            feed_down: None,
            lane_latency: None,
            high_backpressure: None,
        }
    }
}

impl BreakerSettings {
    fn trip(&self, kind: BreakerKind) -> Option<Trip> {
        match kind {
            BreakerKind::Drawdown => self.drawdown.map(|x| x.1),
            BreakerKind::DailyLoss => self.daily_loss.map(|x| x.1),
            BreakerKind::RejectStorm => self.reject_storm.map(|x| x.1),
            BreakerKind::FeedDown => self.feed_down.map(|x| x.1),
            BreakerKind::LaneLatency => self.lane_latency.map(|x| x.1),
            BreakerKind::HighBackpressure => self.high_backpressure.map(|x| x.1),
        }
    }
}

/// Feeds tracked by the feed breaker (feed numbers at or above are ignored).
pub const MAX_FEEDS: usize = 64;
/// Most rejects a reject-storm window can count.
pub const MAX_REJECT_WINDOW: u32 = 65_536;
/// Pending transitions held between engine drains (more than every breaker can make at once).
const PENDING: usize = 4 * BreakerKind::COUNT;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    state: BreakerState,
    since_ns: u64,
    good: u32,
}

#[derive(Clone, Copy, Debug)]
struct Feed {
    state: FeedState,
    since_ns: u64,
    seen: bool,
}

/// What a check measured: value, limit and whether it breaches.
#[derive(Clone, Copy, Debug)]
struct Reading {
    value: i64,
    limit: i64,
    bad: bool,
}

impl Reading {
    /// Nothing measured and nothing breached (operator reset, an idle lane interval).
    const NONE: Self = Self {
        value: 0,
        limit: 0,
        bad: false,
    };
}

fn money_e8(m: Money) -> i64 {
    const DIV: i128 = MONEY_SCALE / FIXED_SCALE as i128;
    // Readings mostly fit 64 bits, where dividing by a constant is a multiply (the 128-bit
    // division is a library call); both truncate towards zero, so the quotient is the same.
    if let Ok(raw) = i64::try_from(m.raw()) {
        #[allow(clippy::cast_possible_truncation, reason = "DIV is 1e8")]
        return raw / DIV as i64;
    }
    let v = m.raw() / DIV;
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn ms(ns: u64) -> i64 {
    i64::try_from(ns / NS_PER_MS).unwrap_or(i64::MAX)
}

/// The breakers' state, owned by the engine thread.
///
/// # Allocation
/// Allocates only in [`Breakers::new`].
#[derive(Debug)]
pub struct Breakers {
    settings: BreakerSettings,
    cells: [Cell; BreakerKind::COUNT],
    trips: [u64; BreakerKind::COUNT],
    recoveries: [u64; BreakerKind::COUNT],
    /// Net PnL per instrument at its last reference price.
    net: Box<[Money]>,
    equity: Money,
    peak: Money,
    day: u64,
    day_start: Money,
    /// Ring of the last `max_rejects` reject times.
    rejects: Box<[u64]>,
    reject_head: usize,
    reject_count: usize,
    feeds: [Feed; MAX_FEEDS],
    /// Feeds `0..feeds_used` have reported (the check scans only those).
    feeds_used: usize,
    /// CRITICAL and HIGH: events this interval, and those that waited longer than the limit.
    lane_samples: [u32; 2],
    lane_over: [u32; 2],
    backpressure_since: Option<u64>,
    next_check_ns: u64,
    pending: [Option<BreakerEvent>; PENDING],
    pending_len: usize,
    lost_transitions: u64,
}

impl Breakers {
    /// Breakers for `instruments` instruments, all closed, with equity zero at `now_ns`.
    #[must_use]
    pub fn new(settings: BreakerSettings, instruments: usize, now_ns: u64) -> Self {
        let window = settings
            .reject_storm
            .map_or(0, |((n, _), _)| n.clamp(1, MAX_REJECT_WINDOW) as usize);
        Self {
            settings,
            cells: [Cell::default(); BreakerKind::COUNT],
            trips: [0; BreakerKind::COUNT],
            recoveries: [0; BreakerKind::COUNT],
            net: vec![Money::ZERO; instruments].into_boxed_slice(),
            equity: Money::ZERO,
            peak: Money::ZERO,
            day: now_ns / NS_PER_DAY,
            day_start: Money::ZERO,
            rejects: vec![0; window].into_boxed_slice(),
            reject_head: 0,
            reject_count: 0,
            feeds: [Feed {
                state: FeedState::Live,
                since_ns: 0,
                seen: false,
            }; MAX_FEEDS],
            feeds_used: 0,
            lane_samples: [0; 2],
            lane_over: [0; 2],
            backpressure_since: None,
            next_check_ns: now_ns.saturating_add(settings.check_interval_ns),
            pending: [None; PENDING],
            pending_len: 0,
            lost_transitions: 0,
        }
    }

    /// The settings.
    #[must_use]
    pub const fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// `true` if any PnL breaker is on (the engine then reports net PnL as prices move).
    #[inline]
    #[must_use]
    pub const fn tracks_pnl(&self) -> bool {
        self.settings.drawdown.is_some() || self.settings.daily_loss.is_some()
    }

    /// `true` if the lane-latency breaker wants queue waits.
    #[inline]
    #[must_use]
    pub const fn tracks_latency(&self) -> bool {
        self.settings.lane_latency.is_some()
    }

    /// State of one breaker.
    #[must_use]
    pub fn state(&self, kind: BreakerKind) -> BreakerState {
        self.cells[kind as usize].state
    }

    /// Trips so far, per breaker.
    #[must_use]
    pub const fn trips(&self) -> &[u64; BreakerKind::COUNT] {
        &self.trips
    }

    /// Recoveries (back to closed) so far, per breaker.
    #[must_use]
    pub const fn recoveries(&self) -> &[u64; BreakerKind::COUNT] {
        &self.recoveries
    }

    /// Current equity: the sum of every instrument's net PnL.
    #[must_use]
    pub const fn equity(&self) -> Money {
        self.equity
    }

    /// Transitions that did not fit the pending buffer (the engine drains it after every
    /// call, so this stays zero; counted rather than assumed).
    #[must_use]
    pub const fn lost_transitions(&self) -> u64 {
        self.lost_transitions
    }

    /// The most restrictive trading state any breaker imposes.
    #[must_use]
    pub fn imposed(&self) -> TradingState {
        let mut s = TradingState::Active;
        for kind in BreakerKind::ALL {
            let imposed = match (self.cells[kind as usize].state, self.settings.trip(kind)) {
                (BreakerState::Open, Some(t)) => t.action.imposes(),
                (BreakerState::HalfOpen, Some(_)) => TradingState::Reducing,
                _ => TradingState::Active,
            };
            if imposed as u8 > s as u8 {
                s = imposed;
            }
        }
        s
    }

    /// Takes the oldest transition not yet handled by the engine.
    #[inline]
    pub fn pop_transition(&mut self) -> Option<BreakerEvent> {
        if self.pending_len == 0 {
            return None;
        }
        let e = self.pending[0];
        self.pending.copy_within(1..self.pending_len, 0);
        self.pending_len -= 1;
        e
    }

    /// `true` if transitions wait in the pending buffer.
    #[inline]
    #[must_use]
    pub const fn has_transitions(&self) -> bool {
        self.pending_len > 0
    }

    fn emit(&mut self, kind: BreakerKind, state: BreakerState, action: BreakerAction, r: Reading) {
        if self.pending_len == PENDING {
            self.lost_transitions += 1;
            return;
        }
        self.pending[self.pending_len] = Some(BreakerEvent {
            kind,
            state,
            action,
            value: r.value,
            limit: r.limit,
        });
        self.pending_len += 1;
    }

    /// Feeds one reading into a breaker's state machine. `periodic` readings count as good
    /// checks in half-open; event-driven ones can only trip.
    fn judge(&mut self, kind: BreakerKind, r: Reading, now_ns: u64, periodic: bool) {
        let Some(trip) = self.settings.trip(kind) else {
            return;
        };
        let cell = &mut self.cells[kind as usize];
        match cell.state {
            BreakerState::Closed | BreakerState::HalfOpen if r.bad => {
                *cell = Cell {
                    state: BreakerState::Open,
                    since_ns: now_ns,
                    good: 0,
                };
                self.trips[kind as usize] += 1;
                self.emit(kind, BreakerState::Open, trip.action, r);
            }
            BreakerState::Closed => {}
            BreakerState::Open => {
                if periodic && now_ns.saturating_sub(cell.since_ns) >= trip.cooldown_ns {
                    *cell = Cell {
                        state: BreakerState::HalfOpen,
                        since_ns: now_ns,
                        good: 0,
                    };
                    self.emit(kind, BreakerState::HalfOpen, trip.action, r);
                }
            }
            BreakerState::HalfOpen => {
                if periodic {
                    cell.good += 1;
                    if cell.good >= trip.half_open_checks.max(1) {
                        *cell = Cell {
                            state: BreakerState::Closed,
                            since_ns: now_ns,
                            good: 0,
                        };
                        self.recoveries[kind as usize] += 1;
                        self.emit(kind, BreakerState::Closed, trip.action, r);
                    }
                }
            }
        }
    }

    fn roll_day(&mut self, now_ns: u64) {
        let day = now_ns / NS_PER_DAY;
        if day != self.day {
            self.day = day;
            self.day_start = self.equity;
        }
    }

    fn pnl_readings(&self) -> (Option<Reading>, Option<Reading>) {
        let dd = self.settings.drawdown.map(|(max, _)| {
            let drop = self.peak - self.equity;
            Reading {
                value: money_e8(drop),
                limit: money_e8(max),
                bad: drop >= max,
            }
        });
        let dl = self.settings.daily_loss.map(|(max, _)| {
            let loss = self.day_start - self.equity;
            Reading {
                value: money_e8(loss),
                limit: money_e8(max),
                bad: loss >= max,
            }
        });
        (dd, dl)
    }

    fn judge_pnl(&mut self, now_ns: u64, periodic: bool) {
        self.roll_day(now_ns);
        let (dd, dl) = self.pnl_readings();
        if let Some(r) = dd {
            self.judge(BreakerKind::Drawdown, r, now_ns, periodic);
        }
        if let Some(r) = dl {
            self.judge(BreakerKind::DailyLoss, r, now_ns, periodic);
        }
    }

    /// Instrument `i`'s net PnL (realised + unrealised − fees at its reference price) is now
    /// `net`: updates equity and its peak and checks the PnL breakers. O(1).
    #[inline]
    pub fn on_net_pnl(&mut self, i: usize, net: Money, now_ns: u64) {
        let Some(slot) = self.net.get_mut(i) else {
            return;
        };
        if *slot == net {
            return;
        }
        let previous = *slot;
        *slot = net;
        // A new UTC day starts at the equity before this change.
        self.roll_day(now_ns);
        self.equity += net - previous;
        if self.equity > self.peak {
            self.peak = self.equity;
        }
        self.judge_pnl(now_ns, false);
    }

    /// Sets the starting net PnL of every instrument (positions restored from a store) without
    /// judging: the run's peak and day start are the equity it starts with.
    pub fn rebase_equity(&mut self, nets: impl IntoIterator<Item = Money>) {
        self.equity = Money::ZERO;
        for (slot, net) in self.net.iter_mut().zip(nets) {
            *slot = net;
            self.equity += net;
        }
        self.peak = self.equity;
        self.day_start = self.equity;
    }

    /// Counts a venue or gateway reject.
    #[inline]
    pub fn on_reject(&mut self, now_ns: u64) {
        let Some(((max, window_ns), _)) = self.settings.reject_storm else {
            return;
        };
        let n = self.rejects.len();
        self.rejects[self.reject_head] = now_ns;
        self.reject_head = (self.reject_head + 1) % n;
        self.reject_count = (self.reject_count + 1).min(n);
        let r = self.reject_reading(max, window_ns, now_ns);
        self.judge(BreakerKind::RejectStorm, r, now_ns, false);
    }

    fn reject_reading(&self, max: u32, window_ns: u64, now_ns: u64) -> Reading {
        let n = self.rejects.len();
        // Rejects within the window, newest first (the ring holds the last `max`).
        let mut within = 0usize;
        for k in 0..self.reject_count {
            let t = self.rejects[(self.reject_head + n - 1 - k) % n];
            if now_ns.saturating_sub(t) >= window_ns {
                break;
            }
            within += 1;
        }
        Reading {
            value: i64::try_from(within).unwrap_or(i64::MAX),
            limit: i64::from(max),
            bad: within >= max as usize,
        }
    }

    /// A feed changed state.
    #[inline]
    pub fn on_feed(&mut self, feed: u16, state: FeedState, now_ns: u64) {
        let Some(f) = self.feeds.get_mut(usize::from(feed)) else {
            return;
        };
        self.feeds_used = self.feeds_used.max(usize::from(feed) + 1);
        if !f.seen || (f.state == FeedState::Live) != (state == FeedState::Live) {
            f.since_ns = now_ns;
        }
        f.seen = true;
        f.state = state;
    }

    /// One CRITICAL (`lane = 0`) or HIGH (`lane = 1`) queue wait.
    #[inline]
    pub fn on_lane_wait(&mut self, lane: usize, wait_ns: u64) {
        if let (Some(((limit, _), _)), Some(samples)) =
            (self.settings.lane_latency, self.lane_samples.get_mut(lane))
        {
            *samples = samples.saturating_add(1);
            if wait_ns > limit {
                self.lane_over[lane] = self.lane_over[lane].saturating_add(1);
            }
        }
    }

    /// `true` when the periodic check is due.
    #[inline]
    #[must_use]
    pub const fn check_due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_check_ns
    }

    /// The periodic check of every breaker; `high_backpressure` is the HIGH lane's flag now.
    pub fn check(&mut self, now_ns: u64, high_backpressure: bool) {
        self.next_check_ns = now_ns.saturating_add(self.settings.check_interval_ns.max(1));
        self.judge_pnl(now_ns, true);
        if let Some(((max, window_ns), _)) = self.settings.reject_storm {
            let r = self.reject_reading(max, window_ns, now_ns);
            self.judge(BreakerKind::RejectStorm, r, now_ns, true);
        }
        if let Some((max_ns, _)) = self.settings.feed_down {
            let worst = self.feeds[..self.feeds_used]
                .iter()
                .filter(|f| f.seen && f.state != FeedState::Live)
                .map(|f| now_ns.saturating_sub(f.since_ns))
                .max()
                .unwrap_or(0);
            let r = Reading {
                value: ms(worst),
                limit: ms(max_ns),
                bad: worst >= max_ns,
            };
            self.judge(BreakerKind::FeedDown, r, now_ns, true);
        }
        if let Some(((_, min_samples), _)) = self.settings.lane_latency {
            // p99 > limit exactly when more than 1 % of the samples exceed the limit.
            let mut r = Reading::NONE;
            for lane in 0..2 {
                let (n, over) = (self.lane_samples[lane], self.lane_over[lane]);
                let allowed = n / 100;
                let bad = n >= min_samples.max(1) && over > allowed;
                if bad || (!r.bad && i64::from(over) > r.value) {
                    r = Reading {
                        value: i64::from(over),
                        limit: i64::from(allowed),
                        bad,
                    };
                }
            }
            self.lane_samples = [0; 2];
            self.lane_over = [0; 2];
            self.judge(BreakerKind::LaneLatency, r, now_ns, true);
        }
        if let Some((max_ns, _)) = self.settings.high_backpressure {
            let held = if high_backpressure {
                let since = *self.backpressure_since.get_or_insert(now_ns);
                now_ns.saturating_sub(since)
            } else {
                self.backpressure_since = None;
                0
            };
            let r = Reading {
                value: ms(held),
                limit: ms(max_ns),
                bad: high_backpressure && held >= max_ns,
            };
            self.judge(BreakerKind::HighBackpressure, r, now_ns, true);
        }
    }

    /// Operator resume: every breaker closes (each change reported), the drawdown peak and the
    /// day's start are re-based at the current equity, the reject window is emptied.
    pub fn reset(&mut self, now_ns: u64) {
        for kind in BreakerKind::ALL {
            let cell = &mut self.cells[kind as usize];
            if cell.state != BreakerState::Closed {
                *cell = Cell {
                    state: BreakerState::Closed,
                    since_ns: now_ns,
                    good: 0,
                };
                self.recoveries[kind as usize] += 1;
                if let Some(trip) = self.settings.trip(kind) {
                    self.emit(kind, BreakerState::Closed, trip.action, Reading::NONE);
                }
            }
        }
        self.peak = self.equity;
        self.day_start = self.equity;
        self.reject_count = 0;
        self.backpressure_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;

    fn trip(action: BreakerAction) -> Trip {
        Trip {
            action,
            cooldown_ns: 1_000 * MS,
            half_open_checks: 3,
        }
    }

    fn money(units: i64) -> Money {
        Money::from_fixed_raw(units * FIXED_SCALE)
    }

    fn drain(b: &mut Breakers) -> Vec<(BreakerKind, BreakerState)> {
        core::iter::from_fn(|| b.pop_transition())
            .map(|e| (e.kind, e.state))
            .collect()
    }

    proptest::proptest! {
        /// The 64-bit fast path of `money_e8` gives the 128-bit quotient, sign and all.
        #[test]
        fn prop_money_e8_matches_the_128_bit_division(raw in proptest::prop_oneof![
            proptest::strategy::Strategy::prop_map(proptest::num::i64::ANY, i128::from),
            proptest::num::i128::ANY,
        ]) {
            let want = raw / (MONEY_SCALE / i128::from(FIXED_SCALE));
            let want = i64::try_from(want).unwrap_or(if want < 0 { i64::MIN } else { i64::MAX });
            proptest::prop_assert_eq!(money_e8(Money(raw)), want);
        }
    }

    #[test]
    fn drawdown_trips_on_the_breaching_update_and_stays_open_until_reset() {
        let s = BreakerSettings {
            drawdown: Some((money(100), trip(BreakerAction::Flatten))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 2, 0);
        // Peak 150 (sum of both instruments), then a fall of 99 stays closed, 100 trips.
        b.on_net_pnl(0, money(100), 1);
        b.on_net_pnl(1, money(50), 2);
        b.on_net_pnl(0, money(1), 3);
        assert_eq!(b.state(BreakerKind::Drawdown), BreakerState::Closed);
        assert_eq!(b.equity(), money(51));
        b.on_net_pnl(1, money(49), 4);
        assert_eq!(b.state(BreakerKind::Drawdown), BreakerState::Open);
        let e = b.pop_transition().unwrap();
        assert_eq!(
            (e.kind, e.state, e.action),
            (
                BreakerKind::Drawdown,
                BreakerState::Open,
                BreakerAction::Flatten
            )
        );
        assert_eq!((e.value, e.limit), (100 * FIXED_SCALE, 100 * FIXED_SCALE));
        assert_eq!(b.imposed(), TradingState::Halted);
        // Cool-down over → half-open (reducing), but the drawdown is still there → open again.
        b.check(1_000 * MS + 4, false);
        assert_eq!(
            drain(&mut b),
            [(BreakerKind::Drawdown, BreakerState::HalfOpen)]
        );
        assert_eq!(b.imposed(), TradingState::Reducing);
        b.check(1_100 * MS + 4, false);
        assert_eq!(drain(&mut b), [(BreakerKind::Drawdown, BreakerState::Open)]);
        assert_eq!(b.trips()[0], 2);
        // Operator resume re-bases: closed, and the same equity no longer breaches.
        b.reset(2_000 * MS);
        assert_eq!(
            drain(&mut b),
            [(BreakerKind::Drawdown, BreakerState::Closed)]
        );
        b.check(2_100 * MS, false);
        assert!(drain(&mut b).is_empty());
        assert_eq!(b.imposed(), TradingState::Active);
    }

    #[test]
    fn half_open_closes_after_n_good_checks_and_not_before() {
        let s = BreakerSettings {
            reject_storm: Some(((3, 500 * MS), trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        for t in [10, 20] {
            b.on_reject(t * MS);
        }
        assert_eq!(b.state(BreakerKind::RejectStorm), BreakerState::Closed);
        b.on_reject(30 * MS);
        assert_eq!(
            drain(&mut b),
            [(BreakerKind::RejectStorm, BreakerState::Open)]
        );
        // Still within the cool-down: stays open even though the window has emptied.
        b.check(900 * MS, false);
        assert!(drain(&mut b).is_empty());
        b.check(1_030 * MS, false);
        assert_eq!(
            drain(&mut b),
            [(BreakerKind::RejectStorm, BreakerState::HalfOpen)]
        );
        for (k, t) in [1_130u64, 1_230].into_iter().enumerate() {
            b.check(t * MS, false);
            assert!(drain(&mut b).is_empty(), "good check {k} closed too early");
        }
        b.check(1_330 * MS, false);
        assert_eq!(
            drain(&mut b),
            [(BreakerKind::RejectStorm, BreakerState::Closed)]
        );
        assert_eq!((b.trips()[2], b.recoveries()[2]), (1, 1));
    }

    #[test]
    fn rejects_outside_the_window_do_not_count() {
        let s = BreakerSettings {
            reject_storm: Some(((3, 100 * MS), trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        for t in [0u64, 60, 120, 180, 240] {
            b.on_reject(t * MS);
        }
        // At most two rejects ever fall within 100 ms of each other.
        assert_eq!(b.state(BreakerKind::RejectStorm), BreakerState::Closed);
        b.on_reject(250 * MS);
        assert_eq!(b.state(BreakerKind::RejectStorm), BreakerState::Open);
    }

    #[test]
    fn daily_loss_re_bases_at_utc_midnight() {
        let s = BreakerSettings {
            daily_loss: Some((money(50), trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let day = NS_PER_DAY;
        let mut b = Breakers::new(s, 1, day + 1);
        b.on_net_pnl(0, money(-40), day + 2);
        assert_eq!(b.state(BreakerKind::DailyLoss), BreakerState::Closed);
        // Next day: the day starts at −40, so a further −40 (total −80) is still within 50.
        b.on_net_pnl(0, money(-80), 2 * day + 5);
        assert_eq!(b.state(BreakerKind::DailyLoss), BreakerState::Closed);
        b.on_net_pnl(0, money(-90), 2 * day + 6);
        assert_eq!(b.state(BreakerKind::DailyLoss), BreakerState::Open);
    }

    #[test]
    fn feed_down_counts_time_out_of_live_per_feed() {
        let s = BreakerSettings {
            feed_down: Some((2_000 * MS, trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        b.on_feed(0, FeedState::Live, 0);
        b.on_feed(1, FeedState::Live, 0);
        b.on_feed(1, FeedState::Reconnecting, 1_000 * MS);
        // Reconnecting → Stale is still out of Live: the clock keeps running from 1 s.
        b.on_feed(1, FeedState::Stale, 2_000 * MS);
        b.check(2_999 * MS, false);
        assert_eq!(b.state(BreakerKind::FeedDown), BreakerState::Closed);
        b.check(3_000 * MS, false);
        assert_eq!(b.state(BreakerKind::FeedDown), BreakerState::Open);
        let e = b.pop_transition().unwrap();
        assert_eq!((e.value, e.limit), (2_000, 2_000));
        b.on_feed(1, FeedState::Live, 3_100 * MS);
        b.check(4_000 * MS, false);
        assert_eq!(b.state(BreakerKind::FeedDown), BreakerState::HalfOpen);
    }

    #[test]
    fn lane_latency_judges_p99_per_interval_with_a_minimum_sample() {
        let s = BreakerSettings {
            lane_latency: Some(((1_000, 100), trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        // 200 HIGH samples, 2 over the limit: exactly 1 % — p99 within the limit.
        for k in 0..200 {
            b.on_lane_wait(1, if k < 2 { 5_000 } else { 100 });
        }
        b.check(100 * MS, false);
        assert_eq!(b.state(BreakerKind::LaneLatency), BreakerState::Closed);
        // 50 samples all over the limit: too few to judge.
        for _ in 0..50 {
            b.on_lane_wait(0, 5_000);
        }
        b.check(200 * MS, false);
        assert_eq!(b.state(BreakerKind::LaneLatency), BreakerState::Closed);
        // 200 samples, 3 over: p99 above the limit.
        for k in 0..200 {
            b.on_lane_wait(0, if k < 3 { 5_000 } else { 100 });
        }
        b.check(300 * MS, false);
        assert_eq!(b.state(BreakerKind::LaneLatency), BreakerState::Open);
        let e = b.pop_transition().unwrap();
        assert_eq!((e.value, e.limit), (3, 2));
    }

    #[test]
    fn backpressure_must_be_held_for_the_limit() {
        let s = BreakerSettings {
            high_backpressure: Some((500 * MS, trip(BreakerAction::Reduce))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        b.check(100 * MS, true);
        b.check(400 * MS, true);
        b.check(500 * MS, false);
        b.check(600 * MS, true);
        b.check(1_000 * MS, true);
        assert_eq!(b.state(BreakerKind::HighBackpressure), BreakerState::Closed);
        b.check(1_100 * MS, true);
        assert_eq!(b.state(BreakerKind::HighBackpressure), BreakerState::Open);
        assert_eq!(b.imposed(), TradingState::Reducing);
    }

    #[test]
    fn the_most_restrictive_breaker_wins() {
        let s = BreakerSettings {
            reject_storm: Some(((1, 100 * MS), trip(BreakerAction::Reduce))),
            high_backpressure: Some((0, trip(BreakerAction::Halt))),
            ..BreakerSettings::default()
        };
        let mut b = Breakers::new(s, 1, 0);
        b.on_reject(1);
        assert_eq!(b.imposed(), TradingState::Reducing);
        b.check(2, true);
        assert_eq!(b.imposed(), TradingState::Halted);
        assert_eq!(drain(&mut b).len(), 2);
    }

    #[test]
    fn disabled_breakers_never_trip() {
        let mut b = Breakers::new(BreakerSettings::default(), 1, 0);
        b.on_net_pnl(0, money(-1_000_000), 1);
        for t in 0..1_000 {
            b.on_reject(t);
        }
        b.on_feed(0, FeedState::Down, 0);
        b.check(NS_PER_DAY, true);
        assert!(!b.has_transitions());
        assert_eq!(b.imposed(), TradingState::Active);
    }
}
