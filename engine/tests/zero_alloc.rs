//! Proves the engine thread makes no heap allocation in steady state: 1,000,000 events (trades
//! and book deltas in, the example strategy's orders out, acks and fills back through the HIGH
//! lane, order/fill/position records out to the persistence outbox) under a counting global allocator. One test per binary so no other test allocates
//! concurrently.
#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

mod common;

use std::sync::Arc;

use common::{delta, registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::Context;
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{DeltaFlags, Side};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::persist::{Outbox, Record};
use tradeloop_engine::strategies::{MaCross, MaCrossConfig};

mod alloc_counter;

const EVENTS: u64 = 1_000_000;
const WARMUP: u64 = 20_000;

#[test]
fn engine_thread_allocates_nothing_per_event() {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let gateway = LaneGateway::new(Arc::clone(&lanes), Answer::Fill);
    let cfg = MaCrossConfig {
        fast: 10,
        slow: 40,
        ..MaCrossConfig::default()
    };
    let strategy = MaCross::new(
        &cfg,
        BTC,
        tradeloop_engine::fixed::Price::parse("0.01").unwrap(),
    );
    let clock = SimClock::new(1);
    let outbox = Arc::new(Outbox::new(65_536));
    let mut engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        strategy,
        AllowAll,
        gateway,
        clock.clone(),
    )
    .with_outbox(Arc::clone(&outbox))
    .with_breakers(every_breaker_on());
    // The writer's side, preallocated so that draining allocates nothing either.
    let mut written: Vec<Record> = Vec::with_capacity(65_536);
    let mut fills_persisted = 0u64;

    // Deterministic random walk of trade prices (cents) with book deltas around it.
    let mut price: i64 = 60_000_00;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let snapshot_flags = DeltaFlags::SNAPSHOT_BEGIN;
    lanes.push_normal(delta(1, Side::Buy, price - 1, 1, snapshot_flags, 0));
    lanes.push_normal(delta(
        1,
        Side::Sell,
        price + 1,
        1,
        DeltaFlags::LAST_IN_MESSAGE,
        0,
    ));

    let mut sent = 0u64;
    let mut measured_from = None;
    while sent < WARMUP + EVENTS {
        if sent >= WARMUP && measured_from.is_none() {
            measured_from = Some(alloc_counter::allocations());
        }
        for _ in 0..256 {
            let r = next();
            // Trending random walk: long runs up and down so the EMAs cross often.
            let drift = if (sent / 5_000).is_multiple_of(2) {
                1
            } else {
                -1
            };
            price += drift * (r % 3) as i64 - (r % 2) as i64;
            clock.advance(1_000);
            let now = clock.now_ns();
            let ev = if r % 4 == 0 {
                let side = if r & 16 == 0 { Side::Buy } else { Side::Sell };
                let level = if side == Side::Buy {
                    price - 1 - (r % 50) as i64
                } else {
                    price + 1 + (r % 50) as i64
                };
                delta(
                    now,
                    side,
                    level,
                    (r % 5) as i64,
                    DeltaFlags::LAST_IN_MESSAGE,
                    sent,
                )
            } else {
                trade(now, price, sent)
            };
            lanes.push_normal(ev);
            sent += 1;
        }
        while engine.poll() > 0 {}
        outbox.drain_into(&mut written, 65_536);
        fills_persisted += written
            .iter()
            .filter(|r| matches!(r, Record::Fill { .. }))
            .count() as u64;
        written.clear();
    }
    let allocations = alloc_counter::allocations() - measured_from.expect("set after warm-up");

    let strategy = engine.strategy();
    let counters = *engine.counters();
    assert!(
        strategy.orders_sent > 100,
        "the strategy really traded: {} orders",
        strategy.orders_sent
    );
    assert_eq!(
        counters.fills, strategy.fills,
        "every fill reached the strategy"
    );
    assert_eq!(
        fills_persisted, counters.fills,
        "every fill reached the outbox"
    );
    assert_eq!(
        counters.events[Lane::High as usize],
        2 * strategy.orders_sent,
        "ack + fill per order"
    );
    assert_eq!(lanes.stats(Lane::Normal).dropped, 0);
    assert!(counters.events[Lane::Normal as usize] >= EVENTS);
    assert_eq!(
        engine.core().position(BTC).qty.abs(),
        cfg.target_qty,
        "the position is the strategy's target after its last fill"
    );
    assert_eq!(
        allocations, 0,
        "heap allocations on the engine thread across {EVENTS} events"
    );
}

/// Every breaker on, with limits this workload does not reach: each is evaluated per event or
/// per check interval (1 ms of the simulated clock) while allocations are counted.
fn every_breaker_on() -> tradeloop_engine::breakers::BreakerSettings {
    use tradeloop_engine::breakers::{BreakerAction, BreakerSettings, Trip};
    use tradeloop_engine::fixed::{Money, FIXED_SCALE};
    let trip = Trip {
        action: BreakerAction::Flatten,
        cooldown_ns: 1_000_000,
        half_open_checks: 2,
    };
    let big = Money::from_fixed_raw(1_000_000_000 * FIXED_SCALE);
    BreakerSettings {
        check_interval_ns: 1_000_000,
        drawdown: Some((big, trip)),
        daily_loss: Some((big, trip)),
        reject_storm: Some(((1_000, 1_000_000_000), trip)),
        feed_down: Some((1_000_000_000, trip)),
        lane_latency: Some(((u64::MAX, 1), trip)),
        high_backpressure: Some((1_000_000_000, trip)),
    }
}
