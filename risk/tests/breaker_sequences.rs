//! Property: whatever sequence of prices, rejects, feed outages, kills, resumes and clock jumps
//! the engine sees, with the pre-trade checks and every circuit breaker on, no strategy order
//! reaches the gateway while trading is halted, none that would increase a position while it
//! is reducing, and no position ever exceeds its limit.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tradeloop_engine::api::{
    Context, Gateway, GatewayError, Strategy as EngineStrategy, TradingState,
};
use tradeloop_engine::breakers::{BreakerAction, BreakerSettings, Trip};
use tradeloop_engine::clock::Clock;
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{Control, Event, EventKind, FeedState, OrderReport, Side, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Money, Price, Qty, FIXED_SCALE};
use tradeloop_engine::instrument::{ContractKind, InstrumentIndex, InstrumentRegistry};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::{Order, OrderRequest};
use tradeloop_risk::{reduces, PreTradeRisk, RiskLimits};

const BTC: InstrumentIndex = InstrumentIndex(0);
const MS: u64 = 1_000_000;

/// Fills at the order price through HIGH, or refuses (a disconnected venue) while `refuse`.
struct Venue {
    lanes: Arc<Lanes>,
    refuse: Rc<Cell<bool>>,
    submitted: Rc<Cell<u64>>,
}

impl Gateway for Venue {
    fn submit(
        &mut self,
        order: &Order,
        now_ns: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        if self.refuse.get() {
            return Err(GatewayError::Disconnected);
        }
        self.submitted.set(self.submitted.get() + 1);
        let id = order.client_id;
        let report = |r| Event::new(now_ns, now_ns, EventKind::Order(r));
        self.lanes
            .push_high(report(OrderReport::Accepted { client_id: id }))
            .expect("room");
        self.lanes
            .push_high(report(OrderReport::Fill {
                client_id: id,
                price: order.request.price,
                qty: order.request.qty,
                fee: Qty::ZERO,
                maker: false,
            }))
            .expect("room");
        Ok(())
    }

    fn cancel(
        &mut self,
        _: &Order,
        _: u64,
        _: &tradeloop_engine::api::Books,
    ) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// On every trade, sends the next order of its script and checks what got through.
struct Prober {
    script: Vec<(bool, i64)>,
    next: usize,
    submitted: Rc<Cell<u64>>,
    violations: Vec<String>,
    halted_attempts: u64,
    reducing_attempts: u64,
}

impl EngineStrategy for Prober {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        let (buy, lots) = self.script[self.next % self.script.len()];
        self.next += 1;
        let side = if buy { Side::Buy } else { Side::Sell };
        let req = OrderRequest::ioc(BTC, side, t.price, Qty(lots * 1_000_000));
        let state = ctx.trading_state();
        let position = ctx.position(BTC).qty;
        let before = self.submitted.get();
        let result = ctx.submit(req);
        let reached = self.submitted.get() > before;
        match state {
            TradingState::Halted => {
                self.halted_attempts += 1;
                if reached {
                    self.violations
                        .push(format!("halted, yet {req:?} reached the venue"));
                }
            }
            TradingState::Reducing => {
                self.reducing_attempts += 1;
                if reached && !reduces(&req, position) {
                    self.violations.push(format!(
                        "reducing, yet {req:?} reached the venue at position {position}"
                    ));
                }
            }
            TradingState::Active => {}
        }
        if reached != result.is_ok() {
            self.violations
                .push(format!("{result:?} but reached the venue: {reached}"));
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// A trade this many cents from the last price.
    Trade(i64),
    /// The venue starts or stops refusing.
    Refuse(bool),
    /// Clock jumps this many ms.
    Advance(u64),
    /// A feed goes down or comes back.
    Feed(bool),
    Kill,
    Resume,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (-3_000i64..3_000).prop_map(Step::Trade),
        1 => any::<bool>().prop_map(Step::Refuse),
        2 => (1u64..3_000).prop_map(Step::Advance),
        1 => any::<bool>().prop_map(Step::Feed),
        1 => Just(Step::Kill),
        1 => Just(Step::Resume),
    ]
}

fn settings() -> BreakerSettings {
    let trip = |action| Trip {
        action,
        cooldown_ns: 500 * MS,
        half_open_checks: 2,
    };
    BreakerSettings {
        check_interval_ns: 100 * MS,
        drawdown: Some((
            Money::from_fixed_raw(30 * FIXED_SCALE),
            trip(BreakerAction::Flatten),
        )),
        daily_loss: Some((
            Money::from_fixed_raw(60 * FIXED_SCALE),
            trip(BreakerAction::Halt),
        )),
        reject_storm: Some(((3, 1_000 * MS), trip(BreakerAction::Reduce))),
        feed_down: Some((800 * MS, trip(BreakerAction::Halt))),
        lane_latency: None,
        high_backpressure: Some((200 * MS, trip(BreakerAction::Halt))),
    }
}

fn registry() -> InstrumentRegistry {
    let mut r = InstrumentRegistry::new();
    r.add(
        "sim",
        "BTCUSDT",
        Price::parse("0.01").unwrap(),
        Qty::parse("0.01").unwrap(),
        ContractKind::Spot,
    )
    .unwrap();
    r
}

struct Outcome {
    violations: Vec<String>,
    max_abs_position: Qty,
    halted_attempts: u64,
    reducing_attempts: u64,
    trips: u64,
}

fn run(steps: &[Step], script: Vec<(bool, i64)>) -> Outcome {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let clock = SimClock::new(1);
    let refuse = Rc::new(Cell::new(false));
    let submitted = Rc::new(Cell::new(0));
    let limits = RiskLimits {
        max_position: Qty::from_units(1),
        orders_per_second: 1_000,
        orders_per_second_per_instrument: 1_000,
        ..RiskLimits::default()
    };
    let mut engine = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        Prober {
            script,
            next: 0,
            submitted: Rc::clone(&submitted),
            violations: Vec::new(),
            halted_attempts: 0,
            reducing_attempts: 0,
        },
        PreTradeRisk::new(limits),
        Venue {
            lanes: Arc::clone(&lanes),
            refuse: Rc::clone(&refuse),
            submitted: Rc::clone(&submitted),
        },
        clock.clone(),
    )
    .with_breakers(settings());
    let mut price: i64 = 100_000_00;
    let mut max_abs = Qty::ZERO;
    let mut id = 0;
    for s in steps {
        match *s {
            Step::Trade(d) => {
                price = (price + d).max(1_000_00);
                id += 1;
                clock.advance(1_000);
                lanes.push_normal(Event::new(
                    clock.now_ns(),
                    0,
                    EventKind::Trade(Trade {
                        instrument: BTC,
                        aggressor: Side::Buy,
                        price: Price(price * 1_000_000),
                        qty: Qty::from_units(1),
                        trade_id: id,
                    }),
                ));
            }
            Step::Refuse(on) => refuse.set(on),
            Step::Advance(ms) => {
                clock.advance(ms * MS);
                lanes
                    .push_low(Event::new(clock.now_ns(), 0, EventKind::Timer { id: 0 }))
                    .unwrap();
            }
            Step::Feed(live) => {
                let state = if live {
                    FeedState::Live
                } else {
                    FeedState::Down
                };
                lanes
                    .push_critical(Event::new(
                        clock.now_ns(),
                        0,
                        EventKind::FeedStatus { feed: 0, state },
                    ))
                    .unwrap();
            }
            Step::Kill => lanes
                .push_critical(Event::new(
                    clock.now_ns(),
                    0,
                    EventKind::Control(Control::KillSwitch),
                ))
                .unwrap(),
            Step::Resume => lanes
                .push_critical(Event::new(
                    clock.now_ns(),
                    0,
                    EventKind::Control(Control::Resume),
                ))
                .unwrap(),
        }
        while engine.poll() > 0 {}
        max_abs = max_abs.max(engine.core().position(BTC).qty.abs());
        // The state in force is never looser than what the breakers impose.
        let imposed = engine.breakers().imposed();
        assert!(engine.trading_state() as u8 >= imposed as u8);
    }
    let p = engine.strategy();
    Outcome {
        violations: p.violations.clone(),
        max_abs_position: max_abs,
        halted_attempts: p.halted_attempts,
        reducing_attempts: p.reducing_attempts,
        trips: engine.counters().breaker_trips.iter().sum(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn no_sequence_gets_an_order_past_a_halt_a_reduction_or_a_limit(
        steps in prop::collection::vec(step(), 1..200),
        script in prop::collection::vec((any::<bool>(), 1i64..60), 1..8),
    ) {
        let out = run(&steps, script);
        prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
        prop_assert!(out.max_abs_position <= Qty::from_units(1), "{}", out.max_abs_position);
    }
}

/// The generator is not vacuous: runs reach halted and reducing states, and breakers trip.
#[test]
fn sequences_reach_every_restricted_state() {
    let (mut halted, mut reducing, mut trips) = (0, 0, 0);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (
        prop::collection::vec(step(), 50..200),
        prop::collection::vec((any::<bool>(), 1i64..60), 1..8),
    );
    for _ in 0..64 {
        let (steps, script) = strategy.new_tree(&mut runner).unwrap().current();
        let out = run(&steps, script);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        halted += out.halted_attempts;
        reducing += out.reducing_attempts;
        trips += out.trips;
    }
    assert!(
        halted > 0 && reducing > 0 && trips > 0,
        "{halted} {reducing} {trips}"
    );
}
