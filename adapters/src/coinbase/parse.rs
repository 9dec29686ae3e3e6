//! Coinbase Advanced Trade WebSocket frames → fixed-point engine values. Hot path (feed
//! thread): frames are parsed borrowed; decimal strings go straight to fixed point; levels,
//! trades and quotes go into buffers owned by the codec and reused.
//!
//! Every message (`wss://advanced-trade-ws.coinbase.com`) is an envelope `{"channel", "client_id",
//! "timestamp", "sequence_num", "events": […]}` whose `sequence_num` grows by one per message
//! on the connection, across channels. Handles:
//! - `l2_data` (the `level2` channel): `snapshot` and `update` events per product, each update
//!   a `side` (`bid` / `offer`), `price_level` and absolute `new_quantity` (`"0"` removes);
//! - `market_trades`: trades with `side` the **maker's** side (the aggressor is the other),
//!   `trade_id`, `time`; the `snapshot` event (recent history on subscribing) is marked so the
//!   feed can skip it;
//! - `ticker`: best bid/offer with quantities;
//! - `heartbeats`, `subscriptions`, `status`; `{"type":"error",…}` is refused as
//!   [`ParseError::VenueError`].
//!
//! Docs: <https://docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-channels>.

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tradeloop_engine::event::{Quote, Side, Trade};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::kraken::parse::rfc3339_ns;
use crate::symbols::SymbolMap;
use crate::wire::{
    each, json_err, parse_whole, payload_pass, DataBuffers, DataSeed, Fixed, FrameBuffers, Level,
    ParseError,
};

/// One product's book event of an `l2_data` message; its levels are
/// `bids()[bids.0..bids.1]` and `asks()[asks.0..asks.1]` of the codec, in message order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookEvent {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// `type: "snapshot"` (else an update).
    pub snapshot: bool,
    /// Range of the event's bid levels in [`CoinbaseCodec::bids`](crate::wire::Codec::bids).
    pub bids: (usize, usize),
    /// Range of the event's ask levels in [`CoinbaseCodec::asks`](crate::wire::Codec::asks).
    pub asks: (usize, usize),
}

/// What a frame was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Payload {
    /// `l2_data`: [`CoinbaseCodec::books`].
    Books,
    /// `market_trades` updates: [`CoinbaseCodec::trades`](crate::wire::Codec::trades); `history` for the snapshot event of
    /// recent trades sent on subscribing.
    Trades {
        /// The trades are the subscription's snapshot of past trades.
        history: bool,
    },
    /// `ticker`: [`CoinbaseCodec::quotes`].
    Quotes,
    /// `heartbeats`, `subscriptions`, `status` and other channels without market data.
    Control,
}

/// A parsed message: its connection-wide sequence number, its time and its payload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Parsed {
    /// `sequence_num`.
    pub sequence: u64,
    /// `timestamp`, ns since the epoch.
    pub exch_ns: u64,
    /// What it carried.
    pub payload: Payload,
}

/// Parses Coinbase Advanced Trade frames for a set of instruments (product ids such as
/// `BTC-USD`).
///
/// # Allocation
/// Only when a message has more levels, trades or quotes than any before it.
#[derive(Debug)]
pub struct CoinbaseCodec {
    buf: FrameBuffers,
    books: Vec<BookEvent>,
    quotes: Vec<Quote>,
}

/// Buffers the event visitors fill, and the typed error of an unknown product.
struct Out<'b> {
    symbols: &'b SymbolMap,
    books: &'b mut Vec<BookEvent>,
    bids: &'b mut Vec<Level>,
    asks: &'b mut Vec<Level>,
    trades: &'b mut Vec<(Trade, u64)>,
    quotes: &'b mut Vec<Quote>,
    unknown: bool,
    history: bool,
}

impl Out<'_> {
    fn instrument<E: de::Error>(&mut self, product: &str) -> Result<InstrumentIndex, E> {
        self.symbols.find(product).ok_or_else(|| {
            self.unknown = true;
            E::custom("unknown product")
        })
    }
}

#[derive(Clone, Copy)]
enum Channel {
    Level2,
    Trades,
    Ticker,
}

/// `events: [...]` of a market-data channel.
struct EventsSeed<'o, 'b> {
    out: &'o mut Out<'b>,
    channel: Channel,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(EventSeed {
                out: &mut *self.out,
                channel: self.channel,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct EventSeed<'o, 'b> {
    out: &'o mut Out<'b>,
    channel: Channel,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[derive(Deserialize)]
struct L2Update<'a> {
    #[serde(borrow)]
    side: &'a str,
    price_level: Fixed,
    new_quantity: Fixed,
}

#[derive(Deserialize)]
struct TradeMsg<'a> {
    #[serde(borrow)]
    trade_id: &'a str,
    #[serde(borrow)]
    product_id: &'a str,
    price: Fixed,
    size: Fixed,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    time: &'a str,
}

#[derive(Deserialize)]
struct TickerMsg<'a> {
    #[serde(borrow)]
    product_id: &'a str,
    best_bid: Fixed,
    best_bid_quantity: Fixed,
    best_ask: Fixed,
    best_ask_quantity: Fixed,
}

impl<'de> Visitor<'de> for EventSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        let (mut snapshot, mut product) = (None, None);
        let (b0, a0) = (out.bids.len(), out.asks.len());
        let mut levels_seen = false;
        while let Some(key) = map.next_key::<&'de str>()? {
            match (self.channel, key) {
                (_, "type") => {
                    snapshot = Some(match map.next_value::<&'de str>()? {
                        "snapshot" => true,
                        "update" => false,
                        _ => return Err(de::Error::custom("event type")),
                    });
                }
                (Channel::Level2, "product_id") => product = Some(map.next_value::<&'de str>()?),
                (Channel::Level2, "updates") => {
                    levels_seen = true;
                    let (bids, asks) = (&mut *out.bids, &mut *out.asks);
                    map.next_value_seed(each(|u: L2Update<'de>| {
                        let level = Level {
                            price: Price::from_raw(u.price_level.0),
                            qty: Qty::from_raw(u.new_quantity.0),
                        };
                        match u.side {
                            "bid" => bids.push(level),
                            "offer" | "ask" => asks.push(level),
                            _ => return Err("side is neither bid nor offer".to_owned()),
                        }
                        Ok(())
                    }))?;
                }
                (Channel::Trades, "trades") => {
                    let (symbols, trades) = (out.symbols, &mut *out.trades);
                    let mut unknown = false;
                    let r = map.next_value_seed(each(|t: TradeMsg<'de>| {
                        let Some(instrument) = symbols.find(t.product_id) else {
                            unknown = true;
                            return Err("unknown product".to_owned());
                        };
                        // The maker's side is reported: the aggressor took the other.
                        let aggressor = match t.side {
                            "BUY" => Side::Sell,
                            "SELL" => Side::Buy,
                            _ => return Err("side is neither BUY nor SELL".to_owned()),
                        };
                        let exch_ns = rfc3339_ns(t.time).ok_or("trade time")?;
                        trades.push((
                            Trade {
                                instrument,
                                aggressor,
                                price: Price::from_raw(t.price.0),
                                qty: Qty::from_raw(t.size.0),
                                trade_id: numeric_id(t.trade_id),
                            },
                            exch_ns,
                        ));
                        Ok(())
                    }));
                    out.unknown |= unknown;
                    r?;
                }
                (Channel::Ticker, "tickers") => {
                    let (symbols, quotes) = (out.symbols, &mut *out.quotes);
                    let mut unknown = false;
                    let r = map.next_value_seed(each(|t: TickerMsg<'de>| {
                        let Some(instrument) = symbols.find(t.product_id) else {
                            unknown = true;
                            return Err("unknown product".to_owned());
                        };
                        quotes.push(Quote {
                            instrument,
                            bid_price: Price::from_raw(t.best_bid.0),
                            bid_qty: Qty::from_raw(t.best_bid_quantity.0),
                            ask_price: Price::from_raw(t.best_ask.0),
                            ask_qty: Qty::from_raw(t.best_ask_quantity.0),
                            update_id: 0,
                        });
                        Ok(())
                    }));
                    out.unknown |= unknown;
                    r?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let snapshot = snapshot.ok_or_else(|| de::Error::custom("event without type"))?;
        match self.channel {
            Channel::Level2 => {
                let product = product.ok_or_else(|| de::Error::custom("event without product"))?;
                if !levels_seen {
                    return Err(de::Error::custom("event without updates"));
                }
                let instrument = out.instrument(product)?;
                out.books.push(BookEvent {
                    instrument,
                    snapshot,
                    bids: (b0, out.bids.len()),
                    asks: (a0, out.asks.len()),
                });
            }
            Channel::Trades => out.history |= snapshot,
            Channel::Ticker => {}
        }
        Ok(())
    }
}

/// Trade ids are decimal strings; anything else is hashed (FNV-1a 64) so equal ids stay equal.
fn numeric_id(id: &str) -> u64 {
    id.parse::<u64>().unwrap_or_else(|_| {
        id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    })
}

fn market_channel(channel: &str) -> Option<Channel> {
    match channel {
        "l2_data" => Some(Channel::Level2),
        "market_trades" => Some(Channel::Trades),
        "ticker" => Some(Channel::Ticker),
        _ => None,
    }
}

/// The envelope: `events` are parsed in its own pass when `channel` came before them (as
/// Coinbase writes it), else kept raw for a second pass.
struct Envelope<'a> {
    channel: Option<&'a str>,
    kind: Option<&'a str>,
    timestamp: Option<&'a str>,
    sequence_num: Option<u64>,
    events_parsed: bool,
    raw_events: Option<&'a RawValue>,
}

struct EnvelopeSeed<'o, 'b>(&'o mut Out<'b>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_> {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Coinbase message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            channel: None,
            kind: None,
            timestamp: None,
            sequence_num: None,
            events_parsed: false,
            raw_events: None,
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "channel" => env.channel = Some(map.next_value()?),
                "type" => env.kind = Some(map.next_value()?),
                "timestamp" => env.timestamp = Some(map.next_value()?),
                "sequence_num" => env.sequence_num = Some(map.next_value()?),
                "events" => match env.channel.map(market_channel) {
                    Some(Some(channel)) => {
                        map.next_value_seed(DataSeed(&mut *self.0, channel))?;
                        env.events_parsed = true;
                    }
                    Some(None) => {
                        map.next_value::<IgnoredAny>()?;
                        env.events_parsed = true;
                    }
                    None => env.raw_events = Some(map.next_value()?),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

impl<'de> DataBuffers<'de> for Out<'_> {
    type Key = Channel;
    type Data = ();

    fn data<D: de::Deserializer<'de>>(&mut self, channel: Channel, d: D) -> Result<(), D::Error> {
        EventsSeed { out: self, channel }.deserialize(d)
    }

    fn error(&self, e: &serde_json::Error) -> ParseError {
        if self.unknown {
            ParseError::UnknownSymbol
        } else {
            json_err(e)
        }
    }
}

impl CoinbaseCodec {
    /// A codec for these products, refusing frames above `max_frame_bytes`.
    #[must_use]
    pub fn new(symbols: SymbolMap, max_frame_bytes: usize) -> Self {
        Self {
            buf: FrameBuffers::new(symbols, max_frame_bytes, 1024),
            books: Vec::with_capacity(4),
            quotes: Vec::with_capacity(4),
        }
    }

    /// Book events of the last `l2_data` message.
    #[must_use]
    pub fn books(&self) -> &[BookEvent] {
        &self.books
    }

    /// Quotes of the last `ticker` message.
    #[must_use]
    pub fn quotes(&self) -> &[Quote] {
        &self.quotes
    }

    /// Parses one frame.
    ///
    /// # Errors
    /// [`ParseError`]; never panics on any input.
    pub fn parse(&mut self, frame: &str) -> Result<Parsed, ParseError> {
        self.buf.begin(frame)?;
        self.books.clear();
        self.quotes.clear();
        let mut out = Out {
            symbols: &self.buf.symbols,
            books: &mut self.books,
            bids: &mut self.buf.bids,
            asks: &mut self.buf.asks,
            trades: &mut self.buf.trades,
            quotes: &mut self.quotes,
            unknown: false,
            history: false,
        };
        let env = parse_whole(frame, EnvelopeSeed(&mut out)).map_err(|e| out.error(&e))?;
        let Some(channel) = env.channel else {
            return Err(if env.kind == Some("error") {
                ParseError::VenueError
            } else {
                ParseError::UnknownStream
            });
        };
        let sequence = env
            .sequence_num
            .ok_or(ParseError::Malformed("no sequence_num"))?;
        let exch_ns = env.timestamp.and_then(rfc3339_ns).unwrap_or(0);
        let Some(channel) = market_channel(channel) else {
            return Ok(Parsed {
                sequence,
                exch_ns,
                payload: Payload::Control,
            });
        };
        if let Some(raw) = env.raw_events {
            // `events` came before `channel`: a second pass over them.
            payload_pass(&mut out, channel, raw)?;
        } else if !env.events_parsed {
            return Err(ParseError::Malformed("no events"));
        }
        let payload = match channel {
            Channel::Level2 => Payload::Books,
            Channel::Trades => Payload::Trades {
                history: out.history,
            },
            Channel::Ticker => Payload::Quotes,
        };
        Ok(Parsed {
            sequence,
            exch_ns,
            payload,
        })
    }
}

crate::wire::impl_codec!(CoinbaseCodec);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Codec as _;

    fn codec() -> CoinbaseCodec {
        let mut m = SymbolMap::default();
        m.insert("BTC-USD", InstrumentIndex(0));
        m.insert("ETH-USD", InstrumentIndex(1));
        CoinbaseCodec::new(m, 1 << 20)
    }

    /// The documented examples of the level2, market_trades, ticker and heartbeats channels.
    #[test]
    fn documented_examples_parse_exactly() {
        let mut c = codec();
        let l2 = r#"{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.73","new_quantity":"0.06317902"},{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.3","new_quantity":"0.02"},{"side":"offer","event_time":"1970-01-01T00:00:00Z","price_level":"21922.9","new_quantity":"0.0001"}]}]}"#;
        let p = c.parse(l2).unwrap();
        assert_eq!(p.sequence, 0);
        assert_eq!(p.exch_ns, 1_675_974_770_714_964_855);
        assert_eq!(p.payload, Payload::Books);
        assert_eq!(
            c.books(),
            &[BookEvent {
                instrument: InstrumentIndex(0),
                snapshot: true,
                bids: (0, 2),
                asks: (0, 1)
            }]
        );
        assert_eq!(c.bids()[1].price, Price::parse("21921.3").unwrap());
        assert_eq!(c.asks()[0].qty, Qty::parse("0.0001").unwrap());

        let trades = r#"{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":4,"events":[{"type":"update","trades":[{"trade_id":"000000000","product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY","time":"2019-08-14T20:42:27.265Z"}]}]}"#;
        let p = c.parse(trades).unwrap();
        assert_eq!(p.payload, Payload::Trades { history: false });
        let (t, ns) = c.trades()[0];
        assert_eq!(t.instrument, InstrumentIndex(1));
        assert_eq!(t.aggressor, Side::Sell, "BUY is the maker's side");
        assert_eq!(t.price, Price::parse("1260.01").unwrap());
        assert_eq!(t.qty, Qty::parse("0.3").unwrap());
        assert_eq!(t.trade_id, 0);
        assert_eq!(ns, rfc3339_ns("2019-08-14T20:42:27.265Z").unwrap());
        let history = trades.replace(r#""type":"update""#, r#""type":"snapshot""#);
        assert_eq!(
            c.parse(&history).unwrap().payload,
            Payload::Trades { history: true }
        );

        let ticker = r#"{"channel":"ticker","client_id":"","timestamp":"2023-02-09T20:30:37.167359596Z","sequence_num":5,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"21932.98","volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"21931.98","best_bid_quantity":"8000.21","best_ask":"21933.98","best_ask_quantity":"8038.07770938"}]}]}"#;
        assert_eq!(c.parse(ticker).unwrap().payload, Payload::Quotes);
        let q = c.quotes()[0];
        assert_eq!(
            (q.bid_price, q.ask_qty),
            (
                Price::parse("21931.98").unwrap(),
                Qty::parse("8038.07770938").unwrap()
            )
        );

        let heartbeat = r#"{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z","sequence_num":6,"events":[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":"3049"}]}"#;
        assert_eq!(c.parse(heartbeat).unwrap().payload, Payload::Control);
        assert_eq!(
            c.parse(r#"{"type":"error","message":"failure to subscribe"}"#),
            Err(ParseError::VenueError)
        );
    }

    /// Coinbase writes `channel` first, so `events` are parsed in the same pass; in any other
    /// key order they take a second pass with the same result.
    #[test]
    fn events_before_channel_parse_the_same() {
        let mut c = codec();
        let first = r#"{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":3,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"offer","event_time":"x","price_level":"1.5","new_quantity":"2"}]}]}"#;
        let last = r#"{"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"offer","event_time":"x","price_level":"1.5","new_quantity":"2"}]}],"sequence_num":3,"timestamp":"2023-02-09T20:32:50Z","channel":"l2_data"}"#;
        let a = c.parse(first).unwrap();
        let (books, asks) = (c.books().to_vec(), c.asks().to_vec());
        assert_eq!(c.parse(last).unwrap(), a);
        assert_eq!((c.books(), c.asks()), (books.as_slice(), asks.as_slice()));
        let unknown = last.replace("BTC-USD", "SOL-USD");
        assert_eq!(c.parse(&unknown), Err(ParseError::UnknownSymbol));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = codec();
        let cases: &[(&str, ParseError)] = &[
            ("", ParseError::Malformed("truncated")),
            ("{}", ParseError::UnknownStream),
            (
                r#"{"channel":"l2_data","events":[]}"#,
                ParseError::Malformed("no sequence_num"),
            ),
            (
                r#"{"channel":"l2_data","sequence_num":1}"#,
                ParseError::Malformed("no events"),
            ),
            (
                r#"{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"DOGE-USD","updates":[]}]}"#,
                ParseError::UnknownSymbol,
            ),
            (
                r#"{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"up","price_level":"1","new_quantity":"1"}]}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"BTC-USD"}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"l2_data","sequence_num":1,"events":[{"type":"change","product_id":"BTC-USD","updates":[]}]}"#,
                ParseError::Malformed("unexpected shape"),
            ),
            (
                r#"{"channel":"market_trades","sequence_num":1,"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"SOL-USD","price":"1","size":"1","side":"BUY","time":"2019-08-14T20:42:27Z"}]}]}"#,
                ParseError::UnknownSymbol,
            ),
            (
                r#"{"channel":"market_trades","sequence_num":1,"events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD","price":"1.5e3","size":"1","side":"BUY","time":"2019-08-14T20:42:27Z"}]}]}"#,
                ParseError::Number(tradeloop_engine::fixed::FixedError::InvalidChar {
                    position: 3,
                }),
            ),
            (
                r#"{"channel":"ticker","sequence_num":1,"events":[{"type":"update","tickers":[{"product_id":"BTC-USD","best_bid":"1"}]}]}"#,
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
            let frame = r#"{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.73","new_quantity":"0"}]}]}"#;
            let mut b = frame.as_bytes().to_vec();
            let at = cut % b.len();
            b[at] = byte;
            let _ = c.parse(&String::from_utf8_lossy(&b));
            let _ = c.parse(&frame[..at]);
        }
    }
}
