//! In-memory positions and PnL per instrument, fixed-point. Hot path: one `apply_fill` per fill
//! and one `unrealized` per mark; integer arithmetic only, no allocation.
//!
//! Accounting is average-cost. The position keeps a signed *basis*: the value of the open
//! quantity at the prices it was opened at. For spot and linear contracts a quantity's value is
//! `price × qty × multiplier` in quote currency (exact); for inverse contracts it is
//! `qty × multiplier / price` in base currency (rounded toward zero at 10⁻¹⁶). Closing part of a
//! position removes the same fraction of the basis, so `realised + unrealised` always equals the
//! signed cash flow of the fills plus the mark value of what is open: PnL is conserved exactly,
//! whatever the rounding of one split.

use rust_decimal::Decimal;

use crate::event::Side;
use crate::fixed::{Money, Price, Qty};
use crate::instrument::{ContractKind, InstrumentIndex};

/// Why a fill could not be applied.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PositionError {
    /// Inverse contracts need a positive price.
    #[error("price {0} must be positive")]
    NonPositivePrice(Price),
    /// Quantity must be positive.
    #[error("fill quantity {0} must be positive")]
    NonPositiveQty(Qty),
    /// The position would leave the representable range.
    #[error("position out of range")]
    Overflow,
}

/// The value of a signed quantity at a price, in the contract's PnL currency (see module docs
/// and [`ContractKind::value`]).
#[inline]
fn value(kind: ContractKind, qty: Qty, price: Price) -> Money {
    kind.value(qty, price)
}

/// One instrument's position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Position {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// Contract kind (decides the PnL formula).
    pub kind: ContractKind,
    /// Signed quantity: positive long, negative short.
    pub qty: Qty,
    /// Signed value of the open quantity at its entry prices.
    pub basis: Money,
    /// Realised PnL (before fees).
    pub realized: Money,
    /// Fees paid (negative for net rebates).
    pub fees: Money,
    /// Sum of `|value|` of all fills.
    pub turnover: Money,
    /// Number of fills applied.
    pub fills: u64,
}

impl Position {
    /// A flat position.
    #[must_use]
    pub const fn new(instrument: InstrumentIndex, kind: ContractKind) -> Self {
        Self {
            instrument,
            kind,
            qty: Qty::ZERO,
            basis: Money::ZERO,
            realized: Money::ZERO,
            fees: Money::ZERO,
            turnover: Money::ZERO,
            fills: 0,
        }
    }

    /// Makes the quantity `qty`, as a venue's reconciliation reports it. The difference is
    /// booked like a fill at `price` (a reduction realises PnL at that price; an increase
    /// enters at it) without counting as a fill; then, if the venue gave its own average
    /// `entry` price, the basis is set from it.
    ///
    /// # Errors
    /// [`PositionError`] as for [`Self::apply_fill`]; the position is then unchanged.
    pub fn resync(&mut self, qty: Qty, price: Price, entry: Price) -> Result<(), PositionError> {
        let diff = qty.raw() - self.qty.raw();
        if diff != 0 {
            let (fills, turnover) = (self.fills, self.turnover);
            let side = if diff > 0 { Side::Buy } else { Side::Sell };
            self.apply_fill(side, price, Qty(diff.abs()), Qty::ZERO)?;
            (self.fills, self.turnover) = (fills, turnover);
        }
        if entry.raw() > 0 && !qty.is_zero() {
            self.basis = value(self.kind, qty, entry);
        }
        Ok(())
    }

    /// Applies one fill and returns the realised PnL it produced.
    ///
    /// # Errors
    /// [`PositionError`] for a non-positive quantity, a non-positive price on an inverse
    /// contract, or an out-of-range position; the position is then unchanged.
    pub fn apply_fill(
        &mut self,
        side: Side,
        price: Price,
        qty: Qty,
        fee: Qty,
    ) -> Result<Money, PositionError> {
        if qty.raw() <= 0 {
            return Err(PositionError::NonPositiveQty(qty));
        }
        if self.kind.is_inverse() && price.raw() <= 0 {
            return Err(PositionError::NonPositivePrice(price));
        }
        let fill = if side == Side::Buy { qty } else { -qty };
        let pos = self.qty;
        let new_qty = pos.checked_add(fill).ok_or(PositionError::Overflow)?;
        let mut realized = Money::ZERO;
        if pos.is_zero() || (pos.raw() > 0) == (fill.raw() > 0) {
            self.basis += value(self.kind, fill, price);
        } else {
            // Closing (and maybe flipping): `close` has the sign of the position.
            let flips = fill.abs() > pos.abs();
            let close = if flips { pos } else { -fill };
            let removed = if flips || close == pos {
                self.basis
            } else {
                // basis × close / pos without overflowing i128.
                let (b, c, p) = (
                    self.basis.raw(),
                    i128::from(close.raw()),
                    i128::from(pos.raw()),
                );
                Money(b / p * c + (b % p) * c / p)
            };
            let closed_value = value(self.kind, close, price);
            realized = if self.kind.is_inverse() {
                removed - closed_value
            } else {
                closed_value - removed
            };
            self.basis -= removed;
            if flips {
                self.basis = value(self.kind, new_qty, price);
            }
        }
        self.qty = new_qty;
        self.realized += realized;
        self.fees += Money::from_fixed_raw(fee.raw());
        self.turnover += value(self.kind, qty, price).abs();
        self.fills += 1;
        Ok(realized)
    }

    /// Unrealised PnL of the open quantity at `mark`.
    #[inline]
    #[must_use]
    pub fn unrealized(&self, mark: Price) -> Money {
        if self.qty.is_zero() || (self.kind.is_inverse() && mark.raw() <= 0) {
            return Money::ZERO;
        }
        let v = value(self.kind, self.qty, mark);
        if self.kind.is_inverse() {
            self.basis - v
        } else {
            v - self.basis
        }
    }

    /// Realised + unrealised − fees at `mark`.
    #[must_use]
    pub fn net_pnl(&self, mark: Price) -> Money {
        self.realized + self.unrealized(mark) - self.fees
    }

    /// Average entry price (edges and reports only: it divides).
    #[must_use]
    pub fn avg_entry(&self) -> Option<Decimal> {
        if self.qty.is_zero() {
            return None;
        }
        let qm = self.qty.to_decimal() * self.kind.multiplier().to_decimal();
        let basis = self.basis.to_decimal();
        if self.kind.is_inverse() {
            (!basis.is_zero()).then(|| qm / basis)
        } else {
            Some(basis / qm)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::str::FromStr;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn resync_books_the_difference_at_the_price_and_adopts_the_venue_entry() {
        let mut pos = Position::new(InstrumentIndex(0), ContractKind::Spot);
        pos.apply_fill(Side::Buy, p("100"), q("2"), Qty::ZERO)
            .unwrap();
        let (fills, turnover) = (pos.fills, pos.turnover);
        // The venue says 1.5: half a unit was sold while we were not looking, at about 110.
        pos.resync(q("1.5"), p("110"), Price::ZERO).unwrap();
        assert_eq!(pos.qty, q("1.5"));
        assert_eq!(pos.realized.to_decimal(), d("5"));
        assert_eq!(pos.avg_entry(), Some(d("100")));
        assert_eq!((pos.fills, pos.turnover), (fills, turnover), "not a fill");
        // More than we had: the addition enters at the price.
        pos.resync(q("2.5"), p("120"), Price::ZERO).unwrap();
        assert_eq!(pos.avg_entry(), Some(d("108")));
        // A venue entry price wins over the booked basis.
        pos.resync(q("-1"), p("120"), p("119")).unwrap();
        assert_eq!(pos.qty, q("-1"));
        assert_eq!(pos.avg_entry(), Some(d("119")));
        // Unchanged quantity and no venue entry: nothing moves.
        let before = pos;
        pos.resync(q("-1"), p("1"), Price::ZERO).unwrap();
        assert_eq!(pos, before);
    }

    #[test]
    fn linear_table() {
        // (label, fills (side, price, qty), mark, want qty, want realised, want unrealised)
        type Case = (
            &'static str,
            &'static [(Side, &'static str, &'static str)],
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "TC0 open long",
                &[(Side::Buy, "100", "2")],
                "110",
                "2",
                "0",
                "20",
            ),
            (
                "TC1 add and average",
                &[(Side::Buy, "100", "1"), (Side::Buy, "110", "1")],
                "120",
                "2",
                "0",
                "30",
            ),
            (
                "TC2 partial close",
                &[(Side::Buy, "100", "2"), (Side::Sell, "110", "1")],
                "110",
                "1",
                "10",
                "10",
            ),
            (
                "TC3 full close",
                &[(Side::Buy, "100", "2"), (Side::Sell, "90", "2")],
                "1",
                "0",
                "-20",
                "0",
            ),
            (
                "TC4 flip long to short",
                &[(Side::Buy, "100", "1"), (Side::Sell, "110", "3")],
                "100",
                "-2",
                "10",
                "20",
            ),
            (
                "TC5 short then cover",
                &[(Side::Sell, "50", "4"), (Side::Buy, "40", "4")],
                "1",
                "0",
                "40",
                "0",
            ),
            (
                "TC6 fractional",
                &[
                    (Side::Buy, "61837.63", "0.00012345"),
                    (Side::Sell, "61840.01", "0.00012345"),
                ],
                "1",
                "0",
                "0.000293811",
                "0",
            ),
        ];
        for (label, fills, mark, want_qty, want_real, want_unreal) in cases {
            let mut pos = Position::new(
                InstrumentIndex(0),
                ContractKind::Linear {
                    multiplier: Qty::from_units(1),
                },
            );
            for (side, price, qty) in *fills {
                pos.apply_fill(*side, p(price), q(qty), Qty::ZERO).unwrap();
            }
            assert_eq!(pos.qty, q(want_qty), "{label}: qty");
            assert_eq!(pos.realized.to_decimal(), d(want_real), "{label}: realised");
            assert_eq!(
                pos.unrealized(p(mark)).to_decimal(),
                d(want_unreal),
                "{label}: unrealised"
            );
        }
    }

    #[test]
    fn inverse_long_profits_in_coin_when_price_rises() {
        // BitMEX-style XBTUSD: 1 USD per contract. Long 10,000 contracts at 50,000, sell at 55,000.
        let mut pos = Position::new(
            InstrumentIndex(0),
            ContractKind::Inverse {
                multiplier: Qty::from_units(1),
            },
        );
        pos.apply_fill(Side::Buy, p("50000"), q("10000"), Qty::ZERO)
            .unwrap();
        // value at 55,000 = 10000/55000 = 0.1818181818181818 (truncated at 1e-16), so
        // unrealised = 0.2 − 0.1818181818181818.
        assert_eq!(
            pos.unrealized(p("55000")).to_decimal(),
            d("0.0181818181818182")
        );
        pos.apply_fill(Side::Sell, p("55000"), q("10000"), Qty::ZERO)
            .unwrap();
        assert!(pos.qty.is_zero());
        assert_eq!(pos.realized.to_decimal(), d("0.0181818181818182"));
        assert_eq!(
            pos.unrealized(p("1")),
            Money::ZERO,
            "flat: nothing unrealised"
        );
        assert_eq!(pos.avg_entry(), None);
    }

    #[test]
    fn fees_and_errors() {
        let mut pos = Position::new(
            InstrumentIndex(0),
            ContractKind::Inverse {
                multiplier: Qty::from_units(100),
            },
        );
        assert_eq!(
            pos.apply_fill(Side::Buy, Price::ZERO, q("1"), Qty::ZERO),
            Err(PositionError::NonPositivePrice(Price::ZERO))
        );
        assert_eq!(
            pos.apply_fill(Side::Buy, p("1"), Qty::ZERO, Qty::ZERO),
            Err(PositionError::NonPositiveQty(Qty::ZERO))
        );
        assert_eq!(pos.fills, 0, "refused fills leave no trace");
        pos.apply_fill(Side::Buy, p("40000"), q("3"), q("0.0000015"))
            .unwrap();
        assert_eq!(pos.fees.to_decimal(), d("0.0000015"));
        assert_eq!(pos.net_pnl(p("40000")).to_decimal(), d("-0.0000015"));
        assert_eq!(pos.avg_entry(), Some(d("40000")));
        let mut lin = Position::new(InstrumentIndex(0), ContractKind::Spot);
        lin.apply_fill(Side::Buy, Price::MAX, Qty::MAX, Qty::ZERO)
            .unwrap();
        assert_eq!(
            lin.apply_fill(Side::Buy, p("1"), q("1"), Qty::ZERO),
            Err(PositionError::Overflow)
        );
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    /// Slow reference: average-cost accounting in `Decimal` (28 significant digits).
    struct Oracle {
        inverse: bool,
        mult: Decimal,
        qty: Decimal,
        basis: Decimal,
        realized: Decimal,
    }

    impl Oracle {
        fn value(&self, qty: Decimal, price: Decimal) -> Decimal {
            if self.inverse {
                qty * self.mult / price
            } else {
                qty * price * self.mult
            }
        }
        fn fill(&mut self, signed: Decimal, price: Decimal) {
            if self.qty.is_zero() || self.qty.is_sign_positive() == signed.is_sign_positive() {
                self.basis += self.value(signed, price);
            } else if signed.abs() > self.qty.abs() {
                let close = self.qty;
                self.realized += self.pnl(close, self.basis, price);
                self.basis = self.value(self.qty + signed, price);
            } else {
                let close = -signed;
                let removed = self.basis * close / self.qty;
                self.realized += self.pnl(close, removed, price);
                self.basis -= removed;
            }
            self.qty += signed;
        }
        fn pnl(&self, close: Decimal, removed: Decimal, price: Decimal) -> Decimal {
            let v = self.value(close, price);
            if self.inverse {
                removed - v
            } else {
                v - removed
            }
        }
        fn unrealized(&self, mark: Decimal) -> Decimal {
            if self.qty.is_zero() {
                return Decimal::ZERO;
            }
            let v = self.value(self.qty, mark);
            if self.inverse {
                self.basis - v
            } else {
                v - self.basis
            }
        }
    }

    fn fills() -> impl Strategy<Value = Vec<(bool, i64, i64)>> {
        // (buy?, price in cents 1..=10^7 i.e. up to 100k, qty in 1e-4 units up to 100)
        proptest::collection::vec((any::<bool>(), 1i64..10_000_000, 1i64..1_000_000), 1..40)
    }

    fn run(
        kind: ContractKind,
        fills: &[(bool, i64, i64)],
        mark_cents: i64,
    ) -> Result<(), TestCaseError> {
        let mut pos = Position::new(InstrumentIndex(0), kind);
        let mut oracle = Oracle {
            inverse: kind.is_inverse(),
            mult: kind.multiplier().to_decimal(),
            qty: Decimal::ZERO,
            basis: Decimal::ZERO,
            realized: Decimal::ZERO,
        };
        let mut signed_sum = Qty::ZERO;
        let mut cash = Money::ZERO;
        for &(buy, cents, lots) in fills {
            let price = Price(cents * 1_000_000);
            let qty = Qty(lots * 10_000);
            let side = if buy { Side::Buy } else { Side::Sell };
            let before = pos;
            pos.apply_fill(side, price, qty, Qty::ZERO).unwrap();
            let signed = if buy { qty } else { -qty };
            signed_sum += signed;
            // The value that entered or left the books for this fill, split at zero.
            let crosses = !before.qty.is_zero()
                && (before.qty.raw() > 0) != (signed.raw() > 0)
                && signed.abs() > before.qty.abs();
            if crosses {
                cash -= value(kind, -before.qty, price) + value(kind, before.qty + signed, price);
            } else {
                cash -= value(kind, signed, price);
            }
            oracle.fill(signed.to_decimal(), price.to_decimal());
        }
        let mark = Price(mark_cents * 1_000_000);
        // Position equals the signed sum of fills, exactly.
        prop_assert_eq!(pos.qty, signed_sum);
        // Conservation: realised + unrealised = cash flow + mark value (inverse: sign flipped).
        let mark_value = value(kind, pos.qty, mark);
        let total = pos.realized + pos.unrealized(mark);
        if kind.is_inverse() {
            prop_assert_eq!(total, -(cash + mark_value));
        } else {
            prop_assert_eq!(total, cash + mark_value);
        }
        // Oracle: agrees to 1e-10 of the PnL currency (rounding of splits only).
        let tol = Decimal::new(1, 10);
        let real_diff = (pos.realized.to_decimal() - oracle.realized).abs();
        let unreal_diff =
            (pos.unrealized(mark).to_decimal() - oracle.unrealized(mark.to_decimal())).abs();
        prop_assert!(
            real_diff <= tol,
            "realised {} vs oracle {}",
            pos.realized,
            oracle.realized
        );
        prop_assert!(unreal_diff <= tol, "unrealised differs by {}", unreal_diff);
        Ok(())
    }

    proptest! {
        #[test]
        fn prop_linear_matches_oracle_and_conserves_pnl(f in fills(), mark in 1i64..10_000_000) {
            run(ContractKind::Linear { multiplier: Qty::from_units(1) }, &f, mark)?;
        }

        #[test]
        fn prop_spot_matches_oracle_and_conserves_pnl(f in fills(), mark in 1i64..10_000_000) {
            run(ContractKind::Spot, &f, mark)?;
        }

        #[test]
        fn prop_inverse_matches_oracle_and_conserves_pnl(f in fills(), mark in 1i64..10_000_000) {
            run(ContractKind::Inverse { multiplier: Qty::from_units(100) }, &f, mark)?;
        }
    }
}
