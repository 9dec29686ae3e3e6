//! `momentum`: a simple taker, written to be reproduced line for line in other backtesters
//! (`tools/compare-hftbacktest` runs it against hftbacktest). Every `interval_ms` (a timer,
//! from the first event on) it compares the mid with the mid it saw at the previous firing:
//! when it rose it buys `qty` with an IOC limit at the best ask, when it fell it sells `qty`
//! with an IOC limit at the best bid — unless that would take the position past
//! `max_position` (no buy at or above it, no sell at or below its negative). An IOC at the
//! touch fills at the touch or not at all, so what it pays is the book's best price when the
//! order arrives, or nothing if the touch moved away meanwhile.
//!
//! Hot path: integer arithmetic, no allocation.

use serde::{Deserialize, Serialize};
use tradeloop_engine::api::{Context, OrderUpdate, Strategy, TradingState};
use tradeloop_engine::configurable::{Configurable, ParamError};
use tradeloop_engine::event::{OrderReport, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::{OrderRequest, TimeInForce};

/// `[strategy.momentum]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MomentumParams {
    /// Symbol to trade.
    pub symbol: String,
    /// Size of each order.
    pub qty: Qty,
    /// How often it looks, milliseconds (≥ 1).
    pub interval_ms: u64,
    /// No buy at or above this position, no sell at or below its negative.
    pub max_position: Qty,
}

impl Default for MomentumParams {
    fn default() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            qty: Qty::parse("0.001").expect("constant"),
            interval_ms: 1_000,
            max_position: Qty::parse("0.005").expect("constant"),
        }
    }
}

/// What the taker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MomentumStats {
    /// Orders sent.
    pub orders: u64,
    /// Fills received.
    pub fills: u64,
    /// Orders that ended unfilled (the touch had moved when they arrived).
    pub missed: u64,
    /// Submits the engine or risk refused.
    pub refused: u64,
    /// Timer firings.
    pub looks: u64,
}

/// The momentum taker (see the module docs).
#[derive(Clone, Debug)]
pub struct Momentum {
    instrument: InstrumentIndex,
    qty: Qty,
    max_position: Qty,
    interval_ns: u64,
    /// Best bid + best ask at the previous look (twice the mid, raw).
    last_mid2: Option<i64>,
    /// Counters.
    pub stats: MomentumStats,
}

const LOOK_TIMER: u32 = 1;

impl Momentum {
    /// A taker on `instrument`.
    #[must_use]
    pub fn new(params: &MomentumParams, instrument: InstrumentIndex) -> Self {
        Self {
            instrument,
            qty: params.qty,
            max_position: params.max_position,
            interval_ns: params.interval_ms.max(1).saturating_mul(1_000_000),
            last_mid2: None,
            stats: MomentumStats::default(),
        }
    }

    /// The order it sends when the mid went from `last_mid2 / 2` to the book's `(bid, ask)`
    /// mid holding `position`: `(side, price)`, or `None`.
    #[must_use]
    pub fn decide(
        &self,
        last_mid2: i64,
        bid: Price,
        ask: Price,
        position: Qty,
    ) -> Option<(Side, Price)> {
        let mid2 = bid.raw() + ask.raw();
        if mid2 > last_mid2 && position < self.max_position {
            Some((Side::Buy, ask))
        } else if mid2 < last_mid2 && position > -self.max_position {
            Some((Side::Sell, bid))
        } else {
            None
        }
    }

    fn look<C: Context>(&mut self, ctx: &mut C) {
        self.stats.looks += 1;
        let book = ctx.book(self.instrument);
        let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) else {
            return;
        };
        if !book.is_live() || bid.price >= ask.price {
            return;
        }
        let mid2 = bid.price.raw() + ask.price.raw();
        let last = self.last_mid2.replace(mid2);
        let Some(last) = last else { return };
        if ctx.trading_state() != TradingState::Active {
            return;
        }
        let position = ctx.position(self.instrument).qty;
        let Some((side, price)) = self.decide(last, bid.price, ask.price, position) else {
            return;
        };
        let request = OrderRequest {
            tif: TimeInForce::Ioc,
            ..OrderRequest::limit(self.instrument, side, price, self.qty)
        };
        match ctx.submit(request) {
            Ok(_) => self.stats.orders += 1,
            Err(_) => self.stats.refused += 1,
        }
    }
}

impl Strategy for Momentum {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        if ctx
            .schedule_timer_after(self.interval_ns, LOOK_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        if id != LOOK_TIMER {
            return;
        }
        self.look(ctx);
        if ctx
            .schedule_timer_after(self.interval_ns, LOOK_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_order<C: Context>(&mut self, _ctx: &mut C, update: &OrderUpdate) {
        match update.report {
            OrderReport::Fill { .. } => self.stats.fills += 1,
            OrderReport::Canceled { .. } if update.order.filled.raw() == 0 => {
                self.stats.missed += 1;
            }
            _ => {}
        }
    }
}

impl Configurable for Momentum {
    const NAME: &'static str = "momentum";
    type Params = MomentumParams;

    fn build(p: &MomentumParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let i = crate::instrument(instruments, &p.symbol)?;
        crate::check_qty(p.qty, i)?;
        if p.interval_ms == 0 {
            return Err(ParamError::new("interval_ms", "must be at least 1"));
        }
        crate::check_max_position(p.max_position, p.qty)?;
        Ok(Self::new(p, i.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_table() {
        let m = Momentum::new(&MomentumParams::default(), InstrumentIndex(0));
        let px = |s: &str| Price::parse(s).unwrap();
        let q = |s: &str| Qty::parse(s).unwrap();
        let last = px("100.0").raw() + px("100.1").raw();
        // (label, bid, ask, position, decision)
        let cases = [
            (
                "TC0 mid up: buy at the ask",
                "100.1",
                "100.2",
                "0",
                Some((Side::Buy, "100.2")),
            ),
            (
                "TC1 mid down: sell at the bid",
                "99.9",
                "100.0",
                "0",
                Some((Side::Sell, "99.9")),
            ),
            ("TC2 mid unchanged: nothing", "100.0", "100.1", "0", None),
            (
                "TC3 mid up at the long limit: nothing",
                "100.1",
                "100.2",
                "0.005",
                None,
            ),
            (
                "TC4 mid down at the short limit: nothing",
                "99.9",
                "100.0",
                "-0.005",
                None,
            ),
            (
                "TC5 mid up while short: buy",
                "100.1",
                "100.2",
                "-0.005",
                Some((Side::Buy, "100.2")),
            ),
            (
                "TC6 spread widened, mid up half a tick",
                "100.0",
                "100.2",
                "0",
                Some((Side::Buy, "100.2")),
            ),
        ];
        for (label, bid, ask, pos, want) in cases {
            let got = m.decide(last, px(bid), px(ask), q(pos));
            assert_eq!(got, want.map(|(s, p)| (s, px(p))), "{label}");
        }
    }
}
