//! The zero-allocation tests' shared rig: the engine with pre-trade risk and the simulated
//! venue on a simulated clock, and a random-walk market of the touch and trades.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::sync::Arc;

use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::sim::matching::ExecConfig;
use tradeloop_engine::api::Strategy;
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{BookDelta, DeltaFlags, Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_risk::{PreTradeRisk, RiskLimits};

pub const BTC: InstrumentIndex = InstrumentIndex(0);

pub type Rig<S> = Engine<S, PreTradeRisk, SimGateway, SimClock>;

pub fn tick() -> Price {
    Price::parse("0.1").unwrap()
}

pub fn registry() -> InstrumentRegistry {
    let mut registry = InstrumentRegistry::new();
    registry
        .add(
            "sim",
            "BTCUSDT",
            tick(),
            Qty::parse("0.001").unwrap(),
            ContractKind::Spot,
        )
        .unwrap();
    registry
}

/// The engine with `strategy`, risk limits no workload here reaches, and the simulated venue
/// with latency and jitter; started.
pub fn engine<S: Strategy>(strategy: S) -> (Rig<S>, SimClock) {
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
    let risk = PreTradeRisk::new(RiskLimits {
        max_position: Qty::parse("1").unwrap(),
        orders_per_second: 100_000,
        orders_per_second_per_instrument: 100_000,
        ..RiskLimits::default()
    });
    let mut e = Engine::new(
        cfg,
        lanes,
        registry(),
        strategy,
        risk,
        gateway,
        clock.clone(),
    );
    e.start();
    (e, clock)
}

/// Drives `warmup + events` market events (book snapshots of the touch on a random walk, and
/// trades at either side, sometimes through it) and returns the allocations counted by
/// `allocations` over the last `events`.
pub fn drive<S: Strategy>(
    engine: &mut Rig<S>,
    clock: &SimClock,
    warmup: u64,
    events: u64,
    allocations: impl Fn() -> u64,
) -> u64 {
    let mut mid: i64 = 600_000; // 60,000.0
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t = tick().raw();
    let mut measured_from = None;
    for n in 0..warmup + events {
        if n == warmup {
            measured_from = Some(allocations());
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
            // Sizes of 0.1 to 1.0 on each side, so the touch is sometimes lopsided.
            let size = |shift: u32| Qty(((r >> shift) % 10 + 1) as i64 * 10_000_000);
            for (side, price, qty, flags) in [
                (Side::Buy, bid, size(8), DeltaFlags::SNAPSHOT_BEGIN),
                (Side::Sell, ask, size(16), DeltaFlags::LAST_IN_MESSAGE),
            ] {
                engine.handle_market(Event::new(
                    now,
                    now,
                    EventKind::BookDelta(BookDelta {
                        instrument: BTC,
                        side,
                        flags: DeltaFlags(flags),
                        price,
                        qty,
                        update_id: n,
                    }),
                ));
            }
        }
        engine.poll_gateway(now);
        while engine.poll() > 0 {}
    }
    allocations() - measured_from.expect("set after warm-up")
}
