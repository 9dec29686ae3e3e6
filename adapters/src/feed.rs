//! What every venue's market-data feed offers the runner and the replays: a sink for the events
//! it produces, its counters, what a frame did, and the [`VenueFeed`] protocol trait through
//! which the one reconnecting runner (`crate::runner`) drives any venue: where to connect, what
//! to send after connecting, the application-level ping, how a lost book is recovered (a REST
//! snapshot or a resubscription), and the frame handler itself.

use std::time::Duration;

use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;

use crate::symbols::SymbolMap;
use crate::wire::{Level, ParseError};

/// Where a feed's events go (a lane, or a vector in tests and replays).
pub trait MarketSink {
    /// One market-data event.
    fn push(&mut self, event: Event);
    /// An instrument's book lost continuity: the engine must stop trusting it until the
    /// snapshot that follows.
    fn book_lost(&mut self, instrument: InstrumentIndex);
}

/// Counters of one feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Frames seen.
    pub frames: u64,
    /// Trades emitted.
    pub trades: u64,
    /// Quotes emitted.
    pub quotes: u64,
    /// Depth diffs applied.
    pub diffs_applied: u64,
    /// Book level events emitted (snapshots and diffs).
    pub deltas: u64,
    /// Snapshots applied.
    pub snapshots: u64,
    /// Continuity gaps detected (each forces a resync).
    pub gaps: u64,
    /// Diffs older than the book, ignored.
    pub dropped_old: u64,
    /// Deltas that arrived while their book waited for an in-stream snapshot, ignored.
    pub before_snapshot: u64,
    /// In-stream snapshots that no book was waiting for (already synced), ignored.
    pub snapshots_ignored: u64,
    /// Diffs discarded from a full resync buffer.
    pub buffer_overflow: u64,
    /// Mark-price and liquidation events emitted.
    pub other_events: u64,
    /// Subscription replies.
    pub control: u64,
    /// Refused frames per [`ParseError::index`].
    pub errors: [u64; ParseError::KINDS],
}

impl FeedStats {
    /// Refused frames of every kind.
    #[must_use]
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// What a frame did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameOutcome {
    /// Handled.
    Handled,
    /// Handled, and this instrument now needs a REST snapshot (fetch it from
    /// [`VenueFeed::snapshot_url`] and call [`VenueFeed::on_snapshot`]).
    NeedSnapshot(InstrumentIndex),
    /// Handled, and this instrument's book lost continuity on a venue that sends its snapshots
    /// in-stream: send [`VenueFeed::resubscribe_requests`] to get a fresh snapshot.
    Resubscribe(InstrumentIndex),
    /// Refused (counted).
    Refused(ParseError),
}

/// A venue's market-data protocol, as the runner needs it. Implemented by each venue's feed
/// (Binance, Bybit, Kraken, Coinbase, OKX); the frame handler runs on the feed thread and must
/// not allocate per frame once warm. Venues that resync in-stream need not implement the REST
/// parts; a venue with no application ping keeps the default.
pub trait VenueFeed: Send + 'static {
    /// Protocol name for logs (`binance`, `bybit`, …).
    fn protocol(&self) -> &'static str;

    /// The venue's symbols and their instruments.
    fn symbols(&self) -> &SymbolMap;

    /// The WebSocket URL to connect to, from the venue's configured `ws_url` (default: as is).
    fn ws_endpoint(&self, ws_url: &str) -> String {
        ws_url.trim_end_matches('/').to_owned()
    }

    /// Text frames to send right after connecting (subscriptions). `req_id` grows with every
    /// connection so that replies can be told apart.
    fn subscribe_requests(&self, req_id: u64) -> Vec<String>;

    /// Text frames that make the venue send `instrument`'s book again from a snapshot (for
    /// venues whose snapshots arrive in-stream). Empty if the venue resyncs over REST.
    fn resubscribe_requests(&self, _instrument: InstrumentIndex, _req_id: u64) -> Vec<String> {
        Vec::new()
    }

    /// The application-level ping the venue requires, and how often (`None`: WebSocket
    /// control pings, or the venue's own heartbeats, are enough).
    fn app_ping(&self, _req_id: u64) -> Option<(Duration, String)> {
        None
    }

    /// REST URL of `instrument`'s depth snapshot, for venues that resync over REST.
    fn snapshot_url(&self, _rest_url: &str, _instrument: InstrumentIndex) -> Option<String> {
        None
    }

    /// Handles one text frame received at `recv_ns`.
    fn on_frame<S: MarketSink + ?Sized>(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut S,
    ) -> FrameOutcome;

    /// Applies a REST snapshot body fetched from [`Self::snapshot_url`] (venues that resync
    /// in-stream refuse it, counted).
    fn on_snapshot<S: MarketSink + ?Sized>(
        &mut self,
        _instrument: InstrumentIndex,
        _recv_ns: u64,
        _body: &str,
        _sink: &mut S,
    ) -> FrameOutcome {
        self.count_refused(ParseError::Malformed("this venue's books resync in-stream"))
    }

    /// Forgets every book (after a disconnect): each must be resynced.
    fn reset_books<S: MarketSink + ?Sized>(&mut self, sink: &mut S) {
        for i in self.instruments() {
            self.reset_book(i, sink);
        }
    }

    /// Forgets one instrument's book (a delta was lost downstream): it must be resynced.
    fn reset_book<S: MarketSink + ?Sized>(&mut self, instrument: InstrumentIndex, sink: &mut S);

    /// `true` while some book that has seen data waits for its snapshot.
    fn resyncing(&self) -> bool;

    /// The feed's instruments.
    fn instruments(&self) -> Vec<InstrumentIndex> {
        self.symbols().iter().map(|(_, i)| i).collect()
    }

    /// The venue symbol of an instrument (for logs and requests).
    fn symbol_of(&self, instrument: InstrumentIndex) -> Option<&str> {
        self.symbols()
            .iter()
            .find(|(_, i)| *i == instrument)
            .map(|(s, _)| s)
    }

    /// For the recorder: the symbol (any case) a raw frame belongs to, and whether it is a
    /// book-depth frame; `None` for replies and other frames. Never parses the whole frame.
    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)>;

    /// Counters.
    fn stats(&self) -> &FeedStats;

    /// Counters, to update.
    fn stats_mut(&mut self) -> &mut FeedStats;

    /// Counts a refused frame by kind and says so.
    fn count_refused(&mut self, e: ParseError) -> FrameOutcome {
        self.stats_mut().errors[e.index()] += 1;
        FrameOutcome::Refused(e)
    }
}

/// What every level event of one venue book message carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelsHeader {
    /// Instrument.
    pub instrument: InstrumentIndex,
    /// The message's update id (the book's version after it).
    pub update_id: u64,
    /// Venue time, ns since the epoch.
    pub exch_ns: u64,
}

fn delta(recv_ns: u64, h: &LevelsHeader, side: Side, l: Level, flags: u8) -> Event {
    Event::new(
        recv_ns,
        h.exch_ns,
        EventKind::BookDelta(BookDelta {
            instrument: h.instrument,
            side,
            flags: DeltaFlags(flags),
            price: l.price,
            qty: l.qty,
            update_id: h.update_id,
        }),
    )
}

/// Emits one venue message's levels (bids, then asks); the last is flagged `LAST_IN_MESSAGE`,
/// and for a snapshot the first also clears the book. An empty snapshot is one empty level
/// with both flags. Returns how many events were emitted.
pub(crate) fn emit_levels(
    sink: &mut (impl MarketSink + ?Sized),
    recv_ns: u64,
    h: &LevelsHeader,
    bids: &[Level],
    asks: &[Level],
    snapshot: bool,
) -> u64 {
    let total = bids.len() + asks.len();
    if total == 0 {
        if snapshot {
            let empty = Level {
                price: Price::ZERO,
                qty: Qty::ZERO,
            };
            sink.push(delta(
                recv_ns,
                h,
                Side::Buy,
                empty,
                DeltaFlags::SNAPSHOT_BEGIN | DeltaFlags::LAST_IN_MESSAGE,
            ));
            return 1;
        }
        return 0;
    }
    let levels = bids
        .iter()
        .map(|l| (Side::Buy, *l))
        .chain(asks.iter().map(|l| (Side::Sell, *l)));
    for (n, (side, l)) in levels.enumerate() {
        let mut flags = if snapshot && n == 0 {
            DeltaFlags::SNAPSHOT_BEGIN
        } else {
            0
        };
        if n + 1 == total {
            flags |= DeltaFlags::LAST_IN_MESSAGE;
        }
        sink.push(delta(recv_ns, h, side, l, flags));
    }
    total as u64
}

/// One side of a venue feed's own copy of a book, best first (for venues whose checksums or
/// depth rules need the book on the feed thread). Setting a level is a binary search and an
/// insert or remove in a `Vec` that keeps its capacity.
#[derive(Clone, Debug, Default)]
pub(crate) struct SideBook {
    /// Levels, best first.
    pub levels: Vec<Level>,
}

impl SideBook {
    /// Bid order: a higher price ranks first.
    pub const BIDS: fn(Price, Price) -> bool = |a, b| a > b;
    /// Ask order: a lower price ranks first.
    pub const ASKS: fn(Price, Price) -> bool = |a, b| a < b;

    /// Sets or removes a level; `better(a, b)` is `true` when price `a` ranks before `b`.
    pub fn set(&mut self, l: Level, better: fn(Price, Price) -> bool) {
        let at = self.levels.partition_point(|x| better(x.price, l.price));
        let same = self.levels.get(at).is_some_and(|x| x.price == l.price);
        match (same, l.qty > Qty::ZERO) {
            (true, true) => self.levels[at].qty = l.qty,
            (true, false) => {
                self.levels.remove(at);
            }
            (false, true) => self.levels.insert(at, l),
            (false, false) => {}
        }
    }

    /// Cuts to `depth`, appending what falls out to `evicted` (as removals).
    pub fn truncate(&mut self, depth: usize, evicted: &mut Vec<Level>) {
        if self.levels.len() > depth {
            evicted.extend(self.levels.drain(depth..).map(|l| Level {
                price: l.price,
                qty: Qty::ZERO,
            }));
        }
    }
}
