//! Exact fixed-point prices, quantities and money. Hot path: parsing and arithmetic here run
//! per event, so nothing in this file allocates.
//!
//! `Price` and `Qty` are `i64` counts of 10⁻⁸ units (Binance's own internal precision: every
//! price and size string it sends has at most eight decimals). Products of a price and a
//! quantity are `Money`, an `i128` count of 10⁻¹⁶ units, so `price × qty` is exact with no
//! rounding at all. Conversions to `rust_decimal::Decimal` are for the edges (config, reports,
//! persistence) and for oracle tests.

use core::fmt;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use rust_decimal::Decimal;

/// Decimal places carried by [`Price`] and [`Qty`].
pub const FIXED_DECIMALS: u32 = 8;
/// `10^FIXED_DECIMALS`: raw units per whole unit of a [`Price`] or [`Qty`].
pub const FIXED_SCALE: i64 = 100_000_000;
/// Decimal places carried by [`Money`] (a price times a quantity, exactly).
pub const MONEY_DECIMALS: u32 = 16;
/// `10^MONEY_DECIMALS`: raw units per whole unit of [`Money`].
pub const MONEY_SCALE: i128 = 10_000_000_000_000_000;

/// Why a decimal string or a `Decimal` could not become a fixed-point number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    /// The input was empty (or only a sign).
    #[error("empty number")]
    Empty,
    /// A byte that is not a digit, a leading sign or one decimal point.
    #[error("invalid character at byte {position}")]
    InvalidChar {
        /// Byte offset of the offending character.
        position: usize,
    },
    /// More than eight significant decimal places (trailing zeros are accepted).
    #[error("more than {FIXED_DECIMALS} significant decimal places")]
    TooPrecise,
    /// The value does not fit in the fixed-point range.
    #[error("value out of range")]
    Overflow,
}

/// Parses an ASCII decimal such as `"61837.63000000"`, `"-0.5"` or `"42"` into raw units of
/// 10⁻⁸. Exact: any digit beyond the eighth decimal place must be zero.
///
/// # Errors
/// [`FixedError`] on empty input, a bad character, excess precision or overflow. Never panics.
#[inline]
pub fn parse_fixed_raw(bytes: &[u8]) -> Result<i64, FixedError> {
    if let Some(v) = parse_fixed_short(bytes) {
        return Ok(v);
    }
    parse_fixed_checked(bytes)
}

/// The common case without overflow checks: an unsigned decimal with at most ten integer and
/// eight fractional digits, which cannot overflow (`9_999_999_999.99999999` is below
/// `i64::MAX / 10⁸`). `None` for anything else, which the checked parser then handles (and
/// produces the error for).
#[inline]
fn parse_fixed_short(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut acc: i64 = 0;
    let mut point = None;
    for (i, &b) in bytes.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d < 10 {
            // Wraps only for 19 digits without a point, which the length checks below refuse.
            acc = acc.wrapping_mul(10).wrapping_add(i64::from(d));
        } else if b == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    let (int_digits, decimals) = match point {
        Some(p) => (p, bytes.len() - p - 1),
        None => (bytes.len(), 0),
    };
    if int_digits > 10
        || decimals > FIXED_DECIMALS as usize
        || bytes.len() == usize::from(point.is_some())
    {
        return None;
    }
    Some(acc * POW10[FIXED_DECIMALS as usize - decimals])
}

#[inline]
fn parse_fixed_checked(bytes: &[u8]) -> Result<i64, FixedError> {
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err(FixedError::Empty);
    }
    let offset = bytes.len() - digits.len();
    // Accumulate as a negative number so that i64::MIN is representable.
    let mut acc: i64 = 0;
    let mut seen_point = false;
    let mut decimals: u32 = 0;
    let mut any_digit = false;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                any_digit = true;
                let d = i64::from(b - b'0');
                if seen_point {
                    if decimals == FIXED_DECIMALS {
                        if d != 0 {
                            return Err(FixedError::TooPrecise);
                        }
                        continue;
                    }
                    decimals += 1;
                }
                acc = acc
                    .checked_mul(10)
                    .and_then(|v| v.checked_sub(d))
                    .ok_or(FixedError::Overflow)?;
            }
            b'.' if !seen_point => seen_point = true,
            _ => {
                return Err(FixedError::InvalidChar {
                    position: offset + i,
                })
            }
        }
    }
    if !any_digit {
        return Err(FixedError::Empty);
    }
    let pow = POW10[(FIXED_DECIMALS - decimals) as usize];
    acc = acc.checked_mul(pow).ok_or(FixedError::Overflow)?;
    if negative {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(FixedError::Overflow)
    }
}

const POW10: [i64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

fn raw_to_decimal(raw: i64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(raw), FIXED_DECIMALS)
}

fn decimal_to_raw(value: Decimal) -> Result<i64, FixedError> {
    let scaled = value
        .checked_mul(Decimal::from(FIXED_SCALE))
        .ok_or(FixedError::Overflow)?;
    if scaled.fract() != Decimal::ZERO {
        return Err(FixedError::TooPrecise);
    }
    let mantissa = scaled.trunc().mantissa() / 10i128.pow(scaled.trunc().scale());
    i64::try_from(mantissa).map_err(|_| FixedError::Overflow)
}

fn fmt_raw(raw: i128, decimals: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let scale = 10i128.pow(decimals);
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    let int = abs / scale as u128;
    let mut frac = abs % scale as u128;
    if frac == 0 {
        return write!(f, "{sign}{int}");
    }
    let mut width = decimals as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    write!(f, "{sign}{int}.{frac:0width$}")
}

macro_rules! fixed_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// The largest representable value.
            pub const MAX: Self = Self(i64::MAX);

            /// From raw units of 10⁻⁸.
            #[inline]
            #[must_use]
            pub const fn from_raw(raw: i64) -> Self {
                Self(raw)
            }

            /// Raw units of 10⁻⁸.
            #[inline]
            #[must_use]
            pub const fn raw(self) -> i64 {
                self.0
            }

            /// From a whole number of units.
            ///
            /// # Panics
            /// If `units` is outside the representable range (a programming error in constants).
            #[must_use]
            pub const fn from_units(units: i64) -> Self {
                match units.checked_mul(FIXED_SCALE) {
                    Some(raw) => Self(raw),
                    None => panic!("fixed-point value out of range"),
                }
            }

            /// Parses an exact decimal string as sent by a venue (see [`parse_fixed_raw`]).
            ///
            /// # Errors
            /// [`FixedError`] on malformed, over-precise or out-of-range input.
            #[inline]
            pub fn parse(s: &str) -> Result<Self, FixedError> {
                parse_fixed_raw(s.as_bytes()).map(Self)
            }

            /// Parses raw ASCII bytes (see [`parse_fixed_raw`]).
            ///
            /// # Errors
            /// [`FixedError`] on malformed, over-precise or out-of-range input.
            #[inline]
            pub fn parse_bytes(s: &[u8]) -> Result<Self, FixedError> {
                parse_fixed_raw(s).map(Self)
            }

            /// Exact conversion to `Decimal`.
            #[must_use]
            pub fn to_decimal(self) -> Decimal {
                raw_to_decimal(self.0)
            }

            /// Exact conversion from `Decimal`.
            ///
            /// # Errors
            /// [`FixedError::TooPrecise`] if it has more than eight significant decimals,
            /// [`FixedError::Overflow`] if it is out of range.
            pub fn from_decimal(value: Decimal) -> Result<Self, FixedError> {
                decimal_to_raw(value).map(Self)
            }

            /// `true` if the value is a whole multiple of `step` (a tick or lot size).
            #[inline]
            #[must_use]
            pub const fn is_multiple_of(self, step: Self) -> bool {
                step.0 > 0 && self.0 % step.0 == 0
            }

            /// Checked addition.
            #[inline]
            #[must_use]
            pub const fn checked_add(self, rhs: Self) -> Option<Self> {
                match self.0.checked_add(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Checked subtraction.
            #[inline]
            #[must_use]
            pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
                match self.0.checked_sub(rhs.0) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Absolute value (saturating at `MAX`).
            #[inline]
            #[must_use]
            pub const fn abs(self) -> Self {
                Self(self.0.saturating_abs())
            }

            /// `true` if zero.
            #[inline]
            #[must_use]
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_raw(i128::from(self.0), FIXED_DECIMALS, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl core::str::FromStr for $name {
            type Err = FixedError;
            fn from_str(s: &str) -> Result<Self, FixedError> {
                Self::parse(s)
            }
        }

        impl Add for $name {
            type Output = Self;
            /// # Panics
            /// On overflow in debug builds (wraps in release); use `checked_add` on untrusted input.
            #[inline]
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }
        impl Sub for $name {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }
        impl AddAssign for $name {
            #[inline]
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }
        impl SubAssign for $name {
            #[inline]
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }
        impl Neg for $name {
            type Output = Self;
            #[inline]
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            /// Accepts a decimal string (`"0.01"`) or an integer; floats are refused because
            /// they cannot carry an exact decimal.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an exact decimal string such as \"0.01\", or an integer")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::parse(v).map_err(|e| E::custom(format_args!("{v:?}: {e}")))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        v.checked_mul(FIXED_SCALE)
                            .map($name)
                            .ok_or_else(|| E::custom("value out of range"))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        i64::try_from(v)
                            .ok()
                            .and_then(|v| v.checked_mul(FIXED_SCALE))
                            .map($name)
                            .ok_or_else(|| E::custom("value out of range"))
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$name, E> {
                        Err(E::custom(format_args!(
                            "{v} is a float; write it as a string, e.g. \"{v}\", so it stays exact"
                        )))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

fixed_type!(
    /// An exact price in units of 10⁻⁸ of the quote currency (or of the contract's price unit).
    Price
);
fixed_type!(
    /// An exact signed quantity in units of 10⁻⁸ (base units for spot and linear contracts,
    /// contracts for inverse ones). Positive = buy/long, negative = sell/short where signed.
    Qty
);

/// An exact amount of money (notional, cost basis, PnL, fees) in units of 10⁻¹⁶, wide enough
/// that `Price × Qty` never rounds and never overflows.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Money(pub i128);

impl Money {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// Exact product of a price and a quantity.
    #[inline]
    #[must_use]
    pub const fn notional(price: Price, qty: Qty) -> Self {
        Self(price.0 as i128 * qty.0 as i128)
    }

    /// A fixed-point amount of 10⁻⁸ units (a fee, a balance) widened exactly.
    #[inline]
    #[must_use]
    pub const fn from_fixed_raw(raw: i64) -> Self {
        Self(raw as i128 * (MONEY_SCALE / FIXED_SCALE as i128))
    }

    /// Raw units of 10⁻¹⁶.
    #[inline]
    #[must_use]
    pub const fn raw(self) -> i128 {
        self.0
    }

    /// Absolute value.
    #[inline]
    #[must_use]
    pub const fn abs(self) -> Self {
        Self(self.0.abs())
    }

    /// Exact conversion to `Decimal` (which holds 28 digits; values beyond ±7.9·10¹² whole
    /// units lose their lowest decimals, far outside any realistic account).
    #[must_use]
    pub fn to_decimal(self) -> Decimal {
        Decimal::try_from_i128_with_scale(self.0, MONEY_DECIMALS).unwrap_or_else(|_| {
            // Too many digits for a 96-bit mantissa: drop precision, keep magnitude.
            let int = self.0 / MONEY_SCALE;
            let frac = (self.0 % MONEY_SCALE) / 10i128.pow(8);
            Decimal::from_i128_with_scale(int, 0) + Decimal::from_i128_with_scale(frac, 8)
        })
    }

    /// Exact conversion from `Decimal`.
    ///
    /// # Errors
    /// [`FixedError::TooPrecise`] beyond 16 decimals, [`FixedError::Overflow`] out of range.
    pub fn from_decimal(value: Decimal) -> Result<Self, FixedError> {
        if value.scale() > MONEY_DECIMALS {
            let normalized = value.normalize();
            if normalized.scale() > MONEY_DECIMALS {
                return Err(FixedError::TooPrecise);
            }
            return Self::from_decimal(normalized);
        }
        let factor = 10i128.pow(MONEY_DECIMALS - value.scale());
        value
            .mantissa()
            .checked_mul(factor)
            .map(Self)
            .ok_or(FixedError::Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_raw(self.0, MONEY_DECIMALS, f)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl Add for Money {
    type Output = Self;
    #[inline]
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}
impl Sub for Money {
    type Output = Self;
    #[inline]
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}
impl AddAssign for Money {
    #[inline]
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}
impl SubAssign for Money {
    #[inline]
    fn sub_assign(&mut self, rhs: Self) {
        self.0 -= rhs.0;
    }
}
impl Neg for Money {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        Self(-self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::str::FromStr;

    #[test]
    fn parse_table() {
        let cases: &[(&str, &str, Result<i64, FixedError>)] = &[
            ("TC0", "61837.63000000", Ok(6_183_763_000_000)),
            ("TC1", "0.00000000", Ok(0)),
            ("TC2", "0.00000001", Ok(1)),
            ("TC3", "-0.5", Ok(-50_000_000)),
            ("TC4", "42", Ok(4_200_000_000)),
            ("TC5", "42.", Ok(4_200_000_000)),
            ("TC6", ".5", Ok(50_000_000)),
            ("TC7", "+1.25", Ok(125_000_000)),
            ("TC8", "1.000000001", Err(FixedError::TooPrecise)),
            ("TC9", "1.0000000000000", Ok(100_000_000)),
            ("TC10", "", Err(FixedError::Empty)),
            ("TC11", "-", Err(FixedError::Empty)),
            ("TC12", ".", Err(FixedError::Empty)),
            (
                "TC13",
                "1.2.3",
                Err(FixedError::InvalidChar { position: 3 }),
            ),
            ("TC14", "1e5", Err(FixedError::InvalidChar { position: 1 })),
            ("TC15", " 1", Err(FixedError::InvalidChar { position: 0 })),
            ("TC16", "92233720368.54775807", Ok(i64::MAX)),
            ("TC17", "92233720368.54775808", Err(FixedError::Overflow)),
            ("TC18", "-92233720368.54775808", Ok(i64::MIN)),
            ("TC19", "99999999999999999999999", Err(FixedError::Overflow)),
            ("TC20", "NaN", Err(FixedError::InvalidChar { position: 0 })),
        ];
        for (label, input, want) in cases {
            assert_eq!(
                parse_fixed_raw(input.as_bytes()),
                *want,
                "{label}: {input:?}"
            );
        }
    }

    #[test]
    fn display_table() {
        let cases = [
            ("TC0", "61837.63", 6_183_763_000_000i64),
            ("TC1", "0", 0),
            ("TC2", "0.00000001", 1),
            ("TC3", "-0.5", -50_000_000),
            ("TC4", "-92233720368.54775808", i64::MIN),
        ];
        for (label, want, raw) in cases {
            assert_eq!(Price(raw).to_string(), want, "{label}");
        }
    }

    #[test]
    fn money_notional_is_exact() {
        let p = Price::parse("61837.63").unwrap();
        let q = Qty::parse("0.00012345").unwrap();
        let m = Money::notional(p, q);
        assert_eq!(m.to_decimal(), Decimal::from_str("7.6338554235").unwrap());
        assert_eq!(m.to_string(), "7.6338554235");
    }

    #[test]
    fn decimal_round_trip_rejects_excess_precision() {
        assert_eq!(
            Price::from_decimal(Decimal::from_str("0.000000001").unwrap()),
            Err(FixedError::TooPrecise)
        );
        assert_eq!(
            Price::from_decimal(Decimal::from_str("1e12").unwrap()),
            Err(FixedError::Overflow)
        );
        assert_eq!(
            Qty::from_decimal(Decimal::from_str("1.50").unwrap()),
            Ok(Qty(150_000_000))
        );
    }

    #[test]
    fn serde_refuses_floats() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code, reason = "only the error matters")]
            p: Price,
        }
        let err = serde_json::from_str::<T>(r#"{"p": 0.1}"#).unwrap_err();
        assert!(err.to_string().contains("float"), "{err}");
        let ok: T = serde_json::from_str(r#"{"p": "0.1"}"#).unwrap();
        assert_eq!(ok.p, Price(10_000_000));
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use core::str::FromStr;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_parse_format_round_trip(raw in any::<i64>()) {
            let s = Price(raw).to_string();
            prop_assert_eq!(Price::parse(&s), Ok(Price(raw)));
            let d = Decimal::from_str(&s).unwrap();
            prop_assert_eq!(Price(raw).to_decimal(), d);
            prop_assert_eq!(Price::from_decimal(d), Ok(Price(raw)));
        }

        #[test]
        fn prop_parse_matches_decimal_oracle(int in 0u64..10_000_000_000, frac in 0u32..100_000_000, width in 1usize..9) {
            let frac_s = format!("{frac:08}");
            let s = format!("{int}.{}", &frac_s[..width]);
            let want = Decimal::from_str(&s).unwrap();
            let got = Qty::parse(&s).unwrap();
            prop_assert_eq!(got.to_decimal(), want);
        }

        #[test]
        fn prop_notional_matches_decimal(p in -1_000_000_000_000i64..1_000_000_000_000, q in -1_000_000_000_000i64..1_000_000_000_000) {
            let m = Money::notional(Price(p), Qty(q));
            let want = Price(p).to_decimal() * Qty(q).to_decimal();
            prop_assert_eq!(m.to_decimal(), want);
            prop_assert_eq!(Money::from_decimal(want), Ok(m));
        }

        #[test]
        fn prop_short_parse_agrees_with_checked(text in "[0-9.]{0,20}|-?[0-9]{0,12}\\.?[0-9]{0,10}") {
            if let Some(v) = parse_fixed_short(text.as_bytes()) {
                prop_assert_eq!(Ok(v), parse_fixed_checked(text.as_bytes()), "{}", text);
            }
            prop_assert_eq!(parse_fixed_raw(text.as_bytes()), parse_fixed_checked(text.as_bytes()));
        }

        #[test]
        fn prop_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_fixed_raw(&bytes);
        }
    }
}
