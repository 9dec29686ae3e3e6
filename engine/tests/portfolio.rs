//! A portfolio of strategies in one engine: orders tagged and routed to their member only,
//! positions attributed per member (summing to the engine's), member limits refused before
//! the engine sees the order, members' timers kept apart, another member's orders out of
//! reach, and the engine's own closing orders attributed to the members that held the position.

mod common;

use std::sync::Arc;

use common::{registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, Deny, OrderUpdate, Strategy, SubmitError};
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{
    ClientOrderId, Control, Event, EventKind, OrderReport, Side, StrategyId, Trade,
};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::OrderRequest;
use tradeloop_engine::portfolio::{Either, MemberLimits, Portfolio, MAX_MEMBER_TIMER_ID};
use tradeloop_engine::timers::TimerError;

/// Buys `qty_units` on the trade with id `on_trade`; records what it is told.
#[derive(Default)]
struct Buyer {
    on_trade: u64,
    qty_units: i64,
    sent: Vec<Result<ClientOrderId, SubmitError>>,
    updates: Vec<OrderUpdate>,
    timers: Vec<(u32, u64)>,
    timer_errors: Vec<TimerError>,
    /// Timers to schedule on start: (id, after_ns).
    schedule: Vec<(u32, u64)>,
}

impl Strategy for Buyer {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        for (id, after) in self.schedule.clone() {
            if let Err(e) = ctx.schedule_timer_after(after, id) {
                self.timer_errors.push(e);
            }
        }
    }
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        if t.trade_id == self.on_trade {
            let req = OrderRequest::ioc(BTC, Side::Buy, t.price, Qty::from_units(self.qty_units));
            self.sent.push(ctx.submit(req));
        }
    }
    fn on_order<C: Context>(&mut self, _: &mut C, u: &OrderUpdate) {
        self.updates.push(*u);
    }
    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        self.timers.push((id, ctx.now_ns()));
    }
}

/// Tries to cancel and amend order `target` when a trade arrives.
#[derive(Default)]
struct Meddler {
    target: Option<ClientOrderId>,
    results: Vec<SubmitError>,
    seen_orders: usize,
}

impl Strategy for Meddler {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, _: &Trade) {
        if let Some(id) = self.target {
            self.seen_orders += usize::from(ctx.order(id).is_some());
            if let Err(e) = ctx.cancel(id) {
                self.results.push(e);
            }
            if let Err(e) = ctx.amend(id, Price::from_units(1), Qty::from_units(1)) {
                self.results.push(e);
            }
        }
    }
}

type P = Portfolio<Buyer>;

fn engine_of<S: Strategy>(
    strategy: S,
    answer: Answer,
) -> (
    Engine<S, AllowAll, LaneGateway, SimClock>,
    Arc<Lanes>,
    SimClock,
) {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let clock = SimClock::new(1_000);
    let e = Engine::new(
        LoopConfig::default(),
        Arc::clone(&lanes),
        registry(),
        strategy,
        AllowAll,
        LaneGateway::new(Arc::clone(&lanes), answer),
        clock.clone(),
    );
    (e, lanes, clock)
}

fn units(u: i64) -> Qty {
    Qty::from_units(u)
}

#[test]
fn orders_are_tagged_routed_and_positions_attributed_per_member() {
    let members = vec![
        (
            Buyer {
                on_trade: 1,
                qty_units: 2,
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
        (
            Buyer {
                on_trade: 2,
                qty_units: 3,
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
    ];
    let p: P = Portfolio::new(members, &registry()).unwrap();
    let (mut e, lanes, _clock) = engine_of(p, Answer::Fill);
    e.start();
    lanes.push_normal(trade(1_000, 10_000, 1));
    lanes.push_normal(trade(1_001, 10_100, 2));
    while e.poll() > 0 {}
    let m = e.strategy().members();
    assert_eq!(m[0].positions[0].qty, units(2), "TC0 member 0's fill");
    assert_eq!(m[1].positions[0].qty, units(3), "TC1 member 1's fill");
    assert_eq!(
        e.core().position(BTC).qty,
        units(5),
        "TC2 the account holds the sum"
    );
    for (k, member) in m.iter().enumerate() {
        let u = &member.strategy.updates;
        assert_eq!(u.len(), 2, "TC3 member {k}: its own ack and fill only");
        assert!(
            u.iter()
                .all(|u| u.order.request.strategy == StrategyId(k as u8)),
            "TC4 tagged"
        );
        assert_eq!(
            (
                member.counters.orders,
                member.counters.fills,
                member.open_orders
            ),
            (1, 1, 0),
            "TC5"
        );
    }
    assert_eq!(
        m[0].positions[0].realized + m[1].positions[0].realized,
        e.core().position(BTC).realized,
        "TC6"
    );
}

#[test]
fn member_limits_refuse_before_the_engine_sees_the_order() {
    let limits = MemberLimits {
        max_position: Some(units(2)),
        max_open_orders: Some(1),
    };
    let members = vec![
        (
            Buyer {
                on_trade: 1,
                qty_units: 3,
                ..Buyer::default()
            },
            limits,
        ),
        (
            Buyer {
                on_trade: 1,
                qty_units: 3,
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
    ];
    let p: P = Portfolio::new(members, &registry()).unwrap();
    let (mut e, lanes, _clock) = engine_of(p, Answer::AckOnly);
    e.start();
    lanes.push_normal(trade(1_000, 10_000, 1));
    while e.poll() > 0 {}
    let m = e.strategy().members();
    assert!(
        matches!(
            m[0].strategy.sent[..],
            [Err(SubmitError::Denied(Deny::PositionAboveMax { .. }))]
        ),
        "TC0 {:?}",
        m[0].strategy.sent
    );
    assert_eq!(m[0].counters.denied, 1, "TC1");
    assert!(
        m[1].strategy.sent[0].is_ok(),
        "TC2 the other member is not limited"
    );
    assert_eq!(e.counters().orders_sent, 1, "TC3 the engine saw one order");
    assert_eq!(
        e.counters().denials.iter().sum::<u64>(),
        0,
        "TC4 nor any denial"
    );
}

#[test]
fn open_order_limit_and_another_members_order_out_of_reach() {
    let limits = MemberLimits {
        max_open_orders: Some(1),
        ..MemberLimits::default()
    };
    let buyer = Buyer {
        on_trade: 1,
        qty_units: 1,
        ..Buyer::default()
    };
    let members = vec![
        (Either::Left(buyer), limits),
        (Either::Right(Meddler::default()), MemberLimits::default()),
    ];
    let p = Portfolio::new(members, &registry()).unwrap();
    let (mut e, lanes, _clock) = engine_of(p, Answer::AckOnly);
    e.start();
    lanes.push_normal(trade(1_000, 10_000, 1));
    while e.poll() > 0 {}
    let id = {
        let Either::Left(b) = &e.strategy().members()[0].strategy else {
            unreachable!()
        };
        *b.sent[0].as_ref().unwrap()
    };
    // A second order while one works: refused by the member's open-order limit; the other
    // member goes for the working order.
    lanes.push_normal(trade(1_001, 10_000, 1));
    if let Either::Right(m) = &mut e.strategy_mut().members_mut()[1].strategy {
        m.target = Some(id);
    }
    while e.poll() > 0 {}
    let members = e.strategy().members();
    let Either::Left(b) = &members[0].strategy else {
        unreachable!()
    };
    assert!(
        matches!(
            b.sent[1],
            Err(SubmitError::Denied(Deny::TooManyOpenOrders {
                open: 1,
                max: 1
            }))
        ),
        "TC0 {:?}",
        b.sent
    );
    let Either::Right(m) = &members[1].strategy else {
        unreachable!()
    };
    assert_eq!(
        m.results,
        [SubmitError::UnknownOrder(id), SubmitError::UnknownOrder(id)],
        "TC1 cancel and amend of another member's order"
    );
    assert_eq!(m.seen_orders, 0, "TC2 nor can it see it");
    assert!(e.core().order(id).is_some(), "TC3 the order still works");
    assert_eq!(e.counters().cancels_sent, 0, "TC4");
}

#[test]
fn members_timers_are_their_own() {
    let members = vec![
        (
            Buyer {
                schedule: vec![(1, 500), (MAX_MEMBER_TIMER_ID + 1, 10)],
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
        (
            Buyer {
                schedule: vec![(1, 900)],
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
    ];
    let p: P = Portfolio::new(members, &registry()).unwrap();
    let (mut e, _lanes, clock) = engine_of(p, Answer::Fill);
    e.start();
    clock.set(10_000);
    while e.poll() > 0 {}
    let m = e.strategy().members();
    assert_eq!(
        m[0].strategy.timers,
        [(1, 10_000)],
        "TC0 member 0's timer 1"
    );
    assert_eq!(
        m[1].strategy.timers,
        [(1, 10_000)],
        "TC1 member 1's timer 1, not replaced by 0's"
    );
    assert_eq!(
        m[0].strategy.timer_errors,
        [TimerError::IdOutOfRange {
            id: MAX_MEMBER_TIMER_ID + 1,
            max: MAX_MEMBER_TIMER_ID
        }],
        "TC2"
    );
    assert_eq!(e.counters().timers_fired, 2, "TC3");
}

#[test]
fn the_engines_flatten_is_attributed_to_the_members_that_held_the_position() {
    let members = vec![
        (
            Buyer {
                on_trade: 1,
                qty_units: 2,
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
        (
            Buyer {
                on_trade: 1,
                qty_units: 1,
                ..Buyer::default()
            },
            MemberLimits::default(),
        ),
    ];
    let p: P = Portfolio::new(members, &registry()).unwrap();
    let (e, lanes, _clock) = engine_of(p, Answer::Fill);
    let mut e = e.with_kill_flatten(true);
    e.start();
    lanes.push_normal(trade(1_000, 10_000, 1));
    while e.poll() > 0 {}
    assert_eq!(e.core().position(BTC).qty, units(3));
    lanes
        .push_critical(Event::new(
            2_000,
            0,
            EventKind::Control(Control::KillSwitch),
        ))
        .unwrap();
    while e.poll() > 0 {}
    assert_eq!(
        e.counters().flatten_orders,
        1,
        "TC0 one closing order for the account"
    );
    assert!(
        e.core().position(BTC).qty.is_zero(),
        "TC1 the account is flat"
    );
    let m = e.strategy().members();
    assert!(
        m[0].positions[0].qty.is_zero() && m[1].positions[0].qty.is_zero(),
        "TC2 so is every member"
    );
    assert!(
        m.iter().all(|m| !m
            .strategy
            .updates
            .iter()
            .any(|u| u.order.request.strategy == StrategyId::ENGINE)),
        "TC3 no member is sent the engine's order"
    );
    let fills = |k: usize| {
        m[k].strategy
            .updates
            .iter()
            .filter(|u| matches!(u.report, OrderReport::Fill { .. }))
            .count()
    };
    assert_eq!(
        (fills(0), fills(1)),
        (1, 1),
        "TC4 each saw only its own entry fill"
    );
}

/// Sends a reduce-only sell of `qty_units` on trade `on_trade`.
#[derive(Default)]
struct Closer {
    on_trade: u64,
    qty_units: i64,
    sent: Vec<Result<ClientOrderId, SubmitError>>,
}

impl Strategy for Closer {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        if t.trade_id == self.on_trade {
            let req = OrderRequest {
                reduce_only: true,
                ..OrderRequest::ioc(BTC, Side::Sell, t.price, Qty::from_units(self.qty_units))
            };
            self.sent.push(ctx.submit(req));
        }
    }
}

#[test]
fn reduce_only_means_the_members_own_position() {
    // Member 0 buys 2 (trade 1); member 1 sells reduce-only 1 (trade 2) holding nothing: refused
    // although the account is long. Member 0 then closes 1 (trade 3): reduces both its own and
    // the account's position, so it reaches the venue reduce-only.
    let members = vec![
        (
            Either::Left(Buyer {
                on_trade: 1,
                qty_units: 2,
                ..Buyer::default()
            }),
            MemberLimits::default(),
        ),
        (
            Either::Right(Closer {
                on_trade: 2,
                qty_units: 1,
                ..Closer::default()
            }),
            MemberLimits::default(),
        ),
        (
            Either::Right(Closer {
                on_trade: 3,
                qty_units: 1,
                ..Closer::default()
            }),
            MemberLimits::default(),
        ),
    ];
    let p = Portfolio::new(members, &registry()).unwrap();
    let (mut e, lanes, _clock) = engine_of(p, Answer::Fill);
    e.start();
    for id in 1..=3 {
        lanes.push_normal(trade(1_000 + id, 10_000, id));
        while e.poll() > 0 {}
    }
    let m = e.strategy().members();
    let Either::Right(c1) = &m[1].strategy else {
        unreachable!()
    };
    assert!(
        matches!(c1.sent[..], [Err(SubmitError::Denied(Deny::ReduceOnlyWouldIncrease { position }))] if position.is_zero()),
        "TC0 {:?}",
        c1.sent
    );
    // Member 2 holds nothing either: refused the same way.
    let Either::Right(c2) = &m[2].strategy else {
        unreachable!()
    };
    assert!(c2.sent[0].is_err(), "TC1 {:?}", c2.sent);
    assert_eq!(
        e.core().position(BTC).qty,
        units(2),
        "TC2 the account still holds member 0's 2"
    );
    assert_eq!((m[1].counters.denied, m[2].counters.denied), (1, 1), "TC3");
}
