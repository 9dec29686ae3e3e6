//! `grid`: a fixed two-sided maker, written to be reproduced line for line in other backtesters
//! (`tools/compare-hftbacktest` runs it against hftbacktest). Every `refresh_ms` (a timer, from
//! the first event on) it reads the best bid `b` and ask `a` in ticks and wants one post-only
//! bid at `⌈(b + a)/2 − N⌉` and one post-only ask at `⌊(b + a)/2 + N⌋`, N ticks from the mid
//! rounded towards it (`N` = `half_spread_ticks` ≥ 1: at 1 in a one-tick market, the touch;
//! never at or through the other side). Orders of its own at any other
//! price are cancelled, and a new order is sent on a side that has none working at the wanted
//! price. No bid while the position is at or above `max_position`, no ask while it is at or
//! below `−max_position`. Nothing between timer firings, no amends, no skew: the same decisions
//! at the same instants in any engine that shows it the same book.
//!
//! Hot path: integer arithmetic and a fixed table of at most [`GRID_SLOTS`] working orders, no
//! allocation.

use serde::{Deserialize, Serialize};
use tradeloop_engine::api::{Context, OrderUpdate, Strategy, TradingState};
use tradeloop_engine::configurable::{Configurable, ParamError};
use tradeloop_engine::event::{ClientOrderId, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::{OrderRequest, OrderStatus};

/// Orders the grid keeps track of at once (working ones and those being cancelled).
pub const GRID_SLOTS: usize = 8;

/// `[strategy.grid]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridParams {
    /// Symbol to quote.
    pub symbol: String,
    /// Size of each order.
    pub qty: Qty,
    /// Distance of each order from the mid, ticks, rounded towards the mid (≥ 1; at 1 in a
    /// one- or two-tick market the orders join the touch, at 2 one tick behind it).
    pub half_spread_ticks: u32,
    /// No bid at or above this position, no ask at or below its negative.
    pub max_position: Qty,
    /// Requote period, milliseconds (≥ 1).
    pub refresh_ms: u64,
}

impl Default for GridParams {
    fn default() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            qty: Qty::parse("0.001").expect("constant"),
            half_spread_ticks: 1,
            max_position: Qty::parse("0.01").expect("constant"),
            refresh_ms: 100,
        }
    }
}

/// What the grid did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridStats {
    /// Orders sent.
    pub orders: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Fills received.
    pub fills: u64,
    /// Orders the venue refused (post-only that would have crossed on arrival).
    pub rejected: u64,
    /// Submits or cancels the engine or risk refused.
    pub refused: u64,
    /// Timer firings.
    pub refreshes: u64,
    /// Refreshes that found no two-sided live book.
    pub no_book: u64,
}

/// The grid maker (see the module docs).
#[derive(Clone, Debug)]
pub struct Grid {
    instrument: InstrumentIndex,
    tick: i64,
    qty: Qty,
    half_spread: i64,
    max_position: Qty,
    refresh_ns: u64,
    /// Orders sent and not known to be finished: (id, side, price).
    orders: [Option<(ClientOrderId, Side, Price)>; GRID_SLOTS],
    /// Counters.
    pub stats: GridStats,
}

const REFRESH_TIMER: u32 = 1;

impl Grid {
    /// A grid on `instrument` with its `tick_size`.
    #[must_use]
    pub fn new(params: &GridParams, instrument: InstrumentIndex, tick_size: Price) -> Self {
        Self {
            instrument,
            tick: tick_size.raw().max(1),
            qty: params.qty,
            half_spread: i64::from(params.half_spread_ticks),
            max_position: params.max_position,
            refresh_ns: params.refresh_ms.max(1).saturating_mul(1_000_000),
            orders: [None; GRID_SLOTS],
            stats: GridStats::default(),
        }
    }

    /// The prices it wants on a book whose best bid and ask are `bid` and `ask` (in price
    /// units, `bid < ask`): `(⌈(b + a)/2 − N⌉, ⌊(b + a)/2 + N⌋)` in ticks, kept off the other
    /// side.
    #[must_use]
    pub fn wanted_prices(&self, bid: Price, ask: Price) -> (Price, Price) {
        let (b, a) = (bid.raw() / self.tick, ask.raw() / self.tick);
        let sum = b + a;
        let buy = (sum - 2 * self.half_spread + 1).div_euclid(2).min(a - 1);
        let sell = (sum + 2 * self.half_spread).div_euclid(2).max(b + 1);
        (Price(buy * self.tick), Price(sell * self.tick))
    }

    /// Orders it is tracking: `(id, side, price)` of each sent and not yet seen finished.
    pub fn orders(&self) -> impl Iterator<Item = (ClientOrderId, Side, Price)> + '_ {
        self.orders.iter().flatten().copied()
    }

    fn refresh<C: Context>(&mut self, ctx: &mut C) {
        self.stats.refreshes += 1;
        // Forget orders that finished (filled, cancelled, refused).
        for slot in &mut self.orders {
            if slot.is_some_and(|(id, _, _)| ctx.order(id).is_none()) {
                *slot = None;
            }
        }
        let book = ctx.book(self.instrument);
        let touch = match (book.best_bid(), book.best_ask()) {
            (Some(b), Some(a)) if book.is_live() && b.price < a.price => Some((b.price, a.price)),
            _ => None,
        };
        let position = ctx.position(self.instrument).qty;
        let active = ctx.trading_state() == TradingState::Active;
        let (want_bid, want_ask) = match touch {
            Some((b, a)) if active => {
                let (buy, sell) = self.wanted_prices(b, a);
                (
                    (position < self.max_position).then_some(buy),
                    (position > -self.max_position).then_some(sell),
                )
            }
            _ => {
                self.stats.no_book += u64::from(touch.is_none());
                (None, None)
            }
        };
        self.work(ctx, Side::Buy, want_bid);
        self.work(ctx, Side::Sell, want_ask);
    }

    /// Cancels this side's orders away from `want` and sends one at `want` if none is there.
    fn work<C: Context>(&mut self, ctx: &mut C, side: Side, want: Option<Price>) {
        let mut have = false;
        for k in 0..GRID_SLOTS {
            let Some((id, s, price)) = self.orders[k] else {
                continue;
            };
            if s != side {
                continue;
            }
            if Some(price) == want {
                have = true;
                continue;
            }
            let pending = ctx
                .order(id)
                .is_some_and(|o| o.status == OrderStatus::PendingCancel);
            if !pending {
                match ctx.cancel(id) {
                    Ok(()) => self.stats.cancels += 1,
                    Err(_) => self.stats.refused += 1,
                }
            }
        }
        let Some(price) = want else { return };
        if have {
            return;
        }
        let Some(free) = self.orders.iter().position(Option::is_none) else {
            return;
        };
        let request = OrderRequest {
            post_only: true,
            ..OrderRequest::limit(self.instrument, side, price, self.qty)
        };
        match ctx.submit(request) {
            Ok(id) => {
                self.stats.orders += 1;
                self.orders[free] = Some((id, side, price));
            }
            Err(_) => self.stats.refused += 1,
        }
    }
}

impl Strategy for Grid {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        if ctx
            .schedule_timer_after(self.refresh_ns, REFRESH_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        if id != REFRESH_TIMER {
            return;
        }
        self.refresh(ctx);
        if ctx
            .schedule_timer_after(self.refresh_ns, REFRESH_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_order<C: Context>(&mut self, _ctx: &mut C, update: &OrderUpdate) {
        use tradeloop_engine::event::OrderReport;
        match update.report {
            OrderReport::Fill { .. } => self.stats.fills += 1,
            OrderReport::Rejected { .. } => self.stats.rejected += 1,
            _ => {}
        }
    }
}

impl Configurable for Grid {
    const NAME: &'static str = "grid";
    type Params = GridParams;

    fn build(p: &GridParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let i = crate::instrument(instruments, &p.symbol)?;
        crate::check_qty(p.qty, i)?;
        if p.half_spread_ticks == 0 {
            return Err(ParamError::new(
                "half_spread_ticks",
                "must be at least 1 (at 0 the two orders would meet at the mid)",
            ));
        }
        if p.refresh_ms == 0 {
            return Err(ParamError::new("refresh_ms", "must be at least 1"));
        }
        crate::check_max_position(p.max_position, p.qty)?;
        Ok(Self::new(p, i.index, i.tick_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_prices_table() {
        let grid = |n: u32| {
            Grid::new(
                &GridParams {
                    half_spread_ticks: n,
                    ..GridParams::default()
                },
                InstrumentIndex(0),
                Price::parse("0.1").unwrap(),
            )
        };
        let px = |s: &str| Price::parse(s).unwrap();
        // (label, N, bid, ask, want bid, want ask)
        let cases = [
            (
                "TC0 one-tick market, N=1: the touch",
                1,
                "100.0",
                "100.1",
                "100.0",
                "100.1",
            ),
            (
                "TC1 one-tick market, N=2: a tick behind",
                2,
                "100.0",
                "100.1",
                "99.9",
                "100.2",
            ),
            (
                "TC2 two-tick market, N=1: the touch",
                1,
                "100.0",
                "100.2",
                "100.0",
                "100.2",
            ),
            (
                "TC3 three-tick market, N=1: inside",
                1,
                "100.0",
                "100.3",
                "100.1",
                "100.2",
            ),
            (
                "TC4 wide market, N=3",
                3,
                "100.0",
                "101.0",
                "100.2",
                "100.8",
            ),
        ];
        for (label, n, b, a, wb, wa) in cases {
            let g = grid(n);
            let (buy, sell) = g.wanted_prices(px(b), px(a));
            assert_eq!((buy, sell), (px(wb), px(wa)), "{label}");
            assert!(
                buy < px(a) && sell > px(b),
                "{label}: never through the other side"
            );
            assert!(buy < sell, "{label}: never against itself");
        }
    }
}
