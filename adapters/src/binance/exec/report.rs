//! The user data stream's order events, spot `executionReport` and USD-M
//! `ORDER_TRADE_UPDATE`, decoded into one [`ExecReport`]; and the REST order objects
//! (`GET order`, `GET openOrders`) into the same shape.

use serde::Deserialize;
use tradeloop_engine::fixed::{Money, Price, Qty};

/// An order's status at the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VenueStatus {
    /// `NEW` (also `PENDING_NEW`).
    New,
    /// `PARTIALLY_FILLED`.
    PartiallyFilled,
    /// `FILLED`.
    Filled,
    /// `CANCELED` (also `PENDING_CANCEL`, `EXPIRED_IN_MATCH`).
    Canceled,
    /// `REJECTED`.
    Rejected,
    /// `EXPIRED` (IOC/FOK remainder, or the venue expired it).
    Expired,
}

impl VenueStatus {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NEW" | "PENDING_NEW" => Self::New,
            "PARTIALLY_FILLED" => Self::PartiallyFilled,
            "FILLED" => Self::Filled,
            "CANCELED" | "PENDING_CANCEL" | "EXPIRED_IN_MATCH" => Self::Canceled,
            "REJECTED" => Self::Rejected,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }

    /// `true` once the order can no longer fill.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Canceled | Self::Rejected | Self::Expired
        )
    }
}

/// One order event, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecReport {
    /// Venue symbol.
    pub symbol: String,
    /// The order's own client id (for a spot cancel, the original id, not the cancel's).
    pub client_order_id: String,
    /// Venue order id.
    pub order_id: i64,
    /// Status after this event.
    pub status: VenueStatus,
    /// `true` if this event is an execution (`x == TRADE`).
    pub is_trade: bool,
    /// `true` if this event is a USD-M modify (`x == AMENDMENT`): the order now works on
    /// [`price`](Self::price) and [`orig_qty`](Self::orig_qty).
    pub is_amendment: bool,
    /// The order's limit price as the venue holds it now (zero where the report has none).
    pub price: Price,
    /// The order's total quantity as the venue holds it now (zero where the report has none).
    pub orig_qty: Qty,
    /// Venue trade id of this execution (-1 if none).
    pub trade_id: i64,
    /// Quantity of this execution.
    pub last_qty: Qty,
    /// Price of this execution.
    pub last_price: Price,
    /// Cumulative filled quantity.
    pub cum_qty: Qty,
    /// Cumulative quote quantity (spot `Z`; USD-M: average price × cumulative quantity).
    pub cum_quote: Money,
    /// Commission of this execution, in its asset's units.
    pub commission: Qty,
    /// `true` if this execution was a maker fill.
    pub maker: bool,
    /// Event time, ms since the Unix epoch.
    pub event_ms: i64,
    /// Binance's reject reason (`r`), `NONE` if none.
    pub reject_reason: String,
}

/// One user data stream message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserEvent {
    /// An order event.
    Order(ExecReport),
    /// The listen key expired: the stream is dead and must be re-created.
    ListenKeyExpired,
    /// Balances or positions changed (`outboundAccountPosition`, `balanceUpdate`,
    /// `ACCOUNT_UPDATE`); reconciliation reads them over REST.
    Account,
    /// A message this client does not use (counted).
    Other,
}

/// Why a user-stream message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("user data stream: {0}")]
pub struct ReportError(pub String);

fn fixed<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, ReportError> {
    v.parse()
        .map_err(|_| ReportError(format!("{field}={v:?} is not a decimal")))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
}

#[derive(Deserialize)]
struct SpotReport<'a> {
    #[serde(rename = "E")]
    event_ms: i64,
    s: String,
    c: String,
    #[serde(rename = "C", default)]
    orig: String,
    x: &'a str,
    #[serde(rename = "X")]
    status: &'a str,
    q: &'a str,
    p: &'a str,
    r: String,
    i: i64,
    l: &'a str,
    z: &'a str,
    #[serde(rename = "L")]
    last_price: &'a str,
    n: &'a str,
    t: i64,
    m: bool,
    #[serde(rename = "Z")]
    cum_quote: &'a str,
}

#[derive(Deserialize)]
struct FuturesEnvelope<'a> {
    #[serde(rename = "E")]
    event_ms: i64,
    #[serde(borrow)]
    o: FuturesOrder<'a>,
}

#[derive(Deserialize)]
struct FuturesOrder<'a> {
    s: String,
    c: String,
    q: &'a str,
    p: &'a str,
    x: &'a str,
    #[serde(rename = "X")]
    status: &'a str,
    i: i64,
    l: &'a str,
    z: &'a str,
    #[serde(rename = "L")]
    last_price: &'a str,
    ap: &'a str,
    #[serde(default)]
    n: Option<&'a str>,
    t: i64,
    m: bool,
}

/// Decodes one user data stream text message (raw or `/stream` combined form).
///
/// # Errors
/// [`ReportError`] if the message is not JSON or an order event lacks a documented field.
pub fn parse_user_event(text: &str) -> Result<UserEvent, ReportError> {
    let value: &serde_json::value::RawValue =
        serde_json::from_str(text).map_err(|e| ReportError(e.to_string()))?;
    // The combined-stream form wraps the event in {"stream":…, "data":{…}}.
    #[derive(Deserialize)]
    struct Combined<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let raw =
        serde_json::from_str::<Combined<'_>>(value.get()).map_or(value.get(), |c| c.data.get());
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(raw) else {
        return Ok(UserEvent::Other);
    };
    match env.event {
        "executionReport" => {
            let r: SpotReport<'_> = serde_json::from_str(raw)
                .map_err(|e| ReportError(format!("executionReport: {e}")))?;
            let status = VenueStatus::parse(r.status)
                .ok_or_else(|| ReportError(format!("unknown order status {:?}", r.status)))?;
            // A cancel's `c` is the cancel request's id; the order's own id is `C`.
            let client_order_id = if r.orig.is_empty() { r.c } else { r.orig };
            Ok(UserEvent::Order(ExecReport {
                symbol: r.s,
                client_order_id,
                order_id: r.i,
                status,
                is_trade: r.x == "TRADE",
                is_amendment: false,
                price: fixed("p", r.p)?,
                orig_qty: fixed("q", r.q)?,
                trade_id: r.t,
                last_qty: fixed("l", r.l)?,
                last_price: fixed("L", r.last_price)?,
                cum_qty: fixed("z", r.z)?,
                cum_quote: Money::from_fixed_raw(fixed::<Price>("Z", r.cum_quote)?.raw()),
                commission: fixed("n", r.n)?,
                maker: r.m,
                event_ms: r.event_ms,
                reject_reason: r.r,
            }))
        }
        "ORDER_TRADE_UPDATE" => {
            let f: FuturesEnvelope<'_> = serde_json::from_str(raw)
                .map_err(|e| ReportError(format!("ORDER_TRADE_UPDATE: {e}")))?;
            let o = f.o;
            let status = VenueStatus::parse(o.status)
                .ok_or_else(|| ReportError(format!("unknown order status {:?}", o.status)))?;
            let cum_qty: Qty = fixed("z", o.z)?;
            let avg: Price = fixed("ap", o.ap)?;
            Ok(UserEvent::Order(ExecReport {
                symbol: o.s,
                client_order_id: o.c,
                order_id: o.i,
                status,
                is_trade: o.x == "TRADE",
                is_amendment: o.x == "AMENDMENT",
                price: fixed("p", o.p)?,
                orig_qty: fixed("q", o.q)?,
                trade_id: o.t,
                last_qty: fixed("l", o.l)?,
                last_price: fixed("L", o.last_price)?,
                cum_qty,
                cum_quote: Money::notional(avg, cum_qty),
                commission: o.n.map_or(Ok(Qty::ZERO), |n| fixed("n", n))?,
                maker: o.m,
                event_ms: f.event_ms,
                reject_reason: String::from("NONE"),
            }))
        }
        "listenKeyExpired" => Ok(UserEvent::ListenKeyExpired),
        "outboundAccountPosition" | "balanceUpdate" | "ACCOUNT_UPDATE" => Ok(UserEvent::Account),
        _ => Ok(UserEvent::Other),
    }
}

/// An order as `GET order` / `GET openOrders` return it (spot and USD-M share these fields).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestOrder {
    /// Symbol.
    pub symbol: String,
    /// Venue order id.
    pub order_id: i64,
    /// Client order id.
    pub client_order_id: String,
    /// Original quantity (after a modify: the quantity it was modified to).
    pub orig_qty: String,
    /// Limit price (zero for a market order).
    #[serde(default)]
    pub price: Option<String>,
    /// Filled quantity.
    pub executed_qty: String,
    /// Spot: cumulative quote quantity.
    #[serde(default)]
    pub cummulative_quote_qty: Option<String>,
    /// USD-M: average price.
    #[serde(default)]
    pub avg_price: Option<String>,
    /// Status.
    pub status: String,
}

impl RestOrder {
    /// The order as an [`ExecReport`] (no execution in it; cumulative figures only).
    ///
    /// # Errors
    /// [`ReportError`] if a field is not a decimal or the status is unknown.
    pub fn to_report(&self) -> Result<ExecReport, ReportError> {
        let status = VenueStatus::parse(&self.status)
            .ok_or_else(|| ReportError(format!("unknown order status {:?}", self.status)))?;
        let cum_qty: Qty = fixed("executedQty", &self.executed_qty)?;
        let cum_quote = match (&self.cummulative_quote_qty, &self.avg_price) {
            (Some(q), _) => Money::from_fixed_raw(fixed::<Price>("cummulativeQuoteQty", q)?.raw()),
            (None, Some(avg)) => Money::notional(fixed("avgPrice", avg)?, cum_qty),
            (None, None) => Money::ZERO,
        };
        Ok(ExecReport {
            symbol: self.symbol.clone(),
            client_order_id: self.client_order_id.clone(),
            order_id: self.order_id,
            status,
            is_trade: false,
            is_amendment: false,
            price: self
                .price
                .as_deref()
                .map_or(Ok(Price::ZERO), |p| fixed("price", p))?,
            orig_qty: fixed("origQty", &self.orig_qty)?,
            trade_id: -1,
            last_qty: Qty::ZERO,
            last_price: Price::ZERO,
            cum_qty,
            cum_quote,
            commission: Qty::ZERO,
            maker: false,
            event_ms: 0,
            reject_reason: String::from("NONE"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's documented `executionReport` payload (spot user data stream docs).
    pub(crate) const SPOT_DOC: &str = r#"{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW","r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1499405658657,"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}"#;

    /// Binance's documented `ORDER_TRADE_UPDATE` payload (USD-M user data stream docs).
    const USDM_DOC: &str = r#"{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT","c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0","sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0","T":1568879465650,"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0}}"#;

    #[test]
    fn decodes_documented_spot_report() {
        let UserEvent::Order(r) = parse_user_event(SPOT_DOC).unwrap() else {
            panic!("not an order event")
        };
        assert_eq!(r.symbol, "ETHBTC");
        assert_eq!(r.client_order_id, "mUvoqJxFIILMdfAW5iGSOW");
        assert_eq!(r.order_id, 4_293_153);
        assert_eq!(r.status, VenueStatus::New);
        assert!(!r.is_trade);
        assert_eq!(r.cum_qty, Qty::ZERO);
    }

    #[test]
    fn decodes_a_usdm_amendment_with_its_new_terms() {
        let amend = USDM_DOC
            .replace(r#""x":"NEW","X":"NEW""#, r#""x":"AMENDMENT","X":"NEW""#)
            .replace(r#""q":"0.001","p":"0""#, r#""q":"0.002","p":"7100.1""#);
        let UserEvent::Order(r) = parse_user_event(&amend).unwrap() else {
            panic!()
        };
        assert!(r.is_amendment && !r.is_trade);
        assert_eq!(r.price, "7100.1".parse().unwrap());
        assert_eq!(r.orig_qty, "0.002".parse().unwrap());
        let UserEvent::Order(new) = parse_user_event(USDM_DOC).unwrap() else {
            panic!()
        };
        assert!(!new.is_amendment);
        let bad = amend.replace(r#""p":"7100.1""#, r#""p":"x""#);
        assert!(parse_user_event(&bad).is_err(), "a bad price is an error");
    }

    #[test]
    fn spot_cancel_reports_the_original_client_id() {
        let cancel = SPOT_DOC
            .replace(r#""C":"""#, r#""C":"tl-42""#)
            .replace(r#""x":"NEW","X":"NEW""#, r#""x":"CANCELED","X":"CANCELED""#);
        let UserEvent::Order(r) = parse_user_event(&cancel).unwrap() else {
            panic!()
        };
        assert_eq!(r.client_order_id, "tl-42");
        assert_eq!(r.status, VenueStatus::Canceled);
    }

    #[test]
    fn decodes_documented_usdm_report_and_a_trade() {
        let UserEvent::Order(r) = parse_user_event(USDM_DOC).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.symbol.as_str(), r.client_order_id.as_str()),
            ("BTCUSDT", "TEST")
        );
        assert_eq!(r.order_id, 8_886_774);
        let trade = USDM_DOC
            .replace(
                r#""x":"NEW","X":"NEW""#,
                r#""x":"TRADE","X":"PARTIALLY_FILLED""#,
            )
            .replace(
                r#""l":"0","z":"0","L":"0""#,
                r#""l":"0.0004","z":"0.0004","L":"7100.5""#,
            )
            .replace(r#""ap":"0""#, r#""ap":"7100.5""#);
        let UserEvent::Order(t) = parse_user_event(&trade).unwrap() else {
            panic!()
        };
        assert!(t.is_trade);
        assert_eq!(t.last_qty, "0.0004".parse().unwrap());
        assert_eq!(
            t.cum_quote,
            Money::notional("7100.5".parse().unwrap(), t.cum_qty)
        );
    }

    #[test]
    fn other_events_and_bad_input() {
        assert_eq!(
            parse_user_event(r#"{"e":"listenKeyExpired","E":1576653824250,"listenKey":"x"}"#),
            Ok(UserEvent::ListenKeyExpired)
        );
        assert_eq!(
            parse_user_event(r#"{"stream":"k","data":{"e":"outboundAccountPosition","E":1}}"#),
            Ok(UserEvent::Account)
        );
        assert_eq!(
            parse_user_event(r#"{"result":null,"id":1}"#),
            Ok(UserEvent::Other)
        );
        assert!(parse_user_event("not json").is_err());
        assert!(
            parse_user_event(&SPOT_DOC.replace(r#""z":"0.00000000""#, r#""z":"abc""#)).is_err()
        );
        assert!(parse_user_event(&SPOT_DOC.replace(r#""X":"NEW""#, r#""X":"WEIRD""#)).is_err());
        assert!(parse_user_event(r#"{"e":"executionReport"}"#).is_err());
    }
}
