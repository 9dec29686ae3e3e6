//! Inputs the benchmarks, the `bench` command and the instruction gate's hot-path run share:
//! a one-instrument registry, a Binance codec for it, and the simulated venue's BTCUSDT frames.

use tradeloop_adapters::binance::parse::BinanceCodec;
use tradeloop_adapters::sim::market::{Rng, SimSymbol, WireProtocol};
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{
    ContractKind, InstrumentError, InstrumentIndex, InstrumentRegistry,
};

/// A Binance codec that knows BTCUSDT as instrument 0, taking frames up to 4 MiB.
#[must_use]
pub fn btc_codec() -> BinanceCodec {
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", InstrumentIndex(0));
    BinanceCodec::new(symbols, 1 << 22)
}

/// One spot BTCUSDT instrument (tick 0.01, lot 0.001), as the bench frames quote it.
///
/// # Errors
/// None in practice (one instrument cannot collide); the registry's error type is kept.
pub fn bench_registry() -> Result<InstrumentRegistry, InstrumentError> {
    let mut registry = InstrumentRegistry::new();
    registry.add(
        "bench",
        "BTCUSDT",
        Price::parse("0.01").expect("c"),
        Qty::parse("0.001").expect("c"),
        ContractKind::Spot,
    )?;
    Ok(registry)
}

/// The simulated venue's BTCUSDT market from `seed` (start 60,000, tick 0.1, lot 0.001, 200
/// levels) in `protocol`'s wire format: a (Binance REST) depth snapshot body, then `count`
/// stream frames in the venue's order.
#[must_use]
pub fn sim_btc_frames(seed: u64, count: usize, protocol: WireProtocol) -> (String, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut sym = SimSymbol::new(
        "BTCUSDT",
        Price::from_units(60_000),
        Price::parse("0.1").expect("constant"),
        Qty::parse("0.001").expect("constant"),
        200,
        &mut rng,
    );
    sym.speak(protocol);
    let snapshot = sym.snapshot(1000);
    let mut out = Vec::with_capacity(count + 64);
    let mut step = 0u64;
    while out.len() < count {
        sym.step(&mut rng, 1_700_000_000_000 + step, &mut out);
        if step % 20 == 19 {
            out.extend(sym.depth_diff(1_700_000_000_000 + step));
        }
        step += 1;
    }
    out.truncate(count);
    (snapshot, out)
}
