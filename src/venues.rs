//! Which wire protocol a configured venue speaks, and the venue feed built for it — one place
//! for `run`, `record` and the replays, so that every venue kind is wired the same way.

use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::bybit::feed::BybitFeed;
use tradeloop_adapters::bybit::parse::BybitCodec;
use tradeloop_adapters::coinbase::feed::CoinbaseFeed;
use tradeloop_adapters::coinbase::parse::CoinbaseCodec;
use tradeloop_adapters::feed::VenueFeed;
use tradeloop_adapters::kraken::feed::{KrakenFeed, Precision};
use tradeloop_adapters::kraken::parse::KrakenCodec;
use tradeloop_adapters::okx::feed::OkxFeed;
use tradeloop_adapters::okx::parse::OkxCodec;
use tradeloop_adapters::sim::market::WireProtocol;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::instrument::{InstrumentIndex, InstrumentRegistry};

use crate::config::{FeedSection, SimProtocol, VenueKind};

/// A venue's wire protocol: what a configured venue speaks, what a recording holds, and what
/// the simulated venue serves. The one list of protocols; [`feed`] builds the parser of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Binance with its spot or USD-M book sync rule.
    Binance(Market),
    /// Bybit v5, with the depth of its book topic.
    Bybit(u16),
    /// Kraken spot v2.
    Kraken,
    /// Coinbase Advanced Trade.
    Coinbase,
    /// OKX v5.
    Okx,
}

impl Wire {
    /// The protocol of a venue kind (a `sim` venue speaks `[sim].protocol`); Bybit's book
    /// depth is `[feed].bybit_depth`.
    #[must_use]
    pub fn of(kind: VenueKind, sim: SimProtocol, feed: &FeedSection) -> Self {
        match kind {
            VenueKind::Binance => Self::Binance(Market::Spot),
            VenueKind::BinanceUsdm => Self::Binance(Market::UsdM),
            VenueKind::Bybit => Self::Bybit(feed.bybit_depth),
            VenueKind::Kraken => Self::Kraken,
            VenueKind::Coinbase => Self::Coinbase,
            VenueKind::Okx => Self::Okx,
            VenueKind::Sim => match sim {
                SimProtocol::Binance => Self::Binance(Market::Spot),
                SimProtocol::Bybit => Self::Bybit(feed.bybit_depth),
                SimProtocol::Kraken => Self::Kraken,
                SimProtocol::Coinbase => Self::Coinbase,
                SimProtocol::Okx => Self::Okx,
            },
        }
    }

    /// The (non-simulated) venue kind that speaks this protocol: the configured venues a
    /// recording in it replays into.
    #[must_use]
    pub const fn kind(self) -> VenueKind {
        match self {
            Self::Binance(Market::Spot) => VenueKind::Binance,
            Self::Binance(Market::UsdM) => VenueKind::BinanceUsdm,
            Self::Bybit(_) => VenueKind::Bybit,
            Self::Kraken => VenueKind::Kraken,
            Self::Coinbase => VenueKind::Coinbase,
            Self::Okx => VenueKind::Okx,
        }
    }

    /// What the simulated venue serves for this protocol.
    #[must_use]
    pub fn sim_protocol(self, feed: &FeedSection) -> WireProtocol {
        match self {
            Self::Binance(_) => WireProtocol::Binance,
            Self::Bybit(depth) => WireProtocol::Bybit { depth },
            Self::Kraken => WireProtocol::Kraken {
                depth: feed.kraken_depth,
            },
            Self::Coinbase => WireProtocol::Coinbase,
            Self::Okx => WireProtocol::Okx,
        }
    }
}

/// A venue feed of whichever protocol, for code that keeps feeds of several protocols side by
/// side (a replay of several recordings); `run` and `record` hand the concrete feed to a
/// [`WithFeed`] instead, so that the live path is monomorphised per venue.
pub enum AnyFeed {
    /// Binance.
    Binance(BinanceFeed),
    /// Bybit.
    Bybit(BybitFeed),
    /// Kraken.
    Kraken(KrakenFeed),
    /// Coinbase.
    Coinbase(CoinbaseFeed),
    /// OKX.
    Okx(OkxFeed),
}

impl AnyFeed {
    /// [`VenueFeed::on_frame`] of the feed inside.
    pub fn on_frame(
        &mut self,
        recv_ns: u64,
        frame: &str,
        sink: &mut impl tradeloop_adapters::feed::MarketSink,
    ) -> tradeloop_adapters::feed::FrameOutcome {
        match self {
            Self::Binance(f) => f.on_frame(recv_ns, frame, sink),
            Self::Bybit(f) => f.on_frame(recv_ns, frame, sink),
            Self::Kraken(f) => f.on_frame(recv_ns, frame, sink),
            Self::Coinbase(f) => f.on_frame(recv_ns, frame, sink),
            Self::Okx(f) => f.on_frame(recv_ns, frame, sink),
        }
    }
}

/// Whether a feed reads a live connection or replays a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedUse {
    /// A connection (or the simulated venue's).
    Live,
    /// A recording: Coinbase's connection-wide sequence is not checked (the recorder writes
    /// one file per product, so it has holes by construction).
    Replay,
}

/// Something done with a venue feed of whichever type the protocol needs.
pub trait WithFeed {
    /// Result.
    type Out;
    /// Runs with the built feed.
    fn with<F: VenueFeed>(self, feed: F) -> Self::Out;
}

/// Kraken's checksum precision of each instrument in `symbols`: from the registry's tick and
/// lot size where the symbol is an instrument, else Kraken's usual 1 and 8 decimals (only a
/// recorder, which checks no checksum, subscribes symbols outside the registry).
fn precisions(
    symbols: &SymbolMap,
    registry: &InstrumentRegistry,
) -> Vec<(InstrumentIndex, Precision)> {
    symbols
        .iter()
        .map(|(s, i)| {
            let p = registry
                .iter()
                .find(|x| x.symbol.eq_ignore_ascii_case(s))
                .map_or(Precision { price: 1, qty: 8 }, |x| {
                    Precision::of(x.tick_size, x.lot_size)
                });
            (i, p)
        })
        .collect()
}

/// The feed of `wire` for `symbols`, from the `[feed]` settings: the one place feeds are built.
#[must_use]
pub fn feed(
    wire: Wire,
    symbols: SymbolMap,
    registry: &InstrumentRegistry,
    f: &FeedSection,
    use_: FeedUse,
) -> AnyFeed {
    match wire {
        Wire::Binance(market) => AnyFeed::Binance(
            BinanceFeed::new(
                BinanceCodec::new(symbols, f.max_frame_bytes),
                market,
                f.max_buffered_diffs,
            )
            .with_depth(&f.depth_stream, f.snapshot_limit),
        ),
        Wire::Bybit(depth) => AnyFeed::Bybit(BybitFeed::new(
            BybitCodec::new(symbols, f.max_frame_bytes),
            depth,
        )),
        Wire::Coinbase => {
            let feed = CoinbaseFeed::new(CoinbaseCodec::new(symbols, f.max_frame_bytes));
            AnyFeed::Coinbase(match use_ {
                FeedUse::Live => feed,
                FeedUse::Replay => feed.for_replay(),
            })
        }
        Wire::Okx => AnyFeed::Okx(OkxFeed::new(OkxCodec::new(symbols, f.max_frame_bytes))),
        Wire::Kraken => {
            let precision = precisions(&symbols, registry);
            AnyFeed::Kraken(KrakenFeed::new(
                KrakenCodec::new(symbols, f.max_frame_bytes),
                f.kraken_depth,
                &precision,
            ))
        }
    }
}

/// Builds the live feed of `wire` for `symbols` ([`feed`]) and hands it, as its own type, to
/// `w`.
pub fn with_feed<W: WithFeed>(
    wire: Wire,
    symbols: SymbolMap,
    registry: &InstrumentRegistry,
    f: &FeedSection,
    w: W,
) -> W::Out {
    match feed(wire, symbols, registry, f, FeedUse::Live) {
        AnyFeed::Binance(x) => w.with(x),
        AnyFeed::Bybit(x) => w.with(x),
        AnyFeed::Kraken(x) => w.with(x),
        AnyFeed::Coinbase(x) => w.with(x),
        AnyFeed::Okx(x) => w.with(x),
    }
}
