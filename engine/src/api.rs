//! The ports of the engine: the traits it calls (`Strategy`, `RiskGate`, `Gateway`) and the
//! plain values it passes through them. Hot path: every method here is called per event or per
//! order on the engine thread, through generics (no `dyn`), and must not allocate or block.

use crate::book::OrderBook;
use crate::event::{
    ClientOrderId, FeedState, Liquidation, MarkPrice, OrderReport, Quote, RejectReason,
    StopTrigger, Trade,
};
use crate::fixed::{Money, Price, Qty};
use crate::instrument::{ContractKind, InstrumentIndex};
use crate::order::{Order, OrderRequest};
use crate::position::Position;
use crate::timers::TimerError;

pub use crate::types::TradingState;

/// Why an order was refused before it reached a gateway. Every variant carries the numbers that
/// decided it, and has a stable numeric [`Deny::code`] for counters and persistence.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Deny {
    /// Trading is halted.
    #[error("trading halted")]
    Halted,
    /// Trading is reduce-only and the order would not reduce.
    #[error("reducing only: order would increase position {position}")]
    ReducingOnly {
        /// Current signed position.
        position: Qty,
    },
    /// HIGH lane or persistence back-pressure: new orders wait until it clears.
    #[error("back-pressure: new orders paused")]
    Backpressure,
    /// The instrument's book lost a delta and is resyncing.
    #[error("book of {instrument} is stale")]
    BookStale {
        /// Instrument.
        instrument: InstrumentIndex,
    },
    /// Quantity is zero, negative or not a multiple of the lot size.
    #[error("invalid quantity {qty} (lot {lot})")]
    InvalidQty {
        /// Requested quantity.
        qty: Qty,
        /// Lot size.
        lot: Qty,
    },
    /// Price is not positive or not a multiple of the tick size.
    #[error("invalid price {price} (tick {tick})")]
    InvalidPrice {
        /// Requested price.
        price: Price,
        /// Tick size.
        tick: Price,
    },
    /// Order quantity above the limit.
    #[error("quantity {qty} above max {max}")]
    QtyAboveMax {
        /// Requested quantity.
        qty: Qty,
        /// Limit.
        max: Qty,
    },
    /// Order notional above the limit.
    #[error("notional {notional} above max {max}")]
    NotionalAboveMax {
        /// Order notional.
        notional: Money,
        /// Limit.
        max: Money,
    },
    /// Position after the order (counting working orders) would exceed the limit.
    #[error("position would reach {projected} above max {max}")]
    PositionAboveMax {
        /// Projected absolute position.
        projected: Qty,
        /// Limit.
        max: Qty,
    },
    /// Price too far from the reference price (fat finger).
    #[error("price {price} is {deviation_bps} bps from reference {reference} (max {max_bps})")]
    PriceBand {
        /// Requested price.
        price: Price,
        /// Reference price.
        reference: Price,
        /// Deviation in basis points.
        deviation_bps: u32,
        /// Limit in basis points.
        max_bps: u32,
    },
    /// No reference price yet, so the price band cannot be checked.
    #[error("no reference price for {instrument}")]
    NoReferencePrice {
        /// Instrument.
        instrument: InstrumentIndex,
    },
    /// Too many working orders.
    #[error("{open} open orders, max {max}")]
    TooManyOpenOrders {
        /// Working orders now.
        open: u32,
        /// Limit.
        max: u32,
    },
    /// A reduce-only order that would not reduce.
    #[error("reduce-only order would not reduce position {position}")]
    ReduceOnlyWouldIncrease {
        /// Current signed position.
        position: Qty,
    },
    /// Order rate limit.
    #[error("order rate limit: {per_second}/s")]
    RateLimited {
        /// Configured orders per second.
        per_second: u32,
    },
}

impl Deny {
    /// Number of distinct denial codes.
    pub const COUNT: usize = 14;

    /// Stable numeric code (0..COUNT) for counters and persistence.
    #[must_use]
    pub const fn code(&self) -> usize {
        match self {
            Self::Halted => 0,
            Self::ReducingOnly { .. } => 1,
            Self::Backpressure => 2,
            Self::BookStale { .. } => 3,
            Self::InvalidQty { .. } => 4,
            Self::InvalidPrice { .. } => 5,
            Self::QtyAboveMax { .. } => 6,
            Self::NotionalAboveMax { .. } => 7,
            Self::PositionAboveMax { .. } => 8,
            Self::PriceBand { .. } => 9,
            Self::NoReferencePrice { .. } => 10,
            Self::TooManyOpenOrders { .. } => 11,
            Self::ReduceOnlyWouldIncrease { .. } => 12,
            Self::RateLimited { .. } => 13,
        }
    }

    /// Stable snake-case names, indexed by [`Deny::code`].
    pub const NAMES: [&'static str; Self::COUNT] = [
        "halted",
        "reducing_only",
        "backpressure",
        "book_stale",
        "invalid_qty",
        "invalid_price",
        "qty_above_max",
        "notional_above_max",
        "position_above_max",
        "price_band",
        "no_reference_price",
        "too_many_open_orders",
        "reduce_only_would_increase",
        "rate_limited",
    ];
}

/// What a risk gate sees about the instrument and account when checking an order.
#[derive(Clone, Copy, Debug)]
pub struct RiskContext {
    /// Current signed position.
    pub position: Qty,
    /// Sum of remaining quantity of working buy orders on this instrument.
    pub working_buy: Qty,
    /// Sum of remaining quantity of working sell orders on this instrument.
    pub working_sell: Qty,
    /// Working orders on this instrument.
    pub open_orders_instrument: u32,
    /// Working orders on all instruments.
    pub open_orders_total: u32,
    /// Last trade or quote mid, if any market data arrived.
    pub reference_price: Option<Price>,
    /// Tick size of the instrument.
    pub tick_size: Price,
    /// Lot size of the instrument.
    pub lot_size: Qty,
    /// Contract kind (decides how notional is computed).
    pub kind: ContractKind,
    /// Current trading state.
    pub trading_state: TradingState,
    /// Clock time.
    pub now_ns: u64,
    /// The engine's own closing order (a fired stop, the kill switch's flatten): it must reduce
    /// the position, and is never blocked by the trading state, size, open-order or rate
    /// limits.
    pub protective: bool,
}

/// Pre-trade checks, called for every order before it reaches a gateway.
pub trait RiskGate {
    /// Accepts or denies one order.
    ///
    /// A check of a protective order (`ctx.protective`) must leave the gate's state as it
    /// was: besides real closes, the engine runs an armed stop's close through this check
    /// every `engine.stop_warm_events` events without sending it (a rehearsal that keeps the
    /// path in cache).
    ///
    /// # Errors
    /// A [`Deny`] with the numbers that decided it.
    fn check(&mut self, request: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny>;
}

/// Why a gateway could not take an order or cancel.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum GatewayError {
    /// The outbound queue to the venue is full.
    #[error("gateway queue full")]
    Full,
    /// Not connected.
    #[error("gateway disconnected")]
    Disconnected,
    /// No execution venue is configured: the order is an intent only.
    #[error("no execution venue: order not sent")]
    NoExecutionVenue,
    /// The gateway cannot amend orders (cancel and send a new one instead).
    #[error("this gateway does not amend orders")]
    AmendUnsupported,
}

impl GatewayError {
    /// The reject reason an order gets when its submission fails.
    #[must_use]
    pub const fn reject_reason(self) -> RejectReason {
        RejectReason::GatewayUnavailable
    }
}

/// The engine's books, one per instrument index, as the gateway sees them: a simulated venue
/// matches against them (so a backtest keeps one copy of each book, not two); a live gateway
/// ignores them.
pub type Books = [crate::book::OrderBook];

/// Where orders go: a simulated venue or a live one. Reports come back on the HIGH lane.
pub trait Gateway {
    /// Hands a new order to the venue. Must not block.
    ///
    /// # Errors
    /// [`GatewayError`] if it cannot be sent now; the engine rejects the order.
    fn submit(&mut self, order: &Order, now_ns: u64, books: &Books) -> Result<(), GatewayError>;

    /// Requests a cancel. Must not block.
    ///
    /// # Errors
    /// [`GatewayError`] if it cannot be sent now.
    fn cancel(&mut self, order: &Order, now_ns: u64, books: &Books) -> Result<(), GatewayError>;

    /// Requests an amend of a working limit order to `price` and the total quantity `qty`
    /// (filled part included). Must not block. The venue answers with `Amended` or
    /// `AmendRejected` on HIGH; until then the order works on its old terms.
    ///
    /// # Errors
    /// [`GatewayError`] if it cannot be sent now; [`GatewayError::AmendUnsupported`] (the
    /// default) where the venue or gateway has no amend.
    fn amend(
        &mut self,
        order: &Order,
        price: Price,
        qty: Qty,
        now_ns: u64,
        books: &Books,
    ) -> Result<(), GatewayError> {
        let _ = (order, price, qty, now_ns, books);
        Err(GatewayError::AmendUnsupported)
    }

    /// Sees each market-data event before the strategy does and before the engine applies it
    /// to `books` (a simulated venue matches against it; a live gateway ignores it).
    #[inline]
    fn on_market(&mut self, event: &crate::event::Event, now_ns: u64, books: &Books) {
        let _ = (event, now_ns, books);
    }

    /// Called after every event and on idle turns with the current time, so that a simulated
    /// venue can release reports whose latency has elapsed.
    #[inline]
    fn poll(&mut self, now_ns: u64, books: &Books) {
        let _ = (now_ns, books);
    }
}

/// Why a strategy's submit or cancel did not go out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SubmitError {
    /// Denied by the engine's own gates or the risk gate.
    #[error("denied: {0}")]
    Denied(Deny),
    /// Every order slot is in use.
    #[error("order pool exhausted")]
    PoolExhausted,
    /// The gateway refused to take it.
    #[error("gateway: {0}")]
    Gateway(GatewayError),
    /// Unknown or already finished order (cancel).
    #[error("no working order {0:?}")]
    UnknownOrder(ClientOrderId),
    /// Unknown instrument index.
    #[error("unknown instrument {0}")]
    UnknownInstrument(InstrumentIndex),
    /// The amend cannot be asked for (see the reason); nothing was sent.
    #[error("amend of {id:?} refused: {reason}")]
    AmendRefused {
        /// Order.
        id: ClientOrderId,
        /// Why.
        reason: AmendRefusal,
    },
}

/// Why [`Context::amend`] refused to send an amend.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AmendRefusal {
    /// The venue has not acknowledged the order yet.
    #[error("not acknowledged yet")]
    NotAcknowledged,
    /// A cancel or another amend of the order is unanswered.
    #[error("a cancel or amend is pending")]
    Pending,
    /// Only resting limit orders can be amended.
    #[error("not a resting limit order")]
    NotALimit,
    /// The new total quantity is not above what has filled, or the price is not positive.
    #[error("total {qty} at {price} with {filled} filled")]
    BadTerms {
        /// Requested total quantity.
        qty: Qty,
        /// Requested price.
        price: Price,
        /// Filled so far.
        filled: Qty,
    },
    /// The new terms are the old ones.
    #[error("nothing to change")]
    NoChange,
}

/// An order report as a strategy sees it: the report and the order after it was applied.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OrderUpdate {
    /// What the venue said.
    pub report: OrderReport,
    /// The order after applying it.
    pub order: Order,
}

/// What a strategy can see and do while handling an event.
pub trait Context {
    /// Clock time.
    fn now_ns(&self) -> u64;
    /// Receive time (`recv_ns`) of the event being handled: `now_ns() - recv_ns()` is how long
    /// it took from the wire to this callback.
    fn recv_ns(&self) -> u64;
    /// Sends an order through the engine's gates, the risk gate and the gateway.
    ///
    /// # Errors
    /// [`SubmitError`] saying why it did not go out.
    fn submit(&mut self, request: OrderRequest) -> Result<ClientOrderId, SubmitError>;
    /// Requests a cancel of a working order.
    ///
    /// # Errors
    /// [`SubmitError`] for an unknown order or a gateway refusal.
    fn cancel(&mut self, id: ClientOrderId) -> Result<(), SubmitError>;
    /// Requests an amend of a working limit order to `price` and the total quantity `qty`
    /// (filled part included), checked by the engine's gates and the risk gate as the order it
    /// becomes. The answer arrives in [`Strategy::on_order`] as `OrderReport::Amended` (the
    /// order then carries the new terms) or `AmendRejected`. In the simulated venue a lower
    /// quantity at the same price keeps the order's place in the queue; a new price or a
    /// higher quantity puts it at the back of its (new) level, as venues do.
    ///
    /// # Errors
    /// [`SubmitError::UnknownOrder`] for an order that is not working (filled, cancelled,
    /// rejected), [`SubmitError::AmendRefused`] with the reason, a denial, or a gateway
    /// refusal ([`GatewayError::AmendUnsupported`] where the venue has no amend).
    fn amend(&mut self, id: ClientOrderId, price: Price, qty: Qty) -> Result<(), SubmitError>;
    /// The position of an instrument.
    fn position(&self, instrument: InstrumentIndex) -> &Position;
    /// The L2 book of an instrument.
    fn book(&self, instrument: InstrumentIndex) -> &OrderBook;
    /// A working order.
    fn order(&self, id: ClientOrderId) -> Option<&Order>;
    /// Trading state.
    fn trading_state(&self) -> TradingState;
    /// Sets an instrument's stop-loss, take-profit and trailing distances (overriding the
    /// `[stops]` defaults); an open position's levels move at once, published to the ingress
    /// guard.
    fn set_stops(&mut self, instrument: InstrumentIndex, params: crate::stops::StopParams);
    /// The armed stop's trigger levels `(lower, upper)` of an instrument, if a position is open
    /// and a stop is set (`i64::MIN`/`i64::MAX` raw = no level on that side).
    fn stop_levels(&self, instrument: InstrumentIndex) -> Option<(Price, Price)>;
    /// Schedules timer `id` to fire ([`Strategy::on_timer`]) once the clock reaches `at_ns`,
    /// replacing a pending timer with the same id. A time in the past fires at once (in this
    /// loop turn); from inside `on_timer` the earliest is one nanosecond later, so a timer
    /// cannot re-fire within one instant. Timers run in LOW's place in the loop turn (after
    /// CRITICAL and HIGH), on the simulated clock in backtests; see [`crate::timers`].
    ///
    /// # Errors
    /// [`TimerError::Full`] when `engine.timer_slots` timers are pending.
    fn schedule_timer_at(&mut self, at_ns: u64, id: u32) -> Result<(), TimerError>;
    /// Schedules timer `id` `after_ns` from now (see [`Self::schedule_timer_at`]).
    ///
    /// # Errors
    /// [`TimerError::Full`] when `engine.timer_slots` timers are pending.
    fn schedule_timer_after(&mut self, after_ns: u64, id: u32) -> Result<(), TimerError> {
        let at_ns = self.now_ns().saturating_add(after_ns);
        self.schedule_timer_at(at_ns, id)
    }
    /// Cancels timer `id`; `true` if it was pending (a cancelled timer never fires).
    fn cancel_timer(&mut self, id: u32) -> bool;
    /// When timer `id` is due, if it is pending.
    fn timer_due(&self, id: u32) -> Option<u64>;
}

/// A trading strategy. Every callback has a do-nothing default so a strategy implements only
/// what it uses. Callbacks run on the engine thread and must not block or allocate.
#[allow(unused_variables, reason = "default callbacks ignore their input")]
pub trait Strategy {
    /// Called once before the first event (at the first event's time in a backtest): schedule
    /// the first timers, read the instruments' books and positions (restored ones included).
    fn on_start<C: Context>(&mut self, ctx: &mut C) {}
    /// A public trade.
    fn on_trade<C: Context>(&mut self, ctx: &mut C, trade: &Trade) {}
    /// A best bid/offer update.
    fn on_quote<C: Context>(&mut self, ctx: &mut C, quote: &Quote) {}
    /// The book of `instrument` changed and is consistent (a whole venue message applied).
    fn on_book<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {}
    /// Mark price and funding of a perpetual.
    fn on_mark_price<C: Context>(&mut self, ctx: &mut C, mark: &MarkPrice) {}
    /// A liquidation on the venue.
    fn on_liquidation<C: Context>(&mut self, ctx: &mut C, liquidation: &Liquidation) {}
    /// The book of `instrument` lost an update; trading on it is paused until it resyncs.
    fn on_book_stale<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {}
    /// One of this strategy's orders changed.
    fn on_order<C: Context>(&mut self, ctx: &mut C, update: &OrderUpdate) {}
    /// A stop level was crossed.
    fn on_stop<C: Context>(&mut self, ctx: &mut C, stop: &StopTrigger) {}
    /// A feed changed state.
    fn on_feed<C: Context>(&mut self, ctx: &mut C, feed: u16, state: FeedState) {}
    /// Timer `id` fired (see [`Context::schedule_timer_at`]; also any `Timer` event pushed to
    /// the LOW lane from outside).
    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {}
    /// The persistence store failed (`healthy: false`) or recovered. Orders keep flowing while
    /// the writer holds and retries records; a strategy may choose to reduce risk meanwhile.
    fn on_store<C: Context>(&mut self, ctx: &mut C, healthy: bool) {}
    /// A circuit breaker tripped, went half-open or recovered; the trading state it imposes
    /// is already in force ([`Context::trading_state`]).
    fn on_breaker<C: Context>(&mut self, ctx: &mut C, event: &crate::breakers::BreakerEvent) {}
}
