//! A trader's own strategy, written against tradeloop's public API only: it buys a little at
//! the best ask on a timer when flat and sells it back at the best bid on the next one.

use serde::{Deserialize, Serialize};
use tradeloop::engine::api::{Context, OrderUpdate, Strategy};
use tradeloop::engine::event::{OrderReport, Side};
use tradeloop::engine::fixed::{Price, Qty};
use tradeloop::engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop::engine::order::OrderRequest;
use tradeloop::strategy::{Configurable, ParamError};

/// `[strategy.timed_taker]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Symbol to trade.
    pub symbol: String,
    /// Timer period.
    pub every_ms: u64,
    /// Order size.
    pub qty: Qty,
}

/// Crosses the spread every `every_ms`: into a long when flat, back to flat when long.
pub struct TimedTaker {
    instrument: InstrumentIndex,
    every_ns: u64,
    qty: Qty,
    tick: Price,
    in_flight: bool,
    /// Timers that fired.
    pub timers: u64,
    /// Orders sent.
    pub sent: u64,
    /// Signed sum of the fills it was told of.
    pub filled: Qty,
}

impl Strategy for TimedTaker {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        ctx.schedule_timer_after(self.every_ns, 1)
            .expect("a timer slot");
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, _id: u32) {
        self.timers += 1;
        ctx.schedule_timer_after(self.every_ns, 1)
            .expect("a timer slot");
        if self.in_flight {
            return;
        }
        let book = ctx.book(self.instrument);
        let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) else {
            return;
        };
        let position = ctx.position(self.instrument).qty;
        let req = if position.is_zero() {
            OrderRequest::ioc(self.instrument, Side::Buy, ask.price + self.tick, self.qty)
        } else {
            OrderRequest {
                reduce_only: true,
                ..OrderRequest::ioc(
                    self.instrument,
                    Side::Sell,
                    bid.price - self.tick,
                    position.abs(),
                )
            }
        };
        if ctx.submit(req).is_ok() {
            self.sent += 1;
            self.in_flight = true;
        }
    }

    fn on_order<C: Context>(&mut self, _ctx: &mut C, update: &OrderUpdate) {
        if let OrderReport::Fill { qty, .. } = update.report {
            self.filled += match update.order.request.side {
                Side::Buy => qty,
                Side::Sell => -qty,
            };
        }
        if update.order.status.is_terminal() {
            self.in_flight = false;
        }
    }
}

impl Configurable for TimedTaker {
    const NAME: &'static str = "timed_taker";
    type Params = Params;

    fn build(p: &Params, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let i = instruments.by_symbol(&p.symbol).ok_or_else(|| {
            ParamError::new("symbol", format!("{:?} is not an instrument", p.symbol))
        })?;
        if p.every_ms == 0 {
            return Err(ParamError::new("every_ms", "must be at least 1"));
        }
        Ok(Self {
            instrument: i.index,
            every_ns: p.every_ms * 1_000_000,
            qty: p.qty,
            tick: i.tick_size,
            in_flight: false,
            timers: 0,
            sent: 0,
            filled: Qty::ZERO,
        })
    }
}

tradeloop::strategies! {
    /// This crate's strategies, with the bundled crossover.
    pub struct Mine { tradeloop::engine::strategies::MaCross, TimedTaker }
}
