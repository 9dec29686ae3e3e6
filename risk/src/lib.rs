//! Pre-trade risk checks: plain functions of (order, limits, context) → `Result<(), Deny>`,
//! combined by [`PreTradeRisk`], which implements the engine's `RiskGate`. Hot path: called
//! for every order on the engine thread; integer arithmetic only, no allocation, no locks.
//!
//! Checks, in order (a denied order consumes no rate-limit token): trading state, quantity and
//! price validity against lot and tick, max order quantity, max order notional, reduce-only,
//! max position (counting working orders on the same side), max open orders, price band
//! against the reference price, order rate (token buckets, global and per instrument).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use tradeloop_engine::api::{RiskContext, RiskGate, TradingState};
use tradeloop_engine::event::Side;
use tradeloop_engine::fixed::{Money, Price, Qty, FIXED_SCALE};
use tradeloop_engine::instrument::{ContractKind, MAX_INSTRUMENTS};
use tradeloop_engine::order::OrderRequest;

pub use tradeloop_engine::api::Deny;

/// Pre-trade limits (from `[risk]` in config.toml). Quantities are in the instrument's units;
/// notionals in quote currency.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest quantity of one order.
    pub max_order_qty: Qty,
    /// Largest notional of one order (`price × qty × multiplier`; inverse: `qty × multiplier`).
    pub max_order_notional: Qty,
    /// Largest absolute position per instrument, counting working orders on the same side.
    pub max_position: Qty,
    /// Largest number of working orders across all instruments.
    pub max_open_orders: u32,
    /// Largest distance of a limit price from the reference price, in basis points.
    pub price_band_bps: u32,
    /// Deny orders while no reference price (trade or quote) has arrived.
    pub require_reference_price: bool,
    /// Orders per second across all instruments (token bucket; burst = one second's worth).
    pub orders_per_second: u32,
    /// Orders per second per instrument.
    pub orders_per_second_per_instrument: u32,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_order_qty: Qty::from_units(1),
            max_order_notional: Qty::from_units(100_000),
            max_position: Qty::from_units(1),
            max_open_orders: 64,
            price_band_bps: 500,
            require_reference_price: true,
            orders_per_second: 50,
            orders_per_second_per_instrument: 20,
        }
    }
}

impl RiskLimits {
    /// Checks the limits.
    ///
    /// # Errors
    /// `(key, reason)` naming the offending key below `risk`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("max_order_qty", self.max_order_qty),
            ("max_order_notional", self.max_order_notional),
            ("max_position", self.max_position),
        ] {
            if v.raw() <= 0 {
                return Err((key, format!("must be positive, got {v}")));
            }
        }
        for (key, v) in [
            ("max_open_orders", self.max_open_orders),
            ("price_band_bps", self.price_band_bps),
            ("orders_per_second", self.orders_per_second),
            (
                "orders_per_second_per_instrument",
                self.orders_per_second_per_instrument,
            ),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if self.price_band_bps > 10_000 {
            return Err((
                "price_band_bps",
                format!("must be at most 10000 (100%), got {}", self.price_band_bps),
            ));
        }
        if self.orders_per_second_per_instrument > self.orders_per_second {
            return Err((
                "orders_per_second_per_instrument",
                format!(
                    "must not exceed orders_per_second ({})",
                    self.orders_per_second
                ),
            ));
        }
        Ok(())
    }
}

/// Trading state allows this order.
///
/// # Errors
/// [`Deny::Halted`], or [`Deny::ReducingOnly`] for an order that would not reduce.
#[inline]
pub fn check_state(req: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
    match ctx.trading_state {
        TradingState::Active => Ok(()),
        TradingState::Halted => Err(Deny::Halted),
        TradingState::Reducing if reduces(req, ctx.position) => Ok(()),
        TradingState::Reducing => Err(Deny::ReducingOnly {
            position: ctx.position,
        }),
    }
}

/// `true` if the order only reduces the position (opposite side, no larger than it).
#[inline]
#[must_use]
pub fn reduces(req: &OrderRequest, position: Qty) -> bool {
    let opposite = match req.side {
        Side::Buy => position.raw() < 0,
        Side::Sell => position.raw() > 0,
    };
    opposite && req.qty <= position.abs()
}

/// Quantity positive and a multiple of the lot; limit price positive and a multiple of the tick.
///
/// # Errors
/// [`Deny::InvalidQty`] or [`Deny::InvalidPrice`].
#[inline]
pub fn check_increments(req: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
    if req.qty.raw() <= 0 || !req.qty.is_multiple_of(ctx.lot_size) {
        return Err(Deny::InvalidQty {
            qty: req.qty,
            lot: ctx.lot_size,
        });
    }
    if req.kind.is_stop() && (req.trigger.raw() <= 0 || !req.trigger.is_multiple_of(ctx.tick_size))
    {
        return Err(Deny::InvalidPrice {
            price: req.trigger,
            tick: ctx.tick_size,
        });
    }
    if req.kind.has_limit() && (req.price.raw() <= 0 || !req.price.is_multiple_of(ctx.tick_size)) {
        return Err(Deny::InvalidPrice {
            price: req.price,
            tick: ctx.tick_size,
        });
    }
    Ok(())
}

/// Order notional in quote currency: `price × qty × multiplier` (inverse: `qty × multiplier`).
#[inline]
#[must_use]
pub fn notional(req: &OrderRequest, kind: ContractKind) -> Money {
    let m = i128::from(kind.multiplier().raw());
    let scale = i128::from(FIXED_SCALE);
    match kind {
        ContractKind::Inverse { .. } => Money(i128::from(req.qty.raw()) * m),
        ContractKind::Spot | ContractKind::Linear { .. } => {
            let pq = Money::notional(req.price, req.qty).raw();
            Money(pq.checked_mul(m).map_or(pq / scale * m, |v| v / scale))
        }
    }
}

/// Order size limits.
///
/// # Errors
/// [`Deny::QtyAboveMax`] or [`Deny::NotionalAboveMax`].
#[inline]
pub fn check_size(req: &OrderRequest, ctx: &RiskContext, limits: &RiskLimits) -> Result<(), Deny> {
    if req.qty > limits.max_order_qty {
        return Err(Deny::QtyAboveMax {
            qty: req.qty,
            max: limits.max_order_qty,
        });
    }
    let n = notional(req, ctx.kind);
    let max = Money::from_fixed_raw(limits.max_order_notional.raw());
    if n > max {
        return Err(Deny::NotionalAboveMax { notional: n, max });
    }
    Ok(())
}

/// Reduce-only orders must reduce.
///
/// # Errors
/// [`Deny::ReduceOnlyWouldIncrease`].
#[inline]
pub fn check_reduce_only(req: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
    if req.reduce_only && !reduces(req, ctx.position) {
        return Err(Deny::ReduceOnlyWouldIncrease {
            position: ctx.position,
        });
    }
    Ok(())
}

/// Position after this order and the working orders on its side stays within the limit (an
/// order that brings an over-limit position closer to flat is allowed).
///
/// # Errors
/// [`Deny::PositionAboveMax`].
#[inline]
pub fn check_position(
    req: &OrderRequest,
    ctx: &RiskContext,
    limits: &RiskLimits,
) -> Result<(), Deny> {
    let pos = i128::from(ctx.position.raw());
    let projected = match req.side {
        Side::Buy => pos + i128::from(ctx.working_buy.raw()) + i128::from(req.qty.raw()),
        Side::Sell => pos - i128::from(ctx.working_sell.raw()) - i128::from(req.qty.raw()),
    };
    let abs = projected.unsigned_abs();
    if abs > limits.max_position.raw().unsigned_abs() as u128 && abs > pos.unsigned_abs() {
        let projected = Qty(i64::try_from(abs).unwrap_or(i64::MAX));
        return Err(Deny::PositionAboveMax {
            projected,
            max: limits.max_position,
        });
    }
    Ok(())
}

/// Working-order count limit.
///
/// # Errors
/// [`Deny::TooManyOpenOrders`].
#[inline]
pub fn check_open_orders(ctx: &RiskContext, limits: &RiskLimits) -> Result<(), Deny> {
    if ctx.open_orders_total >= limits.max_open_orders {
        return Err(Deny::TooManyOpenOrders {
            open: ctx.open_orders_total,
            max: limits.max_open_orders,
        });
    }
    Ok(())
}

/// Fat-finger band: a limit price within `price_band_bps` of the reference price.
///
/// # Errors
/// [`Deny::PriceBand`], or [`Deny::NoReferencePrice`] when one is required and missing.
#[inline]
pub fn check_price_band(
    req: &OrderRequest,
    ctx: &RiskContext,
    limits: &RiskLimits,
) -> Result<(), Deny> {
    let Some(reference) = ctx.reference_price else {
        return if limits.require_reference_price {
            Err(Deny::NoReferencePrice {
                instrument: req.instrument,
            })
        } else {
            Ok(())
        };
    };
    if !req.kind.has_limit() || reference.raw() <= 0 {
        return Ok(());
    }
    let diff = (i128::from(req.price.raw()) - i128::from(reference.raw())).unsigned_abs();
    // Compare diff/ref > band/10000 without division: diff × 10000 > band × ref.
    if diff * 10_000 > u128::from(limits.price_band_bps) * reference.raw().unsigned_abs() as u128 {
        let bps = u32::try_from(diff * 10_000 / reference.raw().unsigned_abs() as u128)
            .unwrap_or(u32::MAX);
        return Err(Deny::PriceBand {
            price: req.price,
            reference,
            deviation_bps: bps,
            max_bps: limits.price_band_bps,
        });
    }
    Ok(())
}

/// A token bucket in units of 10⁻⁹ tokens; refills continuously from the order clock.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    nano_tokens: u64,
    last_ns: u64,
}

const NANO: u64 = 1_000_000_000;

impl Bucket {
    #[inline]
    fn refill(&mut self, now_ns: u64, per_second: u32) {
        let cap = u64::from(per_second) * NANO;
        let elapsed = now_ns.saturating_sub(self.last_ns);
        // per_second tokens per 1e9 ns = per_second nano-tokens per ns.
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(per_second)))
            .min(cap);
        self.last_ns = self.last_ns.max(now_ns);
    }

    #[inline]
    fn has_token(&self) -> bool {
        self.nano_tokens >= NANO
    }

    #[inline]
    fn take(&mut self) {
        self.nano_tokens -= NANO;
    }
}

/// The pre-trade gate: every check above, plus rate-limit state.
///
/// # Allocation
/// None: buckets are a fixed array.
#[derive(Clone, Debug)]
pub struct PreTradeRisk {
    limits: RiskLimits,
    global: Bucket,
    per_instrument: [Bucket; MAX_INSTRUMENTS],
    started: bool,
}

impl PreTradeRisk {
    /// A gate with these limits; buckets start full.
    #[must_use]
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            limits,
            global: Bucket::default(),
            per_instrument: [Bucket::default(); MAX_INSTRUMENTS],
            started: false,
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    #[inline]
    fn check_rate(&mut self, req: &OrderRequest, now_ns: u64) -> Result<(), Deny> {
        if !self.started {
            // Full buckets at the first order.
            self.started = true;
            self.global = Bucket {
                nano_tokens: u64::from(self.limits.orders_per_second) * NANO,
                last_ns: now_ns,
            };
            let full = Bucket {
                nano_tokens: u64::from(self.limits.orders_per_second_per_instrument) * NANO,
                last_ns: now_ns,
            };
            self.per_instrument = [full; MAX_INSTRUMENTS];
        }
        let (g, i) = (
            self.limits.orders_per_second,
            self.limits.orders_per_second_per_instrument,
        );
        self.global.refill(now_ns, g);
        let bucket = &mut self.per_instrument[req.instrument.get() % MAX_INSTRUMENTS];
        bucket.refill(now_ns, i);
        if !self.global.has_token() {
            return Err(Deny::RateLimited { per_second: g });
        }
        if !bucket.has_token() {
            return Err(Deny::RateLimited { per_second: i });
        }
        self.global.take();
        bucket.take();
        Ok(())
    }
}

impl RiskGate for PreTradeRisk {
    #[inline]
    fn check(&mut self, req: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
        if ctx.protective {
            // The engine closing a position (kill switch): it must only reduce; no state,
            // size, open-order or rate limit may keep it from going out.
            if !reduces(req, ctx.position) {
                return Err(Deny::ReducingOnly {
                    position: ctx.position,
                });
            }
            return check_increments(req, ctx);
        }
        check_state(req, ctx)?;
        check_increments(req, ctx)?;
        check_size(req, ctx, &self.limits)?;
        check_reduce_only(req, ctx)?;
        check_position(req, ctx, &self.limits)?;
        check_open_orders(ctx, &self.limits)?;
        check_price_band(req, ctx, &self.limits)?;
        self.check_rate(req, ctx.now_ns)
    }
}

/// A price `bps` basis points away from `reference` (helper for strategies and tests).
#[must_use]
pub fn offset_bps(reference: Price, bps: i64) -> Price {
    Price(reference.raw() + reference.raw() * bps / 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::instrument::InstrumentIndex;

    fn ctx() -> RiskContext {
        RiskContext {
            position: Qty::ZERO,
            working_buy: Qty::ZERO,
            working_sell: Qty::ZERO,
            open_orders_instrument: 0,
            open_orders_total: 0,
            reference_price: Some(Price::from_units(50_000)),
            tick_size: Price::parse("0.1").unwrap(),
            lot_size: Qty::parse("0.001").unwrap(),
            kind: ContractKind::Linear {
                multiplier: Qty::from_units(1),
            },
            trading_state: TradingState::Active,
            now_ns: 1_000_000_000,
            protective: false,
        }
    }

    fn buy(price: &str, qty: &str) -> OrderRequest {
        OrderRequest::limit(
            InstrumentIndex(0),
            Side::Buy,
            Price::parse(price).unwrap(),
            Qty::parse(qty).unwrap(),
        )
    }
    fn sell(price: &str, qty: &str) -> OrderRequest {
        OrderRequest {
            side: Side::Sell,
            ..buy(price, qty)
        }
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }

    #[test]
    fn check_table() {
        let limits = RiskLimits {
            max_position: q("1"),
            max_order_qty: q("0.5"),
            ..RiskLimits::default()
        };
        let m = |s: &str| Money::from_decimal(s.parse().unwrap()).unwrap();
        type Case = (&'static str, OrderRequest, RiskContext, Result<(), Deny>);
        let cases: Vec<Case> = vec![
            ("TC0 ok", buy("50000", "0.1"), ctx(), Ok(())),
            (
                "TC1 halted",
                buy("50000", "0.1"),
                RiskContext {
                    trading_state: TradingState::Halted,
                    ..ctx()
                },
                Err(Deny::Halted),
            ),
            (
                "TC2 reducing blocks increase",
                buy("50000", "0.1"),
                RiskContext {
                    trading_state: TradingState::Reducing,
                    position: q("0.2"),
                    ..ctx()
                },
                Err(Deny::ReducingOnly { position: q("0.2") }),
            ),
            (
                "TC3 reducing allows reduce",
                sell("50000", "0.1"),
                RiskContext {
                    trading_state: TradingState::Reducing,
                    position: q("0.2"),
                    ..ctx()
                },
                Ok(()),
            ),
            (
                "TC4 off-lot qty",
                buy("50000", "0.0001"),
                ctx(),
                Err(Deny::InvalidQty {
                    qty: q("0.0001"),
                    lot: q("0.001"),
                }),
            ),
            (
                "TC5 zero qty",
                buy("50000", "0"),
                ctx(),
                Err(Deny::InvalidQty {
                    qty: Qty::ZERO,
                    lot: q("0.001"),
                }),
            ),
            (
                "TC6 off-tick price",
                buy("50000.05", "0.1"),
                ctx(),
                Err(Deny::InvalidPrice {
                    price: Price::parse("50000.05").unwrap(),
                    tick: Price::parse("0.1").unwrap(),
                }),
            ),
            (
                "TC7 qty above max",
                buy("50000", "0.6"),
                ctx(),
                Err(Deny::QtyAboveMax {
                    qty: q("0.6"),
                    max: q("0.5"),
                }),
            ),
            (
                "TC8 notional above max",
                buy("50000", "0.5"),
                RiskContext {
                    kind: ContractKind::Linear {
                        multiplier: Qty::from_units(10),
                    },
                    ..ctx()
                },
                Err(Deny::NotionalAboveMax {
                    notional: m("250000"),
                    max: m("100000"),
                }),
            ),
            (
                "TC9 reduce-only that increases",
                OrderRequest {
                    reduce_only: true,
                    ..buy("50000", "0.1")
                },
                RiskContext {
                    position: q("0.3"),
                    ..ctx()
                },
                Err(Deny::ReduceOnlyWouldIncrease { position: q("0.3") }),
            ),
            (
                "TC10 position with working orders",
                buy("50000", "0.5"),
                RiskContext {
                    position: q("0.4"),
                    working_buy: q("0.2"),
                    ..ctx()
                },
                Err(Deny::PositionAboveMax {
                    projected: q("1.1"),
                    max: q("1"),
                }),
            ),
            (
                "TC11 over-limit short may still buy back",
                buy("50000", "0.5"),
                RiskContext {
                    position: q("-3"),
                    ..ctx()
                },
                Ok(()),
            ),
            (
                "TC12 open orders",
                buy("50000", "0.1"),
                RiskContext {
                    open_orders_total: 64,
                    ..ctx()
                },
                Err(Deny::TooManyOpenOrders { open: 64, max: 64 }),
            ),
            (
                "TC13 fat finger",
                buy("53000", "0.1"),
                ctx(),
                Err(Deny::PriceBand {
                    price: Price::from_units(53_000),
                    reference: Price::from_units(50_000),
                    deviation_bps: 600,
                    max_bps: 500,
                }),
            ),
            (
                "TC14 band edge inclusive",
                buy("52500", "0.1"),
                ctx(),
                Ok(()),
            ),
            (
                "TC15 no reference",
                buy("50000", "0.1"),
                RiskContext {
                    reference_price: None,
                    ..ctx()
                },
                Err(Deny::NoReferencePrice {
                    instrument: InstrumentIndex(0),
                }),
            ),
            (
                "TC16 inverse notional is qty x multiplier",
                buy("50000", "0.5"),
                RiskContext {
                    kind: ContractKind::Inverse {
                        multiplier: Qty::from_units(100),
                    },
                    ..ctx()
                },
                Ok(()),
            ),
        ];
        for (label, req, c, want) in cases {
            let mut gate = PreTradeRisk::new(limits.clone());
            assert_eq!(gate.check(&req, &c), want, "{label}");
        }
    }

    /// The engine's protective close (kill-switch flatten) passes a halt, an empty rate
    /// bucket, the size and open-order limits, but only if it reduces the position.
    #[test]
    fn protective_orders_only_reduce_and_nothing_else_blocks_them() {
        let limits = RiskLimits {
            orders_per_second: 1,
            orders_per_second_per_instrument: 1,
            max_order_qty: q("0.1"),
            max_open_orders: 1,
            ..RiskLimits::default()
        };
        let mut gate = PreTradeRisk::new(limits);
        let long = RiskContext {
            position: q("0.5"),
            open_orders_total: 5,
            open_orders_instrument: 5,
            trading_state: TradingState::Halted,
            protective: true,
            ..ctx()
        };
        let close = OrderRequest {
            reduce_only: true,
            ..OrderRequest::market(
                InstrumentIndex(0),
                Side::Sell,
                Price::from_units(50_000),
                q("0.5"),
            )
        };
        for n in 0..3 {
            assert_eq!(
                gate.check(&close, &long),
                Ok(()),
                "TC{n} halted, over size, bucket empty"
            );
        }
        let grow = OrderRequest {
            side: Side::Buy,
            ..close
        };
        assert_eq!(
            gate.check(&grow, &long),
            Err(Deny::ReducingOnly { position: q("0.5") }),
            "TC3 a protective order that would grow the position is refused"
        );
        let too_big = OrderRequest {
            qty: q("0.6"),
            ..close
        };
        assert!(
            gate.check(&too_big, &long).is_err(),
            "TC4 may not flip the position"
        );
        let normal = RiskContext {
            protective: false,
            ..long
        };
        assert_eq!(
            gate.check(&close, &normal),
            Err(Deny::Halted),
            "TC5 the same order from a strategy"
        );
        // Protective checks change no state (the engine's stop rehearsals rely on it): after
        // all of the above, the one-token buckets still hold their token.
        let active = RiskContext {
            trading_state: TradingState::Active,
            open_orders_total: 0,
            open_orders_instrument: 0,
            ..normal
        };
        let small = OrderRequest {
            qty: q("0.1"),
            ..close
        };
        assert_eq!(
            gate.check(&small, &active),
            Ok(()),
            "TC6 the rate buckets were not drawn on"
        );
        assert!(
            matches!(gate.check(&small, &active), Err(Deny::RateLimited { .. })),
            "TC7 and now they are empty"
        );
    }

    #[test]
    fn rate_limit_refills_with_time_and_denials_cost_nothing() {
        let limits = RiskLimits {
            orders_per_second: 4,
            orders_per_second_per_instrument: 2,
            ..RiskLimits::default()
        };
        let mut gate = PreTradeRisk::new(limits);
        let c = ctx();
        let ok = buy("50000", "0.1");
        assert_eq!(gate.check(&ok, &c), Ok(()), "TC0");
        assert_eq!(gate.check(&ok, &c), Ok(()), "TC1");
        assert_eq!(
            gate.check(&ok, &c),
            Err(Deny::RateLimited { per_second: 2 }),
            "TC2 per-instrument bucket empty"
        );
        let other = OrderRequest {
            instrument: InstrumentIndex(1),
            ..ok
        };
        assert_eq!(
            gate.check(&other, &c),
            Ok(()),
            "TC3 other instrument has its own bucket"
        );
        assert_eq!(gate.check(&other, &c), Ok(()), "TC4");
        let third = OrderRequest {
            instrument: InstrumentIndex(2),
            ..ok
        };
        assert_eq!(
            gate.check(&third, &c),
            Err(Deny::RateLimited { per_second: 4 }),
            "TC5 global bucket empty"
        );
        let later = RiskContext {
            now_ns: c.now_ns + 500_000_000,
            ..c
        };
        assert_eq!(
            gate.check(&ok, &later),
            Ok(()),
            "TC6 half a second refills one per-instrument token"
        );
        assert_eq!(
            gate.check(&buy("90000", "0.1"), &later),
            Err(Deny::PriceBand {
                price: Price::from_units(90_000),
                reference: Price::from_units(50_000),
                deviation_bps: 8000,
                max_bps: 500,
            }),
            "TC7"
        );
        assert_eq!(
            gate.check(&ok, &later),
            Err(Deny::RateLimited { per_second: 2 }),
            "TC8 the denied order took no token"
        );
    }

    #[test]
    fn limits_validation_names_the_key() {
        let base = RiskLimits::default();
        assert_eq!(base.validate(), Ok(()));
        let cases = [
            (
                "TC0",
                RiskLimits {
                    max_position: Qty::ZERO,
                    ..base.clone()
                },
                "max_position",
            ),
            (
                "TC1",
                RiskLimits {
                    price_band_bps: 20_000,
                    ..base.clone()
                },
                "price_band_bps",
            ),
            (
                "TC2",
                RiskLimits {
                    orders_per_second_per_instrument: 100,
                    ..base.clone()
                },
                "orders_per_second_per_instrument",
            ),
            (
                "TC3",
                RiskLimits {
                    max_open_orders: 0,
                    ..base.clone()
                },
                "max_open_orders",
            ),
        ];
        for (label, l, key) in cases {
            assert_eq!(l.validate().unwrap_err().0, key, "{label}");
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;
    use tradeloop_engine::instrument::InstrumentIndex;

    static ACCEPTED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    #[test]
    fn prop_generator_reaches_both_outcomes() {
        prop_no_order_passes_a_limit();
        assert!(
            ACCEPTED.load(core::sync::atomic::Ordering::Relaxed) > 0,
            "some generated orders pass"
        );
    }

    proptest! {
        /// Whatever the order and context, an accepted order respects every limit.
        #[test]
        fn prop_no_order_passes_a_limit(
            buy in any::<bool>(), dev_bps in -700i64..700, qty_lots in 1i64..1_500,
            pos_lots in -3_000i64..3_000, working in 0i64..2_000, open in 0u32..100,
            state in 0u8..3, reference in 1i64..200_000, t in 0u64..10_000_000_000,
        ) {
            let limits = RiskLimits::default();
            let mut gate = PreTradeRisk::new(limits.clone());
            let price = reference + reference * dev_bps / 10_000;
            let lot = Qty::parse("0.001").unwrap();
            let req = OrderRequest::limit(
                InstrumentIndex(0),
                if buy { Side::Buy } else { Side::Sell },
                Price::from_units(price),
                Qty(qty_lots * lot.raw()),
            );
            let trading_state = [TradingState::Active, TradingState::Reducing, TradingState::Halted][state as usize];
            let ctx = RiskContext {
                position: Qty(pos_lots * lot.raw()),
                working_buy: Qty(working * lot.raw()),
                working_sell: Qty(working * lot.raw()),
                open_orders_instrument: open,
                open_orders_total: open,
                reference_price: Some(Price::from_units(reference)),
                tick_size: Price::parse("0.01").unwrap(),
                lot_size: lot,
                kind: ContractKind::Spot,
                trading_state,
                now_ns: t,
                protective: false,
            };
            let verdict = gate.check(&req, &ctx);
            ACCEPTED.fetch_add(u64::from(verdict.is_ok()), core::sync::atomic::Ordering::Relaxed);
            if verdict.is_ok() {
                prop_assert!(trading_state != TradingState::Halted);
                prop_assert!(trading_state != TradingState::Reducing || reduces(&req, ctx.position));
                prop_assert!(req.qty <= limits.max_order_qty);
                prop_assert!(notional(&req, ctx.kind) <= Money::from_fixed_raw(limits.max_order_notional.raw()));
                prop_assert!(open < limits.max_open_orders);
                let diff = (price - reference).unsigned_abs() as u128;
                prop_assert!(diff * 10_000 <= u128::from(limits.price_band_bps) * reference as u128);
                let signed = if buy { req.qty.raw() + ctx.working_buy.raw() } else { -req.qty.raw() - ctx.working_sell.raw() };
                let projected = (ctx.position.raw() + signed).unsigned_abs();
                prop_assert!(projected <= limits.max_position.raw() as u64 || projected <= ctx.position.raw().unsigned_abs());
            }
        }
    }
}
