//! `basis`: a spot-versus-perpetual basis trader on two instruments. Every `sample_ms` (a
//! timer) it reads both books' mids and the basis, `(perp − spot) / spot` in basis points,
//! and keeps an EMA of it over `window` samples. When the basis is `entry_bps` above its
//! average the perpetual is rich: it shorts `qty` of the perpetual and buys `qty` of spot
//! (and, with `allow_spot_short`, the mirror image when it is `entry_bps` below). When the
//! basis has come back to within `exit_bps` of its average (on the position's side) it closes
//! both legs. Each sample it
//! steers each leg towards its target with one IOC `slippage_ticks` through the touch, so a
//! leg that did not fill is retried and the pair stays hedged. Nothing new while halted or
//! reducing (it only closes then).
//!
//! Hot path: integer arithmetic, no allocation.

use serde::{Deserialize, Serialize};
use tradeloop_engine::api::{Context, OrderUpdate, Strategy, TradingState};
use tradeloop_engine::configurable::{Configurable, ParamError};
use tradeloop_engine::event::{ClientOrderId, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::order::OrderRequest;
use tradeloop_engine::strategies::Ema;

/// One leg: a configured venue and symbol.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Leg {
    /// `[[venues]]` name.
    pub venue: String,
    /// Symbol on that venue.
    pub symbol: String,
}

/// `[strategy.basis]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasisParams {
    /// The spot leg.
    pub spot: Leg,
    /// The perpetual leg.
    pub perp: Leg,
    /// Size of each leg.
    pub qty: Qty,
    /// Sample period, milliseconds (≥ 1).
    pub sample_ms: u64,
    /// EMA length of the basis, samples (≥ 2).
    pub window: u32,
    /// Enter this far from the average, basis points (> `exit_bps`).
    pub entry_bps: u32,
    /// Close once back within this of the average, basis points.
    pub exit_bps: u32,
    /// IOC limit this many ticks through the touch.
    pub slippage_ticks: u32,
    /// Also trade the reverse (short spot) when the basis is cheap.
    #[serde(default)]
    pub allow_spot_short: bool,
}

/// What the basis trader did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BasisStats {
    /// Samples taken with both books live.
    pub samples: u64,
    /// Entries into the carry (short perp, long spot) and into the reverse.
    pub entries: u64,
    /// Exits to flat.
    pub exits: u64,
    /// Orders sent, both legs.
    pub orders: u64,
    /// Fills, both legs.
    pub fills: u64,
    /// Orders refused by the engine or risk.
    pub refused: u64,
}

/// The basis trader (see the module docs).
#[derive(Clone, Debug)]
pub struct Basis {
    spot: InstrumentIndex,
    perp: InstrumentIndex,
    ticks: (Price, Price),
    qty: Qty,
    sample_ns: u64,
    ema: Ema,
    warmup_left: u32,
    entry: i64,
    exit: i64,
    slippage_ticks: i64,
    allow_spot_short: bool,
    /// Wanted spot position in `qty` units: +1 carry, −1 reverse, 0 flat (perp is its negative).
    target: i64,
    in_flight: [Option<ClientOrderId>; 2],
    /// Counters.
    pub stats: BasisStats,
}

/// Basis in hundredths of a basis point (1e6 = 100 %).
const BASIS_SCALE: i128 = 1_000_000;
const SAMPLE_TIMER: u32 = 1;

impl Basis {
    /// The basis now, in hundredths of a basis point, if both books have a mid.
    fn basis<C: Context>(&self, ctx: &C) -> Option<i64> {
        let (s, p) = (ctx.book(self.spot), ctx.book(self.perp));
        if !s.is_live() || !p.is_live() {
            return None;
        }
        let (s, p) = (s.mid()?, p.mid()?);
        if s.raw() <= 0 {
            return None;
        }
        let b = (i128::from(p.raw()) - i128::from(s.raw())) * BASIS_SCALE / i128::from(s.raw());
        i64::try_from(b).ok()
    }

    /// Sends one IOC that moves `instrument`'s position towards `target_qty`.
    fn steer<C: Context>(
        &mut self,
        ctx: &mut C,
        leg: usize,
        instrument: InstrumentIndex,
        target: Qty,
    ) {
        if self.in_flight[leg].is_some() {
            return;
        }
        let delta = target - ctx.position(instrument).qty;
        if delta.is_zero() {
            return;
        }
        let book = ctx.book(instrument);
        let tick = if leg == 0 { self.ticks.0 } else { self.ticks.1 };
        let through = Price(tick.raw().saturating_mul(self.slippage_ticks));
        let (side, price) = if delta.raw() > 0 {
            let Some(ask) = book.best_ask() else { return };
            (Side::Buy, ask.price + through)
        } else {
            let Some(bid) = book.best_bid() else { return };
            (
                Side::Sell,
                Price((bid.price - through).raw().max(tick.raw())),
            )
        };
        match ctx.submit(OrderRequest::ioc(instrument, side, price, delta.abs())) {
            Ok(id) => {
                self.in_flight[leg] = Some(id);
                self.stats.orders += 1;
            }
            Err(_) => self.stats.refused += 1,
        }
    }

    fn sample<C: Context>(&mut self, ctx: &mut C) {
        let Some(basis) = self.basis(ctx) else { return };
        self.stats.samples += 1;
        self.ema.update(Price(basis));
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            return;
        }
        let deviation = basis - self.ema.value().raw();
        let state = ctx.trading_state();
        // Out of a position once the basis is back through `exit_bps` of its average on the
        // position's side; into one when it is `entry_bps` away; flat whenever trading is not
        // active.
        let target = if state != TradingState::Active {
            0
        } else {
            match self.target {
                1 if deviation <= self.exit => 0,
                -1 if deviation >= -self.exit => 0,
                0 if deviation >= self.entry => 1,
                0 if deviation <= -self.entry && self.allow_spot_short => -1,
                held => held,
            }
        };
        if target != self.target {
            if target == 0 {
                self.stats.exits += 1;
            } else {
                self.stats.entries += 1;
            }
            self.target = target;
        }
        if state == TradingState::Halted {
            return;
        }
        let q = Qty(self.qty.raw() * self.target);
        self.steer(ctx, 0, self.spot, q);
        self.steer(ctx, 1, self.perp, -q);
    }
}

impl Strategy for Basis {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        if ctx
            .schedule_timer_after(self.sample_ns, SAMPLE_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
    }

    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        if id != SAMPLE_TIMER {
            return;
        }
        if ctx
            .schedule_timer_after(self.sample_ns, SAMPLE_TIMER)
            .is_err()
        {
            self.stats.refused += 1;
        }
        self.sample(ctx);
    }

    fn on_order<C: Context>(&mut self, _ctx: &mut C, update: &OrderUpdate) {
        let id = update.order.client_id;
        let Some(leg) = self.in_flight.iter().position(|&x| x == Some(id)) else {
            return;
        };
        if matches!(
            update.report,
            tradeloop_engine::event::OrderReport::Fill { .. }
        ) {
            self.stats.fills += 1;
        }
        if update.order.status.is_terminal() {
            self.in_flight[leg] = None;
        }
    }
}

impl Configurable for Basis {
    const NAME: &'static str = "basis";
    type Params = BasisParams;

    fn build(p: &BasisParams, instruments: &InstrumentRegistry) -> Result<Self, ParamError> {
        let leg = |key: &str, l: &Leg| {
            instruments
                .find(&l.venue, &l.symbol)
                .map(|i| instruments.get(i))
                .ok_or_else(|| {
                    ParamError::new(
                        key,
                        format!("{}:{} is not a configured instrument", l.venue, l.symbol),
                    )
                })
        };
        let spot = leg("spot", &p.spot)?;
        let perp = leg("perp", &p.perp)?;
        if spot.index == perp.index {
            return Err(ParamError::new(
                "perp",
                "must be another instrument than spot",
            ));
        }
        crate::check_qty(p.qty, spot)?;
        crate::check_qty(p.qty, perp)?;
        if p.sample_ms == 0 {
            return Err(ParamError::new("sample_ms", "must be at least 1"));
        }
        if p.window < 2 {
            return Err(ParamError::new(
                "window",
                format!("must be at least 2, got {}", p.window),
            ));
        }
        if p.entry_bps <= p.exit_bps {
            return Err(ParamError::new(
                "entry_bps",
                format!(
                    "must be greater than exit_bps ({}), got {}",
                    p.exit_bps, p.entry_bps
                ),
            ));
        }
        Ok(Self {
            spot: spot.index,
            perp: perp.index,
            ticks: (spot.tick_size, perp.tick_size),
            qty: p.qty,
            sample_ns: p.sample_ms.saturating_mul(1_000_000),
            ema: Ema::new(p.window),
            warmup_left: p.window,
            entry: i64::from(p.entry_bps) * 100,
            exit: i64::from(p.exit_bps) * 100,
            slippage_ticks: i64::from(p.slippage_ticks),
            allow_spot_short: p.allow_spot_short,
            target: 0,
            in_flight: [None; 2],
            stats: BasisStats::default(),
        })
    }
}
