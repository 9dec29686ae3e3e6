//! Strategy timers through the real loop: scheduling from callbacks, firing on the simulated
//! clock in due order, replace and cancel, a past time firing at once, the no-refire-within-an-
//! instant rule, priority behind CRITICAL and HIGH, the slot limit, and `on_start`.

mod common;

use std::sync::Arc;

use common::{registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, OrderUpdate, Strategy};
use tradeloop_engine::clock::{Clock, SimClock};
use tradeloop_engine::event::{Event, EventKind, OrderReport, Side, StopTrigger, Trade};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::lane::{LaneConfig, Lanes};
use tradeloop_engine::order::OrderRequest;
use tradeloop_engine::timers::TimerError;

/// What a test strategy does when something happens.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Schedule `id` at an absolute time.
    At(u64, u32),
    /// Schedule `id` after a delay.
    After(u64, u32),
    /// Cancel `id`.
    Cancel(u32),
    /// Send a one-lot IOC buy.
    Buy,
}

#[derive(Default)]
struct Timed {
    /// Done in `on_start`.
    on_start: Vec<Plan>,
    /// Done on the trade with this id.
    on_trade: Vec<(u64, Plan)>,
    /// Done when timer `id` fires.
    on_timer: Vec<(u32, Plan)>,
    /// (what, clock time) in the order seen.
    seen: Vec<(String, u64)>,
    refused: Vec<TimerError>,
    cancelled: Vec<bool>,
}

impl Timed {
    fn act<C: Context>(&mut self, ctx: &mut C, plan: Plan) {
        let r = match plan {
            Plan::At(at, id) => ctx.schedule_timer_at(at, id),
            Plan::After(after, id) => ctx.schedule_timer_after(after, id),
            Plan::Cancel(id) => {
                self.cancelled.push(ctx.cancel_timer(id));
                Ok(())
            }
            Plan::Buy => {
                let req =
                    OrderRequest::ioc(BTC, Side::Buy, Price::from_units(100), Qty::from_units(1));
                ctx.submit(req).expect("allowed");
                Ok(())
            }
        };
        if let Err(e) = r {
            self.refused.push(e);
        }
    }
}

impl Strategy for Timed {
    fn on_start<C: Context>(&mut self, ctx: &mut C) {
        self.seen.push(("start".into(), ctx.now_ns()));
        for p in self.on_start.clone() {
            self.act(ctx, p);
        }
    }
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        self.seen
            .push((format!("trade{}", t.trade_id), ctx.now_ns()));
        let plans: Vec<Plan> = self
            .on_trade
            .iter()
            .filter(|(id, _)| *id == t.trade_id)
            .map(|(_, p)| *p)
            .collect();
        for p in plans {
            self.act(ctx, p);
        }
    }
    fn on_timer<C: Context>(&mut self, ctx: &mut C, id: u32) {
        self.seen.push((format!("timer{id}"), ctx.now_ns()));
        let plans: Vec<Plan> = self
            .on_timer
            .iter()
            .filter(|(t, _)| *t == id)
            .map(|(_, p)| *p)
            .collect();
        for p in plans {
            self.act(ctx, p);
        }
    }
    fn on_order<C: Context>(&mut self, ctx: &mut C, u: &OrderUpdate) {
        if matches!(u.report, OrderReport::Fill { .. }) {
            self.seen.push(("fill".into(), ctx.now_ns()));
        }
    }
    fn on_stop<C: Context>(&mut self, ctx: &mut C, _: &StopTrigger) {
        self.seen.push(("stop".into(), ctx.now_ns()));
    }
}

type TestEngine = Engine<Timed, AllowAll, LaneGateway, SimClock>;

fn engine(strategy: Timed, loop_cfg: LoopConfig) -> (TestEngine, Arc<Lanes>, SimClock) {
    let lanes = Arc::new(Lanes::new(LaneConfig::default()));
    let clock = SimClock::new(1_000);
    let gw = LaneGateway::new(Arc::clone(&lanes), Answer::Fill);
    let e = Engine::new(
        loop_cfg,
        Arc::clone(&lanes),
        registry(),
        strategy,
        AllowAll,
        gw,
        clock.clone(),
    );
    (e, lanes, clock)
}

fn drain(e: &mut TestEngine) {
    while e.poll() > 0 {}
}

fn names(e: &TestEngine) -> Vec<&str> {
    e.strategy().seen.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn timers_fire_in_due_order_on_the_simulated_clock() {
    let s = Timed {
        on_start: vec![
            Plan::At(5_000, 2),
            Plan::After(1_000, 1),
            Plan::At(5_000, 3),
        ],
        ..Timed::default()
    };
    let (mut e, _lanes, clock) = engine(s, LoopConfig::default());
    e.start();
    e.start(); // once only
    assert_eq!(
        e.next_timer_due(),
        Some(2_000),
        "TC0 earliest is after(1000) from t=1000"
    );
    drain(&mut e);
    assert_eq!(names(&e), ["start"], "TC1 nothing due yet");
    clock.set(1_999);
    assert!(e.is_idle(), "TC2 idle until due");
    clock.set(2_000);
    assert!(!e.is_idle(), "TC3 a due timer is work");
    drain(&mut e);
    clock.set(9_000);
    drain(&mut e);
    let seen = &e.strategy().seen;
    assert_eq!(
        seen.iter()
            .map(|(n, t)| (n.as_str(), *t))
            .collect::<Vec<_>>(),
        [
            ("start", 1_000),
            ("timer1", 2_000),
            ("timer2", 9_000),
            ("timer3", 9_000)
        ],
        "TC4 due order; equal due times in schedule order"
    );
    assert_eq!(e.counters().timers_fired, 3, "TC5");
    assert_eq!(e.next_timer_due(), None, "TC6");
}

#[test]
fn replace_and_cancel_take_effect_and_a_past_time_fires_at_once() {
    let s = Timed {
        on_start: vec![Plan::At(3_000, 7), Plan::At(4_000, 8)],
        on_trade: vec![
            (1, Plan::At(10_000, 7)), // replaces 3,000
            (1, Plan::Cancel(8)),
            (1, Plan::Cancel(99)),
            (2, Plan::At(0, 5)), // in the past
        ],
        ..Timed::default()
    };
    let (mut e, lanes, clock) = engine(s, LoopConfig::default());
    e.start();
    lanes.push_normal(trade(1_000, 10_000, 1));
    drain(&mut e);
    assert_eq!(e.strategy().cancelled, [true, false], "TC0 cancel answers");
    clock.set(5_000);
    drain(&mut e);
    assert_eq!(
        names(&e),
        ["start", "trade1"],
        "TC1 replaced and cancelled timers do not fire"
    );
    lanes.push_normal(trade(5_000, 10_000, 2));
    e.poll();
    assert_eq!(
        names(&e),
        ["start", "trade1", "trade2", "timer5"],
        "TC2 a past time fires in the same turn"
    );
    clock.set(10_000);
    drain(&mut e);
    assert_eq!(
        names(&e).last(),
        Some(&"timer7"),
        "TC3 the replacement fires"
    );
    assert_eq!(e.counters().timers_fired, 2, "TC4");
}

#[test]
fn a_timer_rescheduled_for_now_from_on_timer_fires_one_nanosecond_later() {
    let s = Timed {
        on_start: vec![Plan::At(2_000, 1)],
        on_timer: vec![(1, Plan::After(0, 1))],
        ..Timed::default()
    };
    let (mut e, _lanes, clock) = engine(s, LoopConfig::default());
    e.start();
    clock.set(2_000);
    drain(&mut e);
    assert_eq!(
        e.counters().timers_fired,
        1,
        "TC0 no refire within the instant"
    );
    assert_eq!(e.next_timer_due(), Some(2_001), "TC1");
    clock.set(2_001);
    drain(&mut e);
    assert_eq!(e.counters().timers_fired, 2, "TC2");
}

#[test]
fn timers_wait_behind_critical_and_high_and_are_bounded_per_turn() {
    let loop_cfg = LoopConfig {
        low_budget: 2,
        ..LoopConfig::default()
    };
    let s = Timed {
        on_start: (0..5).map(|id| Plan::At(1_500, id)).collect(),
        on_timer: vec![(0, Plan::Buy)],
        ..Timed::default()
    };
    let (mut e, lanes, clock) = engine(s, loop_cfg);
    e.start();
    clock.set(2_000);
    lanes
        .push_critical(Event::new(
            2_000,
            0,
            EventKind::StopTriggered(StopTrigger {
                instrument: BTC,
                price: Price::from_units(1),
                trigger: Price::from_units(1),
                stop_id: 0,
            }),
        ))
        .unwrap();
    e.poll();
    assert_eq!(
        names(&e),
        ["start", "stop", "timer0", "fill", "timer1"],
        "TC0 CRITICAL first; the fill timer0's order caused is served before the next timer; two timers a turn"
    );
    drain(&mut e);
    assert_eq!(e.counters().timers_fired, 5, "TC1 the rest on later turns");
    assert_eq!(e.counters().orders_sent, 1, "TC2");
    assert_eq!(
        e.counters().events[tradeloop_engine::lane::Lane::Low as usize],
        5,
        "TC3 counted as LOW events"
    );
}

#[test]
fn full_timer_slots_refuse_a_new_id_and_count_it() {
    let loop_cfg = LoopConfig {
        timer_slots: 2,
        ..LoopConfig::default()
    };
    let s = Timed {
        on_start: vec![
            Plan::At(9_000, 1),
            Plan::At(9_000, 2),
            Plan::At(9_000, 3),
            Plan::At(8_000, 2),
        ],
        ..Timed::default()
    };
    let (mut e, _lanes, clock) = engine(s, loop_cfg);
    e.start();
    assert_eq!(
        e.strategy().refused,
        [TimerError::Full { capacity: 2 }],
        "TC0 the third id is refused, the replace is not"
    );
    assert_eq!(e.counters().timers_refused, 1, "TC1");
    clock.set(9_000);
    drain(&mut e);
    assert_eq!(names(&e), ["start", "timer2", "timer1"], "TC2");
    assert_eq!(clock.now_ns(), 9_000);
}

#[test]
fn timer_slots_are_validated_with_the_key() {
    for (label, slots, ok) in [
        ("TC0", 0, false),
        ("TC1", 1, true),
        ("TC2", 65_536, true),
        ("TC3", 65_537, false),
    ] {
        let cfg = LoopConfig {
            timer_slots: slots,
            ..LoopConfig::default()
        };
        match cfg.validate() {
            Ok(()) => assert!(ok, "{label}"),
            Err((key, _)) => {
                assert!(!ok, "{label}");
                assert_eq!(key, "timer_slots", "{label}");
            }
        }
    }
}
