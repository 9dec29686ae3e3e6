//! `imbalance`: a taker on top-of-book imbalance. When the quantity at the best bid is at
//! least `threshold_pct` % of the best bid and offer together, buying pressure is likely to
//! lift the offer: it buys `qty` with an IOC `slippage_ticks` through the best ask (and sells
//! on the mirror image). It holds the position `hold_ms`, then closes it with a reduce-only
//! IOC through the touch, and waits `cooldown_ms` before the next entry. One order in flight
//! at a time; nothing while halted, only the close while reducing.
//!
//! Hot path: integer arithmetic, no allocation.

use serde::{Deserialize, Serialize};
use tradeloop_engine::api::{Context, OrderUpdate, Strategy, TradingState};
use tradeloop_engine::configurable::{Configurable, ParamError};
use tradeloop_engine::event::{ClientOrderId, OrderReport, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::OrderRequest;

/// `[strategy.imbalance]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImbalanceParams {
    /// Symbol to trade.
    pub symbol: String,
    /// Entry size.
    pub qty: Qty,
    /// Enter when one side holds at least this share of the top of book, percent (51..=99).
    pub threshold_pct: u32,
    /// Hold the position this long before closing it, milliseconds (≥ 1).
    pub hold_ms: u64,
    /// Wait this long after a close before the next entry, milliseconds.
    pub cooldown_ms: u64,
    /// IOC limit this many ticks through the touch.
    pub slippage_ticks: u32,
}

impl Default for ImbalanceParams {
    fn default() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            qty: Qty::parse("0.001").expect("constant"),
            threshold_pct: 80,
            hold_ms: 2_000,
            cooldown_ms: 1_000,
            slippage_ticks: 2,
        }
    }
}

/// What the imbalance taker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImbalanceStats {
    /// Entry orders sent.
    pub entries: u64,
    /// Closing orders sent.
    pub exits: u64,
    /// Fills received.
    pub fills: u64,
    /// Orders the engine or risk refused.
    pub refused: u64,
}

/// The imbalance taker (see the module docs).
#[derive(Clone, Debug)]
pub struct Imbalance {
    instrument: InstrumentIndex,
    tick: Price,
    qty: Qty,
    threshold_pct: i128,
    hold_ns: u64,
    cooldown_ns: u64,
    slippage: Price,
    in_flight: Option<ClientOrderId>,
    /// No entry before this time.
    next_entry_ns: u64,
    /// Counters.
    pub stats: ImbalanceStats,
}

const EXIT_TIMER: u32 = 1;

impl Imbalance {
    /// An imbalance taker on `instrument` with its `tick_size`.
    #[must_use]
    pub fn new(p: &ImbalanceParams, instrument: InstrumentIndex, tick_size: Price) -> Self {
        Self {
            instrument,
            tick: tick_size,
            qty: p.qty,
            threshold_pct: i128::from(p.threshold_pct),
            hold_ns: p.hold_ms.saturating_mul(1_000_000),
            cooldown_ns: p.cooldown_ms.saturating_mul(1_000_000),
            slippage: Price(tick_size.raw().saturating_mul(i64::from(p.slippage_ticks))),
            in_flight: None,
            next_entry_ns: 0,
            stats: ImbalanceStats::default(),
        }
    }

    fn send<C: Context>(&mut self, ctx: &mut C, req: OrderRequest) -> bool {
        match ctx.submit(req) {
            Ok(id) => {
                self.in_flight = Some(id);
                true
            }
            Err(_) => {
                self.stats.refused += 1;
                false
            }
        }
    }

    fn maybe_enter<C: Context>(&mut self, ctx: &mut C) {
        if self.in_flight.is_some()
            || ctx.now_ns() < self.next_entry_ns
            || ctx.trading_state() != TradingState::Active
            || !ctx.position(self.instrument).qty.is_zero()
        {
            return;
        }
        let book = ctx.book(self.instrument);
        let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) else {
            return;
        };
        if !book.is_live() {
            return;
        }
        let (b, a) = (i128::from(bid.qty.raw()), i128::from(ask.qty.raw()));
        let total = b + a;
        if total <= 0 {
            return;
        }
        let side = if b * 100 >= self.threshold_pct * total {
            Side::Buy
        } else if a * 100 >= self.threshold_pct * total {
            Side::Sell
        } else {
            return;
        };
        let price = match side {
            Side::Buy => ask.price + self.slippage,
            Side::Sell => Price((bid.price - self.slippage).raw().max(self.tick.raw())),
        };
        if self.send(
            ctx,
            OrderRequest::ioc(self.instrument, side, price, self.qty),
        ) {
            self.stats.entries += 1;
        }
    }

    fn exit<C: Context>(&mut self, ctx: &mut C) {
        let position = ctx.position(self.instrument).qty;
        if position.is_zero() || self.in_flight.is_some() {
            return;
        }
        if ctx.trading_state() == TradingState::Halted {
            // Try again once trading resumes.
            let _ = ctx.schedule_timer_after(self.hold_ns, EXIT_TIMER);
            return;
        }
        let book = ctx.book(self.instrument);
        let touch = if position.raw() > 0 {
            book.best_bid().map(|bid| {
                (
                    Side::Sell,
                    Price((bid.price - self.slippage).raw().max(self.tick.raw())),
                )
            })
        } else {
            book.best_ask()
                .map(|ask| (Side::Buy, ask.price + self.slippage))
        };
        let sent = touch.is_some_and(|(side, price)| {
            let req = OrderRequest {
                reduce_only: true,
                ..OrderRequest::ioc(self.instrument, side, price, position.abs())
            };
            self.send(ctx, req)
        });
        if sent {
            self.stats.exits += 1;
        } else {
            // No side of the book to close against, or the close was refused: try again
            // later rather than hold the position with nothing scheduled.
            let _ = ctx.schedule_timer_after(self.hold_ns, EXIT_TIMER);
        }
    }
}

impl Strategy for Imbalance {
    fn on_book<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {
        if instrument == self.instrument {
            self.maybe_enter(ctx);
        }
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        if id == EXIT_TIMER {
            self.exit(ctx);
        }
    }

    fn on_order<C: Context>(&mut self, ctx: &mut C, update: &OrderUpdate) {
        if Some(update.order.client_id) != self.in_flight {
            return;
        }
        if matches!(update.report, OrderReport::Fill { .. }) {
            self.stats.fills += 1;
        }
        if !update.order.status.is_terminal() {
            return;
        }
        self.in_flight = None;
        let position = ctx.position(self.instrument).qty;
        if position.is_zero() {
            self.next_entry_ns = ctx.now_ns().saturating_add(self.cooldown_ns);
        } else if !update.order.request.reduce_only {
            // Entered (wholly or partly): hold, then close.
            let _ = ctx.schedule_timer_after(self.hold_ns, EXIT_TIMER);
        } else if matches!(update.report, OrderReport::Rejected { .. }) {
            // The venue refused the close (in a portfolio, the account's position may not be
            // reduced by it): try again after the holding time, not in a loop of rejects.
            let _ = ctx.schedule_timer_after(self.hold_ns, EXIT_TIMER);
        } else {
            // A close that did not fill completely: try the rest at once.
            self.exit(ctx);
        }
    }
}

impl Configurable for Imbalance {
    const NAME: &'static str = "imbalance";
    type Params = ImbalanceParams;

    fn build(p: &ImbalanceParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let i = crate::instrument(instruments, &p.symbol)?;
        crate::check_qty(p.qty, i)?;
        if !(51..=99).contains(&p.threshold_pct) {
            return Err(ParamError::new(
                "threshold_pct",
                format!("must be within 51..=99, got {}", p.threshold_pct),
            ));
        }
        if p.hold_ms == 0 {
            return Err(ParamError::new("hold_ms", "must be at least 1"));
        }
        Ok(Self::new(p, i.index, i.tick_size))
    }
}
