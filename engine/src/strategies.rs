//! Built-in example strategies. Hot path: callbacks run per event on the engine thread, integer
//! arithmetic only, no allocation.

use crate::api::{Context, OrderUpdate, Strategy, TradingState};
use crate::event::{ClientOrderId, Side, Trade};
use crate::fixed::{Price, Qty};
use crate::instrument::InstrumentIndex;
use crate::order::OrderRequest;

/// Settings of [`MaCross`] (from `[strategy.ma_cross]` in config.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaCrossConfig {
    /// Symbol to trade (must be one of the configured instruments).
    pub symbol: String,
    /// Fast EMA length in trades.
    pub fast: u32,
    /// Slow EMA length in trades.
    pub slow: u32,
    /// Target absolute position when a signal is on.
    pub target_qty: Qty,
    /// How many ticks through the last trade the IOC limit price goes (marketable limit).
    pub slippage_ticks: u32,
}

impl Default for MaCrossConfig {
    fn default() -> Self {
        Self {
            symbol: "BTCUSDT".into(),
            fast: 20,
            slow: 100,
            target_qty: Qty::parse("0.01").expect("constant"),
            slippage_ticks: 5,
        }
    }
}

impl MaCrossConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `strategy.ma_cross`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.fast == 0 {
            return Err(("fast", "must be at least 1".into()));
        }
        if self.slow <= self.fast {
            return Err((
                "slow",
                format!(
                    "must be greater than fast ({}), got {}",
                    self.fast, self.slow
                ),
            ));
        }
        if self.target_qty.raw() <= 0 {
            return Err((
                "target_qty",
                format!("must be positive, got {}", self.target_qty),
            ));
        }
        Ok(())
    }
}

/// An exponential moving average of prices, in raw price units shifted left by 16 bits so the
/// integer update keeps sub-tick precision. The smoothing factor `2 / (n + 1)` is held as a
/// Q32 fixed-point multiplier, so an update is one multiply and one shift: no division (an
/// `i128` division is a ~50 ns library call, measured in `bench dispatch`). Exact integer
/// arithmetic: deterministic on every machine.
///
/// The multiply is one widening 64 × 64-bit `imul` whenever the step fits 64 bits (any price
/// move below 2^47 raw units), and the full 128-bit product otherwise; both give the same
/// exact result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ema {
    value: i128,
    alpha_q32: i64,
    primed: bool,
}

const EMA_SHIFT: u32 = 16;

impl Ema {
    /// An EMA over `n` samples (alpha = 2 / (n + 1)).
    #[must_use]
    pub fn new(n: u32) -> Self {
        Self {
            value: 0,
            // At most 2^32 (n >= 1): fits i64.
            #[allow(clippy::cast_possible_truncation, reason = "at most 2^32")]
            alpha_q32: ((2i128 << 32) / (i128::from(n) + 1)) as i64,
            primed: false,
        }
    }

    /// Adds a sample.
    #[inline]
    pub fn update(&mut self, price: Price) {
        let x = i128::from(price.raw()) << EMA_SHIFT;
        if self.primed {
            let d = x - self.value;
            let step = match i64::try_from(d) {
                Ok(d) => i128::from(d) * i128::from(self.alpha_q32),
                Err(_) => d * i128::from(self.alpha_q32),
            };
            self.value += step >> 32;
        } else {
            self.value = x;
            self.primed = true;
        }
    }

    /// Current value, rounded down to raw price units.
    #[inline]
    #[must_use]
    pub fn value(&self) -> Price {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "an average of i64 prices fits i64"
        )]
        Price((self.value >> EMA_SHIFT) as i64)
    }

    /// Value with sub-unit precision, for comparisons.
    #[inline]
    #[must_use]
    pub const fn raw(&self) -> i128 {
        self.value
    }
}

/// Moving-average crossover: long `target_qty` while the fast EMA of trade prices is above the
/// slow one, short while below. Orders are IOC limits a few ticks through the last trade
/// (marketable, with bounded slippage); one order in flight at a time.
///
/// It follows the engine's trading state instead of sending orders risk would deny: nothing
/// while halted, and while reducing only towards flat (a signal on the other side closes the
/// position and stops there).
#[derive(Clone, Debug)]
pub struct MaCross {
    instrument: InstrumentIndex,
    fast: Ema,
    slow: Ema,
    warmup_left: u32,
    target_qty: Qty,
    slippage: Price,
    in_flight: Option<ClientOrderId>,
    /// Orders sent.
    pub orders_sent: u64,
    /// Orders the engine or risk refused.
    pub orders_refused: u64,
    /// Fills received.
    pub fills: u64,
}

impl MaCross {
    /// A strategy on `instrument` with the instrument's `tick_size`.
    #[must_use]
    pub fn new(config: &MaCrossConfig, instrument: InstrumentIndex, tick_size: Price) -> Self {
        Self {
            instrument,
            fast: Ema::new(config.fast),
            slow: Ema::new(config.slow),
            warmup_left: config.slow,
            target_qty: config.target_qty,
            slippage: Price(
                tick_size
                    .raw()
                    .saturating_mul(i64::from(config.slippage_ticks)),
            ),
            in_flight: None,
            orders_sent: 0,
            orders_refused: 0,
            fills: 0,
        }
    }

    /// Fast and slow EMA values.
    #[must_use]
    pub fn emas(&self) -> (Price, Price) {
        (self.fast.value(), self.slow.value())
    }
}

impl Strategy for MaCross {
    #[inline]
    fn on_trade<C: Context>(&mut self, ctx: &mut C, trade: &Trade) {
        if trade.instrument != self.instrument {
            return;
        }
        self.fast.update(trade.price);
        self.slow.update(trade.price);
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            return;
        }
        if self.in_flight.is_some() {
            return;
        }
        let target = match self.fast.raw().cmp(&self.slow.raw()) {
            core::cmp::Ordering::Greater => self.target_qty,
            core::cmp::Ordering::Less => -self.target_qty,
            core::cmp::Ordering::Equal => return,
        };
        let position = ctx.position(self.instrument).qty;
        let target = match ctx.trading_state() {
            TradingState::Active => target,
            TradingState::Reducing => {
                target.clamp(position.min(Qty::ZERO), position.max(Qty::ZERO))
            }
            TradingState::Halted => return,
        };
        let delta = target - position;
        if delta.is_zero() {
            return;
        }
        let (side, price) = if delta.raw() > 0 {
            (Side::Buy, trade.price + self.slippage)
        } else {
            (
                Side::Sell,
                Price((trade.price - self.slippage).raw().max(1)),
            )
        };
        match ctx.submit(OrderRequest::ioc(self.instrument, side, price, delta.abs())) {
            Ok(id) => {
                self.in_flight = Some(id);
                self.orders_sent += 1;
            }
            Err(_) => {
                self.orders_refused += 1;
            }
        }
    }

    fn on_order<C: Context>(&mut self, _ctx: &mut C, update: &OrderUpdate) {
        if Some(update.order.client_id) != self.in_flight {
            return;
        }
        if matches!(update.report, crate::event::OrderReport::Fill { .. }) {
            self.fills += 1;
        }
        if update.order.status.is_terminal() {
            self.in_flight = None;
        }
    }
}

impl crate::configurable::Configurable for MaCross {
    const NAME: &'static str = "ma_cross";
    type Params = MaCrossConfig;

    fn build(
        params: &MaCrossConfig,
        instruments: &crate::instrument::InstrumentRegistry,
    ) -> Result<Self, crate::configurable::ParamError> {
        use crate::configurable::ParamError;
        params
            .validate()
            .map_err(|(key, reason)| ParamError::new(key, reason))?;
        let i = instruments.by_symbol(&params.symbol).ok_or_else(|| {
            ParamError::new(
                "symbol",
                format!(
                    "{:?} is not one of the configured instruments",
                    params.symbol
                ),
            )
        })?;
        Ok(Self::new(params, i.index, i.tick_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_tracks_a_step() {
        let mut e = Ema::new(3); // alpha = 1/2
        e.update(Price::from_units(100));
        assert_eq!(
            e.value(),
            Price::from_units(100),
            "TC0 primed with first sample"
        );
        e.update(Price::from_units(200));
        assert_eq!(e.value(), Price::from_units(150), "TC1 halfway");
        e.update(Price::from_units(200));
        assert_eq!(e.value(), Price::from_units(175), "TC2");
    }

    proptest::proptest! {
        /// The widening multiply gives exactly the full 128-bit update, for small moves and for
        /// moves too large for 64 bits.
        #[test]
        fn prop_ema_equals_the_128_bit_update(
            n in 1u32..500,
            prices in proptest::collection::vec(proptest::prop_oneof![
                1i64..10_000_000_000_000,
                proptest::strategy::Just(i64::MAX),
                proptest::strategy::Just(1i64),
            ], 1..200),
        ) {
            let mut ema = Ema::new(n);
            let alpha = (2i128 << 32) / (i128::from(n) + 1);
            let mut want: Option<i128> = None;
            for p in prices {
                ema.update(Price(p));
                let x = i128::from(p) << EMA_SHIFT;
                want = Some(want.map_or(x, |v| v + (((x - v) * alpha) >> 32)));
                proptest::prop_assert_eq!(Some(ema.raw()), want);
            }
        }
    }

    #[test]
    fn config_validation_names_the_key() {
        let base = MaCrossConfig::default();
        assert_eq!(base.validate(), Ok(()));
        let cases = [
            (
                "TC0",
                MaCrossConfig {
                    fast: 0,
                    ..base.clone()
                },
                "fast",
            ),
            (
                "TC1",
                MaCrossConfig {
                    slow: 20,
                    ..base.clone()
                },
                "slow",
            ),
            (
                "TC2",
                MaCrossConfig {
                    target_qty: Qty::ZERO,
                    ..base.clone()
                },
                "target_qty",
            ),
        ];
        for (label, cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().0, key, "{label}");
        }
    }
}
