//! OKX v5 public WebSocket frames → fixed-point engine values. Hot path (feed thread): frames
//! are parsed borrowed; decimal strings go straight to fixed point; levels and trades go into
//! buffers owned by the codec and reused.
//!
//! Handles (`wss://ws.okx.com:8443/ws/v5/public`) pushes `{"arg":{"channel","instId"},
//! ["action",] "data":[…]}` of:
//! - `trades`: `instId`, `tradeId`, `px`, `sz`, `side` (the taker's), `ts` (ms, a string);
//! - `bbo-tbt`: best bid/offer, levels `[px, sz, "0", orders]`, `ts`, `seqId`;
//! - `books`: `snapshot` / `update` with `seqId`, `prevSeqId` and `checksum`;
//! - events (`subscribe`, `unsubscribe`, `notice`) and the text `pong`; `{"event":"error",…}` is
//!   refused as [`ParseError::VenueError`].
//!
//! Docs: <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel>,
//! <https://www.okx.com/docs-v5/en/#overview-websocket-connect>.

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
    each, number_err, parse_whole, payload_pass, DataBuffers, DataSeed, Fixed, FrameBuffers, Level,
    ParseError,
};

const MS: u64 = 1_000_000;

/// Header of a `books` message; its levels are in [`OkxCodec::bids`](crate::wire::Codec::bids) and [`OkxCodec::asks`](crate::wire::Codec::asks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookMsg {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// `action: "snapshot"` (else an update).
    pub snapshot: bool,
    /// `seqId` of this message.
    pub seq_id: i64,
    /// `prevSeqId`: the `seqId` of the message before it (−1 on a snapshot).
    pub prev_seq_id: i64,
    /// CRC32 of the top 25 levels as a signed integer; 0 where OKX no longer sends it.
    pub checksum: i32,
    /// `ts`, ns since the epoch.
    pub exch_ns: u64,
}

/// What a frame was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// `trades`: this many trades, in [`OkxCodec::trades`](crate::wire::Codec::trades).
    Trades(usize),
    /// `books`.
    Book(BookMsg),
    /// `bbo-tbt`.
    Quote {
        /// The quote (`update_id` is the message's `seqId`).
        quote: Quote,
        /// `ts`, ns since the epoch.
        exch_ns: u64,
    },
    /// An event reply or `pong`.
    Control,
}

/// Parses OKX v5 public frames for a set of instruments (`instId`s such as `BTC-USDT`).
///
/// # Allocation
/// Only when a message has more levels or trades than any before it.
#[derive(Debug)]
pub struct OkxCodec {
    buf: FrameBuffers,
}

#[derive(Deserialize, Clone, Copy)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(rename = "instId", borrow, default)]
    inst_id: Option<&'a str>,
}

/// Milliseconds as OKX writes them: a decimal string.
struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&'de str>::deserialize(d)?;
        s.parse::<u64>()
            .map(|ms| Millis(ms.saturating_mul(MS)))
            .map_err(|_| de::Error::custom("ts is not a millisecond count"))
    }
}

/// Fills a level buffer from `[["px","sz","0","orders"], …]` (extra fields ignored).
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
        f.write_str("a list of [px, sz, …] levels")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(level) = seq.next_element_seed(LevelSeed)? {
            self.0.push(level);
        }
        Ok(())
    }
}

struct LevelSeed;

impl<'de> DeserializeSeed<'de> for LevelSeed {
    type Value = Level;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Level, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for LevelSeed {
    type Value = Level;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [px, sz, …] level")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Level, A::Error> {
        let px: &'de str = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("level without px"))?;
        let sz: &'de str = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("level without sz"))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Level {
            price: Price::parse(px).map_err(number_err)?,
            qty: Qty::parse(sz).map_err(number_err)?,
        })
    }
}

/// Fields of a `books` or `bbo-tbt` data object; levels go to the buffers.
#[derive(Default)]
struct BookFields {
    ts: Option<u64>,
    seq_id: Option<i64>,
    prev_seq_id: Option<i64>,
    checksum: Option<i32>,
}

struct BookSeed<'b> {
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
}

impl<'de> DeserializeSeed<'de> for BookSeed<'_> {
    type Value = BookFields;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BookFields, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BookSeed<'_> {
    type Value = BookFields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of one book object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BookFields, A::Error> {
        let fields = seq
            .next_element_seed(BookObject {
                bids: self.bids,
                asks: self.asks,
            })?
            .ok_or_else(|| de::Error::custom("empty book data"))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("several books in one message"));
        }
        Ok(fields)
    }
}

struct BookObject<'b> {
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
}

impl<'de> DeserializeSeed<'de> for BookObject<'_> {
    type Value = BookFields;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BookFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BookObject<'_> {
    type Value = BookFields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a book object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BookFields, A::Error> {
        let mut out = BookFields::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "bids" => map.next_value_seed(LevelsSeed(&mut *self.bids))?,
                "asks" => map.next_value_seed(LevelsSeed(&mut *self.asks))?,
                "ts" => out.ts = Some(map.next_value::<Millis>()?.0),
                "seqId" => out.seq_id = Some(map.next_value()?),
                "prevSeqId" => out.prev_seq_id = Some(map.next_value()?),
                "checksum" => out.checksum = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct TradeMsg<'a> {
    #[serde(rename = "instId", borrow)]
    inst_id: &'a str,
    #[serde(rename = "tradeId", borrow)]
    trade_id: &'a str,
    px: Fixed,
    sz: Fixed,
    #[serde(borrow)]
    side: &'a str,
    ts: Millis,
}

/// The envelope's `data`, parsed in the envelope's own pass when `arg` came before it (as OKX
/// writes it), else kept raw for a second pass.
enum Data<'a> {
    Absent,
    Trades,
    Book(BookFields),
    Raw(&'a RawValue),
}

struct Envelope<'a> {
    event: Option<&'a str>,
    arg: Option<Arg<'a>>,
    action: Option<&'a str>,
    data: Data<'a>,
}

/// This venue, for its [`Out`] buffers.
enum Okx {}

/// Where `data` goes.
type Buffers<'b> = Out<'b, Okx>;

impl<'de> DataBuffers<'de> for Out<'_, Okx> {
    type Key = Arg<'de>;
    type Data = Data<'de>;

    fn error(&self, e: &serde_json::Error) -> ParseError {
        self.error_of(e)
    }

    /// Parses `data` of `arg`'s channel from `d` (other channels' data is skipped).
    fn data<D: de::Deserializer<'de>>(
        &mut self,
        arg: Arg<'de>,
        d: D,
    ) -> Result<Data<'de>, D::Error> {
        let channel = arg.channel;
        if matches!(channel, "books" | "bbo-tbt")
            && arg.inst_id.is_some_and(|i| self.symbols.find(i).is_none())
        {
            self.unknown_symbol = true;
            return Err(de::Error::custom("unknown instrument"));
        }
        match channel {
            "trades" => {
                let (symbols, trades, unknown) =
                    (self.symbols, &mut *self.trades, &mut self.unknown_symbol);
                each(|t: TradeMsg<'de>| {
                    let Some(instrument) = symbols.find(t.inst_id) else {
                        *unknown = true;
                        return Err("unknown instrument".to_owned());
                    };
                    let aggressor = match t.side {
                        "buy" => Side::Buy,
                        "sell" => Side::Sell,
                        _ => return Err("side is neither buy nor sell".to_owned()),
                    };
                    let trade_id = t.trade_id.parse().map_err(|_| "tradeId is not a number")?;
                    trades.push((
                        Trade {
                            instrument,
                            aggressor,
                            price: Price::from_raw(t.px.0),
                            qty: Qty::from_raw(t.sz.0),
                            trade_id,
                        },
                        t.ts.0,
                    ));
                    Ok(())
                })
                .deserialize(d)?;
                Ok(Data::Trades)
            }
            "books" | "bbo-tbt" => BookSeed {
                bids: &mut *self.bids,
                asks: &mut *self.asks,
            }
            .deserialize(d)
            .map(Data::Book),
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
        f.write_str("an OKX message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            event: None,
            arg: None,
            action: None,
            data: Data::Absent,
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "event" => env.event = Some(map.next_value()?),
                "arg" => env.arg = Some(map.next_value()?),
                "action" => env.action = Some(map.next_value()?),
                "data" => {
                    env.data = match &env.arg {
                        Some(arg) => map.next_value_seed(DataSeed(&mut *self.0, *arg))?,
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

impl OkxCodec {
    /// A codec for these instruments, refusing frames above `max_frame_bytes`.
    #[must_use]
    pub fn new(symbols: SymbolMap, max_frame_bytes: usize) -> Self {
        Self {
            buf: FrameBuffers::new(symbols, max_frame_bytes, 512),
        }
    }

    /// Parses one frame.
    ///
    /// # Errors
    /// [`ParseError`]; never panics on any input.
    pub fn parse(&mut self, frame: &str) -> Result<Parsed, ParseError> {
        self.buf.begin(frame)?;
        if frame == "pong" {
            return Ok(Parsed::Control);
        }
        let mut buffers: Buffers<'_> = self.buf.out();
        let mut env =
            parse_whole(frame, EnvelopeSeed(&mut buffers)).map_err(|e| buffers.error(&e))?;
        if let Some(event) = env.event {
            return if event == "error" {
                Err(ParseError::VenueError)
            } else {
                Ok(Parsed::Control)
            };
        }
        let arg = env.arg.ok_or(ParseError::UnknownStream)?;
        if !matches!(arg.channel, "trades" | "books" | "bbo-tbt") {
            return Err(ParseError::UnknownStream);
        }
        if let Data::Raw(raw) = env.data {
            // `data` came before `arg`: a second pass over it.
            env.data = payload_pass(&mut buffers, arg, raw)?;
        }
        let fields = match env.data {
            Data::Absent | Data::Raw(_) => return Err(ParseError::Malformed("no data")),
            Data::Trades => return Ok(Parsed::Trades(self.buf.trades.len())),
            Data::Book(fields) => fields,
        };
        let instrument = self
            .buf
            .instrument(arg.inst_id.ok_or(ParseError::Malformed("no instId"))?)?;
        let exch_ns = fields.ts.ok_or(ParseError::Malformed("no ts"))?;
        let seq_id = fields.seq_id.ok_or(ParseError::Malformed("no seqId"))?;
        if arg.channel == "bbo-tbt" {
            let (Some(bid), Some(ask)) = (self.buf.bids.first(), self.buf.asks.first()) else {
                return Err(ParseError::Malformed("bbo without both sides"));
            };
            return Ok(Parsed::Quote {
                quote: Quote {
                    instrument,
                    bid_price: bid.price,
                    bid_qty: bid.qty,
                    ask_price: ask.price,
                    ask_qty: ask.qty,
                    update_id: u64::try_from(seq_id).unwrap_or(0),
                },
                exch_ns,
            });
        }
        let snapshot = match env.action {
            Some("snapshot") => true,
            Some("update") => false,
            _ => {
                return Err(ParseError::Malformed(
                    "book action is neither snapshot nor update",
                ))
            }
        };
        Ok(Parsed::Book(BookMsg {
            instrument,
            snapshot,
            seq_id,
            prev_seq_id: fields
                .prev_seq_id
                .ok_or(ParseError::Malformed("no prevSeqId"))?,
            checksum: fields.checksum.unwrap_or(0),
            exch_ns,
        }))
    }
}

crate::wire::impl_codec!(OkxCodec);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Codec as _;

    fn codec() -> OkxCodec {
        let mut m = SymbolMap::default();
        m.insert("BTC-USDT", InstrumentIndex(0));
        m.insert("BCH-USDT-SWAP", InstrumentIndex(1));
        OkxCodec::new(m, 1 << 20)
    }

    /// The documented push examples of the trades, bbo-tbt and books channels.
    #[test]
    fn documented_examples_parse_exactly() {
        let mut c = codec();
        let trade = r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234}]}"#;
        assert_eq!(c.parse(trade), Ok(Parsed::Trades(1)));
        let (t, ns) = c.trades()[0];
        assert_eq!(t.aggressor, Side::Buy);
        assert_eq!(t.price, Price::parse("42219.9").unwrap());
        assert_eq!(t.qty, Qty::parse("0.12060306").unwrap());
        assert_eq!(t.trade_id, 130_639_474);
        assert_eq!(ns, 1_630_048_897_897 * MS);

        let bbo = r#"{"arg":{"channel":"bbo-tbt","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}"#;
        let Ok(Parsed::Quote { quote, exch_ns }) = c.parse(bbo) else {
            panic!("{:?}", c.parse(bbo))
        };
        assert_eq!(quote.instrument, InstrumentIndex(1));
        assert_eq!(
            (quote.bid_price, quote.bid_qty, quote.ask_price),
            (
                Price::parse("111.05").unwrap(),
                Qty::parse("57745").unwrap(),
                Price::parse("111.06").unwrap()
            )
        );
        assert_eq!({ quote.update_id }, 363_996_337);
        assert_eq!(exch_ns, 1_670_324_386_802 * MS);

        let book = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["8476.98","415","0","13"],["8477","7","0","2"]],"bids":[["8476","256","0","12"],["8475.55","101","0","1"]],"ts":"1597026383085","checksum":-855196043,"prevSeqId":-1,"seqId":123456}]}"#;
        assert_eq!(
            c.parse(book),
            Ok(Parsed::Book(BookMsg {
                instrument: InstrumentIndex(0),
                snapshot: true,
                seq_id: 123_456,
                prev_seq_id: -1,
                checksum: -855_196_043,
                exch_ns: 1_597_026_383_085 * MS,
            }))
        );
        assert_eq!(c.asks()[1].price, Price::parse("8477").unwrap());
        assert_eq!(c.bids()[0].qty, Qty::parse("256").unwrap());

        for (reply, want) in [
            ("pong", Ok(Parsed::Control)),
            (
                r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#,
                Ok(Parsed::Control),
            ),
            (
                r#"{"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\", \"argss\":[{ \"channel\" : \"books\", \"instId\" : \"BTC-USDT\"}]}","connId":"a4d3ae55"}"#,
                Err(ParseError::VenueError),
            ),
        ] {
            assert_eq!(c.parse(reply), want, "{reply}");
        }
    }

    /// OKX writes `arg` first, so `data` is parsed in the same pass; in any other key order it
    /// takes a second pass with the same result.
    #[test]
    fn data_before_arg_parses_the_same() {
        let mut c = codec();
        let first = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415","0","13"]],"bids":[],"ts":"1","checksum":0,"prevSeqId":1,"seqId":2}]}"#;
        let last = r#"{"data":[{"asks":[["8476.98","415","0","13"]],"bids":[],"ts":"1","checksum":0,"prevSeqId":1,"seqId":2}],"action":"update","arg":{"channel":"books","instId":"BTC-USDT"}}"#;
        let a = c.parse(first).unwrap();
        let asks = c.asks().to_vec();
        assert_eq!(c.parse(last).unwrap(), a);
        assert_eq!(c.asks(), asks.as_slice());
        let trade = r#"{"data":[{"instId":"BTC-USDT","tradeId":"5","px":"1","sz":"2","side":"sell","ts":"3"}],"arg":{"channel":"trades","instId":"BTC-USDT"}}"#;
        assert_eq!(c.parse(trade), Ok(Parsed::Trades(1)));
        assert_eq!(c.trades()[0].0.trade_id, 5);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = codec();
        let cases: &[(&str, ParseError)] = &[
            ("ping", ParseError::Malformed("syntax")),
            ("{}", ParseError::UnknownStream),
            (
                r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[]}"#,
                ParseError::UnknownStream,
            ),
            (
                r#"{"arg":{"channel":"books","instId":"ETH-USDT"},"action":"update","data":[]}"#,
                ParseError::UnknownSymbol,
            ),
            (
                r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update"}"#,
                ParseError::Malformed("no data"),
            ),
            (
                r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","seqId":2}]}"#,
                ParseError::Malformed("no prevSeqId"),
            ),
            (
                r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[{"asks":[],"bids":[],"ts":"1","seqId":2,"prevSeqId":1}]}"#,
                ParseError::Malformed("book action is neither snapshot nor update"),
            ),
            (
                r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["1"]],"bids":[],"ts":"1","seqId":2,"prevSeqId":1}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"x","seqId":2,"prevSeqId":1}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[["1","1","0","1"]],"ts":"1","seqId":2}]}"#,
                ParseError::Malformed("bbo without both sides"),
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"up","ts":"1"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"-","sz":"1","side":"buy","ts":"1"}]}"#,
                ParseError::Number(tradeloop_engine::fixed::FixedError::Empty),
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
            let frame = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476","0","0","0"]],"ts":"1597026383085","checksum":0,"prevSeqId":123456,"seqId":123457}]}"#;
            let mut b = frame.as_bytes().to_vec();
            let at = cut % b.len();
            b[at] = byte;
            let _ = c.parse(&String::from_utf8_lossy(&b));
            let _ = c.parse(&frame[..at]);
        }
    }
}
