//! Paper trading allocates nothing on the engine thread either: 1,000,000 market events through
//! the engine with the simulated venue as its gateway (matching, latency schedule, fills back
//! through HIGH), under a counting global allocator. One test per binary.

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
use tradeloop_engine::strategies::{MaCross, MaCrossConfig};
use tradeloop_risk::{PreTradeRisk, RiskLimits};

#[path = "../../engine/tests/alloc_counter/mod.rs"]
mod alloc_counter;

const BTC: InstrumentIndex = InstrumentIndex(0);

#[test]
fn paper_trading_allocates_nothing_per_event() {
    let mut registry = InstrumentRegistry::new();
    registry
        .add(
            "sim",
            "BTCUSDT",
            Price::parse("0.01").unwrap(),
            Qty::parse("0.00001").unwrap(),
            ContractKind::Spot,
        )
        .unwrap();
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let clock = SimClock::new(1);
    let gateway = SimGateway::new(
        ExecConfig {
            maker_fee_bps: 1,
            taker_fee_bps: 5,
            entry_latency_ns: 50_000,
            response_latency_ns: 50_000,
            jitter_ns: 10_000,
            md_latency_ns: 0,
            seed: 3,
            order_slots: 4096,
            instruments: 1,
            book_levels: 4096,
        },
        Arc::clone(&lanes),
    );
    let cfg = MaCrossConfig {
        fast: 10,
        slow: 40,
        ..MaCrossConfig::default()
    };
    let strategy = MaCross::new(&cfg, BTC, Price::parse("0.01").unwrap());
    let limits = RiskLimits {
        orders_per_second: 10_000,
        orders_per_second_per_instrument: 10_000,
        ..RiskLimits::default()
    };
    let mut engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry,
        strategy,
        PreTradeRisk::new(limits),
        gateway,
        clock.clone(),
    );

    let mut price: i64 = 6_000_000; // cents
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let delta = |now, side, cents: i64, qty: i64, flags| {
        Event::new(
            now,
            now,
            EventKind::BookDelta(BookDelta {
                instrument: BTC,
                side,
                flags: DeltaFlags(flags),
                price: Price(cents * 1_000_000),
                qty: Qty(qty * 100_000),
                update_id: now,
            }),
        )
    };
    lanes.push_normal(delta(
        1,
        Side::Buy,
        price - 1,
        50,
        DeltaFlags::SNAPSHOT_BEGIN,
    ));
    lanes.push_normal(delta(
        1,
        Side::Sell,
        price + 1,
        50,
        DeltaFlags::LAST_IN_MESSAGE,
    ));
    let mut measured_from = None;
    for n in 0..1_020_000u64 {
        if n == 20_000 {
            measured_from = Some(alloc_counter::allocations());
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let drift = if (n / 5_000) % 2 == 0 { 1 } else { -1 };
        price += drift * (rng % 3) as i64 - (rng % 2) as i64;
        clock.advance(20_000);
        let now = clock.now_ns();
        let ev = match rng % 4 {
            0 => delta(
                now,
                Side::Buy,
                price - 1,
                10 + (rng >> 8) as i64 % 50,
                DeltaFlags::LAST_IN_MESSAGE,
            ),
            1 => delta(
                now,
                Side::Sell,
                price + 1,
                10 + (rng >> 8) as i64 % 50,
                DeltaFlags::LAST_IN_MESSAGE,
            ),
            _ => Event::new(
                now,
                now,
                EventKind::Trade(Trade {
                    instrument: BTC,
                    aggressor: Side::Buy,
                    price: Price(price * 1_000_000),
                    qty: Qty(100_000),
                    trade_id: n,
                }),
            ),
        };
        lanes.push_normal(ev);
        while engine.poll() > 0 {}
    }
    let allocations = alloc_counter::allocations() - measured_from.expect("set after warm-up");
    let counters = *engine.counters();
    assert!(
        counters.orders_sent > 100,
        "the strategy traded: {} orders",
        counters.orders_sent
    );
    assert!(
        counters.fills > 100,
        "the venue filled: {} fills",
        counters.fills
    );
    assert_eq!(engine.gateway().lost_reports, 0);
    assert_eq!(
        engine.core().position(BTC).qty,
        engine.gateway().matching().position(0),
        "venue and engine agree"
    );
    assert_eq!(
        allocations, 0,
        "heap allocations on the engine thread across 1,000,000 events with paper execution"
    );
}
