//! Several strategies in one engine. A [`Portfolio`] is itself a [`Strategy`]: it hands every
//! market, feed, store, breaker and stop event to each member in turn, and each member's order
//! and timer events to that member alone. Each member acts through a [`Scoped`] context that
//!
//! - tags its orders with its [`StrategyId`] (persisted with them, and with their fills), and
//!   lets it see, cancel and amend only its own orders;
//! - keeps its own **attributed positions**, built from its own fills
//!   ([`Context::position`] answers with them), so PnL is attributed per member;
//! - checks the member's own limits ([`MemberLimits`]: open orders, and the attributed
//!   position plus the order) before the engine's gates and the global risk gate see it;
//! - reads reduce-only against the member's own position: such an order must reduce it, and
//!   reaches the venue flagged reduce-only only if it also reduces the account's;
//! - gives it its own timer ids (24 bits each: the member index rides in the top byte).
//!
//! Stops, the kill switch and the circuit breakers stay account-wide: they act on the
//! engine's positions, which are the sum of the members'. A fill of the engine's own closing
//! order ([`StrategyId::ENGINE`]: a fired stop, the kill switch's flatten) is attributed to the
//! members holding that instrument on the side it closes, towards flat, in member order, each
//! with its share of the fee; the members are not sent its `on_order` (it is not theirs).
//!
//! Static dispatch: the members are one type `S` (an enum such as [`Either`] for members of
//! different types), held in a slice built at start-up.
//!
//! # Allocation
//! Only in [`Portfolio::new`]. Hot path: the fan-out is a loop over the members; a scoped
//! context is a few references on the stack.

use crate::api::{Context, Deny, OrderUpdate, Strategy, SubmitError, TradingState};
use crate::book::OrderBook;
use crate::breakers::BreakerEvent;
use crate::event::{
    ClientOrderId, FeedState, Liquidation, MarkPrice, OrderReport, Quote, StopTrigger, StrategyId,
    Trade,
};
use crate::fixed::{Price, Qty};
use crate::instrument::{InstrumentIndex, InstrumentRegistry};
use crate::order::{Order, OrderRequest};
use crate::position::Position;
use crate::stops::StopParams;
use crate::timers::TimerError;

/// Most members a portfolio holds (a member index is one byte; the last value is
/// [`StrategyId::ENGINE`]).
pub const MAX_MEMBERS: usize = 255;

/// Bits of a member's own timer ids.
const TIMER_ID_BITS: u32 = 24;
/// Largest timer id a member may use.
pub const MAX_MEMBER_TIMER_ID: u32 = (1 << TIMER_ID_BITS) - 1;

/// One member's own limits, checked before the engine's gates and the global risk gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberLimits {
    /// Largest absolute attributed position per instrument, counting the order being sent.
    #[serde(default)]
    pub max_position: Option<Qty>,
    /// Most working orders at once.
    #[serde(default)]
    pub max_open_orders: Option<u32>,
}

/// What one member did, as the portfolio saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounters {
    /// Orders the engine took.
    pub orders: u64,
    /// Orders its own limits refused (the engine never saw them).
    pub denied: u64,
    /// Fills.
    pub fills: u64,
    /// Fills its attributed position refused (never expected: the engine's took them).
    pub position_errors: u64,
}

/// One member and what is attributed to it.
#[derive(Debug)]
pub struct Member<S> {
    /// The strategy.
    pub strategy: S,
    /// Its limits.
    pub limits: MemberLimits,
    /// Its attributed positions, by instrument index.
    pub positions: Box<[Position]>,
    /// Its working orders.
    pub open_orders: u32,
    /// Counters.
    pub counters: MemberCounters,
}

/// Several strategies in one engine (see the module docs).
///
/// ```
/// use tradeloop_engine::api::Strategy;
/// use tradeloop_engine::fixed::{Price, Qty};
/// use tradeloop_engine::instrument::{ContractKind, InstrumentRegistry};
/// use tradeloop_engine::portfolio::{MemberLimits, Portfolio};
///
/// struct Idle;
/// impl Strategy for Idle {}
///
/// let mut r = InstrumentRegistry::new();
/// r.add("sim", "BTCUSDT", Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap(), ContractKind::Spot).unwrap();
/// let limits = MemberLimits { max_open_orders: Some(4), ..MemberLimits::default() };
/// let p = Portfolio::new(vec![(Idle, limits), (Idle, MemberLimits::default())], &r).unwrap();
/// assert_eq!(p.members().len(), 2);
/// assert!(Portfolio::<Idle>::new(Vec::new(), &r).is_err());
/// ```
#[derive(Debug)]
pub struct Portfolio<S> {
    members: Box<[Member<S>]>,
}

/// Why a portfolio could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortfolioError {
    /// No member, or more than [`MAX_MEMBERS`].
    #[error("a portfolio holds 1 to {MAX_MEMBERS} strategies, got {0}")]
    Size(usize),
}

impl<S> Member<S> {
    /// The strategy and its scoped context as member `id`.
    #[inline]
    fn scoped<'a, C>(&'a mut self, ctx: &'a mut C, id: StrategyId) -> (&'a mut S, Scoped<'a, C>) {
        let Self {
            strategy,
            limits,
            positions,
            open_orders,
            counters,
        } = self;
        let scoped = Scoped {
            inner: ctx,
            id,
            limits: *limits,
            positions,
            open_orders,
            counters,
        };
        (strategy, scoped)
    }
}

impl<S: Strategy> Portfolio<S> {
    /// A portfolio of `members` (member `k` is [`StrategyId`]`(k)`) on `instruments`.
    ///
    /// # Errors
    /// [`PortfolioError::Size`] for no member or more than [`MAX_MEMBERS`].
    pub fn new(
        members: Vec<(S, MemberLimits)>,
        instruments: &InstrumentRegistry,
    ) -> Result<Self, PortfolioError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(PortfolioError::Size(members.len()));
        }
        let flat: Box<[Position]> = instruments
            .iter()
            .map(|i| Position::new(i.index, i.kind))
            .collect();
        Ok(Self {
            members: members
                .into_iter()
                .map(|(strategy, limits)| Member {
                    strategy,
                    limits,
                    positions: flat.clone(),
                    open_orders: 0,
                    counters: MemberCounters::default(),
                })
                .collect(),
        })
    }

    /// The members, by [`StrategyId`].
    #[must_use]
    pub fn members(&self) -> &[Member<S>] {
        &self.members
    }

    /// The members, mutably (to reconfigure a strategy between events).
    pub fn members_mut(&mut self) -> &mut [Member<S>] {
        &mut self.members
    }

    /// Books a fill of the engine's own closing order against the members' attributed
    /// positions (see the module docs).
    fn attribute_engine_fill(&mut self, update: &OrderUpdate) {
        let OrderReport::Fill {
            price, qty, fee, ..
        } = update.report
        else {
            return;
        };
        let req = update.order.request;
        let i = req.instrument.get();
        let mut left = qty.raw();
        for m in self.members.iter_mut() {
            if left == 0 {
                break;
            }
            let Some(p) = m.positions.get_mut(i) else {
                continue;
            };
            // A sell closes longs, a buy closes shorts: what this member holds that it closes.
            let closable = p.qty.raw() * -req.side.sign();
            if closable <= 0 {
                continue;
            }
            let take = closable.min(left);
            left -= take;
            #[allow(clippy::cast_possible_truncation, reason = "a share of an i64 fee")]
            let share =
                Qty((i128::from(fee.raw()) * i128::from(take) / i128::from(qty.raw())) as i64);
            if p.apply_fill(req.side, price, Qty(take), share).is_err() {
                m.counters.position_errors += 1;
            }
        }
    }

    /// Calls `f` on every member with its scoped context.
    #[inline]
    fn each<C: Context>(&mut self, ctx: &mut C, mut f: impl FnMut(&mut S, &mut Scoped<'_, C>)) {
        for (k, m) in self.members.iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation, reason = "at most MAX_MEMBERS")]
            let (strategy, mut scoped) = m.scoped(ctx, StrategyId(k as u8));
            f(strategy, &mut scoped);
        }
    }
}

impl<S: Strategy> Strategy for Portfolio<S> {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        self.each(ctx, |s, c| s.on_start(c));
    }
    fn on_trade<C: Context>(&mut self, ctx: &mut C, trade: &Trade) {
        self.each(ctx, |s, c| s.on_trade(c, trade));
    }
    fn on_quote<C: Context>(&mut self, ctx: &mut C, quote: &Quote) {
        self.each(ctx, |s, c| s.on_quote(c, quote));
    }
    fn on_book<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {
        self.each(ctx, |s, c| s.on_book(c, instrument));
    }
    fn on_mark_price<C: Context>(&mut self, ctx: &mut C, mark: &MarkPrice) {
        self.each(ctx, |s, c| s.on_mark_price(c, mark));
    }
    fn on_liquidation<C: Context>(&mut self, ctx: &mut C, liquidation: &Liquidation) {
        self.each(ctx, |s, c| s.on_liquidation(c, liquidation));
    }
    fn on_book_stale<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {
        self.each(ctx, |s, c| s.on_book_stale(c, instrument));
    }
    fn on_stop<C: Context>(&mut self, ctx: &mut C, stop: &StopTrigger) {
        self.each(ctx, |s, c| s.on_stop(c, stop));
    }
    fn on_feed<C: Context>(&mut self, ctx: &mut C, feed: u16, state: FeedState) {
        self.each(ctx, |s, c| s.on_feed(c, feed, state));
    }
    fn on_store<C: Context>(&mut self, ctx: &mut C, healthy: bool) {
        self.each(ctx, |s, c| s.on_store(c, healthy));
    }
    fn on_breaker<C: Context>(&mut self, ctx: &mut C, event: &BreakerEvent) {
        self.each(ctx, |s, c| s.on_breaker(c, event));
    }

    fn on_order<C: Context>(&mut self, ctx: &mut C, update: &OrderUpdate) {
        let id = update.order.request.strategy;
        if id == StrategyId::ENGINE {
            self.attribute_engine_fill(update);
            return;
        }
        let Some(m) = self.members.get_mut(id.get()) else {
            return;
        };
        if let OrderReport::Fill {
            price, qty, fee, ..
        } = update.report
        {
            m.counters.fills += 1;
            let req = update.order.request;
            let applied = m
                .positions
                .get_mut(req.instrument.get())
                .map(|p| p.apply_fill(req.side, price, qty, fee));
            if !matches!(applied, Some(Ok(_))) {
                m.counters.position_errors += 1;
            }
        }
        if update.order.status.is_terminal() {
            m.open_orders = m.open_orders.saturating_sub(1);
        }
        let (strategy, mut scoped) = m.scoped(ctx, id);
        strategy.on_order(&mut scoped, update);
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        let member = (id >> TIMER_ID_BITS) as usize;
        let own = id & MAX_MEMBER_TIMER_ID;
        let Some(m) = self.members.get_mut(member) else {
            return;
        };
        #[allow(clippy::cast_possible_truncation, reason = "below MAX_MEMBERS")]
        let (strategy, mut scoped) = m.scoped(ctx, StrategyId(member as u8));
        strategy.on_timer(&mut scoped, own);
    }
}

/// `true` if `request` reduces `position` (same rule as the risk gate's reduce-only check:
/// the opposite side, at most its size).
fn reduces(position: Qty, request: &OrderRequest) -> bool {
    let p = position.raw();
    let q = request.qty.raw();
    match request.side {
        crate::event::Side::Buy => p < 0 && q <= -p,
        crate::event::Side::Sell => p > 0 && q <= p,
    }
}

/// A member's view of the engine (see the module docs).
pub struct Scoped<'a, C> {
    inner: &'a mut C,
    id: StrategyId,
    limits: MemberLimits,
    positions: &'a mut [Position],
    open_orders: &'a mut u32,
    counters: &'a mut MemberCounters,
}

impl<C: Context> Scoped<'_, C> {
    /// This member's id.
    #[must_use]
    pub fn strategy_id(&self) -> StrategyId {
        self.id
    }

    /// The order `id` if it is this member's.
    fn own(&self, id: ClientOrderId) -> Option<&Order> {
        self.inner
            .order(id)
            .filter(|o| o.request.strategy == self.id)
    }

    fn timer_id(&self, id: u32) -> Result<u32, TimerError> {
        if id > MAX_MEMBER_TIMER_ID {
            return Err(TimerError::IdOutOfRange {
                id,
                max: MAX_MEMBER_TIMER_ID,
            });
        }
        Ok((u32::from(self.id.0) << TIMER_ID_BITS) | id)
    }
}

impl<C: Context> Context for Scoped<'_, C> {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    #[inline]
    fn recv_ns(&self) -> u64 {
        self.inner.recv_ns()
    }

    fn submit(&mut self, request: OrderRequest) -> Result<ClientOrderId, SubmitError> {
        if let Some(max) = self.limits.max_open_orders {
            if *self.open_orders >= max {
                self.counters.denied += 1;
                return Err(SubmitError::Denied(Deny::TooManyOpenOrders {
                    open: *self.open_orders,
                    max,
                }));
            }
        }
        if let Some(max) = self.limits.max_position {
            let held = self
                .positions
                .get(request.instrument.get())
                .map_or(Qty::ZERO, |p| p.qty);
            let projected = (held + Qty(request.qty.raw() * request.side.sign())).abs();
            if projected > max && projected > held.abs() {
                self.counters.denied += 1;
                return Err(SubmitError::Denied(Deny::PositionAboveMax {
                    projected,
                    max,
                }));
            }
        }
        // Reduce-only means reducing this member's position; the venue's flag (account-wide)
        // stays only when the order reduces the account's position too.
        let mut reduce_only = request.reduce_only;
        if reduce_only {
            let i = request.instrument.get();
            let mine = self.positions.get(i).map_or(Qty::ZERO, |p| p.qty);
            if !reduces(mine, &request) {
                self.counters.denied += 1;
                return Err(SubmitError::Denied(Deny::ReduceOnlyWouldIncrease {
                    position: mine,
                }));
            }
            reduce_only = reduces(self.inner.position(request.instrument).qty, &request);
        }
        let id = self.inner.submit(OrderRequest {
            strategy: self.id,
            reduce_only,
            ..request
        })?;
        *self.open_orders += 1;
        self.counters.orders += 1;
        Ok(id)
    }

    fn cancel(&mut self, id: ClientOrderId) -> Result<(), SubmitError> {
        if self.own(id).is_none() {
            return Err(SubmitError::UnknownOrder(id));
        }
        self.inner.cancel(id)
    }

    fn amend(&mut self, id: ClientOrderId, price: Price, qty: Qty) -> Result<(), SubmitError> {
        if self.own(id).is_none() {
            return Err(SubmitError::UnknownOrder(id));
        }
        self.inner.amend(id, price, qty)
    }

    /// This member's attributed position (the engine's is the sum over members).
    #[inline]
    fn position(&self, instrument: InstrumentIndex) -> &Position {
        &self.positions[instrument.get()]
    }

    #[inline]
    fn book(&self, instrument: InstrumentIndex) -> &OrderBook {
        self.inner.book(instrument)
    }

    fn order(&self, id: ClientOrderId) -> Option<&Order> {
        self.own(id)
    }

    #[inline]
    fn trading_state(&self) -> TradingState {
        self.inner.trading_state()
    }

    fn set_stops(&mut self, instrument: InstrumentIndex, params: StopParams) {
        self.inner.set_stops(instrument, params);
    }

    fn stop_levels(&self, instrument: InstrumentIndex) -> Option<(Price, Price)> {
        self.inner.stop_levels(instrument)
    }

    fn schedule_timer_at(&mut self, at_ns: u64, id: u32) -> Result<(), TimerError> {
        let id = self.timer_id(id)?;
        self.inner.schedule_timer_at(at_ns, id)
    }

    fn cancel_timer(&mut self, id: u32) -> bool {
        self.timer_id(id)
            .is_ok_and(|id| self.inner.cancel_timer(id))
    }

    fn timer_due(&self, id: u32) -> Option<u64> {
        self.timer_id(id)
            .ok()
            .and_then(|id| self.inner.timer_due(id))
    }
}

/// One of two strategy types, so that members of different types share one portfolio
/// (`Either<A, Either<B, C>>` for three). Every callback goes to the one it holds.
#[derive(Clone, Debug)]
pub enum Either<A, B> {
    /// An `A`.
    Left(A),
    /// A `B`.
    Right(B),
}

macro_rules! either_forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)+) => {
        $(
            #[inline]
            fn $name<C: Context>(&mut self, ctx: &mut C $(, $arg: $ty)*) {
                match self {
                    Self::Left(a) => a.$name(ctx $(, $arg)*),
                    Self::Right(b) => b.$name(ctx $(, $arg)*),
                }
            }
        )+
    };
}

impl<A: Strategy, B: Strategy> Strategy for Either<A, B> {
    either_forward! {
        on_start();
        on_trade(trade: &Trade);
        on_quote(quote: &Quote);
        on_book(instrument: InstrumentIndex);
        on_mark_price(mark: &MarkPrice);
        on_liquidation(liquidation: &Liquidation);
        on_book_stale(instrument: InstrumentIndex);
        on_order(update: &OrderUpdate);
        on_stop(stop: &StopTrigger);
        on_feed(feed: u16, state: FeedState);
        on_timer(id: u32);
        on_store(healthy: bool);
        on_breaker(event: &BreakerEvent);
    }
}
