//! One Binance feed's market-data state: the codec, a book synchroniser per instrument, the
//! diffs buffered while a snapshot is awaited, and counters. Turns frames into engine events
//! through a [`MarketSink`]. Hot path (feed thread) for trades, quotes and in-sync diffs: no
//! allocation; buffering during a resync copies diffs (bounded).

use crate::wire::Codec as _;
use std::collections::VecDeque;

use tradeloop_engine::event::{Event, EventKind};
use tradeloop_engine::instrument::InstrumentIndex;

use super::book_sync::{BookSync, DiffAction, SyncState};
use super::parse::{BinanceCodec, DepthDiff, Market, Parsed};
use crate::feed::{emit_levels, FeedStats, FrameOutcome, LevelsHeader, MarketSink, VenueFeed};
use crate::wire::{Level, ParseError};

#[derive(Clone, Debug)]
struct OwnedDiff {
    header: DepthDiff,
    bids: Vec<Level>,
    asks: Vec<Level>,
    recv_ns: u64,
}

#[derive(Debug)]
struct InstrumentBook {
    sync: BookSync,
    buffered: VecDeque<OwnedDiff>,
}

/// A Binance market-data feed for a set of instruments.
#[derive(Debug)]
pub struct BinanceFeed {
    codec: BinanceCodec,
    market: Market,
    books: Vec<Option<InstrumentBook>>,
    max_buffered: usize,
    stats: FeedStats,
    depth_stream: String,
    snapshot_limit: u32,
}

impl BinanceFeed {
    /// A feed over `codec`'s symbols; at most `max_buffered` diffs are kept per instrument
    /// while a snapshot is awaited.
    #[must_use]
    pub fn new(codec: BinanceCodec, market: Market, max_buffered: usize) -> Self {
        let books = codec.symbols().per_instrument(|_| {
            Some(InstrumentBook {
                sync: BookSync::new(market),
                buffered: VecDeque::new(),
            })
        });
        Self {
            codec,
            market,
            books,
            max_buffered: max_buffered.max(1),
            stats: FeedStats::default(),
            depth_stream: "depth@100ms".to_owned(),
            snapshot_limit: 1000,
        }
    }

    /// Subscribes to `<symbol>@<depth_stream>` (e.g. `depth@100ms`, `depth@0ms`) and requests
    /// `snapshot_limit` levels per REST snapshot (defaults: `depth@100ms`, 1000).
    #[must_use]
    pub fn with_depth(mut self, depth_stream: &str, snapshot_limit: u32) -> Self {
        self.depth_stream = depth_stream.to_owned();
        self.snapshot_limit = snapshot_limit;
        self
    }

    /// Spot or USD-M.
    #[must_use]
    pub fn market(&self) -> Market {
        self.market
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> &FeedStats {
        &self.stats
    }

    /// The codec (symbols, last levels).
    #[must_use]
    pub fn codec(&self) -> &BinanceCodec {
        &self.codec
    }

    /// Sync state of an instrument's book.
    #[must_use]
    pub fn sync_state(&self, instrument: InstrumentIndex) -> Option<SyncState> {
        self.books
            .get(instrument.get())
            .and_then(Option::as_ref)
            .map(|b| b.sync.state())
    }

    /// Instruments whose book waits for a snapshot.
    pub fn awaiting_snapshot(&self) -> impl Iterator<Item = InstrumentIndex> + '_ {
        self.books.iter().enumerate().filter_map(|(i, b)| {
            let b = b.as_ref()?;
            #[allow(
                clippy::cast_possible_truncation,
                reason = "bounded by MAX_INSTRUMENTS"
            )]
            (b.sync.state() == SyncState::AwaitingSnapshot).then_some(InstrumentIndex(i as u16))
        })
    }

    /// Which awaiting instrument an in-stream snapshot (which names no symbol) belongs to: the
    /// one whose buffered diffs are nearest its `lastUpdateId` (update ids of different symbols
    /// are far apart), else the first one awaiting.
    fn snapshot_target(&self, last_update_id: u64) -> Option<InstrumentIndex> {
        let distance = |i: &InstrumentIndex| {
            self.books[i.get()]
                .as_ref()
                .and_then(|b| b.buffered.front())
                .map_or(u64::MAX, |d| d.header.first_id.abs_diff(last_update_id))
        };
        self.awaiting_snapshot().min_by_key(distance)
    }

    /// Forgets every book (after a reconnect): each must be resynced from a snapshot.
    pub fn reset_books(&mut self, sink: &mut (impl MarketSink + ?Sized)) {
        for (i, b) in self.books.iter_mut().enumerate() {
            if let Some(b) = b {
                if b.sync.state() != SyncState::AwaitingSnapshot {
                    #[allow(
                        clippy::cast_possible_truncation,
                        reason = "bounded by MAX_INSTRUMENTS"
                    )]
                    sink.book_lost(InstrumentIndex(i as u16));
                }
                b.sync.reset();
                b.buffered.clear();
            }
        }
    }

    /// `true` while some instrument has diffs buffered for a snapshot (its book is resyncing).
    #[must_use]
    pub fn resyncing(&self) -> bool {
        self.books
            .iter()
            .flatten()
            .any(|b| b.sync.state() == SyncState::AwaitingSnapshot && !b.buffered.is_empty())
    }

    /// Forgets one instrument's book (a delta was lost downstream): it must be resynced.
    pub fn reset_book(
        &mut self,
        instrument: InstrumentIndex,
        sink: &mut (impl MarketSink + ?Sized),
    ) {
        if let Some(Some(b)) = self.books.get_mut(instrument.get()) {
            b.sync.reset();
            b.buffered.clear();
            sink.book_lost(instrument);
        }
    }

    /// Instruments of this feed.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentIndex> + '_ {
        self.codec.symbols().iter().map(|(_, i)| i)
    }

    /// Handles one frame received at `recv_ns`. A REST snapshot line inside a stream (as in
    /// recorded files) goes to the first instrument awaiting one.
    pub fn on_frame(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        self.stats.frames += 1;
        let parsed = match self.codec.parse(frame) {
            Ok(p) => p,
            Err(e) => {
                self.stats.errors[e.index()] += 1;
                return FrameOutcome::Refused(e);
            }
        };
        match parsed {
            Parsed::Trade { trade, exch_ns } => {
                self.stats.trades += 1;
                sink.push(Event::new(recv_ns, exch_ns, EventKind::Trade(trade)));
            }
            Parsed::Quote { quote, exch_ns } => {
                self.stats.quotes += 1;
                sink.push(Event::new(recv_ns, exch_ns, EventKind::Quote(quote)));
            }
            Parsed::MarkPrice { mark, exch_ns } => {
                self.stats.other_events += 1;
                sink.push(Event::new(recv_ns, exch_ns, EventKind::MarkPrice(mark)));
            }
            Parsed::Liquidation {
                liquidation,
                exch_ns,
            } => {
                self.stats.other_events += 1;
                sink.push(Event::new(
                    recv_ns,
                    exch_ns,
                    EventKind::Liquidation(liquidation),
                ));
            }
            Parsed::ControlReply => self.stats.control += 1,
            Parsed::Depth(header) => return self.on_diff(recv_ns, header, sink),
            Parsed::Snapshot(s) => {
                let Some(target) = self.snapshot_target(s.last_update_id) else {
                    // Nobody asked for it (a late duplicate): nothing to apply.
                    self.stats.snapshots_ignored += 1;
                    return FrameOutcome::Handled;
                };
                return self.apply_snapshot(target, recv_ns, s.last_update_id, s.exch_ns, sink);
            }
        }
        FrameOutcome::Handled
    }

    /// Applies a REST snapshot body fetched for `instrument`.
    pub fn on_snapshot(
        &mut self,
        instrument: InstrumentIndex,
        recv_ns: u64,
        body: &str,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        match self.codec.parse(body) {
            Ok(Parsed::Snapshot(s)) => {
                self.apply_snapshot(instrument, recv_ns, s.last_update_id, s.exch_ns, sink)
            }
            Ok(_) => {
                self.stats.errors[ParseError::Malformed("").index()] += 1;
                FrameOutcome::Refused(ParseError::Malformed("not a depth snapshot"))
            }
            Err(e) => {
                self.stats.errors[e.index()] += 1;
                FrameOutcome::Refused(e)
            }
        }
    }

    fn on_diff(
        &mut self,
        recv_ns: u64,
        header: DepthDiff,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        let Some(Some(book)) = self.books.get_mut(header.instrument.get()) else {
            self.stats.errors[ParseError::UnknownSymbol.index()] += 1;
            return FrameOutcome::Refused(ParseError::UnknownSymbol);
        };
        match book.sync.on_diff(&header) {
            DiffAction::Apply => {
                self.stats.diffs_applied += 1;
                self.stats.deltas += emit_levels(
                    sink,
                    recv_ns,
                    &header.levels_header(),
                    self.codec.bids(),
                    self.codec.asks(),
                    false,
                );
                FrameOutcome::Handled
            }
            DiffAction::DropOld => {
                self.stats.dropped_old += 1;
                FrameOutcome::Handled
            }
            DiffAction::Buffer => {
                if book.buffered.len() == self.max_buffered {
                    book.buffered.pop_front();
                    self.stats.buffer_overflow += 1;
                }
                book.buffered.push_back(OwnedDiff {
                    header,
                    bids: self.codec.bids().to_vec(),
                    asks: self.codec.asks().to_vec(),
                    recv_ns,
                });
                if book.buffered.len() == 1 {
                    FrameOutcome::NeedSnapshot(header.instrument)
                } else {
                    FrameOutcome::Handled
                }
            }
            DiffAction::Gap { .. } => {
                self.stats.gaps += 1;
                sink.book_lost(header.instrument);
                // The sync now awaits a snapshot; this diff starts the new buffer.
                book.buffered.clear();
                book.buffered.push_back(OwnedDiff {
                    header,
                    bids: self.codec.bids().to_vec(),
                    asks: self.codec.asks().to_vec(),
                    recv_ns,
                });
                FrameOutcome::NeedSnapshot(header.instrument)
            }
        }
    }

    fn apply_snapshot(
        &mut self,
        instrument: InstrumentIndex,
        recv_ns: u64,
        last_update_id: u64,
        exch_ns: u64,
        sink: &mut (impl MarketSink + ?Sized),
    ) -> FrameOutcome {
        let Some(Some(book)) = self.books.get_mut(instrument.get()) else {
            self.stats.errors[ParseError::UnknownSymbol.index()] += 1;
            return FrameOutcome::Refused(ParseError::UnknownSymbol);
        };
        self.stats.snapshots += 1;
        let header = DepthDiff {
            instrument,
            first_id: last_update_id,
            last_id: last_update_id,
            prev_last_id: None,
            exch_ns,
        };
        self.stats.deltas += emit_levels(
            sink,
            recv_ns,
            &header.levels_header(),
            self.codec.bids(),
            self.codec.asks(),
            true,
        );
        book.sync.on_snapshot(last_update_id);
        // Replay what was buffered while waiting, under the same rules.
        let buffered = std::mem::take(&mut book.buffered);
        let mut outcome = FrameOutcome::Handled;
        for d in buffered {
            match book.sync.on_diff(&d.header) {
                DiffAction::Apply => {
                    self.stats.diffs_applied += 1;
                    self.stats.deltas += emit_levels(
                        sink,
                        d.recv_ns,
                        &d.header.levels_header(),
                        &d.bids,
                        &d.asks,
                        false,
                    );
                }
                DiffAction::DropOld => self.stats.dropped_old += 1,
                DiffAction::Gap { .. } => {
                    // The snapshot is older than the oldest buffered diff: try again.
                    self.stats.gaps += 1;
                    sink.book_lost(instrument);
                    book.sync.reset();
                    outcome = FrameOutcome::NeedSnapshot(instrument);
                }
                DiffAction::Buffer => book.buffered.push_back(d),
            }
        }
        outcome
    }
}

/// Binance's combined-stream protocol: `<ws_url>/stream`, one `SUBSCRIBE` for every symbol's
/// `@trade`, `@bookTicker` and depth stream, WebSocket control pings only, and books resynced
/// from REST snapshots (`/api/v3/depth` on spot, `/fapi/v1/depth` on USD-M).
impl VenueFeed for BinanceFeed {
    fn symbols(&self) -> &crate::symbols::SymbolMap {
        self.codec.symbols()
    }

    fn protocol(&self) -> &'static str {
        "binance"
    }

    fn ws_endpoint(&self, ws_url: &str) -> String {
        format!("{}/stream", ws_url.trim_end_matches('/'))
    }

    fn subscribe_requests(&self, req_id: u64) -> Vec<String> {
        let mut streams = Vec::new();
        for (symbol, _) in self.codec.symbols().iter() {
            let s = symbol.to_ascii_lowercase();
            streams.push(format!("{s}@trade"));
            streams.push(format!("{s}@bookTicker"));
            streams.push(format!("{s}@{}", self.depth_stream));
        }
        vec![
            serde_json::json!({ "method": "SUBSCRIBE", "params": streams, "id": req_id })
                .to_string(),
        ]
    }

    fn snapshot_url(&self, rest_url: &str, instrument: InstrumentIndex) -> Option<String> {
        let symbol = self.symbol_of(instrument)?;
        let path = match self.market {
            Market::Spot => "/api/v3/depth",
            Market::UsdM => "/fapi/v1/depth",
        };
        Some(format!(
            "{}{path}?symbol={symbol}&limit={}",
            rest_url.trim_end_matches('/'),
            self.snapshot_limit
        ))
    }

    fn on_frame<S: MarketSink + ?Sized>(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut S,
    ) -> FrameOutcome {
        BinanceFeed::on_frame(self, recv_ns, frame, sink)
    }

    fn on_snapshot<S: MarketSink + ?Sized>(
        &mut self,
        instrument: InstrumentIndex,
        recv_ns: u64,
        body: &str,
        sink: &mut S,
    ) -> FrameOutcome {
        BinanceFeed::on_snapshot(self, instrument, recv_ns, body, sink)
    }

    fn reset_books<S: MarketSink + ?Sized>(&mut self, sink: &mut S) {
        BinanceFeed::reset_books(self, sink);
    }

    fn reset_book<S: MarketSink + ?Sized>(&mut self, instrument: InstrumentIndex, sink: &mut S) {
        BinanceFeed::reset_book(self, instrument, sink);
    }

    fn resyncing(&self) -> bool {
        BinanceFeed::resyncing(self)
    }

    fn frame_symbol<'f>(&self, frame: &'f str) -> Option<(&'f str, bool)> {
        // `{"stream":"btcusdt@depth@100ms",…`
        let rest = frame.strip_prefix("{\"stream\":\"")?;
        let stream = &rest[..rest.find('"')?];
        let (symbol, kind) = stream.split_once('@')?;
        Some((symbol, kind.starts_with("depth")))
    }

    fn stats(&self) -> &FeedStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut FeedStats {
        &mut self.stats
    }
}

impl DepthDiff {
    /// What every emitted level of this message carries.
    fn levels_header(&self) -> LevelsHeader {
        LevelsHeader {
            instrument: self.instrument,
            update_id: self.last_id,
            exch_ns: self.exch_ns,
        }
    }
}
