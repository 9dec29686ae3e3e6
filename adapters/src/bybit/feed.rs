//! One Bybit v5 feed's market-data state: the codec, each instrument's book continuity and best
//! bid/offer, and counters. Hot path (feed thread): no allocation per frame.
//!
//! Book rules (<https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook>): the
//! venue sends a snapshot after every subscription, then deltas whose `u` grows by one per
//! message. A snapshot always resets the book. A message with `u == 1` means the venue's book
//! service restarted: it overwrites the book like a snapshot, and is not a gap. Any other
//! skipped `u` is a gap: the book is marked lost and the topic is resubscribed, which makes the
//! venue send a fresh snapshot. Deltas that arrive while a book waits for its snapshot are
//! ignored (counted); deltas at or below the book's `u` are duplicates and dropped.
//!
//! Quotes come from `orderbook.1.{symbol}` (the best level of each side) under the same rules.

use crate::wire::Codec as _;
use std::time::Duration;

use tradeloop_engine::event::{Event, EventKind, Quote};
use tradeloop_engine::fixed::Qty;
use tradeloop_engine::instrument::InstrumentIndex;

use super::parse::{BookMsg, BybitCodec, Parsed};
use crate::feed::{emit_levels, FeedStats, FrameOutcome, LevelsHeader, MarketSink, VenueFeed};
use crate::wire::{Level, ParseError};

/// Where one topic's continuity stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TopicSync {
    /// Waiting for a snapshot (after subscribing, a gap, or a disconnect).
    AwaitingSnapshot,
    /// In sync; the last applied `u`.
    Synced {
        /// Last applied update id.
        last_u: u64,
    },
}

/// What to do with a book message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BookAction {
    /// Clear the book and apply the message as its new content.
    Reset,
    /// Apply the delta.
    Apply,
    /// A delta before the snapshot: ignore it.
    NotSynced,
    /// A delta at or below the book's version: a duplicate.
    DropOld,
    /// A delta that skips update ids: the book is lost.
    Gap {
        /// The `u` continuity required.
        expected: u64,
        /// The `u` the message carried.
        got: u64,
    },
}

impl TopicSync {
    /// Decides what to do with a message and advances the state.
    #[inline]
    pub fn on_message(&mut self, snapshot: bool, u: u64) -> BookAction {
        if snapshot || u == 1 {
            *self = Self::Synced { last_u: u };
            return BookAction::Reset;
        }
        match *self {
            Self::AwaitingSnapshot => BookAction::NotSynced,
            Self::Synced { last_u } if u == last_u + 1 => {
                *self = Self::Synced { last_u: u };
                BookAction::Apply
            }
            Self::Synced { last_u } if u <= last_u => BookAction::DropOld,
            Self::Synced { last_u } => {
                *self = Self::AwaitingSnapshot;
                BookAction::Gap {
                    expected: last_u + 1,
                    got: u,
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct InstrumentState {
    book: TopicSync,
    bbo: TopicSync,
    bid: Option<Level>,
    ask: Option<Level>,
    /// The book has had data since it was last reset (a disconnect while empty loses nothing).
    had_data: bool,
}

/// A Bybit v5 public market-data feed for a set of instruments.
#[derive(Debug)]
pub struct BybitFeed {
    codec: BybitCodec,
    states: Vec<Option<InstrumentState>>,
    depth: u16,
    ping_every: Duration,
    stats: FeedStats,
}

/// Bybit closes connections that send nothing for a while: ping every 20 s as documented
/// (the default of [`BybitFeed::with_ping_interval`]).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Topics one subscribe request may carry (the spot endpoint's limit).
const ARGS_PER_REQUEST: usize = 10;

impl BybitFeed {
    /// A feed over `codec`'s symbols with the `orderbook.{depth}` book (50, 200 or 1000 on
    /// spot and linear; 500 on older linear streams).
    #[must_use]
    pub fn new(codec: BybitCodec, depth: u16) -> Self {
        let states = codec.symbols().per_instrument(|_| {
            Some(InstrumentState {
                book: TopicSync::AwaitingSnapshot,
                bbo: TopicSync::AwaitingSnapshot,
                bid: None,
                ask: None,
                had_data: false,
            })
        });
        Self {
            codec,
            states,
            depth,
            ping_every: PING_INTERVAL,
            stats: FeedStats::default(),
        }
    }

    /// Sends `{"op":"ping"}` this often instead of every 20 s.
    #[must_use]
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_every = every;
        self
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &BybitCodec {
        &self.codec
    }

    /// Continuity of an instrument's book topic.
    #[must_use]
    pub fn book_sync(&self, instrument: InstrumentIndex) -> Option<TopicSync> {
        self.states
            .get(instrument.get())
            .and_then(Option::as_ref)
            .map(|s| s.book)
    }

    fn topics(&self, symbol: &str) -> [String; 2] {
        [
            format!("orderbook.1.{symbol}"),
            format!("orderbook.{}.{symbol}", self.depth),
        ]
    }

    fn on_book(
        &mut self,
        recv_ns: u64,
        msg: BookMsg,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        let Some(Some(state)) = self.states.get_mut(msg.instrument.get()) else {
            return self.count_refused(ParseError::UnknownSymbol);
        };
        let header = LevelsHeader {
            instrument: msg.instrument,
            update_id: msg.update_id,
            exch_ns: msg.exch_ns,
        };
        match state.book.on_message(msg.snapshot, msg.update_id) {
            BookAction::Reset => {
                self.stats.snapshots += 1;
                state.had_data = true;
                self.stats.deltas += emit_levels(
                    sink,
                    recv_ns,
                    &header,
                    self.codec.bids(),
                    self.codec.asks(),
                    true,
                );
            }
            BookAction::Apply => {
                self.stats.diffs_applied += 1;
                self.stats.deltas += emit_levels(
                    sink,
                    recv_ns,
                    &header,
                    self.codec.bids(),
                    self.codec.asks(),
                    false,
                );
            }
            BookAction::NotSynced => self.stats.before_snapshot += 1,
            BookAction::DropOld => self.stats.dropped_old += 1,
            BookAction::Gap { .. } => {
                self.stats.gaps += 1;
                sink.book_lost(msg.instrument);
                return FrameOutcome::Resubscribe(msg.instrument);
            }
        }
        FrameOutcome::Handled
    }

    fn on_bbo(
        &mut self,
        recv_ns: u64,
        msg: BookMsg,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        let Some(Some(state)) = self.states.get_mut(msg.instrument.get()) else {
            return self.count_refused(ParseError::UnknownSymbol);
        };
        match state.bbo.on_message(msg.snapshot, msg.update_id) {
            BookAction::Reset => {
                state.bid = self
                    .codec
                    .bids()
                    .first()
                    .copied()
                    .filter(|l| l.qty > Qty::ZERO);
                state.ask = self
                    .codec
                    .asks()
                    .first()
                    .copied()
                    .filter(|l| l.qty > Qty::ZERO);
            }
            BookAction::Apply => {
                best_after(&mut state.bid, self.codec.bids());
                best_after(&mut state.ask, self.codec.asks());
            }
            BookAction::NotSynced => {
                self.stats.before_snapshot += 1;
                return FrameOutcome::Handled;
            }
            BookAction::DropOld => {
                self.stats.dropped_old += 1;
                return FrameOutcome::Handled;
            }
            BookAction::Gap { .. } => {
                self.stats.gaps += 1;
                state.bid = None;
                state.ask = None;
                return FrameOutcome::Resubscribe(msg.instrument);
            }
        }
        if let (Some(bid), Some(ask)) = (state.bid, state.ask) {
            self.stats.quotes += 1;
            let quote = Quote {
                instrument: msg.instrument,
                bid_price: bid.price,
                bid_qty: bid.qty,
                ask_price: ask.price,
                ask_qty: ask.qty,
                update_id: msg.update_id,
            };
            sink.push(Event::new(recv_ns, msg.exch_ns, EventKind::Quote(quote)));
        }
        FrameOutcome::Handled
    }
}

/// The best level of a side after a level-1 delta: a level with quantity is the new best; a
/// zero quantity at the current best price removes it.
fn best_after(best: &mut Option<Level>, levels: &[Level]) {
    for l in levels {
        if l.qty > Qty::ZERO {
            *best = Some(*l);
        } else if best.is_some_and(|b| b.price == l.price) {
            *best = None;
        }
    }
}

fn json_args(topics: &[String]) -> String {
    serde_json::to_string(topics).unwrap_or_else(|_| "[]".to_owned())
}

/// Bybit v5 public WebSocket: connect to the configured endpoint as is (e.g.
/// `wss://stream.bybit.com/v5/public/linear`), subscribe to `publicTrade`, `orderbook.1` and
/// `orderbook.{depth}` of every symbol (at most 10 topics per request), send
/// `{"op":"ping"}` every 20 s, and recover a lost book by unsubscribing and subscribing its
/// topics again (the venue answers with a snapshot).
impl VenueFeed for BybitFeed {
    fn symbols(&self) -> &crate::symbols::SymbolMap {
        self.codec.symbols()
    }

    fn protocol(&self) -> &'static str {
        "bybit"
    }

    fn subscribe_requests(&self, req_id: u64) -> Vec<String> {
        let mut topics = Vec::new();
        for (symbol, _) in self.codec.symbols().iter() {
            topics.push(format!("publicTrade.{symbol}"));
            topics.extend(self.topics(symbol));
        }
        topics
            .chunks(ARGS_PER_REQUEST)
            .zip(req_id..)
            .map(|(chunk, id)| {
                format!(
                    r#"{{"req_id":"{id}","op":"subscribe","args":{}}}"#,
                    json_args(chunk)
                )
            })
            .collect()
    }

    fn resubscribe_requests(&self, instrument: InstrumentIndex, req_id: u64) -> Vec<String> {
        let Some(symbol) = self.symbol_of(instrument) else {
            return Vec::new();
        };
        let args = json_args(&self.topics(symbol));
        vec![
            format!(r#"{{"req_id":"{req_id}u","op":"unsubscribe","args":{args}}}"#),
            format!(r#"{{"req_id":"{req_id}s","op":"subscribe","args":{args}}}"#),
        ]
    }

    fn app_ping(&self, req_id: u64) -> Option<(Duration, String)> {
        Some((
            self.ping_every,
            format!(r#"{{"req_id":"{req_id}","op":"ping"}}"#),
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
            Ok(Parsed::Book(msg)) if msg.depth == 1 => self.on_bbo(recv_ns, msg, sink),
            Ok(Parsed::Book(msg)) if msg.depth == self.depth => self.on_book(recv_ns, msg, sink),
            Ok(Parsed::Book(_)) => {
                // A depth this feed did not subscribe to.
                self.count_refused(ParseError::UnknownStream)
            }
            Ok(Parsed::Pong | Parsed::ControlReply) => {
                self.stats.control += 1;
                FrameOutcome::Handled
            }
            Err(e) => self.count_refused(e),
        }
    }

    fn reset_book<S: MarketSink + ?Sized>(&mut self, instrument: InstrumentIndex, sink: &mut S) {
        if let Some(Some(s)) = self.states.get_mut(instrument.get()) {
            if s.had_data && s.book != TopicSync::AwaitingSnapshot {
                sink.book_lost(instrument);
            }
            s.book = TopicSync::AwaitingSnapshot;
            s.bbo = TopicSync::AwaitingSnapshot;
            s.bid = None;
            s.ask = None;
        }
    }

    fn resyncing(&self) -> bool {
        self.states
            .iter()
            .flatten()
            .any(|s| s.had_data && s.book == TopicSync::AwaitingSnapshot)
    }

    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)> {
        // `{"topic":"orderbook.50.BTCUSDT",…`
        let rest = frame.strip_prefix("{\"topic\":\"")?;
        let topic = &rest[..rest.find('"')?];
        let (channel, symbol) = topic.split_once('.')?;
        let symbol = symbol.rsplit('.').next()?;
        Some((symbol, channel == "orderbook"))
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
    use tradeloop_engine::fixed::Price;

    #[test]
    fn continuity_table() {
        let mut s = TopicSync::AwaitingSnapshot;
        let cases = [
            (
                "TC0 delta before any snapshot",
                false,
                5,
                BookAction::NotSynced,
            ),
            ("TC1 snapshot", true, 10, BookAction::Reset),
            ("TC2 next u", false, 11, BookAction::Apply),
            ("TC3 duplicate", false, 11, BookAction::DropOld),
            ("TC4 older", false, 9, BookAction::DropOld),
            ("TC5 next u", false, 12, BookAction::Apply),
            (
                "TC6 skipped u",
                false,
                14,
                BookAction::Gap {
                    expected: 13,
                    got: 14,
                },
            ),
            (
                "TC7 after a gap: not synced",
                false,
                15,
                BookAction::NotSynced,
            ),
            ("TC8 fresh snapshot", true, 20, BookAction::Reset),
            (
                "TC9 u = 1 restart, typed delta: overwrite",
                false,
                1,
                BookAction::Reset,
            ),
            ("TC10 continues from 1", false, 2, BookAction::Apply),
            (
                "TC11 snapshot with a lower u resets too",
                true,
                1,
                BookAction::Reset,
            ),
        ];
        for (label, snapshot, u, want) in cases {
            assert_eq!(s.on_message(snapshot, u), want, "{label}");
        }
        assert_eq!(s, TopicSync::Synced { last_u: 1 });
    }

    #[derive(Default)]
    struct Sink {
        events: Vec<Event>,
        lost: Vec<InstrumentIndex>,
    }

    impl MarketSink for Sink {
        fn push(&mut self, event: Event) {
            self.events.push(event);
        }
        fn book_lost(&mut self, instrument: InstrumentIndex) {
            self.lost.push(instrument);
        }
    }

    fn feed() -> BybitFeed {
        let mut m = SymbolMap::default();
        m.insert("BTCUSDT", InstrumentIndex(0));
        BybitFeed::new(BybitCodec::new(m, 1 << 20), 50)
    }

    fn book(kind: &str, u: u64, b: &str, a: &str) -> String {
        format!(
            r#"{{"topic":"orderbook.50.BTCUSDT","type":"{kind}","ts":1,"data":{{"s":"BTCUSDT","b":[{b}],"a":[{a}],"u":{u},"seq":1}}}}"#
        )
    }

    fn bbo(kind: &str, u: u64, b: &str, a: &str) -> String {
        book(kind, u, b, a).replace("orderbook.50.", "orderbook.1.")
    }

    #[test]
    fn gap_marks_the_book_lost_and_asks_for_a_resubscription() {
        let mut f = feed();
        let mut sink = Sink::default();
        assert_eq!(
            f.on_frame(1, &book("delta", 7, r#"["1","1"]"#, ""), &mut sink),
            FrameOutcome::Handled
        );
        assert!(
            sink.events.is_empty(),
            "a delta before the snapshot is ignored"
        );
        assert_eq!(f.stats().before_snapshot, 1);
        f.on_frame(
            2,
            &book("snapshot", 10, r#"["100","1"]"#, r#"["101","2"]"#),
            &mut sink,
        );
        f.on_frame(3, &book("delta", 11, r#"["100","0"]"#, ""), &mut sink);
        assert_eq!(sink.events.len(), 3);
        assert_eq!(
            f.on_frame(4, &book("delta", 13, r#"["99","1"]"#, ""), &mut sink),
            FrameOutcome::Resubscribe(InstrumentIndex(0))
        );
        assert_eq!(sink.lost, vec![InstrumentIndex(0)]);
        assert_eq!(sink.events.len(), 3, "the gapped delta is not applied");
        assert!(f.resyncing());
        let reqs = f.resubscribe_requests(InstrumentIndex(0), 9);
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[0].contains(r#""op":"unsubscribe""#) && reqs[0].contains("orderbook.50.BTCUSDT")
        );
        assert!(reqs[1].contains(r#""op":"subscribe""#) && reqs[1].contains("orderbook.1.BTCUSDT"));
        f.on_frame(5, &book("snapshot", 20, r#"["98","1"]"#, ""), &mut sink);
        assert!(!f.resyncing());
        assert_eq!(f.stats().gaps, 1);
        assert_eq!(f.stats().snapshots, 2);
    }

    #[test]
    fn level_one_gives_quotes() {
        let mut f = feed();
        let mut sink = Sink::default();
        f.on_frame(
            1,
            &bbo("snapshot", 5, r#"["100","1"]"#, r#"["101","2"]"#),
            &mut sink,
        );
        // The best bid leaves and a lower one becomes best; the ask is unchanged.
        f.on_frame(
            2,
            &bbo("delta", 6, r#"["100","0"],["99.5","3"]"#, ""),
            &mut sink,
        );
        // The ask empties: no quote until it is back.
        f.on_frame(3, &bbo("delta", 7, "", r#"["101","0"]"#), &mut sink);
        f.on_frame(4, &bbo("delta", 8, "", r#"["100.5","4"]"#), &mut sink);
        let quotes: Vec<Quote> = sink
            .events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Quote(q) => Some(q),
                _ => None,
            })
            .collect();
        let p = |s: &str| Price::parse(s).unwrap();
        let q = |s: &str| Qty::parse(s).unwrap();
        assert_eq!(quotes.len(), 3);
        assert_eq!(
            (quotes[0].bid_price, quotes[0].ask_price),
            (p("100"), p("101"))
        );
        assert_eq!(
            (quotes[1].bid_price, quotes[1].bid_qty),
            (p("99.5"), q("3"))
        );
        assert_eq!(
            (quotes[2].ask_price, quotes[2].ask_qty),
            (p("100.5"), q("4"))
        );
        assert_eq!({ quotes[2].update_id }, 8);
        // A gap on level 1 asks for a resubscription too, and stops quoting.
        assert_eq!(
            f.on_frame(5, &bbo("delta", 10, r#"["99","1"]"#, ""), &mut sink),
            FrameOutcome::Resubscribe(InstrumentIndex(0))
        );
        assert_eq!(f.stats().quotes, 3);
    }

    #[test]
    fn subscriptions_are_chunked_to_ten_topics() {
        let mut m = SymbolMap::default();
        for (n, s) in ["A", "B", "C", "D"].iter().enumerate() {
            m.insert(
                &format!("{s}USDT"),
                InstrumentIndex(u16::try_from(n).unwrap()),
            );
        }
        let f = BybitFeed::new(BybitCodec::new(m, 1 << 20), 200);
        let reqs = f.subscribe_requests(7);
        assert_eq!(reqs.len(), 2, "12 topics in requests of at most 10");
        let all: Vec<String> = reqs
            .iter()
            .flat_map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                assert_eq!(v["op"], "subscribe");
                v["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(all.len(), 12);
        assert!(all.contains(&"orderbook.200.DUSDT".to_owned()));
        assert!(all.contains(&"publicTrade.AUSDT".to_owned()));
        assert!(all.contains(&"orderbook.1.CUSDT".to_owned()));
        let (every, ping) = f.app_ping(3).unwrap();
        assert_eq!(every, Duration::from_secs(20));
        assert_eq!(ping, r#"{"req_id":"3","op":"ping"}"#);
    }
}
