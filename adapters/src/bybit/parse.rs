//! Bybit v5 public WebSocket frames → fixed-point engine values. Hot path (feed thread): frames
//! are parsed borrowed; numbers go straight from their decimal strings to fixed point; levels
//! and trades go into buffers owned by the codec and reused, so a message allocates nothing once
//! the buffers have grown to the largest message seen.
//!
//! Handles, on the spot and linear endpoints (`wss://stream.bybit.com/v5/public/{spot,linear}`):
//! - `publicTrade.{symbol}`: several trades per message (`T`, `s`, `S`, `v`, `p`, `i`);
//! - `orderbook.{depth}.{symbol}`: `snapshot` and `delta` messages with `u` (update id) and
//!   `seq`; depth 1 is the best bid/offer;
//! - operation replies (`{"success":true,"op":"subscribe",…}`, pongs in the spot form
//!   `{"ret_msg":"pong","op":"ping",…}` and the linear form `{"op":"pong",…}`). A reply with
//!   `success: false` is refused as [`ParseError::VenueError`].
//!
//! Docs: <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook>,
//! <https://bybit-exchange.github.io/docs/v5/ws/connect>.

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tradeloop_engine::event::{Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::symbols::SymbolMap;
use crate::wire::Out;
use crate::wire::{
    parse_whole, payload_pass, DataBuffers, DataSeed, Fixed, FrameBuffers, Level, LevelsSeed,
    ParseError,
};

const MS: u64 = 1_000_000;

/// Header of an `orderbook.{depth}.{symbol}` message; its levels are in [`BybitCodec::bids`](crate::wire::Codec::bids)
/// and [`BybitCodec::asks`](crate::wire::Codec::asks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookMsg {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// The topic's depth (1 = best bid/offer).
    pub depth: u16,
    /// `type: "snapshot"` (else a delta).
    pub snapshot: bool,
    /// Update id `u`: +1 per message of the topic; 1 after a venue restart.
    pub update_id: u64,
    /// Cross sequence `seq`.
    pub seq: u64,
    /// Message time `ts`, ns since the epoch.
    pub exch_ns: u64,
}

/// What a frame was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// `publicTrade`: this many trades, in [`BybitCodec::trades`](crate::wire::Codec::trades).
    Trades(usize),
    /// `orderbook.{depth}`.
    Book(BookMsg),
    /// A pong.
    Pong,
    /// A successful reply to a subscribe or unsubscribe request.
    ControlReply,
}

/// Parses Bybit v5 public frames for a set of instruments.
///
/// # Allocation
/// Only when a message has more levels or trades than any before it (the buffers grow).
#[derive(Debug)]
pub struct BybitCodec {
    buf: FrameBuffers,
}

#[derive(Deserialize)]
struct TradeMsg<'a> {
    #[serde(rename = "T")]
    time_ms: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "S", borrow)]
    side: &'a str,
    v: Fixed,
    p: Fixed,
    #[serde(borrow)]
    i: &'a str,
}

/// Fills the trade buffer from a `publicTrade` data array; every trade must be of the topic's
/// symbol.
struct TradesSeed<'b> {
    symbol: &'b str,
    instrument: InstrumentIndex,
    out: &'b mut Vec<(Trade, u64)>,
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
        f.write_str("a list of public trades")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(t) = seq.next_element::<TradeMsg<'de>>()? {
            if !t.symbol.eq_ignore_ascii_case(self.symbol) {
                return Err(de::Error::custom("trade of another symbol than its topic"));
            }
            let aggressor = match t.side {
                "Buy" => Side::Buy,
                "Sell" => Side::Sell,
                _ => return Err(de::Error::custom("taker side is neither Buy nor Sell")),
            };
            let trade = Trade {
                instrument: self.instrument,
                aggressor,
                price: Price::from_raw(t.p.0),
                qty: Qty::from_raw(t.v.0),
                trade_id: trade_id(t.i),
            };
            self.out.push((trade, t.time_ms.saturating_mul(MS)));
        }
        Ok(())
    }
}

/// A trade id as a number: spot ids are decimal; linear ids are UUIDs, hashed (FNV-1a 64) so
/// that equal ids stay equal.
fn trade_id(id: &str) -> u64 {
    if let Ok(n) = id.parse::<u64>() {
        return n;
    }
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `s`, `u` and `seq` of a book message; levels go to the buffers.
#[derive(Default)]
struct BookFields<'a> {
    symbol: Option<&'a str>,
    update_id: Option<u64>,
    seq: u64,
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
        f.write_str("an order book message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BookFields<'de>, A::Error> {
        let mut out = BookFields::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "s" => out.symbol = Some(map.next_value()?),
                "u" => out.update_id = Some(map.next_value()?),
                "seq" => out.seq = map.next_value()?,
                "b" => map.next_value_seed(LevelsSeed(&mut *self.bids))?,
                "a" => map.next_value_seed(LevelsSeed(&mut *self.asks))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// The envelope's `data`, parsed in the envelope's own pass when the topic came before it (as
/// Bybit writes it), else kept raw for a second pass.
enum Data<'a> {
    Absent,
    Trades,
    Book(BookFields<'a>),
    Raw(&'a RawValue),
}

/// The envelope's fields.
struct Envelope<'a> {
    topic: Option<&'a str>,
    kind: Option<&'a str>,
    ts: u64,
    op: Option<&'a str>,
    success: Option<bool>,
    ret_msg: Option<&'a str>,
    data: Data<'a>,
}

/// This venue, for its [`Out`] buffers.
enum Bybit {}

/// Where `data` goes.
type Buffers<'b> = Out<'b, Bybit>;

impl<'de> DataBuffers<'de> for Out<'_, Bybit> {
    type Key = &'de str;
    type Data = Data<'de>;

    fn error(&self, e: &serde_json::Error) -> ParseError {
        self.error_of(e)
    }

    fn data<D: de::Deserializer<'de>>(
        &mut self,
        topic: &'de str,
        d: D,
    ) -> Result<Data<'de>, D::Error> {
        let Some((channel, rest)) = topic.split_once('.') else {
            self.unknown_topic = true;
            return Err(de::Error::custom("unknown topic"));
        };
        match channel {
            "publicTrade" => {
                let Some(instrument) = self.symbols.find(rest) else {
                    self.unknown_symbol = true;
                    return Err(de::Error::custom("unknown symbol"));
                };
                TradesSeed {
                    symbol: rest,
                    instrument,
                    out: &mut *self.trades,
                }
                .deserialize(d)?;
                Ok(Data::Trades)
            }
            "orderbook" => BookSeed {
                bids: &mut *self.bids,
                asks: &mut *self.asks,
            }
            .deserialize(d)
            .map(Data::Book),
            _ => {
                self.unknown_topic = true;
                Err(de::Error::custom("unknown topic"))
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
        f.write_str("a Bybit message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            topic: None,
            kind: None,
            ts: 0,
            op: None,
            success: None,
            ret_msg: None,
            data: Data::Absent,
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "topic" => env.topic = Some(map.next_value()?),
                "type" => env.kind = Some(map.next_value()?),
                "ts" => env.ts = map.next_value()?,
                "op" => env.op = Some(map.next_value()?),
                "success" => env.success = Some(map.next_value()?),
                "ret_msg" => env.ret_msg = Some(map.next_value()?),
                "data" => {
                    env.data = match env.topic {
                        Some(topic) => map.next_value_seed(DataSeed(&mut *self.0, topic))?,
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

impl BybitCodec {
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
        let Some(topic) = env.topic else {
            return match (env.op, env.success) {
                (Some(_), Some(false)) => Err(ParseError::VenueError),
                (Some("pong"), _) => Ok(Parsed::Pong),
                (Some("ping"), _) if env.ret_msg == Some("pong") => Ok(Parsed::Pong),
                (Some(_), _) => Ok(Parsed::ControlReply),
                (None, _) => Err(ParseError::UnknownStream),
            };
        };
        if let Data::Raw(raw) = env.data {
            // `data` came before `topic`: a second pass over it.
            env.data = payload_pass(&mut buffers, topic, raw)?;
        }
        match env.data {
            Data::Absent => Err(ParseError::Malformed("no data")),
            Data::Trades => Ok(Parsed::Trades(self.buf.trades.len())),
            Data::Book(fields) => {
                let rest = topic.strip_prefix("orderbook.").unwrap_or_default();
                let (depth, symbol) = rest.split_once('.').ok_or(ParseError::UnknownStream)?;
                let depth: u16 = depth.parse().map_err(|_| ParseError::UnknownStream)?;
                let instrument = self.buf.instrument(symbol)?;
                let snapshot = match env.kind {
                    Some("snapshot") => true,
                    Some("delta") => false,
                    _ => {
                        return Err(ParseError::Malformed(
                            "book type is neither snapshot nor delta",
                        ))
                    }
                };
                if fields
                    .symbol
                    .is_some_and(|s| !s.eq_ignore_ascii_case(symbol))
                {
                    return Err(ParseError::Malformed(
                        "book of another symbol than its topic",
                    ));
                }
                let update_id = fields
                    .update_id
                    .ok_or(ParseError::Malformed("book without u"))?;
                Ok(Parsed::Book(BookMsg {
                    instrument,
                    depth,
                    snapshot,
                    update_id,
                    seq: fields.seq,
                    exch_ns: env.ts.saturating_mul(MS),
                }))
            }
            Data::Raw(_) => Err(ParseError::Malformed("unexpected shape")),
        }
    }
}

crate::wire::impl_codec!(BybitCodec);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Codec as _;
    use tradeloop_engine::fixed::FixedError;

    fn codec() -> BybitCodec {
        let mut m = SymbolMap::default();
        m.insert("BTCUSDT", InstrumentIndex(0));
        m.insert("XRPUSDT", InstrumentIndex(1));
        BybitCodec::new(m, 1 << 20)
    }

    /// The documented examples (v5 public trade and order book pages), verbatim but for
    /// whitespace.
    #[test]
    fn documented_examples_parse_exactly() {
        let mut c = codec();
        let trade = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}"#;
        assert_eq!(c.parse(trade), Ok(Parsed::Trades(1)));
        let (t, ns) = c.trades()[0];
        assert_eq!(t.instrument, InstrumentIndex(0));
        assert_eq!(t.aggressor, Side::Buy);
        assert_eq!(t.price, Price::parse("16578.50").unwrap());
        assert_eq!(t.qty, Qty::parse("0.001").unwrap());
        assert_eq!(t.trade_id, trade_id("20f43950-d8dd-5b31-9112-a178eb6023af"));
        assert_eq!(ns, 1_672_304_486_865 * MS);

        let book = r#"{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"],["16493.00","0.100"]],"a":[["16611.00","0.029"],["16612.00","0.213"]],"u":18521288,"seq":7961638724},"cts":1672304484976}"#;
        let Ok(Parsed::Book(b)) = c.parse(book) else {
            panic!("{:?}", c.parse(book))
        };
        assert_eq!(
            b,
            BookMsg {
                instrument: InstrumentIndex(0),
                depth: 50,
                snapshot: true,
                update_id: 18_521_288,
                seq: 7_961_638_724,
                exch_ns: 1_672_304_484_978 * MS,
            }
        );
        assert_eq!(c.bids().len(), 2);
        assert_eq!(c.asks()[1].price, Price::parse("16612.00").unwrap());
        assert_eq!(c.asks()[1].qty, Qty::parse("0.213").unwrap());

        for (reply, want) in [
            (
                r#"{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}"#,
                Ok(Parsed::Pong),
            ),
            (
                r#"{"req_id":"100001","op":"pong","args":["1672916271846"],"conn_id":"2324d924-aa4d-45b0-a858-7b8be29ab52b"}"#,
                Ok(Parsed::Pong),
            ),
            (
                r#"{"success":true,"ret_msg":"","conn_id":"cejreaspqfh3sjdnldmg-p","req_id":"1","op":"subscribe"}"#,
                Ok(Parsed::ControlReply),
            ),
            (
                r#"{"success":false,"ret_msg":"error:handler not found,topic:orderbook.7.BTCUSDT","conn_id":"x","op":"subscribe"}"#,
                Err(ParseError::VenueError),
            ),
        ] {
            assert_eq!(c.parse(reply), want, "{reply}");
        }
    }

    /// Bybit writes `topic` first, so `data` is parsed in the same pass; in any other key order
    /// it takes a second pass with the same result.
    #[test]
    fn data_before_topic_parses_the_same() {
        let mut c = codec();
        let first = r#"{"topic":"orderbook.50.XRPUSDT","type":"delta","ts":5,"data":{"s":"XRPUSDT","b":[["1.9531","6198"]],"a":[["1.9535","8415"],["1.9544","0"]],"u":7,"seq":9}}"#;
        let last = r#"{"data":{"s":"XRPUSDT","b":[["1.9531","6198"]],"a":[["1.9535","8415"],["1.9544","0"]],"u":7,"seq":9},"ts":5,"type":"delta","topic":"orderbook.50.XRPUSDT"}"#;
        let a = c.parse(first).unwrap();
        let (bids, asks) = (c.bids().to_vec(), c.asks().to_vec());
        assert_eq!(c.parse(last).unwrap(), a);
        assert_eq!((c.bids(), c.asks()), (bids.as_slice(), asks.as_slice()));
        assert_eq!(asks.len(), 2);
        let trade = r#"{"data":[{"T":1,"s":"BTCUSDT","S":"Sell","v":"2","p":"3","i":"9"}],"topic":"publicTrade.BTCUSDT"}"#;
        assert_eq!(c.parse(trade), Ok(Parsed::Trades(1)));
        assert_eq!(c.trades()[0].0.trade_id, 9);
        let unknown = r#"{"data":[],"topic":"publicTrade.DOGEUSDT"}"#;
        assert_eq!(c.parse(unknown), Err(ParseError::UnknownSymbol));
    }

    #[test]
    fn several_trades_per_message_and_numeric_ids() {
        let mut c = codec();
        let f = r#"{"topic":"publicTrade.XRPUSDT","type":"snapshot","ts":2,"data":[{"T":1,"s":"XRPUSDT","S":"Sell","v":"10","p":"1.9531","i":"2290000000036455162","BT":false},{"T":2,"s":"XRPUSDT","S":"Buy","v":"5.5","p":"1.9532","i":"2290000000036455163","BT":false}]}"#;
        assert_eq!(c.parse(f), Ok(Parsed::Trades(2)));
        let t = c.trades();
        assert_eq!(t[0].0.aggressor, Side::Sell);
        assert_eq!(t[0].0.trade_id, 2_290_000_000_036_455_162);
        assert_eq!(t[1].0.qty, Qty::parse("5.5").unwrap());
        assert_eq!(t[1].1, 2 * MS);
        // The buffer is reused: a one-trade message leaves one trade.
        let one = f.replace(
            r#",{"T":2,"s":"XRPUSDT","S":"Buy","v":"5.5","p":"1.9532","i":"2290000000036455163","BT":false}"#,
            "",
        );
        assert_eq!(c.parse(&one), Ok(Parsed::Trades(1)));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = codec();
        let cases: &[(&str, ParseError)] = &[
            ("", ParseError::Malformed("truncated")),
            ("not json", ParseError::Malformed("syntax")),
            ("{}", ParseError::UnknownStream),
            (
                r#"{"topic":"tickers.BTCUSDT","data":{}}"#,
                ParseError::UnknownStream,
            ),
            (
                r#"{"topic":"publicTrade.DOGEUSDT","data":[]}"#,
                ParseError::UnknownSymbol,
            ),
            (
                r#"{"topic":"publicTrade.BTCUSDT"}"#,
                ParseError::Malformed("no data"),
            ),
            (
                r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"XRPUSDT","S":"Buy","v":"1","p":"1","i":"1"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"1"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1e5","i":"1"}]}"#,
                ParseError::Number(FixedError::InvalidChar { position: 0 }),
            ),
            (
                r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["1","0.1234567890123"]],"a":[],"u":2}}"#,
                ParseError::Number(FixedError::TooPrecise),
            ),
            (
                r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[]}}"#,
                ParseError::Malformed("book without u"),
            ),
            (
                r#"{"topic":"orderbook.50.BTCUSDT","type":"partial","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}"#,
                ParseError::Malformed("book type is neither snapshot nor delta"),
            ),
            (
                r#"{"topic":"orderbook.x.BTCUSDT","type":"delta","ts":1,"data":{"u":2}}"#,
                ParseError::UnknownStream,
            ),
            (
                r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"XRPUSDT","b":[],"a":[],"u":2}}"#,
                ParseError::Malformed("book of another symbol than its topic"),
            ),
            (
                r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["1"]],"a":[],"u":2}}"#,
                ParseError::Malformed("unexpected shape"),
            ),
        ];
        for (frame, want) in cases {
            let got = c.parse(frame);
            match (got, want) {
                (Err(ParseError::Number(_)), ParseError::Number(_)) => {}
                (got, want) => assert_eq!(got, Err(*want), "{frame}"),
            }
        }
        let big = format!(
            r#"{{"topic":"publicTrade.BTCUSDT","data":[{}]}}"#,
            " ".repeat(2 << 20)
        );
        assert_eq!(c.parse(&big), Err(ParseError::Oversize));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut c = codec();
            let text = String::from_utf8_lossy(&bytes);
            let _ = c.parse(&text);
        }

        #[test]
        fn mutated_real_frames_never_panic(cut in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut c = codec();
            let frame = r#"{"topic":"orderbook.50.XRPUSDT","type":"delta","ts":1733011200693,"data":{"s":"XRPUSDT","b":[["1.9531","6198"],["1.9529","2080"]],"a":[["1.9535","8415"]],"u":20254870,"seq":130020239261},"cts":1733011200691}"#;
            let mut b = frame.as_bytes().to_vec();
            let at = cut % b.len();
            b[at] = byte;
            let _ = c.parse(&String::from_utf8_lossy(&b));
            let _ = c.parse(&frame[..at]);
        }
    }
}
