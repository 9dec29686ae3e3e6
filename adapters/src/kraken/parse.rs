//! Kraken spot WebSocket v2 frames → fixed-point engine values. Hot path (feed thread): frames
//! are parsed borrowed; prices and quantities arrive as JSON *numbers* and are read from their
//! literal text straight to fixed point — never through `f64` — so `45283.5` and
//! `0.10000000` are exact. Levels and trades go into buffers owned by the codec and reused.
//!
//! Handles (`wss://ws.kraken.com/v2`):
//! - `trade`: several trades per message (`symbol`, `side`, `price`, `qty`, `trade_id`,
//!   `timestamp` in RFC 3339);
//! - `book`: `snapshot` and `update` messages for one symbol with a CRC32 `checksum` of the top
//!   10 levels;
//! - `ticker` (subscribed with `event_trigger: "bbo"`): best bid and offer;
//! - `heartbeat`, `status`, and method replies (`subscribe`, `unsubscribe`, `pong`); a reply
//!   with `success: false` is refused as [`ParseError::VenueError`].
//!
//! Docs: <https://docs.kraken.com/api/docs/websocket-v2/book>,
//! <https://docs.kraken.com/api/docs/websocket-v2/trade>,
//! <https://docs.kraken.com/api/docs/guides/spot-ws-book-v2>.

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tradeloop_engine::event::{Quote, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::symbols::SymbolMap;
use crate::wire::Out;
use crate::wire::{
    number_err, parse_whole, payload_pass, DataBuffers, DataSeed, FrameBuffers, Level, ParseError,
};

/// Header of a `book` message; its levels are in [`KrakenCodec::bids`](crate::wire::Codec::bids) and
/// [`KrakenCodec::asks`](crate::wire::Codec::asks) in message order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookMsg {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// `type: "snapshot"` (else an update).
    pub snapshot: bool,
    /// CRC32 of the venue's top 10 levels after this message.
    pub checksum: u32,
    /// `timestamp`, ns since the epoch (0 if absent, as on snapshots).
    pub exch_ns: u64,
}

/// What a frame was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// `trade`: this many trades, in [`KrakenCodec::trades`](crate::wire::Codec::trades).
    Trades(usize),
    /// `book`.
    Book(BookMsg),
    /// `ticker` (best bid and offer).
    Quote(Quote),
    /// `heartbeat`, `status`, a pong or a successful method reply.
    Control,
}

/// Parses Kraken v2 frames for a set of instruments (symbols as Kraken writes them, e.g.
/// `BTC/USD`).
///
/// # Allocation
/// Only when a message has more levels or trades than any before it (the buffers grow).
#[derive(Debug)]
pub struct KrakenCodec {
    buf: FrameBuffers,
}

/// A JSON number (or decimal string) read exactly from its literal text.
struct Num(i64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        tradeloop_engine::fixed::parse_fixed_raw(text.as_bytes())
            .map(Num)
            .map_err(number_err)
    }
}

#[derive(Deserialize)]
struct LevelMsg {
    price: Num,
    qty: Num,
}

/// Fills a level buffer from `[{"price": …, "qty": …}, …]`.
struct LevelsSeed<'b>(&'b mut Vec<Level>);

impl<'de> DeserializeSeed<'de> for LevelsSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for LevelsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of {price, qty} levels")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(l) = seq.next_element::<LevelMsg>()? {
            self.0.push(Level {
                price: Price::from_raw(l.price.0),
                qty: Qty::from_raw(l.qty.0),
            });
        }
        Ok(())
    }
}

/// One book object; levels go to the buffers.
#[derive(Default)]
struct BookFields<'a> {
    symbol: Option<&'a str>,
    checksum: Option<u32>,
    timestamp: Option<&'a str>,
}

struct BookSeed<'b> {
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
}

impl<'de> DeserializeSeed<'de> for BookSeed<'_> {
    type Value = BookFields<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BookFields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BookSeed<'_> {
    type Value = BookFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a book object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BookFields<'de>, A::Error> {
        let mut out = BookFields::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "symbol" => out.symbol = Some(map.next_value()?),
                "checksum" => out.checksum = Some(map.next_value()?),
                "timestamp" => out.timestamp = Some(map.next_value()?),
                "bids" => map.next_value_seed(LevelsSeed(&mut *self.bids))?,
                "asks" => map.next_value_seed(LevelsSeed(&mut *self.asks))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// `data` of a book message: exactly one book object.
struct OneBookSeed<'b>(BookSeed<'b>);

impl<'de> DeserializeSeed<'de> for OneBookSeed<'_> {
    type Value = BookFields<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BookFields<'de>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OneBookSeed<'_> {
    type Value = BookFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of one book object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BookFields<'de>, A::Error> {
        let book = seq
            .next_element_seed(self.0)?
            .ok_or_else(|| de::Error::custom("empty book data"))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("several books in one message"));
        }
        Ok(book)
    }
}

#[derive(Deserialize)]
struct TradeMsg<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow)]
    side: &'a str,
    price: Num,
    qty: Num,
    trade_id: u64,
    #[serde(borrow)]
    timestamp: &'a str,
}

struct TradesSeed<'b> {
    symbols: &'b SymbolMap,
    out: &'b mut Vec<(Trade, u64)>,
    unknown: &'b mut bool,
}

impl<'de> DeserializeSeed<'de> for TradesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TradesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of trades")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(t) = seq.next_element::<TradeMsg<'de>>()? {
            let Some(instrument) = self.symbols.find(t.symbol) else {
                *self.unknown = true;
                return Err(de::Error::custom("unknown symbol"));
            };
            let aggressor = match t.side {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return Err(de::Error::custom("side is neither buy nor sell")),
            };
            let exch_ns = rfc3339_ns(t.timestamp)
                .ok_or_else(|| de::Error::custom("timestamp is not RFC 3339 UTC"))?;
            let trade = Trade {
                instrument,
                aggressor,
                price: Price::from_raw(t.price.0),
                qty: Qty::from_raw(t.qty.0),
                trade_id: t.trade_id,
            };
            self.out.push((trade, exch_ns));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct TickerMsg<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    bid: Num,
    bid_qty: Num,
    ask: Num,
    ask_qty: Num,
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` → ns since the epoch (`None` if malformed or before
/// 1970).
#[must_use]
pub fn rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut nanos = 0u64;
    let rest = &b[19..b.len() - 1];
    if let Some(frac) = rest.strip_prefix(b".") {
        if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for (i, c) in frac.iter().enumerate() {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
    } else if !rest.is_empty() {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + mi * 60 + sec;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// ns since the epoch → `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, as Kraken writes).
#[must_use]
pub fn rfc3339_from_ns(ns: u64) -> String {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    let micros = ns % 1_000_000_000 / 1_000;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::recorder::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

/// The envelope's `data`, parsed in the envelope's own pass when the channel came before it
/// (as Kraken writes it), else kept raw for a second pass.
enum Data<'a> {
    Absent,
    Trades,
    Book(BookFields<'a>),
    Quote(Quote),
    Raw(&'a RawValue),
}

struct Envelope<'a> {
    channel: Option<&'a str>,
    kind: Option<&'a str>,
    method: Option<&'a str>,
    success: Option<bool>,
    data: Data<'a>,
}

/// This venue, for its [`Out`] buffers.
enum Kraken {}

/// Where `data` goes.
type Buffers<'b> = Out<'b, Kraken>;

impl<'de> DataBuffers<'de> for Out<'_, Kraken> {
    type Key = &'de str;
    type Data = Data<'de>;

    fn error(&self, e: &serde_json::Error) -> ParseError {
        self.error_of(e)
    }

    /// Parses `data` of a market-data `channel` from `d` (other channels' data is skipped).
    fn data<D: de::Deserializer<'de>>(
        &mut self,
        channel: &'de str,
        d: D,
    ) -> Result<Data<'de>, D::Error> {
        match channel {
            "trade" => {
                TradesSeed {
                    symbols: self.symbols,
                    out: &mut *self.trades,
                    unknown: &mut self.unknown_symbol,
                }
                .deserialize(d)?;
                Ok(Data::Trades)
            }
            "book" => OneBookSeed(BookSeed {
                bids: &mut *self.bids,
                asks: &mut *self.asks,
            })
            .deserialize(d)
            .map(Data::Book),
            "ticker" => {
                let [t]: [TickerMsg<'de>; 1] = Deserialize::deserialize(d)?;
                let Some(instrument) = self.symbols.find(t.symbol) else {
                    self.unknown_symbol = true;
                    return Err(de::Error::custom("unknown symbol"));
                };
                Ok(Data::Quote(Quote {
                    instrument,
                    bid_price: Price::from_raw(t.bid.0),
                    bid_qty: Qty::from_raw(t.bid_qty.0),
                    ask_price: Price::from_raw(t.ask.0),
                    ask_qty: Qty::from_raw(t.ask_qty.0),
                    update_id: 0,
                }))
            }
            _ => {
                IgnoredAny::deserialize(d)?;
                Ok(Data::Absent)
            }
        }
    }
}

struct EnvelopeSeed<'r, 'b>(&'r mut Buffers<'b>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kraken message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            channel: None,
            kind: None,
            method: None,
            success: None,
            data: Data::Absent,
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "channel" => env.channel = Some(map.next_value()?),
                "type" => env.kind = Some(map.next_value()?),
                "method" => env.method = Some(map.next_value()?),
                "success" => env.success = Some(map.next_value()?),
                "data" => {
                    env.data = match env.channel {
                        Some(channel) => map.next_value_seed(DataSeed(&mut *self.0, channel))?,
                        None => Data::Raw(map.next_value()?),
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

impl KrakenCodec {
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
        self.buf.begin(frame)?;
        let mut buffers: Buffers<'_> = self.buf.out();
        let mut env =
            parse_whole(frame, EnvelopeSeed(&mut buffers)).map_err(|e| buffers.error(&e))?;
        let Some(channel) = env.channel else {
            return match (env.method, env.success) {
                (Some(_), Some(false)) => Err(ParseError::VenueError),
                (Some(_), _) => Ok(Parsed::Control),
                (None, _) => Err(ParseError::UnknownStream),
            };
        };
        match channel {
            "heartbeat" | "status" => return Ok(Parsed::Control),
            "book" | "trade" | "ticker" => {}
            _ => return Err(ParseError::UnknownStream),
        }
        if let Data::Raw(raw) = env.data {
            // `data` came before `channel`: a second pass over it.
            env.data = payload_pass(&mut buffers, channel, raw)?;
        }
        match env.data {
            Data::Absent | Data::Raw(_) => Err(ParseError::Malformed("no data")),
            Data::Trades => Ok(Parsed::Trades(self.buf.trades.len())),
            Data::Quote(q) => Ok(Parsed::Quote(q)),
            Data::Book(fields) => {
                let snapshot = match env.kind {
                    Some("snapshot") => true,
                    Some("update") => false,
                    _ => {
                        return Err(ParseError::Malformed(
                            "book type is neither snapshot nor update",
                        ))
                    }
                };
                let symbol = fields
                    .symbol
                    .ok_or(ParseError::Malformed("book without symbol"))?;
                let instrument = self.buf.instrument(symbol)?;
                let checksum = fields
                    .checksum
                    .ok_or(ParseError::Malformed("book without checksum"))?;
                let exch_ns = match fields.timestamp {
                    Some(t) => rfc3339_ns(t).ok_or(ParseError::Malformed("bad timestamp"))?,
                    None => 0,
                };
                Ok(Parsed::Book(BookMsg {
                    instrument,
                    snapshot,
                    checksum,
                    exch_ns,
                }))
            }
        }
    }
}

crate::wire::impl_codec!(KrakenCodec);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Codec as _;

    fn codec() -> KrakenCodec {
        let mut m = SymbolMap::default();
        m.insert("BTC/USD", InstrumentIndex(0));
        m.insert("MATIC/USD", InstrumentIndex(1));
        KrakenCodec::new(m, 1 << 20)
    }

    #[test]
    fn rfc3339_round_trips() {
        for ns in [
            0,
            1_696_613_755_440_295_000,
            1_709_251_199_999_999_000,
            951_782_400_000_001_000,
            4_102_444_800_000_000_000,
        ] {
            let text = rfc3339_from_ns(ns);
            assert_eq!(rfc3339_ns(&text), Some(ns), "{text}");
        }
        assert_eq!(
            rfc3339_from_ns(1_696_613_755_440_295_000),
            "2023-10-06T17:35:55.440295Z"
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ns("2023-10-06T17:35:55.440295Z"),
            Some(1_696_613_755_440_295_000)
        );
        assert_eq!(
            rfc3339_ns("2024-02-29T23:59:59.123456789Z"),
            Some(1_709_251_199_123_456_789)
        );
        for bad in [
            "",
            "2023-10-06 17:35:55Z",
            "2023-13-06T17:35:55Z",
            "2023-10-06T17:35:55",
            "2023-10-06T17:35:55.Z",
            "2023-10-06T17:35:55.1234567890Z",
            "2023-10-06T17:35:55+01:00",
            "1969-12-31T23:59:59Z",
            "2023-1a-06T17:35:55Z",
        ] {
            assert_eq!(rfc3339_ns(bad), None, "{bad}");
        }
    }

    /// The documented examples of the v2 trade, ticker and book pages.
    #[test]
    fn documented_examples_parse_exactly() {
        let mut c = codec();
        let trade = r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"sell","price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}"#;
        assert_eq!(c.parse(trade), Ok(Parsed::Trades(2)));
        let (t, ns) = c.trades()[1];
        assert_eq!(t.instrument, InstrumentIndex(1));
        assert_eq!(t.aggressor, Side::Sell);
        assert_eq!(t.price, Price::parse("0.5147").unwrap());
        assert_eq!(t.qty, Qty::parse("1136.19677815").unwrap());
        assert_eq!(t.trade_id, 4_665_847);
        assert_eq!(ns, rfc3339_ns("2023-09-25T07:49:36.925603Z").unwrap());

        let ticker = r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":45283.5,"bid_qty":0.10000000,"ask":45285.2,"ask_qty":0.00100000,"last":45283.5,"volume":1.5,"vwap":45000.0,"low":44000.1,"high":46000.2,"change":100.0,"change_pct":0.22}]}"#;
        let Ok(Parsed::Quote(q)) = c.parse(ticker) else {
            panic!("{:?}", c.parse(ticker))
        };
        assert_eq!(
            (q.bid_price, q.bid_qty, q.ask_price, q.ask_qty),
            (
                Price::parse("45283.5").unwrap(),
                Qty::parse("0.1").unwrap(),
                Price::parse("45285.2").unwrap(),
                Qty::parse("0.001").unwrap()
            )
        );

        let update = r#"{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        assert_eq!(
            c.parse(update),
            Ok(Parsed::Book(BookMsg {
                instrument: InstrumentIndex(1),
                snapshot: false,
                checksum: 2_114_181_697,
                exch_ns: 1_696_613_755_440_295_000,
            }))
        );
        assert_eq!(
            c.bids(),
            &[Level {
                price: Price::parse("0.5657").unwrap(),
                qty: Qty::parse("1098.3947558").unwrap()
            }]
        );
        assert!(c.asks().is_empty());

        for (reply, want) in [
            (r#"{"channel":"heartbeat"}"#, Ok(Parsed::Control)),
            (
                r#"{"channel":"status","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}],"type":"update"}"#,
                Ok(Parsed::Control),
            ),
            (
                r#"{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z","time_out":"2023-09-24T14:10:23.799703Z"}"#,
                Ok(Parsed::Control),
            ),
            (
                r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#,
                Ok(Parsed::Control),
            ),
            (
                r#"{"error":"Currency pair not supported ABC/USD","method":"subscribe","success":false,"symbol":"ABC/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#,
                Err(ParseError::VenueError),
            ),
        ] {
            assert_eq!(c.parse(reply), want, "{reply}");
        }
    }

    /// Kraken writes `channel` first, so `data` is parsed in the same pass; in any other key
    /// order it takes a second pass with the same result.
    #[test]
    fn data_before_channel_parses_the_same() {
        let mut c = codec();
        let first = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.1}],"asks":[],"checksum":7,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        let last = r#"{"data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.1}],"asks":[],"checksum":7,"timestamp":"2023-10-06T17:35:55.440295Z"}],"type":"update","channel":"book"}"#;
        let a = c.parse(first).unwrap();
        let bids = c.bids().to_vec();
        assert_eq!(c.parse(last).unwrap(), a);
        assert_eq!(c.bids(), bids.as_slice());
        let ticker = r#"{"data":[{"symbol":"ETH/USD","bid":1,"bid_qty":1,"ask":2,"ask_qty":1}],"channel":"ticker"}"#;
        assert_eq!(c.parse(ticker), Err(ParseError::UnknownSymbol));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = codec();
        let cases: &[(&str, ParseError)] = &[
            ("", ParseError::Malformed("truncated")),
            ("[1,2]", ParseError::Malformed("unexpected shape")),
            ("{}", ParseError::UnknownStream),
            (r#"{"channel":"ohlc","data":[]}"#, ParseError::UnknownStream),
            (
                r#"{"channel":"book","type":"update"}"#,
                ParseError::Malformed("no data"),
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"ETH/USD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
                ParseError::UnknownSymbol,
            ),
            (
                // Exponent notation is not an exact decimal literal this parser accepts.
                r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1e5,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
                ParseError::Number(tradeloop_engine::fixed::FixedError::InvalidChar {
                    position: 1,
                }),
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"up","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"yesterday"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"book","type":"delta","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1}]}"#,
                ParseError::Malformed("book type is neither snapshot nor update"),
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}"#,
                ParseError::Malformed("book without checksum"),
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1},{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1}],"asks":[],"checksum":1}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"ticker","data":[{"symbol":"BTC/USD","bid":1,"bid_qty":1,"ask":2}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
        ];
        for (frame, want) in cases {
            match (c.parse(frame), want) {
                (Err(ParseError::Number(_)), ParseError::Number(_)) => {}
                (got, want) => assert_eq!(got, Err(*want), "{frame}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut c = codec();
            let _ = c.parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn mutated_frames_never_panic(cut in 0usize..300, byte in proptest::num::u8::ANY) {
            let mut c = codec();
            let frame = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0}],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
            let mut b = frame.as_bytes().to_vec();
            let at = cut % b.len();
            b[at] = byte;
            let _ = c.parse(&String::from_utf8_lossy(&b));
            let _ = c.parse(&frame[..at]);
        }
    }
}
