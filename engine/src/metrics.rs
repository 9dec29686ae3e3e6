//! Latency histograms kept by the loop and the telemetry it publishes. Hot path: `record` runs
//! twice per event (no allocation: histograms have fixed bounds and never resize); publishing
//! runs at a configured interval and writes plain relaxed atomics that any thread may read.

use core::sync::atomic::{AtomicU64, Ordering};

use core::sync::atomic::{AtomicI64, AtomicU8};

use hdrhistogram::Histogram;

use crate::book::{BookState, OrderBook};
use crate::fixed::{Money, Price, Qty, FIXED_SCALE};
use crate::position::Position;

use crate::api::Deny;
use crate::breakers::BreakerKind;
use crate::lane::Lane;

/// Highest latency a histogram tracks (larger values are clamped): 60 s.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Significant figures kept by every latency histogram.
pub const LATENCY_SIGFIGS: u8 = 3;

/// A new latency histogram with the engine's bounds.
///
/// # Panics
/// Never: the bounds are constants known to be valid.
#[must_use]
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGFIGS)
        .expect("constant bounds are valid")
}

/// Count and percentiles of one histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of a histogram (off the per-event path: this walks the buckets).
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Queue-wait and service-time histograms for each lane, owned by the engine thread.
///
/// # Allocation
/// Allocates only in [`LoopHistograms::new`] (and `clone`, off the hot path).
#[derive(Clone, Debug)]
pub struct LoopHistograms {
    wait: [Histogram<u64>; 4],
    service: [Histogram<u64>; 4],
}

impl Default for LoopHistograms {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopHistograms {
    /// Empty histograms.
    #[must_use]
    pub fn new() -> Self {
        Self {
            wait: core::array::from_fn(|_| latency_histogram()),
            service: core::array::from_fn(|_| latency_histogram()),
        }
    }

    /// Records one event's queue wait and service time.
    #[inline]
    pub fn record(&mut self, lane: Lane, wait_ns: u64, service_ns: u64) {
        self.wait[lane as usize].saturating_record(wait_ns.max(1));
        self.service[lane as usize].saturating_record(service_ns.max(1));
    }

    /// Queue-wait histogram of a lane.
    #[must_use]
    pub fn wait(&self, lane: Lane) -> &Histogram<u64> {
        &self.wait[lane as usize]
    }

    /// Service-time histogram of a lane.
    #[must_use]
    pub fn service(&self, lane: Lane) -> &Histogram<u64> {
        &self.service[lane as usize]
    }
}

/// Plain counters kept by the engine thread (published into [`Telemetry`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineCounters {
    /// Events handled, per lane.
    pub events: [u64; 4],
    /// Orders handed to the gateway.
    pub orders_sent: u64,
    /// Cancels handed to the gateway.
    pub cancels_sent: u64,
    /// Amends handed to the gateway.
    pub amends_sent: u64,
    /// Fills applied.
    pub fills: u64,
    /// Orders rejected by the venue or the gateway.
    pub rejects: u64,
    /// Orders denied before the gateway, per [`Deny::code`].
    pub denials: [u64; Deny::COUNT],
    /// Orders refused because the pool was full.
    pub pool_exhausted: u64,
    /// Order reports for unknown or recycled ids.
    pub unknown_reports: u64,
    /// Order reports refused by the state machine (duplicates, overfills, late reports).
    pub illegal_transitions: u64,
    /// Fills the position refused (bad price or out of range).
    pub position_errors: u64,
    /// Positions a live venue's reconciliation changed (the venue wins).
    pub position_syncs: u64,
    /// Times a book was marked stale after a lost delta.
    pub books_stale: u64,
    /// Book deltas ignored because the book was stale or never synced.
    pub deltas_ignored: u64,
    /// Essential persistence records lost because the outbox and the spill were both full.
    pub records_lost: u64,
    /// Persistence outages reported by the writer (`StoreStatus { healthy: false }`).
    pub store_outages: u64,
    /// Kill-switch trips.
    pub kills: u64,
    /// Closing orders sent by the kill switch's flatten.
    pub flatten_orders: u64,
    /// Positions the flatten could not close (no reference price yet, or refused).
    pub flatten_failed: u64,
    /// Stops fired (closing order sent).
    pub stops_fired: u64,
    /// Stops whose closing order was refused.
    pub stops_failed: u64,
    /// Rehearsals of an armed stop's path (see `engine.stop_warm_events`): the closing order
    /// built and checked, nothing sent.
    pub stop_rehearsals: u64,
    /// Strategy timers fired (see [`crate::timers`]).
    pub timers_fired: u64,
    /// Timers a strategy could not schedule because every slot was in use.
    pub timers_refused: u64,
    /// Trips per circuit breaker (by `BreakerKind` code).
    pub breaker_trips: [u64; BreakerKind::COUNT],
    /// Recoveries (back to closed) per circuit breaker.
    pub breaker_recoveries: [u64; BreakerKind::COUNT],
    /// Current state per circuit breaker (`BreakerState` as `u8`).
    pub breaker_states: [u8; BreakerKind::COUNT],
    /// Breaker transitions neither CRITICAL nor the inline buffer could take (the strategy
    /// was not told; the transition itself was applied and persisted).
    pub breaker_events_unsent: u64,
    /// Value measured at each breaker's last transition (`BreakerKind::unit`).
    pub breaker_values: [i64; BreakerKind::COUNT],
    /// Limit at each breaker's last transition.
    pub breaker_limits: [i64; BreakerKind::COUNT],
    /// The trading state in force (`TradingState` as `u8`: the more restrictive of the
    /// operator's and the breakers').
    pub trading_state: u8,
    /// The operator's trading state (`TradingState` as `u8`): halted after a kill until the
    /// operator resumes.
    pub operator_state: u8,
}

const PCT_FIELDS: usize = 6;

/// One instrument's published state.
#[derive(Debug, Default)]
struct InstrumentCell {
    best_bid: AtomicI64,
    best_ask: AtomicI64,
    book_state: AtomicU8,
    position: AtomicI64,
    /// Realised PnL minus fees, in 10⁻⁸ units (saturating).
    net_realized: AtomicI64,
    /// Realised PnL, in 10⁻⁸ units (saturating).
    realized: AtomicI64,
    /// Fees paid, in 10⁻⁸ units (saturating).
    fees: AtomicI64,
}

/// A copy of one instrument's published state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentSnapshot {
    /// Best bid, if the book has one.
    pub best_bid: Option<Price>,
    /// Best ask, if the book has one.
    pub best_ask: Option<Price>,
    /// Book state.
    pub book_state: BookState,
    /// Signed position.
    pub position: Qty,
    /// Realised PnL minus fees (to 10⁻⁸).
    pub net_realized: Money,
    /// Realised PnL (to 10⁻⁸).
    pub realized: Money,
    /// Fees paid (to 10⁻⁸).
    pub fees: Money,
}

fn state_code(s: BookState) -> u8 {
    match s {
        BookState::Empty => 0,
        BookState::Syncing => 1,
        BookState::Live => 2,
        BookState::Stale => 3,
    }
}

fn state_of(code: u8) -> BookState {
    match code {
        1 => BookState::Syncing,
        2 => BookState::Live,
        3 => BookState::Stale,
        _ => BookState::Empty,
    }
}

/// Telemetry the engine publishes periodically for the status screen and metrics exporter.
/// Written by the engine thread, read by anyone (relaxed atomics: each value is exact, a
/// snapshot may mix two publications).
#[derive(Debug, Default)]
pub struct Telemetry {
    wait: [[AtomicU64; PCT_FIELDS]; 4],
    service: [[AtomicU64; PCT_FIELDS]; 4],
    tick_to_trade: [AtomicU64; PCT_FIELDS],
    events: [AtomicU64; 4],
    orders_sent: AtomicU64,
    cancels_sent: AtomicU64,
    amends_sent: AtomicU64,
    fills: AtomicU64,
    rejects: AtomicU64,
    denials: [AtomicU64; Deny::COUNT],
    pool_exhausted: AtomicU64,
    unknown_reports: AtomicU64,
    illegal_transitions: AtomicU64,
    position_errors: AtomicU64,
    position_syncs: AtomicU64,
    books_stale: AtomicU64,
    deltas_ignored: AtomicU64,
    records_lost: AtomicU64,
    store_outages: AtomicU64,
    kills: AtomicU64,
    flatten_orders: AtomicU64,
    flatten_failed: AtomicU64,
    stops_fired: AtomicU64,
    stops_failed: AtomicU64,
    stop_rehearsals: AtomicU64,
    timers_fired: AtomicU64,
    timers_refused: AtomicU64,
    breaker_trips: [AtomicU64; BreakerKind::COUNT],
    breaker_recoveries: [AtomicU64; BreakerKind::COUNT],
    breaker_states: [AtomicU8; BreakerKind::COUNT],
    breaker_events_unsent: AtomicU64,
    breaker_values: [AtomicI64; BreakerKind::COUNT],
    breaker_limits: [AtomicI64; BreakerKind::COUNT],
    trading_state: AtomicU8,
    operator_state: AtomicU8,
    published_ns: AtomicU64,
    publications: AtomicU64,
    instruments: Box<[InstrumentCell]>,
}

/// A copy of the latest published telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetrySnapshot {
    /// Queue wait per lane.
    pub wait: [Percentiles; 4],
    /// Service time per lane.
    pub service: [Percentiles; 4],
    /// Frame arrival to order handed to the gateway.
    pub tick_to_trade: Percentiles,
    /// Counters.
    pub counters: EngineCounters,
    /// Clock time of the publication.
    pub published_ns: u64,
    /// Number of publications so far.
    pub publications: u64,
}

fn store_pct(slot: &[AtomicU64; PCT_FIELDS], p: Percentiles) {
    for (a, v) in slot
        .iter()
        .zip([p.count, p.p50, p.p90, p.p99, p.p999, p.max])
    {
        a.store(v, Ordering::Relaxed);
    }
}

fn load_pct(slot: &[AtomicU64; PCT_FIELDS]) -> Percentiles {
    let v: [u64; PCT_FIELDS] = core::array::from_fn(|i| slot[i].load(Ordering::Relaxed));
    Percentiles {
        count: v[0],
        p50: v[1],
        p90: v[2],
        p99: v[3],
        p999: v[4],
        max: v[5],
    }
}

impl Telemetry {
    /// Telemetry for `instruments` instruments.
    #[must_use]
    pub fn new(instruments: usize) -> Self {
        Self {
            instruments: (0..instruments)
                .map(|_| InstrumentCell::default())
                .collect(),
            ..Self::default()
        }
    }

    /// Publishes books and positions (engine thread, at the publish interval).
    pub fn publish_instruments(&self, books: &[OrderBook], positions: &[Position]) {
        let r = Ordering::Relaxed;
        for ((cell, book), pos) in self.instruments.iter().zip(books).zip(positions) {
            cell.best_bid
                .store(book.best_bid().map_or(0, |l| l.price.raw()), r);
            cell.best_ask
                .store(book.best_ask().map_or(0, |l| l.price.raw()), r);
            cell.book_state.store(state_code(book.state()), r);
            cell.position.store(pos.qty.raw(), r);
            let e8 = |m: Money| {
                let v = m.raw() / (crate::fixed::MONEY_SCALE / i128::from(FIXED_SCALE));
                i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
            };
            cell.net_realized.store(e8(pos.realized - pos.fees), r);
            cell.realized.store(e8(pos.realized), r);
            cell.fees.store(e8(pos.fees), r);
        }
    }

    /// The latest published state of one instrument.
    #[must_use]
    pub fn instrument(&self, index: usize) -> Option<InstrumentSnapshot> {
        let r = Ordering::Relaxed;
        let c = self.instruments.get(index)?;
        let price = |v: i64| (v != 0).then_some(Price(v));
        Some(InstrumentSnapshot {
            best_bid: price(c.best_bid.load(r)),
            best_ask: price(c.best_ask.load(r)),
            book_state: state_of(c.book_state.load(r)),
            position: Qty(c.position.load(r)),
            net_realized: Money::from_fixed_raw(c.net_realized.load(r)),
            realized: Money::from_fixed_raw(c.realized.load(r)),
            fees: Money::from_fixed_raw(c.fees.load(r)),
        })
    }

    /// Publishes histograms and counters (engine thread, at the publish interval).
    pub fn publish(&self, h: &LoopHistograms, c: &EngineCounters, now_ns: u64) {
        for lane in Lane::ALL {
            store_pct(&self.wait[lane as usize], Percentiles::of(h.wait(lane)));
            store_pct(
                &self.service[lane as usize],
                Percentiles::of(h.service(lane)),
            );
        }
        let r = Ordering::Relaxed;
        for (a, v) in self.events.iter().zip(c.events) {
            a.store(v, r);
        }
        for (a, v) in self.denials.iter().zip(c.denials) {
            a.store(v, r);
        }
        self.orders_sent.store(c.orders_sent, r);
        self.cancels_sent.store(c.cancels_sent, r);
        self.amends_sent.store(c.amends_sent, r);
        self.fills.store(c.fills, r);
        self.rejects.store(c.rejects, r);
        self.pool_exhausted.store(c.pool_exhausted, r);
        self.unknown_reports.store(c.unknown_reports, r);
        self.illegal_transitions.store(c.illegal_transitions, r);
        self.position_errors.store(c.position_errors, r);
        self.position_syncs.store(c.position_syncs, r);
        self.books_stale.store(c.books_stale, r);
        self.deltas_ignored.store(c.deltas_ignored, r);
        self.records_lost.store(c.records_lost, r);
        self.store_outages.store(c.store_outages, r);
        self.kills.store(c.kills, r);
        self.flatten_orders.store(c.flatten_orders, r);
        self.flatten_failed.store(c.flatten_failed, r);
        self.stops_fired.store(c.stops_fired, r);
        self.stops_failed.store(c.stops_failed, r);
        self.stop_rehearsals.store(c.stop_rehearsals, r);
        self.timers_fired.store(c.timers_fired, r);
        self.timers_refused.store(c.timers_refused, r);
        for k in 0..BreakerKind::COUNT {
            self.breaker_trips[k].store(c.breaker_trips[k], r);
            self.breaker_recoveries[k].store(c.breaker_recoveries[k], r);
            self.breaker_states[k].store(c.breaker_states[k], r);
            self.breaker_values[k].store(c.breaker_values[k], r);
            self.breaker_limits[k].store(c.breaker_limits[k], r);
        }
        self.breaker_events_unsent.store(c.breaker_events_unsent, r);
        self.trading_state.store(c.trading_state, r);
        self.operator_state.store(c.operator_state, r);
        self.published_ns.store(now_ns, r);
        self.publications.fetch_add(1, r);
    }

    /// Publishes the tick-to-trade percentiles (engine thread, with [`Telemetry::publish`]).
    pub fn publish_tick_to_trade(&self, p: Percentiles) {
        store_pct(&self.tick_to_trade, p);
    }

    /// Reads the latest publication.
    #[must_use]
    pub fn snapshot(&self) -> TelemetrySnapshot {
        let r = Ordering::Relaxed;
        TelemetrySnapshot {
            wait: core::array::from_fn(|i| load_pct(&self.wait[i])),
            service: core::array::from_fn(|i| load_pct(&self.service[i])),
            tick_to_trade: load_pct(&self.tick_to_trade),
            counters: EngineCounters {
                events: core::array::from_fn(|i| self.events[i].load(r)),
                orders_sent: self.orders_sent.load(r),
                cancels_sent: self.cancels_sent.load(r),
                amends_sent: self.amends_sent.load(r),
                fills: self.fills.load(r),
                rejects: self.rejects.load(r),
                denials: core::array::from_fn(|i| self.denials[i].load(r)),
                pool_exhausted: self.pool_exhausted.load(r),
                unknown_reports: self.unknown_reports.load(r),
                illegal_transitions: self.illegal_transitions.load(r),
                position_errors: self.position_errors.load(r),
                position_syncs: self.position_syncs.load(r),
                books_stale: self.books_stale.load(r),
                deltas_ignored: self.deltas_ignored.load(r),
                records_lost: self.records_lost.load(r),
                store_outages: self.store_outages.load(r),
                kills: self.kills.load(r),
                flatten_orders: self.flatten_orders.load(r),
                flatten_failed: self.flatten_failed.load(r),
                stops_fired: self.stops_fired.load(r),
                stops_failed: self.stops_failed.load(r),
                stop_rehearsals: self.stop_rehearsals.load(r),
                timers_fired: self.timers_fired.load(r),
                timers_refused: self.timers_refused.load(r),
                breaker_trips: core::array::from_fn(|k| self.breaker_trips[k].load(r)),
                breaker_recoveries: core::array::from_fn(|k| self.breaker_recoveries[k].load(r)),
                breaker_states: core::array::from_fn(|k| self.breaker_states[k].load(r)),
                breaker_events_unsent: self.breaker_events_unsent.load(r),
                breaker_values: core::array::from_fn(|k| self.breaker_values[k].load(r)),
                breaker_limits: core::array::from_fn(|k| self.breaker_limits[k].load(r)),
                trading_state: self.trading_state.load(r),
                operator_state: self.operator_state.load(r),
            },
            published_ns: self.published_ns.load(r),
            publications: self.publications.load(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_publication_round_trip() {
        let mut h = LoopHistograms::new();
        for v in 1..=1000u64 {
            h.record(Lane::Normal, v, 2 * v);
        }
        h.record(Lane::Critical, 0, LATENCY_NS_MAX * 10);
        let p = Percentiles::of(h.wait(Lane::Normal));
        assert_eq!(p.count, 1000);
        assert!((499..=501).contains(&p.p50), "p50 {}", p.p50);
        assert!((989..=991).contains(&p.p99), "p99 {}", p.p99);
        assert!((999..=1001).contains(&p.max), "max {}", p.max);
        let crit = Percentiles::of(h.service(Lane::Critical));
        assert!(
            crit.max >= LATENCY_NS_MAX && crit.max < LATENCY_NS_MAX * 2,
            "clamped, not dropped"
        );
        assert_eq!(
            Percentiles::of(h.wait(Lane::Critical)).p50,
            1,
            "zero wait recorded as 1 ns"
        );

        let t = Telemetry::default();
        let c = EngineCounters {
            fills: 7,
            denials: [1; Deny::COUNT],
            ..EngineCounters::default()
        };
        t.publish(&h, &c, 42);
        let s = t.snapshot();
        assert_eq!(s.wait[Lane::Normal as usize], p);
        assert_eq!(s.counters, c);
        assert_eq!((s.published_ns, s.publications), (42, 1));
    }
}
