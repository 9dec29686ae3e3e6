//! One OKX v5 feed's market-data state: the codec, each instrument's book copy and sequence,
//! and counters. Hot path (feed thread): no allocation per frame once the buffers have grown.
//!
//! Book rules (<https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel>):
//! a `snapshot` replaces the book; an `update` applies when its `prevSeqId` is the `seqId` of
//! the last message applied — also after a venue sequence reset, where `seqId` is smaller than
//! `prevSeqId`, and for the keep-alive update with no levels, where both equal the last one.
//! An update whose `seqId` is not above the last one (and is no reset) is a duplicate and is
//! dropped; any other update is a gap: the book is marked lost and its `books` channel
//! resubscribed. OKX deprecated the `checksum` field in June 2026 (it is 0 since): a non-zero
//! checksum — older environments, old recordings — is still checked against CRC32 of the top 25
//! levels interleaved (`bid px:bid sz:ask px:ask sz:…`), prices and sizes written in their
//! shortest decimal form, and a mismatch is a gap too.

use crate::wire::Codec as _;
use std::io::Write as _;
use std::time::Duration;

use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::instrument::InstrumentIndex;

use super::parse::{BookMsg, OkxCodec, Parsed};
use crate::feed::{
    emit_levels, FeedStats, FrameOutcome, LevelsHeader, MarketSink, SideBook, VenueFeed,
};
use crate::wire::{Level, ParseError};

/// OKX's book checksum: CRC32 of the top 25 bids and asks interleaved as
/// `bidPx:bidSz:askPx:askSz:…` (the longer side's remainder after), as a signed integer.
#[must_use]
pub fn book_checksum(bids: &[Level], asks: &[Level]) -> i32 {
    let mut h = crc32fast::Hasher::new();
    let mut buf = [0u8; 64];
    let mut first = true;
    for i in 0..25 {
        for l in [bids.get(i), asks.get(i)].into_iter().flatten() {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let sep = if first { "" } else { ":" };
            // Two i64 decimals with separators fit in 64 bytes.
            let _ = write!(cursor, "{sep}{}:{}", l.price, l.qty);
            let n = usize::try_from(cursor.position()).unwrap_or(0);
            h.update(&buf[..n]);
            first = false;
        }
    }
    h.finalize() as i32
}

#[derive(Clone, Debug, Default)]
struct InstrumentState {
    bids: SideBook,
    asks: SideBook,
    /// `seqId` of the last message applied; `None` while waiting for a snapshot.
    last_seq: Option<i64>,
    had_data: bool,
}

/// An OKX v5 public market-data feed for a set of instruments.
#[derive(Debug)]
pub struct OkxFeed {
    codec: OkxCodec,
    states: Vec<Option<InstrumentState>>,
    ping_every: Duration,
    stats: FeedStats,
    /// Book messages whose (non-zero) checksum did not match the local book.
    pub checksum_mismatches: u64,
}

/// OKX closes a connection with no traffic for 30 s: a text `ping` every 25 s.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);

impl OkxFeed {
    /// A feed over `codec`'s instruments.
    #[must_use]
    pub fn new(codec: OkxCodec) -> Self {
        let states = codec
            .symbols()
            .per_instrument(|_| Some(InstrumentState::default()));
        Self {
            codec,
            states,
            ping_every: PING_INTERVAL,
            stats: FeedStats::default(),
            checksum_mismatches: 0,
        }
    }

    /// Sends `ping` this often instead of every 25 s.
    #[must_use]
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_every = every;
        self
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &OkxCodec {
        &self.codec
    }

    /// The feed's copy of an instrument's book (bids best first, asks best first).
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
        let Some(Some(state)) = self.states.get_mut(msg.instrument.get()) else {
            return self.count_refused(ParseError::UnknownSymbol);
        };
        if msg.snapshot {
            state.bids.levels.clear();
            state.asks.levels.clear();
            state.had_data = true;
            self.stats.snapshots += 1;
        } else {
            match state.last_seq {
                None => {
                    self.stats.before_snapshot += 1;
                    return FrameOutcome::Handled;
                }
                Some(last) if msg.prev_seq_id == last => self.stats.diffs_applied += 1,
                Some(last) if msg.seq_id <= last && msg.seq_id >= msg.prev_seq_id => {
                    self.stats.dropped_old += 1;
                    return FrameOutcome::Handled;
                }
                Some(_) => {
                    self.stats.gaps += 1;
                    state.last_seq = None;
                    sink.book_lost(msg.instrument);
                    return FrameOutcome::Resubscribe(msg.instrument);
                }
            }
        }
        state.last_seq = Some(msg.seq_id);
        for &l in self.codec.bids() {
            state.bids.set(l, SideBook::BIDS);
        }
        for &l in self.codec.asks() {
            state.asks.set(l, SideBook::ASKS);
        }
        let header = LevelsHeader {
            instrument: msg.instrument,
            update_id: u64::try_from(msg.seq_id).unwrap_or(0),
            exch_ns: msg.exch_ns,
        };
        self.stats.deltas += emit_levels(
            sink,
            recv_ns,
            &header,
            self.codec.bids(),
            self.codec.asks(),
            msg.snapshot,
        );
        if msg.checksum != 0
            && book_checksum(&state.bids.levels, &state.asks.levels) != msg.checksum
        {
            self.checksum_mismatches += 1;
            self.stats.gaps += 1;
            state.last_seq = None;
            sink.book_lost(msg.instrument);
            return FrameOutcome::Resubscribe(msg.instrument);
        }
        FrameOutcome::Handled
    }

    fn args(&self, channels: &[&str], only: Option<InstrumentIndex>) -> String {
        let mut args = Vec::new();
        for (symbol, i) in self.codec.symbols().iter() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            for c in channels {
                args.push(serde_json::json!({ "channel": c, "instId": symbol }));
            }
        }
        serde_json::to_string(&args).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// OKX v5 public WebSocket: connect to the configured endpoint as is
/// (`wss://ws.okx.com:8443/ws/v5/public`), subscribe to `trades`, `bbo-tbt` and `books` of every
/// instrument, send the text `ping` every 25 s, and recover a lost book by unsubscribing and
/// subscribing its `books` channel again (a snapshot follows).
impl VenueFeed for OkxFeed {
    fn symbols(&self) -> &crate::symbols::SymbolMap {
        self.codec.symbols()
    }

    fn protocol(&self) -> &'static str {
        "okx"
    }

    fn subscribe_requests(&self, _req_id: u64) -> Vec<String> {
        vec![format!(
            r#"{{"op":"subscribe","args":{}}}"#,
            self.args(&["trades", "bbo-tbt", "books"], None)
        )]
    }

    fn resubscribe_requests(&self, instrument: InstrumentIndex, _req_id: u64) -> Vec<String> {
        let args = self.args(&["books"], Some(instrument));
        vec![
            format!(r#"{{"op":"unsubscribe","args":{args}}}"#),
            format!(r#"{{"op":"subscribe","args":{args}}}"#),
        ]
    }

    fn app_ping(&self, _req_id: u64) -> Option<(Duration, String)> {
        Some((self.ping_every, "ping".to_owned()))
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
            Ok(Parsed::Quote { quote, exch_ns }) => {
                self.stats.quotes += 1;
                sink.push(Event::new(recv_ns, exch_ns, EventKind::Quote(quote)));
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
            if s.last_seq.take().is_some() {
                sink.book_lost(instrument);
            }
            s.bids.levels.clear();
            s.asks.levels.clear();
        }
    }

    fn resyncing(&self) -> bool {
        self.states
            .iter()
            .flatten()
            .any(|s| s.had_data && s.last_seq.is_none())
    }

    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)> {
        // `{"arg":{"channel":"books","instId":"BTC-USDT"},…`
        let rest = frame.strip_prefix("{\"arg\":{\"channel\":\"")?;
        let channel = &rest[..rest.find('"')?];
        let at = rest.find("\"instId\":\"")? + "\"instId\":\"".len();
        let symbol = &rest[at..at + rest[at..].find('"')?];
        Some((symbol, channel == "books"))
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
    use tradeloop_engine::fixed::{Price, Qty};

    fn lv(p: &str, q: &str) -> Level {
        Level {
            price: Price::parse(p).unwrap(),
            qty: Qty::parse(q).unwrap(),
        }
    }

    /// OKX's documented checksum examples: two levels a side, and one bid with three asks.
    #[test]
    fn documented_checksums() {
        let bids = [lv("3366.1", "7"), lv("3366", "6")];
        let asks = [lv("3366.8", "9"), lv("3368", "8")];
        assert_eq!(book_checksum(&bids, &asks), -1_881_014_294);
        let asks = [lv("3366.8", "9"), lv("3368", "8"), lv("3372", "8")];
        assert_eq!(book_checksum(&bids[..1], &asks), 831_078_360);
        // Only the top 25 levels count.
        let deep: Vec<Level> = (0..30).map(|i| lv(&format!("{}", 100 - i), "1")).collect();
        let mut deeper = deep.clone();
        deeper[27].qty = Qty::parse("2").unwrap();
        assert_eq!(book_checksum(&deep, &asks), book_checksum(&deeper, &asks));
        deeper[24].qty = Qty::parse("2").unwrap();
        assert_ne!(book_checksum(&deep, &asks), book_checksum(&deeper, &asks));
    }

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

    fn book(action: &str, prev: i64, seq: i64, bids: &str, checksum: i32) -> String {
        format!(
            r#"{{"arg":{{"channel":"books","instId":"BTC-USDT"}},"action":"{action}","data":[{{"asks":[["101","1","0","1"]],"bids":[{bids}],"ts":"1","checksum":{checksum},"prevSeqId":{prev},"seqId":{seq}}}]}}"#
        )
    }

    #[test]
    fn sequence_table() {
        let mut m = SymbolMap::default();
        m.insert("BTC-USDT", InstrumentIndex(0));
        let mut f = OkxFeed::new(OkxCodec::new(m, 1 << 20));
        let mut s = Sink::default();
        let b = r#"["100","1","0","1"]"#;
        let cases = [
            (
                "TC0 update before snapshot",
                book("update", 5, 6, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC1 snapshot",
                book("snapshot", -1, 10, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC2 prev == last",
                book("update", 10, 12, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC3 keep-alive (seq == prev == last)",
                book("update", 12, 12, "", 0),
                FrameOutcome::Handled,
            ),
            (
                "TC4 duplicate",
                book("update", 10, 12, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC5 venue sequence reset",
                book("update", 12, 3, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC6 continues after the reset",
                book("update", 3, 4, b, 0),
                FrameOutcome::Handled,
            ),
            (
                "TC7 gap",
                book("update", 7, 8, b, 0),
                FrameOutcome::Resubscribe(InstrumentIndex(0)),
            ),
            (
                "TC8 after the gap: wait",
                book("update", 8, 9, b, 0),
                FrameOutcome::Handled,
            ),
        ];
        for (label, frame, want) in cases {
            assert_eq!(f.on_frame(0, &frame, &mut s), want, "{label}");
        }
        let st = f.stats();
        assert_eq!((st.snapshots, st.diffs_applied), (1, 4));
        assert_eq!((st.dropped_old, st.gaps, st.before_snapshot), (1, 1, 2));
        assert_eq!(s.lost, 1);
        assert!(f.resyncing());
        // A snapshot with a correct checksum resyncs; an update with a wrong one is a gap.
        let good = book_checksum(&[lv("100", "1")], &[lv("101", "1")]);
        assert_eq!(
            f.on_frame(0, &book("snapshot", -1, 20, b, good), &mut s),
            FrameOutcome::Handled
        );
        assert_eq!(
            f.on_frame(
                0,
                &book("update", 20, 21, r#"["100","2","0","1"]"#, good),
                &mut s
            ),
            FrameOutcome::Resubscribe(InstrumentIndex(0))
        );
        assert_eq!(f.checksum_mismatches, 1);
        let reqs = f.resubscribe_requests(InstrumentIndex(0), 0);
        assert_eq!(
            reqs[0],
            r#"{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}"#
        );
        assert_eq!(f.app_ping(0).unwrap().1, "ping");
        assert_eq!(
            f.frame_symbol(&book("update", 1, 2, b, 0)),
            Some(("BTC-USDT", true))
        );
    }
}
