//! Stops through the engine: a stop-crossing trade that a feed's ingress guard raised on
//! CRITICAL is acted on in the first loop turn, ahead of a NORMAL backlog; without the guard
//! the same stop waits for the backlog; either way it fires exactly once.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

mod common;

use std::sync::Arc;

use common::{registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, Deny, RiskContext, RiskGate, Strategy};
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::Qty;
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::order::OrderRequest;
use tradeloop_engine::stops::{StopGuard, StopParams};

/// Buys one unit on the first trade, then does nothing.
#[derive(Default)]
struct BuyOnce {
    done: bool,
}

impl Strategy for BuyOnce {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        if !self.done {
            self.done = true;
            let _ = ctx.submit(OrderRequest::ioc(
                BTC,
                Side::Buy,
                t.price,
                Qty::from_units(1),
            ));
        }
    }
}

type StopEngine<S = BuyOnce, R = AllowAll> = Engine<S, R, LaneGateway, SimClock>;

fn long_engine() -> (StopEngine, Arc<Lanes>, Arc<StopGuard>) {
    long_engine_with(BuyOnce::default())
}

/// An engine with a 1 % default stop-loss whose `strategy` has bought 1 at 100.00.
fn long_engine_with<S: Strategy>(strategy: S) -> (StopEngine<S>, Arc<Lanes>, Arc<StopGuard>) {
    long_engine_full(strategy, AllowAll, LoopConfig::default())
}

/// As [`long_engine_with`], with a risk gate and loop settings.
fn long_engine_full<S: Strategy, R: RiskGate>(
    strategy: S,
    risk: R,
    config: LoopConfig,
) -> (StopEngine<S, R>, Arc<Lanes>, Arc<StopGuard>) {
    let lanes = Arc::new(Lanes::new(LaneConfig {
        normal_slots: 1 << 14,
        ..LaneConfig::default()
    }));
    let guard = Arc::new(StopGuard::new(1));
    let mut engine = Engine::new(
        config,
        Arc::clone(&lanes),
        registry(),
        strategy,
        risk,
        LaneGateway::new(Arc::clone(&lanes), Answer::Fill),
        SimClock::new(1),
    )
    .with_stops(
        StopParams {
            stop_loss_bps: 100,
            ..StopParams::default()
        },
        Arc::clone(&guard),
    );
    // Trade at 100.00 → the strategy buys 1 → filled: long 1 at 100, stop at 99.
    lanes.push_normal(trade(1, 100_00, 1));
    while engine.poll() > 0 {}
    assert_eq!(engine.core().position(BTC).qty, Qty::from_units(1));
    (engine, lanes, guard)
}

/// What a feed thread does with a parsed trade: with the guard, a crossing trade also goes
/// to CRITICAL (as `LaneSink` does), then the trade itself to NORMAL.
fn feed_push(lanes: &Lanes, guard: Option<&StopGuard>, raised: &mut [u32], event: Event) {
    if let (Some(g), EventKind::Trade(t)) = (guard, &event.kind) {
        if let Some(stop) = g.check(t.instrument, t.price, raised) {
            lanes
                .push_critical(Event::new(event.recv_ns, 0, EventKind::StopTriggered(stop)))
                .unwrap();
        }
    }
    lanes.push_normal(event);
}

fn run(with_guard: bool) -> (u64, u64, u64) {
    let (mut engine, lanes, guard) = long_engine();
    let mut raised = [0u32; 1];
    let g = with_guard.then_some(&*guard);
    // A backlog of 5,000 trades above the stop, then one at 98.00 behind them.
    for k in 0..5_000 {
        feed_push(&lanes, g, &mut raised, trade(10 + k, 100_50, 10 + k));
    }
    feed_push(&lanes, g, &mut raised, trade(9_000, 98_00, 9_000));
    engine.poll();
    let after_first_turn = engine.counters().stops_fired;
    let backlog_left = lanes.depth(Lane::Normal) as u64;
    while engine.poll() > 0 {}
    (
        after_first_turn,
        backlog_left,
        engine.counters().stops_fired,
    )
}

#[test]
fn the_guard_fires_the_stop_ahead_of_the_backlog_and_once() {
    let (first, left, total) = run(true);
    assert_eq!(first, 1, "TC1 fired in the first loop turn");
    assert!(
        left > 3_000,
        "TC2 while most of the backlog was still queued ({left})"
    );
    assert_eq!(
        total, 1,
        "TC3 the engine's own check on the same trade did not fire again"
    );
}

#[test]
fn without_the_guard_the_stop_waits_for_the_backlog() {
    let (first, _, total) = run(false);
    assert_eq!(first, 0, "TC1 not in the first turn");
    assert_eq!(
        total, 1,
        "TC2 the engine's own check fires it after the backlog"
    );
}

#[test]
fn a_fired_stop_closes_the_position_with_a_reduce_only_order() {
    let (mut engine, lanes, guard) = long_engine();
    let mut raised = [0u32; 1];
    feed_push(&lanes, Some(&guard), &mut raised, trade(50, 98_90, 50));
    while engine.poll() > 0 {}
    assert_eq!(engine.counters().stops_fired, 1);
    assert_eq!(
        engine.core().position(BTC).qty,
        Qty::ZERO,
        "TC1 the closing sell filled: flat"
    );
    // Flat: a later crossing trade fires nothing.
    feed_push(&lanes, Some(&guard), &mut raised, trade(60, 90_00, 60));
    while engine.poll() > 0 {}
    assert_eq!(
        engine.counters().stops_fired,
        1,
        "TC2 nothing armed when flat"
    );
    assert_eq!(lanes.depth(Lane::Critical), 0);
}

/// Sets its own stops when its buy fills: take-profit 50 bp, no stop-loss.
#[derive(Default)]
struct TakeProfit {
    buy: BuyOnce,
    levels: Option<(
        tradeloop_engine::fixed::Price,
        tradeloop_engine::fixed::Price,
    )>,
}

impl Strategy for TakeProfit {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        self.buy.on_trade(ctx, t);
    }
    fn on_order<C: Context>(&mut self, ctx: &mut C, _: &tradeloop_engine::api::OrderUpdate) {
        if !ctx.position(BTC).qty.is_zero() && self.levels.is_none() {
            ctx.set_stops(
                BTC,
                StopParams {
                    take_profit_bps: 50,
                    ..StopParams::default()
                },
            );
            self.levels = ctx.stop_levels(BTC);
        }
    }
}

#[test]
fn a_strategy_sets_its_stops_and_a_quote_through_the_guard_fires_them() {
    use tradeloop_engine::event::Quote;
    use tradeloop_engine::fixed::Price;
    let (mut engine, lanes, guard) = long_engine_with(TakeProfit::default());
    let (lower, upper) = engine.strategy().levels.expect("armed");
    assert_eq!(
        (lower.raw(), upper),
        (i64::MIN, Price::parse("100.5").unwrap()),
        "TC1 the strategy's take-profit replaced the default stop-loss"
    );
    let quote = |ns: u64, bid: &str, ask: &str| {
        Event::new(
            ns,
            ns,
            EventKind::Quote(Quote {
                instrument: BTC,
                bid_price: Price::parse(bid).unwrap(),
                bid_qty: Qty::from_units(1),
                ask_price: Price::parse(ask).unwrap(),
                ask_qty: Qty::from_units(1),
                update_id: ns,
            }),
        )
    };
    let mut raised = [0u32; 1];
    // The ask through the level does not close a long; then the bid reaches it.
    for (ns, bid, ask) in [(10, "98", "100.6"), (11, "100.5", "100.6")] {
        let ev = quote(ns, bid, ask);
        if let Some(stop) = guard.check_quote(
            BTC,
            Price::parse(bid).unwrap(),
            Price::parse(ask).unwrap(),
            &mut raised,
        ) {
            lanes
                .push_critical(Event::new(ns, 0, EventKind::StopTriggered(stop)))
                .unwrap();
        }
        lanes.push_normal(ev);
    }
    engine.poll();
    assert_eq!(
        engine.counters().stops_fired,
        1,
        "TC2 fired once, from the quote"
    );
    while engine.poll() > 0 {}
    assert_eq!(
        engine.counters().stops_fired,
        1,
        "TC3 the engine's own quote check did not refire"
    );
    assert_eq!(engine.core().position(BTC).qty, Qty::ZERO, "TC4 closed");
}

/// Allows the strategy's orders and denies every protective one (a stop's close).
struct DenyProtective;

impl RiskGate for DenyProtective {
    fn check(&mut self, _: &OrderRequest, ctx: &RiskContext) -> Result<(), Deny> {
        if ctx.protective {
            Err(Deny::Halted)
        } else {
            Ok(())
        }
    }
}

/// 5,000 trades above the stop with rehearsals every `every` NORMAL events: returns the
/// engine, its lanes and guard afterwards.
fn rehearsed<R: RiskGate>(
    risk: R,
    every: u32,
) -> (StopEngine<BuyOnce, R>, Arc<Lanes>, Arc<StopGuard>) {
    let config = LoopConfig {
        stop_warm_events: every,
        ..LoopConfig::default()
    };
    let (mut engine, lanes, guard) = long_engine_full(BuyOnce::default(), risk, config);
    let before = *engine.counters();
    for k in 0..5_000 {
        lanes.push_normal(trade(10 + k, 100_50, 10 + k));
    }
    while engine.poll() > 0 {}
    let c = engine.counters();
    assert_eq!(
        c.orders_sent, before.orders_sent,
        "a rehearsal sends nothing"
    );
    assert_eq!(c.denials, before.denials, "a rehearsal is never a denial");
    assert_eq!((c.stops_fired, c.stops_failed), (0, 0));
    assert_eq!(engine.core().position(BTC).qty, Qty::from_units(1));
    (engine, lanes, guard)
}

#[test]
fn rehearsals_keep_the_stop_armed_and_send_nothing() {
    let (mut engine, lanes, guard) = rehearsed(AllowAll, 256);
    assert_eq!(
        engine.counters().stop_rehearsals,
        19,
        "TC1 one rehearsal per 256 NORMAL events (5,001 handled)"
    );
    assert!(
        engine.core().stop_levels(BTC).is_some(),
        "TC2 still armed in the engine"
    );
    let mut raised = [0u32; 1];
    let t = guard
        .check(
            BTC,
            tradeloop_engine::fixed::Price(98_00 * 1_000_000),
            &mut raised,
        )
        .expect("TC3 still armed in the guard");
    // The stop still fires, once, from the guard's trigger.
    lanes
        .push_critical(Event::new(1, 0, EventKind::StopTriggered(t)))
        .unwrap();
    while engine.poll() > 0 {}
    assert_eq!(engine.counters().stops_fired, 1, "TC4 fired");
    assert_eq!(engine.core().position(BTC).qty, Qty::ZERO, "TC5 closed");
    let n2 = engine.counters().stop_rehearsals;
    for k in 0..2_000 {
        lanes.push_normal(trade(20_000 + k, 97_00, 20_000 + k));
    }
    while engine.poll() > 0 {}
    assert_eq!(
        engine.counters().stop_rehearsals,
        n2,
        "TC6 nothing armed when flat: no rehearsal"
    );
    assert_eq!(engine.counters().stops_fired, 1, "TC7 fired once");
}

#[test]
fn a_denied_rehearsal_is_not_counted_and_off_means_off() {
    let (engine, _, _) = rehearsed(DenyProtective, 512);
    assert_eq!(
        engine.counters().stop_rehearsals,
        9,
        "TC1 rehearsed though the close would be denied"
    );
    let (engine, _, _) = rehearsed(AllowAll, 0);
    assert_eq!(engine.counters().stop_rehearsals, 0, "TC2 0 = never");
}

/// An idle engine (`Engine::run` with every lane empty) rehearses too: every 1,024 idle turns.
#[test]
fn an_idle_engine_rehearses_the_armed_stop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Too rare to be due by events in this test: what it counts comes from idle turns.
    let (engine, _, _) = rehearsed(AllowAll, 1 << 30);
    assert_eq!(engine.counters().stop_rehearsals, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut engine = engine;
            engine.run(&stop);
            engine
        })
    };
    // 1,024 idle turns take well under a millisecond on an idle core; a second leaves room
    // for a loaded 2-core machine, where each turn's yield can wait for a time slice.
    std::thread::sleep(std::time::Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let engine = thread.join().expect("engine thread");
    let c = engine.counters();
    assert!(c.stop_rehearsals > 0, "TC1 rehearsed while idle");
    assert_eq!(
        (c.orders_sent, c.stops_fired),
        (1, 0),
        "TC2 and sent nothing"
    );
}
