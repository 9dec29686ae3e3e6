//! One Kraken v2 feed's market-data state: the codec, each instrument's book truncated to the
//! subscribed depth (Kraken's rule), the CRC32 check of every book message, and counters. Hot
//! path (feed thread): no allocation per frame once the buffers have grown.
//!
//! Book rules (<https://docs.kraken.com/api/docs/guides/spot-ws-book-v2>): a snapshot replaces
//! the book; an update sets or (with `qty` 0) removes levels in message order; after each
//! message the book is truncated to the subscribed depth (the venue sends no removal for levels
//! that fall out of scope). Then the checksum of the top 10 levels must equal the message's:
//! asks low to high, then bids high to low, each level as its price and quantity written with
//! the pair's precision, the decimal point and leading zeros removed, all concatenated, CRC32.
//! A mismatch means the book is wrong: it is marked lost and the book channel resubscribed.
//!
//! Kraken books carry no sequence numbers: the checksum is the only continuity check. Levels
//! the feed truncates are sent to the engine as removals, so the engine's book holds exactly
//! the venue's subscribed depth.

use crate::wire::Codec as _;
use std::time::Duration;

use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use super::parse::{BookMsg, KrakenCodec, Parsed};
use crate::feed::{
    emit_levels, FeedStats, FrameOutcome, LevelsHeader, MarketSink, SideBook, VenueFeed,
};
use crate::wire::{Level, ParseError};

/// Decimals of a pair's prices and quantities, as the checksum writes them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Precision {
    /// Price decimals (Kraken's `price_precision`, e.g. 1 for BTC/USD).
    pub price: u8,
    /// Quantity decimals (`qty_precision`, e.g. 8).
    pub qty: u8,
}

impl Precision {
    /// The decimals of a tick size and a lot size (`0.1` and `0.00000001` → 1 and 8).
    #[must_use]
    pub fn of(tick_size: Price, lot_size: Qty) -> Self {
        Self {
            price: decimals(tick_size.raw()),
            qty: decimals(lot_size.raw()),
        }
    }
}

/// Decimals needed to write a fixed-point value exactly (at most 8).
fn decimals(raw: i64) -> u8 {
    let mut d = 8u8;
    let mut v = raw;
    while d > 0 && v != 0 && v % 10 == 0 {
        v /= 10;
        d -= 1;
    }
    d
}

/// Kraken's book checksum over the top 10 levels of `asks` (best first, low to high) and
/// `bids` (best first, high to low). `None` if a value has more decimals than `precision`
/// allows (it cannot be written the venue's way).
#[must_use]
pub fn book_checksum(asks: &[Level], bids: &[Level], precision: Precision) -> Option<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = [0u8; 20];
    for l in asks.iter().take(10).chain(bids.iter().take(10)) {
        for (raw, dec) in [
            (l.price.raw(), precision.price),
            (l.qty.raw(), precision.qty),
        ] {
            let scale = 10i64.pow(u32::from(8 - dec.min(8)));
            if raw < 0 || raw % scale != 0 {
                return None;
            }
            // The scaled integer's decimal digits are the value without its point and leading
            // zeros ("0.00100000" at 8 decimals → 100000).
            let mut v = raw / scale;
            let mut at = buf.len();
            loop {
                at -= 1;
                buf[at] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            h.update(&buf[at..]);
        }
    }
    Some(h.finalize())
}

#[derive(Clone, Debug)]
struct InstrumentState {
    bids: SideBook,
    asks: SideBook,
    precision: Precision,
    synced: bool,
    had_data: bool,
}

/// A Kraken spot v2 public market-data feed for a set of instruments.
#[derive(Debug)]
pub struct KrakenFeed {
    codec: KrakenCodec,
    states: Vec<Option<InstrumentState>>,
    depth: u16,
    ping_every: Duration,
    /// Levels to emit (the message's, then truncated ones), reused.
    out_bids: Vec<Level>,
    out_asks: Vec<Level>,
    stats: FeedStats,
    /// Book messages whose checksum did not match the local book.
    pub checksum_mismatches: u64,
}

/// Application ping interval (Kraken also sends a heartbeat every second while subscribed).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

impl KrakenFeed {
    /// A feed over `codec`'s symbols, each with its checksum precision, subscribing to `book`
    /// at `depth` (10, 25, 100, 500 or 1000). Instruments without a precision are not
    /// subscribed.
    #[must_use]
    pub fn new(codec: KrakenCodec, depth: u16, precision: &[(InstrumentIndex, Precision)]) -> Self {
        let states = codec.symbols().per_instrument(|i| {
            let (_, p) = precision.iter().find(|(x, _)| *x == i)?;
            Some(InstrumentState {
                bids: SideBook::default(),
                asks: SideBook::default(),
                precision: *p,
                synced: false,
                had_data: false,
            })
        });
        Self {
            codec,
            states,
            depth,
            ping_every: PING_INTERVAL,
            out_bids: Vec::with_capacity(1024),
            out_asks: Vec::with_capacity(1024),
            stats: FeedStats::default(),
            checksum_mismatches: 0,
        }
    }

    /// Sends `{"method":"ping"}` this often instead of every 30 s.
    #[must_use]
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_every = every;
        self
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &KrakenCodec {
        &self.codec
    }

    /// The local book of an instrument (bids best first, asks best first).
    #[must_use]
    pub fn book(&self, instrument: InstrumentIndex) -> Option<(&[Level], &[Level])> {
        self.states
            .get(instrument.get())
            .and_then(Option::as_ref)
            .map(|s| (s.bids.levels.as_slice(), s.asks.levels.as_slice()))
    }

    fn on_book(
        &mut self,
        recv_ns: u64,
        msg: BookMsg,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        let depth = usize::from(self.depth);
        let Some(Some(state)) = self.states.get_mut(msg.instrument.get()) else {
            return self.count_refused(ParseError::UnknownSymbol);
        };
        if !msg.snapshot && !state.synced {
            self.stats.before_snapshot += 1;
            return FrameOutcome::Handled;
        }
        if msg.snapshot {
            state.bids.levels.clear();
            state.asks.levels.clear();
            state.synced = true;
            state.had_data = true;
        }
        self.out_bids.clear();
        self.out_asks.clear();
        for &l in self.codec.bids() {
            state.bids.set(l, SideBook::BIDS);
            self.out_bids.push(l);
        }
        for &l in self.codec.asks() {
            state.asks.set(l, SideBook::ASKS);
            self.out_asks.push(l);
        }
        state.bids.truncate(depth, &mut self.out_bids);
        state.asks.truncate(depth, &mut self.out_asks);
        if msg.snapshot {
            // A snapshot's levels are the book: what it sends beyond the depth is not kept.
            self.out_bids.clone_from(&state.bids.levels);
            self.out_asks.clone_from(&state.asks.levels);
            self.stats.snapshots += 1;
        } else {
            self.stats.diffs_applied += 1;
        }
        let header = LevelsHeader {
            instrument: msg.instrument,
            update_id: 0,
            exch_ns: msg.exch_ns,
        };
        self.stats.deltas += emit_levels(
            sink,
            recv_ns,
            &header,
            &self.out_bids,
            &self.out_asks,
            msg.snapshot,
        );
        let ours = book_checksum(&state.asks.levels, &state.bids.levels, state.precision);
        if ours != Some(msg.checksum) {
            self.checksum_mismatches += 1;
            self.stats.gaps += 1;
            state.synced = false;
            sink.book_lost(msg.instrument);
            return FrameOutcome::Resubscribe(msg.instrument);
        }
        FrameOutcome::Handled
    }

    fn symbols_json(&self, only: Option<InstrumentIndex>) -> String {
        let symbols: Vec<&str> = self
            .codec
            .symbols()
            .iter()
            .filter(|(_, i)| only.is_none_or(|o| o == *i))
            .filter(|(_, i)| self.states.get(i.get()).is_some_and(Option::is_some))
            .map(|(s, _)| s)
            .collect();
        serde_json::to_string(&symbols).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Kraken spot WebSocket v2: connect to the configured endpoint as is
/// (`wss://ws.kraken.com/v2`), subscribe to `book` at the configured depth with a snapshot,
/// `trade`, and `ticker` on best bid/offer changes; ping every 30 s; recover a book whose
/// checksum fails by unsubscribing and subscribing its `book` channel again.
impl VenueFeed for KrakenFeed {
    fn symbols(&self) -> &crate::symbols::SymbolMap {
        self.codec.symbols()
    }

    fn protocol(&self) -> &'static str {
        "kraken"
    }

    fn subscribe_requests(&self, req_id: u64) -> Vec<String> {
        let symbols = self.symbols_json(None);
        vec![
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"book","symbol":{symbols},"depth":{},"snapshot":true}},"req_id":{req_id}}}"#,
                self.depth
            ),
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"trade","symbol":{symbols},"snapshot":false}},"req_id":{}}}"#,
                req_id + 1
            ),
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"ticker","symbol":{symbols},"event_trigger":"bbo","snapshot":true}},"req_id":{}}}"#,
                req_id + 2
            ),
        ]
    }

    fn resubscribe_requests(&self, instrument: InstrumentIndex, req_id: u64) -> Vec<String> {
        let symbols = self.symbols_json(Some(instrument));
        vec![
            format!(
                r#"{{"method":"unsubscribe","params":{{"channel":"book","symbol":{symbols},"depth":{}}},"req_id":{req_id}}}"#,
                self.depth
            ),
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"book","symbol":{symbols},"depth":{},"snapshot":true}},"req_id":{}}}"#,
                self.depth,
                req_id + 1
            ),
        ]
    }

    fn app_ping(&self, req_id: u64) -> Option<(Duration, String)> {
        Some((
            self.ping_every,
            format!(r#"{{"method":"ping","req_id":{req_id}}}"#),
        ))
    }

    fn on_frame<S: MarketSink + ?Sized>(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut S,
    ) -> FrameOutcome {
        self.stats.frames += 1;
        match self.codec.parse(frame) {
            Ok(Parsed::Trades(_)) => {
                for &(trade, exch_ns) in self.codec.trades() {
                    self.stats.trades += 1;
                    sink.push(Event::new(recv_ns, exch_ns, EventKind::Trade(trade)));
                }
                FrameOutcome::Handled
            }
            Ok(Parsed::Quote(q)) => {
                self.stats.quotes += 1;
                sink.push(Event::new(recv_ns, 0, EventKind::Quote(q)));
                FrameOutcome::Handled
            }
            Ok(Parsed::Book(msg)) => self.on_book(recv_ns, msg, sink),
            Ok(Parsed::Control) => {
                self.stats.control += 1;
                FrameOutcome::Handled
            }
            Err(e) => self.count_refused(e),
        }
    }

    fn reset_book<S: MarketSink + ?Sized>(&mut self, instrument: InstrumentIndex, sink: &mut S) {
        if let Some(Some(s)) = self.states.get_mut(instrument.get()) {
            if s.synced {
                sink.book_lost(instrument);
            }
            s.synced = false;
            s.bids.levels.clear();
            s.asks.levels.clear();
        }
    }

    fn resyncing(&self) -> bool {
        self.states
            .iter()
            .flatten()
            .any(|s| s.had_data && !s.synced)
    }

    fn instruments(&self) -> Vec<InstrumentIndex> {
        self.codec
            .symbols()
            .iter()
            .map(|(_, i)| i)
            .filter(|i| self.states.get(i.get()).is_some_and(Option::is_some))
            .collect()
    }

    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)> {
        // `{"channel":"book","type":…,"data":[{"symbol":"BTC/USD",…`
        let rest = frame.strip_prefix("{\"channel\":\"")?;
        let channel = &rest[..rest.find('"')?];
        if !matches!(channel, "book" | "trade" | "ticker") {
            return None;
        }
        let at = frame.find("\"symbol\":\"")? + "\"symbol\":\"".len();
        let symbol = &frame[at..at + frame[at..].find('"')?];
        Some((symbol, channel == "book"))
    }

    fn stats(&self) -> &FeedStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut FeedStats {
        &mut self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::SymbolMap;

    /// Kraken's worked example ("Book checksum (WebSocket v2)" guide): this snapshot's
    /// documented checksum is 3310070434.
    pub(crate) const DOCUMENTED_SNAPSHOT: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},{"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},{"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},{"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},{"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],"asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},{"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},{"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},{"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},{"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],"checksum":3310070434,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;

    const BTC_USD: Precision = Precision { price: 1, qty: 8 };

    #[derive(Default)]
    struct Sink {
        events: Vec<Event>,
        lost: u64,
    }

    impl MarketSink for Sink {
        fn push(&mut self, event: Event) {
            self.events.push(event);
        }
        fn book_lost(&mut self, _: InstrumentIndex) {
            self.lost += 1;
        }
    }

    fn feed(depth: u16) -> KrakenFeed {
        let mut m = SymbolMap::default();
        m.insert("BTC/USD", InstrumentIndex(0));
        KrakenFeed::new(
            KrakenCodec::new(m, 1 << 20),
            depth,
            &[(InstrumentIndex(0), BTC_USD)],
        )
    }

    fn update(bids: &str, asks: &str, checksum: u32) -> String {
        format!(
            r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{bids}],"asks":[{asks}],"checksum":{checksum},"timestamp":"2023-10-06T17:35:56Z"}}]}}"#
        )
    }

    #[test]
    fn precision_from_tick_and_lot() {
        let p = |s: &str| Price::parse(s).unwrap();
        let q = |s: &str| Qty::parse(s).unwrap();
        assert_eq!(Precision::of(p("0.1"), q("0.00000001")), BTC_USD);
        assert_eq!(
            Precision::of(p("0.0001"), q("1")),
            Precision { price: 4, qty: 0 }
        );
        assert_eq!(
            Precision::of(p("5"), q("0.5")),
            Precision { price: 0, qty: 1 }
        );
    }

    #[test]
    fn the_documented_snapshot_checksum_verifies() {
        let mut f = feed(10);
        let mut sink = Sink::default();
        assert_eq!(
            f.on_frame(1, DOCUMENTED_SNAPSHOT, &mut sink),
            FrameOutcome::Handled
        );
        assert_eq!(f.checksum_mismatches, 0);
        assert_eq!(sink.events.len(), 20);
        let (bids, asks) = f.book(InstrumentIndex(0)).unwrap();
        assert_eq!(book_checksum(asks, bids, BTC_USD), Some(3_310_070_434));
        // One changed quantity changes the checksum: the check is not vacuous.
        let mut asks2 = asks.to_vec();
        asks2[3].qty = Qty::parse("1.54560912").unwrap();
        assert_ne!(book_checksum(&asks2, bids, BTC_USD), Some(3_310_070_434));
        // A value finer than the precision cannot be written the venue's way.
        asks2[3].price = Price::parse("45289.65").unwrap();
        assert_eq!(book_checksum(&asks2, bids, BTC_USD), None);
    }

    #[test]
    fn updates_apply_truncate_and_are_checked() {
        let mut f = feed(10);
        let mut sink = Sink::default();
        f.on_frame(1, DOCUMENTED_SNAPSHOT, &mut sink);
        // Remove the best ask, insert a new best bid: the 11th bid falls out of the depth.
        let (bids, asks) = f.book(InstrumentIndex(0)).unwrap();
        let mut want_bids = bids.to_vec();
        let mut want_asks = asks.to_vec();
        want_asks.remove(0);
        let new_bid = Level {
            price: Price::parse("45284.0").unwrap(),
            qty: Qty::parse("2").unwrap(),
        };
        want_bids.insert(0, new_bid);
        let evicted = want_bids.pop().unwrap();
        let sum = book_checksum(&want_asks, &want_bids, BTC_USD).unwrap();
        sink.events.clear();
        let frame = update(
            r#"{"price":45284.0,"qty":2}"#,
            r#"{"price":45285.2,"qty":0}"#,
            sum,
        );
        assert_eq!(f.on_frame(2, &frame, &mut sink), FrameOutcome::Handled);
        let (bids, asks) = f.book(InstrumentIndex(0)).unwrap();
        assert_eq!((bids, asks), (want_bids.as_slice(), want_asks.as_slice()));
        // The engine is told: the new bid, the removed ask, and the evicted bid (as a removal).
        let levels: Vec<(Price, Qty)> = sink
            .events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::BookDelta(d) => Some((d.price, d.qty)),
                _ => None,
            })
            .collect();
        assert_eq!(levels.len(), 3);
        assert!(levels.contains(&(evicted.price, Qty::ZERO)));

        // A wrong checksum: the book is lost and the book channel resubscribed.
        assert_eq!(
            f.on_frame(
                3,
                &update(r#"{"price":45283.5,"qty":999}"#, "", 1),
                &mut sink
            ),
            FrameOutcome::Resubscribe(InstrumentIndex(0))
        );
        assert_eq!((f.checksum_mismatches, sink.lost), (1, 1));
        assert!(f.resyncing());
        // Updates are ignored until the next snapshot, which resyncs.
        let before = sink.events.len();
        f.on_frame(4, &update(r#"{"price":45283.5,"qty":1}"#, "", 1), &mut sink);
        assert_eq!(sink.events.len(), before);
        assert_eq!(f.stats().before_snapshot, 1);
        assert_eq!(
            f.on_frame(5, DOCUMENTED_SNAPSHOT, &mut sink),
            FrameOutcome::Handled
        );
        assert!(!f.resyncing());
        let reqs = f.resubscribe_requests(InstrumentIndex(0), 7);
        assert!(reqs[0].contains(r#""method":"unsubscribe""#) && reqs[0].contains("BTC/USD"));
        assert!(reqs[1].contains(r#""snapshot":true"#));
    }

    #[test]
    fn subscriptions_and_ping() {
        let f = feed(25);
        let reqs = f.subscribe_requests(100);
        let channels: Vec<String> = reqs
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                assert_eq!(v["method"], "subscribe");
                assert_eq!(v["params"]["symbol"][0], "BTC/USD");
                v["params"]["channel"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(channels, ["book", "trade", "ticker"]);
        assert!(reqs[0].contains(r#""depth":25"#));
        assert!(reqs[2].contains(r#""event_trigger":"bbo""#));
        assert_eq!(
            f.app_ping(5).unwrap(),
            (PING_INTERVAL, r#"{"method":"ping","req_id":5}"#.to_owned())
        );
        assert_eq!(f.frame_symbol(DOCUMENTED_SNAPSHOT), Some(("BTC/USD", true)));
        assert_eq!(f.frame_symbol(r#"{"channel":"heartbeat"}"#), None);
    }
}
