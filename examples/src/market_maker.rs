//! `market_maker`: a two-sided market maker. It rests one post-only limit order on each side
//! of the mid, `half_spread_ticks` away, both shifted against its inventory by `skew_ticks`
//! per `qty` held so that it leans towards flat. When the price it wants moves
//! `requote_ticks` from where its order rests — on a book change, on a fill, or on its
//! `refresh_ms` timer — it amends the order (price and size) rather than cancelling it; a
//! side whose fill would take the position past `max_position` is cancelled instead. It
//! follows the trading state: no quotes while halted, only the reducing side while reducing.
//!
//! In the simulated venue every requote to a new price goes to the back of the new level, so
//! what fills depends on queue position: many quotes are amended before they fill; most
//! fills come when the market trades through a quote or the other side reaches it. Counters in [`MarketMaker::stats`].
//!
//! Hot path: integer arithmetic, no allocation.

use serde::{Deserialize, Serialize};
use tradeloop_engine::api::{
    Context, GatewayError, OrderUpdate, Strategy, SubmitError, TradingState,
};
use tradeloop_engine::configurable::{Configurable, ParamError};
use tradeloop_engine::event::{ClientOrderId, OrderReport, RejectReason, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::{OrderRequest, OrderStatus};

/// `[strategy.market_maker]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MarketMakerParams {
    /// Symbol to quote.
    pub symbol: String,
    /// Size of each quote.
    pub qty: Qty,
    /// Distance of each quote from the mid, ticks (at least 1: at 1 it joins the best bid
    /// and offer of a one-tick market).
    pub half_spread_ticks: u32,
    /// Both quotes move this many ticks against the inventory per `qty` held.
    pub skew_ticks: u32,
    /// No quote whose fill would take the absolute position past this.
    pub max_position: Qty,
    /// Amend a resting quote when the wanted price is at least this many ticks away (≥ 1).
    pub requote_ticks: u32,
    /// Requote on a timer this often, milliseconds (≥ 1).
    pub refresh_ms: u64,
}

impl Default for MarketMakerParams {
    fn default() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            qty: Qty::parse("0.001").expect("constant"),
            half_spread_ticks: 1,
            skew_ticks: 1,
            max_position: Qty::parse("0.005").expect("constant"),
            requote_ticks: 2,
            refresh_ms: 250,
        }
    }
}

/// What the market maker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketMakerStats {
    /// New quotes sent.
    pub quotes_sent: u64,
    /// Amends sent.
    pub amends: u64,
    /// Amends of a quote nothing of which had filled (it lost its place unfilled).
    pub requoted_unfilled: u64,
    /// Cancels sent (a side past the position limit, or halted).
    pub cancels: u64,
    /// Cancels of a quote nothing of which had filled.
    pub cancelled_unfilled: u64,
    /// Fills received.
    pub fills: u64,
    /// Of which resting (maker) fills.
    pub maker_fills: u64,
    /// Quotes the venue refused because they would have crossed (post-only).
    pub post_only_rejects: u64,
    /// Submits, amends or cancels the engine or risk refused.
    pub refused: u64,
    /// Timer firings.
    pub timers: u64,
}

/// The two-sided market maker (see the module docs).
#[derive(Clone, Debug)]
pub struct MarketMaker {
    instrument: InstrumentIndex,
    tick: i64,
    qty: Qty,
    half_spread: i64,
    skew: i64,
    max_position: Qty,
    requote: i64,
    refresh_ns: u64,
    bid: Option<ClientOrderId>,
    ask: Option<ClientOrderId>,
    /// Counters.
    pub stats: MarketMakerStats,
}

const REFRESH_TIMER: u32 = 1;

impl MarketMaker {
    /// A market maker on `instrument` with its `tick_size`.
    #[must_use]
    pub fn new(params: &MarketMakerParams, instrument: InstrumentIndex, tick_size: Price) -> Self {
        Self {
            instrument,
            tick: tick_size.raw().max(1),
            qty: params.qty,
            half_spread: i64::from(params.half_spread_ticks),
            skew: i64::from(params.skew_ticks),
            max_position: params.max_position,
            requote: i64::from(params.requote_ticks.max(1)),
            refresh_ns: params.refresh_ms.saturating_mul(1_000_000),
            bid: None,
            ask: None,
            stats: MarketMakerStats::default(),
        }
    }

    /// The ids of its current bid and ask quotes (the last ones sent; look them up with
    /// [`Context::order`], which has none for a quote that filled or was cancelled).
    #[must_use]
    pub fn quotes(&self) -> (Option<ClientOrderId>, Option<ClientOrderId>) {
        (self.bid, self.ask)
    }

    /// The prices it wants now, `(bid, ask)`, each `None` for a side it should not quote.
    fn wanted<C: Context>(&self, ctx: &C) -> (Option<Price>, Option<Price>) {
        let book = ctx.book(self.instrument);
        let (Some(best_bid), Some(best_ask)) = (book.best_bid(), book.best_ask()) else {
            return (None, None);
        };
        if !book.is_live() || best_bid.price >= best_ask.price {
            return (None, None);
        }
        let t = self.tick;
        let (bb, ba) = (best_bid.price.raw(), best_ask.price.raw());
        // The mid in ticks, rounded down and up; a bid at ceil(mid) - half and an ask at
        // floor(mid) + half never meet.
        let sum = i128::from(bb) + i128::from(ba);
        let two_t = 2 * i128::from(t);
        #[allow(clippy::cast_possible_truncation, reason = "a price in ticks fits i64")]
        let (mid_lo, mid_hi) = (
            sum.div_euclid(two_t) as i64,
            (sum + two_t - 1).div_euclid(two_t) as i64,
        );
        let position = ctx.position(self.instrument).qty;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "bounded by max_position / qty"
        )]
        let skew = (i128::from(position.raw()) * i128::from(self.skew)
            / i128::from(self.qty.raw().max(1))) as i64;
        // Post-only: never at or through the other side.
        let bid = ((mid_hi - self.half_spread - skew) * t).min(ba - t);
        let ask = ((mid_lo + self.half_spread - skew) * t).max(bb + t);
        let (mut want_bid, mut want_ask) = (
            (position + self.qty <= self.max_position && bid > 0).then_some(Price(bid)),
            (position - self.qty >= -self.max_position).then_some(Price(ask)),
        );
        match ctx.trading_state() {
            TradingState::Active => {}
            TradingState::Reducing => {
                want_bid = want_bid.filter(|_| position.raw() < 0);
                want_ask = want_ask.filter(|_| position.raw() > 0);
            }
            TradingState::Halted => return (None, None),
        }
        (want_bid, want_ask)
    }

    fn requote<C: Context>(&mut self, ctx: &mut C) {
        let (bid, ask) = self.wanted(ctx);
        let reducing = ctx.trading_state() == TradingState::Reducing;
        self.bid = self.work(ctx, Side::Buy, self.bid, bid, reducing);
        self.ask = self.work(ctx, Side::Sell, self.ask, ask, reducing);
    }

    /// Brings one side's quote to `want`; returns the id of the quote that side now has.
    fn work<C: Context>(
        &mut self,
        ctx: &mut C,
        side: Side,
        current: Option<ClientOrderId>,
        want: Option<Price>,
        reducing: bool,
    ) -> Option<ClientOrderId> {
        let Some(order) = current.and_then(|id| ctx.order(id).copied()) else {
            // No quote working (never sent, or filled, cancelled or refused).
            let price = want?;
            let req = OrderRequest {
                post_only: true,
                reduce_only: reducing,
                ..OrderRequest::limit(self.instrument, side, price, self.qty)
            };
            return match ctx.submit(req) {
                Ok(id) => {
                    self.stats.quotes_sent += 1;
                    Some(id)
                }
                Err(_) => {
                    self.stats.refused += 1;
                    None
                }
            };
        };
        let id = order.client_id;
        if matches!(
            order.status,
            OrderStatus::PendingNew | OrderStatus::PendingAmend | OrderStatus::PendingCancel
        ) {
            return Some(id); // the venue has not answered yet
        }
        let unfilled = order.filled.is_zero();
        let Some(price) = want else {
            match ctx.cancel(id) {
                Ok(()) => {
                    self.stats.cancels += 1;
                    self.stats.cancelled_unfilled += u64::from(unfilled);
                }
                Err(_) => self.stats.refused += 1,
            }
            return Some(id);
        };
        let off = (price.raw() - order.request.price.raw()).abs();
        if off < self.requote * self.tick && order.remaining() == self.qty {
            return Some(id);
        }
        match ctx.amend(id, price, order.filled + self.qty) {
            Ok(()) => {
                self.stats.amends += 1;
                self.stats.requoted_unfilled += u64::from(unfilled);
            }
            Err(SubmitError::Gateway(GatewayError::AmendUnsupported)) => {
                // A venue without amend: cancel, and quote anew once it is gone.
                if ctx.cancel(id).is_ok() {
                    self.stats.cancels += 1;
                    self.stats.cancelled_unfilled += u64::from(unfilled);
                }
            }
            Err(_) => self.stats.refused += 1,
        }
        Some(id)
    }
}

impl Strategy for MarketMaker {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        if ctx
            .schedule_timer_after(self.refresh_ns, REFRESH_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_book<C: Context>(&mut self, ctx: &mut C, instrument: InstrumentIndex) {
        if instrument == self.instrument {
            self.requote(ctx);
        }
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        if id != REFRESH_TIMER {
            return;
        }
        self.stats.timers += 1;
        if ctx
            .schedule_timer_after(self.refresh_ns, REFRESH_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
        self.requote(ctx);
    }

    fn on_order<C: Context>(&mut self, ctx: &mut C, update: &OrderUpdate) {
        let id = update.order.client_id;
        if Some(id) != self.bid && Some(id) != self.ask {
            return;
        }
        match update.report {
            OrderReport::Fill { maker, .. } => {
                self.stats.fills += 1;
                self.stats.maker_fills += u64::from(maker);
                // The inventory moved: so do both quotes.
                self.requote(ctx);
            }
            OrderReport::Rejected {
                reason: RejectReason::PostOnlyWouldCross,
                ..
            } => self.stats.post_only_rejects += 1,
            _ => {}
        }
    }
}

impl Configurable for MarketMaker {
    const NAME: &'static str = "market_maker";
    type Params = MarketMakerParams;

    fn build(p: &MarketMakerParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let i = crate::instrument(instruments, &p.symbol)?;
        crate::check_qty(p.qty, i)?;
        if p.half_spread_ticks == 0 {
            return Err(ParamError::new("half_spread_ticks", "must be at least 1"));
        }
        if p.requote_ticks == 0 {
            return Err(ParamError::new("requote_ticks", "must be at least 1"));
        }
        if p.refresh_ms == 0 {
            return Err(ParamError::new("refresh_ms", "must be at least 1"));
        }
        crate::check_max_position(p.max_position, p.qty)?;
        Ok(Self::new(p, i.index, i.tick_size))
    }
}
