//! The engine thread allocates nothing per event with the market maker running: 400,000
//! market events (book snapshots of the touch and trades on a random walk) through the
//! engine, pre-trade risk and the simulated venue, the market maker quoting, amending,
//! cancelling and getting filled, under a counting global allocator. One test in this binary,
//! so nothing else allocates meanwhile.

use std::sync::Arc;

use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::sim::matching::ExecConfig;
use tradeloop_engine::api::Context;
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_examples::market_maker::{MarketMaker, MarketMakerParams};
use tradeloop_risk::{PreTradeRisk, RiskLimits};

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;

const EVENTS: u64 = 400_000;
const WARMUP: u64 = 20_000;
const BTC: InstrumentIndex = InstrumentIndex(0);

#[test]
fn the_market_maker_allocates_nothing_per_event() {
    let tick = Price::parse("0.1").unwrap();
    let mut registry = InstrumentRegistry::new();
    registry
        .add(
            "sim",
            "BTCUSDT",
            tick,
            Qty::parse("0.001").unwrap(),
            ContractKind::Spot,
        )
        .unwrap();
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let clock = SimClock::new(1);
    let cfg = LoopConfig::default();
    let gateway = SimGateway::new(
        ExecConfig {
            maker_fee_bps: -1,
            taker_fee_bps: 5,
            entry_latency_ns: 20_000,
            response_latency_ns: 20_000,
            jitter_ns: 5_000,
            md_latency_ns: 0,
            seed: 3,
            order_slots: cfg.order_slots,
            instruments: 1,
            book_levels: cfg.book_levels,
        },
        Arc::clone(&lanes),
    );
    let params = MarketMakerParams {
        qty: Qty::parse("0.002").unwrap(),
        max_position: Qty::parse("0.01").unwrap(),
        refresh_ms: 50,
        ..MarketMakerParams::default()
    };
    let risk = PreTradeRisk::new(RiskLimits {
        max_position: Qty::parse("1").unwrap(),
        orders_per_second: 100_000,
        orders_per_second_per_instrument: 100_000,
        ..RiskLimits::default()
    });
    let mut engine = Engine::new(
        cfg,
        Arc::clone(&lanes),
        registry,
        MarketMaker::new(&params, BTC, tick),
        risk,
        gateway,
        clock.clone(),
    );
    engine.start();

    // A random walk of the touch, in ticks, with trades at either side.
    let mut mid: i64 = 600_000; // 60,000.0
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t = tick.raw();
    let mut measured_from = None;
    for n in 0..WARMUP + EVENTS {
        if n == WARMUP {
            measured_from = Some(alloc_counter::allocations());
        }
        let r = next();
        clock.advance(1_000 + r % 50_000);
        let now = clock.now_ns();
        let (bid, ask) = (Price((mid - 1) * t), Price((mid + 1) * t));
        if r % 3 == 0 {
            let (side, price) = if r & 8 == 0 {
                (Side::Sell, bid)
            } else {
                (Side::Buy, ask)
            };
            // Sometimes through the touch, so resting quotes fill.
            let price = if r % 7 == 0 {
                Price(price.raw() + side.sign() * 2 * t)
            } else {
                price
            };
            engine.handle_market(Event::new(
                now,
                now,
                EventKind::Trade(Trade {
                    instrument: BTC,
                    aggressor: side,
                    price,
                    qty: Qty::parse("0.003").unwrap(),
                    trade_id: n,
                }),
            ));
        } else {
            mid += (r % 5) as i64 - 2;
            for (side, price, flags) in [
                (Side::Buy, bid, DeltaFlags::SNAPSHOT_BEGIN),
                (Side::Sell, ask, DeltaFlags::LAST_IN_MESSAGE),
            ] {
                engine.handle_market(Event::new(
                    now,
                    now,
                    EventKind::BookDelta(BookDelta {
                        instrument: BTC,
                        side,
                        flags: DeltaFlags(flags),
                        price,
                        qty: Qty::parse("0.5").unwrap(),
                        update_id: n,
                    }),
                ));
            }
        }
        engine.poll_gateway(now);
        while engine.poll() > 0 {}
    }
    let allocations = alloc_counter::allocations() - measured_from.expect("set after warm-up");
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
        "heap allocations on the engine thread across {EVENTS} events"
    );
}
