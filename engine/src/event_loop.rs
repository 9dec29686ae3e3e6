//! The single-threaded event loop: polls the lanes by priority with per-lane budgets, keeps the
//! books, orders and positions, and dispatches to the strategy. Hot path: everything after
//! [`Engine::new`] runs without allocation, locks or syscalls (the `park` idle strategy sleeps
//! only when every lane is empty).
//!
//! One loop turn drains CRITICAL completely (bounded by its capacity), then up to
//! `high_budget` HIGH events, then up to `normal_budget` NORMAL events and up to `low_budget`
//! LOW events. Between two lower-lane events it drains CRITICAL again and serves pending HIGH
//! events from what is left of the turn's HIGH budget, so a stop or a fill never waits behind
//! more than one market-data event. LOW is served every turn it is non-empty, so it cannot
//! starve: one turn handles at most `critical_slots + high_budget + normal_budget +
//! low_budget` events.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::api::{
    AmendRefusal, Context, Deny, Gateway, OrderUpdate, RiskContext, RiskGate, Strategy,
    SubmitError, TradingState,
};
use crate::book::{Applied, OrderBook};
use crate::breakers::{BreakerAction, BreakerSettings, BreakerState, Breakers};
use crate::clock::Clock;
use crate::event::{
    ClientOrderId, Control, Event, EventKind, OrderReport, PositionSync, Side, StopTrigger,
    StrategyId,
};
use crate::fixed::{Price, Qty};
use crate::instrument::{InstrumentIndex, InstrumentRegistry};
use crate::lane::{Lane, LaneConfig, Lanes};
use crate::metrics::{EngineCounters, LoopHistograms, Telemetry};
use crate::order::{OrderInput, OrderKind, OrderRequest, OrderStatus, TimeInForce};
use crate::persist::{Outbox, Record, Spill};
use crate::pool::{OrderPool, PoolError};
use crate::position::Position;
use crate::stops::{StopBook, StopGuard, StopParams};
use crate::timers::{TimerError, Timers};

/// What the loop does when every lane is empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleStrategy {
    /// Busy-spin: lowest latency, burns a core.
    Spin,
    /// Spin a while, then yield the time slice (default; suits 2-core machines).
    SpinYield,
    /// Spin briefly, then sleep for `park_us` microseconds: lowest CPU, highest wake-up latency.
    Park,
}

/// Loop settings (from `[engine]` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// HIGH events per turn.
    pub high_budget: u32,
    /// NORMAL events per turn.
    pub normal_budget: u32,
    /// LOW events per turn (at least 1: LOW never starves).
    pub low_budget: u32,
    /// What to do when idle.
    pub idle: IdleStrategy,
    /// Sleep per idle turn for `park`, microseconds.
    pub park_us: u32,
    /// Pin the engine thread to this core (none = let the OS schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_core: Option<usize>,
    /// Order pool slots.
    pub order_slots: usize,
    /// Price levels kept per book side.
    pub book_levels: usize,
    /// Ticks per book side held in a tick-indexed window around the best (0: none; see
    /// [`crate::book`]).
    pub book_window: usize,
    /// NORMAL events between two rehearsals of an armed stop's path, which keep its code and
    /// data in cache (also every 1,024 idle turns); 0 = never.
    pub stop_warm_events: u32,
    /// Timers a strategy may have pending at once (see [`crate::timers`]).
    #[serde(default = "default_timer_slots")]
    pub timer_slots: usize,
    /// Telemetry publication interval, milliseconds.
    pub publish_interval_ms: u64,
    /// Capacities of the lanes the wiring creates (`[engine.lanes]`).
    pub lanes: LaneConfig,
}

/// Default of [`LoopConfig::timer_slots`].
pub const DEFAULT_TIMER_SLOTS: usize = 256;

fn default_timer_slots() -> usize {
    DEFAULT_TIMER_SLOTS
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            high_budget: 256,
            normal_budget: 1024,
            low_budget: 16,
            idle: IdleStrategy::SpinYield,
            park_us: 50,
            pin_core: None,
            order_slots: 4096,
            book_levels: 4096,
            book_window: 32_768,
            stop_warm_events: 1024,
            timer_slots: DEFAULT_TIMER_SLOTS,
            publish_interval_ms: 1000,
            lanes: LaneConfig::default(),
        }
    }
}

impl LoopConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `engine`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("high_budget", u64::from(self.high_budget)),
            ("normal_budget", u64::from(self.normal_budget)),
            ("low_budget", u64::from(self.low_budget)),
            ("publish_interval_ms", self.publish_interval_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if !self.order_slots.is_power_of_two() || self.order_slots > 1 << 24 {
            return Err((
                "order_slots",
                format!(
                    "must be a power of two in 1..=16777216, got {}",
                    self.order_slots
                ),
            ));
        }
        if !(1..=65_536).contains(&self.timer_slots) {
            return Err((
                "timer_slots",
                format!("must be within 1..=65536, got {}", self.timer_slots),
            ));
        }
        if !self.book_levels.is_power_of_two() || self.book_levels > 1 << 16 {
            return Err((
                "book_levels",
                format!(
                    "must be a power of two in 1..=65536, got {}",
                    self.book_levels
                ),
            ));
        }
        if self.book_window != 0
            && (!self.book_window.is_power_of_two()
                || !(64..=crate::book::MAX_WINDOW).contains(&self.book_window))
        {
            return Err((
                "book_window",
                format!(
                    "must be 0 (no window) or a power of two in 64..={}, got {}",
                    crate::book::MAX_WINDOW,
                    self.book_window
                ),
            ));
        }
        if let Some(core) = self.pin_core {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            if core >= cores {
                return Err((
                    "pin_core",
                    format!("core {core} does not exist (this machine has {cores})"),
                ));
            }
        }
        Ok(())
    }
}

/// Pins the calling thread to a core.
///
/// # Errors
/// A message if the core does not exist or the OS refused.
pub fn pin_current_thread(core: usize) -> Result<(), String> {
    // Asked of the OS directly: listing cores first would only list those in the calling
    // thread's current affinity mask, and a thread started by a pinned one could never move.
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(format!("no core {core}, or the OS refused to pin to it"))
    }
}

/// Per-instrument working-order totals the risk gate needs.
#[derive(Clone, Copy, Debug, Default)]
struct Working {
    orders: u32,
    buy: Qty,
    sell: Qty,
}

/// Everything the loop owns except the strategy: it is the strategy's [`Context`].
#[derive(Debug)]
pub struct Core<R, G, C> {
    lanes: Arc<Lanes>,
    clock: C,
    risk: R,
    gateway: G,
    instruments: InstrumentRegistry,
    books: Box<[OrderBook]>,
    positions: Box<[Position]>,
    reference: Box<[Price]>,
    working: Box<[Working]>,
    open_orders: u32,
    pool: OrderPool,
    /// The kill switch also closes positions.
    flatten_on_kill: bool,
    /// Per-position stops and the guard they are published to.
    stops: StopBook,
    /// Instrument index the next stop rehearsal starts looking from.
    rehearse_from: usize,
    /// Circuit breakers.
    breakers: Breakers,
    /// Trading state set by the operator (kill switch, resume, `set_trading_state`).
    operator_state: TradingState,
    /// In force: the more restrictive of `operator_state` and the breakers'.
    trading_state: TradingState,
    counters: EngineCounters,
    outbox: Option<Arc<Outbox>>,
    /// Kinds of record sent to the outbox (`Record::kind_bit` mask).
    record_kinds: u8,
    spill: Spill,
    current_recv_ns: u64,
    /// Breaker transitions CRITICAL could not take, for the strategy (filled and emptied
    /// within one event).
    unsent: [Option<crate::breakers::BreakerEvent>; 8],
    unsent_len: usize,
    /// A breaker changed: publish telemetry after this event rather than at the interval.
    publish_soon: bool,
    /// Tick-to-trade: from the `recv_ns` of the event being handled (its frame's arrival) to
    /// the order handed to the gateway, per order sent while handling a stamped event.
    tick_to_trade: hdrhistogram::Histogram<u64>,
    /// Record latency histograms: per-lane wait and service, and `tick_to_trade` (off on a
    /// simulated clock, where every sample would be zero).
    timed: bool,
    /// The strategy's pending timers.
    timers: Timers,
    /// `on_timer` is running (a timer it schedules for now or earlier is due 1 ns later).
    in_timer: bool,
}

impl<R: RiskGate, G: Gateway, C: Clock> Core<R, G, C> {
    fn deny(&mut self, instrument: InstrumentIndex, deny: Deny) -> SubmitError {
        self.counters.denials[deny.code()] += 1;
        #[allow(clippy::cast_possible_truncation, reason = "codes are < Deny::COUNT")]
        let code = deny.code() as u16;
        self.record(Record::Denial {
            instrument,
            code,
            ts_ns: self.clock.now_ns(),
        });
        SubmitError::Denied(deny)
    }

    /// Hands a record to the persistence writer, if one is attached (never blocks).
    #[inline]
    fn record(&mut self, record: Record) {
        if record.kind_bit() & self.record_kinds == 0 {
            return;
        }
        if let Some(outbox) = &self.outbox {
            self.spill.send(outbox, record);
            self.counters.records_lost = self.spill.lost();
        }
    }

    fn engine_gates(&self, req: &OrderRequest) -> Result<(), Deny> {
        if self.trading_state == TradingState::Halted {
            return Err(Deny::Halted);
        }
        if self.lanes.high_backpressure() || self.spill.held() > 0 {
            return Err(Deny::Backpressure);
        }
        if self.books[req.instrument.get()].state() == crate::book::BookState::Stale {
            return Err(Deny::BookStale {
                instrument: req.instrument,
            });
        }
        Ok(())
    }

    fn risk_context(&self, instrument: InstrumentIndex, now_ns: u64) -> RiskContext {
        let i = instrument.get();
        let inst = self.instruments.get(instrument);
        let reference = self.reference[i];
        RiskContext {
            position: self.positions[i].qty,
            working_buy: self.working[i].buy,
            working_sell: self.working[i].sell,
            open_orders_instrument: self.working[i].orders,
            open_orders_total: self.open_orders,
            reference_price: (reference.raw() > 0).then_some(reference),
            tick_size: inst.tick_size,
            lot_size: inst.lot_size,
            kind: inst.kind,
            trading_state: self.trading_state,
            now_ns,
            protective: false,
        }
    }

    /// The checks an order passes before it takes a pool slot: the engine gates (not for a
    /// protective order) and the risk gate. Returns the time of the check. Out of line so that
    /// every order and the stop rehearsal run this one copy of the code (see
    /// [`Self::rehearse_stop`]). `req.instrument` must be registered.
    #[inline(never)]
    fn vet(&mut self, req: &OrderRequest, protective: bool) -> Result<u64, Deny> {
        if !protective {
            self.engine_gates(req)?;
        }
        let now_ns = self.clock.now_ns();
        let ctx = RiskContext {
            protective,
            ..self.risk_context(req.instrument, now_ns)
        };
        self.risk.check(req, &ctx)?;
        Ok(now_ns)
    }

    /// Engine gates, risk, pool, gateway: the one path every order takes. A protective order
    /// (the engine's own close) skips the engine gates (halt, back-pressure, stale book) and
    /// is checked by risk as protective.
    fn submit_inner(
        &mut self,
        req: OrderRequest,
        protective: bool,
    ) -> Result<ClientOrderId, SubmitError> {
        if req.instrument.get() >= self.books.len() {
            return Err(SubmitError::UnknownInstrument(req.instrument));
        }
        let now_ns = match self.vet(&req, protective) {
            Ok(now_ns) => now_ns,
            Err(d) => return Err(self.deny(req.instrument, d)),
        };
        let id = match self.pool.take(req, now_ns) {
            Ok(id) => id,
            Err(PoolError::Exhausted { .. } | PoolError::NotInUse(_)) => {
                self.counters.pool_exhausted += 1;
                return Err(SubmitError::PoolExhausted);
            }
        };
        let order = *self.pool.get(id).expect("just taken");
        if let Err(e) = self.gateway.submit(&order, now_ns, &self.books) {
            self.counters.rejects += 1;
            self.breakers.on_reject(now_ns);
            let released = self.pool.release(id);
            debug_assert!(released.is_ok(), "Invariant: just-taken slot is in use");
            return Err(SubmitError::Gateway(e));
        }
        self.counters.orders_sent += 1;
        if self.timed && self.current_recv_ns != 0 {
            let sent = self.clock.now_ns();
            self.tick_to_trade
                .saturating_record(sent.saturating_sub(self.current_recv_ns).max(1));
        }
        self.record(Record::Order {
            order,
            ts_ns: now_ns,
        });
        self.open_orders += 1;
        self.working[req.instrument.get()].orders += 1;
        self.add_working(&req, req.qty, 1);
        Ok(id)
    }

    /// Closes every open position with reduce-only market orders that pass the risk gate as
    /// protective (kill switch with `flatten`). Positions without a reference price yet are
    /// left (and counted): there is nothing to size the order's notional against.
    fn flatten(&mut self) {
        for i in 0..self.positions.len() {
            let qty = self.positions[i].qty;
            if qty.is_zero() {
                continue;
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "bounded by MAX_INSTRUMENTS"
            )]
            let instrument = InstrumentIndex(i as u16);
            let reference = self.reference[i];
            if reference.raw() <= 0 {
                self.counters.flatten_failed += 1;
                continue;
            }
            let side = if qty.raw() > 0 { Side::Sell } else { Side::Buy };
            let req = OrderRequest {
                reduce_only: true,
                strategy: StrategyId::ENGINE,
                ..OrderRequest::market(instrument, side, reference, qty.abs())
            };
            match self.submit_inner(req, true) {
                Ok(_) => self.counters.flatten_orders += 1,
                Err(_) => self.counters.flatten_failed += 1,
            }
        }
    }

    /// Fires a stop if `trigger` is for the armed stop's current generation: a protective
    /// reduce-only market order for the whole position. Returns `true` if it fired.
    fn fire_stop(&mut self, trigger: &StopTrigger) -> bool {
        let Some(side) = self.stops.take(trigger) else {
            return false;
        };
        let fired = self.close_stop(trigger.instrument, side, trigger.price, false);
        // The closing order is out: now tell the feed threads the stop is disarmed.
        self.stops.publish(trigger.instrument);
        fired
    }

    /// Rehearses the next armed stop (round robin over instruments) without acting on it;
    /// see [`Self::close_stop`]. A stop fires rarely, so without this its code and data are
    /// cold when it does: run every few thousand events while one is armed, this keeps them
    /// in cache (`engine.stop_warm_events`).
    #[cold]
    #[inline(never)]
    fn rehearse_stop(&mut self) {
        let Some((instrument, side, level)) = self.stops.next_armed(self.rehearse_from) else {
            return;
        };
        self.rehearse_from = instrument.get() + 1;
        self.close_stop(instrument, side, level, true);
    }

    /// A fired stop's closing order — reduce-only, at market, for the whole position, priced
    /// for the risk gate at the reference price (at `fallback` before there is one) — through
    /// the protective order path. Returns `true` if it was sent.
    ///
    /// With `rehearse` it goes only as far as [`Self::vet`] (the protective risk check changes
    /// no state) and a read of the pool slot it would take: nothing is sent, counted as a
    /// denial, recorded or disarmed; it counts in `stop_rehearsals`. Out of line, so that the
    /// rehearsal runs the very code a firing stop runs.
    #[inline(never)]
    fn close_stop(
        &mut self,
        instrument: InstrumentIndex,
        side: Side,
        fallback: Price,
        rehearse: bool,
    ) -> bool {
        let i = instrument.get();
        let qty = self.positions[i].qty.abs();
        if qty.is_zero() {
            return false;
        }
        let reference = if self.reference[i].raw() > 0 {
            self.reference[i]
        } else {
            fallback
        };
        let req = OrderRequest {
            reduce_only: true,
            strategy: StrategyId::ENGINE,
            ..OrderRequest::market(instrument, side, reference, qty)
        };
        if rehearse {
            self.counters.stop_rehearsals += 1;
            if self.vet(&req, true).is_ok() {
                core::hint::black_box(self.pool.next_free());
            }
            return false;
        }
        match self.submit_inner(req, true) {
            Ok(_) => {
                self.counters.stops_fired += 1;
                true
            }
            Err(_) => {
                self.counters.stops_failed += 1;
                false
            }
        }
    }

    fn add_working(&mut self, req: &OrderRequest, qty: Qty, sign: i64) {
        let w = &mut self.working[req.instrument.get()];
        let delta = Qty(qty.raw() * sign);
        match req.side {
            Side::Buy => w.buy += delta,
            Side::Sell => w.sell += delta,
        }
    }

    /// Applies an order report; returns the update for the strategy and whether the order ended.
    fn on_report(&mut self, report: OrderReport, now_ns: u64) -> Option<OrderUpdate> {
        let (id, input) = match report {
            OrderReport::Accepted { client_id } => (client_id, OrderInput::Ack),
            OrderReport::Fill { client_id, qty, .. } => (client_id, OrderInput::Fill(qty)),
            OrderReport::Rejected { client_id, .. } => (client_id, OrderInput::Reject),
            OrderReport::Canceled { client_id } => (client_id, OrderInput::Canceled),
            OrderReport::CancelRejected { client_id, .. } => {
                (client_id, OrderInput::CancelRejected)
            }
            OrderReport::Amended {
                client_id,
                price,
                qty,
            } => (client_id, OrderInput::Amended { price, qty }),
            OrderReport::AmendRejected { client_id, .. } => (client_id, OrderInput::AmendRejected),
        };
        let Some(order) = self.pool.get_mut(id) else {
            self.counters.unknown_reports += 1;
            return None;
        };
        let remaining_before = order.remaining();
        if order.apply(input, now_ns).is_err() {
            self.counters.illegal_transitions += 1;
            return None;
        }
        if let OrderReport::Fill { price, qty, .. } = report {
            order.record_fill(price, qty);
        }
        let order = *order;
        let req = order.request;
        self.record(Record::Order {
            order,
            ts_ns: now_ns,
        });
        if let OrderReport::Fill {
            price,
            qty,
            fee,
            maker,
            ..
        } = report
        {
            self.counters.fills += 1;
            let i = req.instrument.get();
            let before = self.positions[i].qty;
            if self.positions[i]
                .apply_fill(req.side, price, qty, fee)
                .is_err()
            {
                self.counters.position_errors += 1;
            }
            self.stops
                .on_fill(req.instrument, before, self.positions[i].qty, price);
            if self.breakers.tracks_pnl() {
                let mark = if self.reference[i].raw() > 0 {
                    self.reference[i]
                } else {
                    price
                };
                let net = self.positions[i].net_pnl(mark);
                self.breakers.on_net_pnl(i, net, now_ns);
            }
            self.record(Record::Fill {
                client_id: id,
                instrument: req.instrument,
                side: req.side,
                price,
                qty,
                fee,
                maker,
                strategy: req.strategy,
                ts_ns: now_ns,
            });
            self.record(Record::Position {
                position: self.positions[i],
                ts_ns: now_ns,
            });
        }
        if matches!(report, OrderReport::Rejected { .. }) {
            self.counters.rejects += 1;
            self.breakers.on_reject(now_ns);
        }
        // Keep the working totals equal to the remaining quantity of working orders.
        let remaining_now = if order.status.is_terminal() {
            Qty::ZERO
        } else {
            order.remaining()
        };
        self.add_working(&req, remaining_before - remaining_now, -1);
        if order.status.is_terminal() {
            self.working[req.instrument.get()].orders -= 1;
            self.open_orders -= 1;
            let released = self.pool.release(id);
            debug_assert!(released.is_ok(), "Invariant: a live order's slot is in use");
        }
        // A fill or reject that tripped a breaker is in force before the strategy reacts.
        self.settle_breakers();
        Some(OrderUpdate { report, order })
    }

    /// Adopts a live venue's position (reconciliation: the venue wins).
    #[cold]
    fn sync_position(&mut self, sync: &PositionSync, now_ns: u64) {
        let i = sync.instrument.get();
        let Some(p) = self.positions.get_mut(i) else {
            self.counters.unknown_reports += 1;
            return;
        };
        let before = p.qty;
        if before == sync.qty && (sync.entry_price.raw() == 0 || p.qty.is_zero()) {
            return;
        }
        let price = [sync.price, self.reference[i], sync.entry_price]
            .into_iter()
            .find(|p| p.raw() > 0)
            .unwrap_or(Price::ZERO);
        if p.resync(sync.qty, price, sync.entry_price).is_err() {
            self.counters.position_errors += 1;
            return;
        }
        if before != sync.qty {
            self.counters.position_syncs += 1;
            self.stops.on_fill(sync.instrument, before, sync.qty, price);
        }
        self.record(Record::Position {
            position: self.positions[i],
            ts_ns: now_ns,
        });
    }

    /// Re-marks instrument `i`'s net PnL for the PnL breakers after its reference price moved
    /// (only while a position is open: a flat instrument's net PnL does not move with price).
    #[inline]
    fn mark_pnl(&mut self, i: usize, now_ns: u64) {
        if self.breakers.tracks_pnl() && !self.positions[i].qty.is_zero() {
            let net = self.positions[i].net_pnl(self.reference[i]);
            self.breakers.on_net_pnl(i, net, now_ns);
            self.settle_breakers();
        }
    }

    /// The trading state in force: the more restrictive of the operator's and the breakers'.
    fn refresh_trading_state(&mut self) {
        let imposed = self.breakers.imposed();
        self.trading_state = if imposed as u8 > self.operator_state as u8 {
            imposed
        } else {
            self.operator_state
        };
        self.counters.trading_state = self.trading_state as u8;
        self.counters.operator_state = self.operator_state as u8;
    }

    /// Sets the operator's trading state (kill switch, resume, wiring).
    fn set_operator_state(&mut self, state: TradingState) {
        self.operator_state = state;
        self.refresh_trading_state();
    }

    /// Applies every pending breaker transition at once: the trading state it imposes, and for
    /// a `flatten` trip cancel-all and close-all. Each transition is counted, persisted, and
    /// queued on CRITICAL for the strategy (kept in `unsent` for the engine to hand over
    /// inline if CRITICAL cannot take it).
    #[inline]
    fn settle_breakers(&mut self) {
        if !self.breakers.has_transitions() {
            return;
        }
        let now_ns = self.clock.now_ns();
        while let Some(ev) = self.breakers.pop_transition() {
            let k = ev.kind as usize;
            self.counters.breaker_states[k] = ev.state as u8;
            self.counters.breaker_values[k] = ev.value;
            self.counters.breaker_limits[k] = ev.limit;
            self.counters.breaker_trips = *self.breakers.trips();
            self.counters.breaker_recoveries = *self.breakers.recoveries();
            self.publish_soon = true;
            self.refresh_trading_state();
            if ev.state == BreakerState::Open && ev.action == BreakerAction::Flatten {
                self.cancel_all();
                self.flatten();
            }
            self.record(Record::Breaker {
                event: ev,
                ts_ns: now_ns,
            });
            let event = Event::new(now_ns, 0, EventKind::Breaker(ev));
            if self.lanes.try_push_critical(event).is_err() {
                if self.unsent_len < self.unsent.len() {
                    self.unsent[self.unsent_len] = Some(ev);
                    self.unsent_len += 1;
                } else {
                    self.counters.breaker_events_unsent += 1;
                }
            }
        }
    }

    /// The periodic breaker check (cool-downs, half-open recovery, feeds, lanes, back-pressure).
    fn check_breakers(&mut self, now_ns: u64) {
        let backpressure = self.lanes.high_backpressure();
        self.breakers.check(now_ns, backpressure);
        self.settle_breakers();
    }

    /// Requests a cancel of every working order (kill switch). No allocation; scans the pool
    /// only up to its last order in use.
    fn cancel_all(&mut self) {
        let now_ns = self.clock.now_ns();
        let mut left = self.pool.in_use();
        for slot in 0..self.pool.capacity() {
            if left == 0 {
                break;
            }
            let Some(order) = self.pool.live_at(slot).copied() else {
                continue;
            };
            left -= 1;
            if matches!(
                order.status,
                OrderStatus::PendingNew
                    | OrderStatus::Open
                    | OrderStatus::PartiallyFilled
                    | OrderStatus::PendingAmend
            ) && self.gateway.cancel(&order, now_ns, &self.books).is_ok()
            {
                self.counters.cancels_sent += 1;
                if let Some(o) = self.pool.get_mut(order.client_id) {
                    let applied = o.apply(OrderInput::CancelRequest, now_ns);
                    debug_assert!(
                        applied.is_ok(),
                        "Invariant: working order accepts a cancel request"
                    );
                }
            }
        }
    }
}

impl<R: RiskGate, G: Gateway, C: Clock> Context for Core<R, G, C> {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    #[inline]
    fn recv_ns(&self) -> u64 {
        self.current_recv_ns
    }

    fn submit(&mut self, req: OrderRequest) -> Result<ClientOrderId, SubmitError> {
        let result = self.submit_inner(req, false);
        if result.is_err() {
            // A gateway failure counts towards a reject storm.
            self.settle_breakers();
        }
        result
    }

    fn cancel(&mut self, id: ClientOrderId) -> Result<(), SubmitError> {
        let now_ns = self.clock.now_ns();
        let Some(order) = self.pool.get(id).copied() else {
            return Err(SubmitError::UnknownOrder(id));
        };
        if !matches!(
            order.status,
            OrderStatus::PendingNew
                | OrderStatus::Open
                | OrderStatus::PartiallyFilled
                | OrderStatus::PendingAmend
        ) {
            return Err(SubmitError::UnknownOrder(id));
        }
        self.gateway
            .cancel(&order, now_ns, &self.books)
            .map_err(SubmitError::Gateway)?;
        self.counters.cancels_sent += 1;
        if let Some(o) = self.pool.get_mut(id) {
            let applied = o.apply(OrderInput::CancelRequest, now_ns);
            debug_assert!(
                applied.is_ok(),
                "Invariant: working order accepts a cancel request"
            );
        }
        Ok(())
    }

    fn amend(&mut self, id: ClientOrderId, price: Price, qty: Qty) -> Result<(), SubmitError> {
        let Some(order) = self.pool.get(id).copied() else {
            return Err(SubmitError::UnknownOrder(id));
        };
        let refuse = |reason| Err(SubmitError::AmendRefused { id, reason });
        match order.status {
            OrderStatus::Open | OrderStatus::PartiallyFilled => {}
            OrderStatus::PendingNew => return refuse(AmendRefusal::NotAcknowledged),
            OrderStatus::PendingCancel | OrderStatus::PendingAmend => {
                return refuse(AmendRefusal::Pending)
            }
            OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Rejected => {
                return Err(SubmitError::UnknownOrder(id))
            }
        }
        if order.request.kind != OrderKind::Limit || order.request.tif != TimeInForce::Gtc {
            return refuse(AmendRefusal::NotALimit);
        }
        if qty <= order.filled || price.raw() <= 0 {
            return refuse(AmendRefusal::BadTerms {
                qty,
                price,
                filled: order.filled,
            });
        }
        if price == order.request.price && qty == order.request.qty {
            return refuse(AmendRefusal::NoChange);
        }
        // Vetted as the order it becomes: its new remaining quantity, with its current one
        // taken out of the working totals it would otherwise count twice in.
        let req = OrderRequest {
            price,
            qty: qty - order.filled,
            ..order.request
        };
        let i = req.instrument.get();
        let vetted = self.engine_gates(&req).and_then(|()| {
            let now_ns = self.clock.now_ns();
            let mut ctx = self.risk_context(req.instrument, now_ns);
            let remaining = order.remaining();
            match req.side {
                Side::Buy => ctx.working_buy -= remaining,
                Side::Sell => ctx.working_sell -= remaining,
            }
            ctx.open_orders_instrument = ctx.open_orders_instrument.saturating_sub(1);
            ctx.open_orders_total = ctx.open_orders_total.saturating_sub(1);
            self.risk.check(&req, &ctx).map(|()| now_ns)
        });
        let now_ns = match vetted {
            Ok(now_ns) => now_ns,
            Err(d) => return Err(self.deny(req.instrument, d)),
        };
        debug_assert!(
            i < self.books.len(),
            "Invariant: a pooled order's instrument exists"
        );
        self.gateway
            .amend(&order, price, qty, now_ns, &self.books)
            .map_err(SubmitError::Gateway)?;
        self.counters.amends_sent += 1;
        if let Some(o) = self.pool.get_mut(id) {
            let applied = o.apply(OrderInput::AmendRequest { price, qty }, now_ns);
            debug_assert!(applied.is_ok(), "Invariant: checked above");
            let order = *o;
            self.record(Record::Order {
                order,
                ts_ns: now_ns,
            });
        }
        Ok(())
    }

    #[inline]
    fn position(&self, instrument: InstrumentIndex) -> &Position {
        &self.positions[instrument.get()]
    }

    #[inline]
    fn book(&self, instrument: InstrumentIndex) -> &OrderBook {
        &self.books[instrument.get()]
    }

    #[inline]
    fn order(&self, id: ClientOrderId) -> Option<&crate::order::Order> {
        self.pool.get(id)
    }

    #[inline]
    fn trading_state(&self) -> TradingState {
        self.trading_state
    }

    fn set_stops(&mut self, instrument: InstrumentIndex, params: StopParams) {
        self.stops.set_params(instrument, params);
    }

    fn stop_levels(&self, instrument: InstrumentIndex) -> Option<(Price, Price)> {
        self.stops.levels(instrument)
    }

    fn schedule_timer_at(&mut self, at_ns: u64, id: u32) -> Result<(), TimerError> {
        let due_ns = if self.in_timer {
            at_ns.max(self.clock.now_ns().saturating_add(1))
        } else {
            at_ns
        };
        let scheduled = self.timers.schedule(due_ns, id);
        if scheduled.is_err() {
            self.counters.timers_refused += 1;
        }
        scheduled
    }

    fn cancel_timer(&mut self, id: u32) -> bool {
        self.timers.cancel(id)
    }

    fn timer_due(&self, id: u32) -> Option<u64> {
        self.timers.due_of(id)
    }
}

/// Marks the books whose feeds lost data (a dropped NORMAL delta or a venue sequence gap) as
/// stale and tells the strategy, once per loss. One relaxed-cost atomic load when nothing is
/// pending; never allocates.
#[inline(always)]
fn check_stale_books<S: Strategy, R: RiskGate, G: Gateway, C: Clock>(
    strategy: &mut S,
    core: &mut Core<R, G, C>,
) {
    if core.lanes.stale_books_pending() {
        mark_stale_books(strategy, core);
    }
}

/// [`check_stale_books`] once a book was marked.
#[cold]
#[inline(never)]
fn mark_stale_books<S: Strategy, R: RiskGate, G: Gateway, C: Clock>(
    strategy: &mut S,
    core: &mut Core<R, G, C>,
) {
    let mut newly = [0u64; crate::instrument::MAX_INSTRUMENTS / 64];
    let Core {
        lanes,
        books,
        counters,
        ..
    } = core;
    lanes.take_stale_books(|s| {
        if let Some(book) = books.get_mut(s.get()) {
            book.mark_stale();
            counters.books_stale += 1;
            newly[s.get() / 64] |= 1 << (s.get() % 64);
        }
    });
    for (w, mut bits) in newly.into_iter().enumerate() {
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            #[allow(
                clippy::cast_possible_truncation,
                reason = "bounded by MAX_INSTRUMENTS"
            )]
            strategy.on_book_stale(core, InstrumentIndex((w * 64 + b) as u16));
        }
    }
}

/// Final figures of a run, returned when the loop stops.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Counters at the end.
    pub counters: EngineCounters,
    /// Positions at the end, in instrument order.
    pub positions: Vec<Position>,
    /// Orders still working at the end.
    pub working_orders: u32,
}

/// The engine: the loop state plus the strategy.
#[derive(Debug)]
pub struct Engine<S, R, G, C> {
    strategy: S,
    core: Core<R, G, C>,
    config: LoopConfig,
    histograms: LoopHistograms,
    telemetry: Arc<Telemetry>,
    next_publish_ns: u64,
    shutdown_requested: bool,
    /// On stop: cancel every working order and wait this long for the venue to confirm.
    cancel_on_stop: Option<std::time::Duration>,
    critical_slots: usize,
    /// NORMAL events handled at which the next stop rehearsal is due.
    next_warm: u64,
    /// The strategy's `on_start` has run.
    started: bool,
}

impl<S: Strategy, R: RiskGate, G: Gateway, C: Clock> Engine<S, R, G, C> {
    /// Builds an engine; allocates every table here, never afterwards.
    ///
    /// # Panics
    /// If `config` has zero-sized tables (validate it first with [`LoopConfig::validate`]).
    #[must_use]
    pub fn new(
        config: LoopConfig,
        lanes: Arc<Lanes>,
        instruments: InstrumentRegistry,
        strategy: S,
        risk: R,
        gateway: G,
        clock: C,
    ) -> Self {
        let n = instruments.len();
        let lanes_capacity = lanes.stats(Lane::Critical).capacity;
        let positions = instruments
            .iter()
            .map(|i| Position::new(i.index, i.kind))
            .collect();
        let now = clock.now_ns();
        Self {
            strategy,
            core: Core {
                lanes,
                clock,
                risk,
                gateway,
                books: instruments
                    .iter()
                    .map(|i| {
                        OrderBook::with_window(config.book_levels, i.tick_size, config.book_window)
                    })
                    .collect(),
                positions,
                reference: vec![Price::ZERO; n].into_boxed_slice(),
                working: vec![Working::default(); n].into_boxed_slice(),
                open_orders: 0,
                pool: OrderPool::new(config.order_slots),
                flatten_on_kill: false,
                stops: StopBook::new(StopParams::default(), Arc::new(StopGuard::new(n))),
                rehearse_from: 0,
                breakers: Breakers::new(BreakerSettings::default(), n, now),
                operator_state: TradingState::Active,
                instruments,
                trading_state: TradingState::Active,
                counters: EngineCounters::default(),
                outbox: None,
                record_kinds: u8::MAX,
                spill: Spill::new(config.order_slots * 4),
                current_recv_ns: 0,
                unsent: [None; 8],
                unsent_len: 0,
                publish_soon: false,
                tick_to_trade: crate::metrics::latency_histogram(),
                timed: true,
                timers: Timers::new(config.timer_slots),
                in_timer: false,
            },
            config,
            histograms: LoopHistograms::new(),
            telemetry: Arc::new(Telemetry::new(n)),
            next_publish_ns: now + config.publish_interval_ms * 1_000_000,
            shutdown_requested: false,
            cancel_on_stop: None,
            critical_slots: lanes_capacity,
            next_warm: match config.stop_warm_events {
                0 => u64::MAX,
                n => u64::from(n),
            },
            started: false,
        }
    }

    /// Calls the strategy's [`Strategy::on_start`], once: [`Self::run`] does it before its
    /// first turn; a caller that drives [`Self::poll`] itself (a backtest) calls it before
    /// the first event. Later calls do nothing.
    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.core.current_recv_ns = 0;
            self.strategy.on_start(&mut self.core);
        }
    }

    /// When the earliest pending timer is due, if any (a backtest advances its clock to it).
    #[must_use]
    pub fn next_timer_due(&self) -> Option<u64> {
        let due = self.core.timers.next_due();
        (due != u64::MAX).then_some(due)
    }

    /// Attaches the persistence outbox: from now on orders, fills and positions are recorded
    /// (and denials and lane metrics as telemetry).
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<Outbox>) -> Self {
        self.core.outbox = Some(outbox);
        self
    }

    /// Sends only these kinds of record to the outbox (a mask of `Record::kind_bit`s; default
    /// all). A backtest, which reads fills and breaker transitions only, skips the rest.
    #[must_use]
    pub fn with_record_kinds(mut self, kinds: u8) -> Self {
        self.core.record_kinds = kinds;
        self
    }

    /// Restores what a store recovered from earlier runs, before the engine runs: positions
    /// (one per instrument, by index; others are ignored) and the sequence the next client
    /// order id carries, so no id of an earlier run is reused.
    pub fn restore(&mut self, positions: &[Position], next_sequence: u32) {
        for p in positions {
            if let Some(slot) = self.core.positions.get_mut(p.instrument.get()) {
                *slot = *p;
            }
        }
        self.core.pool = OrderPool::with_start_sequence(self.config.order_slots, next_sequence);
        self.arm_open_positions();
        self.rebase_breakers();
    }

    /// Circuit breakers with these limits (all off by default).
    #[must_use]
    pub fn with_breakers(mut self, settings: BreakerSettings) -> Self {
        let now = self.core.clock.now_ns();
        self.core.breakers = Breakers::new(settings, self.core.positions.len(), now);
        self.rebase_breakers();
        self
    }

    /// Starts the PnL breakers from the positions held now (restored ones carry realised PnL
    /// and fees; their unrealised PnL counts from the first price seen).
    fn rebase_breakers(&mut self) {
        let nets = self.core.positions.iter().map(|p| p.realized - p.fees);
        self.core.breakers.rebase_equity(nets);
    }

    /// The circuit breakers.
    #[must_use]
    pub fn breakers(&self) -> &Breakers {
        &self.core.breakers
    }

    /// Per-position stops with these default distances, publishing their levels to `guard`
    /// (share it with the feed threads' sinks for the ingress guard).
    #[must_use]
    pub fn with_stops(mut self, defaults: StopParams, guard: Arc<StopGuard>) -> Self {
        self.core.stops = StopBook::new(defaults, guard);
        self.arm_open_positions();
        self
    }

    /// Arms the stops of positions that exist before the loop runs (restored from a store),
    /// at their average entry price.
    fn arm_open_positions(&mut self) {
        for p in self.core.positions.iter() {
            let entry = p
                .avg_entry()
                .and_then(|d| Price::from_decimal(d.round_dp(8)).ok());
            if let (false, Some(entry)) = (p.qty.is_zero(), entry) {
                self.core
                    .stops
                    .on_fill(p.instrument, Qty::ZERO, p.qty, entry);
            }
        }
    }

    /// On stop, before draining: halt new orders, cancel every working order, and keep
    /// handling reports until none is working or `grace` has passed — a live run's exit leaves
    /// nothing working at the venue (what is still working is in the report).
    #[must_use]
    pub fn with_cancel_on_stop(mut self, grace: std::time::Duration) -> Self {
        self.cancel_on_stop = Some(grace);
        self
    }

    /// Makes the kill switch also close every position (reduce-only market orders that no
    /// halt, size, open-order or rate limit blocks). Without it the kill cancels and halts.
    #[must_use]
    pub fn with_kill_flatten(mut self, flatten: bool) -> Self {
        self.core.flatten_on_kill = flatten;
        self
    }

    /// Stops recording per-event wait and service times. For a simulated clock, which does not
    /// move while an event is handled, every sample would be zero.
    #[must_use]
    pub fn without_latency_histograms(mut self) -> Self {
        self.core.timed = false;
        self
    }

    /// Essential records held in the spill because the outbox was full.
    #[must_use]
    pub fn records_held(&self) -> usize {
        self.core.spill.held()
    }

    /// The published telemetry (share it with status and metrics readers).
    #[must_use]
    pub fn telemetry(&self) -> Arc<Telemetry> {
        Arc::clone(&self.telemetry)
    }

    /// The strategy's context (read access to books, positions, orders).
    #[must_use]
    pub fn core(&self) -> &Core<R, G, C> {
        &self.core
    }

    /// Mutable access to the context (tests and wiring; e.g. submit on the strategy's behalf).
    pub fn core_mut(&mut self) -> &mut Core<R, G, C> {
        &mut self.core
    }

    /// The strategy.
    #[must_use]
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The strategy, mutably (wiring and tests; the loop owns it while running).
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// Ends the engine and hands the strategy back (after [`Self::shutdown`], to read what it
    /// kept).
    #[must_use]
    pub fn into_strategy(self) -> S {
        self.strategy
    }

    /// Lets the gateway release what is due at `now_ns` (a backtest's final settle).
    pub fn poll_gateway(&mut self, now_ns: u64) {
        self.core.gateway.poll(now_ns, &self.core.books);
    }

    /// The gateway.
    #[must_use]
    pub fn gateway(&self) -> &G {
        &self.core.gateway
    }

    /// The gateway, mutably.
    pub fn gateway_mut(&mut self) -> &mut G {
        &mut self.core.gateway
    }

    /// The loop's latency histograms.
    #[must_use]
    pub fn histograms(&self) -> &LoopHistograms {
        &self.histograms
    }

    /// Tick-to-trade: frame arrival (`recv_ns` of the event being handled) to the order handed
    /// to the gateway, one sample per order sent.
    #[must_use]
    pub fn tick_to_trade(&self) -> &hdrhistogram::Histogram<u64> {
        &self.core.tick_to_trade
    }

    /// Counters so far.
    #[must_use]
    pub fn counters(&self) -> &EngineCounters {
        &self.core.counters
    }

    /// Trading state.
    #[must_use]
    pub fn trading_state(&self) -> TradingState {
        self.core.trading_state
    }

    /// Sets the operator's trading state. The state in force is the more restrictive of this
    /// and what the circuit breakers impose.
    pub fn set_trading_state(&mut self, state: TradingState) {
        self.core.set_operator_state(state);
    }

    /// `true` once a `Shutdown` control event was handled.
    #[must_use]
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested
    }

    #[inline]
    fn handle(&mut self, lane: Lane, event: Event) {
        let start = self.core.clock.now_ns();
        self.core.current_recv_ns = event.recv_ns;
        self.dispatch(event);
        let end = self.core.clock.now_ns();
        self.core.gateway.poll(end, &self.core.books);
        self.core.counters.events[lane as usize] += 1;
        if self.core.timed {
            let wait = start.saturating_sub(event.recv_ns);
            self.histograms
                .record(lane, wait, end.saturating_sub(start));
            if (lane as usize) < 2 && self.core.breakers.tracks_latency() {
                self.core.breakers.on_lane_wait(lane as usize, wait);
            }
        }
        if self.core.breakers.check_due(end) {
            self.core.check_breakers(end);
        }
        if self.core.unsent_len > 0 {
            self.notify_unsent();
        }
        if self.core.publish_soon {
            self.core.publish_soon = false;
            self.publish_now(end);
        }
    }

    /// Tells the strategy about breaker transitions CRITICAL could not take.
    #[cold]
    fn notify_unsent(&mut self) {
        let n = core::mem::take(&mut self.core.unsent_len);
        for k in 0..n {
            if let Some(ev) = self.core.unsent[k].take() {
                self.strategy.on_breaker(&mut self.core, &ev);
            }
        }
    }

    #[inline]
    fn dispatch(&mut self, event: Event) {
        let Self { strategy, core, .. } = self;
        match event.kind {
            EventKind::Trade(t) => {
                core.gateway.on_market(&event, event.recv_ns, &core.books);
                if let Some(r) = core.reference.get_mut(t.instrument.get()) {
                    *r = t.price;
                    core.mark_pnl(t.instrument.get(), event.recv_ns);
                    if let Some(stop) = core.stops.on_trade(t.instrument, t.price) {
                        if core.fire_stop(&stop) {
                            strategy.on_stop(core, &stop);
                        }
                    }
                    strategy.on_trade(core, &t);
                }
            }
            EventKind::Quote(q) => {
                core.gateway.on_market(&event, event.recv_ns, &core.books);
                if let Some(r) = core.reference.get_mut(q.instrument.get()) {
                    let (bid, ask) = (q.bid_price, q.ask_price);
                    if bid.raw() > 0 && ask >= bid {
                        #[allow(
                            clippy::cast_possible_truncation,
                            reason = "mean of two i64 fits i64"
                        )]
                        let mid = ((i128::from(bid.raw()) + i128::from(ask.raw())) / 2) as i64;
                        *r = Price(mid);
                        core.mark_pnl(q.instrument.get(), event.recv_ns);
                        if let Some(stop) = core.stops.on_quote(q.instrument, bid, ask) {
                            if core.fire_stop(&stop) {
                                strategy.on_stop(core, &stop);
                            }
                        }
                    }
                    strategy.on_quote(core, &q);
                }
            }
            EventKind::BookDelta(d) => {
                let i = d.instrument.get();
                if i >= core.books.len() {
                    return;
                }
                core.gateway.on_market(&event, event.recv_ns, &core.books);
                // Lost deltas are flagged before the event that follows them is queued.
                check_stale_books(strategy, core);
                match core.books[i].apply(&d) {
                    Applied::MessageComplete => strategy.on_book(core, d.instrument),
                    Applied::Partial => {}
                    Applied::IgnoredNotSynced => core.counters.deltas_ignored += 1,
                }
            }
            EventKind::Order(report) => {
                let now = core.clock.now_ns();
                if let Some(update) = core.on_report(report, now) {
                    strategy.on_order(core, &update);
                }
            }
            EventKind::PositionSync(sync) => core.sync_position(&sync, event.recv_ns),
            EventKind::MarkPrice(m) => strategy.on_mark_price(core, &m),
            EventKind::Liquidation(l) => strategy.on_liquidation(core, &l),
            EventKind::StopTriggered(stop) => {
                // Raised by a feed thread's ingress guard (or anyone on CRITICAL): fires the
                // engine's stop only if its own check has not already taken this generation;
                // the strategy sees every trigger event.
                core.fire_stop(&stop);
                strategy.on_stop(core, &stop);
            }
            EventKind::FeedStatus { feed, state } => {
                let now = core.clock.now_ns();
                core.breakers.on_feed(feed, state, now);
                strategy.on_feed(core, feed, state);
            }
            EventKind::Breaker(ev) => strategy.on_breaker(core, &ev),
            EventKind::Timer { id } => {
                // A timer is not market data: an order it sends has no tick-to-trade.
                core.current_recv_ns = 0;
                core.in_timer = true;
                strategy.on_timer(core, id);
                core.in_timer = false;
            }
            EventKind::StoreStatus { healthy, .. } => {
                if !healthy {
                    core.counters.store_outages += 1;
                }
                strategy.on_store(core, healthy);
            }
            EventKind::Control(Control::KillSwitch) => {
                core.set_operator_state(TradingState::Halted);
                core.counters.kills += 1;
                core.cancel_all();
                if core.flatten_on_kill {
                    core.flatten();
                }
            }
            EventKind::Control(Control::Resume) => {
                // Operator resume also closes every breaker (re-basing the PnL ones).
                let now = core.clock.now_ns();
                core.breakers.reset(now);
                core.set_operator_state(TradingState::Active);
            }
            EventKind::Control(Control::Shutdown) => self.shutdown_requested = true,
        }
    }

    #[inline]
    fn drain_critical(&mut self) -> usize {
        let mut n = 0;
        while n < self.critical_slots {
            let Some(e) = self.core.lanes.pop(Lane::Critical) else {
                break;
            };
            self.handle(Lane::Critical, e);
            n += 1;
        }
        n
    }

    /// Serves CRITICAL, then pending HIGH events from what is left of the turn's HIGH budget.
    /// Returns events handled.
    #[inline]
    fn serve_higher(&mut self, high_left: &mut u32) -> usize {
        let mut n = 0;
        if !self.core.lanes.is_empty(Lane::Critical) {
            n += self.drain_critical();
        }
        while *high_left > 0 {
            let Some(e) = self.core.lanes.pop(Lane::High) else {
                break;
            };
            *high_left -= 1;
            self.handle(Lane::High, e);
            n += 1;
            if !self.core.lanes.is_empty(Lane::Critical) {
                n += self.drain_critical();
            }
        }
        n
    }

    /// Handles one market-data event that did not travel through the NORMAL lane, exactly as
    /// if [`Self::poll`] had just popped it there: whatever is queued on CRITICAL and HIGH is
    /// served first. A single-threaded replay, which produces and consumes on one thread and
    /// never has a backlog, hands its market data in this way and saves the lane's two atomic
    /// read-modify-writes per event; the sim venue's reports still come back on HIGH.
    #[inline]
    pub fn handle_market(&mut self, event: Event) {
        if !self.core.lanes.is_empty(Lane::Critical) || !self.core.lanes.is_empty(Lane::High) {
            let mut high_left = u32::MAX;
            self.serve_higher(&mut high_left);
        }
        self.handle(Lane::Normal, event);
    }

    /// `true` when [`Self::poll`] has nothing to do but look: every lane is empty, no book
    /// was marked stale, and no record waits for room in the outbox.
    #[inline]
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.core.spill.held() == 0
            && !self.core.lanes.stale_books_pending()
            && Lane::ALL.iter().all(|&l| self.core.lanes.is_empty(l))
            && !self.timer_due()
    }

    /// `true` if a pending timer is due now (one load when none is pending).
    #[inline]
    fn timer_due(&self) -> bool {
        let due = self.core.timers.next_due();
        due != u64::MAX && due <= self.core.clock.now_ns()
    }

    /// Fires the timers due now, at most `low_budget` of them, each handled as a LOW event
    /// (its lateness is LOW's wait) with CRITICAL and HIGH served between them.
    #[inline(never)]
    fn fire_timers(&mut self, high_left: &mut u32) -> usize {
        let now = self.core.clock.now_ns();
        let mut n = 0;
        for _ in 0..self.config.low_budget {
            let Some((due_ns, id)) = self.core.timers.pop_due(now) else {
                break;
            };
            self.core.counters.timers_fired += 1;
            self.handle(
                Lane::Low,
                Event::new(due_ns, due_ns, EventKind::Timer { id }),
            );
            n += 1 + self.serve_higher(high_left);
        }
        n
    }

    /// Runs one loop turn (see the module docs) and returns how many events it handled.
    pub fn poll(&mut self) -> usize {
        if self.core.spill.held() > 0 {
            if let Some(outbox) = &self.core.outbox {
                self.core.spill.flush(outbox);
            }
        }
        check_stale_books(&mut self.strategy, &mut self.core);
        let mut high_left = self.config.high_budget;
        let mut n = self.drain_critical();
        n += self.serve_higher(&mut high_left);
        for _ in 0..self.config.normal_budget {
            let Some(e) = self.core.lanes.pop(Lane::Normal) else {
                break;
            };
            self.handle(Lane::Normal, e);
            if self.core.counters.events[Lane::Normal as usize] >= self.next_warm {
                self.warm_stop();
            }
            n += 1 + self.serve_higher(&mut high_left);
        }
        if self.timer_due() {
            n += self.fire_timers(&mut high_left);
        }
        for _ in 0..self.config.low_budget {
            let Some(e) = self.core.lanes.pop(Lane::Low) else {
                break;
            };
            self.handle(Lane::Low, e);
            n += 1 + self.serve_higher(&mut high_left);
        }
        n
    }

    /// Due every `stop_warm_events` NORMAL events: rehearses an armed stop, if any.
    #[cold]
    #[inline(never)]
    fn warm_stop(&mut self) {
        self.next_warm = self.core.counters.events[Lane::Normal as usize]
            .saturating_add(u64::from(self.config.stop_warm_events));
        if self.core.stops.any_armed() {
            self.core.rehearse_stop();
        }
    }

    /// Publishes telemetry if the interval has passed.
    #[inline]
    fn maybe_publish(&mut self) {
        let now = self.core.clock.now_ns();
        if now >= self.next_publish_ns {
            self.publish_now(now);
        }
    }

    fn publish_now(&mut self, now: u64) {
        self.telemetry
            .publish(&self.histograms, &self.core.counters, now);
        self.telemetry
            .publish_tick_to_trade(crate::metrics::Percentiles::of(&self.core.tick_to_trade));
        self.telemetry
            .publish_instruments(&self.core.books, &self.core.positions);
        if self.core.outbox.is_some() {
            for lane in Lane::ALL {
                let wait = crate::metrics::Percentiles::of(self.histograms.wait(lane));
                let service = crate::metrics::Percentiles::of(self.histograms.service(lane));
                self.core.record(Record::LaneMetrics {
                    lane,
                    wait,
                    service,
                    ts_ns: now,
                });
            }
        }
        self.next_publish_ns = now + self.config.publish_interval_ms * 1_000_000;
    }

    /// Runs until `stop` is set or a `Shutdown` control event arrives, then shuts down
    /// gracefully: closes intake, drains what is queued, publishes final telemetry and returns
    /// the run report.
    pub fn run(&mut self, stop: &AtomicBool) -> RunReport {
        if let Some(core) = self.config.pin_core {
            // Best effort: a failed pin is reported by the caller's config check, not fatal.
            let _ = pin_current_thread(core);
        }
        self.start();
        let mut idle_turns: u32 = 0;
        while !stop.load(Ordering::Relaxed) && !self.shutdown_requested {
            if self.poll() == 0 {
                idle_turns = idle_turns.saturating_add(1);
                if idle_turns & 63 == 0 {
                    // Let a simulated venue release reports while no event arrives, and run
                    // the breakers' periodic check (a dead feed sends no events).
                    let now = self.core.clock.now_ns();
                    self.core.gateway.poll(now, &self.core.books);
                    if self.core.breakers.check_due(now) {
                        self.core.check_breakers(now);
                        if self.core.unsent_len > 0 {
                            self.notify_unsent();
                        }
                    }
                }
                if idle_turns & 1023 == 0
                    && self.config.stop_warm_events != 0
                    && self.core.stops.any_armed()
                {
                    self.core.rehearse_stop();
                }
                self.idle(idle_turns);
                self.maybe_publish();
            } else {
                idle_turns = 0;
                if self.core.counters.events[Lane::Normal as usize] & 1023 == 0 {
                    self.maybe_publish();
                }
            }
        }
        if let Some(grace) = self.cancel_on_stop {
            self.wind_down(grace);
        }
        self.shutdown()
    }

    /// See [`Self::with_cancel_on_stop`].
    #[cold]
    fn wind_down(&mut self, grace: std::time::Duration) {
        if self.core.open_orders == 0 {
            return;
        }
        self.core.set_operator_state(TradingState::Halted);
        self.core.cancel_all();
        let deadline = std::time::Instant::now() + grace;
        while self.core.open_orders > 0 && std::time::Instant::now() < deadline {
            if self.poll() == 0 {
                let now = self.core.clock.now_ns();
                self.core.gateway.poll(now, &self.core.books);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }

    #[inline]
    fn idle(&self, idle_turns: u32) {
        match self.config.idle {
            IdleStrategy::Spin => core::hint::spin_loop(),
            IdleStrategy::SpinYield => {
                if idle_turns < 64 {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            IdleStrategy::Park => {
                if idle_turns < 64 {
                    core::hint::spin_loop();
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(u64::from(
                        self.config.park_us,
                    )));
                }
            }
        }
    }

    /// Stops intake, drains every lane, publishes final telemetry and reports.
    pub fn shutdown(&mut self) -> RunReport {
        self.core.lanes.close();
        while self.poll() > 0 {}
        // Essential records held back by a full outbox go out before the writer is stopped
        // (off the hot path: the engine is shutting down, so it may wait for the writer).
        if let Some(outbox) = self.core.outbox.clone() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while self.core.spill.flush(&outbox) > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let now = self.core.clock.now_ns();
        self.publish_now(now);
        RunReport {
            counters: self.core.counters,
            positions: self.core.positions.to_vec(),
            working_orders: self.core.open_orders,
        }
    }
}
