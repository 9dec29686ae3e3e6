//! The engine thread allocates nothing per event with the market maker running: 400,000
//! market events (book snapshots of the touch and trades on a random walk) through the
//! engine, pre-trade risk and the simulated venue, the market maker quoting, amending,
//! cancelling and getting filled, under a counting global allocator. One test in this binary,
//! so nothing else allocates meanwhile.

use tradeloop_engine::api::Context;
use tradeloop_engine::fixed::Qty;
use tradeloop_examples::market_maker::{MarketMaker, MarketMakerParams};

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;
mod common;

use common::{drive, engine, tick, BTC};

#[test]
fn the_market_maker_allocates_nothing_per_event() {
    let params = MarketMakerParams {
        qty: Qty::parse("0.002").unwrap(),
        max_position: Qty::parse("0.01").unwrap(),
        refresh_ms: 50,
        ..MarketMakerParams::default()
    };
    let (mut engine, clock) = engine(MarketMaker::new(&params, BTC, tick()));
    let allocations = drive(
        &mut engine,
        &clock,
        20_000,
        400_000,
        alloc_counter::allocations,
    );
    let s = engine.strategy().stats;
    let c = *engine.counters();
    assert!(s.quotes_sent > 100, "it quoted: {s:?}");
    assert!(s.amends > 1_000, "it amended: {s:?}");
    assert!(
        s.fills > 100 && s.maker_fills == s.fills,
        "resting fills: {s:?}"
    );
    assert!(s.timers > 100, "its timer fired: {s:?}");
    assert!(
        s.requoted_unfilled > 0,
        "quotes lost their place unfilled: {s:?}"
    );
    assert_eq!(c.amends_sent, s.amends, "every amend reached the gateway");
    assert!(
        engine.core().position(BTC).qty.abs() <= params.max_position,
        "within the position limit"
    );
    assert_eq!(
        allocations, 0,
        "heap allocations on the engine thread across 400000 events"
    );
}
