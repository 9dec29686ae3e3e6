//! Circuit breakers through the engine: a breach trips on the event that causes it, the action
//! is in force before the strategy reacts, the transition reaches the strategy on CRITICAL and
//! the outbox as a record, and cool-down, half-open and resume behave as configured.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

mod common;

use std::sync::Arc;

use common::{registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, Deny, Strategy, SubmitError, TradingState};
use tradeloop_engine::breakers::{
    BreakerAction, BreakerEvent, BreakerKind, BreakerSettings, BreakerState, Trip,
};
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{Control, Event, EventKind, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Money, Qty, FIXED_SCALE};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::OrderRequest;
use tradeloop_engine::persist::{Outbox, Record};

const MS: u64 = 1_000_000;

/// Buys one unit on the first trade; afterwards tries to buy 0.1 on every trade and keeps what
/// the engine answered, and every breaker event it is told about.
#[derive(Default)]
struct Probe {
    bought: bool,
    answers: Vec<(TradingState, Result<(), SubmitError>)>,
    breaker_events: Vec<BreakerEvent>,
}

impl Strategy for Probe {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        let qty = if self.bought {
            Qty::parse("0.1").unwrap()
        } else {
            Qty::from_units(1)
        };
        self.bought = true;
        let state = ctx.trading_state();
        let r = ctx.submit(OrderRequest::ioc(BTC, Side::Buy, t.price, qty));
        self.answers.push((state, r.map(|_| ())));
    }
    fn on_breaker<C: Context>(&mut self, _: &mut C, event: &BreakerEvent) {
        self.breaker_events.push(*event);
    }
}

type TestEngine = Engine<Probe, AllowAll, LaneGateway, SimClock>;

fn trip(action: BreakerAction) -> Trip {
    Trip {
        action,
        cooldown_ns: 1_000 * MS,
        half_open_checks: 3,
    }
}

fn engine(
    settings: BreakerSettings,
    answer: Answer,
) -> (TestEngine, Arc<Lanes>, Arc<Outbox>, SimClock) {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let outbox = Arc::new(Outbox::new(1 << 12));
    let clock = SimClock::new(1);
    let engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        Probe::default(),
        AllowAll,
        LaneGateway::new(Arc::clone(&lanes), answer),
        clock.clone(),
    )
    .with_outbox(Arc::clone(&outbox))
    .with_breakers(settings);
    (engine, lanes, outbox, clock)
}

fn feed(engine: &mut TestEngine, lanes: &Lanes, clock: &SimClock, ns: u64, cents: i64) {
    clock.set(ns);
    lanes.push_normal(trade(ns, cents, ns));
    while engine.poll() > 0 {}
}

/// A LOW-lane timer: drives the periodic breaker check without the strategy trading.
fn tick(engine: &mut TestEngine, lanes: &Lanes, clock: &SimClock, ns: u64) {
    clock.set(ns);
    lanes
        .push_low(Event::new(ns, 0, EventKind::Timer { id: 0 }))
        .unwrap();
    while engine.poll() > 0 {}
}

fn breaker_records(outbox: &Outbox) -> Vec<(BreakerKind, BreakerState)> {
    let mut records = Vec::new();
    outbox.drain_into(&mut records, usize::MAX);
    records
        .into_iter()
        .filter_map(|r| match r {
            Record::Breaker { event, .. } => Some((event.kind, event.state)),
            _ => None,
        })
        .collect()
}

#[test]
fn drawdown_flattens_and_halts_before_the_strategy_trades_again() {
    let settings = BreakerSettings {
        drawdown: Some((
            Money::from_fixed_raw(10 * FIXED_SCALE),
            trip(BreakerAction::Flatten),
        )),
        ..BreakerSettings::default()
    };
    let (mut e, lanes, outbox, clock) = engine(settings, Answer::Fill);
    // Long 1 at 100.00.
    feed(&mut e, &lanes, &clock, 10, 100_00);
    assert_eq!(e.core().position(BTC).qty, Qty::from_units(1));
    // 95.00: −5 on the long plus 0.1 more bought there, still within 10.
    feed(&mut e, &lanes, &clock, 20, 95_00);
    assert_eq!(
        e.trading_state(),
        TradingState::Active,
        "TC1 within the limit"
    );
    // 90.50: −9.5 on 1 and −0.45 on 0.1 = −9.95 → still closed.
    feed(&mut e, &lanes, &clock, 30, 90_50);
    assert_eq!(e.trading_state(), TradingState::Active, "TC2 −9.95");
    // 90.40: −9.6 − 0.46 − 0.01 (the 0.1 bought at 90.50) → −10.07 ≥ 10: trips on this trade.
    feed(&mut e, &lanes, &clock, 40, 90_40);
    assert_eq!(e.trading_state(), TradingState::Halted, "TC3 tripped");
    let s = e.strategy();
    let (state, answer) = s.answers.last().unwrap();
    assert_eq!(
        (*state, *answer),
        (TradingState::Halted, Err(SubmitError::Denied(Deny::Halted))),
        "TC4 the strategy's order on the breaching trade was already refused"
    );
    assert_eq!(
        e.core().position(BTC).qty,
        Qty::ZERO,
        "TC5 flattened by a protective order"
    );
    assert_eq!(e.counters().flatten_orders, 1);
    assert_eq!(s.breaker_events.len(), 1, "TC6 told once, via CRITICAL");
    let ev = s.breaker_events[0];
    assert_eq!(
        (ev.kind, ev.state, ev.action),
        (
            BreakerKind::Drawdown,
            BreakerState::Open,
            BreakerAction::Flatten
        )
    );
    assert!(
        ev.value >= ev.limit && ev.limit == 10 * FIXED_SCALE,
        "TC7 {ev:?}"
    );
    assert_eq!(
        e.counters().breaker_trips[BreakerKind::Drawdown as usize],
        1
    );
    assert_eq!(
        breaker_records(&outbox),
        [(BreakerKind::Drawdown, BreakerState::Open)],
        "TC8 persisted"
    );
    // Flat, the drawdown stays: cool-down → half-open → bad check → open again, and still halted.
    feed(&mut e, &lanes, &clock, 1_100 * MS, 90_40);
    feed(&mut e, &lanes, &clock, 1_300 * MS, 90_40);
    assert_eq!(
        breaker_records(&outbox),
        [
            (BreakerKind::Drawdown, BreakerState::HalfOpen),
            (BreakerKind::Drawdown, BreakerState::Open)
        ],
        "TC9 a drawdown does not heal by itself"
    );
    assert_eq!(e.trading_state(), TradingState::Halted);
    // Operator resume closes it and re-bases the peak.
    lanes
        .push_critical(Event::new(
            2_000 * MS,
            0,
            EventKind::Control(Control::Resume),
        ))
        .unwrap();
    feed(&mut e, &lanes, &clock, 2_000 * MS, 90_40);
    assert_eq!(e.trading_state(), TradingState::Active, "TC10 resumed");
    assert_eq!(
        breaker_records(&outbox),
        [(BreakerKind::Drawdown, BreakerState::Closed)]
    );
    let (_, answer) = e.strategy().answers.last().unwrap();
    assert!(answer.is_ok(), "TC11 trading again after resume");
}

#[test]
fn reject_storm_halts_then_recovers_through_half_open() {
    let settings = BreakerSettings {
        check_interval_ns: 100 * MS,
        reject_storm: Some(((3, 500 * MS), trip(BreakerAction::Halt))),
        ..BreakerSettings::default()
    };
    let (mut e, lanes, outbox, clock) = engine(settings, Answer::Refuse);
    for (k, ns) in [10u64, 20, 30].into_iter().enumerate() {
        assert_eq!(e.trading_state(), TradingState::Active, "TC{k} before");
        feed(&mut e, &lanes, &clock, ns * MS, 100_00);
    }
    assert_eq!(
        e.trading_state(),
        TradingState::Halted,
        "TC3 third reject trips"
    );
    feed(&mut e, &lanes, &clock, 40 * MS, 100_00);
    let (_, last) = e.strategy().answers.last().unwrap();
    assert_eq!(*last, Err(SubmitError::Denied(Deny::Halted)), "TC4");
    assert_eq!(
        (e.gateway().submitted, e.counters().rejects),
        (0, 3),
        "TC5 the halted order never reached the gateway"
    );
    // Cool-down (1 s from the trip at 30 ms), then half-open: reducing only.
    tick(&mut e, &lanes, &clock, 1_000 * MS);
    assert_eq!(e.trading_state(), TradingState::Halted, "TC6 cooling down");
    tick(&mut e, &lanes, &clock, 1_100 * MS);
    assert_eq!(e.trading_state(), TradingState::Reducing, "TC7 half-open");
    // Three good periodic checks (one per 100 ms interval) close it, not two.
    for (k, ms) in [1_200u64, 1_300].into_iter().enumerate() {
        tick(&mut e, &lanes, &clock, ms * MS);
        assert_eq!(e.trading_state(), TradingState::Reducing, "TC8.{k}");
    }
    tick(&mut e, &lanes, &clock, 1_400 * MS);
    assert_eq!(e.trading_state(), TradingState::Active, "TC9 closed");
    assert_eq!(
        breaker_records(&outbox),
        [
            (BreakerKind::RejectStorm, BreakerState::Open),
            (BreakerKind::RejectStorm, BreakerState::HalfOpen),
            (BreakerKind::RejectStorm, BreakerState::Closed),
        ]
    );
    let told: Vec<_> = e
        .strategy()
        .breaker_events
        .iter()
        .map(|b| b.state)
        .collect();
    assert_eq!(
        told,
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
    assert_eq!(
        (
            e.counters().breaker_trips[2],
            e.counters().breaker_recoveries[2]
        ),
        (1, 1)
    );
}

#[test]
fn kill_switch_and_breaker_combine_to_the_most_restrictive() {
    let settings = BreakerSettings {
        reject_storm: Some(((1, 500 * MS), trip(BreakerAction::Reduce))),
        ..BreakerSettings::default()
    };
    let (mut e, lanes, _outbox, clock) = engine(settings, Answer::Refuse);
    feed(&mut e, &lanes, &clock, 10, 100_00);
    assert_eq!(e.trading_state(), TradingState::Reducing, "TC0 breaker");
    lanes
        .push_critical(Event::new(20, 0, EventKind::Control(Control::KillSwitch)))
        .unwrap();
    while e.poll() > 0 {}
    assert_eq!(e.trading_state(), TradingState::Halted, "TC1 kill wins");
    // The breaker closing on its own does not lift the operator's halt.
    for ms in [1_100u64, 1_200, 1_300, 1_400, 1_500] {
        tick(&mut e, &lanes, &clock, ms * MS);
    }
    assert_eq!(
        e.breakers().state(BreakerKind::RejectStorm),
        BreakerState::Closed,
        "TC2 breaker recovered"
    );
    assert_eq!(e.trading_state(), TradingState::Halted, "TC3 still killed");
}
