//! The loop's observable behaviour: priority order, budgets and starvation bound, stale books,
//! kill switch, order flow into positions, back-pressure and shutdown.
#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "prices are written as units_cents"
)]

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::{delta, registry, trade, AllowAll, Answer, LaneGateway, BTC};
use tradeloop_engine::api::{Context, Deny, OrderUpdate, Strategy, SubmitError};
use tradeloop_engine::book::BookState;
use tradeloop_engine::clock::SimClock;
use tradeloop_engine::event::{
    ClientOrderId, Control, DeltaFlags, Event, EventKind, OrderReport, Side, Trade,
};
use tradeloop_engine::event_loop::{Engine, LoopConfig};
use tradeloop_engine::fixed::{Price, Qty};
use tradeloop_engine::instrument::InstrumentIndex;
use tradeloop_engine::lane::{Lane, LaneConfig, Lanes};
use tradeloop_engine::order::{OrderRequest, OrderStatus};

/// Records what it saw, and can be told to submit an order on a given trade id.
#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
    submit_on_trade: Option<u64>,
    order_qty_units: i64,
    last_submit: Option<Result<ClientOrderId, SubmitError>>,
}

impl Strategy for Recorder {
    fn on_trade<C: Context>(&mut self, ctx: &mut C, t: &Trade) {
        self.seen.push(format!("trade{}", t.trade_id));
        if self.submit_on_trade == Some(t.trade_id) {
            let req = OrderRequest::ioc(
                BTC,
                Side::Buy,
                t.price,
                Qty::from_units(self.order_qty_units.max(1)),
            );
            self.last_submit = Some(ctx.submit(req));
        }
    }
    fn on_book<C: Context>(&mut self, _: &mut C, _: InstrumentIndex) {
        self.seen.push("book".into());
    }
    fn on_book_stale<C: Context>(&mut self, _: &mut C, _: InstrumentIndex) {
        self.seen.push("stale".into());
    }
    fn on_order<C: Context>(&mut self, _: &mut C, u: &OrderUpdate) {
        let tag = match u.report {
            OrderReport::Accepted { .. } => "ack",
            OrderReport::Fill { .. } => "fill",
            OrderReport::Canceled { .. } => "canceled",
            OrderReport::Rejected { .. } => "rejected",
            OrderReport::CancelRejected { .. } => "cancel_rejected",
            OrderReport::Amended { .. } => "amended",
            OrderReport::AmendRejected { .. } => "amend_rejected",
        };
        self.seen.push(tag.into());
    }
    fn on_timer<C: Context>(&mut self, _: &mut C, id: u32) {
        self.seen.push(format!("timer{id}"));
    }
    fn on_stop<C: Context>(&mut self, _: &mut C, _: &tradeloop_engine::event::StopTrigger) {
        self.seen.push("stop".into());
    }
}

type TestEngine = Engine<Recorder, AllowAll, LaneGateway, SimClock>;

fn engine_with(
    lanes_cfg: LaneConfig,
    loop_cfg: LoopConfig,
    answer: Answer,
) -> (TestEngine, Arc<Lanes>) {
    let lanes = Arc::new(Lanes::new(lanes_cfg));
    let gw = LaneGateway::new(Arc::clone(&lanes), answer);
    let engine = Engine::new(
        loop_cfg,
        Arc::clone(&lanes),
        registry(),
        Recorder::default(),
        AllowAll,
        gw,
        SimClock::new(1),
    );
    (engine, lanes)
}

fn engine(answer: Answer) -> (TestEngine, Arc<Lanes>) {
    engine_with(LaneConfig::default(), LoopConfig::default(), answer)
}

fn stop_event() -> Event {
    Event::new(
        0,
        0,
        EventKind::StopTriggered(tradeloop_engine::event::StopTrigger {
            instrument: BTC,
            price: Price::from_units(1),
            trigger: Price::from_units(1),
            stop_id: 0,
        }),
    )
}

#[test]
fn critical_is_served_before_queued_market_data() {
    let (mut e, lanes) = engine(Answer::Fill);
    for i in 0..5 {
        lanes.push_normal(trade(1, 100_00, i));
    }
    lanes
        .push_low(Event::new(0, 0, EventKind::Timer { id: 9 }))
        .unwrap();
    lanes.push_critical(stop_event()).unwrap();
    e.poll();
    let seen = &e.strategy().seen;
    assert_eq!(seen.first().map(String::as_str), Some("stop"), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("timer9"),
        "LOW after NORMAL: {seen:?}"
    );
}

#[test]
fn fills_caused_by_a_trade_are_handled_before_the_next_trade() {
    let (mut e, lanes) = engine(Answer::Fill);
    e.strategy_mut().submit_on_trade = Some(1);
    for i in 0..3 {
        lanes.push_normal(trade(1, 100_00, i));
    }
    e.poll();
    assert_eq!(
        e.strategy().seen,
        ["trade0", "trade1", "ack", "fill", "trade2"]
    );
    assert_eq!(e.core().position(BTC).qty, Qty::from_units(1));
}

#[test]
fn low_lane_progresses_under_a_normal_flood() {
    let loop_cfg = LoopConfig {
        normal_budget: 8,
        low_budget: 1,
        ..LoopConfig::default()
    };
    let (mut e, lanes) = engine_with(LaneConfig::default(), loop_cfg, Answer::Fill);
    for i in 0..100 {
        lanes.push_normal(trade(1, 100_00, i));
    }
    lanes
        .push_low(Event::new(0, 0, EventKind::Timer { id: 1 }))
        .unwrap();
    lanes
        .push_low(Event::new(0, 0, EventKind::Timer { id: 2 }))
        .unwrap();
    assert_eq!(e.poll(), 9, "one turn: 8 NORMAL + 1 LOW");
    assert_eq!(e.strategy().seen.last().map(String::as_str), Some("timer1"));
    e.poll();
    assert_eq!(
        e.strategy().seen.last().map(String::as_str),
        Some("timer2"),
        "LOW served every turn"
    );
    assert_eq!(lanes.depth(Lane::Normal), 84);
}

#[test]
fn lost_book_delta_pauses_trading_until_a_snapshot_resyncs() {
    let lanes_cfg = LaneConfig {
        normal_slots: 4,
        ..LaneConfig::default()
    };
    let (mut e, lanes) = engine_with(lanes_cfg, LoopConfig::default(), Answer::Fill);
    const B: u8 = DeltaFlags::SNAPSHOT_BEGIN;
    const L: u8 = DeltaFlags::LAST_IN_MESSAGE;
    lanes.push_normal(delta(1, Side::Buy, 99_00, 1, B, 1));
    lanes.push_normal(delta(1, Side::Sell, 101_00, 1, L, 1));
    e.poll();
    assert_eq!(e.core().book(BTC).state(), BookState::Live);
    // Five deltas into a 4-slot lane: the oldest is dropped.
    for u in 2..7 {
        lanes.push_normal(delta(1, Side::Buy, 98_00, u as i64, L, u));
    }
    assert_eq!(lanes.stats(Lane::Normal).dropped, 1);
    assert!(
        lanes.take_resync_request(BTC),
        "the feed is asked to resync"
    );
    e.poll();
    assert_eq!(e.core().book(BTC).state(), BookState::Stale);
    assert!(e.strategy().seen.contains(&"stale".to_string()));
    assert_eq!(e.counters().books_stale, 1);
    assert_eq!(
        e.counters().deltas_ignored,
        4,
        "deltas after the gap are not applied"
    );
    let denied = e.core_mut().submit(OrderRequest::limit(
        BTC,
        Side::Buy,
        Price::from_units(99),
        Qty::from_units(1),
    ));
    assert_eq!(
        denied,
        Err(SubmitError::Denied(Deny::BookStale { instrument: BTC }))
    );
    // Resync: a new snapshot.
    lanes.push_normal(delta(1, Side::Buy, 97_00, 2, B, 10));
    lanes.push_normal(delta(1, Side::Sell, 102_00, 2, L, 10));
    e.poll();
    assert_eq!(e.core().book(BTC).state(), BookState::Live);
    assert_eq!(
        e.core().book(BTC).best_bid().map(|l| l.price),
        Some(Price::from_units(97))
    );
    let ok = e.core_mut().submit(OrderRequest::limit(
        BTC,
        Side::Buy,
        Price::from_units(97),
        Qty::from_units(1),
    ));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_feed_sequence_gap_pauses_trading_before_any_further_delta() {
    let (mut e, lanes) = engine(Answer::Fill);
    const B: u8 = DeltaFlags::SNAPSHOT_BEGIN;
    const L: u8 = DeltaFlags::LAST_IN_MESSAGE;
    lanes.push_normal(delta(1, Side::Buy, 99_00, 1, B, 1));
    lanes.push_normal(delta(1, Side::Sell, 101_00, 1, L, 1));
    e.poll();
    // The feed saw a venue sequence gap: no delta follows until its resync snapshot.
    lanes.mark_book_stale(BTC);
    e.poll();
    assert_eq!(e.core().book(BTC).state(), BookState::Stale);
    assert_eq!(e.strategy().seen, ["book", "stale"], "told once");
    e.poll();
    assert_eq!(e.strategy().seen.len(), 2, "not told again");
    let denied = e.core_mut().submit(OrderRequest::limit(
        BTC,
        Side::Buy,
        Price::from_units(99),
        Qty::from_units(1),
    ));
    assert_eq!(
        denied,
        Err(SubmitError::Denied(Deny::BookStale { instrument: BTC }))
    );
}

#[test]
fn kill_switch_cancels_working_orders_and_halts() {
    let (mut e, lanes) = engine(Answer::AckOnly);
    let id = e
        .core_mut()
        .submit(OrderRequest::limit(
            BTC,
            Side::Buy,
            Price::from_units(99),
            Qty::from_units(1),
        ))
        .unwrap();
    e.poll();
    assert_eq!(
        e.core().order(id).map(|o| o.status),
        Some(OrderStatus::Open)
    );
    lanes
        .push_critical(Event::new(0, 0, EventKind::Control(Control::KillSwitch)))
        .unwrap();
    e.poll();
    assert_eq!(e.gateway().cancels, 1);
    assert!(
        e.core().order(id).is_none(),
        "cancel confirmed and slot released"
    );
    assert_eq!(e.strategy().seen, ["ack", "canceled"]);
    let denied = e.core_mut().submit(OrderRequest::limit(
        BTC,
        Side::Buy,
        Price::from_units(99),
        Qty::from_units(1),
    ));
    assert_eq!(denied, Err(SubmitError::Denied(Deny::Halted)));
    assert_eq!(e.counters().denials[Deny::Halted.code()], 1);
    lanes
        .push_critical(Event::new(0, 0, EventKind::Control(Control::Resume)))
        .unwrap();
    e.poll();
    assert!(e
        .core_mut()
        .submit(OrderRequest::limit(
            BTC,
            Side::Buy,
            Price::from_units(99),
            Qty::from_units(1)
        ))
        .is_ok());
}

#[test]
fn cancel_on_stop_leaves_nothing_working() {
    for wind_down in [false, true] {
        let (e, _lanes) = engine(Answer::AckOnly);
        let mut e = if wind_down {
            e.with_cancel_on_stop(std::time::Duration::from_secs(5))
        } else {
            e
        };
        let req = OrderRequest::limit(BTC, Side::Buy, Price::from_units(99), Qty::from_units(1));
        let id = e.core_mut().submit(req).unwrap();
        e.poll();
        assert_eq!(
            e.core().order(id).map(|o| o.status),
            Some(OrderStatus::Open)
        );
        let report = e.run(&AtomicBool::new(true));
        if wind_down {
            assert_eq!(report.working_orders, 0);
            assert_eq!(e.gateway().cancels, 1);
            assert_eq!(e.strategy().seen, ["ack", "canceled"]);
        } else {
            assert_eq!(report.working_orders, 1, "left working without the option");
            assert_eq!(e.gateway().cancels, 0);
        }
    }
}

#[test]
fn bad_reports_are_counted_and_books_stay_true() {
    let (mut e, lanes) = engine(Answer::Fill);
    let id = e
        .core_mut()
        .submit(OrderRequest::limit(
            BTC,
            Side::Sell,
            Price::from_units(100),
            Qty::from_units(2),
        ))
        .unwrap();
    e.poll();
    assert_eq!(e.core().position(BTC).qty, Qty::from_units(-2));
    // A duplicate fill for a finished order, and a report for an id never issued.
    let dup = OrderReport::Fill {
        client_id: id,
        price: Price::from_units(100),
        qty: Qty::from_units(2),
        fee: Qty::ZERO,
        maker: false,
    };
    lanes
        .push_high(Event::new(0, 0, EventKind::Order(dup)))
        .unwrap();
    lanes
        .push_high(Event::new(
            0,
            0,
            EventKind::Order(OrderReport::Accepted {
                client_id: ClientOrderId(u64::MAX),
            }),
        ))
        .unwrap();
    e.poll();
    assert_eq!(e.counters().unknown_reports, 2);
    assert_eq!(
        e.core().position(BTC).qty,
        Qty::from_units(-2),
        "duplicate fill not applied"
    );
    // An overfill on a working order is refused by the state machine.
    e.gateway_mut().answer = Answer::AckOnly;
    let id2 = e
        .core_mut()
        .submit(OrderRequest::limit(
            BTC,
            Side::Buy,
            Price::from_units(100),
            Qty::from_units(1),
        ))
        .unwrap();
    let over = OrderReport::Fill {
        client_id: id2,
        price: Price::from_units(100),
        qty: Qty::from_units(5),
        fee: Qty::ZERO,
        maker: false,
    };
    lanes
        .push_high(Event::new(0, 0, EventKind::Order(over)))
        .unwrap();
    e.poll();
    assert_eq!(e.counters().illegal_transitions, 1);
    assert_eq!(e.core().position(BTC).qty, Qty::from_units(-2));
    assert_eq!(
        e.core().order(id2).map(|o| o.status),
        Some(OrderStatus::Open)
    );
}

#[test]
fn gateway_refusal_frees_the_slot_and_is_reported() {
    let (mut e, _lanes) = engine(Answer::Refuse);
    let r = e.core_mut().submit(OrderRequest::limit(
        BTC,
        Side::Buy,
        Price::from_units(1),
        Qty::from_units(1),
    ));
    assert!(matches!(r, Err(SubmitError::Gateway(_))), "{r:?}");
    assert_eq!(e.counters().rejects, 1);
    assert_eq!(e.counters().orders_sent, 0);
}

#[test]
fn pool_exhaustion_is_a_typed_refusal() {
    let loop_cfg = LoopConfig {
        order_slots: 2,
        ..LoopConfig::default()
    };
    let (mut e, _lanes) = engine_with(LaneConfig::default(), loop_cfg, Answer::AckOnly);
    let req = OrderRequest::limit(BTC, Side::Buy, Price::from_units(1), Qty::from_units(1));
    e.core_mut().submit(req).unwrap();
    e.core_mut().submit(req).unwrap();
    assert_eq!(e.core_mut().submit(req), Err(SubmitError::PoolExhausted));
    assert_eq!(e.counters().pool_exhausted, 1);
}

#[test]
fn shutdown_event_stops_run_after_draining() {
    let (mut e, lanes) = engine(Answer::Fill);
    for i in 0..10 {
        lanes.push_normal(trade(1, 100_00, i));
    }
    lanes
        .push_critical(Event::new(0, 0, EventKind::Control(Control::Shutdown)))
        .unwrap();
    let report = e.run(&AtomicBool::new(false));
    assert!(lanes.is_closed());
    assert_eq!(
        report.counters.events[Lane::Normal as usize],
        10,
        "queued market data drained"
    );
    assert_eq!(report.counters.events[Lane::Critical as usize], 1);
    let t = e.telemetry().snapshot();
    assert_eq!(t.counters, report.counters, "final telemetry published");
    assert_eq!(t.wait[Lane::Normal as usize].count, 10);
}

/// Tick-to-trade is taken from the `recv_ns` of the event being handled (its frame's arrival)
/// to the order handed to the gateway, once per order sent, and not at all when histograms are
/// off.
#[test]
fn tick_to_trade_runs_from_frame_arrival_to_the_gateway() {
    for timed in [true, false] {
        let lanes = Arc::new(Lanes::new(LaneConfig::default()));
        let clock = SimClock::new(1_000_000);
        let engine = Engine::new(
            LoopConfig::default(),
            Arc::clone(&lanes),
            registry(),
            Recorder {
                submit_on_trade: Some(2),
                ..Recorder::default()
            },
            AllowAll,
            LaneGateway::new(Arc::clone(&lanes), Answer::Fill),
            clock.clone(),
        );
        let mut engine = if timed {
            engine
        } else {
            engine.without_latency_histograms()
        };
        // Trade 1 sends nothing; trade 2 arrived 7 µs before the engine handles it.
        lanes.push_normal(trade(1_000_000 - 3_000, 100_00, 1));
        lanes.push_normal(trade(1_000_000 - 7_000, 100_00, 2));
        while engine.poll() > 0 {}
        assert!(matches!(engine.strategy().last_submit, Some(Ok(_))));
        assert_eq!(engine.counters().orders_sent, 1);
        let h = engine.tick_to_trade();
        if timed {
            assert_eq!(h.len(), 1);
            assert!(h.equivalent(h.max(), 7_000), "max {}", h.max());
        } else {
            assert_eq!(h.len(), 0);
        }
    }
}

/// The kill switch reaches every working order wherever it sits in the pool, after slots
/// ahead of it were released; `is_idle` tells when a turn has nothing to do.
#[test]
fn kill_switch_reaches_orders_behind_released_slots() {
    let (mut e, lanes) = engine(Answer::AckOnly);
    assert!(e.is_idle(), "TC0 a new engine has nothing to do");
    let ids: Vec<_> = (0..6)
        .map(|k| {
            e.core_mut()
                .submit(OrderRequest::limit(
                    BTC,
                    Side::Buy,
                    Price::from_units(90 + k),
                    Qty::from_units(1),
                ))
                .unwrap()
        })
        .collect();
    assert!(!e.is_idle(), "TC1 acks queued on HIGH");
    e.poll();
    assert!(e.is_idle(), "TC1 drained");
    lanes.mark_book_stale(BTC);
    assert!(!e.is_idle(), "TC1 a stale mark waits for the engine");
    e.poll();
    assert!(e.is_idle(), "TC1 the mark was taken");
    for id in &ids[..4] {
        e.core_mut().cancel(*id).unwrap();
    }
    e.poll();
    assert_eq!(e.gateway().cancels, 4);
    assert!(ids[..4].iter().all(|id| e.core().order(*id).is_none()));
    lanes
        .push_critical(Event::new(0, 0, EventKind::Control(Control::KillSwitch)))
        .unwrap();
    e.poll();
    assert_eq!(
        e.gateway().cancels,
        6,
        "TC2 both orders behind the freed slots"
    );
    assert!(ids.iter().all(|id| e.core().order(*id).is_none()));
}
