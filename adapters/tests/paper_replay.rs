//! The real USD-M capture replayed single-threaded through the whole path — feed parser and
//! book sync, lanes, engine, MA-crossover strategy, pre-trade risk, simulated venue — on a
//! simulated clock. The venue's fills, the engine's positions and a slow Decimal recomputation
//! from the fills must agree, and two runs must be identical.

use std::sync::Arc;

use rust_decimal::Decimal;
use tradeloop_adapters::binance::feed::BinanceFeed;
use tradeloop_adapters::binance::parse::{BinanceCodec, Market};
use tradeloop_adapters::feed::FrameOutcome;
use tradeloop_adapters::recorder::FrameReader;
use tradeloop_adapters::runner::LaneSink;
use tradeloop_adapters::shared_data_dir;
use tradeloop_adapters::sim::gateway::SimGateway;
use tradeloop_adapters::sim::matching::ExecConfig;
use tradeloop_adapters::symbols::SymbolMap;
use tradeloop_engine::api::{Context, OrderUpdate, Strategy};
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{OrderReport, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::{ContractKind, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::strategies::{MaCross, MaCrossConfig};
use tradeloop_risk::{PreTradeRisk, RiskLimits};

/// MA crossover plus a log of every fill it was told about.
struct Logged {
    inner: MaCross,
    fills: Vec<(Side, Price, Qty, Qty)>,
}

impl Strategy for Logged {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        self.inner.on_trade(ctx, t);
    }
    fn on_order<C: Context>(&mut self, ctx: &mut C, u: &OrderUpdate) {
        if let OrderReport::Fill {
            price, qty, fee, ..
        } = u.report
        {
            self.fills.push((u.order.request.side, price, qty, fee));
        }
        self.inner.on_order(ctx, u);
    }
}

struct Outcome {
    fills: Vec<(Side, Price, Qty, Qty)>,
    position: Qty,
    realized: Decimal,
    fees: Decimal,
    venue_position: Qty,
    orders: u64,
}

fn replay() -> Option<Outcome> {
    let path = shared_data_dir().join("binance_usdm_btcusdt_20240808.gz");
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return None;
    }
    let mut registry = InstrumentRegistry::new();
    let btc = registry
        .add(
            "binance-usdm",
            "BTCUSDT",
            Price::parse("0.1").unwrap(),
            Qty::parse("0.001").unwrap(),
            ContractKind::Linear {
                multiplier: Qty::from_units(1),
            },
        )
        .unwrap();
    let lanes = Arc::new(Lanes::new(LaneConfig {
        normal_slots: 1 << 16,
        ..LaneConfig::default()
    }));
    let clock = SimClock::new(0);
    let gateway = SimGateway::new(
        ExecConfig {
            maker_fee_bps: 2,
            taker_fee_bps: 5,
            entry_latency_ns: 1_000_000,
            response_latency_ns: 1_000_000,
            jitter_ns: 200_000,
            md_latency_ns: 0,
            seed: 9,
            order_slots: 1024,
            instruments: 1,
            book_levels: 4096,
        },
        Arc::clone(&lanes),
    );
    let cfg = MaCrossConfig {
        symbol: "BTCUSDT".into(),
        fast: 50,
        slow: 400,
        target_qty: Qty::parse("0.01").unwrap(),
        slippage_ticks: 10,
    };
    let strategy = Logged {
        inner: MaCross::new(&cfg, btc, Price::parse("0.1").unwrap()),
        fills: Vec::new(),
    };
    let limits = RiskLimits {
        max_position: Qty::parse("0.05").unwrap(),
        ..RiskLimits::default()
    };
    let loop_cfg = LoopConfig {
        order_slots: 1024,
        ..LoopConfig::default()
    };
    let mut engine = Engine::new(
        loop_cfg,
        Arc::clone(&lanes),
        registry,
        strategy,
        PreTradeRisk::new(limits),
        gateway,
        clock.clone(),
    );
    let mut symbols = SymbolMap::default();
    symbols.insert("BTCUSDT", btc);
    let mut feed = BinanceFeed::new(BinanceCodec::new(symbols, 1 << 22), Market::UsdM, 10_000);
    let mut sink = LaneSink::new(Arc::clone(&lanes));
    let mut reader = FrameReader::open(&[path]).unwrap();
    while let Some((ns, frame)) = reader.next_frame().unwrap() {
        clock.set(ns);
        assert!(!matches!(
            feed.on_frame(ns, frame, &mut sink),
            FrameOutcome::Refused(_)
        ));
        while engine.poll() > 0 {}
    }
    // Let the last reports arrive.
    clock.advance(10_000_000);
    engine.poll_gateway(clock.now_ns());
    while engine.poll() > 0 {}
    let pos = *engine.core().position(btc);
    Some(Outcome {
        fills: engine.strategy().fills.clone(),
        position: pos.qty,
        realized: pos.realized.to_decimal(),
        fees: pos.fees.to_decimal(),
        venue_position: engine.gateway().matching().position(0),
        orders: engine.counters().orders_sent,
    })
}

#[test]
fn paper_replay_balances_and_is_deterministic() {
    let Some(a) = replay() else { return };
    assert!(a.orders > 10, "the strategy traded: {} orders", a.orders);
    assert!(
        a.fills.len() as u64 >= a.orders / 2,
        "{} fills for {} orders",
        a.fills.len(),
        a.orders
    );
    // Position = signed sum of fills, on both sides of the wire.
    let signed: i64 = a.fills.iter().map(|(s, _, q, _)| q.raw() * s.sign()).sum();
    assert_eq!(a.position, Qty(signed));
    assert_eq!(a.venue_position, a.position, "venue and engine agree");
    // Slow Decimal recomputation of realised PnL (average cost) and fees from the fill log.
    let (mut qty, mut cost, mut realized, mut fees) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for (side, price, q, fee) in &a.fills {
        let (p, q) = (
            price.to_decimal(),
            if *side == Side::Buy {
                q.to_decimal()
            } else {
                -q.to_decimal()
            },
        );
        fees += fee.to_decimal();
        if qty.is_zero() || qty.is_sign_positive() == q.is_sign_positive() {
            cost += p * q;
            qty += q;
        } else if q.abs() <= qty.abs() {
            let removed = cost * (-q) / qty;
            realized += p * (-q) - removed;
            cost -= removed;
            qty += q;
        } else {
            realized += p * qty - cost;
            qty += q;
            cost = p * qty;
        }
    }
    assert_eq!(Qty::from_decimal(qty).unwrap(), a.position);
    assert!(
        (realized - a.realized).abs() < Decimal::new(1, 8),
        "realised {} vs oracle {realized}",
        a.realized
    );
    assert_eq!(fees, a.fees);
    // Determinism: the same inputs give the same fills, positions and PnL.
    let b = replay().expect("data present");
    assert_eq!(a.fills, b.fills);
    assert_eq!(
        (a.position, a.realized, a.fees),
        (b.position, b.realized, b.fees)
    );
}
