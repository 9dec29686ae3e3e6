//! The engine thread allocates nothing per event with a portfolio running: the market maker
//! and the imbalance taker in one engine (every market event fanned out to both, each order's
//! reports routed to its member, attributed positions kept per member, member timers), over
//! 400,000 market events through the engine, pre-trade risk and the simulated venue, under a
//! counting global allocator. One test in this binary, so nothing else allocates meanwhile.

use tradeloop_engine::api::Context;
use tradeloop_engine::fixed::Qty;
use tradeloop_engine::portfolio::{Either, MemberLimits, Portfolio};
use tradeloop_examples::imbalance::{Imbalance, ImbalanceParams};
use tradeloop_examples::market_maker::{MarketMaker, MarketMakerParams};

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;
mod common;

use common::{drive, engine, registry, tick, BTC};

#[test]
fn a_portfolio_allocates_nothing_per_event() {
    let mm = MarketMakerParams {
        qty: Qty::parse("0.002").unwrap(),
        max_position: Qty::parse("0.01").unwrap(),
        refresh_ms: 50,
        ..MarketMakerParams::default()
    };
    let imb = ImbalanceParams {
        threshold_pct: 51,
        hold_ms: 20,
        cooldown_ms: 5,
        ..ImbalanceParams::default()
    };
    let limits = MemberLimits {
        max_open_orders: Some(4),
        ..MemberLimits::default()
    };
    let members = vec![
        (Either::Left(MarketMaker::new(&mm, BTC, tick())), limits),
        (Either::Right(Imbalance::new(&imb, BTC, tick())), limits),
    ];
    let portfolio = Portfolio::new(members, &registry()).unwrap();
    let (mut engine, clock) = engine(portfolio);
    let allocations = drive(
        &mut engine,
        &clock,
        20_000,
        400_000,
        alloc_counter::allocations,
    );
    let members = engine.strategy().members();
    let (Either::Left(m), Either::Right(i)) = (&members[0].strategy, &members[1].strategy) else {
        unreachable!("built in this order")
    };
    assert!(
        m.stats.fills > 100 && m.stats.amends > 1_000,
        "the market maker traded: {:?}",
        m.stats
    );
    assert!(
        i.stats.entries > 100 && i.stats.exits > 100,
        "the taker traded: {:?}",
        i.stats
    );
    let attributed = members[0].positions[0].qty + members[1].positions[0].qty;
    assert_eq!(
        attributed,
        engine.core().position(BTC).qty,
        "members add up to the account"
    );
    assert_eq!(
        allocations, 0,
        "heap allocations on the engine thread across 400000 events"
    );
}
