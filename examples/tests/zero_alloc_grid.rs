//! The engine thread allocates nothing per event with the grid maker or the momentum taker
//! running: 400,000 market events (book snapshots of the touch and trades on a random walk)
//! through the engine, pre-trade risk and the simulated venue under a counting global
//! allocator, each strategy sending, cancelling and getting filled. One test in this binary,
//! so nothing else allocates meanwhile.

use tradeloop_engine::fixed::Qty;
use tradeloop_examples::grid::{Grid, GridParams};
use tradeloop_examples::momentum::{Momentum, MomentumParams};

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;
mod common;

use common::{drive, engine, tick, BTC};

#[test]
fn the_grid_and_the_momentum_taker_allocate_nothing_per_event() {
    let params = GridParams {
        max_position: Qty::parse("0.01").unwrap(),
        refresh_ms: 20,
        ..GridParams::default()
    };
    let (mut grid, clock) = engine(Grid::new(&params, BTC, tick()));
    let allocations = drive(
        &mut grid,
        &clock,
        20_000,
        400_000,
        alloc_counter::allocations,
    );
    let s = grid.strategy().stats;
    assert!(
        s.orders > 100 && s.cancels > 20,
        "it quoted and requoted: {s:?}"
    );
    assert!(s.fills > 50, "it was filled: {s:?}");
    assert_eq!(
        allocations, 0,
        "grid: heap allocations across 400000 events"
    );

    let params = MomentumParams {
        interval_ms: 20,
        ..MomentumParams::default()
    };
    let (mut taker, clock) = engine(Momentum::new(&params, BTC));
    let allocations = drive(
        &mut taker,
        &clock,
        20_000,
        400_000,
        alloc_counter::allocations,
    );
    let s = taker.strategy().stats;
    assert!(s.orders > 100 && s.fills > 50, "it took liquidity: {s:?}");
    assert_eq!(
        allocations, 0,
        "momentum: heap allocations across 400000 events"
    );
}
