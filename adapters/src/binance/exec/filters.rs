//! Exchange filters and rate limits from Binance's `exchangeInfo`, and the local order check
//! that applies them before an order leaves the process.
//!
//! Hot path: [`SymbolFilters::check`] runs on the engine thread for every live order; it is
//! integer arithmetic on `Copy` values and allocates nothing.

use std::time::Duration;

use serde::Deserialize;
use tradeloop_engine::fixed::{Money, Price, Qty};
use tradeloop_engine::order::{OrderKind, OrderRequest};

/// The filters of one symbol that tradeloop enforces. A zero bound is "no bound", as Binance
/// writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolFilters {
    /// `PRICE_FILTER.tickSize`.
    pub tick_size: Price,
    /// `PRICE_FILTER.minPrice`.
    pub min_price: Price,
    /// `PRICE_FILTER.maxPrice`.
    pub max_price: Price,
    /// `LOT_SIZE.stepSize`.
    pub step_size: Qty,
    /// `LOT_SIZE.minQty`.
    pub min_qty: Qty,
    /// `LOT_SIZE.maxQty`.
    pub max_qty: Qty,
    /// `MARKET_LOT_SIZE.maxQty` (market orders).
    pub market_max_qty: Qty,
    /// `NOTIONAL.minNotional` (spot) or `MIN_NOTIONAL.notional` (USD-M).
    pub min_notional: Money,
    /// `NOTIONAL.maxNotional` (spot).
    pub max_notional: Money,
    /// `true` unless `status` is something other than `TRADING`.
    pub trading: bool,
}

/// Why an order breaks an exchange filter. Carries the numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterViolation {
    /// The symbol is not trading (halted, break, delisted).
    #[error("the symbol is not in TRADING status")]
    NotTrading,
    /// Price is not a multiple of the tick size.
    #[error("price {price} is not a multiple of tickSize {tick}")]
    PriceTick {
        /// Order price.
        price: Price,
        /// Tick size.
        tick: Price,
    },
    /// Price outside `[minPrice, maxPrice]`.
    #[error("price {price} outside [{min}, {max}] (0 = unbounded)")]
    PriceRange {
        /// Order price.
        price: Price,
        /// Lower bound.
        min: Price,
        /// Upper bound.
        max: Price,
    },
    /// Quantity is not a multiple of the step size.
    #[error("quantity {qty} is not a multiple of stepSize {step}")]
    QtyStep {
        /// Order quantity.
        qty: Qty,
        /// Step size.
        step: Qty,
    },
    /// Quantity outside `[minQty, maxQty]`.
    #[error("quantity {qty} outside [{min}, {max}] (0 = unbounded)")]
    QtyRange {
        /// Order quantity.
        qty: Qty,
        /// Lower bound.
        min: Qty,
        /// Upper bound.
        max: Qty,
    },
    /// Notional below the minimum.
    #[error("notional {notional} below minNotional {min}")]
    MinNotional {
        /// `price × qty` (reference price for market orders).
        notional: Money,
        /// Minimum.
        min: Money,
    },
    /// Notional above the maximum.
    #[error("notional {notional} above maxNotional {max}")]
    MaxNotional {
        /// `price × qty`.
        notional: Money,
        /// Maximum.
        max: Money,
    },
}

impl SymbolFilters {
    /// No constraint at all (a symbol `exchangeInfo` has not been read for).
    pub const OPEN: Self = Self {
        tick_size: Price::ZERO,
        min_price: Price::ZERO,
        max_price: Price::ZERO,
        step_size: Qty::ZERO,
        min_qty: Qty::ZERO,
        max_qty: Qty::ZERO,
        market_max_qty: Qty::ZERO,
        min_notional: Money::ZERO,
        max_notional: Money::ZERO,
        trading: true,
    };

    /// Checks an order against the filters. For market orders, `request.price` is the
    /// reference price the notional is computed at.
    ///
    /// # Errors
    /// The first [`FilterViolation`] found.
    pub fn check(&self, request: &OrderRequest) -> Result<(), FilterViolation> {
        if !self.trading {
            return Err(FilterViolation::NotTrading);
        }
        let (price, qty) = (request.price, request.qty);
        let priced = request.kind.has_limit();
        for p in [
            priced.then_some(price),
            request.kind.is_stop().then_some(request.trigger),
        ]
        .into_iter()
        .flatten()
        {
            if self.tick_size.raw() > 0 && !p.is_multiple_of(self.tick_size) {
                return Err(FilterViolation::PriceTick {
                    price: p,
                    tick: self.tick_size,
                });
            }
            if p < self.min_price || (self.max_price.raw() > 0 && p > self.max_price) {
                return Err(FilterViolation::PriceRange {
                    price: p,
                    min: self.min_price,
                    max: self.max_price,
                });
            }
        }
        if self.step_size.raw() > 0 && !qty.is_multiple_of(self.step_size) {
            return Err(FilterViolation::QtyStep {
                qty,
                step: self.step_size,
            });
        }
        let max_qty = if request.kind == OrderKind::Market && self.market_max_qty.raw() > 0 {
            self.market_max_qty
        } else {
            self.max_qty
        };
        if qty < self.min_qty || (max_qty.raw() > 0 && qty > max_qty) {
            return Err(FilterViolation::QtyRange {
                qty,
                min: self.min_qty,
                max: max_qty,
            });
        }
        if price.raw() > 0 {
            let notional = Money::notional(price, qty);
            if notional < self.min_notional {
                return Err(FilterViolation::MinNotional {
                    notional,
                    min: self.min_notional,
                });
            }
            if self.max_notional.raw() > 0 && notional > self.max_notional {
                return Err(FilterViolation::MaxNotional {
                    notional,
                    max: self.max_notional,
                });
            }
        }
        Ok(())
    }
}

/// What a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Request weight (`X-MBX-USED-WEIGHT-…`).
    Weight,
    /// Orders placed (`X-MBX-ORDER-COUNT-…`).
    Orders,
}

/// One entry of `exchangeInfo.rateLimits`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// What it counts.
    pub kind: LimitKind,
    /// Window length.
    pub window: Duration,
    /// Most allowed in one window.
    pub limit: u32,
    /// The response header reporting the count, lower case (e.g. `x-mbx-used-weight-1m`).
    pub header: String,
}

/// Symbol filters and rate limits, as read from `exchangeInfo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeInfo {
    /// Filters per symbol (upper-case venue symbol).
    pub symbols: Vec<(String, SymbolFilters)>,
    /// Rate limits.
    pub rate_limits: Vec<RateLimit>,
}

impl ExchangeInfo {
    /// The filters of `symbol` (case-insensitive).
    #[must_use]
    pub fn filters(&self, symbol: &str) -> Option<SymbolFilters> {
        self.symbols
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(symbol))
            .map(|(_, f)| *f)
    }

    /// Parses an `exchangeInfo` body (spot or USD-M).
    ///
    /// # Errors
    /// A description of the first field that is missing or not a decimal.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let raw: RawInfo = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let mut out = Self::default();
        for l in raw.rate_limits {
            let kind = match l.rate_limit_type.as_str() {
                "REQUEST_WEIGHT" => LimitKind::Weight,
                "ORDERS" => LimitKind::Orders,
                _ => continue, // RAW_REQUESTS: counted by IP, no header to read.
            };
            let (unit, letter) = match l.interval.as_str() {
                "SECOND" => (1, 's'),
                "MINUTE" => (60, 'm'),
                "HOUR" => (3600, 'h'),
                "DAY" => (86_400, 'd'),
                other => return Err(format!("rateLimits: unknown interval {other:?}")),
            };
            let prefix = match kind {
                LimitKind::Weight => "x-mbx-used-weight",
                LimitKind::Orders => "x-mbx-order-count",
            };
            out.rate_limits.push(RateLimit {
                kind,
                window: Duration::from_secs(unit * u64::from(l.interval_num)),
                limit: l.limit,
                header: format!("{prefix}-{}{letter}", l.interval_num),
            });
        }
        for s in raw.symbols {
            let mut f = SymbolFilters::OPEN;
            f.trading = s.status == "TRADING";
            for filter in &s.filters {
                let field = |name: &str| -> Result<Option<&str>, String> {
                    match filter.get(name) {
                        None => Ok(None),
                        Some(serde_json::Value::String(v)) => Ok(Some(v.as_str())),
                        Some(other) => Err(format!(
                            "symbol {}: filter field {name} is {other}, not a decimal string",
                            s.symbol
                        )),
                    }
                };
                let price = |name: &str| -> Result<Price, String> {
                    field(name)?.map_or(Ok(Price::ZERO), |v| {
                        Price::parse(v)
                            .map_err(|e| format!("symbol {}: {name}={v:?}: {e}", s.symbol))
                    })
                };
                let qty = |name: &str| -> Result<Qty, String> {
                    field(name)?.map_or(Ok(Qty::ZERO), |v| {
                        Qty::parse(v).map_err(|e| format!("symbol {}: {name}={v:?}: {e}", s.symbol))
                    })
                };
                let money = |name: &str| -> Result<Money, String> {
                    Ok(Money::from_fixed_raw(price(name)?.raw()))
                };
                match filter.get("filterType").and_then(|t| t.as_str()) {
                    Some("PRICE_FILTER") => {
                        f.tick_size = price("tickSize")?;
                        f.min_price = price("minPrice")?;
                        f.max_price = price("maxPrice")?;
                    }
                    Some("LOT_SIZE") => {
                        f.step_size = qty("stepSize")?;
                        f.min_qty = qty("minQty")?;
                        f.max_qty = qty("maxQty")?;
                    }
                    Some("MARKET_LOT_SIZE") => f.market_max_qty = qty("maxQty")?,
                    Some("NOTIONAL") => {
                        f.min_notional = money("minNotional")?;
                        f.max_notional = money("maxNotional")?;
                    }
                    Some("MIN_NOTIONAL") => {
                        // Spot's older form says `minNotional`, USD-M's says `notional`.
                        let v = money("minNotional")?;
                        f.min_notional = if v == Money::ZERO {
                            money("notional")?
                        } else {
                            v
                        };
                    }
                    _ => {}
                }
            }
            out.symbols.push((s.symbol.to_ascii_uppercase(), f));
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    #[serde(default)]
    rate_limits: Vec<RawLimit>,
    symbols: Vec<RawSymbol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLimit {
    rate_limit_type: String,
    interval: String,
    interval_num: u32,
    limit: u32,
}

#[derive(Deserialize)]
struct RawSymbol {
    symbol: String,
    status: String,
    #[serde(default)]
    filters: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_engine::event::Side;
    use tradeloop_engine::instrument::InstrumentIndex;

    /// Shaped like Binance's documented spot `exchangeInfo` (BTCUSDT filters as published).
    const SPOT: &str = r#"{"timezone":"UTC","serverTime":1700000000000,
      "rateLimits":[
        {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000},
        {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100},
        {"rateLimitType":"ORDERS","interval":"DAY","intervalNum":1,"limit":200000},
        {"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":5,"limit":61000}],
      "exchangeFilters":[],
      "symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT",
        "filters":[
          {"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},
          {"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},
          {"filterType":"ICEBERG_PARTS","limit":10},
          {"filterType":"MARKET_LOT_SIZE","minQty":"0.00000000","maxQty":"82.15000000","stepSize":"0.00000000"},
          {"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5}]},
        {"symbol":"ETHBTC","status":"BREAK","filters":[]}]}"#;

    const USDM: &str = r#"{"rateLimits":[
        {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400},
        {"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200},
        {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300}],
      "symbols":[{"symbol":"BTCUSDT","status":"TRADING","filters":[
          {"filterType":"PRICE_FILTER","minPrice":"556.80","maxPrice":"4529764","tickSize":"0.10"},
          {"filterType":"LOT_SIZE","minQty":"0.001","maxQty":"1000","stepSize":"0.001"},
          {"filterType":"MARKET_LOT_SIZE","minQty":"0.001","maxQty":"120","stepSize":"0.001"},
          {"filterType":"MIN_NOTIONAL","notional":"100"}]}]}"#;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }
    fn limit(price: &str, qty: &str) -> OrderRequest {
        OrderRequest::limit(InstrumentIndex(0), Side::Buy, p(price), q(qty))
    }

    #[test]
    fn parses_spot_filters_and_limits() {
        let info = ExchangeInfo::parse(SPOT.as_bytes()).unwrap();
        let f = info.filters("btcusdt").unwrap();
        assert_eq!(f.tick_size, p("0.01"));
        assert_eq!(f.step_size, q("0.00001"));
        assert_eq!(f.max_qty, q("9000"));
        assert_eq!(f.market_max_qty, q("82.15"));
        assert_eq!(f.min_notional, Money::from_fixed_raw(p("5").raw()));
        assert!(f.trading);
        assert!(!info.filters("ETHBTC").unwrap().trading);
        assert_eq!(info.rate_limits.len(), 3, "RAW_REQUESTS has no header");
        assert_eq!(info.rate_limits[0].header, "x-mbx-used-weight-1m");
        assert_eq!(info.rate_limits[1].header, "x-mbx-order-count-10s");
        assert_eq!(info.rate_limits[1].window, Duration::from_secs(10));
        assert_eq!(info.rate_limits[2].header, "x-mbx-order-count-1d");
    }

    #[test]
    fn parses_usdm_min_notional() {
        let info = ExchangeInfo::parse(USDM.as_bytes()).unwrap();
        let f = info.filters("BTCUSDT").unwrap();
        assert_eq!(f.min_notional, Money::from_fixed_raw(p("100").raw()));
        assert_eq!(f.tick_size, p("0.1"));
        assert_eq!(info.rate_limits[1].header, "x-mbx-order-count-1m");
    }

    #[test]
    fn refuses_non_decimal_filter_fields() {
        let bad = SPOT.replace(r#""tickSize":"0.01000000""#, r#""tickSize":0.01"#);
        assert!(ExchangeInfo::parse(bad.as_bytes())
            .unwrap_err()
            .contains("tickSize"));
        let bad = SPOT.replace(r#""stepSize":"0.00001000""#, r#""stepSize":"1e-5""#);
        assert!(ExchangeInfo::parse(bad.as_bytes())
            .unwrap_err()
            .contains("stepSize"));
    }

    #[test]
    fn check_table() {
        let f = ExchangeInfo::parse(SPOT.as_bytes())
            .unwrap()
            .filters("BTCUSDT")
            .unwrap();
        assert_eq!(f.check(&limit("50000.01", "0.001")), Ok(()));
        let cases = [
            (limit("50000.015", "0.001"), "PriceTick"),
            (limit("0.00", "1"), "PriceRange"),
            (limit("2000000", "0.001"), "PriceRange"),
            (limit("50000", "0.000015"), "QtyStep"),
            (limit("50000", "0"), "QtyRange"),
            (limit("1", "9001"), "QtyRange"),
            (limit("100", "0.04"), "MinNotional"),
            (limit("999999", "9000"), "MaxNotional"),
        ];
        for (order, want) in cases {
            let got = f.check(&order).unwrap_err();
            assert!(format!("{got:?}").starts_with(want), "{order:?}: {got:?}");
        }
        let market = OrderRequest::market(InstrumentIndex(0), Side::Sell, p("50000"), q("83"));
        assert!(matches!(
            f.check(&market),
            Err(FilterViolation::QtyRange { .. })
        ));
        let halted = SymbolFilters {
            trading: false,
            ..f
        };
        assert_eq!(
            halted.check(&limit("50000", "0.001")),
            Err(FilterViolation::NotTrading)
        );
        assert_eq!(SymbolFilters::OPEN.check(&limit("1.234567", "0.1")), Ok(()));
    }
}
