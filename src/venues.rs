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

/// A venue's wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Binance with its spot or USD-M book sync rule.
    Binance(Market),
    /// Bybit v5.
    Bybit,
    /// Kraken spot v2.
    Kraken,
    /// Coinbase Advanced Trade.
    Coinbase,
    /// OKX v5.
    Okx,
}

impl Wire {
    /// The protocol of a venue kind (a `sim` venue speaks `[sim].protocol`).
    #[must_use]
    pub fn of(kind: VenueKind, sim: SimProtocol) -> Self {
        match kind {
            VenueKind::Binance => Self::Binance(Market::Spot),
            VenueKind::BinanceUsdm => Self::Binance(Market::UsdM),
            VenueKind::Bybit => Self::Bybit,
            VenueKind::Kraken => Self::Kraken,
            VenueKind::Coinbase => Self::Coinbase,
            VenueKind::Okx => Self::Okx,
            VenueKind::Sim => match sim {
                SimProtocol::Binance => Self::Binance(Market::Spot),
                SimProtocol::Bybit => Self::Bybit,
                SimProtocol::Kraken => Self::Kraken,
                SimProtocol::Coinbase => Self::Coinbase,
                SimProtocol::Okx => Self::Okx,
            },
        }
    }

    /// What the simulated venue serves for this protocol.
    #[must_use]
    pub fn sim_protocol(self, feed: &FeedSection) -> WireProtocol {
        match self {
            Self::Binance(_) => WireProtocol::Binance,
            Self::Bybit => WireProtocol::Bybit {
                depth: feed.bybit_depth,
            },
            Self::Kraken => WireProtocol::Kraken {
                depth: feed.kraken_depth,
            },
            Self::Coinbase => WireProtocol::Coinbase,
            Self::Okx => WireProtocol::Okx,
        }
    }
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

/// Builds the feed of `wire` for `symbols` from the `[feed]` settings and hands it to `w`.
pub fn with_feed<W: WithFeed>(
    wire: Wire,
    symbols: SymbolMap,
    registry: &InstrumentRegistry,
    f: &FeedSection,
    w: W,
) -> W::Out {
    match wire {
        Wire::Binance(market) => w.with(
            BinanceFeed::new(
                BinanceCodec::new(symbols, f.max_frame_bytes),
                market,
                f.max_buffered_diffs,
            )
            .with_depth(&f.depth_stream, f.snapshot_limit),
        ),
        Wire::Bybit => w.with(BybitFeed::new(
            BybitCodec::new(symbols, f.max_frame_bytes),
            f.bybit_depth,
        )),
        Wire::Coinbase => w.with(CoinbaseFeed::new(CoinbaseCodec::new(
            symbols,
            f.max_frame_bytes,
        ))),
        Wire::Okx => w.with(OkxFeed::new(OkxCodec::new(symbols, f.max_frame_bytes))),
        Wire::Kraken => {
            let precision = precisions(&symbols, registry);
            w.with(KrakenFeed::new(
                KrakenCodec::new(symbols, f.max_frame_bytes),
                f.kraken_depth,
                &precision,
            ))
        }
    }
}
