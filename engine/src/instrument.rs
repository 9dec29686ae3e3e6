//! Instruments interned to small integer ids at start-up. Built once (allocates), then read-only
//! on the hot path through [`InstrumentIndex`].

use core::fmt;

use crate::fixed::{Money, Price, Qty, FIXED_SCALE};

/// Upper bound on the number of instruments one engine trades. Keeps every per-instrument table
/// a fixed-size array and lets the stale-book bitmap fit in a few words.
pub const MAX_INSTRUMENTS: usize = 256;

/// Dense index of an interned instrument (0..count).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct InstrumentIndex(pub u16);

impl InstrumentIndex {
    /// The index as a table offset.
    #[inline]
    #[must_use]
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for InstrumentIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a contract's profit and loss is computed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, tag = "kind")]
pub enum ContractKind {
    /// Spot: quantity in base units, PnL in quote currency.
    Spot,
    /// Linear (USD-margined) contract: `multiplier` base units per contract quantity unit,
    /// PnL in quote currency.
    Linear {
        /// Base units represented by one unit of quantity (1 for Binance USD-M).
        multiplier: Qty,
    },
    /// Inverse (coin-margined) contract: each contract is worth `multiplier` quote units,
    /// PnL in base currency, `qty × multiplier × (1/entry − 1/exit)`.
    Inverse {
        /// Quote units per contract (e.g. 100 for Binance COIN-M BTCUSD, 1 for BitMEX XBTUSD).
        multiplier: Qty,
    },
}

impl ContractKind {
    /// The contract multiplier (1 for spot).
    #[must_use]
    pub const fn multiplier(self) -> Qty {
        match self {
            Self::Spot => Qty::from_units(1),
            Self::Linear { multiplier } | Self::Inverse { multiplier } => multiplier,
        }
    }

    /// `true` for inverse contracts.
    #[must_use]
    pub const fn is_inverse(self) -> bool {
        matches!(self, Self::Inverse { .. })
    }

    /// The value of a signed quantity at a price, in the contract's PnL currency: spot
    /// `price × qty`, linear `price × qty × multiplier` (quote), inverse
    /// `qty × multiplier / price` (base). `price` must be positive for an inverse contract.
    #[inline]
    #[must_use]
    pub fn value(self, qty: Qty, price: Price) -> Money {
        let q = i128::from(qty.raw());
        let m = i128::from(self.multiplier().raw());
        let p = i128::from(price.raw());
        let scale = i128::from(FIXED_SCALE);
        match self {
            Self::Spot => Money(p * q),
            Self::Linear { .. } => {
                let pq = p * q;
                if m == scale {
                    Money(pq)
                } else {
                    Money(
                        pq.checked_mul(m)
                            .map_or_else(|| pq / scale * m, |v| v / scale),
                    )
                }
            }
            // qty × mult / price at 1e-16 = q·m·1e8 / p (raw units).
            Self::Inverse { .. } => Money(q * m * scale / p.max(1)),
        }
    }
}

/// Static description of one tradable instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// Dense id assigned at interning.
    pub index: InstrumentIndex,
    /// Venue name as configured, e.g. `binance`.
    pub venue: String,
    /// Venue symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Minimum price increment.
    pub tick_size: Price,
    /// Minimum quantity increment.
    pub lot_size: Qty,
    /// How PnL is computed.
    pub kind: ContractKind,
}

/// Why an instrument could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    /// The same venue and symbol twice.
    #[error("instrument {venue}:{symbol} is defined twice")]
    Duplicate {
        /// Venue name.
        venue: String,
        /// Symbol.
        symbol: String,
    },
    /// More than [`MAX_INSTRUMENTS`].
    #[error("more than {MAX_INSTRUMENTS} instruments")]
    TooMany,
    /// A tick, lot or multiplier that is not positive.
    #[error("instrument {symbol}: {field} must be positive, got {value}")]
    NotPositive {
        /// Symbol.
        symbol: String,
        /// Field name.
        field: &'static str,
        /// Offending value as text.
        value: String,
    },
}

/// The interned set of instruments, fixed after start-up.
#[derive(Clone, Debug, Default)]
pub struct InstrumentRegistry {
    instruments: Vec<Instrument>,
}

impl InstrumentRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns an instrument and returns its index.
    ///
    /// # Errors
    /// [`InstrumentError`] on a duplicate, a non-positive step, or too many instruments.
    pub fn add(
        &mut self,
        venue: &str,
        symbol: &str,
        tick_size: Price,
        lot_size: Qty,
        kind: ContractKind,
    ) -> Result<InstrumentIndex, InstrumentError> {
        if self.find(venue, symbol).is_some() {
            return Err(InstrumentError::Duplicate {
                venue: venue.to_owned(),
                symbol: symbol.to_owned(),
            });
        }
        if self.instruments.len() >= MAX_INSTRUMENTS {
            return Err(InstrumentError::TooMany);
        }
        let positive = |field: &'static str, raw: i64| {
            if raw > 0 {
                Ok(())
            } else {
                Err(InstrumentError::NotPositive {
                    symbol: symbol.to_owned(),
                    field,
                    value: Price(raw).to_string(),
                })
            }
        };
        positive("tick_size", tick_size.raw())?;
        positive("lot_size", lot_size.raw())?;
        positive("multiplier", kind.multiplier().raw())?;
        let index = InstrumentIndex(
            u16::try_from(self.instruments.len()).expect("bounded by MAX_INSTRUMENTS"),
        );
        self.instruments.push(Instrument {
            index,
            venue: venue.to_owned(),
            symbol: symbol.to_owned(),
            tick_size,
            lot_size,
            kind,
        });
        Ok(index)
    }

    /// Replaces an instrument's tick and lot size with the venue's (a live venue's filters
    /// win over the configuration). Start-up only.
    ///
    /// # Errors
    /// [`InstrumentError::NotPositive`] if either is not positive; nothing changes then.
    pub fn set_increments(
        &mut self,
        index: InstrumentIndex,
        tick_size: Price,
        lot_size: Qty,
    ) -> Result<(), InstrumentError> {
        let Some(i) = self.instruments.get_mut(index.get()) else {
            return Ok(());
        };
        for (field, raw) in [("tick_size", tick_size.raw()), ("lot_size", lot_size.raw())] {
            if raw <= 0 {
                return Err(InstrumentError::NotPositive {
                    symbol: i.symbol.clone(),
                    field,
                    value: Price(raw).to_string(),
                });
            }
        }
        i.tick_size = tick_size;
        i.lot_size = lot_size;
        Ok(())
    }

    /// Looks up an instrument by venue and symbol (start-up and adapters, not the hot path).
    #[must_use]
    pub fn find(&self, venue: &str, symbol: &str) -> Option<InstrumentIndex> {
        self.instruments
            .iter()
            .find(|i| i.venue == venue && i.symbol.eq_ignore_ascii_case(symbol))
            .map(|i| i.index)
    }

    /// The first instrument with this symbol, on any venue (exact match first, then ignoring
    /// ASCII case). Start-up only: a strategy looks its instruments up once and keeps the
    /// [`InstrumentIndex`].
    ///
    /// ```
    /// use tradeloop_engine::fixed::{Price, Qty};
    /// use tradeloop_engine::instrument::{ContractKind, InstrumentRegistry};
    ///
    /// let mut r = InstrumentRegistry::new();
    /// let tick = Price::parse("0.1").unwrap();
    /// let lot = Qty::parse("0.001").unwrap();
    /// r.add("binance-usdm", "BTCUSDT", tick, lot, ContractKind::Spot).unwrap();
    /// let btc = r.by_symbol("btcusdt").expect("registered");
    /// assert_eq!((btc.venue.as_str(), btc.tick_size), ("binance-usdm", tick));
    /// assert!(r.by_symbol("ETHUSDT").is_none());
    /// ```
    #[must_use]
    pub fn by_symbol(&self, symbol: &str) -> Option<&Instrument> {
        self.instruments
            .iter()
            .find(|i| i.symbol == symbol)
            .or_else(|| {
                self.instruments
                    .iter()
                    .find(|i| i.symbol.eq_ignore_ascii_case(symbol))
            })
    }

    /// The instrument at `index`.
    ///
    /// # Panics
    /// If `index` was not issued by this registry (a programming error).
    #[must_use]
    pub fn get(&self, index: InstrumentIndex) -> &Instrument {
        &self.instruments[index.get()]
    }

    /// Number of instruments.
    #[must_use]
    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    /// `true` if no instrument is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    /// All instruments in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.instruments.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_increments_replace_the_configured_ones_when_positive() {
        let mut r = InstrumentRegistry::new();
        let (tick, lot) = (Price::parse("0.01").unwrap(), Qty::parse("0.0001").unwrap());
        let i = r
            .add("binance", "ETHUSDT", tick, lot, ContractKind::Spot)
            .unwrap();
        let venue_lot = Qty::parse("0.00001").unwrap();
        r.set_increments(i, tick, venue_lot).unwrap();
        assert_eq!((r.get(i).tick_size, r.get(i).lot_size), (tick, venue_lot));
        assert!(r.set_increments(i, Price::ZERO, lot).is_err());
        assert_eq!(
            r.get(i).lot_size,
            venue_lot,
            "a refused change leaves it as it was"
        );
    }

    #[test]
    fn interning_assigns_dense_ids_and_rejects_bad_input() {
        let mut r = InstrumentRegistry::new();
        let tick = Price::parse("0.01").unwrap();
        let lot = Qty::parse("0.00001").unwrap();
        let a = r
            .add("binance", "BTCUSDT", tick, lot, ContractKind::Spot)
            .unwrap();
        let b = r
            .add(
                "binance",
                "ETHUSDT",
                tick,
                lot,
                ContractKind::Linear {
                    multiplier: Qty::from_units(1),
                },
            )
            .unwrap();
        assert_eq!((a, b), (InstrumentIndex(0), InstrumentIndex(1)), "TC0");
        assert_eq!(
            r.find("binance", "btcusdt"),
            Some(a),
            "TC1 case-insensitive symbol"
        );
        assert_eq!(r.find("bybit", "BTCUSDT"), None, "TC2 venue matters");
        assert!(
            matches!(
                r.add("binance", "BTCUSDT", tick, lot, ContractKind::Spot),
                Err(InstrumentError::Duplicate { .. })
            ),
            "TC3"
        );
        assert!(
            matches!(
                r.add("binance", "X", Price::ZERO, lot, ContractKind::Spot),
                Err(InstrumentError::NotPositive {
                    field: "tick_size",
                    ..
                })
            ),
            "TC4"
        );
        assert!(
            matches!(
                r.add(
                    "binance",
                    "Y",
                    tick,
                    lot,
                    ContractKind::Inverse {
                        multiplier: Qty::ZERO
                    }
                ),
                Err(InstrumentError::NotPositive {
                    field: "multiplier",
                    ..
                })
            ),
            "TC5"
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn registry_caps_instrument_count() {
        let mut r = InstrumentRegistry::new();
        let tick = Price::from_units(1);
        let lot = Qty::from_units(1);
        for i in 0..MAX_INSTRUMENTS {
            r.add("sim", &format!("S{i}"), tick, lot, ContractKind::Spot)
                .unwrap();
        }
        assert_eq!(
            r.add("sim", "ONE_MORE", tick, lot, ContractKind::Spot),
            Err(InstrumentError::TooMany)
        );
    }
}
