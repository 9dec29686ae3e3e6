//! One Coinbase Advanced Trade feed's market-data state: the codec, the connection's message
//! sequence, each product's book state, and counters. Hot path (feed thread): no allocation per
//! frame once the buffers have grown.
//!
//! Continuity (<https://docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-channels>):
//! `sequence_num` grows by one per message on the connection, across channels. A message that
//! skips numbers means messages were lost — possibly `l2_data` ones of any product — so every
//! book is marked lost and the `level2` channel is resubscribed, which brings a `snapshot`
//! event per product. A message at or below the last number is a duplicate and is dropped.
//! `level2` quantities are absolute (`"0"` removes a level); a snapshot replaces the book;
//! updates for a product that has no snapshot yet are counted and ignored. The `heartbeats`
//! channel is always subscribed: it keeps quiet subscriptions open and its messages carry
//! sequence numbers too, so a silent loss shows up within a second.

use crate::wire::Codec as _;
use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::instrument::InstrumentIndex;

use super::parse::{CoinbaseCodec, Payload};
use crate::feed::{emit_levels, FeedStats, FrameOutcome, LevelsHeader, MarketSink, VenueFeed};

/// A Coinbase Advanced Trade public market-data feed for a set of products.
#[derive(Debug)]
pub struct CoinbaseFeed {
    codec: CoinbaseCodec,
    /// Per instrument: `Some(synced)` for the feed's products.
    synced: Vec<Option<bool>>,
    /// The last `sequence_num` seen on this connection.
    last_sequence: Option<u64>,
    stats: FeedStats,
    /// Check the connection-wide sequence (off when replaying per-product recordings).
    check_sequence: bool,
    /// Trades of the subscription's history snapshots, not emitted.
    pub history_trades: u64,
}

impl CoinbaseFeed {
    /// A feed over `codec`'s products.
    #[must_use]
    pub fn new(codec: CoinbaseCodec) -> Self {
        let synced = codec.symbols().per_instrument(|_| Some(false));
        Self {
            codec,
            synced,
            last_sequence: None,
            stats: FeedStats::default(),
            check_sequence: true,
            history_trades: 0,
        }
    }

    /// For replaying recordings: the recorder writes one file per product and no heartbeats, so
    /// the connection-wide sequence has holes by construction; continuity was checked when the
    /// frames arrived, and the replay follows the recorded order.
    #[must_use]
    pub fn for_replay(mut self) -> Self {
        self.check_sequence = false;
        self
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &CoinbaseCodec {
        &self.codec
    }

    /// Marks every synced book lost.
    fn lose_books(&mut self, sink: &mut (impl MarketSink + ?Sized)) {
        for (i, s) in self.synced.iter_mut().enumerate() {
            if *s == Some(true) {
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "bounded by MAX_INSTRUMENTS"
                )]
                sink.book_lost(InstrumentIndex(i as u16));
                *s = Some(false);
            }
        }
    }

    fn request(&self, kind: &str, channel: &str) -> String {
        let products: Vec<&str> = self.codec.symbols().iter().map(|(s, _)| s).collect();
        format!(
            r#"{{"type":"{kind}","product_ids":{},"channel":"{channel}"}}"#,
            serde_json::to_string(&products).unwrap_or_else(|_| "[]".to_owned())
        )
    }
}

/// Coinbase Advanced Trade market data: connect to the configured endpoint as is
/// (`wss://advanced-trade-ws.coinbase.com`), subscribe to `heartbeats`, `level2`,
/// `market_trades` and `ticker` (one channel per request, as required; within the 5 s the venue
/// allows), no application ping (heartbeats keep the subscriptions open), and recover from a
/// sequence gap by resubscribing `level2` for every product.
impl VenueFeed for CoinbaseFeed {
    fn symbols(&self) -> &crate::symbols::SymbolMap {
        self.codec.symbols()
    }

    fn protocol(&self) -> &'static str {
        "coinbase"
    }

    fn subscribe_requests(&self, _req_id: u64) -> Vec<String> {
        ["heartbeats", "level2", "market_trades", "ticker"]
            .iter()
            .map(|c| self.request("subscribe", c))
            .collect()
    }

    /// The sequence is connection-wide: every product's book resubscribes, whichever lost it.
    fn resubscribe_requests(&self, _instrument: InstrumentIndex, _req_id: u64) -> Vec<String> {
        vec![
            self.request("unsubscribe", "level2"),
            self.request("subscribe", "level2"),
        ]
    }

    fn on_frame<S: MarketSink + ?Sized>(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut S,
    ) -> FrameOutcome {
        self.stats.frames += 1;
        let parsed = match self.codec.parse(frame) {
            Ok(p) => p,
            Err(e) => return self.count_refused(e),
        };
        let mut outcome = FrameOutcome::Handled;
        match self.last_sequence.filter(|_| self.check_sequence) {
            Some(last) if parsed.sequence <= last => {
                self.stats.dropped_old += 1;
                return FrameOutcome::Handled;
            }
            Some(last) if parsed.sequence > last + 1 => {
                self.stats.gaps += 1;
                self.lose_books(sink);
                if let Some(first) = self.instruments().first() {
                    outcome = FrameOutcome::Resubscribe(*first);
                }
            }
            _ => {}
        }
        self.last_sequence = Some(parsed.sequence);
        match parsed.payload {
            Payload::Books => {
                for &b in self.codec.books() {
                    let Some(Some(synced)) = self.synced.get_mut(b.instrument.get()) else {
                        continue;
                    };
                    if !b.snapshot && !*synced {
                        self.stats.before_snapshot += 1;
                        continue;
                    }
                    if b.snapshot {
                        *synced = true;
                        self.stats.snapshots += 1;
                    } else {
                        self.stats.diffs_applied += 1;
                    }
                    let header = LevelsHeader {
                        instrument: b.instrument,
                        update_id: parsed.sequence,
                        exch_ns: parsed.exch_ns,
                    };
                    self.stats.deltas += emit_levels(
                        sink,
                        recv_ns,
                        &header,
                        &self.codec.bids()[b.bids.0..b.bids.1],
                        &self.codec.asks()[b.asks.0..b.asks.1],
                        b.snapshot,
                    );
                }
            }
            Payload::Trades { history: true } => {
                self.history_trades += self.codec.trades().len() as u64;
            }
            Payload::Trades { history: false } => {
                for &(trade, exch_ns) in self.codec.trades() {
                    self.stats.trades += 1;
                    sink.push(Event::new(recv_ns, exch_ns, EventKind::Trade(trade)));
                }
            }
            Payload::Quotes => {
                for &q in self.codec.quotes() {
                    self.stats.quotes += 1;
                    sink.push(Event::new(recv_ns, parsed.exch_ns, EventKind::Quote(q)));
                }
            }
            Payload::Control => self.stats.control += 1,
        }
        outcome
    }

    /// A new connection starts a new sequence.
    fn reset_books<S: MarketSink + ?Sized>(&mut self, sink: &mut S) {
        self.lose_books(sink);
        self.last_sequence = None;
    }

    fn reset_book<S: MarketSink + ?Sized>(&mut self, instrument: InstrumentIndex, sink: &mut S) {
        if let Some(Some(s)) = self.synced.get_mut(instrument.get()) {
            if *s {
                sink.book_lost(instrument);
            }
            *s = false;
        }
    }

    fn resyncing(&self) -> bool {
        self.last_sequence.is_some() && self.synced.iter().flatten().any(|s| !s)
    }

    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)> {
        let rest = frame.strip_prefix("{\"channel\":\"")?;
        let channel = &rest[..rest.find('"')?];
        if !matches!(channel, "l2_data" | "market_trades" | "ticker") {
            return None;
        }
        let at = frame.find("\"product_id\":\"")? + "\"product_id\":\"".len();
        let symbol = &frame[at..at + frame[at..].find('"')?];
        Some((symbol, channel == "l2_data"))
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

    #[derive(Default)]
    struct Sink {
        events: Vec<Event>,
        lost: Vec<InstrumentIndex>,
    }

    impl MarketSink for Sink {
        fn push(&mut self, event: Event) {
            self.events.push(event);
        }
        fn book_lost(&mut self, i: InstrumentIndex) {
            self.lost.push(i);
        }
    }

    fn feed() -> CoinbaseFeed {
        let mut m = SymbolMap::default();
        m.insert("BTC-USD", InstrumentIndex(0));
        m.insert("ETH-USD", InstrumentIndex(1));
        CoinbaseFeed::new(CoinbaseCodec::new(m, 1 << 20))
    }

    fn l2(seq: u64, kind: &str, product: &str, price: &str, qty: &str) -> String {
        format!(
            r#"{{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50Z","sequence_num":{seq},"events":[{{"type":"{kind}","product_id":"{product}","updates":[{{"side":"bid","event_time":"2023-02-09T20:32:50Z","price_level":"{price}","new_quantity":"{qty}"}}]}}]}}"#
        )
    }

    fn heartbeat(seq: u64) -> String {
        format!(
            r#"{{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26Z","sequence_num":{seq},"events":[{{"current_time":"x","heartbeat_counter":"1"}}]}}"#
        )
    }

    #[test]
    fn sequence_table() {
        let mut f = feed();
        let mut s = Sink::default();
        let cases: Vec<(&str, String, FrameOutcome)> = vec![
            (
                "TC0 subscriptions reply starts the sequence",
                heartbeat(10),
                FrameOutcome::Handled,
            ),
            (
                "TC1 update before snapshot: ignored",
                l2(11, "update", "BTC-USD", "100", "1"),
                FrameOutcome::Handled,
            ),
            (
                "TC2 BTC snapshot",
                l2(12, "snapshot", "BTC-USD", "100", "2"),
                FrameOutcome::Handled,
            ),
            (
                "TC3 ETH snapshot",
                l2(13, "snapshot", "ETH-USD", "10", "2"),
                FrameOutcome::Handled,
            ),
            (
                "TC4 update",
                l2(14, "update", "BTC-USD", "100", "0"),
                FrameOutcome::Handled,
            ),
            (
                "TC5 heartbeat advances the sequence",
                heartbeat(15),
                FrameOutcome::Handled,
            ),
            (
                "TC6 duplicate dropped",
                l2(15, "update", "BTC-USD", "99", "5"),
                FrameOutcome::Handled,
            ),
            (
                "TC7 a skipped number loses every book",
                heartbeat(18),
                FrameOutcome::Resubscribe(InstrumentIndex(0)),
            ),
            (
                "TC8 then updates wait for snapshots",
                l2(19, "update", "ETH-USD", "10", "1"),
                FrameOutcome::Handled,
            ),
            (
                "TC9 ETH snapshot",
                l2(20, "snapshot", "ETH-USD", "11", "1"),
                FrameOutcome::Handled,
            ),
        ];
        for (label, frame, want) in cases {
            assert_eq!(f.on_frame(0, &frame, &mut s), want, "{label}");
        }
        let st = f.stats();
        assert_eq!((st.snapshots, st.diffs_applied, st.gaps), (3, 1, 1));
        assert_eq!((st.before_snapshot, st.dropped_old), (2, 1));
        assert_eq!(
            s.lost,
            vec![InstrumentIndex(0), InstrumentIndex(1)],
            "both books lost"
        );
        assert!(f.resyncing(), "BTC still waits for its snapshot");
        // 2 snapshots + 1 update + 1 snapshot, one level each.
        assert_eq!(s.events.len(), 4);
        let reqs = f.resubscribe_requests(InstrumentIndex(1), 0);
        assert!(reqs[0].contains(r#""type":"unsubscribe""#) && reqs[0].contains("BTC-USD"));
        assert!(reqs[1].contains(r#""channel":"level2""#) && reqs[1].contains("ETH-USD"));
    }

    #[test]
    fn history_trades_are_not_emitted_and_subscriptions_cover_heartbeats() {
        let mut f = feed();
        let mut s = Sink::default();
        let t = |seq: u64, kind: &str| {
            format!(
                r#"{{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35Z","sequence_num":{seq},"events":[{{"type":"{kind}","trades":[{{"trade_id":"7","product_id":"BTC-USD","price":"1","size":"2","side":"SELL","time":"2023-02-09T20:19:35Z"}}]}}]}}"#
            )
        };
        f.on_frame(0, &t(1, "snapshot"), &mut s);
        f.on_frame(0, &t(2, "update"), &mut s);
        assert_eq!(
            (f.history_trades, f.stats().trades, s.events.len()),
            (1, 1, 1)
        );
        let channels: Vec<String> = f
            .subscribe_requests(0)
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                v["channel"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            channels,
            ["heartbeats", "level2", "market_trades", "ticker"]
        );
        assert_eq!(f.app_ping(0), None);
    }
}
