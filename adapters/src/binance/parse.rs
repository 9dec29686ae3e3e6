//! Binance wire frames → fixed-point engine values. Hot path (feed thread): frames are parsed
//! borrowed, numbers straight from their decimal strings; depth levels go into two buffers
//! owned by the codec and reused, so a message allocates nothing once the buffers have grown
//! to the largest message seen.
//!
//! Handles spot and USD-M combined streams (`{"stream":"btcusdt@trade","data":{…}}`), raw
//! single-stream frames (`{"e":"trade",…}`, spot `{"u":…}` book tickers), REST depth snapshots
//! (`{"lastUpdateId":…}`) and subscription replies (`{"result":null,"id":1}`).
//!
//! Docs: <https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>,
//! <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams>.

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use tradeloop_engine::event::{Liquidation, MarkPrice, Quote, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::symbols::SymbolMap;
use crate::wire::{json_err, Fixed, FrameBuffers, Level, LevelsSeed, ParseError};

/// Header of a depth diff (`depthUpdate`); its levels are in [`BinanceCodec::bids`](crate::wire::Codec::bids) and
/// [`BinanceCodec::asks`](crate::wire::Codec::asks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DepthDiff {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// First update id in the event (`U`).
    pub first_id: u64,
    /// Final update id in the event (`u`).
    pub last_id: u64,
    /// Final update id of the previous event (`pu`, USD-M only).
    pub prev_last_id: Option<u64>,
    /// Event time, ns since the epoch.
    pub exch_ns: u64,
}

/// Header of a REST depth snapshot; its levels are in the codec's buffers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DepthSnapshot {
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// Message time if the venue sent one (USD-M), ns since the epoch; else 0.
    pub exch_ns: u64,
}

/// What a frame was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// `@trade` or `@aggTrade`.
    Trade {
        /// The trade.
        trade: Trade,
        /// Trade time, ns since the epoch.
        exch_ns: u64,
    },
    /// `@bookTicker`.
    Quote {
        /// The quote.
        quote: Quote,
        /// Event time if sent (USD-M), else 0.
        exch_ns: u64,
    },
    /// `@depth…` diff.
    Depth(DepthDiff),
    /// REST snapshot.
    Snapshot(DepthSnapshot),
    /// `@markPrice…`.
    MarkPrice {
        /// The mark price.
        mark: MarkPrice,
        /// Event time.
        exch_ns: u64,
    },
    /// `@forceOrder`.
    Liquidation {
        /// The liquidation.
        liquidation: Liquidation,
        /// Trade time.
        exch_ns: u64,
    },
    /// A reply to a subscribe/unsubscribe request.
    ControlReply,
}

#[derive(Deserialize)]
struct TradeMsg<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "t", alias = "a")]
    id: u64,
    p: Fixed,
    q: Fixed,
    #[serde(rename = "T")]
    trade_ms: u64,
    /// Buyer is the maker: the aggressor sold.
    m: bool,
}

#[derive(Deserialize)]
struct BookTickerMsg<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    u: u64,
    b: Fixed,
    #[serde(rename = "B")]
    bid_qty: Fixed,
    a: Fixed,
    #[serde(rename = "A")]
    ask_qty: Fixed,
    #[serde(rename = "E", default)]
    event_ms: u64,
}

#[derive(Deserialize)]
struct MarkPriceMsg<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "E")]
    event_ms: u64,
    p: Fixed,
    i: Fixed,
    r: Fixed,
    #[serde(rename = "T")]
    next_funding_ms: u64,
}

#[derive(Deserialize)]
struct ForceOrderMsg<'a> {
    #[serde(borrow)]
    o: ForceOrderInner<'a>,
}

#[derive(Deserialize)]
struct ForceOrderInner<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "S", borrow)]
    side: &'a str,
    p: Fixed,
    ap: Fixed,
    z: Fixed,
    #[serde(rename = "T")]
    trade_ms: u64,
}

/// The keys that identify a frame's kind, for frames not in the compact layout.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    stream: Option<&'a str>,
    #[serde(borrow, default)]
    e: Option<&'a str>,
    #[serde(rename = "lastUpdateId", default)]
    last_update_id: Option<IgnoredAny>,
    #[serde(default)]
    u: Option<IgnoredAny>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// Ids and times of a depth diff or snapshot; levels go to the seed buffers.
#[derive(Default)]
struct DepthFields<'a> {
    symbol: Option<&'a str>,
    first_id: Option<u64>,
    last_id: Option<u64>,
    prev_last_id: Option<u64>,
    last_update_id: Option<u64>,
    event_ms: u64,
}

struct DepthSeed<'b> {
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
}

impl<'de> DeserializeSeed<'de> for DepthSeed<'_> {
    type Value = DepthFields<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<DepthFields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DepthSeed<'_> {
    type Value = DepthFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a depth update or snapshot object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DepthFields<'de>, A::Error> {
        let mut out = DepthFields::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "s" => out.symbol = Some(map.next_value()?),
                "U" => out.first_id = Some(map.next_value()?),
                "u" => out.last_id = Some(map.next_value()?),
                "pu" => out.prev_last_id = Some(map.next_value()?),
                "lastUpdateId" => out.last_update_id = Some(map.next_value()?),
                "E" => out.event_ms = map.next_value()?,
                "b" | "bids" => map.next_value_seed(LevelsSeed(&mut *self.bids))?,
                "a" | "asks" => map.next_value_seed(LevelsSeed(&mut *self.asks))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Which Binance market the frames come from (decides the book-sync rule).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Market {
    /// Spot: continuity is `U == previous u + 1`.
    Spot,
    /// USD-M futures: continuity is `pu == previous u`.
    UsdM,
}

/// Parses Binance frames for a set of instruments.
///
/// # Allocation
/// Only when a depth message has more levels than any before it (the level buffers grow).
#[derive(Debug)]
pub struct BinanceCodec {
    buf: FrameBuffers,
}

const MS: u64 = 1_000_000;

impl BinanceCodec {
    /// A codec for these symbols, refusing frames above `max_frame_bytes`.
    #[must_use]
    pub fn new(symbols: SymbolMap, max_frame_bytes: usize) -> Self {
        Self {
            buf: FrameBuffers::new(symbols, max_frame_bytes, 1024),
        }
    }

    /// Parses one frame.
    ///
    /// # Errors
    /// [`ParseError`]; never panics on any input.
    pub fn parse(&mut self, frame: &str) -> Result<Parsed, ParseError> {
        self.buf.check_size(frame)?;
        let frame = frame.trim();
        if let Some((stream, data)) = split_envelope(frame) {
            return self.parse_stream(stream, data);
        }
        if frame.starts_with("{\"lastUpdateId\"") {
            return self.parse_snapshot(frame);
        }
        if let Some(kind) = raw_event_type(frame) {
            return self.parse_kind(kind, frame);
        }
        if frame.starts_with("{\"u\":") {
            return self.parse_kind("bookTicker", frame);
        }
        if frame.starts_with("{\"result\"") || frame.starts_with("{\"id\"") {
            return Ok(Parsed::ControlReply);
        }
        if frame.starts_with('{') {
            // Not Binance's compact layout (pretty-printed, or other key order): probe the
            // keys that tell the kinds apart, then parse as usual.
            let probe: Probe<'_> = serde_json::from_str(frame).map_err(|e| json_err(&e))?;
            return match probe {
                Probe {
                    stream: Some(_), ..
                } => {
                    let env: Envelope<'_> =
                        serde_json::from_str(frame).map_err(|e| json_err(&e))?;
                    self.parse_stream(env.stream, env.data.get())
                }
                Probe {
                    last_update_id: Some(_),
                    ..
                } => self.parse_snapshot(frame),
                Probe { e: Some(kind), .. } => self.parse_kind(kind, frame),
                Probe { u: Some(_), .. } => self.parse_kind("bookTicker", frame),
                Probe {
                    result: Some(_), ..
                }
                | Probe { id: Some(_), .. } => Ok(Parsed::ControlReply),
                _ => Err(ParseError::UnknownStream),
            };
        }
        Err(ParseError::Malformed("not a JSON object"))
    }

    fn parse_stream(&mut self, stream: &str, data: &str) -> Result<Parsed, ParseError> {
        let Some(at) = memchr::memchr(b'@', stream.as_bytes()) else {
            return Err(ParseError::UnknownStream);
        };
        let kind = &stream[at + 1..];
        // `depth@100ms`, `depth20@100ms`, `markPrice@1s`: the kind is what precedes the next '@'.
        let kind = memchr::memchr(b'@', kind.as_bytes()).map_or(kind, |k| &kind[..k]);
        self.parse_kind(kind, data)
    }

    fn parse_kind(&mut self, kind: &str, data: &str) -> Result<Parsed, ParseError> {
        match kind {
            "trade" | "aggTrade" => {
                if let Some(parsed) = self.fast_trade(data) {
                    return Ok(parsed);
                }
                let m: TradeMsg<'_> = serde_json::from_str(data).map_err(|e| json_err(&e))?;
                let trade = Trade {
                    instrument: self.buf.instrument(m.symbol)?,
                    aggressor: if m.m { Side::Sell } else { Side::Buy },
                    price: Price(m.p.0),
                    qty: Qty(m.q.0),
                    trade_id: m.id,
                };
                Ok(Parsed::Trade {
                    trade,
                    exch_ns: m.trade_ms * MS,
                })
            }
            "bookTicker" => {
                if let Some(parsed) = self.fast_book_ticker(data) {
                    return Ok(parsed);
                }
                let m: BookTickerMsg<'_> = serde_json::from_str(data).map_err(|e| json_err(&e))?;
                let quote = Quote {
                    instrument: self.buf.instrument(m.symbol)?,
                    bid_price: Price(m.b.0),
                    bid_qty: Qty(m.bid_qty.0),
                    ask_price: Price(m.a.0),
                    ask_qty: Qty(m.ask_qty.0),
                    update_id: m.u,
                };
                Ok(Parsed::Quote {
                    quote,
                    exch_ns: m.event_ms * MS,
                })
            }
            "depth" | "depthUpdate" => self.parse_depth(data),
            "markPrice" | "markPriceUpdate" => {
                let m: MarkPriceMsg<'_> = serde_json::from_str(data).map_err(|e| json_err(&e))?;
                let mark = MarkPrice {
                    instrument: self.buf.instrument(m.symbol)?,
                    mark_price: Price(m.p.0),
                    index_price: Price(m.i.0),
                    funding_rate: Price(m.r.0),
                    next_funding_ns: m.next_funding_ms * MS,
                };
                Ok(Parsed::MarkPrice {
                    mark,
                    exch_ns: m.event_ms * MS,
                })
            }
            "forceOrder" => {
                let m: ForceOrderMsg<'_> = serde_json::from_str(data).map_err(|e| json_err(&e))?;
                let side = match m.o.side {
                    "BUY" => Side::Buy,
                    "SELL" => Side::Sell,
                    _ => return Err(ParseError::Malformed("forceOrder side")),
                };
                let liquidation = Liquidation {
                    instrument: self.buf.instrument(m.o.symbol)?,
                    side,
                    price: Price(m.o.p.0),
                    avg_price: Price(m.o.ap.0),
                    filled_qty: Qty(m.o.z.0),
                };
                Ok(Parsed::Liquidation {
                    liquidation,
                    exch_ns: m.o.trade_ms * MS,
                })
            }
            _ => Err(ParseError::UnknownStream),
        }
    }

    /// Single-pass trade parse for Binance's compact payload; `None` falls back to serde.
    #[inline]
    fn fast_trade(&self, data: &str) -> Option<Parsed> {
        let (mut symbol, mut id, mut price, mut qty, mut time, mut maker) =
            (None, None, None, None, None, None);
        scan_flat(data, |k, v| match k {
            "s" => {
                if let Flat::Str(s) = v {
                    symbol = Some(s);
                }
            }
            "t" | "a" => id = flat_u64(v),
            "p" => price = flat_fixed(v),
            "q" => qty = flat_fixed(v),
            "T" => time = flat_u64(v),
            "m" => {
                maker = match v {
                    Flat::Scalar("true") => Some(true),
                    Flat::Scalar("false") => Some(false),
                    _ => None,
                }
            }
            _ => {}
        })?;
        let trade = Trade {
            instrument: self.buf.symbols.find(symbol?)?,
            aggressor: if maker? { Side::Sell } else { Side::Buy },
            price: Price(price?),
            qty: Qty(qty?),
            trade_id: id?,
        };
        Some(Parsed::Trade {
            trade,
            exch_ns: time?.checked_mul(MS)?,
        })
    }

    /// Single-pass book-ticker parse; `None` falls back to serde.
    #[inline]
    fn fast_book_ticker(&self, data: &str) -> Option<Parsed> {
        let (mut symbol, mut u, mut event_ms) = (None, None, 0u64);
        let (mut b, mut bq, mut a, mut aq) = (None, None, None, None);
        let mut ok = true;
        scan_flat(data, |k, v| match k {
            "s" => {
                if let Flat::Str(s) = v {
                    symbol = Some(s);
                }
            }
            "u" => u = flat_u64(v),
            "b" => b = flat_fixed(v),
            "B" => bq = flat_fixed(v),
            "a" => a = flat_fixed(v),
            "A" => aq = flat_fixed(v),
            "E" => match flat_u64(v) {
                Some(e) => event_ms = e,
                None => ok = false,
            },
            _ => {}
        })?;
        if !ok {
            return None;
        }
        let quote = Quote {
            instrument: self.buf.symbols.find(symbol?)?,
            bid_price: Price(b?),
            bid_qty: Qty(bq?),
            ask_price: Price(a?),
            ask_qty: Qty(aq?),
            update_id: u?,
        };
        Some(Parsed::Quote {
            quote,
            exch_ns: event_ms.checked_mul(MS)?,
        })
    }

    fn parse_levels<'d>(&mut self, data: &'d str) -> Result<DepthFields<'d>, ParseError> {
        self.buf.bids.clear();
        self.buf.asks.clear();
        if let Some(fields) = fast_depth(data, &mut self.buf.bids, &mut self.buf.asks) {
            return Ok(fields);
        }
        self.buf.bids.clear();
        self.buf.asks.clear();
        let mut de = serde_json::Deserializer::from_str(data);
        let fields = DepthSeed {
            bids: &mut self.buf.bids,
            asks: &mut self.buf.asks,
        }
        .deserialize(&mut de)
        .map_err(|e| json_err(&e))?;
        de.end().map_err(|e| json_err(&e))?;
        Ok(fields)
    }

    fn parse_depth(&mut self, data: &str) -> Result<Parsed, ParseError> {
        let f = self.parse_levels(data)?;
        let (Some(symbol), Some(first_id), Some(last_id)) = (f.symbol, f.first_id, f.last_id)
        else {
            return Err(ParseError::Malformed("depth update without s, U or u"));
        };
        let (prev_last_id, exch_ns) = (f.prev_last_id, f.event_ms * MS);
        let instrument = self.buf.instrument(symbol)?;
        if first_id > last_id {
            return Err(ParseError::Malformed("depth update with U > u"));
        }
        Ok(Parsed::Depth(DepthDiff {
            instrument,
            first_id,
            last_id,
            prev_last_id,
            exch_ns,
        }))
    }

    fn parse_snapshot(&mut self, data: &str) -> Result<Parsed, ParseError> {
        let f = self.parse_levels(data)?;
        let Some(last_update_id) = f.last_update_id else {
            return Err(ParseError::Malformed("snapshot without lastUpdateId"));
        };
        Ok(Parsed::Snapshot(DepthSnapshot {
            last_update_id,
            exch_ns: f.event_ms * MS,
        }))
    }
}

/// A value in a flat compact JSON object: a string without escapes, or a bare scalar.
#[derive(Clone, Copy)]
enum Flat<'a> {
    Str(&'a str),
    Scalar(&'a str),
}

/// Calls `f` for each `"key":value` of a flat, compact JSON object (Binance's trade and book
/// ticker payloads) in one pass. Returns `None` for anything else — whitespace, escapes,
/// nested values, trailing bytes — and the caller falls back to the full parser, which also
/// produces the precise error for bad input.
#[inline]
fn scan_flat<'a>(data: &'a str, mut f: impl FnMut(&'a str, Flat<'a>)) -> Option<()> {
    let b = data.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    loop {
        let (key, at) = flat_key(data, i)?;
        let (value, next) = flat_value(data, at)?;
        f(key, value);
        i = next;
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return (i + 1 == b.len()).then_some(()),
            _ => return None,
        }
    }
}

/// `"key":` at `data[i..]` of a compact object: the key and the index of its value.
#[inline]
fn flat_key(data: &str, i: usize) -> Option<(&str, usize)> {
    let b = data.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let end = start + b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
    if b[end] != b'"' || b.get(end + 1) != Some(&b':') {
        return None;
    }
    Some((&data[start..end], end + 2))
}

/// A string without escapes or a bare scalar (letters, digits, `.`, `-`, `+`) at `data[i..]`,
/// and the index after it; `None` for nested values or anything else.
#[inline]
fn flat_value(data: &str, i: usize) -> Option<(Flat<'_>, usize)> {
    let b = data.as_bytes();
    match b.get(i)? {
        b'"' => {
            let start = i + 1;
            let len = b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
            if b[start + len] != b'"' {
                return None;
            }
            Some((Flat::Str(&data[start..start + len]), start + len + 1))
        }
        b'{' | b'[' => None,
        _ => {
            let len = b[i..].iter().position(|&c| c == b',' || c == b'}')?;
            let end = i + len;
            if len == 0
                || !b[i..end]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
            {
                return None;
            }
            Some((Flat::Scalar(&data[i..end]), end))
        }
    }
}

/// Single-pass parse of a depth diff or snapshot in Binance's compact layout (string and
/// scalar values, level arrays of `["price","qty"]`). `None` for anything else, and the caller
/// falls back to the full parser, which produces the precise error for bad input.
fn fast_depth<'a>(
    data: &'a str,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> Option<DepthFields<'a>> {
    let b = data.as_bytes();
    let mut out = DepthFields::default();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    loop {
        let (key, at) = flat_key(data, i)?;
        i = match key {
            "b" | "bids" => fast_levels(b, at, bids)?,
            "a" | "asks" => fast_levels(b, at, asks)?,
            _ => {
                let (value, next) = flat_value(data, at)?;
                match key {
                    "s" => match value {
                        Flat::Str(s) => out.symbol = Some(s),
                        Flat::Scalar(_) => return None,
                    },
                    "U" => out.first_id = Some(flat_u64(value)?),
                    "u" => out.last_id = Some(flat_u64(value)?),
                    "pu" => out.prev_last_id = Some(flat_u64(value)?),
                    "lastUpdateId" => out.last_update_id = Some(flat_u64(value)?),
                    "E" => out.event_ms = flat_u64(value)?,
                    _ => {}
                }
                next
            }
        };
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return (i + 1 == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// `[["p","q"],…]` starting at `b[i]`, appended to `out`; the index after the closing `]`.
#[inline]
fn fast_levels(b: &[u8], mut i: usize, out: &mut Vec<Level>) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        if b.get(i..i + 2)? != b"[\"" {
            return None;
        }
        let p_start = i + 2;
        let p_end = p_start + b[p_start..].iter().position(|&c| c == b'"')?;
        if b.get(p_end + 1..p_end + 3)? != b",\"" {
            return None;
        }
        let q_start = p_end + 3;
        let q_end = q_start + b[q_start..].iter().position(|&c| c == b'"')?;
        if b.get(q_end + 1)? != &b']' {
            return None;
        }
        let price = tradeloop_engine::fixed::parse_fixed_raw(&b[p_start..p_end]).ok()?;
        let qty = tradeloop_engine::fixed::parse_fixed_raw(&b[q_start..q_end]).ok()?;
        out.push(Level {
            price: Price(price),
            qty: Qty(qty),
        });
        i = q_end + 2;
        match b.get(i)? {
            b',' => i += 1,
            b']' => return Some(i + 1),
            _ => return None,
        }
    }
}

#[inline]
fn flat_u64(v: Flat<'_>) -> Option<u64> {
    let Flat::Scalar(s) = v else { return None };
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

#[inline]
fn flat_fixed(v: Flat<'_>) -> Option<i64> {
    let Flat::Str(s) = v else { return None };
    tradeloop_engine::fixed::parse_fixed_raw(s.as_bytes()).ok()
}

/// Splits `{"stream":"<name>","data":<data>}` without parsing `data` (the layout Binance sends).
fn split_envelope(frame: &str) -> Option<(&str, &str)> {
    let rest = frame.strip_prefix("{\"stream\":\"")?;
    let end = memchr::memchr(b'"', rest.as_bytes())?;
    let stream = &rest[..end];
    let data = rest[end..].strip_prefix("\",\"data\":")?;
    let data = data.strip_suffix('}')?;
    Some((stream, data))
}

/// `{"e":"trade",…}` → `trade`.
fn raw_event_type(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("{\"e\":\"")?;
    rest.find('"').map(|end| &rest[..end])
}

crate::wire::impl_codec!(BinanceCodec);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Codec as _;
    use tradeloop_engine::fixed::FixedError;

    fn codec() -> BinanceCodec {
        let mut m = SymbolMap::default();
        m.insert("BTCUSDT", InstrumentIndex(0));
        BinanceCodec::new(m, 1 << 20)
    }

    #[test]
    fn real_frames_parse_exactly() {
        let mut c = codec();
        // Spot trade from ../shared/data/binance_spot_btcusdt_20240808.gz.
        let t = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
        let Ok(Parsed::Trade { trade, exch_ns }) = c.parse(t) else {
            panic!("TC0")
        };
        assert_eq!(trade.price, Price::parse("61837.63").unwrap());
        assert_eq!(trade.qty, Qty::parse("0.02").unwrap());
        assert_eq!(
            (trade.aggressor, trade.trade_id, exch_ns),
            (Side::Sell, 3_735_683_259, 1_723_161_255_342_000_000)
        );
        // Spot bookTicker (no "e"): dispatched on the stream name.
        let q = r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;
        let Ok(Parsed::Quote { quote, .. }) = c.parse(q) else {
            panic!("TC1")
        };
        assert_eq!(
            (quote.update_id, quote.ask_qty),
            (50_093_239_212, Qty::parse("1.54698").unwrap())
        );
        // USD-M depth with pu.
        let d = r#"{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256352,"T":1723161256352,"s":"BTCUSDT","U":5123107837801,"u":5123107842679,"pu":5123107837557,"b":[["1000.00","606.675"],["5000.00","2.321"]],"a":[["61800.30","0.000"]]}}"#;
        let Ok(Parsed::Depth(h)) = c.parse(d) else {
            panic!("TC2")
        };
        assert_eq!(
            (h.first_id, h.last_id, h.prev_last_id),
            (
                5_123_107_837_801,
                5_123_107_842_679,
                Some(5_123_107_837_557)
            )
        );
        assert_eq!(c.bids().len(), 2);
        assert_eq!(
            c.asks(),
            &[Level {
                price: Price::parse("61800.3").unwrap(),
                qty: Qty::ZERO
            }]
        );
        // Raw (non-combined) frames and a subscription reply.
        let raw = r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":77,"p":"1.5","q":"2","f":1,"l":2,"T":5,"m":false}"#;
        assert!(
            matches!(
                c.parse(raw),
                Ok(Parsed::Trade {
                    trade: Trade {
                        trade_id: 77,
                        aggressor: Side::Buy,
                        ..
                    },
                    exch_ns: 5_000_000
                })
            ),
            "TC3"
        );
        assert_eq!(
            c.parse(r#"{"result":null,"id":1}"#),
            Ok(Parsed::ControlReply),
            "TC4"
        );
    }

    #[test]
    fn docs_examples_for_usdm_mark_price_and_liquidation() {
        let mut c = codec();
        let mark = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/binance_futures_mark_price_stream.docs-example.json"
        ));
        let liq = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/binance_futures_liquidation_stream.docs-example.json"
        ));
        let (Ok(mark), Ok(liq)) = (mark, liq) else {
            eprintln!("skipped: ../shared/data is absent");
            return;
        };
        let Ok(Parsed::MarkPrice { mark, exch_ns }) = c.parse(&mark) else {
            panic!("markPriceUpdate")
        };
        assert_eq!(mark.mark_price, Price::parse("11794.15").unwrap());
        assert_eq!(mark.funding_rate, Price(38_167));
        assert_eq!(
            (mark.next_funding_ns, exch_ns),
            (1_562_306_400_000_000_000, 1_562_305_380_000_000_000)
        );
        let Ok(Parsed::Liquidation { liquidation, .. }) = c.parse(&liq) else {
            panic!("forceOrder")
        };
        assert_eq!(liquidation.side, Side::Sell);
        assert_eq!(
            liquidation.avg_price,
            Price::parse("9910.12345678").unwrap()
        );
        assert_eq!(liquidation.filled_qty, Qty::parse("0.014").unwrap());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = codec();
        let cases: &[(&str, &str, ParseError)] = &[
            ("TC0", "", ParseError::Malformed("not a JSON object")),
            ("TC1", "garbage", ParseError::Malformed("not a JSON object")),
            (
                "TC2",
                r#"{"stream":"btcusdt@trade","data":{"e":"trade""#,
                ParseError::Malformed("truncated"),
            ),
            (
                "TC3",
                r#"{"stream":"btcusdt@kline_1m","data":{}}"#,
                ParseError::UnknownStream,
            ),
            (
                "TC4",
                r#"{"stream":"ethusdt@trade","data":{"s":"ETHUSDT","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
                ParseError::UnknownSymbol,
            ),
            (
                "TC5",
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1e5","q":"1","T":1,"m":true}}"#,
                ParseError::Number(FixedError::InvalidChar { position: 0 }),
            ),
            (
                "TC6",
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"0.000000001","q":"1","T":1,"m":true}}"#,
                ParseError::Number(FixedError::TooPrecise),
            ),
            (
                "TC7",
                r#"{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":1,"u":2,"b":[["1","x"]],"a":[]}}"#,
                ParseError::Number(FixedError::InvalidChar { position: 0 }),
            ),
            (
                "TC8",
                r#"{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":5,"u":2,"b":[],"a":[]}}"#,
                ParseError::Malformed("depth update with U > u"),
            ),
            (
                "TC9",
                r#"{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","b":[],"a":[]}}"#,
                ParseError::Malformed("depth update without s, U or u"),
            ),
            (
                "TC10",
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1,"m":true}}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            ("TC11", r#"{"hello":1}"#, ParseError::UnknownStream),
            (
                "TC12",
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"99999999999999","q":"1","T":1,"m":true}}"#,
                ParseError::Number(FixedError::Overflow),
            ),
        ];
        for (label, frame, want) in cases {
            assert_eq!(c.parse(frame).err(), Some(*want), "{label}: {frame}");
        }
        let mut small = BinanceCodec::new(SymbolMap::default(), 10);
        assert_eq!(
            small.parse(r#"{"result":null,"id":1}"#),
            Err(ParseError::Oversize)
        );
    }

    #[test]
    fn flat_scanner_refuses_what_it_cannot_read_exactly() {
        let mut keys = Vec::new();
        assert!(scan_flat(r#"{"a":"x","b":12,"c":true}"#, |k, _| keys
            .push(k.to_owned()))
        .is_some());
        assert_eq!(keys, ["a", "b", "c"]);
        for (label, bad) in [
            ("TC0 whitespace", r#"{"a": 1}"#),
            ("TC1 escape", r#"{"a":"x\"y"}"#),
            ("TC2 nested", r#"{"a":[1]}"#),
            ("TC3 trailing", r#"{"a":1}x"#),
            ("TC4 truncated", r#"{"a":1"#),
            ("TC5 empty", ""),
        ] {
            assert!(scan_flat(bad, |_, _| {}).is_none(), "{label}");
        }
    }

    proptest::proptest! {
        /// The single-pass path and serde agree on every trade and ticker they both accept.
        #[test]
        fn prop_fast_and_serde_paths_agree(p in 1i64..10_000_000_000, q in 1i64..1_000_000_000, id in 0u64..u64::MAX / 2, t in 0u64..4_000_000_000_000, m in proptest::bool::ANY) {
            let c = codec();
            let data = format!(r#"{{"e":"trade","E":1,"s":"BTCUSDT","t":{id},"p":"{}","q":"{}","T":{t},"m":{m},"M":true}}"#, Price(p), Qty(q));
            let fast = c.fast_trade(&data);
            let m2: TradeMsg<'_> = serde_json::from_str(&data).unwrap();
            proptest::prop_assert!(fast.is_some());
            let Some(Parsed::Trade { trade, exch_ns }) = fast else { unreachable!() };
            proptest::prop_assert_eq!((trade.price.raw(), trade.qty.raw(), trade.trade_id, exch_ns / 1_000_000), (m2.p.0, m2.q.0, m2.id, m2.trade_ms));
            proptest::prop_assert_eq!(trade.aggressor == Side::Sell, m2.m);
        }
    }

    #[test]
    fn envelope_with_other_key_order_uses_the_slow_path() {
        let mut c = codec();
        let f = r#"{"stream":"btcusdt@trade" , "data":{"s":"BTCUSDT","t":9,"p":"2","q":"3","T":1,"m":false}}"#;
        assert!(matches!(
            c.parse(f),
            Ok(Parsed::Trade {
                trade: Trade { trade_id: 9, .. },
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn prop_parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut c = codec();
            let s = String::from_utf8_lossy(&bytes);
            let _ = c.parse(&s);
            let _ = c.parse(&format!("{{\"stream\":\"btcusdt@depth\",\"data\":{s}}}"));
            let _ = c.parse(&format!("{{\"stream\":\"btcusdt@trade\",\"data\":{s}}}"));
        }
    }

    /// Levels and ids of a depth frame: bids, asks, U, u, pu, lastUpdateId, E.
    type DepthParts = (
        Vec<Level>,
        Vec<Level>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        u64,
    );

    /// The serde-only result of parsing depth levels, for comparison with the fast path.
    fn serde_levels(data: &str) -> Option<DepthParts> {
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let mut de = serde_json::Deserializer::from_str(data);
        let f = DepthSeed {
            bids: &mut bids,
            asks: &mut asks,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some((
            bids,
            asks,
            f.first_id,
            f.last_id,
            f.prev_last_id,
            f.last_update_id,
            f.event_ms,
        ))
    }

    proptest::proptest! {
        /// Whenever the fast depth scanner accepts a frame, it reads exactly what serde reads;
        /// whatever it declines still parses (or fails) through serde.
        #[test]
        fn prop_fast_depth_agrees_with_serde(
            levels in proptest::collection::vec(("[0-9]{1,6}(\\.[0-9]{1,9})?|-1|1e5|", "[0-9]{1,3}\\.[0-9]{0,9}"), 0..12),
            split in 0usize..12,
            ids in (0u64..u64::MAX, 0u64..1000),
            spaced in proptest::bool::ANY,
            extra in proptest::sample::select(vec!["", "\"T\":1723161256352,", "\"x\":null,", "\"n\":{\"a\":1},", "\"f\":-1.5e3,"]),
        ) {
            let list = |ls: &[(String, String)]| {
                ls.iter().map(|(p, q)| format!("[\"{p}\",\"{q}\"]")).collect::<Vec<_>>().join(if spaced { ", " } else { "," })
            };
            let cut = split.min(levels.len());
            let frame = format!(
                "{{\"e\":\"depthUpdate\",\"E\":1723161256352,{extra}\"s\":\"BTCUSDT\",\"U\":{},\"u\":{},\"pu\":{},\"b\":[{}],\"a\":[{}]}}",
                ids.0, ids.0.saturating_add(ids.1), ids.0.saturating_sub(1), list(&levels[..cut]), list(&levels[cut..])
            );
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            let want = serde_levels(&frame);
            if let Some(f) = fast_depth(&frame, &mut bids, &mut asks) {
                let got = (bids, asks, f.first_id, f.last_id, f.prev_last_id, f.last_update_id, f.event_ms);
                proptest::prop_assert_eq!(Some(got), want.clone());
            }
            let mut c = codec();
            let parsed = c.parse(&frame);
            proptest::prop_assert_eq!(parsed.is_ok(), want.is_some(), "{:?}", parsed);
            if let Some(w) = want {
                proptest::prop_assert_eq!((c.bids().to_vec(), c.asks().to_vec()), (w.0, w.1));
            }
        }
    }
}
